/* SPDX-License-Identifier: MIT */
/*
 * wal_read.c - reading records back: one record by location (one aligned O_DIRECT read
 * through a registered buffer, or a copy from the batch that still holds it), the
 * sequential iterator, and asynchronous reads (their completions are delivered by
 * aurawal_poll, wal_poll.c). Every record read is verified (marker, size, checksum).
 *
 * A reader holds a reference on its segment (under mu) for as long as it reads from
 * its file, so aurawal_release_before() never closes a file under a reader.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wal_internal.h"

/* Verify the record at p (avail bytes) and copy its payload out. */
static int verify_copy(struct aurawal *log, const struct wal_segment *s, const uint8_t *p,
		       uint64_t avail, aurawal_loc_t loc, void *buf, size_t *len, uint64_t *seq)
{
	struct wal_rec rec;

	if (wal_rec_parse(p, avail, s->size - loc.offset, wal_seed(log->log_id, s->number), &rec) !=
		WAL_PARSE_OK ||
	    rec.len != loc.size)
		return AURAWAL_ECORRUPT;
	/* VOID: its append failed (ENOSPC), nothing is stored there. SEAL, SYNC: intact, the
	 * log's own, no append either (aurawal_iter_next_record returns their places). */
	if (rec.type != WAL_REC_DATA)
		return -ENOENT;
	if (rec.len)
		memcpy(buf, rec.payload, rec.len);
	if (len)
		*len = rec.len;
	if (seq)
		*seq = rec.seq;
	return 0;
}

/* mu held: the record is not written: it is still in a batch - or, once the log has
 * failed, it is lost, which is the failure's error (the bytes were never stored: nothing
 * is damaged). Lost too when it still waits in a batch the failed write did not carry:
 * after a fail-stop nothing more is written, so serving it from memory would hand out
 * a record that is not in the log (aurawal_failed()). */
static int read_memory(struct aurawal *log, const struct wal_segment *s, aurawal_loc_t loc,
		       void *buf, size_t *len, uint64_t *seq)
{
	uint64_t end = loc.offset + wal_rec_size(loc.size);

	if (log->failed)
		return log->failed;
	for (int i = 0; i < log->nbufs; i++) {
		const struct wal_batch *b = &log->bufs[i];

		if (b->busy && b->seg == s && b->start <= loc.offset && end <= b->end)
			return verify_copy(log, s, b->buf + (loc.offset - b->start),
					   end - loc.offset, loc, buf, len, seq);
	}
	return AURAWAL_ECORRUPT; /* data_end says it exists, yet no batch holds it */
}

/* mu held: a free registered read buffer, or -1. */
static int read_buf_get(struct aurawal *log)
{
	uint32_t m = log->reads.free_mask;
	int i;

	if (!m)
		return -1;
	i = __builtin_ctz(m);
	log->reads.free_mask &= ~(1u << i);
	return i;
}

static int read_disk(struct aurawal *log, struct wal_segment *s, aurawal_loc_t loc, int slot,
		     void *buf, size_t *len, uint64_t *seq)
{
	uint64_t start = align_down(loc.offset, WAL_BLOCK);
	uint64_t end = align_up(loc.offset + wal_rec_size(loc.size), WAL_BLOCK);
	uint8_t *mem = slot >= 0 ? log->reads.bufs[slot] : wal_alloc(log, end - start);
	int rc;

	if (!mem)
		return -ENOMEM;
	rc = wal_pread(log, s->fd, mem, slot >= 0 ? log->reads.reg_index[slot] : -1, end - start,
		       start);
	if (rc >= 0)
		rc = (uint64_t) rc < loc.offset - start + WAL_REC_HEADER
			 ? AURAWAL_ECORRUPT /* the file ends before the record */
			 : verify_copy(log, s, mem + (loc.offset - start),
				       (uint64_t) rc - (loc.offset - start), loc, buf, len, seq);
	if (slot < 0)
		wal_free(log, mem);
	return rc;
}

