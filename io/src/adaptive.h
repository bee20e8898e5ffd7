/* SPDX-License-Identifier: MIT */
/*
 * adaptive.h - a ring's concurrency controller: the in-flight limit and the submit batch
 * threshold. The hot state sits alone in its own cache line, read on every submission
 * through the static inline getters; the statistics the controller decides from live in
 * separate lines.
 *
 * Invariant: 1 <= batch_threshold <= limit <= queue_depth.
 */
#ifndef AURAIO_ADAPTIVE_H
#define AURAIO_ADAPTIVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auraio.h"
#include "internal.h"

struct adaptive {
	/* hot line: written by the controller, read by every submitter */
	_Atomic uint32_t limit cache_aligned;
	_Atomic uint32_t batch_threshold;
	_Atomic uint32_t phase; /* auraio_phase_t */
	uint32_t min_limit;
	uint32_t max_limit;
	bool enabled;
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

/* Resolve the options into a controller for a ring of queue_depth slots. */
void adaptive_init(struct adaptive *c, const auraio_options_t *o, uint32_t queue_depth);

/* Controller fields of the ring stats (phase, window, window P99/IOPS). */
void adaptive_fill_stats(const struct adaptive *c, auraio_ring_stats_t *s);

/* cq_lock held: `n` completions were just accounted at time `now`. */
static inline void adaptive_on_batch(struct adaptive *c, uint32_t n, uint64_t now)
{
	(void) c;
	(void) n;
	(void) now;
}

#endif
