/* SPDX-License-Identifier: MIT */
/*
 * kv_db.h - the store's internal state, shared by the files of kv/src.
 *
 * Lock order (outermost first): key stripes (in increasing stripe order) -> bg.lock ->
 * batches.lock / segs_lock; the index and the cache have their own internal locks,
 * taken last and never held across a call out.
 */
#ifndef AURAKV_DB_H
#define AURAKV_DB_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "aurakv.h"
#include "aurawal.h"
#include "kv_cache.h"
#include "kv_format.h"
#include "kv_index.h"

/* Writes to one key are serialized by its stripe lock, held across version assignment,
 * append and index update: for every key, log order is version order, and GC (which
 * takes the same lock) moves only the record the index names at that moment. */
#define KV_STRIPES 4096u

/* Segment accounting slots: segment n lives in slot n % KV_SEG_SLOTS. A store holds at
 * most this many segments at once (with 64 MiB segments: 4 TiB). */
#define KV_SEG_SLOTS 65536u

/* Hint state of a segment. */
enum { KV_HINT_NONE = 0, KV_HINT_OK = 1, KV_HINT_FAILED = 2 };

struct kv_seg {
	_Atomic uint64_t number;    /* 0: free slot; published after the counters are reset */
	_Atomic int64_t total;	    /* log bytes of the records in the segment */
	_Atomic int64_t live;	    /* of which the latest record of a key (or a live batch) */
	_Atomic int64_t tomb;	    /* of which live deletes (GC may drop them in the oldest) */
	_Atomic int hint;	    /* KV_HINT_* */
	_Atomic int64_t hint_bytes; /* size of its hint file (0: none), in db->hint_bytes */
	_Atomic bool gc_damaged;    /* GC met damage in it: kept, never picked again until
				       the store is reopened (kv_gc.c, "Damage") */
};

/* Batch records still referenced by the index: (segment, offset) -> live entries. A
 * batch record is live while any of its entries is. */
struct kv_batch_ref {
	uint64_t loc; /* segment << 32 | offset */
	uint32_t live_entries;
	uint32_t size; /* payload bytes */
	struct kv_batch_ref *next;
};

struct kv_batches {
	pthread_mutex_t lock;
	struct kv_batch_ref **buckets;
	size_t nbuckets, count;
};

/* Background work: hint writing and garbage collection share one thread. */
struct kv_bg {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;	 /* the background thread waits here */
	pthread_cond_t progress; /* writers blocked by back-pressure wait here */
	bool stop;
	_Atomic bool behind;	    /* GC is behind: writers spend credit (back-pressure) */
	_Atomic int64_t credit;	    /* log bytes writers may still append while behind */
	uint64_t compact_done;	    /* passes completed for aurakv_compact() */
	uint64_t compact_requested; /* passes asked for */
	int compact_rc;
	_Atomic uint64_t seen_segment; /* the newest segment the thread has seen */
	uint64_t hint_retry_at;	  /* CLOCK_MONOTONIC ns: failed hints are tried again (kv_bg.c) */
	_Atomic uint64_t damaged; /* segments kept because GC met damage in them (gc_damaged):
				     aurakv_compact() returns AURAKV_ECORRUPT while any is */
	/* The newest segment a writer has measured the space at (kv_gc_pace.c, "Writers watch
	 * the marks"): one writer per rollover, chosen by a CAS. Relaxed: it orders
	 * nothing, it only says who measures. */
	_Atomic uint64_t checked_segment;
	/* checked_segment as it was when the thread last compared the space with the marks
	 * (kv_gc_step, escalate): a writer two segments on knows it lags. Relaxed: a hint. */
	_Atomic uint64_t looked_segment;
	/* The background thread's last GC step failed: writers do not switch back-pressure
	 * on (its next successful step may). Relaxed: a hint, like `behind`. */
	_Atomic bool gc_failed;
#ifdef AURAKV_TEST_HOOKS
	/* Test hooks, under bg.lock (kv_bg.c, kv_bg_test_hold): while test_hold is set the
	 * thread waits at the top of its loop (test_parked), as if starved of CPU;
	 * test_waiting counts the writers waiting for credit in kv_gc_throttle. */
	bool test_hold, test_parked;
	int test_waiting;
#endif
};

