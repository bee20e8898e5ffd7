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
#include <stdatomic.h>

#include "engine.h"
#include "test_util.h"

static auraio_engine_t *engine_of(int rings)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.ring_count = rings;
	o.queue_depth = 8;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	return e;
}

static void count_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	cr_assert_eq(res, 512);
	atomic_fetch_add((atomic_long *) ud, 1);
}

Test(kernel_waiter, a_ring_wait_with_nothing_in_flight_returns_at_once, .timeout = 10)
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

Test(kernel_waiter, wait_does_not_block_when_a_poller_reaps_its_completion, .timeout = 30)
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
Test(kernel_waiter, a_wait_on_several_rings_with_nothing_in_flight_returns, .timeout = 10)
{
	auraio_engine_t *e = engine_of(2);

	cr_assert_eq(engine_wait_many(e, -1), 0);
	auraio_destroy(e);
}
