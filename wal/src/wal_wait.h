/* SPDX-License-Identifier: MIT */
/*
 * wal_wait.h - waiting for durability without a thundering herd.
 *
 * A thread that must wait until every record up to `seq` is durable (a durable append,
 * aurawal_sync) queues a wal_waiter on log->waiters - in sequence order, since it does
 * so in the critical section that gave its record its sequence number - and sleeps,
 * without the log's lock, on the futex word of the batch that holds its record (or on
 * the log's word, log->wake_any, when that batch is not the active one: aurawal_sync).
 * When the writer makes records durable (or fails), it takes exactly the waiters
 * concerned off the list under the lock, marks each done, and after dropping the lock
 * wakes each of their words ONCE, with one FUTEX_WAKE for all its sleepers.
 *
 * Why one wake per batch, not per waiter: with 30 appenders on 2 CPUs, each woken
 * appender preempted the writer before it could wake the next one, so the wake-ups of
 * one batch were served one at a time (measured: ~0.8 extra context switches per
 * append). A single FUTEX_WAKE wakes them all before any runs. Waiters of the batch
 * share nothing else: none contends for the log's lock on waking, and one that wakes
 * for a word bumped by a later use of the same buffer just sleeps again.
 *
 * The waiter lives on the waiting thread's stack: once `done` is 1 the thread may return
 * and reuse that memory, so the waker reads everything it needs (`next`, `word`) before
 * storing `done`. The words live as long as the log.
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
	uint64_t seq;		/* wait until every record <= seq is durable */
	int status;		/* the outcome; written before `done` is set */
	_Atomic uint32_t done;	/* 0 = waiting, 1 = done */
	_Atomic uint32_t *word; /* the futex word it sleeps on */
	struct wal_waiter *next;
};

/* mu held: queue w (its seq is >= every queued waiter's: see above). */
static inline void wal_waiter_add(struct aurawal *log, struct wal_waiter *w, uint64_t seq)
{
	struct wal_batch *b = log->cur;

	w->seq = seq;
	w->status = 0;
	atomic_init(&w->done, 0);
	w->word = b && b->first_seq && b->first_seq <= seq && seq <= b->last_seq ? &b->wake_word
										 : &log->wake_any;
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

#define WAL_WAKE_WORDS 8 /* distinct words one wake-up handles at once */

static inline void wal_word_wake(_Atomic uint32_t *word)
{
	/* The bump makes a sleeper that read the old value before it saw `done` return
	 * from FUTEX_WAIT at once instead of sleeping (see wal_waiter_sleep). */
	atomic_fetch_add_explicit(word, 1, memory_order_release);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* No lock held: mark every waiter of the list done, then wake each of their words once. */
static inline void wal_waiters_wake(struct wal_waiter *w)
{
	_Atomic uint32_t *words[WAL_WAKE_WORDS];
	int n = 0;

	while (w) {
		struct wal_waiter *next = w->next; /* w may vanish once done is set */
		_Atomic uint32_t *word = w->word;
		int i = 0;

		while (i < n && words[i] != word)
			i++;
		if (i == n) {
			if (n == WAL_WAKE_WORDS) { /* rare: many batches at once */
				for (i = 0; i < n; i++)
					wal_word_wake(words[i]);
				n = 0;
			}
			words[n++] = word;
		}
		/* Release: pairs with the acquire load in wal_waiter_sleep(), so the waiter
		 * sees `status`. */
		atomic_store_explicit(&w->done, 1, memory_order_release);
		w = next;
	}
	for (int i = 0; i < n; i++)
		wal_word_wake(words[i]);
}

/* No lock held: sleep until the writer has set w->done; returns w->status. */
static inline int wal_waiter_sleep(struct aurawal *log, struct wal_waiter *w)
{
	for (;;) {
		/* The word first, then `done`: a wake between the two changes the word,
		 * so FUTEX_WAIT returns at once instead of missing it. */
		uint32_t v = atomic_load_explicit(w->word, memory_order_acquire);

		/* Acquire: pairs with the release store in wal_waiters_wake(). */
		if (atomic_load_explicit(&w->done, memory_order_acquire))
			return w->status;
		syscall(SYS_futex, w->word, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
		atomic_fetch_add_explicit(&log->st_wait_sleeps, 1, memory_order_relaxed);
		if (!atomic_load_explicit(&w->done, memory_order_acquire))
			atomic_fetch_add_explicit(&log->st_wait_futile, 1, memory_order_relaxed);
	}
}

#endif
