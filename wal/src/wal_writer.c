/* SPDX-License-Identifier: MIT */
/*
 * wal_writer.c - appending and group commit.
 *
 * Appenders hash their payload outside the lock, then under log->mu place the record in
 * the active batch (sequence number, header, checksum, copy) and, if durable, wait on
 * cv_done until the writer thread has made it durable. The writer takes batches in
 * order - closed ones first, then the active batch as soon as it holds a durable record
 * (a lone appender never waits for company), or when its oldest non-durable record has
 * waited flush_delay_us - and writes each with one aligned write, linked to an
 * fdatasync when needed. While one batch is being written the next one fills: that is
 * the group commit.
 *
 * Failures: -ENOSPC keeps the batch and retries it (appends meanwhile retry with it and
 * fail with -ENOSPC until one succeeds); any other error fails the log (fail-stop).
 * Either way every waiter and callback concerned gets the error exactly once, and
 * nothing is reported durable that was not written and synced.
 *
 * Lock: log->mu around all state; never held across I/O or a user callback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wal_internal.h"

#define SEAL_SIZE	wal_rec_size(WAL_SEAL_PAYLOAD)
#define ENOSPC_RETRY_NS (200ull * 1000000ull)

/* ---- batches (mu held) ---- */

static struct wal_batch *batch_new(struct aurawal *log)
{
	struct wal_segment *seg = log->active;
	struct wal_batch *b = NULL;

	for (int i = 0; i < WAL_NBUFS && !b; i++)
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
	b->next = NULL;
	return b;
}

/* The batch will not grow: keep its last partial block for the next batch. */
static void batch_seal_tail(struct aurawal *log, struct wal_batch *b)
{
	uint64_t blk = align_down(b->end, WAL_BLOCK);

	if (b->sealed)
		return; /* the next batch is in the next segment */
	memcpy(log->tail, b->buf + (blk - b->start), b->end - blk);
}

static void batch_close(struct aurawal *log, struct wal_batch *b)
{
	batch_seal_tail(log, b);
	b->next = NULL;
	if (log->queue_tail)
		log->queue_tail->next = b;
	else
		log->queue = b;
	log->queue_tail = b;
	log->cur = NULL;
	pthread_cond_signal(&log->cv_writer);
}

/* An empty batch whose buffer is too small for one record: give it a bigger one. */
static int batch_grow(struct aurawal *log, struct wal_batch *b, uint64_t rec)
{
	size_t cap = align_up(b->end - b->start + rec, WAL_BLOCK);
	uint8_t *big = wal_alloc(log, cap);

	if (!big)
		return -ENOMEM;
	memcpy(big, b->buf, b->end - b->start);
	b->std_buf = b->buf;
	b->std_cap = b->cap;
	b->std_reg = b->reg_index;
	b->buf = big;
	b->cap = cap;
	b->reg_index = -1;
	b->oversize = true;
	return 0;
}

static void batch_release(struct aurawal *log, struct wal_batch *b)
{
	if (b->oversize) {
		wal_free(log, b->buf);
		b->buf = b->std_buf;
		b->cap = b->std_cap;
		b->reg_index = b->std_reg;
		b->oversize = false;
	}
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
	batch_close(log, log->cur);
	log->ready->next = NULL;
	log->segs_tail->next = log->ready;
	log->segs_tail = log->ready;
	log->active = log->ready;
	log->ready = NULL;
	pthread_cond_signal(&log->cv_prepare);
}

static void wait_cv(pthread_cond_t *cv, pthread_mutex_t *mu)
{
	pthread_cond_wait(cv, mu);
}

/* During an ENOSPC state: ask the writer to retry now and wait for that attempt. */
static int enospc_retry(struct aurawal *log)
{
	uint64_t attempts = log->enospc_attempts;

	log->enospc_retry_at = 0;
	pthread_cond_signal(&log->cv_writer);
	while (log->enospc && log->enospc_attempts == attempts && !log->failed)
		wait_cv(&log->cv_done, &log->mu);
	return log->failed ? log->failed : log->enospc;
}

