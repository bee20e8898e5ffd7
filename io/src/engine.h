/* SPDX-License-Identifier: MIT */
/*
 * engine.h - the engine, its rings, and the interface between the generic core
 * (submit.c, complete.c, wait.c) and the two backends (backend_uring.c, backend_threads.c).
 *
 * Lock order (the only one in libauraio):
 *   ring->sq_lock  of ring 0, ring 1, ...   (registration takes all of them, in order)
 *   ring->cq_lock                           (never held while taking an sq_lock)
 *   engine->fault_lock                      (leaf)
 * No lock is held while a callback runs. The cq_lock may be held across a blocking wait
 * in the kernel: its holder is the ring's one "kernel waiter", and everyone else who
 * wants that ring's completions sleeps on the ring's event count (eventcount.h) instead.
 *
 * Hot-path counters: `submitted` is written only under sq_lock and `completed` only under
 * cq_lock, so in-flight = submitted - completed needs no read-modify-write atomic.
 */
#ifndef AURAIO_ENGINE_H
#define AURAIO_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "adaptive.h"
#include "auraio.h"
#include "eventcount.h"
#include "internal.h"
#include "latency_hist.h"
#include "lock.h"
#include "request.h"

struct ring;
struct auraio_engine;

/* A completion as the backend hands it to the core. */
struct completion {
	uint64_t ud;
	int64_t res;
};

/* Most completions handled per cq_lock acquisition. */
#define REAP_BATCH 32

/* A sleep without a bound (a kernel waiter's, a wait on several rings' epoll set) is
 * cut into slices of this length, after each of which the sleeper sends entries the
 * kernel refused another thread meanwhile (backend_uring.c, uring_wait; wait.c,
 * engine_wait_many and wait_body). A wake-up per slice of a long wait; none per I/O. */
#define WAIT_SLICE_MS 100

/*
 * Backend interface. "sq" = called with ring->sq_lock held, "cq" = with ring->cq_lock.
 */
struct backend_ops {
	const char *name;
	int (*ring_init)(struct ring *r);
	void (*ring_fini)(struct ring *r);
	/* sq: stage n prepared requests (n > 1: a linked chain). Cannot fail for lack of
	 * space: the core checks the ring's room first (submit.c, queue_room). 0 or -errno. */
	int (*stage)(struct ring *r, struct auraio_request **reqs, int n);
	/* sq: make staged requests visible to the kernel/workers; returns how many. */
	unsigned (*publish)(struct ring *r);
	/* no lock: push published requests into the kernel. 0 or -errno. */
	int (*enter)(struct ring *r, unsigned to_submit);
	/* cq: move up to max ready completions into out without blocking. may_enter: if
	 * completions are parked in the kernel (COOP_TASKRUN), enter to post them; a caller
	 * about to block in wait() passes false, since that enter runs them anyway. */
	int (*reap)(struct ring *r, struct completion *out, int max, bool may_enter);
	/* cq: block until a completion is ready or timeout_ns passes (-1 = forever).
	 * May also submit `to_submit` published entries in the same call.
	 * 0 (something may be ready), -ETIME, -EINTR. */
	int (*wait)(struct ring *r, unsigned to_submit, int64_t timeout_ns);
	/* sq: request cancellation of req (in flight). 0 or -errno. */
	int (*cancel)(struct ring *r, struct auraio_request *req);
	/* sq: cancel everything in flight (destroy). */
	void (*cancel_all)(struct ring *r);
	/* no lock: run the calling thread's parked completion work, if any (EAGAIN path). */
	void (*kick)(struct ring *r);
	/* fd for the engine's epoll set, readable when completions are ready. */
	int (*poll_fd)(struct ring *r);
	/* all sq_locks held: hand every queued request to the kernel (or the workers), so
	 * that none looks a registered file up after the table changes. 0 or -EAGAIN. */
	int (*send_queued)(struct ring *r);
	/* all sq_locks held: mirror the engine's registration tables into the ring. */
	int (*register_files)(struct ring *r, const int *fds, unsigned n);
	int (*update_file)(struct ring *r, unsigned slot, int fd);
	void (*unregister_files)(struct ring *r);
	int (*register_buffers)(struct ring *r, const struct iovec *iovs, unsigned n);
	void (*unregister_buffers)(struct ring *r);
};

extern const struct backend_ops backend_uring_ops;
extern const struct backend_ops backend_threads_ops;

struct ring {
	/* --- submission side: sq_lock --- */
	struct lock sq_lock cache_aligned;
	struct request_pool pool;
	_Atomic uint32_t staged;    /* prepared, not yet published; written under sq_lock */
	_Atomic uint64_t submitted; /* requests accepted; written under sq_lock */
	counter_t syscalls;
	counter_t sqes;
	counter_t eagain;
	counter_t internal_submitted;	 /* cancel ops; written under sq_lock */
	counter_t fixed_buf_submitted;	 /* REQF_REG_BUF requests, for unregister's EBUSY */
	_Atomic uint32_t peak_in_flight; /* this window's peak; the controller resets it */
	uint64_t batch_open_ns;		 /* when the staged batch got its first entry */
	counter_t batch_wait_ns;	 /* total time batches waited before being sent */
	counter_t batches;		 /* batches sent */
	/* (peak_in_flight and the three batch fields: with the controller on only) */

