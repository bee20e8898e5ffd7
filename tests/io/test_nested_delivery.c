/* SPDX-License-Identifier: MIT */
/*
 * Callbacks that call auraio_poll() or auraio_wait() (auraio.h, "Callbacks": a callback
 * may). A completion that becomes ready while a callback runs is delivered by the
 * callback's own nested call, on the callback's ring and on another one; a nested wait
 * with a timeout returns when nothing completes, and a nested poll never blocks. Every
 * test runs on both backends: the default one (io_uring where available) and the worker
 * threads.
 *
 * The completion that the nested call delivers is a read of a pipe that the outer
 * callback itself writes to, so it cannot be ready before the outer callback runs. A hang
 * (a nested call that blocks for ever) is caught by the suite's timeout.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "backend.h"
#include "io_route.h"
#include "test_util.h"

#define T_TIMEOUT 20

TestSuite(nested_delivery, .timeout = T_TIMEOUT);

static const auraio_backend_t backends[] = { AURAIO_BACKEND_AUTO, AURAIO_BACKEND_THREADS };

enum nested_call { NEST_POLL, NEST_WAIT_FOREVER, NEST_WAIT_TIMEOUT };

struct nest {
	auraio_engine_t *e;
	enum nested_call how;
	bool feed; /* the outer callback writes the pipe (else nothing will complete) */
	int p[2];
	int file;
	char pbuf[16], fbuf[4096];
	/* outer: the file read's callback; inner: the pipe read's */
	atomic_int outer_calls, inner_calls;
	atomic_bool in_outer;	  /* the outer callback is running */
	atomic_bool inner_nested; /* the inner callback ran inside the outer one */
	long inner_res, outer_res;
	int nested_handled; /* sum of what the nested calls returned */
	int nested_rc[3];   /* feed == false: wait(timeout), wait(0), poll */
};

static void inner_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct nest *n = ud;

	(void) req;
	n->inner_res = (long) res;
	atomic_store(&n->inner_nested, atomic_load(&n->in_outer));
	atomic_fetch_add(&n->inner_calls, 1);
}

static void outer_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct nest *n = ud;
	char msg[sizeof(n->pbuf)];

	(void) req;
	n->outer_res = (long) res;
	atomic_store(&n->in_outer, true);
	atomic_fetch_add(&n->outer_calls, 1);
	if (!n->feed) {
		/* The pipe read is in flight and nothing will complete it: a nested wait
		 * with a timeout must return (0: it timed out), and a poll at once. */
		n->nested_rc[0] = auraio_wait(n->e, 20);
		n->nested_rc[1] = auraio_wait(n->e, 0);
		n->nested_rc[2] = auraio_poll(n->e);
	} else {
		fill_pattern(msg, sizeof(msg), 7);
		cr_assert_eq(write(n->p[1], msg, sizeof(msg)), (ssize_t) sizeof(msg));
		while (atomic_load(&n->inner_calls) == 0) {
			int rc = n->how == NEST_POLL	       ? auraio_poll(n->e)
				 : n->how == NEST_WAIT_FOREVER ? auraio_wait(n->e, -1)
							       : auraio_wait(n->e, 1000);

			cr_assert(rc >= 0, "nested call: %d", rc);
			n->nested_handled += rc;
		}
	}
	atomic_store(&n->in_outer, false);
}

/*
 * The pipe read goes to ring `pipe_ring`, the file read to ring 0; the outer loop waits
 * until the file read's callback has run.
 */
static void run_nest(struct nest *n, auraio_backend_t b, int rings, unsigned pipe_ring)
{
	auraio_ring_stats_t rs;

	n->e = engine_on(b, rings);
	cr_assert_eq(pipe(n->p), 0);
	n->file = temp_file(sizeof(n->fbuf), 0);
	route_to(n->e, pipe_ring);
	cr_assert_not_null(
	    auraio_read(n->e, n->p[0], auraio_buf(n->pbuf), sizeof(n->pbuf), 0, inner_cb, n));
	cr_assert_geq(auraio_flush(n->e), 0);
	route_to(n->e, 0);
	cr_assert_not_null(
	    auraio_read(n->e, n->file, auraio_buf(n->fbuf), sizeof(n->fbuf), 0, outer_cb, n));
	while (atomic_load(&n->outer_calls) == 0)
		cr_assert(auraio_wait(n->e, -1) >= 0);
	cr_assert_eq(auraio_get_ring_stats(n->e, (int) pipe_ring, &rs), 0);
	cr_assert_eq(rs.ops_submitted, rings == 1 ? 2u : 1u, "the pipe read was not on ring %u",
		     pipe_ring);
	cr_assert_eq(n->outer_res, (long) sizeof(n->fbuf));
	cr_assert(check_pattern(n->fbuf, sizeof(n->fbuf), 0));
}

