/* SPDX-License-Identifier: MIT */
/*
 * aurakv.h - AuraKV, an embeddable key-value store on AuraWAL and AuraIO.
 * docs/kv_format.md specifies the bytes on disk, docs/kv_design.md how it works.
 *
 * This header is the manual: each function lists what it returns, every error, who owns
 * what, and which threads may call it.
 *
 * Model
 *   The log is the database. Every put, delete and batch is one record appended to a
 *   write-ahead log (group-committed); an ordered index in memory maps each key to its
 *   latest record, so a get that misses the value cache is one device read. Background
 *   threads write hint files (so opening reads a compact summary, not the log) and
 *   collect garbage (segments whose records were overwritten or deleted are copied
 *   forward and released), without any call from the application.
 *
 * Durability
 *   A write with AURAKV_SYNC returns 0 only once it survives a crash of the process or
 *   the machine. A write without it returns once it is in the log's buffers, in this
 *   process's memory: it survives a process crash only once it is written to the device
 *   (within flush_delay_us, if not 0, or when a buffer fills), and a machine crash once
 *   a later AURAKV_SYNC write, aurakv_sync() or aurakv_close() has returned. A batch is
 *   atomic: after a crash either all of it or none of it is there. Writes to one key
 *   are ordered: a get returns the value of the last write that returned before it
 *   started.
 *
 * Errors
 *   0 on success, -errno for system errors, or a code of the reserved band below;
 *   aurakv_strerror() describes all of them. A missing key is AURAKV_ENOTFOUND, an
 *   ordinary result. Corruption is AURAKV_ECORRUPT, never folded into -EIO.
 *
 * Damage on disk
 *   Every log record is checksummed with its header, every hint file block by block.
 *   Damage is reported (AURAKV_REPORT_CORRUPTION) and answered with AURAKV_ECORRUPT;
 *   it is never skipped and never answered with another value: a get returns the
 *   key's last write or AURAKV_ECORRUPT, and a deleted key stays deleted. Where:
 *   aurakv_open() fails on damage in what it reads - the unsealed end of the log
 *   (after a clean close, records missing before the end it recorded too), a sealed
 *   segment without a usable hint file, a segment header, a lost segment file, the
 *   log's RELEASED file. A sealed segment with a valid hint file is not read at open:
 *   its damage is met by the gets of the keys it holds, by GC (aurakv_compact), and
 *   by aurakv_verify(), which reads every record and hint file. A damaged, missing or
 *   mismatched hint file loses nothing: the segment is read instead and the hint
 *   rewritten. Bytes no reader uses are not checked: a record's 0-7 padding bytes,
 *   the unused bytes of a segment's header block, and whatever lies past the log's
 *   end (docs/wal_format.md).
 *
 * Threading
 *   Every function may be called from any thread concurrently on the same store,
 *   except aurakv_close(), which must be the last call on the store and must not race
 *   with any other call on it. Callbacks of aurakv_get_async() run in a thread that
 *   calls aurakv_poll() (or inside aurakv_get_async() itself or an outer call of it
 *   on the same thread, see there; a thread in aurakv_multi_get() or aurakv_close() may
 *   run them too).
 *   fork(): a child must not use (nor close) a store opened before the fork, and should
 *   exec before opening one (auraio.h, Threading, says why).
 *
 * Limits
 *   Keys: 1 .. AURAKV_MAX_KEY bytes, compared as unsigned bytes (memcmp order).
 *   Values: 0 .. AURAKV_MAX_VALUE bytes (an empty value is a valid value).
 *   A batch: its encoded size (keys, values, ~12 bytes per entry) at most
 *   AURAKV_MAX_BATCH bytes.
 */
#ifndef AURAKV_H
#define AURAKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auraio.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AURAKV_VERSION_MAJOR 0
#define AURAKV_VERSION_MINOR 1
#define AURAKV_VERSION_PATCH 0

#if defined(AURAKV_STATIC_DEFINE)
#define AURAKV_API
#else
#define AURAKV_API __attribute__((visibility("default")))
#endif

