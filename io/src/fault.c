/* SPDX-License-Identifier: MIT */
/*
 * fault.c - fault injection for tests: fail the Nth operation, transfer only a prefix,
 * or tear a write at a 512-byte boundary.
 *
 * A fault is decided when a request is staged (sq_lock held) and realised with real
 * operations, so completions flow through the normal path and wake whoever waits:
 *   ERROR  the operation becomes a no-op whose result is replaced by -error;
 *   SHORT  the length (or iovec list) is cut to `keep`; the kernel's own result reports it
 *          (its count - fewer at the end of a file - or its error, never `keep` assumed);
 *          a `keep` that covers the whole operation cuts nothing (no fault, no cancel);
 *   TEAR   the write is cut to `keep` rounded down to 512 and its result is replaced by
 *          -error, as if the machine stopped with only those sectors written.
 * The rest of a linked chain after a faulted operation becomes no-ops completing with
 * -ECANCELED, which is what the kernel does to a chain after a failed or short link.
 *   ENTER  not an operation's fault: io_uring_enter refusing to take published entries
 *          (EAGAIN, EBUSY), decided by the io_uring backend before each submitting
 *          entry (fault_enter). It tests the engine's retry: need_enter (engine.h).
 *
 * Compiled only with AURAIO_FAULT_INJECTION; otherwise the API reports -ENOTSUP and the
 * submit path carries no check at all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#ifdef AURAIO_FAULT_INJECTION

struct fault_state {
	auraio_fault_t rule;
	uint64_t seen; /* matching operations since the rule was set */
};

static unsigned op_class(const struct auraio_request *req)
{
	switch (req->opcode) {
	case AURAIO_OP_READ:
	case AURAIO_OP_READV:
		return AURAIO_FAULT_OP_READ;
	case AURAIO_OP_WRITE:
	case AURAIO_OP_WRITEV:
		return AURAIO_FAULT_OP_WRITE;
	default:
		return AURAIO_FAULT_OP_FSYNC;
	}
}

/* fault_lock held: does the rule hit req? Counts matching operations. */
static bool rule_hits(struct fault_state *fs, const struct auraio_request *req)
{
	const auraio_fault_t *f = &fs->rule;
	uint64_t nth;

	if (f->ops && !(f->ops & op_class(req)))
		return false;
	if (f->fd >= 0 && f->fd != req->fd)
		return false;
	nth = fs->seen++;
	return nth >= f->skip && (f->count == 0 || nth - f->skip < f->count);
}

static void make_nop(struct auraio_request *req, int32_t result)
{
	req->flags |= REQF_NOP | REQF_FAULT;
	req->flags &= (uint8_t) ~(REQF_FIXED_BUF | REQF_FIXED_FILE);
	req->fault_result = result;
}

/* Cut a vectored request to its first `keep` bytes (a private iovec copy). */
static int cut_iov(struct auraio_request *req, size_t keep)
{
	const struct iovec *iov = req->addr;
	struct iovec *copy = malloc(sizeof(*copy) * req->len);
	uint64_t n = 0;

	if (!copy)
		return -ENOMEM;
	for (uint64_t i = 0; i < req->len && keep > 0; i++, n++) {
		copy[n] = iov[i];
		if (copy[n].iov_len > keep)
			copy[n].iov_len = keep;
		keep -= copy[n].iov_len;
	}
	free(req->fault_iov);
	req->fault_iov = copy;
	req->len = n;
	return 0;
}

static size_t request_bytes(const struct auraio_request *req)
{
	size_t total = 0;

	if (req->opcode == AURAIO_OP_READ || req->opcode == AURAIO_OP_WRITE)
		return req->len;
	for (uint64_t i = 0; i < req->len; i++)
		total += ((const struct iovec *) req->addr)[i].iov_len;
	return total;
}

/* Transfer only `keep` bytes; the result is then `result` if replace, else whatever the
 * kernel made of the cut operation (its count - fewer at the end of a file - or error). */
static void cut(struct auraio_request *req, size_t keep, bool replace, int32_t result)
{
	if (keep == 0 || ((req->opcode == AURAIO_OP_READV || req->opcode == AURAIO_OP_WRITEV) &&
			  cut_iov(req, keep) != 0)) {
		make_nop(req, keep == 0 ? result : -ENOMEM);
		return;
	}
	if (req->opcode == AURAIO_OP_READ || req->opcode == AURAIO_OP_WRITE)
		req->len = keep;
	if (replace) {
		req->flags |= REQF_FAULT;
		req->fault_result = result;
	}
}

