/* SPDX-License-Identifier: MIT */
/*
 * kvbench.c - a db_bench-like benchmark of AuraKV: workloads (fills, reads, overwrites,
 * async and multi gets) run in the order given, on one store, each timed per operation
 * and followed by the store's own counters.
 *
 * This file owns the program's flow and the store's directory: a temporary one under
 * /var/tmp (made here, removed at the end), or --db DIR, which must be empty or absent
 * (a fresh store) unless --use-existing, and is kept. Progress lines go to stderr only,
 * so `--json -` keeps stdout clean.
 *
 * Tools use only the public headers (aurakv.h, auraio.h) and tools/common; never kv/src.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvbench.h"
#include "toolio.h"

/* Record the first failure and stop the run. Any thread, callbacks included. */
void bench_fail(struct bench *b, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&b->error, &zero, err);
	atomic_store(&b->phase, PHASE_STOP);
}

static bool dir_is_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return false;
	while ((e = readdir(d)) && (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
		;
	closedir(d);
	return e == NULL;
}

/* The store's directory: temporary, existing (--use-existing) or new. 0 or -1. */
static int dir_prepare(struct bench *b)
{
	const char *db = b->cfg.db;
	struct stat st;

	if (!db) {
		strcpy(b->dir, "/var/tmp/kvbench.XXXXXX");
		if (!mkdtemp(b->dir)) {
			fprintf(stderr, "kvbench: mkdtemp %s: %s\n", b->dir,
				aurakv_strerror(-errno));
			return -1;
		}
		b->temp_dir = true;
		return 0;
	}
	if (strlen(db) >= sizeof(b->dir)) {
		fprintf(stderr, "kvbench: --db path too long\n");
		return -1;
	}
	strcpy(b->dir, db);
	if (b->cfg.use_existing || mkdir(db, 0755) == 0)
		return 0;
	if (errno == EEXIST && (stat(db, &st) != 0 || !S_ISDIR(st.st_mode)))
		errno = ENOTDIR; /* a file: not "not empty" */
	if (errno != EEXIST) {
		fprintf(stderr, "kvbench: %s: %s\n", db, aurakv_strerror(-errno));
		return -1;
	}
	if (!dir_is_empty(db)) {
		fprintf(stderr,
			"kvbench: %s is not empty: kvbench creates a fresh store there unless "
			"--use-existing (remove it, or choose another --db)\n",
			db);
		return -1;
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void) st;
	(void) ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0)
		fprintf(stderr, "kvbench: removing %s: %s\n", path, aurakv_strerror(-errno));
	return 0;
}

/* Remove the temporary store (only one kvbench made). */
static void dir_cleanup(struct bench *b)
{
	if (b->temp_dir)
		nftw(b->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --use-existing found no store in dir: say what is there instead. Dropping
 * --use-existing helps only where kvbench may create a store: a missing or empty dir. */
static void report_no_store(const char *dir)
{
	struct stat st;
	int err = stat(dir, &st) != 0 ? errno : 0;

	if (err == ENOENT)
		fprintf(stderr,
			"kvbench: %s does not exist: drop --use-existing to create a store there\n",
			dir);
	else if (err)
		fprintf(stderr, "kvbench: %s: %s\n", dir, aurakv_strerror(-err));
	else if (dir_is_empty(dir))
		fprintf(stderr,
			"kvbench: %s holds no AuraKV store (it is empty): drop --use-existing to "
			"create one there\n",
			dir);
	else
		fprintf(stderr,
			"kvbench: %s holds no AuraKV store (it is not empty: other files): "
			"--use-existing opens a store made before (kvbench --db, aurakv); give its "
			"directory\n",
			dir);
}

static int store_open(struct bench *b)
{
	const struct kv_config *c = &b->cfg;
	aurakv_options_t o;
	aurakv_stats_t st;
	uint64_t t0;
	int rc;

	aurakv_options_init(&o);
	o.cache_size = (size_t) c->cache_size;
	if (c->compress_min >= 0)
		o.compress_min = (unsigned) c->compress_min;
	if (c->segment_size)
		o.segment_size = c->segment_size;
	o.create_if_missing = !c->use_existing;
	t0 = now_ns();
	rc = aurakv_open(b->dir, &o, &b->db);
	t0 = now_ns() - t0;
	if (rc == -ENOENT && c->use_existing) {
		report_no_store(b->dir);
		return rc;
	}
	if (rc) {
		fprintf(stderr, "kvbench: opening the store in %s: %s\n", b->dir,
			aurakv_strerror(rc));
		return rc;
	}
	/* An existing store is taken as filled if it holds as many keys as --num: the
	 * found counts of the read workloads tell whether they were the keys meant. */
	if (c->use_existing && aurakv_get_stats(b->db, &st) == 0) {
		/* the reopen time of a filled store (hint files, the tail's replay) */
		fprintf(stderr, "kvbench: opened %s in %.1f ms: %llu keys\n", b->dir, t0 / 1e6,
			(unsigned long long) st.keys);
		if (st.keys >= c->num)
			b->filled = true;
	}
	return 0;
}

/* Run the workloads in order, report. 0 or 1 (the exit status). */
static int bench_main(struct bench *b)
{
	int rc, close_rc, lost;

	if (values_create(b) != 0) {
		fprintf(stderr, "kvbench: %s\n", aurakv_strerror(-ENOMEM));
		return 1;
	}
	perm_init(b);
	if (store_open(b) != 0)
		return 1;
	report_header(b);
	rc = 0;
	for (int i = 0; i < b->cfg.nbenchmarks && rc == 0; i++) {
		rc = workload_run(b, workload_find(b->cfg.benchmarks[i]));
		if (rc)
			fprintf(stderr, "kvbench: %s failed: %s\n", b->cfg.benchmarks[i],
				aurakv_strerror(rc));
	}
	if (rc == 0 && (rc = aurakv_get_stats(b->db, &b->final)) != 0)
		fprintf(stderr, "kvbench: aurakv_get_stats: %s\n", aurakv_strerror(rc));
	if (b->nresults)
		report_summary(b);
	if (rc == 0 && b->cfg.json)
		rc = report_json(b);
	if (rc == 0)
		rc = tool_flush_stdout("kvbench", aurakv_strerror);
	close_rc = aurakv_close(b->db);
	if (close_rc)
		fprintf(stderr, "kvbench: closing the store: %s\n", aurakv_strerror(close_rc));
	lost = report_failed_checks(b);
	if (lost)
		fprintf(stderr,
			"kvbench: FAILED: %d workload(s) read back other than what this run wrote "
			"(the ERROR lines above)\n",
			lost);
	return rc != 0 || close_rc != 0 || lost ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	int rc;

	tool_hold_std_fds(1); /* else a closed stdout is one of the store's fds */
	rc = options_parse(&b.cfg, argc, argv);
	if (rc != 0)
		return rc > 0 ? 0 : 2;
	if (b.cfg.json && tool_check_output("kvbench", b.cfg.json, aurakv_strerror))
		return 2;
	if (dir_prepare(&b) != 0)
		return 1;
	rc = bench_main(&b);
	dir_cleanup(&b);
	free(b.values);
	return rc;
}
