/* SPDX-License-Identifier: MIT */
/*
 * kv_index_merge.c - what a writer does when a node gets emptier: removing an entry,
 * merging under-full nodes, removing empty ones, shrinking the tree.
 *
 * A leaf that becomes empty leaves the tree at once (unlinked from its neighbours, its
 * separator removed from the parent). A node less than a quarter full merges with a
 * sibling under the same parent when both fit in three quarters of a node (so that the
 * next insert does not split it again). An inner node may be left with a single child
 * and no separator: that is a valid (if wasteful) node, and it goes away when its child
 * does or when it merges. The root is never such a node: a root left without separator
 * is replaced by its only child (the tree gets lower).
 *
 * Every node changed is locked for the rest of the operation; nodes that leave the tree
 * are freed when it ends (kvix_w_kill), out-of-line separator pages likewise.
 */
#include <string.h>

#include "kv_index_internal.h"

#define UNDERFULL (KVIX_NODE_SIZE / 4)
#define MERGE_MAX (KVIX_BODY * 3 / 4)

/* Leaf link maintenance. `link` is read by cursors, so every node whose link changes is
 * locked; `back` is read by writers only but is changed under the lock all the same. */
void kvix_leaf_link_after(struct kvix_w *w, struct kvix_node *x, struct kvix_node *z)
{
	kvix_w_lock(w, x);
	z->link = x->link;
	z->back = x;
	if (x->link) {
		kvix_w_lock(w, x->link);
		x->link->back = z;
	}
	x->link = z;
}

void kvix_leaf_unlink(struct kvix_w *w, struct kvix_node *x)
{
	struct kvix_node *prev = x->back, *next = x->link;

	kvix_w_lock(w, x);
	if (prev) {
		kvix_w_lock(w, prev);
		prev->link = next;
	}
	if (next) {
		kvix_w_lock(w, next);
		next->back = prev;
	}
}

/* The root lost its last separator: its only child becomes the root. (And so on down
 * while that child is an inner node without separators, which the merge policy makes
 * all but impossible: such a node is so small that a shrinking sibling merges into it
 * first. Kept so that the root invariant never depends on that.) */
static int collapse_root(struct kvix_w *w, const struct kvix_list *l)
{
	struct kv_index *ix = w->ix;
	struct kvix_node *n = l->link0;

	kvix_w_kill(w, w->pn[0]);
	ix->height--;
	while (n->type == KVIX_INNER && n->count == 0) {
		kvix_w_kill(w, n);
		n = n->link;
		ix->height--;
	}
	/* Release: pairs with the acquire load of the root in descend(). The old root is
	 * locked until the operation ends, then freed: readers that hold it retry. */
	atomic_store_explicit(&ix->root, n, memory_order_release);
	return 0;
}

/* A sibling (child index of the parent of depth d) that can absorb `bytes` of entries,
 * the left one first; -1 if none. */
static int merge_sibling(const struct kvix_w *w, int d, size_t bytes, bool inner)
{
	const struct kvix_node *p = w->pn[d - 1];
	uint32_t c = (uint32_t) w->pc[d - 1], nch = p->count + 1u;
	size_t extra = inner ? KVIX_SLOT + KVIX_MAX_INNER_E : 0;

	if (c > 0 && bytes + kvix_node_used(kvix_child(p, c - 1)) - KVIX_HDR + extra <= MERGE_MAX)
		return (int) c - 1;
	if (c + 1 < nch &&
	    bytes + kvix_node_used(kvix_child(p, c + 1)) - KVIX_HDR + extra <= MERGE_MAX)
		return (int) c + 1;
	return -1;
}

