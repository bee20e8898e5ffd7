/* SPDX-License-Identifier: MIT */
/*
 * The benchmark tools' latency histogram (tools/common/hist.h): bucket bounds over the
 * whole uint64_t range, the percentile rank (the smallest value with at least p% of the
 * completions at or below it, counted exactly), the cap at the exact maximum, the empty
 * histogram, and merging the histograms of several threads.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "hist.h"

/* Zeroed histogram and summary: the tests use large structs, so they are static. */
static struct lat_hist h1, h2;
static struct lat_summary s;

static void record_n(struct lat_hist *h, uint64_t ns, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		hist_record(h, ns);
}

static void summarize(struct lat_hist *h)
{
	memset(&s, 0, sizeof(s));
	hist_merge(&s, h);
}

Test(tools_hist, an_empty_histogram_reports_zero_at_every_percentile)
{
	hist_init(&h1);
	summarize(&h1);
	cr_assert_eq(s.n, 0);
	cr_assert_float_eq(hist_percentile(&s, 0.0), 0.0, 1e-12);
	cr_assert_float_eq(hist_percentile(&s, 50.0), 0.0, 1e-12);
	cr_assert_float_eq(hist_percentile(&s, 100.0), 0.0, 1e-12);
}

/* 99.9% of 1000 completions is exactly 999 of them: the P99.9 is the 999th value, not
 * the one outlier above it (a rank computed in doubles, ceil(99.9 / 100 * 1000), came to
 * 1000). */
Test(tools_hist, p999_of_1000_completions_is_the_999th_value_not_the_outlier)
{
	hist_init(&h1);
	record_n(&h1, 10, 999);
	hist_record(&h1, 15);
	summarize(&h1);
	cr_assert_float_eq(hist_percentile(&s, 99.9), 10.0, 1e-9, "P99.9 = %.1f ns",
			   hist_percentile(&s, 99.9));
	cr_assert_float_eq(hist_percentile(&s, 100.0), 15.0, 1e-9);
}

/* The same at kvbench's default --num: the P99.9 of 10^6 gets is the 999,000th. */
Test(tools_hist, p999_of_a_million_completions_is_the_999000th_value)
{
	hist_init(&h1);
	record_n(&h1, 5, 999000);
	record_n(&h1, 7, 1000);
	summarize(&h1);
	cr_assert_float_eq(hist_percentile(&s, 99.9), 5.0, 1e-9, "P99.9 = %.1f ns",
			   hist_percentile(&s, 99.9));
	cr_assert_float_eq(hist_percentile(&s, 99.99), 7.0, 1e-9);
}

/* Values below 16 ns have a bucket each, so the ranks can be checked value by value. */
Test(tools_hist, percentiles_of_1_to_10_are_the_nearest_rank_values)
{
	hist_init(&h1);
	for (uint64_t v = 1; v <= 10; v++)
		hist_record(&h1, v);
	summarize(&h1);
	cr_assert_float_eq(hist_percentile(&s, 0.0), 1.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 10.0), 1.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 10.5), 2.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 50.0), 5.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 90.0), 9.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 99.0), 10.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 100.0), 10.0, 1e-9);
}

/* Every value, up to UINT64_MAX, lands in a bucket whose reported midpoint is within
 * 1/128 of it (fio's precision). */
Test(tools_hist, every_value_is_reported_within_a_128th_of_itself)
{
	for (unsigned bit = 0; bit < 64; bit++) {
		uint64_t base = 1ull << bit;
		uint64_t vals[3] = { base, base + (base >> 1), base | (base - 1) };

		for (int k = 0; k < 3; k++) {
			uint64_t v = vals[k];
			double got;

			cr_assert_lt(hist_index(v), HIST_BUCKETS);
			hist_init(&h1);
			hist_record(&h1, v);
			hist_record(&h1, UINT64_MAX);
			summarize(&h1);
			got = hist_percentile(&s, 50.0);
			cr_assert_leq(got > (double) v ? got - (double) v : (double) v - got,
				      (double) v / 128.0, "value %llu reported as %.1f",
				      (unsigned long long) v, got);
		}
	}
}

Test(tools_hist, a_percentile_is_never_above_the_exact_maximum)
{
	hist_init(&h1);
	record_n(&h1, 1000, 100); /* bucket [1000, 1007]: midpoint 1003.5 */
	summarize(&h1);
	cr_assert_float_eq(hist_percentile(&s, 50.0), 1000.0, 1e-9);
	cr_assert_eq(s.max_ns, 1000);
}

/* Merging the histograms of two threads: counts, sum and maximum of both. */
Test(tools_hist, merging_two_threads_adds_counts_and_keeps_the_larger_maximum)
{
	hist_init(&h1);
	hist_init(&h2);
	record_n(&h1, 3, 60);
	record_n(&h2, 12, 40);
	hist_record(&h2, 15);
	memset(&s, 0, sizeof(s));
	hist_merge(&s, &h1);
	hist_merge(&s, &h2);
	cr_assert_eq(s.n, 101);
	cr_assert_eq(s.sum_ns, 60 * 3 + 40 * 12 + 15);
	cr_assert_eq(s.max_ns, 15);
	cr_assert_eq(hist_total(&h2), 41);
	cr_assert_float_eq(hist_percentile(&s, 50.0), 3.0, 1e-9);
	cr_assert_float_eq(hist_percentile(&s, 59.0), 3.0, 1e-9);  /* rank 60 of 101 */
	cr_assert_float_eq(hist_percentile(&s, 60.0), 12.0, 1e-9); /* rank 61 */
	cr_assert_float_eq(hist_percentile(&s, 100.0), 15.0, 1e-9);
}