/** Library error codes (a reserved band; system errors are -errno). */
#define AURAKV_ENOTFOUND  (-32001) /* no such key (an ordinary result) */
#define AURAKV_ECORRUPT	  (-32002) /* a record or file failed its checksum or format check */
#define AURAKV_ECLOSED	  (-32003) /* the store handle was closed */
#define AURAKV_ELOCKED	  (-32004) /* another process has the store open (see the reporter) */
#define AURAKV_EFORMAT	  (-32005) /* not a store, or a format this library cannot read */
#define AURAKV_EKEYSIZE	  (-32006) /* key empty or longer than AURAKV_MAX_KEY */
#define AURAKV_EVALSIZE	  (-32007) /* value longer than AURAKV_MAX_VALUE */
#define AURAKV_EBATCHSIZE (-32008) /* batch larger than AURAKV_MAX_BATCH */
#define AURAKV_ENOBUFS	  (-32009) /* the caller's buffer is too small (the size is returned) */

/** Largest key, in bytes (64 KiB - 1). */
#define AURAKV_MAX_KEY 65535u
/** Largest value, in bytes (64 MiB - 128 KiB: a record holds the key and headers too). */
#define AURAKV_MAX_VALUE ((64u << 20) - (128u << 10))
/** Largest batch, encoded (the same bound: one batch is one log record). */
#define AURAKV_MAX_BATCH ((64u << 20) - (64u << 10))

/** A store. Opaque. */
typedef struct aurakv aurakv_t;

/** Write flag: return only when the write is durable. */
#define AURAKV_SYNC 1u

/** What a report is about (the reporter option). */
typedef enum aurakv_report_kind {
	AURAKV_REPORT_INFO = 0,	      /* progress and facts: hint files rebuilt, torn tail,
					 log segments dropped after a rollover whose flush
					 a crash prevented (nothing in them was durable) */
	AURAKV_REPORT_CORRUPTION = 1, /* damaged record or file (verify, recovery, reads) */
	AURAKV_REPORT_LOCKED = 2,     /* the open failed: the message names the holder's PID */
	AURAKV_REPORT_IO_ERROR = 3,   /* the log's write path failed: a fail-stop (writes return
					 the error until the store is reopened) or the
					 preparation of a segment (writes that need it get the
					 error until a retry succeeds); the message names the
					 I/O and the error */
} aurakv_report_kind_t;

/** Store options. Start from aurakv_options_init(). */
typedef struct aurakv_options {
	/* Format: fixed when the store is created; ignored for an existing store. */
	uint64_t segment_size; /* bytes per log segment; default 16 MiB; 1 MiB .. 4 GiB,
				  a multiple of 4096. GC frees whole segments, and the active
				  and the next (preallocated) segment always take their full
				  size: smaller segments keep the space nearer gc_space_amp x
				  live, larger ones mean fewer files (at most 65536: 1 TiB of
				  log at 16 MiB) and allow larger values (a record must fit in
				  one segment: -EMSGSIZE above ~segment_size). */

	/* Opening */
	bool create_if_missing; /* default true */
	void (*reporter)(aurakv_report_kind_t kind, const char *message, void *arg);
	void *reporter_arg; /* reporter NULL (default): corruption, lock and I/O error
			       reports go to stderr, information is dropped. The reporter may run in any
			       thread - the caller's, the store's background thread - and
			       with the store's internal locks held: it must return
			       promptly and must not call the store. */

	/* Tuning */
	size_t cache_size;	 /* bytes of memory for the value cache, all of it: values,
				     their per-value overhead (~90 bytes), its tables and
				     ghost keys (~2 KiB at least); default 64 MiB; 0, or below
				     4 KiB = no cache (every get of a written record reads the
				     device). Only while the cache resizes a table is its
				     old copy held besides, for the moment of the copy. */
	unsigned compress_min;	 /* values of at least this many bytes are LZ4-compressed
				     when that saves >= 10 %; default 256; 0 = never */
	unsigned flush_delay_us; /* a write without AURAKV_SYNC reaches the device at most
				     this long after it returned; default 1000; 0 .. 10000000
				     (10 s); 0 = only when a buffer fills, on aurakv_sync()
				     or an AURAKV_SYNC write */
	bool background_gc;	 /* collect garbage in a background thread; default true.
				     false: only aurakv_compact() collects. */
	double gc_space_amp;	 /* the space amplification GC keeps under: bytes of the
				     log's segment files (the active and the ready one
				     included) / bytes of live records; never below what
				     whole segments allow (live ones, the active and the
				     ready one, one spare and one of room). Above it
				     writers are slowed (blocked a little per write, in
				     proportion to GC's progress); past 1.75x (at 1.5) they
				     wait for GC to release a segment - also when GC's
				     thread does not get the CPU: writers check the space
				     themselves at each new segment. Never while GC has
				     nothing to free. default 1.5; 1.1 .. 10 */
	bool write_hints;	 /* write hint files for sealed segments; default true */
	auraio_engine_t *engine; /* borrowed until close; NULL (default) = the store makes
				     its own */
} aurakv_options_t;

