/* SPDX-License-Identifier: MIT */
/*
 * submit_fast.c - auraio_read() and auraio_write(): the fast path for a plain READ or
 * WRITE on io_uring (a plain buffer, a file not registered with O_DIRECT, no fault rule
 * armed, no destroy begun), from the arguments straight to a request and its SQE. Its
 * cost per I/O is what bench/callgrind_io.sh measures (docs/auraio.md, "Cost per I/O").
 *
 * Invariants: the same decisions, errors and accounting as the general path
 * (submit.c), which takes every call the fast path does not - before a request is
 * taken, so it starts over; the ring's sq_lock is released on every way out.
 * Must never: return an error of its own other than EAGAIN at the in-flight limit
 * (valid arguments, engine up: the general path's answer too), or make a call on the
 * path a callback's resubmission to its own ring takes.
 */
#include <errno.h>
#include <liburing.h>

#include "backend.h"
#include "submit_stage.h"

/* The out-of-line ends of the fast path (submit_rw_fast), each reached by a tail call:
 * the fast path itself then calls nothing, so it needs no stack frame and keeps fewer
 * values in callee-saved registers. */

/* sq_lock held: the in-flight limit refused a valid operation. */
static __attribute__((noinline, cold)) auraio_request_t *fast_eagain(struct ring *r)
{
	counter_add(&r->eagain, 1);
	sq_unlock(r);
	r->ops->kick(r);
	errno = EAGAIN;
	return NULL;
}

/* sq_lock held: req is staged and its batch is due: send the batch. Returns req. */
static __attribute__((noinline)) auraio_request_t *
fast_send(struct ring *r, bool defer, uint64_t now, struct auraio_request *req)
{
	unsigned to_submit = stage_send(r, defer, now);

	sq_unlock(r);
	ring_enter(r, to_submit);
	return req;
}

/* sq_lock was released with sleepers on it: wake one. Returns req. */
static __attribute__((noinline)) auraio_request_t *fast_wake(struct ring *r,
							     struct auraio_request *req)
{
	lock_wake(&r->sq_lock);
	return req;
}

/* The general path's signature: auraio_read's and auraio_write's own. */
typedef auraio_request_t *(*rw_general_fn)(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len,
					   off_t offset, auraio_callback_t cb, void *user_data);

/* The signature of the fast path's other ends, for arguments known plain (the buffer
 * as its pointer: an aggregate passed on to a tail call is copied first). */
typedef auraio_request_t *(*rw_plain_fn)(auraio_engine_t *e, int fd, void *ptr, size_t len,
					 off_t offset, auraio_callback_t cb, void *user_data);

/*
 * The fast path of auraio_read/auraio_write: a plain operation (the batch's plain lane,
 * above: plain buffer, a file not registered with O_DIRECT) on io_uring, with no fault
 * rule armed and no destroy begun (engine->fast_off), room in the SQ and a free
 * request. It goes straight from the arguments to the request and its SQE, without an
 * op descriptor. At the in-flight limit it fails with EAGAIN, accounted as the general
 * path would (the operation is valid and the engine up, so that is the general path's
 * answer too). Anything else - every other error included - is handed, before a request
 * is taken, to the general path (read_general, write_general), which starts over: same
 * checks, same errors, same accounting. That hand-off has the public call's own
 * signature, so it is a jump that reuses the caller's arguments where they lie.
 *
 * Every other way out that needs a call is a tail call too: EAGAIN, a batch to send, a
 * sleeper to wake, the general path once the sq_lock is taken (`fallback`), and a submit
 * from outside a callback of its ring, through a cached route due for a refresh or to a
 * contended sq_lock (`outside`: the clock, the route and the lock as they come). What is
 * left - a callback resubmitting to its own ring, the I/O loop of an event-driven
 * program - makes no call.
 *
 * The argument checks are folded: one test of the buffer type (0 for a plain pointer)
 * or'ed with the high half of len, and one sign test of fd | offset (negative if either
 * is); each failure still gets its own error from the general path. The type is tested
 * before the pointer: in a registered reference (auraio_buf_fixed) the pointer's bytes
 * are the index and bytes left unset, and a branch on those - harmless, the general path
 * follows either way - is an uninitialised-value error under valgrind's memcheck.
 */
static inline __attribute__((always_inline)) bool
rw_args_plain(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len, off_t offset)
{
	return likely(e && (((uint64_t) len >> 32) | (unsigned) buf.type) == 0 && buf.u.ptr &&
		      ((int64_t) fd | (int64_t) offset) >= 0 &&
		      !atomic_load_explicit(&e->fast_off, memory_order_relaxed));
}
_Static_assert(AURAIO_BUF_UNREGISTERED == 0, "rw_args_plain: a plain buffer's type is 0");

/* The ring whose sq_lock a fast path gave up with (fast_fallback): passed aside, since
 * the hand-off keeps a fixed signature to remain a jump. */
static TLS_IE struct ring *tls_fast_ring;

/* The fast path gave up with tls_fast_ring's sq_lock held: let it go, and start over on
 * the general path. */
static inline __attribute__((always_inline)) auraio_request_t *
fast_fallback(auraio_engine_t *e, int fd, void *ptr, size_t len, off_t offset, auraio_callback_t cb,
	      void *user_data, rw_general_fn general)
{
	sq_unlock(tls_fast_ring);
	return general(e, fd, auraio_buf(ptr), len, offset, cb, user_data);
}

