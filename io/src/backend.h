/* SPDX-License-Identifier: MIT */
/*
 * backend.h - how the core calls a backend on its hot path. io_uring is the engine and
 * the thread backend the fallback, so the hot calls test for io_uring and call its
 * inline code directly (one predictable branch), and go through the ops table only for
 * the fallback. Everything else calls r->ops directly.
 */
#ifndef AURAIO_BACKEND_H
#define AURAIO_BACKEND_H

#include "backend_uring.h"
#include "engine.h"

static inline bool ring_is_uring(const struct ring *r)
{
	return likely(r->ops == &backend_uring_ops);
}

static inline int backend_stage(struct ring *r, struct auraio_request **reqs, int n)
{
	return ring_is_uring(r) ? uring_stage(r, reqs, n) : r->ops->stage(r, reqs, n);
}

static inline unsigned backend_publish(struct ring *r)
{
	return ring_is_uring(r) ? uring_publish(r) : r->ops->publish(r);
}

/* Reaping: complete.c reads io_uring's CQEs in place (uring_peek / uring_advance) and
 * calls the fallback's reap through the ops table. */

#endif
