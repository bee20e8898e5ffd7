/* SPDX-License-Identifier: MIT */
/*
 * The ordered in-memory index (kv/src/kv_index*.c) under concurrency: readers, cursors,
 * upserts, removes and cas racing with writers, and the root splitting and collapsing
 * under readers - no torn entry, no stable key missed, cursors in order; and a bulk load
 * of the long keys these tests use. Checks: tests/support/kv_index_check.h.
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
