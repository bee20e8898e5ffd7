/* SPDX-License-Identifier: MIT */
/*
 * run.c - the appender threads: every thread appends to the one shared log until the
 * phase says STOP (or the run's --count, shared by all threads, is used up), timing
 * every append.
 *
 * Sync mode: clock_gettime around each aurawal_append (durable or buffered).
 * Async mode: each thread keeps --async-depth appends in flight. The callback records
 * submit-to-callback latency and resubmits its slot. Callbacks run in whichever thread
 * polls (or appends to) the log, so a job's counters are atomics and a slot is touched
 * only by the thread running its callback.
 *
 * --recycle releases segments behind the active one, as a consumer of the log would:
 * aurawal_release_before() waits until their last batches are written (not synced: a
 * released segment is not needed), so a non-durable run never syncs for it.
 *
 * Must never: let a thread leave while a callback may still resubmit one of its slots
 * (see job.in_flight in walbench.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "walbench.h"

/* With several threads another one may run our last callbacks while we wait in poll:
 * a bounded wait lets us notice that nothing of ours is in flight any more. */
#define MULTI_THREAD_POLL_MS 10

/* May this job start one more append (--count, shared by all threads)? */
static bool take_ticket(struct job *j)
{
	uint64_t count = j->b->cfg.count;

	if (bench_phase(j->b) != PHASE_MEASURE)
		return false;
	return count == 0 ||
	       atomic_fetch_add_explicit(&j->b->started, 1, memory_order_relaxed) < count;
}

/* An append that started at t0 finished now: count it if the clock is running. */
static void record(struct job *j, uint64_t t0)
{
	uint64_t t = now_ns();

	if (bench_phase(j->b) == PHASE_MEASURE)
		hist_record(&j->hist, t - t0);
}

/* --recycle: release the segments before the one of the record at loc. One thread
 * does it per new segment. */
static void maybe_recycle(struct bench *b, aurawal_loc_t loc)
{
	uint64_t below = atomic_load_explicit(&b->released, memory_order_relaxed);
	int rc;

	if (!b->cfg.recycle || loc.segment <= below ||
	    !atomic_compare_exchange_strong(&b->released, &below, loc.segment))
		return;
	rc = aurawal_release_before(b->log, loc);
	if (rc < 0)
		bench_fail(b, rc);
}

static void run_sync(struct job *j)
{
	struct bench *b = j->b;
	struct iovec iov = { j->payload, (size_t) b->cfg.record_size };
	unsigned flags = b->cfg.durable ? AURAWAL_DURABLE : 0;

	while (take_ticket(j)) {
		aurawal_loc_t loc;
		uint64_t t0 = now_ns();
		int rc = aurawal_append(b->log, &iov, 1, flags, &loc, NULL);

		if (rc) {
			bench_fail(b, rc);
			return;
		}
		record(j, t0);
		maybe_recycle(b, loc);
	}
}

static void on_appended(void *arg, int status, aurawal_loc_t loc, uint64_t seq);

/* Submit slot s. 0 or the append's error (the callback will not run then). */
static int slot_submit(struct slot *s)
{
	struct job *j = s->job;
	struct bench *b = j->b;
	struct iovec iov = { j->payload, (size_t) b->cfg.record_size };
	int rc;

	/* Count it before it can complete: another thread may run the callback before
	 * the submit call even returns. */
	atomic_fetch_add_explicit(&j->in_flight, 1, memory_order_relaxed);
	s->submit_ns = now_ns();
	rc = aurawal_append_async(b->log, &iov, 1, b->cfg.durable ? AURAWAL_DURABLE : 0,
				  on_appended, s);
	if (rc)
		atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_relaxed);
	return rc;
}

static void on_appended(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	struct slot *s = arg;
	struct job *j = s->job;
	struct bench *b = j->b;
	int rc;

	(void) seq;
	if (status) {
		bench_fail(b, status);
	} else {
		record(j, s->submit_ns);
		maybe_recycle(b, loc);
	}
	if (take_ticket(j) && (rc = slot_submit(s)) != 0)
		bench_fail(b, rc);
	/* Release: pairs with the owner's acquire load; the slot is done with only after
	 * this (it may have been resubmitted above, and counted again first). */
	atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_release);
}

static void run_async(struct job *j)
{
	struct bench *b = j->b;
	int timeout = b->cfg.threads > 1 ? MULTI_THREAD_POLL_MS : -1;
	int rc;

	for (int i = 0; i < b->cfg.async_depth && take_ticket(j); i++) {
		j->slots[i].job = j;
		rc = slot_submit(&j->slots[i]);
		if (rc) {
			bench_fail(b, rc);
			break;
		}
	}
	/* Drive completions until nothing of ours is in flight; callbacks stop resubmitting
	 * once the phase is STOP. */
	while (atomic_load_explicit(&j->in_flight, memory_order_acquire) > 0) {
		rc = aurawal_poll(b->log, timeout);
		if (rc < 0) {
			bench_fail(b, rc);
			break;
		}
	}
}

void *appender_main(void *arg)
{
	struct job *j = arg;
	struct bench *b = j->b;

	bench_wait_start(b);
	if (bench_phase(b) == PHASE_MEASURE) {
		if (b->cfg.async_depth > 0)
			run_async(j);
		else
			run_sync(j);
	}
	/* The last one out stamps the end of a --count run (the clock may be asleep). */
	if (atomic_fetch_sub(&b->running, 1) == 1)
		atomic_store(&b->done_ns, now_ns());
	return NULL;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Payload bytes that are neither zeros nor the same in every thread. */
static void fill(void *p, uint64_t len, uint64_t seed)
{
	uint8_t *q = p;

	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = splitmix64(&seed);

		memcpy(q + i, &v, len - i < 8 ? len - i : 8);
	}
}

int jobs_create(struct bench *b)
{
	int n = b->cfg.threads;

	b->jobs = aligned_alloc(64, sizeof(struct job) * (size_t) n);
	if (!b->jobs)
		return -ENOMEM;
	memset(b->jobs, 0, sizeof(struct job) * (size_t) n);
	atomic_init(&b->released, 1); /* segment 1 has nothing before it */
	for (int i = 0; i < n; i++) {
		struct job *j = &b->jobs[i];

		j->b = b;
		j->id = i;
		hist_init(&j->hist);
		j->payload = malloc(b->cfg.record_size ? b->cfg.record_size : 1);
		if (b->cfg.async_depth)
			j->slots = calloc((size_t) b->cfg.async_depth, sizeof(*j->slots));
		if (!j->payload || (b->cfg.async_depth && !j->slots))
			return -ENOMEM;
		fill(j->payload, b->cfg.record_size, (uint64_t) i + 1);
	}
	return 0;
}

void jobs_destroy(struct bench *b)
{
	if (!b->jobs)
		return;
	for (int i = 0; i < b->cfg.threads; i++) {
		free(b->jobs[i].payload);
		free(b->jobs[i].slots);
	}
	free(b->jobs);
	b->jobs = NULL;
}
