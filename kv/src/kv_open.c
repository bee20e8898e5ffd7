/* SPDX-License-Identifier: MIT */
/*
 * kv_open.c - recovery: rebuilding the index and the accounting when a store opens.
 *
 * Every segment contributes one sorted run of (key, latest record in that segment):
 * a sealed segment through its hint file, streamed block by block; a segment without a
 * valid hint file (the unsealed tail, or a hint that is missing or damaged) through a
 * summary read from the segment itself. A k-way merge keeps, for every key, the entry
 * with the highest version (on a tie, the higher segment: a GC copy of the same write)
 * and bulk-loads the index in key order, O(n). A hint file that turns out unreadable
 * half-way through makes the whole merge be redone with its segment read instead: a
 * hint decides speed, never correctness.
 *
 * Only damage (AURAKV_ECORRUPT) deletes a hint file. Any other error reading it - no fd
 * left (EMFILE), an I/O error, no memory - says nothing about the file: it is kept, and
 * the segment read this time.
 *
 * Bounded resources: the hint readers hold no fd between reads and share a budget of
 * read buffers (kv_hint_chunk), so open needs a few fds beyond the log's own, and
 * ~64 MiB plus at most 64 KiB per segment beyond the index, whatever the store's size.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv_db.h"

struct run {
	uint64_t seg;
	struct kv_hint_reader *hint; /* streamed, or */
	struct kv_seg_summary sum;   /* in memory */
	size_t pos;
	struct kv_hint_entry cur;
	uint64_t pfx; /* cur's first 8 key bytes, big-endian, zero-padded: most comparisons
			 of the merge end here, without a memcmp call (the heap's comparisons
			 were a third of a 10 M-key open) */
};

static uint64_t key_prefix(const uint8_t *k, size_t len)
{
	uint64_t v = 0;

	for (size_t i = 0; i < 8; i++)
		v = v << 8 | (i < len ? k[i] : 0);
	return v;
}

/* 1 and r->cur, 0 at the end, AURAKV_ECORRUPT (a damaged hint file). */
static int run_next(struct run *r)
{
	int rc = 1;

	if (r->hint)
		rc = kv_hint_next(r->hint, &r->cur);
	else if (r->pos == r->sum.n)
		rc = 0;
	else
		r->cur = r->sum.entries[r->pos++];
	if (rc == 1)
		r->pfx = key_prefix(r->cur.key, r->cur.klen);
	return rc;
}

static void run_free(struct run *r)
{
	kv_hint_close(r->hint);
	kv_seg_summary_free(&r->sum);
}

/* Heap order: key ascending; within a key the winner first (newest, then higher segment). */
static bool run_before(const struct run *a, const struct run *b)
{
	size_t m = a->cur.klen < b->cur.klen ? a->cur.klen : b->cur.klen;
	int c;

	if (a->pfx != b->pfx) /* memcmp order: the zero padding sorts a prefix first */
		return a->pfx < b->pfx;
	c = m > 8 ? memcmp(a->cur.key + 8, b->cur.key + 8, m - 8) : 0;
	if (c)
		return c < 0;
	if (a->cur.klen != b->cur.klen)
		return a->cur.klen < b->cur.klen;
	if (a->cur.ref.version != b->cur.ref.version)
		return a->cur.ref.version > b->cur.ref.version;
	return a->seg > b->seg;
}

