/* SPDX-License-Identifier: MIT */
/* Fault injection: fail the Nth operation, short transfers, torn writes, sticky faults. */
#include <auraio.h>

#include "test_util.h"

static auraio_engine_t *engine;
static int fd;

static void setup(void)
{
	engine = auraio_create();
	cr_assert_not_null(engine);
	fd = temp_file(65536, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(fault_injection, .init = setup, .fini = teardown);

static void set_or_skip(const auraio_fault_t *f)
{
	int rc = auraio_fault_set(engine, f);

	if (rc == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	cr_assert_eq(rc, 0);
}

static ssize_t do_write(const void *buf, size_t len, off_t off)
{
	ssize_t res = -12345;
	auraio_request_t *req =
	    auraio_write(engine, fd, auraio_buf((void *) buf), len, off, NULL, NULL);

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	return res;
}

static ssize_t do_read(void *buf, size_t len, off_t off)
{
	ssize_t res = -12345;
	auraio_request_t *req = auraio_read(engine, fd, auraio_buf(buf), len, off, NULL, NULL);

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	return res;
}

Test(fault_injection, the_nth_matching_operation_fails_with_the_chosen_errno)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_READ,
			     .fd = -1,
			     .skip = 2,
			     .count = 1,
			     .kind = AURAIO_FAULT_ERROR,
			     .error = EIO };
	char buf[512];
	auraio_stats_t st;

	set_or_skip(&f);
	cr_assert_eq(do_write(buf, 512, 0), 512, "writes do not match a read rule");
	cr_assert_eq(do_read(buf, 512, 0), 512);
	cr_assert_eq(do_read(buf, 512, 0), 512);
	cr_assert_eq(do_read(buf, 512, 0), -EIO, "the third read is the one hit");
	cr_assert_eq(do_read(buf, 512, 0), 512, "count = 1: only one is hit");
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.faults_injected, 1);
}

Test(fault_injection, a_failed_write_does_not_touch_the_file)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE,
			     .fd = fd,
			     .count = 1,
			     .kind = AURAIO_FAULT_ERROR,
			     .error = ENOSPC };
	char zeros[4096] = { 0 }, check[4096];

	set_or_skip(&f);
	cr_assert_eq(do_write(zeros, sizeof(zeros), 0), -ENOSPC);
	cr_assert_eq(pread(fd, check, sizeof(check), 0), 4096);
	cr_assert(check_pattern(check, sizeof(check), 0), "the faulted write reached the file");
}

Test(fault_injection, a_short_read_and_a_short_write_transfer_only_the_prefix)
{
	auraio_fault_t f = { .fd = -1, .count = 2, .kind = AURAIO_FAULT_SHORT, .keep = 100 };
	char buf[4096], zeros[4096] = { 0 }, check[4096];

	set_or_skip(&f);
	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(do_read(buf, sizeof(buf), 0), 100);
	cr_assert(check_pattern(buf, 100, 0));
	cr_assert_eq((uint8_t) buf[100], 0xee, "read past the short count");
	cr_assert_eq(do_write(zeros, sizeof(zeros), 0), 100);
	cr_assert_eq(pread(fd, check, sizeof(check), 0), 4096);
	cr_assert_eq(check[99], 0);
	cr_assert(check_pattern(check + 100, 3996, 100), "wrote past the short count");
}

/* A SHORT rule only cuts the length: what the kernel then does is the result - fewer
 * bytes at the end of the file, or its error - never `keep` claimed transferred. */
Test(fault_injection, a_short_cut_reports_what_the_kernel_did_not_keep)
{
	auraio_fault_t f = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_SHORT, .keep = 100 };
	char buf[4096];

	set_or_skip(&f);
	cr_assert_eq(do_read(buf, sizeof(buf), 65536 - 40), 40, "40 bytes were left to read");
	cr_assert(check_pattern(buf, 40, 65536 - 40));
	set_or_skip(&f);
	cr_assert_eq(do_read(buf, sizeof(buf), 65536), 0, "at the end of the file: 0");
}

Test(fault_injection, a_short_writev_cuts_the_iovec_list)
{
	auraio_fault_t f = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_SHORT, .keep = 700 };
	char a[512] = { 0 }, b[512] = { 0 }, check[1024];
	struct iovec iov[2] = { { a, 512 }, { b, 512 } };
	ssize_t res = 0;
	auraio_request_t *req;

	set_or_skip(&f);
	req = auraio_writev(engine, fd, iov, 2, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	cr_assert_eq(res, 700);
	cr_assert_eq(pread(fd, check, sizeof(check), 0), 1024);
	cr_assert_eq(check[699], 0);
	cr_assert(check_pattern(check + 700, 324, 700));
}

