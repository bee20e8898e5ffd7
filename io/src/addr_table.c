/* SPDX-License-Identifier: MIT */
/*
 * addr_table.c - the writer side of the buffer pool's address tables (addr_table.h):
 * creation, insert, remove, and growth by rebuilding into a larger array.
 *
 * Invariants: a key, once stored in an array, stays in that slot (removal clears only
 * the value), and a slot's value is stored before its key (both release), so a lock-free
 * reader that finds the key finds its value. With keep_old, an outgrown array is kept on
 * the new one's `older` list until addr_table_fini, so a reader that loaded it never reads
 * freed memory.
 *
 * Must never: free an outgrown array of a table with lock-free readers before
 * addr_table_fini; run two writers at once (the pool's map_lock serialises them).
 */
#include <errno.h>
#include <stdlib.h>

#include "addr_table.h"

#define TABLE_MIN 16

static struct addr_array *addr_array_new(size_t cap)
{
	struct addr_array *a = calloc(1, sizeof(*a) + cap * sizeof(a->slot[0]));

	if (a)
		a->mask = cap - 1;
	return a;
}

int addr_table_init(struct addr_table *t, bool keep_old)
{
	struct addr_array *a = addr_array_new(TABLE_MIN);

	if (!a)
		return -ENOMEM;
	atomic_init(&t->cur, a);
	t->used = 0;
	t->live = 0;
	t->keep_old = keep_old;
	return 0;
}

void addr_table_fini(struct addr_table *t)
{
	struct addr_array *a = atomic_load_explicit(&t->cur, memory_order_relaxed);

	while (a) {
		struct addr_array *older = a->older;

		free(a);
		a = older;
	}
}

/* Writer side (map_lock): the slot holding key, or the empty slot where it would go. */
static struct addr_slot *addr_probe(struct addr_array *a, uintptr_t key)
{
	size_t i = addr_hash(key) & a->mask;
	uintptr_t k;

	while ((k = atomic_load_explicit(&a->slot[i].key, memory_order_relaxed)) != 0 && k != key)
		i = (i + 1) & a->mask;
	return &a->slot[i];
}

/* Rebuild with room for twice the live entries, dropping removed ones; map_lock held. */
static int addr_grow(struct addr_table *t)
{
	struct addr_array *old = atomic_load_explicit(&t->cur, memory_order_relaxed), *a;
	size_t cap = TABLE_MIN;

	while (cap < (t->live + 1) * 2)
		cap <<= 1;
	a = addr_array_new(cap);
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i <= old->mask; i++) {
		uintptr_t k = atomic_load_explicit(&old->slot[i].key, memory_order_relaxed);
		uintptr_t v = atomic_load_explicit(&old->slot[i].val, memory_order_relaxed);
		struct addr_slot *s;

		if (!k || !v)
			continue;
		/* a is not published yet: relaxed stores, made visible by the release below. */
		s = addr_probe(a, k);
		atomic_store_explicit(&s->key, k, memory_order_relaxed);
		atomic_store_explicit(&s->val, v, memory_order_relaxed);
	}
	t->used = t->live;
	a->older = t->keep_old ? old : NULL;
	atomic_store_explicit(&t->cur, a, memory_order_release);
	if (!t->keep_old)
		free(old);
	return 0;
}

/* map_lock held. key must not be live in t. */
int addr_insert(struct addr_table *t, uintptr_t key, uintptr_t val)
{
	struct addr_array *a = atomic_load_explicit(&t->cur, memory_order_relaxed);
	struct addr_slot *s;
	bool fresh;

	if ((t->used + 1) * 4 > (a->mask + 1) * 3) {
		if (addr_grow(t))
			return -ENOMEM;
		a = atomic_load_explicit(&t->cur, memory_order_relaxed);
	}
	s = addr_probe(a, key);
	fresh = atomic_load_explicit(&s->key, memory_order_relaxed) == 0;
	/* val before key, both release: a reader that sees key (acquire) sees val and what it
	 * points to. */
	atomic_store_explicit(&s->val, val, memory_order_release);
	if (fresh) {
		atomic_store_explicit(&s->key, key, memory_order_release);
		t->used++;
	}
	t->live++;
	return 0;
}

/* map_lock held; only for tables without lock-free readers. Returns the old value or 0. */
uintptr_t addr_remove(struct addr_table *t, uintptr_t key)
{
	struct addr_slot *s = addr_probe(atomic_load_explicit(&t->cur, memory_order_relaxed), key);
	uintptr_t v = atomic_load_explicit(&s->val, memory_order_relaxed);

	if (v) {
		atomic_store_explicit(&s->val, 0, memory_order_relaxed);
		t->live--;
	}
	return v;
}
