/* SPDX-License-Identifier: MIT */
/*
 * kv_bg.c - the store's background thread: its loop, start and stop, the hint pass,
 * and aurakv_compact()'s requests. The thread sleeps on bg.wake (a writer signals it
 * when a new segment starts, aurakv_compact() when it wants a pass) and otherwise wakes
 * every BG_PERIOD_MS to look at GC. With AURAKV_TEST_HOOKS (builds with fault injection,
 * never Release) a test may hold it at the top of its loop, as if starved of CPU
 * (kv_bg_test_hold).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_db.h"

#define BG_PERIOD_MS   100
#define HINTS_PER_PASS 4
#define HINT_RETRY_NS  (10ull * 1000000000ull)

/* Write the hint files of sealed segments that have none yet: at most HINTS_PER_PASS
 * (1 while GC is behind), so that GC looks at the space between them - each means
 * reading a segment, and writers held back by GC wait meanwhile. A segment whose hint
 * could not be written (out of space, an I/O error, the hints/ directory gone: said
 * once, as information) is tried again HINT_RETRY_NS after the last failure, or at once
 * when `retry` (a pass asked for by aurakv_compact()). */
static void hint_pass(struct kv_db *db, bool retry)
{
	size_t budget =
	    atomic_load_explicit(&db->bg.behind, memory_order_relaxed) ? 1 : HINTS_PER_PASS;
	aurawal_segment_info_t *segs;
	size_t count = 0, n = 0;

	if (aurawal_list_segments(db->wal, NULL, 0, &count) ||
	    !(segs = calloc(count + 1, sizeof(*segs))))
		return;
	aurawal_list_segments(db->wal, segs, count, &n);
	for (size_t i = 0; i < n && i < count && budget > 0; i++) {
		struct kv_seg *s = kv_seg_get(db, segs[i].number, false);
		struct kv_seg_summary sum = { 0 };
		int rc, was;

		if (!segs[i].sealed || !s || (was = atomic_load(&s->hint)) == KV_HINT_OK ||
		    (was == KV_HINT_FAILED && !retry))
			continue;
		/* A sealed segment's last records may still be in the log's buffer, and the
		 * summary reads what is written: flush first, or the hint would miss them. */
		rc = kv_map_wal_error(aurawal_sync(db->wal));
		if (rc == 0)
			rc = kv_seg_summarize(db->wal, segs[i].number, &sum);
		if (rc == -ENOENT) /* the log has no such segment: released meanwhile */
			continue;
		/* -ENOENT from here on is the hint's own (hints/ gone): a failure, marked
		 * and said like any other, or each loop would read the segment again. */
		if (rc == 0) {
			rc = kv_hint_write(db, &sum, segs[i].number);
			kv_seg_summary_free(&sum);
		}
		budget--;
		atomic_store(&s->hint, rc ? KV_HINT_FAILED : KV_HINT_OK);
		if (rc)
			db->bg.hint_retry_at = kv_now_ns() + HINT_RETRY_NS;
		if (rc == AURAKV_ECORRUPT && was == KV_HINT_NONE) /* the log itself, not the hint */
			kv_report(db, AURAKV_REPORT_CORRUPTION,
				  "log segment %llu offset %llu: damaged record (found reading the "
				  "segment for its hint file)",
				  (unsigned long long) segs[i].number,
				  (unsigned long long) sum.end);
		else if (rc && was == KV_HINT_NONE)
			kv_report(db, AURAKV_REPORT_INFO,
				  "hint file of segment %llu not written: %s (tried again later)",
				  (unsigned long long) segs[i].number, aurakv_strerror(rc));
		else if (!rc)
			atomic_fetch_add(&db->n.hints_written, 1);
	}
	free(segs);
}

/* Record the newest segment as seen, as GC's view does (kv_gc_pace.c, view_take): with GC
 * off nothing else would, and every write after a rollover would wake the thread again
 * (kv_write.c, note_segment). */
static void see_segments(struct kv_db *db)
{
	aurawal_segment_info_t *segs;
	size_t n;

	if (kv_list_segments(db, &segs, &n) == 0 && n)
		atomic_store(&db->bg.seen_segment, segs[n - 1].number);
	free(segs);
}

/* The error that failed the store's log (-EIO...), or 0. */
static int store_failure(struct kv_db *db)
{
	aurawal_stats_t st;

	if (aurawal_get_stats(db->wal, &st) != 0)
		return 0;
	return st.failed ? kv_map_wal_error(st.failed) : 0;
}

/* Collect until nothing sealed has dead bytes (bounded: GC's own copies never do). A
 * victim found damaged is kept and left out from then on (kv_gc.c, damaged()): the pass
 * goes on with the others, and fails with AURAKV_ECORRUPT while any such segment is
 * kept - it could not do what aurakv_compact() promises. On a failed store the pass
 * returns the failure error (as every write does), also when nothing was due: GC met
 * the failure only if it had something to copy. */
