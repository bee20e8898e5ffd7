/* SPDX-License-Identifier: MIT */
/*
 * The read path's asynchronous side: multi-get slot by slot, async gets from many
 * threads and from inside callbacks, and the ordered walk under writes and GC.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "kv_test.h"

static char *dir;
static aurakv_t *db;
static struct kv_reports reps;

static void open_db(size_t cache)
{
	aurakv_options_t o = kv_opts(&reps);

	o.cache_size = cache;
	db = kv_open_ok(dir, &o);
}

static void setup(void)
{
	memset(&reps, 0, sizeof(reps));
	dir = kv_temp_dir();
	open_db(0); /* no cache: an async get is a device read */
}

static void teardown(void)
{
	if (db)
		aurakv_close(db);
	kv_rm_tree(dir);
	free(dir);
}

TestSuite(kv_read, .init = setup, .fini = teardown, .timeout = 120);

static void put_keys(uint64_t n, uint64_t w)
{
	char k[32];
	uint8_t v[600];

	for (uint64_t i = 0; i < n; i++) {
		size_t len = kv_value_len(i, w, 500);

		kv_value(v, len, i, w);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	cr_assert_eq(aurakv_sync(db), 0);
}

Test(kv_read, multi_get_gives_every_slot_its_own_status_and_value)
{
	static char big[AURAKV_MAX_KEY + 1];
	char kb[8][32];
	const void *keys[8];
	size_t klens[8], vlens[8];
	void *vals[8];
	int status[8];
	unsigned depths[] = { 0, 1, 2, 100 };

	put_keys(4, 1);
	cr_assert_eq(aurakv_delete(db, kb[0], kv_key(kb[0], 2), 0), 0);
	for (int i = 0; i < 4; i++)
		kv_key(kb[i], (uint64_t) i);
	keys[0] = kb[0], klens[0] = strlen(kb[0]); /* found */
	keys[1] = kb[2], klens[1] = strlen(kb[2]); /* deleted */
	keys[2] = "nope", klens[2] = 4;		   /* missing */
	keys[3] = big, klens[3] = sizeof(big);	   /* too long */
	keys[4] = kb[1], klens[4] = strlen(kb[1]); /* found */
	keys[5] = kb[0], klens[5] = strlen(kb[0]); /* duplicate */
	keys[6] = NULL, klens[6] = 3;		   /* no key */
	keys[7] = kb[3], klens[7] = 0;		   /* empty */
	for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
		memset(vals, 0x5a, sizeof(vals));
		memset(vlens, 0x5a, sizeof(vlens));
		cr_assert_eq(aurakv_multi_get(db, 8, keys, klens, vals, vlens, status, depths[d]),
			     0);
		cr_assert_eq(status[0], 0);
		cr_assert(kv_value_is(vals[0], vlens[0], 0, 1, 500));
		cr_assert_eq(status[5], 0);
		cr_assert(kv_value_is(vals[5], vlens[5], 0, 1, 500));
		cr_assert_neq(vals[0], vals[5], "each slot its own buffer");
		cr_assert_eq(status[4], 0);
		cr_assert(kv_value_is(vals[4], vlens[4], 1, 1, 500));
		cr_assert_eq(status[1], AURAKV_ENOTFOUND);
		cr_assert_eq(status[2], AURAKV_ENOTFOUND);
		cr_assert_eq(status[3], AURAKV_EKEYSIZE);
		cr_assert_eq(status[6], -EINVAL);
		cr_assert_eq(status[7], AURAKV_EKEYSIZE);
		for (int i = 1; i < 8; i++) {
			if (i == 4 || i == 5)
				continue;
			cr_assert_null(vals[i], "slot %d", i);
			cr_assert_eq(vlens[i], 0, "slot %d", i);
		}
		aurakv_free(vals[0]);
		aurakv_free(vals[4]);
		aurakv_free(vals[5]);
	}
}

Test(kv_read, multi_get_refuses_null_arrays_and_takes_n_zero)
{
	const void *keys[1] = { "a" };
	size_t klens[1] = { 1 }, vlens[1];
	void *vals[1];
	int status[1];

	cr_assert_eq(aurakv_multi_get(db, 1, NULL, klens, vals, vlens, status, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, keys, NULL, vals, vlens, status, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, keys, klens, NULL, vlens, status, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, keys, klens, vals, NULL, status, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, keys, klens, vals, vlens, NULL, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 0, keys, klens, vals, vlens, status, 0), 0);
	cr_assert_eq(aurakv_multi_get(db, SIZE_MAX, keys, klens, vals, vlens, status, 0), -ENOMEM);
}

