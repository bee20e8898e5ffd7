/* SPDX-License-Identifier: MIT */
/*
 * adaptive.h - a ring's concurrency controller: the in-flight limit and the submit batch
 * threshold, tuned by AIMD under a P99 guard (docs/aimd.md is the specification).
 *
 * Layout: the hot state (limit, batch threshold, phase) is alone in the first cache
 * line, read by every submitter through the static inline getters. The window being
 * measured and the decision state follow in their own lines; only the cq_lock holder
 * touches them (adaptive_sample per completion, adaptive_close_window per window).
 *
 * Invariant: 1 <= min_limit <= limit <= max_limit (queue_depth) and
 *            1 <= batch_threshold <= max(1, limit / 2) when adaptive.
 */
#ifndef AURAIO_ADAPTIVE_H
#define AURAIO_ADAPTIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auraio.h"
#include "internal.h"
#include "latency_hist.h"

/* The window rule (docs/aimd.md). */
#define WINDOW_MIN_NS	   (5 * NSEC_PER_MSEC)
#define WINDOW_MAX_NS	   (1000 * NSEC_PER_MSEC)
#define WINDOW_TARGET	   128
#define WINDOW_MIN_SAMPLES 20

/* Window latency histogram: units of 256 ns, 8 sub-buckets per power of two. */
#define WHIST_SHIFT   8
#define WHIST_SUB     8
#define WHIST_BUCKETS 432

#define PROBE_MAX 96 /* entries in a probe's (limit, throughput) table */

struct probe_point {
	uint32_t limit;
	double iops;
};

/* Cumulative counters the engine hands in when a window closes. */
struct adaptive_inputs {
	uint64_t eagain;	 /* submits refused at the limit, ever */
	uint32_t peak_in_flight; /* highest in-flight seen during this window */
	uint64_t syscalls;	 /* submit enters, ever */
	uint64_t sqes;		 /* SQEs submitted, ever */
	uint64_t batch_wait_ns;	 /* total time staged batches waited before being sent */
	uint64_t batches;	 /* batches sent */
};

struct adaptive {
	/* --- hot: read on every submission --- */
	_Atomic uint32_t limit cache_aligned;
	_Atomic uint32_t batch_threshold;
	_Atomic uint32_t phase; /* auraio_phase_t */
	uint32_t min_limit;
	uint32_t max_limit;
	bool enabled;

	/* --- the window being measured (cq_lock holder) --- */
	uint64_t win_start cache_aligned;
	uint64_t win_lat_sum;
	uint64_t guard_ns;
	uint32_t win_n;
	uint32_t win_first_n; /* samples of the pass that opened the window (before win_start) */
	uint32_t win_over;    /* samples above the guard */
	uint32_t whist[WHIST_BUCKETS];

	/* --- decision state (cq_lock holder) --- */
	struct probe_point probe[PROBE_MAX];
	int nprobe;
	uint32_t prev_limit; /* 0: no previous probe window */
	double prev_iops;
	int nongain;
	bool exploring;	       /* this probe started from STEADY */
	bool descending;       /* re-probe: halving while throughput holds */
	uint32_t after_drain;  /* phase to enter when the drain window ends */
	uint32_t ceiling;      /* 0 = none */
	uint32_t ceiling_left; /* windows the ceiling still holds */
	uint32_t ceiling_hold; /* windows a new ceiling holds (doubles on repeats) */
	double ref_iops;       /* STEADY throughput reference */
	double noise;	       /* STEADY relative window-to-window deviation */
	int change_count;
	uint64_t change_since; /* when the current run of changed windows began */
	uint32_t steady_windows;
	struct adaptive_inputs last; /* counters at the previous window close */
	uint32_t last_n;	     /* samples in the last closed window (tests) */

	/* --- reported (relaxed atomics: read by stats readers) --- */
	_Atomic uint64_t rep_window_ns;
	_Atomic uint64_t rep_p99_ns;
	_Atomic uint64_t rep_iops;
};

static inline uint32_t adaptive_limit(const struct adaptive *c)
{
	return atomic_load_explicit((_Atomic uint32_t *) &c->limit, memory_order_relaxed);
}

static inline uint32_t adaptive_batch_threshold(const struct adaptive *c)
{
	return atomic_load_explicit((_Atomic uint32_t *) &c->batch_threshold, memory_order_relaxed);
}

static inline auraio_phase_t adaptive_phase(const struct adaptive *c)
{
	return (auraio_phase_t) atomic_load_explicit((_Atomic uint32_t *) &c->phase,
						     memory_order_relaxed);
}

static inline unsigned whist_bucket(uint64_t ns)
{
	uint64_t v = ns >> WHIST_SHIFT;
	unsigned msb, b;

	if (v < WHIST_SUB)
		return (unsigned) v;
	msb = 63u - (unsigned) __builtin_clzll(v);
	b = (msb - 2) * WHIST_SUB + (unsigned) ((v >> (msb - 3)) & (WHIST_SUB - 1));
	return b < WHIST_BUCKETS ? b : WHIST_BUCKETS - 1;
}

