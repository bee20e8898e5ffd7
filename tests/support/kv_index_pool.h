/* SPDX-License-Identifier: MIT */
/*
 * kv_index_pool.h - the index tests' check of its node pool: every node the pool carved
 * is either in the tree (a node or a page of a long key) or on the free list, once -
 * nothing leaks, nothing is freed twice or while in use. Needs kv_index_internal.h.
 */
#ifndef AURA_KV_INDEX_POOL_H
#define AURA_KV_INDEX_POOL_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "kv_index.h"
#include "kv_index_internal.h"

static inline size_t pool_count_tree(const struct kvix_node *n)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE;
	size_t c = 1;

	cr_assert(n->type == KVIX_LEAF || n->type == KVIX_INNER, "a freed node in the tree");
	for (uint32_t i = 0; i < n->count; i++) {
		struct kvix_key k;

		cr_assert_eq(kvix_key_decode(kvix_entry(n, i), end, &k), 0);
		for (const struct kvix_node *pg = k.ovf; pg; pg = pg->link) {
			cr_assert_eq(pg->type, KVIX_OVF, "a freed page in a key");
			c++;
		}
	}
	if (n->type == KVIX_INNER)
		for (uint32_t i = 0; i <= n->count; i++)
			c += pool_count_tree(kvix_child(n, i));
	return c;
}

static inline void check_pool(struct kv_index *ix)
{
	const struct kvix_pool *p = &ix->pool;
	size_t carved = 0, nfree = 0, used = pool_count_tree(atomic_load(&ix->root));

	for (const struct kvix_slab *s = p->slabs; s; s = s->next)
		carved += s->size / KVIX_NODE_SIZE - 1; /* the first node holds the slab record */
	carved -= (size_t) (p->end - p->cur) / KVIX_NODE_SIZE;
	for (const struct kvix_node *n = p->free; n; n = n->link)
		cr_assert_leq(++nfree, carved, "the free list loops");
	cr_assert_eq(nfree, p->nfree, "free list length");
	cr_assert_eq(used + nfree, carved, "%zu nodes in the tree, %zu free, %zu carved", used,
		     nfree, carved);
}

/* The pool running dry: no free node, and no slab can be mapped - what running out of
 * memory looks like to the index. pool_wet() gives the nodes back. */
struct dry {
	struct kvix_node *free;
	size_t nfree;
	uint8_t *cur;
};

static inline struct dry pool_dry(struct kv_index *ix)
{
	struct dry d = { ix->pool.free, ix->pool.nfree, ix->pool.cur };

	ix->pool.free = NULL;
	ix->pool.nfree = 0;
	ix->pool.cur = ix->pool.end;
	ix->pool.fail = true;
	return d;
}

/* Memory is back: the nodes taken away join those freed meanwhile. */
static inline void pool_wet(struct kv_index *ix, struct dry d)
{
	struct kvix_node **tail = &ix->pool.free;

	while (*tail)
		tail = &(*tail)->link;
	*tail = d.free;
	ix->pool.nfree += d.nfree;
	ix->pool.cur = d.cur;
	ix->pool.fail = false;
}

#endif
