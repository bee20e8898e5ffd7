/* SPDX-License-Identifier: MIT */
/* Polling, waiting, the poll fd, callbacks that submit, and destroy with I/O in flight. */
#include <auraio.h>
#include <poll.h>
#include <pthread.h>

#include "test_util.h"

static auraio_engine_t *engine;
static int fd;

/* A fixed in-flight limit (queue_depth): these tests keep many requests in flight and are
 * about completion semantics, not the adaptive controller. */
static auraio_engine_t *fixed_engine(void)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.disable_adaptive = true;
	return auraio_create_with_options(&o);
}

static void setup(void)
{
	engine = fixed_engine();
	cr_assert_not_null(engine);
	fd = temp_file(1 << 20, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(completion, .init = setup, .fini = teardown);

Test(completion, poll_returns_the_number_of_completions_it_handled)
{
	struct recorder rec = { 0 };
	char buf[8][512];
	int handled = 0;

	for (int i = 0; i < 8; i++)
		cr_assert_not_null(
		    auraio_read(engine, fd, auraio_buf(buf[i]), 512, i * 512, record_cb, &rec));
	while (handled < 8) {
		int n = auraio_wait(engine, 5000);

		cr_assert_geq(n, 0);
		handled += n;
		cr_assert_eq(atomic_load(&rec.calls), handled);
	}
	cr_assert_eq(auraio_poll(engine), 0);
}

Test(completion, wait_with_nothing_in_flight_returns_zero_at_once)
{
	cr_assert_eq(auraio_wait(engine, -1), 0);
	cr_assert_eq(auraio_poll(engine), 0);
}

Test(completion, wait_times_out_with_zero_when_nothing_completes)
{
	int p[2];
	char b;
	uint64_t t0;
	auraio_request_t *req;

	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	t0 = test_now_ns();
	cr_assert_eq(auraio_wait(engine, 30), 0);
	cr_assert_geq(test_now_ns() - t0, 15 * 1000000ull, "returned before the timeout");
	cr_assert_eq(write(p[1], "a", 1), 1);
	cr_assert_eq(auraio_request_wait(engine, req, 5000, NULL), 0);
	close(p[0]);
	close(p[1]);
}

Test(completion, poll_fd_is_readable_exactly_while_completions_wait)
{
	struct recorder rec = { 0 };
	int pfd = auraio_get_poll_fd(engine);
	struct pollfd pf = { .fd = pfd, .events = POLLIN };
	char buf[512];

	cr_assert_geq(pfd, 0);
	cr_assert_eq(auraio_get_poll_fd(engine), pfd, "the same fd every time");
	cr_assert_eq(poll(&pf, 1, 0), 0, "readable with nothing in flight");
	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 0, record_cb, &rec));
	cr_assert_eq(poll(&pf, 1, 5000), 1, "not readable after a completion");
	while (atomic_load(&rec.calls) == 0)
		auraio_poll(engine);
	cr_assert_eq(poll(&pf, 1, 0), 0, "still readable after the completion was handled");
}

struct chain_state {
	auraio_engine_t *e;
	int fd;
	int remaining;
	int done;
	char buf[512];
};

static void resubmit_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct chain_state *s = ud;

	(void) req;
	cr_assert_eq(res, 512);
	s->done++;
	if (--s->remaining > 0)
		cr_assert_not_null(auraio_read(s->e, s->fd, auraio_buf(s->buf), 512,
					       (off_t) s->remaining * 512, resubmit_cb, s));
}

Test(completion, a_callback_may_submit_new_io)
{
	struct chain_state s = { .e = engine, .fd = fd, .remaining = 100 };

	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(s.buf), 512, 0, resubmit_cb, &s));
	while (s.remaining > 0)
		cr_assert_geq(auraio_wait(engine, 5000), 0);
	cr_assert_eq(s.done, 100);
}

struct waiter_arg {
	auraio_engine_t *e;
	auraio_request_t *req;
	ssize_t res;
	int rc;
};

static void *waiter_thread(void *arg)
{
	struct waiter_arg *w = arg;

	w->rc = auraio_request_wait(w->e, w->req, 20000, &w->res);
	return NULL;
}

struct poller_arg {
	auraio_engine_t *e;
	atomic_bool stop;
};

static void *poller_thread(void *arg)
{
	struct poller_arg *p = arg;

	while (!atomic_load(&p->stop))
		auraio_poll(p->e);
	return NULL;
}

Test(completion, a_waiter_wakes_when_another_thread_reaps_its_completion)
{
	struct poller_arg pa = { .e = engine };
	pthread_t poller, waiter[4];
	struct waiter_arg w[4];
	int p[2];
	char b[4];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pthread_create(&poller, NULL, poller_thread, &pa), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct waiter_arg){ .e = engine, .rc = 1 };
		w[i].req = auraio_read(engine, p[0], auraio_buf(&b[i]), 1, 0, NULL, NULL);
		cr_assert_not_null(w[i].req);
		cr_assert_eq(pthread_create(&waiter[i], NULL, waiter_thread, &w[i]), 0);
	}
	cr_assert_eq(write(p[1], "abcd", 4), 4);
	for (int i = 0; i < 4; i++) {
		pthread_join(waiter[i], NULL);
		cr_assert_eq(w[i].rc, 0, "waiter %d: %s", i, auraio_strerror(w[i].rc));
		cr_assert_eq(w[i].res, 1);
	}
	atomic_store(&pa.stop, true);
	pthread_join(poller, NULL);
	close(p[0]);
	close(p[1]);
}

