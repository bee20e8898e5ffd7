/* SPDX-License-Identifier: MIT */
/*
 * walbench.c - a benchmark of AuraWAL: N threads append records of one size to ONE
 * shared log for a while, durably (group commit), asynchronously, or buffered, and the
 * rate, the latency of every append and the log's own counters are reported.
 *
 * This file owns the program's flow: the fresh log directory (made here, removed at
 * the end unless --keep), the start gate, and the clock that moves the run through its
 * phases while printing progress. The main thread does no appends: it sleeps, moves
 * the phase, and samples the clock and CPU time at the edges of the measured interval.
 * Progress lines go to stderr only, so `--json -` and --kv keep stdout clean.
 *
 * Tools use only the public headers (aurawal.h, auraio.h) and tools/common (the clock,
 * the start gate and the histogram are runclock.h's and hist.h's); never wal/src.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walbench.h"
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

/* Called once by every appender thread, after its setup. */
void bench_wait_start(struct bench *b)
{
	(void) b;
	start_gate_arrive(&gate);
}

static uint64_t total_appends(struct bench *b)
{
	uint64_t n = 0;

	for (int i = 0; i < b->cfg.threads; i++)
		n += hist_total(&b->jobs[i].hist);
	return n;
}

/* Is the run over before its deadline: a failure, or every thread done (--count)? */
static bool ended_early(struct bench *b)
{
	return atomic_load(&b->error) != 0 || atomic_load(&b->running) == 0;
}

/* Sleep until `deadline` (CLOCK_MONOTONIC ns), waking early (within 10 ms) if the run
 * ended. */
static void sleep_until(struct bench *b, uint64_t deadline)
{
	clock_sleep_until(deadline, 10000000ull, &b->error, &b->running);
}

/* The measured interval, with one progress line per second on long runs. A --count run
 * without --duration has no deadline: it ends when the threads are done. */
static void measure(struct bench *b, uint64_t start)
{
	double d = b->cfg.duration;
	uint64_t end = d > 0 ? start + (uint64_t) (d * 1e9) : UINT64_MAX;
	bool progress = !b->cfg.quiet && (d > 5.0 || d == 0);
	uint64_t tick = start, last = 0;

	while (progress && !ended_early(b)) {
		uint64_t n;

		tick += 1000000000ull;
		if (tick > end)
			break;
		sleep_until(b, tick);
		if (ended_early(b))
			break;
		n = total_appends(b);
		fprintf(stderr, "walbench: [%4.0fs] %10.0f appends/s (avg %.0f)\n",
			(double) (tick - start) / 1e9, (double) (n - last),
			(double) n / ((double) (tick - start) / 1e9));
		last = n;
	}
	sleep_until(b, end);
}

/* --no-durable: the run ends when everything appended is durable. */
static void final_sync(struct bench *b)
{
	uint64_t t0 = now_ns();
	int rc = aurawal_sync(b->log);

	b->final_sync_s = (double) (now_ns() - t0) / 1e9;
	if (rc)
		bench_fail(b, rc);
}

/* Start the threads, run the clock, join. The interval ends with the final sync. */
static int run(struct bench *b)
{
	int started = 0, rc = 0;
	uint64_t t0, t1;
	double cpu0;

	atomic_store(&b->running, b->cfg.threads);
	for (; started < b->cfg.threads; started++) {
		rc = pthread_create(&b->jobs[started].tid, NULL, appender_main, &b->jobs[started]);
		if (rc) {
			fprintf(stderr, "walbench: pthread_create: %s\n", aurawal_strerror(-rc));
			bench_fail(b, -rc);
			break;
		}
	}
	start_gate_wait_ready(&gate, started);
	cpu0 = cpu_seconds();
	t0 = now_ns();
	if (started == b->cfg.threads && atomic_load(&b->error) == 0) {
		atomic_store(&b->phase, PHASE_MEASURE);
		start_gate_release(&gate);
		measure(b, t0);
	} else {
		start_gate_release(&gate); /* the threads see PHASE_START/STOP and leave */
	}
	atomic_store(&b->phase, PHASE_STOP);
	t1 = now_ns();
	for (int i = 0; i < started; i++)
		pthread_join(b->jobs[i].tid, NULL);
	/* Every thread finished on its own (--count): the run ended then, not when the
	 * clock, which sleeps in 10 ms steps, noticed. */
	if (atomic_load(&b->done_ns) && atomic_load(&b->done_ns) < t1)
		t1 = atomic_load(&b->done_ns);
	if (!b->cfg.durable && atomic_load(&b->error) == 0)
		final_sync(b);
	b->measured_s = (double) (t1 - t0) / 1e9 + b->final_sync_s;
	b->cpu_s = cpu_seconds() - cpu0;
	return rc ? -rc : 0;
}

