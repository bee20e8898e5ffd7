/* SPDX-License-Identifier: MIT */
/*
 * auraio.h - AuraIO, a self-tuning asynchronous I/O engine on io_uring.
 *
 * This header is the manual. Every function lists what it returns, every error it can
 * report, who owns what it hands out, and which threads may call it.
 *
 * Model
 *   An engine owns `ring_count` rings (one io_uring each, by default one per CPU). A
 *   submitting thread is routed to the ring of the CPU it runs on. Each ring enforces an
 *   in-flight limit (moved by the adaptive controller, or fixed) and batches submissions.
 *   Completions are delivered by running the request's callback in a thread that calls
 *   auraio_poll(), auraio_wait(), auraio_request_wait() or auraio_destroy(); a submit
 *   call never runs callbacks.
 *
 * Errors
 *   Functions returning int return 0 (or a count) on success and -errno on failure.
 *   Submit functions return a request handle, or NULL with errno set. auraio_strerror()
 *   describes any of these codes. Completion results are bytes transferred or -errno.
 *
 * Threading
 *   Unless `single_thread` is set, every function may be called from any thread
 *   concurrently, except auraio_destroy(), which must be the last call on the engine
 *   and must not race with any other call on it. With `single_thread`, the engine takes
 *   no locks and only one thread at a time may use it.
 *   fork(): the library has no fork handlers. A child must not use (nor destroy) an
 *   engine created before the fork - its rings and worker threads stay the parent's -
 *   and should exec before using the library: a fork while another thread held one of
 *   the buffer pool's locks leaves that lock held in the child for good.
 *
 * Callbacks
 *   A callback may submit new I/O and may call auraio_poll()/auraio_wait(). Nested, they
 *   work as anywhere else: they deliver (run the callbacks of) completions that became
 *   ready since the running callback's own was reaped, on its ring or any other; a nested
 *   poll never blocks, and a nested wait blocks as long as its timeout allows. They do
 *   not deliver completions reaped together with the running callback's: those are
 *   queued to run after it returns, so a callback must not wait for one of them (no
 *   nested call can deliver it: a loop waiting for it never ends). They return 0 for a
 *   ring whose completions another thread is reaping. A callback must not call
 *   auraio_destroy(). The request handle is valid until the callback returns; after that
 *   the engine recycles it.
 */
#ifndef AURAIO_H
#define AURAIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AURAIO_VERSION_MAJOR 0
#define AURAIO_VERSION_MINOR 3
#define AURAIO_VERSION_PATCH 0
#define AURAIO_VERSION                                                                             \
	(AURAIO_VERSION_MAJOR * 10000 + AURAIO_VERSION_MINOR * 100 + AURAIO_VERSION_PATCH)
#define AURAIO_VERSION_STRING "0.3.0"

#if defined(AURAIO_STATIC_DEFINE)
#define AURAIO_API
#else
#define AURAIO_API __attribute__((visibility("default")))
#endif

/** Version of the library actually linked (AURAIO_VERSION of its build). */
AURAIO_API int auraio_version(void);

/* ------------------------------------------------------------------------------------- */
/* Types                                                                                 */
/* ------------------------------------------------------------------------------------- */

/** An engine: rings, request pools, buffer pool, registrations. Opaque. */
typedef struct auraio_engine auraio_engine_t;

/** One submitted operation. Opaque; owned by the engine. */
typedef struct auraio_request auraio_request_t;

/**
 * Completion callback. `result` is the byte count (read/write), 0 (fsync) or -errno.
 * `req` is valid until the callback returns. Runs in a thread that polls or waits.
 */
typedef void (*auraio_callback_t)(auraio_request_t *req, ssize_t result, void *user_data);

/** How a buffer reference names its memory. */
typedef enum auraio_buf_type {
	AURAIO_BUF_UNREGISTERED = 0, /* a plain pointer */
	AURAIO_BUF_REGISTERED = 1,   /* (index, offset) into auraio_register_buffers() */
} auraio_buf_type_t;

/**
 * A buffer reference, passed by value. Build it with auraio_buf() or auraio_buf_fixed().
 * Its layout is ABI (it is passed by value): fields are never reordered.
 */
typedef struct auraio_buf_ref {
	auraio_buf_type_t type;
	union {
		void *ptr;
		struct {
			int index;
			size_t offset;
		} fixed;
	} u;
} auraio_buf_t;

/** A reference to ordinary memory at `ptr`. */
static inline auraio_buf_t auraio_buf(void *ptr)
{
	auraio_buf_t b;
	b.type = AURAIO_BUF_UNREGISTERED;
	b.u.fixed.offset = 0;
	b.u.ptr = ptr;
	return b;
}

