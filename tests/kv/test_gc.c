/* SPDX-License-Identifier: MIT */
/*
 * Garbage collection: space comes back without any application call, concurrent
 * writers never lose a key or see one come back, and a delete stays deleted whatever
 * part of the log GC has collected when the process dies.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "kv_db.h"
#include "kv_test.h"

KV_DIR_SUITE(kv_gc, 240);

static void put_w(aurakv_t *db, uint64_t k, uint64_t w, size_t spread)
{
	uint8_t v[2048];
	char key[32];
	size_t len = kv_value_len(k, w, spread);
	int rc;

	kv_value(v, len, k, w);
	rc = aurakv_put(db, key, kv_key(key, k), v, len, 0);
	cr_assert_eq(rc, 0, "put %llu: %s", (unsigned long long) k, aurakv_strerror(rc));
}

/* Wait (bounded) until `cond` holds for the store's stats; false on timeout. The store
 * works in the background: this is waiting for an observable state, not for time. */
static bool eventually(aurakv_t *db, bool (*cond)(const aurakv_stats_t *), aurakv_stats_t *st)
{
	uint64_t deadline = test_now_ns() + 60ull * 1000000000ull;

	for (;;) {
		cr_assert_eq(aurakv_get_stats(db, st), 0);
		if (cond(st))
			return true;
		if (test_now_ns() > deadline)
			return false;
		usleep(20000);
	}
}

static bool within_target(const aurakv_stats_t *st)
{
	/* 1.5x live, plus the active segment GC may not collect. */
	return (double) st->total_bytes <= 1.5 * (double) st->live_bytes + 2.0 * KV_SMALL_SEGMENT;
}

static bool small_disk(const aurakv_stats_t *st)
{
	return st->disk_bytes <= 4ull * KV_SMALL_SEGMENT;
}

Test(kv_gc, overwrite_everything_twice_then_delete_all_shrinks_the_store_without_a_call)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);
	aurakv_stats_t st;
	uint64_t peak;
	char key[32];

	for (uint64_t w = 1; w <= 3; w++)
		for (uint64_t k = 0; k < 6000; k++)
			put_w(db, k, w, 1000);
	cr_assert(eventually(db, within_target, &st),
		  "space amplification settles under 1.5x: total %llu live %llu",
		  (unsigned long long) st.total_bytes, (unsigned long long) st.live_bytes);
	peak = kv_disk_usage(dir);
	cr_assert_gt(st.gc_runs, 0, "background GC collected segments");
	for (uint64_t k = 0; k < 6000; k++)
		cr_assert_eq(aurakv_delete(db, key, kv_key(key, k), 0), 0);
	cr_assert(eventually(db, small_disk, &st),
		  "after deleting everything the store shrinks: %llu bytes on disk (peak %llu)",
		  (unsigned long long) st.disk_bytes, (unsigned long long) peak);
	cr_assert_eq(st.keys, 0);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_leq(kv_disk_usage(dir), 4ull * KV_SMALL_SEGMENT + 65536);
	db = kv_open_ok(dir, &o);
	for (uint64_t k = 0; k < 6000; k += 7) {
		void *v;
		size_t len;

		cr_assert_eq(aurakv_get(db, key, kv_key(key, k), &v, &len), AURAKV_ENOTFOUND,
			     "key %llu stays deleted after reopen", (unsigned long long) k);
	}
	cr_assert_eq(aurakv_close(db), 0);
}

/* ---- concurrent writers while GC runs flat out ---- */

#define WRITERS	  4
#define PER_W	  400
#define OPS_PER_W 6000

struct writer {
	aurakv_t *db;
	int id;
	uint64_t state[PER_W]; /* 0 = absent, else the write number of its value */
	int failures;
	char why[200];
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned seed = (unsigned) w->id * 7919u + 1;
	uint8_t v[2048];
	char key[32];

