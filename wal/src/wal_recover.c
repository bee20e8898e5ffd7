/* SPDX-License-Identifier: MIT */
/*
 * wal_recover.c - reading segments sequentially, and recovery at open: the recovery
 * rule of docs/wal_format.md (a torn or zeroed tail is the clean end; damage followed
 * by valid records is corruption, reported, and fatal unless point-in-time recovery or
 * inspection was asked for).
 *
 * Runs before the log's threads start: no locking needed here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_internal.h"

/* ---- a sequential reader over one segment ---- */

void wal_reader_init(struct wal_reader *r, struct aurawal *log, struct wal_segment *s)
{
	memset(r, 0, sizeof(*r));
	r->log = log;
	r->seg = s;
}

void wal_reader_fini(struct wal_reader *r)
{
	if (r->buf)
		wal_free(r->log, r->buf);
	r->buf = NULL;
}

/*
 * Make [off, off + need) available (need <= the record size limit + a header). Returns
 * the bytes available from off (less than need only at the end of the file), or -errno.
 */
int64_t wal_reader_fill(struct wal_reader *r, uint64_t off, uint64_t need, uint64_t limit)
{
	uint64_t start, len, cap;
	int rc;

	if (off >= limit)
		return 0;
	if (off >= r->start && off + need <= r->start + r->len)
		return (int64_t) (r->start + r->len - off);
	start = align_down(off, WAL_BLOCK);
	len = align_up(off + MAX(need, (uint64_t) WAL_SCAN_CHUNK), WAL_BLOCK) - start;
	if (start + len > align_up(limit, WAL_BLOCK))
		len = align_up(limit, WAL_BLOCK) - start;
	cap = align_up(len, WAL_SCAN_CHUNK);
	if (cap > r->cap) {
		if (r->buf)
			wal_free(r->log, r->buf);
		r->buf = wal_alloc(r->log, cap);
		r->cap = r->buf ? cap : 0;
		if (!r->buf)
			return -ENOMEM;
	}
	rc = wal_pread(r->log, r->seg->fd, r->buf, -1, len, start);
	if (rc < 0)
		return rc;
	r->start = start;
	r->len = (uint64_t) rc < limit - start ? (uint64_t) rc : limit - start;
	return off < r->start + r->len ? (int64_t) (r->start + r->len - off) : 0;
}

/* Parse the record at off, reading more as needed. WAL_PARSE_OK or WAL_PARSE_BAD; < 0
 * on I/O error. */
int wal_reader_record(struct wal_reader *r, uint64_t off, uint64_t limit, uint64_t seed,
		      struct wal_rec *rec)
{
	uint64_t need = WAL_REC_HEADER;

	for (;;) {
		int64_t avail = wal_reader_fill(r, off, need, limit);
		int rc;

		if (avail < 0)
			return (int) avail;
		rc = wal_rec_parse(r->buf + (off - r->start), (uint64_t) avail, limit - off, seed,
				   rec);
		if (rc != WAL_PARSE_SHORT)
			return rc;
		if ((uint64_t) avail >= wal_rec_size(AURAWAL_MAX_RECORD))
			return WAL_PARSE_BAD;
		need = wal_rec_size(get_le32(r->buf + (off - r->start) + RH_LENGTH));
		if ((uint64_t) avail >= need) /* the file ended first */
			return WAL_PARSE_BAD;
	}
}

/* The first offset in [o, last] (8-byte steps) holding the record marker, or > last.
 * [o, last + 32) is in r's buffer. The cheap test, in a tight loop over memory. */
static uint64_t find_marker(const struct wal_reader *r, uint64_t o, uint64_t last)
{
	const uint8_t *p = r->buf + (o - r->start);

	for (; o <= last; o += 8, p += 8)
		if (get_le32(p) == WAL_REC_MARKER)
			return o;
	return o;
}

/* The next valid record at or after `from` (8-byte steps), or `limit` if none. */
uint64_t wal_reader_resync(struct wal_reader *r, uint64_t from, uint64_t limit, uint64_t seed)
{
	uint64_t o = align_up(from, 8);

	while (o + WAL_REC_HEADER <= limit) {
		int64_t avail = wal_reader_fill(r, o, WAL_REC_HEADER, limit);
		struct wal_rec rec;
		uint64_t last;

		if (avail < (int64_t) WAL_REC_HEADER)
			return limit;
		last = o + (uint64_t) avail - WAL_REC_HEADER; /* the last header in memory */
		o = find_marker(r, o, last);
		if (o > last)
			continue; /* read on */
		if (wal_reader_record(r, o, limit, seed, &rec) == WAL_PARSE_OK)
			return o;
		o += 8;
	}
	return limit;
}

