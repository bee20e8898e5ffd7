/* SPDX-License-Identifier: MIT */
/*
 * kv_stats.c - the remaining public entry points: asynchronous and multiple gets, the
 * ordered walk, and statistics. Counters are relaxed atomics read one by one: a stats
 * snapshot is not atomic across fields, each field is exact for some recent moment.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kv_db.h"

int aurakv_get_async(aurakv_t *h, const void *key, size_t klen, aurakv_get_cb cb, void *arg)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (!cb)
		return -EINVAL;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	return kv_get_async(db, key, klen, cb, arg);
}

int aurakv_poll(aurakv_t *h, int timeout_ms)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	return kv_poll(db, timeout_ms);
}

int aurakv_multi_get(aurakv_t *h, size_t n, const void *const *keys, const size_t *klens,
		     void **vals, size_t *vlens, int *status, unsigned depth)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (n && (!keys || !klens || !vals || !vlens || !status))
		return -EINVAL;
	return n ? kv_multi_get(db, n, keys, klens, vals, vlens, status, depth) : 0;
}

int aurakv_foreach(aurakv_t *h, const void *start, size_t slen,
		   int (*cb)(void *, const void *, size_t, const void *, size_t), void *arg)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (!cb || (!start && slen))
		return -EINVAL;
	/* A start key is a key: too long is the key error every other call gives. */
	if (slen > AURAKV_MAX_KEY)
		return AURAKV_EKEYSIZE;
	return kv_foreach(db, start, slen, cb, arg);
}

/* Bytes of the files in one directory (allocated blocks). */
static uint64_t dir_bytes(const char *dir)
{
	char path[4096];
	struct dirent *d;
	struct stat st;
	uint64_t sum = 0;
	DIR *dp = opendir(dir);

	if (!dp)
		return 0;
	while ((d = readdir(dp))) {
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (d->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t) st.st_blocks * 512;
	}
	closedir(dp);
	return sum;
}

static uint64_t disk_bytes(const struct kv_db *db)
{
	char path[4096];
	uint64_t sum = dir_bytes(db->dir);

	snprintf(path, sizeof(path), "%s/wal", db->dir);
	sum += dir_bytes(path);
	snprintf(path, sizeof(path), "%s/hints", db->dir);
	return sum + dir_bytes(path);
}

/* Sum the accounting over the log's segments. */
static void segment_totals(struct kv_db *db, aurakv_stats_t *out)
{
	aurakv_segment_stats_t *segs;
	size_t count = 0;

	if (kv_segment_stats(db, NULL, 0, &count) || !(segs = calloc(count + 1, sizeof(*segs))))
		return;
	kv_segment_stats(db, segs, count, &count);
	for (size_t i = 0; i < count; i++) {
		out->total_bytes += segs[i].total_bytes;
		out->live_bytes += segs[i].live_bytes;
	}
	out->segments = count;
	free(segs);
}

int aurakv_get_stats(aurakv_t *h, aurakv_stats_t *out)
{
	struct kv_cache_stats cs;
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);
	uint64_t entries, tombs;

	if (!db)
		return rc;
	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	/* The two counts are read at different moments and move apart. Tombstones first: GC
	 * drops a tombstone from the index, then from the count - read in this order, GC
	 * alone can make `keys` only smaller for a moment, never count a key that is gone
	 * (kv_gc::overwrite_everything_twice_then_delete_all_shrinks_the_store_without_a_call
	 * saw 1 key left once with the other order). A key put and deleted between the two
	 * reads still shows as one more key. More tombstones than entries is no live key,
	 * not 2^64 - 1 of them. */
	tombs = atomic_load(&db->n.tombstones);
	entries = kv_index_count(db->ix);
	out->keys = entries > tombs ? entries - tombs : 0;
	segment_totals(db, out);
	out->disk_bytes = disk_bytes(db);
	out->puts = atomic_load(&db->n.puts);
	out->deletes = atomic_load(&db->n.deletes);
	out->batches = atomic_load(&db->n.batches);
	out->gets = atomic_load(&db->n.gets);
	out->get_misses = atomic_load(&db->n.get_misses);
	kv_cache_get_stats(db->cache, &cs);
	out->cache_hits = cs.hits;
	out->cache_misses = cs.misses;
	out->cache_bytes = cs.bytes;
	out->cache_hit_rate =
	    cs.hits + cs.misses ? (double) cs.hits / (double) (cs.hits + cs.misses) : 0;
	out->index_bytes = kv_index_memory(db->ix);
	out->index_bytes_per_key = entries ? (double) out->index_bytes / (double) entries : 0;
	out->compressed_values = atomic_load(&db->n.compressed);
	out->gc_runs = atomic_load(&db->n.gc_runs);
	out->gc_bytes_copied = atomic_load(&db->n.gc_bytes_copied);
	out->gc_bytes_freed = atomic_load(&db->n.gc_bytes_freed);
	out->gc_stalls = atomic_load(&db->n.gc_stalls);
	out->gc_stall_ms = (double) atomic_load(&db->n.gc_stall_ns) / 1e6;
	out->hints_written = atomic_load(&db->n.hints_written);
	auraio_get_stats(aurawal_engine(db->wal), &out->io);
	return 0;
}

int kv_segment_stats(struct kv_db *db, aurakv_segment_stats_t *out, size_t max, size_t *count)
{
	aurawal_segment_info_t *segs;
	size_t n = 0, total = 0;
	int rc = aurawal_list_segments(db->wal, NULL, 0, &total);

	if (rc)
		return kv_map_wal_error(rc);
	if (!(segs = calloc(total + 1, sizeof(*segs))))
		return -ENOMEM;
	aurawal_list_segments(db->wal, segs, total, &n);
	if (n > total)
		n = total;
	for (size_t i = 0; i < n && i < max; i++) {
		struct kv_seg *s = kv_seg_get(db, segs[i].number, false);

		memset(&out[i], 0, sizeof(out[i]));
		out[i].number = segs[i].number;
		out[i].sealed = segs[i].sealed;
		if (s) {
			int64_t t = atomic_load(&s->total), l = atomic_load(&s->live);

			out[i].total_bytes = t > 0 ? (uint64_t) t : 0;
			out[i].live_bytes = l > 0 ? (uint64_t) l : 0;
			out[i].has_hint = atomic_load(&s->hint) == KV_HINT_OK;
		}
	}
	*count = n;
	free(segs);
	return 0;
}

int aurakv_get_segment_stats(aurakv_t *h, aurakv_segment_stats_t *out, size_t max, size_t *count)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (!count || (!out && max))
		return -EINVAL;
	return kv_segment_stats(db, out, max, count);
}
