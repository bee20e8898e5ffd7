/* SPDX-License-Identifier: MIT */
/*
 * aurawal.h - AuraWAL, a segmented, checksummed, group-committed write-ahead log on
 * AuraIO. docs/wal_format.md specifies the bytes on disk.
 *
 * This header is the manual: each function lists what it returns, every error, who owns
 * what, and which threads may call it.
 *
 * Model
 *   A log is a directory of fixed-size segment files. Each append adds one record (one
 *   or more gathered byte ranges) and returns its location (segment, offset, size) and
 *   a sequence number that grows with every append. Durable appends from many threads
 *   are group-committed: one thread writes the whole batch with one aligned write and
 *   makes it durable, then the others return.
 *
 * Durability contract
 *   When a durable append returns 0 (or its callback gets status 0), or aurawal_sync()
 *   returns 0, the records concerned survive a crash of the process or the machine -
 *   including when a later write to the same 4 KiB block is torn and only a prefix of
 *   its 512-byte sectors reaches the disk. A non-durable record survives once a later
 *   durable append or aurawal_sync() has returned. Nothing is ever acknowledged that
 *   is not stored. A log appended to only without durability never flushes the device,
 *   not even when it rolls over to a new segment: the flushes a rollover needs are paid
 *   by the next durable append, aurawal_sync() or aurawal_close(), before they return.
 *   After a crash in between, the log ends where the device's cache lost data - never
 *   with a hole before an acknowledged record (docs/wal_format.md, "Recovery rule").
 *
 * Errors
 *   0 on success, -errno for system errors, or a code of the reserved band below.
 *   aurawal_strerror() describes all of them. After an I/O error on the write or sync
 *   path (EIO and the like) the log is failed: every later append and sync returns that
 *   error until the log is reopened (retrying an fsync after EIO could acknowledge lost
 *   data); the reporter is told once which I/O failed (AURAWAL_REPORT_FAILED). An append
 *   told that error may still be found in the log after reopening (its write may have
 *   reached the device before the sync failed): unacknowledged, not promised. ENOSPC
 *   is different: the appends that could not be stored get -ENOSPC, and appending
 *   works again once space is available, without reopening. An append told
 *   -ENOSPC (returned, or given to its callback) is not stored: it is never found in the
 *   log afterwards (its place holds a VOID record, docs/wal_format.md) - with one
 *   exception. If the write carrying it reached the file and only the sync after it
 *   failed for lack of space, the record lies in the file until the log writes again:
 *   that write, which comes before any later append or sync returns 0, makes it a VOID.
 *   If the log is closed before (aurawal_close() returns -ENOSPC), or the machine stops,
 *   the record may be found after reopening: unacknowledged, not promised, as after
 *   EIO. Appends that returned 0 without AURAWAL_DURABLE were buffered and stay so: they
 *   are written once space returns, and aurawal_sync() fails with -ENOSPC until then.
 *
 * Threading
 *   All functions may be called from any thread concurrently, except aurawal_close(),
 *   which must be the last call on the log. Callbacks of asynchronous appends run in a
 *   thread that calls aurawal_poll(), aurawal_sync(), aurawal_flush() or a synchronous
 *   append on the log; a callback may append. Callbacks of asynchronous reads run only
 *   in a thread that calls aurawal_poll() or aurawal_poll_until() (or in
 *   aurawal_close()): never inside an append, sync or flush, whose caller may hold locks
 *   of its own.
 *   fork(): a child must not use (nor close) a log opened before the fork - its writer
 *   thread stays the parent's - and should exec before opening one (auraio.h).
 */
#ifndef AURAWAL_H
#define AURAWAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "auraio.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AURAWAL_VERSION_MAJOR 0
#define AURAWAL_VERSION_MINOR 1
#define AURAWAL_VERSION_PATCH 0

#if defined(AURAWAL_STATIC_DEFINE)
#define AURAWAL_API
#else
#define AURAWAL_API __attribute__((visibility("default")))
#endif

/** Library error codes (a reserved band; system errors are -errno). */
#define AURAWAL_ECORRUPT (-31001) /* a checksum or format check failed */
#define AURAWAL_ECLOSED	 (-31002) /* the log is closing */
#define AURAWAL_EFORMAT	 (-31003) /* not a log, or a format version this library cannot read */
#define AURAWAL_ELOCKED	 (-31004) /* another process has the log open */