	/* --- completion side: cq_lock --- */
	struct lock cq_lock cache_aligned;
	_Atomic uint64_t completed; /* written under cq_lock */
	counter_t internal_completed;
	counter_t fixed_buf_completed;
	counter_t bytes_read;
	counter_t bytes_written;
	counter_t errors;
	counter_t stale;
	counter_t resubmitted; /* orphans submitted again (complete.c) */
	struct latency_hist hist;

	/* --- controller (own cache lines, see adaptive.h) --- */
	struct adaptive ctl;

	/* --- shared, immutable after create --- */
	struct eventcount ev cache_aligned; /* waiters for this ring's completions */
	struct auraio_engine *engine;
	const struct backend_ops *ops;
	uint16_t index;
	bool locking; /* false in single_thread mode */
	uint32_t queue_depth;
	bool sqpoll;		 /* set by the backend's ring_init */
	bool coop;		 /* COOP_TASKRUN + TASKRUN_FLAG granted */
	_Atomic bool need_enter; /* published entries an earlier enter failed to submit */
	void *backend;		 /* backend private state */
};

/* Registered files: the engine's table, mirrored into each ring by the backend. */
struct file_slot {
	int fd;
	bool direct;	    /* opened with O_DIRECT */
	uint32_t mem_align; /* O_DIRECT alignment (statx), 0 if unknown */
	uint32_t off_align;
};

struct file_table {
	struct file_slot *slots; /* nslots entries */
	unsigned nslots;
	int32_t *slot_of_fd; /* fd -> slot + 1 (0 = not registered); O(1) lookup */
	unsigned map_len;
};

struct buf_table {
	struct iovec *iovs;
	unsigned n;
	bool kernel; /* registered with the kernel (false = degraded to plain pointers) */
	char reason[128];
};

struct fault_state;
struct buffer_pool;

/* auraio_engine.fast_off bits. */
enum {
	FAST_OFF_BACKEND = 1u << 0, /* the thread backend */
	FAST_OFF_DOWN = 1u << 1,    /* auraio_destroy() has begun */
	FAST_OFF_FAULT = 1u << 2,   /* a fault rule is armed */
};

struct auraio_engine {
	struct ring *rings; /* ring_count entries, each cache aligned */
	uint64_t id;	    /* process-unique, for cached routes */
	unsigned ring_count;
	auraio_options_t opts; /* resolved options */
	const struct backend_ops *ops;
	auraio_backend_t backend;
	char backend_reason[128];
	bool sqpoll_active;
	bool coop_taskrun;
	_Atomic bool shutting_down;
	/* FAST_OFF_*: why auraio_read/auraio_write may not take their fast path (submit.c,
	 * submit_rw_fast), one load for all of them. A hint only: the general path it sends
	 * them to checks each condition itself. */
	_Atomic uint8_t fast_off;
	_Atomic unsigned wait_rotor; /* where the next auraio_wait starts scanning */
	int epoll_fd;		     /* lazily created by auraio_get_poll_fd/auraio_wait */
	pthread_mutex_t epoll_lock;

	/* registration (read under any sq_lock, written under all) */
	struct file_table files;
	struct buf_table bufs;

	struct buffer_pool *pool;

	/* fault injection */
	_Atomic bool fault_armed;
	pthread_mutex_t fault_lock;
	struct fault_state *fault;
	counter_t faults_injected;
};

/* ---- locking helpers (no-ops in single_thread mode) ---- */
static inline void sq_lock(struct ring *r)
{
	if (r->locking)
		lock_acquire(&r->sq_lock);
}
static inline void sq_unlock(struct ring *r)
{
	if (r->locking)
		lock_release(&r->sq_lock);
}
/* sq_unlock without the wake-up: true when the caller must still lock_wake(&r->sq_lock). */
static inline bool sq_unlock_begin(struct ring *r)
{
	return likely(r->locking) && lock_release_begin(&r->sq_lock);
}
static inline bool cq_trylock(struct ring *r)
{
	return !r->locking || lock_try(&r->cq_lock);
}
static inline void cq_unlock(struct ring *r)
{
	if (r->locking)
		lock_release(&r->cq_lock);
}

/* sq_lock held: the staged batch is being sent at `now`; account how long it waited.
 * A delivery pass's timestamp (submit_clock) as `now` hides the wait: stage_account
 * passes one only where no optimizer reads it (a fixed limit). `now` may be older than
 * batch_open_ns, set by another thread's submit. The batch counts are the batch
 * optimizer's alone (adaptive.c), so only a ring with the controller on keeps them. */
static inline void batch_sent(struct ring *r, uint64_t now)
{
	if (atomic_load_explicit(&r->staged, memory_order_relaxed) == 0)
		return;
	if (r->ctl.enabled) {
		if (now > r->batch_open_ns)
			counter_add(&r->batch_wait_ns, now - r->batch_open_ns);
		counter_add(&r->batches, 1);
	}
	atomic_store_explicit(&r->staged, 0, memory_order_relaxed);
}

