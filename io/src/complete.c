/* SPDX-License-Identifier: MIT */
/*
 * complete.c - the completion path: reap, account, deliver, and one ring's wait (the
 * engine-wide auraio_poll/auraio_flush/auraio_wait are wait.c's).
 *
 * Reaping happens under the ring's cq_lock, at most REAP_BATCH completions per
 * acquisition. Accounting (counters, histogram, result) is done under the lock, reading
 * io_uring's CQEs in place, with one clock read per pass and the pass's sums stored once
 * (struct pass); delivery (callbacks, waking waitable requests, returning requests to the
 * pool) after it is released, so a callback may submit, poll or wait.
 *
 * Waiting: the thread that holds cq_lock may block in the kernel for the ring (the
 * "kernel waiter"); it submits any staged entries in the same syscall. Every other
 * thread that needs the ring's completions sleeps on the ring's eventcount, which is
 * notified whenever cq_lock is released and whenever a waitable request is completed.
 * A sleeper therefore wakes either to its own completion or to take over the kernel
 * wait - no completion can be consumed while a thread that needs it sleeps unaware.
 *
 * Orphans (io_uring): the kernel ties a request to the thread whose io_uring_enter
 * took it from the SQ - any thread that flushed the ring, not necessarily the one that
 * submitted it. What the kernel continues in that thread's task work - the next request
 * of a linked chain once the one before completed, a read retried when its page
 * arrived, an O_DIRECT write the block layer sent back with EAGAIN - fails once that
 * thread has exited: -EFAULT (io_req_task_submit on an exiting task) or -ECANCELED (no
 * io-wq to queue it on). Measured: a write + fdatasync chain whose flushing thread
 * exited at once lost its fdatasync to -EFAULT 294 times in 300. Such a request never
 * ran, so it is submitted again by the thread that reaped the failure (alive: it is in
 * the engine), up to MAX_RETRIES times: a -EFAULT or an unasked-for -ECANCELED
 * (auraio_cancel() not called, the engine not shutting down) of a request that heads
 * its chain or whose predecessor completed in full. A real EFAULT (a bad buffer) comes
 * back each time and is delivered after the last try. A chain member is resubmitted
 * with the rest of its chain, whose -ECANCELED CQEs (the kernel fails them right after
 * it) are held until they are all in: the chain goes out again whole, in order. A
 * request auraio_cancel() was called for while it was held (the kernel found nothing to
 * cancel) is cancelled again right after it goes out - and so is every one that goes out
 * while the engine is being destroyed (its cancel of everything found them held).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "backend.h"

struct delivery {
	struct auraio_request *head, *tail; /* requests with callbacks, linked by ->next */
	struct auraio_request *retry;	    /* orphans to submit again, linked by ->next */
	int count;			    /* completions handled (callbacks + waitables) */
	uint64_t now;			    /* when the pass reaped them */
};

/*
 * Submissions made inside a callback into the ring being delivered are staged; the
 * submit sends the batch once it reaches the batch threshold (submit.c, stage_account),
 * and the poll or wait that runs the callbacks submits what is left, in the same syscall
 * as its next wait when it can. Liveness rule: after any dispatch of a ring, if the only
 * work left on it is staged entries, they are flushed - no completion would ever bring
 * anyone back for them. auraio_wait() is the exception, documented to leave them for its
 * next call: an event loop calls it again, and that call's one io_uring_enter both
 * submits and waits.
 */
TLS_IE struct delivery_tls tls_dl;

/* After a dispatch of r: apply the liveness rule. */
static void settle(struct ring *r)
{
	uint32_t staged = atomic_load_explicit(&r->staged, memory_order_relaxed);

	if (staged && !tls_dl.in_wait && tls_dl.depth == 0 && ring_in_flight(r) == staged)
		ring_flush(r);
}