Test(fault_injection, a_torn_write_leaves_a_sector_prefix_and_reports_failure)
{
	char zeros[4096] = { 0 }, check[4096];

	for (size_t keep = 0; keep <= 4096; keep += 512) {
		auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE,
				     .fd = -1,
				     .count = 1,
				     .kind = AURAIO_FAULT_TEAR,
				     .keep = keep + 100 /* rounds down */ };
		char orig[4096];

		fill_pattern(orig, sizeof(orig), 0);
		cr_assert_eq(pwrite(fd, orig, sizeof(orig), 0), 4096);
		set_or_skip(&f);
		cr_assert_eq(do_write(zeros, sizeof(zeros), 0), -EIO, "keep %zu", keep);
		cr_assert_eq(pread(fd, check, sizeof(check), 0), 4096);
		for (size_t i = 0; i < 4096; i++) {
			uint8_t want = i < keep ? 0 : pattern_byte(i);

			cr_assert_eq((uint8_t) check[i], want, "keep %zu: byte %zu", keep, i);
		}
	}
}

Test(fault_injection, a_sticky_fault_holds_until_cleared)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE,
			     .fd = -1,
			     .count = 0,
			     .kind = AURAIO_FAULT_ERROR,
			     .error = ENOSPC };
	char buf[512] = { 0 };

	set_or_skip(&f);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(do_write(buf, sizeof(buf), 0), -ENOSPC);
	cr_assert_eq(auraio_fault_clear(engine), 0);
	cr_assert_eq(do_write(buf, sizeof(buf), 0), 512);
}

Test(fault_injection, a_fault_on_an_fsync_fails_it)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC,
			     .fd = -1,
			     .count = 1,
			     .kind = AURAIO_FAULT_ERROR,
			     .error = EIO };
	ssize_t res = 0;
	auraio_request_t *req;

	set_or_skip(&f);
	req = auraio_fsync(engine, fd, AURAIO_FSYNC_DATASYNC, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	cr_assert_eq(res, -EIO);
}

Test(fault_injection, a_rule_for_another_fd_does_not_fire)
{
	auraio_fault_t f = { .fd = fd + 1000, .count = 0, .kind = AURAIO_FAULT_ERROR };
	char buf[512];

	set_or_skip(&f);
	cr_assert_eq(do_read(buf, sizeof(buf), 0), 512);
}

Test(fault_injection, bad_rules_are_refused)
{
	auraio_fault_t f = { .fd = -1, .kind = (auraio_fault_kind_t) 9 };

	if (auraio_fault_clear(engine) == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	cr_assert_eq(auraio_fault_set(engine, &f), -EINVAL);
	f.kind = AURAIO_FAULT_ERROR;
	f.error = -5;
	cr_assert_eq(auraio_fault_set(engine, &f), -EINVAL);
	cr_assert_eq(auraio_fault_set(engine, NULL), -EINVAL);
	cr_assert_eq(auraio_fault_set(NULL, &f), -EINVAL);
}

/* ENTER rules model io_uring_enter refusing entries; the thread backend has no such call. */
static void skip_unless_io_uring(void)
{
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
}

Test(fault_injection, a_submission_the_kernel_refuses_goes_in_with_the_next_wait)
{
	auraio_fault_t f = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_ENTER, .error = EAGAIN };
	char buf[512];
	auraio_stats_t st;

	skip_unless_io_uring();
	set_or_skip(&f);
	cr_assert_eq(do_read(buf, sizeof(buf), 512), 512);
	cr_assert(check_pattern(buf, sizeof(buf), 512));
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.faults_injected, 1, "the read's first entry was refused");
	cr_assert_eq(do_read(buf, sizeof(buf), 0), 512, "count = 1: the next one is taken");
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.faults_injected, 1);
}

/* A cancel goes into the kernel from auraio_cancel itself; if that entry is refused, the
 * next wait must submit it, or the request it cancels is never completed. */
Test(fault_injection, a_cancel_the_kernel_refuses_goes_in_with_the_next_wait)
{
	auraio_fault_t f = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_ENTER };
	auraio_request_t *req;
	auraio_stats_t st;
	ssize_t res = 0;
	char b[8];
	int p[2];

	skip_unless_io_uring();
	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(b), 1, 0, NULL, NULL); /* stays in flight */
	cr_assert_not_null(req);
	cr_assert_eq(auraio_wait(engine, 0), 0, "nothing completes: the pipe is empty");
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.total.sqes_submitted, 1, "the read is in the kernel");
	set_or_skip(&f);
	cr_assert_eq(auraio_cancel(engine, req), 0);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.faults_injected, 1, "the cancel's entry was refused");
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	close(p[0]);
	close(p[1]);
}

