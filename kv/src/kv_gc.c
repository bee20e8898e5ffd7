/* SPDX-License-Identifier: MIT */
/*
 * kv_gc.c - the background thread: hint files for sealed segments, and garbage
 * collection.
 *
 * GC picks the sealed segment with the smallest live fraction (exact accounting,
 * kv_acct.c), walks its records, and for each entry the index still names - checked
 * and moved under the key's stripe lock, so no writer of that key interleaves - appends
 * a copy at the head of the log with the same version and switches the index to it
 * (compare-and-swap on the location). Then: sync the log (the copies, and every write
 * that made the rest of the segment dead, are durable), and release the segment
 * (recorded durably by the WAL; readers still inside it finish first; a reader that
 * arrives later gets -ENOENT and looks the key up again).
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
 * Pacing. Collection is not urgent until the space amplification (log bytes / live
 * bytes) nears the target: GC starts at 80 % of the way there, copying at most twice
 * the bytes the application wrote meanwhile plus a small idle allowance, so that its
 * device traffic follows the write rate instead of bursting. If the amplification
 * still reaches the target, writers wait (back-pressure, a condition variable) while GC
 * runs unpaced, until it is back under.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv_db.h"

#define BG_PERIOD_MS	 100
#define IDLE_COPY_RATE	 (64.0 * 1024 * 1024) /* bytes/s GC may copy with no writes */
#define PACE_GRANULE	 (256u << 10)
#define WORTH_COLLECTING 0.9 /* a paced pass only takes segments below this live ratio */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (long) (ms % 1000) * 1000000L;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
}

static bool stopping(struct kv_db *db)
{
	bool s;

	pthread_mutex_lock(&db->bg.lock);
	s = db->bg.stop;
	pthread_mutex_unlock(&db->bg.lock);
	return s;
}

void kv_bg_notify(struct kv_db *db)
{
	pthread_mutex_lock(&db->bg.lock);
	pthread_cond_signal(&db->bg.wake);
	pthread_mutex_unlock(&db->bg.lock);
}

static void set_behind(struct kv_db *db, bool behind)
{
	if (atomic_load_explicit(&db->bg.behind, memory_order_relaxed) == behind)
		return;
	pthread_mutex_lock(&db->bg.lock);
	atomic_store_explicit(&db->bg.behind, behind, memory_order_relaxed);
	pthread_cond_broadcast(&db->bg.progress);
	pthread_mutex_unlock(&db->bg.lock);
}

void kv_gc_throttle(struct kv_db *db)
{
	uint64_t t0;

	/* Relaxed: a writer that misses a just-set flag only passes once more. */
	if (!atomic_load_explicit(&db->bg.behind, memory_order_relaxed))
		return;
	t0 = now_ns();
	pthread_mutex_lock(&db->bg.lock);
	while (atomic_load_explicit(&db->bg.behind, memory_order_relaxed) && !db->bg.stop) {
		struct timespec ts;

		deadline_in(&ts, BG_PERIOD_MS);
		pthread_cond_timedwait(&db->bg.progress, &db->bg.lock, &ts);
	}
	pthread_mutex_unlock(&db->bg.lock);
	atomic_fetch_add_explicit(&db->n.gc_stalls, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->n.gc_stall_ns, now_ns() - t0, memory_order_relaxed);
}

/* ---- the segments as GC sees them ---- */

struct view {
	aurawal_segment_info_t *segs;
	size_t n;
	int64_t total, live;
};

static int view_take(struct kv_db *db, struct view *v)
{
	size_t count = 0;
	int rc = aurawal_list_segments(db->wal, NULL, 0, &count);

	memset(v, 0, sizeof(*v));
	if (rc)
		return kv_map_wal_error(rc);
	if (!(v->segs = calloc(count + 1, sizeof(*v->segs))))
		return -ENOMEM;
	if ((rc = aurawal_list_segments(db->wal, v->segs, count, &v->n)))
		return kv_map_wal_error(rc);
	if (v->n > count)
		v->n = count;
	for (size_t i = 0; i < v->n; i++) {
		struct kv_seg *s = kv_seg_get(db, v->segs[i].number, false);

		if (s) {
			v->total += atomic_load(&s->total);
			v->live += atomic_load(&s->live);
		}
	}
	if (v->n)
		atomic_store(&db->bg.seen_segment, v->segs[v->n - 1].number);
	return 0;
}

