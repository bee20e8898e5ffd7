/* SPDX-License-Identifier: MIT */
/*
 * latency_hist.c - snapshots and percentiles of a latency_hist.
 * Readers never lock: each bucket is read once, atomically, into a plain snapshot.
 */
#include <string.h>

#include "latency_hist.h"

uint64_t hist_bucket_low(unsigned b)
{
	unsigned group = b / HIST_SUB, sub = b % HIST_SUB;
	unsigned msb;

	if (group == 0)
		return sub;
	msb = group + HIST_SUB_BITS - 1;
	return (1ull << msb) + ((uint64_t) sub << (msb - HIST_SUB_BITS));
}

uint64_t hist_bucket_width(unsigned b)
{
	unsigned group = b / HIST_SUB;

	if (group == 0)
		return 1;
	return 1ull << (group - 1);
}

void hist_snapshot(const struct latency_hist *h, struct hist_snapshot *out)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		out->count[i] = counter_get(&h->count[i]);
		total += out->count[i];
	}
	out->total = total;
	out->max_ns = counter_get(&h->max_ns);
}

void hist_snapshot_merge(struct hist_snapshot *into, const struct hist_snapshot *from)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->count[i] += from->count[i];
	into->total += from->total;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
}

double hist_quantile(const struct hist_snapshot *s, double q)
{
	double rank, seen = 0;

	if (s->total == 0)
		return 0;
	if (q <= 0)
		q = 0;
	if (q >= 1)
		return (double) s->max_ns;
	rank = q * (double) s->total;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		double c = (double) s->count[i];
		double v;

		if (c == 0 || seen + c < rank) {
			seen += c;
			continue;
		}
		/* Linear interpolation inside the bucket, never above the observed max. */
		v = (double) hist_bucket_low(i) +
		    (double) hist_bucket_width(i) * ((rank - seen) / c);
		return v < (double) s->max_ns ? v : (double) s->max_ns;
	}
	return (double) s->max_ns;
}
