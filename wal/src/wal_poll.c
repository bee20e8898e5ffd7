/* SPDX-License-Identifier: MIT */
/*
 * wal_poll.c - delivering completions: aurawal_poll and aurawal_poll_until run the
 * callbacks of async appends and reads, and drive the engine while async reads are in
 * flight (they complete only when someone reaps it). Also whose work a callback is
 * (thread ids and owners), which decides what a plain poll waits for.
 *
 * Invariants: callbacks run with no lock held, taken from the shared ready lists one at a
 * time; a callback that runs is listed in log->running until it returns, and a poller is
 * listed in log->pollers for the whole of its wait. Must never wait, nor run a callback,
 * inside an auraio callback: an async read's completion is only queued there
 * (wal_deliver, from wal_read.c) and runs in the next poll.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "wal_internal.h"

/*
 * Whose work a callback is. A thread's plain poll waits for its own callbacks while
 * another thread runs them (nothing is in flight then, but its work is not delivered yet),
 * and never for anyone else's - another thread's callback may run long, or wait for this
 * very thread. Work is the starting thread's, and a callback's work is its owner's: a read
 * a callback starts (a relookup, the next link of a chain) belongs to whoever the callback
 * does, in whichever thread it runs. Ids, not pointers: a thread may end before its work.
 */
static _Atomic uint64_t next_thread_id = 1;
static _Thread_local uint64_t my_id;	  /* 0 until the thread first asks */
static _Thread_local uint64_t acting_for; /* while running a callback: its owner */

uint64_t wal_thread_id(void)
{
	if (!my_id) /* relaxed: only uniqueness matters */
		my_id = atomic_fetch_add_explicit(&next_thread_id, 1, memory_order_relaxed);
	return my_id;
}

uint64_t wal_owner(void)
{
	return acting_for ? acting_for : wal_thread_id();
}

/* mu held: take the next ready callback - an append's first, then a read's if `reads`. */
static struct wal_cb *take_ready(struct aurawal *log, bool reads)
{
	struct wal_cb *c = log->ready_cbs;

	if (c) {
		if (!(log->ready_cbs = c->next)) {
			log->ready_cbs_tail = NULL;
			atomic_store_explicit(&log->cbs_ready, false, memory_order_relaxed);
		}
	} else if (reads && (c = log->ready_reads)) {
		if (!(log->ready_reads = c->next))
			log->ready_reads_tail = NULL;
	}
	if (c)
		log->pending_cbs--;
	return c;
}

static int count_cbs(const struct wal_cb *c)
{
	int n = 0;

	for (; c; c = c->next)
		n++;
	return n;
}

/* mu held: the callback `r` stands for has returned. Forget it, and wake the pollers that
 * wait for it: those of its owner in other threads (their work is delivered) and every
 * aurawal_poll_until (a callback is what changes its condition). */
static void ran(struct aurawal *log, struct wal_running *r)
{
	struct wal_running **pp = &log->running;
	bool wake = false;

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	for (struct wal_poller *p = log->pollers; p; p = p->next) {
		if (p->owner == r->owner && p->self != r->runner)
			wake = p->delivered = true;
		wake |= p->until;
	}
	if (wake)
		pthread_cond_broadcast(&log->cv_done);
}

/*
 * Run the callbacks of completed async appends, and of reads if `reads` (no lock held):
 * at most as many as are ready when it starts (a callback that starts another read
 * answered from memory does not keep this call going), taken ONE at a time. A callback
 * may run long - or wait for another thread's completion (a store's multi-get nested in
 * a get's callback) - and those behind it stay on the shared lists meanwhile, for any
 * other poller to run; had this call taken the whole list, they would wait for it, and a
 * thread waiting for one of them would find nothing to wait on. While one runs it is
 * listed in log->running (its owner's polls wait for it), and this thread acts for its
 * owner (what it starts is the owner's work).
 */
int wal_run_ready_cbs(struct aurawal *log, bool reads)
{
	uint64_t self = wal_thread_id(), saved = acting_for;
	struct wal_running r;
	struct wal_cb *c;
	int n = 0, max;

	pthread_mutex_lock(&log->mu);
	max = count_cbs(log->ready_cbs) + (reads ? count_cbs(log->ready_reads) : 0);
	while (n < max && (c = take_ready(log, reads))) {
		r = (struct wal_running){ c->owner, self, log->running };
		log->running = &r;
		pthread_mutex_unlock(&log->mu);
		acting_for = c->owner;
		if (c->rcb)
			c->rcb(c->arg, c->status, c->len, c->seq);
		else
			c->cb(c->arg, c->status, c->loc, c->seq);
		acting_for = saved;
		free(c);
		n++;
		pthread_mutex_lock(&log->mu);
		ran(log, &r);
	}
	pthread_mutex_unlock(&log->mu);
	return n;
}

/* A read's completion waits for aurawal_poll(): not on ready_cbs, which appends, syncs
 * and flushes run too (the hint cbs_ready is theirs, so it is left alone). */
void wal_deliver(struct aurawal *log, struct wal_cb *c)
{
	c->next = NULL;
	if (log->ready_reads_tail)
		log->ready_reads_tail->next = c;
	else
		log->ready_reads = c;
	log->ready_reads_tail = c;
	pthread_cond_broadcast(&log->cv_done);
}

/* Deadline for a poll: -1 = none. */
static uint64_t poll_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : wal_now_ns() + (uint64_t) timeout_ms * 1000000ull;
}

struct poll_stop {
	bool (*fn)(void *arg);
	void *arg;
};

