/* SPDX-License-Identifier: MIT */
/*
 * Liveness of the waiting paths: a thread asleep in the engine (in io_uring_enter as a
 * ring's kernel waiter, on a ring's eventcount, or on the epoll set of several rings)
 * must be woken by whatever it waits for, whichever thread acts, and must not return
 * before what auraio.h promises.
 *
 * Each test sets up one interleaving deterministically: a thread that is verifiably
 * asleep (thread_sleeping) or a lock held by the test itself, then the action of another
 * thread. A hang is caught by the suite's timeout (every Test has the same .timeout).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "backend.h"
#include "io_route.h"
#include "refusing_engine.h"

#define T_TIMEOUT 20

/* ---- a thread asleep in auraio_request_wait for a pipe read ---- */

struct req_waiter {
	auraio_engine_t *e;
	auraio_request_t *req;
	atomic_int tid;
	atomic_bool returned;
	int rc;
	ssize_t res;
};

static void *wait_for_req(void *arg)
{
	struct req_waiter *w = arg;

	atomic_store(&w->tid, (int) syscall(SYS_gettid));
	w->rc = auraio_request_wait(w->e, w->req, -1, &w->res);
	atomic_store(&w->returned, true);
	return NULL;
}

static pid_t start_req_waiter(struct req_waiter *w, pthread_t *t)
{
	return start_asleep(t, wait_for_req, w, &w->tid);
}

/*
 * A thread sleeps in the kernel as the ring's waiter, for a pipe read nothing will
 * complete but a cancel. Another thread cancels the read; the kernel refuses the entry,
 * and the canceller, told 0 ("the request then completes with -ECANCELED"), goes on with
 * other work. Nothing retried the cancel: the waiter had entered before it was published
 * and slept for ever, and only its own enter could have sent it.
 */
