/* SPDX-License-Identifier: MIT */
/*
 * The ordered in-memory index (kv/src/kv_index*.c): point semantics, a reference
 * model of 200k random keys through inserts, deletes and reinserts, cursors, bulk
 * loading, keys up to 64 KiB, keys at every length boundary of the encoding, readers and
 * cursors racing with writers, and memory per entry. After every phase check_tree() walks
 * the whole tree and checks its invariants (it reads the node layout from
 * kv_index_internal.h), and check_pool() that every node the pool carved is in the tree
 * (a node or a page of a long key) or on the free list, exactly once.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index.h"
#include "kv_index_internal.h"
#include "kv_index_pool.h"
#include "test_util.h"

/* --- helpers --- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A ref whose every field is a function of (version, salt): a torn read shows. */
static struct kv_ref ref_of(uint64_t version, uint64_t salt)
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

static bool ref_eq(const struct kv_ref *a, const struct kv_ref *b)
{
	return a->version == b->version && a->segment == b->segment && a->offset == b->offset &&
	       a->size == b->size && a->flags == b->flags && a->batch_off == b->batch_off;
}

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
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

static struct tkey node_key(const struct kvix_node *n, uint32_t i, uint8_t *buf)
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

static void check_layout(const struct kvix_node *n)
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
static void check_keys(struct walk *w, const struct kvix_node *n, struct tkey lo, struct tkey hi)
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

static struct tkey dup_key(struct tkey k)
{
	uint8_t *p = malloc(k.len ? k.len : 1);

	memcpy(p, k.p, k.len);
	return (struct tkey){ p, k.len };
}

static void walk(struct walk *w, const struct kvix_node *n, int depth, struct tkey lo,
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

static void check_tree(struct kv_index *ix)
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

/* --- point semantics --- */

Test(index, get_on_an_empty_index_finds_nothing)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref r;

	cr_assert_not_null(ix);
	cr_assert_eq(kv_index_get(ix, "a", 1, &r), -ENOENT);
	cr_assert_eq(kv_index_count(ix), 0);
	cr_assert_gt(kv_index_memory(ix), 0);
	check_tree(ix);
	kv_index_destroy(ix);
	kv_index_destroy(NULL);
}

Test(index, an_inserted_key_is_found_with_every_field)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref in = ref_of(7, 1), out;
	bool had = true;

	cr_assert_eq(kv_index_upsert(ix, "key", 3, &in, NULL, &had), 1);
	cr_assert_not(had);
	cr_assert_eq(kv_index_get(ix, "key", 3, &out), 0);
	cr_assert(ref_eq(&in, &out));
	cr_assert_eq(kv_index_get(ix, "ke", 2, &out), -ENOENT, "a prefix is another key");
	cr_assert_eq(kv_index_get(ix, "key!", 4, &out), -ENOENT);
	cr_assert_eq(kv_index_count(ix), 1);
	kv_index_destroy(ix);
}

/* Segment numbers only grow (one per rollover of the log): past 2^32 a long-lived store
 * must still find its records where they are. */
Test(index, a_segment_number_past_32_bits_is_kept_whole)
{
	struct kv_index *ix = kv_index_create();
	uint64_t seg = (UINT64_C(1) << 32) + 7, big = UINT64_MAX - 1;
	struct kv_ref in = ref_of(9, 1), out;
	bool had;

	in.segment = seg;
	cr_assert_eq(kv_index_upsert(ix, "key", 3, &in, NULL, &had), 1);
	cr_assert_eq(kv_index_get(ix, "key", 3, &out), 0);
	cr_assert_eq(out.segment, seg, "segment %llu came back as %llu", (unsigned long long) seg,
		     (unsigned long long) out.segment);
	in = ref_of(10, 1);
	in.segment = big;
	cr_assert_eq(kv_index_upsert(ix, "key", 3, &in, NULL, &had), 1);
	cr_assert_eq(kv_index_get(ix, "key", 3, &out), 0);
	cr_assert_eq(out.segment, big);
	kv_index_destroy(ix);
}

Test(index, a_newer_version_replaces_the_entry_and_reports_the_old_one)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref a = ref_of(5, 1), b = ref_of(6, 2), old, out;
	bool had;

	cr_assert_eq(kv_index_upsert(ix, "k", 1, &a, NULL, NULL), 1);
	cr_assert_eq(kv_index_upsert(ix, "k", 1, &b, &old, &had), 1);
	cr_assert(had);
	cr_assert(ref_eq(&old, &a));
	cr_assert_eq(kv_index_get(ix, "k", 1, &out), 0);
	cr_assert(ref_eq(&out, &b));
	cr_assert_eq(kv_index_count(ix), 1);
	kv_index_destroy(ix);
}

Test(index, an_older_or_equal_version_is_refused_and_changes_nothing)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref a = ref_of(5, 1), older = ref_of(4, 2), same = ref_of(5, 3), out;
	bool had = true;

	cr_assert_eq(kv_index_upsert(ix, "k", 1, &a, NULL, NULL), 1);
	cr_assert_eq(kv_index_upsert(ix, "k", 1, &older, NULL, &had), 0);
	cr_assert_not(had);
	cr_assert_eq(kv_index_upsert(ix, "k", 1, &same, NULL, NULL), 0);
	cr_assert_eq(kv_index_get(ix, "k", 1, &out), 0);
	cr_assert(ref_eq(&out, &a));
	kv_index_destroy(ix);
}

Test(index, cas_replaces_only_while_the_entry_points_where_expected)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref a = ref_of(5, 1), moved = a, other = ref_of(9, 9), out;

	moved.segment += 100;
	moved.offset = 4096;
	cr_assert_eq(kv_index_cas(ix, "k", 1, &a, &moved), 0, "absent key");
	cr_assert_eq(kv_index_upsert(ix, "k", 1, &a, NULL, NULL), 1);
	cr_assert_eq(kv_index_cas(ix, "k", 1, &other, &moved), 0, "wrong location");
	cr_assert_eq(kv_index_cas(ix, "k", 1, &a, &moved), 1);
	cr_assert_eq(kv_index_get(ix, "k", 1, &out), 0);
	cr_assert(ref_eq(&out, &moved));
	cr_assert_eq(kv_index_cas(ix, "k", 1, &a, &other), 0, "a second move of the old spot");
	kv_index_destroy(ix);
}

Test(index, remove_if_removes_only_while_the_entry_points_where_expected)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref a = ref_of(5, 1), other = ref_of(6, 2), out;

	cr_assert_eq(kv_index_remove_if(ix, "k", 1, &a), 0, "absent key");
	cr_assert_eq(kv_index_upsert(ix, "k", 1, &a, NULL, NULL), 1);
	cr_assert_eq(kv_index_remove_if(ix, "k", 1, &other), 0);
	cr_assert_eq(kv_index_get(ix, "k", 1, &out), 0);
	cr_assert_eq(kv_index_remove_if(ix, "k", 1, &a), 1);
	cr_assert_eq(kv_index_get(ix, "k", 1, &out), -ENOENT);
	cr_assert_eq(kv_index_count(ix), 0);
	cr_assert_eq(kv_index_remove_if(ix, "k", 1, &a), 0, "already gone");
	check_tree(ix);
	kv_index_destroy(ix);
}

Test(index, a_tombstone_flag_round_trips)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref t = { .version = 3, .segment = 1, .offset = 2, .size = 0 }, out;

	t.flags = KV_REF_TOMBSTONE;
	cr_assert_eq(kv_index_upsert(ix, "gone", 4, &t, NULL, NULL), 1);
	cr_assert_eq(kv_index_get(ix, "gone", 4, &out), 0, "a tombstone is an entry");
	cr_assert(ref_eq(&out, &t));
	cr_assert_eq(kv_index_count(ix), 1);
	kv_index_destroy(ix);
}

Test(index, batch_off_round_trips_with_the_batch_flag_and_reads_zero_without)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref b = { .version = UINT64_MAX, .segment = UINT32_MAX, .offset = UINT32_MAX };
	struct kv_ref nb = { .version = 1, .batch_off = 77 }, out;

	b.size = UINT32_MAX;
	b.flags = KV_REF_BATCH | KV_REF_TOMBSTONE;
	b.batch_off = UINT32_MAX - 1;
	cr_assert_eq(kv_index_upsert(ix, "b", 1, &b, NULL, NULL), 1);
	cr_assert_eq(kv_index_get(ix, "b", 1, &out), 0);
	cr_assert(ref_eq(&out, &b), "largest values of every field");
	cr_assert_eq(kv_index_upsert(ix, "n", 1, &nb, NULL, NULL), 1);
	cr_assert_eq(kv_index_get(ix, "n", 1, &out), 0);
	cr_assert_eq(out.batch_off, 0, "batch_off is kept only for batch records");
	kv_index_destroy(ix);
}

