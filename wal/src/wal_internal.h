/* SPDX-License-Identifier: MIT */
/*
 * wal_internal.h - the log's internal state, shared by the files of libaurawal.
 *
 * Threads: appenders (any thread), one writer thread (all batch writes and their
 * completions), one preparer thread (spare and ready segments), plus readers.
 *
 * Lock order: log->rel_mu (releases only), then log->mu; auraio calls are made without
 * either (buffers being written are pinned by the state machine, not by a lock).
 *
 * Batches: records are copied into the *active* batch. The writer takes batches in
 * order - closed batches from the queue first (sealed, or full), with the active one
 * when it is due - and writes them with ONE aligned write at a time (a gathered write
 * when it covers several batches), linked to an fdatasync if one of them holds a durable
 * record, is sealed, or a sync was requested. A batch's buffer starts with the partial
 * tail block of the data before it, which the write rewrites byte for byte
 * (docs/wal_format.md, "Writing", explains why that is safe under torn writes).
 *
 * Durable waiters: a thread waiting for durability (a durable append, aurawal_sync)
 * queues a struct wal_waiter, in sequence order, and sleeps on its batch's futex word;
 * the writer marks exactly the waiters whose records became durable, and wakes each
 * batch's word once (wal_wait.h).
 */
#ifndef AURAWAL_INTERNAL_H
#define AURAWAL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "aurawal.h"
#include "wal_format.h"

struct wal_waiter;
struct wal_aread;

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#define WAL_NBUFS_MAX	8 /* write buffers at most: being written, queued, active */
#define WAL_NBUFS_MIN	3
#define WAL_STAGING	(32u << 20) /* nbufs = this / buffer_size, within the bounds above */
#define WAL_READ_BUFS	16	    /* registered read buffers */
#define WAL_READ_BUF_SZ (64u << 10)
#define WAL_SCAN_CHUNK	(1u << 20) /* sequential reads: recovery, iterators */
/* Sync latency, in microseconds: log-linear buckets, WAL_LAT_SUB per power of two (exact
 * below WAL_LAT_SUB us), so a bucket's upper bound - what the stats report - is within
 * 1/WAL_LAT_SUB of any value in it. */
#define WAL_LAT_SUB_BITS 4
#define WAL_LAT_SUB	 (1u << WAL_LAT_SUB_BITS)
#define WAL_LAT_BUCKETS	 ((64 - WAL_LAT_SUB_BITS + 1) * WAL_LAT_SUB)

struct wal_segment {
	uint64_t number;
	int fd;
	uint64_t size;	      /* file size (== segment size, or less if truncated) */
	uint64_t durable_end; /* bytes of records made durable */
	uint64_t written_end; /* bytes of records on disk (beyond: only in memory) */
	uint64_t data_end;    /* bytes of records appended (on disk or in buffers) */
	uint64_t first_seq, last_seq;
	uint64_t nrecords;
	bool sealed;
	uint64_t seal_next;   /* sealed: the segment its SEAL names */
	bool summary_pending; /* sealed: its seal block is being written (I/O on its fd) */
	bool summary_ok;      /* the seal block on disk matches (no need to write one) */
	bool released;
	bool unnamed;		  /* released while in use: its file is unlinked already */
	bool lazy_hdr;		  /* header written (and file renamed) without a flush: owed */
	bool unmarked;		  /* prepared without a flush, its SYNC mark not placed yet */
	bool bad_hdr;		  /* open: its header block is not valid (a break: wal_recover.c) */
	struct wal_summary sum;	  /* the summary found in block 0 at open */
	int refs;		  /* readers and iterators using it (under mu) */
	struct wal_segment *next; /* the log's list, oldest first */
};

/* A segment may be released (its file closed, recycled or deleted) only once everything
 * in it is written and no seal block is being written: no write of the writer can then
 * still reach its file descriptor (the flushes a rollover owes hold a reference: see
 * pay_debt in wal_writer.c). It need not be durable: a released segment is not needed.
 * mu held. */
static inline bool wal_seg_settled(const struct wal_segment *s)
{
	return s->sealed && s->written_end >= s->data_end && !s->summary_pending;
}

