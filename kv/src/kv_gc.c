/* SPDX-License-Identifier: MIT */
/*
 * kv_gc.c - the background thread: hint files for sealed segments, and garbage
 * collection.
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
 * Space. GC measures what the store takes on disk: seg_bytes for every segment of the
 * log, the active one included (segment files are preallocated whole), plus the one the
 * WAL keeps ready and its recycled spare, plus the hint files (db->hint_bytes: ~20 % of
 * the log with 100-byte values) - against the live bytes (kv_acct.c). Its marks
 * (marks_of), for target T = gc_space_amp and excess E = (T - 1) x live:
 *   target = T x live, but at least (live segments + 4) x seg_bytes + their hints: full
 *            sealed segments, the active one, the ready one, the spare and one of
 *            room - whole segments make anything less impossible (a small store sits
 *            above T; documented);
 *   start  = target - 0.4 E (1.3x at 1.5): GC begins, paced;
 *   soft   = target - one segment (not below start): back-pressure begins;
 *   hard   = target + 0.5 E + one segment (1.75x at 1.5): writers get no more credit.
 *
 * Pacing (start .. soft). GC collects the least-live sealed segment if it is under 90 %
 * live, copying at most factor x the bytes written since it began plus 64 MiB/s of idle
 * allowance, checked every 256 KiB. factor = 1.5 x r/(1-r) for the victim's live ratio
 * r (the copying that exactly keeps up with the writes), clamped to 2 .. 16, and up to
 * doubled as the space nears the target. While it copies it re-reads the segment count
 * each 256 KiB (escalate): writers that pass the soft mark meanwhile are held back at
 * once, not a whole victim later.
 *
 * Back-pressure (past soft). `behind` is set, GC runs unpaced, and writers spend
 * credit: each writer takes its record's log bytes from bg.credit before appending, and
 * one that finds it negative waits on bg.progress (a condition variable, timed so that a
 * missed change costs at most BG_PERIOD_MS; never a spin). Every 256 KiB of the victim
 * walked, GC grants gain x the net space it freed (bytes walked - bytes copied), gain =
 * (hard - space) / (hard - soft) clamped to 0 .. 4: more than it frees below the soft
 * mark, less above it, so held-back writers settle the space a segment under the
 * target (it moves by whole segments) and wait a granule at a time, not a segment. At
 * the hard mark gain is 0: writers wait for the victim's release (a last resort, far
 * above the target). Hint files are written one per loop while behind (each reads a
 * segment; writers in debt wait meanwhile).
 * Back-pressure is lifted when the space is under soft, when no sealed segment has a
 * dead byte (collecting cannot help), on a GC error and when the store stops: writers
 * never wait on GC that cannot free anything.
 *
 * Writers watch the marks (kv_gc_rollover). The space grows only when the log starts a
 * segment, and the store sees each record's segment: the first writer whose record lands
 * in a segment no writer has measured (one per rollover, chosen by a CAS on
 * bg.checked_segment; every other write pays one relaxed load and a compare) takes the
 * view as GC does, after letting go of its stripe. With a victim GC may collect, no GC
 * error at the thread's last step and the store not stopping (the same release rules):
 * past hard it switches back-pressure on and takes back the credit GC granted earlier,
 * so every writer waits for GC, which grants nothing there (gain 0) until a release;
 * past soft it switches back-pressure on (credit from 0, as the thread would) if the
 * thread has not looked at the space during the whole previous segment (bg.looked_segment,
 * set by kv_gc_step and escalate) - a thread that keeps up, woken by the rollover
 * (note_segment), decides as before, and writers are not held back any sooner than they
 * were (switched on at soft at once, overwrite in kvbench ran at half its rate). So the
 * marks hold whether or not the thread runs: before, only the thread looked, and with it
 * starved of CPU (delayed 50 ms a loop) writers ran unthrottled until it did - the log's
 * files reached 2.75x live against a hard mark of 1.75x (kv_gc_starved). Slack past hard:
 * the segment a rollover starts after the last look, and one a record in flight may
 * start; past soft, one segment more. Lock order there: no stripe held; the log's list
 * (view_take), then bg.lock (writers_behind), as everywhere (kv_db.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv_db.h"

#define BG_PERIOD_MS	 100
#define IDLE_COPY_RATE	 (64.0 * 1024 * 1024) /* bytes/s GC may copy with no writes */
#define PACE_GRANULE	 (256u << 10)	      /* pacing and credit are settled this often */
#define WORTH_COLLECTING 0.9 /* a paced pass only takes segments below this live ratio */
#define START_AT	 0.6 /* paced GC from 60 % of the way to the target (1.3 at 1.5) */
#define HARD_AT		 0.5 /* no credit half the target's excess above it (1.75 at 1.5) */
#define MAX_GAIN	 4.0 /* the most credit per byte GC frees (gain_at()) */
#define PACE_MARGIN	 1.5 /* paced GC copies 1.5x the rate that just keeps up */
#define PACE_MIN	 2.0 /* ... and at least 2x, at most 16x what is written */
#define PACE_MAX	 16.0
#define GC_MOVES_MAX	 8192	    /* copies whose index switch waits for one sync ... */
#define GC_MOVES_KEYS	 (1u << 20) /* ... and the key bytes they may hold */
/* Segment files beside the listed segments: the ready one and the WAL's one recycled
 * spare (aurawal_options_t.spare_segments, 1 by default). */