Test(index, invalid_arguments_are_refused)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref a = ref_of(1, 1), out;
	static uint8_t big[KV_INDEX_MAX_KEY + 1];

	cr_assert_eq(kv_index_upsert(ix, "k", 0, &a, NULL, NULL), -EINVAL);
	cr_assert_eq(kv_index_upsert(ix, big, sizeof(big), &a, NULL, NULL), -EINVAL);
	cr_assert_eq(kv_index_upsert(ix, "k", 1, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(kv_index_get(ix, "k", 0, &out), -ENOENT);
	cr_assert_eq(kv_index_get(ix, big, sizeof(big), &out), -ENOENT);
	cr_assert_null(kv_index_cursor_open(ix, big, sizeof(big)));
	cr_assert_eq(kv_index_count(ix), 0);
	kv_index_destroy(ix);
}

/* --- a reference model --- */

struct mkey {
	uint8_t k[64];
	uint8_t len;
	bool present;
	struct kv_ref ref;
};

static int mkey_cmp(const void *a, const void *b)
{
	const struct mkey *x = a, *y = b;

	return key_cmp(x->k, x->len, y->k, y->len);
}

/* n distinct random keys of 1..64 bytes, sorted. */
static struct mkey *model_keys(size_t want, size_t *n, uint64_t seed)
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

static size_t *shuffled(size_t n, uint64_t seed)
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

static void model_check_gets(struct kv_index *ix, const struct mkey *m, size_t n)
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
static void model_check_cursor(struct kv_index *ix, const struct mkey *m, size_t n, size_t from)
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

static void model_check(struct kv_index *ix, const struct mkey *m, size_t n)
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

static void model_insert(struct kv_index *ix, struct mkey *m, const size_t *order, size_t n,
			 uint64_t version)
{
	for (size_t j = 0; j < n; j++) {
		struct mkey *k = &m[order[j]];
		bool had;

		k->ref = ref_of(version + j, order[j]);
		cr_assert_eq(kv_index_upsert(ix, k->k, k->len, &k->ref, NULL, &had), 1);
		cr_assert_eq(had, k->present);
		k->present = true;
	}
}

Test(index_model, random_keys_match_a_model_through_insert_delete_and_reinsert, .timeout = 120)
{
	struct kv_index *ix = kv_index_create();
	size_t n, *order, removed = 0;
	struct mkey *m = model_keys(200000, &n, 42);
	uint64_t seed = 7;

	order = shuffled(n, 1);
	model_insert(ix, m, order, n, 1);
	model_check(ix, m, n);
	for (size_t j = 0; j < n; j++) {
		struct mkey *k = &m[order[j]];

		if (splitmix(&seed) & 1)
			continue;
		cr_assert_eq(kv_index_remove_if(ix, k->k, k->len, &k->ref), 1);
		k->present = false;
		removed++;
	}
	cr_log_info("model: %zu keys, %zu removed", n, removed);
	model_check(ix, m, n);
	free(order);
	order = shuffled(n, 2);
	model_insert(ix, m, order, n, 1000000); /* reinsert, and replace the others */
	model_check(ix, m, n);
	free(order);
	free(m);
	kv_index_destroy(ix);
}

Test(index_model, removing_every_key_leaves_an_empty_valid_tree_that_takes_inserts)
{
	struct kv_index *ix = kv_index_create();
	size_t n, *order;
	struct mkey *m = model_keys(50000, &n, 3);

	order = shuffled(n, 4);
	model_insert(ix, m, order, n, 1);
	for (size_t j = 0; j < n; j++) {
		struct mkey *k = &m[order[(j * 7919) % n]];

		cr_assert_eq(kv_index_remove_if(ix, k->k, k->len, &k->ref), 1);
		k->present = false;
		if (j % 5000 == 0)
			check_tree(ix); /* while nodes merge and the tree gets lower */
	}
	model_check(ix, m, n);
	cr_assert_eq(ix->height, 1, "an empty tree is one leaf");
	model_insert(ix, m, order, n, 100000);
	model_check(ix, m, n);
	free(order);
	free(m);
	kv_index_destroy(ix);
}

/* Leaf sizes in key order: leaf j holds model keys [start_j, start_j + size_j). */
static size_t leaf_sizes(struct kv_index *ix, size_t *sizes, size_t max)
{
	const struct kvix_node *n = atomic_load(&ix->root);
	size_t k = 0;

	while (n->type == KVIX_INNER)
		n = kvix_child(n, 0);
	for (; n && k < max; n = n->link)
		sizes[k++] = n->count;
	return k;
}

static void remove_range(struct kv_index *ix, struct mkey *m, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		size_t j = from + (i - from) * 7919 % (to - from); /* in a scrambled order */

		if (!m[j].present)
			continue;
		cr_assert_eq(kv_index_remove_if(ix, m[j].k, m[j].len, &m[j].ref), 1);
		m[j].present = false;
	}
}

/* The first model key >= k. */
static size_t model_lower(const struct mkey *m, size_t n, struct tkey k)
{
	size_t i = 0;

	while (i < n && key_cmp(m[i].k, m[i].len, k.p, k.len) < 0)
		i++;
	return i;
}

Test(index_model, emptied_leaves_and_inner_nodes_leave_the_tree_and_it_gets_lower)
{
	struct kv_index *ix = kv_index_create();
	size_t n, nl, *size = calloc(100000, sizeof(*size)), at = 0, from, to;
	struct mkey *m = model_keys(300000, &n, 31);
	uint8_t *buf = malloc(KV_INDEX_MAX_KEY);
	const struct kvix_node *root;
	struct tkey lo, hi;

	for (size_t i = 0; i < n; i++) {
		m[i].ref = ref_of(i + 1, i);
		m[i].present = true;
		cr_assert_eq(kv_index_bulk_add(ix, m[i].k, m[i].len, &m[i].ref), 0);
	}
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	cr_assert_eq(ix->height, 3);
	/* Every third leaf emptied (the first child of some inner nodes among them): its
	 * neighbours are too full to merge with, so it leaves the tree empty. */
	nl = leaf_sizes(ix, size, 100000);
	for (size_t j = 0; j < nl; at += size[j++])
		if (j % 3 == 0)
			remove_range(ix, m, at, at + size[j]);
	model_check(ix, m, n);
	/* The whole subtree of the root's second child, in key order: that inner node is
	 * left with one child (its siblings, two thirds full, cannot take it in), then
	 * with none, and goes too. */
	root = atomic_load(&ix->root);
	cr_assert_geq(root->count, 2);
	lo = dup_key(node_key(root, 0, buf));
	hi = dup_key(node_key(root, 1, buf));
	from = model_lower(m, n, lo);
	to = model_lower(m, n, hi);
	for (size_t i = from; i < to; i++)
		if (m[i].present) {
			cr_assert_eq(kv_index_remove_if(ix, m[i].k, m[i].len, &m[i].ref), 1);
			m[i].present = false;
		}
	model_check(ix, m, n);
	/* The root's first subtree down to its first leaf (that inner node keeps one child
	 * and no separator), then everything else: the tree gets lower down to that leaf. */
	nl = leaf_sizes(ix, size, 100000);
	for (from = 0, at = 0; at < size[0]; at += m[from++].present)
		;
	root = atomic_load(&ix->root);
	free((void *) lo.p);
	lo = dup_key(node_key(root, 0, buf));
	to = model_lower(m, n, lo);
	remove_range(ix, m, from, to);
	check_tree(ix);
	remove_range(ix, m, to, n);
	model_check(ix, m, n);
	cr_assert_eq(ix->height, 1);
	free((void *) lo.p);
	free((void *) hi.p);
	free(buf);
	free(size);
	free(m);
	kv_index_destroy(ix);
}