AURAWAL_API int aurawal_read(aurawal_t *log, aurawal_loc_t loc, void *buf, size_t cap, size_t *len,
			     uint64_t *seq)
{
	struct wal_segment *s;
	uint64_t size = wal_rec_size(loc.size);
	int rc, slot = -1;

	if (!log || (!buf && loc.size))
		return -EINVAL;
	if (cap < loc.size)
		return -EMSGSIZE;
	pthread_mutex_lock(&log->mu);
	s = wal_seg_find(log, loc.segment);
	if (!s) {
		pthread_mutex_unlock(&log->mu);
		return -ENOENT;
	}
	if (loc.offset < WAL_HEADER_BLOCK || loc.offset % 8 || loc.offset + size > s->data_end) {
		rc = -EINVAL;
	} else if (loc.offset + size > s->written_end) {
		rc = read_memory(log, s, loc, buf, len, seq);
	} else {
		if (size + WAL_BLOCK <= WAL_READ_BUF_SZ)
			slot = read_buf_get(log);
		pthread_mutex_unlock(&log->mu);
		rc = read_disk(log, s, loc, slot, buf, len, seq);
		pthread_mutex_lock(&log->mu);
		if (slot >= 0)
			log->reads.free_mask |= 1u << slot;
	}
	wal_seg_put(log, s);
	pthread_mutex_unlock(&log->mu);
	return rc;
}

/* ---- the iterator ---- */

struct aurawal_iter {
	struct aurawal *log;
	struct wal_segment *seg; /* referenced */
	uint64_t off;
	struct wal_reader r;
};

AURAWAL_API int aurawal_iter_open(aurawal_t *log, aurawal_loc_t from, aurawal_iter_t **out)
{
	struct aurawal_iter *it;
	struct wal_segment *s;

	if (!log || !out)
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	pthread_mutex_lock(&log->mu);
	if (from.segment == 0) {
		s = log->segs;
		if (s)
			s->refs++;
	} else {
		s = wal_seg_find(log, from.segment);
	}
	/* No record can start there: refused now, rather than read later - once appends
	 * reach it - as damage. An offset in the header block is the segment's start. */
	if (s && from.segment && from.offset >= WAL_HEADER_BLOCK &&
	    (from.offset % 8 || from.offset > s->data_end)) {
		wal_seg_put(log, s);
		pthread_mutex_unlock(&log->mu);
		free(it);
		return -EINVAL;
	}
	pthread_mutex_unlock(&log->mu);
	if (!s) {
		free(it);
		return -ENOENT;
	}
	it->log = log;
	it->seg = s;
	it->off = from.segment ? MAX((uint64_t) from.offset, (uint64_t) WAL_HEADER_BLOCK)
			       : WAL_HEADER_BLOCK;
	wal_reader_init(&it->r, log, s);
	*out = it;
	return 0;
}

/*
 * it->off is at the end of what is written of its segment: move to the next segment if
 * this one is done - sealed and written to its end. A segment a rollover has just sealed
 * may still have its last records and its SEAL in buffers: until they are written the
 * iterator is at the end of what is written, not past them. 1 moved (or more was
 * written meanwhile: read on), 0 at the end, <0 error.
 */
static int next_segment(struct aurawal_iter *it)
{
	struct aurawal *log = it->log;
	struct wal_segment *s = it->seg, *n;

	pthread_mutex_lock(&log->mu);
	if (s->released) { /* since iter_step looked: its next may be freed already */
		pthread_mutex_unlock(&log->mu);
		return -ENOENT;
	}
	n = s->next;
	if (it->off < s->written_end || !n || s == log->active || s->written_end < s->data_end) {
		int more = it->off < s->written_end;

		pthread_mutex_unlock(&log->mu);
		return more;
	}
	n->refs++;
	wal_seg_put(log, it->seg);
	pthread_mutex_unlock(&log->mu);
	wal_reader_fini(&it->r);
	it->seg = n;
	it->off = WAL_HEADER_BLOCK;
	wal_reader_init(&it->r, log, n);
	return 1;
}

