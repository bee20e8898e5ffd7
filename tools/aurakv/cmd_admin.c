/* SPDX-License-Identifier: MIT */
/*
 * cmd_admin.c - the commands that look after a store: stats, verify, compact, and the
 * debugging aid hold.
 *
 * The operation counters of stats (puts, gets, cache hits, I/O) count what this
 * process did since it opened the store, which for the tool is nothing; the sizes
 * (keys, bytes, segments, index) describe the store itself. verify never opens the
 * store (aurakv_verify does, read-only) and prints the store's reports on stdout:
 * they are its output.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "aurakv_cli.h"

static const char *backend_name(auraio_backend_t b)
{
	switch (b) {
	case AURAIO_BACKEND_AUTO:
		return "auto";
	case AURAIO_BACKEND_IO_URING:
		return "io_uring";
	case AURAIO_BACKEND_THREADS:
		return "threads";
	}
	return "unknown";
}

static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double) num / (double) den : 0.0;
}

/* Bytes with a readable unit alongside. */
static void print_bytes(const char *name, uint64_t n)
{
	printf("%-20s %llu", name, (unsigned long long) n);
	if (n >= (1u << 20))
		printf(" (%.1f MiB)", (double) n / (1 << 20));
	else if (n >= (1u << 10))
		printf(" (%.1f KiB)", (double) n / (1 << 10));
	putchar('\n');
}

static void print_sizes(const aurakv_stats_t *s)
{
	printf("%-20s %llu\n", "keys:", (unsigned long long) s->keys);
	print_bytes("live bytes:", s->live_bytes);
	print_bytes("log bytes:", s->total_bytes);
	print_bytes("disk bytes:", s->disk_bytes);
	/* space amp as gc_space_amp and kvbench mean it: the store's files over live bytes */
	if (s->live_bytes) {
		printf("%-20s %.2f (disk bytes / live bytes)\n",
		       "space amp:", ratio(s->disk_bytes, s->live_bytes));
		printf("%-20s %.2f (log bytes / live bytes)\n",
		       "log amp:", ratio(s->total_bytes, s->live_bytes));
	} else {
		printf("%-20s - (no live bytes)\n", "space amp:");
	}
	printf("%-20s %llu\n", "segments:", (unsigned long long) s->segments);
	printf("%-20s %llu bytes, %.1f bytes/key\n", "index:", (unsigned long long) s->index_bytes,
	       s->index_bytes_per_key);
}

static void print_activity(const aurakv_stats_t *s)
{
	const auraio_ring_stats_t *t = &s->io.total;

	printf("since this open:\n");
	printf("%-20s puts %llu, deletes %llu, batches %llu, gets %llu (misses %llu)\n",
	       "operations:", (unsigned long long) s->puts, (unsigned long long) s->deletes,
	       (unsigned long long) s->batches, (unsigned long long) s->gets,
	       (unsigned long long) s->get_misses);
	printf("%-20s hits %llu, misses %llu, hit rate %.1f %%, %llu bytes cached\n",
	       "cache:", (unsigned long long) s->cache_hits, (unsigned long long) s->cache_misses,
	       100.0 * s->cache_hit_rate, (unsigned long long) s->cache_bytes);
	printf("%-20s %llu segments collected, %llu bytes copied, %llu bytes freed, "
	       "%llu stalls (%.1f ms)\n",
	       "gc:", (unsigned long long) s->gc_runs, (unsigned long long) s->gc_bytes_copied,
	       (unsigned long long) s->gc_bytes_freed, (unsigned long long) s->gc_stalls,
	       s->gc_stall_ms);
	/* The library counts these as this handle writes them (not what the store holds). */
	printf("%-20s %llu values compressed, %llu hint files written\n",
	       "writes:", (unsigned long long) s->compressed_values,
	       (unsigned long long) s->hints_written);
	printf("%-20s %s backend, %d ring(s), %llu ops, %llu bytes read, %llu written, "
	       "%llu errors, p50 %.1f us, p99 %.1f us\n",
	       "io:", backend_name(s->io.backend), s->io.ring_count,
	       (unsigned long long) t->ops_completed, (unsigned long long) t->bytes_read,
	       (unsigned long long) t->bytes_written, (unsigned long long) t->errors, t->p50_us,
	       t->p99_us);
	if (!s->io.buffers_registered)
		printf("%-20s not registered: %s\n", "io buffers:",
		       s->io.buffers_reason[0] ? s->io.buffers_reason : "(no reason given)");
}