static void end_nest(struct nest *n)
{
	auraio_destroy(n->e);
	close(n->p[0]);
	close(n->p[1]);
	close(n->file);
}

/* The nested call delivered the pipe read, inside the outer callback, exactly once. */
static void check_delivered_nested(struct nest *n)
{
	cr_assert_eq(atomic_load(&n->inner_calls), 1);
	cr_assert(atomic_load(&n->inner_nested), "the pipe read was not delivered by the callback");
	cr_assert_eq(n->nested_handled, 1, "nested calls handled %d completions",
		     n->nested_handled);
	cr_assert_eq(n->inner_res, (long) sizeof(n->pbuf));
	cr_assert(check_pattern(n->pbuf, sizeof(n->pbuf), 7));
	/* Nothing left: the outer wait returns 0 and runs no callback twice. */
	cr_assert_eq(auraio_wait(n->e, -1), 0);
	cr_assert_eq(auraio_poll(n->e), 0);
	cr_assert_eq(atomic_load(&n->inner_calls), 1);
	cr_assert_eq(atomic_load(&n->outer_calls), 1);
}

static void nested_delivery_case(enum nested_call how, int rings, unsigned pipe_ring)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		struct nest n = { .how = how, .feed = true };

		run_nest(&n, backends[i], rings, pipe_ring);
		check_delivered_nested(&n);
		end_nest(&n);
	}
}

Test(nested_delivery, a_poll_in_a_callback_delivers_a_completion_of_the_same_ring)
{
	nested_delivery_case(NEST_POLL, 1, 0);
}

Test(nested_delivery, a_wait_in_a_callback_delivers_a_completion_of_the_same_ring)
{
	nested_delivery_case(NEST_WAIT_FOREVER, 1, 0);
}

Test(nested_delivery, a_wait_with_timeout_in_a_callback_delivers_a_completion_of_the_same_ring)
{
	nested_delivery_case(NEST_WAIT_TIMEOUT, 1, 0);
}

Test(nested_delivery, a_poll_in_a_callback_delivers_a_completion_of_another_ring)
{
	nested_delivery_case(NEST_POLL, 2, 1);
}

Test(nested_delivery, a_wait_in_a_callback_delivers_a_completion_of_another_ring)
{
	nested_delivery_case(NEST_WAIT_FOREVER, 2, 1);
}

Test(nested_delivery, a_wait_with_timeout_in_a_callback_delivers_a_completion_of_another_ring)
{
	nested_delivery_case(NEST_WAIT_TIMEOUT, 2, 1);
}

/*
 * Nothing will complete while the callback runs: a nested auraio_wait(20) returns 0 (a
 * wait that blocked for ever is caught by the suite timeout), wait(0) and poll return 0
 * at once; the pipe read is still in flight afterwards and completes once fed.
 */
static void nested_calls_return_case(int rings, unsigned pipe_ring)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		struct nest n = { .feed = false };
		char msg[sizeof(n.pbuf)];

		run_nest(&n, backends[i], rings, pipe_ring);
		cr_assert_eq(n.nested_rc[0], 0);
		cr_assert_eq(n.nested_rc[1], 0);
		cr_assert_eq(n.nested_rc[2], 0);
		cr_assert_eq(atomic_load(&n.inner_calls), 0);
		fill_pattern(msg, sizeof(msg), 7);
		cr_assert_eq(write(n.p[1], msg, sizeof(msg)), (ssize_t) sizeof(msg));
		while (atomic_load(&n.inner_calls) == 0)
			cr_assert(auraio_wait(n.e, -1) >= 0);
		cr_assert_eq(n.inner_res, (long) sizeof(n.pbuf));
		cr_assert_not(atomic_load(&n.inner_nested));
		end_nest(&n);
	}
}