/* Merge the node at depth d (content l) with sibling s into the left one of the two. */
static int merge(struct kvix_w *w, int d, struct kvix_list *l, uint32_t s)
{
	struct kvix_arena *a = &w->ix->arena;
	uint32_t c = (uint32_t) w->pc[d - 1], i = s < c ? s : c;
	struct kvix_node *sn = kvix_child(w->pn[d - 1], s), *left, *right;
	struct kvix_list sl, all, pl, out;

	kvix_gather(a, sn, &sl, 0);
	if (s < c)
		kvix_combine(w, d, &sl, l, i, &all);
	else
		kvix_combine(w, d, l, &sl, i, &all);
	left = s < c ? sn : w->pn[d];
	right = s < c ? w->pn[d] : sn;
	kvix_w_lock(w, left);
	kvix_fill(left, all.type, all.it, all.n, all.link0);
	if (all.type == KVIX_LEAF)
		kvix_leaf_unlink(w, right);
	kvix_w_kill(w, right);
	kvix_gather(a, w->pn[d - 1], &pl, 0);
	if (all.type == KVIX_LEAF)
		kvix_w_kill_chain(w, &pl.it[i]); /* an inner one moved down instead */
	kvix_splice(a, &pl, i, 1, NULL, 0, &out);
	return kvix_shrunk(w, d - 1, &out);
}

/* The node at depth d loses child c. */
static int remove_child(struct kvix_w *w, int d, uint32_t c)
{
	struct kvix_node *p = w->pn[d];
	struct kvix_list pl, out;

	if (p->count == 0 && d > 0) {
		/* c was its only child: the node goes too (never the root, which always
		 * keeps a separator) */
		kvix_w_kill(w, p);
		return remove_child(w, d - 1, (uint32_t) w->pc[d - 1]);
	}
	kvix_gather(&w->ix->arena, p, &pl, 0);
	if (c == 0) {
		pl.link0 = kvix_item_child(&pl.it[0]);
		c = 1; /* drop separator 0 with child 0 */
	}
	kvix_w_kill_chain(w, &pl.it[c - 1]);
	kvix_splice(&w->ix->arena, &pl, c - 1, 1, NULL, 0, &out);
	return kvix_shrunk(w, d, &out);
}

/* The node at depth d must hold l, which has fewer entries than it had. */
int kvix_shrunk(struct kvix_w *w, int d, struct kvix_list *l)
{
	size_t bytes = kvix_list_bytes(l, 0, l->n);
	int s;

	if (d == 0 && l->type == KVIX_INNER && l->n == 0)
		return collapse_root(w, l);
	if (d > 0 && KVIX_HDR + bytes < UNDERFULL) {
		s = merge_sibling(w, d, bytes, l->type == KVIX_INNER);
		if (s >= 0)
			return merge(w, d, l, (uint32_t) s);
	}
	kvix_w_lock(w, w->pn[d]);
	kvix_fill(w->pn[d], l->type, l->it, l->n, l->link0);
	return 0;
}

/* Remove the leaf entry at pos (the operation's path leads to it). */
int kvix_remove_at(struct kvix_w *w, uint32_t pos)
{
	int d = w->h - 1, s, rc = kvix_w_arena(w); /* merges take no node */
	struct kvix_node *x = w->pn[d];
	struct kvix_item it;
	struct kvix_list l;

	if (rc < 0)
		return rc;
	it.p = kvix_entry(x, pos);
	it.len = kvix_entry_len(x, it.p);
	kvix_w_kill_chain(w, &it);
	kvix_w_lock(w, x);
	memmove(&x->slot[pos], &x->slot[pos + 1], (x->count - pos - 1u) * KVIX_SLOT);
	x->count--;
	x->garbage = (uint16_t) (x->garbage + it.len);
	if (d == 0)
		return 0;
	if (x->count == 0) {
		kvix_leaf_unlink(w, x);
		kvix_w_kill(w, x);
		return remove_child(w, d - 1, (uint32_t) w->pc[d - 1]);
	}
	if (kvix_node_used(x) >= UNDERFULL)
		return 0;
	s = merge_sibling(w, d, kvix_node_used(x) - KVIX_HDR, false);
	if (s < 0)
		return 0;
	kvix_gather(&w->ix->arena, x, &l, 0);
	return merge(w, d, &l, (uint32_t) s);
}