/* No lock held: push the to_submit entries this thread published into the kernel. If
 * that fails they stay published, and need_enter makes the next flush retry. Returns
 * whether the kernel refused them. */
static inline bool ring_enter(struct ring *r, unsigned to_submit)
{
	if (to_submit && r->ops->enter(r, to_submit) < 0) {
		atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
		return true;
	}
	return false;
}

static inline uint64_t ring_in_flight(const struct ring *r)
{
	return atomic_load_explicit(&r->submitted, memory_order_relaxed) -
	       atomic_load_explicit(&r->completed, memory_order_relaxed);
}

/* Will a completion still come (a request or a cancel entry in flight)? Exact with
 * cq_lock held - `completed` and internal_completed are only written under it, so
 * nothing consumes what these count meanwhile; a hint without it. */
static inline bool ring_awaits_completion(const struct ring *r)
{
	return ring_in_flight(r) > 0 ||
	       counter_get(&r->internal_submitted) > counter_get(&r->internal_completed);
}

/* A timeout in milliseconds (-1 = none) as nanoseconds (-1 = none). */
static inline int64_t ms_to_ns(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : (int64_t) timeout_ms * (int64_t) NSEC_PER_MSEC;
}

/* ---- engine.c ---- */

/*
 * Routing: a thread submits to the ring of the CPU it runs on. The choice is cached per
 * thread (engine id + ring) and refreshed with sched_getcpu() every ROUTE_REFRESH
 * submissions, so the common case is two compares and a decrement. The id alone names
 * the engine: ids are process-unique, so an engine created at a destroyed engine's
 * address never matches a route cached for the old one.
 */
struct route_tls {
	uint64_t id;
	struct ring *ring;
	unsigned left;
};
extern TLS_IE struct route_tls tls_route;
struct ring *engine_route_slow(struct auraio_engine *e);

static inline struct ring *engine_pick_ring(struct auraio_engine *e)
{
	if (likely(tls_route.id == e->id && tls_route.left)) {
		tls_route.left--;
		return tls_route.ring;
	}
	return engine_route_slow(e);
}

void engine_log(struct auraio_engine *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void engine_take_all_sq_locks(struct auraio_engine *e);
void engine_drop_all_sq_locks(struct auraio_engine *e);

/* ---- complete.c ---- */
/* This thread's delivery state (complete.c explains the rules). */
struct delivery_tls {
	int depth;	   /* nested deliveries (a callback may poll or wait) */
	int in_wait;	   /* inside auraio_wait */
	struct ring *ring; /* the ring whose callbacks are running, NULL if none */
	uint64_t now;	   /* depth > 0: when the innermost running delivery was reaped */
};
extern TLS_IE struct delivery_tls tls_dl;

/*
 * The submission timestamp of a request for ring r. A submit made from a callback of r
 * waits in the delivery's batch at least until the callbacks before it have run (sent at
 * the batch threshold or when the delivery ends, complete.c), so it is stamped with the
 * time that pass reaped its completions: one clock read per pass, not per request. Its
 * latency can thus include the callbacks run before it in the same pass. Any other
 * submit reads the clock.
 */
static inline uint64_t submit_clock(const struct ring *r)
{
	return tls_dl.ring == r ? tls_dl.now : now_ns();
}

/* Is this thread running r's callbacks (so submissions to r are deferred)? */
static inline bool delivery_defers(const struct ring *r)
{
	return tls_dl.ring == r;
}
int ring_reap_dispatch(struct ring *r, bool may_enter); /* trylock; non-blocking */
/* auraio_wait with several rings busy (wait.c; tests call it with none busy). */
int engine_wait_many(struct auraio_engine *e, int timeout_ms);
int ring_wait_dispatch(struct ring *r, int64_t timeout_ns,
		       struct auraio_request *want); /* may block */
void ring_drain(struct ring *r);		     /* destroy: until nothing is in flight */
int ring_flush(struct ring *r);			     /* publish + enter staged SQEs */

/* ---- submit.c ---- */
int submit_ops(struct auraio_engine *e, const auraio_op_t *ops, int n,
	       struct auraio_request **reqs);

/* ---- fault.c ---- */
#ifdef AURAIO_FAULT_INJECTION
/* sq_lock held: apply the fault rule to a chain being staged (may rewrite requests). */
void fault_apply_chain(struct auraio_engine *e, struct auraio_request **reqs, int n);
/* Any lock or none: 0, or the -errno an AURAIO_FAULT_ENTER rule makes this submitting
 * kernel entry fail with (it must then submit nothing). */
int fault_enter(struct auraio_engine *e);
#else
static inline int fault_enter(struct auraio_engine *e)
{
	(void) e;
	return 0;
}
#endif
void fault_fini(struct auraio_engine *e);

/* ---- registry.c ---- */
void registry_fini(struct auraio_engine *e);

#endif
