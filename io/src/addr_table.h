/* SPDX-License-Identifier: MIT */
/*
 * addr_table.h - the buffer pool's address tables: open addressing with linear probing,
 * keyed by address (never 0), mapping to a nonzero value. The pool keeps two: the chunk map
 * (chunk base -> struct chunk *), read without a lock, and the large map (address ->
 * mapping length), read only under map_lock.
 *
 * Writers hold the pool's map_lock (the table takes no lock of its own). addr_find is
 * inline here: it is on the pool's free path, where a class buffer's chunk is looked up
 * lock-free.
 */
#ifndef AURAIO_ADDR_TABLE_H
#define AURAIO_ADDR_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct addr_slot {
	_Atomic uintptr_t key; /* 0 = empty; written once: release, pairs with addr_find */
	_Atomic uintptr_t val; /* 0 = removed (large map); release, pairs with addr_find */
};

struct addr_array {
	struct addr_array *older; /* outgrown arrays, kept for lock-free readers */
	size_t mask;
	struct addr_slot slot[];
};

struct addr_table {
	/* Release on grow, pairs with the acquire in addr_find: a reader sees a filled array. */
	_Atomic(struct addr_array *) cur;
	size_t used;   /* slots with a key (map_lock) */
	size_t live;   /* slots with a value (map_lock) */
	bool keep_old; /* readers run lock-free: free outgrown arrays only in addr_table_fini */
};

static inline size_t addr_hash(uintptr_t key)
{
	uint64_t h = (uint64_t) key;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (size_t) h;
}

/* Lock-free for the chunk map. 0 if key is absent or removed. */
static inline uintptr_t addr_find(struct addr_table *t, uintptr_t key)
{
	struct addr_array *a = atomic_load_explicit(&t->cur, memory_order_acquire);
	size_t i = addr_hash(key) & a->mask;
	uintptr_t k;

	/* Acquire on key pairs with the release in addr_insert: val is stored before key. */
	while ((k = atomic_load_explicit(&a->slot[i].key, memory_order_acquire)) != 0) {
		if (k == key)
			return atomic_load_explicit(&a->slot[i].val, memory_order_acquire);
		i = (i + 1) & a->mask;
	}
	return 0;
}

/* keep_old: the table has lock-free readers. 0 or -ENOMEM. */
int addr_table_init(struct addr_table *t, bool keep_old);
/* Frees the table's arrays (not what the values point to). No reader may race with it. */
void addr_table_fini(struct addr_table *t);
/* map_lock held. key must not be live in t. 0 or -ENOMEM (t unchanged then). */
int addr_insert(struct addr_table *t, uintptr_t key, uintptr_t val);
/* map_lock held; only for tables without lock-free readers. The old value or 0. */
uintptr_t addr_remove(struct addr_table *t, uintptr_t key);

#endif
