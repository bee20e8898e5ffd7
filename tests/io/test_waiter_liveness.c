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
#include "test_util.h"

#define T_TIMEOUT 20

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

/* An io_uring engine of `rings` rings (else the test is skipped). */
static auraio_engine_t *uring_engine(int rings)
{
	auraio_engine_t *e = engine_of(rings);
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING) {
		auraio_destroy(e);
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
	}
	return e;
}

/* From now on the kernel refuses the next `count` calls that submit entries. */
static void refuse(auraio_engine_t *e, int count)
{
	auraio_fault_t f = { .fd = -1, .count = (uint64_t) count, .kind = AURAIO_FAULT_ENTER };
	int rc = auraio_fault_set(e, &f);

	if (rc == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	cr_assert_eq(rc, 0);
}

static uint64_t faults_of(auraio_engine_t *e)
{
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(e, &st), 0);
	return st.faults_injected;
}

static void until_asleep(pid_t tid)
{
	while (!thread_sleeping(tid))
		sched_yield();
}

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
	cr_assert_eq(pthread_create(t, NULL, wait_for_req, w), 0);
	while (atomic_load(&w->tid) == 0)
		sched_yield();
	until_asleep((pid_t) atomic_load(&w->tid));
	return (pid_t) atomic_load(&w->tid);
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