/*
 * Make room for a record of `rec` bytes in the active batch, rolling the segment over
 * if it does not fit. May wait for a buffer or a ready segment. 0 or an error; nothing
 * is placed on error.
 */
static int reserve(struct aurawal *log, uint64_t rec)
{
	for (;;) {
		if (log->failed)
			return log->failed;
		if (log->closing)
			return AURAWAL_ECLOSED;
		if (log->enospc && enospc_retry(log) != 0)
			return log->failed ? log->failed : -ENOSPC;
		if (log->active->data_end + rec + SEAL_SIZE > log->active->size) {
			if (!log->ready) {
				if (log->space_err)
					return log->space_err;
				pthread_cond_signal(&log->cv_prepare);
				wait_cv(&log->cv_ready, &log->mu);
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

/* ---- the writer thread ---- */

static bool needs_sync(const struct aurawal *log, const struct wal_batch *b)
{
	return b->ndurable || b->force_sync || b->sealed || log->closing ||
	       (log->sync_target && log->sync_target >= b->first_seq);
}

/* The next batch to write, or NULL (then *wake is when to look again, 0 = when told). */
static struct wal_batch *pick(struct aurawal *log, uint64_t *wake)
{
	struct wal_batch *b = log->cur;
	uint64_t now = wal_now_ns(), delay = (uint64_t) log->opts.flush_delay_us * 1000;

	*wake = 0;
	if (log->enospc && now < log->enospc_retry_at) {
		*wake = log->enospc_retry_at;
		return NULL;
	}
	if (log->queue)
		return log->queue;
	if (!b || !b->nrecords)
		return NULL;
	if (needs_sync(log, b) || (delay && now - b->oldest_ns >= delay))
		return b;
	if (delay)
		*wake = b->oldest_ns + delay;
	return NULL;
}

/* Write a batch (and sync it): one write, and one retry of the rest if it came short. */
static int write_batch(struct aurawal *log, struct wal_batch *b, bool sync)
{
	size_t len = align_up(b->end, WAL_BLOCK) - b->start, done;
	int fd = b->seg->fd, rc;

	rc = wal_write_sync(log, fd, b->buf, b->reg_index, len, b->start, sync);
	if (rc < 0 || (size_t) rc == len)
		return rc < 0 ? rc : 0;
	/* Short: the chain's sync did not run. Write the rest (from a block boundary,
	 * so the retry stays aligned) and sync, or give up. */
	done = align_down((uint64_t) rc, WAL_BLOCK);
	rc = wal_write_sync(log, fd, b->buf + done, -1, len - done, b->start + done, sync);
	if (rc < 0)
		return rc;
	return (size_t) rc == len - done ? 0 : -EIO;
}

/* Hand callbacks to the poll list with `status`. */
static void deliver_cbs(struct aurawal *log, struct wal_batch *b, int status)
{
	for (struct wal_cb *c = b->cbs; c; c = c->next)
		c->status = status;
	if (!b->cbs)
		return;
	if (log->ready_cbs_tail)
		log->ready_cbs_tail->next = b->cbs;
	else
		log->ready_cbs = b->cbs;
	log->ready_cbs_tail = b->cbs_tail;
	b->cbs = b->cbs_tail = NULL;
}

/* Every pending batch's callbacks get `status` (a failure). */
static void fail_all_cbs(struct aurawal *log, struct wal_batch *b, int status)
{
	deliver_cbs(log, b, status);
	for (struct wal_batch *q = log->queue; q; q = q->next)
		deliver_cbs(log, q, status);
	if (log->cur)
		deliver_cbs(log, log->cur, status);
}

/* A sync completed in lat_ns: count it (before durable_seq moves). */
static void record_sync(struct aurawal *log, uint64_t lat_ns)
{
	uint64_t us = lat_ns / 1000;
	int bucket = 0;

	while (bucket < WAL_LAT_BUCKETS - 1 && (1ull << bucket) <= us)
		bucket++;
	log->st_sync_lat[bucket]++;
	if (us > log->st_sync_max_us)
		log->st_sync_max_us = us;
	log->st_syncs++;
	log->st_synced_records += log->written_seq - log->durable_seq;
}

static void finish(struct aurawal *log, struct wal_batch *b, int rc, bool sync, uint64_t lat)
{
	if (rc == 0) {
		b->seg->written_end = MAX(b->seg->written_end, b->end);
		if (b->last_seq)
			log->written_seq = MAX(log->written_seq, b->last_seq);
		if (sync) {
			record_sync(log, lat);
			log->durable_seq = log->written_seq;
		}
		log->st_writes++;
		log->enospc = 0;
		deliver_cbs(log, b, 0);
		batch_release(log, b);
	} else if (rc == -ENOSPC) { /* keep the batch: it is retried, nothing is lost */
		log->enospc = rc;
		log->enospc_hi = log->next_seq - 1;
		log->enospc_retry_at = wal_now_ns() + ENOSPC_RETRY_NS;
		fail_all_cbs(log, b, rc);
		b->next = log->queue;
		log->queue = b;
		if (!log->queue_tail)
			log->queue_tail = b;
	} else { /* fail-stop: a retried sync after EIO could acknowledge lost data */
		log->failed = rc;
		fail_all_cbs(log, b, rc);
		batch_release(log, b);
	}
	if (log->enospc || rc == -ENOSPC)
		log->enospc_attempts++;
}

/* Take batch b (mu held): off the queue, or the active one closed. */
static void take(struct aurawal *log, struct wal_batch *b)
{
	if (b == log->queue) {
		log->queue = b->next;
		if (!log->queue)
			log->queue_tail = NULL;
	} else {
		batch_seal_tail(log, b);
		log->cur = NULL;
	}
	/* zeros after the data, to the block boundary */
	memset(b->buf + (b->end - b->start), 0, align_up(b->end, WAL_BLOCK) - b->end);
}

static void timed_wait(struct aurawal *log, uint64_t wake)
{
	struct timespec ts;
	uint64_t now = wal_now_ns(), t;

	if (!wake) {
		wait_cv(&log->cv_writer, &log->mu);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	t = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec +
	    (wake > now ? wake - now : 0);
	ts.tv_sec = (time_t) (t / 1000000000ull);
	ts.tv_nsec = (long) (t % 1000000000ull);
	pthread_cond_timedwait(&log->cv_writer, &log->mu, &ts);
}

/*
 * A sync was asked for records that are already written but not durable (the flush
 * delay wrote them), and there is no batch to carry the sync: sync the active segment
 * on its own. Only the active segment can hold such records - sealed batches are always
 * synced. mu held; dropped for the I/O.
 */
static void bare_sync(struct aurawal *log)
{
	struct wal_segment *seg = log->active;
	uint64_t upto = log->written_seq, t0 = wal_now_ns();
	int rc;

	log->writing = &log->bufs[0]; /* any non-NULL: a write is in progress */
	pthread_mutex_unlock(&log->mu);
	rc = wal_fdatasync(log, seg->fd);
	pthread_mutex_lock(&log->mu);
	log->writing = NULL;
	if (rc < 0) {
		log->failed = rc;
		if (log->cur)
			deliver_cbs(log, log->cur, rc);
	} else {
		record_sync(log, wal_now_ns() - t0);
		log->durable_seq = MAX(log->durable_seq, upto);
	}
	pthread_cond_broadcast(&log->cv_done);
}

static bool wants_bare_sync(const struct aurawal *log)
{
	return log->sync_target > log->durable_seq && log->written_seq > log->durable_seq;
}

void *wal_writer_main(void *arg)
{
	struct aurawal *log = arg;

	pthread_mutex_lock(&log->mu);
	for (;;) {
		uint64_t wake, t0;
		struct wal_batch *b = log->failed ? NULL : pick(log, &wake);
		bool sync;
		int rc;

		if (!b && !log->failed && wants_bare_sync(log)) {
			bare_sync(log);
			continue;
		}
		if (!b) {
			if (log->closing &&
			    (log->failed || (!log->queue && (!log->cur || !log->cur->nrecords))))
				break;
			timed_wait(log, log->failed ? 0 : wake);
			continue;
		}
		take(log, b);
		sync = needs_sync(log, b);
		log->writing = b;
		pthread_mutex_unlock(&log->mu);
		t0 = wal_now_ns();
		rc = write_batch(log, b, sync);
		pthread_mutex_lock(&log->mu);
		finish(log, b, rc, sync, wal_now_ns() - t0);
		log->writing = NULL;
		pthread_cond_broadcast(&log->cv_done);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}

/* ---- the API ---- */

static int wait_durable(struct aurawal *log, uint64_t seq)
{
	for (;;) {
		if (log->durable_seq >= seq)
			return 0;
		if (log->failed)
			return log->failed;
		if (log->enospc && seq <= log->enospc_hi)
			return -ENOSPC;
		wait_cv(&log->cv_done, &log->mu);
	}
}

/* Run the callbacks of completed async appends (no lock held). */
static int run_ready_cbs(struct aurawal *log)
{
	struct wal_cb *c;
	int n = 0;

	pthread_mutex_lock(&log->mu);
	c = log->ready_cbs;
	log->ready_cbs = log->ready_cbs_tail = NULL;
	for (struct wal_cb *x = c; x; x = x->next)
		n++;
	log->pending_cbs -= (uint32_t) n;
	pthread_mutex_unlock(&log->mu);
	while (c) {
		struct wal_cb *next = c->next;

		if (c->rcb)
			c->rcb(c->arg, c->status, c->len, c->seq);
		else
			c->cb(c->arg, c->status, c->loc, c->seq);
		free(c);
		c = next;
	}
	return n;
}

void wal_deliver(struct aurawal *log, struct wal_cb *c)
{
	c->next = NULL;
	if (log->ready_cbs_tail)
		log->ready_cbs_tail->next = c;
	else
		log->ready_cbs = c;
	log->ready_cbs_tail = c;
	pthread_cond_broadcast(&log->cv_done);
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
		len += iov[i].iov_len;
		if (len > AURAWAL_MAX_RECORD)
			return -EMSGSIZE;
		XXH3_64bits_update(&st, iov[i].iov_base, iov[i].iov_len);
	}
	if (WAL_HEADER_BLOCK + wal_rec_size(len) + SEAL_SIZE > log->segment_size)
		return -EMSGSIZE; /* would not fit in a segment */
	*in = (struct rec_in){ iov, iovcnt, (uint32_t) len, XXH3_64bits_digest(&st), WAL_REC_DATA };
	return 0;
}

/* Place a record; a durable one is marked for the writer. mu held. */
static int append_locked(struct aurawal *log, const struct rec_in *in, unsigned flags,
			 aurawal_loc_t *loc, uint64_t *seq)
{
	int rc = reserve(log, wal_rec_size(in->len));

	if (rc)
		return rc;
	place(log, in, loc, seq);
	log->st_appends++;
	log->st_bytes += in->len;
	if (flags & AURAWAL_DURABLE) {
		log->cur->ndurable++;
		log->st_durable++;
		pthread_cond_signal(&log->cv_writer);
	} else if (log->cur->nrecords == 1) {
		pthread_cond_signal(&log->cv_writer); /* arm the flush delay */
	}
	return 0;
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
	rc = append_locked(log, &in, flags, &l, &s);
	if (rc == 0 && (flags & AURAWAL_DURABLE))
		rc = wait_durable(log, s);
	pthread_mutex_unlock(&log->mu);
	if (rc == 0 && loc)
		*loc = l;
	if (rc == 0 && seq)
		*seq = s;
	if (log->ready_cbs)
		run_ready_cbs(log);
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
	pthread_mutex_lock(&log->mu);
	rc = append_locked(log, &in, flags, &c->loc, &c->seq);
	if (rc == 0) {
		if (log->cur->cbs_tail)
			log->cur->cbs_tail->next = c;
		else
			log->cur->cbs = c;
		log->cur->cbs_tail = c;
		log->pending_cbs++;
	}
	pthread_mutex_unlock(&log->mu);
	if (rc)
		free(c);
	return rc;
}

/* Deadline for a poll: -1 = none. */
static uint64_t poll_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : wal_now_ns() + (uint64_t) timeout_ms * 1000000ull;
}

/*
 * Wait (mu held) until a completion is ready, nothing is pending, or the deadline. Async
 * reads complete only when someone reaps the engine, so while any is in flight the
 * poller drives it itself, a millisecond at a time (append completions meanwhile arrive
 * through cv_done from the writer thread).
 */
static void poll_wait(struct aurawal *log, uint64_t deadline)
{
	while (!log->ready_cbs && log->pending_cbs) {
		uint64_t now = wal_now_ns();
		struct timespec ts;

		if (now >= deadline)
			return;
		if (log->pending_reads) {
			pthread_mutex_unlock(&log->mu);
			auraio_wait(log->engine, 1);
			pthread_mutex_lock(&log->mu);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		if (deadline != UINT64_MAX) {
			uint64_t t = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec +
				     (deadline - now);

			ts.tv_sec = (time_t) (t / 1000000000ull);
			ts.tv_nsec = (long) (t % 1000000000ull);
			pthread_cond_timedwait(&log->cv_done, &log->mu, &ts);
		} else {
			pthread_cond_wait(&log->cv_done, &log->mu);
		}
	}
}

AURAWAL_API int aurawal_poll(aurawal_t *log, int timeout_ms)
{
	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	if (log->pending_reads && !log->ready_cbs) { /* reap what is ready without waiting */
		pthread_mutex_unlock(&log->mu);
		auraio_poll(log->engine);
		pthread_mutex_lock(&log->mu);
	}
	if (timeout_ms != 0)
		poll_wait(log, poll_deadline(timeout_ms));
	pthread_mutex_unlock(&log->mu);
	return run_ready_cbs(log);
}

AURAWAL_API int aurawal_sync(aurawal_t *log)
{
	uint64_t target;
	int rc;

	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	target = log->next_seq - 1;
	if (log->durable_seq >= target) {
		rc = 0;
	} else if (log->failed) {
		rc = log->failed;
	} else {
		log->sync_target = MAX(log->sync_target, target);
		if (log->cur && log->cur->nrecords)
			log->cur->force_sync = true;
		pthread_cond_signal(&log->cv_writer);
		rc = wait_durable(log, target);
	}
	pthread_mutex_unlock(&log->mu);
	if (log->ready_cbs)
		run_ready_cbs(log);
	return rc;
}

/* After recovery: the partial last block of the log, for the first batch to rewrite. */
int wal_writer_init(struct aurawal *log)
{
	int rc = wal_recover(log);
	uint64_t end;

	if (rc || log->read_only)
		return rc;
	log->tail = calloc(1, WAL_BLOCK);
	if (!log->tail)
		return -ENOMEM;
	end = log->active->data_end;
	if (end % WAL_BLOCK) {
		rc = wal_pread(log, log->active->fd, log->scratch, -1, WAL_BLOCK,
			       align_down(end, WAL_BLOCK));
		if (rc < 0)
			return rc;
		memcpy(log->tail, log->scratch, end % WAL_BLOCK);
	}
	if (!log->ready)
		pthread_cond_signal(&log->cv_prepare);
	return 0;
}

/* Close, after the writer stopped: the callbacks still pending run now. */
void wal_writer_fini(struct aurawal *log)
{
	run_ready_cbs(log);
	free(log->tail);
	log->tail = NULL;
}