/* ---- recovery ---- */

/* Bytes from off up to the first all-zero block: the size of a torn record. */
static uint64_t torn_length(struct wal_reader *r, uint64_t off, uint64_t limit)
{
	uint64_t o = off;

	while (o < limit) {
		uint64_t blk_end = MIN(align_down(o, WAL_BLOCK) + WAL_BLOCK, limit);
		int64_t avail = wal_reader_fill(r, o, blk_end - o, limit);
		bool zero = true;

		if (avail <= 0)
			break;
		for (uint64_t i = o; i < blk_end && zero; i++)
			zero = r->buf[i - r->start] == 0;
		if (zero)
			break;
		o = blk_end;
	}
	return o - off;
}

struct scan_state {
	uint64_t prev_seq;
	bool truncate_here; /* point-in-time recovery cut the log in this segment */
	uint64_t valid_end; /* PIT: the end of the valid data that was dropped */
};

/*
 * A close block says the segment's records run to its data end, all durable (written
 * after the final sync; an open removes it before appending). Records missing before
 * that end - cut off by a truncated file, or failing their checksum - are damage, not a
 * torn tail: nothing a crash leaves. (Dropped as one, a key read its previous value.)
 */
static bool closed_beyond(const struct wal_segment *s, uint64_t off)
{
	return s->sum.kind == WAL_SUM_CLOSED && off < s->sum.data_end;
}

/* Damage at off. Returns 0 (clean end or handled) with *end set, or AURAWAL_ECORRUPT. */
static int damage(struct aurawal *log, struct wal_reader *r, uint64_t off, bool last,
		  struct scan_state *st, uint64_t *resume)
{
	struct wal_segment *s = r->seg;
	uint64_t seed = wal_seed(log->log_id, s->number);
	uint64_t next = wal_reader_resync(r, off + 8, s->size, seed);
	bool closed = last && next >= s->size && closed_beyond(s, off);
	uint64_t tl;

	*resume = 0;
	if (next >= s->size && !closed) {
		/* The clean end of the log; before the last, a break (wal_recover). */
		if (last && (tl = torn_length(r, off, s->size)))
			wal_report(log, AURAWAL_REPORT_TORN_TAIL, s->number, off, tl,
				   "a partial record at the end of the log was dropped");
		return 0;
	}
	wal_report(log,
		   log->opts.recovery == AURAWAL_RECOVER_POINT_IN_TIME ? AURAWAL_REPORT_DROPPED
								       : AURAWAL_REPORT_CORRUPTION,
		   s->number, off, (closed ? s->sum.data_end : next) - off,
		   closed ? "damaged or missing records before the end its close block names"
			  : "damaged data followed by valid records");
	if (log->opts.recovery == AURAWAL_RECOVER_INSPECT) {
		*resume = closed ? 0 : next; /* read past it; nothing to read past a cut */
		return 0;
	}
	if (log->opts.recovery == AURAWAL_RECOVER_POINT_IN_TIME) {
		st->truncate_here = true;
		st->valid_end = s->size;
		return 0;
	}
	return AURAWAL_ECORRUPT;
}

/* The last segment has a close block, and its records end exactly where it says, with
 * its last sequence and count: the clean end of the log, nothing to scan past it. */
static bool closed_here(const struct wal_segment *s, uint64_t off, const struct scan_state *st)
{
	return s->sum.kind == WAL_SUM_CLOSED && off == s->sum.data_end &&
	       s->nrecords == s->sum.records &&
	       (s->sum.records == 0 || st->prev_seq == s->sum.last_seq);
}

static int scan_segment(struct aurawal *log, struct wal_segment *s, bool last,
			struct scan_state *st)
{
	uint64_t seed = wal_seed(log->log_id, s->number), off = WAL_HEADER_BLOCK;
	struct wal_reader r;
	int rc = 0;

