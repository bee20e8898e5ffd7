/* SPDX-License-Identifier: MIT */
/*
 * The index (kv/src/kv_index*.c) when its node pool runs dry: what a removal reserves
 * (nothing: merges only free nodes) and what a failed bulk load leaves behind (the load,
 * unchanged, to go on or finish). The pool is made dry as running out of memory looks
 * to the index: no free node, and no slab can be mapped (pool.fail). After each phase
 * every key is checked against a model, and every node the pool carved is counted once:
 * in the tree (a node or a page of a long key) or on the free list.
 *
 * KV_INDEX_ALLOC_SEED: the seed of the random orders and failure points (printed);
 * KV_INDEX_ALLOC_ROUNDS: rounds of the randomized tests (default 1), each from the next
 * seed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index.h"
#include "kv_index_internal.h"
#include "kv_index_pool.h"

#define NKEYS	 20000
#define LONG_KEY (KVIX_INLINE_MAX + 5000) /* every 97th key: out of line, two pages */

TestSuite(index_alloc, .timeout = 60);

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t seed_of(void)
{
	const char *env = getenv("KV_INDEX_ALLOC_SEED");

	return env && *env ? strtoull(env, NULL, 0) : 0x1dea5eedull;
}

/* Run round(seed) KV_INDEX_ALLOC_ROUNDS times, seeds printed. */
static void rounds(void (*round)(uint64_t seed))
{
	const char *env = getenv("KV_INDEX_ALLOC_ROUNDS");
	unsigned long n = env && *env ? strtoul(env, NULL, 0) : 1;
	uint64_t seed = seed_of();

	for (unsigned long r = 0; r < n; r++, seed++) {
		cr_log_info("KV_INDEX_ALLOC_SEED=%llu", (unsigned long long) seed);
		round(seed);
	}
}

/* Key i: "key" and i in 8 digits (ascending with i), padded with a pattern to 60 .. 210
 * bytes (a tree of three levels) or, every 97th, LONG_KEY. */
struct mkey {
	uint8_t *k;
	size_t len;
	struct kv_ref ref;
	bool present;
};

static struct mkey *make_keys(size_t n)
{
	struct mkey *m = calloc(n, sizeof(*m));

	cr_assert_not_null(m);
	for (size_t i = 0; i < n; i++) {
		m[i].len = i % 97 == 50 ? LONG_KEY : 60 + i % 151;
		m[i].k = malloc(m[i].len);
		cr_assert_not_null(m[i].k);
		char head[16];

		snprintf(head, sizeof(head), "key%08zu", i);
		memcpy(m[i].k, head, 11);
		for (size_t j = 11; j < m[i].len; j++)
			m[i].k[j] = (uint8_t) (i * 7 + j);
		m[i].ref = (struct kv_ref){ .version = i + 1, .segment = i / 100, .offset = 8 * i };
	}
	return m;
}

static void free_keys(struct mkey *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].k);
	free(m);
}

/* Every key present in the model is found with its ref, every other one is not, and a
 * cursor yields exactly the present ones in order. */
static void check_model(struct kv_index *ix, const struct mkey *m, size_t n)
{
	struct kv_index_cursor *c = kv_index_cursor_open(ix, NULL, 0);
	uint8_t *buf = malloc(KV_INDEX_MAX_KEY);
	size_t present = 0, i = 0, klen;
	struct kv_ref r;

	cr_assert_not_null(c);
	for (size_t j = 0; j < n; j++) {
		int rc = kv_index_get(ix, m[j].k, m[j].len, &r);

		cr_assert_eq(rc, m[j].present ? 0 : -ENOENT, "key %zu: %d", j, rc);
		if (rc == 0)
			cr_assert_eq(r.version, m[j].ref.version, "key %zu: wrong entry", j);
		present += m[j].present;
	}
	cr_assert_eq(kv_index_count(ix), present);
	while (kv_index_cursor_next(c, buf, &klen, &r) == 1) {
		while (i < n && !m[i].present)
			i++;
		cr_assert_lt(i, n, "the cursor yields a key not in the model");
		cr_assert_eq(klen, m[i].len);
		cr_assert_eq(memcmp(buf, m[i].k, klen), 0, "the cursor's key %zu differs", i);
		i++;
	}
	while (i < n && !m[i].present)
		i++;
	cr_assert_eq(i, n, "the cursor missed keys");
	kv_index_cursor_close(c);
	free(buf);
	check_pool(ix);
}

/* ---- removals ---- */

/* A removal only frees nodes (merges, an emptied leaf, a lower root): it reserved the
 * nodes of a split all the same, so with no node to spare it failed, -ENOMEM, and
 * otherwise it could map a slab that it never used. */
