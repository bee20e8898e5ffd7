/* SPDX-License-Identifier: MIT */
/*
 * json.c - the JSON document of --json: the parameters, one object per workload (the
 * same numbers as the human report, store counters as differences over the workload
 * where they only grow) and the store's counters at the end. One key per number, flat
 * within each object, so a script needs no schema: see bench/kv_vs_peers.sh.
 *
 * The lat_* members of a result are the latency of one of its lat_unit: "op" (one put
 * or get, asynchronous gets from submit to callback) or "batch" (one aurakv_multi_get
 * of up to --batch keys: multiget and readseq), while ops counts keys either way.
 */
#include "kvbench.h"
#include "reportfmt.h"

static void json_params(FILE *f, const struct bench *b)
{
	const struct kv_config *c = &b->cfg;

	fprintf(f, "  \"tool\": \"kvbench\",\n  \"version\": \"%d.%d.%d\",\n  \"db\": ",
		AURAKV_VERSION_MAJOR, AURAKV_VERSION_MINOR, AURAKV_VERSION_PATCH);
	json_string(f, b->dir);
	fprintf(f, ",\n  \"threads\": %d,\n  \"num\": %llu,\n  \"key_size\": %u,\n", c->threads,
		(unsigned long long) c->num, c->key_size);
	fprintf(f, "  \"value_size\": %u,\n  \"compressibility\": %.15g,\n", c->value_size,
		c->compressibility);
	fprintf(f, "  \"cache_size\": %llu,\n  \"async_depth\": %d,\n  \"batch\": %u,\n",
		(unsigned long long) c->cache_size, c->async_depth, c->batch);
	fprintf(f,
		"  \"duration_s\": %.15g,\n  \"compress_min\": %ld,\n  \"segment_size\": %llu,\n",
		c->duration, c->compress_min, (unsigned long long) c->segment_size);
	fprintf(f, "  \"seed\": %llu,\n  \"use_existing\": %s,\n", (unsigned long long) c->seed,
		json_bool(c->use_existing));
}

/* The store's counters that are states, not growing counters. */
static void json_store(FILE *f, const aurakv_stats_t *s, const char *indent)
{
	fprintf(f, "%s\"keys\": %llu,\n%s\"live_bytes\": %llu,\n%s\"total_bytes\": %llu,\n", indent,
		(unsigned long long) s->keys, indent, (unsigned long long) s->live_bytes, indent,
		(unsigned long long) s->total_bytes);
	/* space_amp is what gc_space_amp bounds and the report prints (disk / live);
	 * log_amp the log's records over the live ones. */
	fprintf(f, "%s\"space_amp\": %.4f,\n", indent, per_live(s, s->disk_bytes));
	fprintf(f, "%s\"log_amp\": %.4f,\n%s\"disk_bytes\": %llu,\n%s\"segments\": %llu,\n", indent,
		per_live(s, s->total_bytes), indent, (unsigned long long) s->disk_bytes, indent,
		(unsigned long long) s->segments);
	fprintf(f, "%s\"index_bytes\": %llu,\n%s\"index_bytes_per_key\": %.2f,\n", indent,
		(unsigned long long) s->index_bytes, indent, s->index_bytes_per_key);
	fprintf(f, "%s\"cache_bytes\": %llu,\n%s\"compressed_values\": %llu", indent,
		(unsigned long long) s->cache_bytes, indent,
		(unsigned long long) s->compressed_values);
}