Test(index_model, ascending_and_descending_inserts_build_a_valid_tree)
{
	struct kv_index *up = kv_index_create(), *down = kv_index_create();
	size_t n, *order;
	struct mkey *m = model_keys(60000, &n, 5);

	order = shuffled(n, 6);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	model_insert(up, m, order, n, 1);
	model_check(up, m, n);
	for (size_t i = 0; i < n; i++)
		m[i].present = false;
	for (size_t i = 0; i < n; i++)
		order[i] = n - 1 - i;
	model_insert(down, m, order, n, 1);
	model_check(down, m, n);
	cr_log_info("ascending: %.1f B/entry, descending: %.1f B/entry",
		    (double) kv_index_memory(up) / (double) n,
		    (double) kv_index_memory(down) / (double) n);
	free(order);
	free(m);
	kv_index_destroy(up);
	kv_index_destroy(down);
}

/* --- cursors --- */

static void put_num(struct kv_index *ix, unsigned i, uint64_t version)
{
	char k[16];
	struct kv_ref r = ref_of(version, i);

	snprintf(k, sizeof(k), "key%08u", i);
	cr_assert_eq(kv_index_upsert(ix, k, 11, &r, NULL, NULL), 1);
}

Test(index_cursor, a_cursor_starts_at_the_first_key_not_below_its_start_key)
{
	struct kv_index *ix = kv_index_create();
	struct kv_index_cursor *c;
	static uint8_t key[KV_INDEX_MAX_KEY];
	struct kv_ref ref, wref;
	unsigned expect = 5001;
	size_t klen;

	for (unsigned i = 0; i < 10000; i += 2)
		put_num(ix, i + 1, 1); /* odd numbers */
	c = kv_index_cursor_open(ix, "key00005000", 11);
	while (kv_index_cursor_next(c, key, &klen, &ref) == 1) {
		char want[16];

		snprintf(want, sizeof(want), "key%08u", expect);
		cr_assert_eq(klen, 11);
		cr_assert_eq(memcmp(key, want, 11), 0, "got %.*s want %s", (int) klen, key, want);
		wref = ref_of(1, expect);
		cr_assert(ref_eq(&ref, &wref));
		expect += 2;
	}
	cr_assert_eq(expect, 10001);
	kv_index_cursor_close(c);
	c = kv_index_cursor_open(ix, "key00005001", 11); /* an existing key is included */
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, &ref), 1);
	cr_assert_eq(memcmp(key, "key00005001", 11), 0);
	kv_index_cursor_close(c);
	c = kv_index_cursor_open(ix, "z", 1); /* past the end */
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, &ref), 0);
	kv_index_cursor_close(c);
	kv_index_destroy(ix);
}

Test(index_cursor, a_cursor_over_an_empty_index_ends_at_once)
{
	struct kv_index *ix = kv_index_create();
	struct kv_index_cursor *c = kv_index_cursor_open(ix, NULL, 0);
	static uint8_t key[KV_INDEX_MAX_KEY];
	struct kv_ref ref;
	size_t klen;

	cr_assert_not_null(c);
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, &ref), 0);
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, &ref), 0, "and stays at the end");
	kv_index_cursor_close(c);
	kv_index_cursor_close(NULL);
	kv_index_destroy(ix);
}

/* --- bulk loading --- */

Test(index_bulk, a_bulk_loaded_index_serves_gets_and_takes_random_upserts)
{
	struct kv_index *ix = kv_index_create();
	size_t n, *order;
	struct mkey *m = model_keys(100000, &n, 11);

	for (size_t i = 0; i < n; i++) {
		m[i].ref = ref_of(i + 1, i);
		m[i].present = true;
		cr_assert_eq(kv_index_bulk_add(ix, m[i].k, m[i].len, &m[i].ref), 0);
	}
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	model_check(ix, m, n);
	order = shuffled(n, 12);
	model_insert(ix, m, order, n / 2, 10000000); /* replace half, at random */
	model_check(ix, m, n);
	free(order);
	free(m);
	kv_index_destroy(ix);
}

Test(index_bulk, bulk_add_refuses_keys_out_of_order_and_a_non_empty_index)
{
	struct kv_index *ix = kv_index_create();
	struct kv_ref r = ref_of(1, 1);

	cr_assert_eq(kv_index_bulk_add(ix, "b", 1, &r), 0);
	cr_assert_eq(kv_index_bulk_add(ix, "a", 1, &r), -EINVAL);
	cr_assert_eq(kv_index_bulk_add(ix, "b", 1, &r), -EINVAL, "a duplicate");
	cr_assert_eq(kv_index_bulk_add(ix, "ba", 2, &r), 0, "a longer key is greater");
	cr_assert_eq(kv_index_bulk_add(ix, "b", 1, &r), -EINVAL, "a shorter prefix is less");
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	cr_assert_eq(kv_index_count(ix), 2);
	check_tree(ix);
	cr_assert_eq(kv_index_bulk_add(ix, "c", 1, &r), -EINVAL, "the index is not empty");
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	kv_index_destroy(ix);
}

/* --- long keys --- */

/* Key i: long ones share a 40000-byte prefix so that separators between them are long
 * and out of line too. */
static size_t long_key(uint8_t *buf, unsigned i)
{
	size_t len;

	if (i % 3) {
		len = (size_t) snprintf((char *) buf, 32, "short%06u", i % 1000000u);
		return len;
	}
	len = i % 9 == 0 ? KV_INDEX_MAX_KEY : 40000 + (i * 131u) % 25000;
	memset(buf, 'L', 40000);
	snprintf((char *) buf + 40000 - 7, 8, "%06u", i % 1000000u);
	for (size_t b = 40000; b < len; b++)
		buf[b] = (uint8_t) ('a' + (i + b) % 26);
	return len;
}

Test(index_long, keys_up_to_64_kib_mix_with_short_ones)
{
	struct kv_index *ix = kv_index_create();
	uint8_t *buf = malloc(KV_INDEX_MAX_KEY), *got = malloc(KV_INDEX_MAX_KEY);
	struct kv_index_cursor *c;
	const unsigned n = 900;
	struct kv_ref ref, out;
	size_t len, glen, seen = 0;

	for (unsigned j = 0; j < n; j++) {
		unsigned i = (j * 377) % n;

		len = long_key(buf, i);
		ref = ref_of(i + 1, i);
		cr_assert_eq(kv_index_upsert(ix, buf, len, &ref, NULL, NULL), 1);
	}
	check_tree(ix);
	for (unsigned i = 0; i < n; i++) {
		len = long_key(buf, i);
		ref = ref_of(i + 1, i);
		cr_assert_eq(kv_index_get(ix, buf, len, &out), 0, "key %u", i);
		cr_assert(ref_eq(&out, &ref));
		buf[len - 1] = 0xff; /* no key ends so */
		cr_assert_eq(kv_index_get(ix, buf, len, &out), -ENOENT, "a near miss of %u", i);
	}
	c = kv_index_cursor_open(ix, NULL, 0);
	len = 0;
	while (kv_index_cursor_next(c, got, &glen, &out) == 1) {
		if (seen)
			cr_assert_lt(key_cmp(buf, len, got, glen), 0, "cursor order");
		memcpy(buf, got, glen);
		len = glen;
		seen++;
	}
	cr_assert_eq(seen, n);
	kv_index_cursor_close(c);
	for (unsigned i = 0; i < n; i += 2) {
		len = long_key(buf, i);
		ref = ref_of(i + 1, i);
		cr_assert_eq(kv_index_remove_if(ix, buf, len, &ref), 1);
	}
	check_tree(ix);
	cr_assert_eq(kv_index_count(ix), n / 2);
	free(buf);
	free(got);
	kv_index_destroy(ix);
}

/* --- concurrency --- */

#define CKEYS	 20000
#define CLONG	 400 /* of which long: 1..5 KiB sharing a 1500-byte prefix */
#define RUN_NS	 1500000000ull
#define NREADERS 4
#define NWRITERS 2

struct ckey {
	uint8_t *k;
	size_t len;
};

struct shared {
	struct kv_index *ix;
	struct ckey *keys;
	size_t n;
	_Atomic uint64_t version;
	atomic_bool stop;
	atomic_ulong reads, found, writes, passes;
	/* Writers go on past RUN_NS until the scanners made this many passes: a scanner that
	 * started late on a loaded machine made none, and the test saw nothing. */
	unsigned long min_passes;
};

static int ckey_cmp(const void *a, const void *b)
{
	const struct ckey *x = a, *y = b;

	return key_cmp(x->k, x->len, y->k, y->len);
}

/* Distinct keys, sorted: short random ones and long ones whose separators are long
 * enough to be out of line too. */
