/* SPDX-License-Identifier: MIT */
/*
 * report.c - turning finished workloads into numbers: the result of each (computed
 * once its threads were joined), a human report per workload and a summary table
 * (stdout, or stderr when the JSON goes to stdout), the found/missing check, and the
 * JSON document of --json.
 *
 * The check: a read workload must find every key 0..num-1 it asks for (readmissing:
 * none), each value --value-size bytes. When this run wrote those keys (a fill, or the
 * untimed fill before the reads), a mismatch is the store losing or inventing data:
 * an ERROR, and kvbench exits 1. When --use-existing's store was only counted, the
 * keys may be another run's (other --num, --key-size, --value-size): a WARNING.
 *
 * Units: MB = 10^6 bytes; latencies in microseconds, from the log-linear histogram
 * (tools/common/hist.h: within 1/128 of the true value; max is exact). Store
 * counters that only grow (cache hits, GC, io) are shown as the difference over the
 * workload; the others (keys, bytes, segments) as they are after it.
 */
#include <errno.h>
#include <string.h>

#include "kvbench.h"
#include "reportfmt.h"

FILE *report_out(const struct bench *b)
{
	return b->cfg.json && strcmp(b->cfg.json, "-") == 0 ? stderr : stdout;
}

static double seconds_of(const struct bench *b)
{
	uint64_t end = 0;

	if (b->stop_ns)
		return (double) (b->stop_ns - b->t0_ns) / 1e9;
	for (int i = 0; i < b->measured; i++)
		if (b->jobs[i].end_ns > end)
			end = b->jobs[i].end_ns;
	return end > b->t0_ns ? (double) (end - b->t0_ns) / 1e9 : 1e-9;
}

static void result_checks(struct bench *b, struct result *r)
{
	enum wl_kind k = b->wl->kind;

	r->check = !b->wl->writes;
	r->strict = r->check && b->written;
	r->expected_found = k == WL_READMISSING ? 0 : r->ops;
	if (k == WL_READWHILEWRITING) {
		struct job *w = &b->jobs[b->measured];

		r->writer_ops_s = (double) atomic_load(&w->done) / r->seconds;
	}
}

void result_compute(struct bench *b, struct result *r)
{
	const struct kv_config *c = &b->cfg;
	struct lat_summary lat;
	double bytes;

	memset(&lat, 0, sizeof(lat));
	for (int i = 0; i < b->measured; i++) {
		struct job *j = &b->jobs[i];

		hist_merge(&lat, &j->hist);
		r->ops += atomic_load(&j->done);
		r->found += atomic_load(&j->found);
		r->missing += atomic_load(&j->missing);
		r->badsize += atomic_load(&j->badsize);
	}
	r->name = b->wl->name;
	r->threads = b->measured;
	r->capped = b->stop_ns != 0;
	r->seconds = seconds_of(b);
	r->ops_s = (double) r->ops / r->seconds;
	bytes = b->wl->writes ? (double) r->ops * (c->key_size + c->value_size)
			      : (double) r->ops * c->key_size + (double) r->found * c->value_size;
	r->mb_s = bytes / 1e6 / r->seconds;
	r->cpu_us_per_op = r->ops ? b->cpu_s * 1e6 / (double) r->ops : 0;
	r->mean_us = lat.n ? (double) lat.sum_ns / (double) lat.n / 1e3 : 0;
	r->p50_us = hist_percentile(&lat, 50.0) / 1e3;
	r->p99_us = hist_percentile(&lat, 99.0) / 1e3;
	r->p999_us = hist_percentile(&lat, 99.9) / 1e3;
	r->max_us = (double) lat.max_ns / 1e3;
	r->lat_per_batch = b->wl->kind == WL_MULTIGET || b->wl->kind == WL_READSEQ;
	result_checks(b, r);
}

static bool check_ok(const struct result *r)
{
	return !r->check || (r->found == r->expected_found && r->badsize == 0);
}

static double mib(uint64_t v)
{
	return (double) v / (1024.0 * 1024.0);
}

static double mb(uint64_t v)
{
	return (double) v / 1e6;
}

