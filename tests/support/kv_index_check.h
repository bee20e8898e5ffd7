/* SPDX-License-Identifier: MIT */
/*
 * kv_index_check.h - what the index tests (tests/kv/test_index*.c) share: refs whose every
 * field is a function of (version, salt), the structural checker check_tree() (walks the
 * whole tree and checks its invariants, reading the node layout from kv_index_internal.h,
 * then check_pool()), and the reference model of random keys (model_keys, model_check).
 */
#ifndef AURA_KV_INDEX_CHECK_H
#define AURA_KV_INDEX_CHECK_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index.h"
#include "kv_index_internal.h"
#include "kv_index_pool.h"

/* --- helpers --- */

static inline uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A ref whose every field is a function of (version, salt): a torn read shows. */
static inline struct kv_ref ref_of(uint64_t version, uint64_t salt)
{
	struct kv_ref r = { 0 };
	uint64_t h = (version * 0x9e3779b97f4a7c15ull) ^ salt;

	r.version = version;
	/* segment numbers only grow: half of them past 32 bits */
	r.segment = (version & 4) ? h >> 12 : h >> 40;
	r.offset = (uint32_t) h;
	r.size = (uint32_t) (h >> 17) & 0xffffff;
	r.flags = (uint8_t) (version & 3); /* tombstone and batch bits both vary */
	r.batch_off = (r.flags & KV_REF_BATCH) ? (uint32_t) (h >> 7) : 0;
	return r;
}

static inline bool ref_eq(const struct kv_ref *a, const struct kv_ref *b)
{
	return a->version == b->version && a->segment == b->segment && a->offset == b->offset &&
	       a->size == b->size && a->flags == b->flags && a->batch_off == b->batch_off;
}

static inline int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

/* --- the structural checker --- */

struct tkey {
	const uint8_t *p;
	size_t len;
};

struct walk {
	uint8_t *buf[2]; /* whole keys assembled from pages */
	size_t entries;
	const struct kvix_node *prev_leaf;
	int leaf_depth;
};

static inline struct tkey node_key(const struct kvix_node *n, uint32_t i, uint8_t *buf)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE, *e = kvix_entry(n, i);
	struct kvix_key k;
	uint32_t at;

	cr_assert_not_null(e, "slot %u out of bounds", i);
	cr_assert_eq(kvix_key_decode(e, end, &k), 0, "entry %u does not decode", i);
	if (!k.ovf)
		return (struct tkey){ k.p, k.len };
	memcpy(buf, k.p, k.inl);
	at = k.inl;
	for (const struct kvix_node *pg = k.ovf; at < k.len; pg = pg->link) {
		cr_assert(pg && pg->type == KVIX_OVF, "broken out-of-line key");
		memcpy(buf + at, (const uint8_t *) pg + KVIX_HDR, pg->count);
		at += pg->count;
	}
	cr_assert_eq(at, k.len);
	return (struct tkey){ buf, k.len };
}

static inline void check_layout(const struct kvix_node *n)
{
	size_t bytes = 0;

	cr_assert_geq(n->heap, KVIX_HDR + KVIX_SLOT * n->count, "slots overlap entries");
	cr_assert_leq(n->pfx_len, KVIX_PFX_MAX);
	for (uint32_t i = 0; i < n->count; i++) {
		const uint8_t *e = kvix_entry(n, i);

		cr_assert_not_null(e);
		cr_assert_geq(n->slot[i].off, n->heap);
		bytes += kvix_entry_len(n, e);
	}
	cr_assert_eq(bytes + n->garbage, KVIX_NODE_SIZE - n->heap, "garbage accounting");
}

/* Keys of n in order, sharing the prefix, heads right, within [lo, hi). */
static inline void check_keys(struct walk *w, const struct kvix_node *n, struct tkey lo,
			      struct tkey hi)
{
	struct tkey prev = { NULL, 0 };

	for (uint32_t i = 0; i < n->count; i++) {
		struct tkey k = node_key(n, i, w->buf[i & 1]);

		cr_assert_geq(k.len, n->pfx_len);
		cr_assert_eq(memcmp(k.p, n->pfx, n->pfx_len), 0, "key outside the node prefix");
		cr_assert_eq(n->slot[i].head, kvix_head(k.p, (uint32_t) k.len, n->pfx_len));
		if (prev.p)
			cr_assert_lt(key_cmp(prev.p, prev.len, k.p, k.len), 0, "keys out of order");
		if (lo.p)
			cr_assert_geq(key_cmp(k.p, k.len, lo.p, lo.len), 0, "key below its range");
		if (hi.p)
			cr_assert_lt(key_cmp(k.p, k.len, hi.p, hi.len), 0, "key above its range");
		prev = k;
	}
}

static inline struct tkey dup_key(struct tkey k)
{
	uint8_t *p = malloc(k.len ? k.len : 1);

	memcpy(p, k.p, k.len);
	return (struct tkey){ p, k.len };
}

