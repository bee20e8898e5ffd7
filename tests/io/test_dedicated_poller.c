/* SPDX-License-Identifier: MIT */
/*
 * A dedicated poller: a thread that submits nothing and only calls auraio_wait() or
 * auraio_poll() (auraio.h: auraio_wait returns 0 "when nothing is (or is any longer) in
 * flight"; auraio_poll returns the completions it handled, 0 if none). With no I/O in
 * flight anywhere, both return 0 at once, even a wait without a timeout (a wait that
 * blocked for ever is caught by the suite's timeout); with another thread's I/O in
 * flight, the poller's wait sleeps until it completes, runs its callback in the poller
 * thread and counts it. One ring and two; both backends.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "backend.h"
#include "io_route.h"
#include "refusing_engine.h"

#define T_TIMEOUT 20

TestSuite(dedicated_poller, .timeout = T_TIMEOUT);

static const auraio_backend_t backends[] = { AURAIO_BACKEND_AUTO, AURAIO_BACKEND_THREADS };

struct poller {
	auraio_engine_t *e;
	bool use_poll; /* idle case: auraio_poll instead of auraio_wait(-1) */
	atomic_int tid;
	int rc[3];
	/* busy case: what the waits returned in total, and who ran the callback */
	int handled, calls_seen;
	atomic_int cb_calls, cb_tid;
	long cb_res;
};

/* Nothing in flight: three calls, each must return 0 at once. */
static void *idle_poller(void *arg)
{
	struct poller *p = arg;

	atomic_store(&p->tid, (int) syscall(SYS_gettid));
	for (int i = 0; i < 3; i++)
		p->rc[i] = p->use_poll ? auraio_poll(p->e) : auraio_wait(p->e, i == 2 ? 0 : -1);
	return NULL;
}

Test(dedicated_poller, with_nothing_in_flight_wait_and_poll_return_zero_at_once)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		for (int rings = 1; rings <= 2; rings++) {
			for (int use_poll = 0; use_poll < 2; use_poll++) {
				struct poller p = { .e = engine_on(backends[i], rings),
						    .use_poll = use_poll };
				pthread_t t;

				cr_assert_eq(pthread_create(&t, NULL, idle_poller, &p), 0);
				cr_assert_eq(pthread_join(t, NULL), 0);
				for (int k = 0; k < 3; k++)
					cr_assert_eq(p.rc[k], 0, "call %d returned %d", k, p.rc[k]);
				auraio_destroy(p.e);
			}
		}
	}
}

static void note_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct poller *p = ud;

	(void) req;
	p->cb_res = (long) res;
	atomic_store(&p->cb_tid, (int) syscall(SYS_gettid));
	atomic_fetch_add(&p->cb_calls, 1);
}

/* Wait until the callback has run; then once more (nothing is left: 0). */
static void *busy_poller(void *arg)
{
	struct poller *p = arg;

	atomic_store(&p->tid, (int) syscall(SYS_gettid));
	while (atomic_load(&p->cb_calls) == 0) {
		int rc = auraio_wait(p->e, -1);

		if (rc < 0) { /* checked by the test's thread: no assertion outside it */
			p->handled = rc;
			return NULL;
		}
		p->handled += rc;
	}
	p->rc[0] = auraio_wait(p->e, -1);
	return NULL;
}

/*
 * This thread submits a pipe read to ring `ring` and never calls into the engine again;
 * the poller, asleep in auraio_wait(-1), runs the read's callback once the pipe has data.
 */
static void poller_delivers_case(auraio_backend_t b, int rings, unsigned ring)
{
	struct poller p = { .e = engine_on(b, rings) };
	char buf[8];
	pthread_t t;
	int pfd[2];
	pid_t tid;

	cr_assert_eq(pipe(pfd), 0);
	route_to(p.e, ring);
	cr_assert_not_null(auraio_read(p.e, pfd[0], auraio_buf(buf), sizeof(buf), 0, note_cb, &p));
	cr_assert_geq(auraio_flush(p.e), 0);
	tid = start_asleep(&t, busy_poller, &p, &p.tid);
	cr_assert_eq(atomic_load(&p.cb_calls), 0);
	cr_assert_eq(write(pfd[1], "abcd", 4), 4);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(atomic_load(&p.cb_calls), 1);
	cr_assert_eq(atomic_load(&p.cb_tid), tid, "the callback ran in another thread");
	cr_assert_eq(p.cb_res, 4);
	cr_assert_eq(p.handled, 1, "the poller's waits counted %d completions", p.handled);
	cr_assert_eq(p.rc[0], 0);
	auraio_destroy(p.e);
	close(pfd[0]);
	close(pfd[1]);
}

Test(dedicated_poller, delivers_another_threads_completion_on_one_ring)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		poller_delivers_case(backends[i], 1, 0);
}

Test(dedicated_poller, delivers_another_threads_completion_on_another_ring)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		poller_delivers_case(backends[i], 2, 1);
}