/* Does segment s owe a flush (records written since its last sync, or a new header)? */
static inline bool wal_seg_owes(const struct wal_segment *s)
{
	return s->durable_end < s->written_end || s->lazy_hdr;
}

/* A completion to deliver through aurawal_poll: an asynchronous append waiting for its
 * batch (cb), or a finished asynchronous read (rcb). */
struct wal_cb {
	aurawal_append_cb cb;
	aurawal_read_cb rcb;
	void *arg;
	aurawal_loc_t loc;
	uint64_t seq;
	size_t len;
	int status;
	uint64_t owner; /* whose work it is: wal_owner() of the thread that started it */
	struct wal_cb *next;
};

/* A callback being run (wal_run_ready_cbs), on its runner's stack, in log->running. */
struct wal_running {
	uint64_t owner;	 /* the callback's */
	uint64_t runner; /* wal_thread_id() of the thread running it */
	struct wal_running *next;
};

/* A poller inside its wait (poll_wait), on its stack, in log->pollers. */
struct wal_poller {
	uint64_t owner; /* whose work it waits for: its wal_owner() */
	uint64_t self;	/* its wal_thread_id() */
	bool until;	/* aurawal_poll_until: woken after any callback */
	bool delivered; /* a callback of its owner's returned in another thread */
	struct wal_poller *next;
};

struct wal_batch {
	uint8_t *buf; /* the buffer in use: std_buf, or big for a record that does not fit */
	size_t cap;
	int reg_index;	  /* registered buffer index, -1 = plain memory */
	uint8_t *std_buf; /* the batch's own buffer (buffer_size bytes, registered) */
	size_t std_cap;
	int std_reg;
	uint8_t *big; /* a larger buffer, kept for the next large record (or NULL) */
	size_t big_cap;
	bool busy; /* in use (active, queued or being written) */
	struct wal_segment *seg;
	uint64_t start;		      /* file offset of buf[0], block aligned */
	uint64_t end;		      /* file offset of the end of the data in buf */
	uint64_t first_seq, last_seq; /* records of this batch (0 = none) */
	uint32_t nrecords;
	uint32_t ndurable;
	_Atomic uint32_t wake_word; /* its durable waiters sleep on it (wal_wait.h) */
	bool sealed;		    /* ends with the SEAL record: the segment is full */
	bool force_sync;	    /* aurawal_sync() asked for it */
	uint64_t oldest_ns;	    /* when its first record arrived */
	struct wal_cb *cbs, *cbs_tail;
	/* Where its records lie (offsets from start) whose appenders learn the outcome of
	 * its write - durable and asynchronous appends: voided if that is -ENOSPC
	 * (docs/wal_format.md, "Out of space"). */
	uint32_t *voids;
	uint32_t nvoids, voids_cap;
	struct wal_batch *next; /* the queue of closed batches */
};

struct wal_read_pool {
	uint8_t *bufs[WAL_READ_BUFS];
	int reg_index[WAL_READ_BUFS];
	uint32_t free_mask; /* under mu */
};

struct aurawal {
	aurawal_options_t opts;
	char *dir;
	int dir_fd;
	int lock_fd;
	uint64_t log_id;
	uint64_t segment_size;
	auraio_engine_t *engine;
	bool own_engine;
	bool read_only; /* inspect mode */

	pthread_mutex_t mu;
	pthread_mutex_t rel_mu;	   /* serializes releases (taken before mu) */
	pthread_cond_t cv_writer;  /* the writer has work */
	pthread_cond_t cv_done;	   /* a batch completed (appenders, sync, poll, space) */
	pthread_cond_t cv_prepare; /* the preparer has work */
	pthread_cond_t cv_ready;   /* a ready segment appeared */

	/* segments (under mu) */
	struct wal_segment *segs, *segs_tail;
	struct wal_segment *active; /* being appended to */
	struct wal_segment *ready;  /* header written, next in line; NULL if none */
	uint64_t next_number;	    /* number for the next ready segment */
	char **spares;		    /* paths of spare files */
	int nspares, cap_spares;
	int space_err;		   /* last preparation failure (-ENOSPC...), 0 = none */
	uint64_t prepare_attempts; /* preparations made, for appenders waiting on one */
	uint64_t dir_gen;	   /* bumped by every rename made without a directory sync */
	uint64_t dir_synced;	   /* dir_gen when the directory was last synced */
	uint64_t dir_sync_target;  /* aurawal_sync: sync the directory through this dir_gen */

