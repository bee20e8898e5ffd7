/* SPDX-License-Identifier: MIT */
/*
 * The adaptive controller (docs/aimd.md), driven by a simulated device with a
 * controllable clock (tests/support/sim_device.h): assertions are on the trajectory of
 * the in-flight limit, deterministic for a given seed.
 */
#include <auraio.h>
#include <math.h>

#include "sim_device.h"
#include "test_util.h"

#define MS  1000000ull
#define SEC 1000000000ull

static struct adaptive ctl;
static struct sim sim;

static void start(int initial, double guard_ms, int queue_depth, const struct sim_profile *p)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.initial_in_flight = initial;
	o.max_p99_latency_ms = guard_ms;
	adaptive_init(&ctl, &o, (uint32_t) queue_depth);
	sim_init(&sim, &ctl, p, 42);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

	return x < y ? -1 : x > y;
}

/* Median limit over windows closing in [from, to). */
static uint32_t median_limit(uint64_t from, uint64_t to)
{
	static uint32_t v[SIM_MAX_WINDOWS];
	unsigned n = 0;

	for (unsigned i = 0; i < sim.nw; i++)
		if (sim.w[i].t >= from && sim.w[i].t < to)
			v[n++] = sim.w[i].limit;
	cr_assert_gt(n, 0, "no window in [%llu, %llu) ns", (unsigned long long) from,
		     (unsigned long long) to);
	qsort(v, n, sizeof(v[0]), cmp_u32);
	return v[n / 2];
}

static void check_batch_bound(void)
{
	for (unsigned i = 0; i < sim.nw; i++) {
		uint32_t bound = sim.w[i].limit / 2 > 1 ? sim.w[i].limit / 2 : 1;

		cr_assert_leq(sim.w[i].batch, bound, "window %u: batch %u, limit %u", i,
			      sim.w[i].batch, sim.w[i].limit);
		cr_assert_leq(sim.w[i].batch, sim.w[i].limit);
	}
}

static const struct sim_profile knee32 = { .servers = 32, .service_ns = 100000, .jitter = 0.1 };

Test(adaptive, the_limit_climbs_from_one_to_within_25_percent_of_the_knee)
{
	uint32_t max = 0, settled;

	start(1, 0, 256, &knee32);
	cr_assert_eq(adaptive_limit(&ctl), 1);
	sim_run(&sim, 3 * SEC);
	for (unsigned i = 0; i < sim.nw; i++)
		max = sim.w[i].limit > max ? sim.w[i].limit : max;
	settled = median_limit(2 * SEC, 3 * SEC);
	cr_assert_geq(max, 24, "the limit never rose toward the knee (max %u)", max);
	cr_assert(settled >= 24 && settled <= 40, "settled at %u, knee 32", settled);
	check_batch_bound();
	sim_fini(&sim);
}

Test(adaptive, a_p99_spike_cuts_the_limit_within_one_window_and_it_recovers)
{
	struct sim_profile p = knee32;
	uint32_t before, after;
	unsigned first = 0, cut_at = 0;

	p.spike_start = 2 * SEC;
	p.spike_end = 2 * SEC + 500 * MS;
	p.spike_factor = 200; /* 20 ms per request: far above the 10 ms guard */
	start(1, 0, 256, &p);
	sim_run(&sim, 5 * SEC);
	before = sim_limit_at(&sim, 2 * SEC);
	cr_assert_geq(before, 24);
	/* the first window that can contain a spiked completion closes after 2 s + 20 ms */
	while (first < sim.nw && sim.w[first].t < 2 * SEC + 20 * MS)
		first++;
	for (unsigned i = first; i < sim.nw && i <= first + 1 && !cut_at; i++)
		if (sim.w[i].limit <= before / 2 + 1)
			cut_at = i;
	cr_assert(cut_at, "no multiplicative cut within one window of the spike (limit %u -> %u)",
		  before, sim.w[first + 1].limit);
	cr_assert_eq(sim.w[cut_at].phase, AURAIO_PHASE_BACKOFF);
	after = median_limit(4 * SEC, 5 * SEC);
	cr_assert_geq(after * 4, before * 3, "no recovery: %u before the spike, %u after", before,
		      after);
	check_batch_bound();
	sim_fini(&sim);
}