/* Damage at it->off: read past it in inspect mode, else report corruption. */
static int iter_damage(struct aurawal_iter *it, uint64_t limit, uint64_t seed)
{
	uint64_t next;

	if (it->log->opts.recovery != AURAWAL_RECOVER_INSPECT)
		return AURAWAL_ECORRUPT;
	next = wal_reader_resync(&it->r, it->off + 8, limit, seed);
	wal_report(it->log, AURAWAL_REPORT_CORRUPTION, it->seg->number, it->off, next - it->off,
		   "damaged data skipped by the iterator");
	it->off = next;
	return 0;
}

_Static_assert((int) AURAWAL_RECORD_DATA == WAL_REC_DATA &&
		   (int) AURAWAL_RECORD_SEAL == WAL_REC_SEAL &&
		   (int) AURAWAL_RECORD_SYNC == WAL_REC_SYNC &&
		   (int) AURAWAL_RECORD_VOID == WAL_REC_VOID,
	       "aurawal_record_type_t is the type byte on disk");

/* The next record - of any type if `all`, else the next DATA record - into *out. */
static int iter_step(struct aurawal_iter *it, bool all, aurawal_record_t *out)
{
	for (;;) {
		struct aurawal *log = it->log;
		uint64_t limit, seed, at;
		struct wal_rec rec;
		bool released;
		int rc;

		pthread_mutex_lock(&log->mu);
		limit = it->seg->written_end;
		released = it->seg->released;
		pthread_mutex_unlock(&log->mu);
		if (released)
			return -ENOENT;
		if (it->off >= limit) {
			rc = next_segment(it);
			if (rc <= 0)
				return rc;
			continue;
		}
		seed = wal_seed(log->log_id, it->seg->number);
		rc = wal_reader_record(&it->r, it->off, limit, seed, &rec);
		if (rc < 0)
			return rc;
		if (rc == WAL_PARSE_BAD) {
			if ((rc = iter_damage(it, limit, seed)) != 0)
				return rc;
			continue;
		}
		at = it->off;
		/* A SEAL ends its segment; SYNC marks and VOID records are not appends. */
		it->off = rec.type == WAL_REC_SEAL ? limit : it->off + wal_rec_size(rec.len);
		if (rec.type != WAL_REC_DATA && !all)
			continue;
		*out = (aurawal_record_t){ { it->seg->number, (uint32_t) at, rec.len },
					   rec.seq,
					   (aurawal_record_type_t) rec.type,
					   rec.payload,
					   rec.len };
		return 1;
	}
}

AURAWAL_API int aurawal_iter_next(aurawal_iter_t *it, aurawal_loc_t *loc, uint64_t *seq,
				  const void **payload, size_t *len)
{
	aurawal_record_t rec;
	int rc;

	if (!it)
		return -EINVAL;
	rc = iter_step(it, false, &rec);
	if (rc != 1)
		return rc;
	if (loc)
		*loc = rec.loc;
	if (seq)
		*seq = rec.seq;
	if (payload)
		*payload = rec.payload;
	if (len)
		*len = rec.len;
	return 1;
}

AURAWAL_API int aurawal_iter_next_record(aurawal_iter_t *it, aurawal_record_t *rec)
{
	if (!it || !rec)
		return -EINVAL;
	return iter_step(it, true, rec);
}

AURAWAL_API void aurawal_iter_close(aurawal_iter_t *it)
{
	if (!it)
		return;
	wal_reader_fini(&it->r);
	pthread_mutex_lock(&it->log->mu);
	wal_seg_put(it->log, it->seg);
	pthread_mutex_unlock(&it->log->mu);
	free(it);
}

/* ---- asynchronous reads ---- */

struct wal_aread {
	struct aurawal *log;
	struct wal_segment *seg; /* referenced until the read is done */
	aurawal_loc_t loc;
	void *buf;
	uint8_t *mem;	/* the aligned read buffer */
	int slot;	/* registered read buffer, or -1 (mem was allocated) */
	uint64_t start; /* file offset of mem[0] */
	size_t len;	/* bytes to read into mem */
	size_t got;	/* of which read so far (a short count reads on) */
	struct wal_cb *c;
	struct wal_aread *next; /* log->parked */
};

static void read_done(auraio_request_t *req, ssize_t res, void *ud);