static inline void walk(struct walk *w, const struct kvix_node *n, int depth, struct tkey lo,
			struct tkey hi)
{
	check_layout(n);
	check_keys(w, n, lo, hi);
	if (n->type == KVIX_LEAF) {
		cr_assert(w->leaf_depth < 0 || w->leaf_depth == depth, "leaves at two depths");
		w->leaf_depth = depth;
		cr_assert_eq(n->back, w->prev_leaf, "leaf back link");
		if (w->prev_leaf)
			cr_assert_eq(w->prev_leaf->link, n, "leaf link");
		w->prev_leaf = n;
		w->entries += n->count;
		return;
	}
	cr_assert_eq(n->type, KVIX_INNER);
	for (uint32_t i = 0; i <= n->count; i++) {
		struct tkey clo = lo, chi = hi;

		if (i > 0)
			clo = dup_key(node_key(n, i - 1, w->buf[0]));
		if (i < n->count)
			chi = dup_key(node_key(n, i, w->buf[1]));
		walk(w, kvix_child(n, i), depth + 1, clo, chi);
		if (i > 0)
			free((void *) clo.p);
		if (i < n->count)
			free((void *) chi.p);
	}
}

static inline void check_tree(struct kv_index *ix)
{
	const struct kvix_node *root = atomic_load(&ix->root);
	struct walk w = { { malloc(KV_INDEX_MAX_KEY), malloc(KV_INDEX_MAX_KEY) }, 0, NULL, -1 };
	struct tkey none = { NULL, 0 };

	if (root->type == KVIX_INNER)
		cr_assert_geq(root->count, 1, "an inner root needs a separator");
	walk(&w, root, 0, none, none);
	cr_assert_null(w.prev_leaf->link, "last leaf has a right neighbour");
	cr_assert_eq(w.leaf_depth + 1, ix->height);
	cr_assert_eq(w.entries, kv_index_count(ix), "count %zu, leaves hold %zu",
		     kv_index_count(ix), w.entries);
	free(w.buf[0]);
	free(w.buf[1]);
	check_pool(ix);
}

/* --- a reference model --- */

struct mkey {
	uint8_t k[64];
	uint8_t len;
	bool present;
	struct kv_ref ref;
};

static inline int mkey_cmp(const void *a, const void *b)
{
	const struct mkey *x = a, *y = b;

	return key_cmp(x->k, x->len, y->k, y->len);
}

/* n distinct random keys of 1..64 bytes, sorted. */
static inline struct mkey *model_keys(size_t want, size_t *n, uint64_t seed)
{
	struct mkey *m = calloc(want, sizeof(*m));
	size_t j = 0;

	for (size_t i = 0; i < want; i++) {
		m[i].len = (uint8_t) (1 + splitmix(&seed) % 64);
		for (size_t b = 0; b < m[i].len; b++)
			m[i].k[b] = (uint8_t) splitmix(&seed);
	}
	qsort(m, want, sizeof(*m), mkey_cmp);
	for (size_t i = 0; i < want; i++)
		if (j == 0 || mkey_cmp(&m[j - 1], &m[i]) != 0)
			m[j++] = m[i];
	*n = j;
	return m;
}

static inline size_t *shuffled(size_t n, uint64_t seed)
{
	size_t *o = calloc(n ? n : 1, sizeof(*o));

	cr_assert_not_null(o);
	for (size_t i = 0; i < n; i++)
		o[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = splitmix(&seed) % i, t = o[i - 1];

		o[i - 1] = o[j];
		o[j] = t;
	}
	return o;
}

static inline void model_check_gets(struct kv_index *ix, const struct mkey *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct kv_ref out;
		int rc = kv_index_get(ix, m[i].k, m[i].len, &out);

		if (!m[i].present) {
			cr_assert_eq(rc, -ENOENT, "key %zu should be absent", i);
			continue;
		}
		cr_assert_eq(rc, 0, "key %zu should be present", i);
		cr_assert(ref_eq(&out, &m[i].ref), "key %zu has the wrong entry", i);
	}
}

/* A cursor from `from` yields exactly the present model keys from there, in order. */
static inline void model_check_cursor(struct kv_index *ix, const struct mkey *m, size_t n,
				      size_t from)
{
	struct kv_index_cursor *c = kv_index_cursor_open(ix, m[from].k, m[from].len);
	static uint8_t key[KV_INDEX_MAX_KEY];
	struct kv_ref ref;
	size_t klen, i = from;
	int rc;

	cr_assert_not_null(c);
	while ((rc = kv_index_cursor_next(c, key, &klen, &ref)) == 1) {
		while (i < n && !m[i].present)
			i++;
		cr_assert_lt(i, n, "the cursor yields more than the model");
		cr_assert_eq(klen, m[i].len, "cursor key %zu: length", i);
		cr_assert_eq(memcmp(key, m[i].k, klen), 0, "cursor key %zu", i);
		cr_assert(ref_eq(&ref, &m[i].ref));
		i++;
	}
	cr_assert_eq(rc, 0);
	while (i < n && !m[i].present)
		i++;
	cr_assert_eq(i, n, "the cursor stopped early at %zu of %zu", i, n);
	kv_index_cursor_close(c);
}

static inline void model_check(struct kv_index *ix, const struct mkey *m, size_t n)
{
	size_t present = 0;

	for (size_t i = 0; i < n; i++)
		present += m[i].present;
	cr_assert_eq(kv_index_count(ix), present);
	check_tree(ix);
	model_check_gets(ix, m, n);
	model_check_cursor(ix, m, n, 0);
	model_check_cursor(ix, m, n, n / 3);
}

/* The salt of an entry a cas moved (ref_of(version, i ^ MOVED)). */
#define MOVED 0x5a5a5a5a00000000ull /* salt of an entry a cas moved */

#endif
