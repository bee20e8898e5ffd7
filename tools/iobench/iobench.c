/* SPDX-License-Identifier: MIT */
/*
 * iobench.c - a fio-like I/O benchmark for AuraIO, with a hand-written liburing loop as
 * the baseline. This file owns the program's flow and what both modes share: the jobs
 * and their slots, offsets and random numbers, the start gate, and the clock that moves
 * the run through its phases (ramp, measure, stop) while printing progress: a line per
 * second unless --quiet, in the ramp, the measured interval and --ios runs alike.
 *
 * The main thread does no I/O: it only sleeps, moves the phase, and samples the clock,
 * CPU time (getrusage) and engine statistics at the edges of the measured interval.
 * Progress lines go to stderr only, so `--json -` keeps stdout clean.
 *
 * Tools use only the public headers (auraio.h, liburing.h) and tools/common (the clock,
 * the start gate and the histogram are runclock.h's and hist.h's); never io/src.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iobench.h"
#include "toolio.h"

/* The start gate: threads set up, then wait here until the clock starts. */
static struct start_gate gate = START_GATE_INIT;

/* Record the first failure and stop the run. Any thread, callbacks included. */
void bench_fail(struct bench *b, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&b->error, &zero, err);
	atomic_store(&b->phase, PHASE_STOP);
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void slot_seed(struct slot *s, uint64_t seed, int job, int index)
{
	s->rng = splitmix64(seed ^ splitmix64(((uint64_t) job << 32) | (uint32_t) index));
	if (s->rng == 0)
		s->rng = 1;
}

