/* SPDX-License-Identifier: MIT */
/*
 * The public API, call by call: results, every documented error, ownership rules.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "kv_test.h"

static char *dir;
static aurakv_t *db;
static struct kv_reports reps;

static void setup(void)
{
	aurakv_options_t o;

	memset(&reps, 0, sizeof(reps));
	dir = kv_temp_dir();
	o = kv_opts(&reps);
	db = kv_open_ok(dir, &o);
}

static void teardown(void)
{
	if (db)
		aurakv_close(db);
	kv_rm_tree(dir);
	free(dir);
}

TestSuite(kv_api, .init = setup, .fini = teardown, .timeout = 60);

static void expect_value(const char *key, const void *val, size_t len)
{
	void *got = NULL;
	size_t glen = 0;
	int rc = aurakv_get(db, key, strlen(key), &got, &glen);

	cr_assert_eq(rc, 0, "get %s: %s", key, aurakv_strerror(rc));
	cr_assert_not_null(got);
	cr_assert_eq(glen, len, "%s: %zu bytes, expected %zu", key, glen, len);
	cr_assert(len == 0 || memcmp(got, val, len) == 0, "%s: wrong value", key);
	aurakv_free(got);
}

static void expect_missing(const char *key)
{
	void *got = (void *) 1;
	size_t glen = 7;

	cr_assert_eq(aurakv_get(db, key, strlen(key), &got, &glen), AURAKV_ENOTFOUND, "%s", key);
	cr_assert_null(got);
	cr_assert_eq(glen, 0);
}

Test(kv_api, options_init_sets_the_documented_defaults)
{
	aurakv_options_t o;

	memset(&o, 0xff, sizeof(o));
	aurakv_options_init(&o);
	cr_assert_eq(o.segment_size, 16ull << 20);
	cr_assert(o.create_if_missing);
	cr_assert_eq(o.cache_size, 64u << 20);
	cr_assert_eq(o.compress_min, 256);
	cr_assert_eq(o.flush_delay_us, 1000);
	cr_assert(o.background_gc);
	cr_assert_float_eq(o.gc_space_amp, 1.5, 1e-9);
	cr_assert(o.write_hints);
	cr_assert_null(o.engine);
	cr_assert_null(o.reporter);
	aurakv_options_init(NULL); /* ignored, no crash */
}

Test(kv_api, put_then_get_returns_the_value)
{
	expect_missing("alpha");
	cr_assert_eq(aurakv_put(db, "alpha", 5, "one", 3, 0), 0);
	expect_value("alpha", "one", 3);
	cr_assert_eq(aurakv_put(db, "alpha", 5, "two!", 4, AURAKV_SYNC), 0);
	expect_value("alpha", "two!", 4);
}