/* Read mem[got..len): one try, never a wait. 0, -EAGAIN (the ring is full), or -errno. */
static int submit_read(struct wal_aread *x)
{
	struct aurawal *log = x->log;
	auraio_buf_t b = x->slot >= 0 && log->reads.reg_index[x->slot] >= 0
			     ? auraio_buf_fixed(log->reads.reg_index[x->slot], x->got)
			     : auraio_buf(x->mem + x->got);

	if (auraio_read(log->engine, x->seg->fd, b, x->len - x->got, (off_t) (x->start + x->got),
			read_done, x))
		return 0;
	return -errno;
}

/* The read is over (rc: 0 or its error, as for aurawal_read): free what it held and queue
 * its callback for poll. */
static void read_finish(struct wal_aread *x, int rc)
{
	struct aurawal *log = x->log;

	if (x->slot < 0)
		wal_free(log, x->mem);
	pthread_mutex_lock(&log->mu);
	if (x->slot >= 0)
		log->reads.free_mask |= 1u << x->slot;
	wal_seg_put(log, x->seg);
	log->pending_reads--;
	x->c->status = rc;
	wal_deliver(log, x->c);
	pthread_mutex_unlock(&log->mu);
	free(x);
}

/* Callback context, the ring full: the rest of a short read waits on log->parked for a
 * thread that may wait (poll, close: wal_resubmit_parked). It stays counted in
 * pending_reads, so pollers keep driving it; cv_done wakes one that sleeps on it. */
static void park(struct wal_aread *x)
{
	struct aurawal *log = x->log;

	pthread_mutex_lock(&log->mu);
	x->next = NULL;
	if (log->parked_tail)
		log->parked_tail->next = x;
	else
		log->parked = x;
	log->parked_tail = x;
	log->nparked++;
	pthread_cond_broadcast(&log->cv_done);
	pthread_mutex_unlock(&log->mu);
}

/* No lock held, not inside an auraio callback: submit the parked reads again, one try
 * each. Those the ring still refuses go back in front of the list, in order; a read that
 * fails otherwise completes with its error. Each parked read is taken by one thread only
 * (the list is emptied under mu), so none is submitted twice. */
void wal_resubmit_parked(struct aurawal *log)
{
	struct wal_aread *list, *x;
	uint32_t n;

	pthread_mutex_lock(&log->mu);
	list = log->parked;
	log->parked = log->parked_tail = NULL;
	n = log->nparked; /* those taken; whatever is not submitted goes back */
	log->nparked = 0;
	pthread_mutex_unlock(&log->mu);
	while ((x = list)) {
		struct wal_aread *next = x->next; /* once submitted, x is another thread's */
		int rc = submit_read(x);

		if (rc == -EAGAIN)
			break;
		list = next;
		n--;
		if (rc)
			read_finish(x, rc);
	}
	if (!list)
		return;
	pthread_mutex_lock(&log->mu);
	for (x = list; x->next; x = x->next)
		;
	x->next = log->parked;
	if (!log->parked)
		log->parked_tail = x;
	log->parked = list;
	log->nparked += n;
	pthread_mutex_unlock(&log->mu);
}

/* Runs in whichever thread reaps the engine - inside an auraio callback, where waiting
 * is impossible (auraio_wait returns at once) - finish, and queue the callback for
 * poll. A short count is no damage (the kernel may transfer less than asked): the rest
 * is read first, parked if the ring has no room now; only a read of 0 bytes is the end
 * of the file. */
static void read_done(auraio_request_t *req, ssize_t res, void *ud)
{
	struct wal_aread *x = ud;
	uint64_t skip = x->loc.offset - x->start;
	int rc;

	(void) req;
	if (res > 0 && x->got + (size_t) res < x->len) {
		x->got += (size_t) res;
		rc = submit_read(x);
		if (rc == -EAGAIN)
			park(x);
		if (rc == 0 || rc == -EAGAIN)
			return;
		res = rc;
	} else if (res > 0) {
		res = (ssize_t) x->len;
	} else if (res == 0) {
		res = (ssize_t) x->got;
	}
	if (res < 0)
		rc = (int) res;
	else if ((uint64_t) res < skip + WAL_REC_HEADER)
		rc = AURAWAL_ECORRUPT;
	else
		rc = verify_copy(x->log, x->seg, x->mem + skip, (uint64_t) res - skip, x->loc,
				 x->buf, &x->c->len, &x->c->seq);
	read_finish(x, rc);
}