/** Largest record payload, in bytes (64 MiB) - and at most segment_size - 4200 (the
 * header block, the record's header, a SYNC mark and a SEAL: docs/wal_format.md). */
#define AURAWAL_MAX_RECORD (64u << 20)

/** A log. Opaque. */
typedef struct aurawal aurawal_t;

/** Where a record is: segment number, byte offset in the segment, payload size. A plain
 * value the caller may store anywhere (the store keeps one per key). */
typedef struct aurawal_loc {
	uint64_t segment;
	uint32_t offset;
	uint32_t size;
} aurawal_loc_t;

/** What recovery does with damage followed by valid records (docs/wal_format.md). */
typedef enum aurawal_recovery {
	AURAWAL_RECOVER_STRICT = 0,	   /* report it and fail the open (default) */
	AURAWAL_RECOVER_POINT_IN_TIME = 1, /* report it, truncate the log there, open */
	AURAWAL_RECOVER_INSPECT = 2,	   /* read-only: report every damaged range and read
					      past it; appends and releases fail with -EROFS,
					      sync and flush have nothing to do (0), and
					      nothing in the directory changes (tools) */
} aurawal_recovery_t;

/**
 * How a batch is made durable; both give the same guarantee. DSYNC, the default, is one
 * write with RWF_DSYNC: the kernel syncs from the write's own completion, without
 * handing the batch back to the log's writer thread between the write and the sync.
 * Such a write may go to the disk on its own (FUA) without flushing the device's cache,
 * so it makes only its own blocks durable: a batch that follows records written
 * without a sync (the flush delay, aurawal_flush) is written as with FDATASYNC, so that
 * its acknowledgement covers them too. That hop is
 * a thread wake-up, dear on a small virtual machine: 32 appenders reached 1.09x (median
 * of 16 paired runs; 15 of 16 faster) the rate of FDATASYNC, one appender the same.
 * FDATASYNC is a write linked to an fdatasync in one submission.
 */
typedef enum aurawal_sync_mode {
	AURAWAL_SYNC_FDATASYNC = 0, /* write, then fdatasync, linked in one submission */
	AURAWAL_SYNC_DSYNC = 1,	    /* one write with RWF_DSYNC (default) */
} aurawal_sync_mode_t;

/** What a report is about. */
typedef enum aurawal_report_kind {
	AURAWAL_REPORT_CORRUPTION = 1, /* damage followed by valid records, or a bad header */
	AURAWAL_REPORT_TORN_TAIL = 2,  /* the clean end of the log had a partial record */
	AURAWAL_REPORT_DROPPED = 3,    /* dropped at open: point-in-time recovery truncated this
					  range, or a segment after a crash before its
					  rollover was flushed (nothing durable in it) */
	AURAWAL_REPORT_LOCKED = 4,     /* the open failed: another process holds the log */
	AURAWAL_REPORT_FAILED = 5,     /* the log failed (fail-stop, see Errors): the I/O that
					  failed - segment, offset, length (0 if not a range;
					  segment 0 for the directory) - and its error */
	AURAWAL_REPORT_PREPARE = 6,    /* preparing the next segment failed (the segment it
					  was for, the step and the error); appends that need
					  it get the error until a retry succeeds. Once per
					  change of error, not per retry */
} aurawal_report_kind_t;

/** One finding of recovery (or of the iterator in inspect mode), or a failure of the
 * running log (FAILED, PREPARE: reported from the log's threads or an appender's, with
 * no lock of the log held; the reporter must return promptly and must not call the
 * log). */
typedef struct aurawal_report {
	aurawal_report_kind_t kind;
	uint64_t segment;
	uint64_t offset; /* where the damage starts */
	uint64_t length; /* bytes up to the next valid record or the end of the data */
	const char *reason;
} aurawal_report_t;

/** Log options. Start from aurawal_options_init(). aurawal_open() refuses a value out
 * of its range, or an unknown enum value, with -EINVAL before it touches the disk. */
