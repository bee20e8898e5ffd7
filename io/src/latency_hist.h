/* SPDX-License-Identifier: MIT */
/*
 * latency_hist.h - log-linear latency histogram (HDR style).
 *
 * Buckets: values below 2^SUB_BITS ns are exact; above, each power of two is split into
 * 2^SUB_BITS linear sub-buckets, so the relative error of any percentile is below
 * 1/2^SUB_BITS (6.25%). One writer (the ring's cq_lock holder), any number of readers;
 * counts are relaxed atomics so a concurrent reader sees each count whole.
 */
#ifndef AURAIO_LATENCY_HIST_H
#define AURAIO_LATENCY_HIST_H

#include <stdint.h>

#include "internal.h"

#define HIST_SUB_BITS 4
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct latency_hist {
	counter_t count[HIST_BUCKETS];
	counter_t max_ns;
};

static inline unsigned hist_bucket(uint64_t ns)
{
	unsigned shift;

	if (ns < HIST_SUB)
		return (unsigned) ns;
	/* group (msb - SUB_BITS + 1), sub-bucket from the SUB_BITS bits below the msb.
	 * ns >> shift keeps the msb and those bits, HIST_SUB + sub, which supplies the
	 * group's "+ 1" itself: no mask needed. */
	shift = (63u ^ (unsigned) __builtin_clzll(ns)) - HIST_SUB_BITS;
	return shift * HIST_SUB + (unsigned) (ns >> shift);
}

/* Single writer: n values whose bucket is known. */
static inline void hist_count(struct latency_hist *h, unsigned bucket, uint64_t n)
{
	counter_add(&h->count[bucket], n);
}

/* Single writer: the largest value of a batch already counted with hist_count. */
static inline void hist_note_max(struct latency_hist *h, uint64_t ns)
{
	if (unlikely(ns > counter_get(&h->max_ns)))
		atomic_store_explicit(&h->max_ns, ns, memory_order_relaxed);
}

/* Single writer. */
static inline void hist_record(struct latency_hist *h, uint64_t ns)
{
	hist_count(h, hist_bucket(ns), 1);
	hist_note_max(h, ns);
}

/* Lowest value that falls in bucket b, and the bucket's width. */
uint64_t hist_bucket_low(unsigned b);
uint64_t hist_bucket_width(unsigned b);

/* Plain (non-atomic) snapshot used for percentile arithmetic and merging. */
struct hist_snapshot {
	uint64_t count[HIST_BUCKETS];
	uint64_t total;
	uint64_t max_ns;
};

void hist_snapshot(const struct latency_hist *h, struct hist_snapshot *out);
void hist_snapshot_merge(struct hist_snapshot *into, const struct hist_snapshot *from);

/* Value at quantile q (0..1) in ns, interpolated inside its bucket; 0 if empty. */
double hist_quantile(const struct hist_snapshot *s, double q);

#endif
