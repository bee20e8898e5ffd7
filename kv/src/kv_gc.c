/* SPDX-License-Identifier: MIT */
/*
 * kv_gc.c - garbage collection's collector: it moves the live records of one victim
 * segment to the head of the log, switches the index to the copies, and releases the
 * segment. Which segment, when, and how fast (the space marks, pacing, back-pressure on
 * writers): kv_gc_pace.c; what the two share: kv_gc_internal.h.
 *
 * GC picks the sealed segment with the smallest live fraction (exact accounting,
 * kv_acct.c), walks its records, and for each entry the index still names - checked
 * under the key's stripe lock, so no writer of that key interleaves - appends a copy at
 * the head of the log with the same version. Once the copies are durable (a sync every
 * GC_MOVES_MAX copies or GC_MOVES_KEYS key bytes, and one at the end) it switches the
 * index to them (compare-and-swap on the location: a key written meanwhile keeps its
 * newer record). Then it releases the segment (recorded durably by the WAL; readers
 * still inside it finish through their open file; a reader that arrives later gets
 * -ENOENT and looks the key up again). The index thus never names a copy that is not
 * durable: a collection that fails - the log out of space, or failed by an I/O error,
 * or the index out of memory (a switch or a tombstone's drop it cannot take: -ENOMEM,
 * not corruption) - leaves every key it did not switch on its record in the victim,
 * which stays (tried again by a later pass), and gets keep working.
 *
 * Tombstones. A delete must stay in the log while an older record of its key may
 * remain. Because each key's writes are appended under its stripe lock in version order
 * (and GC copies only the current record, under the same lock), every record of a key
 * older than its live tombstone lies at or before the tombstone in the log. So in the
 * OLDEST segment a live tombstone has nothing older left anywhere else: it is dropped
 * (removed from the index) instead of copied, and the release takes the older records
 * with it. Elsewhere tombstones are copied forward like values. A crash at any point
 * leaves either the segment (tombstone included) or neither: never a resurrection.
 *
 * Lock order (kv_db.h): a key's stripe is held only around one entry's check and copy
 * (move_record) or index switch (moves_apply); the log, the index and the accounting are
 * called under it. bg.lock is taken with no stripe held (stopping, kv_gc_pace).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_gc_internal.h"

#define GC_MOVES_MAX  8192	 /* copies whose index switch waits for one sync ... */
#define GC_MOVES_KEYS (1u << 20) /* ... and the key bytes they may hold */
/* Where a segment's first record starts: after its 4096-byte header block
 * (docs/wal_format.md, "Segment header"). */
#define SEG_FIRST_RECORD 4096u

static bool stopping(struct kv_db *db)
{
	bool s;

	pthread_mutex_lock(&db->bg.lock);
	s = db->bg.stop;
	pthread_mutex_unlock(&db->bg.lock);
	return s;
}

/* ---- moving one segment's live entries ---- */

/* Does the index entry `cur` name entry e of the record at loc? */
static bool names(const struct kv_ref *cur, aurawal_loc_t loc, const struct kv_entry *e)
{
	if (cur->segment != loc.segment || cur->offset != loc.offset)
		return false;
	if (!(cur->flags & KV_REF_BATCH) != !e->in_batch)
		return false;
	return !e->in_batch || cur->batch_off == e->entry_off;
}

/* Copies appended but not yet durable: the index switches to them after a sync. */
struct gc_move {
	struct kv_ref from, to;
	size_t key_off, klen; /* the key, in gc_moves.keys */
};

struct gc_moves {
	struct gc_move *v;
	size_t n, cap;
	uint8_t *keys;
	size_t key_bytes, key_cap;
};

static void moves_free(struct gc_moves *m)
{
	free(m->v);
	free(m->keys);
	*m = (struct gc_moves){ 0 };
}

static bool moves_full(const struct gc_moves *m)
{
	return m->n >= GC_MOVES_MAX || m->key_bytes >= GC_MOVES_KEYS;
}