Test(completion, destroy_with_io_in_flight_delivers_every_callback_first)
{
	auraio_engine_t *e = fixed_engine();
	struct recorder rec = { 0 };
	int p[2];
	char b[16];

	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	for (int i = 0; i < 16; i++)
		cr_assert_not_null(auraio_read(e, p[0], auraio_buf(&b[i]), 1, 0, record_cb, &rec));
	cr_assert_not_null(auraio_read(e, p[0], auraio_buf(&b[0]), 1, 0, NULL, NULL),
			   "an uncollected waitable request must not leak or hang destroy");
	auraio_destroy(e);
	cr_assert_eq(atomic_load(&rec.calls), 16);
	cr_assert_eq(atomic_load(&rec.last), -ECANCELED);
	close(p[0]);
	close(p[1]);
}

static void submit_during_destroy_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct recorder *rec = ud;
	char b;

	(void) req;
	(void) res;
	errno = 0;
	if (!auraio_read(*(auraio_engine_t **) ((char *) rec + sizeof(*rec)), 0, auraio_buf(&b), 1,
			 0, NULL, NULL))
		atomic_store(&rec->last, -errno);
	atomic_fetch_add(&rec->calls, 1);
}

Test(completion, a_callback_submitting_during_destroy_gets_eshutdown)
{
	struct {
		struct recorder rec;
		auraio_engine_t *e;
	} s = { { 0 }, auraio_create() };
	int p[2];
	char b;

	cr_assert_not_null(s.e);
	cr_assert_eq(pipe(p), 0);
	cr_assert_not_null(
	    auraio_read(s.e, p[0], auraio_buf(&b), 1, 0, submit_during_destroy_cb, &s));
	auraio_destroy(s.e);
	cr_assert_eq(atomic_load(&s.rec.calls), 1);
	cr_assert_eq(atomic_load(&s.rec.last), -ESHUTDOWN);
	close(p[0]);
	close(p[1]);
}

Test(completion, cancel_completes_a_pending_read_with_ecanceled)
{
	int p[2];
	char b;
	ssize_t res = 0;
	auraio_request_t *req;

	cr_assert_eq(pipe(p), 0);
	req = auraio_read(engine, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_cancel(engine, req), 0);
	cr_assert_eq(auraio_request_wait(engine, req, 5000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	close(p[0]);
	close(p[1]);
}

Test(completion, cancel_of_a_completed_request_is_refused)
{
	char b[16];
	auraio_request_t *req = auraio_read(engine, fd, auraio_buf(b), 16, 0, NULL, NULL);

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(engine, req, 5000, NULL), 0);
	cr_assert_eq(auraio_cancel(engine, req), -EINVAL);
}

static void cancel_self_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	int *rc = ud;

	(void) res;
	*rc = auraio_cancel(engine, req);
}

Test(completion, cancel_from_inside_its_own_callback_is_refused)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	int rc = 1;
	char b[16];

	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(b), 16, 0, cancel_self_cb, &rc));
	while (rc == 1 && test_now_ns() < deadline)
		auraio_wait(engine, 1000);
	cr_assert_eq(rc, -EINVAL, "a request whose completion is being delivered was cancelled: %d",
		     rc);
}

struct late_write {
	auraio_engine_t *e;
	int fd;
	char data[512];
	int calls;
};

struct late_write;
static void write_from_callback(auraio_request_t *req, ssize_t res, void *ud)
{
	struct late_write *w = ud;

	(void) req;
	(void) res;
	if (w->calls++ == 0)
		cr_assert_not_null(
		    auraio_write(w->e, w->fd, auraio_buf(w->data), 512, 0, write_from_callback, w));
}

/* Wait (without any engine call) until the file's first bytes equal w->data. */
static void expect_write_lands(struct late_write *w)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	char check[512];

	do {
		cr_assert_eq(pread(w->fd, check, sizeof(check), 0), 512);
	} while (memcmp(check, w->data, sizeof(check)) != 0 && test_now_ns() < deadline);
	cr_assert_arr_eq(check, w->data, sizeof(check), "the callback's write was left staged");
}