/* The live fraction GC would have to copy out of segment i of the view. */
static double live_ratio(struct kv_db *db, const struct view *v, size_t i)
{
	struct kv_seg *s = kv_seg_get(db, v->segs[i].number, false);
	int64_t total, live;

	if (!s || !v->segs[i].sealed || i + 1 == v->n) /* never the active segment */
		return 2;
	total = atomic_load(&s->total);
	live = atomic_load(&s->live);
	if (i == 0) /* the oldest: its tombstones are dropped, not copied */
		live -= atomic_load(&s->tomb);
	if (total <= 0)
		return 2;
	return live <= 0 ? 0 : (double) live / (double) total;
}

/* The best victim: index into the view and its ratio (2 if none). */
static size_t pick(struct kv_db *db, const struct view *v, double *ratio)
{
	size_t best = 0;

	*ratio = 2;
	for (size_t i = 0; i < v->n; i++) {
		double r = live_ratio(db, v, i);

		if (r < *ratio) {
			*ratio = r;
			best = i;
		}
	}
	return best;
}

/* ---- moving one segment's live entries ---- */

struct pacer {
	bool on;
	uint64_t t0, fg0, copied, next_check;
};

/* Wait until the bytes copied so far are within the budget (or the store stops). */
static void pace(struct kv_db *db, struct pacer *p)
{
	if (!p->on || p->copied < p->next_check)
		return;
	p->next_check = p->copied + PACE_GRANULE;
	for (;;) {
		uint64_t fg = atomic_load_explicit(&db->n.fg_bytes, memory_order_relaxed) - p->fg0;
		double budget =
		    2.0 * (double) fg + IDLE_COPY_RATE * (double) (now_ns() - p->t0) / 1e9;
		struct timespec ts;

		if ((double) p->copied <= budget || atomic_load(&db->bg.behind))
			return;
		pthread_mutex_lock(&db->bg.lock);
		if (db->bg.stop) {
			pthread_mutex_unlock(&db->bg.lock);
			return;
		}
		deadline_in(&ts, 5);
		pthread_cond_timedwait(&db->bg.wake, &db->bg.lock, &ts);
		pthread_mutex_unlock(&db->bg.lock);
	}
}

/* Does the index entry `cur` name entry e of the record at loc? */
static bool names(const struct kv_ref *cur, aurawal_loc_t loc, const struct kv_entry *e)
{
	if (cur->segment != loc.segment || cur->offset != loc.offset)
		return false;
	if (!(cur->flags & KV_REF_BATCH) != !e->in_batch)
		return false;
	return !e->in_batch || cur->batch_off == e->entry_off;
}

/* Copy entry e (of the record at loc) to the head of the log if it is still its key's
 * latest, or drop it if it is a droppable tombstone. Stripe held by the caller. */