#define EXTRA_SEGS 2
/* Where a segment's first record starts: after its 4096-byte header block
 * (docs/wal_format.md, "Segment header"). */
#define SEG_FIRST_RECORD 4096u

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

/* Switch back-pressure on (writers then spend credit, starting from none) or off. */
static void set_behind(struct kv_db *db, bool behind)
{
	if (atomic_load_explicit(&db->bg.behind, memory_order_relaxed) == behind)
		return;
	pthread_mutex_lock(&db->bg.lock);
	atomic_store_explicit(&db->bg.credit, 0, memory_order_relaxed);
	atomic_store_explicit(&db->bg.behind, behind, memory_order_relaxed);
	pthread_cond_broadcast(&db->bg.progress);
	pthread_mutex_unlock(&db->bg.lock);
}

/* GC freed (net) `bytes` more: let writers append gain x that much. Under bg.lock, so
 * a writer that saw no credit (under the lock) is waiting when the broadcast comes. */
static void grant(struct kv_db *db, double bytes)
{
	if (bytes < 1)
		return;
	pthread_mutex_lock(&db->bg.lock);
	atomic_fetch_add_explicit(&db->bg.credit, (int64_t) bytes, memory_order_relaxed);
	pthread_cond_broadcast(&db->bg.progress);
	pthread_mutex_unlock(&db->bg.lock);
}

void kv_gc_throttle(struct kv_db *db, uint64_t bytes)
{
	uint64_t t0;

	/* Relaxed: a writer that misses a just-set flag only passes once more; the credit
	 * is a plain budget (no data is published through it). */
	if (!atomic_load_explicit(&db->bg.behind, memory_order_relaxed))
		return;
	if (atomic_fetch_sub_explicit(&db->bg.credit, (int64_t) bytes, memory_order_relaxed) >=
	    (int64_t) bytes)
		return; /* paid from the credit GC granted */
	/* In debt: wait until GC's progress pays it, or back-pressure ends (caught up, GC
	 * cannot help, error, close). The timeout only bounds a missed flag change. */
	t0 = kv_now_ns();
	pthread_mutex_lock(&db->bg.lock);
#ifdef AURAKV_TEST_HOOKS
	db->bg.test_waiting++;
#endif
	while (atomic_load_explicit(&db->bg.behind, memory_order_relaxed) &&
	       atomic_load_explicit(&db->bg.credit, memory_order_relaxed) < 0 && !db->bg.stop) {
		struct timespec ts;

		deadline_in(&ts, BG_PERIOD_MS);
		pthread_cond_timedwait(&db->bg.progress, &db->bg.lock, &ts);
	}
#ifdef AURAKV_TEST_HOOKS
	db->bg.test_waiting--;
#endif
	pthread_mutex_unlock(&db->bg.lock);
	atomic_fetch_add_explicit(&db->n.gc_stalls, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->n.gc_stall_ns, kv_now_ns() - t0, memory_order_relaxed);
}

