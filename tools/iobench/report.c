/* SPDX-License-Identifier: MIT */
/*
 * report.c - turning a finished run into numbers: a fio-like human summary (stdout, or
 * stderr when the JSON or the trace goes to stdout) and the JSON object of --json.
 * Reads the jobs only after their threads were joined.
 */
#include <string.h>

#include "iobench.h"
#include "reportfmt.h"

struct results {
	struct lat_summary lat;
	uint64_t ios;
	double iops, mbps, mean_us, p50_us, p99_us, p999_us, max_us, cpu_us_per_io;
	/* submission cost: kernel entries and SQEs per entry over the measured interval */
	uint64_t syscalls, sqes;
	unsigned in_flight_limit;
	const char *backend;
	bool sqpoll, coop, defer;
};

static const char *rw_name(const struct bench_config *c)
{
	if (c->random)
		return c->is_write ? "randwrite" : "randread";
	return c->is_write ? "write" : "read";
}

static const char *backend_name(auraio_backend_t be)
{
	return be == AURAIO_BACKEND_THREADS ? "threads" : "io_uring";
}

static void engine_counters(struct bench *b, struct results *r)
{
	if (b->cfg.engine == ENGINE_AURAIO) {
		r->syscalls = b->st_end.total.syscalls - b->st_begin.total.syscalls;
		r->sqes = b->st_end.total.sqes_submitted - b->st_begin.total.sqes_submitted;
		r->in_flight_limit = b->st_end.total.in_flight_limit;
		r->backend = backend_name(b->st_end.backend);
		r->sqpoll = b->st_end.sqpoll_active;
		r->coop = b->st_end.coop_taskrun;
		return;
	}
	for (int i = 0; i < b->cfg.threads; i++) {
		r->syscalls += b->jobs[i].enters;
		r->sqes += b->jobs[i].sqes;
	}
	r->in_flight_limit = (unsigned) (b->cfg.qd * b->cfg.threads);
	r->backend = "liburing";
	r->sqpoll = b->uring_sqpoll;
	r->coop = b->uring_coop;
	r->defer = b->uring_defer;
}

static void compute(struct bench *b, struct results *r)
{
	double s = b->measured_s > 0 ? b->measured_s : 1e-9;

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < b->cfg.threads; i++)
		hist_merge(&r->lat, &b->jobs[i].hist);
	r->ios = r->lat.n;
	r->iops = (double) r->ios / s;
	r->mbps = (double) r->ios * (double) b->cfg.bs / 1e6 / s;
	r->mean_us = r->ios ? (double) r->lat.sum_ns / (double) r->ios / 1e3 : 0;
	r->p50_us = hist_percentile(&r->lat, 50.0) / 1e3;
	r->p99_us = hist_percentile(&r->lat, 99.0) / 1e3;
	r->p999_us = hist_percentile(&r->lat, 99.9) / 1e3;
	r->max_us = (double) r->lat.max_ns / 1e3;
	r->cpu_us_per_io = r->ios ? b->cpu_s * 1e6 / (double) r->ios : 0;
	engine_counters(b, r);
}

static void print_human(struct bench *b, const struct results *r, FILE *out)
{
	const struct bench_config *c = &b->cfg;
	char iops[32];

	fprintf(out,
		"iobench: engine=%s rw=%s bs=%llu qd=%d%s threads=%d%s%s%s%s file=%s (%llu MiB)\n",
		c->engine == ENGINE_AURAIO ? "auraio" : "liburing", rw_name(c),
		(unsigned long long) c->bs, c->qd, c->adaptive ? " (adaptive)" : "", c->threads,
		c->direct ? " direct" : "", c->reg_files ? " registered-files" : "",
		c->reg_bufs ? " registered-buffers" : "", c->sqpoll ? " sqpoll" : "", c->file,
		(unsigned long long) (b->nblocks * c->bs >> 20));
	fprintf(out, "  %s: IOPS=%s, BW=%.1fMiB/s (%.1fMB/s) (%llu ios in %.2fs)\n",
		c->is_write ? "write" : "read", human_count(r->iops, iops, sizeof(iops)),
		r->mbps * 1e6 / 1048576.0, r->mbps, (unsigned long long) r->ios, b->measured_s);
	fprintf(out, "    lat (usec): mean=%.1f, p50=%.1f, p99=%.1f, p99.9=%.1f, max=%.1f\n",
		r->mean_us, r->p50_us, r->p99_us, r->p999_us, r->max_us);
	fprintf(out, "    cpu: %.2f us/io (user+sys %.2fs)\n", r->cpu_us_per_io, b->cpu_s);
	fprintf(out, "    %s: syscalls=%llu (%.3f/io), SQEs/syscall=%.2f, in-flight limit=%u",
		c->engine == ENGINE_AURAIO ? "engine" : "ring", (unsigned long long) r->syscalls,
		r->ios ? (double) r->syscalls / (double) r->ios : 0.0,
		r->syscalls ? (double) r->sqes / (double) r->syscalls : 0.0, r->in_flight_limit);
	fprintf(out, ", backend=%s, sqpoll=%s, coop_taskrun=%s%s\n", r->backend,
		r->sqpoll ? "on" : "off", r->coop ? "on" : "off",
		r->defer ? ", defer_taskrun=on" : "");
	if (c->engine == ENGINE_AURAIO)
		fprintf(out,
			"    engine: rings=%d, phase=%s, eagain=%llu, registered files=%d, "
			"buffers registered=%s\n",
			b->st_end.ring_count, auraio_phase_name(b->st_end.total.phase),
			(unsigned long long) (b->st_end.total.eagain - b->st_begin.total.eagain),
			b->st_end.files_registered, b->st_end.buffers_registered ? "yes" : "no");
}