/* mu held: a record still in memory completes at once (delivered by the next poll). */
static void read_async_memory(struct aurawal *log, struct wal_segment *s, aurawal_loc_t loc,
			      void *buf, struct wal_cb *c)
{
	c->status = read_memory(log, s, loc, buf, &c->len, &c->seq);
	log->pending_cbs++;
	wal_deliver(log, c);
}

/* The first submission of x failed: undo what aurawal_read_async counted and took, and free
 * x with its callback (never queued: the caller gets the error instead). */
static void read_async_abort(struct wal_aread *x)
{
	struct aurawal *log = x->log;

	pthread_mutex_lock(&log->mu);
	log->pending_cbs--;
	log->pending_reads--;
	if (x->slot >= 0)
		log->reads.free_mask |= 1u << x->slot;
	wal_seg_put(log, x->seg);
	pthread_mutex_unlock(&log->mu);
	if (x->slot < 0 && x->mem)
		wal_free(log, x->mem);
	free(x->c);
	free(x);
}

/* No lock held, x counted in pending_reads: its buffer if it has none, then the first
 * submission. 0, or the error (x is freed then). */
static int read_async_submit(struct wal_aread *x)
{
	struct aurawal *log = x->log;
	int rc;

	if (!x->mem)
		x->mem = wal_alloc(log, x->len);
	rc = x->mem ? submit_read(x) : -ENOMEM;
	while (rc == -EAGAIN) { /* the ring is full: let reads complete (the caller may wait) */
		auraio_wait(log->engine, 1);
		rc = submit_read(x);
	}
	if (rc)
		read_async_abort(x);
	return rc;
}

AURAWAL_API int aurawal_read_async(aurawal_t *log, aurawal_loc_t loc, void *buf, size_t cap,
				   aurawal_read_cb cb, void *arg)
{
	uint64_t size = wal_rec_size(loc.size), start = align_down(loc.offset, WAL_BLOCK);
	uint64_t end = align_up(loc.offset + size, WAL_BLOCK);
	struct wal_aread *x = NULL;
	struct wal_segment *s;
	struct wal_cb *c;
	int rc = 0;

	if (!log || !cb || (!buf && loc.size))
		return -EINVAL;
	if (cap < loc.size)
		return -EMSGSIZE;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->rcb = cb;
	c->arg = arg;
	c->owner = wal_owner();
	pthread_mutex_lock(&log->mu);
	s = wal_seg_find(log, loc.segment);
	if (!s)
		rc = -ENOENT;
	else if (loc.offset < WAL_HEADER_BLOCK || loc.offset % 8 || loc.offset + size > s->data_end)
		rc = -EINVAL;
	else if (loc.offset + size > s->written_end)
		read_async_memory(log, s, loc, buf, c);
	else if (!(x = calloc(1, sizeof(*x))))
		rc = -ENOMEM;
	if (rc || !x) {
		if (s)
			wal_seg_put(log, s);
		pthread_mutex_unlock(&log->mu);
		if (rc)
			free(c);
		return rc;
	}
	*x = (struct wal_aread){ log, s, loc, buf, NULL, -1, start, end - start, 0, c, NULL };
	if (end - start <= WAL_READ_BUF_SZ)
		x->slot = read_buf_get(log);
	if (x->slot >= 0)
		x->mem = log->reads.bufs[x->slot];
	log->pending_cbs++;
	/* A poller asleep on cv_done (nothing to reap when it looked) must drive this read
	 * now: it completes only when someone reaps the engine. */
	if (log->pending_reads++ == 0)
		pthread_cond_broadcast(&log->cv_done);
	pthread_mutex_unlock(&log->mu);
	return read_async_submit(x);
}

AURAWAL_API auraio_engine_t *aurawal_engine(aurawal_t *log)
{
	return log ? log->engine : NULL;
}
