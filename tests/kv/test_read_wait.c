/* SPDX-License-Identifier: MIT */
/*
 * How the asynchronous read path waits when other threads deliver its completions: a
 * multi-get whose reads another thread's poll is delivering sleeps until they are done -
 * it does not spin, polling a log that has nothing left for it - and a long callback in
 * one poller holds up no other thread's completions.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "kv_db.h"
#include "kv_test.h"
#include "wal_internal.h"

KV_DIR_SUITE(kv_read_wait, 30);

#define SPIN_LIMIT 50 /* multi-get waits a spinning loop reaches at once; a sleeper never */

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int issued;	/* the multi-get's reads are issued (its first wait) */
	int in_cb;	/* the other poller is inside the long callback */
	int mget_done;	/* the multi-get returned */
	int waits;	/* times the multi-get was about to wait */
	int ucb_status; /* the long callback's get status */
	int ucb_calls;
};

static struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0 };
static aurakv_t *db;

static void gate_set(int *field)
{
	pthread_mutex_lock(&g.mu);
	*field = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void gate_wait(const int *field)
{
	pthread_mutex_lock(&g.mu);
	while (!*field)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
}

/* The multi-get is about to wait: the first time, hold it until the other poller is
 * inside the long callback (its completion is ready by then); count every time. */
static void on_mget_wait(struct kv_db *d)
{
	(void) d;
	pthread_mutex_lock(&g.mu);
	g.waits++;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	gate_set(&g.issued);
	gate_wait(&g.in_cb);
}

/* The long callback: it runs until the multi-get is over - or until the multi-get has
 * gone round its loop SPIN_LIMIT times without sleeping (then the test fails). */
static void long_cb(void *arg, int status, const void *val, size_t vlen)
{
	(void) arg;
	(void) val;
	(void) vlen;
	g.ucb_status = status;
	g.ucb_calls++;
	gate_set(&g.in_cb);
	pthread_mutex_lock(&g.mu);
	while (!g.mget_done && g.waits < SPIN_LIMIT)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
}

static void *poller(void *arg)
{
	(void) arg;
	cr_assert_geq(aurakv_poll(db, -1), 0);
	return NULL;
}

struct mget_args {
	void *val;
	size_t vlen;
	int status;
	int rc;
};

static void *multi_getter(void *arg)
{
	struct mget_args *a = arg;
	const void *keys[1] = { "m" };
	size_t klens[1] = { 1 };

	a->rc = aurakv_multi_get(db, 1, keys, klens, &a->val, &a->vlen, &a->status, 0);
	gate_set(&g.mget_done);
	return NULL;
}

/*
 * Both gets are answered from memory (their records are not written yet), so both
 * completions are ready before anyone polls: "u" (the long callback's) first, then the
 * multi-get's "m". Another thread's poll takes "u" and runs its callback, which waits.
 * The multi-get must not spin meanwhile: before, that poll took both completions, and
 * the multi-get's own polls found nothing to wait for and returned at once, round and
 * round, until the long callback returned.
 */
Test(kv_read_wait, a_multi_get_sleeps_while_another_poller_runs_a_long_callback)
{
	aurakv_options_t o = kv_opts(NULL);
	struct kv_db *d;
	struct mget_args a = { 0 };
	pthread_t mt, pt;

	o.cache_size = 0;
	o.flush_delay_us = 10000000; /* the records stay in memory */
	db = kv_open_ok(dir, &o);
	d = db->db;
	cr_assert_eq(aurakv_put(db, "u", 1, "uu", 2, 0), 0);
	cr_assert_eq(aurakv_put(db, "m", 1, "mmm", 3, 0), 0);
	cr_assert_eq(aurakv_get_async(db, "u", 1, long_cb, NULL), 0);
	pthread_mutex_lock(&d->wal->mu);
	cr_assert_not_null(d->wal->ready_reads, "answered from memory: ready at once");
	pthread_mutex_unlock(&d->wal->mu);
	d->test_mget_wait = on_mget_wait;
	cr_assert_eq(pthread_create(&mt, NULL, multi_getter, &a), 0);
	gate_wait(&g.issued);
	cr_assert_eq(pthread_create(&pt, NULL, poller, NULL), 0);
	pthread_join(mt, NULL);
	pthread_join(pt, NULL);
	cr_assert_eq(a.rc, 0);
	cr_assert_eq(a.status, 0, "%s", aurakv_strerror(a.status));
	cr_assert(a.vlen == 3 && memcmp(a.val, "mmm", 3) == 0);
	aurakv_free(a.val);
	cr_assert_eq(g.ucb_calls, 1);
	cr_assert_eq(g.ucb_status, 0, "%s", aurakv_strerror(g.ucb_status));
	cr_assert_lt(g.waits, 4, "the multi-get went round %d times instead of sleeping", g.waits);
	d->test_mget_wait = NULL;
	cr_assert_eq(aurakv_close(db), 0);
}

/*
 * A multi-get of depth 1 whose completions other threads' polls deliver: between its
 * check "one get is in flight, wait" and its reading of the done count, another thread
 * could complete that get - it then waited for a count that nothing would move again,
 * with no get in flight (seen in kv_fault_mt_fuzz under ASan). The records stay in
 * memory, so each get's completion is ready at once for the pollers to take.
 */
struct race {
	_Atomic bool stop;
	int rounds;
};

static void *busy_poller(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop))
		cr_assert_geq(aurakv_poll(db, 0), 0);
	return NULL;
}

Test(kv_read_wait, a_multi_get_whose_reads_other_threads_deliver_never_waits_for_nothing)
{
	enum { KEYS = 8, POLLERS = 2 };
	aurakv_options_t o = kv_opts(NULL);
	const void *keys[KEYS];
	size_t klens[KEYS];
	char names[KEYS][4];
	struct race r = { .rounds = (int) test_env_u64("KV_MGET_RACE_ROUNDS", 40000) };
	pthread_t pt[POLLERS];

	o.cache_size = 0;
	o.flush_delay_us = 10000000; /* the records stay in memory */
	db = kv_open_ok(dir, &o);
	for (int i = 0; i < KEYS; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		keys[i] = names[i];
		klens[i] = strlen(names[i]);
		cr_assert_eq(aurakv_put(db, names[i], klens[i], names[i], klens[i], 0), 0);
	}
	for (int i = 0; i < POLLERS; i++)
		cr_assert_eq(pthread_create(&pt[i], NULL, busy_poller, &r), 0);
	for (int round = 0; round < r.rounds; round++) {
		void *vals[KEYS];
		size_t vlens[KEYS];
		int status[KEYS];

		cr_assert_eq(aurakv_multi_get(db, KEYS, keys, klens, vals, vlens, status, 1), 0);
		for (int i = 0; i < KEYS; i++) {
			cr_assert_eq(status[i], 0, "round %d key %d: %s", round, i,
				     aurakv_strerror(status[i]));
			cr_assert(vlens[i] == klens[i] && memcmp(vals[i], names[i], klens[i]) == 0);
			aurakv_free(vals[i]);
		}
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < POLLERS; i++)
		pthread_join(pt[i], NULL);
	cr_assert_eq(aurakv_close(db), 0);
}