	for (uint64_t op = 1; op <= OPS_PER_W && !w->failures; op++) {
		uint64_t slot = (uint64_t) rand_r(&seed) % PER_W;
		uint64_t k = (uint64_t) w->id * PER_W + slot;
		size_t klen = kv_key(key, k);
		int r = rand_r(&seed) % 10, rc;

		if (r < 2) {
			rc = aurakv_delete(w->db, key, klen, 0);
			w->state[slot] = 0;
		} else if (r < 7) {
			size_t len = kv_value_len(k, op, 1500);

			kv_value(v, len, k, op);
			rc = aurakv_put(w->db, key, klen, v, len, 0);
			w->state[slot] = op;
		} else { /* read our own key: the model is exact for it */
			void *got = NULL;
			size_t len = 0;

			rc = aurakv_get(w->db, key, klen, &got, &len);
			if (w->state[slot] == 0
				? rc != AURAKV_ENOTFOUND
				: (rc != 0 || !kv_value_is(got, len, k, w->state[slot], 1500))) {
				snprintf(w->why, sizeof(w->why),
					 "key %llu: rc %d, expected write %llu",
					 (unsigned long long) k, rc,
					 (unsigned long long) w->state[slot]);
				w->failures++;
			}
			aurakv_free(got);
			rc = 0;
		}
		if (rc) {
			snprintf(w->why, sizeof(w->why), "op %llu: %s", (unsigned long long) op,
				 aurakv_strerror(rc));
			w->failures++;
		}
	}
	return NULL;
}

static _Atomic bool compactor_stop;

static void *compactor_main(void *arg)
{
	aurakv_t *db = arg;
	long rc = 0;

	while (!atomic_load(&compactor_stop) && rc == 0)
		rc = aurakv_compact(db);
	return (void *) rc;
}

static void check_writers(aurakv_t *db, struct writer *ws)
{
	for (int t = 0; t < WRITERS; t++)
		for (uint64_t s = 0; s < PER_W; s++) {
			uint64_t k = (uint64_t) t * PER_W + s;
			void *got = NULL;
			size_t len = 0;
			char key[32];
			int rc = aurakv_get(db, key, kv_key(key, k), &got, &len);

			if (ws[t].state[s] == 0)
				cr_assert_eq(rc, AURAKV_ENOTFOUND, "key %llu was deleted: rc %d",
					     (unsigned long long) k, rc);
			else
				cr_assert(rc == 0 && kv_value_is(got, len, k, ws[t].state[s], 1500),
					  "key %llu: rc %d, expected write %llu",
					  (unsigned long long) k, rc,
					  (unsigned long long) ws[t].state[s]);
			aurakv_free(got);
		}
}

Test(kv_gc, concurrent_writers_under_constant_gc_never_lose_or_resurrect_a_key)
{
	aurakv_options_t o = kv_opts(NULL);
	static struct writer ws[WRITERS];
	pthread_t th[WRITERS], comp;
	aurakv_stats_t st;
	void *crc;
	aurakv_t *db;

	o.gc_space_amp = 1.1; /* collect as eagerly as allowed */
	o.cache_size = 0;     /* reads go to the log, where GC moves things */
	db = kv_open_ok(dir, &o);
	atomic_store(&compactor_stop, false);
	cr_assert_eq(pthread_create(&comp, NULL, compactor_main, db), 0);
	for (int t = 0; t < WRITERS; t++) {
		memset(&ws[t], 0, sizeof(ws[t]));
		ws[t].db = db;
		ws[t].id = t;
		cr_assert_eq(pthread_create(&th[t], NULL, writer_main, &ws[t]), 0);
	}
	for (int t = 0; t < WRITERS; t++)
		cr_assert_eq(pthread_join(th[t], NULL), 0);
	atomic_store(&compactor_stop, true);
	cr_assert_eq(pthread_join(comp, &crc), 0);
	cr_assert_null(crc, "compact failed: %s", aurakv_strerror((int) (long) crc));
	for (int t = 0; t < WRITERS; t++)
		cr_assert_eq(ws[t].failures, 0, "writer %d: %s", t, ws[t].why);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_gt(st.gc_runs, 0, "GC ran during the test");
	cr_log_info("gc: %llu segments, %llu bytes copied", (unsigned long long) st.gc_runs,
		    (unsigned long long) st.gc_bytes_copied);
	check_writers(db, ws);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	check_writers(db, ws); /* and the same after reopen */
	cr_assert_eq(aurakv_close(db), 0);
}