/* xorshift64*: fast, and good enough to spread offsets over the file. */
static uint64_t slot_random(struct slot *s)
{
	uint64_t x = s->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

uint64_t slot_next_offset(struct slot *s)
{
	struct job *j = s->job;
	uint64_t nblocks = j->b->nblocks, blk;

	if (j->b->cfg.random) {
		/* Multiply-shift maps 64 random bits onto [0, nblocks) without a division. */
		blk = (uint64_t) (((unsigned __int128) slot_random(s) * nblocks) >> 64);
	} else {
		/* Sequential: the job's cursor, shared by its slots (any thread). */
		blk = atomic_fetch_add_explicit(&j->seq_next, 1, memory_order_relaxed) % nblocks;
	}
	return blk * j->b->cfg.bs;
}

/* Writes carry data that is neither zeros nor the same in every block. */
void slot_fill(struct slot *s, uint64_t len)
{
	uint64_t *p = s->buf;

	for (uint64_t i = 0; i < len / 8; i++)
		p[i] = slot_random(s);
}

/* Called once by every worker thread, after its setup (even a failed one). */
void bench_wait_start(struct bench *b)
{
	(void) b;
	start_gate_arrive(&gate);
}

static uint64_t total_ios(struct bench *b)
{
	uint64_t n = 0;

	for (int i = 0; i < b->cfg.threads; i++)
		n += hist_total(&b->jobs[i].hist);
	return n;
}

/* Sleep until `deadline` (CLOCK_MONOTONIC ns), waking early (within 100 ms) if the run
 * failed. */
static void sleep_until(struct bench *b, uint64_t deadline)
{
	clock_sleep_until(deadline, 100000000ull, &b->error, NULL);
}

static void progress_line(struct bench *b, uint64_t t, uint64_t start, uint64_t *last_ios)
{
	uint64_t ios = total_ios(b);
	double s = (double) (t - start) / 1e9;

	fprintf(stderr, "iobench: [%4.0fs] %8.0f IOPS (avg %.0f)", s, (double) (ios - *last_ios),
		(double) ios / s);
	if (b->cfg.ios)
		fprintf(stderr, ", %3.0f%% of --ios done",
			100.0 * (double) ios / (double) b->cfg.ios);
	fputc('\n', stderr);
	*last_ios = ios;
}

/* The measured interval: a trace sample every TRACE_TICK_MS when tracing, and a
 * progress line per second unless --quiet (a run under a second prints none). */
static void measure(struct bench *b, uint64_t start)
{
	uint64_t end = start + (uint64_t) (b->cfg.runtime * 1e9);
	bool progress = !b->cfg.quiet;
	uint64_t tick_ns = b->trace ? TRACE_TICK_MS * 1000000ull : 1000000000ull;
	uint64_t tick = start, last_ios = 0, next_line = start + 1000000000ull;

	while ((progress || b->trace) && atomic_load(&b->error) == 0) {
		tick += tick_ns;
		if (tick > end)
			break;
		sleep_until(b, tick);
		trace_sample(b, (double) (tick - start) / 1e9);
		if (!progress || tick < next_line)
			continue;
		progress_line(b, tick, start, &last_ios);
		next_line += 1000000000ull;
	}
	sleep_until(b, end);
}

/* --ramp: the warm-up, with a line per second of it unless --quiet (nothing is counted
 * in it: the line says only that it goes on). */
static void ramp(struct bench *b, uint64_t start)
{
	uint64_t end = start + (uint64_t) (b->cfg.ramp * 1e9);

	for (uint64_t tick = start + 1000000000ull; !b->cfg.quiet && tick < end;
	     tick += 1000000000ull) {
		sleep_until(b, tick);
		if (atomic_load(&b->error) != 0)
			return;
		fprintf(stderr, "iobench: ramp [%4.0fs of %gs], not measured\n",
			(double) (tick - start) / 1e9, b->cfg.ramp);
	}
	sleep_until(b, end);
}

static void join_threads(struct bench *b, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(b->jobs[i].tid, NULL);
}

/* --ios: the measured interval ends when the threads are done: join them, with a
 * progress line per second meanwhile unless --quiet (then a plain join: the main thread
 * adds no work to an instruction count). */
static void join_measured(struct bench *b, uint64_t start)
{
	uint64_t last_ios = 0;
	struct timespec tick;
	int n = b->cfg.threads, i = 0;

	if (b->cfg.quiet) {
		join_threads(b, n);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &tick); /* pthread_timedjoin_np's clock */
	while (i < n) {
		int rc = 0;

		tick.tv_sec++;
		while (i < n && (rc = pthread_timedjoin_np(b->jobs[i].tid, NULL, &tick)) == 0)
			i++;
		if (rc != 0 && rc != ETIMEDOUT)
			break; /* cannot happen; a plain join below still waits */
		if (i < n)
			progress_line(b, now_ns(), start, &last_ios);
	}
	for (; i < n; i++)
		pthread_join(b->jobs[i].tid, NULL);
}

/*
 * Move the run through its phases. The hook samples mode-specific stats at the edges.
 * With --ios the measured interval ends when every thread has done its share, so the
 * threads are joined here (returns true); the main thread sleeps in the join meanwhile,
 * adding no work to an instruction count.
 */
static bool run_clock(struct bench *b, void (*hook)(struct bench *, int))
{
	uint64_t t0, t1;
	double cpu0;

	atomic_store(&b->phase, b->cfg.ramp > 0 ? PHASE_RAMP : PHASE_MEASURE);
	t0 = now_ns();
	start_gate_release(&gate);
	if (b->cfg.ramp > 0) {
		ramp(b, t0);
		if (atomic_load(&b->error) == 0)
			atomic_store(&b->phase, PHASE_MEASURE);
		t0 = now_ns();
	}
	cpu0 = cpu_seconds();
	if (hook)
		hook(b, PHASE_MEASURE);
	if (b->cfg.ios)
		join_measured(b, t0);
	else
		measure(b, t0);
	atomic_store(&b->phase, PHASE_STOP);
	t1 = now_ns();
	b->cpu_s = cpu_seconds() - cpu0;
	b->measured_s = (double) (t1 - t0) / 1e9;
	if (hook)
		hook(b, PHASE_STOP);
	return b->cfg.ios != 0;
}

int bench_run_threads(struct bench *b, void *(*fn)(void *), void (*hook)(struct bench *, int))
{
	int started = 0, rc = 0;
	bool joined = false;

	for (; started < b->cfg.threads; started++) {
		rc = pthread_create(&b->jobs[started].tid, NULL, fn, &b->jobs[started]);
		if (rc) {
			fprintf(stderr, "iobench: pthread_create: %s\n", auraio_strerror(rc));
			bench_fail(b, -rc);
			break;
		}
	}
	start_gate_wait_ready(&gate, started);
	if (started == b->cfg.threads && atomic_load(&b->error) == 0)
		joined = run_clock(b, hook);
	else
		start_gate_release(&gate); /* the threads see PHASE_STOP and leave */
	if (!joined)
		join_threads(b, started);
	return rc ? -rc : 0;
}

int jobs_create(struct bench *b)
{
	int n = b->cfg.threads, qd = b->cfg.qd;

	b->jobs = aligned_alloc(64, sizeof(struct job) * (size_t) n);
	if (!b->jobs)
		return -ENOMEM;
	memset(b->jobs, 0, sizeof(struct job) * (size_t) n);
	for (int i = 0; i < n; i++) {
		struct job *j = &b->jobs[i];

		j->b = b;
		j->id = i;
		hist_init(&j->hist);
		pthread_mutex_init(&j->idle_lock, NULL);
		j->slots = calloc((size_t) qd, sizeof(*j->slots));
		j->idle = calloc((size_t) qd, sizeof(*j->idle));
		j->ops = calloc((size_t) qd, sizeof(*j->ops));
		if (!j->slots || !j->idle || !j->ops)
			return -ENOMEM;
		for (int k = 0; k < qd; k++) {
			j->slots[k].job = j;
			slot_seed(&j->slots[k], b->cfg.seed, i, k);
			j->idle[k] = qd - 1 - k; /* popped from the end: slot 0 goes first */
		}
		j->nidle = qd;
		atomic_init(&j->nidle_hint, qd);
		/* --ios: an equal share each, the remainder to the first jobs */
		atomic_init(&j->ios_left, b->cfg.ios / (uint64_t) n +
					      ((uint64_t) i < b->cfg.ios % (uint64_t) n ? 1 : 0));
	}
	return 0;
}

void jobs_destroy(struct bench *b)
{
	if (!b->jobs)
		return;
	for (int i = 0; i < b->cfg.threads; i++) {
		free(b->jobs[i].slots);
		free(b->jobs[i].idle);
		free(b->jobs[i].ops);
		pthread_mutex_destroy(&b->jobs[i].idle_lock);
	}
	free(b->jobs);
	b->jobs = NULL;
}

int main(int argc, char **argv)
{
	static struct bench b;
	int rc, err;

	tool_hold_std_fds(1); /* else a closed stdout is the data file's fd */
	rc = options_parse(&b.cfg, argc, argv);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (b.cfg.json && tool_check_output("iobench", b.cfg.json, auraio_strerror))
		return 2;
	/* The trace's path too: before the file is laid out, not found out after it. */
	if (b.cfg.trace && tool_check_output("iobench", b.cfg.trace, auraio_strerror))
		return 2;
	b.fd = -1;
	if (layout_open(&b) != 0) {
		if (b.fd >= 0)
			close(b.fd);
		return 1;
	}
	rc = trace_begin(&b);
	if (rc == 0)
		rc = b.cfg.engine == ENGINE_AURAIO ? run_auraio(&b) : run_uring(&b);
	trace_end(&b);
	err = atomic_load(&b.error);
	if (rc == 0 && err != 0)
		fprintf(stderr, "iobench: run failed: %s\n", auraio_strerror(err));
	if (rc == 0 && err == 0)
		rc = report_print(&b);
	if (rc == 0 && err == 0)
		rc = tool_flush_stdout("iobench", auraio_strerror);
	trace_free(&b);
	jobs_destroy(&b);
	close(b.fd);
	return rc != 0 || err != 0 ? 1 : 0;
}