/* Fault req; false if it is left whole (a SHORT rule keeping all of it: a complete
 * transfer is no fault, and must not break its chain - no kernel does). */
static bool apply(const auraio_fault_t *f, struct auraio_request *req)
{
	int32_t err = -(f->error ? f->error : EIO);
	unsigned cls = op_class(req);
	size_t len;

	if (f->kind == AURAIO_FAULT_ERROR || cls == AURAIO_FAULT_OP_FSYNC ||
	    (f->kind == AURAIO_FAULT_TEAR && cls != AURAIO_FAULT_OP_WRITE)) {
		make_nop(req, err);
		return true;
	}
	len = request_bytes(req);
	if (f->kind == AURAIO_FAULT_SHORT && f->keep >= len)
		return false;
	if (f->kind == AURAIO_FAULT_SHORT)
		cut(req, f->keep, false, 0);
	else
		cut(req, MIN(f->keep & ~(size_t) 511, len & ~(size_t) 511), true, err);
	return true;
}

void fault_apply_chain(struct auraio_engine *e, struct auraio_request **reqs, int n)
{
	int hit = -1;

	pthread_mutex_lock(&e->fault_lock);
	if (atomic_load_explicit(&e->fault_armed, memory_order_relaxed) && e->fault &&
	    e->fault->rule.kind != AURAIO_FAULT_ENTER) {
		for (int i = 0; i < n && hit < 0; i++)
			if (rule_hits(e->fault, reqs[i]))
				hit = i;
		if (hit >= 0 && !apply(&e->fault->rule, reqs[hit]))
			hit = -1;
	}
	pthread_mutex_unlock(&e->fault_lock);
	if (hit < 0)
		return;
	counter_add(&e->faults_injected, 1);
	for (int i = hit + 1; i < n; i++)
		make_nop(reqs[i], -ECANCELED);
}

int fault_enter(struct auraio_engine *e)
{
	int rc = 0;

	if (!atomic_load_explicit(&e->fault_armed, memory_order_relaxed))
		return 0;
	pthread_mutex_lock(&e->fault_lock);
	if (atomic_load_explicit(&e->fault_armed, memory_order_relaxed) && e->fault &&
	    e->fault->rule.kind == AURAIO_FAULT_ENTER) {
		const auraio_fault_t *f = &e->fault->rule;
		uint64_t nth = e->fault->seen++;

		if (nth >= f->skip && (f->count == 0 || nth - f->skip < f->count))
			rc = -(f->error ? f->error : EBUSY);
	}
	pthread_mutex_unlock(&e->fault_lock);
	if (rc)
		counter_add(&e->faults_injected, 1);
	return rc;
}

AURAIO_API int auraio_fault_set(auraio_engine_t *e, const auraio_fault_t *f)
{
	if (!e || !f || f->kind < AURAIO_FAULT_ERROR || f->kind > AURAIO_FAULT_ENTER ||
	    f->error < 0 || (f->ops & ~7u))
		return -EINVAL;
	pthread_mutex_lock(&e->fault_lock);
	if (!e->fault)
		e->fault = calloc(1, sizeof(*e->fault));
	if (e->fault) {
		e->fault->rule = *f;
		e->fault->seen = 0;
		atomic_store_explicit(&e->fault_armed, true, memory_order_relaxed);
		atomic_fetch_or_explicit(&e->fast_off, FAST_OFF_FAULT, memory_order_relaxed);
	}
	pthread_mutex_unlock(&e->fault_lock);
	return e->fault ? 0 : -ENOMEM;
}

AURAIO_API int auraio_fault_clear(auraio_engine_t *e)
{
	if (!e)
		return -EINVAL;
	pthread_mutex_lock(&e->fault_lock);
	atomic_store_explicit(&e->fault_armed, false, memory_order_relaxed);
	atomic_fetch_and_explicit(&e->fast_off, (uint8_t) ~FAST_OFF_FAULT, memory_order_relaxed);
	pthread_mutex_unlock(&e->fault_lock);
	return 0;
}

void fault_fini(struct auraio_engine *e)
{
	free(e->fault);
	e->fault = NULL;
}

#else /* !AURAIO_FAULT_INJECTION */

AURAIO_API int auraio_fault_set(auraio_engine_t *e, const auraio_fault_t *f)
{
	(void) e;
	(void) f;
	return -ENOTSUP;
}

AURAIO_API int auraio_fault_clear(auraio_engine_t *e)
{
	(void) e;
	return -ENOTSUP;
}

void fault_fini(struct auraio_engine *e)
{
	(void) e;
}

#endif
