/* SPDX-License-Identifier: MIT */
/*
 * sim_device.h - a simulated storage device with a controllable clock, to test the
 * adaptive controller deterministically (a real disk is far too noisy to assert on).
 *
 * The device has `servers` parallel service slots and a FIFO queue in front of them.
 * A request's service time is drawn when it starts service:
 *     service_ns * (1 + per_inflight * in_flight) * spike * jitter
 * where jitter is uniform in [1 - jitter, 1 + jitter], and spike is spike_factor while
 * the simulated clock is inside [spike_start, spike_end). So:
 *   - knee:      servers = K, per_inflight = 0 -> throughput rises linearly to depth K,
 *                then only latency grows (queueing);
 *   - latency that grows with depth: per_inflight > 0 and many servers;
 *   - a P99 spike: spike_factor over a time interval;
 *   - a slow rotating disk: ~100 IOPS (e.g. 8 servers at 80 ms).
 *
 * The application is closed-loop and always has more work than the limit allows: after
 * every completion it refills to the controller's current limit, and each refill counts
 * as one refused (EAGAIN) submission, exactly the signal the engine hands the controller.
 * The simulation feeds the controller the same calls the engine makes:
 * adaptive_sample() per completion and adaptive_close_window() when a window is due.
 */
#ifndef AURA_SIM_DEVICE_H
#define AURA_SIM_DEVICE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adaptive.h"

struct sim_profile {
	unsigned servers;
	uint64_t service_ns;
	double per_inflight;
	double jitter;
	uint64_t spike_start, spike_end;
	double spike_factor;
	unsigned demand; /* requests the application keeps outstanding; 0 = more than any limit */
};

/* One closed window, as the controller saw it. */
struct sim_window {
	uint64_t t;	/* when it closed */
	uint32_t n;	/* samples it held */
	uint32_t limit; /* limit after the decision */
	uint32_t batch;
	auraio_phase_t phase;
};

#define SIM_MAX_INFLIGHT 4096
#define SIM_MAX_WINDOWS	 200000

struct sim {
	struct sim_profile p;
	struct adaptive *c;
	uint64_t now;
	uint64_t rng;
	/* requests in service: a min-heap on finish time */
	uint64_t heap_finish[SIM_MAX_INFLIGHT], heap_submit[SIM_MAX_INFLIGHT];
	unsigned nheap;
	/* requests waiting for a server: FIFO of submit times */
	uint64_t queue[SIM_MAX_INFLIGHT];
	unsigned qhead, qlen;
	unsigned in_flight;
	struct adaptive_inputs in;
	struct sim_window *w;
	unsigned nw;
};

static inline double sim_rand(struct sim *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double) ((s->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static inline void sim_heap_push(struct sim *s, uint64_t finish, uint64_t submit)
{
	unsigned i = s->nheap++;

	while (i > 0 && s->heap_finish[(i - 1) / 2] > finish) {
		s->heap_finish[i] = s->heap_finish[(i - 1) / 2];
		s->heap_submit[i] = s->heap_submit[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap_finish[i] = finish;
	s->heap_submit[i] = submit;
}

static inline void sim_heap_pop(struct sim *s, uint64_t *finish, uint64_t *submit)
{
	uint64_t lf = s->heap_finish[--s->nheap], ls = s->heap_submit[s->nheap];
	unsigned i = 0;

	*finish = s->heap_finish[0];
	*submit = s->heap_submit[0];
	for (;;) {
		unsigned c = 2 * i + 1;

		if (c >= s->nheap)
			break;
		if (c + 1 < s->nheap && s->heap_finish[c + 1] < s->heap_finish[c])
			c++;
		if (s->heap_finish[c] >= lf)
			break;
		s->heap_finish[i] = s->heap_finish[c];
		s->heap_submit[i] = s->heap_submit[c];
		i = c;
	}
	if (s->nheap) {
		s->heap_finish[i] = lf;
		s->heap_submit[i] = ls;
	}
}

static inline uint64_t sim_service(struct sim *s)
{
	double t = (double) s->p.service_ns * (1 + s->p.per_inflight * s->in_flight);

	if (s->now >= s->p.spike_start && s->now < s->p.spike_end)
		t *= s->p.spike_factor;
	t *= 1 + s->p.jitter * (2 * sim_rand(s) - 1);
	return (uint64_t) (t < 1 ? 1 : t);
}

static inline void sim_start_service(struct sim *s, uint64_t submit)
{
	sim_heap_push(s, s->now + sim_service(s), submit);
}

static inline void sim_submit(struct sim *s)
{
	s->in_flight++;
	if (s->in_flight > s->in.peak_in_flight)
		s->in.peak_in_flight = s->in_flight;
	if (s->nheap < s->p.servers)
		sim_start_service(s, s->now);
	else
		s->queue[(s->qhead + s->qlen++) % SIM_MAX_INFLIGHT] = s->now;
}

/* The application refills to what it wants, capped by the limit; wanting more than the
 * limit allows is a refused (EAGAIN) submission. */
static inline void sim_refill(struct sim *s)
{
	unsigned want = s->p.demand ? s->p.demand : SIM_MAX_INFLIGHT;
	unsigned sent = 0;

	while (s->in_flight < adaptive_limit(s->c) && s->in_flight < want) {
		sim_submit(s);
		sent++;
	}
	if (want > adaptive_limit(s->c))
		s->in.eagain++;
	if (sent) {
		s->in.syscalls++;
		s->in.sqes += sent;
		s->in.batches++;
	}
}

static inline void sim_init(struct sim *s, struct adaptive *c, const struct sim_profile *p,
			    uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->p = *p;
	if (s->p.spike_factor == 0)
		s->p.spike_factor = 1;
	s->c = c;
	s->rng = seed | 1;
	s->w = calloc(SIM_MAX_WINDOWS, sizeof(*s->w));
	sim_refill(s);
}

static inline void sim_fini(struct sim *s)
{
	free(s->w);
}

/* Run until the simulated clock passes `until`. */
static inline void sim_run(struct sim *s, uint64_t until)
{
	while (s->now < until && s->nheap > 0) {
		uint64_t finish, submit;

		sim_heap_pop(s, &finish, &submit);
		s->now = finish;
		s->in_flight--;
		adaptive_sample(s->c, finish - submit, s->now);
		while (s->qlen && s->nheap < s->p.servers) { /* a server is free */
			uint64_t q = s->queue[s->qhead];

			s->qhead = (s->qhead + 1) % SIM_MAX_INFLIGHT;
			s->qlen--;
			sim_start_service(s, q);
		}
		if (adaptive_window_due(s->c, s->now)) {
			adaptive_close_window(s->c, s->now, &s->in);
			s->in.peak_in_flight = s->in_flight;
			if (s->nw < SIM_MAX_WINDOWS)
				s->w[s->nw++] =
				    (struct sim_window){ s->now, s->c->last_n, adaptive_limit(s->c),
							 adaptive_batch_threshold(s->c),
							 adaptive_phase(s->c) };
		}
		sim_refill(s);
	}
}

/* The limit in force at simulated time t (after the last window closed before t). */
static inline uint32_t sim_limit_at(const struct sim *s, uint64_t t)
{
	uint32_t limit = 0;

	for (unsigned i = 0; i < s->nw && s->w[i].t <= t; i++)
		limit = s->w[i].limit;
	return limit;
}

#endif
