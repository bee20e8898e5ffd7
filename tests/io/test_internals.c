/* SPDX-License-Identifier: MIT */
/* Engine internals that no public call can reach on demand: request generations and the
 * latency histogram's arithmetic. */
#include <math.h>

#include "latency_hist.h"
#include "request.h"
#include "test_util.h"

Test(request_pool, a_stale_completion_never_maps_to_a_recycled_request)
{
	struct request_pool pool;
	struct auraio_request *a, *b;
	uint64_t old_ud;

	cr_assert_eq(request_pool_init(&pool, 1, 0), 0);
	a = request_alloc(&pool);
	cr_assert_not_null(a);
	atomic_store(&a->state, REQ_IN_FLIGHT);
	old_ud = request_ud(a);
	cr_assert_eq(request_from_ud(&pool, old_ud), a);
	a->next = NULL;
	request_release_list(&pool, a, a);
	cr_assert_null(request_from_ud(&pool, old_ud), "a freed request took a completion");
	b = request_alloc(&pool);
	cr_assert_eq(b, a, "one slot: the same request comes back");
	atomic_store(&b->state, REQ_IN_FLIGHT);
	cr_assert_neq(request_ud(b), old_ud, "the generation must change");
	cr_assert_null(request_from_ud(&pool, old_ud), "stale user_data matched the new life");
	cr_assert_eq(request_from_ud(&pool, request_ud(b)), b);
	cr_assert_null(request_from_ud(&pool, UINT64_MAX));
	cr_assert_null(request_alloc(&pool), "an empty pool yields NULL");
	request_pool_fini(&pool);
}

Test(request_pool, requests_are_two_cache_lines_with_completion_fields_in_the_second)
{
	cr_assert_eq(sizeof(struct auraio_request), 128);
	cr_assert_eq(offsetof(struct auraio_request, result), 64);
	cr_assert_lt(offsetof(struct auraio_request, user_data), 64);
	cr_assert_lt(offsetof(struct auraio_request, cb), 64);
}

static struct hist_snapshot snap(struct latency_hist *h)
{
	struct hist_snapshot s;

	hist_snapshot(h, &s);
	return s;
}

Test(latency_hist, quantiles_are_within_the_bucket_resolution)
{
	static struct latency_hist h;
	struct hist_snapshot s;

	for (uint64_t v = 1; v <= 100000; v++)
		hist_record(&h, v * 100); /* uniform 100 ns .. 10 ms */
	s = snap(&h);
	cr_assert_eq(s.total, 100000);
	cr_assert_eq(s.max_ns, 10000000);
	cr_assert(fabs(hist_quantile(&s, 0.5) - 5e6) / 5e6 < 0.0625, "p50 %f",
		  hist_quantile(&s, 0.5));
	cr_assert(fabs(hist_quantile(&s, 0.99) - 9.9e6) / 9.9e6 < 0.0625, "p99 %f",
		  hist_quantile(&s, 0.99));
	cr_assert_leq(hist_quantile(&s, 0.999), 1e7);
}

Test(latency_hist, bucket_bounds_cover_every_value_once)
{
	for (uint64_t v = 0; v < 1000000; v = v * 3 / 2 + 1) {
		unsigned b = hist_bucket(v);

		cr_assert_geq(v, hist_bucket_low(b), "v %llu bucket %u", (unsigned long long) v, b);
		cr_assert_lt(v, hist_bucket_low(b) + hist_bucket_width(b));
	}
	cr_assert_lt(hist_bucket(UINT64_MAX), HIST_BUCKETS);
}

Test(latency_hist, an_empty_histogram_reports_zero)
{
	static struct latency_hist h;
	struct hist_snapshot s = snap(&h);

	cr_assert_eq(hist_quantile(&s, 0.99), 0);
}