/*
 * A reap pass's accounting, gathered during the pass and stored once at its end.
 * Latency runs: a request's latency is the pass's `now` less its submit time, and every
 * request a delivery's callbacks submitted carries that delivery's time (submit_clock),
 * so the completions of a pass come in runs of one latency. A run is counted as one
 * (latency, count) pair - in the ring's histogram, the controller's window and the
 * maximum - when it ends: every completion is counted, with the same result as one at a
 * time, and a completion that continues a run costs one compare.
 *
 * The state is split so that what every completion touches stays in registers:
 * `struct pass` never leaves reap_batch's inlined code (no pointer to it escapes, so the
 * compiler keeps its fields in registers), while `struct pass_rare` - touched once per
 * run, error or unusual completion - is what the out-of-line helpers get. The pass's
 * count is not counted: it is the CQEs reaped less those `skipped`.
 */
struct pass_rare {
	uint64_t now;
	uint64_t bytes[2]; /* read, written: indexed by opcode & 1 (op_dir) */
	uint64_t lat_max;
	uint64_t errors, fixed_buf, internal, stale;
	unsigned run_hb; /* the current run's ring-histogram bucket */
	int skipped;	 /* reaped, not handled: internal, stale, parked */
	struct adaptive_pass win;
	struct auraio_request *retry; /* orphans to submit again */
};

struct pass {
	struct pass_rare *rare;
	struct auraio_request *reqs; /* the ring's pool, in registers for the loop */
	uint32_t nreqs;
	uint32_t run_n;		      /* the current run's length */
	uint64_t run_submit_ns;	      /* its submit time (UINT64_MAX: none yet) */
	uint64_t run_lat;	      /* its latency */
	struct auraio_request **link; /* where the delivery list goes on */
};

#define MAX_RETRIES 8 /* submissions again of one request (see "Orphans" above) */
/* How soon a waiter retries entries the kernel refused while another thread waits in it. */
#define REFUSED_RETRY_NS ((int64_t) NSEC_PER_MSEC)

/* Where an operation's bytes are counted: 0 read, 1 written. An fsync counts in "read",
 * with the 0 bytes it completes with. */
static inline unsigned op_dir(unsigned opcode)
{
	return opcode & 1u;
}
_Static_assert((AURAIO_OP_READ & 1) == 0 && (AURAIO_OP_READV & 1) == 0 &&
		   (AURAIO_OP_WRITE & 1) == 1 && (AURAIO_OP_WRITEV & 1) == 1,
	       "op_dir: the low bit of the opcode is the direction");

/* Count a latency run of n completions of latency lat, whose ring-histogram bucket is
 * q->run_hb (see struct pass); a run of 0 adds nothing. */
static inline __attribute__((always_inline)) void run_store(struct ring *r, struct pass_rare *q,
							    uint64_t lat, uint32_t n)
{
	hist_count(&r->hist, q->run_hb, n);
	q->lat_max = MAX(q->lat_max, lat);
	adaptive_pass_sample_n(&r->ctl, &q->win, lat, q->run_hb, n);
}

/* A latency run (lat, n) ends: count it, and start one for a request submitted at
 * submit_ns. Returns the new run's latency. */
static __attribute__((noinline)) uint64_t run_next(struct ring *r, struct pass_rare *q,
						   uint64_t lat, uint32_t n, uint64_t submit_ns)
{
	run_store(r, q, lat, n);
	lat = q->now > submit_ns ? q->now - submit_ns : 0;
	q->run_hb = hist_bucket(lat);
	return lat;
}

/* One completion: the latency run it belongs to, and its latency, stored. */
static inline __attribute__((always_inline)) void account_latency(struct ring *r, struct pass *p,
								  struct auraio_request *req)
{
	uint64_t submit_ns = req->submit_ns;

	if (likely(submit_ns == p->run_submit_ns)) {
		p->run_n++;
	} else {
		p->run_lat = run_next(r, p->rare, p->run_lat, p->run_n, submit_ns);
		p->run_submit_ns = submit_ns;
		p->run_n = 1;
	}
	/* Stored, not computed by the accessor from two times: a callback reads it as often
	 * as a completion happens. */
	req->latency_ns = p->run_lat;
}

