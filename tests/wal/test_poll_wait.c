/* SPDX-License-Identifier: MIT */
/*
 * What a plain aurawal_poll(-1) waits for when another thread runs the caller's
 * callback: it sleeps until that callback returns, then returns - it does not spin
 * (nothing is in flight meanwhile, and a poll that took that as "nothing to wait for"
 * returned 0 at once, round and round). It waits for nothing it did not start: another
 * thread's callback, however long, never holds up a poll with no work of its own.
 * A held callback is held by a gate the test opens; a spin is shown by a count of polls,
 * a sleep by the thread's state in /proc.
 */
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "callback_gate.h"
#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_poll_wait);

#define SPIN_LIMIT 1000 /* polls a spinning loop reaches at once; a sleeper makes one */
#define RLEN	   100

/* What the threads say about themselves. */
static atomic_int done;	      /* set by the caller's last callback, just before it returns */
static atomic_int other_done; /* set by a callback that is not the caller's */

/* A log whose appends stay in memory (no durable append, a 10 s flush delay): reads of
 * them are answered at once, their completions ready before anyone polls. */
static aurawal_t *memory_log(aurawal_loc_t *locs, int n)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;

	o.flush_delay_us = 10000000;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < n; i++)
		append_i(log, (uint64_t) i, RLEN, 0, &locs[i]);
	return log;
}

static uint8_t bufs[4][RLEN];

static void held_read_cb(void *arg, int status, size_t len, uint64_t seq)
{
	(void) arg;
	(void) seq;
	cr_assert_eq(status, 0, "%s", aurawal_strerror(status));
	cr_assert_eq(len, RLEN);
	gate_hold();
	atomic_store(&done, 1);
}

static void held_append_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) arg;
	(void) loc;
	(void) seq;
	cr_assert_eq(status, 0, "%s", aurawal_strerror(status));
	gate_hold();
	atomic_store(&done, 1);
}

static aurawal_loc_t chain_loc;

/* The first link of a chain: starts the read whose (held) callback ends it. */
static void chain_read_cb(void *arg, int status, size_t len, uint64_t seq)
{
	(void) len;
	(void) seq;
	cr_assert_eq(status, 0, "%s", aurawal_strerror(status));
	cr_assert_eq(aurawal_read_async(arg, chain_loc, bufs[1], RLEN, held_read_cb, NULL), 0);
}

static void other_append_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) arg;
	(void) loc;
	(void) seq;
	cr_assert_eq(status, 0, "%s", aurawal_strerror(status));
	atomic_store(&other_done, 1);
}

/* The caller: starts its work (start), waits until another thread holds its callback,
 * then polls with no limit until its work is done. */
struct caller {
	aurawal_t *log;
	void (*start)(struct caller *c);
	pid_t tid;
	atomic_int started; /* its work is started */
	atomic_int looping; /* it is in its poll loop */
	atomic_int polls;   /* polls that returned */
	int last_rc;	    /* what the last one returned */
	int max_rc;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;

	c->tid = (pid_t) syscall(SYS_gettid);
	c->start(c);
	atomic_store(&c->started, 1);
	gate_wait_entered(1);
	atomic_store(&c->looping, 1);
	while (!atomic_load(&done) && atomic_load(&c->polls) < SPIN_LIMIT) {
		c->last_rc = aurawal_poll(c->log, -1);
		cr_assert_geq(c->last_rc, 0);
		if (c->last_rc > c->max_rc)
			c->max_rc = c->last_rc;
		atomic_fetch_add(&c->polls, 1);
	}
	gate_wait_open(); /* stay alive: the test may still read our state */
	return NULL;
}

static void *poll_once(void *arg)
{
	cr_assert_eq(aurawal_poll(arg, 0), 1);
	return NULL;
}

static void *sync_once(void *arg)
{
	cr_assert_eq(aurawal_sync(arg), 0);
	return NULL;
}