Test(adaptive, a_slow_disk_gets_wide_windows_of_20_samples_and_a_stable_limit)
{
	/* ~100 IOPS: 8 requests in service at 80 ms each */
	struct sim_profile p = { .servers = 8, .service_ns = 80 * MS, .jitter = 0.25 };
	uint32_t med, lo = UINT32_MAX, hi = 0;
	uint64_t widths = 0;

	start(1, 2000, 64, &p); /* a guard this device meets: the test is about windows */
	sim_run(&sim, 600 * SEC);
	cr_assert_gt(sim.nw, 100);
	for (unsigned i = 0; i < sim.nw; i++)
		cr_assert_geq(sim.w[i].n, WINDOW_MIN_SAMPLES, "window %u decided on %u samples", i,
			      sim.w[i].n);
	for (unsigned i = 1; i < sim.nw; i++)
		widths += sim.w[i].t - sim.w[i - 1].t;
	cr_assert_geq(widths / (sim.nw - 1), 500 * MS, "windows did not widen: mean %llu ms",
		      (unsigned long long) (widths / (sim.nw - 1) / MS));
	med = median_limit(120 * SEC, 600 * SEC);
	cr_assert(med >= 6 && med <= 10, "settled at %u, knee 8", med);
	/* once settled, the limit swings at most +-20 % around the middle of its range */
	for (unsigned i = 0; i < sim.nw; i++) {
		if (sim.w[i].t < 120 * SEC)
			continue;
		lo = sim.w[i].limit < lo ? sim.w[i].limit : lo;
		hi = sim.w[i].limit > hi ? sim.w[i].limit : hi;
	}
	cr_assert_leq((hi - lo) * 5, hi + lo, "settled limits ranged %u..%u: wider than +-20%%", lo,
		      hi);
	check_batch_bound();
	sim_fini(&sim);
}

Test(adaptive, a_device_slower_than_the_guard_is_held_at_the_minimum_depth)
{
	struct sim_profile p = { .servers = 8, .service_ns = 80 * MS, .jitter = 0.25 };

	start(4, 0, 64, &p); /* default 10 ms guard: every request takes ~80 ms */
	sim_run(&sim, 120 * SEC);
	cr_assert_eq(median_limit(30 * SEC, 120 * SEC), 1);
	sim_fini(&sim);
}

Test(adaptive, the_p99_guard_is_honoured_with_a_2ms_target)
{
	/* latency 0.95 ms * (1 + depth / 8) +-5 %: P99 <= 2 ms up to depth 8, above it
	 * beyond; throughput still rises with depth, so only the guard stops the climb */
	struct sim_profile p = {
		.servers = 1024, .service_ns = 950000, .per_inflight = 0.125, .jitter = 0.05
	};
	unsigned over = 0, total = 0;

	start(1, 2.0, 256, &p);
	sim_run(&sim, 10 * SEC);
	for (unsigned i = 0; i < sim.nw; i++) {
		if (sim.w[i].t < 2 * SEC)
			continue;
		total++;
		over += sim.w[i].limit > 8;
	}
	cr_assert_leq(median_limit(2 * SEC, 10 * SEC), 8);
	cr_assert_geq(median_limit(2 * SEC, 10 * SEC), 6, "the guard collapsed the limit");
	cr_assert_leq(over * 20, total, "limit above 8 in %u of %u windows", over, total);
	sim_fini(&sim);
}