/* Store the pass's sums: each counter once, not once per completion. count: the
 * completions handled. */
static inline __attribute__((always_inline)) void pass_store(struct ring *r, struct pass *p,
							     int count)
{
	struct pass_rare *q = p->rare;

	run_store(r, q, p->run_lat, p->run_n);
	counter_add(&r->errors, q->errors);
	counter_add(&r->bytes_read, q->bytes[0]);
	counter_add(&r->bytes_written, q->bytes[1]);
	if (unlikely(q->fixed_buf))
		counter_add(&r->fixed_buf_completed, q->fixed_buf);
	if (unlikely(q->internal))
		counter_add(&r->internal_completed, q->internal);
	if (unlikely(q->stale))
		counter_add(&r->stale, q->stale);
	hist_note_max(&r->hist, q->lat_max);
	adaptive_pass_end(&r->ctl, &q->win, (uint32_t) count, q->now);
}

/* cq_lock held: the controller's window ended - hand it the submit side's counters. */
static void close_window(struct ring *r, uint64_t now)
{
	struct adaptive_inputs in = {
		.eagain = counter_get(&r->eagain),
		.peak_in_flight =
		    atomic_exchange_explicit(&r->peak_in_flight, 0, memory_order_relaxed),
		.syscalls = counter_get(&r->syscalls),
		.sqes = counter_get(&r->sqes),
		.batch_wait_ns = counter_get(&r->batch_wait_ns),
		.batches = counter_get(&r->batches),
	};

	adaptive_close_window(&r->ctl, now, &in);
}

/*
 * cq_lock held: turn raw completions into a delivery list, in completion order.
 * Waitable requests are completed right here, under the lock, and never enter the list:
 * a thread holding cq_lock that sees its request not DONE can then be sure the CQE has
 * not been consumed, so blocking in the kernel for it is safe.
 */
/* Did req transfer everything it asked for (the kernel's rule for going on with a chain)? */
static bool completed_in_full(const struct auraio_request *req, int64_t res)
{
	uint64_t want = 0;

	if (res < 0)
		return false;
	switch (req->opcode) {
	case AURAIO_OP_READ:
	case AURAIO_OP_WRITE:
		return (uint64_t) res == req->len;
	case AURAIO_OP_READV:
	case AURAIO_OP_WRITEV:
		for (uint64_t i = 0; i < req->len; i++)
			want += ((const struct iovec *) req->addr)[i].iov_len;
		return (uint64_t) res == want;
	default:
		return true;
	}
}

/* cq_lock held, io_uring, *res < 0: did req fail only because the thread that handed it
 * to the kernel exited ("Orphans")? Always for a request held with a parked one. While
 * the engine is being destroyed such a request is not submitted again: it never ran, and
 * destroy cancels what is in flight - *res becomes -ECANCELED (not a bare -EFAULT). */
static bool orphaned(struct ring *r, struct auraio_request *req, int64_t *res)
{
	unsigned c = req->chain;

	if (c & CHAIN_WAIT)
		return true;
	/* A faulted no-op's result is the rule's whatever the kernel said; a torn or short
	 * write is a real write, and orphaned like any other (it completed -ECANCELED). */
	if ((req->flags & REQF_NOP & REQF_INJECTED) || req->retries >= MAX_RETRIES)
		return false;
	if ((c & CHAIN_PRED) && !(c & CHAIN_PRED_OK))
		return false; /* the chain broke before it: a real -ECANCELED */
	if (*res != -EFAULT &&
	    (*res != -ECANCELED || atomic_load_explicit(&req->cancel_sent, memory_order_relaxed)))
		return false;
	if (atomic_load_explicit(&r->engine->shutting_down, memory_order_relaxed)) {
		*res = -ECANCELED;
		return false;
	}
	return true;
}

