/* SPDX-License-Identifier: MIT */
/*
 * wal_writer.c - appending and group commit.
 *
 * Appenders hash their payload outside the lock, then under log->mu place the record in
 * the active batch (sequence number, header, checksum, copy) and, if durable, queue a
 * waiter and sleep on it without the lock (wal_wait.h) until the writer thread has made
 * the record durable.
 *
 * The writer has one write (or sync) in flight at a time. Each write takes the closed
 * batches of the queue, oldest first, up to half of the buffers (so that the other half
 * fills meanwhile), plus the active batch when it is due; it covers them with one
 * gathered write of contiguous blocks, linked to an fdatasync when one of them needs it.
 * Everything appended while a write is in flight goes into the next one: that is the
 * group commit. docs/wal_format.md, "Writing", says why writes holding records are never
 * in flight together.
 *
 * Gathering: when a durable write completes, the threads it wakes usually append again
 * at once. The next durable batch waits for as many durable records as that write made
 * durable plus those already waiting (log->gather_target), but at most a quarter of a
 * sync (log->gather_until), so that each sync carries (nearly) all the appenders instead
 * of every other one. A lone appender waits for itself only: it is never delayed.
 * Why a quarter: appenders woken on an idle CPU come back late (~100 us on a small VM);
 * waiting half a sync for the last of them cost more than they add. 32 appenders, 6
 * pairs of 2 s runs, quarter vs half: 50.2-55.7k vs 42.4-49.7k appends/s, 28.4-29.0 vs
 * 31.0-31.6 records per sync.
 *
 * Failures: -ENOSPC keeps the batches and retries them (appends meanwhile retry with
 * them and fail with -ENOSPC until one succeeds); any other error fails the log
 * (fail-stop). Either way every waiter and callback concerned gets the error exactly
 * once, and nothing is reported durable that was not written and synced.
 *
 * Lock: log->mu around all state; never held across I/O, a wake-up or a user callback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wal_internal.h"
#include "wal_wait.h"

#define SEAL_SIZE	wal_rec_size(WAL_SEAL_PAYLOAD)
#define MARK_SIZE	wal_rec_size(0)
#define ENOSPC_RETRY_NS (200ull * 1000000ull)
#define GATHER_MIN_NS	(20ull * 1000)	 /* bounds of the gathering window */
#define GATHER_MAX_NS	(2000ull * 1000) /* (a quarter of the average sync) */
#define BIG_ROUND	(64u << 10)	 /* large buffers grow in these steps */

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
static void batch_release(struct aurawal *log, struct wal_batch *b)
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

/* During an ENOSPC state: ask the writer to retry now and wait for that attempt. */
static int enospc_retry(struct aurawal *log)
{
	uint64_t attempts = log->enospc_attempts;

	log->enospc_retry_at = 0;
	writer_poke(log);
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

/* ---- the writer thread: what to write next (mu held) ---- */

/* A sync that does not wait for company: asked for, or closing. A segment's end is not
 * one: the rollover's flush is owed until something durable is written (pay_debt). */
static bool sync_forced(const struct aurawal *log, const struct wal_batch *b)
{
	return b->force_sync || log->closing || (b->sealed && log->opts.flush_on_rollover) ||
	       (log->sync_target && log->sync_target >= b->first_seq);
}

static bool needs_sync(const struct aurawal *log, const struct wal_batch *b)
{
	return b->ndurable || sync_forced(log, b);
}

/* Is the active batch due? If not, *wake is when to look again (0 = when told). */
static bool cur_due(const struct aurawal *log, const struct wal_batch *b, uint64_t now,
		    uint64_t *wake)
{
	uint64_t delay = (uint64_t) log->opts.flush_delay_us * 1000;

	if (sync_forced(log, b) || (log->flush_target && log->flush_target >= b->first_seq))
		return true;
	if (b->ndurable) {
		if (b->ndurable >= log->gather_target)
			return true;
		*wake = log->gather_until; /* the appenders that poke us */
		return false;
	}
	if (delay && now - b->oldest_ns >= delay)
		return true;
	if (delay)
		*wake = b->oldest_ns + delay;
	return false;
}

/* What one write covers: consecutive batches of one segment. */
struct wal_plan {
	struct wal_batch *b[WAL_NBUFS_MAX];
	int n;
	bool sync;
	uint64_t ndurable; /* durable records in it */
};

/* Can batch b join plan p (same segment, after no SEAL, room left)? */
static bool plan_fits(const struct aurawal *log, const struct wal_plan *p,
		      const struct wal_batch *b)
{
	if (p->n >= MAX(1, log->nbufs / 2))
		return false;
	return p->n == 0 || (b->seg == p->b[0]->seg && !p->b[p->n - 1]->sealed);
}

static void plan_take(struct aurawal *log, struct wal_plan *p, struct wal_batch *b)
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
	p->sync |= needs_sync(log, b);
	p->ndurable += b->ndurable;
	p->b[p->n++] = b;
}