/** A reference to byte `offset` of registered buffer `index` (see auraio_register_buffers). */
static inline auraio_buf_t auraio_buf_fixed(int index, size_t offset)
{
	auraio_buf_t b;
	b.type = AURAIO_BUF_REGISTERED;
	b.u.fixed.index = index;
	b.u.fixed.offset = offset;
	return b;
}

/** Backends. The io_uring backend is the engine; the thread backend is the fallback. */
typedef enum auraio_backend {
	AURAIO_BACKEND_AUTO = 0,     /* io_uring, or threads if io_uring is unavailable */
	AURAIO_BACKEND_IO_URING = 1, /* io_uring only: auraio_create fails if unavailable */
	AURAIO_BACKEND_THREADS = 2,  /* worker threads doing pread/pwrite/fsync */
} auraio_backend_t;

/** Log levels for auraio_options_t.log_fn. */
enum { AURAIO_LOG_ERROR = 0, AURAIO_LOG_WARN = 1, AURAIO_LOG_INFO = 2 };

/**
 * Engine options. Always start from auraio_options_init(): new fields get their defaults
 * there, so code written against an older header keeps working.
 */
typedef struct auraio_options {
	/* Rings and queues */
	int ring_count;	 /* rings; 0 (default) = one per online CPU, at most 256. */
	int queue_depth; /* per ring: SQ size and hard cap on requests in flight. Default 256,
			    range 1..4096, rounded up to a power of two. The CQ is twice this,
			    so completions can never overflow it. */

	/* Kernel submission polling */
	bool enable_sqpoll; /* default false. A kernel thread per ring polls the SQ, so
			       submission needs no syscall; it spins on a CPU while busy. If
			       the kernel refuses, the ring silently falls back to normal mode
			       and auraio_get_stats() reports sqpoll_active = false. */
	int sqpoll_idle_ms; /* default 1000: idle milliseconds before the SQPOLL thread
			       sleeps. >= 0. */
	int sqpoll_cpu;	    /* default -1 (unpinned); else the CPU the SQPOLL thread runs on
			       (>= 0; a CPU the kernel refuses means no SQPOLL, as above).
			       Below -1 is refused. */

	/* Concurrency control (per ring) */
	int initial_in_flight;	   /* starting in-flight limit; default 0 = queue_depth when
				      adaptive control is off, 4 when it is on. >= 0;
				      clamped to min_in_flight..queue_depth. */
	int min_in_flight;	   /* the limit never drops below this; default 1 (0 = 1).
				      >= 0; clamped to queue_depth. */
	double max_p99_latency_ms; /* P99 guard; default 0 = 10 ms. When the sampled P99
				      exceeds it the limit is cut. >= 0 (NaN is refused);
				      INFINITY = no guard. */
	bool disable_adaptive;	   /* default false. true = the limit stays at
				      initial_in_flight (or queue_depth). */

	/* Memory */
	size_t buffer_alignment; /* alignment of auraio_buffer_alloc(); default 4096; a power
				    of two in 512..1 MiB. */

	/* Threading */
	bool single_thread; /* default false. true = one thread at a time uses the engine;
			       no locks are taken. */

	/* Backend */
	auraio_backend_t backend; /* default AUTO. The environment variable
				     AURAIO_BACKEND=threads|io_uring overrides AUTO
				     (another value is ignored, with a warning). */
	int thread_workers;	  /* thread backend: worker threads per ring; default 4
				     (0 = 4), range 0..64. A read or write waiting on a
				     pipe or socket holds its worker until the stream is
				     ready: with thread_workers of them pending, the
				     ring's other I/O waits behind them (io_uring does
				     not have this limit); I/O cancelled (auraio_cancel)
				     before a worker took it completes with -ECANCELED
				     at once, as on io_uring. */

	/* Diagnostics */
	void (*log_fn)(int level, const char *message, void *arg); /* default NULL = warnings
								       and errors to stderr */
	void *log_arg;
} auraio_options_t;

/** Fill `opts` with the defaults documented above. `opts` must not be NULL. */
AURAIO_API void auraio_options_init(auraio_options_t *opts);

/* ------------------------------------------------------------------------------------- */
/* Engine lifecycle                                                                      */
/* ------------------------------------------------------------------------------------- */

/** An engine with default options. NULL with errno on failure (see below). */
AURAIO_API auraio_engine_t *auraio_create(void);

