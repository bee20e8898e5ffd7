/* SPDX-License-Identifier: MIT */
/*
 * hist.c - reading the log-linear latency histogram of hist.h: totals, merging the
 * per-job histograms, and percentiles. Recording is inline in hist.h. Shared by the
 * benchmark tools (tools/common).
 */
#include <math.h>

#include "hist.h"

void hist_init(struct lat_hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		atomic_init(&h->count[i], 0);
	atomic_init(&h->sum_ns, 0);
	atomic_init(&h->max_ns, 0);
}

uint64_t hist_total(struct lat_hist *h)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		n += atomic_load_explicit(&h->count[i], memory_order_relaxed);
	return n;
}

void hist_merge(struct lat_summary *s, struct lat_hist *h)
{
	uint64_t max = atomic_load_explicit(&h->max_ns, memory_order_relaxed);

	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		uint64_t c = atomic_load_explicit(&h->count[i], memory_order_relaxed);

		s->count[i] += c;
		s->n += c;
	}
	s->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
	if (max > s->max_ns)
		s->max_ns = max;
}

/* Midpoint of bucket i, in ns. */
static double bucket_value(unsigned i)
{
	unsigned shift;
	double lower, width;

	if (i < HIST_SUB)
		return (double) i;
	shift = i / HIST_SUB - 1;
	lower = ldexp((double) (HIST_SUB + i % HIST_SUB), (int) shift);
	width = ldexp(1.0, (int) shift);
	return lower + (width - 1.0) / 2.0;
}

/*
 * The rank (1-based) of percentile p among n values: the smallest r with r >= p% of n.
 * Counted in integers, p in millionths (99.9 -> 999000): in doubles 99.9 / 100 * 1000
 * is 999.0000000000001, whose ceiling, 1000, made the P99.9 of 1000 completions their
 * maximum, and the P99.9 of 10^6 the 999,001st value.
 */
static uint64_t percentile_rank(double p, uint64_t n)
{
	uint64_t ppm;

	if (!(p > 0.0))
		return 1;
	if (p >= 100.0)
		return n;
	ppm = (uint64_t) llround(p * 1e4);
	return (uint64_t) (((unsigned __int128) n * ppm + 999999) / 1000000);
}

double hist_percentile(const struct lat_summary *s, double p)
{
	uint64_t rank, seen = 0;

	if (s->n == 0)
		return 0.0;
	/* The smallest value with at least p% of the completions at or below it. */
	rank = percentile_rank(p, s->n);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += s->count[i];
		if (seen >= rank) {
			double v = bucket_value(i);

			/* Never report more than the exact maximum. */
			return v > (double) s->max_ns ? (double) s->max_ns : v;
		}
	}
	return (double) s->max_ns;
}
