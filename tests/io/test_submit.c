/* SPDX-License-Identifier: MIT */
/* The submit calls: each operation's success path and each documented error. */
#include <auraio.h>
#include <limits.h>
#include <sys/uio.h>

#include "test_util.h"

static auraio_engine_t *engine;
static int fd;

static void setup(void)
{
	engine = auraio_create();
	cr_assert_not_null(engine);
	fd = temp_file(1 << 20, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(submit, .init = setup, .fini = teardown);

/* Submit a waitable request and collect its result. */
static ssize_t wait_result(auraio_request_t *req)
{
	ssize_t res = -12345;

	cr_assert_not_null(req, "submit failed: %s", strerror(errno));
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	return res;
}

Test(submit, read_returns_the_bytes_at_the_offset)
{
	char buf[4096];

	cr_assert_eq(
	    wait_result(auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 8192, NULL, NULL)),
	    4096);
	cr_assert(check_pattern(buf, sizeof(buf), 8192));
}

Test(submit, read_at_end_of_file_returns_zero)
{
	char buf[512];

	cr_assert_eq(
	    wait_result(auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 1 << 20, NULL, NULL)),
	    0);
}

Test(submit, write_then_read_back_round_trips)
{
	char out[1000], in[1000];

	fill_pattern(out, sizeof(out), 777);
	cr_assert_eq(
	    wait_result(auraio_write(engine, fd, auraio_buf(out), sizeof(out), 5000, NULL, NULL)),
	    1000);
	cr_assert_eq(
	    wait_result(auraio_read(engine, fd, auraio_buf(in), sizeof(in), 5000, NULL, NULL)),
	    1000);
	cr_assert_arr_eq(in, out, sizeof(in));
}

Test(submit, readv_scatters_into_every_buffer)
{
	char a[100], b[300];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };

	cr_assert_eq(wait_result(auraio_readv(engine, fd, iov, 2, 4096, NULL, NULL)), 400);
	cr_assert(check_pattern(a, sizeof(a), 4096));
	cr_assert(check_pattern(b, sizeof(b), 4196));
}

Test(submit, writev_gathers_every_buffer)
{
	char a[10] = "0123456789", b[5] = "abcde", in[15];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };

	cr_assert_eq(wait_result(auraio_writev(engine, fd, iov, 2, 100, NULL, NULL)), 15);
	cr_assert_eq(pread(fd, in, sizeof(in), 100), 15);
	cr_assert_arr_eq(in, "0123456789abcde", 15);
}

Test(submit, fsync_and_fdatasync_succeed)
{
	cr_assert_eq(wait_result(auraio_fsync(engine, fd, 0, NULL, NULL)), 0);
	cr_assert_eq(wait_result(auraio_fsync(engine, fd, AURAIO_FSYNC_DATASYNC, NULL, NULL)), 0);
}

Test(submit, callback_receives_result_and_user_data)
{
	struct recorder rec = { 0 };
	char buf[256];

	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 0, record_cb, &rec));
	while (atomic_load(&rec.calls) == 0)
		cr_assert_geq(auraio_wait(engine, 5000), 0);
	cr_assert_eq(atomic_load(&rec.calls), 1);
	cr_assert_eq(atomic_load(&rec.last), 256);
}

Test(submit, an_io_error_is_delivered_as_negative_errno)
{
	char buf[16];
	int wronly = open("/dev/null", O_WRONLY);

	cr_assert_eq(
	    wait_result(auraio_read(engine, wronly, auraio_buf(buf), sizeof(buf), 0, NULL, NULL)),
	    -EBADF);
	close(wronly);
}

static void expect_errno(auraio_request_t *req, int err)
{
	cr_assert_null(req);
	cr_assert_eq(errno, err, "errno %d (%s), expected %d", errno, strerror(errno), err);
}