Test(adaptive, the_controller_follows_a_device_that_slows_down_and_speeds_up)
{
	start(1, 0, 256, &knee32);
	sim_run(&sim, 3 * SEC);
	cr_assert_geq(median_limit(2 * SEC, 3 * SEC), 24);
	sim.p.servers = 8; /* the device loses parallelism (or gains a competitor) */
	sim_run(&sim, 6 * SEC);
	{
		uint32_t m = median_limit(5 * SEC, 6 * SEC);

		cr_assert(m >= 6 && m <= 10, "after slowing: %u, knee 8", m);
	}
	sim.p.servers = 32;
	sim_run(&sim, 9 * SEC);
	{
		uint32_t m = median_limit(8 * SEC, 9 * SEC);

		cr_assert(m >= 24 && m <= 40, "after speeding up: %u, knee 32", m);
	}
	sim_fini(&sim);
}

Test(adaptive, demand_limited_windows_do_not_move_the_limit)
{
	struct sim_profile p = knee32;

	p.demand = 2; /* the application never has more than 2 requests */
	start(16, 0, 256, &p);
	sim_run(&sim, 2 * SEC);
	cr_assert_gt(sim.nw, 100);
	for (unsigned i = 0; i < sim.nw; i++)
		cr_assert_eq(sim.w[i].limit, 16, "window %u moved the limit to %u", i,
			     sim.w[i].limit);
	sim_fini(&sim);
}

Test(adaptive, the_guard_test_is_binomial_not_the_maximum)
{
	cr_assert_not(adaptive_guard_test(19, 19), "below 20 samples nothing is decided");
	cr_assert_not(adaptive_guard_test(20, 1), "one slow request in 20 is a 1%% tail by chance");
	cr_assert(adaptive_guard_test(20, 2));
	cr_assert_not(adaptive_guard_test(100, 3));
	cr_assert(adaptive_guard_test(100, 4));
	cr_assert_not(adaptive_guard_test(500, 9));
	cr_assert(adaptive_guard_test(500, 10));
	cr_assert_not(adaptive_guard_test(100000, 1040)); /* normal approximation */
	cr_assert(adaptive_guard_test(100000, 1100));
}

Test(adaptive, disabled_control_keeps_a_fixed_limit)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.disable_adaptive = true;
	o.initial_in_flight = 12;
	adaptive_init(&ctl, &o, 256);
	sim_init(&sim, &ctl, &knee32, 7);
	sim_run(&sim, 1 * SEC);
	cr_assert_gt(sim.nw, 10);
	for (unsigned i = 0; i < sim.nw; i++) {
		cr_assert_eq(sim.w[i].limit, 12);
		cr_assert_eq(sim.w[i].phase, AURAIO_PHASE_FIXED);
	}
	sim_fini(&sim);
}

/* ---- through the engine ---- */

Test(adaptive_engine, with_one_request_in_flight_submission_is_immediate)
{
	auraio_engine_t *e = auraio_create(); /* adaptive by default */
	auraio_stats_t st;
	int p[2];
	char b;
	auraio_request_t *req;

	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	req = auraio_read(e, p[0], auraio_buf(&b), 1, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend == AURAIO_BACKEND_IO_URING)
		cr_assert_eq(st.total.sqes_submitted, 1, "the lone request waited for a batch");
	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(auraio_request_wait(e, req, 5000, NULL), 0);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

struct flood {
	auraio_engine_t *e;
	int fd;
	int done, want;
	char buf[64][512];
};

static void flood_cb(auraio_request_t *req, ssize_t res, void *ud);

static void flood_submit(struct flood *f, int slot)
{
	while (!auraio_read(f->e, f->fd, auraio_buf(f->buf[slot]), 512, (slot % 64) * 512, flood_cb,
			    (void *) ((uintptr_t) f | (uintptr_t) slot))) {
		cr_assert_eq(errno, EAGAIN);
		auraio_poll(f->e);
	}
}

static void flood_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct flood *f = (struct flood *) ((uintptr_t) ud & ~(uintptr_t) 63);

	(void) req;
	cr_assert_eq(res, 512);
	if (++f->done + 64 <= f->want)
		flood_submit(f, (int) ((uintptr_t) ud & 63));
}

