/* SPDX-License-Identifier: MIT */
/*
 * wait.c - engine-wide polling and waiting: auraio_poll(), auraio_flush() and
 * auraio_wait() over every ring. One ring's reaping, delivery and blocking wait (the
 * kernel-waiter role) are complete.c's; this file decides which ring to wait on, or the
 * epoll set of all of them, and when a wait is over.
 *
 * Liveness: auraio_wait() returns 0 only for the reasons auraio.h lists (wait_body). No
 * sleep here is unbounded: with several rings, the sleep on one ring and the sleep on
 * the epoll set last WAIT_SLICE_MS at most, after which the rings are looked at again -
 * another thread may have submitted to an idle ring, handled a completion, or had its
 * entries refused, and none of that would wake us (docs/auraio.md, "Completion and
 * waiting").
 *
 * Must never: hold a lock while it sleeps here (the rings' waits do their own locking).
 */
#include <errno.h>
#include <sys/epoll.h>

#include "backend.h"

/* Where this thread starts its next sweep over the rings: a per-thread rotor, so that
 * no ring starves and no shared counter is written on the completion path. */
static TLS_IE unsigned tls_rotor;

/* Handle what is ready on every ring, without flushing and without blocking.
 * may_enter: also enter the kernel for completions parked as task work (see reap). */
static int reap_all(struct auraio_engine *e, bool may_enter)
{
	unsigned start = tls_rotor++;
	int handled = 0;

	for (unsigned i = 0; i < e->ring_count; i++)
		handled += ring_reap_dispatch(&e->rings[(start + i) % e->ring_count], may_enter);
	return handled;
}

/* Every ring is flushed, even after one the kernel refused; the first error is kept. */
static int flush_all(struct auraio_engine *e)
{
	int total = 0, err = 0;

	for (unsigned i = 0; i < e->ring_count; i++) {
		int rc = ring_flush(&e->rings[i]);

		if (rc < 0 && err == 0)
			err = rc;
		else if (rc > 0)
			total += rc;
	}
	return err ? err : total;
}

/* Flush, handle, flush again: what the callbacks submitted goes out before returning,
 * so an application sleeping on the poll fd next never strands it. */
AURAIO_API int auraio_poll(auraio_engine_t *e)
{
	int n;

	if (!e)
		return -EINVAL;
	flush_all(e);
	n = reap_all(e, true);
	if (n > 0)
		flush_all(e);
	return n;
}

AURAIO_API int auraio_flush(auraio_engine_t *e)
{
	if (!e)
		return -EINVAL;
	return flush_all(e);
}

/* Will any ring still post a completion? */
static bool any_awaited(struct auraio_engine *e)
{
	for (unsigned i = 0; i < e->ring_count; i++)
		if (ring_awaits_completion(&e->rings[i]))
			return true;
	return false;
}

/* Completions handled on every ring so far, by any thread (relaxed: a hint that moves
 * only forward; `completed` is stored under each ring's cq_lock). */
static uint64_t handled_so_far(const struct auraio_engine *e)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < e->ring_count; i++)
		n += atomic_load_explicit(&e->rings[i].completed, memory_order_relaxed);
	return n;
}

/*
 * Several rings busy: sleep on the epoll set of all of them, then sweep. Other threads
 * may reap the rings' completions meanwhile - the last ones even, after which nothing
 * would ever make the set readable: so the sleep ends once nothing is in flight, checked
 * before it and after every WAIT_SLICE_MS of it (a single ring's wait checks under its
 * lock instead: kernel_wait). Entries another thread had refused while we slept (an
 * auraio_cancel() that returned 0, orphans a poller resubmitted) are sent again after
 * each slice too: no completion would come for them otherwise, and that thread may not
 * come back. And the sleep ends when another thread has handled a completion meanwhile
 * (auraio.h: the wait then returns 0): a reaper that consumed the CQEs before our epoll
 * looked left the set unreadable, and the thread waiting in auraio_wait() for what the
 * callback did would sleep on. The slices cost a wake-up per 100 ms to a thread waiting
 * long for slow I/O; each race costs it at most that.
 */