	/* appending (under mu) */
	struct wal_batch bufs[WAL_NBUFS_MAX];
	int nbufs;				   /* buffers in use: WAL_NBUFS_MIN..MAX */
	size_t big_bytes, big_budget;		   /* large buffers kept, and the most kept */
	struct wal_batch *cur;			   /* the active batch, or NULL */
	struct wal_batch *queue, *queue_tail;	   /* closed batches, oldest first */
	bool io_busy;				   /* the writer has a write or sync in flight */
	struct wal_waiter *waiters, *waiters_tail; /* durable waiters, in sequence order */
	_Atomic uint32_t wake_any; /* futex word of waiters not tied to the active batch */
	uint64_t gather_target;	   /* durable records the next batch waits for (see wal_writer.c) */
	uint64_t gather_until;	   /* ... but not past this time (ns) */
	uint64_t sync_avg_ns;	   /* moving average of write+sync latency */
	uint64_t gather_fixed_ns;  /* tests: a fixed gathering window (0 = adaptive) */
	/* tests: called (no lock held) while the writer has dropped mu to wake waiters;
	 * set under mu */
	void (*test_waking)(struct aurawal *log);
	uint64_t next_seq;
	uint64_t durable_seq;  /* every record <= this is durable */
	uint64_t written_seq;  /* every record <= this is written */
	uint64_t sync_target;  /* aurawal_sync: make records <= this durable */
	uint64_t flush_target; /* aurawal_flush: write records <= this (no sync) */
	uint64_t enospc_hi;    /* appends up to this seq that are not written failed with -ENOSPC */
	int enospc;	       /* a batch failed with -ENOSPC and awaits a retry */
	uint64_t enospc_retry_at; /* when the writer retries it (ns) */
	uint64_t enospc_begun;	  /* writes begun while out of space (retries), numbered */
	uint64_t enospc_ended;	  /* the number of the last of them that completed */
	uint8_t *tail;		  /* the partial last block of the active segment's data */
	int failed;		  /* fail-stop error (-EIO...), 0 = healthy */
	_Atomic int failed_pub;	  /* the same, for aurawal_failed() without mu */
	/* The write path's last failed I/O (what, where), kept for the report of a fail-stop
	 * (AURAWAL_REPORT_FAILED), which goes out once, after mu is dropped: report_due. */
	struct wal_io_error {
		const char *what; /* "write", "fdatasync", ... */
		uint64_t segment, offset, length;
		int rc;
	} io_error;
	bool report_due;
	bool closing;
	struct wal_cb *ready_cbs, *ready_cbs_tail; /* completed async appends, for poll */
	/* Completed async reads: run by aurawal_poll() (and close) only, as aurawal.h says -
	 * never by an append, sync or flush, which may be called with the caller's locks held
	 * (the store appends under a key's lock, from its background thread too). */
	struct wal_cb *ready_reads, *ready_reads_tail;
	/* A hint that ready_cbs is not empty, readable without mu (appenders look at it after
	 * they dropped the lock). Written under mu; relaxed: the list itself is only touched
	 * under mu, and a stale hint only moves callbacks to the next call that runs them. */
	atomic_bool cbs_ready;
	uint32_t pending_cbs;	     /* async appends and reads not yet delivered */
	uint32_t until_waiters;	     /* aurawal_poll_until callers asleep on cv_done */
	struct wal_running *running; /* callbacks being run, in any thread */
	struct wal_poller *pollers;  /* polls inside their wait */
	uint32_t pending_reads;	     /* async reads in flight on the engine, or parked */
	/* Async reads whose rest (after a short count) the ring refused inside an auraio
	 * callback, where nothing may wait: resubmitted by poll and close (wal_read.c). */
	struct wal_aread *parked, *parked_tail;
	uint32_t nparked;
	uint64_t *released; /* RELEASED: segments released out of order */
	size_t nreleased;