Test(adaptive_engine, the_controller_state_is_reported_in_stats)
{
	static struct flood f __attribute__((aligned(64)));
	auraio_options_t o;
	auraio_ring_stats_t rs;
	uint64_t deadline = test_now_ns() + 30ull * SEC;

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 64;
	f.e = auraio_create_with_options(&o);
	cr_assert_not_null(f.e);
	f.fd = temp_file(64 * 512, 0);
	f.want = 20000;
	for (int i = 0; i < 64; i++)
		flood_submit(&f, i);
	do {
		while (f.done < f.want)
			cr_assert_geq(auraio_wait(f.e, 1000), 0);
		cr_assert_eq(auraio_get_ring_stats(f.e, 0, &rs), 0);
	} while (rs.window_iops == 0 && test_now_ns() < deadline);
	cr_assert_neq(rs.phase, AURAIO_PHASE_FIXED);
	cr_assert_gt(rs.window_iops, 0, "no window closed");
	cr_assert_gt(rs.window_p99_us, 0);
	cr_assert_geq(rs.in_flight_limit, 1);
	cr_assert_leq(rs.in_flight_limit, 64);
	cr_assert_leq(rs.batch_threshold, rs.in_flight_limit);
	cr_assert_gt(rs.eagain, 0, "the flood should have met the limit");
	auraio_destroy(f.e);
	close(f.fd);
}

Test(adaptive, a_guard_too_large_for_nanoseconds_means_no_guard)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.max_p99_latency_ms = INFINITY;
	adaptive_init(&ctl, &o, 256);
	cr_assert_eq(ctl.guard_ns, UINT64_MAX, "an infinite guard became %llu ns",
		     (unsigned long long) ctl.guard_ns);
	o.max_p99_latency_ms = 1e300;
	adaptive_init(&ctl, &o, 256);
	cr_assert_eq(ctl.guard_ns, UINT64_MAX, "a huge guard became %llu ns",
		     (unsigned long long) ctl.guard_ns);
	o.max_p99_latency_ms = 2.5;
	adaptive_init(&ctl, &o, 256);
	cr_assert_eq(ctl.guard_ns, 2500000);
}

/*
 * The engine adds a reap pass's completions to the window at once, stamped with the
 * pass's time, and the window opens at its first pass. The completions of that first
 * pass happened before the window's clock started: counting them in the rate inflated
 * it by up to a pass per window (32 completions of 128, 25 %).
 */
Test(adaptive, window_iops_counts_the_completions_after_the_window_opened)
{
	struct adaptive_inputs in = { 0 };
	auraio_ring_stats_t rs;
	auraio_options_t o;
	uint64_t now = 1 * SEC;
	unsigned closed = 0;

	auraio_options_init(&o);
	o.disable_adaptive = true; /* the measurement only */
	adaptive_init(&ctl, &o, 256);
	/* 32 completions of 100 us every millisecond: 32,000 per second */
	for (int pass = 0; pass < 200; pass++, now += 1 * MS) {
		struct adaptive_pass p;

		adaptive_pass_begin(&ctl, &p);
		for (int i = 0; i < 32; i++)
			adaptive_pass_sample(&ctl, &p, 100000, hist_bucket(100000));
		adaptive_pass_end(&ctl, &p, 32, now);
		if (adaptive_window_due(&ctl, now)) {
			adaptive_close_window(&ctl, now, &in);
			closed++;
			adaptive_fill_stats(&ctl, &rs);
			cr_assert(fabs(rs.window_iops - 32000) <= 320,
				  "window %u measured %.0f completions/s, not 32000", closed,
				  rs.window_iops);
		}
	}
	cr_assert_gt(closed, 10);
}
