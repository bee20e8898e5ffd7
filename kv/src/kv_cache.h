/* SPDX-License-Identifier: MIT */
/*
 * kv_cache.h - the value cache in front of the device (O_DIRECT bypasses the page
 * cache). Keyed by the version of a write (kv_cache_loc), not by the user's key: a
 * version's value never changes (a new write gets a new version), so there is nothing
 * to invalidate and no race between a put and a get filling the cache; entries of dead
 * writes just age out. Eviction is S3-FIFO (scan-resistant: a small probationary FIFO, a main FIFO
 * with 2-bit frequencies, a ghost FIFO of recently evicted keys). Sharded by key hash;
 * each shard has its own lock.
 */
#ifndef AURAKV_CACHE_H
#define AURAKV_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct kv_cache;

/* The smallest cache made: its tables' minimum and its own block take ~2 KiB. */
#define KV_CACHE_MIN (4u << 10)

/* A cache of at most `capacity` bytes of heap, all of it: values, their entries, the hash
 * tables, the ghosts, the cache's own block (kv_cache.c, Charges; only a resize holds
 * the old copy of a table besides, for the moment of the copy). Shards are never cut
 * below KV_CACHE_MIN bytes each. capacity below KV_CACHE_MIN (or out of memory): returns
 * NULL, and every function below accepts NULL as "no cache" (misses, no-ops). */
struct kv_cache *kv_cache_create(size_t capacity, unsigned shards /* 0 = default */);
void kv_cache_destroy(struct kv_cache *c);

/* Copy the value cached under `loc` into buf (cap bytes). 0 hit (*len set), -ENOENT
 * miss, -EMSGSIZE if cap is too small (*len set to the needed size). Any thread. */
int kv_cache_get(struct kv_cache *c, uint64_t loc, void *buf, size_t cap, size_t *len);

/* The same, into a new malloc'd buffer (*val, free with free()). 0, -ENOENT, -ENOMEM. */
int kv_cache_get_alloc(struct kv_cache *c, uint64_t loc, void **val, size_t *len);

/* Cache `len` bytes under `loc` (copied). Values larger than an eighth of a shard's
 * capacity are not cached. Any thread. */
void kv_cache_put(struct kv_cache *c, uint64_t loc, const void *val, size_t len);

struct kv_cache_stats {
	uint64_t hits, misses, inserts, evictions;
	uint64_t bytes; /* all the heap it takes, as charged (<= capacity) */
	uint64_t entries, capacity;
};
void kv_cache_get_stats(struct kv_cache *c, struct kv_cache_stats *out);

/* Tests: the heap its blocks take, summed block by block (malloc_usable_size and malloc's
 * header), independently of the charges. */
size_t kv_cache_heap_bytes(struct kv_cache *c);

#endif