/**
 * An engine with `opts` (NULL = defaults). Returns NULL with errno:
 *   EINVAL  an option is out of range (the log says which)
 *   ENOMEM  out of memory
 *   ENOSYS/EPERM  backend IO_URING was forced and io_uring is unavailable
 *   other   from io_uring_setup or pthread_create
 * With backend AUTO, an io_uring that cannot be set up (the io_uring_disabled sysctl,
 * seccomp, an old kernel) is not an error: the engine uses the thread backend and
 * auraio_get_stats() says so and why.
 */
AURAIO_API auraio_engine_t *auraio_create_with_options(const auraio_options_t *opts);

/**
 * Destroy the engine. NULL is ignored. Requests still in flight are cancelled and their
 * callbacks run (with -ECANCELED, or their real result if they finished first) before
 * this returns. Waitable requests not yet waited for are released. Buffers from
 * auraio_buffer_alloc() are freed with the engine. Must not be called from a callback,
 * nor while another thread uses the engine.
 */
AURAIO_API void auraio_destroy(auraio_engine_t *engine);

/* ------------------------------------------------------------------------------------- */
/* Submission                                                                            */
/* ------------------------------------------------------------------------------------- */

/*
 * All submit calls share these rules.
 *   - The request goes to the calling thread's ring. It may sit in the ring's batch until
 *     the batch threshold is reached or until any poll/wait/flush call; when the ring has
 *     nothing else in flight it is submitted at once.
 *   - Submitted from inside a callback, it is batched with the other work of the call
 *     running the callbacks: the batch goes to the kernel as soon as it reaches the
 *     batch threshold (so a long delivery keeps the device busy); what is left below it
 *     is submitted by auraio_poll() and auraio_request_wait() before they return if
 *     nothing else keeps the ring busy, while auraio_wait() leaves it for its next call,
 *     which submits and then waits (call auraio_flush() if you will not call
 *     auraio_wait() again).
 *   - If the kernel refuses the entries for now (io_uring_enter: EAGAIN, EBUSY), they stay
 *     batched and the next poll, wait or flush of any thread retries them; a waiter that
 *     finds them refused retries them itself. A thread that submits and will not call
 *     into the engine again (it waits on a callback that another thread's blocking
 *     auraio_wait() delivers) should call auraio_flush() until it stops returning
 *     -EAGAIN/-EBUSY: that other thread may be asleep in the kernel for other I/O, and
 *     retries what was refused only every 100 ms. The same holds for auraio_cancel().
 *   - `cb` NULL makes the request *waitable*: it is not recycled on completion; the caller
 *     must collect it with auraio_request_wait() (exactly once). Until then it holds one
 *     of its ring's 2 x queue_depth requests (see EAGAIN).
 *   - Memory (buffers, iovec arrays) is borrowed until the request completes.
 *   - On a pipe or socket, a read waits until there is data and a write until there is
 *     room, even when the fd is O_NONBLOCK: it never completes with -EAGAIN (io_uring
 *     polls such a file and retries - so Linux 6.18 does - and the thread backend
 *     does the same). auraio_cancel() ends the wait.
 *   - On an fd registered with auraio_register_files(), the fixed-file slot is used
 *     automatically. If that fd was opened with O_DIRECT, buffer address, length and
 *     offset are checked against its alignment (auraio_get_dio_alignment) before
 *     submission.
 * Errors (NULL returned, errno set):
 *   EINVAL    engine NULL, fd < 0, buffer NULL, offset < 0, len > UINT32_MAX (the kernel
 *             moves at most 0x7ffff000 bytes per call: a larger len completes short),
 *             iovcnt out of 1..IOV_MAX, misaligned O_DIRECT access on a registered
 *             file, registered buffer index unknown (or none registered), unknown flags
 *   EOVERFLOW registered buffer offset + len exceeds the registered buffer
 *   EAGAIN    the ring is at its in-flight limit: reap completions, then retry. Also
 *             when the ring's submission queue is full of cancellations (auraio_cancel)
 *             the kernel refused to take: retry after auraio_flush(), poll or wait.
 *             Also when all of the ring's 2 x queue_depth requests are taken, below the
 *             limit: besides those in flight, completed waitable requests not yet
 *             collected and completions whose callbacks are running (another thread's
 *             auraio_wait) hold one each. Reaping does not free a waitable: a thread
 *             that keeps submitting waitables without collecting them gets EAGAIN,
 *             however long it waits, once they fill its ring - collect some, then retry
 *   ESHUTDOWN the engine is being destroyed
 */

/** Read `len` bytes at `offset` of `fd` into `buf`. Result: bytes read (0 at EOF). */
AURAIO_API auraio_request_t *auraio_read(auraio_engine_t *engine, int fd, auraio_buf_t buf,
					 size_t len, off_t offset, auraio_callback_t cb,
					 void *user_data);

