/* SPDX-License-Identifier: MIT */
/*
 * The read/write fast path (submit.c, submit_rw_fast and its tail calls): every
 * documented error of auraio_read/auraio_write from outside and from inside a callback,
 * the sq_lock free after every way out (EAGAIN at the limit, an empty request pool, a
 * full SQ, a registered O_DIRECT file, destroy begun, a fault rule armed), on locked and
 * single_thread engines. Routes and contended locks: test_fast_path_sharing.c; the reap
 * pass: test_reap_pass.c.
 *
 * White-box where no public call reaches a case on demand: the tests read the rings'
 * lock words and fill the SQ with no-ops. Reads per chain in the single_thread test:
 * AURA_FAST_PATH_ROUNDS (default 200).
 */
#include "fast_path_test.h"

TestSuite(fast_path, .timeout = 30);

/* ---- every documented error, outside and inside a callback ---- */

typedef auraio_request_t *(*rw_fn)(auraio_engine_t *, int, auraio_buf_t, size_t, off_t,
				   auraio_callback_t, void *);

static const struct {
	const char *name;
	rw_fn fn;
} rw_fns[] = { { "read", auraio_read }, { "write", auraio_write } };

static char ebuf[4096] __attribute__((aligned(4096)));

static void expect_err(auraio_request_t *req, int err, int want, const char *op, const char *what,
		       const char *where)
{
	cr_assert_null(req, "%s with %s (%s) was accepted", op, what, where);
	cr_assert_eq(err, want, "%s with %s (%s): errno %d (%s), want %d", op, what, where, err,
		     strerror(err), want);
}

#define EXPECT_ERR(call, want, what)                                                               \
	do {                                                                                       \
		auraio_request_t *req_;                                                            \
		errno = 0;                                                                         \
		req_ = (call);                                                                     \
		expect_err(req_, errno, want, op, what, where);                                    \
	} while (0)

/* e has buffer 0 registered (4096 bytes) and nothing else registered. */
static void check_argument_errors(auraio_engine_t *e, int fd, auraio_callback_t cb, void *ud,
				  const char *where)
{
	for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
		rw_fn f = rw_fns[i].fn;
		const char *op = rw_fns[i].name;
		auraio_buf_t bad_type = auraio_buf(ebuf);

		bad_type.type = (auraio_buf_type_t) 7;
		EXPECT_ERR(f(NULL, fd, auraio_buf(ebuf), 512, 0, cb, ud), EINVAL, "a NULL engine");
		EXPECT_ERR(f(NULL, -1, auraio_buf(NULL), SIZE_MAX, -1, cb, ud), EINVAL,
			   "everything wrong");
		EXPECT_ERR(f(e, fd, auraio_buf(NULL), 512, 0, cb, ud), EINVAL, "a NULL buffer");
		EXPECT_ERR(f(e, -1, auraio_buf(ebuf), 512, 0, cb, ud), EINVAL, "fd -1");
		EXPECT_ERR(f(e, INT_MIN, auraio_buf(ebuf), 512, 0, cb, ud), EINVAL, "fd INT_MIN");
		EXPECT_ERR(f(e, fd, auraio_buf(ebuf), 512, -1, cb, ud), EINVAL, "offset -1");
		EXPECT_ERR(f(e, fd, auraio_buf(ebuf), 512, (off_t) INT64_MIN, cb, ud), EINVAL,
			   "offset INT64_MIN");
		EXPECT_ERR(f(e, fd, auraio_buf(ebuf), (size_t) UINT32_MAX + 1, 0, cb, ud), EINVAL,
			   "len UINT32_MAX + 1");
		EXPECT_ERR(f(e, fd, auraio_buf(ebuf), SIZE_MAX, 0, cb, ud), EINVAL, "len SIZE_MAX");
		EXPECT_ERR(f(e, fd, bad_type, 512, 0, cb, ud), EINVAL, "an unknown buffer type");
		EXPECT_ERR(f(e, fd, auraio_buf_fixed(1, 0), 512, 0, cb, ud), EINVAL,
			   "an unregistered buffer index");
		EXPECT_ERR(f(e, fd, auraio_buf_fixed(-1, 0), 512, 0, cb, ud), EINVAL,
			   "buffer index -1");
		EXPECT_ERR(f(e, fd, auraio_buf_fixed(0, 4000), 512, 0, cb, ud), EOVERFLOW,
			   "a registered buffer overrun");
		EXPECT_ERR(f(e, fd, auraio_buf_fixed(0, 0), 4097, 0, cb, ud), EOVERFLOW,
			   "a registered buffer too short");
		EXPECT_ERR(f(e, fd, auraio_buf_fixed(0, 0), 512, -1, cb, ud), EINVAL,
			   "a registered buffer at offset -1");
		assert_unlocked(e, where);
	}
}

