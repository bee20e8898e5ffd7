/* SPDX-License-Identifier: MIT */
/*
 * iobench.h - the types shared by iobench's files: the parsed configuration, the run
 * state every thread reads, and one job (one submitting thread) with its slots.
 *
 * A slot is one I/O that is always either in flight or parked: it owns a buffer and a
 * random generator, and only the thread handling its completion touches it, so its
 * fields need no atomics. A job's counters and histogram, on the other hand, are updated
 * from whichever thread runs the completion callback (engine mode), so they are atomics.
 */
#ifndef IOBENCH_H
#define IOBENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "auraio.h"
#include "hist.h"
#include "runclock.h"

enum bench_engine { ENGINE_AURAIO = 0, ENGINE_LIBURING = 1 };

struct bench_config {
	bool is_write;	    /* --rw: write or randwrite */
	bool random;	    /* --rw: randread or randwrite */
	uint64_t bs;	    /* --bs, bytes */
	int qd;		    /* --qd: I/Os per thread (cap per thread with --adaptive) */
	bool adaptive;	    /* --adaptive: the engine's in-flight limit decides */
	bool direct;	    /* --direct: O_DIRECT */
	bool reg_files;	    /* --registered-files */
	bool reg_bufs;	    /* --registered-buffers */
	bool sqpoll;	    /* --sqpoll */
	bool defer_taskrun; /* --defer-taskrun (liburing engine only) */
	int threads;	    /* --threads */
	int rings;	    /* --rings: engine ring_count, 0 = engine default */
	double runtime;	    /* --runtime, seconds */
	uint64_t ios;	    /* --ios: run exactly this many I/Os instead (0 = use --runtime) */
	double ramp;	    /* --ramp, seconds (excluded from stats) */
	const char *file;   /* --file */
	uint64_t size;	    /* --size, bytes; 0 = use the file as it is */
	const char *json;   /* --json FILE, "-" = stdout, NULL = none */
	const char *trace;  /* --trace FILE: time series as CSV, "-" = stdout */
	double max_p99_ms;  /* --max-p99-ms: the engine's P99 guard, 0 = its default */
	enum bench_engine engine;
	uint64_t seed;
	bool quiet;	    /* --quiet: no progress lines */
	bool single_thread; /* --single-thread: the engine's lock-free single-thread mode */
	bool batch;	    /* --batch: resubmit completions with one auraio_submit_batch */
};

/* Run phases, in order. Completions are recorded only in MEASURE; nothing is
 * submitted any more in STOP. */
enum bench_phase { PHASE_START = 0, PHASE_RAMP = 1, PHASE_MEASURE = 2, PHASE_STOP = 3 };

struct job;

struct slot {
	struct job *job;
	void *buf;
	int buf_index;	  /* index among registered buffers (engine: global, uring: per job) */
	uint64_t rng;	  /* xorshift64* state, never 0 */
	uint64_t prep_ns; /* liburing mode: when the SQE was prepared */
	struct slot *next_ready; /* --batch: the job's ready stack */
};

struct job {
	struct bench *b;
	int id;
	struct slot *slots; /* cfg.qd entries */
	struct lat_hist hist;
	/* I/Os of this job submitted and not yet completed. A callback that resubmits its
	 * slot hands the slot's count on to the new I/O; one that does not decrements it
	 * only after it parked the slot, so that the owner, which exits when it sees 0 in
	 * PHASE_STOP, can never leave with a resubmission racing. */
	_Atomic int in_flight;
	_Atomic uint64_t seq_next; /* sequential modes: the next offset to use */
	/* --ios: I/Os this job may still submit. Taken by whoever submits (the owner, or a
	 * callback in any thread), given back when a submit is refused. */
	_Atomic uint64_t ios_left;
	/* Slots refused with EAGAIN, waiting for the owner to resubmit them. */
	pthread_mutex_t idle_lock;
	int *idle;
	int nidle;
	_Atomic int nidle_hint; /* nidle, readable without the lock (a hint) */
	/* --batch: completed slots waiting for the owner to resubmit them (pushed by the
	 * callbacks, taken whole by the owner: no ABA), and the owner's op array. */
	_Atomic(struct slot *) ready;
	auraio_op_t *ops;
	/* liburing mode (owner thread only): kernel entries and SQEs while measuring */
	uint64_t enters;
	uint64_t sqes;
	pthread_t tid;
} __attribute__((aligned(64)));

struct bench {
	struct bench_config cfg;
	int fd;
	uint64_t nblocks; /* I/O region = nblocks * bs bytes from offset 0 */
	struct job *jobs;
	_Atomic int phase;
	_Atomic int error; /* first failure (negative errno), 0 = none */
	/* the measured interval */
	double measured_s;
	double cpu_s;
	struct trace *trace; /* the sampled time series (trace.c), NULL if not asked for */
	/* engine mode */
	auraio_engine_t *engine;
	auraio_stats_t st_begin, st_end; /* engine stats at measure start and end */
	/* liburing mode: the setup flags the kernel granted (all jobs alike) */
	bool uring_coop;
	bool uring_sqpoll;
	bool uring_defer;
};

/* options.c */
int options_parse(struct bench_config *cfg, int argc, char **argv);
void options_usage(FILE *out);

/* trace.c: the time series (every TRACE_TICK_MS) and the adaptive trajectory. */
#define TRACE_TICK_MS 100
int trace_begin(struct bench *b);
void trace_sample(struct bench *b, double t);
void trace_end(struct bench *b); /* before the engine goes away */
void trace_print_trajectory(struct bench *b, FILE *out);
void trace_free(struct bench *b);

/* layout.c: open (and with --size create/extend) the file. */
int layout_open(struct bench *b);

/* iobench.c: shared helpers for the run loops (now_ns() is runclock.h's) */
void bench_fail(struct bench *b, int err);
static inline int bench_phase(struct bench *b)
{
	return atomic_load_explicit(&b->phase, memory_order_relaxed);
}

/*
 * May the job submit one more I/O? Takes it from the --ios budget; false once the run
 * stops or the budget is spent. A submit that is then refused gives it back with
 * job_untake_io().
 */
static inline bool job_take_io(struct job *j)
{
	uint64_t left;

	if (bench_phase(j->b) == PHASE_STOP)
		return false;
	if (j->b->cfg.ios == 0)
		return true;
	left = atomic_load_explicit(&j->ios_left, memory_order_relaxed);
	do {
		if (left == 0)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
	    &j->ios_left, &left, left - 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

static inline void job_untake_io(struct job *j)
{
	if (j->b->cfg.ios)
		atomic_fetch_add_explicit(&j->ios_left, 1, memory_order_relaxed);
}

/* Will the job submit nothing more (run stopped, or its --ios budget is spent)? */
static inline bool job_finished(struct job *j)
{
	return bench_phase(j->b) == PHASE_STOP ||
	       (j->b->cfg.ios && atomic_load_explicit(&j->ios_left, memory_order_relaxed) == 0);
}
uint64_t slot_next_offset(struct slot *s);
void slot_seed(struct slot *s, uint64_t seed, int job, int index);
void slot_fill(struct slot *s, uint64_t len);
int jobs_create(struct bench *b); /* jobs, slots and idle lists; no buffers */
void jobs_destroy(struct bench *b);
int bench_run_threads(struct bench *b, void *(*fn)(void *), void (*hook)(struct bench *, int));
void bench_wait_start(struct bench *b);

/* run_auraio.c, run_uring.c: the whole run in each mode. 0 or -errno. */
int run_auraio(struct bench *b);
int run_uring(struct bench *b);

/* report.c */
int report_print(struct bench *b);

#endif