/* Counters that only grow: their difference over the workload. */
static void json_deltas(FILE *f, const struct result *r)
{
	const aurakv_stats_t *a = &r->after, *p = &r->before;
	const auraio_ring_stats_t *io = &a->io.total, *io0 = &p->io.total;
	uint64_t hits = a->cache_hits - p->cache_hits, misses = a->cache_misses - p->cache_misses;

	fprintf(f, "      \"cache_hits\": %llu,\n      \"cache_misses\": %llu,\n",
		(unsigned long long) hits, (unsigned long long) misses);
	fprintf(f, "      \"cache_hit_rate\": %.4f,\n",
		hits + misses ? (double) hits / (double) (hits + misses) : 0.0);
	fprintf(f, "      \"gc_runs\": %llu,\n      \"gc_bytes_copied\": %llu,\n",
		(unsigned long long) (a->gc_runs - p->gc_runs),
		(unsigned long long) (a->gc_bytes_copied - p->gc_bytes_copied));
	fprintf(f, "      \"gc_bytes_freed\": %llu,\n      \"gc_stalls\": %llu,\n",
		(unsigned long long) (a->gc_bytes_freed - p->gc_bytes_freed),
		(unsigned long long) (a->gc_stalls - p->gc_stalls));
	fprintf(f, "      \"gc_stall_ms\": %.3f,\n      \"hints_written\": %llu,\n",
		a->gc_stall_ms - p->gc_stall_ms,
		(unsigned long long) (a->hints_written - p->hints_written));
	fprintf(f, "      \"io_bytes_read\": %llu,\n      \"io_bytes_written\": %llu,\n",
		(unsigned long long) (io->bytes_read - io0->bytes_read),
		(unsigned long long) (io->bytes_written - io0->bytes_written));
	fprintf(f, "      \"io_ops\": %llu,\n      \"io_syscalls\": %llu,\n",
		(unsigned long long) (io->ops_completed - io0->ops_completed),
		(unsigned long long) (io->syscalls - io0->syscalls));
}

static void json_result(FILE *f, const struct result *r)
{
	fprintf(f, "    {\n      \"name\": \"%s\",\n      \"threads\": %d,\n", r->name, r->threads);
	fprintf(f, "      \"ops\": %llu,\n      \"seconds\": %.6f,\n      \"capped\": %s,\n",
		(unsigned long long) r->ops, r->seconds, json_bool(r->capped));
	fprintf(f, "      \"ops_per_s\": %.1f,\n      \"mb_per_s\": %.3f,\n", r->ops_s, r->mb_s);
	fprintf(f, "      \"cpu_us_per_op\": %.3f,\n      \"lat_unit\": \"%s\",\n",
		r->cpu_us_per_op, r->lat_per_batch ? "batch" : "op");
	fprintf(f, "      \"lat_mean_us\": %.3f,\n", r->mean_us);
	fprintf(f, "      \"lat_p50_us\": %.3f,\n      \"lat_p99_us\": %.3f,\n", r->p50_us,
		r->p99_us);
	fprintf(f, "      \"lat_p999_us\": %.3f,\n      \"lat_max_us\": %.3f,\n", r->p999_us,
		r->max_us);
	fprintf(f,
		"      \"found\": %llu,\n      \"not_found\": %llu,\n      \"bad_size\": %llu,\n",
		(unsigned long long) r->found, (unsigned long long) r->missing,
		(unsigned long long) r->badsize);
	if (r->check)
		fprintf(f, "      \"expected_found\": %llu,\n      \"check_ok\": %s,\n",
			(unsigned long long) r->expected_found,
			json_bool(r->found == r->expected_found && r->badsize == 0));
	if (r->writer_ops_s > 0)
		fprintf(f, "      \"writer_ops_per_s\": %.1f,\n", r->writer_ops_s);
	if (r->sync_ms >= 0)
		fprintf(f, "      \"sync_after_ms\": %.3f,\n", r->sync_ms);
	json_deltas(f, r);
	json_store(f, &r->after, "      ");
	fprintf(f, "\n    }");
}

/* The document's members: a is the struct bench (b is unused). */
static void json_members(FILE *f, const void *a, const void *unused)
{
	const struct bench *b = a;

	json_params(f, b);
	fprintf(f, "  \"results\": [\n");
	for (int i = 0; i < b->nresults; i++) {
		json_result(f, &b->results[i]);
		fprintf(f, "%s\n", i + 1 < b->nresults ? "," : "");
	}
	fprintf(f, "  ],\n  \"final\": {\n");
	json_store(f, &b->final, "    ");
	fprintf(f, ",\n    \"puts\": %llu,\n    \"gets\": %llu,\n    \"get_misses\": %llu,\n",
		(unsigned long long) b->final.puts, (unsigned long long) b->final.gets,
		(unsigned long long) b->final.get_misses);
	fprintf(f, "    \"gc_runs\": %llu,\n    \"gc_stalls\": %llu\n  }\n",
		(unsigned long long) b->final.gc_runs, (unsigned long long) b->final.gc_stalls);
}

int report_json(const struct bench *b)
{
	return json_write_object("kvbench", b->cfg.json, aurakv_strerror, json_members, b, NULL);
}