Test(kv_api, an_empty_value_is_a_value_not_a_missing_key)
{
	char buf[4];
	size_t len = 99;

	cr_assert_eq(aurakv_put(db, "empty", 5, NULL, 0, 0), 0);
	expect_value("empty", NULL, 0);
	cr_assert_eq(aurakv_get_into(db, "empty", 5, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(aurakv_get_into(db, "empty", 5, NULL, 0, &len), 0);
}

Test(kv_api, get_into_copies_into_the_callers_buffer_or_says_how_much_is_needed)
{
	char buf[16];
	size_t len = 0;

	cr_assert_eq(aurakv_put(db, "k", 1, "0123456789", 10, 0), 0);
	cr_assert_eq(aurakv_get_into(db, "k", 1, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 10);
	cr_assert_eq(memcmp(buf, "0123456789", 10), 0);
	cr_assert_eq(aurakv_get_into(db, "k", 1, buf, 4, &len), AURAKV_ENOBUFS);
	cr_assert_eq(len, 10, "the size needed is returned");
	cr_assert_eq(aurakv_get_into(db, "nope", 4, buf, sizeof(buf), &len), AURAKV_ENOTFOUND);
	cr_assert_eq(aurakv_get_into(db, "k", 1, NULL, 4, &len), -EINVAL);
	cr_assert_eq(aurakv_get_into(db, "k", 1, buf, 4, NULL), -EINVAL);
}

Test(kv_api, delete_removes_the_key_and_deleting_a_missing_key_is_fine)
{
	cr_assert_eq(aurakv_put(db, "gone", 4, "x", 1, 0), 0);
	cr_assert_eq(aurakv_delete(db, "gone", 4, 0), 0);
	expect_missing("gone");
	cr_assert_eq(aurakv_delete(db, "gone", 4, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_delete(db, "never", 5, 0), 0);
	cr_assert_eq(aurakv_put(db, "gone", 4, "back", 4, 0), 0);
	expect_value("gone", "back", 4);
}

Test(kv_api, bad_arguments_get_clear_errors)
{
	void *v;
	size_t l;

	cr_assert_eq(aurakv_put(NULL, "k", 1, "v", 1, 0), -EINVAL);
	cr_assert_eq(aurakv_put(db, NULL, 1, "v", 1, 0), -EINVAL);
	cr_assert_eq(aurakv_put(db, "k", 1, NULL, 1, 0), -EINVAL);
	cr_assert_eq(aurakv_put(db, "k", 1, "v", 1, 0x80), -EINVAL);
	cr_assert_eq(aurakv_get(db, "k", 1, NULL, &l), -EINVAL);
	cr_assert_eq(aurakv_get(db, "k", 1, &v, NULL), -EINVAL);
	cr_assert_eq(aurakv_get(NULL, "k", 1, &v, &l), -EINVAL);
	cr_assert_eq(aurakv_get(db, NULL, 1, &v, &l), -EINVAL);
	cr_assert_eq(aurakv_delete(db, "k", 1, 0x80), -EINVAL);
	cr_assert_eq(aurakv_delete(NULL, "k", 1, 0), -EINVAL);
	cr_assert_eq(aurakv_write(db, NULL, 0), -EINVAL);
	cr_assert_eq(aurakv_sync(NULL), -EINVAL);
	cr_assert_eq(aurakv_get_async(db, "k", 1, NULL, NULL), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, NULL, NULL, NULL, NULL, NULL, 0), -EINVAL);
	cr_assert_eq(aurakv_get_stats(db, NULL), -EINVAL);
	cr_assert_eq(aurakv_open(NULL, NULL, &db), -EINVAL);
	cr_assert_eq(aurakv_open(dir, NULL, NULL), -EINVAL);
}

Test(kv_api, keys_and_values_over_the_limits_are_refused_and_the_limits_work)
{
	uint8_t *big = malloc(AURAKV_MAX_KEY + 1);
	void *v;
	size_t l;

	memset(big, 'K', AURAKV_MAX_KEY + 1);
	cr_assert_eq(aurakv_put(db, big, 0, "v", 1, 0), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_put(db, big, AURAKV_MAX_KEY + 1, "v", 1, 0), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_get(db, big, AURAKV_MAX_KEY + 1, &v, &l), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_delete(db, big, 0, 0), AURAKV_EKEYSIZE);
	/* The length is checked before any byte is read: a short buffer is safe here. */
	cr_assert_eq(aurakv_put(db, "k", 1, big, (size_t) AURAKV_MAX_VALUE + 1, 0),
		     AURAKV_EVALSIZE);
	cr_assert_eq(aurakv_put(db, big, AURAKV_MAX_KEY, "longest", 7, 0), 0);
	cr_assert_eq(aurakv_get(db, big, AURAKV_MAX_KEY, &v, &l), 0);
	cr_assert_eq(l, 7);
	cr_assert_eq(memcmp(v, "longest", 7), 0);
	aurakv_free(v);
	free(big);
}

Test(kv_api, large_and_compressible_values_round_trip)
{
	size_t n = 3u << 20; /* larger than a 1 MiB segment's batch buffer */
	uint8_t *big = malloc(n), *text = malloc(100000);
	aurakv_stats_t st;
	void *v;
	size_t l;

	kv_value(big, n, 1, 1);
	for (size_t i = 0; i < 100000; i++)
		text[i] = (uint8_t) "the quick brown fox "[i % 20];
	cr_assert_eq(aurakv_put(db, "big", 3, big, 1u << 19, 0), 0);
	cr_assert_eq(aurakv_put(db, "text", 4, text, 100000, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_geq(st.compressed_values, 1, "the repetitive value was compressed");
	cr_assert_eq(aurakv_get(db, "big", 3, &v, &l), 0);
	cr_assert_eq(l, 1u << 19);
	cr_assert_eq(memcmp(v, big, l), 0);
	aurakv_free(v);
	cr_assert_eq(aurakv_get(db, "text", 4, &v, &l), 0);
	cr_assert_eq(l, 100000);
	cr_assert_eq(memcmp(v, text, l), 0);
	aurakv_free(v);
	/* A value that does not fit in one segment cannot be stored: a clear error. */
	cr_assert_neq(aurakv_put(db, "huge", 4, big, n, 0), 0);
	free(big);
	free(text);
}

Test(kv_api, a_closed_handle_answers_eclosed)
{
	void *v;
	size_t l;

	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_put(db, "k", 1, "v", 1, 0), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_get(db, "k", 1, &v, &l), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_delete(db, "k", 1, 0), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_sync(db), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_close(db), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_close(NULL), 0);
	db = NULL;
}

Test(kv_api, values_survive_a_clean_close_and_reopen)
{
	aurakv_options_t o = kv_opts(&reps);
	char k[32];
	uint8_t v[400];

	for (uint64_t i = 0; i < 5000; i++) { /* several 1 MiB segments */
		size_t len = kv_value_len(i, 1, 300);

		kv_value(v, len, i, 1);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	for (uint64_t i = 0; i < 5000; i += 3)
		cr_assert_eq(aurakv_delete(db, k, kv_key(k, i), 0), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	for (uint64_t i = 0; i < 5000; i++) {
		void *got;
		size_t len;
		int rc = aurakv_get(db, k, kv_key(k, i), &got, &len);

		if (i % 3 == 0) {
			cr_assert_eq(rc, AURAKV_ENOTFOUND, "key %llu was deleted",
				     (unsigned long long) i);
			continue;
		}
		cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long) i, aurakv_strerror(rc));
		cr_assert(kv_value_is(got, len, i, 1, 300), "key %llu", (unsigned long long) i);
		aurakv_free(got);
	}
}

Test(kv_api, a_batch_applies_all_its_puts_and_deletes)
{
	aurakv_batch_t *b = aurakv_batch_new();

	cr_assert_not_null(b);
	cr_assert_eq(aurakv_put(db, "old", 3, "x", 1, 0), 0);
	cr_assert_eq(aurakv_batch_put(b, "a", 1, "1", 1), 0);
	cr_assert_eq(aurakv_batch_put(b, "b", 1, "2", 1), 0);
	cr_assert_eq(aurakv_batch_delete(b, "old", 3), 0);
	cr_assert_eq(aurakv_batch_put(b, "a", 1, "3", 1), 0); /* later entries win */
	cr_assert_eq(aurakv_batch_count(b), 4);
	cr_assert_eq(aurakv_write(db, b, AURAKV_SYNC), 0);
	expect_value("a", "3", 1);
	expect_value("b", "2", 1);
	expect_missing("old");
	aurakv_batch_clear(b);
	cr_assert_eq(aurakv_batch_count(b), 0);
	cr_assert_eq(aurakv_write(db, b, 0), 0, "an empty batch writes nothing");
	cr_assert_eq(aurakv_batch_put(b, "k", 0, "v", 1), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_batch_put(b, NULL, 1, "v", 1), -EINVAL);
	cr_assert_eq(aurakv_batch_put(b, "k", 1, "v", (size_t) AURAKV_MAX_VALUE + 1),
		     AURAKV_EVALSIZE);
	cr_assert_eq(aurakv_batch_put(NULL, "k", 1, "v", 1), -EINVAL);
	cr_assert_eq(aurakv_batch_count(b), 0, "refused entries are not added");
	cr_assert_eq(aurakv_batch_count(NULL), 0);
	aurakv_batch_free(b);
	aurakv_batch_free(NULL);
}

Test(kv_api, a_batch_survives_reopen_and_its_values_compress)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_batch_t *b = aurakv_batch_new();
	char text[1000], k[32];

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = "abcabcabd"[i % 9];
	for (uint64_t i = 0; i < 50; i++)
		cr_assert_eq(aurakv_batch_put(b, k, kv_key(k, i), text, sizeof(text) - i), 0);
	cr_assert_eq(aurakv_write(db, b, 0), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	for (uint64_t i = 0; i < 50; i++) {
		kv_key(k, i);
		expect_value(k, text, sizeof(text) - i);
	}
	aurakv_batch_free(b);
}

struct async_result {
	int calls, status;
	size_t len;
	char val[64];
};

static void on_get(void *arg, int status, const void *val, size_t len)
{
	struct async_result *r = arg;

	r->calls++;
	r->status = status;
	r->len = len;
	if (status == 0 && len <= sizeof(r->val))
		memcpy(r->val, val, len);
}

Test(kv_api, async_get_calls_back_once_with_the_value_or_not_found)
{
	struct async_result found = { 0 }, missing = { 0 };
	aurakv_options_t o = kv_opts(&reps);

	/* Without a cache, so that the value comes from a device read. */
	cr_assert_eq(aurakv_close(db), 0);
	o.cache_size = 0;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "here", 4, "value", 5, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_get_async(db, "here", 4, on_get, &found), 0);
	cr_assert_eq(aurakv_get_async(db, "nothere", 7, on_get, &missing), 0);
	cr_assert_eq(missing.calls, 1, "a missing key is answered at once");
	cr_assert_eq(missing.status, AURAKV_ENOTFOUND);
	while (found.calls == 0)
		cr_assert_geq(aurakv_poll(db, 1000), 0);
	cr_assert_eq(found.calls, 1);
	cr_assert_eq(found.status, 0);
	cr_assert_eq(found.len, 5);
	cr_assert_eq(memcmp(found.val, "value", 5), 0);
	cr_assert_eq(aurakv_get_async(db, "", 0, on_get, &missing), AURAKV_EKEYSIZE);
	cr_assert_eq(missing.calls, 1, "no callback for a refused call");
}

Test(kv_api, multi_get_returns_every_keys_status_and_value)
{
	const void *keys[300];
	size_t klens[300], vlens[300];
	void *vals[300];
	int status[300];
	char kb[300][32];
	uint8_t v[400];

	for (uint64_t i = 0; i < 300; i++) {
		keys[i] = kb[i];
		klens[i] = kv_key(kb[i], i);
		if (i % 4 == 0)
			continue; /* missing */
		kv_value(v, kv_value_len(i, 2, 300), i, 2);
		cr_assert_eq(aurakv_put(db, kb[i], klens[i], v, kv_value_len(i, 2, 300), 0), 0);
	}
	cr_assert_eq(aurakv_multi_get(db, 300, keys, klens, vals, vlens, status, 16), 0);
	for (uint64_t i = 0; i < 300; i++) {
		if (i % 4 == 0) {
			cr_assert_eq(status[i], AURAKV_ENOTFOUND);
			cr_assert_null(vals[i]);
			continue;
		}
		cr_assert_eq(status[i], 0, "key %llu: %s", (unsigned long long) i,
			     aurakv_strerror(status[i]));
		cr_assert(kv_value_is(vals[i], vlens[i], i, 2, 300));
		aurakv_free(vals[i]);
	}
	cr_assert_eq(aurakv_multi_get(db, 0, NULL, NULL, NULL, NULL, NULL, 0), 0);
}

struct walk {
	int n;
	char keys[16][32];
	int stop_at;
};

static int on_key(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct walk *w = arg;

	cr_assert_eq(vlen, klen, "the test's values are their keys");
	cr_assert_eq(memcmp(key, val, klen), 0);
	memcpy(w->keys[w->n], key, klen);
	w->keys[w->n][klen] = 0;
	w->n++;
	return w->n == w->stop_at ? 42 : 0;
}

Test(kv_api, foreach_visits_live_keys_in_order_from_a_start_key)
{
	const char *ks[] = { "pear", "apple", "fig", "banana", "kiwi", "cherry" };
	struct walk w = { 0 };

	for (int i = 0; i < 6; i++)
		cr_assert_eq(aurakv_put(db, ks[i], strlen(ks[i]), ks[i], strlen(ks[i]), 0), 0);
	cr_assert_eq(aurakv_delete(db, "fig", 3, 0), 0);
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_key, &w), 0);
	cr_assert_eq(w.n, 5);
	cr_assert_str_eq(w.keys[0], "apple");
	cr_assert_str_eq(w.keys[1], "banana");
	cr_assert_str_eq(w.keys[2], "cherry");
	cr_assert_str_eq(w.keys[3], "kiwi");
	cr_assert_str_eq(w.keys[4], "pear");
	memset(&w, 0, sizeof(w));
	w.stop_at = 2;
	cr_assert_eq(aurakv_foreach(db, "c", 1, on_key, &w), 42, "the callback's stop value");
	cr_assert_eq(w.n, 2);
	cr_assert_str_eq(w.keys[0], "cherry");
	cr_assert_str_eq(w.keys[1], "kiwi");
}

/* A start key is a key: one too long is AURAKV_EKEYSIZE, as for put and get (it was
 * -EINVAL, which the header does not list for a key's size). */
Test(kv_api, foreach_from_a_start_key_over_the_limit_is_a_key_size_error)
{
	uint8_t *big = malloc(AURAKV_MAX_KEY + 1);
	struct walk w = { 0 };

	cr_assert_not_null(big);
	memset(big, 'K', AURAKV_MAX_KEY + 1);
	cr_assert_eq(aurakv_put(db, "k", 1, "k", 1, 0), 0);
	cr_assert_eq(aurakv_foreach(db, big, AURAKV_MAX_KEY + 1, on_key, &w), AURAKV_EKEYSIZE);
	cr_assert_eq(w.n, 0, "nothing visited");
	cr_assert_eq(aurakv_foreach(db, big, AURAKV_MAX_KEY, on_key, &w), 0,
		     "the longest key is a valid start");
	cr_assert_eq(aurakv_foreach(db, NULL, 1, on_key, &w), -EINVAL);
	free(big);
}

Test(kv_api, stats_count_keys_bytes_cache_and_index)
{
	aurakv_stats_t st;
	aurakv_segment_stats_t segs[8];
	size_t n = 0;
	char k[32];
	void *v;
	size_t l;

	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), k, 9, 0), 0);
	cr_assert_eq(aurakv_delete(db, k, kv_key(k, 7), 0), 0);
	for (int r = 0; r < 2; r++) /* the second round hits the cache */
		for (uint64_t i = 0; i < 10; i++)
			if (i != 7) {
				cr_assert_eq(aurakv_get(db, k, kv_key(k, i), &v, &l), 0);
				aurakv_free(v);
			}
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.keys, 99);
	cr_assert_eq(st.puts, 100);
	cr_assert_eq(st.deletes, 1);
	cr_assert_gt(st.total_bytes, st.live_bytes);
	cr_assert_gt(st.live_bytes, 0);
	cr_assert_geq(st.cache_hits, 9);
	cr_assert_gt(st.cache_hit_rate, 0);
	cr_assert_gt(st.index_bytes, 0);
	cr_assert_gt(st.index_bytes_per_key, 0);
	cr_assert_gt(st.disk_bytes, 0);
	cr_assert_geq(st.segments, 1);
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 8, &n), 0);
	cr_assert_eq(n, st.segments);
	cr_assert_eq(segs[n - 1].total_bytes, st.total_bytes);
	cr_assert_eq(aurakv_get_segment_stats(db, NULL, 1, &n), -EINVAL);
}