typedef struct aurawal_options {
	/* Format: fixed when the log is created; ignored for an existing log. */
	uint64_t segment_size; /* bytes per segment; default 64 MiB; a multiple of 4096 in
				  1 MiB .. 4 GiB. A record must fit in one segment. */

	/* Opening */
	bool create_if_missing;					     /* default true */
	aurawal_recovery_t recovery;				     /* default STRICT */
	void (*reporter)(const aurawal_report_t *report, void *arg); /* default NULL: reports
									 go to stderr */
	void *reporter_arg;
	bool scan_sealed; /* default true: open reads and checks every record of every
			     segment. false: a sealed segment whose seal block is valid is
			     trusted - only its SEAL record is read and checked - so opening a
			     large log reads little; damage inside such a segment is then found
			     when its records are read (aurawal_read, the iterator, waldump),
			     not at open. docs/wal_format.md, "Summaries at open". */

	/* Tuning */
	size_t buffer_size;	       /* bytes a batch may gather; default 1 MiB; a multiple
					of 4096 in 64 KiB .. 256 MiB. A larger record gets a
					batch of its own. */
	unsigned flush_delay_us;       /* a non-durable record is written at most this long
					after it was appended; default 1000, at most
					10000000 (10 s); 0 = only when a buffer fills, on
					aurawal_sync(), aurawal_flush(), a durable append,
					or an aurawal_poll() that waits for an async one */
	aurawal_sync_mode_t sync_mode; /* default DSYNC (see aurawal_sync_mode_t) */
	unsigned spare_segments;       /* released segments kept as spares for reuse;
					default 1, in 1 .. 64 */
	bool recycle_segments;	       /* released segments become spares instead of being
					deleted; default true */
	bool flush_on_rollover;	       /* default false: a rollover does not flush; what it
					owes is paid by the next durable append, sync or
					close (docs/wal_format.md, "Rollover without a
					flush"). true: every rollover flushes at once, as
					does aurawal_release_before() - the cost then falls
					on the appenders that roll over, not on the next
					sync (the store sets it: its GC syncs before every
					release and must not carry a backlog of flushes
					while writers run unthrottled). */
	auraio_engine_t *engine;       /* borrowed; NULL (default) = the log makes its own */
} aurawal_options_t;

/** Fill `opts` with the defaults above. */
AURAWAL_API void aurawal_options_init(aurawal_options_t *opts);

/**
 * Open (or create) the log in directory `dir`; `opts` NULL = defaults.
 * Recovery runs first (docs/wal_format.md): a torn or zeroed tail is the clean end and
 * appends continue there; damage followed by valid records - or, after a clean close,
 * records missing before the end its close block names (a file cut short, a damaged
 * last record: no crash leaves those) - is reported through the reporter and, in
 * STRICT mode, fails the open with AURAWAL_ECORRUPT.
 * On damage (docs/wal_format.md, "What an open guarantees on damage"): every byte of a
 * record (header, payload, pad), every segment header and RELEASED is verified, and no
 * record is ever returned with other content than it was appended with. A STRICT open
 * fails with AURAWAL_ECORRUPT, deleting no segment that holds records, on damage that
 * anything valid after it proves was durable - a later record, a SYNC mark or seal block
 * after it, a close block naming a later end, a segment missing between two others - and
 * on a damaged RELEASED, a segment file of another log, one holding another segment's
 * header (renamed), or a bad header in a file shorter than the segment size (cut: no
 * crash leaves a segment file short - the last segment holding records cut inside its
 * header block took its close block along; not after a close block, which proves the
 * file held no record). It succeeds, and reports what it drops
 * (AURAWAL_REPORT_TORN_TAIL / _DROPPED, as information), only when nothing valid
 * follows: the last segment's records from the first invalid byte on when no close
 * block vouches for them (a torn write, or damage there - the two look alike), and
 * segments after a break that no durable evidence covers (a bad header among them only
 * in a file of full size: a rollover whose flush a crash lost). Deleting the oldest
 * segments cannot be seen: it is what aurawal_release_before() leaves. Bytes that hold
 * no record (a header block past its summary, a segment's tail after its last record or
 * SEAL, bytes past the segment size) are not looked at. With scan_sealed false, damage
 * inside a trusted sealed segment is found by aurawal_read() and the iterator
 * (AURAWAL_ECORRUPT), not here.
 * Creating a log (create_if_missing, and no segment in `dir`) makes `dir` if it is
 * missing (not its parents) and fsyncs the directory holding it before the first
 * segment, so that the log's own name survives a power loss with what is acknowledged
 * in it; that directory must therefore be readable. A failure there fails the open with
 * its -errno and leaves no segment: a retry creates the log again and syncs again.
 * Returns 0 and *log, or: -EINVAL (bad option or NULL), -ENOENT (no log and
 * create_if_missing is false, or inspect mode: the directory is left as it was),
 * AURAWAL_EFORMAT, AURAWAL_ECORRUPT, AURAWAL_ELOCKED
 * (another process holds the log; the message names its PID through the reporter),
 * -ENOSPC, -ENOMEM, or another -errno.
 */