static void removals_round(uint64_t seed)
{
	struct kv_index *ix = kv_index_create();
	struct mkey *m = make_keys(NKEYS);
	size_t *order = malloc(NKEYS * sizeof(*order)), mapped;
	struct dry d;

	for (size_t i = 0; i < NKEYS; i++) {
		cr_assert_eq(kv_index_upsert(ix, m[i].k, m[i].len, &m[i].ref, NULL, NULL), 1);
		m[i].present = true;
		order[i] = i;
	}
	cr_assert_geq(ix->height, 3, "a tree of a few levels (%d)", ix->height);
	for (size_t i = NKEYS - 1; i > 0; i--) {
		size_t j = mix(&seed) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	mapped = atomic_load(&ix->pool.mapped);
	d = pool_dry(ix);
	for (size_t j = 0; j < NKEYS; j++) {
		struct mkey *k = &m[order[j]];
		int rc = kv_index_remove_if(ix, k->k, k->len, &k->ref);

		cr_assert_eq(rc, 1, "removal %zu of %d (key %zu): %d", j, NKEYS, order[j], rc);
		k->present = false;
		if (j % 5000 == 0 || j == NKEYS / 2 + 1) {
			pool_wet(ix, d);
			check_model(ix, m, NKEYS);
			d = pool_dry(ix);
		}
	}
	pool_wet(ix, d);
	cr_assert_eq(ix->height, 1, "the tree shrank back to one leaf");
	cr_assert_eq(atomic_load(&ix->pool.mapped), mapped, "no slab was mapped by a removal");
	check_model(ix, m, NKEYS);
	free(order);
	free_keys(m, NKEYS);
	kv_index_destroy(ix);
}

Test(index_alloc, removals_and_their_merges_need_no_free_node)
{
	rounds(removals_round);
}

/* ---- bulk loading ---- */

/* Bulk-add keys [from, to) of m; an add made with the pool dry (every key i with
 * dry[i]) fails, -ENOMEM, changing nothing, and goes through once memory is back. */
static void bulk_range(struct kv_index *ix, struct mkey *m, size_t from, size_t to, const bool *dry,
		       size_t *fails)
{
	for (size_t i = from; i < to; i++) {
		if (dry && dry[i]) {
			struct dry d = pool_dry(ix);
			int rc = kv_index_bulk_add(ix, m[i].k, m[i].len, &m[i].ref);

			pool_wet(ix, d);
			cr_assert_eq(rc, -ENOMEM, "add %zu with the pool dry: %d", i, rc);
			(*fails)++;
		}
		cr_assert_eq(kv_index_bulk_add(ix, m[i].k, m[i].len, &m[i].ref), 0, "add %zu", i);
		m[i].present = true;
	}
}

/* The first add of a load set the load up and then failed to get its first leaf: the
 * index was left with a load whose leaf was NULL, and the next add or the finish
 * dereferenced it. */
Test(index_alloc, a_bulk_load_whose_first_add_failed_goes_on_when_memory_is_back)
{
	struct kv_index *ix = kv_index_create();
	struct mkey *m = make_keys(300);
	bool dry[300] = { [0] = true };
	size_t fails = 0;

	bulk_range(ix, m, 0, 300, dry, &fails);
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	check_model(ix, m, 300);
	free_keys(m, 300);
	kv_index_destroy(ix);
}

/* Adds fail at random points of a load of three levels (long keys included); each is
 * retried; the finished tree holds every key. */
static void bulk_round(uint64_t seed)
{
	struct kv_index *ix = kv_index_create();
	struct mkey *m = make_keys(NKEYS);
	bool *dry = calloc(NKEYS, sizeof(*dry));
	size_t fails = 0;

	for (size_t i = 0; i < NKEYS; i++)
		dry[i] = i == 0 || i % 97 == 50 || mix(&seed) % 50 == 0;
	bulk_range(ix, m, 0, NKEYS, dry, &fails);
	cr_assert_gt(fails, NKEYS / 50);
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	cr_assert_geq(ix->height, 3);
	check_model(ix, m, NKEYS);
	free(dry);
	free_keys(m, NKEYS);
	kv_index_destroy(ix);
}

Test(index_alloc, a_failed_bulk_add_changes_nothing_and_the_load_goes_on)
{
	rounds(bulk_round);
}

/* A load given up after a failed add is finished with what it holds: a valid index that
 * takes ordinary writes (and refuses another load: it is not empty). */
Test(index_alloc, a_bulk_load_finished_after_a_failed_add_is_a_usable_index)
{
	struct kv_index *ix = kv_index_create();
	struct mkey *m = make_keys(NKEYS);
	size_t half = NKEYS / 2;
	struct dry d;

	bulk_range(ix, m, 0, half, NULL, NULL);
	d = pool_dry(ix);
	cr_assert_eq(kv_index_bulk_add(ix, m[half].k, m[half].len, &m[half].ref), -ENOMEM);
	pool_wet(ix, d);
	cr_assert_eq(kv_index_bulk_finish(ix), 0);
	check_model(ix, m, NKEYS);
	cr_assert_eq(kv_index_bulk_add(ix, m[half].k, m[half].len, &m[half].ref), -EINVAL);
	for (size_t i = half; i < NKEYS; i++) {
		cr_assert_eq(kv_index_upsert(ix, m[i].k, m[i].len, &m[i].ref, NULL, NULL), 1);
		m[i].present = true;
	}
	for (size_t i = 0; i < half; i += 3) {
		cr_assert_eq(kv_index_remove_if(ix, m[i].k, m[i].len, &m[i].ref), 1);
		m[i].present = false;
	}
	check_model(ix, m, NKEYS);
	free_keys(m, NKEYS);
	kv_index_destroy(ix);
}