static void sift_down(struct run **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		struct run *t;

		if (l < n && run_before(h[l], h[m]))
			m = l;
		if (l + 1 < n && run_before(h[l + 1], h[m]))
			m = l + 1;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Merge the runs into the (empty) index. On a damaged hint, *bad_seg names it. */
static int merge(struct kv_db *db, struct run *runs, size_t nruns, uint64_t *bad_seg)
{
	struct run **heap = malloc((nruns ? nruns : 1) * sizeof(*heap));
	uint8_t *last = malloc(AURAKV_MAX_KEY);
	size_t n = 0, last_len = 0;
	int rc = heap && last ? 0 : -ENOMEM;

	for (size_t i = 0; i < nruns && rc == 0; i++) {
		rc = run_next(&runs[i]);
		if (rc == 1)
			heap[n++] = &runs[i];
		else if (rc < 0)
			*bad_seg = runs[i].seg;
		rc = rc < 0 ? rc : 0;
	}
	for (size_t i = n / 2; i-- > 0;)
		sift_down(heap, n, i);
	while (rc == 0 && n) {
		struct run *r = heap[0];

		if (last_len != r->cur.klen || memcmp(last, r->cur.key, last_len) != 0) {
			memcpy(last, r->cur.key, r->cur.klen); /* the key's winner */
			last_len = r->cur.klen;
			rc = kv_index_bulk_add(db->ix, last, last_len, &r->cur.ref);
			if (rc == 0)
				kv_acct_add(db, &r->cur.ref);
		}
		if (rc)
			break;
		rc = run_next(r);
		if (rc < 0) {
			*bad_seg = r->seg;
			break;
		}
		if (rc == 0)
			heap[0] = heap[--n];
		rc = 0;
		sift_down(heap, n, 0);
	}
	if (rc == 0)
		rc = kv_index_bulk_finish(db->ix);
	free(heap);
	free(last);
	return rc;
}

/* One attempt at loading: what every run needs. */
struct load_ctx {
	struct kv_db *db;
	size_t chunk; /* each hint reader's read size */
	uint64_t max_version;
};

/* A hint file that could not be used: a damaged one (or none: a missing file, or that
 * of an unsealed segment, which no hint describes) is deleted; else it is kept, and its
 * size still counted as the store's. */
static void hint_unused(struct kv_db *db, uint64_t seg, const char *path, int rc)
{
	struct stat st;

	if (rc == AURAKV_ECORRUPT || rc == -ENOENT || !path) {
		if (path)
			unlink(path); /* rewritten below or by the background thread */
		kv_acct_hint(db, seg, 0);
		return;
	}
	kv_acct_hint(db, seg, stat(path, &st) == 0 ? (int64_t) st.st_size : 0);
}

static void use_hint(struct kv_db *db, struct kv_seg *slot, struct run *r, uint64_t *max_version)
{
	if (kv_hint_max_version(r->hint) > *max_version)
		*max_version = kv_hint_max_version(r->hint);
	if (slot)
		atomic_store(&slot->hint, KV_HINT_OK);
	kv_acct_hint(db, r->seg, (int64_t) kv_hint_file_bytes(r->hint));
}

/* Segment `info`'s run read from the segment itself; its hint file written if `write`. */
static int summary_run(struct load_ctx *c, const aurawal_segment_info_t *info, struct kv_seg *slot,
		       struct run *r, bool write)
{
	struct kv_db *db = c->db;
	int rc = kv_seg_summarize(db->wal, info->number, &r->sum);

	if (rc == AURAKV_ECORRUPT) /* the log's strict iterator fails without a word */
		kv_report(db, AURAKV_REPORT_CORRUPTION,
			  "log segment %llu offset %llu: damaged record (the segment was "
			  "read at open: %s)",
			  (unsigned long long) info->number, (unsigned long long) r->sum.end,
			  info->sealed ? "it has no usable hint file" : "the log's tail");
	if (rc)
		return rc;
	if (r->sum.max_version > c->max_version)
		c->max_version = r->sum.max_version;
	if (write && info->sealed && db->opts.write_hints &&
	    kv_hint_write(db, &r->sum, info->number) == 0 && slot)
		atomic_store(&slot->hint, KV_HINT_OK);
	if (slot)
		atomic_store(&slot->total, (int64_t) r->sum.total);
	return 0;
}

/* Set up segment `info`'s run: its hint file if valid, else a summary of the segment
 * (writing a hint file on the way, so the next open is fast, unless the one there was
 * kept). `hint_rc`: the error a previous attempt had reading this hint (0: none); it is
 * then not opened again. */
static int open_run(struct load_ctx *c, const aurawal_segment_info_t *info, int hint_rc,
		    struct run *r)
{
	struct kv_db *db = c->db;
	struct kv_seg *slot = kv_seg_get(db, info->number, true);
	char *path = kv_hint_path(db->dir, info->number, "hint");
	int rc = path ? -ENOENT : -ENOMEM;

	r->seg = info->number;
	if (path && info->sealed && !(rc = hint_rc))
		rc = kv_hint_open(aurawal_engine(db->wal), path, info, db->seg_bytes, c->chunk,
				  &r->hint);
	if (rc && !hint_rc && rc != -ENOENT && rc != -ENOMEM)
		kv_report(db, AURAKV_REPORT_INFO,
			  "hint file of segment %llu %s (%s): reading the segment",
			  (unsigned long long) info->number,
			  rc == AURAKV_ECORRUPT ? "is damaged" : "cannot be read now, kept",
			  aurakv_strerror(rc));
	if (rc == 0) {
		use_hint(db, slot, r, &c->max_version);
		if (slot)
			atomic_store(&slot->total, (int64_t) kv_hint_total(r->hint));
		free(path);
		return 0;
	}
	hint_unused(db, info->number, path, rc);
	rc = summary_run(c, info, slot, r, rc == AURAKV_ECORRUPT || rc == -ENOENT);
	free(path);
	return rc;
}

/* Forget everything a failed merge built. */
static int reset_state(struct kv_db *db)
{
	kv_index_destroy(db->ix);
	db->ix = kv_index_create();
	memset(db->segs, 0, KV_SEG_SLOTS * sizeof(*db->segs));
	atomic_store(&db->hint_bytes, 0);
	kv_batches_destroy(&db->batches);
	atomic_store(&db->n.tombstones, 0);
	return db->ix && kv_batches_init(&db->batches) == 0 ? 0 : -ENOMEM;
}

static bool listed(const aurawal_segment_info_t *segs, size_t n, uint64_t number)
{
	for (size_t i = 0; i < n; i++)
		if (segs[i].number == number)
			return true;
	return false;
}

/* Is `name` exactly a name kv_hint_path() makes, "<16 lowercase hex digits>.hint" or
 * ".tmp"? Then *seg and *tmp. Nothing else in hints/ is the store's to delete. */
static bool hint_name(const char *name, uint64_t *seg, bool *tmp)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		char c = name[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		v = v << 4 | (uint64_t) (c <= '9' ? c - '0' : c - 'a' + 10);
	}
	*seg = v;
	*tmp = strcmp(name + 16, ".tmp") == 0;
	return *tmp || strcmp(name + 16, ".hint") == 0;
}