AURAWAL_API int aurawal_open(const char *dir, const aurawal_options_t *opts, aurawal_t **log);

/**
 * Make everything appended durable, then close. NULL is ignored. Returns 0, or the error
 * that kept buffered records from becoming durable (the log is closed anyway): the log's
 * failure error, or -ENOSPC - close does not wait for space to return, and the buffered
 * records that could not be written are not in the log (but a record whose write reached
 * the file before its sync failed may be: see Errors above, and this includes appends told
 * -ENOSPC) - or the error of the flushes close still owes: the ready segment's header
 * (prepared without a flush, flush_on_rollover false) and the directory (names changed
 * since its last sync). After a close that returned 0 nothing is owed: a power loss then
 * loses nothing and the next open drops nothing.
 * Must not race with any other call on the log. Asynchronous reads still in flight
 * complete first, and every async callback still pending runs once, in this thread,
 * before it returns (a read's callback may start another read; it completes too).
 * Close every iterator first (aurawal_iter_close): one left open refers to the log,
 * and closing it afterwards uses freed memory.
 */
AURAWAL_API int aurawal_close(aurawal_t *log);

/** aurawal_append flag: return only when the record is durable. */
#define AURAWAL_DURABLE 1u

/**
 * Append one record, the concatenation of iov[0..iovcnt) (an empty record is valid:
 * iovcnt 0). The bytes are copied before the call returns. With AURAWAL_DURABLE, return
 * when the record is durable (group-committed with concurrent appends); otherwise when
 * it is buffered (written within flush_delay_us). `loc` and `seq` (may be NULL) receive
 * the record's location and sequence number.
 * Returns 0, or: -EINVAL (NULL log, iov NULL with iovcnt > 0, iovcnt < 0, unknown
 * flags), -EMSGSIZE (larger than AURAWAL_MAX_RECORD or than a segment holds),
 * AURAWAL_ECLOSED, -EROFS (inspect mode), -ENOSPC, or the log's failure error (-EIO...).
 */
AURAWAL_API int aurawal_append(aurawal_t *log, const struct iovec *iov, int iovcnt, unsigned flags,
			       aurawal_loc_t *loc, uint64_t *seq);

/** Completion of an asynchronous append: status 0 (durable, or written if not
 * AURAWAL_DURABLE) or a negative error as for aurawal_append. */
typedef void (*aurawal_append_cb)(void *arg, int status, aurawal_loc_t loc, uint64_t seq);

/**
 * Append without waiting: the bytes are copied before the call returns, and `cb` runs
 * once the record is durable (or written), in a thread that calls aurawal_poll(),
 * aurawal_sync() or a synchronous append. A single thread can keep many appends in
 * flight this way. Returns 0 (cb will run exactly once) or an error as for
 * aurawal_append (cb will not run).
 */
AURAWAL_API int aurawal_append_async(aurawal_t *log, const struct iovec *iov, int iovcnt,
				     unsigned flags, aurawal_append_cb cb, void *arg);

/**
 * Run the callbacks of completed asynchronous appends and reads; if none is ready, wait
 * up to `timeout_ms` (< 0 = no limit) while anything is in flight, or while another
 * thread runs a callback of the caller's work - until that callback returns: the work is
 * delivered then, and the poll returns (0 if it ran none). The caller's work is what the
 * calling thread started, and what a callback of that work started, in whichever thread
 * it ran. A callback of other work is never waited for (it may run long, or wait for
 * this thread): with nothing of its own running elsewhere and nothing in flight, a poll
 * returns 0 at once. So `while (!done) aurawal_poll(log, -1);` sleeps until its callback
 * has run, whichever thread runs it. It runs at most the callbacks ready when it starts,
 * taking them one at a time: while one runs, the others stay ready for other threads'
 * polls (a long callback holds up no other). A poll that may wait (timeout_ms != 0) with
 * flush_delay_us 0 has the asynchronous appends not yet written written (as
 * aurawal_flush() would, without a sync) before it waits, and those appended while it
 * waits too: nothing else would write a non-durable one.
 * Returns the number of callbacks run, or -EINVAL.
 */