void report_header(const struct bench *b)
{
	const struct kv_config *c = &b->cfg;
	FILE *out = report_out(b);

	fprintf(
	    out,
	    "kvbench: AuraKV %d.%d.%d; keys %u B, values %u B (compressibility %.2f); num %llu; "
	    "threads %d\n",
	    AURAKV_VERSION_MAJOR, AURAKV_VERSION_MINOR, AURAKV_VERSION_PATCH, c->key_size,
	    c->value_size, c->compressibility, (unsigned long long) c->num, c->threads);
	fprintf(out, "kvbench: store %s (%s); cache %.1f MiB; compress-min ", b->dir,
		b->temp_dir	  ? "temporary"
		: c->use_existing ? "existing"
				  : "kept",
		mib(c->cache_size));
	if (c->compress_min >= 0)
		fprintf(out, "%ld", c->compress_min);
	else
		fprintf(out, "default");
	fprintf(out, "; segment-size ");
	if (c->segment_size)
		fprintf(out, "%.0f MiB", mib(c->segment_size));
	else
		fprintf(out, "default");
	fprintf(out, "; async-depth %d; seed %llu\n", c->async_depth, (unsigned long long) c->seed);
}

/* A mismatch in a run that wrote every key itself: the store lost or invented data. */
static void report_lost(const struct result *r)
{
	unsigned long long ops = (unsigned long long) r->ops;

	if (r->expected_found == 0) { /* readmissing */
		fprintf(stderr,
			"kvbench: ERROR: %s: the store invented data: %llu of %llu gets of keys "
			"never written found a value\n",
			r->name, (unsigned long long) (r->found + r->badsize), ops);
		return;
	}
	if (r->missing)
		fprintf(stderr,
			"kvbench: ERROR: %s: the store lost data: %llu of %llu gets of keys this "
			"run wrote were not found\n",
			r->name, (unsigned long long) r->missing, ops);
	if (r->badsize)
		fprintf(stderr,
			"kvbench: ERROR: %s: the store returned wrong data: %llu of %llu gets of "
			"keys this run wrote returned a value that is not --value-size bytes\n",
			r->name, (unsigned long long) r->badsize, ops);
}

static void report_check(const struct result *r, FILE *out)
{
	if (!r->check)
		return;
	fprintf(out,
		"    found %llu of %llu gets (expected %llu; %llu not found, %llu wrong size)\n",
		(unsigned long long) r->found, (unsigned long long) r->ops,
		(unsigned long long) r->expected_found, (unsigned long long) r->missing,
		(unsigned long long) r->badsize);
	if (check_ok(r))
		return;
	if (r->strict)
		report_lost(r);
	else
		fprintf(
		    stderr,
		    "kvbench: WARNING: %s: found %llu of %llu gets, expected %llu (%llu wrong "
		    "size): this run did not write the store's keys (--use-existing), so either "
		    "the store lost data or it holds other keys (another --num, --key-size or "
		    "--value-size)\n",
		    r->name, (unsigned long long) r->found, (unsigned long long) r->ops,
		    (unsigned long long) r->expected_found, (unsigned long long) r->badsize);
}

/* The workloads whose reads missed keys this run wrote, or found keys never written. */
int report_failed_checks(const struct bench *b)
{
	int n = 0;

	for (int i = 0; i < b->nresults; i++)
		n += b->results[i].strict && !check_ok(&b->results[i]);
	return n;
}

static void report_store(const struct result *r, FILE *out)
{
	const aurakv_stats_t *a = &r->after, *p = &r->before;
	uint64_t hits = a->cache_hits - p->cache_hits, misses = a->cache_misses - p->cache_misses;
	const auraio_ring_stats_t *io = &a->io.total, *io0 = &p->io.total;

	fprintf(
	    out,
	    "    store: %llu keys; live %.1f MB, log records %.1f MB (%.2fx live); disk %.1f MB "
	    "(space amp %.2f: every file, preallocated segments and hints too) in %llu "
	    "segments; index %.1f B/key\n",
	    (unsigned long long) a->keys, mb(a->live_bytes), mb(a->total_bytes),
	    per_live(a, a->total_bytes), mb(a->disk_bytes), per_live(a, a->disk_bytes),
	    (unsigned long long) a->segments, a->index_bytes_per_key);
	fprintf(out,
		"    cache: hit rate %.1f%% (%llu hits, %llu misses), %.1f MiB held; gc: %llu "
		"segments, %.1f MB copied, %.1f MB freed; %llu stalls (%.1f ms); %llu hints; "
		"%llu compressed values\n",
		hits + misses ? 100.0 * (double) hits / (double) (hits + misses) : 0.0,
		(unsigned long long) hits, (unsigned long long) misses, mib(a->cache_bytes),
		(unsigned long long) (a->gc_runs - p->gc_runs),
		mb(a->gc_bytes_copied - p->gc_bytes_copied),
		mb(a->gc_bytes_freed - p->gc_bytes_freed),
		(unsigned long long) (a->gc_stalls - p->gc_stalls), a->gc_stall_ms - p->gc_stall_ms,
		(unsigned long long) (a->hints_written - p->hints_written),
		(unsigned long long) a->compressed_values);
	fprintf(out,
		"    io: read %.1f MB, written %.1f MB, %llu ops, %llu submit syscalls; device "
		"latency p50 %.0f us, p99 %.0f us (engine lifetime)\n",
		mb(io->bytes_read - io0->bytes_read), mb(io->bytes_written - io0->bytes_written),
		(unsigned long long) (io->ops_completed - io0->ops_completed),
		(unsigned long long) (io->syscalls - io0->syscalls), io->p50_us, io->p99_us);
}

