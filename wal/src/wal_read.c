/* SPDX-License-Identifier: MIT */
/*
 * wal_read.c - reading records back: one record by location (one aligned O_DIRECT read
 * through a registered buffer, or a copy from the batch that still holds it), and the
 * sequential iterator. Every record read is verified (marker, size, checksum).
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
	    rec.type != WAL_REC_DATA || rec.len != loc.size)
		return AURAWAL_ECORRUPT;
	if (rec.len)
		memcpy(buf, rec.payload, rec.len);
	if (len)
		*len = rec.len;
	if (seq)
		*seq = rec.seq;
	return 0;
}

/* mu held: the record is still in a batch (not written yet). */
static int read_memory(struct aurawal *log, const struct wal_segment *s, aurawal_loc_t loc,
		       void *buf, size_t *len, uint64_t *seq)
{
	uint64_t end = loc.offset + wal_rec_size(loc.size);

	for (int i = 0; i < WAL_NBUFS; i++) {
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

/* Move to the next segment if this one is done. 1 moved, 0 at the end, <0 error. */
static int next_segment(struct aurawal_iter *it, uint64_t limit)
{
	struct aurawal *log = it->log;
	struct wal_segment *n;

	pthread_mutex_lock(&log->mu);
	n = it->seg->next;
	if (!n || it->seg == log->active || it->off < limit) {
		pthread_mutex_unlock(&log->mu);
		return 0;
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

AURAWAL_API int aurawal_iter_next(aurawal_iter_t *it, aurawal_loc_t *loc, uint64_t *seq,
				  const void **payload, size_t *len)
{
	for (;;) {
		struct aurawal *log = it ? it->log : NULL;
		uint64_t limit, seed;
		struct wal_rec rec;
		bool released;
		int rc;

		if (!it)
			return -EINVAL;
		pthread_mutex_lock(&log->mu);
		limit = it->seg->written_end;
		released = it->seg->released;
		pthread_mutex_unlock(&log->mu);
		if (released)
			return -ENOENT;
		if (it->off >= limit) {
			rc = next_segment(it, limit);
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
		if (rec.type == WAL_REC_SEAL) {
			it->off = limit; /* the segment ends here */
			continue;
		}
		if (loc)
			*loc = (aurawal_loc_t){ it->seg->number, (uint32_t) it->off, rec.len };
		if (seq)
			*seq = rec.seq;
		if (payload)
			*payload = rec.payload;
		if (len)
			*len = rec.len;
		it->off += wal_rec_size(rec.len);
		return 1;
	}
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
