/* SPDX-License-Identifier: MIT */
/*
 * backend_uring.h - the io_uring backend's hot path, inline so that the core's submit
 * and reap paths call it directly (see backend.h) instead of through the ops table:
 * preparing SQEs, publishing the SQ tail, copying CQEs out. The rest of the backend
 * (setup, waits, registration) is in backend_uring.c.
 */
#ifndef AURAIO_BACKEND_URING_H
#define AURAIO_BACKEND_URING_H

#include <liburing.h>

#include "engine.h"

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
_Static_assert(REQF_FIXED_FILE == IOSQE_FIXED_FILE && REQF_LINK == IOSQE_IO_LINK,
	       "request flags double as SQE flags");

#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif

struct uring_ring {
	struct io_uring ring;
	bool sqpoll;
	bool coop;
};

static inline struct io_uring *U(struct ring *r)
{
	return &((struct uring_ring *) r->backend)->ring;
}

static inline unsigned sq_kflags(struct io_uring *u)
{
	return IO_URING_READ_ONCE(*u->sq.kflags);
}

/* What an SQE is built from, read out of the request. */
struct sqe_src {
	unsigned flags, opcode, len, rw_flags, buf_index;
	int fd;
	void *addr;
	__u64 off, ud;
};

/*
 * Every field is read before the SQ is touched: inlined right after request_init() (the
 * single-operation submit calls), the compiler then forwards the values just stored
 * instead of reloading them - a store to the SQ could alias the request - and the
 * opcode switch below folds away.
 */
static inline void sqe_src_of(struct sqe_src *s, const struct auraio_request *req)
{
	s->flags = req->flags;
	s->opcode = req->opcode;
	/* The kernel looks a fixed slot up when it starts the request. A chain's later link
	 * starts once the one before it completed, an fsync when an io-wq worker gets to it
	 * (the kernel never runs one inline) - auraio_update_file() may have replaced the
	 * slot by then, and the request would go to the new file - so they name their fd. */
	if (unlikely((req->chain & CHAIN_PRED) || req->opcode == AURAIO_OP_FSYNC))
		s->flags &= ~(unsigned) REQF_FIXED_FILE;
	s->fd = (s->flags & REQF_FIXED_FILE) ? req->file_slot : req->fd;
	s->addr = req->addr;
#ifdef AURAIO_FAULT_INJECTION
	/* A SHORT/TEAR fault on a vectored write stages a truncated copy of the iovecs. */
	if ((s->opcode == AURAIO_OP_READV || s->opcode == AURAIO_OP_WRITEV) && req->fault_iov)
		s->addr = req->fault_iov;
#endif
	s->len = (unsigned) req->len;
	s->rw_flags = req->rw_flags;
	s->buf_index = req->buf_index;
	s->off = (__u64) req->offset;
	s->ud = request_ud(req);
}

static inline void prep_one(struct io_uring_sqe *sqe, const struct sqe_src *s)
{
	if (s->flags & REQF_NOP & REQF_INJECTED) {
		io_uring_prep_nop(sqe);
	} else {
		switch (s->opcode) {
		case AURAIO_OP_READ:
			if (s->flags & REQF_FIXED_BUF)
				io_uring_prep_read_fixed(sqe, s->fd, s->addr, s->len, s->off,
							 (int) s->buf_index);
			else
				io_uring_prep_read(sqe, s->fd, s->addr, s->len, s->off);
			break;
		case AURAIO_OP_WRITE:
			if (s->flags & REQF_FIXED_BUF)
				io_uring_prep_write_fixed(sqe, s->fd, s->addr, s->len, s->off,
							  (int) s->buf_index);
			else
				io_uring_prep_write(sqe, s->fd, s->addr, s->len, s->off);
			sqe->rw_flags = (__kernel_rwf_t) s->rw_flags;
			break;
		case AURAIO_OP_READV:
			io_uring_prep_readv(sqe, s->fd, s->addr, s->len, s->off);
			break;
		case AURAIO_OP_WRITEV:
			io_uring_prep_writev2(sqe, s->fd, s->addr, s->len, s->off,
					      (int) s->rw_flags);
			break;
		default: /* AURAIO_OP_FSYNC */
			io_uring_prep_fsync(sqe, s->fd, s->rw_flags);
			break;
		}
		sqe->flags = (__u8) (s->flags & REQF_FIXED_FILE);
	}
	sqe->flags |= (__u8) (s->flags & REQF_LINK);
	io_uring_sqe_set_data64(sqe, s->ud);
}

/*
 * The next free SQE, for the cancel paths: waits for room under SQPOLL (its thread
 * consumes the SQ); without SQPOLL they make room first (uring_make_room). Cheaper than
 * io_uring_get_sqe(): rings are never set up with SQE128, so there is no flag to test.
 */
static inline struct io_uring_sqe *get_sqe(struct ring *r)
{
	struct io_uring *u = U(r);
	struct io_uring_sq *sq = &u->sq;
	unsigned tail = sq->sqe_tail;

	/* Acquire pairs with the kernel's release of the SQ head: the SQE it consumed is
	 * no longer read once we see the head past it. */
	while (unlikely(tail - io_uring_smp_load_acquire(sq->khead) >= sq->ring_entries)) {
		if (io_uring_sqring_wait(u) < 0)
			return NULL;
	}
	sq->sqe_tail = tail + 1;
	return &sq->sqes[tail & sq->ring_mask];
}

