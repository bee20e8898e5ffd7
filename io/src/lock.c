/* SPDX-License-Identifier: MIT */
/*
 * lock.c - the contended path of the ring locks (lock.h). Out of line so that the
 * uncontended lock stays a single compare-and-swap at every call site.
 */
#include "lock.h"

#define LOCK_SPINS 128

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

void lock_slow(struct lock *l)
{
	for (int i = 0; i < LOCK_SPINS; i++) {
		cpu_relax();
		if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 && lock_try(l))
			return;
	}
	/* Mark "held with sleepers" and sleep until the holder's unlock wakes us; whoever
	 * gets the lock this way keeps state 2, so its unlock wakes the next sleeper. */
	while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
		syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void lock_wake(struct lock *l)
{
	syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