static struct ckey *conc_keys(size_t *n)
{
	size_t ns, j = 0;
	struct mkey *m = model_keys(CKEYS, &ns, 99);
	struct ckey *c = calloc(ns + CLONG, sizeof(*c));
	uint64_t seed = 5;

	for (size_t i = 0; i < ns; i++) {
		c[j].len = m[i].len;
		c[j].k = malloc(m[i].len);
		memcpy(c[j++].k, m[i].k, m[i].len);
	}
	for (size_t i = 0; i < CLONG; i++) {
		c[j].len = 1600 + splitmix(&seed) % 4000;
		c[j].k = malloc(c[j].len);
		memset(c[j].k, 'P', 1500);
		for (size_t b = 1500; b < c[j].len; b++)
			c[j].k[b] = (uint8_t) splitmix(&seed);
		j++;
	}
	qsort(c, j, sizeof(*c), ckey_cmp);
	free(m);
	*n = j;
	return c;
}

static void conc_free(struct shared *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->keys[i].k);
	free(s->keys);
	kv_index_destroy(s->ix);
	free(s);
}

Test(index_long, a_bulk_load_of_long_keys_gives_a_valid_tree)
{
	struct shared *s = calloc(1, sizeof(*s));
	struct kv_ref r, out;

	s->ix = kv_index_create();
	s->keys = conc_keys(&s->n);
	for (size_t i = 0; i < s->n; i++) {
		r = ref_of(i + 1, i);
		cr_assert_eq(kv_index_bulk_add(s->ix, s->keys[i].k, s->keys[i].len, &r), 0);
	}
	cr_assert_eq(kv_index_bulk_finish(s->ix), 0);
	check_tree(s->ix);
	for (size_t i = 0; i < s->n; i++) {
		r = ref_of(i + 1, i);
		cr_assert_eq(kv_index_get(s->ix, s->keys[i].k, s->keys[i].len, &out), 0);
		cr_assert(ref_eq(&out, &r));
	}
	conc_free(s);
}

/* Keys with index % 4 == 0 are stable: always present (writers only replace them). */
static bool stable(size_t i)
{
	return i % 4 == 0;
}

static void check_entry(const struct shared *s, size_t i, const struct kv_ref *r)
{
	struct kv_ref want = ref_of(r->version, i);

	cr_assert(ref_eq(r, &want), "key %zu: a torn or mixed entry (version %llu)", i,
		  (unsigned long long) r->version);
	cr_assert_leq(r->version, atomic_load(&s->version));
}

static void *reader(void *arg)
{
	struct shared *s = arg;
	uint64_t seed = (uint64_t) (uintptr_t) &seed;
	unsigned long reads = 0, found = 0;

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		size_t i = splitmix(&seed) % s->n;
		struct kv_ref r;
		int rc = kv_index_get(s->ix, s->keys[i].k, s->keys[i].len, &r);

		reads++;
		if (rc == -ENOENT) {
			cr_assert(!stable(i), "stable key %zu not found during a change", i);
			continue;
		}
		cr_assert_eq(rc, 0);
		check_entry(s, i, &r);
		found++;
	}
	atomic_fetch_add(&s->reads, reads);
	atomic_fetch_add(&s->found, found);
	return NULL;
}

static void *writer(void *arg)
{
	struct shared *s = arg;
	uint64_t seed = test_now_ns(), end = test_now_ns() + RUN_NS;
	unsigned long writes = 0;

	while (test_now_ns() < end || atomic_load(&s->passes) < s->min_passes) {
		for (int b = 0; b < 64; b++, writes++) {
			size_t i = splitmix(&seed) % s->n;
			struct ckey *k = &s->keys[i];
			struct kv_ref r, cur;

			if (stable(i) || (splitmix(&seed) & 1)) {
				r = ref_of(atomic_fetch_add(&s->version, 1) + 1, i);
				cr_assert_geq(kv_index_upsert(s->ix, k->k, k->len, &r, NULL, NULL),
					      0);
			} else if (kv_index_get(s->ix, k->k, k->len, &cur) == 0) {
				cr_assert_geq(kv_index_remove_if(s->ix, k->k, k->len, &cur), 0);
			}
		}
	}
	atomic_fetch_add(&s->writes, writes);
	return NULL;
}

/* The index filled with the stable keys and a third of the others. */
static void shared_fill(struct shared *s)
{
	s->ix = kv_index_create();
	s->keys = conc_keys(&s->n);
	atomic_store(&s->version, 1);
	for (size_t i = 0; i < s->n; i++) {
		struct kv_ref r = ref_of(1, i);

		if (stable(i) || i % 3 == 0)
			cr_assert_eq(
			    kv_index_upsert(s->ix, s->keys[i].k, s->keys[i].len, &r, NULL, NULL),
			    1);
	}
}

static struct shared *shared_start(pthread_t *w, unsigned long min_passes)
{
	struct shared *s = calloc(1, sizeof(*s));

	s->min_passes = min_passes;
	shared_fill(s);
	for (int i = 0; i < NWRITERS; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, writer, s), 0);
	return s;
}

Test(index_concurrency, readers_never_see_a_torn_entry_or_miss_a_stable_key, .timeout = 120)
{
	pthread_t w[NWRITERS], r[NREADERS];
	struct shared *s = shared_start(w, 0);

	for (int i = 0; i < NREADERS; i++)
		cr_assert_eq(pthread_create(&r[i], NULL, reader, s), 0);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&s->stop, true);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(r[i], NULL);
	cr_log_info("%lu reads (%lu found) during %lu writes", atomic_load(&s->reads),
		    atomic_load(&s->found), atomic_load(&s->writes));
	cr_assert_gt(atomic_load(&s->writes), 1000);
	check_tree(s->ix);
	conc_free(s);
}

/* One full pass: strictly increasing keys, valid entries, every stable key seen. */
static void cursor_pass(struct shared *s, uint8_t *key, uint8_t *prev)
{
	struct kv_index_cursor *c = kv_index_cursor_open(s->ix, NULL, 0);
	size_t klen, plen = 0, i = 0, stable_seen = 0, stable_all = (s->n + 3) / 4;
	struct kv_ref ref;
	int rc;

	cr_assert_not_null(c);
	while ((rc = kv_index_cursor_next(c, key, &klen, &ref)) == 1) {
		if (plen)
			cr_assert_lt(key_cmp(prev, plen, key, klen), 0, "not strictly increasing");
		while (i < s->n && key_cmp(s->keys[i].k, s->keys[i].len, key, klen) < 0)
			i++;
		cr_assert_lt(i, s->n, "a key that was never inserted");
		cr_assert_eq(key_cmp(s->keys[i].k, s->keys[i].len, key, klen), 0);
		check_entry(s, i, &ref);
		stable_seen += stable(i);
		memcpy(prev, key, klen);
		plen = klen;
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(stable_seen, stable_all, "the cursor skipped a stable key");
	kv_index_cursor_close(c);
}

static void *cursor_reader(void *arg)
{
	struct shared *s = arg;
	uint8_t *key = malloc(KV_INDEX_MAX_KEY), *prev = malloc(KV_INDEX_MAX_KEY);

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		cursor_pass(s, key, prev);
		atomic_fetch_add(&s->passes, 1);
	}
	free(key);
	free(prev);
	return NULL;
}

/* Also a regression test: a cursor whose leaf changed while it copied an out-of-line key
 * used to seek again from a half-overwritten last key and skip entries. */
Test(index_concurrency, a_cursor_yields_increasing_keys_and_every_stable_key_while_writers_run,
     .timeout = 120)
{
	pthread_t w[NWRITERS], r[2];
	struct shared *s = shared_start(w, 1);

	cr_assert_eq(pthread_create(&r[0], NULL, cursor_reader, s), 0);
	cr_assert_eq(pthread_create(&r[1], NULL, reader, s), 0);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&s->stop, true);
	pthread_join(r[0], NULL);
	pthread_join(r[1], NULL);
	cr_log_info("%lu cursor passes during %lu writes", atomic_load(&s->passes),
		    atomic_load(&s->writes));
	cr_assert_gt(atomic_load(&s->passes), 0);
	check_tree(s->ix);
	conc_free(s);
}

/* --- running out of memory --- */

/* Insert model keys in order until the pool, refusing to grow, makes one fail; that one
 * must be absent and everything else intact. Returns how many went in. */