	wal_reader_init(&r, log, s);
	while (off < s->size) {
		struct wal_rec rec;
		uint64_t resume;

		rc = wal_reader_record(&r, off, s->size, seed, &rec);
		if (rc < 0)
			break;
		if (rc == WAL_PARSE_OK && rec.seq <= st->prev_seq)
			rc = WAL_PARSE_BAD; /* out of order: damage */
		if (rc == WAL_PARSE_BAD && last && closed_here(s, off, st)) {
			rc = 0;
			break;
		}
		if (rc == WAL_PARSE_BAD) {
			rc = damage(log, &r, off, last, st, &resume);
			if (rc || !resume)
				break;
			off = resume;
			continue;
		}
		st->prev_seq = rec.seq;
		if (!s->first_seq)
			s->first_seq = rec.seq;
		s->last_seq = rec.seq;
		s->nrecords++;
		off += wal_rec_size(rec.len);
		if (rec.type == WAL_REC_SEAL) {
			s->sealed = true;
			s->seal_next = get_le64(rec.payload);
			break;
		}
	}
	s->data_end = s->written_end = s->durable_end = MIN(off, s->size);
	wal_reader_fini(&r);
	return rc < 0 ? rc : 0;
}

/*
 * scan_sealed = false: take sealed segment s from its seal block without reading its
 * records, once its SEAL record checks out (docs/wal_format.md, "Summaries at open").
 * 1 = taken, 0 = not (read it in full), < 0 = I/O error.
 */
static int trust_sealed(struct aurawal *log, struct wal_segment *s, struct scan_state *st)
{
	const struct wal_summary *sm = &s->sum;
	uint64_t seed = wal_seed(log->log_id, s->number);
	uint64_t at = sm->data_end - wal_rec_size(WAL_SEAL_PAYLOAD);
	struct wal_reader r;
	struct wal_rec rec;
	int rc;

	if (sm->kind != WAL_SUM_SEALED || sm->first_seq <= st->prev_seq)
		return 0;
	wal_reader_init(&r, log, s);
	rc = wal_reader_record(&r, at, sm->data_end, seed, &rec);
	if (rc == WAL_PARSE_OK)
		rc = rec.type == WAL_REC_SEAL && rec.seq == sm->last_seq &&
		     get_le64(rec.payload) == sm->next;
	else if (rc > 0)
		rc = 0;
	wal_reader_fini(&r);
	if (rc != 1)
		return rc;
	s->first_seq = sm->first_seq;
	s->last_seq = sm->last_seq;
	s->nrecords = sm->records;
	s->sealed = true;
	s->seal_next = sm->next;
	s->summary_ok = true;
	s->data_end = s->written_end = s->durable_end = sm->data_end;
	st->prev_seq = sm->last_seq;
	return 1;
}

/* Read segment s: trusted from its seal block when allowed, else record by record. */
static int read_segment(struct aurawal *log, struct wal_segment *s, bool last,
			struct scan_state *st)
{
	int rc = 0;

	if (!log->opts.scan_sealed)
		rc = trust_sealed(log, s, st);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	rc = scan_segment(log, s, last, st);
	/* a seal block that agrees with what was read needs no rewriting */
	s->summary_ok = s->sealed && s->sum.kind == WAL_SUM_SEALED &&
			s->sum.data_end == s->data_end && s->sum.last_seq == s->last_seq &&
			s->sum.first_seq == s->first_seq && s->sum.records == s->nrecords &&
			s->sum.next == s->seal_next;
	return rc;
}

/* Does segment s hold any valid record (a pre-activated, still empty segment does not)? */
static int segment_empty(struct aurawal *log, struct wal_segment *s, bool *empty)
{
	struct wal_reader r;
	uint64_t seed = wal_seed(log->log_id, s->number);

	wal_reader_init(&r, log, s);
	*empty = wal_reader_resync(&r, WAL_HEADER_BLOCK, s->size, seed) >= s->size;
	wal_reader_fini(&r);
	return 0;
}

/* Forget every segment after s (and a ready one): point-in-time recovery, or a break
 * without evidence. Their numbers are used again. */
static int drop_after(struct aurawal *log, struct wal_segment *s)
{
	struct wal_segment *t = s->next;

	s->next = NULL;
	log->segs_tail = s;
	if (log->ready) {
		log->ready->next = t;
		t = log->ready;
		log->ready = NULL;
	}
	while (t) {
		struct wal_segment *next = t->next;
		char *path = wal_seg_path(log, t->number);

		close(t->fd);
		if (path && !log->read_only)
			unlink(path);
		free(path);
		free(t);
		t = next;
	}
	log->next_number = s->number + 1;
	return wal_released_forget_above(log, s->number);
}

/* The block holding the cut at `end` keeps its bytes before it and is zeroed after it:
 * valid records after the damage may share that block. A file cut short may end inside
 * that block: what is missing reads as zeros, and the whole block is written (O_DIRECT),
 * extending the file to it. 0 or -errno. */