/** Write `len` bytes from `buf` at `offset` of `fd`. Result: bytes written. */
AURAIO_API auraio_request_t *auraio_write(auraio_engine_t *engine, int fd, auraio_buf_t buf,
					  size_t len, off_t offset, auraio_callback_t cb,
					  void *user_data);

/** Scatter read into `iov[0..iovcnt)`. The array itself is borrowed until completion. */
AURAIO_API auraio_request_t *auraio_readv(auraio_engine_t *engine, int fd, const struct iovec *iov,
					  int iovcnt, off_t offset, auraio_callback_t cb,
					  void *user_data);

/** Gather write from `iov[0..iovcnt)`. The array itself is borrowed until completion. */
AURAIO_API auraio_request_t *auraio_writev(auraio_engine_t *engine, int fd, const struct iovec *iov,
					   int iovcnt, off_t offset, auraio_callback_t cb,
					   void *user_data);

/** auraio_fsync() flag: fdatasync semantics (skip metadata not needed to read the data). */
#define AURAIO_FSYNC_DATASYNC 1u

/** fsync (or fdatasync with AURAIO_FSYNC_DATASYNC) `fd`. Result: 0 or -errno. */
AURAIO_API auraio_request_t *auraio_fsync(auraio_engine_t *engine, int fd, unsigned flags,
					  auraio_callback_t cb, void *user_data);

/** Operation codes for auraio_op_t. Persistent in stats output: never renumber. */
typedef enum auraio_opcode {
	AURAIO_OP_READ = 0,
	AURAIO_OP_WRITE = 1,
	AURAIO_OP_READV = 2,
	AURAIO_OP_WRITEV = 3,
	AURAIO_OP_FSYNC = 4,
} auraio_opcode_t;

/** auraio_op_t.flags: for WRITE/WRITEV, make the data durable (RWF_DSYNC). */
#define AURAIO_OP_DSYNC 2u
/** auraio_op_t.flags: for FSYNC, fdatasync semantics (same as AURAIO_FSYNC_DATASYNC). */
#define AURAIO_OP_DATASYNC AURAIO_FSYNC_DATASYNC

/** One operation for auraio_submit_batch() or a linked chain (auraio_submit_linked). */
typedef struct auraio_op {
	auraio_opcode_t opcode;
	int fd;
	auraio_buf_t buf;	 /* READ, WRITE */
	const struct iovec *iov; /* READV, WRITEV */
	int iovcnt;		 /* READV, WRITEV */
	size_t len;		 /* READ, WRITE */
	off_t offset;		 /* all but FSYNC */
	unsigned flags;		 /* AURAIO_OP_DSYNC, AURAIO_OP_DATASYNC */
	auraio_callback_t cb;	 /* NULL = waitable, as for single submits */
	void *user_data;
} auraio_op_t;

/**
 * Submit `n` operations as one linked chain on one ring: each starts only after the
 * previous one completed in full. If an operation fails or transfers fewer bytes than
 * asked, every later one completes with -ECANCELED (so a write+fsync chain never reports
 * a successful sync for a short write), and so does every one after an operation
 * cancelled with auraio_cancel().
 * Each operation completes on its own (callback or waitable); `reqs` (may be NULL)
 * receives the `n` handles. Threads may come and go: io_uring runs a chain's later
 * links in the thread that handed the chain to the kernel (any thread that flushed the
 * ring), and fails them once it has exited; the engine then submits them again, in
 * order (stats: orphans_resubmitted; docs/auraio.md, "Orphans") - except while it is
 * being destroyed: they complete with -ECANCELED then, as the rest of what is in flight.
 * Returns 0, or -EINVAL (bad op, n out of 1..queue_depth), -EOVERFLOW, -EAGAIN (the ring
 * has no room for the whole chain, under its limit or among its requests, as for
 * auraio_read(): nothing was submitted), -ESHUTDOWN.
 */
AURAIO_API int auraio_submit_linked(auraio_engine_t *engine, const auraio_op_t *ops, int n,
				    auraio_request_t **reqs);