Test(submit, bad_arguments_are_refused_with_einval)
{
	char buf[16];
	struct iovec iov = { buf, sizeof(buf) };

	expect_errno(auraio_read(engine, -1, auraio_buf(buf), 16, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_read(engine, fd, auraio_buf(NULL), 16, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_write(engine, fd, auraio_buf(buf), 16, -1, NULL, NULL), EINVAL);
	expect_errno(auraio_readv(engine, fd, NULL, 1, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_readv(engine, fd, &iov, 0, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_writev(engine, fd, &iov, IOV_MAX + 1, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_fsync(engine, fd, 0x80, NULL, NULL), EINVAL);
	expect_errno(auraio_read(engine, fd, auraio_buf_fixed(0, 0), 16, 0, NULL, NULL), EINVAL);
	expect_errno(
	    auraio_read(engine, fd, auraio_buf(buf), (size_t) UINT32_MAX + 1, 0, NULL, NULL),
	    EINVAL);
}

Test(submit, a_registered_buffer_overrun_is_refused_with_eoverflow)
{
	static char mem[8192];
	struct iovec iov = { mem, sizeof(mem) };

	cr_assert_eq(auraio_register_buffers(engine, &iov, 1), 0);
	expect_errno(auraio_read(engine, fd, auraio_buf_fixed(0, 4096), 4097, 0, NULL, NULL),
		     EOVERFLOW);
	expect_errno(auraio_read(engine, fd, auraio_buf_fixed(0, 9000), 1, 0, NULL, NULL),
		     EOVERFLOW);
	expect_errno(auraio_read(engine, fd, auraio_buf_fixed(1, 0), 1, 0, NULL, NULL), EINVAL);
	expect_errno(auraio_read(engine, fd, auraio_buf_fixed(-1, 0), 1, 0, NULL, NULL), EINVAL);
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
}

Test(submit, the_in_flight_limit_refuses_with_eagain_and_frees_on_completion)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_request_t *r1, *r2;
	auraio_ring_stats_t rs;
	int p[2];
	char b1[8], b2[8], b3[8];
	ssize_t res;

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 8;
	o.initial_in_flight = 2;
	o.disable_adaptive = true;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	/* Pipe reads stay in flight until the test writes. */
	r1 = auraio_read(e, p[0], auraio_buf(b1), 1, 0, NULL, NULL);
	r2 = auraio_read(e, p[0], auraio_buf(b2), 1, 0, NULL, NULL);
	cr_assert_not_null(r1);
	cr_assert_not_null(r2);
	errno = 0;
	cr_assert_null(auraio_read(e, p[0], auraio_buf(b3), 1, 0, NULL, NULL));
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(auraio_get_ring_stats(e, 0, &rs), 0);
	cr_assert_eq(rs.eagain, 1);
	cr_assert_eq(rs.in_flight, 2);
	cr_assert_eq(write(p[1], "xy", 2), 2);
	cr_assert_eq(auraio_request_wait(e, r1, 5000, &res), 0);
	cr_assert_eq(res, 1);
	cr_assert_eq(auraio_request_wait(e, r2, 5000, &res), 0);
	cr_assert_eq(res, 1);
	/* Both slots are free again. */
	r1 = auraio_read(e, fd, auraio_buf(b3), 1, 0, NULL, NULL);
	cr_assert_not_null(r1);
	cr_assert_eq(auraio_request_wait(e, r1, 5000, &res), 0);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

Test(submit, request_wait_on_a_callback_request_is_refused)
{
	struct recorder rec = { 0 };
	char buf[16];
	auraio_request_t *req = auraio_read(engine, fd, auraio_buf(buf), 16, 0, record_cb, &rec);

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 0, NULL), -EINVAL);
	while (atomic_load(&rec.calls) == 0)
		auraio_wait(engine, 1000);
}

Test(submit, request_wait_times_out_and_the_request_stays_waitable)
{
	int p[2];
	char b;
	ssize_t res = 0;
	auraio_request_t *req;

	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 20, &res), -ETIMEDOUT);
	cr_assert_eq(write(p[1], "z", 1), 1);
	cr_assert_eq(auraio_request_wait(engine, req, 5000, &res), 0);
	cr_assert_eq(res, 1);
	cr_assert_eq(b, 'z');
	close(p[0]);
	close(p[1]);
}

struct seen {
	uint64_t lat;
	void *ud;
	int fd;
	int calls;
};

static void identity_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct seen *p = ud;

	(void) res;
	p->lat = auraio_request_latency_ns(req);
	p->ud = auraio_request_user_data(req);
	p->fd = auraio_request_fd(req);
	p->calls++;
}

