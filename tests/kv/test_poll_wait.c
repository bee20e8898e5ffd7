/* SPDX-License-Identifier: MIT */
/*
 * What aurakv_poll(-1) waits for when another thread runs the caller's get callback: it
 * sleeps until that callback returns, then returns 0 - it does not spin (nothing is in
 * flight meanwhile, and a poll that took that as "nothing to wait for" returned at once,
 * round and round). A get a callback of the caller's starts, in whichever thread, is the
 * caller's too. Another thread's callback, however long, never holds up a poll with no
 * work of its own. A held callback is held by a gate the test opens; a spin is shown by
 * a count of polls, a sleep by the thread's state in /proc.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "callback_gate.h"
#include "kv_test.h"

KV_DIR_SUITE(kv_poll_wait, 30);

#define SPIN_LIMIT 1000 /* polls a spinning loop reaches at once; a sleeper makes one */

static aurakv_t *db;
static atomic_int done; /* set by the caller's last callback, just before it returns */

/* A store without a value cache whose values stay in the log's memory (a 10 s flush
 * delay, no sync): an async get is a log read answered at once, ready for any poller. */
static void open_memory_store(void)
{
	aurakv_options_t o = kv_opts(NULL);

	o.cache_size = 0;
	o.flush_delay_us = 10000000;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "a", 1, "aaa", 3, 0), 0);
	cr_assert_eq(aurakv_put(db, "b", 1, "bbbb", 4, 0), 0);
}

/* The callback of get `arg` ("a" or "b"): checks its value, holds, says done. */
static void held_cb(void *arg, int status, const void *val, size_t vlen)
{
	const char *key = arg;
	size_t want = key[0] == 'a' ? 3 : 4;

	cr_assert_eq(status, 0, "%s", aurakv_strerror(status));
	cr_assert(vlen == want && memcmp(val, key[0] == 'a' ? "aaa" : "bbbb", want) == 0);
	gate_hold();
	atomic_store(&done, 1);
}

/* The first link of a chain: starts the get of "b" (answered by a log read) and returns. */
static void chain_cb(void *arg, int status, const void *val, size_t vlen)
{
	(void) arg;
	(void) val;
	(void) vlen;
	cr_assert_eq(status, 0, "%s", aurakv_strerror(status));
	cr_assert_eq(aurakv_get_async(db, "b", 1, held_cb, "b"), 0);
}

/* The caller: starts its get, waits until another thread holds its callback, then polls
 * with no limit until its work is done. */
struct caller {
	aurakv_get_cb first_cb;
	pid_t tid;
	atomic_int started;
	atomic_int looping;
	atomic_int polls;
	int max_rc;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;

	c->tid = (pid_t) syscall(SYS_gettid);
	cr_assert_eq(aurakv_get_async(db, "a", 1, c->first_cb, "a"), 0);
	atomic_store(&c->started, 1);
	gate_wait_entered(1);
	atomic_store(&c->looping, 1);
	while (!atomic_load(&done) && atomic_load(&c->polls) < SPIN_LIMIT) {
		int rc = aurakv_poll(db, -1);

		cr_assert_geq(rc, 0, "%s", aurakv_strerror(rc));
		if (rc > c->max_rc)
			c->max_rc = rc;
		atomic_fetch_add(&c->polls, 1);
	}
	gate_wait_open(); /* stay alive: the test may still read our state */
	return NULL;
}

static void *poll_once(void *arg)
{
	(void) arg;
	cr_assert_eq(aurakv_poll(db, 0), 1);
	return NULL;
}

/* Two polls of 0: the first link (which starts the second) and the second, held. A poll
 * runs only what is ready when it starts, so each runs one; the first counts its one
 * callback, the second too. */
static void *poll_twice(void *arg)
{
	(void) arg;
	cr_assert_eq(aurakv_poll(db, 0), 1);
	cr_assert_eq(aurakv_poll(db, 0), 1);
	return NULL;
}