/**
 * Submit up to `n` independent operations in one call: one ring choice, one lock
 * acquisition, one clock read and at most one kernel entry for all of them, instead of
 * one of each per operation. The operations are not ordered among themselves (use
 * auraio_submit_linked() for that) and each completes on its own, exactly as if it had
 * been submitted alone (callback or waitable; same validation, same errors).
 * `reqs` (may be NULL) receives the handles of the accepted operations.
 *
 * Acceptance is a prefix, like write(2): returns how many operations, from ops[0], were
 * submitted (1..n). It stops early, returning fewer than `n`, when the ring reaches its
 * in-flight limit (or runs out of requests: EAGAIN at auraio_read()) or at the first
 * operation that is invalid; calling again with the rest
 * then reports that operation's error (or submits it, once there is room). The
 * submission queue holding cancellations the kernel refused cuts it short as well.
 * When not even ops[0] is accepted, nothing is submitted and the return is -errno:
 *   -EINVAL    engine or ops NULL, n < 1, or ops[0] invalid (as for auraio_read() etc.)
 *   -EOVERFLOW ops[0]'s registered buffer offset + len exceeds the registered buffer
 *   -EAGAIN    the ring is at its in-flight limit, has no free request, or its
 *              submission queue is full of refused cancellations (as for auraio_read())
 *   -ESHUTDOWN the engine is being destroyed
 * Threading and callbacks: as for the single-operation calls (never runs a callback;
 * inside a callback the operations join the delivery's batch, sent at the batch
 * threshold or when the delivering poll/wait finishes).
 */
AURAIO_API int auraio_submit_batch(auraio_engine_t *engine, const auraio_op_t *ops, int n,
				   auraio_request_t **reqs);

/**
 * Ask the kernel to cancel `req`. Returns 0 when the cancellation was requested; the
 * request then completes with -ECANCELED, or with its own result if it finished first.
 * Cancelling it again before it completes also returns 0 and changes nothing: its
 * callback runs exactly once.
 * -EINVAL: NULL arguments or `req` is not in flight (already completed, which includes
 * inside its own callback). -EAGAIN: queue_depth cancellations are already pending on
 * the ring, or the submission queue is full of staged requests (a callback's batch, or
 * entries the kernel refused before) and the kernel refused them when the cancel sent
 * them to make room; reap completions, then retry. `req` must be a handle whose completion
 * has not yet been delivered; a handle kept past its callback may name a recycled
 * request.
 */
AURAIO_API int auraio_cancel(auraio_engine_t *engine, auraio_request_t *req);

/**
 * Submit every batched request on every ring now. Returns SQEs submitted, or the first
 * -errno (-EAGAIN, -EBUSY: the kernel refused them for now; they stay batched and the
 * next flush, poll or wait retries). Every ring is flushed either way.
 */
AURAIO_API int auraio_flush(auraio_engine_t *engine);

/* ------------------------------------------------------------------------------------- */
/* Completion                                                                            */
/* ------------------------------------------------------------------------------------- */

/**
 * Flush batched submissions, handle every completion that is ready on every ring without
 * blocking, and submit what the callbacks submitted before returning (so a loop that
 * sleeps on auraio_get_poll_fd() next strands nothing). Returns the number of completions
 * handled by this call (0 if none, or if other threads are handling them), or -EINVAL
 * for a NULL engine. Those flushes are retried, not reported: if the kernel refused
 * them (EAGAIN, EBUSY) the entries stay batched, and nothing makes the poll fd readable
 * for them - before sleeping on it, call auraio_flush() until it stops returning
 * -EAGAIN/-EBUSY (a thread blocked in auraio_wait(), or in auraio_request_wait() for a
 * request of the same ring, retries them by itself within 100 ms).
 */
AURAIO_API int auraio_poll(auraio_engine_t *engine);

/**
 * Handle every completion that is ready; if none is, submit what is batched and block
 * until at least one completion is handled or `timeout_ms` passes (-1 = no limit, 0 = do
 * not block). Returns the number handled by this call; 0 on timeout, when nothing is (or
 * is any longer) in flight, when another thread handled a completion meanwhile, or at
 * once when the kernel refused to take what was batched (EAGAIN/EBUSY: the next call
 * retries it). Nothing else ends the wait: not a cancellation's own completion, an
 * orphan submitted again (docs/auraio.md, "Orphans"), another thread letting go of the
 * ring, nor a signal caught by the calling thread.
 * -EINVAL for a NULL engine. All rings are covered: a completion on any ring ends the wait
 * (within 100 ms when it is on a ring that had nothing in flight when the wait looked,
 * or another thread of a multi-ring engine handled it first).
 * Meant to be called in a loop: what its callbacks submit is sent by the next call (see
 * the submit rules), so that each turn of the loop costs one system call to wait (and
 * one more when it also submits: docs/auraio.md, "Orphans").
 */
AURAIO_API int auraio_wait(auraio_engine_t *engine, int timeout_ms);

