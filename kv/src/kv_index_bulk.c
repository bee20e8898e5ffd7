/* SPDX-License-Identifier: MIT */
/*
 * kv_index_bulk.c - building the tree bottom-up from sorted keys (opening a store).
 *
 * Entries are appended to the rightmost leaf until it is ~95 % full (a little room is
 * left so that the first inserts after the load do not split at once); then a new leaf
 * starts and the shortest separator between the two (the new key cut after the first
 * byte that differs from the previous key) is appended to the level above, which
 * starts a new node of its own the same way when full, pushing its separator up.
 * O(n), no searching, no copying of entries. The tree is published by
 * kv_index_bulk_finish() (a release store of the root): nothing of it is visible before.
 *
 * Not concurrent with anything, and the index must not be used otherwise between the
 * first kv_index_bulk_add() and kv_index_bulk_finish(). An add that fails changes
 * nothing: every node it may need (a leaf, one node per level above, a new top, the
 * pages of a long key and of its separator) is reserved before anything is written, so
 * once the reservation holds nothing below can fail. The load then goes on (the same
 * key again, or a greater one) or is finished with what it holds. (It was set up before
 * its first leaf was had: a first add that failed left a load without a leaf, which the
 * next add or the finish dereferenced.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index_internal.h"

#define BULK_FILL (KVIX_NODE_SIZE * 95 / 100)

struct kvix_bulk {
	struct kvix_node *open[KVIX_MAX_DEPTH]; /* the node being filled at each level */
	int levels;
	size_t n;
	uint32_t last_len;
	uint8_t last[KV_INDEX_MAX_KEY]; /* the previous key */
};

/* Room for an entry of `size` bytes at the end of slot order; where to write it. */
static uint8_t *append(struct kvix_node *n, uint32_t size)
{
	n->heap = (uint16_t) (n->heap - size);
	n->slot[n->count].off = n->heap;
	n->slot[n->count].head = 0;
	n->count++;
	return (uint8_t *) n + n->heap;
}

static bool full(const struct kvix_node *n, size_t size)
{
	return n->count && kvix_node_used(n) + KVIX_SLOT + size > BULK_FILL;
}

/* A node is complete: its prefix and the slots' heads. */
static void seal(struct kvix_node *n)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE;
	struct kvix_key a, b;
	uint32_t pl;

	if (!n->count)
		return;
	(void) kvix_key_decode(kvix_entry(n, 0), end, &a);
	(void) kvix_key_decode(kvix_entry(n, n->count - 1u), end, &b);
	pl = kvix_lcp(a.p, a.inl, b.p, b.inl);
	pl = pl < KVIX_PFX_MAX ? pl : KVIX_PFX_MAX;
	n->pfx_len = (uint8_t) pl;
	memcpy(n->pfx, a.p, pl);
	for (uint32_t i = 0; i < n->count; i++) {
		(void) kvix_key_decode(kvix_entry(n, i), end, &a);
		n->slot[i].head = kvix_head(a.p, a.inl, pl);
	}
}

/* Append separator (sep, right) at level l >= 1; left is right's left neighbour. Takes
 * its nodes and pages from kv_index_bulk_add's reservation: cannot fail. */
static void push_sep(struct kv_index *ix, int l, const uint8_t *sep, uint32_t slen,
		     struct kvix_node *left, struct kvix_node *right)
{
	struct kvix_bulk *b = ix->bulk;
	struct kvix_node *n = b->open[l];
	size_t es = kvix_key_enc_size(slen);
	uint8_t *e;

	if (!n) {
		n = kvix_node_alloc(&ix->pool, KVIX_INNER);
		n->link = left;
		b->open[l] = n;
		b->levels = l + 1;
	} else if (full(n, es + 8)) {
		struct kvix_node *nn = kvix_node_alloc(&ix->pool, KVIX_INNER);

		seal(n);
		nn->link = right; /* sep moves up: right becomes nn's leftmost child */
		b->open[l] = nn;
		push_sep(ix, l + 1, sep, slen, n, nn);
		return;
	}
	e = append(n, (uint32_t) (es + 8));
	if (kvix_key_encode(ix, e, sep, slen) < 0)
		abort(); /* its pages were reserved (kv_index_bulk_add): cannot happen */
	memcpy(e + es, &right, sizeof(right));
}