int engine_wait_many(struct auraio_engine *e, int timeout_ms)
{
	struct epoll_event ev[8];
	int fd = auraio_get_poll_fd(e);
	uint64_t seen = handled_so_far(e);

	if (fd < 0)
		return fd;
	/* Entries the kernel refused are in no ring's kernel queue, so no completion will
	 * come for them: do not sleep (need_enter makes the next call retry them), as a
	 * single ring's wait does not (uring_wait). */
	if (flush_all(e) < 0)
		timeout_ms = 0;
	while (any_awaited(e)) {
		int slice =
		    timeout_ms < 0 || timeout_ms > WAIT_SLICE_MS ? WAIT_SLICE_MS : timeout_ms;

		/* EINTR is expected: COOP_TASKRUN wakes a sleeper with a notify signal so that
		 * its parked completions get posted on the way back to userspace. */
		if (epoll_wait(fd, ev, (int) ARRAY_SIZE(ev), slice) != 0)
			break;
		if (timeout_ms >= 0 && (timeout_ms -= slice) <= 0)
			break;
		if (flush_all(e) < 0) /* refused again: return, the caller's next call retries */
			break;
		if (handled_so_far(e) != seen)
			break;
	}
	return reap_all(e, true);
}

static int wait_body(struct auraio_engine *e, int timeout_ms);

AURAIO_API int auraio_wait(auraio_engine_t *e, int timeout_ms)
{
	int n;

	if (!e)
		return -EINVAL;
	tls_dl.in_wait++;
	n = wait_body(e, timeout_ms);
	tls_dl.in_wait--;
	return n;
}

/* Are entries the kernel refused waiting for a retry on some ring? */
static bool any_refused(const struct auraio_engine *e)
{
	for (unsigned i = 0; i < e->ring_count; i++)
		if (atomic_load_explicit(&e->rings[i].need_enter, memory_order_relaxed))
			return true;
	return false;
}

/* The rings with something in flight: how many, and one of them. */
static unsigned busy_rings(struct auraio_engine *e, struct ring **busy)
{
	unsigned nbusy = 0;

	for (unsigned i = 0; i < e->ring_count; i++) {
		if (ring_in_flight(&e->rings[i]) > 0) {
			*busy = &e->rings[i];
			nbusy++;
		}
	}
	return nbusy;
}

/*
 * How long to sleep on the one busy ring. With several rings, another thread may submit
 * to a ring that was idle when we looked, and a completion there wakes nobody asleep on
 * this ring's wait - yet auraio.h promises that a completion on any ring ends the wait
 * (a submitter may flush and then wait for its callback without calling in again). So
 * the sleep lasts a slice at most, and wait_body looks at the rings again (several busy:
 * the epoll set). A wake-up per slice of a long wait; none per I/O.
 */
static int64_t narrow_timeout(const struct auraio_engine *e, int64_t left, int timeout_ms)
{
	const int64_t slice = (int64_t) WAIT_SLICE_MS * (int64_t) NSEC_PER_MSEC;
	int64_t t = left < 0 ? ms_to_ns(timeout_ms) : left;

	return e->ring_count > 1 && (t < 0 || t > slice) ? slice : t;
}

/*
 * Block until this call handles a completion, or auraio.h's reasons to return 0 hold:
 * the timeout passed, nothing is in flight, another thread handled a completion, or the
 * kernel refused entries (need_enter: the caller's next call retries them). One wait
 * can end without any of these - woken because the ring's kernel waiter let go after an
 * empty pass or its own timeout, or by an internal completion (a cancel's own), an
 * orphan sent again or a signal - and returning 0 then would be early: wait again.
 */
static int wait_body(struct auraio_engine *e, int timeout_ms)
{
	uint64_t deadline = 0, seen, now;
	struct ring *busy = NULL;
	int64_t left = -1;
	unsigned nbusy;
	int n;

	/* What is ready is handled without a syscall; staged submissions then go out with
	 * the blocking wait below (one io_uring_enter does both), or with the next call. */
	n = reap_all(e, false);
	if (n > 0)
		return n;
	if (timeout_ms == 0) {
		flush_all(e);
		return reap_all(e, true);
	}
	seen = handled_so_far(e);
	if (timeout_ms > 0)
		deadline = now_ns() + (uint64_t) ms_to_ns(timeout_ms);
	for (;;) {
		nbusy = busy_rings(e, &busy);
		if (nbusy == 0)
			return 0;
		if (nbusy == 1)
			n = ring_wait_dispatch(busy, narrow_timeout(e, left, timeout_ms), NULL);
		else
			n = engine_wait_many(e, left < 0
						    ? timeout_ms
						    : (int) ((left + (int64_t) NSEC_PER_MSEC - 1) /
							     (int64_t) NSEC_PER_MSEC));
		if (n != 0 || handled_so_far(e) != seen || any_refused(e))
			return n;
		if (timeout_ms > 0) {
			now = now_ns();
			if (now >= deadline)
				return 0;
			left = (int64_t) (deadline - now);
		}
	}
}
