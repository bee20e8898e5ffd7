/* SPDX-License-Identifier: MIT */
/*
 * The ordered in-memory index (kv/src/kv_index*.c): point semantics, a reference
 * model of 200k random keys through inserts, deletes and reinserts, cursors, bulk
 * loading and keys up to 64 KiB. After every phase check_tree() walks the whole tree and
 * checks its invariants (it reads the node layout from kv_index_internal.h), and
 * check_pool() that every node the pool carved is in the tree (a node or a page of a long
 * key) or on the free list, exactly once (tests/support/kv_index_check.h). Readers and
 * cursors racing with writers: test_index_concurrency.c; keys at every length boundary of
 * the encoding, running out of memory and memory per entry: test_index_edge.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index.h"
#include "kv_index_check.h"
#include "kv_index_internal.h"
#include "test_util.h"

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