	struct wal_read_pool reads;
	uint8_t *scratch;     /* WAL_BLOCK bytes for headers (open, then the preparer only) */
	uint8_t *summary_buf; /* WAL_BLOCK bytes for summaries (open, writer, close) */
	bool created;	      /* this open created the log: there is nothing to recover */

	pthread_t writer, preparer;
	bool threads_started;

	/* stats (under mu) */
	uint64_t st_appends, st_durable, st_bytes, st_writes, st_syncs, st_synced_records;
	uint64_t st_sync_lat[WAL_LAT_BUCKETS];
	uint64_t st_sync_max_us;
	uint64_t st_big_allocs; /* large buffers allocated (reuse keeps this small) */
	/* durable waiters' sleeps, and those that woke to find their record not durable yet:
	 * counted by the waiters themselves, hence atomics (relaxed: statistics only) */
	_Atomic uint64_t st_wait_sleeps, st_wait_futile;
};

/* ---- wal_log.c ---- */
void wal_report(struct aurawal *log, aurawal_report_kind_t kind, uint64_t segment, uint64_t offset,
		uint64_t length, const char *reason);
uint64_t wal_now_ns(void);

/* ---- wal_io.c: file I/O through auraio, blocking the caller ---- */
int wal_writev_sync(struct aurawal *log, int fd, const struct iovec *iov, int iovcnt, int reg_index,
		    uint64_t off, bool sync, aurawal_sync_mode_t mode);
int wal_pread(struct aurawal *log, int fd, void *buf, int reg_index, size_t len, uint64_t off);
int wal_pwrite(struct aurawal *log, int fd, const void *buf, int reg_index, size_t len,
	       uint64_t off);
int wal_fdatasync(struct aurawal *log, int fd);
int wal_fsync(struct aurawal *log, int fd);
void *wal_alloc(struct aurawal *log, size_t size);
void wal_free(struct aurawal *log, void *p);

/* ---- wal_seg_open.c: finding the segments at open (no threads running) ---- */
int wal_log_present(struct aurawal *log); /* 0 if a segment file is there, else -ENOENT */
int wal_segments_open(struct aurawal *log, bool create);
void wal_segments_close(struct aurawal *log);
int wal_seg_remake(struct aurawal *log, uint64_t number, struct wal_segment **out);

/* ---- wal_segment.c ---- */
char *wal_seg_path(const struct aurawal *log, uint64_t number);
/* A segment struct for fd (size: its usable bytes), not listed yet; NULL if no memory. */
struct wal_segment *wal_seg_new(uint64_t number, int fd, uint64_t size);
void wal_seg_append(struct aurawal *log, struct wal_segment *s); /* mu held, or open */
/* Read fd's header block into buf (aligned, WAL_HEADER_BLOCK bytes) and decode it. */
int wal_seg_read_header(struct aurawal *log, int fd, uint8_t *buf, struct wal_seg_header *h);
/* Segment `number`, ready to append to: header written and file renamed - and, if
 * `sync`, both durable. On an error, *step (if not NULL) names the step that failed. */
int wal_seg_make_ready(struct aurawal *log, uint64_t number, const char *spare, int *fdp, bool sync,
		       const char **step);
struct wal_segment *wal_seg_find(struct aurawal *log, uint64_t number); /* mu held */
void wal_seg_put(struct aurawal *log, struct wal_segment *s);		/* mu held */
void wal_seg_dispose(struct aurawal *log,
		     struct wal_segment *s); /* mu held: released, unreferenced */
void *wal_preparer_main(void *arg);
int wal_release_segments(struct aurawal *log, uint64_t below);
int wal_released_load(struct aurawal *log);
int wal_released_forget_above(struct aurawal *log, uint64_t number); /* open only */
int wal_write_summary(struct aurawal *log, struct wal_segment *s, const struct wal_summary *sm,
		      bool sync);
void wal_summary_of(const struct aurawal *log, const struct wal_segment *s, uint8_t kind,
		    struct wal_summary *sm); /* mu held (or no threads) */