Test(kv_api, strerror_describes_every_code)
{
	int codes[] = { 0,
			AURAKV_ENOTFOUND,
			AURAKV_ECORRUPT,
			AURAKV_ECLOSED,
			AURAKV_ELOCKED,
			AURAKV_EFORMAT,
			AURAKV_EKEYSIZE,
			AURAKV_EVALSIZE,
			AURAKV_EBATCHSIZE,
			AURAKV_ENOBUFS,
			-EIO,
			-ENOSPC };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = aurakv_strerror(codes[i]);

		cr_assert_not_null(s);
		cr_assert_gt(strlen(s), 3);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(s, aurakv_strerror(codes[j]), "codes %d and %d", codes[i],
					  codes[j]);
	}
	cr_assert_not_null(aurakv_strerror(12345));
}

Test(kv_api, open_refuses_bad_options_and_a_missing_store)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *other = NULL;
	char missing[600];

	o.segment_size = 12345;
	cr_assert_eq(aurakv_open(dir, &o, &other), -EINVAL);
	o = kv_opts(NULL);
	o.gc_space_amp = 1.0;
	cr_assert_eq(aurakv_open(dir, &o, &other), -EINVAL);
	o = kv_opts(NULL);
	o.create_if_missing = false;
	snprintf(missing, sizeof(missing), "%s/none", dir);
	cr_assert_eq(aurakv_open(missing, &o, &other), -ENOENT);
	cr_assert_null(other);
}