/* Destroy cancels what is in flight and waits for it; a refused entry of that cancel is
 * retried, not waited on forever (a hang here is the failure; the timeout reports it). */
Test(fault_injection, destroy_retries_a_cancel_the_kernel_refuses, .timeout = 60)
{
	auraio_fault_t f = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_ENTER };
	auraio_request_t *req;
	auraio_stats_t st;
	char b[8];
	int p[2];

	skip_unless_io_uring();
	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_wait(engine, 0), 0);
	set_or_skip(&f);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.faults_injected, 0, "the rule is still armed for destroy's first entry");
	auraio_destroy(engine); /* its first entry is a cancel: refused */
	engine = NULL;
	close(p[0]);
	close(p[1]);
}

/* A callback filled the SQ with staged reads (queue_depth 4, limit 4) the kernel refuses,
 * then cancels one: the cancel must hand the staged entries to the kernel to get a slot,
 * and say -EAGAIN while the kernel refuses them. (With this limit the batch threshold is
 * 1: a callback's read is sent at once - unless, as here, the kernel refuses it.) */
struct full_sq {
	int pipe_rd;
	char b[4];
	auraio_request_t *reqs[4];
	int refused_rc, retried_rc; /* 1: not run yet */
};

static void fill_sq_and_cancel_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	auraio_fault_t f = { .fd = -1, .kind = AURAIO_FAULT_ENTER }; /* every entry, EBUSY */
	struct full_sq *s = ud;

	(void) req;
	(void) res;
	if (auraio_fault_set(engine, &f) != 0)
		return;
	for (int i = 0; i < 4; i++)
		s->reqs[i] =
		    auraio_read(engine, s->pipe_rd, auraio_buf(&s->b[i]), 1, 0, NULL, NULL);
	s->refused_rc = auraio_cancel(engine, s->reqs[0]);
	auraio_fault_clear(engine);
	s->retried_rc = auraio_cancel(engine, s->reqs[0]);
}

/* A hang here is the failure (the cancel spun forever waiting for a free SQ entry). */
Test(fault_injection, a_cancel_that_finds_the_sq_full_and_the_kernel_refusing_is_eagain,
     .timeout = 20)
{
	struct full_sq s = { .refused_rc = 1, .retried_rc = 1 };
	ssize_t res = 0;
	char one[1];
	int p[2];

	auraio_destroy(engine);
	engine = test_fixed_engine(1, 4);
	cr_assert_not_null(engine);
	skip_unless_io_uring();
	if (auraio_fault_clear(engine) == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	cr_assert_eq(pipe(p), 0);
	s.pipe_rd = p[0];
	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(one), 1, 0, fill_sq_and_cancel_cb, &s));
	for (int i = 0; i < 100 && s.retried_rc == 1; i++)
		cr_assert_geq(auraio_wait(engine, 100), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_not_null(s.reqs[i], "read %d refused", i);
	cr_assert_eq(s.refused_rc, -EAGAIN, "refused cancel: %s", auraio_strerror(s.refused_rc));
	cr_assert_eq(s.retried_rc, 0, "retried cancel: %s", auraio_strerror(s.retried_rc));
	cr_assert_eq(auraio_request_wait(engine, s.reqs[0], 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	auraio_destroy(engine); /* cancels the other three */
	engine = NULL;
	close(p[0]);
	close(p[1]);
}

/* A faulted operation behind a link that was cancelled never ran: it completes with
 * -ECANCELED like the rest of the chain, not with the rule's error (found by
 * tests/io/test_engine_fuzz.c: the injected result overrode the chain's cancellation). */
Test(fault_injection, a_faulted_link_after_a_cancelled_one_completes_with_ecanceled)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE, .fd = -1, .count = 1, .error = EIO };
	char b[8] = "x";
	auraio_request_t *reqs[2];
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_READ, .buf = auraio_buf(b), .len = 1 },
		{ .opcode = AURAIO_OP_WRITE, .fd = fd, .buf = auraio_buf(b), .len = 1 },
	};
	ssize_t res = 0;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	ops[0].fd = p[0]; /* the read stays in flight: the pipe is empty */
	set_or_skip(&f);
	cr_assert_eq(auraio_submit_linked(engine, ops, 2, reqs), 0);
	cr_assert_eq(auraio_wait(engine, 0), 0, "nothing completes: the pipe is empty");
	cr_assert_eq(auraio_cancel(engine, reqs[0]), 0);
	cr_assert_eq(auraio_request_wait(engine, reqs[0], 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	cr_assert_eq(auraio_request_wait(engine, reqs[1], 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED, "the write never ran, got %zd", res);
	close(p[0]);
	close(p[1]);
}