Test(waiter_liveness, a_refused_cancel_reaches_a_thread_asleep_in_the_kernel, .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = uring_engine(1);
	struct req_waiter w = { .e = e };
	int p[2];
	char b;
	pthread_t t;

	cr_assert_eq(pipe(p), 0);
	w.req = auraio_read(e, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(w.req);
	start_req_waiter(&w, &t);
	refuse(e, 1);
	cr_assert_eq(auraio_cancel(e, w.req), 0);
	cr_assert_eq(faults_of(e), 1, "the kernel refused the cancel");
	pthread_join(t, NULL); /* hung here */
	cr_assert_eq(w.rc, 0);
	cr_assert_eq(w.res, -ECANCELED);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

/*
 * The same with SQPOLL: the kernel's SQ thread has gone idle (NEED_WAKEUP), so the cancel
 * needs an enter to wake it, and the kernel refuses that enter. The waiter, asleep in
 * the kernel, never woke the SQ thread: the cancel sat in the SQ for ever.
 * One round returns whether the refused enter was the cancel's: the SQ thread can be
 * woken by another enter first (the waiter's, at the end of a 100 ms slice), and then
 * the cancel needs none. Rounds repeat until one was (each round's outcome is checked).
 */
static bool sqpoll_refused_cancel_round(void)
{
	struct req_waiter w = { 0 };
	auraio_options_t o;
	auraio_stats_t st;
	auraio_engine_t *e;
	struct ring *r;
	bool refused;
	int p[2];
	char b;
	pthread_t t;

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 8;
	o.enable_sqpoll = true;
	o.sqpoll_idle_ms = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING || !st.sqpoll_active) {
		auraio_destroy(e);
		cr_skip_test("SQPOLL is not granted here");
	}
	r = &e->rings[0];
	w.e = e;
	cr_assert_eq(pipe(p), 0);
	w.req = auraio_read(e, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(w.req);
	start_req_waiter(&w, &t);
	while (!(sq_kflags(U(r)) & IORING_SQ_NEED_WAKEUP)) /* the SQ thread went idle */
		sched_yield();
	refuse(e, 1);
	cr_assert_eq(auraio_cancel(e, w.req), 0);
	refused = faults_of(e) == 1; /* the enter that would wake it was refused */
	pthread_join(t, NULL);	     /* hung here */
	cr_assert_eq(w.rc, 0);
	cr_assert_eq(w.res, -ECANCELED);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
	return refused;
}

Test(waiter_liveness, a_refused_cancel_wakes_an_idle_sqpoll_thread, .timeout = T_TIMEOUT)
{
	int round = 0;

	while (!sqpoll_refused_cancel_round())
		cr_assert_lt(++round, 50, "the cancel's wake-up was never the refused enter");
}

/* ---- a thread asleep in auraio_wait ---- */

struct any_waiter {
	auraio_engine_t *e;
	atomic_int tid;
	atomic_bool returned;
	int n;
};

static void *wait_any(void *arg)
{
	struct any_waiter *w = arg;

	atomic_store(&w->tid, (int) syscall(SYS_gettid));
	w->n = auraio_wait(w->e, -1);
	atomic_store(&w->returned, true);
	return NULL;
}

static pid_t start_any_waiter(struct any_waiter *w, pthread_t *t)
{
	return start_asleep(t, wait_any, w, &w->tid);
}

/*
 * The same on two rings: auraio_wait(-1) sleeps on the epoll set of both (a pipe read
 * in flight on each), and a cancel of one is refused. The epoll wait woke every 100 ms
 * to see whether anything was still in flight, but never sent the refused entry again:
 * it slept for ever.
 */
Test(waiter_liveness, a_refused_cancel_reaches_a_wait_on_several_rings, .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = uring_engine(2);
	struct any_waiter w = { .e = e };
	struct recorder rec[2] = { 0 };
	auraio_request_t *req[2];
	int p[2][2];
	char b[2];
	pthread_t t;

	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(pipe(p[k]), 0);
		route_to(e, k);
		req[k] = auraio_read(e, p[k][0], auraio_buf(&b[k]), 1, 0, record_cb, &rec[k]);
		cr_assert_not_null(req[k]);
	}
	cr_assert_eq(ring_in_flight(&e->rings[0]), 1);
	cr_assert_eq(ring_in_flight(&e->rings[1]), 1);
	start_any_waiter(&w, &t);
	refuse(e, 1);
	cr_assert_eq(auraio_cancel(e, req[0]), 0);
	cr_assert_eq(faults_of(e), 1, "the kernel refused the cancel");
	pthread_join(t, NULL); /* hung here */
	cr_assert_eq(w.n, 1);
	cr_assert_eq(atomic_load(&rec[0].calls), 1);
	cr_assert_eq(atomic_load(&rec[0].last), -ECANCELED);
	cr_assert_eq(atomic_load(&rec[1].calls), 0);
	cr_assert_eq(write(p[1][1], "x", 1), 1);
	while (atomic_load(&rec[1].calls) == 0)
		cr_assert_geq(auraio_wait(e, -1), 0);
	cr_assert_eq(atomic_load(&rec[1].last), 1);
	auraio_destroy(e);
	for (unsigned k = 0; k < 2; k++) {
		close(p[k][0]);
		close(p[k][1]);
	}
}

/* ---- auraio_wait(-1) returns only for what auraio.h lists ---- */

/*
 * A thread asleep in auraio_wait(-1) on the ring's eventcount (another held cq_lock when
 * it looked) was woken by the holder letting go - here an empty pass, as auraio_poll()
 * makes - and returned 0 although no completion had been handled by anyone and its pipe
 * read was still in flight. auraio.h lists when it returns 0 (timeout, nothing in flight,
 * another thread handled the completion, the kernel refused entries): none applied. It
 * must take the kernel-waiter role over instead, and return 1 for the read.
 */
Test(waiter_liveness, a_wait_woken_by_an_empty_pass_keeps_waiting, .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = engine_of(1);
	struct ring *r = &e->rings[0];
	struct any_waiter w = { .e = e };
	struct recorder rec = { 0 };
	int p[2];
	char b;
	pthread_t t;

	cr_assert_eq(pipe(p), 0);
	cr_assert_not_null(auraio_read(e, p[0], auraio_buf(&b), 1, 0, record_cb, &rec));
	cr_assert(cq_trylock(r), "the test holds the role, as a reaping thread would");
	start_any_waiter(&w, &t); /* asleep on the eventcount */
	cq_unlock(r);		  /* an empty pass lets go and notifies */
	ev_notify(&r->ev);
	cr_assert_eq(write(p[1], "x", 1), 1);
	pthread_join(t, NULL);
	cr_assert_eq(w.n, 1, "returned 0 with nothing handled");
	cr_assert_eq(atomic_load(&rec.calls), 1);
	cr_assert_eq(atomic_load(&rec.last), 1);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

/* What an auraio_cancel() sends, without a request it could find: an internal entry
 * whose completion the engine counts apart from the requests'. */
static void send_internal_nop(struct ring *r)
{
	struct io_uring_sqe *sqe;
	unsigned n;

	sq_lock(r);
	cr_assert_geq(uring_make_room(r, 1), 1u);
	sqe = uring_next_sqe(r);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, UD_INTERNAL);
	counter_add(&r->internal_submitted, 1);
	n = uring_publish(r);
	sq_unlock(r);
	cr_assert_not(ring_enter(r, n));
}

/*
 * auraio_wait(-1) asleep in the kernel for a pipe read. A cancel's own completion (an
 * internal one, which the wait does not count) arrived before the completion of the
 * request it cancelled - as it often does - and ended the wait: 0, having handled
 * nothing the caller can see, no other thread having done so either. Set up with an
 * internal entry alone; the wait must go on to the read's completion and return 1.
 */
Test(waiter_liveness, an_internal_completion_does_not_end_a_wait, .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = uring_engine(1);
	struct any_waiter w = { .e = e };
	struct recorder rec = { 0 };
	int p[2];
	char b;
	pthread_t t;

	cr_assert_eq(pipe(p), 0);
	cr_assert_not_null(auraio_read(e, p[0], auraio_buf(&b), 1, 0, record_cb, &rec));
	start_any_waiter(&w, &t);
	send_internal_nop(&e->rings[0]);
	/* Once the waiter has handled the nop it sleeps again (or has returned: the bug). */
	while (counter_get(&e->rings[0].internal_completed) == 0)
		sched_yield();
	while (!atomic_load(&w.returned) && !thread_sleeping((pid_t) atomic_load(&w.tid)))
		sched_yield();
	cr_assert_eq(write(p[1], "x", 1), 1);
	pthread_join(t, NULL);
	cr_assert_eq(w.n, 1, "returned 0 for an internal completion");
	cr_assert_eq(atomic_load(&rec.calls), 1);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

/*
 * auraio_wait(-1) on a 2-ring engine, when only ring 0 was busy (a pipe read), sleeps in
 * ring 0's kernel wait. Another thread then submits a read with a callback to ring 1,
 * flushes, and waits for the callback without calling into the engine again - the
 * pattern the submit rules describe ("it waits on a callback that another thread's
 * blocking auraio_wait() delivers"). auraio.h: "a completion on any ring ends the wait".
 * Ring 1's completion woke nobody: the wait slept on until the pipe read completed.
 */
Test(waiter_liveness, a_wait_on_one_busy_ring_sees_a_completion_on_another, .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = engine_of(2);
	struct any_waiter w = { .e = e };
	struct recorder rec[2] = { 0 };
	int fd = temp_file(4096, 0), p[2], rc;
	char b, buf[512];
	pthread_t t;

	cr_assert_eq(pipe(p), 0);
	route_to(e, 0);
	cr_assert_not_null(auraio_read(e, p[0], auraio_buf(&b), 1, 0, record_cb, &rec[0]));
	start_any_waiter(&w, &t); /* asleep on ring 0 alone */
	route_to(e, 1);
	cr_assert_not_null(
	    auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 512, record_cb, &rec[1]));
	while ((rc = auraio_flush(e)) == -EAGAIN || rc == -EBUSY)
		;
	cr_assert_geq(rc, 0);
	while (atomic_load(&rec[1].calls) == 0) /* delivered by the waiter, or never */
		sched_yield();
	pthread_join(t, NULL);
	cr_assert_eq(w.n, 1);
	cr_assert_eq(atomic_load(&rec[1].last), 512);
	cr_assert(check_pattern(buf, sizeof(buf), 512));
	cr_assert_eq(atomic_load(&rec[0].calls), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	while (atomic_load(&rec[0].calls) == 0)
		cr_assert_geq(auraio_wait(e, -1), 0);
	auraio_destroy(e);
	close(fd);
	close(p[0]);
	close(p[1]);
}

/*
 * auraio_wait(-1) asleep on the epoll set of two rings (a pipe read on each). Another
 * thread handles a completion on ring 0 - here a waitable the test made by hand and
 * completes as a reaper does, under cq_lock: the state a reaper leaves when it consumed
 * the CQE before the sleeper's epoll looked (the set is then not readable). auraio.h:
 * the wait returns 0 "when another thread handled a completion meanwhile"; it slept on
 * for ever instead (its slices only asked whether anything was still in flight).
 */
Test(waiter_liveness, a_wait_on_several_rings_returns_when_another_thread_handled_a_completion,
     .timeout = T_TIMEOUT)
{
	auraio_engine_t *e = engine_of(2);
	struct ring *r = &e->rings[0];
	struct any_waiter w = { .e = e };
	struct recorder rec[2] = { 0 };
	struct auraio_request *h;
	ssize_t res = 0;
	int p[2][2];
	char b[2];
	pthread_t t;

	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(pipe(p[k]), 0);
		route_to(e, k);
		cr_assert_not_null(
		    auraio_read(e, p[k][0], auraio_buf(&b[k]), 1, 0, record_cb, &rec[k]));
	}
	sq_lock(r); /* a waitable in flight on ring 0 that the kernel never sees */
	h = request_alloc(&r->pool);
	cr_assert_not_null(h);
	h->opcode = AURAIO_OP_READ;
	h->flags = REQF_WAITABLE;
	h->fd = p[0][0];
	atomic_store(&h->state, REQ_IN_FLIGHT);
	atomic_store(&r->submitted, atomic_load(&r->submitted) + 1);
	sq_unlock(r);
	/* Asleep in epoll_wait, so the wait has counted what was handled before it: a
	 * waiter that counted h as handled already would rightly sleep on (a CI hang). */
	until_in_epoll_wait(start_any_waiter(&w, &t));
	cr_assert(cq_trylock(r)); /* another thread reaps h: completed under cq_lock */
	h->result = 7;
	atomic_store(&h->state, REQ_DONE);
	atomic_store(&r->completed, atomic_load(&r->completed) + 1);
	cq_unlock(r);
	ev_notify(&r->ev);
	pthread_join(t, NULL); /* hung here */
	cr_assert_eq(w.n, 0);
	cr_assert_eq(auraio_request_wait(e, h, 0, &res), 0);
	cr_assert_eq(res, 7);
	for (unsigned k = 0; k < 2; k++) {
		cr_assert_eq(write(p[k][1], "x", 1), 1);
		while (atomic_load(&rec[k].calls) == 0)
			cr_assert_geq(auraio_wait(e, -1), 0);
		close(p[k][0]);
		close(p[k][1]);
	}
	auraio_destroy(e);
}