void report_result(const struct bench *b, const struct result *r)
{
	FILE *out = report_out(b);
	char rate[32];

	fprintf(
	    out,
	    "%-17s: %9s ops/s %8.1f MB/s  (%llu ops in %.3f s%s, %d thread%s, %.2f us cpu/op)\n",
	    r->name, human_count(r->ops_s, rate, sizeof(rate)), r->mb_s,
	    (unsigned long long) r->ops, r->seconds, r->capped ? ", --duration cap" : "",
	    r->threads, r->threads == 1 ? "" : "s", r->cpu_us_per_op);
	fprintf(out, "    latency (us%s): mean %.2f, p50 %.2f, p99 %.2f, p99.9 %.2f, max %.1f\n",
		r->lat_per_batch ? ", per multi_get batch" : "", r->mean_us, r->p50_us, r->p99_us,
		r->p999_us, r->max_us);
	if (r->sync_ms >= 0)
		fprintf(out, "    then aurakv_sync: %.2f ms (not in the rate)\n", r->sync_ms);
	if (b->wl->kind == WL_READWHILEWRITING)
		fprintf(out, "    writer: %s puts/s (not in the figures above)\n",
			human_count(r->writer_ops_s, rate, sizeof(rate)));
	report_check(r, out);
	report_store(r, out);
	fflush(out);
}

static double hit_rate(const struct result *r)
{
	uint64_t h = r->after.cache_hits - r->before.cache_hits;
	uint64_t m = r->after.cache_misses - r->before.cache_misses;

	return h + m ? 100.0 * (double) h / (double) (h + m) : -1.0;
}

void report_summary(const struct bench *b)
{
	FILE *out = report_out(b);
	char rate[32], hits[16], batched[96] = "";
	size_t nb = 0;

	fprintf(out, "\n%-17s %4s %11s %9s %8s %9s %9s %9s %10s %6s  %s\n", "workload", "thr",
		"ops", "ops/s", "MB/s", "p50 us", "p99 us", "p99.9 us", "max us", "cache", "check");
	for (int i = 0; i < b->nresults; i++) {
		const struct result *r = &b->results[i];
		double h = hit_rate(r);

		if (h < 0)
			snprintf(hits, sizeof(hits), "-");
		else
			snprintf(hits, sizeof(hits), "%.0f%%", h);
		fprintf(out, "%-17s %4d %11llu %9s %8.1f %9.2f %9.2f %9.2f %10.1f %6s  ", r->name,
			r->threads, (unsigned long long) r->ops,
			human_count(r->ops_s, rate, sizeof(rate)), r->mb_s, r->p50_us, r->p99_us,
			r->p999_us, r->max_us, hits);
		if (r->check)
			fprintf(out, "found %llu/%llu %s\n", (unsigned long long) r->found,
				(unsigned long long) r->expected_found,
				check_ok(r) ? "ok" : "MISMATCH");
		else
			fprintf(out, "-\n");
		if (r->lat_per_batch && nb < sizeof(batched))
			nb += (size_t) snprintf(batched + nb, sizeof(batched) - nb, "%s%s",
						nb ? ", " : "", r->name);
	}
	/* The rows are parsed by name (scripts, checks): the unit goes below, not in them. */
	if (nb)
		fprintf(out, "(%s: latencies per multi_get batch, not per key)\n", batched);
	fflush(out);
}