/* A fresh log per run: --dir must not exist (it is made) or be an empty directory;
 * without --dir, a new directory in /var/tmp (not /tmp, often a tmpfs: the log is
 * meant to be measured on a disk). */
static int dir_prepare(struct bench *b)
{
	const char *dir = b->cfg.dir;
	struct dirent *e;
	DIR *d;

	if (!dir) {
		snprintf(b->dir, sizeof(b->dir), "/var/tmp/walbench.XXXXXX");
		if (!mkdtemp(b->dir)) {
			fprintf(stderr, "walbench: mkdtemp %s: %s\n", b->dir,
				aurawal_strerror(-errno));
			return -1;
		}
		b->created_dir = true;
		return 0;
	}
	snprintf(b->dir, sizeof(b->dir), "%s", dir);
	if (mkdir(dir, 0755) == 0) {
		b->created_dir = true;
		return 0;
	}
	if (errno != EEXIST || !(d = opendir(dir))) {
		fprintf(stderr, "walbench: %s: %s\n", dir, aurawal_strerror(-errno));
		return -1;
	}
	while ((e = readdir(d)) && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
		;
	closedir(d);
	if (e) {
		fprintf(stderr,
			"walbench: %s is not empty: walbench needs a fresh log (remove it, or "
			"choose another --dir)\n",
			dir);
		return -1;
	}
	return 0;
}

/* A file of a log (docs/wal_format.md, "Directory"): LOCK, RELEASED(.tmp), *.seg. */
static bool is_log_file(const char *name)
{
	size_t n = strlen(name);

	return strcmp(name, "LOCK") == 0 || strcmp(name, "RELEASED") == 0 ||
	       strcmp(name, "RELEASED.tmp") == 0 || (n > 4 && strcmp(name + n - 4, ".seg") == 0);
}

/* Remove the log's files and the directory if walbench made it. */
static void dir_remove(struct bench *b)
{
	DIR *d = opendir(b->dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (is_log_file(e->d_name))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	if (b->created_dir && rmdir(b->dir) != 0)
		fprintf(stderr, "walbench: rmdir %s: %s\n", b->dir, aurawal_strerror(-errno));
}

static int log_open(struct bench *b)
{
	aurawal_options_t o;
	int rc;

	aurawal_options_init(&o);
	if (b->cfg.segment_size)
		o.segment_size = b->cfg.segment_size;
	if (b->cfg.buffer_size)
		o.buffer_size = (size_t) b->cfg.buffer_size;
	o.sync_mode = b->cfg.sync_mode;
	rc = aurawal_open(b->dir, &o, &b->log);
	if (rc)
		fprintf(stderr, "walbench: %s: %s\n", b->dir, aurawal_strerror(rc));
	return rc;
}

/* Open the log, run, report. 0 or 1 (the exit status). */
static int bench_main(struct bench *b)
{
	int rc, err, close_rc;

	if (log_open(b) != 0)
		return 1;
	rc = jobs_create(b);
	if (rc)
		fprintf(stderr, "walbench: %s\n", aurawal_strerror(rc));
	else
		rc = run(b);
	err = atomic_load(&b->error);
	if (rc == 0 && err != 0)
		fprintf(stderr, "walbench: run failed: %s\n", aurawal_strerror(err));
	if (rc == 0 && err == 0 && (rc = aurawal_get_stats(b->log, &b->stats)) == 0)
		rc = report_print(b);
	close_rc = aurawal_close(b->log);
	if (close_rc)
		fprintf(stderr, "walbench: closing the log: %s\n", aurawal_strerror(close_rc));
	jobs_destroy(b);
	return rc != 0 || err != 0 || close_rc != 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	int rc;

	tool_hold_std_fds(1); /* else a closed stdout is one of the log's fds */
	rc = options_parse(&b.cfg, argc, argv);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (b.cfg.json && tool_check_output("walbench", b.cfg.json, aurawal_strerror))
		return 2;
	if (dir_prepare(&b) != 0)
		return 1;
	rc = bench_main(&b);
	if (!b.cfg.keep)
		dir_remove(&b);
	else if (!b.cfg.quiet)
		fprintf(stderr, "walbench: the log is kept in %s\n", b.dir);
	return rc;
}