/** Fill `opts` with the defaults above. NULL is ignored. */
AURAKV_API void aurakv_options_init(aurakv_options_t *opts);

/**
 * Open (or create) the store in directory `dir`; `opts` NULL = defaults.
 * Recovery runs first: the log is checked, a torn tail after a crash is dropped (it was
 * never acknowledged; after a clean close there is none: records missing at the log's
 * end are damage, AURAKV_ECORRUPT), the index is rebuilt from hint files and the
 * unsealed part of the log. Every open (not only one that makes `dir`: it makes `dir`
 * if missing, not its parents) fsyncs the directory holding `dir`, which must therefore
 * be readable, and `dir` itself, so that the store's names survive a power loss with
 * what is acknowledged in it; a failure fails the open with its -errno, and a retry
 * syncs them again.
 * Returns 0 and *db, or: -EINVAL (NULL dir or db, bad option), -ENAMETOOLONG (`dir`
 * longer than PATH_MAX - 65 bytes: the store's file names must fit after it; nothing
 * is made), -ENOENT (no store and create_if_missing is false), AURAKV_ELOCKED (another
 * process has it open, or this one through a handle not yet closed: the reporter gets
 * a message naming the holder's PID), AURAKV_EFORMAT, AURAKV_ECORRUPT (damage the log
 * cannot recover from, reported), -ENOMEM, -ENOSPC or another -errno.
 */
AURAKV_API int aurakv_open(const char *dir, const aurakv_options_t *opts, aurakv_t **db);

/**
 * Make every write durable, stop the background threads, close. NULL is ignored.
 * Asynchronous gets still in flight complete first: each callback runs once, in this
 * thread, before it returns (a callback must not call the store).
 * Returns 0, or the error that kept writes from becoming durable (the store is closed
 * anyway; after -ENOSPC a write told -ENOSPC may be there after reopening: aurakv_put).
 * Afterwards the handle answers every call with AURAKV_ECLOSED (it keeps a few bytes for
 * that); it must not race with other calls on the store.
 */
AURAKV_API int aurakv_close(aurakv_t *db);

/**
 * Store `val` (vlen bytes, may be 0; val may be NULL if vlen is 0) under `key`. flags:
 * 0 or AURAKV_SYNC. The bytes are copied. Returns 0, or: -EINVAL (NULL db or key, NULL
 * val with vlen > 0, unknown flags), AURAKV_EKEYSIZE, AURAKV_EVALSIZE, AURAKV_ECLOSED,
 * -EMSGSIZE (the record, key and value with their framing, is larger than one log
 * segment holds: a store with small segment_size limits values below AURAKV_MAX_VALUE;
 * nothing stored), -ENOSPC (nothing stored; writes work again once space is freed on
 * the file system - deletes are writes and GC copies records, so neither can make room
 * on a device the store has filled. One exception, aurawal.h's: if the write's log
 * record reached the file and only the sync after it failed for lack of space, the
 * log's next write voids it, before a later put (any write that reaches the log) or
 * aurakv_sync() returns 0; if aurakv_close() returns -ENOSPC before that, or the machine
 * stops, the write may be there after reopening), -ENOMEM (nothing stored if the record could not
 * be built; if the index could not take the entry after its record was written, gets
 * keep answering the key's previous state until the store is reopened, and after a
 * reopen the write may be there), or the log's failure error (-EIO...: the store is
 * failed until reopened; the reporter is told once which I/O failed,
 * AURAKV_REPORT_IO_ERROR).
 */
AURAKV_API int aurakv_put(aurakv_t *db, const void *key, size_t klen, const void *val, size_t vlen,
			  unsigned flags);

/**
 * The value of `key`, in a new buffer: *val (free with aurakv_free; non-NULL even for
 * an empty value) and *vlen. Returns 0, AURAKV_ENOTFOUND, or: -EINVAL, AURAKV_EKEYSIZE,
 * AURAKV_ECLOSED, AURAKV_ECORRUPT (the record failed its checksum, holds another key, or
 * is not in the log at the place the index names: reported), -ENOMEM, -EIO (a failed
 * read; or the store's failure error when the key's last write returned 0 without
 * AURAKV_SYNC and was lost with the log write that failed the store: never stored, not
 * corruption).
 */
