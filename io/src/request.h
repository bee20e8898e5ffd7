/* SPDX-License-Identifier: MIT */
/*
 * request.h - the request struct and a ring's request pool.
 *
 * Layout: the first cache line holds what the submitter writes and the backend reads to
 * build the SQE; the second holds what the reaper writes. A request is never zeroed:
 * request_init() stores exactly the submission fields.
 *
 * Identity: the kernel sees user_data = (generation << 32) | slot, which the request
 * holds as one word (ud). The generation is bumped every time a slot is handed out, so
 * a completion that arrives for an earlier life of the slot (a stale CQE) is recognised
 * and dropped, never delivered.
 *
 * Pool: the free list is popped only under the ring's sq_lock. Requests are returned by
 * whichever thread finished with them (a reaper after the callback, a waiter after
 * auraio_request_wait) onto a lock-free stack; the sq_lock holder takes that whole stack
 * in one exchange when its private list runs dry. Taking everything at once is what
 * makes the stack ABA-free: nobody pops a single node.
 */
#ifndef AURAIO_REQUEST_H
#define AURAIO_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "auraio.h"
#include "internal.h"

/* Request states (req->state). */
enum {
	REQ_FREE = 0,
	REQ_IN_FLIGHT = 1, /* handed to the backend */
	REQ_DONE = 2,	   /* completed, result stored: a waitable awaiting collection, or
			      a callback request being delivered */
};

/* Request flags (req->flags). FIXED_FILE and LINK are the bits of IOSQE_FIXED_FILE and
 * IOSQE_IO_LINK (backend_uring.h copies them into the SQE with one mask). */
enum {
	REQF_FIXED_FILE = 1u << 0, /* file_slot is a registered slot */
	REQF_WAITABLE = 1u << 1,   /* cb == NULL: collected by auraio_request_wait */
	REQF_LINK = 1u << 2,	   /* the next request of the chain depends on this one */
	REQF_FIXED_BUF = 1u << 3,  /* addr is inside registered buffer buf_index */
	REQF_FAULT = 1u << 4,	   /* fault injected: result is fault_result */
	REQF_NOP = 1u << 5,	   /* submitted as a no-op (faulted or cancelled in chain) */
	REQF_REG_BUF = 1u << 6,	   /* addr came from a registered buffer, pinned or not:
				      auraio_unregister_buffers() waits for it (EBUSY) */
};

/* The flags only fault injection sets: a build without it never tests for them. */
#ifdef AURAIO_FAULT_INJECTION
#define REQF_INJECTED (REQF_FAULT | REQF_NOP)
#else
#define REQF_INJECTED 0
#endif

/* user_data of CQEs that belong to no request (cancel operations). */
#define UD_INTERNAL UINT64_MAX

struct auraio_request {
	/* --- cache line 0: submission side, read to build the SQE --- */
	uint8_t opcode;	    /* auraio_opcode_t */
	uint8_t flags;	    /* REQF_* */
	uint16_t buf_index; /* REQF_FIXED_BUF */
	uint32_t rw_flags;  /* RWF_DSYNC, or IORING_FSYNC_DATASYNC for FSYNC */
	int fd;		    /* as given by the caller */
	int file_slot;	    /* REQF_FIXED_FILE: the registered slot */
	void *addr;	    /* buffer, or iovec array for READV/WRITEV */
	uint64_t len;	    /* bytes, or iovcnt for READV/WRITEV */
	int64_t offset;
	auraio_callback_t cb;
	void *user_data;
	/* Its identity as the kernel's user_data, (gen << 32) | slot, read whole (one load
	 * to build the SQE, one compare to check a CQE) and written by halves. */
	union {
		uint64_t ud;
		struct {
			uint32_t slot; /* index in the ring's pool; low half: little-endian */
			uint32_t gen;  /* generation of this life of the slot */
		};
	};

