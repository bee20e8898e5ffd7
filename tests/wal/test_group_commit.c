/* SPDX-License-Identifier: MIT */
/*
 * Group commit with many appenders: a finished batch wakes only the appenders whose
 * records it made durable (each durable append sleeps once, not once per batch), and
 * a sync carries every appender waiting for one instead of every other one.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "wal_internal.h"
#include "wal_internal_test.h"
#include "wal_test.h"
#include "wal_wait.h"

WAL_DIR_SUITE(wal_group_commit);

struct appender {
	aurawal_t *log;
	int id, count;
	bool sync_at_end;
	long sleeps; /* voluntary context switches of the thread while appending */
};

/* All appenders start together: a slow thread start (TSan) must not make the first
 * batches small by accident. */
static pthread_barrier_t start;

static void *append_durably(void *arg)
{
	struct appender *a = arg;
	struct rusage r0, r1;

	pthread_barrier_wait(&start);
	getrusage(RUSAGE_THREAD, &r0);
	for (int i = 0; i < a->count; i++)
		append_i(a->log, (uint64_t) (a->id * a->count + i), 128, AURAWAL_DURABLE, NULL);
	if (a->sync_at_end) /* what is still gathering goes now */
		cr_assert_eq(aurawal_sync(a->log), 0);
	getrusage(RUSAGE_THREAD, &r1);
	a->sleeps = r1.ru_nvcsw - r0.ru_nvcsw;
	return NULL;
}

