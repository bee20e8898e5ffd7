/* SPDX-License-Identifier: MIT */
/*
 * Regression: auraio_wait() blocked forever in io_uring_enter when another thread reaped
 * the ring's last completion between the wait's look at the rings (something in flight)
 * and its taking the ring's cq_lock. The kernel waiter then blocked for a completion
 * nobody would ever post; the docs promise 0 "when another thread handled the
 * completion that ended the wait".
 *
 * The window is a few instructions wide, so the first test sets up its outcome directly
 * - the ring's cq_lock free and nothing in flight - and calls the wait the engine runs
 * next. The second races auraio_wait() against a polling thread through the public API
 * (it hung within a few thousand rounds on the old code, though not on every run).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "engine.h"
#include "refusing_engine.h"

/* A hang is these tests' failure: the timeout reports it. (One value for the suite: a
 * Test's own .timeout makes Criterion 2.4.1 leak under ASan.) */
TestSuite(kernel_waiter, .timeout = 30);

static void count_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	cr_assert_eq(res, 512);
	atomic_fetch_add((atomic_long *) ud, 1);
}

Test(kernel_waiter, a_ring_wait_with_nothing_in_flight_returns_at_once)
{
	auraio_engine_t *e = engine_of(1);
	int fd = temp_file(4096, 0);
	atomic_long done = 0;
	char buf[512];

	/* The state another thread's reap leaves behind: completion consumed, delivered. */
	cr_assert_not_null(auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 0, count_cb, &done));
	while (atomic_load(&done) == 0)
		cr_assert_geq(auraio_poll(e), 0);
	cr_assert_eq(ring_in_flight(&e->rings[0]), 0);
	cr_assert_eq(ring_wait_dispatch(&e->rings[0], -1, NULL), 0);
	auraio_destroy(e);
	close(fd);
}

struct race {
	auraio_engine_t *e;
	atomic_bool stop;
};

static void *poll_loop(void *arg)
{
	struct race *rc = arg;

	while (!atomic_load(&rc->stop))
		cr_assert_geq(auraio_poll(rc->e), 0);
	return NULL;
}

Test(kernel_waiter, wait_does_not_block_when_a_poller_reaps_its_completion)
{
	struct race rc = { .e = engine_of(1) };
	int fd = temp_file(4096, 0);
	atomic_long done = 0;
	char buf[512];
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, poll_loop, &rc), 0);
	for (long i = 0; i < 100000; i++) {
		while (!auraio_read(rc.e, fd, auraio_buf(buf), sizeof(buf), 0, count_cb, &done)) {
			cr_assert_eq(errno, EAGAIN);
			auraio_poll(rc.e);
		}
		cr_assert_geq(auraio_wait(rc.e, -1), 0);
		/* The wait may return while the poller still delivers the read: the next one
		 * goes into the same buffer only after this one's callback ran. */
		while (atomic_load(&done) < i + 1)
			cr_assert_geq(auraio_poll(rc.e), 0);
	}
	atomic_store(&rc.stop, true);
	pthread_join(t, NULL);
	auraio_destroy(rc.e); /* delivers what is left */
	cr_assert_eq(atomic_load(&done), 100000);
	close(fd);
}

/* The same race on several rings: auraio_wait saw two rings busy and slept on the epoll
 * set of all rings, but another thread had reaped their last completions - nothing
 * would ever make the set readable. The outcome set up directly: nothing in flight on
 * any ring, then the multi-ring wait. */
Test(kernel_waiter, a_wait_on_several_rings_with_nothing_in_flight_returns)
{
	auraio_engine_t *e = engine_of(2);

	cr_assert_eq(engine_wait_many(e, -1), 0);
	auraio_destroy(e);
}

/* ---- entries the kernel refused (EAGAIN/EBUSY) while another thread is the waiter ---- */

/*
 * Regression (the log's fault fuzz hung about once in several TSan CI runs): a thread
 * published entries and the kernel refused them; before it could enter again, the
 * kernel-waiter role went to a thread that had nothing staged of its own. That thread
 * slept in io_uring_enter submitting nothing - waiting for completions of entries that
 * sat published in the SQ, unconsumed. The outcome set up directly: the refused read
 * published, its retry duty (need_enter) taken by "another thread", then the wait the
 * engine runs next. It must submit what the kernel has not consumed before it sleeps.
 */
Test(kernel_waiter, a_ring_wait_submits_what_another_thread_published)
{
	auraio_engine_t *e = uring_engine(1);
	struct ring *r = &e->rings[0];
	int fd = temp_file(4096, 0);
	auraio_request_t *req;
	ssize_t res = 0;
	char buf[512];

	refuse(e, 1);
	req = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 512, NULL, NULL);
	cr_assert_not_null(req);
	if (faults_of(e) == 0)
		cr_assert_lt(auraio_flush(e), 0, "the rule refuses the read's first entry");
	cr_assert_eq(faults_of(e), 1);
	/* Published, not consumed; the thread that will retry it has not yet. */
	atomic_store(&r->need_enter, false);
	cr_assert_eq(atomic_load(&r->staged), 0);
	ring_wait_dispatch(r, -1, req); /* hung here: nothing would ever complete */
	cr_assert_eq(auraio_request_wait(e, req, -1, &res), 0);
	cr_assert_eq(res, 512);
	cr_assert(check_pattern(buf, sizeof(buf), 512));
	auraio_destroy(e);
	close(fd);
}

struct pipe_waiter {
	auraio_engine_t *e;
	int rfd;
	pid_t tid;
	atomic_bool started;
	ssize_t res;
};

static void *wait_on_pipe(void *arg)
{
	struct pipe_waiter *w = arg;
	auraio_request_t *req;
	char b;

	w->tid = (pid_t) syscall(SYS_gettid);
	req = auraio_read(w->e, w->rfd, auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	atomic_store(&w->started, true);
	cr_assert_eq(auraio_request_wait(w->e, req, -1, &w->res), 0);
	return NULL;
}

/*
 * A thread sleeps in the kernel as the ring's waiter, for a pipe read that only this
 * test's end will complete. Another thread's read is refused by the kernel, and again
 * when its wait retries it (the waiter role being taken, it cannot wait in the kernel
 * itself). It slept until the waiter let go - never, as the waiter's completion waits
 * for this one - instead of retrying its entries: they were all that could complete.
 */
Test(kernel_waiter, a_refused_wait_retries_while_another_thread_sleeps_in_the_kernel)
{
	auraio_engine_t *e = uring_engine(1);
	struct pipe_waiter w = { .e = e };
	int fd = temp_file(4096, 0), p[2];
	auraio_request_t *req;
	ssize_t res = 0;
	char buf[512];
	pthread_t t;

	cr_assert_eq(pipe(p), 0);
	w.rfd = p[0];
	cr_assert_eq(pthread_create(&t, NULL, wait_on_pipe, &w), 0);
	while (!atomic_load(&w.started) || !thread_sleeping(w.tid))
		sched_yield();
	refuse(e, 2);
	req = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 1024, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, -1, &res), 0); /* hung here */
	cr_assert_eq(res, 512);
	cr_assert(check_pattern(buf, sizeof(buf), 1024));
	cr_assert_eq(faults_of(e), 2, "both refusals happened");
	cr_assert_eq(write(p[1], "x", 1), 1);
	pthread_join(t, NULL);
	cr_assert_eq(w.res, 1);
	auraio_destroy(e);
	close(fd);
	close(p[0]);
	close(p[1]);
}
