/* SPDX-License-Identifier: MIT */
/*
 * wal_append.c - the appenders' side: batches, placing records, rolling over, and the
 * append/sync/flush API.
 *
 * Appenders hash their payload outside the lock, then under log->mu place the record in
 * the active batch (sequence number, header, checksum, copy) and, if durable, queue a
 * waiter and sleep on it without the lock (wal_wait.h) until the writer thread
 * (wal_writer.c) has made the record durable. A lone durable appender writes its batch
 * itself (write_own_batch). A segment's first durable write carries its SYNC mark
 * (docs/wal_format.md, "Rollover without a flush").
 *
 * Lock: log->mu around all state; never held across I/O, a wake-up or a user callback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wal_internal.h"
#include "wal_wait.h"

#define SEAL_SIZE wal_rec_size(WAL_SEAL_PAYLOAD)
#define MARK_SIZE wal_rec_size(0)
#define BIG_ROUND (64u << 10) /* large buffers grow in these steps */

/* ---- batches (mu held) ---- */

/* Tell the writer something changed - unless it is busy with I/O: it looks at
 * everything again as soon as that completes. */
static void writer_poke(struct aurawal *log)
{
	if (!log->io_busy)
		pthread_cond_signal(&log->cv_writer);
}

static struct wal_batch *batch_new(struct aurawal *log)
{
	struct wal_segment *seg = log->active;
	struct wal_batch *b = NULL;

	for (int i = 0; i < log->nbufs && !b; i++)
		if (!log->bufs[i].busy)
			b = &log->bufs[i];
	if (!b)
		return NULL;
	b->busy = true;
	b->seg = seg;
	b->start = align_down(seg->data_end, WAL_BLOCK);
	b->end = seg->data_end;
	memcpy(b->buf, log->tail, b->end - b->start); /* rewritten byte for byte */
	b->first_seq = b->last_seq = 0;
	b->nrecords = b->ndurable = 0;
	b->sealed = b->force_sync = false;
	b->oldest_ns = 0;
	b->cbs = b->cbs_tail = NULL;
	b->nvoids = 0;
	b->next = NULL;
	return b;
}

/* The batch will not grow: keep its last partial block for the next batch. */
void wal_batch_seal_tail(struct aurawal *log, struct wal_batch *b)
{
	uint64_t blk = align_down(b->end, WAL_BLOCK);

	if (b->sealed)
		return; /* the next batch is in the next segment */
	memcpy(log->tail, b->buf + (blk - b->start), b->end - blk);
}

static void batch_close(struct aurawal *log, struct wal_batch *b)
{
	wal_batch_seal_tail(log, b);
	b->next = NULL;
	if (log->queue_tail)
		log->queue_tail->next = b;
	else
		log->queue = b;
	log->queue_tail = b;
	log->cur = NULL;
	writer_poke(log);
}

/*
 * An empty batch whose buffer is too small for one record: move it to the batch's large
 * buffer, allocated (or grown) only when the one kept from before is too small. Large
 * records thus reuse the same memory instead of mapping fresh pages for each.
 */
static int batch_grow(struct aurawal *log, struct wal_batch *b, uint64_t rec)
{
	size_t need = align_up(b->end - b->start + rec, WAL_BLOCK);

	if (!b->big || b->big_cap < need) {
		size_t cap = align_up(need, BIG_ROUND);
		uint8_t *big = wal_alloc(log, cap);

		if (!big)
			return -ENOMEM;
		if (b->big) {
			wal_free(log, b->big);
			log->big_bytes -= b->big_cap;
		}
		b->big = big;
		b->big_cap = cap;
		log->big_bytes += cap;
		log->st_big_allocs++;
	}
	memcpy(b->big, b->buf, b->end - b->start);
	b->buf = b->big;
	b->cap = b->big_cap;
	b->reg_index = -1;
	return 0;
}

/* The batch is written (or failed): back to its own buffer; a large one is kept for the
 * next large record unless the log keeps too much already. */
void wal_batch_release(struct aurawal *log, struct wal_batch *b)
{
	if (b->buf == b->big && log->big_bytes > log->big_budget) {
		wal_free(log, b->big);
		log->big_bytes -= b->big_cap;
		b->big = NULL;
		b->big_cap = 0;
	}
	b->buf = b->std_buf;
	b->cap = b->std_cap;
	b->reg_index = b->std_reg;
	b->busy = false;
}

/* ---- placing a record (mu held) ---- */

