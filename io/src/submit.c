/* SPDX-License-Identifier: MIT */
/*
 * submit.c - the submission path: validate, route to the caller's ring, enforce the
 * in-flight limit, fill requests, stage them with the backend, and decide when the batch
 * goes to the kernel. auraio_read/auraio_write's fast path is submit_fast.c; what the
 * two share (batch accounting, the plain lane) is submit_stage.h.
 *
 * Invariants:
 *   - in flight (submitted - completed) never exceeds the ring's limit, which never
 *     exceeds queue_depth, so the CQ (2 x queue_depth) cannot overflow;
 *   - a staged request is published when the batch threshold is reached or when the ring
 *     had nothing in flight (a lone request never waits for a batch), and always before
 *     any thread blocks waiting on the ring (complete.c);
 *   - nothing here runs a callback, and no syscall is made with sq_lock held, except
 *     on the rare path where cancel entries fill io_uring's SQ (queue_room).
 * Registration tables (engine->files, engine->bufs) are read under the ring's sq_lock;
 * registry.c changes them only with every sq_lock held.
 */
#include <errno.h>
#include <limits.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdlib.h>

#include "backend.h"
#include "submit_stage.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

/* Checks that need no registration table; run before taking the lock. */
static inline __attribute__((always_inline)) int validate_op(const auraio_op_t *op)
{
	if (unlikely(op->fd < 0))
		return -EINVAL;
	switch (op->opcode) {
	case AURAIO_OP_READ:
	case AURAIO_OP_WRITE:
		if (op->buf.type == AURAIO_BUF_UNREGISTERED && !op->buf.u.ptr)
			return -EINVAL;
		if (op->buf.type != AURAIO_BUF_UNREGISTERED &&
		    op->buf.type != AURAIO_BUF_REGISTERED)
			return -EINVAL;
		if (op->len > UINT32_MAX || op->offset < 0)
			return -EINVAL;
		break;
	case AURAIO_OP_READV:
	case AURAIO_OP_WRITEV:
		if (!op->iov || op->iovcnt < 1 || op->iovcnt > IOV_MAX || op->offset < 0)
			return -EINVAL;
		break;
	case AURAIO_OP_FSYNC:
		if (op->flags & ~AURAIO_OP_DATASYNC)
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
	if (op->opcode == AURAIO_OP_WRITE || op->opcode == AURAIO_OP_WRITEV)
		return (op->flags & ~AURAIO_OP_DSYNC) ? -EINVAL : 0;
	return op->flags ? -EINVAL : 0;
}

/* Registered buffer reference -> address (sq_lock held); REQF_REG_BUF, plus
 * REQF_FIXED_BUF when the kernel knows the buffer, or -errno. REQF_REG_BUF even when the
 * buffer is used as a plain pointer (degraded, thread backend): the memory is borrowed
 * until unregister all the same, so unregistering must see this I/O. Out of line, and
 * with the reference passed by value, so that the common path keeps the op in registers
 * and its prologue small. */
static __attribute__((noinline)) int resolve_fixed_buf(struct auraio_engine *e, int index,
						       size_t offset, uint64_t len,
						       struct auraio_request *req)
{
	const struct buf_table *bt = &e->bufs;
	unsigned idx = (unsigned) index;
	const struct iovec *iov;

	if (index < 0 || idx >= bt->n)
		return -EINVAL;
	iov = &bt->iovs[idx];
	if (offset > iov->iov_len || len > iov->iov_len - offset)
		return -EOVERFLOW;
	req->addr = (char *) iov->iov_base + offset;
	if (!bt->kernel)
		return REQF_REG_BUF;
	req->buf_index = (uint16_t) idx;
	return REQF_REG_BUF | REQF_FIXED_BUF;
}

static bool aligned(uint64_t v, uint32_t a)
{
	return a == 0 || (v & (a - 1)) == 0;
}

/* O_DIRECT alignment of a registered file, checked before the kernel sees it. */
static __attribute__((noinline)) int check_direct(const struct file_slot *fs,
						  const struct auraio_request *req)
{
	if (req->opcode == AURAIO_OP_FSYNC)
		return 0;
	if (!aligned((uint64_t) req->offset, fs->off_align))
		return -EINVAL;
	if (req->opcode == AURAIO_OP_READ || req->opcode == AURAIO_OP_WRITE)
		return aligned((uint64_t) (uintptr_t) req->addr, fs->mem_align) &&
			       aligned(req->len, fs->off_align)
			   ? 0
			   : -EINVAL;
	for (uint64_t i = 0; i < req->len; i++) {
		const struct iovec *v = &((const struct iovec *) req->addr)[i];

		if (!aligned((uint64_t) (uintptr_t) v->iov_base, fs->mem_align) ||
		    !aligned(v->iov_len, fs->off_align))
			return -EINVAL;
	}
	return 0;
}

/* Registered file lookup: adds REQF_FIXED_FILE to *flags and checks O_DIRECT alignment. */
static inline __attribute__((always_inline)) int
resolve_file(struct auraio_engine *e, struct auraio_request *req, unsigned *flags)
{
	const struct file_table *ft = &e->files;
	const struct file_slot *fs;
	int32_t s;

	if ((unsigned) req->fd >= ft->map_len || (s = ft->slot_of_fd[req->fd]) == 0)
		return 0;
	fs = &ft->slots[s - 1];
	*flags |= REQF_FIXED_FILE;
	req->file_slot = s - 1;
	return fs->direct ? check_direct(fs, req) : 0;
}

/* Fill the submission fields of req from op (targeted stores, no memset). The flags are
 * built in a register and stored once. */
static inline __attribute__((always_inline)) int request_init(struct auraio_engine *e,
							      struct auraio_request *req,
							      const auraio_op_t *op, uint64_t now)
{
	unsigned flags = op->cb ? 0 : REQF_WAITABLE;
	int rc;

	req->opcode = (uint8_t) op->opcode;
	req->fd = op->fd;
	req->offset = op->offset;
	req->cb = op->cb;
	req->user_data = op->user_data;
	req->submit_ns = now;
	req->rw_flags = 0;
	switch (op->opcode) {
	case AURAIO_OP_READ:
	case AURAIO_OP_WRITE:
		req->len = op->len;
		if (op->opcode == AURAIO_OP_WRITE && (op->flags & AURAIO_OP_DSYNC))
			req->rw_flags = RWF_DSYNC;
		if (op->buf.type == AURAIO_BUF_REGISTERED) {
			rc = resolve_fixed_buf(e, op->buf.u.fixed.index, op->buf.u.fixed.offset,
					       op->len, req);
			if (rc < 0)
				return rc;
			flags |= (unsigned) rc;
		} else {
			req->addr = op->buf.u.ptr;
		}
		break;
	case AURAIO_OP_READV:
	case AURAIO_OP_WRITEV:
		req->addr = (void *) op->iov;
		req->len = (uint64_t) op->iovcnt;
		if (op->opcode == AURAIO_OP_WRITEV && (op->flags & AURAIO_OP_DSYNC))
			req->rw_flags = RWF_DSYNC;
		break;
	default:
		req->addr = NULL;
		req->len = 0;
		req->rw_flags = (op->flags & AURAIO_OP_DATASYNC) ? IORING_FSYNC_DATASYNC : 0;
		break;
	}
	rc = resolve_file(e, req, &flags);
	req->flags = (uint8_t) flags;
	return rc;
}

/* Room for n more? A chain longer than the current limit may still go when the ring is
 * idle, so a low adaptive limit can never starve it. */
static inline __attribute__((always_inline)) bool has_room(struct ring *r, unsigned n,
							   uint64_t in_flight)
{
	uint32_t limit = adaptive_limit(&r->ctl);

	if (in_flight + n <= limit)
		return true;
	return in_flight == 0 && n <= r->queue_depth;
}

/*
 * sq_lock held: how many of n entries the backend's queue takes now - the one check of
 * SQ room on the submit path; staging then takes entries without looking. Only
 * io_uring's SQ can be short of room: besides the requests the limit admitted it holds
 * cancel entries, and one the kernel refused stays there. Without SQPOLL only a kernel
 * entry frees a slot, so the SQ's contents go to the kernel first (uring_make_room).
 */
static inline __attribute__((always_inline)) unsigned queue_room(struct ring *r, unsigned n)
{
	if (!ring_is_uring(r) || likely(uring_sq_room(r) >= n))
		return n;
	batch_sent(r, now_ns()); /* uring_make_room publishes the staged batch */
	return uring_make_room(r, n);
}

static void unwind(struct ring *r, struct auraio_request **reqs, int n)
{
	for (int i = n; i-- > 0;)
		request_unalloc(&r->pool, reqs[i]);
}

/* sq_lock held: allocate and fill n requests. 0 or -errno (nothing allocated then). */
static inline __attribute__((always_inline)) int fill_chain(struct auraio_engine *e, struct ring *r,
							    uint64_t now, const auraio_op_t *ops,
							    int n, struct auraio_request **reqs)
{
	for (int i = 0; i < n; i++) {
		int rc;

		reqs[i] = request_alloc(&r->pool);
		if (unlikely(!reqs[i])) {
			unwind(r, reqs, i);
			return -EAGAIN;
		}
		rc = request_init(e, reqs[i], &ops[i], now);
		if (unlikely(rc)) {
			unwind(r, reqs, i + 1);
			return rc;
		}
		if (i > 0) {
			reqs[i - 1]->flags |= REQF_LINK;
			reqs[i - 1]->chain_next = reqs[i];
			reqs[i]->chain = CHAIN_PRED;
		}
	}
#ifdef AURAIO_FAULT_INJECTION
	if (unlikely(atomic_load_explicit(&e->fault_armed, memory_order_relaxed)))
		fault_apply_chain(e, reqs, n);
#endif
	return 0;
}

/* sq_lock held: reqs[0..n) are staged; publish them to the reaper as IN_FLIGHT. */
static inline __attribute__((always_inline)) void
mark_in_flight(struct ring *r, struct auraio_request **reqs, int n)
{
	uint64_t fixed = 0;

	for (int i = 0; i < n; i++) {
		fixed += (reqs[i]->flags & REQF_REG_BUF) != 0;
		/* Release pairs with the acquire in request_of_ud (the reaper). */
		atomic_store_explicit(&reqs[i]->state, REQ_IN_FLIGHT, memory_order_release);
	}
	if (unlikely(fixed))
		counter_add(&r->fixed_buf_submitted, fixed);
}

/*
 * sq_lock held: stage the chain; returns how many entries to push into the kernel.
 * The SQEs are prepared first, straight from the values request_init just stored; the
 * requests are published as IN_FLIGHT before anything is made visible to the kernel.
 */
static inline __attribute__((always_inline)) unsigned
stage_chain(struct ring *r, struct auraio_request **reqs, int n, bool defer, uint64_t now)
{
	backend_stage(r, reqs, n); /* first: no atomic between it and request_init */
	mark_in_flight(r, reqs, n);
	return stage_account(r, n, defer, now);
}

/* The whole submission; always inlined so that each public call is specialised for its
 * opcode and n == 1 (the op struct and the validation switch fold away). */
static inline __attribute__((always_inline)) int
submit_inline(struct auraio_engine *e, const auraio_op_t *ops, int n, struct auraio_request **reqs)
{
	struct ring *r;
	uint64_t in_flight, now;
	unsigned to_submit;
	bool defer;
	int rc;

	for (int i = 0; i < n; i++)
		if ((rc = validate_op(&ops[i])) != 0)
			return rc;
	if (unlikely(atomic_load_explicit(&e->shutting_down, memory_order_relaxed)))
		return -ESHUTDOWN;
	r = engine_pick_ring(e);
	sq_lock(r);
	in_flight = ring_in_flight(r);
	if (unlikely(!has_room(r, (unsigned) n, in_flight) ||
		     queue_room(r, (unsigned) n) < (unsigned) n)) {
		counter_add(&r->eagain, 1);
		sq_unlock(r);
		r->ops->kick(r);
		return -EAGAIN;
	}
	defer = delivery_defers(r);
	now = submit_clock(r);
	rc = fill_chain(e, r, now, ops, n, reqs);
	if (unlikely(rc)) {
		sq_unlock(r);
		return rc;
	}
	to_submit = stage_chain(r, reqs, n, defer, now);
	sq_unlock(r);
	ring_enter(r, to_submit);
	return 0;
}

int submit_ops(struct auraio_engine *e, const auraio_op_t *ops, int n, struct auraio_request **reqs)
{
	return submit_inline(e, ops, n, reqs);
}

/*
 * Batches. An operation that is a READ or WRITE of a plain buffer with no flags, on a
 * file not registered with O_DIRECT - what a batch almost always holds - takes the plain
 * lane on io_uring: checked in one expression, its SQE built straight from the op,
 * without the general path's switches. Anything else (vectors, fsync, registered
 * buffers, DSYNC, O_DIRECT checks, the thread backend, an armed fault rule) goes through
 * the general path, one operation at a time.
 */
static inline __attribute__((always_inline)) bool op_is_plain(const auraio_op_t *op)
{
	return ((unsigned) op->opcode | op->flags) <= AURAIO_OP_WRITE &&
	       op->buf.type == AURAIO_BUF_UNREGISTERED && op->buf.u.ptr && op->fd >= 0 &&
	       op->len <= UINT32_MAX && op->offset >= 0;
}
_Static_assert(AURAIO_OP_READ == 0 && AURAIO_OP_WRITE == 1,
	       "op_is_plain: READ or WRITE with no flags is (opcode | flags) <= 1");

/* sq_lock held: the general path for one operation of a batch. 0 or -errno (nothing
 * allocated then). */
static int general_stage(struct auraio_engine *e, struct ring *r, const auraio_op_t *op,
			 uint64_t now, struct auraio_request **out)
{
	struct auraio_request *req;
	int rc = validate_op(op);

	if (rc)
		return rc;
	req = request_alloc(&r->pool);
	if (unlikely(!req))
		return -EAGAIN;
	rc = request_init(e, req, op, now);
	if (unlikely(rc)) {
		request_unalloc(&r->pool, req);
		return rc;
	}
#ifdef AURAIO_FAULT_INJECTION
	if (unlikely(atomic_load_explicit(&e->fault_armed, memory_order_relaxed)))
		fault_apply_chain(e, &req, 1);
#endif
	backend_stage(r, &req, 1); /* a chain of one */
	mark_in_flight(r, &req, 1);
	*out = req;
	return 0;
}

/*
 * sq_lock held, SQ room made for all n (queue_room): stage ops[0..n) one by one - the
 * plain lane where it applies, the general path otherwise - until one fails (its error
 * in *err). Returns how many were staged; their handles go to reqs unless it is NULL.
 */
static inline __attribute__((always_inline)) int batch_stage(struct auraio_engine *e,
							     struct ring *r, const auraio_op_t *ops,
							     int n, uint64_t now,
							     struct auraio_request **reqs, int *err)
{
	/* The plain lane needs io_uring and no fault rule. */
	bool plain = ring_is_uring(r);
	int k;

#ifdef AURAIO_FAULT_INJECTION
	plain = plain && !atomic_load_explicit(&e->fault_armed, memory_order_relaxed);
#endif
	for (k = 0; k < n; k++) {
		const auraio_op_t *op = &ops[k];
		struct auraio_request *req;
		int32_t slot;

		if (likely(plain && op_is_plain(op) &&
			   (slot = plain_slot(&e->files, op->fd)) >= 0)) {
			req = request_alloc(&r->pool);
			if (unlikely(!req)) {
				*err = -EAGAIN;
				break;
			}
			plain_stage(uring_next_sqe(r), req,
				    &(struct plain_op){ op->opcode, op->fd, op->buf.u.ptr, op->len,
							op->offset, op->cb, op->user_data },
				    slot, now);
		} else if ((*err = general_stage(e, r, op, now, &req)) != 0) {
			break;
		}
		if (reqs)
			reqs[k] = req;
	}
	return k;
}

/*
 * Independent operations: the longest prefix of ops that is valid and fits under the
 * ring's limit, under one sq_lock; their handles go to reqs unless it is NULL. Returns
 * how many were submitted, or -errno when none.
 * A batch cut short by the limit counts as one EAGAIN for the controller: demand
 * exceeded the limit.
 */
static int submit_batch(struct auraio_engine *e, const auraio_op_t *ops, int n,
			struct auraio_request **reqs)
{
	struct ring *r;
	uint64_t in_flight, room, now;
	unsigned to_submit;
	bool defer;
	int k, err;

	/* ops[0]'s own error comes before the ring's state (EAGAIN). */
	if ((err = validate_op(&ops[0])) != 0)
		return err;
	if (unlikely(atomic_load_explicit(&e->shutting_down, memory_order_relaxed)))
		return -ESHUTDOWN;
	r = engine_pick_ring(e);
	sq_lock(r);
	in_flight = ring_in_flight(r);
	room = adaptive_limit(&r->ctl);
	room = in_flight < room ? room - in_flight : 0;
	if (room > 0)
		room = queue_room(r, (unsigned) MIN(room, (uint64_t) n));
	if ((uint64_t) n > room) {
		counter_add(&r->eagain, 1);
		if (room == 0) {
			sq_unlock(r);
			r->ops->kick(r);
			return -EAGAIN;
		}
		n = (int) room;
	}
	defer = delivery_defers(r);
	now = submit_clock(r);
	k = batch_stage(e, r, ops, n, now, reqs, &err);
	if (k == 0) {
		sq_unlock(r);
		return err;
	}
	to_submit = stage_account(r, k, defer, now);
	sq_unlock(r);
	ring_enter(r, to_submit);
	return k;
}

static inline __attribute__((always_inline)) auraio_request_t *submit_one(auraio_engine_t *e,
									  const auraio_op_t *op)
{
	struct auraio_request *req;
	int rc;

	if (unlikely(!e)) {
		errno = EINVAL;
		return NULL;
	}
	rc = submit_inline(e, op, 1, &req);
	if (unlikely(rc)) {
		errno = -rc;
		return NULL;
	}
	return req;
}

/* The general path of auraio_read/auraio_write: every case, every error. */
static inline __attribute__((always_inline)) auraio_request_t *
submit_rw(auraio_engine_t *e, auraio_opcode_t opc, int fd, auraio_buf_t buf, size_t len,
	  off_t offset, auraio_callback_t cb, void *user_data)
{
	auraio_op_t op;

	op.opcode = opc;
	op.fd = fd;
	op.buf = buf;
	op.iov = NULL;
	op.iovcnt = 0;
	op.len = len;
	op.offset = offset;
	op.flags = 0;
	op.cb = cb;
	op.user_data = user_data;
	return submit_one(e, &op);
}

__attribute__((noinline)) auraio_request_t *read_general(auraio_engine_t *e, int fd,
							 auraio_buf_t buf, size_t len, off_t offset,
							 auraio_callback_t cb, void *user_data)
{
	return submit_rw(e, AURAIO_OP_READ, fd, buf, len, offset, cb, user_data);
}

__attribute__((noinline)) auraio_request_t *write_general(auraio_engine_t *e, int fd,
							  auraio_buf_t buf, size_t len,
							  off_t offset, auraio_callback_t cb,
							  void *user_data)
{
	return submit_rw(e, AURAIO_OP_WRITE, fd, buf, len, offset, cb, user_data);
}

static inline __attribute__((always_inline)) auraio_request_t *
submit_vec(auraio_engine_t *e, auraio_opcode_t opc, int fd, const struct iovec *iov, int iovcnt,
	   off_t offset, auraio_callback_t cb, void *user_data)
{
	auraio_op_t op;

	op.opcode = opc;
	op.fd = fd;
	op.buf = auraio_buf(NULL);
	op.iov = iov;
	op.iovcnt = iovcnt;
	op.len = 0;
	op.offset = offset;
	op.flags = 0;
	op.cb = cb;
	op.user_data = user_data;
	return submit_one(e, &op);
}

AURAIO_API auraio_request_t *auraio_readv(auraio_engine_t *e, int fd, const struct iovec *iov,
					  int iovcnt, off_t offset, auraio_callback_t cb,
					  void *user_data)
{
	return submit_vec(e, AURAIO_OP_READV, fd, iov, iovcnt, offset, cb, user_data);
}

AURAIO_API auraio_request_t *auraio_writev(auraio_engine_t *e, int fd, const struct iovec *iov,
					   int iovcnt, off_t offset, auraio_callback_t cb,
					   void *user_data)
{
	return submit_vec(e, AURAIO_OP_WRITEV, fd, iov, iovcnt, offset, cb, user_data);
}

AURAIO_API auraio_request_t *auraio_fsync(auraio_engine_t *e, int fd, unsigned flags,
					  auraio_callback_t cb, void *user_data)
{
	auraio_op_t op;

	op.opcode = AURAIO_OP_FSYNC;
	op.fd = fd;
	op.buf = auraio_buf(NULL);
	op.iov = NULL;
	op.iovcnt = 0;
	op.len = 0;
	op.offset = 0;
	op.flags = flags;
	op.cb = cb;
	op.user_data = user_data;
	return submit_one(e, &op);
}

AURAIO_API int auraio_submit_linked(auraio_engine_t *e, const auraio_op_t *ops, int n,
				    auraio_request_t **reqs)
{
	struct auraio_request *local[64];
	struct auraio_request **out = local;
	int rc;

	if (!e || !ops || n < 1 || n > e->opts.queue_depth)
		return -EINVAL;
	if (n > (int) ARRAY_SIZE(local)) {
		out = malloc(sizeof(*out) * (size_t) n);
		if (!out)
			return -ENOMEM;
	}
	rc = submit_ops(e, ops, n, out);
	if (rc == 0 && reqs)
		for (int i = 0; i < n; i++)
			reqs[i] = out[i];
	if (out != local)
		free(out);
	return rc;
}

AURAIO_API int auraio_submit_batch(auraio_engine_t *e, const auraio_op_t *ops, int n,
				   auraio_request_t **reqs)
{
	if (!e || !ops || n < 1)
		return -EINVAL;
	return submit_batch(e, ops, n, reqs);
}

AURAIO_API int auraio_cancel(auraio_engine_t *e, auraio_request_t *req)
{
	struct ring *r;
	unsigned to_submit;
	int rc;

	if (!e || !req || req->ring >= e->ring_count)
		return -EINVAL;
	r = &e->rings[req->ring];
	sq_lock(r);
	if (atomic_load_explicit(&req->state, memory_order_relaxed) != REQ_IN_FLIGHT) {
		sq_unlock(r);
		return -EINVAL;
	}
	if (counter_get(&r->internal_submitted) - counter_get(&r->internal_completed) >=
	    r->queue_depth) {
		sq_unlock(r);
		return -EAGAIN;
	}
	rc = r->ops->cancel(r, req);
	if (rc == 0)
		counter_add(&r->internal_submitted, 1);
	batch_sent(r, now_ns());
	to_submit = backend_publish(r);
	sq_unlock(r);
	ring_enter(r, to_submit);
	return rc;
}
