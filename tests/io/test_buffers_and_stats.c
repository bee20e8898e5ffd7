/* SPDX-License-Identifier: MIT */
/* The engine's buffer API, O_DIRECT alignment discovery, and the stats it reports. */
#include <auraio.h>

#include "test_util.h"

Test(engine_buffers, buffers_honour_the_configured_alignment)
{
	size_t aligns[] = { 512, 4096, 65536 };

	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
		auraio_options_t o;
		auraio_engine_t *e;

		auraio_options_init(&o);
		o.buffer_alignment = aligns[i];
		e = auraio_create_with_options(&o);
		cr_assert_not_null(e);
		for (size_t sz = 1; sz <= (1 << 20); sz *= 7) {
			char *p = auraio_buffer_alloc(e, sz);

			cr_assert_not_null(p);
			cr_assert_eq((uintptr_t) p % aligns[i], 0, "size %zu align %zu", sz,
				     aligns[i]);
			memset(p, 1, sz);
			auraio_buffer_free(e, p);
		}
		auraio_destroy(e);
	}
}

static char logged[256];

static void capture(int level, const char *msg, void *arg)
{
	(void) level;
	(void) arg;
	snprintf(logged, sizeof(logged), "%s", msg);
}

Test(engine_buffers, freeing_a_foreign_pointer_is_refused_and_logged)
{
	auraio_options_t o;
	auraio_engine_t *e, *other;
	char stack[64];
	void *theirs;

	auraio_options_init(&o);
	o.log_fn = capture;
	e = auraio_create_with_options(&o);
	other = auraio_create();
	theirs = auraio_buffer_alloc(other, 4096);
	auraio_buffer_free(e, stack);
	cr_assert(strstr(logged, "not a buffer of this engine"), "log: %s", logged);
	logged[0] = 0;
	auraio_buffer_free(e, theirs);
	cr_assert(strstr(logged, "not a buffer of this engine"), "another engine's buffer");
	auraio_buffer_free(e, NULL);
	auraio_buffer_free(other, theirs);
	errno = 0;
	cr_assert_null(auraio_buffer_alloc(e, 0));
	cr_assert_eq(errno, EINVAL);
	auraio_destroy(e);
	auraio_destroy(other);
}

Test(dio_alignment, a_regular_file_reports_its_alignment_and_a_pipe_does_not)
{
	int fd = temp_file(4096, O_DIRECT), p[2];
	size_t mem = 0, off = 0;
	int rc = auraio_get_dio_alignment(fd, &mem, &off);

	if (rc == -EINVAL)
		cr_skip_test("this kernel or file system does not report STATX_DIOALIGN");
	cr_assert_eq(rc, 0);
	cr_assert_gt(mem, 0);
	cr_assert_gt(off, 0);
	cr_assert_eq(mem & (mem - 1), 0, "a power of two");
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(auraio_get_dio_alignment(p[0], &mem, &off), -EINVAL);
	cr_assert_eq(auraio_get_dio_alignment(-1, &mem, &off), -EINVAL);
	close(fd);
	close(p[0]);
	close(p[1]);
}

Test(engine_stats, every_completion_is_counted_with_its_bytes)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;
	auraio_ring_stats_t rs;
	int fd = temp_file(1 << 20, 0);
	char buf[4096];
	uint64_t sum = 0;

	auraio_options_init(&o);
	o.ring_count = 2;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	for (int i = 0; i < 100; i++) {
		auraio_request_t *req =
		    auraio_read(e, fd, auraio_buf(buf), 4096, i * 4096, NULL, NULL);

		cr_assert_not_null(req);
		cr_assert_eq(auraio_request_wait(e, req, 10000, NULL), 0);
	}
	for (int i = 0; i < 10; i++) {
		auraio_request_t *req = auraio_write(e, fd, auraio_buf(buf), 1000, 0, NULL, NULL);

		cr_assert_not_null(req);
		cr_assert_eq(auraio_request_wait(e, req, 10000, NULL), 0);
	}
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.total.ops_submitted, 110);
	cr_assert_eq(st.total.ops_completed, 110);
	cr_assert_eq(st.total.bytes_read, 100 * 4096);
	cr_assert_eq(st.total.bytes_written, 10 * 1000);
	cr_assert_eq(st.total.in_flight, 0);
	cr_assert_eq(st.total.errors, 0);
	cr_assert_gt(st.total.p50_us, 0);
	cr_assert_geq(st.total.p99_us, st.total.p50_us);
	cr_assert_geq(st.total.max_us, st.total.p99_us);
	cr_assert_eq(st.ring_count, 2);
	if (st.backend == AURAIO_BACKEND_IO_URING) {
		cr_assert_eq(st.total.sqes_submitted, 110);
		cr_assert_gt(st.total.syscalls, 0);
	}
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(auraio_get_ring_stats(e, i, &rs), 0);
		sum += rs.ops_completed;
		cr_assert_leq(rs.batch_threshold, rs.in_flight_limit);
		cr_assert_leq(rs.in_flight_limit, rs.queue_depth);
	}
	cr_assert_eq(sum, 110, "ring stats add up to the total");
	auraio_destroy(e);
	close(fd);
}

/* Wait for req and return its result. */
static ssize_t wait_result(auraio_engine_t *e, auraio_request_t *req)
{
	ssize_t res = 0;

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	return res;
}

/* The reaper counts bytes by the direction of the operation: vectored reads and writes
 * like plain ones, an fsync as neither, a failed operation as an error with no bytes. */
Test(engine_stats, bytes_are_counted_by_direction_and_errors_count_no_bytes)
{
	auraio_engine_t *e = auraio_create();
	auraio_stats_t st;
	int fd = temp_file(1 << 16, 0);
	char a[3000], b[500];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	int dir = open("/", O_RDONLY | O_DIRECTORY);

	cr_assert_not_null(e);
	cr_assert_geq(dir, 0);
	cr_assert_eq(wait_result(e, auraio_readv(e, fd, iov, 2, 0, NULL, NULL)), 3500);
	cr_assert_eq(wait_result(e, auraio_read(e, fd, auraio_buf(a), 100, 0, NULL, NULL)), 100);
	cr_assert_eq(wait_result(e, auraio_writev(e, fd, iov, 1, 0, NULL, NULL)), 3000);
	cr_assert_eq(wait_result(e, auraio_write(e, fd, auraio_buf(b), 7, 0, NULL, NULL)), 7);
	cr_assert_eq(wait_result(e, auraio_fsync(e, fd, 0, NULL, NULL)), 0);
	/* A read of a directory fails (-EISDIR): an error, no bytes. */
	cr_assert_lt(wait_result(e, auraio_read(e, dir, auraio_buf(a), 100, 0, NULL, NULL)), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.total.ops_completed, 6);
	cr_assert_eq(st.total.bytes_read, 3500 + 100);
	cr_assert_eq(st.total.bytes_written, 3000 + 7);
	cr_assert_eq(st.total.errors, 1);
	auraio_destroy(e);
	close(dir);
	close(fd);
}