/* ---- wal_read.c: reads ---- */
/* No lock held, not in an auraio callback: submit parked async reads again (no wait). */
void wal_resubmit_parked(struct aurawal *log);

/* ---- wal_poll.c: delivering completions through aurawal_poll ---- */
void wal_deliver(struct aurawal *log, struct wal_cb *c); /* mu held: a read, for poll */
/* No lock held: run the ready callbacks of appends, and of reads if `reads` (poll, close). */
int wal_run_ready_cbs(struct aurawal *log, bool reads);
/* This thread's id among the log users (never 0, never reused), and the owner of the work
 * it starts: its own id, or while it runs a callback, that callback's owner's. */
uint64_t wal_thread_id(void);
uint64_t wal_owner(void);

/* ---- wal_recover.c: sequential reading and recovery ---- */
struct wal_reader {
	struct aurawal *log;
	struct wal_segment *seg;
	uint8_t *buf;
	uint64_t cap;
	uint64_t start, len; /* the file range buf holds */
};
void wal_reader_init(struct wal_reader *r, struct aurawal *log, struct wal_segment *s);
void wal_reader_fini(struct wal_reader *r);
int64_t wal_reader_fill(struct wal_reader *r, uint64_t off, uint64_t need, uint64_t limit);
int wal_reader_record(struct wal_reader *r, uint64_t off, uint64_t limit, uint64_t seed,
		      struct wal_rec *rec);
uint64_t wal_reader_resync(struct wal_reader *r, uint64_t from, uint64_t limit, uint64_t seed);
int wal_recover(struct aurawal *log);	     /* before the threads start */
int wal_recover_finish(struct aurawal *log); /* may write: summaries fixed up */
int sync_dir_fd(struct aurawal *log);	     /* fsync of the log's directory, through the engine */

/* What one write covers: consecutive batches of one segment. */
struct wal_plan {
	struct wal_batch *b[WAL_NBUFS_MAX];
	int n;
	bool sync;
	aurawal_sync_mode_t mode; /* how, if sync (see wal_write_plan) */
	uint64_t ndurable;	  /* durable records in it */
	uint64_t enospc_try;	  /* its number among writes begun out of space; 0 = none */
};

/* ---- wal_append.c (the appenders' side) and wal_writer.c (the writer thread) ---- */
/* mu held: */
void wal_batch_seal_tail(struct aurawal *log, struct wal_batch *b);	    /* it will not grow */
void wal_batch_release(struct aurawal *log, struct wal_batch *b);	    /* written or failed */
int wal_plan_next(struct aurawal *log, struct wal_plan *p, uint64_t *wake); /* batches */
int wal_write_plan(struct aurawal *log, struct wal_plan *p);		    /* drops mu for I/O */
bool wal_wants_bare_sync(const struct aurawal *log);
bool wal_wants_dir_sync(const struct aurawal *log);

/* ---- wal_writer.c ---- */
int wal_writer_init(struct aurawal *log);
void *wal_writer_main(void *arg);
int wal_write_close_block(struct aurawal *log); /* at close, after the writer stopped */
int wal_sync_dir_if_dirty(struct aurawal *log); /* at close, after the writer stopped */
int wal_flush_ready(struct aurawal *log);	/* at close, after the threads stopped */

/* The sync latency bucket of `us` microseconds. */
static inline unsigned wal_lat_bucket(uint64_t us)
{
	unsigned shift;

	if (us < WAL_LAT_SUB)
		return (unsigned) us;
	shift = 63u - (unsigned) __builtin_clzll(us) - WAL_LAT_SUB_BITS;
	return (shift + 1) * WAL_LAT_SUB + (unsigned) ((us >> shift) & (WAL_LAT_SUB - 1));
}

/* The largest value in bucket i: what a quantile falling in it reports. */
static inline uint64_t wal_lat_bucket_max(unsigned i)
{
	unsigned shift;

	if (i < WAL_LAT_SUB)
		return i;
	shift = i / WAL_LAT_SUB - 1;
	return ((uint64_t) (WAL_LAT_SUB + i % WAL_LAT_SUB) << shift) + ((1ull << shift) - 1);
}

#endif
