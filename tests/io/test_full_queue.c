/* SPDX-License-Identifier: MIT */
/*
 * Full queues and refusals: a submission queue holding entries the kernel refused, a
 * kernel that takes only part of what it was given, registration changes while entries
 * wait in the queue. A hang is the usual failure here; the suite's timeout reports it.
 */
#include <auraio.h>
#include <pthread.h>
#include <sched.h>

#include "fault_engine.h"

static auraio_engine_t *engine;
static int fd;

/* One ring of queue_depth 4 with a fixed limit of 4: the SQ has exactly 4 entries. */
static void setup(void)
{
	engine = test_fixed_engine(1, 4);
	cr_assert_not_null(engine);
	fd = temp_file(65536, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(full_queue, .init = setup, .fini = teardown, .timeout = 30);

static bool engine_uses_io_uring(void)
{
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	return st.backend == AURAIO_BACKEND_IO_URING;
}

/* ENTER rules model io_uring_enter refusing entries; the thread backend has no such call. */
static void refuse_every_entry_or_skip(void)
{
	auraio_fault_t f = { .fd = -1, .kind = AURAIO_FAULT_ENTER, .error = EAGAIN };
	int rc;

	if (!engine_uses_io_uring())
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
	rc = auraio_fault_set(engine, &f);
	if (rc == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	cr_assert_eq(rc, 0);
}

/*
 * A pipe read (in the kernel, never completing) cancelled twice while the kernel refuses
 * every entry: both cancel entries stay in the SQ. One request is in flight, so the limit
 * admits three more, but the SQ has room for only two.
 */
static auraio_request_t *two_refused_cancels(int p[2], char *b)
{
	auraio_request_t *req;

	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_wait(engine, 0), 0, "nothing completes: the pipe is empty");
	refuse_every_entry_or_skip();
	cr_assert_eq(auraio_cancel(engine, req), 0);
	cr_assert_eq(auraio_cancel(engine, req), 0, "a cancel again changes nothing");
	return req;
}

/* The kernel takes entries again: the cancels go in and the pipe read ends cancelled. */
static void accept_again_and_collect(auraio_request_t *req)
{
	ssize_t res = 0;

	cr_assert_eq(auraio_fault_clear(engine), 0);
	cr_assert_geq(auraio_flush(engine), 0);
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
}

Test(full_queue, a_submit_that_finds_the_sq_full_of_refused_cancels_is_eagain)
{
	auraio_request_t *req, *more[3];
	char b[4];
	int p[2];

	req = two_refused_cancels(p, b);
	for (int i = 0; i < 2; i++) {
		more[i] = auraio_read(engine, p[0], auraio_buf(&b[1 + i]), 1, 0, NULL, NULL);
		cr_assert_not_null(more[i], "read %d: %s", i, strerror(errno));
	}
	errno = 0;
	more[2] = auraio_read(engine, p[0], auraio_buf(&b[3]), 1, 0, NULL, NULL);
	cr_assert_null(more[2], "the SQ is full and the kernel refuses: no slot");
	cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
	accept_again_and_collect(req);
	more[2] = auraio_read(engine, p[0], auraio_buf(&b[3]), 1, 0, NULL, NULL);
	cr_assert_not_null(more[2], "the SQ has room again: %s", strerror(errno));
	close(p[1]); /* the reads end with EOF */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(auraio_request_wait(engine, more[i], 10000, NULL), 0);
	close(p[0]);
}

Test(full_queue, a_batch_that_finds_refused_cancels_in_the_sq_is_accepted_as_far_as_it_fits)
{
	auraio_request_t *req, *more[3] = { NULL, NULL, NULL };
	auraio_op_t ops[3];
	char b[4];
	int p[2], n;

	req = two_refused_cancels(p, b);
	for (int i = 0; i < 3; i++)
		ops[i] = (auraio_op_t){
			.opcode = AURAIO_OP_READ, .fd = p[0], .buf = auraio_buf(&b[1 + i]), .len = 1
		};
	n = auraio_submit_batch(engine, ops, 3, more);
	cr_assert_eq(n, 2, "the SQ has room for two: %d (%s)", n, auraio_strerror(n));
	accept_again_and_collect(req);
	close(p[1]);
	for (int i = 0; i < n; i++)
		cr_assert_eq(auraio_request_wait(engine, more[i], 10000, NULL), 0);
	close(p[0]);
}

Test(full_queue, a_chain_that_does_not_fit_beside_refused_cancels_is_eagain)
{
	auraio_request_t *req;
	auraio_op_t ops[3];
	char b[4];
	int p[2];

	req = two_refused_cancels(p, b);
	for (int i = 0; i < 3; i++)
		ops[i] = (auraio_op_t){ .opcode = AURAIO_OP_READ,
					.fd = fd,
					.buf = auraio_buf(&b[1 + i]),
					.len = 1,
					.offset = i };
	cr_assert_eq(auraio_submit_linked(engine, ops, 3, NULL), -EAGAIN);
	accept_again_and_collect(req);
	close(p[0]);
	close(p[1]);
}

/*
 * io_uring_enter stops at an entry that fails before it is issued (an iovec the kernel
 * refuses while preparing the readv): it completes that one with its error, returns
 * fewer than it was given, and leaves the entries after it in the SQ. They were
 * published, so no later submit counts them, and a wait that does not enter for them
 * sleeps forever (here: until its timeout).
 */
Test(full_queue, an_entry_the_kernel_refuses_on_sight_does_not_strand_the_ones_after_it)
{
	char buf[512], bad_buf[8];
	struct iovec bad = { .iov_base = bad_buf, .iov_len = SIZE_MAX };
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_READV, .fd = fd, .iov = &bad, .iovcnt = 1 },
		{ .opcode = AURAIO_OP_READ,
		  .fd = fd,
		  .buf = auraio_buf(buf),
		  .len = 512,
		  .offset = 512 },
	};
	auraio_request_t *reqs[2];
	ssize_t res = 0;

	cr_assert_eq(auraio_submit_batch(engine, ops, 2, reqs), 2, "one enter for both");
	cr_assert_eq(auraio_request_wait(engine, reqs[1], 10000, &res), 0,
		     "the read after the refused readv never went in");
	cr_assert_eq(res, 512);
	cr_assert(check_pattern(buf, sizeof(buf), 512));
	cr_assert_eq(auraio_request_wait(engine, reqs[0], 10000, &res), 0);
	cr_assert_lt(res, 0, "the readv's own error: %zd", res);
}

