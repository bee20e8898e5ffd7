/* SPDX-License-Identifier: MIT */
/*
 * trace.c - the time series of a run, sampled every TRACE_TICK_MS by the main thread:
 * IOPS (every completion counted), the P99 of the completions of that interval (from
 * the jobs' histograms), and the engine's controller state (in-flight limit and batch
 * threshold summed over rings, the controller's last window P99, ring 0's phase).
 *
 * --trace FILE writes it as CSV (bench/plot_trace.py draws it); --adaptive prints the
 * converged limit and the trajectory (every change of limit or phase) at the end.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iobench.h"

struct trace_point {
	double t;	   /* seconds since the measured interval began */
	double iops;	   /* completions per second over the interval */
	double p99_us;	   /* P99 of this interval's completions */
	double win_p99_us; /* the controller's last window P99 (max over rings) */
	unsigned limit;	   /* in-flight limit, summed over rings */
	unsigned batch;	   /* batch threshold, summed over rings */
	int phase;	   /* ring 0's controller phase */
};

struct trace {
	FILE *f;
	struct trace_point *pts;
	size_t n, cap;
	struct lat_summary prev; /* cumulative histogram at the previous sample */
	double prev_t;
};

int trace_begin(struct bench *b)
{
	struct trace *tr;

	if (!b->cfg.trace && !b->cfg.adaptive)
		return 0;
	tr = calloc(1, sizeof(*tr));
	if (!tr)
		return -ENOMEM;
	if (b->cfg.trace) {
		tr->f = strcmp(b->cfg.trace, "-") == 0 ? stdout : fopen(b->cfg.trace, "w");
		if (!tr->f) {
			int err = -errno;

			fprintf(stderr, "iobench: %s: %s\n", b->cfg.trace, auraio_strerror(err));
			free(tr);
			return err;
		}
		fprintf(tr->f, "time_s,iops,p99_us,window_p99_us,limit,batch_threshold,phase\n");
	}
	b->trace = tr;
	return 0;
}

/* The engine's controller state, summed over rings (limit, batch) or taken at the ring
 * that shows the most (window P99). */
static void engine_state(struct bench *b, struct trace_point *p)
{
	int rings = b->engine ? auraio_ring_count(b->engine) : 0;

	p->limit = rings > 0 ? 0 : (unsigned) (b->cfg.qd * b->cfg.threads);
	for (int i = 0; i < rings; i++) {
		auraio_ring_stats_t rs;

		if (auraio_get_ring_stats(b->engine, i, &rs) != 0)
			continue;
		p->limit += rs.in_flight_limit;
		p->batch += rs.batch_threshold;
		if (rs.window_p99_us > p->win_p99_us)
			p->win_p99_us = rs.window_p99_us;
		if (i == 0)
			p->phase = (int) rs.phase;
	}
}

void trace_sample(struct bench *b, double t)
{
	struct trace *tr = b->trace;
	struct trace_point p = { .t = t };
	struct lat_summary now, delta;

	if (!tr)
		return;
	memset(&now, 0, sizeof(now));
	for (int i = 0; i < b->cfg.threads; i++)
		hist_merge(&now, &b->jobs[i].hist);
	memset(&delta, 0, sizeof(delta));
	delta.max_ns = now.max_ns; /* only caps percentiles: the run's maximum will do */
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		delta.count[i] = now.count[i] - tr->prev.count[i];
		delta.n += delta.count[i];
	}
	p.iops = t > tr->prev_t ? (double) delta.n / (t - tr->prev_t) : 0;
	p.p99_us = hist_percentile(&delta, 99) / 1e3;
	engine_state(b, &p);
	tr->prev = now;
	tr->prev_t = t;
	if (tr->f)
		fprintf(tr->f, "%.3f,%.0f,%.1f,%.1f,%u,%u,%s\n", p.t, p.iops, p.p99_us,
			p.win_p99_us, p.limit, p.batch,
			auraio_phase_name((auraio_phase_t) p.phase));
	if (tr->n == tr->cap) {
		size_t cap = tr->cap ? tr->cap * 2 : 256;
		struct trace_point *pts = realloc(tr->pts, cap * sizeof(*pts));

		if (!pts)
			return; /* the CSV keeps everything; the summary loses the tail */
		tr->pts = pts;
		tr->cap = cap;
	}
	tr->pts[tr->n++] = p;
}

void trace_end(struct bench *b)
{
	if (b->trace && b->trace->f && b->trace->f != stdout)
		fclose(b->trace->f);
	if (b->trace)
		b->trace->f = NULL;
}

/* --adaptive: the converged limit (median of the last quarter) and the trajectory. */
void trace_print_trajectory(struct bench *b, FILE *out)
{
	struct trace *tr = b->trace;
	unsigned *v, last_limit = 0, m = 0;
	size_t from, k = 0;
	int last_phase = -1;

	if (!tr || tr->n == 0 || !b->cfg.adaptive)
		return;
	from = tr->n - (tr->n + 3) / 4;
	v = calloc(tr->n - from, sizeof(*v));
	for (size_t i = from; v && i < tr->n; i++, k++) {
		size_t j = k;

		while (j > 0 && v[j - 1] > tr->pts[i].limit) { /* insertion sort: small */
			v[j] = v[j - 1];
			j--;
		}
		v[j] = tr->pts[i].limit;
	}
	if (v && k)
		m = v[k / 2];
	free(v);
	fprintf(out, "    adaptive: converged in-flight limit %u (median of the last quarter)\n",
		m);
	fprintf(out, "    trajectory (time: limit phase), at every change:\n");
	for (size_t i = 0, shown = 0; i < tr->n && shown < 60; i++) {
		if (tr->pts[i].limit == last_limit && tr->pts[i].phase == last_phase)
			continue;
		fprintf(out, "      %7.2fs: %4u %s\n", tr->pts[i].t, tr->pts[i].limit,
			auraio_phase_name((auraio_phase_t) tr->pts[i].phase));
		last_limit = tr->pts[i].limit;
		last_phase = tr->pts[i].phase;
		shown++;
	}
}

void trace_free(struct bench *b)
{
	if (!b->trace)
		return;
	trace_end(b);
	free(b->trace->pts);
	free(b->trace);
	b->trace = NULL;
}