/* cq_lock held: hold an orphan (and the rest of its chain) instead of completing it; the
 * chain goes on the pass's retry list once every CQE of it is in. It stays IN_FLIGHT
 * and counted in flight: nothing is delivered, nothing is accounted. */
static void park(struct pass_rare *pr, struct auraio_request *req)
{
	struct auraio_request *head = req;

	if (req->chain & CHAIN_WAIT) {
		head = req->next; /* the parked request it follows */
		if (--head->park_left)
			return;
	} else {
		uint16_t n = 0;

		for (struct auraio_request *q = req->chain_next; q; q = q->chain_next) {
			q->chain |= CHAIN_WAIT;
			q->next = req;
			n++;
		}
		req->park_left = n;
		if (n)
			return;
	}
	head->next = pr->retry;
	pr->retry = head;
}

static inline __attribute__((always_inline)) void
pass_begin(struct ring *r, struct pass *p, struct pass_rare *q, struct delivery *d)
{
	*q = (struct pass_rare){ .now = now_ns() };
	adaptive_pass_begin(&r->ctl, &q->win);
	*p = (struct pass){ .rare = q,
			    .reqs = r->pool.reqs,
			    .nreqs = r->pool.nreqs,
			    .run_submit_ns = UINT64_MAX,
			    .link = &d->head };
}

/* A CQE that names no request in flight: a cancel operation's, or a stale one. */
static __attribute__((noinline)) void account_foreign(struct pass_rare *q, uint64_t ud)
{
	if (ud == UD_INTERNAL)
		q->internal++;
	else
		q->stale++;
	q->skipped++;
}

#define RES_PARKED INT64_MIN /* account_unusual: the request was parked, not completed */

/*
 * A completion that failed, or whose operation a fault rule rewrote: the orphan check
 * (on the kernel's own result), the fault's result, the error or byte count. Returns the
 * request's result, or RES_PARKED when it is held to be submitted again ("Orphans").
 */
static __attribute__((noinline)) int64_t account_unusual(struct ring *r, struct pass_rare *q,
							 struct auraio_request *req, int64_t res)
{
	if (res < 0 && ring_is_uring(r) && orphaned(r, req, &res)) {
		park(q, req);
		q->skipped++;
		return RES_PARKED;
	}
#ifdef AURAIO_FAULT_INJECTION
	/* A faulted operation cancelled before it ran (a broken link before it, a cancel)
	 * never happened: it keeps -ECANCELED, as the rest of its chain does. */
	if ((req->flags & REQF_FAULT) && res != -ECANCELED)
		res = req->fault_result;
#endif
	if (res < 0)
		q->errors++;
	else
		q->bytes[op_dir(req->opcode)] += (uint64_t) res;
	return res;
}

/*
 * One completion: map it to its request, store its result and latency, count it, and
 * link it into the delivery list (or complete it, if waitable). A cancel operation's CQE
 * (UD_INTERNAL) maps to no request, as a stale one does, and is told apart only then.
 */