static int zero_block_after(struct aurawal *log, struct wal_segment *s, uint64_t end, uint8_t *z)
{
	uint64_t blk = align_down(end, WAL_BLOCK);
	int rc;

	if (end == blk)
		return 0;
	memset(z, 0, WAL_BLOCK);
	rc = wal_pread(log, s->fd, z, -1, WAL_BLOCK, blk);
	if (rc >= 0 && blk + (uint64_t) rc < end)
		rc = -EIO; /* the bytes kept were read at open: they are there */
	if (rc >= 0) {
		memset(z + (end - blk), 0, WAL_BLOCK - (end - blk));
		rc = wal_pwrite(log, s->fd, z, -1, WAL_BLOCK, blk);
	}
	return rc < 0 ? rc : 0;
}

/* Remove s's summary (a close block or a seal block), durably. 0 or -errno. */
static int drop_summary(struct aurawal *log, struct wal_segment *s)
{
	int rc;

	if (s->sum.kind == WAL_SUM_NONE)
		return 0;
	rc = wal_write_summary(log, s, NULL, true);
	if (rc == 0)
		s->sum.kind = WAL_SUM_NONE;
	return rc;
}

/*
 * Point-in-time recovery: zero what follows the cut in its segment (valid records of
 * this segment's life lie there, the block of the cut included: a crash before the
 * first append rewrites that block must not bring them back), and drop later segments.
 * The order holds across a crash at any step. First s's summary goes, durably: a close
 * block left over the zeroed records would name an end beyond them, a seal block would
 * be durable evidence for the break at the cut - either a corruption report of the cut
 * itself by the next strict open. Then the later segments, durably (their SYNC marks and
 * seal blocks would be such evidence too). Until the records are zeroed, the next open
 * finds the damage as it was (damage followed by valid records) - or, where only the
 * close block made it damage, a torn tail: what the cut makes of it.
 */
static int cut_after(struct aurawal *log, struct wal_segment *s, uint64_t valid_end)
{
	uint64_t from = align_up(s->data_end, WAL_BLOCK);
	uint8_t *z;
	int rc;

	if (log->read_only)
		return 0;
	rc = drop_summary(log, s);
	if (rc == 0)
		rc = drop_after(log, s);
	if (rc == 0)
		rc = sync_dir_fd(log);
	if (rc)
		return rc;
	z = wal_alloc(log, WAL_SCAN_CHUNK);
	if (!z)
		return -ENOMEM;
	rc = zero_block_after(log, s, s->data_end, z);
	memset(z, 0, WAL_SCAN_CHUNK);
	valid_end = align_up(valid_end, WAL_BLOCK); /* whole blocks: a file cut short */
	for (uint64_t o = from; o < valid_end && rc >= 0; o += WAL_SCAN_CHUNK)
		rc =
		    wal_pwrite(log, s->fd, z, -1, MIN((uint64_t) WAL_SCAN_CHUNK, valid_end - o), o);
	wal_free(log, z);
	return rc < 0 ? rc : wal_fdatasync(log, s->fd);
}

/*
 * Is the trailing segment `last` (after `prev`) empty - made ready before a crash or a
 * close? A close block in prev says so without reading it; after a seal block it does
 * not matter (it is the end either way: read it as the last); otherwise read it.
 */
static bool trailing_empty(struct aurawal *log, struct wal_segment *prev, struct wal_segment *last)
{
	bool empty = false;

	if (prev->sum.kind == WAL_SUM_CLOSED)
		return true;
	if (prev->sum.kind == WAL_SUM_SEALED)
		return false;
	segment_empty(log, last, &empty);
	return empty;
}

/* Does segment s hold a valid SYNC mark anywhere (damage skipped)? 1, 0, or -errno. */
static int holds_mark(struct aurawal *log, struct wal_segment *s)
{
	uint64_t seed = wal_seed(log->log_id, s->number), off = WAL_HEADER_BLOCK;
	struct wal_reader r;
	int found = 0;

	wal_reader_init(&r, log, s);
	while (off < s->size && found == 0) {
		struct wal_rec rec;
		int rc = wal_reader_record(&r, off, s->size, seed, &rec);

		if (rc < 0)
			found = rc;
		else if (rc == WAL_PARSE_OK && rec.type == WAL_REC_SYNC)
			found = 1;
		else if (rc == WAL_PARSE_OK)
			off += wal_rec_size(rec.len);
		else
			off = wal_reader_resync(&r, off + 8, s->size, seed);
	}
	wal_reader_fini(&r);
	return found;
}