static size_t insert_until_enomem(struct kv_index *ix, struct mkey *m, size_t n, size_t from)
{
	for (size_t i = from; i < n; i++) {
		int rc;

		m[i].ref = ref_of(i + 1, i);
		rc = kv_index_upsert(ix, m[i].k, m[i].len, &m[i].ref, NULL, NULL);
		if (rc == -ENOMEM)
			return i;
		cr_assert_eq(rc, 1);
		m[i].present = true;
	}
	return n;
}

Test(index_memory, an_operation_that_runs_out_of_memory_changes_nothing)
{
	struct kv_index *ix = kv_index_create();
	size_t n, at = 0, fails = 0;
	struct mkey *m = model_keys(30000, &n, 21);
	uint8_t *big = malloc(KV_INDEX_MAX_KEY);
	struct kv_ref r = ref_of(1, 1), out;

	memset(big, 'x', KV_INDEX_MAX_KEY);
	while (at < n) {
		ix->pool.fail = true;
		at = insert_until_enomem(ix, m, n, at);
		if (at < n) {
			fails++;
			cr_assert_eq(kv_index_upsert(ix, big, KV_INDEX_MAX_KEY, &r, NULL, NULL),
				     -ENOMEM, "a 64 KiB key needs 17 more pages");
			model_check(ix, m, n);
		}
		ix->pool.fail = false;
		at = insert_until_enomem(ix, m, n < at + 500 ? n : at + 500, at);
	}
	cr_assert_gt(fails, 3, "the pool should have run dry a few times");
	cr_assert_eq(kv_index_get(ix, big, KV_INDEX_MAX_KEY, &out), -ENOENT);
	model_check(ix, m, n);
	free(big);
	free(m);
	kv_index_destroy(ix);
}

/* --- memory --- */

Test(index_memory, memory_per_entry_of_random_16_byte_keys_is_reported, .timeout = 120)
{
	struct kv_index *ix = kv_index_create();
	const size_t n = 1000000;
	uint64_t seed = 1234;
	double per;

	for (size_t i = 0; i < n; i++) {
		uint8_t k[16];
		struct kv_ref r = { .version = i + 1, .segment = (uint32_t) (i / 400000) };

		r.offset = (uint32_t) (i % 400000) * 160;
		r.size = 100;
		for (int b = 0; b < 16; b += 8) {
			uint64_t x = splitmix(&seed);

			memcpy(k + b, &x, 8);
		}
		cr_assert_eq(kv_index_upsert(ix, k, 16, &r, NULL, NULL), 1);
	}
	per = (double) kv_index_memory(ix) / (double) kv_index_count(ix);
	cr_log_info("1M random 16-byte keys: %.1f bytes/entry (%zu bytes)", per,
		    kv_index_memory(ix));
	cr_assert_lt(per, 16 + 80);
	check_tree(ix);
	kv_index_destroy(ix);
}

/* --- edge keys: lengths at every boundary, long shared prefixes, zero bytes --- */

#define MOVED 0x5a5a5a5a00000000ull /* salt of an entry a cas moved */

struct vkey {
	uint8_t *k;
	size_t len;
	bool present;
	struct kv_ref ref;
};

static int vkey_cmp(const void *a, const void *b)
{
	const struct vkey *x = a, *y = b;

	return key_cmp(x->k, x->len, y->k, y->len);
}

struct vset {
	struct vkey *v;
	size_t n, cap;
};

static void vadd(struct vset *s, const uint8_t *k, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 256;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		cr_assert_not_null(s->v);
	}
	s->v[s->n].k = malloc(len);
	memcpy(s->v[s->n].k, k, len);
	s->v[s->n].len = len;
	s->v[s->n].present = false;
	s->n++;
}

/* Sort and drop duplicates. */
static void vsort(struct vset *s)
{
	size_t j = 0;

	qsort(s->v, s->n, sizeof(*s->v), vkey_cmp);
	for (size_t i = 0; i < s->n; i++) {
		if (j && vkey_cmp(&s->v[j - 1], &s->v[i]) == 0) {
			free(s->v[i].k);
			continue;
		}
		s->v[j++] = s->v[i];
	}
	s->n = j;
}

static void vfree(struct vset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].k);
	free(s->v);
}

/* Keys at every length boundary the encoding has, sharing prefixes up to and past
 * the node prefix, the two head bytes and the inline part, and containing 0 bytes. */
static void edge_keys(struct vset *s)
{
	uint8_t *b = malloc(KV_INDEX_MAX_KEY);
	static const size_t lens[] = { 1,
				       2,
				       3,
				       15,
				       16,
				       17,
				       18,
				       19,
				       31,
				       32,
				       33,
				       127,
				       128,
				       KVIX_OVF_INLINE + 8,
				       KVIX_INLINE_MAX - 1,
				       KVIX_INLINE_MAX,
				       KVIX_INLINE_MAX + 1,
				       KVIX_INLINE_MAX + 2,
				       KVIX_OVF_INLINE + KVIX_OVF_DATA,
				       KVIX_OVF_INLINE + KVIX_OVF_DATA + 1,
				       16383,
				       16384,
				       KV_INDEX_MAX_KEY - 1,
				       KV_INDEX_MAX_KEY };
	const size_t nl = sizeof(lens) / sizeof(lens[0]);

	for (unsigned c = 0; c < 256; c++) {
		b[0] = (uint8_t) c;
		vadd(s, b, 1);
	}
	memset(b, 0, 64);
	for (size_t l = 1; l <= 64; l++)
		vadd(s, b, l); /* "\0", "\0\0", ... */
	for (unsigned fill = 0; fill < 3; fill++) {
		uint8_t f = (uint8_t[]){ 0, 'P', 0xff }[fill];

		for (size_t i = 0; i < nl; i++) {
			/* the same long run of f, then a last byte of 0, 1, f or 0xff */
			memset(b, f, lens[i]);
			vadd(s, b, lens[i]);
			for (unsigned last = 0; last < 3; last++) {
				b[lens[i] - 1] = (uint8_t[]){ 0, 1, 0xfe }[last];
				vadd(s, b, lens[i]);
			}
			/* differing only at each of the first 20 bytes, and near the end */
			for (size_t at = 0; at < lens[i] && at < 20; at++) {
				memset(b, f, lens[i]);
				b[at] = (uint8_t) (f ^ 0x40);
				vadd(s, b, lens[i]);
			}
			for (size_t back = 1; back <= 3 && back <= lens[i]; back++) {
				memset(b, f, lens[i]);
				b[lens[i] - back] = (uint8_t) (f ^ 0x01);
				vadd(s, b, lens[i]);
			}
		}
	}
	free(b);
	vsort(s);
}

static void vcheck_cursor(struct kv_index *ix, const struct vset *s, const uint8_t *start,
			  size_t slen, size_t from)
{
	struct kv_index_cursor *c = kv_index_cursor_open(ix, start, slen);
	uint8_t *key = malloc(KV_INDEX_MAX_KEY);
	struct kv_ref ref;
	size_t klen, i = from;
	int rc;

	cr_assert_not_null(c);
	while ((rc = kv_index_cursor_next(c, key, &klen, &ref)) == 1) {
		while (i < s->n && !s->v[i].present)
			i++;
		cr_assert_lt(i, s->n, "the cursor yields more than the model");
		cr_assert_eq(klen, s->v[i].len, "cursor key %zu: length %zu", i, klen);
		cr_assert_eq(memcmp(key, s->v[i].k, klen), 0, "cursor key %zu", i);
		cr_assert(ref_eq(&ref, &s->v[i].ref), "cursor key %zu: entry", i);
		i++;
	}
	cr_assert_eq(rc, 0);
	while (i < s->n && !s->v[i].present)
		i++;
	cr_assert_eq(i, s->n, "the cursor stopped early at %zu of %zu", i, s->n);
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, &ref), 0, "and stays at the end");
	kv_index_cursor_close(c);
	free(key);
}

static void vcheck(struct kv_index *ix, const struct vset *s)
{
	size_t present = 0;

	for (size_t i = 0; i < s->n; i++) {
		struct kv_ref out;
		int rc = kv_index_get(ix, s->v[i].k, s->v[i].len, &out);

		present += s->v[i].present;
		if (!s->v[i].present) {
			cr_assert_eq(rc, -ENOENT, "key %zu (%zu bytes) should be absent", i,
				     s->v[i].len);
			continue;
		}
		cr_assert_eq(rc, 0, "key %zu (%zu bytes) should be present", i, s->v[i].len);
		cr_assert(ref_eq(&out, &s->v[i].ref), "key %zu has the wrong entry", i);
	}
	cr_assert_eq(kv_index_count(ix), present);
	check_tree(ix);
	vcheck_cursor(ix, s, NULL, 0, 0);
	for (size_t i = 0; i < s->n; i += 1 + s->n / 7)
		vcheck_cursor(ix, s, s->v[i].k, s->v[i].len, i);
}