/* cq_lock held: one completion took lat_ns; `now` is the batch's completion time. */
static inline void adaptive_sample(struct adaptive *c, uint64_t lat_ns, uint64_t now)
{
	if (unlikely(c->win_n == 0)) {
		c->win_start = now;
		c->win_first_n = 0;
	}
	c->win_first_n += now == c->win_start; /* as one pass: completed by the start */
	c->win_n++;
	c->win_lat_sum += lat_ns;
	c->win_over += lat_ns > c->guard_ns;
	c->whist[whist_bucket(lat_ns)]++;
}

/*
 * The window bucket of a latency whose ring-histogram bucket (latency_hist.h) is hb,
 * without a second bit scan: the window histogram has half the sub-buckets and starts
 * at 2^WHIST_SHIFT ns, so from 8 * 2^WHIST_SHIFT ns on (where it stops being linear)
 * its bucket is hb / 2 less a constant. Equal to whist_bucket(ns) for every ns.
 */
#define WHIST_FROM_HIST_MIN ((WHIST_SHIFT + 3 - HIST_SUB_BITS + 1) * HIST_SUB)
_Static_assert(HIST_SUB == 2 * WHIST_SUB, "window buckets are pairs of ring buckets");
_Static_assert(WHIST_SUB == 8, "linear below 8 * 2^WHIST_SHIFT");

static inline unsigned whist_bucket_from_hist(uint64_t ns, unsigned hb)
{
	return hb >= WHIST_FROM_HIST_MIN ? (hb >> 1) - (WHIST_FROM_HIST_MIN / 2 - WHIST_SUB)
					 : (unsigned) (ns >> WHIST_SHIFT);
}

/*
 * A reap pass's samples (complete.c): summed in registers, added to the window once per
 * pass. Same result as adaptive_sample() per completion with the pass's `now`.
 */
struct adaptive_pass {
	uint64_t guard_ns;
	uint64_t lat_sum;
	uint32_t over;
};

static inline void adaptive_pass_begin(const struct adaptive *c, struct adaptive_pass *p)
{
	p->guard_ns = c->guard_ns;
	p->lat_sum = 0;
	p->over = 0;
}

/* cq_lock held: one completion took lat_ns; hb is its ring-histogram bucket. */
static inline void adaptive_pass_sample(struct adaptive *c, struct adaptive_pass *p,
					uint64_t lat_ns, unsigned hb)
{
	p->lat_sum += lat_ns;
	p->over += lat_ns > p->guard_ns;
	c->whist[whist_bucket_from_hist(lat_ns, hb)]++;
}

/* cq_lock held: n completions took lat_ns each; hb is its ring-histogram bucket. The
 * same as n calls of adaptive_pass_sample(). */
static inline void adaptive_pass_sample_n(struct adaptive *c, struct adaptive_pass *p,
					  uint64_t lat_ns, unsigned hb, uint32_t n)
{
	p->lat_sum += lat_ns * n;
	p->over += lat_ns > p->guard_ns ? n : 0;
	c->whist[whist_bucket_from_hist(lat_ns, hb)] += n;
}

/* cq_lock held: the pass (reaped at `now`) is over; it sampled n completions. */
static inline void adaptive_pass_end(struct adaptive *c, const struct adaptive_pass *p, uint32_t n,
				     uint64_t now)
{
	if (n == 0)
		return;
	if (c->win_n == 0) {
		c->win_start = now;
		c->win_first_n = n;
	}
	c->win_n += n;
	c->win_lat_sum += p->lat_sum;
	c->win_over += p->over;
}

/* Has the current window reached its end (the window rule)? */
static inline bool adaptive_window_due(const struct adaptive *c, uint64_t now)
{
	uint64_t t = now - c->win_start;

	return (c->win_n >= WINDOW_TARGET && t >= WINDOW_MIN_NS) ||
	       (c->win_n >= WINDOW_MIN_SAMPLES && t >= WINDOW_MAX_NS);
}

/* Resolve the options into a controller for a ring of queue_depth slots. */
void adaptive_init(struct adaptive *c, const auraio_options_t *o, uint32_t queue_depth);

/* cq_lock held: end the window at `now` and decide (docs/aimd.md). */
void adaptive_close_window(struct adaptive *c, uint64_t now, const struct adaptive_inputs *in);

/* Controller fields of the ring stats (phase, window, window P99/IOPS). */
void adaptive_fill_stats(const struct adaptive *c, auraio_ring_stats_t *s);

/* Does a window of n samples with k above the guard show P99 > guard? (exposed for
 * tests: the binomial test of docs/aimd.md) */
bool adaptive_guard_test(uint32_t n, uint32_t k);

#endif