Test(kv_api, a_second_open_is_refused_naming_the_holders_pid)
{
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0) { /* another process */
		struct kv_reports r = { 0 };
		aurakv_options_t o = kv_opts(&r);
		aurakv_t *other = NULL;
		char want[32];
		int rc = aurakv_open(dir, &o, &other);

		snprintf(want, sizeof(want), "%d", (int) getppid());
		_exit(rc == AURAKV_ELOCKED && r.locked == 1 && strstr(r.last_locked, want) && !other
			  ? 0
			  : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the second open must fail with AURAKV_ELOCKED naming PID %d", (int) getpid());
}

Test(kv_api, an_async_get_counts_in_gets_like_a_get_whether_found_or_missing)
{
	struct async_result missing = { 0 }, found = { 0 };
	aurakv_stats_t st;

	cr_assert_eq(aurakv_put(db, "here", 4, "value", 5, 0), 0);
	cr_assert_eq(aurakv_get_async(db, "nothere", 7, on_get, &missing), 0);
	cr_assert_eq(aurakv_get_async(db, "here", 4, on_get, &found), 0);
	while (found.calls == 0)
		cr_assert_geq(aurakv_poll(db, 1000), 0);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.get_misses, 1);
	cr_assert_eq(st.gets, 2, "every get counts, the missing one too: %llu",
		     (unsigned long long) st.gets);
}