/* ---- delete, partial GC, crash ---- */

/*
 * Segment A: the victim key's put, kept alive by other live keys. Segment B: its delete,
 * plus values overwritten later (so B is mostly dead and GC wants it). Then collect `how`:
 * 1 = B only (not the oldest: its tombstone must be copied forward), 2 = A then B (B is
 * then the oldest: its tombstone is dropped, the put went with A). Then die by SIGKILL.
 */
static void child(int how)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_segment_stats_t segs[64];
	aurakv_t *db;
	struct kv_db *d;
	size_t n = 0;
	uint64_t a = 0, b = 0;
	char key[32];

	o.background_gc = false; /* this test decides what is collected */
	if (aurakv_open(dir, &o, &db))
		_exit(10);
	d = db->db;
	put_w(db, 999999, 1, 100); /* the victim, in segment A */
	for (uint64_t k = 0; k < 3000; k++)
		put_w(db, k, 1, 600); /* fills A: these stay live */
	if (aurakv_delete(db, key, kv_key(key, 999999), AURAKV_SYNC))
		_exit(11);
	for (uint64_t k = 3000; k < 6000; k++)
		put_w(db, k, 1, 600); /* B */
	for (uint64_t k = 3000; k < 6000; k++)
		put_w(db, k, 2, 600); /* B's values overwritten: B is mostly dead */
	if (aurakv_sync(db) || aurakv_get_segment_stats(db, segs, 64, &n))
		_exit(12);
	{
		struct kv_ref ref;

		if (kv_index_get(d->ix, key, kv_key(key, 999999), &ref) ||
		    !(ref.flags & KV_REF_TOMBSTONE))
			_exit(13);
		b = ref.segment;
		a = segs[0].number;
		if (a == b)
			_exit(14); /* the layout this test needs did not happen */
	}
	if (how == 2 && kv_gc_collect(d, a, false))
		_exit(15);
	if (kv_gc_collect(d, b, false))
		_exit(16);
	{
		struct kv_ref ref;
		int rc = kv_index_get(d->ix, key, kv_key(key, 999999), &ref);

		/* Not the oldest: the tombstone moved. The oldest: it is gone with the put. */
		if (how == 1 && (rc || !(ref.flags & KV_REF_TOMBSTONE) || ref.segment == b))
			_exit(17);
		if (how == 2 && rc != -ENOENT)
			_exit(18);
	}
	raise(SIGKILL);
	_exit(19);
}

static void delete_partial_gc_kill(int how)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db;
	pid_t pid = fork();
	char key[32];
	void *v;
	size_t len;
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0)
		child(how);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		  "the child failed before the kill: exit status %d", WEXITSTATUS(st));
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_get(db, key, kv_key(key, 999999), &v, &len), AURAKV_ENOTFOUND,
		     "the deleted key came back");
	for (uint64_t k = 0; k < 6000; k += 97) {
		int rc = aurakv_get(db, key, kv_key(key, k), &v, &len);

		cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long) k, aurakv_strerror(rc));
		cr_assert(kv_value_is(v, len, k, k < 3000 ? 1 : 2, 600));
		aurakv_free(v);
	}
	cr_assert_eq(aurakv_close(db), 0);
}

Test(kv_gc, delete_then_gc_of_the_deletes_segment_then_sigkill_keeps_the_key_deleted)
{
	delete_partial_gc_kill(1);
}

Test(kv_gc, delete_then_gc_of_both_segments_then_sigkill_keeps_the_key_deleted)
{
	delete_partial_gc_kill(2);
}

/* ---- pacing and back-pressure ---- */

/* Bytes of the log's files: every segment, the preallocated ready one and a recycled
 * spare included - what the store really takes on disk for its log. */
static uint64_t log_file_bytes(const char *store)
{
	char wal[600];

	snprintf(wal, sizeof(wal), "%s/wal", store);
	return kv_disk_usage(wal);
}

