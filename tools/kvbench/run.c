/* SPDX-License-Identifier: MIT */
/*
 * run.c - running one workload: its jobs (the --threads measured threads, plus
 * readwhilewriting's writer), the start gate, the clock that ends it (all operations
 * done, --duration, or a failure) with a progress line per second on stderr, the
 * store's counters before and after, and the untimed fill that read workloads need.
 *
 * The main thread does no operations: it sleeps, moves the phase and samples the
 * clock and CPU time at the edges of the measured interval. Jobs are created before
 * and freed after each workload; the store stays open across workloads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvbench.h"

/* The start gate: threads set up, then wait here until the clock starts. Reset before
 * each workload. */
static struct start_gate gate = START_GATE_INIT;

/* Called once by every thread of a workload. */
void bench_wait_start(struct bench *b)
{
	(void) b;
	start_gate_arrive(&gate);
}

/* The buffers one job needs for workload w. 0 or -ENOMEM. */
static int job_alloc(struct bench *b, struct job *j, const struct workload *w)
{
	const struct kv_config *c = &b->cfg;
	bool batched = w->kind == WL_MULTIGET || w->kind == WL_READSEQ;
	size_t nkeys = batched ? c->batch : 1;

	j->key = malloc(nkeys * c->key_size);
	j->buf = malloc(c->value_size ? c->value_size : 1);
	if (!j->key || !j->buf)
		return -ENOMEM;
	for (size_t k = 0; k < nkeys; k++)
		key_init(b, j->key + k * c->key_size);
	if (c->async_depth && (w->kind == WL_READRANDOM || w->kind == WL_READWHILEWRITING) &&
	    !(j->slots = calloc((size_t) c->async_depth, sizeof(*j->slots))))
		return -ENOMEM;
	if (!batched)
		return 0;
	j->keyv = calloc(nkeys, sizeof(*j->keyv));
	j->klens = calloc(nkeys, sizeof(*j->klens));
	j->vlens = calloc(nkeys, sizeof(*j->vlens));
	j->vals = calloc(nkeys, sizeof(*j->vals));
	j->status = calloc(nkeys, sizeof(*j->status));
	if (!j->keyv || !j->klens || !j->vlens || !j->vals || !j->status)
		return -ENOMEM;
	for (size_t k = 0; k < nkeys; k++) {
		j->keyv[k] = j->key + k * c->key_size;
		j->klens[k] = c->key_size;
	}
	return 0;
}

static void jobs_destroy(struct bench *b)
{
	for (int i = 0; b->jobs && i < b->njobs; i++) {
		struct job *j = &b->jobs[i];

		free(j->key);
		free(j->buf);
		free(j->slots);
		free((void *) j->keyv);
		free(j->klens);
		free(j->vlens);
		free(j->vals);
		free(j->status);
	}
	free(b->jobs);
	b->jobs = NULL;
	b->njobs = 0;
}

/* Job j's share of `total` operations among t threads. Fills interleave: thread i
 * writes positions i, i + t, i + 2t ... so that, with --writes above num, no two
 * threads write the same key at once; the others take contiguous ranges. */
static void job_share(struct job *j, const struct workload *w, uint64_t total, uint64_t t)
{
	uint64_t i = (uint64_t) j->id;

	j->stride = 1;
	if (j->writer)
		return;
	if (w->kind == WL_FILLSEQ || w->kind == WL_FILLRANDOM || w->kind == WL_FILLSYNC) {
		j->first = i;
		j->stride = t;
		j->count = total > i ? (total - i + t - 1) / t : 0;
		return;
	}
	j->first = total * i / t;
	j->count = total * (i + 1) / t - j->first;
}

/* The jobs of workload w: `total` operations split among the measured threads. */
static int jobs_create(struct bench *b, const struct workload *w, uint64_t total)
{
	int t = b->cfg.threads;
	int n = t + (w->kind == WL_READWHILEWRITING);

	b->jobs = aligned_alloc(64, sizeof(struct job) * (size_t) n);
	if (!b->jobs)
		return -ENOMEM;
	memset(b->jobs, 0, sizeof(struct job) * (size_t) n);
	b->njobs = n;
	b->measured = t;
	b->total_ops = total;
	for (int i = 0; i < n; i++) {
		struct job *j = &b->jobs[i];

		j->b = b;
		j->id = i;
		j->writer = i == t;
		job_share(j, w, total, (uint64_t) t);
		j->rng = b->cfg.seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t) b->nresults << 32) ^
			 (uint64_t) i;
		j->vpos = ((size_t) i * 4099u * 97u) % b->values_len;
		hist_init(&j->hist);
		if (job_alloc(b, j, w) != 0)
			return -ENOMEM;
	}
	return 0;
}

uint64_t ops_done(struct bench *b)
{
	uint64_t n = 0;

	for (int i = 0; i < b->measured; i++)
		n += atomic_load_explicit(&b->jobs[i].done, memory_order_relaxed);
	return n;
}

/* Is the run over: a failure, or every measured thread done? */
static bool ended(struct bench *b)
{
	return atomic_load(&b->error) != 0 || atomic_load(&b->running) == 0;
}

/* Sleep until `deadline` (CLOCK_MONOTONIC ns), waking early (within 5 ms) if the run
 * ended. */
static void sleep_until(struct bench *b, uint64_t deadline)
{
	clock_sleep_until(deadline, 5000000ull, &b->error, &b->running);
}