/* mu held: does another thread run a callback of p's owner? */
static bool owner_runs_elsewhere(const struct aurawal *log, const struct wal_poller *p)
{
	for (const struct wal_running *r = log->running; r; r = r->next)
		if (r->owner == p->owner && r->runner != p->self)
			return true;
	return false;
}

/* mu held: is the wait of a poll over, with nothing ready to run? A poll_until waits for
 * its condition. A plain poll waits while anything is in flight, or a callback of its own
 * runs in another thread - until one of those has returned. */
static bool wait_over(struct aurawal *log, const struct wal_poller *p, const struct poll_stop *stop)
{
	if (stop)
		return stop->fn(stop->arg);
	return p->delivered || (log->pending_cbs == 0 && !owner_runs_elsewhere(log, p));
}

/*
 * mu held, about to wait: with flush_delay_us 0 the active batch is written only when a
 * buffer fills, on a sync or a durable append - so the callbacks of non-durable async
 * appends in it would never come to a poller that waits alone. Have the writer write
 * it (as aurawal_flush() does, without waiting here). With a flush delay it is written
 * within the delay anyway.
 */
static void ask_write_cbs(struct aurawal *log)
{
	if (log->opts.flush_delay_us || !log->cur || !log->cur->cbs)
		return;
	log->flush_target = MAX(log->flush_target, log->next_seq - 1);
	if (!log->io_busy) /* else the writer looks again once its I/O completes */
		pthread_cond_signal(&log->cv_writer);
}

/*
 * Wait (mu held) until a completion is ready, the wait is over (wait_over), or the
 * deadline. Async reads complete only when someone reaps the engine, so while any is in
 * flight the poller drives it itself, a millisecond at a time (append completions
 * meanwhile arrive through cv_done from the writer thread; so do the wake-ups of ran()
 * after a callback another thread ran) - and submits again those parked for want of room
 * in the ring. The poller is listed in log->pollers throughout, also while it drives the
 * engine without mu: a callback of its own that returns meanwhile marks it delivered.
 */
static void poll_wait(struct aurawal *log, struct wal_poller *p, uint64_t deadline,
		      const struct poll_stop *stop)
{
	while (!log->ready_cbs && !log->ready_reads && !wait_over(log, p, stop)) {
		uint64_t now = wal_now_ns();
		struct timespec ts;

		if (now >= deadline)
			return;
		ask_write_cbs(log); /* again each time: more may have come meanwhile */
		if (log->pending_reads) {
			pthread_mutex_unlock(&log->mu);
			wal_resubmit_parked(log);
			auraio_wait(log->engine, 1);
			pthread_mutex_lock(&log->mu);
			continue;
		}
		log->until_waiters += stop != NULL;
		if (deadline != UINT64_MAX) {
			uint64_t t;

			clock_gettime(CLOCK_REALTIME, &ts);
			t = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec +
			    (deadline - now);
			ts.tv_sec = (time_t) (t / 1000000000ull);
			ts.tv_nsec = (long) (t % 1000000000ull);
			pthread_cond_timedwait(&log->cv_done, &log->mu, &ts);
		} else {
			pthread_cond_wait(&log->cv_done, &log->mu);
		}
		log->until_waiters -= stop != NULL;
	}
}

/* mu held: add p to / remove it from log->pollers. */
static void poller_add(struct aurawal *log, struct wal_poller *p)
{
	p->next = log->pollers;
	log->pollers = p;
}

static void poller_remove(struct aurawal *log, struct wal_poller *p)
{
	struct wal_poller **pp = &log->pollers;

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
}

/*
 * A poll: reap, then wait (unless timeout_ms is 0) and run what is ready. A completion
 * that woke it may be taken by another poller first: then it waits on - the wait's end
 * is what decides when a poll that ran nothing returns, not a wake-up.
 */
static int poll_body(struct aurawal *log, int timeout_ms, const struct poll_stop *stop)
{
	struct wal_poller p = { wal_owner(), wal_thread_id(), stop != NULL, false, NULL };
	uint64_t deadline = poll_deadline(timeout_ms);
	bool over;
	int n;

	pthread_mutex_lock(&log->mu);
	if (log->pending_reads && !log->ready_cbs && !log->ready_reads) { /* reap, no wait */
		pthread_mutex_unlock(&log->mu);
		auraio_poll(log->engine);
		pthread_mutex_lock(&log->mu);
	}
	if (log->parked) {
		pthread_mutex_unlock(&log->mu);
		wal_resubmit_parked(log);
		pthread_mutex_lock(&log->mu);
	}
	if (timeout_ms == 0) {
		pthread_mutex_unlock(&log->mu);
		return wal_run_ready_cbs(log, true);
	}
	poller_add(log, &p);
	for (;;) {
		poll_wait(log, &p, deadline, stop);
		pthread_mutex_unlock(&log->mu);
		n = wal_run_ready_cbs(log, true);
		pthread_mutex_lock(&log->mu);
		over = n > 0 || wait_over(log, &p, stop) || wal_now_ns() >= deadline;
		if (over)
			break;
	}
	poller_remove(log, &p);
	pthread_mutex_unlock(&log->mu);
	return n;
}

AURAWAL_API int aurawal_poll(aurawal_t *log, int timeout_ms)
{
	if (!log)
		return -EINVAL;
	return poll_body(log, timeout_ms, NULL);
}

AURAWAL_API int aurawal_poll_until(aurawal_t *log, int timeout_ms, bool (*stop)(void *arg),
				   void *arg)
{
	struct poll_stop st = { stop, arg };

	if (!log || !stop)
		return -EINVAL;
	return poll_body(log, timeout_ms, &st);
}