AURAKV_API int aurakv_get(aurakv_t *db, const void *key, size_t klen, void **val, size_t *vlen);

/**
 * The value of `key` into the caller's buffer `buf` of `cap` bytes; *vlen gets its
 * size. Returns 0, AURAKV_ENOBUFS (cap is too small: *vlen is the size needed, buf is
 * unspecified), or an error as for aurakv_get.
 */
AURAKV_API int aurakv_get_into(aurakv_t *db, const void *key, size_t klen, void *buf, size_t cap,
			       size_t *vlen);

/**
 * Delete `key`. flags: 0 or AURAKV_SYNC. Deleting a missing key is not an error (0,
 * and nothing is written; with AURAKV_SYNC, earlier writes are still made durable).
 * Returns 0 or an error as for aurakv_put.
 */
AURAKV_API int aurakv_delete(aurakv_t *db, const void *key, size_t klen, unsigned flags);

/** Free a value returned by aurakv_get or aurakv_multi_get. NULL is ignored. */
AURAKV_API void aurakv_free(void *p);

/** Make every write that returned before this call durable. Returns 0 or an error as
 * for aurakv_put. */
AURAKV_API int aurakv_sync(aurakv_t *db);

/* ---- Atomic write batches ---- */

/** A batch of puts and deletes, applied atomically by aurakv_write(). Opaque; not
 * thread-safe (one thread builds it); reusable after aurakv_batch_clear(). */
typedef struct aurakv_batch aurakv_batch_t;

/** A new, empty batch, or NULL (out of memory). Free with aurakv_batch_free. */
AURAKV_API aurakv_batch_t *aurakv_batch_new(void);
AURAKV_API void aurakv_batch_free(aurakv_batch_t *b); /* NULL ignored */
AURAKV_API void aurakv_batch_clear(aurakv_batch_t *b);

/** Add a put / a delete (copied). Later entries for the same key win. Returns 0, or
 * -EINVAL, AURAKV_EKEYSIZE, AURAKV_EVALSIZE, AURAKV_EBATCHSIZE (the batch would be too
 * large; it is unchanged), -ENOMEM. */
AURAKV_API int aurakv_batch_put(aurakv_batch_t *b, const void *key, size_t klen, const void *val,
				size_t vlen);
AURAKV_API int aurakv_batch_delete(aurakv_batch_t *b, const void *key, size_t klen);

/** Entries added since the batch was created or cleared. */
AURAKV_API size_t aurakv_batch_count(const aurakv_batch_t *b);

/**
 * Apply `b` atomically: one log record, one durable commit with AURAKV_SYNC. After a
 * crash either every entry is there or none is; concurrent gets see each key's new
 * value as soon as its entry is applied (a batch is not isolated from readers). An
 * empty batch writes nothing (with AURAKV_SYNC, earlier writes are still made durable).
 * The batch is not modified. Returns 0 or an error as for aurakv_put; -ENOMEM after its
 * record was written means the index could not take some of its entries: gets of those
 * keys keep answering their previous state until the store is reopened (the others see
 * the batch), and after a reopen the whole batch may be there.
 */
AURAKV_API int aurakv_write(aurakv_t *db, const aurakv_batch_t *b, unsigned flags);

/* ---- Asynchronous and multiple gets ---- */

/**
 * Completion of an asynchronous get: status 0 (val, vlen: the value, borrowed for the
 * duration of the callback only), AURAKV_ENOTFOUND, or an error as for aurakv_get.
 */
typedef void (*aurakv_get_cb)(void *arg, int status, const void *val, size_t vlen);

/**
 * Look `key` up without waiting for the device: one thread can keep many reads in
 * flight. The key is copied. If the answer needs no device read (a missing key, a
 * cached value, an error) `cb` runs before this returns; otherwise it runs in a thread
 * that calls aurakv_poll(). Returns 0 (cb runs exactly once) or -EINVAL,
 * AURAKV_EKEYSIZE, AURAKV_ECLOSED, -ENOMEM (cb does not run).
 * cb may call the store - another aurakv_get_async(), aurakv_poll(), aurakv_multi_get(),
 * writes - except while aurakv_close() runs it (see there); the store holds no lock of
 * its own around it. A get it starts that is answered at once runs its callback nested
 * in that call, up to 16 such calls deep on a thread (a chain: each callback starts the
 * next get). Deeper than that, the answer waits in a queue of the thread's and its
 * callback runs before the outermost of those calls returns (answers run in the order
 * they were found, each once, the call returning 0 as usual) - or earlier, in an
 * aurakv_poll() of its store made meanwhile on the thread, which runs it without waiting
 * (a deep callback can wait for its own get with `while (!done) aurakv_poll(db, -1);`) -
 * so a chain of any length, of one store or several, takes bounded stack. Until its
 * callback has run such a get is in flight: another thread must not close its store
 * meanwhile (a close in this thread runs it first).
 */