static void vinsert(struct kv_index *ix, struct vset *s, const size_t *order, uint64_t version)
{
	for (size_t j = 0; j < s->n; j++) {
		struct vkey *k = &s->v[order[j]];
		bool had;

		k->ref = ref_of(version + j, order[j]);
		cr_assert_eq(kv_index_upsert(ix, k->k, k->len, &k->ref, NULL, &had), 1);
		cr_assert_eq(had, k->present);
		k->present = true;
	}
}

static void vremove(struct kv_index *ix, struct vset *s, const size_t *order, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		struct vkey *k = &s->v[order[j]];

		if (!k->present)
			continue;
		cr_assert_eq(kv_index_remove_if(ix, k->k, k->len, &k->ref), 1);
		k->present = false;
		if (j % 97 == 0)
			check_tree(ix);
	}
}

/* orders: 0 ascending, 1 descending, else shuffled with that seed */
static size_t *vorder(size_t n, uint64_t how)
{
	size_t *o = shuffled(n, how);

	if (how < 2)
		for (size_t i = 0; i < n; i++)
			o[i] = how == 0 ? i : n - 1 - i;
	return o;
}

/* The index_edge tests are single-threaded: TSan has nothing to check in them and
 * multiplies their time (85 s there); they run in every other build. */
static void skip_single_threaded_under_tsan(void)
{
#ifdef __SANITIZE_THREAD__
	cr_skip_test("single-threaded: run in the builds without TSan");
#endif
}

static void vrun(struct vset *s)
{
	for (uint64_t ins = 0; ins < 3; ins++) {
		for (uint64_t del = 0; del < 3; del++) {
			struct kv_index *ix = kv_index_create();
			size_t *oi = vorder(s->n, ins), *od = vorder(s->n, 10 + del);

			if (del < 2)
				free(od), od = vorder(s->n, del);
			for (size_t i = 0; i < s->n; i++)
				s->v[i].present = false;
			vinsert(ix, s, oi, 1);
			vcheck(ix, s);
			vremove(ix, s, od, s->n / 2);
			vcheck(ix, s);
			vinsert(ix, s, oi, 1000000);
			vcheck(ix, s);
			vremove(ix, s, od, s->n);
			vcheck(ix, s);
			cr_assert_eq(ix->height, 1);
			free(oi);
			free(od);
			kv_index_destroy(ix);
		}
	}
}

Test(index_edge, keys_at_every_length_boundary_keep_memcmp_order_through_every_order)
{
	skip_single_threaded_under_tsan();

	struct vset s = { 0 };

	edge_keys(&s);
	cr_log_info("%zu edge keys", s.n);
	vrun(&s);
	vfree(&s);
}

/* Many keys sharing a prefix just below the inline limit: tails cross it. */
Test(index_edge, keys_sharing_a_long_prefix_across_the_inline_limit)
{
	skip_single_threaded_under_tsan();

	struct vset s = { 0 };
	uint8_t *b = malloc(KV_INDEX_MAX_KEY);
	uint64_t seed = 77;

	memset(b, 'Q', KVIX_INLINE_MAX);
	for (int i = 0; i < 3000; i++) {
		size_t len = KVIX_INLINE_MAX - 40 + splitmix(&seed) % 80;

		for (size_t j = KVIX_INLINE_MAX - 40; j < len; j++)
			b[j] = (uint8_t) (splitmix(&seed) % 3);
		vadd(&s, b, len);
	}
	vsort(&s);
	cr_log_info("%zu keys", s.n);
	vrun(&s);
	vfree(&s);
	free(b);
}

/* The same key sets bulk loaded, then replaced, removed in several orders, reinserted. */
static void vrun_bulk(struct vset *s)
{
	for (uint64_t del = 0; del < 3; del++) {
		struct kv_index *ix = kv_index_create();
		size_t *od = vorder(s->n, del < 2 ? del : 20), *oi = vorder(s->n, 21);

		for (size_t i = 0; i < s->n; i++) {
			s->v[i].ref = ref_of(i + 1, i);
			s->v[i].present = true;
			cr_assert_eq(kv_index_bulk_add(ix, s->v[i].k, s->v[i].len, &s->v[i].ref),
				     0);
		}
		cr_assert_eq(kv_index_bulk_finish(ix), 0);
		vcheck(ix, s);
		vinsert(ix, s, oi, 1000000);
		vcheck(ix, s);
		vremove(ix, s, od, s->n / 3);
		vcheck(ix, s);
		vremove(ix, s, od, s->n);
		vcheck(ix, s);
		cr_assert_eq(ix->height, 1);
		vinsert(ix, s, od, 2000000);
		vcheck(ix, s);
		free(oi);
		free(od);
		kv_index_destroy(ix);
	}
}

Test(index_edge, bulk_loaded_edge_keys_take_updates_removals_and_reinserts)
{
	skip_single_threaded_under_tsan();

	struct vset s = { 0 };

	edge_keys(&s);
	vrun_bulk(&s);
	vfree(&s);
}

/* Long keys whose separators are long too, inserted while the pool cannot grow: each
 * insert that fails must change nothing and give back every page it took. */
Test(index_edge, running_out_of_memory_with_long_separators_changes_nothing)
{
	struct vset s = { 0 };
	uint8_t *b = malloc(KV_INDEX_MAX_KEY);
	uint64_t seed = 5;
	size_t *o, fails = 0;

	memset(b, 'S', 3000);
	for (int i = 0; i < 400; i++) {
		size_t len = 2500 + splitmix(&seed) % 3000;

		for (size_t j = 2000; j < len; j++)
			b[j] = (uint8_t) splitmix(&seed);
		vadd(&s, b, len);
	}
	vsort(&s);
	o = vorder(s.n, 9);
	for (uint64_t round = 0; round < 2; round++) {
		struct kv_index *ix = kv_index_create();

		for (size_t i = 0; i < s.n; i++)
			s.v[i].present = false;
		for (size_t j = 0; j < s.n; j++) {
			struct vkey *k = &s.v[round ? j : o[j]];
			int rc;

			k->ref = ref_of(j + 1, j);
			ix->pool.fail = true;
			rc = kv_index_upsert(ix, k->k, k->len, &k->ref, NULL, NULL);
			ix->pool.fail = false;
			if (rc == -ENOMEM) {
				fails++;
				vcheck(ix, &s);
				rc = kv_index_upsert(ix, k->k, k->len, &k->ref, NULL, NULL);
			}
			cr_assert_eq(rc, 1);
			k->present = true;
		}
		vcheck(ix, &s);
		kv_index_destroy(ix);
	}
	cr_log_info("%zu inserts ran out of memory", fails);
	cr_assert_gt(fails, 10);
	free(o);
	vfree(&s);
	free(b);
}

/* Keys just under the inline limit sharing most of it: four to a leaf, separators nearly
 * as long, so the tree is deep and every level splits, shares and merges. */
Test(index_edge, a_deep_tree_of_large_inline_keys_splits_and_merges_at_every_level)
{
	skip_single_threaded_under_tsan();

	struct vset s = { 0 };
	uint8_t *b = malloc(KV_INDEX_MAX_KEY);
	uint64_t seed = 99;

	memset(b, 'D', KVIX_INLINE_MAX);
	for (int i = 0; i < 2500; i++) {
		size_t len = KVIX_INLINE_MAX - 60 + splitmix(&seed) % 61;

		for (size_t j = KVIX_INLINE_MAX - 80; j < KVIX_INLINE_MAX - 76; j++)
			b[j] = (uint8_t) (splitmix(&seed) % 8);
		vadd(&s, b, len);
	}
	vsort(&s);
	vrun(&s);
	vrun_bulk(&s);
	vfree(&s);
	free(b);
}

/* A ref whose encoding is 7 or ~40 bytes: replacing one by the other grows or shrinks the
 * entry in place, or moves it, or splits the leaf. */
static struct kv_ref sized_ref(uint64_t version, uint64_t salt, bool big)
{
	struct kv_ref r = ref_of(version, salt);