/**
 * Wait for one waitable request (submitted with cb == NULL) and collect it.
 * Correct whichever thread reaps its completion: a thread that handles it while this
 * one sleeps wakes this one. While waiting, the caller may run other requests' callbacks.
 * Returns 0 and stores the operation's result in `*result` (may be NULL), releasing the
 * request (one of its ring's 2 x queue_depth: see EAGAIN at auraio_read()); -ETIMEDOUT
 * after `timeout_ms` (-1 = no limit; 0 = do not block: submit what the ring has batched
 * and handle what is ready once, then check), the request stays waitable;
 * -EINVAL if `req` is NULL or not waitable.
 */
AURAIO_API int auraio_request_wait(auraio_engine_t *engine, auraio_request_t *req, int timeout_ms,
				   ssize_t *result);

/**
 * A file descriptor that is readable while any ring has completions to handle, for use
 * with poll/epoll. Do not read from it or close it; call auraio_poll() when it is
 * readable (readiness is level-triggered and clears when the completions are handled).
 * Returns the fd or -errno. Valid until auraio_destroy().
 */
AURAIO_API int auraio_get_poll_fd(auraio_engine_t *engine);

/**
 * Inside a callback: the request's latency (submission to completion) in nanoseconds.
 * Completion is when the reap pass that found it began. A request submitted from inside
 * a callback to the ring being delivered counts from when that delivery's reap pass
 * began (one clock read per pass): it is sent no earlier than the callbacks before it
 * have run, so its latency includes them.
 */
AURAIO_API uint64_t auraio_request_latency_ns(const auraio_request_t *req);

/** The user_data the request was submitted with. */
AURAIO_API void *auraio_request_user_data(const auraio_request_t *req);

/** The fd the request was submitted on. */
AURAIO_API int auraio_request_fd(const auraio_request_t *req);

/* ------------------------------------------------------------------------------------- */
/* Buffers                                                                               */
/* ------------------------------------------------------------------------------------- */

/**
 * A buffer of at least `size` bytes aligned to the engine's buffer_alignment, from the
 * engine's pool (power-of-two classes from 4 KiB, or from buffer_alignment if larger, up
 * to 256 KiB; larger sizes are mapped one by one, rounded up to the page; a thread-local
 * cache makes the common case lock- and atomic-free). The contents are not initialised.
 * Returns NULL with errno EINVAL (size 0 or engine NULL) or ENOMEM. Free with
 * auraio_buffer_free() (any thread); all are freed by auraio_destroy().
 */
AURAIO_API void *auraio_buffer_alloc(auraio_engine_t *engine, size_t size);

/**
 * Return a buffer to the pool; no size needed. NULL is ignored. A pointer that did not
 * come from this engine's auraio_buffer_alloc() is ignored and logged (never freed).
 * A buffer of up to 256 KiB goes back to the pool, not to the system: the pool keeps the
 * most it ever held of each class until auraio_destroy() (stats: buffer_pool_bytes);
 * a larger one is unmapped at once. Freeing a buffer twice is a bug the pool does not
 * always catch: a second free of a large buffer is logged and ignored, but one of a
 * class buffer is not detected, and the buffer may then be handed out twice.
 */
AURAIO_API void auraio_buffer_free(auraio_engine_t *engine, void *ptr);

/**
 * Register `n` buffers with every ring, for auraio_buf_fixed(i, offset) references.
 * The memory stays borrowed (same address, valid) until auraio_unregister_buffers().
 * If pinning the buffers on every ring would exceed RLIMIT_MEMLOCK (which does not bind
 * a process with CAP_IPC_LOCK), or the kernel refuses them for lack of memory, the
 * engine still returns 0: fixed references keep working as plain pointers, the
 * reason is logged, and stats report buffers_registered = false.
 * Returns 0, -EINVAL (NULL/empty/zero-length entry, an entry over 1 GiB, n out of
 * 1..16384), -EBUSY (buffers already registered), -ENOMEM, or another -errno from the
 * kernel.
 */
AURAIO_API int auraio_register_buffers(auraio_engine_t *engine, const struct iovec *iovs, int n);

/**
 * Unregister the buffers. -EBUSY while I/O through a fixed reference is in flight, whether
 * or not the buffers are pinned (a degraded registration or the thread backend borrows the
 * memory all the same); -ENOENT if none.
 */
AURAIO_API int auraio_unregister_buffers(auraio_engine_t *engine);

/**
 * Register `n` files with every ring (an entry of -1 leaves a sparse slot). I/O on a
 * registered fd then uses its fixed slot without any change at the call site; the fd
 * must stay open until it is unregistered or replaced.
 * Returns 0, -EINVAL (NULL, n out of 1..65536, an fd appears twice), -EBUSY (already
 * registered), -EBADF, -ENOMEM, or another -errno from the kernel.
 */