static inline __attribute__((always_inline)) void account(struct ring *r, struct pass *p,
							  uint64_t ud, int64_t res)
{
	struct auraio_request *req = request_of_ud(p->reqs, p->nreqs, ud);
	unsigned flags;

	if (unlikely(!req)) {
		account_foreign(p->rare, ud);
		return;
	}
	if (likely(res >= 0 && !(req->flags & REQF_INJECTED)))
		p->rare->bytes[op_dir(req->opcode)] += (uint64_t) res;
	else if ((res = account_unusual(r, p->rare, req, res)) == RES_PARKED)
		return;
	req->result = res;
	account_latency(r, p, req);
	/* One test for what a plain callback request never is: the head of a link, a
	 * registered buffer, a waitable. REQF_LINK is set exactly when chain_next is. */
	flags = req->flags;
	if (unlikely(flags & (REQF_LINK | REQF_REG_BUF | REQF_WAITABLE))) {
		if (flags & REQF_REG_BUF)
			p->rare->fixed_buf++;
		/* Its successor may now fail only because of an orphaning: note that it may
		 * go on. */
		if ((flags & REQF_LINK) && ring_is_uring(r) && completed_in_full(req, res))
			req->chain_next->chain |= CHAIN_PRED_OK;
		if (flags & REQF_WAITABLE) {
			/* Release pairs with the acquire in is_done(): the result is visible
			 * before DONE. The waiter owns req from here on: do not touch it. */
			atomic_store_explicit(&req->state, REQ_DONE, memory_order_release);
			return;
		}
	}
	/* Completed: auraio_cancel() refuses it from here on, even from its own callback
	 * (a store to a line just written; no ordering needed). */
	atomic_store_explicit(&req->state, REQ_DONE, memory_order_relaxed);
	*p->link = req;
	p->link = &req->next;
}

/* The pass reaped n CQEs. */
static inline __attribute__((always_inline)) void pass_end(struct ring *r, struct pass *p,
							   struct delivery *d, int n)
{
	struct pass_rare *q = p->rare;
	int count = n - q->skipped;

	*p->link = NULL;
	d->tail = p->link == &d->head
		      ? NULL
		      : (struct auraio_request *) ((char *) p->link -
						   offsetof(struct auraio_request, next));
	d->retry = q->retry;
	d->count = count;
	d->now = q->now;
	pass_store(r, p, count);
	/* Only after the results are stored: a submitter that sees room reuses nothing
	 * of these requests (they return to the pool after delivery). */
	atomic_store_explicit(&r->completed,
			      atomic_load_explicit(&r->completed, memory_order_relaxed) +
				  (uint64_t) count,
			      memory_order_relaxed);
	if (count && adaptive_window_due(&r->ctl, q->now))
		close_window(r, q->now);
}

/* sq_lock held: does req's registered slot still hold the fd it was submitted on?
 * auraio_update_file() may have replaced it while req was in flight; the head of an
 * orphaned chain then goes again on its fd, not on the slot's new file (a later link
 * always does: sqe_src_of). Decided in the entry, not in req->flags, which
 * auraio_request_wait() may be reading meanwhile. */
static bool slot_holds(const struct auraio_engine *e, const struct auraio_request *req)
{
	const struct file_table *ft = &e->files;

	return (unsigned) req->file_slot < ft->nslots && ft->slots[req->file_slot].fd == req->fd;
}

/* sq_lock held, io_uring: wait for SQ room for n entries (n <= queue_depth, the SQ's
 * size), handling completions while the kernel refuses what the SQ holds. A chain and
 * its cancels may not fit at once: a chain of queue_depth with one cancel never did, and
 * waiting for that room spun for ever. */
static void make_room(struct ring *r, unsigned n)
{
	while (uring_make_room(r, n) < n) {
		sq_unlock(r);
		ring_reap_dispatch(r, true);
		sq_lock(r);
	}
}

/*
 * sq_lock held, io_uring: a cancel sent while the chain at head was held found nothing in
 * the kernel: send it again, after the chain (in the same submission if the SQ has
 * room), as auraio_cancel() promised.
 */
static void resend_cancels(struct ring *r, struct auraio_request *head)
{
	for (struct auraio_request *q = head; q; q = q->chain_next) {
		struct io_uring_sqe *sqe;

		if (!atomic_load_explicit(&q->cancel_sent, memory_order_relaxed))
			continue;
		make_room(r, 1); /* may send the chain first: it stays before */
		sqe = uring_next_sqe(r);
		io_uring_prep_cancel64(sqe, request_ud(q), 0);
		io_uring_sqe_set_data64(sqe, UD_INTERNAL);
		counter_add(&r->internal_submitted, 1);
	}
}

