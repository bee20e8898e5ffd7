/* SPDX-License-Identifier: MIT */
/*
 * submit_stage.h - what submit.c (the general path, batches) and submit_fast.c (the
 * auraio_read/auraio_write fast path) share: accounting a staged batch and deciding when
 * it goes to the kernel, and the plain lane that builds a request and its SQE straight
 * from a READ or WRITE of a plain buffer. Always inlined: each caller is specialised.
 * Everything here runs with the ring's sq_lock held.
 */
#ifndef AURAIO_SUBMIT_STAGE_H
#define AURAIO_SUBMIT_STAGE_H

#include <liburing.h>

#include "backend.h"

/*
 * sq_lock held: n requests were just staged with the backend and marked IN_FLIGHT;
 * account them and decide whether the batch goes to the kernel now (stage_send).
 * Inside a callback (defer) the batch is pushed only once it reaches the threshold -
 * holding it for the whole delivery made the requests a pass resubmits reach the device
 * together, as a convoy (docs/auraio.md) - and what is left below it is pushed by the
 * delivering poll/wait (complete.c); "nothing in flight" does not count there, the
 * delivery is about to push it anyway.
 */
static inline __attribute__((always_inline)) bool stage_count(struct ring *r, int n, bool defer,
							      uint64_t now)
{
	uint32_t before = atomic_load_explicit(&r->staged, memory_order_relaxed);
	uint32_t staged = before + (uint32_t) n;
	/* In flight before these n: read again here, before `submitted` counts them, rather
	 * than kept from the limit check - one value fewer held in a register across the
	 * submit path. The reaper may have lowered it meanwhile, which the idle test and
	 * the peak below may see: both are observations of a moving count. */
	bool idle = !defer && ring_in_flight(r) == 0;

	/* The controller's inputs, read by nothing else (adaptive.c: a fixed limit ignores
	 * them): the demand signal, the highest in-flight this window - a racy max (the
	 * controller resets it with an exchange) can only lose a peak, never invent one -
	 * and when the batch opened (batch_sent). */
	if (r->ctl.enabled) {
		uint64_t peak = ring_in_flight(r) + (uint64_t) n;

		if (peak > atomic_load_explicit(&r->peak_in_flight, memory_order_relaxed))
			atomic_store_explicit(&r->peak_in_flight, (uint32_t) peak,
					      memory_order_relaxed);
		if (before == 0)
			r->batch_open_ns = now;
	}
	atomic_store_explicit(
	    &r->submitted, atomic_load_explicit(&r->submitted, memory_order_relaxed) + (uint64_t) n,
	    memory_order_relaxed);
	atomic_store_explicit(&r->staged, staged, memory_order_relaxed);
	return staged >= adaptive_batch_threshold(&r->ctl) || idle;
}

/* sq_lock held: the staged batch is due (stage_count); returns how many entries to push
 * into the kernel. */
static inline __attribute__((always_inline)) unsigned stage_send(struct ring *r, bool defer,
								 uint64_t now)
{
	/* Inside a callback `now` is the pass's time, which the entries carry: the batch
	 * is sent later, after the callbacks before them, and that wait must be counted
	 * (the batch optimizer halves the threshold on it, docs/aimd.md) - with the
	 * controller on only: a fixed limit has no optimizer to read it, and a clock read
	 * per batch is not free on this path. */
	batch_sent(r, defer && r->ctl.enabled ? now_ns() : now);
	return backend_publish(r);
}

/* stage_count and, if the batch is due, stage_send: how many entries to push. */
static inline __attribute__((always_inline)) unsigned stage_account(struct ring *r, int n,
								    bool defer, uint64_t now)
{
	return stage_count(r, n, defer, now) ? stage_send(r, defer, now) : 0;
}

/* The registered slot + 1 of a plain op's fd (0: not registered), or -1 when the file
 * needs the O_DIRECT checks of the general path. Registration is opt-in (neither the WAL
 * nor the store registers files), so an fd past the table - an empty table's every fd -
 * is the case laid out in line. */
static inline __attribute__((always_inline)) int32_t plain_slot(const struct file_table *ft, int fd)
{
	int32_t s;

	if (likely((unsigned) fd >= ft->map_len) || (s = ft->slot_of_fd[fd]) == 0)
		return 0;
	return ft->slots[s - 1].direct ? -1 : s;
}

/* A plain operation: what plain_stage builds a request and its SQE from. */
struct plain_op {
	auraio_opcode_t opcode; /* READ or WRITE */
	int fd;
	void *ptr;
	uint64_t len;
	int64_t offset;
	auraio_callback_t cb;
	void *user_data;
};

/*
 * sq_lock held, io_uring: fill req from a plain op, build its SQE in `sqe`, and publish
 * req as IN_FLIGHT. The request keeps what completion, the accessors and a resubmission
 * (complete.c, "Orphans": the SQE is built again from the request) read.
 */
static inline __attribute__((always_inline)) void plain_stage(struct io_uring_sqe *sqe,
							      struct auraio_request *req,
							      const struct plain_op *op,
							      int32_t slot, uint64_t now)
{
	unsigned flags = slot ? REQF_FIXED_FILE : 0;
	uint64_t ud = request_ud(req); /* before the stores below, which may alias it */

	if (!op->cb)
		flags |= REQF_WAITABLE;
	req->opcode = (uint8_t) op->opcode;
	req->flags = (uint8_t) flags;
	req->fd = op->fd;
	req->file_slot = slot - 1;
	req->addr = op->ptr;
	req->len = op->len;
	req->offset = op->offset;
	req->rw_flags = 0;
	req->cb = op->cb;
	req->user_data = op->user_data;
	req->submit_ns = now;
	io_uring_prep_rw(op->opcode == AURAIO_OP_READ ? IORING_OP_READ : IORING_OP_WRITE, sqe,
			 slot ? slot - 1 : op->fd, op->ptr, (unsigned) op->len, (__u64) op->offset);
	sqe->flags = (__u8) (flags & REQF_FIXED_FILE);
	io_uring_sqe_set_data64(sqe, ud);
	/* Release pairs with the acquire in request_of_ud (the reaper). */
	atomic_store_explicit(&req->state, REQ_IN_FLIGHT, memory_order_release);
}

/* The general path of auraio_read/auraio_write (submit.c): every case, every error. The
 * fast path (submit_fast.c) hands anything it does not take to these, with the public
 * call's own signature, so the hand-off is a jump. */
auraio_request_t *read_general(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len,
			       off_t offset, auraio_callback_t cb, void *user_data);
auraio_request_t *write_general(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len,
				off_t offset, auraio_callback_t cb, void *user_data);

#endif
