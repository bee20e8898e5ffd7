/* SPDX-License-Identifier: MIT */
/*
 * Chains of asynchronous gets answered at once (a missing key, a cached value): each
 * callback starts the next get. The callbacks of a long chain used to nest, one set of
 * stack frames per link, until the stack overflowed; now the stack is bounded whatever
 * the chain's length, every callback still runs exactly once, in order, before the
 * outermost aurakv_get_async() returns, and a shallow nested get still runs its
 * callback before its own call returns.
 *
 * KV_CHAIN_GETS: the length of the long chains (default 1000000; 200000 under TSan).
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "kv_test.h"

#define CHAIN_STACK (256u << 10) /* the thread the chains run in: a small stack */

static char *dir;
static aurakv_t *db, *db2;
static char *dir2;

static void setup(void)
{
	aurakv_options_t o = kv_opts(NULL);

	o.background_gc = false;
	dir = kv_temp_dir();
	dir2 = kv_temp_dir();
	db = kv_open_ok(dir, &o);
	db2 = kv_open_ok(dir2, &o);
}

static void teardown(void)
{
	aurakv_close(db);
	aurakv_close(db2);
	kv_rm_tree(dir);
	kv_rm_tree(dir2);
	free(dir);
	free(dir2);
}

TestSuite(kv_get_chain, .init = setup, .fini = teardown, .timeout = 120);

static unsigned long chain_length(void)
{
	const char *env = getenv("KV_CHAIN_GETS");
#if defined(__SANITIZE_THREAD__)
	unsigned long n = 200000;
#else
	unsigned long n = 1000000;
#endif

	if (env && *env)
		n = strtoul(env, NULL, 10);
	return n;
}

/* A chain: get i's callback checks it is the i-th to run and starts get i + 1. The arg
 * of get i is ids + i, so a callback knows which get it answers without memory per get. */
struct chain {
	aurakv_t *dbs[2];
	const char *key;
	size_t klen;
	int want; /* the status every get must answer */
	size_t want_len;
	unsigned long n, ran, bad;
	char *ids;
	bool alternate; /* get i goes to dbs[i % 2] */
};

static struct chain ch;

static void on_link(void *arg, int status, const void *val, size_t len)
{
	unsigned long i = (unsigned long) ((char *) arg - ch.ids);

	(void) val;
	if (i != ch.ran || status != ch.want || (status == 0 && len != ch.want_len))
		ch.bad++;
	ch.ran++;
	if (i + 1 < ch.n) {
		aurakv_t *to = ch.dbs[ch.alternate ? (i + 1) % 2 : 0];

		if (aurakv_get_async(to, ch.key, ch.klen, on_link, ch.ids + i + 1) != 0)
			ch.bad++;
	}
}

static void *run_chain(void *arg)
{
	(void) arg;
	if (aurakv_get_async(ch.dbs[0], ch.key, ch.klen, on_link, ch.ids) != 0)
		ch.bad++;
	return NULL;
}

/* Run the chain in a thread with a CHAIN_STACK stack; every callback has run when the
 * first call returns (no poll). */