/*
 * Was segment `broken` durable before a later write? Evidence (docs/wal_format.md): a
 * valid seal block in it or after it (written only once a segment is durable, and the
 * older ones first), or a SYNC mark after it. The ready segment counts too. 1, 0, -errno.
 */
static int durable_evidence(struct aurawal *log, struct wal_segment *broken, bool marks_in_broken)
{
	int rc = 0;

	for (struct wal_segment *s = broken; s && rc == 0; s = s->next) {
		if (s->sum.kind == WAL_SUM_SEALED)
			return 1;
		if (s != broken || marks_in_broken)
			rc = holds_mark(log, s);
	}
	if (rc == 0 && log->ready)
		rc = holds_mark(log, log->ready);
	return rc;
}

/*
 * A segment file with a bad header and fewer bytes than the log's segment size was cut
 * after it was named: a segment file gets its full size (fallocate, or a recycled
 * file's) before its header and its name (wal_segment.c), so a crash - even one that
 * lost the header's write - leaves it whole. A file cut inside its header block by hand
 * or by a tool took its records along, and the close block that vouched for them.
 * (log_break: unless a close block before it proves it held none.)
 */
static bool cut_short(const struct aurawal *log, const struct wal_segment *s)
{
	return s->bad_hdr && s->size < log->segment_size;
}

/*
 * A break: segment `prev` is the last one that can be read - it ends without a SEAL
 * (torn), or the segment after it has a bad header. docs/wal_format.md, "Recovery
 * rule": with evidence that the broken segment was durable, or a bad header in a file cut
 * short (cut_short), it is corruption; without, it is the end of the log left by a crash
 * before a rollover's flush was paid - the later segments, which hold nothing
 * acknowledged as durable, are dropped. Returns 0
 * (the log ends in prev) or an error; *cut: point-in-time recovery cuts the log in prev.
 */
static int log_break(struct aurawal *log, struct wal_segment *prev, bool torn, const char *what,
		     bool *cut)
{
	bool inspect = log->opts.recovery == AURAWAL_RECOVER_INSPECT;
	bool pit = log->opts.recovery == AURAWAL_RECOVER_POINT_IN_TIME;
	/* prev's close block proves the file after it held no record: nothing lost */
	bool short_file = !torn && cut_short(log, prev->next) && prev->sum.kind != WAL_SUM_CLOSED;
	int rc = short_file ? 1 : durable_evidence(log, torn ? prev : prev->next, !torn);

	*cut = false;
	if (short_file)
		what = "a bad header in a segment file cut short (no crash leaves one short)";
	if (rc < 0)
		return rc;
	if (rc == 1) { /* durable after the break: corruption */
		wal_report(log, pit ? AURAWAL_REPORT_DROPPED : AURAWAL_REPORT_CORRUPTION,
			   torn ? prev->number : prev->next->number, torn ? prev->data_end : 0,
			   torn ? 0 : WAL_HEADER_BLOCK, what);
		*cut = pit;
		return inspect || pit ? 0 : AURAWAL_ECORRUPT;
	}
	for (struct wal_segment *s = prev->next; s; s = s->next)
		wal_report(log, AURAWAL_REPORT_DROPPED, s->number, 0, 0,
			   "after a rollover whose flush was never made (nothing in it was "
			   "acknowledged as durable)");
	if (inspect)
		return 0;
	rc = drop_after(log, prev);
	return rc || log->read_only ? rc : sync_dir_fd(log);
}

/* A segment with a bad header (never the first) is a break before it. */
static int recover_bad_headers(struct aurawal *log, bool *cut)
{
	int rc = 0;

	for (struct wal_segment *s = log->segs; s && s->next; s = s->next)
		if (s->next->bad_hdr) {
			rc = log_break(log, s, false, "bad segment header", cut);
			/* PIT cuts it off; an inspector cannot read it */
			if (rc == 0 && (*cut || log->opts.recovery == AURAWAL_RECOVER_INSPECT))
				rc = drop_after(log, s);
			break;
		}
	return rc;
}

/* A trailing segment with no record was made ready before a crash: keep it ready. The
 * last segment of the log. */
static struct wal_segment *recover_trailing_ready(struct aurawal *log)
{
	struct wal_segment *last = log->segs_tail;

