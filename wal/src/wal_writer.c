/* SPDX-License-Identifier: MIT */
/*
 * wal_writer.c - the writer thread: group commit, completion, what rollovers owe.
 *
 * Appenders place records in batches (wal_append.c); the writer writes them.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wal_internal.h"
#include "wal_wait.h"

#define ENOSPC_RETRY_NS (200ull * 1000000ull)
#define GATHER_MIN_NS	(20ull * 1000)	 /* bounds of the gathering window */
#define GATHER_MAX_NS	(2000ull * 1000) /* (a quarter of the average sync) */

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
		wal_batch_seal_tail(log, b);
		log->cur = NULL;
	}
	/* zeros after the data, to the block boundary */
	memset(b->buf + (b->end - b->start), 0, align_up(b->end, WAL_BLOCK) - b->end);
	p->sync |= needs_sync(log, b);
	p->ndurable += b->ndurable;
	p->b[p->n++] = b;
}

/* The next write, or 0 batches (then *wake is when to look again, 0 = when told). */
int wal_plan_next(struct aurawal *log, struct wal_plan *p, uint64_t *wake)
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

/* The bytes a plan's write covers: its batches' blocks. */
static uint64_t plan_bytes(const struct wal_plan *p)
{
	return align_up(p->b[p->n - 1]->end, WAL_BLOCK) - p->b[0]->start;
}

/*
 * Write the plan (and sync it). A short count is progress, not an error (the chain's
 * sync did not run): the rest is written (and synced) from the last block boundary
 * reached, so the retry stays aligned, for as long as each write gets further. Only a
 * write that moves no block further gives up, with -EIO.
 */
static int write_plan_io(struct aurawal *log, const struct wal_plan *p)
{
	struct iovec iov[WAL_NBUFS_MAX];
	int reg = -1, n = plan_iov(p, iov, &reg), fd = p->b[0]->seg->fd, rc;
	uint64_t off = p->b[0]->start, len = 0, done = 0, step;

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	for (bool first = true;; first = false) {
		rc = wal_writev_sync(log, fd, iov, n, reg, off + done, p->sync, p->mode);
		if (rc < 0 || (uint64_t) rc == len - done)
			return rc < 0 ? rc : 0;
		step = align_down((uint64_t) rc, WAL_BLOCK);
		if (step == 0 && !first)
			return -EIO;
		done += step;
		n = iov_advance(iov, n, step);
		reg = -1;
	}
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

/*
 * A write failed with -ENOSPC and its batches are back at the head of the queue: every
 * record whose appender is told so (a durable or an asynchronous append, noted in its
 * batch's voids) becomes a VOID record before anything is written again, so a failed
 * append is never found in the log (docs/wal_format.md, "Out of space"). A record lies
 * whole in its own batch's buffer, but the block holding the end of one batch is also
 * the start of the next one's buffer (and of log->tail while no batch follows): those
 * copies are refreshed from the batch before, oldest first.
 */
static struct wal_batch *pending_next(const struct aurawal *log, const struct wal_batch *b)
{
	return b == log->cur ? NULL : b->next ? b->next : log->cur;
}

static void void_told(struct aurawal *log)
{
	struct wal_batch *prev = NULL, *b;

	for (b = log->queue ? log->queue : log->cur; b; b = pending_next(log, b)) {
		for (uint32_t i = 0; i < b->nvoids; i++)
			wal_rec_void(b->buf + b->voids[i], wal_seed(log->log_id, b->seg->number));
		b->nvoids = 0;
		if (prev && prev->seg == b->seg && prev->end > b->start)
			memcpy(b->buf, prev->buf + (b->start - prev->start), prev->end - b->start);
		prev = b;
	}
	if (prev && prev != log->cur)
		wal_batch_seal_tail(log, prev); /* the next batch starts from log->tail */
}

/* mu held: an I/O of the write path failed with rc - remembered for the report, should it
 * fail the log. The first failure is the one that counts. */
static void note_io_error(struct aurawal *log, const char *what, uint64_t segment, uint64_t offset,
			  uint64_t length, int rc)
{
	if (rc < 0 && !log->failed)
		log->io_error = (struct wal_io_error){ what, segment, offset, length, rc };
}

/* Fail-stop: the log is failed with rc; every waiter and callback hears it, and the
 * reporter once mu is dropped (wake_unlocked). Returns the waiters to wake. */
static struct wal_waiter *fail_stop(struct aurawal *log, const struct wal_plan *p, int rc)
{
	log->failed = rc;
	atomic_store_explicit(&log->failed_pub, rc, memory_order_relaxed);
	if (log->io_error.rc != rc)
		log->io_error = (struct wal_io_error){ "an I/O of the write path", 0, 0, 0, rc };
	log->report_due = true;
	/* An appender waiting for the next segment (reserve, prepare_retry) must hear it
	 * too: the preparer makes no more once the log has failed. */
	pthread_cond_broadcast(&log->cv_ready);
	fail_all_cbs(log, p, rc);
	for (int i = 0; p && i < p->n; i++)
		wal_batch_release(log, p->b[i]);
	return wal_waiters_take(log, UINT64_MAX, rc);
}

/* A sync completed in lat_ns: count it (before durable_seq moves). */
static void record_sync(struct aurawal *log, uint64_t lat_ns)
{
	uint64_t us = lat_ns / 1000;

	log->st_sync_lat[wal_lat_bucket(us)]++;
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
		wal_batch_release(log, p->b[i]);
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
		void_told(log);
		w = wal_waiters_take(log, UINT64_MAX, rc);
	} else { /* fail-stop: a retried sync after EIO could acknowledge lost data */
		w = fail_stop(log, p, rc);
	}
	if (p->enospc_try)
		log->enospc_ended = p->enospc_try;
	return w;
}