	if (!big) {
		r.segment &= 0x7f;
		r.offset &= 0x7f;
		r.size &= 0x7f;
		r.flags &= KV_REF_TOMBSTONE;
		r.batch_off = 0;
	} else {
		r.segment |= 1u << 31;
		r.offset |= 1u << 31;
		r.size |= 1u << 31;
		r.flags |= KV_REF_BATCH;
		r.batch_off |= 1u << 31;
	}
	return r;
}

Test(index_edge, random_upserts_cas_and_removes_of_growing_and_shrinking_entries_match_a_model)
{
	skip_single_threaded_under_tsan();

	struct vset s = { 0 };
	uint8_t *b = malloc(KV_INDEX_MAX_KEY);
	uint64_t seed = 1, version = 1;
	struct kv_index *ix = kv_index_create();
	size_t ops = 0, cas = 0;

	edge_keys(&s);
	for (int i = 0; i < 4000; i++) {
		size_t len = 1 + splitmix(&seed) % 40;

		for (size_t j = 0; j < len; j++)
			b[j] = (uint8_t) ("ab\0"[splitmix(&seed) % 3]);
		vadd(&s, b, len);
	}
	vsort(&s);
	for (int round = 0; round < 20; round++) {
		for (size_t j = 0; j < 4 * s.n; j++, ops++) {
			size_t i = splitmix(&seed) % s.n;
			struct vkey *k = &s.v[i];
			uint64_t r = splitmix(&seed);
			bool big = (r >> 8) & 1;
			struct kv_ref ref, old;
			bool had;

			switch (r % 4) {
			case 0:
			case 1:
				ref = sized_ref(++version, i, big);
				cr_assert_eq(kv_index_upsert(ix, k->k, k->len, &ref, &old, &had),
					     1);
				cr_assert_eq(had, k->present);
				if (had)
					cr_assert(ref_eq(&old, &k->ref));
				k->ref = ref;
				k->present = true;
				break;
			case 2:
				ref = sized_ref(k->ref.version, i ^ MOVED, big);
				if (!k->present) {
					cr_assert_eq(kv_index_cas(ix, k->k, k->len, &ref, &ref), 0);
					break;
				}
				cr_assert_eq(kv_index_cas(ix, k->k, k->len, &k->ref, &ref), 1);
				k->ref = ref;
				cas++;
				break;
			default:
				cr_assert_eq(kv_index_remove_if(ix, k->k, k->len, &k->ref),
					     k->present ? 1 : 0);
				k->present = false;
			}
		}
		vcheck(ix, &s);
	}
	cr_log_info("%zu ops, %zu cas, height %d", ops, cas, ix->height);
	kv_index_destroy(ix);
	vfree(&s);
	free(b);
}

/* --- concurrency: upsert, remove_if and cas against gets and cursors --- */

struct mixed {
	struct shared s;
	atomic_ulong cas_ok, removes;
};

/* A consistent entry of key i: one a writer stored, or its moved copy; never newer than
 * any version handed out. */
static void check_mixed(const struct shared *s, size_t i, const struct kv_ref *r)
{
	struct kv_ref a = ref_of(r->version, i), b = ref_of(r->version, i ^ MOVED);

	cr_assert(ref_eq(r, &a) || ref_eq(r, &b), "key %zu: a torn or mixed entry", i);
	cr_assert_leq(r->version, atomic_load(&s->version));
}

static void *mixed_writer(void *arg)
{
	struct mixed *m = arg;
	struct shared *s = &m->s;
	uint64_t seed = test_now_ns(), end = test_now_ns() + RUN_NS;

	while (test_now_ns() < end || atomic_load(&s->passes) < s->min_passes) {
		for (int b = 0; b < 64; b++) {
			size_t i = splitmix(&seed) % s->n;
			struct ckey *k = &s->keys[i];
			unsigned op = (unsigned) (splitmix(&seed) % 4);
			struct kv_ref r, cur, moved;
			int rc;

			if (op == 0 || (op == 1 && stable(i))) {
				r = ref_of(atomic_fetch_add(&s->version, 1) + 1, i);
				rc = kv_index_upsert(s->ix, k->k, k->len, &r, NULL, NULL);
				cr_assert_geq(rc, 0);
				continue;
			}
			if (kv_index_get(s->ix, k->k, k->len, &cur) != 0)
				continue;
			if (op == 1) {
				rc = kv_index_remove_if(s->ix, k->k, k->len, &cur);
				cr_assert_geq(rc, 0);
				atomic_fetch_add(&m->removes, (unsigned long) rc);
				continue;
			}
			/* a move: same version, the other salt (longer or shorter fields) */
			r = ref_of(cur.version, i);
			moved = ref_of(cur.version, ref_eq(&cur, &r) ? (i ^ MOVED) : i);
			rc = kv_index_cas(s->ix, k->k, k->len, &cur, &moved);
			cr_assert_geq(rc, 0);
			atomic_fetch_add(&m->cas_ok, (unsigned long) rc);
		}
	}
	return NULL;
}

static void *mixed_getter(void *arg)
{
	struct mixed *m = arg;
	struct shared *s = &m->s;
	uint64_t seed = (uint64_t) (uintptr_t) &seed;
	uint64_t *seen = calloc(s->n, sizeof(*seen));

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		size_t i = splitmix(&seed) % s->n;
		struct kv_ref r;
		int rc = kv_index_get(s->ix, s->keys[i].k, s->keys[i].len, &r);

		if (rc == -ENOENT) {
			cr_assert(!stable(i), "stable key %zu not found", i);
			continue;
		}
		cr_assert_eq(rc, 0);
		check_mixed(s, i, &r);
		if (stable(i)) /* never removed: its version only grows */
			cr_assert_geq(r.version, seen[i], "key %zu went back in time", i);
		seen[i] = r.version;
	}
	free(seen);
	return NULL;
}

/* Cursors from random start keys (present or not): strictly increasing keys, consistent
 * entries, every stable key at or after the start seen exactly once. */
static void *mixed_scanner(void *arg)
{
	struct mixed *m = arg;
	struct shared *s = &m->s;
	uint8_t *key = malloc(KV_INDEX_MAX_KEY), *prev = malloc(KV_INDEX_MAX_KEY);
	uint64_t seed = (uint64_t) (uintptr_t) &seed;

	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		size_t from = splitmix(&seed) % s->n, i = from, plen = 0, want = 0, got = 0;
		bool before = splitmix(&seed) & 1; /* start just before key `from` */
		size_t slen = s->keys[from].len - (before && s->keys[from].len > 1);
		struct kv_index_cursor *c;
		struct kv_ref ref;
		size_t klen;
		int rc;

		if (before && s->keys[from].len == 1)
			slen = 0; /* from the first key */
		c = kv_index_cursor_open(s->ix, s->keys[from].k, slen);
		cr_assert_not_null(c);
		i = 0;
		while (i < s->n && key_cmp(s->keys[i].k, s->keys[i].len, s->keys[from].k, slen) < 0)
			i++;
		for (size_t j = i; j < s->n; j++)
			want += stable(j);
		while ((rc = kv_index_cursor_next(c, key, &klen, &ref)) == 1) {
			if (plen)
				cr_assert_lt(key_cmp(prev, plen, key, klen), 0, "not increasing");
			else
				cr_assert_geq(key_cmp(key, klen, s->keys[from].k, slen), 0,
					      "before the start key");
			while (i < s->n && key_cmp(s->keys[i].k, s->keys[i].len, key, klen) < 0)
				i++;
			cr_assert_lt(i, s->n);
			cr_assert_eq(key_cmp(s->keys[i].k, s->keys[i].len, key, klen), 0,
				     "a key never inserted");
			check_mixed(s, i, &ref);
			got += stable(i);
			memcpy(prev, key, klen);
			plen = klen;
		}
		cr_assert_eq(rc, 0);
		cr_assert_eq(got, want, "stable keys: %zu of %zu", got, want);
		kv_index_cursor_close(c);
		atomic_fetch_add(&s->passes, 1);
	}
	free(key);
	free(prev);
	return NULL;
}

