/* SPDX-License-Identifier: MIT */
/*
 * hist.h - a log-linear latency histogram: 64 sub-buckets per power of two of
 * nanoseconds, so every recorded value is known to within 1/64 of itself (the reported
 * value is the bucket's midpoint: error <= 1/128). Every completion is recorded; nothing
 * is sampled. The resolution is fio's (FIO_IO_U_PLAT_BITS 6, midpoints too), so the
 * percentiles the bench scripts put side by side with fio's are equally precise: with
 * 16 sub-buckets a P99 could read 3 % high against fio's for the bucketing alone.
 *
 * Shared by iobench, walbench and kvbench (tools/common, library aura_toolcommon).
 *
 * Recording is thread-safe (relaxed atomics): a job's completions may be handled by
 * any thread (iobench's engine mode, an asynchronous append or get completed by
 * whichever thread polls). Counts need no ordering with anything else: they are read
 * only after the threads are joined (or, for progress lines, as an approximate total).
 */
#ifndef AURA_TOOLS_HIST_H
#define AURA_TOOLS_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct lat_hist {
	_Atomic uint64_t count[HIST_BUCKETS];
	_Atomic uint64_t sum_ns;
	_Atomic uint64_t max_ns;
};

/* A plain copy, for merging and percentiles once recording has stopped. */
struct lat_summary {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t sum_ns;
	uint64_t max_ns;
};

static inline unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < HIST_SUB)
		return (unsigned) v;
	msb = 63u - (unsigned) __builtin_clzll(v);
	shift = msb - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned) ((v >> shift) & (HIST_SUB - 1));
}

static inline void hist_record(struct lat_hist *h, uint64_t ns)
{
	uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->count[hist_index(ns)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
	/* A new maximum is rare: the CAS loop runs only then. */
	while (ns > max && !atomic_compare_exchange_weak_explicit(
			       &h->max_ns, &max, ns, memory_order_relaxed, memory_order_relaxed))
		;
}

void hist_init(struct lat_hist *h);
/* Completions recorded so far (approximate while recording goes on). */
uint64_t hist_total(struct lat_hist *h);
/* Add h into s (s starts zeroed). */
void hist_merge(struct lat_summary *s, struct lat_hist *h);
/* The value (ns) at percentile p (0..100, to 1e-4) of s: the bucket value of the
 * smallest completion with at least p% of them at or below it (nearest rank, counted
 * exactly: the P99.9 of 1000 completions is the 999th), capped at the exact maximum;
 * 0 when s is empty. */
double hist_percentile(const struct lat_summary *s, double p);

#endif