Test(submit, latency_and_identity_are_readable_inside_the_callback)
{
	struct seen s = { 0 };
	char buf[64];

	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 0, identity_cb, &s));
	while (s.calls == 0)
		auraio_wait(engine, 1000);
	cr_assert_gt(s.lat, 0);
	cr_assert_eq(s.ud, &s);
	cr_assert_eq(s.fd, fd);
}

Test(submit, request_wait_with_timeout_zero_reaps_a_finished_request)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	int p[2], rc;
	char b = 0;
	ssize_t res = 0;
	auraio_request_t *req;

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "z", 1), 1);
	req = auraio_read(engine, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	/* Only this thread reaps: a timeout of 0 must not mean "never look". */
	while ((rc = auraio_request_wait(engine, req, 0, &res)) == -ETIMEDOUT &&
	       test_now_ns() < deadline)
		;
	cr_assert_eq(rc, 0, "request_wait(0) never collected a finished request: %d", rc);
	cr_assert_eq(res, 1);
	cr_assert_eq(b, 'z');
	close(p[0]);
	close(p[1]);
}

/*
 * A callback's submissions join the delivery's batch and go to the kernel as soon as it
 * holds the batch threshold - not only when the delivery ends: held for the whole
 * delivery, the requests one pass resubmitted reached the device together, as a convoy
 * (docs/auraio.md). Below the threshold they stay staged.
 */
struct cb_batch {
	int fd, done;
	uint32_t threshold;
	uint64_t sqes_before, sqes_below, sqes_at;
	char buf[16][512];
};

static void count_done(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	cr_assert_eq(res, 512);
	((struct cb_batch *) ud)->done++;
}

static void submit_a_batch_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct cb_batch *c = ud;
	auraio_ring_stats_t rs;

	(void) req;
	(void) res;
	cr_assert_eq(auraio_get_ring_stats(engine, 0, &rs), 0);
	c->threshold = rs.batch_threshold;
	c->sqes_before = rs.sqes_submitted;
	for (uint32_t i = 0; i < c->threshold && i < 16; i++) {
		cr_assert_not_null(auraio_read(engine, c->fd, auraio_buf(c->buf[i]), 512,
					       (off_t) i * 512, count_done, c));
		cr_assert_eq(auraio_get_ring_stats(engine, 0, &rs), 0);
		if (i + 2 == c->threshold)
			c->sqes_below = rs.sqes_submitted;
		else if (i + 1 == c->threshold)
			c->sqes_at = rs.sqes_submitted;
	}
}

Test(submit, a_callbacks_batch_goes_to_the_kernel_once_it_reaches_the_threshold)
{
	struct cb_batch c = { .fd = fd };
	auraio_stats_t st;
	char one[1];

	auraio_destroy(engine);
	engine = test_fixed_engine(1, 64); /* batch threshold min(64 / 4, 16) = 16 */
	cr_assert_not_null(engine);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("io_uring batching; this engine uses worker threads: %s",
			     st.backend_reason);
	if (st.sqpoll_active)
		cr_skip_test("SQPOLL ring: the kernel thread takes entries without a call");
	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(one), 1, 0, submit_a_batch_cb, &c));
	while (c.threshold == 0)
		cr_assert_geq(auraio_wait(engine, 1000), 0);
	cr_assert_eq(c.threshold, 16);
	cr_assert_eq(c.sqes_below, c.sqes_before, "below the threshold the batch waits");
	cr_assert_eq(c.sqes_at, c.sqes_before + 16, "the full batch was sent from the callback");
	while (c.done < 16)
		cr_assert_geq(auraio_wait(engine, 1000), 0);
}