AURAKV_API int aurakv_get_async(aurakv_t *db, const void *key, size_t klen, aurakv_get_cb cb,
				void *arg);

/**
 * Run the callbacks of completed asynchronous gets; if none is ready, wait up to
 * `timeout_ms` (< 0 = no limit) while any is in flight, or while another thread runs a
 * callback of the caller's gets - until that callback returns: the get is delivered
 * then, and the poll returns (0 if it ran none). The caller's gets are those the calling
 * thread started, and those a callback of them started, in whichever thread it ran.
 * Another thread's callback is never waited for (it may run long, or wait for this
 * thread): with nothing of its own running elsewhere and nothing in flight, a poll
 * returns 0 at once. So `while (!done) aurakv_poll(db, -1);` sleeps until the callback
 * that sets done has run, whichever thread runs it. Answers of the store's gets waiting
 * in this thread's queue (a chain of gets nested deep, see aurakv_get_async) are ready:
 * it runs them without waiting. Returns the number of aurakv_get_async() callbacks run
 * in this call - this thread's gets' and any other thread's (see Threading); each is
 * counted once, by the innermost poll that ran it: a callback run by a poll nested in
 * another callback counts for the nested poll, not for the poll that runs the callback
 * it is nested in - or -EINVAL, AURAKV_ECLOSED. It may also deliver the reads of a
 * multi-get running in another thread (which then goes on): those are not callbacks of
 * the caller's, are not counted, and do not end the wait.
 */
AURAKV_API int aurakv_poll(aurakv_t *db, int timeout_ms);

/**
 * Get `n` keys at once, their reads in flight together (at most `depth` at a time; 0 =
 * 32). For each i: status[i] is 0 (vals[i] is a new buffer to free with aurakv_free,
 * vlens[i] its size), AURAKV_ENOTFOUND or an error as for aurakv_get (a bad keys[i] or
 * klens[i]: -EINVAL, AURAKV_EKEYSIZE); for any status but 0, vals[i] is NULL and vlens[i]
 * 0. Each key is looked up on its own: a key given twice gets two buffers. Returns 0
 * when every key has its status, or -EINVAL (a NULL array, n > 0), AURAKV_ECLOSED,
 * -ENOMEM (no key was looked up).
 */
AURAKV_API int aurakv_multi_get(aurakv_t *db, size_t n, const void *const *keys,
				const size_t *klens, void **vals, size_t *vlens, int *status,
				unsigned depth);

/* ---- Iteration, maintenance, statistics ---- */

/**
 * Call `cb` for every live key >= `start` (slen bytes; NULL/0 = from the first key), in
 * key order, with its value (borrowed for the call). Keys written while it runs may or
 * may not be seen (not a snapshot). cb may call the store (not aurakv_close()): the walk
 * holds no lock while it runs. A key deleted before the walk reaches it is not visited;
 * keys the callback writes may or may not be. A non-zero return from cb stops it and
 * is returned.
 * Returns 0 at the end, the callback's value, or: -EINVAL (NULL cb, NULL start with
 * slen > 0), AURAKV_EKEYSIZE (slen > AURAKV_MAX_KEY; slen 0 is "from the first key"),
 * or an error as for aurakv_get.
 */
AURAKV_API int aurakv_foreach(aurakv_t *db, const void *start, size_t slen,
			      int (*cb)(void *arg, const void *key, size_t klen, const void *val,
					size_t vlen),
			      void *arg);