static int move_entry(struct kv_db *db, aurawal_loc_t loc, const struct kv_entry *e, bool drop,
		      uint64_t *copied)
{
	uint8_t hdr[KV_REC_HDR_MAX];
	struct kv_ref cur, ref = { 0 };
	aurawal_loc_t nloc;
	size_t hl;
	int rc;

	if (kv_index_get(db->ix, e->key, e->klen, &cur) != 0 || !names(&cur, loc, e))
		return 0; /* dead: a newer record exists (or the key was dropped) */
	if ((cur.flags & KV_REF_TOMBSTONE) && drop) {
		if (kv_index_remove_if(db->ix, e->key, e->klen, &cur) == 1)
			kv_acct_drop(db, &cur);
		return 0;
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
	ref.segment = (uint32_t) nloc.segment;
	ref.offset = nloc.offset;
	ref.size = nloc.size;
	ref.flags = e->op == KV_KIND_DELETE ? KV_REF_TOMBSTONE : 0;
	if (kv_index_cas(db->ix, e->key, e->klen, &cur, &ref) == 1) {
		kv_acct_add(db, &ref);
		kv_acct_drop(db, &cur);
	}
	*copied += kv_log_bytes(nloc.size);
	return 0;
}

static int move_record(struct kv_db *db, aurawal_loc_t loc, const void *payload, size_t len,
		       bool drop, uint64_t *copied)
{
	struct kv_entry_iter it;
	struct kv_entry e;
	int rc = kv_entry_iter_init(&it, payload, len);

	while (rc == 0 && (rc = kv_entry_iter_next(&it, &e)) == 1) {
		pthread_mutex_t *stripe = &db->stripes[kv_stripe_of(e.key, e.klen)];

		pthread_mutex_lock(stripe);
		rc = move_entry(db, loc, &e, drop, copied);
		pthread_mutex_unlock(stripe);
	}
	if (rc == AURAKV_ECORRUPT)
		kv_report(db, AURAKV_REPORT_CORRUPTION,
			  "GC: record at segment %llu offset %u does not decode",
			  (unsigned long long) loc.segment, loc.offset);
	return rc;
}

/* Release segment `seg` once nothing in it is live. */
static int release(struct kv_db *db, uint64_t seg)
{
	struct kv_seg *s = kv_seg_get(db, seg, false);
	int64_t total = s ? atomic_load(&s->total) : 0;
	char *hint;
	int rc;

	if (s && atomic_load(&s->live) != 0) {
		kv_report(db, AURAKV_REPORT_CORRUPTION,
			  "GC: segment %llu still has %lld live bytes after collection; kept",
			  (unsigned long long) seg, (long long) atomic_load(&s->live));
		return -EBUSY;
	}
	rc = kv_map_wal_error(aurawal_release_segment(db->wal, seg));
	if (rc)
		return rc;
	if ((hint = kv_hint_path(db->dir, seg, "hint"))) {
		unlink(hint);
		free(hint);
	}
	kv_acct_forget(db, seg);
	atomic_fetch_add(&db->n.gc_runs, 1);
	atomic_fetch_add(&db->n.gc_bytes_freed, (uint64_t) total);
	return 0;
}

/* Is `seg` the oldest segment of the log? Only GC releases segments, and GC is this
 * thread, so the answer holds for the whole collection. */
static bool oldest(struct kv_db *db, uint64_t seg)
{
	aurawal_segment_info_t first;
	size_t n = 0;

	return aurawal_list_segments(db->wal, &first, 1, &n) == 0 && n > 0 && first.number == seg;
}

int kv_gc_collect(struct kv_db *db, uint64_t seg, bool paced)
{
	aurawal_loc_t from = { .segment = seg }, loc;
	struct pacer p = { .on = paced, .t0 = now_ns(), .fg0 = atomic_load(&db->n.fg_bytes) };
	bool drop = oldest(db, seg); /* tombstones are dropped only from the oldest */
	aurawal_iter_t *it;
	const void *payload;
	size_t len;
	/* The iterator reads what is written: flush the segment's tail first. */
	int rc = kv_map_wal_error(aurawal_sync(db->wal));

	if (rc)
		return rc;
	if ((rc = kv_map_wal_error(aurawal_iter_open(db->wal, from, &it))))
		return rc;
	while ((rc = aurawal_iter_next(it, &loc, NULL, &payload, &len)) == 1 &&
	       loc.segment == seg) {
		rc = move_record(db, loc, payload, len, drop, &p.copied);
		pace(db, &p);
		if (rc == 0 && stopping(db))
			rc = -ECANCELED;
		if (rc)
			break;
	}
	if (rc == 0 || rc == 1) {
		aurawal_iter_close(it);
		it = NULL;
		rc = kv_map_wal_error(aurawal_sync(db->wal));
	}
	if (it)
		aurawal_iter_close(it);
	atomic_fetch_add(&db->n.gc_bytes_copied, p.copied);
	return rc < 0 ? kv_map_wal_error(rc) : release(db, seg);
}

int kv_gc_step(struct kv_db *db, bool compact)
{
	struct view v;
	double ratio, target = db->opts.gc_space_amp, start = 1 + (target - 1) * 0.8;
	size_t i;
	int rc = view_take(db, &v);
	bool over, due;

	if (rc) {
		free(v.segs);
		return rc;
	}
	i = pick(db, &v, &ratio);
	over = (double) v.total > target * (double) (v.live > 0 ? v.live : 1);
	/* Back-pressure only while collecting can help: a victim with dead bytes exists. */
	set_behind(db, over && ratio < 1);
	due = ratio == 0 || ((compact || over) && ratio < 1) ||
	      ((double) v.total > start * (double) (v.live > 0 ? v.live : 1) &&
	       ratio < WORTH_COLLECTING);
	if (due)
		rc = kv_gc_collect(db, v.segs[i].number, !compact && ratio > 0 && !over);
	free(v.segs);
	if (rc < 0)
		set_behind(db, false); /* GC cannot proceed: writers must not wait on it */
	return rc < 0 ? rc : due;
}
