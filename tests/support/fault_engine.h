/* SPDX-License-Identifier: MIT */
/* fault_engine.h - an AuraIO engine for tests that inject faults through it. */
#ifndef AURA_FAULT_ENGINE_H
#define AURA_FAULT_ENGINE_H

#include <auraio.h>

#include "test_util.h"

/* An engine with fault injection, or the test is skipped (the build has none). */
static inline auraio_engine_t *test_faulty_engine(void)
{
	auraio_engine_t *e = auraio_create();
	auraio_fault_t probe = { .fd = -1, .count = 1, .skip = UINT64_MAX };

	cr_assert_not_null(e);
	if (auraio_fault_set(e, &probe) == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	auraio_fault_clear(e);
	return e;
}

/* Operations of kind `ops` (AURAIO_FAULT_OP_*, 0 = all) on any file fail with -err:
 * `count` of them (0 = every one until cleared) after the first `skip`. */
static inline void test_fault_error(auraio_engine_t *e, unsigned ops, uint64_t skip, uint64_t count,
				    int err)
{
	auraio_fault_t f = { .ops = ops,
			     .fd = -1,
			     .skip = skip,
			     .count = count,
			     .kind = AURAIO_FAULT_ERROR,
			     .error = err };

	cr_assert_eq(auraio_fault_set(e, &f), 0);
}

#endif