static bool settled_under_target(const aurakv_stats_t *st)
{
	/* 1.5x live in segment files, plus one segment of granularity (GC frees whole
	 * segments) and the one recycled spare the WAL may keep beside the ready one. */
	return (double) log_file_bytes(dir) <=
	       1.5 * (double) st->live_bytes + 2.0 * KV_SMALL_SEGMENT;
}

Test(kv_gc, steady_overwrite_keeps_the_log_files_near_the_target_amplification)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);
	uint64_t worst = 0, worst_live = 1;
	aurakv_stats_t st;

	/* ~11 MB live in 1 MiB segments: 1.5x live is well above what whole segments
	 * allow, so the target itself applies. */
	for (uint64_t w = 1; w <= 4; w++)
		for (uint64_t k = 0; k < 20000; k++) {
			put_w(db, k, w, 1000);
			if (w > 1 && k % 500 == 0) {
				uint64_t files = log_file_bytes(dir);

				cr_assert_eq(aurakv_get_stats(db, &st), 0);
				if (files * worst_live > worst * st.live_bytes) {
					worst = files;
					worst_live = st.live_bytes;
				}
			}
		}
	/* While writing: back-pressure holds the log near its hard mark (1.75x live and a
	 * segment), give or take what a look at a directory of 1 MiB files sees besides:
	 * the ready segment, one being prepared, a recycled spare, segments sealed since
	 * GC last counted (without back-pressure the log would grow to ~4x live here). */
	cr_log_info("worst: %llu bytes of log files for %llu live (%.2f segments over 1.75x)",
		    (unsigned long long) worst, (unsigned long long) worst_live,
		    ((double) worst - 1.75 * (double) worst_live) / KV_SMALL_SEGMENT);
	cr_assert_leq((double) worst, 1.75 * (double) worst_live + 8.0 * KV_SMALL_SEGMENT,
		      "log files %llu bytes for %llu live", (unsigned long long) worst,
		      (unsigned long long) worst_live);
	cr_assert(eventually(db, settled_under_target, &st),
		  "the log settles under 1.5x live: %llu bytes of files, %llu live",
		  (unsigned long long) log_file_bytes(dir), (unsigned long long) st.live_bytes);
	cr_assert_gt(st.gc_runs, 0);
	cr_log_info("worst %.2fx while writing; gc %llu segments, %llu stalls (%.1f ms)",
		    (double) worst / (double) worst_live, (unsigned long long) st.gc_runs,
		    (unsigned long long) st.gc_stalls, st.gc_stall_ms);
	cr_assert_eq(aurakv_close(db), 0);
}

struct blocked_put {
	aurakv_t *db;
	int rc;
};

static void *blocked_put_main(void *arg)
{
	struct blocked_put *b = arg;

	b->rc = aurakv_put(b->db, "late", 4, "v", 1, 0);
	return NULL;
}

Test(kv_gc, a_writer_held_back_is_released_when_there_is_nothing_to_collect)
{
	aurakv_options_t o = kv_opts(NULL);
	struct blocked_put b = { 0 };
	aurakv_t *db;
	struct kv_db *d;
	pthread_t th;

	o.background_gc = false; /* this test runs the GC decisions itself */
	db = kv_open_ok(dir, &o);
	d = db->db;
	for (uint64_t k = 0; k < 6000; k++)
		put_w(db, k, 1, 1000); /* several sealed segments, every byte live */
	/* Back-pressure as GC would leave it, the writer deep in debt. */
	atomic_store(&d->bg.behind, true);
	atomic_store(&d->bg.credit, -((int64_t) 1 << 40));
	b.db = db;
	cr_assert_eq(pthread_create(&th, NULL, blocked_put_main, &b), 0);
	/* Nothing sealed has a dead byte and the log is within its target: no collection
	 * will pay the debt, so the step
	 * must lift back-pressure (else the put never returns: the test times out). */
	cr_assert_eq(kv_gc_step(d, false), 0, "nothing was worth collecting");
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(b.rc, 0, "the put went through: %s", aurakv_strerror(b.rc));
	cr_assert(!atomic_load(&d->bg.behind));
	cr_assert_eq(aurakv_close(db), 0);
}