/* ---- async gets from many threads ---- */

#define AG_THREADS 4
#define AG_PER	   2000
#define AG_KEYS	   300

static atomic_int calls[AG_THREADS][AG_PER];
static atomic_int wrong, issued_threads;
static atomic_bool stop_polling;

static _Thread_local long cbs_here; /* callbacks this thread ran */
static atomic_long poll_sum, poll_cbs;

static void on_counted(void *arg, int status, const void *val, size_t len)
{
	uintptr_t id = (uintptr_t) arg;
	uint64_t k = (id % AG_PER) % AG_KEYS;

	cbs_here++;
	atomic_fetch_add(&calls[id / AG_PER][id % AG_PER], 1);
	if (status != 0 || !kv_value_is(val, len, k, 1, 500))
		atomic_fetch_add(&wrong, 1);
}

static void *issuer(void *arg)
{
	uintptr_t t = (uintptr_t) arg;
	char k[32];

	for (uintptr_t i = 0; i < AG_PER; i++) {
		int rc = aurakv_get_async(db, k, kv_key(k, i % AG_KEYS), on_counted,
					  (void *) (t * AG_PER + i));
		if (rc)
			atomic_fetch_add(&wrong, 1000000);
	}
	atomic_fetch_add(&issued_threads, 1);
	return NULL;
}

static void *poller(void *arg)
{
	(void) arg;
	while (!atomic_load(&stop_polling)) {
		long before = cbs_here;
		int rc = aurakv_poll(db, 10);

		if (rc < 0)
			atomic_fetch_add(&wrong, 1000000);
		else
			atomic_fetch_add(&poll_sum, rc);
		atomic_fetch_add(&poll_cbs, cbs_here - before);
	}
	return NULL;
}

static bool all_called(void)
{
	for (int t = 0; t < AG_THREADS; t++)
		for (int i = 0; i < AG_PER; i++)
			if (atomic_load(&calls[t][i]) == 0)
				return false;
	return true;
}

static void many_async_gets(int pollers)
{
	pthread_t is[AG_THREADS], ps[4];

	put_keys(AG_KEYS, 1);
	memset(calls, 0, sizeof(calls));
	for (int i = 0; i < pollers; i++)
		pthread_create(&ps[i], NULL, poller, NULL);
	for (uintptr_t t = 0; t < AG_THREADS; t++)
		pthread_create(&is[t], NULL, issuer, (void *) t);
	for (int t = 0; t < AG_THREADS; t++)
		pthread_join(is[t], NULL);
	while (!all_called())
		cr_assert_geq(aurakv_poll(db, 100), 0);
	atomic_store(&stop_polling, true);
	for (int i = 0; i < pollers; i++)
		pthread_join(ps[i], NULL);
	cr_assert_eq(atomic_load(&wrong), 0);
	cr_assert_eq(atomic_load(&poll_sum), atomic_load(&poll_cbs),
		     "poll returns the callbacks it ran");
	for (int t = 0; t < AG_THREADS; t++)
		for (int i = 0; i < AG_PER; i++)
			cr_assert_eq(atomic_load(&calls[t][i]), 1, "get %d/%d", t, i);
}

Test(kv_read, thousands_of_async_gets_from_threads_one_poller_each_callback_once)
{
	many_async_gets(1);
}

Test(kv_read, thousands_of_async_gets_from_threads_several_pollers_each_callback_once)
{
	many_async_gets(3);
}

/* ---- callbacks that call the store ---- */

struct chain {
	int left, done, polls, mg_status;
	char key[32];
	size_t klen;
};

static void on_chain(void *arg, int status, const void *val, size_t len)
{
	struct chain *c = arg;

	(void) val, (void) len;
	cr_assert_eq(status, 0);
	c->done++;
	if (c->left-- > 0)
		cr_assert_eq(aurakv_get_async(db, c->key, c->klen, on_chain, c), 0);
}