Test(kv_api, open_refuses_a_flush_delay_over_ten_seconds_before_creating_anything)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *other = NULL;
	char fresh[600];

	snprintf(fresh, sizeof(fresh), "%s/fresh", dir);
	o.flush_delay_us = 10000001u;
	cr_assert_eq(aurakv_open(fresh, &o, &other), -EINVAL);
	cr_assert_null(other);
	cr_assert_neq(access(fresh, F_OK), 0, "a refused open leaves no directory behind");
	o.flush_delay_us = 10000000u; /* the largest */
	other = kv_open_ok(fresh, &o);
	cr_assert_eq(aurakv_close(other), 0);
}

Test(kv_api, close_runs_the_callback_of_every_async_get_still_in_flight_once)
{
	struct async_result r[64];
	aurakv_options_t o = kv_opts(&reps);
	char k[32];

	cr_assert_eq(aurakv_close(db), 0);
	o.cache_size = 0; /* every get is a device read */
	db = kv_open_ok(dir, &o);
	memset(r, 0, sizeof(r));
	for (uint64_t i = 0; i < 64; i++)
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), k, 9, 0), 0);
	cr_assert_eq(aurakv_sync(db), 0);
	for (uint64_t i = 0; i < 64; i++)
		cr_assert_eq(aurakv_get_async(db, k, kv_key(k, i), on_get, &r[i]), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = NULL;
	for (uint64_t i = 0; i < 64; i++) {
		cr_assert_eq(r[i].calls, 1, "get %llu: %d callbacks", (unsigned long long) i,
			     r[i].calls);
		cr_assert_eq(r[i].status, 0);
		cr_assert_eq(r[i].len, kv_key(k, i));
		cr_assert_eq(memcmp(r[i].val, k, 9), 0);
	}
}