static void chain_in_small_stack(void)
{
	pthread_attr_t attr;
	pthread_t t;

	ch.n = chain_length();
	ch.ran = ch.bad = 0;
	ch.ids = malloc(ch.n);
	cr_assert_not_null(ch.ids);
	cr_assert_eq(pthread_attr_init(&attr), 0);
	cr_assert_eq(pthread_attr_setstacksize(&attr, CHAIN_STACK), 0);
	cr_assert_eq(pthread_create(&t, &attr, run_chain, NULL), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	pthread_attr_destroy(&attr);
	cr_log_info("a chain of %lu gets", ch.n);
	cr_assert_eq(ch.ran, ch.n, "%lu of %lu callbacks ran before the first call returned",
		     ch.ran, ch.n);
	cr_assert_eq(ch.bad, 0, "%lu callbacks out of order or with a wrong answer", ch.bad);
	free(ch.ids);
}

Test(kv_get_chain, a_long_chain_of_gets_of_a_missing_key_runs_in_a_small_stack)
{
	ch = (struct chain){ .dbs = { db, db }, .key = "missing", .klen = 7 };
	ch.want = AURAKV_ENOTFOUND;
	chain_in_small_stack();
}

Test(kv_get_chain, a_long_chain_of_gets_of_a_cached_value_runs_in_a_small_stack)
{
	uint8_t v[100];
	void *got;
	size_t len;

	kv_value(v, sizeof(v), 1, 1);
	cr_assert_eq(aurakv_put(db, "cached", 6, v, sizeof(v), 0), 0);
	cr_assert_eq(aurakv_get(db, "cached", 6, &got, &len), 0); /* now in the cache */
	aurakv_free(got);
	ch = (struct chain){ .dbs = { db, db }, .key = "cached", .klen = 6 };
	ch.want_len = sizeof(v);
	chain_in_small_stack();
}

/* Queued answers carry their store: a chain alternating two stores. */
Test(kv_get_chain, a_long_chain_alternating_two_stores_runs_in_a_small_stack)
{
	ch = (struct chain){ .dbs = { db, db2 }, .key = "missing", .klen = 7, .alternate = true };
	ch.want = AURAKV_ENOTFOUND;
	chain_in_small_stack();
}

/* ---- shallow nesting keeps the documented order ---- */

struct shallow {
	int depth, max, ran_inside, ran;
};

static void on_shallow(void *arg, int status, const void *val, size_t len)
{
	struct shallow *s = arg;
	int ran_before = s->ran;

	(void) val, (void) len;
	cr_assert_eq(status, AURAKV_ENOTFOUND);
	s->ran++;
	if (++s->depth >= s->max)
		return;
	cr_assert_eq(aurakv_get_async(db, "missing", 7, on_shallow, s), 0);
	/* the nested get's callback (and the rest of the chain) ran inside that call */
	if (s->ran == s->max)
		s->ran_inside++;
	cr_assert_gt(s->ran, ran_before + 1);
}

Test(kv_get_chain, a_shallow_nested_get_runs_its_callback_before_its_call_returns)
{
	struct shallow s = { .max = 8 };

	cr_assert_eq(aurakv_get_async(db, "missing", 7, on_shallow, &s), 0);
	cr_assert_eq(s.ran, 8, "every callback ran before the first call returned");
	cr_assert_eq(s.ran_inside, 7, "each nested call returned after its callbacks ran");
}

/* ---- a deep callback may wait for its own get, or close another store ---- */

struct waiter {
	int depth, max, queued;
	bool inner_done, closed;
};

static void on_inner(void *arg, int status, const void *val, size_t len)
{
	struct waiter *w = arg;

	(void) val, (void) len;
	cr_assert_eq(status, AURAKV_ENOTFOUND);
	w->inner_done = true;
}

/* Each link of a chain starts a get of its own and polls until its callback ran. Some
 * links are nested deep enough for that answer to be queued: a poll must deliver it (a
 * poll that returned 0 at once with it queued would loop here forever). */
static void on_deep(void *arg, int status, const void *val, size_t len)
{
	struct waiter *w = arg;
	int polls = 0;

	(void) val, (void) len;
	cr_assert_eq(status, AURAKV_ENOTFOUND);
	w->inner_done = false;
	cr_assert_eq(aurakv_get_async(db, "missing", 7, on_inner, w), 0);
	w->queued += !w->inner_done;
	while (!w->inner_done && polls++ < 100)
		cr_assert_geq(aurakv_poll(db, 1000), 0);
	cr_assert(w->inner_done, "the poll delivered the get (%d polls)", polls);
	cr_assert_leq(polls, 1, "one poll ran it, without waiting");
	if (++w->depth < w->max)
		cr_assert_eq(aurakv_get_async(db, "missing", 7, on_deep, w), 0);
}

Test(kv_get_chain, a_deeply_nested_callback_can_poll_for_its_own_get)
{
	struct waiter w = { .max = 200 };

	cr_assert_eq(aurakv_get_async(db, "missing", 7, on_deep, &w), 0);
	cr_assert_eq(w.depth, w.max, "the chain ended before the first call returned");
	cr_log_info("%d of %d answers were queued", w.queued, w.max);
	cr_assert_gt(w.queued, 0, "some links are nested deep enough for a queued answer");
}

/* Each link of a chain starts a get of another store; the first one whose answer is
 * queued closes that store: the close runs the callback before it returns, as it runs
 * those of reads in flight. */
static void on_deep_close(void *arg, int status, const void *val, size_t len)
{
	struct waiter *w = arg;

	(void) val, (void) len;
	cr_assert_eq(status, AURAKV_ENOTFOUND);
	w->inner_done = false;
	cr_assert_eq(aurakv_get_async(db2, "missing", 7, on_inner, w), 0);
	if (!w->inner_done) {
		cr_assert_eq(aurakv_close(db2), 0);
		db2 = NULL;
		cr_assert(w->inner_done, "the close ran the queued answer");
		w->closed = true;
		return;
	}
	if (++w->depth < w->max)
		cr_assert_eq(aurakv_get_async(db, "missing", 7, on_deep_close, w), 0);
}

Test(kv_get_chain, closing_a_store_in_a_deep_callback_runs_its_queued_answers_first)
{
	struct waiter w = { .max = 200 };

	cr_assert_eq(aurakv_get_async(db, "missing", 7, on_deep_close, &w), 0);
	cr_assert(w.closed, "some link is nested deep enough for a queued answer");
}