static void run_appenders(aurawal_t *log, struct appender *a, int n, int count, bool sync)
{
	pthread_t t[64];

	cr_assert_eq(pthread_barrier_init(&start, NULL, (unsigned) n), 0);
	for (int i = 0; i < n; i++) {
		a[i] = (struct appender){ log, i, count, sync, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, append_durably, &a[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
}

Test(wal_group_commit, a_durable_appender_sleeps_once_per_append_not_once_per_batch)
{
	enum { THREADS = 32, PER = 100 };
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	static struct appender a[THREADS];
	long sleeps = 0;

	run_appenders(log, a, THREADS, PER, false);
	for (int i = 0; i < THREADS; i++)
		sleeps += a[i].sleeps;
	/* Waking every waiting appender at each finished batch made each append sleep
	 * about 2.5 times (measured: woken for the batch before its own, then back to
	 * sleep, then the lock). Now a batch wakes just its own appenders. */
	cr_log_info("%.2f sleeps per durable append", (double) sleeps / (THREADS * PER));
	cr_assert_lt((double) sleeps / (THREADS * PER), 2.0,
		     "%.2f sleeps per durable append: appenders are woken for batches "
		     "that do not hold their records",
		     (double) sleeps / (THREADS * PER));
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_group_commit, each_sync_carries_every_appender_that_waits_for_it)
{
	enum { THREADS = 8, PER = 200 };
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	static struct appender a[THREADS];
	aurawal_stats_t st;

	/* A gathering window far longer than any scheduling delay makes the policy
	 * deterministic: once a batch of N completes, the next one waits for its N
	 * appenders to come back. (The default window is a quarter of a sync.) */
	pthread_mutex_lock(&log->mu);
	log->gather_fixed_ns = 200ull * 1000 * 1000;
	pthread_mutex_unlock(&log->mu);
	run_appenders(log, a, THREADS, PER, true);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_log_info("%.2f records per sync", st.records_per_sync);
	/* Taking the batch at its first durable record made syncs alternate between two
	 * halves of the appenders (about 4 records each here). */
	cr_assert_geq(st.records_per_sync, THREADS - 1.0, "%.2f records per sync with %d appenders",
		      st.records_per_sync, THREADS);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_group_commit, making_a_sequence_durable_releases_exactly_the_waiters_at_or_below_it)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	struct wal_waiter w[10], *taken;
	int n = 0;

	pthread_mutex_lock(&log->mu);
	for (int i = 0; i < 10; i++)
		wal_waiter_add(log, &w[i], 1000 + (uint64_t) i);
	taken = wal_waiters_take(log, 1004, -5);
	pthread_mutex_unlock(&log->mu);
	for (struct wal_waiter *x = taken; x; x = x->next, n++) {
		cr_assert_eq(x, &w[n]);
		cr_assert_eq(x->status, -5);
	}
	cr_assert_eq(n, 5);
	wal_waiters_wake(taken);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(atomic_load(&w[i].done), i < 5, "waiter %d", i);
	pthread_mutex_lock(&log->mu);
	cr_assert_eq(log->waiters, &w[5], "the others stay queued, in order");
	taken = wal_waiters_take(log, UINT64_MAX, 0);
	pthread_mutex_unlock(&log->mu);
	wal_waiters_wake(taken);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(wal_waiter_sleep(log, &w[i]), i < 5 ? -5 : 0);
	cr_assert_eq(aurawal_close(log), 0);
}

/* What the writer's I/O state was while it woke waiters with a seal block still to
 * write (counted by waking_check, in the writer thread). */
static _Atomic int seal_windows, seal_windows_open;

static void waking_check(struct aurawal *log)
{
	pthread_mutex_lock(&log->mu);
	for (struct wal_segment *s = log->segs; s; s = s->next) {
		if (!s->summary_pending)
			continue;
		atomic_fetch_add(&seal_windows, 1);
		if (!log->io_busy) /* an appender could start a write of its own now */
			atomic_fetch_add(&seal_windows_open, 1);
	}
	pthread_mutex_unlock(&log->mu);
}

static void *sync_thread(void *arg)
{
	return (void *) (intptr_t) aurawal_sync(arg);
}

/* mu: the writer stands aside (as while an appender writes its own batch), or not. */
static void writer_aside(aurawal_t *log, bool aside)
{
	pthread_mutex_lock(&log->mu);
	cr_assert_neq(log->io_busy, aside);
	log->io_busy = aside;
	if (!aside)
		pthread_cond_signal(&log->cv_writer);
	pthread_mutex_unlock(&log->mu);
}

/*
 * The writer makes a segment's last batch durable, then wakes the waiters it covers
 * and writes the segment's seal block. While it wakes them (without the lock) it still
 * owns the log's I/O: a lone durable appender must not start a write of its own then,
 * or the writer's next write could be in flight at the same time as that one (their
 * shared tail block written twice at once, in either order).
 */
Test(wal_group_commit, the_writer_keeps_its_io_while_it_wakes_waiters_before_a_seal_block)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	pthread_t t;
	void *rc;
	uint64_t i = 0;

	o.flush_delay_us = 0; /* buffered records stay buffered until asked */
	log = wal_open_ok(dir, &o);
	while (wal_room_left(log) >= 8192)
		append_i(log, i++, 3000, 0, NULL);
	cr_assert_eq(aurawal_sync(log), 0);
	wal_preparer_idle(log);
	pthread_mutex_lock(&log->mu);
	log->test_waking = waking_check;
	pthread_mutex_unlock(&log->mu);

	writer_aside(log, true);
	append_i(log, i++, 100, 0, NULL); /* the segment's last record */
	cr_assert_eq(pthread_create(&t, NULL, sync_thread, log), 0);
	for (bool waiting = false; !waiting; sched_yield()) { /* the sync waits for it */
		pthread_mutex_lock(&log->mu);
		waiting = log->waiters != NULL;
		pthread_mutex_unlock(&log->mu);
	}
	append_i(log, i++, (size_t) wal_room_left(log), 0, NULL); /* rolls over */
	writer_aside(log, false);
	pthread_join(t, &rc);
	cr_assert_eq((intptr_t) rc, 0);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_gt(atomic_load(&seal_windows), 0, "the writer woke the sync's waiter first");
	cr_assert_eq(atomic_load(&seal_windows_open), 0,
		     "the writer let go of the log's I/O with a seal block still to write");
}

/* The sync latency buckets: every value, up to UINT64_MAX, falls in a bucket whose upper
 * bound (what the stats report) is at or above it and within 1/16 of it. */
Test(wal_group_commit, a_sync_latency_is_reported_within_a_16th_above_its_value)
{
	for (unsigned bit = 0; bit < 64; bit++) {
		uint64_t base = 1ull << bit;
		uint64_t vals[4] = { base, base + (base >> 1), base | (base - 1), base + 1 };

		for (int k = 0; k < 4; k++) {
			uint64_t v = vals[k];
			unsigned b = wal_lat_bucket(v);
			uint64_t hi = wal_lat_bucket_max(b);

			cr_assert_lt(b, WAL_LAT_BUCKETS, "value %llu", (unsigned long long) v);
			cr_assert_geq(hi, v, "value %llu reported as %llu", (unsigned long long) v,
				      (unsigned long long) hi);
			cr_assert_leq(hi - v, v / 16, "value %llu reported as %llu",
				      (unsigned long long) v, (unsigned long long) hi);
		}
	}
}

/* Quantiles come from those buckets but never exceed the exact maximum. */
Test(wal_group_commit, the_sync_quantiles_are_ordered_and_never_above_the_maximum)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_stats_t st;

	for (int i = 0; i < 5; i++)
		append_i(log, (uint64_t) i, 128, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.syncs, 5);
	cr_assert_gt(st.sync_p50_us, 0.0);
	cr_assert_leq(st.sync_p50_us, st.sync_p99_us);
	cr_assert_leq(st.sync_p99_us, st.sync_max_us, "p99 %.0f us, max %.0f us", st.sync_p99_us,
		      st.sync_max_us);
	cr_assert_eq(aurawal_close(log), 0);
}