struct err_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int ran;
};

static void err_check_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct err_ctx *c = ud;
	atomic_int dummy = 0;

	(void) req;
	cr_assert_eq(res, 512);
	/* Several times: through a route refresh (every 32 submissions) too. */
	for (int i = 0; i < 3; i++)
		check_argument_errors(c->e, c->fd, count_cb, &dummy, "inside a callback");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path, every_argument_error_is_the_documented_one_outside_and_inside_a_callback)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(8192, 0);
		struct iovec reg = { .iov_base = ebuf, .iov_len = sizeof(ebuf) };
		struct err_ctx c = { .e = e, .fd = fd };
		static char b[512];
		auraio_stats_t st;

		cr_assert_eq(auraio_register_buffers(e, &reg, 1), 0);
		check_argument_errors(e, fd, NULL, NULL, mode_name(single));
		check_argument_errors(e, fd, count_cb, &c.ran, mode_name(single));
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, err_check_cb, &c));
		wait_flag(e, &c.ran, 1);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		cr_assert_eq(st.total.ops_submitted, 1, "a refused call submitted something");
		cr_assert_eq(st.total.eagain, 0, "an invalid call counted as EAGAIN");
		cr_assert_eq(auraio_unregister_buffers(e), 0);
		auraio_destroy(e);
		close(fd);
	}
}

/* A fault rule armed keeps reads and writes off the fast path: the rule applies. */
struct fault_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int done;
	atomic_long inner;
};

static void fault_inner_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct fault_ctx *c = ud;

	(void) req;
	atomic_store(&c->inner, (long) res);
	atomic_fetch_add(&c->done, 1);
}

static void fault_outer_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct fault_ctx *c = ud;
	static char b[512];

	(void) req;
	(void) res;
	cr_assert_not_null(auraio_write(c->e, c->fd, auraio_buf(b), 512, 0, fault_inner_cb, c));
	assert_unlocked(c->e, "a write from a callback with a fault rule armed");
	atomic_fetch_add(&c->done, 1);
}

Test(fast_path, a_fault_rule_armed_applies_to_reads_and_writes_outside_and_inside_callbacks)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(8192, 0);
		auraio_fault_t f = { .ops = AURAIO_FAULT_OP_READ | AURAIO_FAULT_OP_WRITE,
				     .fd = -1,
				     .kind = AURAIO_FAULT_ERROR,
				     .error = EIO };
		struct fault_ctx c = { .e = e, .fd = fd };
		static char b[512];
		auraio_request_t *req;
		ssize_t res = 0;
		int rc = auraio_fault_set(e, &f);

		if (rc == -ENOTSUP)
			cr_skip_test("fault injection is not compiled into this build");
		cr_assert_eq(rc, 0);
		for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
			cr_assert_not_null(
			    req = rw_fns[i].fn(e, fd, auraio_buf(b), 512, 0, NULL, NULL));
			cr_assert_eq(auraio_request_wait(e, req, 5000, &res), 0);
			cr_assert_eq(res, -EIO, "%s outside a callback (%s): %zd", rw_fns[i].name,
				     mode_name(single), res);
		}
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, fault_outer_cb, &c));
		wait_flag(e, &c.done, 2);
		cr_assert_eq(atomic_load(&c.inner), -EIO, "a write from a callback (%s): %ld",
			     mode_name(single), atomic_load(&c.inner));
		cr_assert_eq(auraio_fault_clear(e), 0);
		auraio_destroy(e);
		close(fd);
	}
}

/* Callbacks that auraio_destroy() runs: a submit is refused with ESHUTDOWN, an invalid
 * one with its own error first. */
struct down_ctx {
	auraio_engine_t *e;
	int fd;
	int errs[2][3];
	auraio_request_t *got;
	int ran;
};

static void down_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct down_ctx *c = ud;
	static char b[512];

	(void) req;
	(void) res;
	for (int i = 0; i < 2; i++) {
		errno = 0;
		c->got = rw_fns[i].fn(c->e, c->fd, auraio_buf(b), 512, 0, count_cb, NULL);
		c->errs[i][0] = c->got ? 0 : errno;
		errno = 0;
		c->got = rw_fns[i].fn(c->e, -1, auraio_buf(b), 512, 0, count_cb, NULL);
		c->errs[i][1] = c->got ? 0 : errno;
		errno = 0;
		c->got = rw_fns[i].fn(c->e, c->fd, auraio_buf(NULL), 512, 0, count_cb, NULL);
		c->errs[i][2] = c->got ? 0 : errno;
	}
	assert_unlocked(c->e, "a callback run by destroy");
	c->ran++;
}