static __attribute__((noinline, cold)) auraio_request_t *
read_fallback(auraio_engine_t *e, int fd, void *ptr, size_t len, off_t offset, auraio_callback_t cb,
	      void *user_data)
{
	return fast_fallback(e, fd, ptr, len, offset, cb, user_data, read_general);
}

static __attribute__((noinline, cold)) auraio_request_t *
write_fallback(auraio_engine_t *e, int fd, void *ptr, size_t len, off_t offset,
	       auraio_callback_t cb, void *user_data)
{
	return fast_fallback(e, fd, ptr, len, offset, cb, user_data, write_general);
}

/* The fast path from the ring on, for plain arguments (rw_args_plain), with r's sq_lock
 * held. defer: is this thread running r's callbacks (delivery_defers)? */
static inline __attribute__((always_inline)) auraio_request_t *
submit_rw_on(struct ring *r, bool defer, auraio_engine_t *e, auraio_opcode_t opc, int fd, void *ptr,
	     size_t len, off_t offset, auraio_callback_t cb, void *user_data, rw_plain_fn fallback)
{
	const struct plain_op op = { opc, fd, ptr, len, offset, cb, user_data };
	struct auraio_request *req;
	struct io_uring_sqe *sqe;
	uint64_t in_flight, now;
	int32_t slot;

	in_flight = ring_in_flight(r);
	/* has_room for one request: the limit is never below 1, so an idle ring has room. */
	if (unlikely(in_flight >= adaptive_limit(&r->ctl)))
		return fast_eagain(r);
	sqe = uring_peek_sqe(r);
	if (unlikely(!sqe))
		goto out;
	slot = plain_slot(&e->files, fd);
	if (unlikely(slot < 0))
		goto out;
	req = request_alloc(&r->pool);
	if (unlikely(!req))
		goto out;
	now = defer ? tls_dl.now : now_ns(); /* submit_clock, with the test made once */
	uring_take_sqe(r);
	plain_stage(sqe, req, &op, slot, now);
	if (stage_count(r, 1, defer, now))
		return fast_send(r, defer, now, req);
	if (unlikely(sq_unlock_begin(r)))
		return fast_wake(r, req);
	return req;

out:
	tls_fast_ring = r;
	return fallback(e, fd, ptr, len, offset, cb, user_data);
}

/* The fast path for plain arguments, with the route, the lock and the clock as they
 * come. */
static inline __attribute__((always_inline)) auraio_request_t *
fast_outside(auraio_engine_t *e, auraio_opcode_t opc, int fd, void *ptr, size_t len, off_t offset,
	     auraio_callback_t cb, void *user_data, rw_plain_fn fallback)
{
	struct ring *r = engine_pick_ring(e);

	sq_lock(r);
	return submit_rw_on(r, delivery_defers(r), e, opc, fd, ptr, len, offset, cb, user_data,
			    fallback);
}

static __attribute__((noinline)) auraio_request_t *read_outside(auraio_engine_t *e, int fd,
								void *ptr, size_t len, off_t offset,
								auraio_callback_t cb,
								void *user_data)
{
	return fast_outside(e, AURAIO_OP_READ, fd, ptr, len, offset, cb, user_data, read_fallback);
}

static __attribute__((noinline)) auraio_request_t *write_outside(auraio_engine_t *e, int fd,
								 void *ptr, size_t len,
								 off_t offset, auraio_callback_t cb,
								 void *user_data)
{
	return fast_outside(e, AURAIO_OP_WRITE, fd, ptr, len, offset, cb, user_data,
			    write_fallback);
}

/* auraio_read/auraio_write: the checks, then - for a callback of the ring its cached
 * route names, with the route fresh (engine_pick_ring's fast case) and the sq_lock
 * free - the fast path with the delivery's time; anything else by a tail call. */
static inline __attribute__((always_inline)) auraio_request_t *
submit_rw_fast(auraio_engine_t *e, auraio_opcode_t opc, int fd, auraio_buf_t buf, size_t len,
	       off_t offset, auraio_callback_t cb, void *user_data, rw_general_fn general,
	       rw_plain_fn outside, rw_plain_fn fallback)
{
	struct ring *r;

	if (!rw_args_plain(e, fd, buf, len, offset))
		return general(e, fd, buf, len, offset, cb, user_data);
	r = tls_route.ring;
	if (unlikely(tls_route.id != e->id || !tls_route.left || !delivery_defers(r)))
		return outside(e, fd, buf.u.ptr, len, offset, cb, user_data);
	/* A contended sq_lock too goes the outside way, which waits for it. (A ring
	 * without locks is the single_thread option's, not the default.) */
	if (likely(r->locking) && unlikely(!lock_try(&r->sq_lock)))
		return outside(e, fd, buf.u.ptr, len, offset, cb, user_data);
	tls_route.left--;
	return submit_rw_on(r, true, e, opc, fd, buf.u.ptr, len, offset, cb, user_data, fallback);
}

AURAIO_API auraio_request_t *auraio_read(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len,
					 off_t offset, auraio_callback_t cb, void *user_data)
{
	return submit_rw_fast(e, AURAIO_OP_READ, fd, buf, len, offset, cb, user_data, read_general,
			      read_outside, read_fallback);
}

AURAIO_API auraio_request_t *auraio_write(auraio_engine_t *e, int fd, auraio_buf_t buf, size_t len,
					  off_t offset, auraio_callback_t cb, void *user_data)
{
	return submit_rw_fast(e, AURAIO_OP_WRITE, fd, buf, len, offset, cb, user_data,
			      write_general, write_outside, write_fallback);
}
