/* SPDX-License-Identifier: MIT */
/* The contract of aurawal.h at its edges: options at their bounds, appends whose lengths
 * overflow, iterators opened where no record starts, calls on a failed log. */
#include <limits.h>

#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_edges);

Test(wal_edges, an_append_whose_lengths_overflow_size_t_is_too_large_not_a_small_record)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	char c[16] = "0123456789abcdef";
	struct iovec iov[2] = { { c, 16 }, { c, SIZE_MAX } }; /* 16 + SIZE_MAX wraps to 15 */

	cr_assert_eq(aurawal_append(log, iov, 2, 0, NULL, NULL), -EMSGSIZE);
	cr_assert_eq(aurawal_append_async(log, iov, 2, 0, (aurawal_append_cb) abort, NULL),
		     -EMSGSIZE);
	iov[1].iov_len = SIZE_MAX - 15; /* wraps to exactly 0 */
	cr_assert_eq(aurawal_append(log, iov, 2, AURAWAL_DURABLE, NULL, NULL), -EMSGSIZE);
	cr_assert_eq(aurawal_close(log), 0);
}
