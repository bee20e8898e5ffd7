/* SPDX-License-Identifier: MIT */
/*
 * request.c - a ring's request pool.
 *
 * Owns: the slot array, the private free list (sq_lock holder only) and the lock-free
 * return stack. Invariant: a slot is on exactly one of {free list, return stack, in use}.
 * Must never: pop single nodes from the return stack (that would reintroduce ABA).
 */
#include <errno.h>
#include <stdlib.h>

#include "request.h"

int request_pool_init(struct request_pool *pool, uint32_t nreqs, uint16_t ring)
{
	pool->reqs = aligned_alloc(CACHE_LINE, (size_t) nreqs * sizeof(*pool->reqs));
	if (!pool->reqs)
		return -ENOMEM;
	pool->nreqs = nreqs;
	pool->free_head = NULL;
	atomic_init(&pool->returned, NULL);
	for (uint32_t i = nreqs; i-- > 0;) {
		struct auraio_request *req = &pool->reqs[i];

		req->slot = i;
		req->gen = 0;
		req->ring = ring;
		req->fault_iov = NULL;
		atomic_init(&req->state, REQ_FREE);
		req->next = pool->free_head;
		pool->free_head = req;
	}
	return 0;
}

void request_pool_fini(struct request_pool *pool)
{
	for (uint32_t i = 0; pool->reqs && i < pool->nreqs; i++)
		free(pool->reqs[i].fault_iov);
	free(pool->reqs);
	pool->reqs = NULL;
}

void request_unalloc(struct request_pool *pool, struct auraio_request *req)
{
	atomic_store_explicit(&req->state, REQ_FREE, memory_order_relaxed);
	req->next = pool->free_head;
	pool->free_head = req;
}

void request_release_list(struct request_pool *pool, struct auraio_request *head,
			  struct auraio_request *tail)
{
	for (struct auraio_request *r = head;; r = r->next) {
		atomic_store_explicit(&r->state, REQ_FREE, memory_order_relaxed);
		if (r == tail)
			break;
	}
	request_return_list(pool, head, tail);
}

void request_return_list(struct request_pool *pool, struct auraio_request *head,
			 struct auraio_request *tail)
{
	struct auraio_request *old = atomic_load_explicit(&pool->returned, memory_order_relaxed);

	/* Release pairs with the acquire exchange in request_alloc. */
	do {
		tail->next = old;
	} while (!atomic_compare_exchange_weak_explicit(
	    &pool->returned, &old, head, memory_order_release, memory_order_relaxed));
}