Test(kv_read, a_callback_can_start_the_next_async_get)
{
	struct chain c = { .left = 50 };

	put_keys(1, 1);
	c.klen = kv_key(c.key, 0);
	cr_assert_eq(aurakv_get_async(db, c.key, c.klen, on_chain, &c), 0);
	while (c.done < 51)
		cr_assert_geq(aurakv_poll(db, 1000), 0);
	cr_assert_eq(c.done, 51);
}

static void on_nested(void *arg, int status, const void *val, size_t len)
{
	struct chain *c = arg;
	const void *keys[2] = { c->key, c->key };
	size_t klens[2] = { c->klen, c->klen }, vlens[2];
	void *vals[2];
	int st[2];

	(void) val, (void) len;
	cr_assert_eq(status, 0);
	c->done++;
	c->polls += aurakv_poll(db, 0) < 0;
	c->mg_status = aurakv_multi_get(db, 2, keys, klens, vals, vlens, st, 1);
	cr_assert_eq(st[0], 0);
	cr_assert_eq(st[1], 0);
	aurakv_free(vals[0]);
	aurakv_free(vals[1]);
}

Test(kv_read, a_callback_can_poll_and_multi_get)
{
	struct chain c[8];

	put_keys(8, 1);
	memset(c, 0, sizeof(c));
	for (int i = 0; i < 8; i++) {
		c[i].klen = kv_key(c[i].key, (uint64_t) i);
		cr_assert_eq(aurakv_get_async(db, c[i].key, c[i].klen, on_nested, &c[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		while (c[i].done == 0)
			cr_assert_geq(aurakv_poll(db, 1000), 0);
	}
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(c[i].done, 1);
		cr_assert_eq(c[i].polls, 0);
		cr_assert_eq(c[i].mg_status, 0);
	}
}

/* ---- foreach ---- */

struct seen {
	int n, stop_at, ret;
	uint64_t count[400];
	bool del, put, del_next;
};

static int on_walk(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct seen *s = arg;
	char k[32];
	unsigned long long i;

	(void) val, (void) vlen;
	memcpy(k, key, klen);
	k[klen] = 0;
	cr_assert_eq(sscanf(k + 1, "%llu", &i), 1, "key %s", k);
	cr_assert_lt(i, 400);
	s->count[i]++;
	s->n++;
	if (s->del)
		cr_assert_eq(aurakv_delete(db, key, klen, 0), 0);
	if (s->put)
		cr_assert_eq(aurakv_put(db, key, klen, "x", 1, 0), 0);
	if (s->del_next) { /* the next key, not visited yet */
		char n[32];

		cr_assert_eq(aurakv_delete(db, n, kv_key(n, i + 1), 0), 0);
	}
	return s->n == s->stop_at ? s->ret : 0;
}

Test(kv_read, foreach_callback_that_deletes_or_overwrites_sees_each_key_once)
{
	struct seen s;
	char k[32];

	put_keys(300, 1);
	kv_key(k, 0);
	memset(&s, 0, sizeof(s));
	s.put = true;
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk, &s), 0);
	cr_assert_eq(s.n, 300);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(s.count[i], 1, "key %d", i);
	memset(&s, 0, sizeof(s));
	s.del = true;
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk, &s), 0);
	cr_assert_eq(s.n, 300);
	memset(&s, 0, sizeof(s));
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk, &s), 0);
	cr_assert_eq(s.n, 0);
}

Test(kv_read, foreach_does_not_visit_a_key_its_callback_deleted_ahead)
{
	struct seen s;

	put_keys(300, 1);
	memset(&s, 0, sizeof(s));
	s.del_next = true;
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk, &s), 0);
	cr_assert_eq(s.n, 150);
	for (int i = 0; i < 300; i++)
		cr_assert_eq(s.count[i], i % 2 == 0, "key %d", i);
}

Test(kv_read, foreach_stops_at_a_nonzero_return_and_returns_it_and_a_late_start_is_empty)
{
	struct seen s;

	put_keys(50, 1);
	memset(&s, 0, sizeof(s));
	s.stop_at = 7;
	s.ret = -12345;
	cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk, &s), -12345);
	cr_assert_eq(s.n, 7);
	memset(&s, 0, sizeof(s));
	cr_assert_eq(aurakv_foreach(db, "\xff\xff", 2, on_walk, &s), 0);
	cr_assert_eq(s.n, 0);
}

static atomic_bool stop_writer;