static int compact_pass(struct kv_db *db)
{
	int rc = 0;

	for (int i = 0; i < 100000; i++) {
		uint64_t kept = atomic_load(&db->bg.damaged);

		rc = kv_gc_step(db, true);
		if (rc == AURAKV_ECORRUPT && atomic_load(&db->bg.damaged) > kept)
			continue; /* that victim is out of GC now: the next step picks another */
		if (rc <= 0)
			break;
		pthread_mutex_lock(&db->bg.lock);
		pthread_cond_broadcast(&db->bg.progress);
		pthread_mutex_unlock(&db->bg.lock);
	}
	if (rc == 0)
		rc = store_failure(db);
	if (rc == 0 && atomic_load(&db->bg.damaged) > 0)
		rc = AURAKV_ECORRUPT;
	return rc < 0 ? rc : 0;
}

#ifdef AURAKV_TEST_HOOKS
/* Tests: wait here while held (bg.lock held), as a thread starved of CPU would not run.
 * On bg.progress, which only GC, stop and the hold's release broadcast: bg.wake would
 * wake the thread at every write until it ran again (kv_write.c, note_segment). */
static void test_park(struct kv_db *db)
{
	while (db->bg.test_hold && !db->bg.stop) {
		if (!db->bg.test_parked) {
			db->bg.test_parked = true;
			pthread_cond_broadcast(&db->bg.progress); /* kv_bg_test_hold waits */
		}
		pthread_cond_wait(&db->bg.progress, &db->bg.lock);
	}
	db->bg.test_parked = false;
}

void kv_bg_test_hold(struct kv_db *db, bool hold)
{
	pthread_mutex_lock(&db->bg.lock);
	db->bg.test_hold = hold;
	pthread_cond_broadcast(hold ? &db->bg.wake : &db->bg.progress);
	while (hold && db->bg.started && !db->bg.stop && !db->bg.test_parked)
		pthread_cond_wait(&db->bg.progress, &db->bg.lock);
	pthread_mutex_unlock(&db->bg.lock);
}
#else
static void test_park(struct kv_db *db)
{
}
#endif

static void *bg_main(void *arg)
{
	struct kv_db *db = arg;

	pthread_mutex_lock(&db->bg.lock);
	test_park(db);
	while (!db->bg.stop) {
		uint64_t want = db->bg.compact_requested;
		/* Failed hints are retried when due, and by every pass asked for. */
		bool retry = want > db->bg.compact_done ||
			     (db->bg.hint_retry_at && kv_now_ns() >= db->bg.hint_retry_at);
		int did = 0;

		pthread_mutex_unlock(&db->bg.lock);
		if (db->opts.write_hints)
			hint_pass(db, retry);
		if (want > db->bg.compact_done) {
			int rc = compact_pass(db);

			pthread_mutex_lock(&db->bg.lock);
			db->bg.compact_rc = rc;
			db->bg.compact_done = want;
			pthread_cond_broadcast(&db->bg.progress);
			pthread_mutex_unlock(&db->bg.lock);
			did = 1;
		} else if (db->opts.background_gc) {
			did = kv_gc_step(db, false) > 0;
		} else {
			see_segments(db);
		}
		pthread_mutex_lock(&db->bg.lock);
		if (did) {
			pthread_cond_broadcast(&db->bg.progress);
		} else if (!db->bg.stop && db->bg.compact_requested == db->bg.compact_done) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += BG_PERIOD_MS * 1000000L;
			ts.tv_sec += ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&db->bg.wake, &db->bg.lock, &ts);
		}
		test_park(db);
	}
	atomic_store(&db->bg.behind, false);
	pthread_cond_broadcast(&db->bg.progress);
	pthread_mutex_unlock(&db->bg.lock);
	return NULL;
}

int kv_bg_start(struct kv_db *db)
{
	int rc = pthread_create(&db->bg.thread, NULL, bg_main, db);

	if (rc)
		return -rc;
	db->bg.started = true;
	return 0;
}

void kv_bg_stop(struct kv_db *db)
{
	if (!db->bg.started)
		return;
	pthread_mutex_lock(&db->bg.lock);
	db->bg.stop = true;
	pthread_cond_broadcast(&db->bg.wake);
	pthread_cond_broadcast(&db->bg.progress);
	pthread_mutex_unlock(&db->bg.lock);
	pthread_join(db->bg.thread, NULL);
	db->bg.started = false;
}

int kv_gc_compact(struct kv_db *db)
{
	uint64_t ticket;
	int rc;

	pthread_mutex_lock(&db->bg.lock);
	ticket = ++db->bg.compact_requested;
	pthread_cond_signal(&db->bg.wake);
	while (db->bg.compact_done < ticket && !db->bg.stop)
		pthread_cond_wait(&db->bg.progress, &db->bg.lock);
	rc = db->bg.compact_done >= ticket ? db->bg.compact_rc : AURAKV_ECLOSED;
	pthread_mutex_unlock(&db->bg.lock);
	return rc;
}