Test(completion, a_callback_submission_left_alone_on_its_ring_is_flushed_by_request_wait)
{
	static struct late_write w;
	char first[512], second;
	auraio_request_t *waitable;
	auraio_options_t o;
	int p[2];

	auraio_options_init(&o);
	o.ring_count = 1;
	w.e = auraio_create_with_options(&o);
	cr_assert_not_null(w.e);
	w.fd = fd;
	memset(w.data, 0x5c, sizeof(w.data));
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "k", 1), 1);
	/* Both reads complete as soon as they are submitted (pipe data and page cache are
	 * ready), so one dispatch both runs the callback - which stages a write - and
	 * completes the waitable; request_wait then returns with the write staged and
	 * nothing else in flight. Only the liveness rule can send it. */
	waitable = auraio_read(w.e, p[0], auraio_buf(&second), 1, 0, NULL, NULL);
	cr_assert_not_null(waitable);
	cr_assert_not_null(
	    auraio_read(w.e, fd, auraio_buf(first), 512, 0, write_from_callback, &w));
	cr_assert_geq(auraio_flush(w.e), 0);
	cr_assert_eq(auraio_request_wait(w.e, waitable, 5000, NULL), 0);
	if (w.calls == 0) {
		while (w.calls < 2)
			auraio_poll(w.e);
		auraio_destroy(w.e);
		cr_skip_test("both completions were not handled in one dispatch (thread backend "
			     "completes them one by one), so the case cannot be set up");
	}
	expect_write_lands(&w); /* no engine call from here on */
	while (w.calls < 2)
		auraio_poll(w.e);
	auraio_destroy(w.e);
	close(p[0]);
	close(p[1]);
}

Test(completion, poll_submits_what_its_callbacks_submitted_before_returning)
{
	static struct late_write w;
	char first[512];

	w.e = engine;
	w.fd = fd;
	memset(w.data, 0x3a, sizeof(w.data));
	cr_assert_not_null(
	    auraio_read(engine, fd, auraio_buf(first), 512, 0, write_from_callback, &w));
	while (w.calls == 0)
		cr_assert_geq(auraio_poll(engine), 0);
	expect_write_lands(&w); /* no engine call from here on */
	while (w.calls < 2)
		auraio_poll(engine);
}

/*
 * A callback fills the submission queue: one ring of queue_depth 4 with a fixed limit of
 * 4, and the callback submits four reads of an empty pipe. Submissions from a callback
 * are only staged until the delivering call returns, so the queue's four entries are all
 * taken when something needs a fifth: a cancel, or destroy's cancel of everything.
 */
#define FULL_QD 4

struct full_queue {
	auraio_engine_t *e;
	int pipe_rd;
	char b[FULL_QD];
	auraio_request_t *reqs[FULL_QD];
	struct recorder rec;
	bool filled;
	int cancel_rc; /* 1: cancel not tried */
};

static void fill_queue_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct full_queue *q = ud;

	(void) req;
	(void) res;
	for (int i = 0; i < FULL_QD; i++)
		q->reqs[i] =
		    auraio_read(q->e, q->pipe_rd, auraio_buf(&q->b[i]), 1, 0, record_cb, &q->rec);
	q->filled = true;
	if (q->cancel_rc != 1)
		q->cancel_rc = auraio_cancel(q->e, q->reqs[0]);
}

/* Start the callback that fills the queue and wait until it has run. */
static void fill_queue(struct full_queue *q, int p[2])
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	char one[1];

	q->e = test_fixed_engine(1, FULL_QD);
	cr_assert_not_null(q->e);
	cr_assert_eq(pipe(p), 0);
	q->pipe_rd = p[0];
	cr_assert_not_null(auraio_read(q->e, fd, auraio_buf(one), 1, 0, fill_queue_cb, q));
	while (!q->filled && test_now_ns() < deadline)
		cr_assert_geq(auraio_wait(q->e, 1000), 0);
	cr_assert(q->filled);
	for (int i = 0; i < FULL_QD; i++)
		cr_assert_not_null(q->reqs[i], "read %d refused", i);
}

/* A hang here is the failure (the cancel waited forever for a free SQ entry). */
Test(completion, cancel_when_staged_requests_fill_the_submission_queue_is_not_stuck, .timeout = 20)
{
	static struct full_queue q = { .cancel_rc = 0 };
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	int p[2];

	fill_queue(&q, p);
	cr_assert_eq(q.cancel_rc, 0, "cancel: %s", auraio_strerror(q.cancel_rc));
	while (atomic_load(&q.rec.calls) == 0 && test_now_ns() < deadline)
		cr_assert_geq(auraio_wait(q.e, 1000), 0);
	cr_assert_eq(atomic_load(&q.rec.calls), 1, "only the cancelled read completes");
	cr_assert_eq(atomic_load(&q.rec.last), -ECANCELED);
	auraio_destroy(q.e);
	cr_assert_eq(atomic_load(&q.rec.calls), FULL_QD);
	close(p[0]);
	close(p[1]);
}

/* auraio_wait() leaves what its callbacks submitted staged for its next call; destroy
 * comes instead. A hang here is the failure. */
Test(completion, destroy_when_staged_requests_fill_the_submission_queue_cancels_them, .timeout = 20)
{
	static struct full_queue q = { .cancel_rc = 1 };
	int p[2];

	fill_queue(&q, p);
	auraio_destroy(q.e);
	cr_assert_eq(atomic_load(&q.rec.calls), FULL_QD);
	cr_assert_eq(atomic_load(&q.rec.last), -ECANCELED);
	close(p[0]);
	close(p[1]);
}