static int moves_add(struct gc_moves *m, const void *key, size_t klen, const struct kv_ref *from,
		     const struct kv_ref *to)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 256;
		struct gc_move *v = realloc(m->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		m->v = v;
		m->cap = cap;
	}
	if (m->key_bytes + klen > m->key_cap) {
		size_t cap = m->key_cap ? 2 * m->key_cap : 16384;
		uint8_t *k;

		while (cap < m->key_bytes + klen)
			cap *= 2;
		if (!(k = realloc(m->keys, cap)))
			return -ENOMEM;
		m->keys = k;
		m->key_cap = cap;
	}
	memcpy(m->keys + m->key_bytes, key, klen);
	m->v[m->n++] = (struct gc_move){ *from, *to, m->key_bytes, klen };
	m->key_bytes += klen;
	return 0;
}

/* The copies are durable: switch the index to each one whose key still names the
 * record it was copied from (under the key's stripe lock, as writers update it).
 * Returns 0 or the first error of the index (-ENOMEM): a key it could not switch stays
 * on its record in the victim (live there), so the collection must fail and keep the
 * victim - the release would otherwise find it live and take that for corruption. */
static int moves_apply(struct kv_db *db, struct gc_moves *m)
{
	int err = 0;

	for (size_t i = 0; i < m->n; i++) {
		const struct gc_move *mv = &m->v[i];
		const uint8_t *key = m->keys + mv->key_off;
		pthread_mutex_t *stripe = &db->stripes[kv_stripe_of(key, mv->klen)];
		int rc;

		pthread_mutex_lock(stripe);
		rc = kv_index_cas(db->ix, key, mv->klen, &mv->from, &mv->to);
		if (rc == 1) {
			kv_acct_add(db, &mv->to);
			kv_acct_drop(db, &mv->from);
		}
		pthread_mutex_unlock(stripe);
		if (rc < 0 && !err)
			err = rc; /* the others are switched all the same: less to copy again */
	}
	m->n = 0;
	m->key_bytes = 0;
	return err;
}

/* Make the copies durable, then switch the index to them. */
static int moves_commit(struct kv_db *db, struct gc_moves *m)
{
	int rc = kv_map_wal_error(aurawal_sync(db->wal));

	return rc ? rc : moves_apply(db, m);
}

/* Copy entry e (of the record at loc) to the head of the log if it is still its key's
 * latest (the index switches to the copy once it is durable: moves_commit), or drop it
 * if it is a droppable tombstone. Stripe held by the caller. */
static int move_entry(struct kv_db *db, aurawal_loc_t loc, const struct kv_entry *e, bool drop,
		      struct gc_moves *moves, uint64_t *copied)
{
	uint8_t hdr[KV_REC_HDR_MAX];
	struct kv_ref cur, ref = { 0 };
	aurawal_loc_t nloc;
	size_t hl;
	int rc;

	if (kv_index_get(db->ix, e->key, e->klen, &cur) != 0 || !names(&cur, loc, e))
		return 0; /* dead: a newer record exists (or the key was dropped) */
	if ((cur.flags & KV_REF_TOMBSTONE) && drop) {
		rc = kv_index_remove_if(db->ix, e->key, e->klen, &cur);
		if (rc == 1)
			kv_acct_drop(db, &cur);
		return rc < 0 ? rc : 0; /* -ENOMEM: still live here, the victim must stay */
	}
	hl = kv_encode_header(hdr, e->op, e->flags, e->version, e->klen, e->vlen, e->rawlen);
	{
		struct iovec iov[3] = { { hdr, hl },
					{ (void *) e->key, e->klen },
					{ (void *) e->val, e->vlen } };

		rc = aurawal_append(db->wal, iov, e->vlen ? 3 : 2, 0, &nloc, NULL);
	}
	if (rc)
		return kv_map_wal_error(rc);
	kv_acct_total(db, nloc.segment, nloc.size);
	ref.version = e->version;
	ref.segment = nloc.segment;
	ref.offset = nloc.offset;
	ref.size = nloc.size;
	ref.flags = e->op == KV_KIND_DELETE ? KV_REF_TOMBSTONE : 0;
	*copied += kv_log_bytes(nloc.size);
	return moves_add(moves, e->key, e->klen, &cur, &ref);
}