AURAIO_API int auraio_register_files(auraio_engine_t *engine, const int *fds, int n);

/**
 * Replace slot `index` with `fd` (-1 clears it) on every ring. I/O in flight on the old
 * fd completes normally: requests still batched, or submitted by a running callback, are
 * handed to the kernel first, so they use the file they were submitted on. The kernel
 * looks a slot up only when it starts an operation, so fsyncs (which io_uring runs in a
 * worker thread), a linked chain's operations after the first, and an orphan submitted
 * again (see auraio_submit_linked) name the fd itself on io_uring: keep the old fd open
 * until such I/O on it has completed. Returns 0, -EINVAL (index out of range, fd
 * registered in another slot), -ENOENT (no files registered), -EBADF (fd < -1 or not
 * open), -EAGAIN (the kernel refused those batched requests now: nothing changed; retry
 * after auraio_flush(), poll or wait), or another -errno.
 */
AURAIO_API int auraio_update_file(auraio_engine_t *engine, int index, int fd);

/**
 * Unregister all files. Batched requests on them are handed to the kernel first, as for
 * auraio_update_file(). Returns 0, -ENOENT if none are registered, or -EAGAIN (the kernel
 * refused the batched requests now: nothing changed; retry after auraio_flush()).
 */
AURAIO_API int auraio_unregister_files(auraio_engine_t *engine);

/**
 * O_DIRECT alignment of `fd`, from statx(STATX_DIOALIGN): required memory alignment and
 * file offset/length alignment, in bytes (either pointer may be NULL). Returns 0, or
 * -EINVAL when fd < 0 or the kernel or file system does not report it (the file does not
 * support O_DIRECT, or the kernel predates 6.1), or another -errno from statx.
 */
AURAIO_API int auraio_get_dio_alignment(int fd, size_t *mem_align, size_t *offset_align);

/* ------------------------------------------------------------------------------------- */
/* Statistics                                                                            */
/* ------------------------------------------------------------------------------------- */

/** Adaptive controller phase. Persistent in stats output: never renumber. */
typedef enum auraio_phase {
	AURAIO_PHASE_FIXED = 0,	  /* adaptive control disabled */
	AURAIO_PHASE_PROBE = 1,	  /* raising the limit while throughput rises */
	AURAIO_PHASE_STEADY = 2,  /* holding the limit, watching for change */
	AURAIO_PHASE_BACKOFF = 3, /* the P99 guard fired; the limit was cut */
	AURAIO_PHASE_DRAIN = 4,	  /* settling after a cut before measuring again */
} auraio_phase_t;

/** One ring's counters. Plain values copied out; the layout is ABI (append only). */
typedef struct auraio_ring_stats {
	uint64_t ops_submitted;		/* requests accepted (every one) */
	uint64_t ops_completed;		/* completions handled (every one, not sampled) */
	uint64_t bytes_read;		/* sum of positive read results */
	uint64_t bytes_written;		/* sum of positive write results */
	uint64_t errors;		/* completions with a negative result */
	uint64_t syscalls;		/* io_uring_enter calls made to submit */
	uint64_t sqes_submitted;	/* SQEs handed to the kernel */
	uint64_t eagain;		/* submits refused at the in-flight limit */
	uint64_t stale_completions;	/* CQEs whose request generation no longer matched */
	uint32_t in_flight;		/* now */
	uint32_t in_flight_limit;	/* now */
	uint32_t batch_threshold;	/* now */
	uint32_t queue_depth;		/* fixed at create */
	auraio_phase_t phase;		/* controller phase */
	uint32_t window_ms;		/* controller sample window width */
	double p50_us, p99_us, p999_us; /* completion latency over the ring's lifetime */
	double max_us;
	double window_p99_us; /* P99 of the controller's last completed window */
	double window_iops;   /* completions per second in that window */
} auraio_ring_stats_t;

/** Engine-wide view: sums of all rings plus the engine's mode. */
typedef struct auraio_stats {
	auraio_ring_stats_t total; /* counters summed; latency percentiles merged; in-flight
				      and limits summed; window_iops summed (the engine's
				      rate); phase, window_ms and window_p99_us of ring 0 */
	int ring_count;
	auraio_backend_t backend;     /* the backend in use (never AUTO) */
	char backend_reason[128];     /* why, when it is not the one asked for */
	bool sqpoll_active;	      /* SQPOLL requested and granted on every ring */
	bool coop_taskrun;	      /* COOP_TASKRUN + TASKRUN_FLAG in use */
	bool buffers_registered;      /* registered with the kernel (not degraded) */
	char buffers_reason[128];     /* why the current registration degraded, if it did
					 ("" once unregistered) */
	int files_registered;	      /* registered file slots (0 = none) */
	uint64_t buffer_pool_bytes;   /* memory held by the buffer pool */
	uint64_t faults_injected;     /* operations (or kernel entries) hit by auraio_fault_set() */
	uint64_t orphans_resubmitted; /* requests submitted again because the thread that
					 handed them to the kernel exited before the kernel
					 was done with them (io_uring; see auraio_submit_linked) */
} auraio_stats_t;