Test(nested_delivery, nested_waits_and_polls_return_when_the_same_ring_has_nothing_ready)
{
	nested_calls_return_case(1, 0);
}

Test(nested_delivery, nested_waits_and_polls_return_when_another_ring_has_nothing_ready)
{
	nested_calls_return_case(2, 1);
}

/*
 * Another thread is the ring's waiter (asleep in the kernel, or in ppoll on the thread
 * backend, holding the ring's completions) when a callback calls in: a nested poll
 * returns 0 at once and a nested wait with a timeout returns 0 - neither waits for that
 * thread. The waiter then gets the pipe read's completion.
 */
struct other_waiter {
	auraio_engine_t *e;
	atomic_int tid;
	int rc;
};

static void *wait_forever(void *arg)
{
	struct other_waiter *w = arg;

	atomic_store(&w->tid, (int) syscall(SYS_gettid));
	w->rc = auraio_wait(w->e, -1);
	return NULL;
}

struct held_nest {
	struct other_waiter w;
	pthread_t t;
	bool uring;
	int rc[2]; /* nested poll, nested wait(20) */
	atomic_int calls;
};

/* Until thread tid sleeps in the ring's wait (where the kernel does not say: asleep). */
static void until_ring_waiter(pid_t tid, bool uring)
{
	for (;;) {
		long nr = thread_syscall(tid);
		bool there = nr == -2 || (uring ? nr == SYS_io_uring_enter : nr == SYS_ppoll);

		if (there && thread_sleeping(tid))
			return;
		sched_yield();
	}
}

static void held_outer_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct held_nest *h = ud;

	(void) req;
	cr_assert_geq(res, 0);
	cr_assert_eq(pthread_create(&h->t, NULL, wait_forever, &h->w), 0);
	while (atomic_load(&h->w.tid) == 0)
		sched_yield();
	until_ring_waiter((pid_t) atomic_load(&h->w.tid), h->uring);
	h->rc[0] = auraio_poll(h->w.e);
	h->rc[1] = auraio_wait(h->w.e, 20);
	atomic_fetch_add(&h->calls, 1);
}

Test(nested_delivery, nested_calls_do_not_wait_for_another_threads_hold_on_the_ring)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		struct held_nest h = { 0 };
		struct recorder prec = { 0 };
		int p[2], fd = temp_file(4096, 0);
		char pbuf[4], fbuf[4096];
		auraio_stats_t st;

		h.w.e = engine_on(backends[i], 1);
		cr_assert_eq(auraio_get_stats(h.w.e, &st), 0);
		h.uring = st.backend == AURAIO_BACKEND_IO_URING;
		cr_assert_eq(pipe(p), 0);
		cr_assert_not_null(
		    auraio_read(h.w.e, p[0], auraio_buf(pbuf), sizeof(pbuf), 0, record_cb, &prec));
		cr_assert_not_null(
		    auraio_read(h.w.e, fd, auraio_buf(fbuf), sizeof(fbuf), 0, held_outer_cb, &h));
		while (atomic_load(&h.calls) == 0)
			cr_assert(auraio_wait(h.w.e, -1) >= 0);
		cr_assert_eq(h.rc[0], 0, "nested poll: %d", h.rc[0]);
		cr_assert_eq(h.rc[1], 0, "nested wait: %d", h.rc[1]);
		cr_assert_eq(atomic_load(&prec.calls), 0);
		cr_assert_eq(write(p[1], "abcd", 4), 4);
		cr_assert_eq(pthread_join(h.t, NULL), 0);
		cr_assert_eq(h.w.rc, 1, "the other thread's wait returned %d", h.w.rc);
		cr_assert_eq(atomic_load(&prec.calls), 1);
		cr_assert_eq(atomic_load(&prec.last), 4);
		auraio_destroy(h.w.e);
		close(p[0]);
		close(p[1]);
		close(fd);
	}
}