/* Delete hint files being written at a crash (*.tmp) and those of released segments. */
static void sweep_hints(struct kv_db *db, const aurawal_segment_info_t *segs, size_t n)
{
	char path[4096];
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/hints", db->dir);
	if (!(dir = opendir(path)))
		return;
	while ((d = readdir(dir))) {
		uint64_t seg;
		bool tmp;

		if (!hint_name(d->d_name, &seg, &tmp))
			continue;
		if (tmp || !listed(segs, n, seg)) {
			snprintf(path, sizeof(path), "%s/hints/%s", db->dir, d->d_name);
			unlink(path);
		}
	}
	closedir(dir);
}

/* A hint file that failed in a merge: the next attempt reads its segment instead. */
struct bad_hint {
	uint64_t seg;
	int rc; /* its error */
};

/* One attempt at the whole load; *failed set if a hint file failed mid-way. */
static int load(struct kv_db *db, const aurawal_segment_info_t *segs, size_t n,
		const struct bad_hint *bad, size_t nbad, struct bad_hint *failed,
		uint64_t *max_version)
{
	struct run *runs = calloc(n ? n : 1, sizeof(*runs));
	struct load_ctx c = { .db = db, .chunk = kv_hint_chunk(n), .max_version = *max_version };
	int rc = runs ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && rc == 0; i++) {
		int hint_rc = 0;

		for (size_t j = 0; j < nbad; j++)
			if (bad[j].seg == segs[i].number)
				hint_rc = bad[j].rc;
		rc = open_run(&c, &segs[i], hint_rc, &runs[i]);
	}
	if (rc == 0)
		rc = merge(db, runs, n, &failed->seg);
	failed->rc = rc;
	for (size_t i = 0; runs && i < n; i++)
		run_free(&runs[i]);
	free(runs);
	*max_version = c.max_version;
	return rc;
}

int kv_recover(struct kv_db *db)
{
	aurawal_segment_info_t *segs;
	struct bad_hint *bad = NULL;
	uint64_t max_version = 0;
	size_t n, nbad = 0;
	int rc = kv_list_segments(db, &segs, &n);

	while (rc == 0) {
		struct bad_hint failed = { 0 };

		rc = load(db, segs, n, bad, nbad, &failed, &max_version);
		/* a hint that failed mid-way: again, reading its segment (no memory: give up) */
		if (rc == 0 || rc == -ENOMEM || !failed.seg || nbad == n)
			break;
		kv_report(db, AURAKV_REPORT_INFO,
			  "hint file of segment %llu %s (%s): reading the segment instead",
			  (unsigned long long) failed.seg,
			  rc == AURAKV_ECORRUPT ? "is damaged" : "cannot be read now, kept",
			  aurakv_strerror(rc));
		if (!bad && !(bad = calloc(n, sizeof(*bad)))) {
			rc = -ENOMEM;
			break;
		}
		bad[nbad++] = failed;
		rc = reset_state(db);
	}
	if (rc == 0) {
		atomic_store(&db->next_version, max_version + 1);
		atomic_store(&db->bg.seen_segment, n ? segs[n - 1].number : 0);
		sweep_hints(db, segs, n);
	}
	free(bad);
	free(segs);
	return rc;
}