/* The segment table, oldest first. 0 or an error of aurakv_get_segment_stats. */
static int print_segments(aurakv_t *db)
{
	aurakv_segment_stats_t *v;
	size_t n = 0, cap;
	int rc = aurakv_get_segment_stats(db, NULL, 0, &n);

	if (rc)
		return rc;
	cap = n + 16; /* background GC may add segments between the two calls */
	v = calloc(cap, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = aurakv_get_segment_stats(db, v, cap, &n);
	if (rc == 0) {
		printf("%-18s %-6s %-4s %14s %14s %6s\n", "segment", "state", "hint", "log bytes",
		       "live bytes", "live%");
		for (size_t i = 0; i < n && i < cap; i++)
			printf("%-18llu %-6s %-4s %14llu %14llu %5.1f%%\n",
			       (unsigned long long) v[i].number, v[i].sealed ? "sealed" : "open",
			       v[i].has_hint ? "yes" : "no", (unsigned long long) v[i].total_bytes,
			       (unsigned long long) v[i].live_bytes,
			       100.0 * ratio(v[i].live_bytes, v[i].total_bytes));
	}
	free(v);
	return rc;
}

int cmd_stats(struct cli *c)
{
	struct cmd_args a;
	aurakv_stats_t s;
	aurakv_t *db;
	int rc = cli_parse_cmd(c, 0, 0, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_open(c, false, &db);
	if (rc)
		return rc;
	rc = aurakv_get_stats(db, &s);
	if (rc == 0) {
		printf("store: %s\n", c->dir);
		print_sizes(&s);
		print_activity(&s);
		rc = print_segments(db);
	}
	if (rc)
		rc = cli_fail(c, "stats", rc);
	return cli_close(c, db, rc);
}

static void print_verify_summary(const aurakv_verify_result_t *r, bool clean)
{
	printf("summary: %llu records in %llu segments, %llu hint files; %llu corrupt, "
	       "%llu bad hint files: %s\n",
	       (unsigned long long) r->records, (unsigned long long) r->segments,
	       (unsigned long long) r->hints, (unsigned long long) r->corrupt,
	       (unsigned long long) r->bad_hints, clean ? "clean" : "CORRUPT");
}

int cmd_verify(struct cli *c)
{
	struct cmd_args a;
	aurakv_options_t o;
	aurakv_verify_result_t r = { 0 };
	bool clean;
	int rc = cli_parse_cmd(c, CO_QUIET, 0, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	cli_options_init(c, &o, false);
	c->reports_to_stdout = true;
	rc = aurakv_verify(c->dir, &o, &r);
	if (rc && rc != AURAKV_ECORRUPT)
		return cli_open_error(c, rc);
	/* Any report, or any count, is corruption, whatever the return value says. */
	clean = rc == 0 && r.corrupt == 0 && r.bad_hints == 0 && c->corruption_reports == 0;
	if (rc == 0 && !clean)
		fprintf(stderr, "aurakv: %s: verify returned 0 but found problems\n", c->dir);
	if (!(a.given & CO_QUIET))
		print_verify_summary(&r, clean);
	fflush(stdout);
	return clean ? CLI_OK : CLI_CORRUPT;
}

int cmd_compact(struct cli *c)
{
	struct cmd_args a;
	aurakv_stats_t before, after;
	aurakv_t *db;
	int rc = cli_parse_cmd(c, 0, 0, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_open(c, false, &db);
	if (rc)
		return rc;
	rc = aurakv_get_stats(db, &before);
	if (rc == 0)
		rc = aurakv_compact(db);
	if (rc == 0)
		rc = aurakv_get_stats(db, &after);
	if (rc == 0) {
		printf("before: %llu disk bytes, %llu segments, %llu log bytes, %llu live bytes\n",
		       (unsigned long long) before.disk_bytes, (unsigned long long) before.segments,
		       (unsigned long long) before.total_bytes,
		       (unsigned long long) before.live_bytes);
		printf("after:  %llu disk bytes, %llu segments, %llu log bytes, %llu live bytes\n",
		       (unsigned long long) after.disk_bytes, (unsigned long long) after.segments,
		       (unsigned long long) after.total_bytes,
		       (unsigned long long) after.live_bytes);
	} else {
		rc = cli_fail(c, "compact", rc);
	}
	return cli_close(c, db, rc);
}

/* Open the store and keep it open until stdin ends (a debugging aid, and the tests'
 * way to hold a store open in another process). */
int cmd_hold(struct cli *c)
{
	struct cmd_args a;
	aurakv_t *db;
	char buf[256];
	int rc = cli_parse_cmd(c, 0, 0, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_open(c, false, &db);
	if (rc)
		return rc;
	printf("holding %s pid %ld\n", c->dir, (long) getpid());
	fflush(stdout);
	while (fread(buf, 1, sizeof(buf), stdin) > 0)
		;
	return cli_close(c, db, CLI_OK);
}