/* The next write, or 0 batches (then *wake is when to look again, 0 = when told). */
static int plan(struct aurawal *log, struct wal_plan *p, uint64_t *wake)
{
	struct wal_batch *cur = log->cur;
	uint64_t now = wal_now_ns();

	p->n = 0;
	p->sync = false;
	p->ndurable = 0;
	*wake = 0;
	if (now >= log->gather_until)
		log->gather_target = 0;
	if (log->enospc && now < log->enospc_retry_at) {
		*wake = log->enospc_retry_at;
		return 0;
	}
	while (log->queue && plan_fits(log, p, log->queue))
		plan_take(log, p, log->queue);
	/* The active batch rides along with a write that goes anyway if it needs a sync,
	 * else it goes when due. */
	if (cur && cur->nrecords && plan_fits(log, p, cur) &&
	    ((p->n && needs_sync(log, cur)) || cur_due(log, cur, now, wake)))
		plan_take(log, p, cur);
	if (!p->n && log->gather_target && (!*wake || log->gather_until < *wake))
		*wake = log->gather_until; /* to end the gathering */
	return p->n;
}

/* ---- the writer thread: writing (no lock held) ---- */

/* The plan's blocks as iovecs: each batch up to where the next one starts (the block
 * holding its end is written from the next batch, which has a copy of it), the last one
 * to its end, zero-padded to a block boundary. *reg: a registered buffer, if one range. */
static int plan_iov(const struct wal_plan *p, struct iovec *iov, int *reg)
{
	int n = 0;

	for (int i = 0; i < p->n; i++) {
		const struct wal_batch *b = p->b[i];
		uint64_t end = i + 1 < p->n ? p->b[i + 1]->start : align_up(b->end, WAL_BLOCK);

		if (end > b->start) {
			iov[n++] = (struct iovec){ b->buf, end - b->start };
			*reg = b->reg_index;
		}
	}
	if (n > 1)
		*reg = -1;
	return n;
}

/* Drop the first `skip` bytes of iov[0..n); returns the new count. */
static int iov_advance(struct iovec *iov, int n, uint64_t skip)
{
	int k = 0;

	while (k < n && skip >= iov[k].iov_len)
		skip -= iov[k++].iov_len;
	memmove(iov, iov + k, sizeof(*iov) * (size_t) (n - k));
	n -= k;
	if (n) {
		iov[0].iov_base = (uint8_t *) iov[0].iov_base + skip;
		iov[0].iov_len -= skip;
	}
	return n;
}