Test(fast_path, a_submit_from_a_callback_that_destroy_runs_is_eshutdown)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(8192, 0);
		struct down_ctx c = { .e = e, .fd = fd };
		static char b[512];

		/* The route is this engine's, fresh: a callback would take the inline path. */
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, down_cb, &c));
		auraio_destroy(e); /* runs down_cb */
		cr_assert_eq(c.ran, 1);
		for (int i = 0; i < 2; i++) {
			cr_assert_eq(c.errs[i][0], ESHUTDOWN, "%s during destroy (%s): %s",
				     rw_fns[i].name, mode_name(single), strerror(c.errs[i][0]));
			cr_assert_eq(c.errs[i][1], EINVAL, "%s fd -1 during destroy: %s",
				     rw_fns[i].name, strerror(c.errs[i][1]));
			cr_assert_eq(c.errs[i][2], EINVAL, "%s NULL buffer during destroy: %s",
				     rw_fns[i].name, strerror(c.errs[i][2]));
		}
		close(fd);
	}
}

/* ---- the sq_lock is released on every way out ---- */

/* A registered O_DIRECT file leaves the fast path with the lock held (read_fallback),
 * and the general path checks the alignment: misaligned EINVAL, aligned goes. */
struct direct_ctx {
	auraio_engine_t *e;
	int fd;
	size_t off_align, mem_align;
	char *buf;
	atomic_int ran, done;
};

/* The aligned read goes into dst: each read in flight has its own buffer. */
static void direct_checks(struct direct_ctx *c, char *dst, const char *where)
{
	auraio_engine_t *e = c->e;
	atomic_int *done = &c->done;
	auraio_request_t *req;

	for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
		const char *op = rw_fns[i].name;
		rw_fn f = rw_fns[i].fn;

		if (c->off_align > 1) {
			EXPECT_ERR(f(e, c->fd, auraio_buf(c->buf), 4096, (off_t) c->off_align / 2,
				     count_cb, done),
				   EINVAL, "a misaligned O_DIRECT offset");
			EXPECT_ERR(f(e, c->fd, auraio_buf(c->buf), 4095, 0, count_cb, done), EINVAL,
				   "a misaligned O_DIRECT length");
		}
		if (c->mem_align > 1)
			EXPECT_ERR(f(e, c->fd, auraio_buf(c->buf + 1), 4096, 0, count_cb, done),
				   EINVAL, "a misaligned O_DIRECT buffer");
		assert_unlocked(e, where);
	}
	/* Aligned: accepted (a read only: the file keeps its pattern). */
	req = auraio_read(e, c->fd, auraio_buf(dst), 4096, 8192, count_cb, done);
	cr_assert_not_null(req, "an aligned O_DIRECT read (%s): %s", where, strerror(errno));
	cr_assert(req->flags & REQF_FIXED_FILE, "the registered slot was not used");
	assert_unlocked(e, where);
}

static void direct_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct direct_ctx *c = ud;

	(void) req;
	cr_assert_eq(res, 4096);
	if (atomic_fetch_add(&c->ran, 1) == 0)
		direct_checks(c, c->buf + 8192, "inside a callback");
}

Test(fast_path, a_registered_o_direct_file_leaves_the_fast_path_unlocked_and_is_checked)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(65536, O_DIRECT);
		struct direct_ctx c = { .e = e, .fd = fd };
		uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
		auraio_stats_t st;

		if (auraio_get_dio_alignment(fd, &c.mem_align, &c.off_align) != 0)
			cr_skip_test("the file system does not report O_DIRECT alignment");
		c.buf = auraio_buffer_alloc(e, 3 * 4096);
		cr_assert_not_null(c.buf);
		cr_assert_eq(auraio_register_files(e, &fd, 1), 0);
		direct_checks(&c, c.buf + 4096, mode_name(single));
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(c.buf), 4096, 0, direct_cb, &c));
		wait_flag(e, &c.ran, 1);
		do { /* the aligned reads: done when nothing is in flight */
			cr_assert_geq(auraio_wait(e, 100), 0);
			cr_assert_eq(auraio_get_stats(e, &st), 0);
			cr_assert_lt(test_now_ns(), deadline);
		} while (st.total.in_flight);
		cr_assert_eq(st.total.errors, 0);
		cr_assert_eq(st.total.ops_submitted, 3);
		cr_assert_eq(auraio_unregister_files(e), 0);
		auraio_destroy(e);
		close(fd);
	}
}