/* The same, for entries a callback staged: the wait that sends them is cut short too. */
struct staged_pair {
	struct iovec bad;
	char bad_buf[8], buf[512];
	auraio_request_t *reqs[2];
	int rc;
};

static void stage_refused_readv_and_read_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct staged_pair *s = ud;
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_READV, .fd = fd, .iov = &s->bad, .iovcnt = 1 },
		{ .opcode = AURAIO_OP_READ,
		  .fd = fd,
		  .buf = auraio_buf(s->buf),
		  .len = 512,
		  .offset = 1024 },
	};

	(void) req;
	(void) res;
	s->rc = auraio_submit_batch(engine, ops, 2, s->reqs);
}

Test(full_queue, a_wait_that_the_kernel_cuts_short_still_sends_the_rest)
{
	struct staged_pair s = { .bad = { .iov_base = s.bad_buf, .iov_len = SIZE_MAX }, .rc = 1 };
	char one[1];
	ssize_t res = 0;

	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(one), 1, 0, stage_refused_readv_and_read_cb, &s));
	while (s.rc == 1)
		cr_assert_geq(auraio_wait(engine, -1), 0);
	cr_assert_eq(s.rc, 2, "%s", auraio_strerror(s.rc));
	/* auraio_wait() left both staged: this wait sends them and is cut short. */
	cr_assert_eq(auraio_request_wait(engine, s.reqs[1], 10000, &res), 0,
		     "the read after the refused readv never went in");
	cr_assert_eq(res, 512);
	cr_assert(check_pattern(s.buf, sizeof(s.buf), 1024));
	cr_assert_eq(auraio_request_wait(engine, s.reqs[0], 10000, &res), 0);
	cr_assert_lt(res, 0, "the readv's own error: %zd", res);
}

/* Pin the calling thread to `cpu`: with two rings, a thread on CPU n submits to ring n. */
static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0, "%s", strerror(errno));
}

struct pipe_read {
	int cpu, rd;
	char b;
	auraio_request_t *req;
};

static void *submit_pipe_read_on(void *arg)
{
	struct pipe_read *pr = arg;

	pin_to(pr->cpu);
	pr->req = auraio_read(engine, pr->rd, auraio_buf(&pr->b), 1, 0, NULL, NULL);
	return NULL;
}

/*
 * With two rings busy, auraio_wait() sleeps on the epoll set of both. If the flush before
 * it was refused, what it left queued is not in the kernel, and no completion will come
 * for it: sleeping there waited forever (with the other ring's I/O never completing).
 */
Test(full_queue, a_wait_on_several_rings_does_not_sleep_on_entries_the_kernel_refused)
{
	auraio_fault_t f = { .fd = -1, .kind = AURAIO_FAULT_ENTER, .error = EAGAIN };
	struct pipe_read pr[2] = { { .cpu = 0 }, { .cpu = 1 } };
	struct recorder rec = { 0 };
	auraio_stats_t st;
	cpu_set_t allowed;
	char one[1];
	int p[2];

	cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
	if (!CPU_ISSET(0, &allowed) || !CPU_ISSET(1, &allowed))
		cr_skip_test("needs CPUs 0 and 1");
	auraio_destroy(engine);
	engine = test_fixed_engine(2, 4);
	cr_assert_not_null(engine);
	if (!engine_uses_io_uring())
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
	cr_assert_eq(pipe(p), 0);
	for (int i = 0; i < 2; i++) { /* a pipe read in the kernel on each ring */
		pthread_t t;

		pr[i].rd = p[0];
		cr_assert_eq(pthread_create(&t, NULL, submit_pipe_read_on, &pr[i]), 0);
		cr_assert_eq(pthread_join(t, NULL), 0);
		cr_assert_not_null(pr[i].req);
	}
	pin_to(0);
	if (auraio_fault_set(engine, &f) == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(one), 1, 0, record_cb, &rec));
	cr_assert_eq(auraio_wait(engine, -1), 0, "the kernel refuses: nothing can complete");
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_geq(st.faults_injected, 1);
	cr_assert_eq(auraio_fault_clear(engine), 0);
	while (atomic_load(&rec.calls) == 0)
		cr_assert_geq(auraio_wait(engine, -1), 0);
	cr_assert_eq(atomic_load(&rec.last), 1);
	close(p[1]); /* the pipe reads end with EOF */
	for (int i = 0; i < 2; i++)
		cr_assert_eq(auraio_request_wait(engine, pr[i].req, 10000, NULL), 0);
	close(p[0]);
}

