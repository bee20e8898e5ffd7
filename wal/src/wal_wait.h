/* SPDX-License-Identifier: MIT */
/*
 * wal_wait.h - waiting for durability without a thundering herd.
 *
 * A thread that must wait until every record up to `seq` is durable (a durable append,
 * aurawal_sync) queues a wal_waiter on log->waiters - in sequence order, since it does
 * so in the critical section that gave its record its sequence number - and sleeps on
 * the waiter's own futex word, without the log's lock. When the writer makes records
 * durable (or fails), it takes exactly the waiters concerned off the list under the lock,
 * and wakes them one by one after dropping it. No other waiter wakes, and none of them
 * contends for the log's lock on waking.
 *
 * The waiter lives on the waiting thread's stack: once `done` is 1 the thread may return
 * and reuse that memory, so the waker reads everything it needs (`next`) before storing
 * `done`. A FUTEX_WAKE that arrives after that store may hit a later wait at the same
 * address: a spurious wake-up, which the wait loop absorbs (it re-checks `done`).
 */
#ifndef AURAWAL_WAIT_H
#define AURAWAL_WAIT_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wal_internal.h"

struct wal_waiter {
	uint64_t seq;	       /* wait until every record <= seq is durable */
	int status;	       /* the outcome; written before `done` is set */
	_Atomic uint32_t done; /* the futex word: 0 = waiting, 1 = done */
	struct wal_waiter *next;
};

/* mu held: queue w (its seq is >= every queued waiter's: see above). */
static inline void wal_waiter_add(struct aurawal *log, struct wal_waiter *w, uint64_t seq)
{
	w->seq = seq;
	w->status = 0;
	atomic_init(&w->done, 0);
	w->next = NULL;
	if (log->waiters_tail)
		log->waiters_tail->next = w;
	else
		log->waiters = w;
	log->waiters_tail = w;
}

/* mu held: take the waiters for sequences <= upto off the list, with `status`. Returns
 * them as a list for wal_waiters_wake(). */
static inline struct wal_waiter *wal_waiters_take(struct aurawal *log, uint64_t upto, int status)
{
	struct wal_waiter *head = log->waiters, *last = NULL, *w;

	for (w = head; w && w->seq <= upto; w = w->next) {
		w->status = status;
		last = w;
	}
	if (!last)
		return NULL;
	log->waiters = last->next;
	if (!log->waiters)
		log->waiters_tail = NULL;
	last->next = NULL;
	return head;
}

/* No lock held: wake every waiter of the list. */
static inline void wal_waiters_wake(struct wal_waiter *w)
{
	while (w) {
		struct wal_waiter *next = w->next; /* w may vanish once done is set */

		/* Release: pairs with the acquire load in wal_waiter_sleep(), so the waiter
		 * sees `status`. */
		atomic_store_explicit(&w->done, 1, memory_order_release);
		syscall(SYS_futex, &w->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		w = next;
	}
}

/* No lock held: sleep until the writer has set w->done; returns w->status. */
static inline int wal_waiter_sleep(struct aurawal *log, struct wal_waiter *w)
{
	/* Acquire: pairs with the release store in wal_waiters_wake(). */
	while (!atomic_load_explicit(&w->done, memory_order_acquire)) {
		syscall(SYS_futex, &w->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		atomic_fetch_add_explicit(&log->st_wait_sleeps, 1, memory_order_relaxed);
		if (!atomic_load_explicit(&w->done, memory_order_acquire))
			atomic_fetch_add_explicit(&log->st_wait_futile, 1, memory_order_relaxed);
	}
	return w->status;
}

#endif