static int move_record(struct kv_db *db, aurawal_loc_t loc, const void *payload, size_t len,
		       bool drop, struct gc_moves *moves, uint64_t *copied)
{
	struct kv_entry_iter it;
	struct kv_entry e;
	int rc = kv_entry_iter_init(&it, payload, len);

	while (rc == 0 && (rc = kv_entry_iter_next(&it, &e)) == 1) {
		pthread_mutex_t *stripe = &db->stripes[kv_stripe_of(e.key, e.klen)];

		pthread_mutex_lock(stripe);
		rc = move_entry(db, loc, &e, drop, moves, copied);
		pthread_mutex_unlock(stripe);
	}
	return rc;
}

/*
 * Damage. GC met a damaged record at `off` of segment `seg` (the log's checksum or
 * format check failed, or the store's entries do not decode): what follows it cannot be
 * read, so the segment cannot be emptied and is kept - every key whose record is intact
 * in it still reads it. Said once, as corruption, with the place; then the segment is
 * left out of GC (live_ratio) until the store is reopened: trying it again would read it
 * and append the same copies each time, for nothing (the background thread did, every
 * BG_PERIOD_MS, without a word). aurakv_compact() returns AURAKV_ECORRUPT while such a
 * segment is kept (db->bg.damaged); aurakv_verify() lists all the damage.
 */
static int damaged(struct kv_db *db, uint64_t seg, uint64_t off, const char *what)
{
	struct kv_seg *s = kv_seg_get(db, seg, false);

	if (s && !atomic_exchange(&s->gc_damaged, true))
		atomic_fetch_add(&db->bg.damaged, 1);
	kv_report(db, AURAKV_REPORT_CORRUPTION,
		  "log segment %llu offset %llu: damaged record (%s), met by GC: the segment "
		  "is kept and not collected until the store is reopened",
		  (unsigned long long) seg, (unsigned long long) off, what);
	return AURAKV_ECORRUPT;
}

/* Is segment `seg` still in the log? (If the list cannot be had: assumed so.) */
static bool in_log(struct kv_db *db, uint64_t seg)
{
	aurawal_segment_info_t *segs;
	size_t count = 0, n = 0;
	bool found = false;

	if (aurawal_list_segments(db->wal, NULL, 0, &count) ||
	    !(segs = calloc(count + 1, sizeof(*segs))))
		return true;
	if (aurawal_list_segments(db->wal, segs, count, &n) == 0)
		for (size_t i = 0; i < n && i < count && !found; i++)
			found = segs[i].number == seg;
	free(segs);
	return found;
}

/*
 * Release segment `seg` once nothing in it is live, then forget it: its hint file and
 * its accounting (space GC counts). An error normally means the segment stays (kept,
 * tried again later); but releasing the oldest, the log's directory sync after the
 * file's removal may fail (-EIO) with the segment out of the log all the same, its
 * removal owed to the log's next sync (aurawal_release_segment): it is forgotten then
 * too, and the error returned.
 *
 * The hint file is unlinked without a directory sync: after a crash it may be back,
 * which is harmless. At the next open either the segment is gone - its hint names no
 * listed segment and is deleted, never read - or, the oldest's removal not durable
 * yet, the segment is back too, and the hint is exactly its own (same number, same
 * sequence numbers, same records; every key it names has a copy at least as new, which
 * wins the merge). A number the log gives back (segments dropped after a recovery
 * break, past the last durable write) is never that of a hinted or collected segment:
 * both were durable - a hint is written after a sync, GC releases after one - and so
 * was everything before them.
 */