static void json_params(FILE *f, const struct bench *b)
{
	const struct bench_config *c = &b->cfg;

	fprintf(f, "  \"engine\": \"%s\",\n  \"rw\": \"%s\",\n  \"bs\": %llu,\n  \"qd\": %d,\n",
		c->engine == ENGINE_AURAIO ? "auraio" : "liburing", rw_name(c),
		(unsigned long long) c->bs, c->qd);
	fprintf(f, "  \"adaptive\": %s,\n  \"direct\": %s,\n  \"registered_files\": %s,\n",
		c->adaptive ? "true" : "false", c->direct ? "true" : "false",
		c->reg_files ? "true" : "false");
	fprintf(f, "  \"registered_buffers\": %s,\n  \"sqpoll\": %s,\n  \"threads\": %d,\n",
		c->reg_bufs ? "true" : "false", c->sqpoll ? "true" : "false", c->threads);
	fprintf(f, "  \"rings\": %d,\n  \"runtime_requested_s\": %.15g,\n  \"ramp_s\": %.15g,\n",
		c->engine == ENGINE_AURAIO ? b->st_end.ring_count : c->threads, c->runtime,
		c->ramp);
	fprintf(f, "  \"file\": ");
	json_string(f, c->file);
	fprintf(f, ",\n  \"size\": %llu,\n  \"seed\": %llu,\n",
		(unsigned long long) (b->nblocks * c->bs), (unsigned long long) c->seed);
}

static void json_results(FILE *f, const struct bench *b, const struct results *r)
{
	fprintf(f, "  \"ios\": %llu,\n  \"runtime_s\": %.6f,\n  \"iops\": %.1f,\n",
		(unsigned long long) r->ios, b->measured_s, r->iops);
	fprintf(f, "  \"mbps\": %.3f,\n  \"lat_mean_us\": %.2f,\n  \"lat_p50_us\": %.2f,\n",
		r->mbps, r->mean_us, r->p50_us);
	fprintf(f, "  \"lat_p99_us\": %.2f,\n  \"lat_p999_us\": %.2f,\n  \"lat_max_us\": %.2f,\n",
		r->p99_us, r->p999_us, r->max_us);
	fprintf(f, "  \"cpu_s\": %.4f,\n  \"cpu_us_per_io\": %.3f,\n", b->cpu_s, r->cpu_us_per_io);
	fprintf(f, "  \"syscalls\": %llu,\n  \"syscalls_per_io\": %.4f,\n",
		(unsigned long long) r->syscalls,
		r->ios ? (double) r->syscalls / (double) r->ios : 0.0);
	fprintf(f, "  \"sqes_per_syscall\": %.3f,\n  \"in_flight_limit\": %u,\n",
		r->syscalls ? (double) r->sqes / (double) r->syscalls : 0.0, r->in_flight_limit);
	fprintf(f, "  \"backend\": \"%s\",\n  \"sqpoll_active\": %s,\n  \"coop_taskrun\": %s,\n",
		r->backend, r->sqpoll ? "true" : "false", r->coop ? "true" : "false");
	fprintf(f, "  \"defer_taskrun\": %s\n", r->defer ? "true" : "false");
}

/* The JSON object's members: a is the struct bench, b its struct results. */
static void json_members(FILE *f, const void *a, const void *b)
{
	json_params(f, a);
	json_results(f, a, b);
}

int report_print(struct bench *b)
{
	struct results r;
	bool json_stdout = b->cfg.json && strcmp(b->cfg.json, "-") == 0;
	/* stdout holds the JSON or the trace's CSV alone: the human report goes aside. */
	FILE *out =
	    json_stdout || (b->cfg.trace && strcmp(b->cfg.trace, "-") == 0) ? stderr : stdout;

	compute(b, &r);
	print_human(b, &r, out);
	trace_print_trajectory(b, out);
	if (!b->cfg.json)
		return 0;
	return json_write_object("iobench", b->cfg.json, auraio_strerror, json_members, b, &r);
}