/* Back-pressure is paid for what the log grows by: deleting a key that is not there
 * (or is deleted already) appends nothing and spends no credit; deleting a live key
 * does. */
Test(kv_gc, a_delete_of_a_missing_key_spends_no_back_pressure_credit)
{
	aurakv_options_t o = kv_opts(NULL);
	const int64_t credit = (int64_t) 1 << 30;
	aurakv_t *db;
	struct kv_db *d;
	char key[32];
	size_t klen = kv_key(key, 1);

	o.background_gc = false; /* nothing changes the credit but the writes below */
	db = kv_open_ok(dir, &o);
	d = db->db;
	put_w(db, 1, 1, 100);
	atomic_store(&d->bg.behind, true);
	atomic_store(&d->bg.credit, credit);
	cr_assert_eq(aurakv_delete(db, "missing", 7, 0), 0);
	cr_assert_eq(atomic_load(&d->bg.credit), credit, "a delete of a missing key paid");
	cr_assert_eq(aurakv_delete(db, key, klen, 0), 0);
	cr_assert_lt(atomic_load(&d->bg.credit), credit, "a delete that appends must pay");
	{
		int64_t after = atomic_load(&d->bg.credit);

		cr_assert_eq(aurakv_delete(db, key, klen, 0), 0);
		cr_assert_eq(atomic_load(&d->bg.credit), after, "deleting it again paid");
	}
	atomic_store(&d->bg.behind, false);
	cr_assert_eq(aurakv_close(db), 0);
}

#define DAMAGE_N      6000
#define DAMAGE_SPREAD 600

/* Key k's write after the overwrite pass of the damage test: most keys were written
 * again (their first records in the oldest segment are dead), every tenth was not. */
static uint64_t damage_write(uint64_t k)
{
	return k % 10 == 5 ? 1 : 2;
}

/*
 * GC meets a damaged record in its victim: the damage is reported once, with its
 * segment and offset; aurakv_compact() says AURAKV_ECORRUPT instead of success; the
 * segment is kept and not read again (a second compact, and the background thread,
 * leave it alone: still one report - it used to be retried every 100 ms, unreported);
 * the other segments are still collected and every key reads its value.
 */
Test(kv_gc, a_damaged_record_in_a_victim_is_reported_once_and_the_segment_is_kept)
{
	struct kv_reports rs = { 0 };
	aurakv_options_t o = kv_opts(&rs);
	aurakv_segment_stats_t segs[64];
	aurakv_stats_t st;
	struct kv_ref ref;
	char path[600], key[32], where[64];
	size_t n = 0;
	aurakv_t *db;

	o.background_gc = false; /* the oldest segment stays, mostly dead, until reopened */
	db = kv_open_ok(dir, &o);
	for (uint64_t k = 0; k < DAMAGE_N; k++)
		put_w(db, k, 1, DAMAGE_SPREAD);
	cr_assert_eq(aurakv_compact(db), 0, "nothing dead yet: the pass writes the hints");
	cr_assert_eq(kv_index_get(db->db->ix, key, kv_key(key, 10), &ref), 0);
	for (uint64_t k = 0; k < DAMAGE_N; k++)
		if (damage_write(k) == 2)
			put_w(db, k, 2, DAMAGE_SPREAD);
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	cr_assert_eq(segs[0].number, ref.segment, "key 10 was first in the oldest segment");
	cr_assert(segs[0].sealed && segs[0].has_hint);
	cr_assert_lt(segs[0].live_bytes * 2, segs[0].total_bytes, "mostly dead: GC wants it");
	cr_assert_eq(aurakv_close(db), 0);
	/* Key 10's first record, dead now: a byte of its value. Its hint makes the open
	 * trust the segment without reading it; GC is the first to read it. */
	kv_segment_path(path, sizeof(path), dir, ref.segment);
	kv_flip_byte(path, ref.offset + 32 + ref.size - 5);

	o.background_gc = true;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(rs.corruption, 0, "%s", rs.last);
	cr_assert_eq(aurakv_compact(db), AURAKV_ECORRUPT, "compact could not collect it");
	cr_assert_eq(rs.corruption, 1, "reported once: %s", rs.last);
	snprintf(where, sizeof(where), "segment %llu offset %u", (unsigned long long) ref.segment,
		 ref.offset);
	cr_assert(strstr(rs.last, where), "the report names the damage (%s): %s", where, rs.last);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_geq(st.gc_runs, 1, "the other segments with dead bytes were collected");

	cr_assert_eq(aurakv_compact(db), AURAKV_ECORRUPT, "still kept: still not compacted");
	cr_assert_eq(rs.corruption, 1, "not read again: %s", rs.last);
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	cr_assert_eq(segs[0].number, ref.segment, "the damaged segment is kept");
	for (uint64_t k = 0; k < DAMAGE_N; k++) {
		void *v;
		size_t len;
		int rc = aurakv_get(db, key, kv_key(key, k), &v, &len);

		cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long) k, aurakv_strerror(rc));
		cr_assert(kv_value_is(v, len, k, damage_write(k), DAMAGE_SPREAD),
			  "key %llu: wrong value", (unsigned long long) k);
		aurakv_free(v);
	}
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(rs.corruption, 1, "%s", rs.last);
}

