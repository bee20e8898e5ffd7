/* SPDX-License-Identifier: MIT */
/*
 * kvbench.h - the types shared by kvbench's files: the parsed configuration, the
 * workloads, the run state every thread reads, one job (one thread of a workload) and
 * the numbers a finished workload leaves behind.
 *
 * A job's counters and histogram may be updated by whichever thread runs an
 * asynchronous get's callback (any thread that polls the store), so they are atomics.
 * Everything else in a job belongs to its own thread until the threads are joined.
 */
#ifndef KVBENCH_H
#define KVBENCH_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "aurakv.h"
#include "hist.h"
#include "runclock.h"

#define KVB_MAX_BENCHMARKS 32
/* Keys are an 8-byte big-endian index followed by filler bytes (keygen.c). */
#define KVB_MIN_KEY 8

struct kv_config {
	const char *benchmarks[KVB_MAX_BENCHMARKS]; /* --benchmarks, in order (pointers into
						       `list`) */
	int nbenchmarks;
	char list[1024];	/* --benchmarks, split in place */
	int threads;		/* --threads */
	uint64_t num;		/* --num: keys */
	uint64_t reads;		/* --reads: gets per read workload, total; 0 = num */
	uint64_t writes;	/* --writes: puts per fill/overwrite, total; 0 = default */
	unsigned key_size;	/* --key-size */
	unsigned value_size;	/* --value-size */
	double compressibility; /* --compressibility: random fraction of each value piece */
	uint64_t cache_size;	/* --cache-size, bytes */
	int async_depth;	/* --async-depth: gets in flight per thread, 0 = sync */
	unsigned batch;		/* --batch: keys per aurakv_multi_get */
	const char *db;		/* --db DIR, NULL = a temporary directory */
	bool use_existing;	/* --use-existing */
	double duration;	/* --duration: seconds per workload, 0 = no cap */
	long compress_min;	/* --compress-min, -1 = the library's default */
	uint64_t segment_size;	/* --segment-size, 0 = the library's default */
	uint64_t seed;		/* --seed */
	const char *json;	/* --json FILE, "-" = stdout, NULL = none */
	bool quiet;		/* --quiet: no progress lines */
};

enum wl_kind {
	WL_FILLSEQ,
	WL_FILLRANDOM,
	WL_FILLSYNC,
	WL_OVERWRITE,
	WL_READRANDOM,
	WL_READSEQ,
	WL_READMISSING,
	WL_READWHILEWRITING,
	WL_MULTIGET,
};

struct workload {
	const char *name;
	enum wl_kind kind;
	bool needs_fill; /* reads or rewrites existing keys: the store is filled first */
	bool writes;	 /* the measured threads put */
	const char *help;
};

/* Run phases, in order. Operations are counted only in MEASURE; none starts in STOP. */
enum bench_phase { PHASE_START = 0, PHASE_MEASURE = 1, PHASE_STOP = 2 };

struct job;

/* One asynchronous get in flight (--async-depth). `busy` is set by the owner before
 * the submit and cleared (release) by the callback when the slot may be reused. */
struct slot {
	struct job *job;
	uint64_t t0;
	_Atomic int busy;
};

struct job {
	struct bench *b;
	int id;
	bool writer;	       /* readwhilewriting's writer: not measured, runs until STOP */
	uint64_t first, count; /* this thread's share: `count` positions from `first` */
	uint64_t stride;       /* fills: every stride-th position (interleaved shares) */
	uint64_t rng;	       /* splitmix64 state */
	size_t vpos;	       /* next value's offset in the value source */
	uint8_t *key;	       /* key_size bytes, filler preset (batch keys for multiget) */
	uint8_t *buf;	       /* value_size bytes for aurakv_get_into */
	struct slot *slots;    /* async_depth entries */
	const void **keyv;     /* multiget: batch pointers, lengths, results */
	size_t *klens, *vlens;
	void **vals;
	int *status;
	struct lat_hist hist;	  /* one sample per operation (per batch for multiget) */
	_Atomic uint64_t done;	  /* operations finished in MEASURE (keys for multiget) */
	_Atomic uint64_t found;	  /* gets that returned a value of value_size bytes */
	_Atomic uint64_t missing; /* gets that returned AURAKV_ENOTFOUND */
	_Atomic uint64_t badsize; /* gets that returned a value of another size */
	_Atomic int in_flight;	  /* async gets of this job not completed yet */
	uint64_t end_ns;	  /* when this thread stopped operating */
	pthread_t tid;
} __attribute__((aligned(64)));

