/* SPDX-License-Identifier: MIT */
/*
 * kv_gc_pace.c - when garbage collection runs and how fast: the space the store takes
 * against its marks, the choice of victim, the pacing of a collection, and back-pressure
 * on writers (credit, kv_gc_throttle; the writers' own look at the marks,
 * kv_gc_rollover). Moving a victim's records is the collector's (kv_gc.c): this file
 * never touches the index or a key's stripe; writers never wait on GC that cannot free
 * anything.
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

#include "kv_gc_internal.h"

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
/* Segment files beside the listed segments: the ready one and the WAL's one recycled
 * spare (aurawal_options_t.spare_segments, 1 by default). */
#define EXTRA_SEGS 2

static void deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (long) (ms % 1000) * 1000000L;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
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

/* ---- pacing one collection (struct pacer: kv_gc_internal.h) ---- */

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
void kv_gc_pace(struct kv_db *db, struct pacer *p)
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

int kv_gc_collect(struct kv_db *db, uint64_t seg, bool paced)
{
	struct pacer p = { .on = paced, .factor = PACE_MIN };

	return kv_gc_collect_paced(db, seg, &p);
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
		rc = kv_gc_collect_paced(db, v.segs[i].number, &p);
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
