/* SPDX-License-Identifier: MIT */
/*
 * report.c - turning a finished run into numbers: a human summary (stdout, or stderr
 * when the JSON goes to stdout) and the JSON object of --json.
 * Reads the jobs only after their threads were joined.
 *
 * The log's sync percentiles come from aurawal_get_stats(), whose histogram reports a
 * bucket's upper bound (16 buckets per power of two, capped at the maximum): they are
 * "at most" figures, within 1/16, coarser than the append latencies measured here.
 */
#include <errno.h>
#include <string.h>

#include "reportfmt.h"
#include "toolio.h"
#include "walbench.h"

struct results {
	struct lat_summary lat;
	uint64_t appends;
	double rate, mbps, mean_us, p50_us, p99_us, p999_us, max_us, cpu_us_per_append;
};

static void compute(struct bench *b, struct results *r)
{
	double s = b->measured_s > 0 ? b->measured_s : 1e-9;

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < b->cfg.threads; i++)
		hist_merge(&r->lat, &b->jobs[i].hist);
	r->appends = r->lat.n;
	r->rate = (double) r->appends / s;
	r->mbps = (double) r->appends * (double) b->cfg.record_size / 1e6 / s;
	r->mean_us = r->appends ? (double) r->lat.sum_ns / (double) r->appends / 1e3 : 0;
	r->p50_us = hist_percentile(&r->lat, 50.0) / 1e3;
	r->p99_us = hist_percentile(&r->lat, 99.0) / 1e3;
	r->p999_us = hist_percentile(&r->lat, 99.9) / 1e3;
	r->max_us = (double) r->lat.max_ns / 1e3;
	r->cpu_us_per_append = r->appends ? b->cpu_s * 1e6 / (double) r->appends : 0;
}

static const char *sync_mode_name(aurawal_sync_mode_t m)
{
	return m == AURAWAL_SYNC_DSYNC ? "dsync" : "fdatasync";
}

static void print_human(struct bench *b, const struct results *r, FILE *out)
{
	const struct bench_config *c = &b->cfg;
	const aurawal_stats_t *st = &b->stats;
	char rate[32];

	fprintf(out, "walbench: threads=%d record-size=%llu %s", c->threads,
		(unsigned long long) c->record_size, c->durable ? "durable" : "no-durable");
	if (c->async_depth)
		fprintf(out, " async-depth=%d", c->async_depth);
	fprintf(out, " sync-mode=%s%s dir=%s\n", sync_mode_name(c->sync_mode),
		c->recycle ? " recycle" : "", b->dir);
	fprintf(out, "  appends: %s records/s, %.1f MB/s payload (%llu appends in %.3fs",
		human_count(r->rate, rate, sizeof(rate)), r->mbps, (unsigned long long) r->appends,
		b->measured_s);
	if (!c->durable)
		fprintf(out, ", final sync %.2f ms included", b->final_sync_s * 1e3);
	fprintf(out, ")\n");
	fprintf(out, "    lat (usec): mean=%.1f, p50=%.1f, p99=%.1f, p99.9=%.1f, max=%.1f\n",
		r->mean_us, r->p50_us, r->p99_us, r->p999_us, r->max_us);
	fprintf(out, "    cpu: %.2f us/append (user+sys %.2fs)\n", r->cpu_us_per_append, b->cpu_s);
	fprintf(out,
		"  log: syncs=%llu, records/sync=%.1f, sync p50<=%.0f us, p99<=%.0f us, "
		"max=%.0f us, writes=%llu, segments=%llu\n",
		(unsigned long long) st->syncs, st->records_per_sync, st->sync_p50_us,
		st->sync_p99_us, st->sync_max_us, (unsigned long long) st->writes,
		(unsigned long long) st->segments);
}

static void json_params(FILE *f, const struct bench *b)
{
	const struct bench_config *c = &b->cfg;

	fprintf(f, "  \"dir\": ");
	json_string(f, b->dir);
	fprintf(f, ",\n  \"threads\": %d,\n  \"record_size\": %llu,\n  \"durable\": %s,\n",
		c->threads, (unsigned long long) c->record_size, json_bool(c->durable));
	fprintf(f,
		"  \"async_depth\": %d,\n  \"duration_requested_s\": %.15g,\n  \"count\": %llu,\n",
		c->async_depth, c->duration, (unsigned long long) c->count);
	fprintf(f, "  \"segment_size\": %llu,\n  \"buffer_size\": %llu,\n",
		(unsigned long long) c->segment_size, (unsigned long long) c->buffer_size);
	fprintf(f, "  \"sync_mode\": \"%s\",\n  \"recycle\": %s,\n", sync_mode_name(c->sync_mode),
		json_bool(c->recycle));
}