/* No lock held: tell the reporter why the log failed (AURAWAL_REPORT_FAILED). */
static void report_failure(struct aurawal *log, const struct wal_io_error *e)
{
	char why[256];

	snprintf(why, sizeof(why),
		 "the log failed: %s: %s - every later append and sync returns this error "
		 "until the log is reopened",
		 e->what, aurawal_strerror(e->rc));
	wal_report(log, AURAWAL_REPORT_FAILED, e->segment, e->offset, e->length, why);
}

/* Drop mu, tell the reporter of a fail-stop (before the waiters hear of it), wake the
 * waiters, take mu again. */
static void wake_unlocked(struct aurawal *log, struct wal_waiter *w)
{
	void (*test_waking)(struct aurawal *) = log->test_waking;
	bool report = log->report_due;
	struct wal_io_error e;

	if (!w && !report)
		return;
	if (report)
		e = log->io_error; /* copied under mu, told without it */
	log->report_due = false;
	pthread_mutex_unlock(&log->mu);
	if (report)
		report_failure(log, &e);
	wal_waiters_wake(w);
	if (test_waking)
		test_waking(log);
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
	note_io_error(log, "the seal block write", s->number, 0, WAL_HEADER_BLOCK, rc);
	if (rc < 0 && rc != -ENOSPC && !log->failed)
		wake_unlocked(log, fail_stop(log, NULL, rc));
}

/* One flush: fdatasync of segment s, or fsync of the directory if s is NULL. mu held;
 * dropped for the I/O. */
static int flush_io(struct aurawal *log, struct wal_segment *s)
{
	int fd = s ? s->fd : -1, rc;

	log->io_busy = true;
	pthread_mutex_unlock(&log->mu);
	rc = fd >= 0 ? wal_fdatasync(log, fd) : sync_dir_fd(log);
	pthread_mutex_lock(&log->mu);
	log->io_busy = false;
	note_io_error(log, s ? "fdatasync" : "the directory's fsync", s ? s->number : 0, 0, 0, rc);
	return rc;
}

/* Sync the directory if names changed in it since it was last synced (renames, unlinks:
 * dir_gen). 0 or -errno. mu held; dropped for the I/O. */