	if (last && last != log->segs) {
		struct wal_segment *p = log->segs;

		while (p->next != last)
			p = p->next;
		if (trailing_empty(log, p, last)) {
			p->next = NULL;
			log->segs_tail = p;
			log->ready = last;
			last = p;
		}
	}
	return last;
}

/* Read every segment in order, up to where the log ends: *last becomes that segment. */
static int recover_segments(struct aurawal *log, struct scan_state *st, struct wal_segment **last,
			    bool *cut)
{
	int rc = 0;

	for (struct wal_segment *s = log->segs; s && rc == 0; s = s->next) {
		rc = read_segment(log, s, s == *last, st);
		if (rc == 0 && st->truncate_here) {
			rc = cut_after(log, s, st->valid_end);
			*last = s;
			break;
		}
		if (rc == 0 && s != *last && !s->sealed) {
			rc = log_break(log, s, true,
				       "a segment before the last ends without a seal", cut);
			if (rc == 0 && *cut)
				rc = cut_after(log, s, s->size);
			if (rc == 0 && log->opts.recovery != AURAWAL_RECOVER_INSPECT) {
				*last = s; /* the log ends here */
				break;
			}
		}
	}
	return rc;
}

/* The last segment is sealed: the rollover was done, its next segment is the end. */
static int recover_after_seal(struct aurawal *log, struct wal_segment **last)
{
	if (log->ready && log->ready->number != (*last)->number + 1) {
		wal_report(log, AURAWAL_REPORT_CORRUPTION, (*last)->number + 1, 0, 0,
			   "a sealed segment's successor is missing");
		return AURAWAL_ECORRUPT;
	}
	if (log->ready) {
		(*last)->next = log->ready;
		log->segs_tail = *last = log->ready;
		log->ready = NULL;
	} else if (!log->read_only) { /* its rename was lost: make it again */
		return wal_seg_remake(log, (*last)->number + 1, last);
	}
	return 0;
}

int wal_recover(struct aurawal *log)
{
	struct scan_state st = { 0 };
	struct wal_segment *last;
	bool cut = false;
	int rc;

	if (log->created) { /* nothing to read: a new log holds no record */
		log->active = log->segs;
		log->next_seq = 1;
		return 0;
	}
	rc = recover_bad_headers(log, &cut);
	if (rc)
		return rc;
	last = recover_trailing_ready(log);
	rc = recover_segments(log, &st, &last, &cut);
	if (rc == 0 && last && last->sealed)
		rc = recover_after_seal(log, &last);
	if (rc)
		return rc;
	log->active = last;
	log->next_seq = st.prev_seq + 1;
	log->durable_seq = log->written_seq = st.prev_seq;
	/* A ready segment found at open had its header written by the last process, with
	 * no flush of its own (a lazy rollover's preparer): owed, as a new one's is, and
	 * paid before the first durable write into it (which carries its SYNC mark) - open
	 * syncs the active segment only, and a durable write may reach the disk without
	 * its header (RWF_DSYNC: that write alone). */
	if (log->ready) {
		log->ready->lazy_hdr = true;
		log->ready->unmarked = !log->opts.flush_on_rollover;
	}
	return 0;
}

/*
 * After recovery, in a log that may be written (no other thread yet): remove the active
 * segment's summary before anything is appended - a close block would otherwise claim
 * an end the next appends move (a segment point-in-time recovery cut lost its summary
 * before the cut: cut_after) - and give every sealed segment that was read in full a
 * seal block, so the next open need not read it again.
 */
int wal_recover_finish(struct aurawal *log)
{
	/* What a crashed process wrote may still be in the device's cache: make the active
	 * segment and the directory durable before anything is built on them. */
	int rc = wal_fdatasync(log, log->active->fd);

	if (rc == 0)
		rc = sync_dir_fd(log);

	if (rc == 0 && log->active->sum.kind != WAL_SUM_NONE) {
		rc = wal_write_summary(log, log->active, NULL, true);
		log->active->sum.kind = WAL_SUM_NONE;
	}
	for (struct wal_segment *s = log->segs; s && rc == 0; s = s->next) {
		struct wal_summary sm;

		if (!s->sealed || s->summary_ok || s == log->active)
			continue;
		/* a seal block describes durable records: flush what was read first */
		rc = wal_fdatasync(log, s->fd);
		wal_summary_of(log, s, WAL_SUM_SEALED, &sm);
		if (rc == 0)
			rc = wal_write_summary(log, s, &sm, false);
		s->summary_ok = rc == 0;
	}
	return rc;
}
