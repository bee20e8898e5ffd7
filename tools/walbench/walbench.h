/* SPDX-License-Identifier: MIT */
/*
 * walbench.h - the types shared by walbench's files: the parsed configuration, the run
 * state every thread reads, and one job (one appender thread) with its async slots.
 *
 * A job's counters and histogram are updated by whichever thread runs an asynchronous
 * append's callback (any thread that polls the log), so they are atomics. A slot is one
 * asynchronous append that is always in flight or finished: only the thread running its
 * callback touches it.
 */
#ifndef WALBENCH_H
#define WALBENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "aurawal.h"
#include "hist.h"
#include "runclock.h"

struct bench_config {
	const char *dir;	       /* --dir: where the log is created, NULL = a temp dir */
	int threads;		       /* --threads: appending threads, one shared log */
	uint64_t record_size;	       /* --record-size: payload bytes per record */
	bool durable;		       /* --durable (default) / --no-durable */
	int async_depth;	       /* --async-depth: appends in flight per thread, 0 = sync */
	double duration;	       /* --duration, seconds; 0 = until --count is reached */
	uint64_t count;		       /* --count: appends in total, 0 = no limit */
	uint64_t segment_size;	       /* --segment-size, 0 = the library's default */
	uint64_t buffer_size;	       /* --buffer-size, 0 = the library's default */
	aurawal_sync_mode_t sync_mode; /* --sync-mode */
	bool recycle;		       /* --recycle: release segments behind the active one */
	const char *json;	       /* --json FILE, "-" = stdout, NULL = none */
	bool kv;		       /* --kv: one key=value summary line on stdout */
	bool quiet;		       /* --quiet: no progress lines */
	bool keep;		       /* --keep: leave the log in --dir */
};

/* Run phases, in order. Appends are counted only in MEASURE; none is started in STOP. */
enum bench_phase { PHASE_START = 0, PHASE_MEASURE = 1, PHASE_STOP = 2 };

struct job;

struct slot {
	struct job *job;
	uint64_t submit_ns;
};

struct job {
	struct bench *b;
	int id;
	struct lat_hist hist; /* appends completed in PHASE_MEASURE */
	void *payload;	      /* cfg.record_size bytes, copied by the log on every append */
	struct slot *slots;   /* cfg.async_depth entries (async mode) */
	/* Async appends of this job in flight. Decremented by the callback only after it
	 * resubmitted (or retired) its slot, so the owner, which leaves when it sees 0 in
	 * PHASE_STOP, never leaves with a resubmission racing. */
	_Atomic int in_flight;
	pthread_t tid;
} __attribute__((aligned(64)));

struct bench {
	struct bench_config cfg;
	aurawal_t *log;
	char dir[256];	  /* the log's directory: --dir, or a fresh temp dir */
	bool created_dir; /* walbench made it: remove it too at the end */
	struct job *jobs;
	_Atomic int phase;
	_Atomic int error;	   /* first failure (negative code), 0 = none */
	_Atomic int running;	   /* appender threads not finished yet */
	_Atomic uint64_t started;  /* appends started by all threads, for --count */
	_Atomic uint64_t done_ns;  /* when the last thread finished (--count runs) */
	_Atomic uint64_t released; /* --recycle: segments below this were released */
	double measured_s;	   /* the measured interval, final sync included */
	double final_sync_s;	   /* --no-durable: the aurawal_sync() at the end */
	double cpu_s;		   /* user+sys CPU of the process over the interval */
	aurawal_stats_t stats;	   /* the log's counters at the end of the run */
};

/* options.c */
int options_parse(struct bench_config *cfg, int argc, char **argv);

/* walbench.c: shared helpers (now_ns() is runclock.h's) */
void bench_fail(struct bench *b, int err);
static inline int bench_phase(struct bench *b)
{
	return atomic_load_explicit(&b->phase, memory_order_relaxed);
}
void bench_wait_start(struct bench *b);

/* run.c: the appender threads' loops. */
void *appender_main(void *arg);
int jobs_create(struct bench *b);
void jobs_destroy(struct bench *b);

/* report.c */
int report_print(struct bench *b);

#endif