AURAWAL_API int aurawal_poll(aurawal_t *log, int timeout_ms);

/**
 * As aurawal_poll(), but the wait ends when `stop(arg)` returns true - and only then (or
 * when a callback ran in this call, or at the timeout): it goes on even while nothing is
 * in flight, for a caller that waits for a callback of work not its own that another
 * thread is running (aurawal_poll waits only for the caller's own work). `stop` is asked
 * with the log's lock held - before waiting, and again each time a callback returns in
 * any thread and when a wait for the engine ends (at most a millisecond while reads are
 * in flight) - so it must be quick and must not call the log: typically it reads a
 * counter the callbacks update. Returns the number of callbacks run, or -EINVAL (log or
 * stop NULL).
 */
AURAWAL_API int aurawal_poll_until(aurawal_t *log, int timeout_ms, bool (*stop)(void *arg),
				   void *arg);

/** Make every record appended before this call durable, and every release made before
 * it (aurawal_release_before: the directory is synced even when every record is durable
 * already; a failure of that sync fails the log, as for a durable append). Returns 0 or
 * an error as for a durable append. */
AURAWAL_API int aurawal_sync(aurawal_t *log);

/**
 * Write every record appended before this call, without making it durable: afterwards
 * aurawal_read() and the iterators see them (they read what is written). No flush.
 * Returns 0 (they are all written - also on a failed log, if they were before it
 * failed), -EINVAL, -ENOSPC (some of them cannot be written for lack of space yet),
 * AURAWAL_ECLOSED, or the log's failure error (some of them are not written).
 */
AURAWAL_API int aurawal_flush(aurawal_t *log);

/**
 * Read the record at `loc` (as returned by an append or the iterator) into `buf`,
 * verifying its checksum - one aligned read through registered buffers, or from memory
 * if the record is not written yet. `*len` (may be NULL) gets the payload size, `*seq`
 * (may be NULL) its sequence number. Any thread.
 * Returns 0, or: -EINVAL (NULL, or loc outside the segment), -EMSGSIZE (cap < loc.size),
 * -ENOENT (the segment was released or never existed, or the record there is no
 * append: voided - its append failed with -ENOSPC - or the log's own, a SEAL or a SYNC
 * mark), AURAWAL_ECORRUPT (the checksum, marker or size does not match: loc does not
 * name an intact record), the log's
 * failure error (-EIO...: the record was appended but not written when the log failed -
 * the write that carried it failed, or it was still waiting in memory and nothing is
 * written after a failure - so it was never stored: not corruption, and not reported as
 * such), or -errno.
 */
AURAWAL_API int aurawal_read(aurawal_t *log, aurawal_loc_t loc, void *buf, size_t cap, size_t *len,
			     uint64_t *seq);

/** A sequential reader. Opaque. */
typedef struct aurawal_iter aurawal_iter_t;

/**
 * Iterate over the records from `from` (segment 0 = the oldest record, whatever the
 * offset and length say) to the end of
 * what is written when each step is taken. `from` is where a record starts - a
 * location an append or the iterator returned, or the end of what is appended to its
 * segment - or an offset below 4096 for the segment's first record; from the middle of
 * a record, the first step returns AURAWAL_ECORRUPT. Returns 0 and *it, -EINVAL (NULL,
 * or an offset past the end of the segment's records or not a multiple of 8), -ENOENT
 * (the segment was released or does not exist yet), -ENOMEM. Close with
 * aurawal_iter_close().
 */
AURAWAL_API int aurawal_iter_open(aurawal_t *log, aurawal_loc_t from, aurawal_iter_t **it);

/**
 * The next record: returns 1 and fills loc, seq, payload (valid until the next call or
 * close; owned by the iterator) and len; 0 at the end; AURAWAL_ECORRUPT if a record is
 * damaged (in inspect mode damage is reported and skipped instead); or -errno.
 * Any argument but `it` may be NULL.
 */