/*
 * No lock held, io_uring: submit the orphans of a pass again, each chain whole and in
 * order, and enter the kernel for them from this thread ("Orphans"). If the SQ has no
 * room (the kernel refuses entries), completions are handled until it has.
 */
static void resubmit(struct ring *r, struct auraio_request *list)
{
	while (list) {
		struct auraio_request *head = list;
		unsigned n, cancels, to_submit;
		bool down;

		list = head->next;
		sq_lock(r);
		/* Counted under sq_lock: auraio_cancel() sets cancel_sent under it. Once the
		 * engine is being destroyed, every one is cancelled: ring_drain's cancel of
		 * everything went out while they were held. */
		down = atomic_load_explicit(&r->engine->shutting_down, memory_order_relaxed);
		n = cancels = 0;
		for (struct auraio_request *q = head; q; q = q->chain_next) {
			n++;
			if (down)
				atomic_store_explicit(&q->cancel_sent, 1, memory_order_relaxed);
			cancels += atomic_load_explicit(&q->cancel_sent, memory_order_relaxed);
		}
		make_room(r, n);
		for (struct auraio_request *q = head; q; q = q->chain_next) {
			struct sqe_src src;

			q->chain = q == head ? 0 : CHAIN_PRED;
			q->retries++;
			sqe_src_of(&src, q);
			if (q == head && (src.flags & REQF_FIXED_FILE) &&
			    !slot_holds(r->engine, q)) {
				src.flags &= ~(unsigned) REQF_FIXED_FILE;
				src.fd = q->fd;
			}
			prep_one(uring_next_sqe(r), &src);
		}
		/* Published again, after the stores above to every member: the release pairs
		 * with the acquire in request_of_ud, so whichever thread reaps a member sees
		 * them (the reaper of one marks the next CHAIN_PRED_OK). The kernel orders
		 * them too, but not in terms the C memory model - or TSan - knows. They stay
		 * IN_FLIGHT: nothing else stores their state before they complete, and they
		 * cannot complete before they are sent. */
		for (struct auraio_request *q = head; q; q = q->chain_next)
			atomic_store_explicit(&q->state, REQ_IN_FLIGHT, memory_order_release);
		if (cancels)
			resend_cancels(r, head);
		counter_add(&r->resubmitted, n);
		batch_sent(r, now_ns());
		to_submit = backend_publish(r);
		sq_unlock(r);
		ring_enter(r, to_submit);
	}
}

/*
 * No lock held: submit the pass's orphans again, run callbacks, then return the
 * requests to the pool. The delivery list is already linked the way the pool wants it;
 * a callback never touches req->next (the request is not in the pool while its
 * callback runs), so it is released as is. tls_dl.now lets submissions made by the
 * callbacks reuse the pass's timestamp.
 */
static void deliver(struct ring *r, struct delivery *d)
{
	struct ring *outer = tls_dl.ring;

	if (unlikely(d->retry))
		resubmit(r, d->retry);
	if (!d->head)
		return;
	tls_dl.depth++;
	tls_dl.ring = r;
	tls_dl.now = d->now;
	for (struct auraio_request *req = d->head;; req = req->next) {
		req->cb(req, (ssize_t) req->result, req->user_data);
#ifdef AURAIO_FAULT_INJECTION
		if (unlikely(req->fault_iov)) {
			free(req->fault_iov);
			req->fault_iov = NULL;
		}
#endif
		/* Its callback is over: free, here rather than in a second walk of the list. */
		atomic_store_explicit(&req->state, REQ_FREE, memory_order_relaxed);
		if (req == d->tail)
			break;
	}
	tls_dl.ring = outer;
	tls_dl.depth--;
	request_return_list(&r->pool, d->head, d->tail);
}

static bool is_done(struct auraio_request *req)
{
	/* Acquire pairs with the release store in account(). */
	return req && atomic_load_explicit(&req->state, memory_order_acquire) == REQ_DONE;
}

