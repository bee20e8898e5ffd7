/* SPDX-License-Identifier: MIT */
/*
 * lock.h - the ring locks: a three-state futex mutex (0 free, 1 held, 2 held with
 * sleepers). Uncontended, lock is one compare-and-swap and unlock one exchange - about a
 * tenth of the instructions of pthread_mutex_lock/unlock, and these run on every
 * submission. Under contention a waiter spins briefly (the holder's critical sections
 * are a few dozen instructions, never a syscall) and then sleeps on the futex.
 *
 * Acquire on lock and release on unlock are what order the protected data; both are
 * C11 atomics, so ThreadSanitizer sees the happens-before edges.
 */
#ifndef AURAIO_LOCK_H
#define AURAIO_LOCK_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

struct lock {
	_Atomic uint32_t v;
};

static inline void lock_init(struct lock *l)
{
	atomic_init(&l->v, 0);
}

static inline bool lock_try(struct lock *l)
{
	uint32_t free_ = 0;

	return atomic_compare_exchange_strong_explicit(&l->v, &free_, 1, memory_order_acquire,
						       memory_order_relaxed);
}

/* Contended path (lock.c): spin briefly, then sleep on the futex. */
void lock_slow(struct lock *l);

static inline void lock_acquire(struct lock *l)
{
	if (likely(lock_try(l)))
		return;
	lock_slow(l);
}

/* Wake one sleeper of a lock just released (lock.c). */
void lock_wake(struct lock *l);

/* The first half of lock_release, for a caller that wakes out of line (a tail call
 * keeps its own path free of calls): release, and return whether a sleeper must be
 * woken with lock_wake(). */
static inline bool lock_release_begin(struct lock *l)
{
	/* Release pairs with the acquire in lock_try / lock_slow. */
	return unlikely(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2);
}

static inline void lock_release(struct lock *l)
{
	if (lock_release_begin(l))
		syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#endif