static void caller_sleeps_while_held(aurakv_get_cb first_cb, void *(*runner)(void *) )
{
	struct caller c = { .first_cb = first_cb };
	pthread_t ct, rt;
	int polls;

	cr_assert_eq(pthread_create(&ct, NULL, caller_main, &c), 0);
	while (!atomic_load(&c.started))
		sched_yield();
	cr_assert_eq(pthread_create(&rt, NULL, runner, NULL), 0);
	gate_wait_entered(1);
	while (atomic_load(&c.polls) < SPIN_LIMIT &&
	       !(atomic_load(&c.looping) && thread_sleeping(c.tid)))
		sched_yield();
	polls = atomic_load(&c.polls);
	gate_release();
	pthread_join(rt, NULL);
	pthread_join(ct, NULL);
	cr_assert_lt(polls, SPIN_LIMIT,
		     "aurakv_poll(-1) spun: %d polls while the callback was held", polls);
	cr_assert_eq(atomic_load(&done), 1);
	cr_assert_leq(atomic_load(&c.polls), 2, "%d polls: it did not sleep",
		      atomic_load(&c.polls));
	cr_assert_eq(c.max_rc, 0, "the caller's poll ran a callback: its own ran elsewhere");
}

Test(kv_poll_wait, poll_sleeps_while_another_thread_runs_its_get_callback)
{
	open_memory_store();
	caller_sleeps_while_held(held_cb, poll_once);
	cr_assert_eq(aurakv_close(db), 0);
}

Test(kv_poll_wait, a_get_its_callback_starts_elsewhere_is_still_the_callers_work)
{
	open_memory_store();
	caller_sleeps_while_held(chain_cb, poll_twice);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Starts a get of its own and runs its callback, which is held. */
static void *other_getter(void *arg)
{
	(void) arg;
	cr_assert_eq(aurakv_get_async(db, "a", 1, held_cb, "a"), 0);
	cr_assert_eq(aurakv_poll(db, -1), 1);
	return NULL;
}

/* A poll with nothing of its own in flight returns at once, though another thread's
 * callback runs (it may wait for this thread: here, it does). */
Test(kv_poll_wait, a_poll_does_not_wait_for_another_threads_callback)
{
	pthread_t t;

	open_memory_store();
	cr_assert_eq(pthread_create(&t, NULL, other_getter, NULL), 0);
	gate_wait_entered(1);
	cr_assert_eq(aurakv_poll(db, -1), 0);
	cr_assert_eq(aurakv_poll(db, 5), 0);
	gate_release();
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&done), 1);
	cr_assert_eq(aurakv_close(db), 0);
}

static atomic_int refused_cb_calls;

static void never_cb(void *arg, int status, const void *val, size_t vlen)
{
	(void) arg;
	(void) status;
	(void) val;
	(void) vlen;
	atomic_fetch_add(&refused_cb_calls, 1);
}

/* Every error aurakv.h lists for get_async, poll and multi_get, and no callback for a
 * refused get; a closed handle answers AURAKV_ECLOSED to each. */
Test(kv_poll_wait, async_calls_refuse_bad_arguments_and_a_closed_store_running_no_callback)
{
	static char big[AURAKV_MAX_KEY + 1];
	const void *keys[1] = { "a" };
	size_t klens[1] = { 1 }, vlens[1];
	void *vals[1];
	int status[1];

	open_memory_store();
	cr_assert_eq(aurakv_get_async(NULL, "a", 1, never_cb, NULL), -EINVAL);
	cr_assert_eq(aurakv_get_async(db, NULL, 1, never_cb, NULL), -EINVAL);
	cr_assert_eq(aurakv_get_async(db, "a", 1, NULL, NULL), -EINVAL);
	cr_assert_eq(aurakv_get_async(db, "a", 0, never_cb, NULL), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_get_async(db, big, sizeof(big), never_cb, NULL), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_poll(NULL, -1), -EINVAL);
	cr_assert_eq(aurakv_poll(db, -1), 0, "nothing in flight");
	cr_assert_eq(aurakv_poll(db, -7), 0, "any negative timeout is no limit");
	cr_assert_eq(aurakv_multi_get(NULL, 1, keys, klens, vals, vlens, status, 0), -EINVAL);
	cr_assert_eq(aurakv_multi_get(db, 1, NULL, klens, vals, vlens, status, 0), -EINVAL);
	cr_assert_eq(atomic_load(&refused_cb_calls), 0);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_get_async(db, "a", 1, never_cb, NULL), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_poll(db, -1), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_poll(db, 0), AURAKV_ECLOSED);
	cr_assert_eq(aurakv_multi_get(db, 1, keys, klens, vals, vlens, status, 0), AURAKV_ECLOSED);
	cr_assert_eq(atomic_load(&refused_cb_calls), 0);
}