/* Letting go of cq_lock, or having completed waitables, is news to sleepers. */
static void cq_unlock_notify(struct ring *r)
{
	cq_unlock(r);
	if (r->locking)
		ev_notify(&r->ev);
}

/* Publish staged entries under sq_lock; returns how many the kernel has not taken. */
static unsigned ring_publish(struct ring *r)
{
	unsigned to_submit;

	if (atomic_load_explicit(&r->staged, memory_order_relaxed) == 0 &&
	    !atomic_load_explicit(&r->need_enter, memory_order_relaxed))
		return 0;
	sq_lock(r);
	batch_sent(r, now_ns());
	atomic_store_explicit(&r->need_enter, false, memory_order_relaxed);
	to_submit = backend_publish(r);
	sq_unlock(r);
	return to_submit;
}

int ring_flush(struct ring *r)
{
	unsigned to_submit = ring_publish(r);
	int rc;

	if (!to_submit)
		return 0;
	rc = r->ops->enter(r, to_submit);
	if (rc < 0) {
		atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
		return rc;
	}
	return (int) to_submit;
}

/*
 * cq_lock held: reap one batch and account it. io_uring's CQEs are accounted where they
 * lie and the CQ head advanced once afterwards; the fallback backend copies them out.
 * An empty pass reads no clock.
 */
static int reap_batch(struct ring *r, struct delivery *d, bool may_enter)
{
	struct pass_rare q;
	struct pass p;
	int n;

	d->head = NULL;
	d->retry = NULL;
	d->count = 0;
	if (ring_is_uring(r)) {
		const struct io_uring_cqe *cqes, *cqe;
		unsigned head, mask, left;

		n = uring_peek(r, REAP_BATCH, may_enter, &head);
		if (n == 0)
			return 0;
		cqes = uring_cqes(r, &mask); /* in locals: stores to requests may alias */
		pass_begin(r, &p, &q, d);
		/* The CQEs lie in at most two runs (the ring wraps once at most), each walked
		 * by pointer: no index arithmetic per CQE. */
		cqe = &cqes[head & mask];
		for (left = (unsigned) n; left;) {
			unsigned k = MIN(left, mask + 1 - (unsigned) (cqe - cqes));

			for (const struct io_uring_cqe *end = cqe + k; cqe != end; cqe++)
				account(r, &p, cqe->user_data, cqe->res);
			left -= k;
			cqe = cqes;
		}
		uring_advance(r, head, (unsigned) n);
	} else {
		struct completion c[REAP_BATCH];

		n = r->ops->reap(r, c, REAP_BATCH, may_enter);
		if (n == 0)
			return 0;
		pass_begin(r, &p, &q, d);
		for (int i = 0; i < n; i++)
			account(r, &p, c[i].ud, c[i].res);
	}
	pass_end(r, &p, d, n);
	return n;
}

int ring_reap_dispatch(struct ring *r, bool may_enter)
{
	int handled = 0, n;

	do {
		struct delivery d;

		if (!cq_trylock(r))
			break;
		n = reap_batch(r, &d, may_enter);
		cq_unlock_notify(r);
		deliver(r, &d);
		handled += d.count;
	} while (n == REAP_BATCH);
	settle(r);
	return handled;
}

/* cq_lock held: the kernel-waiter role. Submits to_submit in the same syscall. */
static int kernel_wait(struct ring *r, unsigned to_submit, int64_t timeout_ns, struct delivery *d)
{
	int n = reap_batch(r, d, false);

	/* Nothing left to complete (another thread reaped the last completion after our
	 * caller saw the ring busy, before we took the lock): blocking would be forever. */
	if (n > 0 || !ring_awaits_completion(r)) {
		ring_enter(r, to_submit);
		return n;
	}
	/* Submits what is staged, runs parked task work, and waits (uring_wait). */
	if (r->ops->wait(r, to_submit, timeout_ns) == -ETIME)
		return -ETIME;
	return reap_batch(r, d, true);
}