/* Reads of a pipe stay in flight until its write end closes (then they read EOF). */
struct held {
	int p[4][2];
	int n;
};

static void hold_reads(auraio_engine_t *e, struct held *h, int n, atomic_int *done)
{
	static char b[4][1];

	h->n = n;
	for (int i = 0; i < n; i++) {
		cr_assert_eq(pipe(h->p[i]), 0);
		cr_assert_not_null(
		    auraio_read(e, h->p[i][0], auraio_buf(b[i]), 1, 0, count_cb, done));
	}
}

static void release_reads(struct held *h)
{
	for (int i = 0; i < h->n; i++)
		close(h->p[i][1]);
}

static void close_held(struct held *h)
{
	for (int i = 0; i < h->n; i++)
		close(h->p[i][0]);
}

struct limit_ctx {
	auraio_engine_t *e;
	int fd, pipe_fd;
	atomic_int *done;
	atomic_int ran;
	int err;
	bool fourth;
};

static void at_limit_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct limit_ctx *c = ud;
	static char b[2][512];

	(void) req;
	cr_assert_eq(res, 512);
	/* 3 held reads in flight: a 4th reaches the limit, a 5th is refused. */
	c->fourth = auraio_read(c->e, c->pipe_fd, auraio_buf(b[0]), 1, 0, count_cb, c->done);
	assert_unlocked(c->e, "a callback's read up to the limit");
	errno = 0;
	cr_assert_null(auraio_read(c->e, c->fd, auraio_buf(b[1]), 512, 0, count_cb, c->done));
	c->err = errno;
	assert_unlocked(c->e, "a callback's read refused at the limit");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path, eagain_at_the_limit_leaves_the_sq_lock_free_outside_and_inside_a_callback)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 4, single);
		int fd = temp_file(8192, 0);
		atomic_int done = 0;
		struct held h;
		int p[2];
		static char b[512];
		struct limit_ctx c = { .e = e, .fd = fd, .done = &done };
		auraio_stats_t st;

		hold_reads(e, &h, 4, &done);
		for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
			errno = 0;
			cr_assert_null(rw_fns[i].fn(e, fd, auraio_buf(b), 512, 0, count_cb, &done));
			cr_assert_eq(errno, EAGAIN, "%s at the limit (%s): %s", rw_fns[i].name,
				     mode_name(single), strerror(errno));
			assert_unlocked(e, "EAGAIN outside a callback");
		}
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		cr_assert_eq(st.total.eagain, 2);
		release_reads(&h);
		wait_flag(e, &done, 4);
		close_held(&h);

		/* Inside a callback: 3 held, the callback's own read done. */
		hold_reads(e, &h, 3, &done);
		cr_assert_eq(pipe(p), 0);
		c.pipe_fd = p[0];
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, at_limit_cb, &c));
		wait_flag(e, &c.ran, 1);
		cr_assert(c.fourth, "the read up to the limit was refused");
		cr_assert_eq(c.err, EAGAIN, "%s", strerror(c.err));
		release_reads(&h);
		close(p[1]);
		wait_flag(e, &done, 4 + 4);
		close_held(&h);
		close(p[0]);
		assert_unlocked(e, "the end");
		auraio_destroy(e);
		close(fd);
	}
}

/* Every request held (completed waitables not collected), below the limit: the fast
 * path leaves after taking the lock, the general path says EAGAIN. */
Test(fast_path, an_empty_request_pool_outside_a_callback_is_eagain_and_leaves_the_lock_free)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 4, single);
		int fd = temp_file(8192, 0);
		static char b[9][512];
		auraio_request_t *reqs[8], *more;
		ssize_t res = 0;
		auraio_stats_t st;
		uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

		for (int i = 0; i < 8; i++) {
			cr_assert_not_null(
			    reqs[i] = auraio_read(e, fd, auraio_buf(b[i]), 512, 0, NULL, NULL));
			do {
				cr_assert_geq(auraio_wait(e, 100), 0);
				cr_assert_eq(auraio_get_stats(e, &st), 0);
				cr_assert_lt(test_now_ns(), deadline);
			} while (st.total.in_flight);
		}
		for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
			errno = 0;
			cr_assert_null(rw_fns[i].fn(e, fd, auraio_buf(b[8]), 512, 0, NULL, NULL));
			cr_assert_eq(errno, EAGAIN, "%s (%s): %s", rw_fns[i].name,
				     mode_name(single), strerror(errno));
			assert_unlocked(e, "an empty request pool");
		}
		cr_assert_eq(auraio_request_wait(e, reqs[0], 1000, &res), 0);
		cr_assert_not_null(more = auraio_read(e, fd, auraio_buf(b[8]), 512, 0, NULL, NULL),
				   "%s", strerror(errno));
		cr_assert_eq(auraio_request_wait(e, more, 5000, &res), 0);
		cr_assert_eq(res, 512);
		for (int i = 1; i < 8; i++)
			cr_assert_eq(auraio_request_wait(e, reqs[i], 1000, &res), 0);
		auraio_destroy(e);
		close(fd);
	}
}