AURAWAL_API int aurawal_iter_next(aurawal_iter_t *it, aurawal_loc_t *loc, uint64_t *seq,
				  const void **payload, size_t *len);

/** What a record of the log is (docs/wal_format.md, "Record"). Values are the type byte
 * on disk: never renumbered. */
typedef enum aurawal_record_type {
	AURAWAL_RECORD_DATA = 1, /* an append: what aurawal_iter_next returns */
	AURAWAL_RECORD_SEAL = 2, /* the last record of a segment closed for a rollover;
				    payload: the next segment's number, 8 bytes LE */
	AURAWAL_RECORD_SYNC = 3, /* a sync mark (no payload): recovery's evidence that
				    everything before its segment was durable */
	AURAWAL_RECORD_VOID = 4, /* an append refused for lack of space (-ENOSPC) before it
				    was written: its place and sequence number, zero bytes */
} aurawal_record_type_t;

/** One record as aurawal_iter_next_record() returns it. */
typedef struct aurawal_record {
	aurawal_loc_t loc;
	uint64_t seq;
	aurawal_record_type_t type;
	const void *payload; /* valid until the next call or close; owned by the iterator */
	size_t len;
} aurawal_record_t;

/**
 * As aurawal_iter_next(), but every record of the log, the log's own too - SEAL, SYNC
 * marks, VOID records - each with its type: what explains a gap in the sequence
 * numbers or offsets of the appends (waldump --all). Steps of the two calls may be
 * mixed on one iterator. Returns 1 and fills *rec, 0 at the end, or an error as for
 * aurawal_iter_next (-EINVAL if rec is NULL).
 */
AURAWAL_API int aurawal_iter_next_record(aurawal_iter_t *it, aurawal_record_t *rec);

/** Close an iterator. NULL is ignored. */
AURAWAL_API void aurawal_iter_close(aurawal_iter_t *it);

/**
 * Release every segment numbered below loc.segment (the segment holding loc stays): the
 * files are recycled as spares or deleted - deleted at once if a reader or iterator is
 * still in one: it finishes its read through the file it has open. Readers and iterators
 * positioned in a released segment get -ENOENT afterwards. A segment whose last records are
 * still being written (its SEAL, or records appended without AURAWAL_DURABLE) is released
 * only once they are written: the call waits for that (not for a sync: a released segment
 * is not needed). The release itself becomes durable with the next durable append, sync or
 * close; after a crash before that, released segments may be found again at open, in front
 * of the log. With flush_on_rollover the call syncs the directory itself; if that sync
 * fails, the segments are released all the same (their number is returned) and the sync
 * stays owed as without flush_on_rollover: the next durable append, sync or close makes it,
 * and fails the log if it fails.
 * Returns the number of segments released, or -EINVAL, -EROFS, -ENOSPC (the segment's
 * last records cannot be written for lack of space yet; it was not released: retry
 * later), the log's failure error, or -errno. If some segments were released before one
 * of these errors, their number is returned. A segment released is out of the log: a
 * retry does not count it again.
 */
AURAWAL_API int aurawal_release_before(aurawal_t *log, aurawal_loc_t loc);

/**
 * Release one segment (not the active one): its file is recycled, or deleted - at once if a
 * reader or iterator is still in it, which finishes its read through the file it has open.
 * The release is recorded durably first (docs/wal_format.md, RELEASED), so recovery knows
 * the gap is intended, and the file's removal is durable when the call returns 0: a crash
 * afterwards never finds the segment again. The caller must know that nothing in it is
 * still needed (the store's GC copies live records out and syncs first). If the segment's
 * last records are still being written, the call first waits until they are written, as
 * aurawal_release_before() does.
 * Returns 0, -ENOENT (no such segment), -EBUSY (the active segment), -EROFS, -EINVAL,
 * -ENOSPC (as for aurawal_release_before: not released, retry later), the log's failure
 * error, or -errno. An error means the segment was not released: it stays, readable
 * now and after reopening, and a retry may succeed - but if the error is a failed
 * directory sync, a crash before the directory's next sync may leave the record of the
 * release in place, and the next open then finds the segment released. One exception:
 * releasing the *oldest* segment, which RELEASED does not record, the directory sync
 * after its file was removed failed. The segment is then out of the log (a retry gets
 * -ENOENT) but its removal is not durable: the sync stays owed to the next durable
 * append, sync or close (whose failure fails the log), and a crash before that may find
 * the segment again in front of the log, as after aurawal_release_before(). For any
 * other segment that last sync failing does not matter - RELEASED, durable before the
 * file was removed, has the next open delete it - and the call returns 0 (the sync
 * stays owed the same way).
 */