/* Start a new leaf after the full one; the separator is key cut after the first byte
 * that differs from the previous key. */
static void next_leaf(struct kv_index *ix, const uint8_t *key, uint32_t klen)
{
	struct kvix_bulk *b = ix->bulk;
	struct kvix_node *old = b->open[0], *n = kvix_node_alloc(&ix->pool, KVIX_LEAF);
	uint32_t slen = kvix_lcp(b->last, b->last_len, key, klen) + 1;

	seal(old);
	old->link = n;
	n->back = old;
	b->open[0] = n;
	push_sep(ix, 1, key, slen, old, n);
}

static size_t key_pages(size_t klen)
{
	return klen > KVIX_INLINE_MAX ? (klen - KVIX_OVF_INLINE + KVIX_OVF_DATA - 1) / KVIX_OVF_DATA
				      : 0;
}

/* The load's state and its first leaf, taken from the reservation. Nothing is set
 * unless all of it is. */
static int bulk_start(struct kv_index *ix)
{
	struct kvix_bulk *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->open[0] = kvix_node_alloc(&ix->pool, KVIX_LEAF); /* reserved: cannot fail */
	b->levels = 1;
	ix->bulk = b;
	return 0;
}

/* -EINVAL if key may not come next: not greater than the previous one, or a load that
 * has not started yet into an index that is not empty. */
static int bulk_check(struct kv_index *ix, const void *key, size_t klen)
{
	struct kvix_node *root = atomic_load_explicit(&ix->root, memory_order_relaxed);
	struct kvix_bulk *b = ix->bulk;
	uint32_t cmp_len;
	int c;

	if (!b)
		return atomic_load_explicit(&ix->count, memory_order_relaxed) || root->count
			   ? -EINVAL
			   : 0;
	cmp_len = b->last_len < klen ? b->last_len : (uint32_t) klen;
	if (b->n && (c = memcmp(key, b->last, cmp_len)) <= 0 && (c < 0 || klen <= b->last_len))
		return -EINVAL;
	return 0;
}

int kv_index_bulk_add(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *ref)
{
	size_t es = kvix_key_enc_size(klen), size, levels;
	struct kvix_bulk *b;
	uint8_t *e;
	int rc;

	if (!ix || !key || !ref || klen == 0 || klen > KV_INDEX_MAX_KEY)
		return -EINVAL;
	if ((rc = bulk_check(ix, key, klen)) < 0)
		return rc;
	levels = ix->bulk ? (size_t) ix->bulk->levels : 1;
	if (levels >= KVIX_MAX_DEPTH - 1)
		return -E2BIG; /* a new top would be too deep (4^30 keys at least) */
	/* every node this add may need, before anything changes: a failure changes nothing */
	if (kvix_pool_reserve(&ix->pool, levels + 2 + 3 * key_pages(klen)) < 0)
		return -ENOMEM;
	if (!ix->bulk && (rc = bulk_start(ix)) < 0)
		return rc;
	b = ix->bulk;
	size = es + kvix_ref_size(ref);
	if (full(b->open[0], size))
		next_leaf(ix, key, (uint32_t) klen);
	e = append(b->open[0], (uint32_t) size);
	if (kvix_key_encode(ix, e, key, klen) < 0)
		abort(); /* its pages were reserved above: cannot happen */
	kvix_ref_put(e + es, ref);
	memcpy(b->last, key, klen);
	b->last_len = (uint32_t) klen;
	b->n++;
	return 0;
}

int kv_index_bulk_finish(struct kv_index *ix)
{
	struct kvix_bulk *b;
	struct kvix_node *old;

	if (!ix)
		return -EINVAL;
	b = ix->bulk;
	if (!b)
		return 0;
	for (int l = 0; l < b->levels; l++)
		seal(b->open[l]);
	old = atomic_load_explicit(&ix->root, memory_order_relaxed);
	ix->height = b->levels;
	atomic_store_explicit(&ix->count, b->n, memory_order_relaxed);
	/* Release: pairs with the acquire load of the root in descend(); the whole tree
	 * built above is visible to a reader that loads this root. */
	atomic_store_explicit(&ix->root, b->open[b->levels - 1], memory_order_release);
	kvix_node_free(&ix->pool, old);
	free(b);
	ix->bulk = NULL;
	return 0;
}