/* sq_lock held: fill r's SQ with no-ops that complete as internal operations (as a
 * cancel's do), unpublished; returns how many. */
static unsigned fill_sq_with_nops(struct ring *r)
{
	struct io_uring_sqe *sqe;
	unsigned n = 0;

	while ((sqe = uring_peek_sqe(r))) {
		uring_take_sqe(r);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, UD_INTERNAL);
		counter_add(&r->internal_submitted, 1);
		n++;
	}
	return n;
}

struct full_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int done, ran;
	unsigned nops;
	bool got;
};

static void full_sq_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct full_ctx *c = ud;
	struct ring *r = &c->e->rings[0];
	static char b[512];

	(void) req;
	cr_assert_eq(res, 512);
	sq_lock(r);
	c->nops += fill_sq_with_nops(r);
	sq_unlock(r);
	c->got = auraio_read(c->e, c->fd, auraio_buf(b), 512, 0, count_cb, &c->done) != NULL;
	assert_unlocked(c->e, "a callback's read into a full SQ");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path, a_full_sq_hands_the_read_to_the_general_path_which_makes_room)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(8192, 0);
		struct ring *r = &e->rings[0];
		struct full_ctx c = { .e = e, .fd = fd };
		static char b[512];
		uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

		if (!on_uring(e))
			cr_skip_test("the SQ is io_uring's; this engine uses worker threads");
		for (size_t i = 0; i < ARRAY_SIZE(rw_fns); i++) {
			sq_lock(r);
			c.nops += fill_sq_with_nops(r);
			sq_unlock(r);
			cr_assert_eq(c.nops, 8 * (i + 1), "the SQ had room for %u", c.nops);
			cr_assert_not_null(
			    rw_fns[i].fn(e, fd, auraio_buf(b), 512, 0, count_cb, &c.done),
			    "%s into a full SQ (%s): %s", rw_fns[i].name, mode_name(single),
			    strerror(errno));
			assert_unlocked(e, "a read into a full SQ");
			wait_flag(e, &c.done, (int) i + 1);
		}
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, full_sq_cb, &c));
		wait_flag(e, &c.ran, 1);
		cr_assert(c.got, "a callback's read into a full SQ was refused");
		wait_flag(e, &c.done, 3);
		while (counter_get(&r->internal_completed) < counter_get(&r->internal_submitted)) {
			cr_assert_geq(auraio_wait(e, 100), 0);
			cr_assert_lt(test_now_ns(), deadline, "the no-ops never completed");
		}
		cr_assert_gt(c.nops, 16, "the callback found no room to fill");
		cr_assert_eq(counter_get(&r->internal_completed), c.nops,
			     "every no-op completes once, counted as internal");
		auraio_destroy(e);
		close(fd);
	}
}

/* ---- single_thread: callbacks resubmitting through the fast path ---- */

Test(fast_path, single_thread_callbacks_resubmit_with_no_lock_touched)
{
	int rounds = (int) test_env_u64("AURA_FAST_PATH_ROUNDS", 200);
	auraio_engine_t *e = engine_with(1, 16, true);
	int fd = temp_file(64 * 4096, 0);
	atomic_int bad = 0, finished = 0;
	struct chain ch[8];
	auraio_stats_t st;

	for (int i = 0; i < 8; i++) {
		ch[i] = (struct chain){ .e = e,
					.fd = fd,
					.left = rounds,
					.off = (off_t) i * 4096,
					.bad = &bad,
					.finished = &finished };
		cr_assert_not_null(
		    auraio_read(e, fd, auraio_buf(ch[i].buf), 512, ch[i].off, chain_cb, &ch[i]));
	}
	wait_flag(e, &finished, 8);
	cr_assert_eq(atomic_load(&bad), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.total.ops_completed, (uint64_t) rounds * 8);
	cr_assert_eq(st.total.bytes_read, (uint64_t) rounds * 8 * 512);
	cr_assert_eq(hist_total(&e->rings[0]), st.total.ops_completed);
	cr_assert_eq(atomic_load(&e->rings[0].sq_lock.v), 0, "a single_thread ring was locked");
	auraio_destroy(e);
	close(fd);
}