static int sync_dir_owed(struct aurawal *log)
{
	uint64_t gen = log->dir_gen;
	int rc;

	if (gen == log->dir_synced)
		return 0;
	if ((rc = flush_io(log, NULL)) == 0)
		log->dir_synced = MAX(log->dir_synced, gen);
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
 * release cannot close its file meanwhile. 0 or -errno (nothing is written then) - the
 * log's failure error if a seal block written here failed it, though every flush
 * succeeded: after a fail-stop nothing may be made durable.
 */
static int pay_debt(struct aurawal *log, struct wal_segment *seg)
{
	struct wal_segment *s;
	int rc = 0;

	while (rc == 0 && (s = first_owing(log, seg))) {
		uint64_t end = s->written_end;

		s->refs++;
		rc = flush_io(log, s);
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
	if (rc == 0 && log->failed)
		return log->failed; /* a seal block's write failed the log: write nothing more */
	if (rc == 0)
		rc = sync_dir_owed(log);
	if (rc == 0 && seg->lazy_hdr) {
		uint64_t end = seg->written_end;

		if ((rc = flush_io(log, seg)) == 0) {
			seg->lazy_hdr = false;
			seg->durable_end = MAX(seg->durable_end, end);
		}
	}
	return rc;
}

/*
 * How a write of seg from `start` on is made durable. A DSYNC write may go to the disk
 * on its own (FUA) without flushing the device's cache - it then makes only its own
 * blocks durable. If earlier writes left blocks of seg before `start` written but not
 * synced (the flush delay, aurawal_flush), the write is linked to an fdatasync instead,
 * so that its acknowledgement covers them too. mu held.
 */
static aurawal_sync_mode_t sync_mode_for(const struct aurawal *log, const struct wal_segment *seg,
					 uint64_t start)
{
	if (log->opts.sync_mode == AURAWAL_SYNC_DSYNC && seg->durable_end < start)
		return AURAWAL_SYNC_FDATASYNC;
	return log->opts.sync_mode;
}

/* Write one plan and complete it; returns how its write went (0 or -errno). mu held;
 * dropped for the I/O and the wake-ups. */
int wal_write_plan(struct aurawal *log, struct wal_plan *p)
{
	struct wal_segment *sealed = p->b[p->n - 1]->sealed ? p->b[p->n - 1]->seg : NULL;
	uint64_t t0 = wal_now_ns();
	int rc;
	struct wal_waiter *w;
	bool seal;

	/* A retry: numbered before anything of it is tried (enospc_retry waits for one
	 * begun after its call) */
	p->enospc_try = log->enospc ? ++log->enospc_begun : 0;
	rc = p->sync ? pay_debt(log, p->b[0]->seg) : 0;

	p->mode = sync_mode_for(log, p->b[0]->seg, p->b[0]->start);
	if (rc == 0) {
		log->io_busy = true;
		pthread_mutex_unlock(&log->mu);
		t0 = wal_now_ns();
		rc = write_plan_io(log, p);
		pthread_mutex_lock(&log->mu);
		log->io_busy = false;
		note_io_error(log, p->sync ? "a durable write" : "a write", p->b[0]->seg->number,
			      p->b[0]->start, plan_bytes(p), rc);
	}
	w = complete(log, p, rc, wal_now_ns() - t0);
	/* A seal block follows: keep the I/O while the waiters are woken without mu, or a
	 * lone durable appender could start its own write (write_own_batch) - and the
	 * writer's next write could then be in flight with it. */
	seal = rc == 0 && sealed && sealed->summary_pending;
	log->io_busy = seal;
	wake_unlocked(log, w);
	if (seal)
		write_seal_block(log, sealed);
	pthread_cond_broadcast(&log->cv_done);
	return rc;
}

static void timed_wait(struct aurawal *log, uint64_t wake)
{
	struct timespec ts;
	uint64_t now = wal_now_ns(), t;

	if (!wake) {
		pthread_cond_wait(&log->cv_writer, &log->mu);
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
 * -ENOSPC is not a failure of the log, as for a batch's sync (complete): the syncs it
 * answers - every record they wait for is written, none is voided - return it, and the
 * request is dropped rather than retried in a loop while space is short; the next
 * aurawal_sync() asks again. mu held; dropped for the I/O.
 */
static void bare_sync(struct aurawal *log)
{
	struct wal_segment *seg = log->active;
	uint64_t upto = log->written_seq, end = seg->written_end, t0 = wal_now_ns();
	int rc = pay_debt(log, seg);

	if (rc == 0)
		rc = flush_io(log, seg);
	if (rc == -ENOSPC && !log->failed) {
		if (log->sync_target <= upto)
			log->sync_target = log->durable_seq;
		wake_unlocked(log, wal_waiters_take(log, upto, rc));
	} else if (rc < 0) {
		wake_unlocked(log, fail_stop(log, NULL, rc));
	} else {
		record_sync(log, wal_now_ns() - t0);
		log->durable_seq = MAX(log->durable_seq, upto);
		seg->durable_end = MAX(seg->durable_end, end);
		wake_unlocked(log, wal_waiters_take(log, log->durable_seq, 0));
	}
	pthread_cond_broadcast(&log->cv_done);
}

/* Not while a write's ENOSPC waits for its retry (log->enospc): the sync target then
 * names records of the kept batches too, which a bare sync answering -ENOSPC leaves in
 * place - the writer would sync again and again, never reaching the retry's wait or a
 * close. The kept batches' retry carries the sync (pay_debt included), and a sync asked
 * meanwhile has that retry made at once (enospc_retry). */
bool wal_wants_bare_sync(const struct aurawal *log)
{
	return !log->enospc && log->sync_target > log->durable_seq &&
	       log->written_seq > log->durable_seq;
}

/*
 * aurawal_sync() found every record durable, but names changed in the directory since it
 * was last synced (a release's renames and unlinks, which aurawal.h promises durable
 * after the next sync): sync it alone. A failure fails the log, as it does when a
 * durable write pays the same sync (pay_debt). mu held; dropped for the I/O.
 */
static void dir_sync(struct aurawal *log)
{
	int rc = sync_dir_owed(log);

	if (rc < 0)
		wake_unlocked(log, fail_stop(log, NULL, rc));
	pthread_cond_broadcast(&log->cv_done);
}

bool wal_wants_dir_sync(const struct aurawal *log)
{
	return log->dir_sync_target > log->dir_synced;
}

void *wal_writer_main(void *arg)
{
	struct aurawal *log = arg;

	pthread_mutex_lock(&log->mu);
	for (;;) {
		struct wal_plan p;
		uint64_t wake = 0;

		if (log->io_busy) { /* an appender writes its own batch: it pokes us after */
			pthread_cond_wait(&log->cv_writer, &log->mu);
			continue;
		}
		if (!log->failed && wal_plan_next(log, &p, &wake)) {
			wal_write_plan(log, &p);
			continue;
		}
		if (!log->failed && wal_wants_bare_sync(log)) {
			bare_sync(log);
			continue;
		}
		if (!log->failed && wal_wants_dir_sync(log)) {
			dir_sync(log);
			continue;
		}
		/* Closing: done once everything is written - or when it cannot be: the log
		 * failed, or its last attempt found no space (close does not wait for space
		 * that may never come; it returns -ENOSPC, and every appender concerned has
		 * been told already). */
		if (log->closing && (log->failed || log->enospc ||
				     (!log->queue && (!log->cur || !log->cur->nrecords))))
			break;
		timed_wait(log, log->failed ? 0 : wake);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
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

/* Close, after the writer and the preparer stopped: flush the ready segment if its
 * header is owed (a lazy rollover's preparer wrote it without a flush). Its name is made
 * durable next (wal_sync_dir_if_dirty): without its header, a power loss would leave a
 * numbered segment with no valid header, which the next open reports dropped. Cheap:
 * its zeros were written with O_DIRECT (or it is a recycled segment), so this flushes
 * the header block and the file's metadata. */
int wal_flush_ready(struct aurawal *log)
{
	int rc;

	if (log->read_only || !log->ready || !log->ready->lazy_hdr)
		return 0;
	rc = wal_fdatasync(log, log->ready->fd);
	if (rc == 0)
		log->ready->lazy_hdr = false;
	return rc;
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