/* ---- the segments as GC sees them ---- */

struct view {
	aurawal_segment_info_t *segs;
	size_t n;
	int64_t total, live;
	double space; /* bytes the store's files hold (space_of) */
};

/* The hint files' bytes: on disk like the log (one hint entry per record of a sealed
 * segment, ~20 % of the log with 100-byte values), so GC counts them as space. */
static double gc_hint_bytes(struct kv_db *db)
{
	int64_t h = atomic_load_explicit(&db->hint_bytes, memory_order_relaxed);

	return h > 0 ? (double) h : 0;
}

/* The bytes the store's files hold with `nsegs` segments in the log. Segment files are
 * preallocated whole: a segment, the active one included, takes seg_bytes on disk
 * however full it is; the WAL keeps the next one ready and one recycled spare; each
 * sealed segment has a hint file. */
static double space_of(struct kv_db *db, size_t nsegs)
{
	return (double) (nsegs + EXTRA_SEGS) * (double) db->seg_bytes + gc_hint_bytes(db);
}

static double clamp(double x, double lo, double hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

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
	v->space = space_of(db, v->n);
	return 0;
}

/* The live fraction GC would have to copy out of segment i of the view. */
static double live_ratio(struct kv_db *db, const struct view *v, size_t i)
{
	struct kv_seg *s = kv_seg_get(db, v->segs[i].number, false);
	int64_t total, live;

	if (!s || !v->segs[i].sealed || i + 1 == v->n) /* never the active segment */
		return 2;
	if (atomic_load(&s->gc_damaged)) /* kept until reopened: see damaged() */
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

/* How one collection is paced: `factor` x the bytes written meanwhile (plus the idle
 * allowance) may be copied; or, when writers are held back, each granule of net progress
 * (victim bytes walked - bytes copied) grants them `gain` x that much credit. */
struct pacer {
	bool on, grant;
	double factor, gain, soft, hard; /* the marks (bytes) gain_at() needs */
	uint64_t t0, fg0, copied, scanned, next_check;
	uint64_t granted_scan, granted_copy; /* progress already turned into credit */
};

static bool within_budget(struct kv_db *db, const struct pacer *p)
{
	uint64_t fg = atomic_load_explicit(&db->n.fg_bytes, memory_order_relaxed) - p->fg0;
	double budget =
	    p->factor * (double) fg + IDLE_COPY_RATE * (double) (kv_now_ns() - p->t0) / 1e9;

	return (double) p->copied <= budget || atomic_load(&db->bg.behind);
}

/* Credit per byte GC frees at `space`: 1 at the soft mark - above it writers get less
 * than GC frees, below it more, so held-back writers settle the space a segment under
 * the target (space moves by whole segments) - and 0 at the hard mark. */
static double gain_at(const struct pacer *p, double space)
{
	return clamp((p->hard - space) / (p->hard - p->soft), 0, MAX_GAIN);
}

/* The thread is about to compare the space with the marks: writers need not do it for
 * the segments started so far (kv_gc_rollover). */
static void looked(struct kv_db *db)
{
	uint64_t c = atomic_load_explicit(&db->bg.checked_segment, memory_order_relaxed);

	atomic_store_explicit(&db->bg.looked_segment, c, memory_order_relaxed);
}

/* A paced collection re-reads the space (the segment count: cheap) as it goes: if the
 * writers pushed it past the soft mark meanwhile, back-pressure starts now, not after
 * the victim is done. */
static void escalate(struct kv_db *db, struct pacer *p)
{
	size_t count = 0;
	double space;

	looked(db);
	if (aurawal_list_segments(db->wal, NULL, 0, &count))
		return;
	space = space_of(db, count);
	if (space <= p->soft)
		return;
	p->gain = gain_at(p, space);
	p->on = false;
	p->grant = true;
	set_behind(db, true);
}

/* Every PACE_GRANULE walked or copied: grant credit, or wait until the bytes copied so
 * far are within the budget (or the store stops). */
static void pace(struct kv_db *db, struct pacer *p)
{
	if (p->copied + p->scanned < p->next_check)
		return;
	p->next_check = p->copied + p->scanned + PACE_GRANULE;
	if (!p->grant && p->hard > 0)
		escalate(db, p);
	if (p->grant) {
		double net = (double) (p->scanned - p->granted_scan) -
			     (double) (p->copied - p->granted_copy);

		if (net > 0) {
			grant(db, p->gain * net);
			p->granted_scan = p->scanned;
			p->granted_copy = p->copied;
		}
		return;
	}
	while (p->on && !within_budget(db, p)) {
		struct timespec ts;

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

static int collect(struct kv_db *db, uint64_t seg, struct pacer *p)
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
		pace(db, p);
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

int kv_gc_collect(struct kv_db *db, uint64_t seg, bool paced)
{
	struct pacer p = { .on = paced, .factor = PACE_MIN };

	return collect(db, seg, &p);
}

/* The space thresholds (bytes) of a view. The target is gc_space_amp x live, but never
 * below what whole segments allow: every live byte in a full sealed segment (with its
 * hint file), plus the active, the ready and the spare segment, plus one segment of
 * room (GC frees whole segments). */
struct marks {
	double start, soft, target, hard;
};

static struct marks marks_of(struct kv_db *db, const struct view *v)
{
	uint64_t live_u = v->live > 0 ? (uint64_t) v->live : 0;
	uint64_t live_segs = (live_u + db->seg_bytes - 1) / db->seg_bytes;
	double seg = (double) db->seg_bytes, live = (double) live_u;
	double excess = (db->opts.gc_space_amp - 1) * live;
	double hint_per_seg = v->n > 1 ? gc_hint_bytes(db) / (double) (v->n - 1) : 0;
	double floor =
	    (double) (live_segs + 2 + EXTRA_SEGS) * seg + (double) live_segs * hint_per_seg;
	struct marks m;

	m.target = db->opts.gc_space_amp * live;
	if (m.target < floor)
		m.target = floor;
	m.start = m.target - (1 - START_AT) * excess;
	m.soft = m.target - seg > m.start ? m.target - seg : m.start;
	m.hard = m.target + HARD_AT * excess + seg;
	return m;
}

/* The pacing of a collection of a victim with live ratio `ratio` at space `space`. */
static void plan(struct pacer *p, const struct marks *m, double space, double ratio)
{
	double need = ratio / (1 - ratio); /* bytes copied per byte freed */
	double urgency = (space - m->start) / (m->target - m->start + 1);

	p->factor = clamp(PACE_MARGIN * need, PACE_MIN, PACE_MAX) * (1 + clamp(urgency, 0, 1));
	p->soft = m->soft;
	p->hard = m->hard;
	p->gain = gain_at(p, space);
}

int kv_gc_step(struct kv_db *db, bool compact)
{
	struct pacer p = { 0 };
	struct view v;
	struct marks m;
	double ratio;
	size_t i;
	bool over, due;
	int rc;

	looked(db); /* before the view: the view sees at least what writers had measured */
	rc = view_take(db, &v);
	if (rc) {
		free(v.segs);
		return rc;
	}
	if (v.n) /* the thread has seen it: writers stop waking it for it (note_segment) */
		atomic_store(&db->bg.seen_segment, v.segs[v.n - 1].number);
	i = pick(db, &v, &ratio);
	m = marks_of(db, &v);
	over = v.space > m.soft; /* a segment early: GC frees whole segments */
	/* Back-pressure only while collecting can help: a victim with dead bytes exists. */
	set_behind(db, over && ratio < 1);
	due = ratio == 0 || ((compact || over) && ratio < 1) ||
	      (v.space > m.start && ratio < WORTH_COLLECTING);
	if (due) {
		plan(&p, &m, v.space, ratio);
		p.on = !compact && ratio > 0 && !over;
		p.grant = over && ratio < 1;
		rc = collect(db, v.segs[i].number, &p);
	}
	free(v.segs);
	if (rc < 0)
		set_behind(db, false); /* GC cannot proceed: writers must not wait on it */
	/* ... nor switch it on again themselves until a step goes through (rollover). */
	atomic_store_explicit(&db->bg.gc_failed, rc < 0, memory_order_relaxed);
	return rc < 0 ? rc : due;
}

/* A writer measured the space past soft (`hard`: past hard too): back-pressure on, and
 * the thread woken to collect. Past hard, credit GC granted earlier is taken back: every
 * writer then waits for GC's next grant, which pays nothing (gain 0) until a release
 * brings the space under hard. Not once the store stops: the thread, gone, would never
 * lift it. */
static void writers_behind(struct kv_db *db, bool hard)
{
	pthread_mutex_lock(&db->bg.lock);
	if (!db->bg.stop) {
		if (!atomic_load_explicit(&db->bg.behind, memory_order_relaxed)) {
			atomic_store_explicit(&db->bg.credit, 0, memory_order_relaxed);
			atomic_store_explicit(&db->bg.behind, true, memory_order_relaxed);
		} else if (hard) {
			int64_t c = atomic_load_explicit(&db->bg.credit, memory_order_relaxed);

			/* A CAS: writers take from the credit meanwhile, without the lock. */
			while (c > 0 && !atomic_compare_exchange_weak_explicit(
					    &db->bg.credit, &c, 0, memory_order_relaxed,
					    memory_order_relaxed))
				;
		}
		pthread_cond_signal(&db->bg.wake);
	}
	pthread_mutex_unlock(&db->bg.lock);
}

void kv_gc_rollover(struct kv_db *db, uint64_t segment)
{
	uint64_t seen = atomic_load_explicit(&db->bg.checked_segment, memory_order_relaxed);
	struct marks m;
	struct view v;
	double ratio;

	do { /* one writer per segment measures; a failed CAS reloads `seen` */
		if (segment <= seen)
			return;
	} while (!atomic_compare_exchange_weak_explicit(
	    &db->bg.checked_segment, &seen, segment, memory_order_relaxed, memory_order_relaxed));
	if (!db->opts.background_gc ||
	    atomic_load_explicit(&db->bg.gc_failed, memory_order_relaxed))
		return; /* no thread collects (aurakv_compact() only), or GC cannot proceed */
	if (view_take(db, &v) == 0) {
		bool lags = atomic_load_explicit(&db->bg.looked_segment, memory_order_relaxed) + 1 <
			    segment;

		pick(db, &v, &ratio);
		m = marks_of(db, &v);
		/* kv_gc_step's rule: back-pressure only while collecting can help. Past soft,
		 * only if the thread has not looked during the whole previous segment: woken
		 * by this rollover (note_segment), a thread that keeps up decides as before. */
		if (ratio < 1 && (v.space > m.hard || (v.space > m.soft && lags)))
			writers_behind(db, v.space > m.hard);
	}
	free(v.segs);
}

#ifdef AURAKV_TEST_HOOKS
int kv_gc_test_waiting(struct kv_db *db)
{
	int n;

	pthread_mutex_lock(&db->bg.lock);
	n = db->bg.test_waiting;
	pthread_mutex_unlock(&db->bg.lock);
	return n;
}
#endif