static void progress_line(struct bench *b, uint64_t tick, uint64_t *last)
{
	uint64_t n = ops_done(b);
	double s = (double) (tick - b->t0_ns) / 1e9;

	fprintf(stderr, "kvbench: %s%s [%4.0fs] %10.0f ops/s (avg %.0f), %3.0f%% done\n",
		b->wl->name, b->untimed ? " (fill, not timed)" : "", s, (double) (n - *last),
		(double) n / s, b->total_ops ? 100.0 * (double) n / (double) b->total_ops : 0);
	*last = n;
}

/* The measured interval: until every measured thread is done, the --duration cap or
 * a failure; a progress line per second. Ends with the phase at STOP. */
static void clock_run(struct bench *b)
{
	/* As db_bench: --duration caps the random workloads, not the sequential ones
	 * (fillseq, readseq), which exist to build a state (a filled store, a warm cache). */
	bool seq = b->wl->kind == WL_FILLSEQ || b->wl->kind == WL_READSEQ;
	uint64_t deadline = b->cfg.duration > 0 && !b->untimed && !seq
				? b->t0_ns + (uint64_t) (b->cfg.duration * 1e9)
				: UINT64_MAX;
	uint64_t tick = b->t0_ns, last = 0;

	while (!ended(b)) {
		uint64_t next = tick + 1000000000ull;

		sleep_until(b, next < deadline ? next : deadline);
		if (ended(b))
			break;
		if (now_ns() >= deadline) {
			b->stop_ns = now_ns();
			break;
		}
		tick = next;
		if (!b->cfg.quiet)
			progress_line(b, tick, &last);
	}
	atomic_store(&b->phase, PHASE_STOP);
}

/* Start the threads of w, run the clock, join. */
static int run_threads(struct bench *b, const struct workload *w, uint64_t total)
{
	int started = 0, rc;
	double cpu0;

	b->wl = w;
	b->stop_ns = 0;
	atomic_store(&b->phase, PHASE_START);
	atomic_store(&b->running, b->cfg.threads);
	start_gate_reset(&gate);
	rc = jobs_create(b, w, total);
	while (rc == 0 && started < b->njobs) {
		rc = -pthread_create(&b->jobs[started].tid, NULL, job_main, &b->jobs[started]);
		if (rc)
			fprintf(stderr, "kvbench: pthread_create: %s\n", aurakv_strerror(rc));
		else
			started++;
	}
	if (rc)
		bench_fail(b, rc);
	start_gate_wait_ready(&gate, started);
	cpu0 = cpu_seconds();
	b->t0_ns = now_ns();
	if (rc == 0 && atomic_load(&b->error) == 0) {
		atomic_store(&b->phase, PHASE_MEASURE);
		start_gate_release(&gate);
		clock_run(b);
	} else {
		start_gate_release(&gate); /* the threads see STOP and leave */
	}
	for (int i = 0; i < started; i++)
		pthread_join(b->jobs[i].tid, NULL);
	b->cpu_s = cpu_seconds() - cpu0;
	return atomic_load(&b->error);
}

/* Write every key 0..num-1 (fillseq, not timed) so that reads find them. */
static int prefill(struct bench *b)
{
	const struct workload *w = workload_find("fillseq");
	int rc;

	fprintf(stderr,
		"kvbench: the store is not known to hold keys 0..%llu: writing them first "
		"(fillseq, not timed)\n",
		(unsigned long long) b->cfg.num - 1);
	b->untimed = true;
	rc = run_threads(b, w, b->cfg.num);
	b->untimed = false;
	jobs_destroy(b);
	if (rc == 0)
		b->filled = b->written = true;
	return rc;
}

/* Writes without AURAKV_SYNC: time the aurakv_sync() that makes them durable. */
static int time_sync(struct bench *b, struct result *r)
{
	uint64_t t0 = now_ns();
	int rc = aurakv_sync(b->db);

	r->sync_ms = (double) (now_ns() - t0) / 1e6;
	return rc;
}

static bool is_fill(const struct workload *w)
{
	return w->kind == WL_FILLSEQ || w->kind == WL_FILLRANDOM || w->kind == WL_FILLSYNC;
}

static uint64_t workload_ops(const struct bench *b, const struct workload *w)
{
	uint64_t reads = cfg_reads(&b->cfg);

	if (w->writes)
		return cfg_writes(&b->cfg, w);
	/* readseq reads each key at most once, as db_bench's iterator does */
	return w->kind == WL_READSEQ && reads > b->cfg.num ? b->cfg.num : reads;
}

/* Run workload w, measured, and report it. 0 or the first error. */
int workload_run(struct bench *b, const struct workload *w)
{
	struct result *r = &b->results[b->nresults];
	int rc = 0;

	if (w->needs_fill && !b->filled && (rc = prefill(b)) != 0)
		return rc;
	memset(r, 0, sizeof(*r));
	r->sync_ms = -1;
	if ((rc = aurakv_get_stats(b->db, &r->before)) != 0)
		return rc;
	rc = run_threads(b, w, workload_ops(b, w));
	if (rc == 0 && w->writes && w->kind != WL_FILLSYNC)
		rc = time_sync(b, r);
	if (rc == 0)
		rc = aurakv_get_stats(b->db, &r->after);
	if (rc == 0) {
		result_compute(b, r);
		report_result(b, r);
		b->nresults++;
		if (is_fill(w) && !r->capped && workload_ops(b, w) >= b->cfg.num)
			b->filled = b->written = true;
	}
	jobs_destroy(b);
	return rc;
}