struct kv_counters {
	_Atomic uint64_t fg_bytes; /* log bytes appended by writers (GC pacing) */
	_Atomic uint64_t puts, deletes, batches, gets, get_misses;
	_Atomic uint64_t compressed, tombstones;
	_Atomic uint64_t gc_runs, gc_bytes_copied, gc_bytes_freed, gc_stalls, gc_stall_ns;
	_Atomic uint64_t hints_written;
};

struct kv_db {
	char *dir;
	int lock_fd;
	aurakv_options_t opts;
	aurawal_t *wal;
	struct kv_index *ix;
	struct kv_cache *cache;
	_Atomic uint64_t next_version;
	pthread_mutex_t stripes[KV_STRIPES];
	struct kv_seg *segs; /* KV_SEG_SLOTS */
	pthread_mutex_t segs_lock;
	struct kv_batches batches;
	struct kv_bg bg;
	struct kv_counters n;
	uint64_t seg_bytes; /* the log's real segment size (an existing store keeps its own) */
	_Atomic int64_t hint_bytes; /* bytes of the hint files of the log's segments (GC counts
				       them as space: kv_gc_pace.c) */
	_Atomic int failed_reported;
	/* tests: called (no lock held) each time a multi-get is about to wait; set before
	 * the multi-get starts */
	void (*test_mget_wait)(struct kv_db *db);
};

/* The public handle: stays (as a tombstone) after close, so that a call on a closed
 * store gets AURAKV_ECLOSED instead of touching freed memory. */
struct aurakv {
	uint64_t magic;
	struct kv_db *db;
	struct aurakv *next_closed;
};

#define KV_MAGIC_OPEN	0x415552414b564f50ull /* "AURAKVOP" */
#define KV_MAGIC_CLOSED 0x415552414b56434cull /* "AURAKVCL" */

/* kv_db.c */
/* The longest store directory path: its files' names (wal/<16 hex>.seg, RELEASED.tmp,
 * hints/<16 hex>.hint.tmp, LOCK) must still fit PATH_MAX with it. */
#define KV_DIR_MAX (PATH_MAX - 1 - 64)