struct rec_in {
	const struct iovec *iov;
	int iovcnt;
	uint32_t len;
	uint64_t phash; /* XXH3-64 of the payload, computed before the lock */
	uint8_t type;
};

static void place(struct aurawal *log, const struct rec_in *in, aurawal_loc_t *loc, uint64_t *seqp)
{
	struct wal_batch *b = log->cur;
	struct wal_segment *seg = log->active;
	uint64_t off = b->end, seq = log->next_seq++;
	uint8_t *p = b->buf + (off - b->start), *q = p + WAL_REC_HEADER;

	wal_rec_header(p, in->type, in->len, seq);
	put_le64(p + RH_CHECKSUM,
		 wal_rec_checksum2(p, in->phash, wal_seed(log->log_id, seg->number)));
	for (int i = 0; i < in->iovcnt; i++) {
		if (!in->iov[i].iov_len)
			continue; /* its base may be NULL: not even memcpy's to see */
		memcpy(q, in->iov[i].iov_base, in->iov[i].iov_len);
		q += in->iov[i].iov_len;
	}
	memset(q, 0, align_up(in->len, 8) - in->len);
	b->end = seg->data_end = off + wal_rec_size(in->len);
	if (!b->first_seq) {
		b->first_seq = seq;
		b->oldest_ns = wal_now_ns();
	}
	b->last_seq = seq;
	b->nrecords++;
	if (!seg->first_seq)
		seg->first_seq = seq;
	seg->last_seq = seq;
	seg->nrecords++;
	*loc = (aurawal_loc_t){ seg->number, (uint32_t) off, in->len };
	*seqp = seq;
}

/* Close the active segment with a SEAL and make the ready segment active. */
static void rollover(struct aurawal *log)
{
	uint8_t next[8];
	struct iovec iov = { next, sizeof(next) };
	struct rec_in seal = { &iov, 1, WAL_SEAL_PAYLOAD, 0, WAL_REC_SEAL };
	aurawal_loc_t loc;
	uint64_t seq;

	put_le64(next, log->ready->number);
	seal.phash = wal_payload_hash(next, sizeof(next));
	place(log, &seal, &loc, &seq);
	log->cur->sealed = true;
	log->active->sealed = true;
	log->active->seal_next = log->ready->number;
	batch_close(log, log->cur);
	log->ready->next = NULL;
	log->segs_tail->next = log->ready;
	log->segs_tail = log->ready;
	log->active = log->ready;
	log->ready = NULL;
	/* flush_on_rollover: the SEAL's batch is synced before anything is written into the
	 * new segment, whose header the preparer synced: its first write carries the mark
	 * (append_locked; docs/wal_format.md). Without it that proof waits for the first
	 * durable write, which pays the rollover's flushes. */
	if (log->opts.flush_on_rollover)
		log->active->unmarked = true;
	pthread_cond_signal(&log->cv_prepare);
}

/* Place the active segment's SYNC mark (docs/wal_format.md): room for it is reserved. */
static void place_mark(struct aurawal *log)
{
	struct rec_in mark = { NULL, 0, 0, wal_payload_hash(NULL, 0), WAL_REC_SYNC };
	aurawal_loc_t loc;
	uint64_t seq;

	place(log, &mark, &loc, &seq);
	log->active->unmarked = false;
}

static void wait_cv(pthread_cond_t *cv, pthread_mutex_t *mu)
{
	pthread_cond_wait(cv, mu);
}

/*
 * During an ENOSPC state: ask the writer to retry now and wait for that attempt - one
 * begun after this call. A retry already in flight (the writer's periodic one) may have
 * been refused space the caller has freed since: its failure must not answer for the
 * caller's, nor its completion push the retry asked for back by a retry period. Not once
 * closing: the writer makes no more attempts (a callback run by aurawal_close() after it
 * stopped would wait forever).
 */
static int enospc_retry(struct aurawal *log)
{
	uint64_t want = log->enospc_begun + 1;

	while (log->enospc && log->enospc_ended < want && !log->failed && !log->closing) {
		log->enospc_retry_at = 0;
		writer_poke(log);
		wait_cv(&log->cv_done, &log->mu);
	}
	return log->failed ? log->failed : log->enospc;
}

/* The last preparation of a segment failed (space_err): ask the preparer to try again
 * now rather than at its next retry, and wait for that attempt. 0 or its error. */
static int prepare_retry(struct aurawal *log)
{
	uint64_t attempts = log->prepare_attempts;

	pthread_cond_signal(&log->cv_prepare);
	while (!log->ready && log->prepare_attempts == attempts && !log->closing && !log->failed)
		wait_cv(&log->cv_ready, &log->mu);
	return log->ready || log->closing || log->failed ? 0 : log->space_err;
}

