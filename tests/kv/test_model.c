/* SPDX-License-Identifier: MIT */
/*
 * Eight threads of mixed puts, gets, deletes and batches, checked against a model.
 * Each thread owns a slice of the keys (so the model of its slice is exact) and also
 * reads everybody's keys, where it can check that a value always belongs to the key
 * it was read under and that a key's write numbers never go backwards for one reader.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "kv_test.h"

#define THREADS 8
#define SLICE	256
#define OPS	4000
#define SPREAD	400

struct worker {
	aurakv_t *db;
	int id;
	uint64_t state[SLICE];		/* own keys: 0 absent, else write number */
	uint64_t seen[THREADS * SLICE]; /* highest write number read per key */
	char why[256];
	int failures;
};

static uint64_t write_no(int id, uint64_t op)
{
	return op * THREADS + (uint64_t) id + 1; /* unique and growing per thread */
}

static void fail(struct worker *w, const char *fmt, unsigned long long a, unsigned long long b)
{
	if (!w->failures++)
		snprintf(w->why, sizeof(w->why), fmt, a, b);
}

static void check_own(struct worker *w, uint64_t slot)
{
	uint64_t k = (uint64_t) w->id * SLICE + slot;
	char key[32];
	void *v = NULL;
	size_t len = 0;
	int rc = aurakv_get(w->db, key, kv_key(key, k), &v, &len);

	if (w->state[slot] == 0 ? rc != AURAKV_ENOTFOUND
				: rc != 0 || !kv_value_is(v, len, k, w->state[slot], SPREAD))
		fail(w, "own key %llu: expected write %llu", (unsigned long long) k,
		     (unsigned long long) w->state[slot]);
	aurakv_free(v);
}

static void check_any(struct worker *w, uint64_t k)
{
	char key[32];
	uint8_t buf[SPREAD + 16];
	size_t len = 0;
	int rc = aurakv_get_into(w->db, key, kv_key(key, k), buf, sizeof(buf), &len);
	uint64_t wn;

	if (rc == AURAKV_ENOTFOUND)
		return;
	wn = rc == 0 ? kv_value_write(buf, len, k) : UINT64_MAX;
	if (rc != 0 || wn == UINT64_MAX || !kv_value_is(buf, len, k, wn, SPREAD))
		return fail(w, "key %llu: a value that is not this key's (rc %llu)",
			    (unsigned long long) k, (unsigned long long) (unsigned) rc);
	/* Only the owner writes a key, in increasing write numbers. */
	if (wn < w->seen[k])
		fail(w, "key %llu went back to an older write %llu", (unsigned long long) k,
		     (unsigned long long) wn);
	w->seen[k] = wn;
}

static int do_put(struct worker *w, uint64_t slot, uint64_t wn, aurakv_batch_t *b)
{
	uint64_t k = (uint64_t) w->id * SLICE + slot;
	uint8_t v[SPREAD + 16];
	size_t len = kv_value_len(k, wn, SPREAD);
	char key[32];
	size_t klen = kv_key(key, k);

	kv_value(v, len, k, wn);
	w->state[slot] = wn;
	return b ? aurakv_batch_put(b, key, klen, v, len) : aurakv_put(w->db, key, klen, v, len, 0);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned seed = (unsigned) w->id * 104729u + 7;
	aurakv_batch_t *b = aurakv_batch_new();

	for (uint64_t op = 0; op < OPS && !w->failures; op++) {
		uint64_t slot = (uint64_t) rand_r(&seed) % SLICE;
		int r = rand_r(&seed) % 20, rc = 0;
		char key[32];

		if (r < 6) {
			rc = do_put(w, slot, write_no(w->id, op), NULL);
		} else if (r < 8) {
			rc = aurakv_delete(w->db, key, kv_key(key, (uint64_t) w->id * SLICE + slot),
					   0);
			w->state[slot] = 0;
		} else if (r < 9) { /* a batch of puts and a delete on own keys */
			aurakv_batch_clear(b);
			for (uint64_t j = 0; j < 4 && rc == 0; j++)
				rc = do_put(w, (slot + j) % SLICE, write_no(w->id, op), b);
			if (rc == 0)
				rc = aurakv_batch_delete(
				    b, key,
				    kv_key(key, (uint64_t) w->id * SLICE + (slot + 4) % SLICE));
			w->state[(slot + 4) % SLICE] = 0;
			if (rc == 0)
				rc = aurakv_write(w->db, b, 0);
		} else if (r < 14) {
			check_own(w, slot);
		} else {
			check_any(w, (uint64_t) rand_r(&seed) % (THREADS * SLICE));
		}
		if (rc)
			fail(w, "op %llu failed: %llu", (unsigned long long) op,
			     (unsigned long long) (unsigned) rc);
	}
	aurakv_batch_free(b);
	return NULL;
}

static void final_check(aurakv_t *db, struct worker *ws)
{
	for (int t = 0; t < THREADS; t++) {
		ws[t].db = db;
		for (uint64_t s = 0; s < SLICE; s++)
			check_own(&ws[t], s);
		cr_assert_eq(ws[t].failures, 0, "thread %d: %s", t, ws[t].why);
	}
}

static void run(aurakv_options_t *o)
{
	static struct worker ws[THREADS];
	char *dir = kv_temp_dir();
	aurakv_t *db = kv_open_ok(dir, o);
	pthread_t th[THREADS];

	for (int t = 0; t < THREADS; t++) {
		memset(&ws[t], 0, sizeof(ws[t]));
		ws[t].db = db;
		ws[t].id = t;
		cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &ws[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		cr_assert_eq(pthread_join(th[t], NULL), 0);
	for (int t = 0; t < THREADS; t++)
		cr_assert_eq(ws[t].failures, 0, "thread %d: %s", t, ws[t].why);
	final_check(db, ws);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, o);
	final_check(db, ws);
	cr_assert_eq(aurakv_close(db), 0);
	kv_rm_tree(dir);
	free(dir);
}

Test(kv_model, eight_threads_of_mixed_operations_match_the_model, .timeout = 300)
{
	aurakv_options_t o = kv_opts(NULL);

	run(&o);
}

Test(kv_model, eight_threads_match_the_model_without_a_cache, .timeout = 300)
{
	aurakv_options_t o = kv_opts(NULL);

	o.cache_size = 0;
	o.gc_space_amp = 1.1;
	run(&o);
}