/* Submit a waitable read of the first 512 bytes and reap until nothing is in flight (the
 * read is then completed but not collected). NULL + errno when the submit is refused. */
static auraio_request_t *completed_waitable(char *b)
{
	auraio_request_t *req = auraio_read(engine, fd, auraio_buf(b), 512, 0, NULL, NULL);
	auraio_stats_t st;

	if (!req)
		return NULL;
	do {
		cr_assert_geq(auraio_wait(engine, 1000), 0);
		cr_assert_eq(auraio_get_stats(engine, &st), 0);
	} while (st.total.in_flight);
	return req;
}

/*
 * Waitables not collected keep their requests (auraio.h, EAGAIN): the ring (queue_depth
 * 4) has 8, so the ninth is refused although nothing is in flight, and reaping does not
 * change that; collecting one does.
 */
Test(full_queue, completed_waitables_not_collected_fill_the_ring_and_collecting_one_frees_a_request)
{
	static char b[9][512];
	auraio_request_t *reqs[9];
	auraio_stats_t st;
	ssize_t res = 0;
	int i;

	for (i = 0; i < 8; i++)
		cr_assert_not_null(reqs[i] = completed_waitable(b[i]), "waitable %d: %s", i,
				   strerror(errno));
	errno = 0;
	cr_assert_null(completed_waitable(b[8]), "the ring's 8 requests are all held");
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.total.in_flight, 0, "refused below the limit (%u)",
		     st.total.in_flight_limit);
	cr_assert_eq(auraio_poll(engine), 0, "nothing to reap");
	cr_assert_null(completed_waitable(b[8]), "reaping frees nothing");
	cr_assert_eq(errno, EAGAIN);

	cr_assert_eq(auraio_request_wait(engine, reqs[0], 1000, &res), 0);
	cr_assert_eq(res, 512);
	cr_assert_not_null(reqs[8] = completed_waitable(b[8]), "%s", strerror(errno));
	for (i = 1; i < 9; i++) {
		res = 0;
		cr_assert_eq(auraio_request_wait(engine, reqs[i], 1000, &res), 0);
		cr_assert_eq(res, 512, "waitable %d", i);
	}
}

/* What a callback's own submit saw: the request it got, or the errno. */
struct resubmit {
	auraio_request_t *got;
	int err;
	bool ran;
};

static void submit_from_callback(auraio_request_t *req, ssize_t res, void *arg)
{
	static char b[512];
	struct resubmit *rs = arg;

	(void) req;
	cr_assert_eq(res, 512);
	errno = 0;
	rs->got = auraio_read(engine, fd, auraio_buf(b), 512, 0, NULL, NULL);
	rs->err = errno;
	rs->ran = true;
}

/*
 * A callback's read into its own ring takes the fast path with the delivery's time; one
 * that finds every request held (7 completed waitables and the callback's own) leaves it
 * after taking the ring's sq_lock, and the general path answers EAGAIN. The ring must be
 * left unlocked: collecting a waitable frees a request, and the next read goes through
 * (a lock left held hangs it; the suite's timeout reports that).
 */
Test(full_queue, a_callbacks_read_that_finds_no_free_request_is_eagain_and_leaves_the_ring_usable)
{
	static char b[8][512];
	auraio_request_t *reqs[7], *more;
	struct resubmit rs = { 0 };
	ssize_t res = 0;

	for (int i = 0; i < 7; i++)
		cr_assert_not_null(reqs[i] = completed_waitable(b[i]), "waitable %d: %s", i,
				   strerror(errno));
	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(b[7]), 512, 0, submit_from_callback, &rs));
	while (!rs.ran)
		cr_assert_geq(auraio_wait(engine, 1000), 0);
	cr_assert_null(rs.got, "every request is held");
	cr_assert_eq(rs.err, EAGAIN, "%s", strerror(rs.err));
	cr_assert_eq(auraio_request_wait(engine, reqs[0], 1000, &res), 0);
	cr_assert_not_null(more = auraio_read(engine, fd, auraio_buf(b[0]), 512, 0, NULL, NULL),
			   "%s", strerror(errno));
	cr_assert_eq(auraio_request_wait(engine, more, 1000, &res), 0);
	cr_assert_eq(res, 512);
	for (int i = 1; i < 7; i++)
		cr_assert_eq(auraio_request_wait(engine, reqs[i], 1000, &res), 0);
}
