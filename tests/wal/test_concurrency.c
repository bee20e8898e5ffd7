/* SPDX-License-Identifier: MIT */
/* Many threads appending durably at once: every acknowledged record readable, sequence
 * numbers unique and in log order. Run under TSan in CI. */
#include <pthread.h>

#include "wal_test.h"

#define THREADS 16
#define PER	400

struct worker {
	aurawal_t *log;
	int id;
	aurawal_loc_t locs[PER];
	uint64_t seqs[PER];
};

static void *appender(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < PER; i++) {
		uint64_t key = (uint64_t) w->id * PER + (uint64_t) i;
		unsigned flags = i % 4 ? AURAWAL_DURABLE : 0; /* mix durable and buffered */

		w->seqs[i] = append_i(w->log, key, 64 + (size_t) (key % 200), flags, &w->locs[i]);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

Test(wal_concurrency, sixteen_threads_append_and_every_record_is_there_in_order)
{
	char *dir = temp_dir();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	static struct worker w[THREADS];
	static uint64_t all[THREADS * PER];
	pthread_t t[THREADS];
	aurawal_stats_t st;
	aurawal_iter_t *it;
	uint64_t seq, prev = 0, n = 0;
	int rc;

	for (int i = 0; i < THREADS; i++) {
		w[i].log = log;
		w[i].id = i;
		cr_assert_eq(pthread_create(&t[i], NULL, appender, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(aurawal_sync(log), 0);
	for (int i = 0; i < THREADS; i++)
		for (int k = 0; k < PER; k++) {
			read_check(log, w[i].locs[k], (uint64_t) i * PER + (uint64_t) k,
				   w[i].seqs[k]);
			all[i * PER + k] = w[i].seqs[k];
		}
	qsort(all, THREADS * PER, sizeof(all[0]), cmp_u64);
	for (int i = 1; i < THREADS * PER; i++)
		cr_assert_neq(all[i], all[i - 1], "sequence %llu given twice",
			      (unsigned long long) all[i]);
	/* the log holds exactly these records, in sequence order */
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, &seq, NULL, NULL)) == 1) {
		cr_assert_gt(seq, prev, "log order must follow sequence numbers");
		cr_assert_eq(seq, all[n], "record %llu of the log", (unsigned long long) n);
		prev = seq;
		n++;
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(n, THREADS * PER);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_log_info("16 threads: %llu appends, %llu syncs, %.1f records per sync",
		    (unsigned long long) st.appends, (unsigned long long) st.syncs,
		    st.records_per_sync);
	cr_assert_eq(st.appends, THREADS * PER);
	cr_assert_eq(aurawal_close(log), 0);
	rm_tree(dir);
	free(dir);
}

/* ---- completed callbacks are handed over under the lock ---- */

struct cb_race {
	aurawal_t *log;
	atomic_int done;
};

static void on_durable(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	struct cb_race *r = arg;

	(void) loc;
	(void) seq;
	cr_assert_eq(status, 0);
	atomic_fetch_add(&r->done, 1);
}

enum { RACE_N = 3000 };

static void *async_appender(void *arg)
{
	struct cb_race *r = arg;
	uint8_t p[64] = { 1 };
	struct iovec iov = { p, sizeof(p) };

	for (int i = 0; i < RACE_N; i++) {
		cr_assert_eq(aurawal_append_async(r->log, &iov, 1, AURAWAL_DURABLE, on_durable, r),
			     0);
		if (i % 8 == 7)
			cr_assert_geq(aurawal_poll(r->log, 0), 0);
	}
	while (atomic_load(&r->done) < RACE_N)
		cr_assert_geq(aurawal_poll(r->log, 100), 0);
	return NULL;
}

static void *sync_appender(void *arg)
{
	struct cb_race *r = arg;

	for (int i = 0; i < RACE_N; i++)
		append_i(r->log, (uint64_t) i, 64, i % 3 ? 0 : AURAWAL_DURABLE, NULL);
	return NULL;
}

/* A synchronous append runs callbacks that completed meanwhile. It used to look at the
 * list of completed callbacks after dropping the lock, while the writer thread and a
 * poller change that list under it: a data race, which ThreadSanitizer (the CI's TSan
 * build of this suite) reported here. */
Test(wal_concurrency, appends_and_pollers_hand_over_completed_callbacks_without_a_data_race)
{
	char *dir = temp_dir();
	aurawal_options_t o = wal_opts(NULL);
	static struct cb_race r;
	pthread_t a, s;

	o.flush_delay_us = 50;
	r.log = wal_open_ok(dir, &o);
	atomic_store(&r.done, 0);
	cr_assert_eq(pthread_create(&a, NULL, async_appender, &r), 0);
	cr_assert_eq(pthread_create(&s, NULL, sync_appender, &r), 0);
	pthread_join(a, NULL);
	pthread_join(s, NULL);
	cr_assert_eq(atomic_load(&r.done), RACE_N);
	cr_assert_eq(aurawal_close(r.log), 0);
	rm_tree(dir);
	free(dir);
}
