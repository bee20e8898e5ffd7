/* SPDX-License-Identifier: MIT */
/*
 * kv_index.c - the ordered in-memory index: lifecycle and statistics. The tree itself
 * is in kv_index_{node,read,write,split,merge,bulk}.c; kv_index_internal.h has the
 * node layout.
 *
 * Concurrency protocol (optimistic lock coupling, seqlock-style):
 *
 * - Writers take ix->wlock for a whole operation; there is no other lock, so there is
 *   no lock order to respect. Readers take no lock and write no shared memory.
 * - Each node has a 64-bit version (a C11 atomic), odd while a writer changes the node.
 *   A writer locks a node (kvix_lock: version + 1, relaxed, then a release fence) before
 *   its first change and unlocks it (kvix_unlock: version + 1, release store) when its
 *   operation ends, never earlier: a parent is locked before any changed child of it is
 *   unlocked.
 * - A reader reads a node's version with an acquire load, waiting while it is odd
 *   (kvix_rd_begin, pairs with the release store of kvix_unlock), reads what it needs,
 *   copying it out, then issues an acquire fence and re-reads the version
 *   (kvix_rd_valid, the fence pairs with the release fence of kvix_lock): equal means
 *   no writer touched the node meanwhile and the copy is consistent; otherwise the
 *   reader starts again from the root.
 * - Descending: read the child pointer, validate the parent (the pointer may be garbage
 *   before that), read the child's version, validate the parent again (so the child was
 *   the parent's child at that version). A split or merge locks the parent before the
 *   child is unlocked, so a reader that sees the child's new version also sees the
 *   parent changed.
 * - The root pointer is stored with release and loaded with acquire; a reader checks it
 *   again after reading the root's version, because the old root is locked while it is
 *   replaced.
 * - Nodes are type-stable: they are never unmapped while the index lives. A node that
 *   leaves the tree is freed at the end of the operation (version bumped, onto a free
 *   list) and may be reused for any node type, including pages of out-of-line keys.
 *   Such pages are immutable while in use and freed only after the node holding their
 *   key was locked, so a reader validates that node before following each page pointer.
 * - Readers bounds-check every offset, length and count they read from a node and bound
 *   every loop, because until validation the bytes may be anything.
 * - ix->count and pool.mapped are statistics (relaxed atomics).
 */
#include <stdlib.h>

#include "kv_index_internal.h"

struct kv_index *kv_index_create(void)
{
	struct kv_index *ix = calloc(1, sizeof(*ix));
	struct kvix_node *root;

	if (!ix)
		return NULL;
	kvix_pool_init(&ix->pool);
	root = kvix_node_alloc(&ix->pool, KVIX_LEAF);
	if (!root || pthread_mutex_init(&ix->wlock, NULL) != 0) {
		kvix_pool_destroy(&ix->pool);
		free(ix);
		return NULL;
	}
	atomic_init(&ix->root, root);
	atomic_init(&ix->count, 0);
	ix->height = 1;
	return ix;
}

void kv_index_destroy(struct kv_index *ix)
{
	if (!ix)
		return;
	kvix_pool_destroy(&ix->pool);
	free(ix->arena.base);
	free(ix->bulk);
	pthread_mutex_destroy(&ix->wlock);
	free(ix);
}

size_t kv_index_count(struct kv_index *ix)
{
	return ix ? atomic_load_explicit(&ix->count, memory_order_relaxed) : 0;
}

/* Mapped node slabs (carved or not, free nodes included) plus the writers' scratch
 * memory actually touched (its reservation is an upper bound that is mostly never
 * faulted in) and the index itself. */
size_t kv_index_memory(struct kv_index *ix)
{
	if (!ix)
		return 0;
	return atomic_load_explicit(&ix->pool.mapped, memory_order_relaxed) +
	       atomic_load_explicit(&ix->arena.peak, memory_order_relaxed) + sizeof(*ix);
}