/* What a finished workload measured. */
struct result {
	const char *name;
	int threads;
	uint64_t ops, found, missing, badsize;
	bool check;		 /* a read workload: found must equal expected */
	bool strict;		 /* ...and this run wrote the keys: a mismatch fails it */
	uint64_t expected_found; /* what a correct store returns */
	bool capped;		 /* --duration ended it before all operations were done */
	double seconds, ops_s, mb_s, cpu_us_per_op;
	double mean_us, p50_us, p99_us, p999_us, max_us;
	bool lat_per_batch;  /* the latencies are per aurakv_multi_get (multiget, readseq) */
	double writer_ops_s; /* readwhilewriting: the writer's puts/s */
	double sync_ms;	     /* writes without AURAKV_SYNC: the aurakv_sync() after, or -1 */
	aurakv_stats_t before, after;
};

struct bench {
	struct kv_config cfg;
	char dir[PATH_MAX];
	bool temp_dir; /* dir was made by kvbench (removed at the end) */
	aurakv_t *db;
	uint8_t *values;   /* the value source (keygen.c) */
	size_t values_len; /* values are slices [pos, pos + value_size), pos < this */
	uint64_t perm_keys[4];
	unsigned perm_half; /* the Feistel permutation's half width, bits */
	bool filled;	    /* every key of [0, num) is known to be in the store */
	bool written;	    /* ...because this run wrote them (not --use-existing's count) */
	/* the workload running now */
	const struct workload *wl;
	bool untimed; /* a fill before a read workload: no result, no report */
	struct job *jobs;
	int njobs;	     /* threads started for it */
	int measured;	     /* of which the first `measured` are measured */
	uint64_t total_ops;  /* operations the measured threads are to do */
	_Atomic int phase;   /* enum bench_phase */
	_Atomic int error;   /* first failure (negative code), 0 = none */
	_Atomic int running; /* measured threads not finished yet */
	uint64_t t0_ns;	     /* the measured interval starts (the gate opens) */
	uint64_t stop_ns;    /* when the phase was set to STOP by the clock, or 0 */
	double cpu_s;	     /* user+sys CPU of the process over the interval */
	struct result results[KVB_MAX_BENCHMARKS];
	int nresults;
	aurakv_stats_t final; /* the store's counters before closing */
};

/* options.c */
int options_parse(struct kv_config *cfg, int argc, char **argv);
const struct workload *workload_find(const char *name);
uint64_t cfg_reads(const struct kv_config *c);
uint64_t cfg_writes(const struct kv_config *c, const struct workload *w);

/* keygen.c: keys, the permutation of fillrandom, values, random numbers. */
int values_create(struct bench *b);
void perm_init(struct bench *b);
uint64_t perm_apply(const struct bench *b, uint64_t i);
void key_init(const struct bench *b, uint8_t *key);
void key_set(const struct bench *b, uint8_t *key, uint64_t idx, bool missing);
const uint8_t *value_next(struct job *j);
uint64_t rng_next(uint64_t *state);
/* bytes / the store's live bytes (0 for an empty store): the amplification figures. */
static inline double per_live(const aurakv_stats_t *s, uint64_t bytes)
{
	return s->live_bytes ? (double) bytes / (double) s->live_bytes : 0.0;
}

static inline uint64_t rng_below(uint64_t *state, uint64_t n)
{
	return (uint64_t) (((unsigned __int128) rng_next(state) * n) >> 64);
}

/* Add n to a counter that only the calling thread writes (others only load it): a
 * relaxed load and store, no locked instruction. */
static inline void owner_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* hist_record for a histogram only the calling thread records into (the synchronous
 * loops): the same buckets, without hist.h's locked instructions. */
static inline void hist_record_owner(struct lat_hist *h, uint64_t ns)
{
	owner_add(&h->count[hist_index(ns)], 1);
	owner_add(&h->sum_ns, ns);
	if (ns > atomic_load_explicit(&h->max_ns, memory_order_relaxed))
		atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
}

/* kvbench.c: shared helpers (now_ns() is runclock.h's) */
void bench_fail(struct bench *b, int err);
static inline int bench_phase(struct bench *b)
{
	return atomic_load_explicit(&b->phase, memory_order_relaxed);
}
void bench_wait_start(struct bench *b);

/* workloads.c: the synchronous loops; async.c: async gets and multiget */
void *job_main(void *arg);
void count_get(struct job *j, int status, size_t vlen, bool shared);
void run_async_reads(struct job *j);
void run_multiget(struct job *j, bool seq);

/* run.c: running one workload */
int workload_run(struct bench *b, const struct workload *w);
uint64_t ops_done(struct bench *b);

/* report.c */
void result_compute(struct bench *b, struct result *r);
void report_header(const struct bench *b);
void report_result(const struct bench *b, const struct result *r);
void report_summary(const struct bench *b);
int report_failed_checks(const struct bench *b);
int report_json(const struct bench *b);
FILE *report_out(const struct bench *b);

#endif
