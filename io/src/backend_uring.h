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

static inline void prep_one(struct io_uring_sqe *sqe, const struct auraio_request *req)
{
	int fd = (req->flags & REQF_FIXED_FILE) ? req->file_slot : req->fd;

	if (req->flags & REQF_NOP) {
		io_uring_prep_nop(sqe);
	} else {
		switch (req->opcode) {
		case AURAIO_OP_READ:
			if (req->flags & REQF_FIXED_BUF)
				io_uring_prep_read_fixed(sqe, fd, req->addr, (unsigned) req->len,
							 (__u64) req->offset, req->buf_index);
			else
				io_uring_prep_read(sqe, fd, req->addr, (unsigned) req->len,
						   (__u64) req->offset);
			break;
		case AURAIO_OP_WRITE:
			if (req->flags & REQF_FIXED_BUF)
				io_uring_prep_write_fixed(sqe, fd, req->addr, (unsigned) req->len,
							  (__u64) req->offset, req->buf_index);
			else
				io_uring_prep_write(sqe, fd, req->addr, (unsigned) req->len,
						    (__u64) req->offset);
			sqe->rw_flags = (__kernel_rwf_t) req->rw_flags;
			break;
		case AURAIO_OP_READV:
			io_uring_prep_readv(sqe, fd, req->fault_iov ? req->fault_iov : req->addr,
					    (unsigned) req->len, (__u64) req->offset);
			break;
		case AURAIO_OP_WRITEV:
			io_uring_prep_writev2(sqe, fd, req->fault_iov ? req->fault_iov : req->addr,
					      (unsigned) req->len, (__u64) req->offset,
					      (int) req->rw_flags);
			break;
		default: /* AURAIO_OP_FSYNC */
			io_uring_prep_fsync(sqe, fd, req->rw_flags);
			break;
		}
		if (req->flags & REQF_FIXED_FILE)
			sqe->flags |= IOSQE_FIXED_FILE;
	}
	if (req->flags & REQF_LINK)
		sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, request_ud(req));
}

/* An SQE, waiting for the SQPOLL thread to make room if it lags behind. */
static inline struct io_uring_sqe *get_sqe(struct ring *r)
{
	struct io_uring *u = U(r);
	struct io_uring_sqe *sqe = io_uring_get_sqe(u);

	while (unlikely(!sqe)) {
		/* Only SQPOLL can leave published entries unconsumed after an enter; the
		 * core never stages more than queue_depth otherwise. */
		if (io_uring_sqring_wait(u) < 0)
			return NULL;
		sqe = io_uring_get_sqe(u);
	}
	return sqe;
}

static inline int uring_stage(struct ring *r, struct auraio_request **reqs, int n)
{
	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = get_sqe(r);

		if (unlikely(!sqe))
			return -EBUSY; /* the core checked capacity: cannot happen */
		prep_one(sqe, reqs[i]);
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

static inline int uring_reap(struct ring *r, struct completion *out, int max, bool may_enter)
{
	struct io_uring *u = U(r);
	struct io_uring_cqe *cqe;
	unsigned head;
	int n = 0;

	if (io_uring_cq_ready(u) == 0) {
		/* Completions parked as task work (COOP_TASKRUN) or in the overflow list:
		 * enter the kernel to post them instead of waiting for a timer tick. */
		if (!may_enter || !(sq_kflags(u) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
			return 0;
		io_uring_get_events(u);
		counter_add(&r->syscalls, 1);
	}
	io_uring_for_each_cqe(u, head, cqe)
	{
		if (n == max)
			break;
		out[n].ud = cqe->user_data;
		out[n].res = cqe->res;
		n++;
	}
	io_uring_cq_advance(u, (unsigned) n);
	return n;
}

#endif