/*
 * Run a caller whose held callback `runner` runs in another thread (a poll or a sync
 * there, started once the caller's work is ready). The caller must be seen asleep, not
 * spinning, while the callback is held, and its loop must end once it returns.
 */
static void caller_sleeps_while_held(struct caller *c, void *(*runner)(void *) )
{
	pthread_t ct, rt;
	int polls;

	cr_assert_eq(pthread_create(&ct, NULL, caller_main, c), 0);
	while (!atomic_load(&c->started))
		sched_yield();
	cr_assert_eq(pthread_create(&rt, NULL, runner, c->log), 0);
	gate_wait_entered(1);
	while (atomic_load(&c->polls) < SPIN_LIMIT &&
	       !(atomic_load(&c->looping) && thread_sleeping(c->tid)))
		sched_yield();
	polls = atomic_load(&c->polls);
	gate_release();
	pthread_join(rt, NULL);
	pthread_join(ct, NULL);
	cr_assert_lt(polls, SPIN_LIMIT, "poll(-1) spun: %d polls while the callback was held",
		     polls);
	cr_assert_eq(atomic_load(&done), 1);
	cr_assert_leq(atomic_load(&c->polls), 2, "%d polls: it did not sleep",
		      atomic_load(&c->polls));
	cr_assert_eq(c->max_rc, 0, "its poll ran a callback not its own (its own ran elsewhere)");
}

static aurawal_loc_t read_loc;

static void start_read(struct caller *c)
{
	cr_assert_eq(aurawal_read_async(c->log, read_loc, bufs[0], RLEN, held_read_cb, NULL), 0);
}

Test(wal_poll_wait, poll_sleeps_while_another_thread_runs_its_read_callback, .timeout = 30)
{
	struct caller c = { 0 };

	c.log = memory_log(&read_loc, 1);
	c.start = start_read;
	caller_sleeps_while_held(&c, poll_once);
	cr_assert(payload_check(bufs[0], RLEN, 0));
	cr_assert_eq(aurawal_close(c.log), 0);
}

static void start_append(struct caller *c)
{
	uint8_t p[RLEN];
	struct iovec iov = { p, sizeof(p) };

	payload_fill(p, sizeof(p), 7);
	cr_assert_eq(aurawal_append_async(c->log, &iov, 1, 0, held_append_cb, NULL), 0);
}

/* An append's callback runs in another thread's sync. */
Test(wal_poll_wait, poll_sleeps_while_a_sync_in_another_thread_runs_its_append_callback,
     .timeout = 30)
{
	struct caller c = { 0 };

	c.log = memory_log(&read_loc, 0);
	c.start = start_append;
	caller_sleeps_while_held(&c, sync_once);
	cr_assert_eq(aurawal_close(c.log), 0);
}

static void start_chain(struct caller *c)
{
	/* The chain's first callback runs in another thread, and the read it starts there
	 * is the caller's work too. */
	cr_assert_eq(aurawal_read_async(c->log, read_loc, bufs[0], RLEN, chain_read_cb, c->log), 0);
}

/* A poll of 0 runs only what is ready when it starts: one link each. */
static void *run_chain(void *arg)
{
	cr_assert_eq(aurawal_poll(arg, 0), 1); /* the first link: starts the second */
	cr_assert_eq(aurawal_poll(arg, 0), 1); /* the second: held */
	return NULL;
}

/* A read started by a callback of the caller's (in another thread) is the caller's: a
 * poll waits for its callback as for the first. */
Test(wal_poll_wait, a_read_started_by_its_callback_elsewhere_is_still_the_callers_work,
     .timeout = 30)
{
	aurawal_loc_t locs[2];
	struct caller c = { 0 };

	c.log = memory_log(locs, 2);
	read_loc = locs[0];
	chain_loc = locs[1];
	c.start = start_chain;
	caller_sleeps_while_held(&c, run_chain);
	cr_assert(payload_check(bufs[1], RLEN, 1));
	cr_assert_eq(aurawal_close(c.log), 0);
}

/* ---- what a poll does not wait for ---- */