static void *overwriter(void *arg)
{
	uint64_t w = 2;
	char k[32];
	uint8_t v[600];

	(void) arg;
	while (!atomic_load(&stop_writer)) {
		for (uint64_t i = 0; i < 300 && !atomic_load(&stop_writer); i++) {
			size_t len = kv_value_len(i, w, 500);

			kv_value(v, len, i, w);
			aurakv_put(db, k, kv_key(k, i), v, len, 0);
		}
		aurakv_compact(db);
		w++;
	}
	return NULL;
}

static uint64_t gc_runs(void)
{
	aurakv_stats_t st;

	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	return st.gc_runs;
}

#define GC_RUNS 40 /* collections the readers below must overlap */

/* Go on reading until GC has moved records GC_RUNS times; a minute without that is a
 * hang. (3000 rounds stood in for that time: readers faster than a background thread
 * starved on a loaded machine ran out of rounds first, and the test failed.) */
static bool gc_wanted(uint64_t deadline)
{
	uint64_t runs = gc_runs();

	cr_assert(runs >= GC_RUNS || test_now_ns() < deadline,
		  "GC moved records meanwhile: %llu times in 60 s", (unsigned long long) runs);
	return runs < GC_RUNS;
}

static uint64_t in_a_minute(void)
{
	return test_now_ns() + 60ull * 1000000000ull;
}

static int on_walk_check(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct seen *s = arg;
	char k[32];
	unsigned long long i;

	memcpy(k, key, klen);
	k[klen] = 0;
	cr_assert_eq(sscanf(k + 1, "%llu", &i), 1, "key %s", k);
	cr_assert_lt(i, 400);
	cr_assert_eq(kv_value_write(val, vlen, i) >= 1, true);
	cr_assert(kv_value_is(val, vlen, i, kv_value_write(val, vlen, i), 500), "key %llu", i);
	s->count[i]++;
	s->n++;
	return 0;
}

Test(kv_read, foreach_while_writes_and_gc_move_records_sees_each_live_key_once)
{
	pthread_t t;

	uint64_t deadline;

	put_keys(300, 1);
	pthread_create(&t, NULL, overwriter, NULL);
	deadline = in_a_minute();
	for (int round = 0; gc_wanted(deadline); round++) {
		struct seen s;

		memset(&s, 0, sizeof(s));
		cr_assert_eq(aurakv_foreach(db, NULL, 0, on_walk_check, &s), 0);
		for (int i = 0; i < 300; i++)
			cr_assert_eq(s.count[i], 1, "round %d key %d", round, i);
	}
	atomic_store(&stop_writer, true);
	pthread_join(t, NULL);
	cr_assert_geq(gc_runs(), GC_RUNS, "GC moved records meanwhile");
}

Test(kv_read, multi_get_while_writes_and_gc_move_records_gives_each_key_a_value_it_had)
{
	const void *keys[300];
	size_t klens[300], vlens[300];
	void *vals[300];
	int status[300];
	char kb[300][32];
	uint64_t deadline;
	pthread_t t;

	put_keys(300, 1);
	for (uint64_t i = 0; i < 300; i++) {
		keys[i] = kb[i];
		klens[i] = kv_key(kb[i], i);
	}
	pthread_create(&t, NULL, overwriter, NULL);
	deadline = in_a_minute();
	for (int round = 0; gc_wanted(deadline); round++) {
		cr_assert_eq(aurakv_multi_get(db, 300, keys, klens, vals, vlens, status, 8), 0);
		for (uint64_t i = 0; i < 300; i++) {
			uint64_t w = kv_value_write(vals[i], vlens[i], i);

			cr_assert_eq(status[i], 0, "round %d key %llu: %s", round,
				     (unsigned long long) i, aurakv_strerror(status[i]));
			cr_assert(kv_value_is(vals[i], vlens[i], i, w, 500));
			aurakv_free(vals[i]);
		}
	}
	atomic_store(&stop_writer, true);
	pthread_join(t, NULL);
	cr_assert_geq(gc_runs(), GC_RUNS, "GC moved records meanwhile");
	cr_assert_eq(reps.corruption, 0, "%s", reps.last);
}

struct one {
	int calls, status;
	size_t len;
	uint8_t val[600];
};

static void on_one(void *arg, int status, const void *val, size_t len)
{
	struct one *r = arg;

	r->calls++;
	r->status = status;
	r->len = len;
	if (status == 0 && len <= sizeof(r->val))
		memcpy(r->val, val, len);
}