static int release(struct kv_db *db, uint64_t seg)
{
	struct kv_seg *s = kv_seg_get(db, seg, false);
	int64_t total = s ? atomic_load(&s->total) : 0;
	char *hint;
	int rc;

	if (s && atomic_load(&s->live) != 0) {
		/* The index names records GC did not find in it: kept, and as for damage,
		 * not tried again (each try would say it again) until reopened. */
		kv_report(db, AURAKV_REPORT_CORRUPTION,
			  "GC: segment %llu still has %lld live bytes after collection; kept",
			  (unsigned long long) seg, (long long) atomic_load(&s->live));
		if (!atomic_exchange(&s->gc_damaged, true))
			atomic_fetch_add(&db->bg.damaged, 1);
		return AURAKV_ECORRUPT;
	}
	rc = kv_map_wal_error(aurawal_release_segment(db->wal, seg));
	if (rc && in_log(db, seg))
		return rc; /* not released */
	if ((hint = kv_hint_path(db->dir, seg, "hint"))) {
		unlink(hint);
		free(hint);
	}
	kv_acct_forget(db, seg);
	atomic_fetch_add(&db->n.gc_runs, 1);
	atomic_fetch_add(&db->n.gc_bytes_freed, (uint64_t) total);
	return rc;
}

/* Is `seg` the oldest segment of the log? Only GC releases segments, and GC is this
 * thread, so the answer holds for the whole collection. */
static bool oldest(struct kv_db *db, uint64_t seg)
{
	aurawal_segment_info_t first;
	size_t n = 0;

	return aurawal_list_segments(db->wal, &first, 1, &n) == 0 && n > 0 && first.number == seg;
}

int kv_gc_collect_paced(struct kv_db *db, uint64_t seg, struct pacer *p)
{
	aurawal_loc_t from = { .segment = seg };
	bool drop = oldest(db, seg); /* tombstones are dropped only from the oldest */
	struct gc_moves moves = { 0 };
	uint64_t next = SEG_FIRST_RECORD; /* just past the last record read: damage there */
	aurawal_record_t rec;
	aurawal_iter_t *it;
	/* The iterator reads what is written: write the segment's tail first (no sync: the
	 * one before the release below makes the copies durable). */
	int rc = kv_map_wal_error(aurawal_flush(db->wal));

	if (rc)
		return rc;
	if ((rc = kv_map_wal_error(aurawal_iter_open(db->wal, from, &it))))
		return rc;
	p->t0 = kv_now_ns();
	p->fg0 = atomic_load(&db->n.fg_bytes);
	/* Every record, the log's own too (VOID, SYNC, SEAL: skipped), so that `next` is
	 * exact when the iterator meets damage. */
	while ((rc = aurawal_iter_next_record(it, &rec)) == 1 && rec.loc.segment == seg) {
		next = rec.loc.offset + kv_log_bytes(rec.len);
		if (rec.type != AURAWAL_RECORD_DATA)
			continue;
		rc = move_record(db, rec.loc, rec.payload, rec.len, drop, &moves, &p->copied);
		if (rc == AURAKV_ECORRUPT)
			rc = damaged(db, seg, rec.loc.offset, "its entries do not decode");
		p->scanned += kv_log_bytes(rec.len);
		if (rc == 0 && moves_full(&moves))
			rc = moves_commit(db, &moves);
		kv_gc_pace(db, p);
		if (rc == 0 && stopping(db))
			rc = -ECANCELED;
		if (rc)
			break;
	}
	if (rc == AURAWAL_ECORRUPT)
		rc = damaged(db, seg, next, "checksum or format check failed");
	if (rc == 0 || rc == 1) {
		aurawal_iter_close(it);
		it = NULL;
		rc = moves_commit(db, &moves);
	}
	if (it)
		aurawal_iter_close(it);
	moves_free(&moves); /* after an error: copies the index never named, dead bytes */
	atomic_fetch_add(&db->n.gc_bytes_copied, p->copied);
	return rc < 0 ? kv_map_wal_error(rc) : release(db, seg);
}
