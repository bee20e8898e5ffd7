/* SPDX-License-Identifier: MIT */
/*
 * eventcount.h - sleep until "something changed" without a lost wake-up.
 *
 * A waiter registers (sleepers++), reads seq, re-checks its condition, and sleeps on a
 * futex only if seq is still what it read. A notifier changes the condition, then reads
 * sleepers with a seq_cst read-modify-write and, if anybody is registered, bumps seq and
 * wakes everyone. The pairing:
 *   waiter:   fetch_add(sleepers, 1) [seq_cst]  ->  load seq  ->  check condition
 *   notifier: change condition  ->  fetch_add(sleepers, 0) [seq_cst]  ->  bump seq
 * The two RMWs on `sleepers` are totally ordered. If the waiter's comes first, the
 * notifier sees it and bumps seq, so the futex wait returns at once. If the notifier's
 * comes first, the waiter's RMW reads from it and synchronises with it, so the waiter's
 * check sees the changed condition. (An RMW rather than a fence + load: same cost on x86,
 * and ThreadSanitizer models it.) The notifier pays one locked instruction when nobody
 * sleeps.
 */
#ifndef AURAIO_EVENTCOUNT_H
#define AURAIO_EVENTCOUNT_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct eventcount {
	_Atomic uint32_t seq;
	_Atomic uint32_t sleepers;
};

static inline void ev_init(struct eventcount *ev)
{
	atomic_init(&ev->seq, 0);
	atomic_init(&ev->sleepers, 0);
}

/* Register as a sleeper; returns the sequence to pass to ev_wait. Re-check the
 * condition after this and before ev_wait; call ev_cancel if it already holds. */
static inline uint32_t ev_prepare(struct eventcount *ev)
{
	atomic_fetch_add_explicit(&ev->sleepers, 1, memory_order_seq_cst);
	return atomic_load_explicit(&ev->seq, memory_order_seq_cst);
}

static inline void ev_cancel(struct eventcount *ev)
{
	atomic_fetch_sub_explicit(&ev->sleepers, 1, memory_order_relaxed);
}

/* Sleep until seq != seen or timeout (ns, -1 = none). Unregisters. 0 or -ETIME. */
static inline int ev_wait(struct eventcount *ev, uint32_t seen, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	rc = syscall(SYS_futex, &ev->seq, FUTEX_WAIT_PRIVATE, seen, tsp, NULL, 0);
	ev_cancel(ev);
	return (rc < 0 && errno == ETIMEDOUT) ? -ETIME : 0;
}

/* The condition changed: wake every registered sleeper. */
static inline void ev_notify(struct eventcount *ev)
{
	if (atomic_fetch_add_explicit(&ev->sleepers, 0, memory_order_seq_cst) == 0)
		return;
	atomic_fetch_add_explicit(&ev->seq, 1, memory_order_seq_cst);
	syscall(SYS_futex, &ev->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

#endif