/*
 * GC drops a tombstone from the index before it takes it off the count of tombstones:
 * a stats call in between saw one tombstone more than there were entries, and `keys`
 * (entries - tombstones) wrapped to 2^64 - 1.
 */
Test(kv_gc, stats_taken_while_gc_drops_a_tombstone_never_count_more_keys_than_exist)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_stats_t st;
	struct kv_ref ref;
	aurakv_t *db;
	struct kv_db *d;

	o.background_gc = false; /* the test takes GC's steps itself */
	db = kv_open_ok(dir, &o);
	d = db->db;
	put_w(db, 1, 1, 100);
	cr_assert_eq(aurakv_delete(db, "k00000001", 9, 0), 0);
	cr_assert_eq(kv_index_get(d->ix, "k00000001", 9, &ref), 0);
	cr_assert(ref.flags & KV_REF_TOMBSTONE);
	/* move_entry's drop, half done: out of the index, still counted. */
	pthread_mutex_lock(&d->stripes[kv_stripe_of("k00000001", 9)]);
	cr_assert_eq(kv_index_remove_if(d->ix, "k00000001", 9, &ref), 1);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.keys, 0, "%llu keys in a store that has none",
		     (unsigned long long) st.keys);
	kv_acct_drop(d, &ref);
	pthread_mutex_unlock(&d->stripes[kv_stripe_of("k00000001", 9)]);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.keys, 0);
	cr_assert_eq(aurakv_close(db), 0);
}

/* With background_gc off, the background thread never took the view that records the
 * newest segment it has seen (only GC's did), so after the first rollover every write
 * took bg.lock and woke the thread again, for good. It must catch up with the log once
 * woken, whatever GC does. */
Test(kv_gc, without_background_gc_the_thread_still_catches_up_with_new_segments)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_segment_stats_t segs[64];
	uint64_t deadline;
	size_t n = 0;
	aurakv_t *db;

	o.background_gc = false;
	cr_assert_eq(aurakv_open(dir, &o, &db), 0);
	for (uint64_t k = 0; n < 3; k++) {
		put_w(db, k, 1, 600);
		if (k % 500 == 0)
			cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	}
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	deadline = test_now_ns() + 5ull * 1000000000ull;
	while (atomic_load(&db->db->bg.seen_segment) < segs[n - 1].number) {
		cr_assert_lt(test_now_ns(), deadline, "seen %llu, the log is at %llu",
			     (unsigned long long) atomic_load(&db->db->bg.seen_segment),
			     (unsigned long long) segs[n - 1].number);
		put_w(db, 0, 2, 600); /* a write notes the segment: it wakes the thread */
	}
	cr_assert_eq(aurakv_close(db), 0);
}