/* Write the plan (and sync it): one write, and one retry of the rest if it came short. */
static int write_plan_io(struct aurawal *log, const struct wal_plan *p)
{
	struct iovec iov[WAL_NBUFS_MAX];
	int reg = -1, n = plan_iov(p, iov, &reg), fd = p->b[0]->seg->fd, rc;
	uint64_t off = p->b[0]->start, len = 0, done;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	rc = wal_writev_sync(log, fd, iov, n, reg, off, p->sync);
	if (rc < 0 || (uint64_t) rc == len)
		return rc < 0 ? rc : 0;
	/* Short: the chain's sync did not run. Write the rest (from a block boundary,
	 * so the retry stays aligned) and sync, or give up. */
	done = align_down((uint64_t) rc, WAL_BLOCK);
	n = iov_advance(iov, n, done);
	rc = wal_writev_sync(log, fd, iov, n, -1, off + done, p->sync);
	if (rc < 0)
		return rc;
	return (uint64_t) rc == len - done ? 0 : -EIO;
}

/* ---- the writer thread: completing (mu held) ---- */

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
	atomic_store_explicit(&log->cbs_ready, true, memory_order_relaxed);
}

/* Every pending batch's callbacks get `status` (a failure). */
static void fail_all_cbs(struct aurawal *log, const struct wal_plan *p, int status)
{
	for (int i = 0; p && i < p->n; i++)
		deliver_cbs(log, p->b[i], status);
	for (struct wal_batch *q = log->queue; q; q = q->next)
		deliver_cbs(log, q, status);
	if (log->cur)
		deliver_cbs(log, log->cur, status);
}

/* Fail-stop: the log is failed with rc; every waiter and callback hears it. Returns the
 * waiters to wake. */
static struct wal_waiter *fail_stop(struct aurawal *log, const struct wal_plan *p, int rc)
{
	log->failed = rc;
	fail_all_cbs(log, p, rc);
	for (int i = 0; p && i < p->n; i++)
		batch_release(log, p->b[i]);
	return wal_waiters_take(log, UINT64_MAX, rc);
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
	log->sync_avg_ns = log->sync_avg_ns ? (7 * log->sync_avg_ns + lat_ns) / 8 : lat_ns;
}

/* After a write that made `completed` durable records durable: how long the next durable
 * batch waits for their appenders to come back (see the top of this file). */
static void gather_set(struct aurawal *log, uint64_t completed)
{
	uint64_t g = log->gather_fixed_ns;

	if (!g)
		g = MIN(MAX(log->sync_avg_ns / 4, GATHER_MIN_NS), GATHER_MAX_NS);
	log->gather_target = completed + (log->cur ? log->cur->ndurable : 0);
	log->gather_until = wal_now_ns() + g;
}

static struct wal_waiter *complete_ok(struct aurawal *log, const struct wal_plan *p, uint64_t lat)
{
	for (int i = 0; i < p->n; i++) {
		struct wal_batch *b = p->b[i];

		b->seg->written_end = MAX(b->seg->written_end, b->end);
		if (b->last_seq)
			log->written_seq = MAX(log->written_seq, b->last_seq);
	}
	if (p->sync) {
		record_sync(log, lat);
		log->durable_seq = log->written_seq;
		for (int i = 0; i < p->n; i++) /* the sync covers all earlier writes */
			p->b[i]->seg->durable_end = p->b[i]->seg->written_end;
	}
	if (p->b[p->n - 1]->sealed && p->sync) /* durable: its seal block comes next */
		p->b[p->n - 1]->seg->summary_pending = true;
	log->st_writes++;
	log->enospc = 0;
	for (int i = 0; i < p->n; i++) {
		deliver_cbs(log, p->b[i], 0);
		batch_release(log, p->b[i]);
	}
	gather_set(log, p->sync ? p->ndurable : 0);
	return wal_waiters_take(log, log->durable_seq, 0);
}