/*
 * Make room for a record of `rec` bytes in the active batch, rolling the segment over
 * if it does not fit. May wait for a buffer or a ready segment. 0 or an error; nothing
 * is placed on error.
 */
static int reserve(struct aurawal *log, uint64_t rec)
{
	int rc;

	for (;;) {
		if (log->failed)
			return log->failed;
		if (log->closing)
			return AURAWAL_ECLOSED;
		if (log->enospc && enospc_retry(log) != 0)
			return log->failed ? log->failed : -ENOSPC;
		if (log->active->data_end + rec + SEAL_SIZE > log->active->size) {
			if (!log->ready) {
				if (log->space_err && (rc = prepare_retry(log)) != 0)
					return rc;
				/* Not once the log failed or closes: the preparer makes no
				 * more segments then (the loop's top returns the error). */
				if (!log->ready && !log->failed && !log->closing) {
					pthread_cond_signal(&log->cv_prepare);
					wait_cv(&log->cv_ready, &log->mu);
				}
				continue;
			}
			if (!log->cur && !(log->cur = batch_new(log))) {
				wait_cv(&log->cv_done, &log->mu);
				continue;
			}
			if (log->cur->end + SEAL_SIZE > log->cur->start + log->cur->cap) {
				batch_close(log,
					    log->cur); /* the seal goes in a batch of its own */
				continue;
			}
			rollover(log);
			continue;
		}
		if (!log->cur && !(log->cur = batch_new(log))) {
			wait_cv(&log->cv_done, &log->mu); /* every buffer is busy: back-pressure */
			continue;
		}
		if (log->cur->end + rec <= log->cur->start + log->cur->cap)
			return 0;
		if (log->cur->nrecords) {
			batch_close(log, log->cur);
			continue;
		}
		return batch_grow(log, log->cur, rec);
	}
}

/* ---- the API ---- */

/*
 * mu held: wait until every record <= seq is durable. Returns with mu RELEASED, so that
 * a woken appender does not contend for the lock only to drop it again.
 */
static int wait_durable_unlock(struct aurawal *log, uint64_t seq)
{
	struct wal_waiter w;
	int rc = 1;

	if (log->durable_seq >= seq)
		rc = 0;
	else if (log->failed)
		rc = log->failed;
	else if (log->enospc && seq <= log->enospc_hi)
		rc = -ENOSPC;
	if (rc <= 0) {
		pthread_mutex_unlock(&log->mu);
		return rc;
	}
	wal_waiter_add(log, &w, seq);
	pthread_mutex_unlock(&log->mu);
	return wal_waiter_sleep(log, &w);
}

/* No lock held: run the callbacks of appends that completed, if the hint says there are
 * any. Never a read's: those run in aurawal_poll() only (aurawal.h), and an appender may
 * hold its own locks (the store holds a key's, a read's callback is its user's code). */
static void run_cbs_if_ready(struct aurawal *log)
{
	if (atomic_load_explicit(&log->cbs_ready, memory_order_relaxed))
		wal_run_ready_cbs(log, false);
}

static int check_input(aurawal_t *log, const struct iovec *iov, int iovcnt, unsigned flags,
		       struct rec_in *in)
{
	uint64_t len = 0;
	XXH3_state_t st;

	if (!log || iovcnt < 0 || (iovcnt > 0 && !iov) || (flags & ~AURAWAL_DURABLE))
		return -EINVAL;
	if (log->read_only)
		return -EROFS;
	XXH3_64bits_reset(&st);
	for (int i = 0; i < iovcnt; i++) {
		if (!iov[i].iov_base && iov[i].iov_len)
			return -EINVAL;
		if (iov[i].iov_len > AURAWAL_MAX_RECORD - len)
			return -EMSGSIZE; /* compared before adding: the sum may not wrap */
		len += iov[i].iov_len;
		XXH3_64bits_update(&st, iov[i].iov_base, iov[i].iov_len);
	}
	if (WAL_HEADER_BLOCK + wal_rec_size(len) + MARK_SIZE + SEAL_SIZE > log->segment_size)
		return -EMSGSIZE; /* would not fit in a segment, with its mark and a SEAL */
	*in = (struct rec_in){ iov, iovcnt, (uint32_t) len, XXH3_64bits_digest(&st), WAL_REC_DATA };
	return 0;
}