struct kv_db *kv_db_alloc(const char *dir, const aurakv_options_t *opts);
/* The log's segments, oldest first, in a new array (*segs: free it). 0 or -errno. */
int kv_list_segments(struct kv_db *db, aurawal_segment_info_t **segs, size_t *n);
void kv_db_free(struct kv_db *db);
int kv_db_lock(struct kv_db *db);
int kv_db_open_wal(struct kv_db *db, aurawal_recovery_t mode);
void kv_report(struct kv_db *db, aurakv_report_kind_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kv_map_wal_error(int rc);
int kv_check_key(const void *key, size_t klen);
uint32_t kv_stripe_of(const void *key, size_t klen);

/* kv_acct.c: per-segment live/total accounting and batch liveness. */
struct kv_seg *kv_seg_get(struct kv_db *db, uint64_t number, bool create);
void kv_acct_total(struct kv_db *db, uint64_t segment, uint64_t payload);
void kv_acct_add(struct kv_db *db, const struct kv_ref *ref);
void kv_acct_drop(struct kv_db *db, const struct kv_ref *ref);
void kv_acct_forget(struct kv_db *db, uint64_t segment);
int kv_batches_init(struct kv_batches *b);
void kv_batches_destroy(struct kv_batches *b);

/* CLOCK_MONOTONIC in ns (GC pacing, hint retries). */
static inline uint64_t kv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* The cache key of an entry: the version of its write - unique to one write of one key
 * (a batch's entries are numbered from the batch's), and kept when GC moves the record,
 * so the value under it never changes. (Its position in the log, segment and offset,
 * would not fit 64 bits once segment numbers pass 2^32.) */
static inline uint64_t kv_cache_loc(const struct kv_ref *r)
{
	return r->version;
}

static inline aurawal_loc_t kv_wal_loc(const struct kv_ref *r)
{
	aurawal_loc_t loc = { .segment = r->segment, .offset = r->offset, .size = r->size };

	return loc;
}

/* Apply an index update's outcome to the accounting: `ref` was stored, replacing `old`
 * if had_old. */
void kv_apply_upsert(struct kv_db *db, const struct kv_ref *ref, const struct kv_ref *old,
		     bool had_old);

/* kv_write.c */
int kv_write_put(struct kv_db *db, const void *key, size_t klen, const void *val, size_t vlen,
		 unsigned flags);
int kv_write_delete(struct kv_db *db, const void *key, size_t klen, unsigned flags);
int kv_write_batch(struct kv_db *db, const aurakv_batch_t *b, unsigned flags);
/* Compress `val` if worth it: returns the bytes to store (val itself or *buf, malloc'd,
 * the caller frees) and sets *flags / *stored. */
const void *kv_maybe_compress(struct kv_db *db, const void *val, size_t vlen, void **buf,
			      size_t *stored, uint8_t *flags);

/* kv_read.c */
int kv_read_entry(struct kv_db *db, const void *key, size_t klen, struct kv_ref *ref, void **val,
		  size_t *vlen, void *buf, size_t cap);
int kv_get_async(struct kv_db *db, const void *key, size_t klen, aurakv_get_cb cb, void *arg);
/* Run the answers of db's gets that wait in this thread's queue (kv_read.c, Nesting). */
void kv_get_async_flush(struct kv_db *db);
/* aurakv_poll(): the application's async-get callbacks run (multi-get's are not). */
int kv_poll(struct kv_db *db, int timeout_ms);
int kv_multi_get(struct kv_db *db, size_t n, const void *const *keys, const size_t *klens,
		 void **vals, size_t *vlens, int *status, unsigned depth);
int kv_foreach(struct kv_db *db, const void *start, size_t slen,
	       int (*cb)(void *, const void *, size_t, const void *, size_t), void *arg);

/* kv_stats.c */
int kv_segment_stats(struct kv_db *db, aurakv_segment_stats_t *out, size_t max, size_t *count);

/* The store behind a public handle, or NULL and *rc (-EINVAL, AURAKV_ECLOSED). */
struct kv_db *kv_store_of(aurakv_t *h, int *rc);

/* kv_hint.c */
struct kv_hint_entry {
	const uint8_t *key; /* into the owner's memory */
	size_t klen;
	struct kv_ref ref;
};
/* Every key's latest record in sealed segment `seg`, sorted by key, in a malloc'd
 * array (*out, *n) whose keys point into *arena (free both). Also the segment's total
 * log bytes and max version. 0, AURAKV_ECORRUPT, -ENOENT, -ENOMEM or -errno. */
struct kv_seg_summary {
	struct kv_hint_entry *entries;
	size_t n;
	uint8_t *arena;
	uint64_t total, max_version;
	uint64_t first_seq, last_seq; /* of its first record of any type (a VOID too: what
					 the log lists), and of its last put */
	uint64_t end; /* offset just past the last record read (0: none); set on failure
			 too: after AURAKV_ECORRUPT, where the damaged record starts */
};
int kv_seg_summarize(aurawal_t *wal, uint64_t seg, struct kv_seg_summary *out);
void kv_seg_summary_free(struct kv_seg_summary *s);
int kv_hint_write(struct kv_db *db, const struct kv_seg_summary *s, uint64_t seg);
char *kv_hint_path(const char *dir, uint64_t seg, const char *suffix);

/* A hint file being read: entries in key order, block by block. The file must be that
 * of segment `info` (number, first and last sequence), and its entries name records
 * within the segment's `seg_bytes`. It is read `chunk` bytes at a time (at most its
 * size), and held open only during each read: a reader holds no file descriptor.
 * Errors: AURAKV_ECORRUPT (the file is damaged: delete it), else -errno (-ENOENT, -EMFILE,
 * -EIO, -ENOMEM, ...: nothing is known about the file). */
struct kv_hint_reader;
int kv_hint_open(auraio_engine_t *eng, const char *path, const aurawal_segment_info_t *info,
		 uint64_t seg_bytes, size_t chunk, struct kv_hint_reader **out);
/* The chunk for each of `runs` readers open at once: a 64 MiB budget shared, each
 * 64 KiB .. 1 MiB, a multiple of 4096. */
size_t kv_hint_chunk(size_t runs);
/* 1 and the next entry (key valid until the next call), 0 at the end, AURAKV_ECORRUPT,
 * or -errno as kv_hint_open. */
int kv_hint_next(struct kv_hint_reader *r, struct kv_hint_entry *e);
uint64_t kv_hint_total(const struct kv_hint_reader *r);
uint64_t kv_hint_file_bytes(const struct kv_hint_reader *r);
/* Segment `seg`'s hint file now takes `bytes` (0: gone): the space GC counts. */
void kv_acct_hint(struct kv_db *db, uint64_t seg, int64_t bytes);
uint64_t kv_hint_max_version(const struct kv_hint_reader *r);
uint64_t kv_hint_entries(const struct kv_hint_reader *r);
void kv_hint_close(struct kv_hint_reader *r);

/* kv_open.c */
int kv_recover(struct kv_db *db);

/* kv_bg.c, kv_gc.c, kv_gc_pace.c: the background thread (hints and garbage collection). */
int kv_bg_start(struct kv_db *db);
void kv_bg_stop(struct kv_db *db);
void kv_bg_notify(struct kv_db *db);
/* Back-pressure: a writer about to append about `bytes` of log waits here while GC is
 * behind and has not granted it the credit (kv_gc_pace.c). */
void kv_gc_throttle(struct kv_db *db, uint64_t bytes);

/* A writer appended to `segment` (its stripe let go): the first to land in a segment no
 * writer has measured yet measures the space and may switch back-pressure on (kv_gc_pace.c,
 * "Writers watch the marks"). */
void kv_gc_rollover(struct kv_db *db, uint64_t segment);

/* The cheap part, for every write: one relaxed load and a compare. */
static inline void kv_gc_note_segment(struct kv_db *db, uint64_t segment)
{
	if (segment > atomic_load_explicit(&db->bg.checked_segment, memory_order_relaxed))
		kv_gc_rollover(db, segment);
}

#ifdef AURAKV_TEST_HOOKS
/* Tests: hold the background thread at the top of its loop (returns once it waits
 * there, or at once if it has stopped), or let it go again. */
void kv_bg_test_hold(struct kv_db *db, bool hold);
/* Tests: the writers waiting for back-pressure credit right now. */
int kv_gc_test_waiting(struct kv_db *db);
#endif

/* Is back-pressure on (writers pay credit)? A hint: relaxed, as in kv_gc_throttle. */
static inline bool kv_gc_behind(struct kv_db *db)
{
	return atomic_load_explicit(&db->bg.behind, memory_order_relaxed);
}
int kv_gc_compact(struct kv_db *db);
/* Collect segment `seg` (sealed): move its live entries, sync, release. Its tombstones
 * are dropped if it is the oldest segment of the log, copied otherwise. */
int kv_gc_collect(struct kv_db *db, uint64_t seg, bool paced);
/* One GC decision (kv_gc_pace.c): collect at most one segment; 1 if it did, 0 if nothing was
 * due, or an error. `compact`: any sealed segment with dead bytes is due, unpaced. */
int kv_gc_step(struct kv_db *db, bool compact);

/* kv_io.c: blocking file I/O through the engine. */
ssize_t kv_pread(auraio_engine_t *eng, int fd, void *buf, size_t len, uint64_t off);
ssize_t kv_pwrite(auraio_engine_t *eng, int fd, const void *buf, size_t len, uint64_t off);
int kv_fsync(auraio_engine_t *eng, int fd);
int kv_fsync_dir(auraio_engine_t *eng, const char *dir);

#endif