Test(index_concurrency, upserts_removes_and_cas_never_show_a_reader_a_wrong_entry, .timeout = 120)
{
	struct mixed *m = calloc(1, sizeof(*m));
	struct shared *s = &m->s;
	pthread_t w[NWRITERS], g[2], c[2];

	s->min_passes = 1;
	shared_fill(s);
	for (int i = 0; i < NWRITERS; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, mixed_writer, m), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(pthread_create(&g[i], NULL, mixed_getter, m), 0);
		cr_assert_eq(pthread_create(&c[i], NULL, mixed_scanner, m), 0);
	}
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&s->stop, true);
	for (int i = 0; i < 2; i++) {
		pthread_join(g[i], NULL);
		pthread_join(c[i], NULL);
	}
	cr_log_info("%lu cas, %lu removes, %lu scans", atomic_load(&m->cas_ok),
		    atomic_load(&m->removes), atomic_load(&s->passes));
	cr_assert_gt(atomic_load(&m->cas_ok), 100);
	cr_assert_gt(atomic_load(&s->passes), 0);
	check_tree(s->ix);
	for (size_t i = 0; i < s->n; i++)
		free(s->keys[i].k);
	free(s->keys);
	kv_index_destroy(s->ix);
	free(m);
}

/* --- error codes of cas, remove_if and cursors (kv_index.h) --- */

Test(index, cas_and_remove_if_refuse_bad_arguments_and_cas_reports_enomem_changing_nothing)
{
	struct kv_index *ix = kv_index_create();
	uint8_t *k = malloc(KVIX_INLINE_MAX);
	struct kv_ref small = { .version = 1, .segment = 1, .offset = 1 }, big, out;
	struct dry d;

	cr_assert_eq(kv_index_cas(ix, "k", 0, &small, &small), -EINVAL);
	cr_assert_eq(kv_index_cas(ix, NULL, 1, &small, &small), -EINVAL);
	cr_assert_eq(kv_index_cas(ix, "k", 1, NULL, &small), -EINVAL);
	cr_assert_eq(kv_index_remove_if(ix, "k", 0, &small), -EINVAL);
	cr_assert_eq(kv_index_remove_if(ix, "k", 1, NULL), -EINVAL);
	cr_assert_eq(kv_index_get(NULL, "k", 1, &out), -EINVAL);
	/* four keys of the largest inline size fill a leaf: an entry that grows must move */
	memset(k, 'k', KVIX_INLINE_MAX);
	for (uint8_t i = 0; i < 4; i++) {
		k[KVIX_INLINE_MAX - 1] = i;
		cr_assert_eq(kv_index_upsert(ix, k, KVIX_INLINE_MAX, &small, NULL, NULL), 1);
	}
	big = small;
	big.segment = big.offset = big.size = UINT32_MAX;
	d = pool_dry(ix);
	cr_assert_eq(kv_index_cas(ix, k, KVIX_INLINE_MAX, &small, &big), -ENOMEM);
	pool_wet(ix, d);
	cr_assert_eq(kv_index_get(ix, k, KVIX_INLINE_MAX, &out), 0, "nothing changed");
	cr_assert(ref_eq(&out, &small));
	cr_assert_eq(kv_index_count(ix), 4);
	check_tree(ix);
	cr_assert_eq(kv_index_cas(ix, k, KVIX_INLINE_MAX, &small, &big), 1);
	/* a removal takes no node (test_index_alloc.c): it succeeds with the pool dry */
	d = pool_dry(ix);
	cr_assert_eq(kv_index_remove_if(ix, k, KVIX_INLINE_MAX, &big), 1);
	pool_wet(ix, d);
	check_tree(ix);
	free(k);
	kv_index_destroy(ix);
}

Test(index_cursor, next_refuses_null_arguments)
{
	struct kv_index *ix = kv_index_create();
	struct kv_index_cursor *c = kv_index_cursor_open(ix, NULL, 0);
	uint8_t key[4];
	struct kv_ref ref;
	size_t klen;

	cr_assert_null(kv_index_cursor_open(NULL, NULL, 0));
	cr_assert_null(kv_index_cursor_open(ix, NULL, 1), "a start length without a key");
	cr_assert_eq(kv_index_cursor_next(NULL, key, &klen, &ref), -EINVAL);
	cr_assert_eq(kv_index_cursor_next(c, NULL, &klen, &ref), -EINVAL);
	cr_assert_eq(kv_index_cursor_next(c, key, NULL, &ref), -EINVAL);
	cr_assert_eq(kv_index_cursor_next(c, key, &klen, NULL), -EINVAL);
	kv_index_cursor_close(c);
	kv_index_destroy(ix);
}

/* --- concurrency: the root splits and collapses under readers --- */

struct breathe {
	struct kv_index *ix;
	atomic_bool stop;
	atomic_ulong rounds, reads, scans;
	atomic_int max_height;
};

static const char *const ALWAYS = "m-always";

/* On both sides of ALWAYS; 200 bytes long, so that leaves hold few and the tree is 3
 * levels high at 12000 keys (separators stay short: suffix truncation). */
static void bkey(char *k, unsigned i)
{
	int n = snprintf(k, 16, "%c-%010u", (i & 1) ? 'a' : 'z', i);

	memset(k + n, '.', 199 - (size_t) n);
	k[199] = 0;
}

/* The tree grows from one leaf to three levels and shrinks back to one, again and again;
 * one key is always present. */
static void *breathe_writer(void *arg)
{
	struct breathe *b = arg;
	uint64_t end = test_now_ns() + RUN_NS, version = 2;
	char k[200];

	while (test_now_ns() < end) {
		const unsigned n = 12000;

		for (unsigned i = 0; i < n; i++) {
			struct kv_ref r = ref_of(version++, i);

			bkey(k, i);
			cr_assert_eq(kv_index_upsert(b->ix, k, strlen(k), &r, NULL, NULL), 1);
		}
		if (b->ix->height > atomic_load(&b->max_height))
			atomic_store(&b->max_height, b->ix->height);
		for (unsigned j = 0; j < n; j++) {
			unsigned i = (unsigned) ((j * 7919ull) % n);
			struct kv_ref cur;

			bkey(k, i);
			cr_assert_eq(kv_index_get(b->ix, k, strlen(k), &cur), 0);
			cr_assert_eq(kv_index_remove_if(b->ix, k, strlen(k), &cur), 1);
		}
		cr_assert_eq(b->ix->height, 1);
		atomic_fetch_add(&b->rounds, 1);
	}
	atomic_store(&b->stop, true);
	return NULL;
}

static void *breathe_reader(void *arg)
{
	struct breathe *b = arg;
	uint8_t *key = malloc(KV_INDEX_MAX_KEY), prev[256];
	struct kv_ref want = ref_of(1, 0), r;
	unsigned long reads = 0, scans = 0;

	while (!atomic_load(&b->stop)) {
		struct kv_index_cursor *c = kv_index_cursor_open(b->ix, NULL, 0);
		size_t klen, plen = 0;
		bool seen = false;
		int rc;

		for (int i = 0; i < 64; i++, reads++) {
			cr_assert_eq(kv_index_get(b->ix, ALWAYS, strlen(ALWAYS), &r), 0);
			cr_assert(ref_eq(&r, &want));
		}
		while ((rc = kv_index_cursor_next(c, key, &klen, &r)) == 1) {
			if (plen)
				cr_assert_lt(key_cmp(prev, plen, key, klen), 0, "not increasing");
			cr_assert_lt(klen, sizeof(prev));
			seen |= klen == strlen(ALWAYS) && memcmp(key, ALWAYS, klen) == 0;
			memcpy(prev, key, klen);
			plen = klen;
		}
		cr_assert_eq(rc, 0);
		cr_assert(seen, "a scan missed the key that is always there");
		kv_index_cursor_close(c);
		scans++;
	}
	atomic_fetch_add(&b->reads, reads);
	atomic_fetch_add(&b->scans, scans);
	free(key);
	return NULL;
}

Test(index_concurrency, readers_follow_the_root_while_the_tree_grows_and_collapses, .timeout = 120)
{
	struct breathe *b = calloc(1, sizeof(*b));
	struct kv_ref r = ref_of(1, 0);
	pthread_t w, rd[2];

	b->ix = kv_index_create();
	cr_assert_eq(kv_index_upsert(b->ix, ALWAYS, strlen(ALWAYS), &r, NULL, NULL), 1);
	cr_assert_eq(pthread_create(&w, NULL, breathe_writer, b), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&rd[i], NULL, breathe_reader, b), 0);
	pthread_join(w, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(rd[i], NULL);
	cr_log_info("%lu rounds up to height %d, %lu gets, %lu scans", atomic_load(&b->rounds),
		    atomic_load(&b->max_height), atomic_load(&b->reads), atomic_load(&b->scans));
	cr_assert_geq(atomic_load(&b->max_height), 3);
	check_tree(b->ix);
	cr_assert_eq(kv_index_count(b->ix), 1);
	kv_index_destroy(b->ix);
	free(b);
}
