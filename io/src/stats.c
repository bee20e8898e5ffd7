/* SPDX-License-Identifier: MIT */
/*
 * stats.c - copying counters out. Readers take no ring lock for counters (all relaxed
 * atomics written by a single lock holder); registration state is read under the
 * sq_locks because registry.c changes it under them.
 */
#include <errno.h>
#include <string.h>

#include "buffer_pool.h"
#include "engine.h"

static void ring_counters(struct ring *r, auraio_ring_stats_t *s)
{
	memset(s, 0, sizeof(*s));
	s->ops_submitted = atomic_load_explicit(&r->submitted, memory_order_relaxed);
	s->ops_completed = atomic_load_explicit(&r->completed, memory_order_relaxed);
	s->bytes_read = counter_get(&r->bytes_read);
	s->bytes_written = counter_get(&r->bytes_written);
	s->errors = counter_get(&r->errors);
	s->syscalls = counter_get(&r->syscalls);
	s->sqes_submitted = counter_get(&r->sqes);
	s->eagain = counter_get(&r->eagain);
	s->stale_completions = counter_get(&r->stale);
	s->in_flight =
	    (uint32_t) (s->ops_submitted >= s->ops_completed ? s->ops_submitted - s->ops_completed
							     : 0);
	s->in_flight_limit = adaptive_limit(&r->ctl);
	s->batch_threshold = adaptive_batch_threshold(&r->ctl);
	s->queue_depth = r->queue_depth;
	adaptive_fill_stats(&r->ctl, s);
}

static void fill_latency(auraio_ring_stats_t *s, const struct hist_snapshot *h)
{
	s->p50_us = hist_quantile(h, 0.50) / 1e3;
	s->p99_us = hist_quantile(h, 0.99) / 1e3;
	s->p999_us = hist_quantile(h, 0.999) / 1e3;
	s->max_us = (double) h->max_ns / 1e3;
}

AURAIO_API int auraio_get_ring_stats(auraio_engine_t *e, int ring, auraio_ring_stats_t *out)
{
	struct hist_snapshot h;

	if (!e || !out || ring < 0 || (unsigned) ring >= e->ring_count)
		return -EINVAL;
	ring_counters(&e->rings[ring], out);
	hist_snapshot(&e->rings[ring].hist, &h);
	fill_latency(out, &h);
	return 0;
}

static void add_ring(auraio_ring_stats_t *t, const auraio_ring_stats_t *s)
{
	t->ops_submitted += s->ops_submitted;
	t->ops_completed += s->ops_completed;
	t->bytes_read += s->bytes_read;
	t->bytes_written += s->bytes_written;
	t->errors += s->errors;
	t->syscalls += s->syscalls;
	t->sqes_submitted += s->sqes_submitted;
	t->eagain += s->eagain;
	t->stale_completions += s->stale_completions;
	t->in_flight += s->in_flight;
	t->in_flight_limit += s->in_flight_limit;
	t->batch_threshold += s->batch_threshold;
	t->queue_depth += s->queue_depth;
}

static void registration_state(struct auraio_engine *e, auraio_stats_t *out)
{
	engine_take_all_sq_locks(e);
	out->buffers_registered = e->bufs.n > 0 && e->bufs.kernel;
	memcpy(out->buffers_reason, e->bufs.reason, sizeof(out->buffers_reason));
	out->files_registered = (int) e->files.nslots;
	engine_drop_all_sq_locks(e);
}

AURAIO_API int auraio_get_stats(auraio_engine_t *e, auraio_stats_t *out)
{
	struct hist_snapshot all, one;

	if (!e || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&all, 0, sizeof(all));
	for (unsigned i = 0; i < e->ring_count; i++) {
		auraio_ring_stats_t s;

		ring_counters(&e->rings[i], &s);
		if (i == 0) {
			out->total.phase = s.phase;
			out->total.window_ms = s.window_ms;
			out->total.window_p99_us = s.window_p99_us;
		}
		out->total.window_iops += s.window_iops;
		add_ring(&out->total, &s);
		out->orphans_resubmitted += counter_get(&e->rings[i].resubmitted);
		hist_snapshot(&e->rings[i].hist, &one);
		hist_snapshot_merge(&all, &one);
	}
	fill_latency(&out->total, &all);
	out->ring_count = (int) e->ring_count;
	out->backend = e->backend;
	memcpy(out->backend_reason, e->backend_reason, sizeof(out->backend_reason));
	out->sqpoll_active = e->sqpoll_active;
	out->coop_taskrun = e->coop_taskrun;
	registration_state(e, out);
	out->buffer_pool_bytes = buffer_pool_bytes(e->pool);
	out->faults_injected = counter_get(&e->faults_injected);
	return 0;
}