struct other {
	aurawal_t *log;
	aurawal_loc_t loc;
};

/* Starts a read of its own and runs its callback, which is held. */
static void *other_reader(void *arg)
{
	struct other *o = arg;

	cr_assert_eq(aurawal_read_async(o->log, o->loc, bufs[2], RLEN, held_read_cb, NULL), 0);
	cr_assert_eq(aurawal_poll(o->log, -1), 1);
	return NULL;
}

/* A poll with nothing of its own in flight returns at once, though another thread's
 * callback runs (it may wait for this thread: here, it does). */
Test(wal_poll_wait, a_poll_does_not_wait_for_another_threads_callback, .timeout = 30)
{
	struct other o;
	pthread_t t;

	o.log = memory_log(&o.loc, 1);
	cr_assert_eq(pthread_create(&t, NULL, other_reader, &o), 0);
	gate_wait_entered(1);
	cr_assert_eq(aurawal_poll(o.log, -1), 0);
	cr_assert_eq(aurawal_poll(o.log, 5), 0);
	cr_assert_eq(aurawal_poll_until(o.log, 0, NULL, NULL), -EINVAL);
	gate_release();
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&done), 1);
	cr_assert_eq(aurawal_close(o.log), 0);
}

static void *append_other(void *arg)
{
	uint8_t p[RLEN];
	struct iovec iov = { p, sizeof(p) };

	payload_fill(p, sizeof(p), 9);
	cr_assert_eq(aurawal_append_async(arg, &iov, 1, 0, other_append_cb, NULL), 0);
	return NULL;
}

/*
 * The caller's callback runs in another thread while another thread's append waits in
 * the log's buffer (written within the 10 s flush delay). The caller's poll returns once
 * its callback has returned: its work is delivered, and it does not wait on for the
 * unrelated append (whose callback it would run, returning 1).
 */
Test(wal_poll_wait, poll_returns_when_its_callback_returns_though_other_work_is_in_flight,
     .timeout = 30)
{
	struct caller c = { 0 };
	pthread_t t;

	c.log = memory_log(&read_loc, 1);
	c.start = start_read;
	cr_assert_eq(pthread_create(&t, NULL, append_other, c.log), 0);
	pthread_join(t, NULL);
	caller_sleeps_while_held(&c, poll_once);
	cr_assert_eq(atomic_load(&other_done), 0, "the caller waited for another's append");
	cr_assert_eq(aurawal_close(c.log), 0);
	cr_assert_eq(atomic_load(&other_done), 1);
}

/* ---- appends that only a poller's request writes ---- */

static atomic_int appended; /* set by the late append's callback */

static void late_append_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) arg;
	(void) loc;
	(void) seq;
	cr_assert_eq(status, 0, "%s", aurawal_strerror(status));
	atomic_store(&appended, 1);
}

/*
 * With flush_delay_us 0 a non-durable append is written only when asked (a sync, a
 * flush, a durable append, or a poll that waits for it). A poll_until already asleep
 * when the append comes must still have it written: it waits for exactly that append's
 * callback. Before, it had asked once, before it slept, and slept on for good.
 */
Test(wal_poll_wait, a_poll_until_asleep_has_an_append_made_meanwhile_written, .timeout = 30)
{
	aurawal_options_t o = wal_opts(NULL);
	uint8_t p[RLEN];
	struct iovec iov = { p, sizeof(p) };
	aurawal_t *log;
	struct wal_flag_poll fp;
	pthread_t t;

	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	fp = (struct wal_flag_poll){ log, &appended };
	cr_assert_eq(pthread_create(&t, NULL, wal_poll_until_flag, &fp), 0);
	wal_until_waiter_asleep(log);
	payload_fill(p, sizeof(p), 3);
	cr_assert_eq(aurawal_append_async(log, &iov, 1, 0, late_append_cb, NULL), 0);
	pthread_join(t, NULL); /* hung here */
	cr_assert_eq(atomic_load(&appended), 1);
	cr_assert_eq(aurawal_close(log), 0);
}
