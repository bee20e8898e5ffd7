/* SPDX-License-Identifier: MIT */
/* refusing_engine.h - the engine liveness suites' helpers: small engines, a kernel that
 * refuses entries (an ENTER fault rule), and waiting until a thread is asleep. */
#ifndef AURA_REFUSING_ENGINE_H
#define AURA_REFUSING_ENGINE_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "test_util.h"

/* An engine of `rings` rings of queue_depth 8 (the adaptive controller on). */
static inline auraio_engine_t *engine_of(int rings)
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
static inline auraio_engine_t *uring_engine(int rings)
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
static inline void refuse(auraio_engine_t *e, int count)
{
	auraio_fault_t f = { .fd = -1, .count = (uint64_t) count, .kind = AURAIO_FAULT_ENTER };
	int rc = auraio_fault_set(e, &f);

	if (rc == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	cr_assert_eq(rc, 0);
}

static inline uint64_t faults_of(auraio_engine_t *e)
{
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(e, &st), 0);
	return st.faults_injected;
}

static inline void until_asleep(pid_t tid)
{
	while (!thread_sleeping(tid))
		sched_yield();
}

/* Until thread tid sleeps in epoll_wait: the wait of a thread waiting on several rings.
 * (Asleep somewhere - thread_sleeping - may be on a lock on its way there, before the
 * wait has looked at anything.) A kernel that does not say where falls back to asleep. */
static inline void until_in_epoll_wait(pid_t tid)
{
	for (;;) {
		long nr = thread_syscall(tid);
		bool epoll = nr == SYS_epoll_pwait || nr == -2;

#ifdef SYS_epoll_wait
		epoll |= nr == SYS_epoll_wait;
#endif
#ifdef SYS_epoll_pwait2
		epoll |= nr == SYS_epoll_pwait2;
#endif
		if (epoll && thread_sleeping(tid))
			return;
		sched_yield();
	}
}

/* Start fn(arg) in *t - fn stores its thread id in *tid first - and return that id once
 * the thread is asleep (in the wait fn goes on to). */
static inline pid_t start_asleep(pthread_t *t, void *(*fn)(void *), void *arg, atomic_int *tid)
{
	cr_assert_eq(pthread_create(t, NULL, fn, arg), 0);
	while (atomic_load(tid) == 0)
		sched_yield();
	until_asleep((pid_t) atomic_load(tid));
	return (pid_t) atomic_load(tid);
}

#endif