static void unsynced_gets(bool close_first)
{
	aurakv_options_t o = kv_opts(&reps);
	static struct one r[100];
	char k[32];
	uint8_t v[600];

	cr_assert_eq(aurakv_close(db), 0);
	o.cache_size = 0;
	o.flush_delay_us = 0; /* the writes stay in the log's buffer */
	db = kv_open_ok(dir, &o);
	memset(r, 0, sizeof(r));
	for (uint64_t i = 0; i < 100; i++) {
		size_t len = kv_value_len(i, 1, 500);

		kv_value(v, len, i, 1);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(aurakv_get_async(db, k, kv_key(k, i), on_one, &r[i]), 0);
	if (close_first) {
		cr_assert_eq(aurakv_close(db), 0);
		db = NULL;
	} else {
		for (uint64_t i = 0; i < 100; i++)
			while (r[i].calls == 0)
				cr_assert_geq(aurakv_poll(db, -1), 0);
	}
	for (uint64_t i = 0; i < 100; i++) {
		cr_assert_eq(r[i].calls, 1, "get %llu", (unsigned long long) i);
		cr_assert_eq(r[i].status, 0, "get %llu: %s", (unsigned long long) i,
			     aurakv_strerror(r[i].status));
		cr_assert(kv_value_is(r[i].val, r[i].len, i, 1, 500));
	}
}

Test(kv_read, async_gets_of_unwritten_values_complete_in_poll)
{
	unsynced_gets(false);
}

Test(kv_read, close_completes_async_gets_of_unwritten_values)
{
	unsynced_gets(true);
}

Test(kv_read, multi_get_of_many_keys_at_an_unbounded_depth)
{
	enum { N = 20000 };
	static const void *keys[N];
	static size_t klens[N], vlens[N];
	static void *vals[N];
	static int status[N];
	static char kb[N][32];

	put_keys(N, 1);
	for (uint64_t i = 0; i < N; i++) {
		keys[i] = kb[i];
		klens[i] = kv_key(kb[i], i);
	}
	cr_assert_eq(aurakv_multi_get(db, N, keys, klens, vals, vlens, status, UINT32_MAX), 0);
	for (uint64_t i = 0; i < N; i++) {
		cr_assert_eq(status[i], 0, "key %llu: %s", (unsigned long long) i,
			     aurakv_strerror(status[i]));
		cr_assert(kv_value_is(vals[i], vlens[i], i, 1, 500));
		aurakv_free(vals[i]);
	}
}

static atomic_int ag_done, ag_bad;

static void on_any_write(void *arg, int status, const void *val, size_t len)
{
	uint64_t k = (uintptr_t) arg;

	if (status != 0 || !kv_value_is(val, len, k, kv_value_write(val, len, k), 500))
		atomic_fetch_add(&ag_bad, 1);
	atomic_fetch_add(&ag_done, 1);
}

Test(kv_read, async_gets_while_writes_and_gc_move_records_each_answer_a_value_it_had)
{
	pthread_t t;
	char k[32];
	int issued = 0;
	uint64_t deadline;

	put_keys(300, 1);
	pthread_create(&t, NULL, overwriter, NULL);
	deadline = in_a_minute();
	for (int round = 0; gc_wanted(deadline); round++) {
		for (uint64_t i = 0; i < 300; i++, issued++)
			cr_assert_eq(aurakv_get_async(db, k, kv_key(k, i), on_any_write,
						      (void *) (uintptr_t) i),
				     0);
		while (atomic_load(&ag_done) < issued)
			cr_assert_geq(aurakv_poll(db, 1000), 0);
	}
	atomic_store(&stop_writer, true);
	pthread_join(t, NULL);
	cr_assert_geq(gc_runs(), GC_RUNS, "GC moved records meanwhile");
	cr_assert_eq(atomic_load(&ag_bad), 0);
	cr_assert_eq(reps.corruption, 0, "%s", reps.last);
}

static atomic_int mg_cbs, mg_bad;

static void on_get_then_multi_get(void *arg, int status, const void *val, size_t len)
{
	uint64_t k = (uintptr_t) arg;
	const void *keys[4];
	size_t klens[4], vlens[4];
	void *vals[4];
	int st[4];
	char kb[4][32];

	if (status != 0 || !kv_value_is(val, len, k, 1, 500))
		atomic_fetch_add(&mg_bad, 1);
	for (int i = 0; i < 4; i++) {
		keys[i] = kb[i];
		klens[i] = kv_key(kb[i], (k + 1 + (uint64_t) i * 7) % 300);
	}
	if (aurakv_multi_get(db, 4, keys, klens, vals, vlens, st, 4))
		atomic_fetch_add(&mg_bad, 1);
	for (int i = 0; i < 4; i++) {
		if (st[i])
			atomic_fetch_add(&mg_bad, 1);
		aurakv_free(vals[i]);
	}
	atomic_fetch_add(&mg_cbs, 1);
}

static void *mg_poller(void *arg)
{
	(void) arg;
	while (!atomic_load(&stop_polling))
		aurakv_poll(db, 10);
	return NULL;
}

Test(kv_read, callbacks_that_multi_get_in_several_pollers_all_finish)
{
	pthread_t ps[3];
	char k[32];
	int issued = 0;

	put_keys(300, 1);
	for (int i = 0; i < 3; i++)
		pthread_create(&ps[i], NULL, mg_poller, NULL);
	for (int round = 0; round < 10; round++) {
		for (uint64_t i = 0; i < 300; i++, issued++)
			cr_assert_eq(aurakv_get_async(db, k, kv_key(k, i), on_get_then_multi_get,
						      (void *) (uintptr_t) i),
				     0);
		while (atomic_load(&mg_cbs) < issued)
			aurakv_poll(db, 10);
	}
	atomic_store(&stop_polling, true);
	for (int i = 0; i < 3; i++)
		pthread_join(ps[i], NULL);
	cr_assert_eq(atomic_load(&mg_bad), 0);
}

/* ---- what aurakv_poll() counts ---- */

struct nest {
	int done, inner, nested;
};

/* The first callback to run polls, nested, until the other get is delivered too. */
static void on_poll_nested(void *arg, int status, const void *val, size_t len)
{
	struct nest *n = arg;

	(void) val, (void) len;
	cr_assert_eq(status, 0);
	n->done++;
	if (n->nested++ > 0)
		return;
	while (n->done < 2) {
		int rc = aurakv_poll(db, 1000);

		cr_assert_geq(rc, 0);
		n->inner += rc;
	}
}

/* A poll nested in a callback counts the callback it runs; the outer poll, running that
 * callback's caller, counts only that one: each callback once, by the innermost poll
 * that ran it. The outer one counted both (it counted every callback that ran while it
 * did, nested ones included), so a caller counting its gets down stopped early. */
Test(kv_read, a_callback_run_by_a_nested_poll_is_counted_by_that_poll_only)
{
	struct nest n = { 0 };
	char k[2][32];
	int outer = 0;

	put_keys(2, 1);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(
		    aurakv_get_async(db, k[i], kv_key(k[i], (uint64_t) i), on_poll_nested, &n), 0);
	while (n.done < 2) {
		int rc = aurakv_poll(db, 1000);

		cr_assert_geq(rc, 0);
		outer += rc;
	}
	cr_assert_eq(n.inner, 1, "the nested poll ran the second callback");
	cr_assert_eq(outer, 1, "the outer polls ran the first callback only, counted %d", outer);
}

/* ---- the cache's memory, as the store reports it ---- */

/* cache_bytes is all the memory the cache holds (values, entries, tables, ghost) and
 * stays within cache_size; a cache_size below the cache's fixed tables is no cache. */
Test(kv_read, cache_bytes_stay_within_cache_size_and_a_tiny_cache_is_none)
{
	aurakv_stats_t st;

	aurakv_close(db);
	open_db(256u << 10);
	put_keys(3000, 1);
	for (uint64_t i = 0; i < 3000; i++) {
		char k[32];
		void *v;
		size_t len;

		cr_assert_eq(aurakv_get(db, k, kv_key(k, i), &v, &len), 0);
		aurakv_free(v);
		if (i % 100 == 0) {
			cr_assert_eq(aurakv_get_stats(db, &st), 0);
			cr_assert_leq(st.cache_bytes, 256u << 10);
		}
	}
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_gt(st.cache_bytes, 128u << 10, "the cache is used, not just bounded");
	aurakv_close(db);
	open_db(1000);
	put_keys(10, 2);
	kv_check_keys(db, 10, 1, 2, 500);
	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.cache_bytes, 0);
	cr_assert_eq(st.cache_hits, 0);
}