/** Copy the engine-wide stats into `out`. Returns 0 or -EINVAL. Any thread. */
AURAIO_API int auraio_get_stats(auraio_engine_t *engine, auraio_stats_t *out);

/** Copy ring `ring`'s stats into `out`. Returns 0 or -EINVAL (bad ring index or NULL). */
AURAIO_API int auraio_get_ring_stats(auraio_engine_t *engine, int ring, auraio_ring_stats_t *out);

/** Number of rings (>= 1), or -EINVAL. */
AURAIO_API int auraio_ring_count(auraio_engine_t *engine);

/** Text for 0, -errno or errno. Never NULL; the string is static. */
AURAIO_API const char *auraio_strerror(int err);

/** Name of a phase ("fixed", "probe", ...). */
AURAIO_API const char *auraio_phase_name(auraio_phase_t phase);

/* ------------------------------------------------------------------------------------- */
/* Fault injection (tests only)                                                          */
/* ------------------------------------------------------------------------------------- */

/* Compiled in only when the library is built with AURAIO_FAULT_INJECTION (the default
 * for non-Release builds); otherwise auraio_fault_set() returns -ENOTSUP. */

typedef enum auraio_fault_kind {
	AURAIO_FAULT_ERROR = 0, /* the operation is not performed; completes with -error */
	AURAIO_FAULT_SHORT = 1, /* the operation is cut to its first `keep` bytes and
				   completes with what the kernel makes of that: `keep`, or
				   fewer at the end of a file, or its error (an O_DIRECT cut
				   off alignment: -EINVAL); the rest of its chain is
				   cancelled. A `keep` at or above the length cuts nothing:
				   the operation completes whole and its chain goes on */
	AURAIO_FAULT_TEAR = 2,	/* a write of which only the first `keep` bytes (rounded down
				   to 512) reach the file; completes with -error, as if the
				   machine stopped mid-write */
	AURAIO_FAULT_ENTER = 3, /* io_uring backend only: a call into the kernel that would
				   submit entries fails with -error (0 = EBUSY) and submits
				   nothing, as io_uring_enter does when the kernel cannot take
				   them now (EAGAIN, EBUSY); the entries stay queued and the
				   engine's next flush or wait submits them. `ops` and `fd` are
				   ignored; `skip` and `count` count such calls. With count
				   0 (refuse all until cleared) clear the rule before
				   auraio_destroy(): it retries its cancellations until the
				   kernel takes them, and would spin for ever */
} auraio_fault_kind_t;

/** Fault rule operation mask bits. */
#define AURAIO_FAULT_OP_READ  1u /* read, readv */
#define AURAIO_FAULT_OP_WRITE 2u /* write, writev */
#define AURAIO_FAULT_OP_FSYNC 4u /* fsync, fdatasync */

/** A fault rule: which operations it hits and how. */
typedef struct auraio_fault {
	unsigned ops;	/* mask of AURAIO_FAULT_OP_*; 0 = all */
	int fd;		/* only this fd; -1 = any */
	uint64_t skip;	/* matching operations let through before the first fault */
	uint64_t count; /* matching operations faulted after that; 0 = all until cleared */
	auraio_fault_kind_t kind;
	int error;   /* positive errno for ERROR and TEAR; 0 = EIO */
	size_t keep; /* SHORT, TEAR: bytes transferred */
} auraio_fault_t;

/**
 * Install `fault` (replacing any previous rule). Faults apply to operations submitted
 * afterwards, in any ring; a faulted operation in a linked chain cancels the rest of the
 * chain as a real failure would. A faulted operation cancelled before it ran (a broken
 * link before it, auraio_cancel) completes with -ECANCELED, not the rule's result.
 * Returns 0, -EINVAL, or -ENOTSUP (not compiled in).
 */
AURAIO_API int auraio_fault_set(auraio_engine_t *engine, const auraio_fault_t *fault);

/** Remove the fault rule. Returns 0, -EINVAL, or -ENOTSUP. */
AURAIO_API int auraio_fault_clear(auraio_engine_t *engine);

#ifdef __cplusplus
}
#endif

#endif /* AURAIO_H */