/* Free SQEs: the SQ's size less what is staged or not yet consumed by the kernel. */
static inline unsigned uring_sq_room(struct ring *r)
{
	struct io_uring_sq *sq = &U(r)->sq;

	return sq->ring_entries - (sq->sqe_tail - io_uring_smp_load_acquire(sq->khead));
}

/* sq_lock held, backend_uring.c: how many of n entries fit in the SQ, after handing
 * what it holds to the kernel if it is short of room (a syscall under the lock). */
unsigned uring_make_room(struct ring *r, unsigned n);

/* sq_lock held: the next free SQE, or NULL when the SQ is full. It is not taken until
 * uring_take_sqe(), so a caller may still give up; one read of the SQ state for the
 * check and the entry. */
static inline struct io_uring_sqe *uring_peek_sqe(struct ring *r)
{
	struct io_uring_sq *sq = &U(r)->sq;
	unsigned tail = sq->sqe_tail;

	/* Acquire pairs with the kernel's release of the SQ head (as in get_sqe). */
	if (unlikely(tail - io_uring_smp_load_acquire(sq->khead) >= sq->ring_entries))
		return NULL;
	return &sq->sqes[tail & sq->ring_mask];
}

/* sq_lock held: take the SQE uring_peek_sqe() just returned. */
static inline void uring_take_sqe(struct ring *r)
{
	U(r)->sq.sqe_tail++;
}

/* The next SQE, when uring_sq_room() said there is one (no check here). */
static inline struct io_uring_sqe *uring_next_sqe(struct ring *r)
{
	struct io_uring_sq *sq = &U(r)->sq;

	return &sq->sqes[sq->sqe_tail++ & sq->ring_mask];
}

static inline int uring_stage(struct ring *r, struct auraio_request **reqs, int n)
{
	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe;
		struct sqe_src src;

		sqe_src_of(&src, reqs[i]);
		sqe = uring_next_sqe(r); /* the core made room for n first (queue_room) */
		prep_one(sqe, &src);
	}
	return 0;
}

/* Publish the SQ tail; returns the number of entries the kernel has not consumed. */
static inline unsigned uring_publish(struct ring *r)
{
	struct io_uring_sq *sq = &U(r)->sq;
	unsigned tail = sq->sqe_tail;

	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		/* Release pairs with the kernel's acquire of the SQ tail: the SQE contents
		 * are visible before the tail that covers them, to whichever thread
		 * enters the kernel next. */
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - io_uring_smp_load_acquire(sq->khead);
}

/*
 * cq: how many CQEs are ready (at most max), the first at *head; read them through
 * uring_cqes() and hand them back with uring_advance(). The tail is read once
 * (acquire: pairs with the kernel's release when it posts, so the CQE contents are
 * visible); the head is ours (cq_lock). io_uring_for_each_cqe would re-read the tail
 * for every entry.
 */
static inline int uring_peek(struct ring *r, int max, bool may_enter, unsigned *head)
{
	struct io_uring *u = U(r);
	struct io_uring_cq *cq = &u->cq;
	unsigned tail = io_uring_smp_load_acquire(cq->ktail);

	*head = *cq->khead;
	if (*head == tail) {
		/* Completions parked as task work (COOP_TASKRUN) or in the overflow list:
		 * enter the kernel to post them instead of waiting for a timer tick. */
		if (!may_enter || !(sq_kflags(u) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
			return 0;
		io_uring_get_events(u);
		counter_add(&r->syscalls, 1);
		tail = io_uring_smp_load_acquire(cq->ktail);
	}
	return (int) MIN(tail - *head, (unsigned) max);
}

/* The CQ entries and their index mask: the CQE at position pos is cqes[pos & mask]. */
static inline const struct io_uring_cqe *uring_cqes(struct ring *r, unsigned *mask)
{
	struct io_uring_cq *cq = &U(r)->cq;

	*mask = cq->ring_mask;
	return cq->cqes;
}

/* cq: the n CQEs from head on have been read; the kernel may reuse their entries. */
static inline void uring_advance(struct ring *r, unsigned head, unsigned n)
{
	/* Release: the CQE reads above complete before the kernel sees the new head. */
	io_uring_smp_store_release(U(r)->cq.khead, head + n);
}

/* The ops-table form of peek/advance (the core uses those directly): copy CQEs out. */
static inline int uring_reap(struct ring *r, struct completion *out, int max, bool may_enter)
{
	unsigned head, mask;
	int n = uring_peek(r, max, may_enter, &head);
	const struct io_uring_cqe *cqes = uring_cqes(r, &mask);

	for (int i = 0; i < n; i++) {
		const struct io_uring_cqe *cqe = &cqes[(head + (unsigned) i) & mask];

		out[i].ud = cqe->user_data;
		out[i].res = cqe->res;
	}
	if (n)
		uring_advance(r, head, (unsigned) n);
	return n;
}

#endif