/* Where the callbacks of async gets ran: the header allows aurakv_poll() (and the
 * aurakv_get_async() call itself), in the thread that calls them. */
static struct {
	pthread_t thread;
	atomic_bool in_poll, in_get_async;
	atomic_int calls, misplaced, wrong; /* atomics: a misplaced callback may run elsewhere */
} where;

static void on_get_where(void *arg, int status, const void *val, size_t len)
{
	const char *key = arg;

	where.calls++;
	if (!pthread_equal(pthread_self(), where.thread) || !(where.in_poll || where.in_get_async))
		where.misplaced++;
	if (status != 0 || len != 9 || memcmp(val, key, 9) != 0)
		where.wrong++;
}

Test(kv_api, an_async_gets_callback_runs_in_poll_never_inside_a_write_or_the_background_thread)
{
	static char keys[64][32];
	aurakv_options_t o = kv_opts(&reps);
	int issued = 0;
	char k[32];

	cr_assert_eq(aurakv_close(db), 0);
	o.cache_size = 0; /* every get is a device read */
	db = kv_open_ok(dir, &o);
	for (uint64_t i = 0; i < 64; i++)
		cr_assert_eq(aurakv_put(db, keys[i], kv_key(keys[i], i), keys[i], 9, 0), 0);
	cr_assert_eq(aurakv_sync(db), 0);
	memset(&where, 0, sizeof(where));
	where.thread = pthread_self();
	/* Each synchronous get reaps the engine, completing the async reads before it on the
	 * same ring; the writes after it must leave their callbacks to aurakv_poll(). */
	for (int i = 0; i < 200 && where.misplaced == 0; i++) {
		void *v = NULL;
		size_t len = 0;

		where.in_get_async = true;
		cr_assert_eq(aurakv_get_async(db, keys[i % 64], 9, on_get_where, keys[i % 64]), 0);
		where.in_get_async = false;
		issued++;
		cr_assert_eq(aurakv_get(db, keys[(i + 7) % 64], 9, &v, &len), 0);
		aurakv_free(v);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, 1000 + (uint64_t) i), "x", 1,
					i % 2 ? AURAKV_SYNC : 0),
			     0);
		cr_assert_eq(aurakv_delete(db, k, kv_key(k, 1000 + (uint64_t) i), 0), 0);
		cr_assert_eq(aurakv_sync(db), 0);
	}
	where.in_poll = true;
	while (where.calls < issued)
		cr_assert_geq(aurakv_poll(db, 1000), 0);
	where.in_poll = false;
	cr_assert_eq(where.misplaced, 0,
		     "%d of %d callbacks ran outside aurakv_poll() and aurakv_get_async()",
		     where.misplaced, where.calls);
	cr_assert_eq(where.calls, issued);
	cr_assert_eq(where.wrong, 0);
}