/* The plan's write ended with rc after lat ns. Returns the waiters to wake. */
static struct wal_waiter *complete(struct aurawal *log, const struct wal_plan *p, int rc,
				   uint64_t lat)
{
	struct wal_waiter *w;

	if (rc == 0) {
		w = complete_ok(log, p, lat);
	} else if (rc == -ENOSPC) { /* keep the batches: they are retried, nothing is lost */
		log->enospc = rc;
		log->enospc_hi = log->next_seq - 1;
		log->enospc_retry_at = wal_now_ns() + ENOSPC_RETRY_NS;
		fail_all_cbs(log, p, rc);
		for (int i = p->n - 1; i >= 0; i--) {
			p->b[i]->next = log->queue;
			log->queue = p->b[i];
			if (!log->queue_tail)
				log->queue_tail = p->b[i];
		}
		w = wal_waiters_take(log, UINT64_MAX, rc);
	} else { /* fail-stop: a retried sync after EIO could acknowledge lost data */
		w = fail_stop(log, p, rc);
	}
	if (log->enospc || rc == -ENOSPC)
		log->enospc_attempts++;
	return w;
}

/* Drop mu, wake the waiters, take mu again. */
static void wake_unlocked(struct aurawal *log, struct wal_waiter *w)
{
	if (!w)
		return;
	pthread_mutex_unlock(&log->mu);
	wal_waiters_wake(w);
	pthread_mutex_lock(&log->mu);
}

/*
 * A segment's SEAL is durable: write its seal block (docs/wal_format.md). Until that is
 * done the segment is not settled, so no release closes its file meanwhile. An error
 * other than ENOSPC fails the log (it is the write path); without a seal block the
 * segment is merely read in full at the next open.
 */
static void write_seal_block(struct aurawal *log, struct wal_segment *s)
{
	struct wal_summary sm;
	int rc;

	wal_summary_of(log, s, WAL_SUM_SEALED, &sm);
	log->io_busy = true;
	pthread_mutex_unlock(&log->mu);
	rc = wal_write_summary(log, s, &sm, false);
	pthread_mutex_lock(&log->mu);
	log->io_busy = false;
	s->summary_pending = false;
	s->summary_ok = rc == 0;
	if (rc < 0 && rc != -ENOSPC && !log->failed)
		wake_unlocked(log, fail_stop(log, NULL, rc));
}

/* One flush of fd for pay_debt. mu held; dropped for the I/O. */
static int debt_io(struct aurawal *log, int fd)
{
	int rc;

	log->io_busy = true;
	pthread_mutex_unlock(&log->mu);
	rc = fd >= 0 ? wal_fdatasync(log, fd) : sync_dir_fd(log);
	pthread_mutex_lock(&log->mu);
	log->io_busy = false;
	return rc;
}

/* The oldest segment before `seg` that owes a flush, or NULL. mu held. */
static struct wal_segment *first_owing(struct aurawal *log, const struct wal_segment *seg)
{
	for (struct wal_segment *s = log->segs; s && s->number < seg->number; s = s->next)
		if (wal_seg_owes(s))
			return s;
	return NULL;
}

/*
 * mu held (dropped for the I/O): before a durable write into `seg`, or a sync of it, pay
 * what lazy rollovers owe - docs/wal_format.md, "Rollover without a flush": fdatasync
 * every earlier segment written since its last sync (then its seal block, if it is
 * sealed), fsync the directory if a segment file was renamed since it was last synced,
 * and fdatasync seg if its header is new. Only then may the durable write (and the SYNC
 * mark it may carry) go out. A segment being flushed is held by a reference, so a
 * release cannot close its file meanwhile. 0 or -errno (nothing is written then).
 */
