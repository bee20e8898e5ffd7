/* SPDX-License-Identifier: MIT */
/*
 * The ordered in-memory index (kv/src/kv_index*.c) at its edges: running out of memory
 * (an operation that fails changes nothing), memory per entry, and keys at every length
 * boundary of the encoding, long shared prefixes and zero bytes, through every insert
 * order, bulk loading and a model of growing and shrinking entries. Checks:
 * tests/support/kv_index_check.h.
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