/*
 * Block until this call handles a completion of ring r, `want` (may be NULL) is done,
 * the kernel-waiter role changes hands, or the timeout passes. Returns completions
 * handled by this call.
 */
int ring_wait_dispatch(struct ring *r, int64_t timeout_ns, struct auraio_request *want)
{
	unsigned to_submit = ring_publish(r);
	struct delivery d;
	uint32_t seq;
	int n;

	if (!cq_trylock(r)) {
		bool refused = ring_enter(r, to_submit);

		to_submit = 0;
		seq = ev_prepare(&r->ev);
		if (is_done(want)) {
			ev_cancel(&r->ev);
			return 0;
		}
		if (!cq_trylock(r)) {
			/* The holder notifies when it lets go or completes a waitable. But if the
			 * kernel refused our entries, the holder may sleep in the kernel for
			 * completions only they would bring (it entered before we published
			 * them): then nothing would wake either of us. Retry them soon instead
			 * (our caller calls again). */
			if (refused && (timeout_ns < 0 || timeout_ns > REFUSED_RETRY_NS))
				timeout_ns = REFUSED_RETRY_NS;
			ev_wait(&r->ev, seq, timeout_ns);
			return 0;
		}
		ev_cancel(&r->ev);
	}
	if (is_done(want)) {
		cq_unlock_notify(r);
		ring_enter(r, to_submit);
		return 0;
	}
	n = kernel_wait(r, to_submit, timeout_ns, &d);
	cq_unlock_notify(r);
	if (n <= 0)
		return 0;
	deliver(r, &d);
	settle(r);
	return d.count;
}

void ring_drain(struct ring *r)
{
	unsigned to_submit;

	sq_lock(r);
	r->ops->cancel_all(r);
	counter_add(&r->internal_submitted, 1);
	batch_sent(r, now_ns());
	to_submit = backend_publish(r);
	sq_unlock(r);
	ring_enter(r, to_submit);
	while (ring_awaits_completion(r))
		ring_wait_dispatch(r, -1, NULL);
}

/* The waitable request is done: take its result and return it to the pool. */
static void collect(struct ring *r, struct auraio_request *req, ssize_t *result)
{
	if (result)
		*result = (ssize_t) req->result;
	free(req->fault_iov);
	req->fault_iov = NULL;
	req->next = NULL;
	request_release_list(&r->pool, req, req);
}

AURAIO_API int auraio_request_wait(auraio_engine_t *e, auraio_request_t *req, int timeout_ms,
				   ssize_t *result)
{
	uint64_t deadline =
	    timeout_ms < 0 ? UINT64_MAX : now_ns() + (uint64_t) ms_to_ns(timeout_ms);
	struct ring *r;

	if (!e || !req || req->ring >= e->ring_count || !(req->flags & REQF_WAITABLE))
		return -EINVAL;
	r = &e->rings[req->ring];
	if (timeout_ms == 0 && !is_done(req)) {
		/* Not blocking is not the same as not looking: without this pass the loop
		 * below times out at once, and a caller retrying with 0 never sees it done. */
		ring_flush(r);
		ring_reap_dispatch(r, true);
	}
	for (;;) {
		uint64_t now;

		if (is_done(req)) {
			collect(r, req, result);
			return 0;
		}
		now = deadline == UINT64_MAX ? 0 : now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		ring_wait_dispatch(r, deadline == UINT64_MAX ? -1 : (int64_t) (deadline - now),
				   req);
	}
}

AURAIO_API uint64_t auraio_request_latency_ns(const auraio_request_t *req)
{
	return req ? req->latency_ns : 0;
}

AURAIO_API void *auraio_request_user_data(const auraio_request_t *req)
{
	return req ? req->user_data : NULL;
}

AURAIO_API int auraio_request_fd(const auraio_request_t *req)
{
	return req ? req->fd : -1;
}