/* Does the writer thread have anything to do? (mu held) */
static bool writer_has_work(const struct aurawal *log)
{
	return log->queue || (log->cur && log->cur->nrecords) || wal_wants_bare_sync(log) ||
	       wal_wants_dir_sync(log) || log->closing;
}

/* mu held: every record is durable, but the directory may not be (a release's renames):
 * have the writer sync it (wal_writer.c, dir_sync) and wait. 0 or the log's failure. */
static int sync_dir_unlock(struct aurawal *log)
{
	uint64_t gen = log->dir_gen;
	int rc = 0;

	if (!log->read_only && gen != log->dir_synced) {
		log->dir_sync_target = MAX(log->dir_sync_target, gen);
		writer_poke(log);
		while (log->dir_synced < gen && !log->failed && !log->closing)
			wait_cv(&log->cv_done, &log->mu);
		rc = log->dir_synced >= gen ? 0 : log->failed ? log->failed : AURAWAL_ECLOSED;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

/* A durable record was placed: if the active batch now holds as many as the writer is
 * gathering for, it is due. mu held. */
static void poke_if_due(struct aurawal *log)
{
	if (log->cur && log->cur->ndurable >= log->gather_target)
		writer_poke(log);
}

/* Room to note one more record of b that is voided if its write fails with -ENOSPC. */
static int voids_reserve(struct wal_batch *b)
{
	uint32_t cap;
	uint32_t *v;

	if (b->nvoids < b->voids_cap)
		return 0;
	cap = b->voids_cap ? 2 * b->voids_cap : 64;
	v = realloc(b->voids, sizeof(*v) * cap);
	if (!v)
		return -ENOMEM;
	b->voids = v;
	b->voids_cap = cap;
	return 0;
}

/* Place a record; a durable one is counted for the writer's gathering, and the caller
 * pokes the writer if it made the batch due (poke_if_due) - unless it writes the batch
 * itself (write_own_batch). `told`: the appender learns how the write went (a durable
 * or an asynchronous append), so the record is voided if that is -ENOSPC. mu held. */
static int append_locked(struct aurawal *log, const struct rec_in *in, unsigned flags, bool told,
			 aurawal_loc_t *loc, uint64_t *seq)
{
	bool durable = (flags & AURAWAL_DURABLE) != 0;
	bool eager = log->opts.flush_on_rollover;
	int rc = reserve(log, wal_rec_size(in->len) + (durable || eager ? MARK_SIZE : 0));

	if (rc)
		return rc;
	if (told && (rc = voids_reserve(log->cur)) != 0)
		return rc;
	/* The segment's first durable write carries its mark - or, with flush_on_rollover,
	 * its first write, unless its header is owed (a ready segment found at open). */
	if (log->active->unmarked && (durable || (eager && !log->active->lazy_hdr)))
		place_mark(log);
	if (told)
		log->cur->voids[log->cur->nvoids++] = (uint32_t) (log->cur->end - log->cur->start);
	place(log, in, loc, seq);
	log->st_appends++;
	log->st_bytes += in->len;
	if (flags & AURAWAL_DURABLE) {
		log->st_durable++;
		log->cur->ndurable++;
	} else if (log->cur->nrecords == 1) {
		writer_poke(log); /* arm the flush delay */
	}
	return 0;
}

/*
 * mu held, a durable record just placed: a lone durable appender - no other thread
 * waiting for durability, no write in flight, no batch queued, this record the batch's
 * only durable one - writes the batch from its own thread instead of handing it to the
 * writer thread: the hand-off costs two thread switches per durable append (measured:
 * 1 appender went from 0.68 to 1.00 of fio's write+fdatasync rate). With several
 * appenders the writer thread keeps the job: it goes straight on to the next batch,
 * while an appender that wrote would first have to hand it back. The writer stands
 * aside while io_busy and is poked afterwards for whatever arrived meanwhile.
 * Returns 1 when the batch is the writer's job, else how writing it went: 0 = the record
 * is durable, -errno = it is not (voided if -ENOSPC).
 */
static int write_own_batch(struct aurawal *log)
{
	struct wal_plan p;
	uint64_t wake;
	int rc;

	if (log->io_busy || log->failed || log->enospc || log->closing || log->queue ||
	    log->waiters || !log->cur || log->cur->ndurable != 1 ||
	    !wal_plan_next(log, &p, &wake)) {
		poke_if_due(log); /* the writer's job after all */
		return 1;
	}
	rc = wal_write_plan(log, &p);
	/* Whatever arrived meanwhile is the writer's; a lone appender wakes nobody (each
	 * needless wake-up costs a thread switch per append on a small machine). */
	if (writer_has_work(log))
		writer_poke(log);
	return rc;
}

AURAWAL_API int aurawal_append(aurawal_t *log, const struct iovec *iov, int iovcnt, unsigned flags,
			       aurawal_loc_t *loc, uint64_t *seq)
{
	struct rec_in in;
	aurawal_loc_t l;
	uint64_t s;
	int rc = check_input(log, iov, iovcnt, flags, &in);

	if (rc)
		return rc;
	pthread_mutex_lock(&log->mu);
	rc = append_locked(log, &in, flags, (flags & AURAWAL_DURABLE) != 0, &l, &s);
	if (rc == 0 && (flags & AURAWAL_DURABLE) && (rc = write_own_batch(log)) > 0) {
		rc = wait_durable_unlock(log, s);
	} else {
		/* Not durable, or its batch was written here: that write's outcome is the
		 * append's (durable, or failed - voided if -ENOSPC - while mu was dropped,
		 * so later state could mislead: a retry may have written it as VOID). */
		pthread_mutex_unlock(&log->mu);
	}
	if (rc == 0 && loc)
		*loc = l;
	if (rc == 0 && seq)
		*seq = s;
	run_cbs_if_ready(log);
	return rc;
}

AURAWAL_API int aurawal_append_async(aurawal_t *log, const struct iovec *iov, int iovcnt,
				     unsigned flags, aurawal_append_cb cb, void *arg)
{
	struct wal_cb *c;
	struct rec_in in;
	int rc = cb ? check_input(log, iov, iovcnt, flags, &in) : -EINVAL;

	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cb = cb;
	c->arg = arg;
	c->owner = wal_owner();
	pthread_mutex_lock(&log->mu);
	rc = append_locked(log, &in, flags, true, &c->loc, &c->seq);
	if (rc == 0) {
		if (flags & AURAWAL_DURABLE)
			poke_if_due(log);
		if (log->cur->cbs_tail)
			log->cur->cbs_tail->next = c;
		else
			log->cur->cbs = c;
		log->cur->cbs_tail = c;
		log->pending_cbs++;
		/* With no flush delay nothing writes it unless asked: a poll already waiting
		 * (maybe for this very callback) asks, woken here (wal_poll.c, poll_wait). */
		if (!log->opts.flush_delay_us && log->pollers)
			pthread_cond_broadcast(&log->cv_done);
	}
	pthread_mutex_unlock(&log->mu);
	if (rc)
		free(c);
	return rc;
}

AURAWAL_API int aurawal_sync(aurawal_t *log)
{
	uint64_t target;
	int rc;

	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	target = log->next_seq - 1;
	if (log->failed) { /* first: fail-stop, even with nothing left to make durable */
		rc = log->failed;
		pthread_mutex_unlock(&log->mu);
	} else if (log->enospc && (rc = enospc_retry(log)) != 0) { /* space back? ask now */
		pthread_mutex_unlock(&log->mu);
	} else if (log->durable_seq >= target) {
		rc = sync_dir_unlock(log);
	} else if (log->active->unmarked && (rc = reserve(log, MARK_SIZE)) != 0) {
		pthread_mutex_unlock(&log->mu);
	} else {
		if (log->active->unmarked) { /* the segment's first durable write: its mark */
			place_mark(log);
			target = log->next_seq - 1;
		}
		log->sync_target = MAX(log->sync_target, target);
		if (log->cur && log->cur->nrecords)
			log->cur->force_sync = true;
		writer_poke(log);
		rc = wait_durable_unlock(log, target);
	}
	run_cbs_if_ready(log);
	return rc;
}

AURAWAL_API int aurawal_flush(aurawal_t *log)
{
	uint64_t target;
	int rc = 0;

	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	target = log->next_seq - 1;
	if (log->written_seq < target && log->enospc && !log->failed)
		rc = enospc_retry(log); /* space back? ask now, as an append does */
	if (rc == 0 && log->written_seq < target) {
		log->flush_target = MAX(log->flush_target, target);
		writer_poke(log);
	}
	while (rc == 0 && log->written_seq < target) {
		if (log->failed)
			rc = log->failed;
		else if (log->enospc && target <= log->enospc_hi)
			rc = -ENOSPC;
		else if (log->closing)
			rc = AURAWAL_ECLOSED;
		else
			wait_cv(&log->cv_done, &log->mu);
	}
	pthread_mutex_unlock(&log->mu);
	run_cbs_if_ready(log);
	return rc;
}