static int pay_debt(struct aurawal *log, struct wal_segment *seg)
{
	struct wal_segment *s;
	uint64_t gen;
	int rc = 0;

	while (rc == 0 && (s = first_owing(log, seg))) {
		uint64_t end = s->written_end;

		s->refs++;
		rc = debt_io(log, s->fd);
		if (rc == 0) {
			s->durable_end = MAX(s->durable_end, end);
			s->lazy_hdr = false;
			if (s->sealed && s->durable_end >= s->data_end && !s->summary_ok &&
			    !s->released) {
				s->summary_pending = true;
				write_seal_block(log, s);
			}
		}
		wal_seg_put(log, s);
	}
	gen = log->dir_gen;
	if (rc == 0 && gen != log->dir_synced && (rc = debt_io(log, -1)) == 0)
		log->dir_synced = MAX(log->dir_synced, gen);
	if (rc == 0 && seg->lazy_hdr && (rc = debt_io(log, seg->fd)) == 0)
		seg->lazy_hdr = false;
	return rc;
}

/* Write one plan and complete it. mu held; dropped for the I/O and the wake-ups. */
static void write_plan(struct aurawal *log, const struct wal_plan *p)
{
	struct wal_segment *sealed = p->b[p->n - 1]->sealed ? p->b[p->n - 1]->seg : NULL;
	uint64_t t0 = wal_now_ns();
	int rc = p->sync ? pay_debt(log, p->b[0]->seg) : 0;

	if (rc == 0) {
		log->io_busy = true;
		pthread_mutex_unlock(&log->mu);
		t0 = wal_now_ns();
		rc = write_plan_io(log, p);
		pthread_mutex_lock(&log->mu);
		log->io_busy = false;
	}
	wake_unlocked(log, complete(log, p, rc, wal_now_ns() - t0));
	if (rc == 0 && sealed && sealed->summary_pending)
		write_seal_block(log, sealed);
	pthread_cond_broadcast(&log->cv_done);
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
 * on its own, after what earlier segments owe (pay_debt). aurawal_sync() places the SYNC
 * mark - and so a batch - in a segment that still needs one, so this never writes one.
 * mu held; dropped for the I/O.
 */
static void bare_sync(struct aurawal *log)
{
	struct wal_segment *seg = log->active;
	uint64_t upto = log->written_seq, end = seg->written_end, t0 = wal_now_ns();
	int rc = pay_debt(log, seg);

	if (rc == 0) {
		log->io_busy = true;
		pthread_mutex_unlock(&log->mu);
		rc = wal_fdatasync(log, seg->fd);
		pthread_mutex_lock(&log->mu);
		log->io_busy = false;
	}
	if (rc < 0) {
		wake_unlocked(log, fail_stop(log, NULL, rc));
	} else {
		record_sync(log, wal_now_ns() - t0);
		log->durable_seq = MAX(log->durable_seq, upto);
		seg->durable_end = MAX(seg->durable_end, end);
		wake_unlocked(log, wal_waiters_take(log, log->durable_seq, 0));
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
		struct wal_plan p;
		uint64_t wake = 0;

		if (log->io_busy) { /* an appender writes its own batch: it pokes us after */
			wait_cv(&log->cv_writer, &log->mu);
			continue;
		}
		if (!log->failed && plan(log, &p, &wake)) {
			write_plan(log, &p);
			continue;
		}
		if (!log->failed && wants_bare_sync(log)) {
			bare_sync(log);
			continue;
		}
		if (log->closing &&
		    (log->failed || (!log->queue && (!log->cur || !log->cur->nrecords))))
			break;
		timed_wait(log, log->failed ? 0 : wake);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
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

/* No lock held: run the callbacks that completed, if the hint says there are any. */
static void run_cbs_if_ready(struct aurawal *log)
{
	if (atomic_load_explicit(&log->cbs_ready, memory_order_relaxed))
		wal_run_ready_cbs(log);
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
	if (WAL_HEADER_BLOCK + wal_rec_size(len) + MARK_SIZE + SEAL_SIZE > log->segment_size)
		return -EMSGSIZE; /* would not fit in a segment, with its mark and a SEAL */
	*in = (struct rec_in){ iov, iovcnt, (uint32_t) len, XXH3_64bits_digest(&st), WAL_REC_DATA };
	return 0;
}

/* Does the writer thread have anything to do? (mu held) */
static bool writer_has_work(const struct aurawal *log)
{
	return log->queue || (log->cur && log->cur->nrecords) || wants_bare_sync(log) ||
	       log->closing;
}

/* A durable record was placed: if the active batch now holds as many as the writer is
 * gathering for, it is due. mu held. */
static void poke_if_due(struct aurawal *log)
{
	if (log->cur && log->cur->ndurable >= log->gather_target)
		writer_poke(log);
}

/* Place a record; a durable one is counted for the writer's gathering, and the caller
 * pokes the writer if it made the batch due (poke_if_due) - unless it writes the batch
 * itself (write_own_batch). mu held. */
static int append_locked(struct aurawal *log, const struct rec_in *in, unsigned flags,
			 aurawal_loc_t *loc, uint64_t *seq)
{
	bool durable = (flags & AURAWAL_DURABLE) != 0;
	int rc = reserve(log, wal_rec_size(in->len) + (durable ? MARK_SIZE : 0));

	if (rc)
		return rc;
	if (durable && log->active->unmarked)
		place_mark(log); /* the segment's first durable write carries its mark */
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
 */
static void write_own_batch(struct aurawal *log)
{
	struct wal_plan p;
	uint64_t wake;

	if (log->io_busy || log->failed || log->enospc || log->closing || log->queue ||
	    log->waiters || !log->cur || log->cur->ndurable != 1 || !plan(log, &p, &wake)) {
		poke_if_due(log); /* the writer's job after all */
		return;
	}
	write_plan(log, &p);
	/* Whatever arrived meanwhile is the writer's; a lone appender wakes nobody (each
	 * needless wake-up costs a thread switch per append on a small machine). */
	if (writer_has_work(log))
		writer_poke(log);
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
	if (rc == 0 && (flags & AURAWAL_DURABLE)) {
		write_own_batch(log);
		rc = wait_durable_unlock(log, s);
	} else
		pthread_mutex_unlock(&log->mu);
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
	pthread_mutex_lock(&log->mu);
	rc = append_locked(log, &in, flags, &c->loc, &c->seq);
	if (rc == 0) {
		if (flags & AURAWAL_DURABLE)
			poke_if_due(log);
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
		pthread_mutex_unlock(&log->mu);
	} else if (log->failed) {
		rc = log->failed;
		pthread_mutex_unlock(&log->mu);
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
	if (log->written_seq < target) {
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

/* ---- open and close ---- */

/* After recovery: the partial last block of the log, for the first batch to rewrite. */
int wal_writer_init(struct aurawal *log)
{
	int rc = wal_recover(log);
	uint64_t end;

	if (rc == 0 && !log->read_only)
		rc = wal_recover_finish(log);
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
	wal_run_ready_cbs(log);
	free(log->tail);
	log->tail = NULL;
}

/* Close, after the writer stopped: make renames durable that no sync has covered (a
 * release's, or the ready segment's). */
int wal_sync_dir_if_dirty(struct aurawal *log)
{
	if (log->read_only || log->dir_gen == log->dir_synced)
		return 0;
	log->dir_synced = log->dir_gen;
	return sync_dir_fd(log);
}

/*
 * Close, after the writer stopped and everything appended is durable: write the close
 * block into the active segment (docs/wal_format.md), so that the next open need not
 * scan past the end of the log. Best effort: without it the next open reads more.
 */
int wal_write_close_block(struct aurawal *log)
{
	struct wal_segment *s = log->active;
	struct wal_summary sm;

	if (log->read_only || log->failed || log->enospc || !s || log->queue ||
	    (log->cur && log->cur->nrecords) || log->durable_seq + 1 != log->next_seq ||
	    s->durable_end < s->data_end)
		return 0;
	wal_summary_of(log, s, WAL_SUM_CLOSED, &sm);
	return wal_write_summary(log, s, &sm, false);
}
