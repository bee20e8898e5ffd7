/* SPDX-License-Identifier: MIT */
/*
 * adaptive.c - the decisions of a ring's controller, taken once per sample window:
 * the P99 guard, the AIMD state machine (PROBE / STEADY / BACKOFF / DRAIN), and the
 * batch optimizer. docs/aimd.md is the specification; every constant is explained there.
 *
 * Only the cq_lock holder calls into this file (or, in tests, a single thread driving a
 * simulated device); the results are published through relaxed atomics that submitters
 * and stats readers load.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "adaptive.h"

#define DEFAULT_GUARD_MS    10.0
#define ADAPTIVE_START	    4 /* default initial_in_flight when adaptive */
#define GAIN_FRACTION	    0.5
#define PLATEAU_WINDOWS	    2
#define KNEE_FRACTION	    0.95
#define BETA		    0.5
#define CEILING_HOLD	    50
#define CEILING_HOLD_MAX    1600
#define EXPLORE_EVERY	    50
#define CHANGE_FRACTION	    0.25
#define CHANGE_WINDOWS	    3
#define CHANGE_MIN_NS	    (100 * NSEC_PER_MSEC)
#define REF_WEIGHT	    0.25
#define NOISE_MULTIPLE	    3.0
#define GUARD_ALPHA	    0.05
#define GUARD_TAIL	    0.01
#define BATCH_DELAY_FRAC    0.05
#define BATCH_MIN_PER_ENTER 2.0

/* ---- setup ---- */