static void json_results(FILE *f, const struct bench *b, const struct results *r)
{
	const aurawal_stats_t *st = &b->stats;

	fprintf(f, "  \"appends\": %llu,\n  \"duration_s\": %.6f,\n  \"final_sync_ms\": %.3f,\n",
		(unsigned long long) r->appends, b->measured_s, b->final_sync_s * 1e3);
	fprintf(f, "  \"appends_per_s\": %.1f,\n  \"mbps\": %.3f,\n  \"lat_mean_us\": %.2f,\n",
		r->rate, r->mbps, r->mean_us);
	fprintf(f, "  \"lat_p50_us\": %.2f,\n  \"lat_p99_us\": %.2f,\n  \"lat_p999_us\": %.2f,\n",
		r->p50_us, r->p99_us, r->p999_us);
	fprintf(f, "  \"lat_max_us\": %.2f,\n  \"cpu_s\": %.4f,\n  \"cpu_us_per_append\": %.3f,\n",
		r->max_us, b->cpu_s, r->cpu_us_per_append);
	fprintf(f, "  \"syncs\": %llu,\n  \"records_per_sync\": %.3f,\n",
		(unsigned long long) st->syncs, st->records_per_sync);
	fprintf(f, "  \"sync_p50_us\": %.0f,\n  \"sync_p99_us\": %.0f,\n  \"sync_max_us\": %.0f,\n",
		st->sync_p50_us, st->sync_p99_us, st->sync_max_us);
	fprintf(f, "  \"writes\": %llu,\n  \"segments\": %llu\n", (unsigned long long) st->writes,
		(unsigned long long) st->segments);
}

/* The JSON object's members: a is the struct bench, b its struct results. */
static void json_members(FILE *f, const void *a, const void *b)
{
	json_params(f, a);
	json_results(f, a, b);
}

/* --kv: everything a script needs on one line of stdout, `key=value` separated by
 * spaces; values never contain spaces. The keys are those of --json. */
static void print_kv(const struct bench *b, const struct results *r)
{
	const struct bench_config *c = &b->cfg;
	const aurawal_stats_t *st = &b->stats;

	/* The values as the JSON writes them too: durable is true/false there, not 1/0. */
	printf("threads=%d record_size=%llu durable=%s async_depth=%d sync_mode=%s ", c->threads,
	       (unsigned long long) c->record_size, json_bool(c->durable), c->async_depth,
	       sync_mode_name(c->sync_mode));
	printf("appends=%llu duration_s=%.6f appends_per_s=%.1f mbps=%.3f ",
	       (unsigned long long) r->appends, b->measured_s, r->rate, r->mbps);
	printf("lat_p50_us=%.2f lat_p99_us=%.2f lat_p999_us=%.2f lat_max_us=%.2f ", r->p50_us,
	       r->p99_us, r->p999_us, r->max_us);
	printf("cpu_us_per_append=%.3f syncs=%llu records_per_sync=%.3f ", r->cpu_us_per_append,
	       (unsigned long long) st->syncs, st->records_per_sync);
	printf("sync_p50_us=%.0f sync_p99_us=%.0f sync_max_us=%.0f writes=%llu\n", st->sync_p50_us,
	       st->sync_p99_us, st->sync_max_us, (unsigned long long) st->writes);
}

int report_print(struct bench *b)
{
	struct results r;
	bool json_stdout = b->cfg.json && strcmp(b->cfg.json, "-") == 0;

	compute(b, &r);
	print_human(b, &r, json_stdout || b->cfg.kv ? stderr : stdout);
	if (b->cfg.kv)
		print_kv(b, &r);
	if (tool_flush_stdout("walbench", aurawal_strerror))
		return -EIO;
	if (!b->cfg.json)
		return 0;
	return json_write_object("walbench", b->cfg.json, aurawal_strerror, json_members, b, &r);
}