/* A callback that holds the thread running it until released. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, open;
	int status;
	size_t len;
	char val[64];
};

static void on_get_held(void *arg, int status, const void *val, size_t len)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->mu);
	g->status = status;
	g->len = len;
	if (status == 0 && len <= sizeof(g->val))
		memcpy(g->val, val, len);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

struct one_mget {
	const void *key;
	size_t klen, vlen;
	void *val;
	int status, rc;
};

static void *one_mget_main(void *arg)
{
	struct one_mget *m = arg;

	m->rc = aurakv_multi_get(db, 1, &m->key, &m->klen, &m->val, &m->vlen, &m->status, 1);
	return NULL;
}

/* aurakv_poll() counts the callbacks of asynchronous gets it ran. A multi-get's own
 * completions are no caller's callbacks: a thread that polls (with nothing of its own in
 * flight) while it delivers another thread's multi-get read must return 0, or a caller
 * counting its gets down by poll's result stops before its callbacks ran. */
Test(kv_api, poll_does_not_count_another_threads_multi_get_completions)
{
	struct gate held = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct one_mget m = { .key = "ondisk", .klen = 6 };
	struct async_result r[8];
	aurakv_options_t o = kv_opts(&reps);
	pthread_t th;
	int ran = 0;

	cr_assert_eq(aurakv_close(db), 0);
	o.cache_size = 0;     /* every get reads the log */
	o.flush_delay_us = 0; /* a write without AURAKV_SYNC stays in the log's buffer */
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "ondisk", 6, "disk-value", 10, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_put(db, "inmem", 5, "mem-value", 9, 0), 0);
	/* Its record is still in memory: the callback is ready for the next poll, which the
	 * multi-get thread makes, and is held there. The multi-get's own device read is then
	 * left for this thread's poll. */
	cr_assert_eq(aurakv_get_async(db, "inmem", 5, on_get_held, &held), 0);
	cr_assert_eq(pthread_create(&th, NULL, one_mget_main, &m), 0);
	pthread_mutex_lock(&held.mu);
	while (!held.entered)
		pthread_cond_wait(&held.cv, &held.mu);
	pthread_mutex_unlock(&held.mu);
	cr_assert_eq(aurakv_poll(db, 10000), 0,
		     "no callback of this thread's (nor any aurakv_get_async one) ran");
	pthread_mutex_lock(&held.mu);
	held.open = true;
	pthread_cond_broadcast(&held.cv);
	pthread_mutex_unlock(&held.mu);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(m.rc, 0);
	cr_assert_eq(m.status, 0, "%s", aurakv_strerror(m.status));
	cr_assert_eq(m.vlen, 10);
	cr_assert_eq(memcmp(m.val, "disk-value", 10), 0);
	aurakv_free(m.val);
	cr_assert_eq(held.status, 0);
	cr_assert_eq(held.len, 9);
	cr_assert_eq(memcmp(held.val, "mem-value", 9), 0);

	/* And the callbacks it does run are counted, each once. */
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 8; i++)
		cr_assert_eq(aurakv_get_async(db, "ondisk", 6, on_get, &r[i]), 0);
	for (int i = 0; i < 8;) {
		int n = aurakv_poll(db, 1000), calls = 0;

		cr_assert_geq(n, 0);
		ran += n;
		for (int j = 0; j < 8; j++)
			calls += r[j].calls;
		cr_assert_eq(ran, calls, "poll said %d callbacks, %d ran", ran, calls);
		i = calls;
	}
}