AURAWAL_API int aurawal_release_segment(aurawal_t *log, uint64_t number);

/** Completion of an asynchronous read: status 0 (the payload is in the caller's
 * buffer, `len` bytes, sequence `seq`) or an error as for aurawal_read. */
typedef void (*aurawal_read_cb)(void *arg, int status, size_t len, uint64_t seq);

/**
 * Read the record at `loc` into `buf` without waiting; `cb` runs once, in a thread that
 * calls aurawal_poll() (or aurawal_poll_until), when the payload is there (or with an
 * error). `buf` is borrowed until then. One thread can keep many reads in flight this
 * way (the store's async and multi-get); while the engine's ring is full, this call
 * waits for room (it reaps). A read the kernel completes short is read on from its
 * completion, which may run in any thread that reaps the engine: if the ring has no
 * room for the rest then, the rest is not waited for there but submitted again by the
 * next aurawal_poll() (which keeps driving it, as any read in flight) or by
 * aurawal_close().
 * Returns 0 (cb will run), or an error as for aurawal_read (cb will not run).
 */
AURAWAL_API int aurawal_read_async(aurawal_t *log, aurawal_loc_t loc, void *buf, size_t cap,
				   aurawal_read_cb cb, void *arg);

/** The AuraIO engine the log does its I/O on (borrowed; valid until close). For stats,
 * and for a client that wants to do its own file I/O on the same engine. */
AURAWAL_API auraio_engine_t *aurawal_engine(aurawal_t *log);

/** One segment, as listed by aurawal_list_segments(). */
typedef struct aurawal_segment_info {
	uint64_t number;
	uint64_t first_seq; /* 0 if the segment holds no record yet */
	uint64_t last_seq;
	uint64_t bytes; /* bytes of records written */
	bool sealed;	/* closed by a rollover */
} aurawal_segment_info_t;

/**
 * Copy up to `max` segments (oldest first) into `out`; `*count` gets the total number
 * of segments. Returns 0 or -EINVAL.
 */
AURAWAL_API int aurawal_list_segments(aurawal_t *log, aurawal_segment_info_t *out, size_t max,
				      size_t *count);

/** Counters of a log. */
typedef struct aurawal_stats {
	uint64_t appends;	  /* records appended */
	uint64_t durable_appends; /* of which durable */
	uint64_t bytes;		  /* payload bytes appended */
	uint64_t writes;	  /* batch writes issued */
	uint64_t syncs;		  /* batches made durable */
	double records_per_sync;  /* appends / syncs: the figure of group commit */
	double sync_p50_us, sync_p99_us, sync_max_us; /* write+sync latency of durable batches:
							 quantiles are upper bounds within 1/16
							 (log-linear buckets of us), capped at
							 the exact maximum */
	uint64_t segments;			      /* segments in the log */
	uint64_t segment_size; /* bytes per segment file (an existing log keeps the size it
				  was created with, whatever the options say) */
	uint64_t next_seq;     /* the sequence the next append gets */
	int failed;	       /* the error that failed the log, 0 if none */
} aurawal_stats_t;

/** Copy the log's counters. Returns 0 or -EINVAL. */
AURAWAL_API int aurawal_get_stats(aurawal_t *log, aurawal_stats_t *out);

/**
 * The error that failed the log (fail-stop: -EIO..., as aurawal_stats_t.failed), or 0
 * while it is healthy; -EINVAL if `log` is NULL. Lock-free (one relaxed load), so cheap
 * enough to ask on every read: a reader that keeps copies of records read back (a cache)
 * must stop serving those of records that were not yet written once the log failed,
 * since they are lost - aurawal_read() answers this error for them. Any thread.
 */
AURAWAL_API int aurawal_failed(aurawal_t *log);

/** Text for 0, -errno or an AURAWAL_ code. Never NULL. */
AURAWAL_API const char *aurawal_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* AURAWAL_H */