static uint32_t clamp_u32(uint32_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

static uint32_t fixed_batch(uint32_t limit)
{
	return MAX(1u, MIN(limit / 4, 16u));
}

static uint32_t max_batch(uint32_t limit)
{
	return MAX(1u, limit / 2);
}

void adaptive_init(struct adaptive *c, const auraio_options_t *o, uint32_t queue_depth)
{
	uint32_t start;
	double guard_ms = o->max_p99_latency_ms > 0 ? o->max_p99_latency_ms : DEFAULT_GUARD_MS;

	memset((char *) c + offsetof(struct adaptive, win_start), 0,
	       sizeof(*c) - offsetof(struct adaptive, win_start));
	c->enabled = !o->disable_adaptive;
	c->max_limit = queue_depth;
	c->min_limit = o->min_in_flight > 0 ? MIN((uint32_t) o->min_in_flight, queue_depth) : 1;
	start = o->initial_in_flight > 0 ? (uint32_t) o->initial_in_flight
					 : (c->enabled ? ADAPTIVE_START : queue_depth);
	start = clamp_u32(start, c->min_limit, c->max_limit);
	/* Saturate: converting a double beyond UINT64_MAX is undefined, and on x86-64 gives
	 * 0 - a guard every request exceeds. Too large to count (or INFINITY) = no guard. */
	c->guard_ns = guard_ms * 1e6 < 0x1p64 ? (uint64_t) (guard_ms * 1e6) : UINT64_MAX;
	c->ceiling_hold = CEILING_HOLD;
	atomic_init(&c->limit, start);
	atomic_init(&c->batch_threshold, c->enabled ? 1 : fixed_batch(start));
	atomic_init(&c->phase, c->enabled ? AURAIO_PHASE_PROBE : AURAIO_PHASE_FIXED);
	atomic_init(&c->rep_window_ns, 0);
	atomic_init(&c->rep_p99_ns, 0);
	atomic_init(&c->rep_iops, 0);
}

/* ---- window statistics ---- */

static double whist_quantile(const struct adaptive *c, double q)
{
	double rank = q * c->win_n, seen = 0;

	for (unsigned b = 0; b < WHIST_BUCKETS; b++) {
		double n = c->whist[b];
		unsigned g = b / WHIST_SUB, sub = b % WHIST_SUB;
		double low, width;

		if (n == 0 || seen + n < rank) {
			seen += n;
			continue;
		}
		if (g == 0) {
			low = sub;
			width = 1;
		} else {
			unsigned msb = g + 2;

			low = (double) (1ull << msb) + (double) ((uint64_t) sub << (msb - 3));
			width = (double) (1ull << (msb - 3));
		}
		return (low + width * ((rank - seen) / n)) * (1 << WHIST_SHIFT);
	}
	return 0;
}

bool adaptive_guard_test(uint32_t n, uint32_t k)
{
	double lambda = n * GUARD_TAIL, lp, cdf = 0;

	if (n < WINDOW_MIN_SAMPLES || k == 0)
		return false;
	if (lambda > 100) { /* normal approximation, continuity-corrected */
		double z = (k - 0.5 - lambda) / sqrt(lambda * (1 - GUARD_TAIL));

		return z > 1.6449; /* one-sided 5 % */
	}
	/* exact binomial: P(X >= k) = 1 - sum_{i<k} pmf(i), pmf in log space. Once
	 * P(X >= i + 1) is below alpha, P(X >= k) (k >= i + 1) is too: stop early. */
	lp = n * log1p(-GUARD_TAIL);
	for (uint32_t i = 0; i < k; i++) {
		cdf += exp(lp);
		if (1 - cdf < GUARD_ALPHA)
			return true;
		lp += log((double) (n - i) / (i + 1)) + log(GUARD_TAIL / (1 - GUARD_TAIL));
	}
	return false;
}

static void window_reset(struct adaptive *c)
{
	c->last_n = c->win_n;
	c->win_n = 0;
	c->win_over = 0;
	c->win_lat_sum = 0;
	memset(c->whist, 0, sizeof(c->whist));
}

/* ---- the limit ---- */

static void set_limit(struct adaptive *c, uint32_t limit)
{
	limit = clamp_u32(limit, c->min_limit, c->max_limit);
	atomic_store_explicit(&c->limit, limit, memory_order_relaxed);
	/* keep the batch threshold within its bound */
	if (adaptive_batch_threshold(c) > max_batch(limit))
		atomic_store_explicit(&c->batch_threshold, max_batch(limit), memory_order_relaxed);
}

static void set_phase(struct adaptive *c, auraio_phase_t p)
{
	atomic_store_explicit(&c->phase, p, memory_order_relaxed);
}

/* At most 1/8 of the limit (12.5 %), at least 1. */
static uint32_t step(uint32_t limit)
{
	return MAX(1u, limit / 8);
}

static uint32_t cap(const struct adaptive *c)
{
	return c->ceiling ? MIN(c->ceiling, c->max_limit) : c->max_limit;
}

static void probe_reset(struct adaptive *c)
{
	c->nprobe = 0;
	c->prev_limit = 0;
	c->nongain = 0;
	c->descending = false;
}

static void probe_record(struct adaptive *c, uint32_t limit, double iops)
{
	for (int i = 0; i < c->nprobe; i++) {
		if (c->probe[i].limit == limit) {
			c->probe[i].iops = MAX(c->probe[i].iops, iops);
			return;
		}
	}
	if (c->nprobe < PROBE_MAX)
		c->probe[c->nprobe++] = (struct probe_point){ limit, iops };
}

/* The smallest limit of this probe within KNEE_FRACTION of its best throughput. */
static struct probe_point probe_knee(const struct adaptive *c)
{
	struct probe_point knee = { adaptive_limit(c), 0 };
	double best = 0;

	for (int i = 0; i < c->nprobe; i++)
		best = MAX(best, c->probe[i].iops);
	for (int i = 0; i < c->nprobe; i++)
		if (c->probe[i].iops >= KNEE_FRACTION * best &&
		    (knee.iops == 0 || c->probe[i].limit < knee.limit))
			knee = c->probe[i];
	return knee;
}

/* Lower (or keep) the limit; a lower limit leaves excess requests in flight, so the next
 * window is drained (discarded) before `next` begins. */
static void move_to(struct adaptive *c, uint32_t limit, auraio_phase_t drain, auraio_phase_t next)
{
	uint32_t old = adaptive_limit(c);

	set_limit(c, limit);
	if (adaptive_limit(c) < old) {
		c->after_drain = next;
		set_phase(c, drain);
	} else {
		set_phase(c, next);
	}
}

static void settle(struct adaptive *c)
{
	struct probe_point knee = probe_knee(c);

	if (!c->exploring || knee.limit < adaptive_limit(c))
		c->ceiling_hold = CEILING_HOLD; /* a probe ended without a violation */
	c->exploring = false;
	c->ref_iops = knee.iops;
	c->change_count = 0;
	c->steady_windows = 0;
	move_to(c, knee.limit, AURAIO_PHASE_DRAIN, AURAIO_PHASE_STEADY);
}

/* The P99 guard fired: cut multiplicatively and hold a ceiling for a while. */
static void cut(struct adaptive *c)
{
	uint32_t limit = adaptive_limit(c);

	if (c->exploring) /* the step above the knee broke the guard again: wait longer */
		c->ceiling_hold = MIN(c->ceiling_hold * 2, CEILING_HOLD_MAX);
	c->exploring = false;
	c->ceiling = limit > c->min_limit ? limit - 1 : c->min_limit;
	c->ceiling_left = c->ceiling_hold;
	probe_reset(c);
	set_limit(c, (uint32_t) (limit * BETA));
	c->after_drain = AURAIO_PHASE_PROBE;
	set_phase(c, AURAIO_PHASE_BACKOFF);
}

/*
 * One PROBE window at the current limit. The base is the last limit whose step was a
 * gain (or where the probe began). A gain makes the current limit the base and steps up;
 * a non-gain holds the limit and measures again, so a probe never goes more than one
 * step past the knee; two non-gains in a row end the probe at the knee.
 */
static void probe_window(struct adaptive *c, double iops)
{
	uint32_t limit = adaptive_limit(c);
	bool gain = true;

	probe_record(c, limit, iops);
	if (c->descending) {
		/* still as fast with half the depth: the knee is lower yet */
		if (iops >= KNEE_FRACTION * c->prev_iops && limit > c->min_limit) {
			c->prev_limit = limit;
			c->prev_iops = iops;
			move_to(c, limit / 2, AURAIO_PHASE_DRAIN, AURAIO_PHASE_PROBE);
			return;
		}
		c->descending = false; /* depth matters here: climb from this base */
		c->prev_limit = limit;
		c->prev_iops = iops;
		c->nongain = 0;
		if (limit < cap(c))
			set_limit(c, MIN(cap(c), limit + step(limit)));
		return;
	}
	if (c->prev_limit && limit > c->prev_limit && c->prev_iops > 0) {
		double expected = (double) limit / c->prev_limit - 1;

		/* at least half the ideal gain, and clear of the window-to-window noise
		 * measured while steady (0 before the first steady window) */
		gain = iops / c->prev_iops - 1 >=
		       MAX(GAIN_FRACTION * expected, NOISE_MULTIPLE * c->noise);
	} else if (c->prev_limit) {
		gain = false; /* no room to step: the climb is over */
	}
	if (gain) {
		c->nongain = 0;
		c->prev_limit = limit;
		c->prev_iops = iops;
		if (limit < cap(c)) {
			set_limit(c, MIN(cap(c), limit + step(limit)));
			return;
		}
	}
	if (!gain && ++c->nongain < PLATEAU_WINDOWS)
		return; /* measure this limit once more */
	settle(c);
}

/* Re-probe after a change: first descend (halving while throughput holds), then climb.
 * A probe that only climbs could not find a knee that moved down. */
static void reprobe(struct adaptive *c, double iops)
{
	uint32_t limit = adaptive_limit(c);

	probe_reset(c);
	c->exploring = false;
	c->descending = limit > c->min_limit;
	c->prev_limit = limit;
	c->prev_iops = iops;
	probe_record(c, limit, iops);
	if (c->descending)
		move_to(c, limit / 2, AURAIO_PHASE_DRAIN, AURAIO_PHASE_PROBE);
	else
		set_phase(c, AURAIO_PHASE_PROBE);
}

static void steady_window(struct adaptive *c, double iops, uint64_t now)
{
	uint32_t limit = adaptive_limit(c);

	c->steady_windows++;
	if (fabs(iops - c->ref_iops) > CHANGE_FRACTION * c->ref_iops) {
		if (c->change_count++ == 0)
			c->change_since = now;
		/* a sustained shift (3 windows and 100 ms), not a hiccup: the device or its
		 * competition changed */
		if (c->change_count >= CHANGE_WINDOWS && now - c->change_since >= CHANGE_MIN_NS)
			reprobe(c, iops);
		return;
	}
	c->change_count = 0;
	if (c->ref_iops > 0) /* a reference of 0 (and 0 measured) says nothing of noise */
		c->noise += REF_WEIGHT * (fabs(iops - c->ref_iops) / c->ref_iops - c->noise);
	c->ref_iops += REF_WEIGHT * (iops - c->ref_iops);
	if (c->steady_windows >= EXPLORE_EVERY && limit < cap(c)) {
		probe_reset(c);
		probe_record(c, limit, c->ref_iops);
		c->prev_limit = limit;
		c->prev_iops = c->ref_iops;
		c->exploring = true;
		c->steady_windows = 0;
		set_limit(c, MIN(cap(c), limit + step(limit)));
		set_phase(c, AURAIO_PHASE_PROBE);
	}
}

/* ---- the batch threshold (inner loop) ---- */

static void batch_window(struct adaptive *c, const struct adaptive_inputs *in, bool saturated,
			 double mean_lat_ns)
{
	uint64_t enters = in->syscalls - c->last.syscalls, sqes = in->sqes - c->last.sqes;
	uint64_t batches = in->batches - c->last.batches;
	uint64_t waited = in->batch_wait_ns - c->last.batch_wait_ns;
	uint32_t b = adaptive_batch_threshold(c);

	if (batches && (double) waited / batches > BATCH_DELAY_FRAC * mean_lat_ns)
		b = MAX(1u, b / 2);
	else if (saturated && enters && (double) sqes / enters < BATCH_MIN_PER_ENTER)
		b++;
	b = clamp_u32(b, 1, max_batch(adaptive_limit(c)));
	atomic_store_explicit(&c->batch_threshold, b, memory_order_relaxed);
}

/* ---- the window ---- */

static void report(struct adaptive *c, uint64_t dt, double iops)
{
	atomic_store_explicit(&c->rep_window_ns, dt, memory_order_relaxed);
	atomic_store_explicit(&c->rep_p99_ns, (uint64_t) whist_quantile(c, 0.99),
			      memory_order_relaxed);
	atomic_store_explicit(&c->rep_iops, (uint64_t) iops, memory_order_relaxed);
}

static void decide(struct adaptive *c, double iops, bool saturated, uint64_t now)
{
	auraio_phase_t phase = adaptive_phase(c);

	if (c->ceiling_left && --c->ceiling_left == 0)
		c->ceiling = 0;
	if (phase == AURAIO_PHASE_DRAIN || phase == AURAIO_PHASE_BACKOFF) {
		set_phase(c, (auraio_phase_t) c->after_drain);
		return;
	}
	if (adaptive_guard_test(c->win_n, c->win_over) && whist_quantile(c, 0.99) > c->guard_ns) {
		cut(c);
		return;
	}
	if (!saturated)
		return; /* demand-limited: says nothing about the device */
	if (phase == AURAIO_PHASE_PROBE)
		probe_window(c, iops);
	else
		steady_window(c, iops, now);
}

/*
 * The window's throughput. Its clock starts at the pass that opened it, and that pass's
 * completions happened before then: they are not part of the rate, only the ones reaped
 * after it are (with one completion per pass, as in the simulation, this is the usual
 * n - 1 events over the time from the first to the last).
 */
static double window_iops(const struct adaptive *c, uint64_t dt)
{
	uint32_t after = c->win_n > c->win_first_n ? c->win_n - c->win_first_n : 0;

	return (double) after * 1e9 / (double) dt;
}

void adaptive_close_window(struct adaptive *c, uint64_t now, const struct adaptive_inputs *in)
{
	uint64_t dt = now > c->win_start ? now - c->win_start : 1;
	double iops = window_iops(c, dt);
	double mean_lat = c->win_n ? (double) c->win_lat_sum / c->win_n : 0;
	bool saturated = in->eagain > c->last.eagain || in->peak_in_flight >= adaptive_limit(c);

	report(c, dt, iops);
	if (c->enabled) {
		batch_window(c, in, saturated, mean_lat);
		decide(c, iops, saturated, now);
	}
	c->last = *in;
	window_reset(c);
}

void adaptive_fill_stats(const struct adaptive *c, auraio_ring_stats_t *s)
{
	s->phase = adaptive_phase(c);
	s->window_ms = (uint32_t) (atomic_load_explicit(&c->rep_window_ns, memory_order_relaxed) /
				   NSEC_PER_MSEC);
	s->window_p99_us =
	    (double) atomic_load_explicit(&c->rep_p99_ns, memory_order_relaxed) / 1e3;
	s->window_iops = (double) atomic_load_explicit(&c->rep_iops, memory_order_relaxed);
}
