/* SPDX-License-Identifier: MIT */
/*
 * adaptive.c - resolving the concurrency options into a ring's controller.
 * The limit is fixed at initial_in_flight (default queue_depth); the batch threshold is a
 * quarter of the limit, at most 16, so a batch never holds back more than a fraction of
 * what may be in flight.
 */
#include "adaptive.h"

void adaptive_init(struct adaptive *c, const auraio_options_t *o, uint32_t queue_depth)
{
	uint32_t limit = queue_depth;
	uint32_t batch;

	if (o->initial_in_flight > 0 && (uint32_t) o->initial_in_flight < queue_depth)
		limit = (uint32_t) o->initial_in_flight;
	c->max_limit = queue_depth;
	c->min_limit = o->min_in_flight > 0 ? MIN((uint32_t) o->min_in_flight, queue_depth) : 1;
	limit = MAX(limit, c->min_limit);
	batch = MAX(1u, MIN(limit / 4, 16u));
	c->enabled = false;
	atomic_init(&c->limit, limit);
	atomic_init(&c->batch_threshold, batch);
	atomic_init(&c->phase, AURAIO_PHASE_FIXED);
}

void adaptive_fill_stats(const struct adaptive *c, auraio_ring_stats_t *s)
{
	s->phase = adaptive_phase(c);
	s->window_ms = 0;
	s->window_p99_us = 0;
	s->window_iops = 0;
}