	/* --- cache line 1: completion side --- */
	int64_t result cache_aligned;
	uint64_t latency_ns;	/* submit to completion, stored at completion */
	uint64_t submit_ns;	/* written at submit, but only read at completion */
	_Atomic uint32_t state; /* REQ_*; REQ_DONE is published with release */
	int32_t fault_result;
	struct auraio_request *next;	   /* free lists, dispatch lists, thread-backend queues */
	struct auraio_request *chain_next; /* the next request of its linked chain, or NULL */
	struct iovec *fault_iov;	   /* truncated copy of the iovecs (SHORT/TEAR writev) */
	uint16_t ring;
	union {
		struct {		    /* thread backend */
			uint8_t tb_started; /* queued / started / cancelled */
			uint8_t tb_worker;  /* the worker running it */
		};
		struct {		 /* io_uring: resubmission (complete.c, "Orphans") */
			uint8_t retries; /* times submitted again */
			uint8_t chain;	 /* CHAIN_*, written by the reaper (cq_lock) */
		};
	};
	union {
		int tb_fd; /* thread backend: the fd it uses (a registered file's own dup), or
			      -errno if that dup failed */
		struct {   /* io_uring */
			_Atomic uint8_t cancel_sent; /* auraio_cancel() asked for it */
			uint8_t pad;
			uint16_t park_left; /* parked: CQEs of its chain still to come */
		};
	};
};

/* req->chain (io_uring): its place in a linked chain, for resubmission. */
enum {
	CHAIN_PRED = 1u << 0,	 /* a request before it in the chain must complete first */
	CHAIN_PRED_OK = 1u << 1, /* ... and completed in full */
	CHAIN_WAIT = 1u << 2,	 /* after a parked one: its CQE is held with it (->next) */
};

_Static_assert(sizeof(struct auraio_request) == 2 * CACHE_LINE, "request: two cache lines");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "request: ud's low half is slot");

static inline uint64_t request_ud(const struct auraio_request *req)
{
	return req->ud;
}

struct request_pool {
	struct auraio_request *reqs; /* nreqs slots, cache-line aligned */
	uint32_t nreqs;
	struct auraio_request *free_head;			 /* private to the sq_lock holder */
	_Atomic(struct auraio_request *) returned cache_aligned; /* lock-free return stack */
};

int request_pool_init(struct request_pool *pool, uint32_t nreqs, uint16_t ring);
void request_pool_fini(struct request_pool *pool);

/* Under sq_lock. NULL when the pool is empty. Bumps the generation. */
static inline struct auraio_request *request_alloc(struct request_pool *pool)
{
	struct auraio_request *req = pool->free_head;

	if (unlikely(!req)) {
		/* Acquire pairs with the release in request_release_list: the fields the
		 * releasing thread wrote (state, fault_iov) are visible before reuse. */
		req = atomic_exchange_explicit(&pool->returned, NULL, memory_order_acquire);
		if (!req)
			return NULL;
	}
	pool->free_head = req->next;
	req->gen++;
	req->chain_next = NULL;
	req->retries = 0;
	req->chain = 0;
	atomic_store_explicit(&req->cancel_sent, 0, memory_order_relaxed);
	return req;
}

/* Undo request_alloc (under sq_lock) for a request that was never submitted. */
void request_unalloc(struct request_pool *pool, struct auraio_request *req);

/* Any thread: return the list head..tail (linked by ->next) to the pool. */
void request_release_list(struct request_pool *pool, struct auraio_request *head,
			  struct auraio_request *tail);
/* The same for requests already marked REQ_FREE (the delivery loop does it as it goes). */
void request_return_list(struct request_pool *pool, struct auraio_request *head,
			 struct auraio_request *tail);

/*
 * Map a completion's user_data back to its request in reqs[0..nreqs) (a pool's, passed
 * apart so that the reap loop keeps them in registers); NULL if stale or foreign.
 * UD_INTERNAL names no slot, so it is NULL here too.
 * The acquire load of state pairs with the release store that published the request
 * (submit.c): the submitter's writes to the request are visible to the reaper without
 * relying on the barriers inside the kernel's SQ/CQ hand-off.
 */
static inline struct auraio_request *request_of_ud(struct auraio_request *reqs, uint32_t nreqs,
						   uint64_t ud)
{
	uint32_t slot = (uint32_t) ud;
	struct auraio_request *req;

	if (unlikely(slot >= nreqs))
		return NULL;
	req = &reqs[slot];
	if (unlikely(atomic_load_explicit(&req->state, memory_order_acquire) != REQ_IN_FLIGHT ||
		     req->ud != ud))
		return NULL;
	return req;
}
_Static_assert((uint32_t) UD_INTERNAL == UINT32_MAX, "UD_INTERNAL names no slot");

static inline struct auraio_request *request_from_ud(struct request_pool *pool, uint64_t ud)
{
	return request_of_ud(pool->reqs, pool->nreqs, ud);
}

#endif