/**
 * Collect garbage now, whatever the pacing: every sealed segment with dead bytes is
 * copied forward and released (waits for it). Returns 0 or an error as for aurakv_put:
 * on a failed store its failure error (-EIO...), even with nothing to collect; -ENOMEM
 * (the index could not take the switch of a key to its copy) or -ENOSPC (no room for
 * the copies): the segment being collected is kept, every value in it still reads, and
 * a later pass collects it. Or AURAKV_ECORRUPT: a segment to collect holds a damaged
 * record. GC, in this call or in the background, reports such damage once
 * (AURAKV_REPORT_CORRUPTION, with the segment and offset), keeps that segment - every
 * intact record in it still reads - and does not try it again until the store is
 * reopened; the other segments are collected, and every later aurakv_compact() returns
 * AURAKV_ECORRUPT while it is kept (the damage is in the log: aurakv_verify() lists it).
 */
AURAKV_API int aurakv_compact(aurakv_t *db);

/** One log segment as the store sees it. */
typedef struct aurakv_segment_stats {
	uint64_t number;
	uint64_t total_bytes; /* bytes of records in it */
	uint64_t live_bytes;  /* of which still the latest record of their key */
	bool sealed;
	bool has_hint; /* a valid hint file was written for it */
} aurakv_segment_stats_t;

/** Counters of a store. */
typedef struct aurakv_stats {
	uint64_t keys;	      /* live keys */
	uint64_t live_bytes;  /* bytes of log records that are the latest of their key */
	uint64_t total_bytes; /* bytes of log records in the log */
	uint64_t disk_bytes;  /* bytes of files in the store's directory */
	uint64_t segments;    /* log segments */
	/* Counters: since the store was opened (cache, compression, GC and hints too).
	 * gets counts every value looked up: each get of any kind, each key of a
	 * multi-get, each key aurakv_foreach() visits (get_misses: those not found, e.g.
	 * deleted while the iteration ran). */
	uint64_t puts, deletes, batches, gets, get_misses;
	uint64_t cache_hits, cache_misses;
	uint64_t cache_bytes;  /* memory the cache holds, all of it (<= cache_size) */
	double cache_hit_rate; /* hits / (hits + misses), 0 if none */
	uint64_t index_bytes;  /* memory held by the index */
	double index_bytes_per_key;
	uint64_t compressed_values; /* values LZ4-compressed by writes */
	uint64_t gc_runs;	    /* segments collected */
	uint64_t gc_bytes_copied;   /* live bytes copied forward */
	uint64_t gc_bytes_freed;    /* segment bytes released */
	uint64_t gc_stalls;	    /* writes that waited for GC (back-pressure: switched
				       on by GC or by a writer that found the space past
				       a mark at a new segment; docs/kv_design.md) */
	double gc_stall_ms;	    /* total time writes waited */
	uint64_t hints_written;	    /* hint files written */
	auraio_stats_t io;	    /* the engine's stats (auraio.h) */
} aurakv_stats_t;

/** Copy the store's counters. Returns 0, -EINVAL, AURAKV_ECLOSED. */
AURAKV_API int aurakv_get_stats(aurakv_t *db, aurakv_stats_t *out);

/** Copy up to `max` segments (oldest first); *count gets their total number. Returns 0,
 * -EINVAL, AURAKV_ECLOSED. */
AURAKV_API int aurakv_get_segment_stats(aurakv_t *db, aurakv_segment_stats_t *out, size_t max,
					size_t *count);

/** What aurakv_verify found. */
typedef struct aurakv_verify_result {
	uint64_t records;   /* log records checked */
	uint64_t segments;  /* segments read */
	uint64_t hints;	    /* hint files checked */
	uint64_t corrupt;   /* damaged records or ranges (each reported) */
	uint64_t bad_hints; /* hint files that are damaged, disagree with the log, or
			       cannot be read as a file (open reads the segment instead) */
} aurakv_verify_result_t;

/**
 * Check the store in `dir` without changing it: every record of the log (checksum,
 * format, key), every hint file (checksums, order, that each entry matches the record
 * it names, and that its header's total bytes and highest version are its segment's:
 * open trusts them). Each problem goes to the reporter of `opts` (NULL = stderr). The
 * store must not be open in another process. Returns 0 if nothing is wrong,
 * AURAKV_ECORRUPT if anything is (counts in *res, which may be NULL), or an error of
 * aurakv_open (-ENOENT for a directory that holds no store: it is left untouched).
 */
AURAKV_API int aurakv_verify(const char *dir, const aurakv_options_t *opts,
			     aurakv_verify_result_t *res);

/** Text for 0, -errno or an AURAKV_ code. Never NULL. */
AURAKV_API const char *aurakv_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* AURAKV_H */
