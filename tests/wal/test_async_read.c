/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous reads and aurawal_poll under pressure: the rest of a short read that the
 * ring has no room for is never waited for inside the auraio callback that found it
 * short (a wait there returns at once: it would spin, and hold up the thread reaping),
 * but parked and read by the next poll or by close - exactly once, counters right.
 */
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <unistd.h>

#include "fault_engine.h"
#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_async_read);

#define QD	4	   /* the engine's queue depth: 2 * QD requests in all */
#define RLEN	5000	   /* a record over two blocks: a short read of 4096 leaves a rest */
#define PENDING 0x7fffffff /* a status no callback gives */

/* One ring of QD, at a fixed limit: its 2 * QD requests are few enough to take them all.
 * Skips the test if fault injection is not compiled in. */
static auraio_engine_t *small_engine(void)
{
	auraio_fault_t probe = { .fd = -1, .count = 1, .skip = UINT64_MAX };
	auraio_options_t eo;
	auraio_engine_t *e;

	auraio_options_init(&eo);
	eo.ring_count = 1;
	eo.queue_depth = QD;
	eo.disable_adaptive = true;
	e = auraio_create_with_options(&eo);
	cr_assert_not_null(e);
	if (auraio_fault_set(e, &probe) == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	auraio_fault_clear(e);
	return e;
}

struct rd {
	int calls;
	int status;
	size_t len;
	uint64_t seq;
};

static void rd_cb(void *arg, int status, size_t len, uint64_t seq)
{
	struct rd *r = arg;

	r->calls++;
	r->status = status;
	r->len = len;
	r->seq = seq;
}

/* Requests the test holds: waitable reads of a small file, completed but not collected,
 * so that each keeps one of the ring's requests (auraio.h, EAGAIN). */
struct hold {
	int fd;
	char buf[512];
	auraio_request_t *reqs[2 * QD];
	int n;
};

static void hold_requests(auraio_engine_t *e, struct hold *h, int n)
{
	char path[4096];

	if (h->n == 0) {
		snprintf(path, sizeof(path), "%s/filler", dir);
		h->fd = open(path, O_RDWR | O_CREAT, 0600);
		cr_assert_geq(h->fd, 0);
		cr_assert_eq(pwrite(h->fd, "x", 1, 0), 1);
	}
	n += h->n;
	while (h->n < n) {
		auraio_request_t *r =
		    auraio_read(e, h->fd, auraio_buf(h->buf), sizeof(h->buf), 0, NULL, NULL);

		if (r) {
			h->reqs[h->n++] = r;
			continue;
		}
		cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
		auraio_wait(e, 100); /* at the in-flight limit: reap (nothing is collected) */
	}
}

static void release_requests(auraio_engine_t *e, struct hold *h)
{
	for (int i = 0; i < h->n; i++) {
		ssize_t res = 0;

		cr_assert_eq(auraio_request_wait(e, h->reqs[i], -1, &res), 0);
		cr_assert_eq(res, 1);
	}
	h->n = 0;
	close(h->fd);
}

static bool has_parked(aurawal_t *log)
{
	bool p;

	pthread_mutex_lock(&log->mu);
	p = log->parked != NULL;
	pthread_mutex_unlock(&log->mu);
	return p;
}

static void expect_idle(aurawal_t *log)
{
	pthread_mutex_lock(&log->mu);
	cr_assert_eq(log->pending_reads, 0);
	cr_assert_eq(log->pending_cbs, 0);
	cr_assert_null(log->parked);
	cr_assert_eq(log->nparked, 0);
	pthread_mutex_unlock(&log->mu);
}

/*
 * An async read is cut short (fault injection) while every other request of the ring is
 * held: its callback finds no room for the rest. It must return - parking the rest -
 * rather than wait inside the callback (where auraio_wait returns at once: the poll
 * spun there forever). The rest is read by a later poll once there is room.
 */
struct parked_setup {
	auraio_engine_t *e;
	aurawal_t *log;
	aurawal_loc_t loc;
	uint64_t seq;
	struct hold h;
	uint8_t buf[RLEN];
	struct rd r;
};

static void park_one(struct parked_setup *ps)
{
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t shrt = { .ops = AURAIO_FAULT_OP_READ,
				.fd = -1,
				.count = 1,
				.kind = AURAIO_FAULT_SHORT,
				.keep = 4096 };

	ps->e = small_engine();
	o.engine = ps->e;
	ps->log = wal_open_ok(dir, &o);
	ps->seq = append_i(ps->log, 7, RLEN, AURAWAL_DURABLE, &ps->loc);
	wal_preparer_idle(ps->log); /* no background I/O takes a request meanwhile */
	hold_requests(ps->e, &ps->h, 2 * QD - 1);
	cr_assert_eq(auraio_fault_set(ps->e, &shrt), 0);
	ps->r.status = PENDING;
	cr_assert_eq(aurawal_read_async(ps->log, ps->loc, ps->buf, RLEN, rd_cb, &ps->r), 0);
	/* Every request is taken now: the read's own stays so while its callback runs. */
	/* Reap with the engine's own call: aurawal_poll would submit the parked rest again
	 * as soon as the read's own request is free. */
	while (!has_parked(ps->log))
		cr_assert_geq(auraio_wait(ps->e, 100), 0);
	auraio_fault_clear(ps->e);
	cr_assert_eq(ps->r.calls, 0, "no room for the rest: the read is not over");
}

static void expect_read_ok(struct parked_setup *ps)
{
	cr_assert_eq(ps->r.calls, 1);
	cr_assert_eq(ps->r.status, 0, "%s", aurawal_strerror(ps->r.status));
	cr_assert_eq(ps->r.len, RLEN);
	cr_assert_eq(ps->r.seq, ps->seq);
	cr_assert(payload_check(ps->buf, RLEN, 7), "the record comes back whole");
}

Test(wal_async_read, a_short_read_whose_rest_finds_the_ring_full_is_parked_then_read_by_poll,
     .timeout = 30)
{
	struct parked_setup *ps = calloc(1, sizeof(*ps));

	park_one(ps);
	hold_requests(ps->e, &ps->h, 1); /* the read's own request, free again */
	cr_assert_eq(aurawal_poll(ps->log, 0), 0, "still no room: still parked");
	cr_assert(has_parked(ps->log));
	cr_assert_eq(ps->r.calls, 0);
	release_requests(ps->e, &ps->h);
	while (ps->r.calls == 0)
		cr_assert_geq(aurawal_poll(ps->log, -1), 0);
	expect_read_ok(ps);
	cr_assert_eq(aurawal_poll(ps->log, 0), 0);
	expect_idle(ps->log);
	cr_assert_eq(aurawal_close(ps->log), 0);
	cr_assert_eq(ps->r.calls, 1);
	auraio_destroy(ps->e);
	free(ps);
}

/* A poll that waits (-1) with only a parked read pending drives it to the end itself:
 * a parked read counts as in flight. */
Test(wal_async_read, a_parked_read_is_driven_by_a_waiting_poll, .timeout = 30)
{
	struct parked_setup *ps = calloc(1, sizeof(*ps));
	int n;

	park_one(ps);
	release_requests(ps->e, &ps->h);
	n = aurawal_poll(ps->log, -1);
	cr_assert_eq(n, 1, "the poll waited for the parked read and ran its callback");
	expect_read_ok(ps);
	expect_idle(ps->log);
	cr_assert_eq(aurawal_close(ps->log), 0);
	auraio_destroy(ps->e);
	free(ps);
}

/* Close finishes a parked read: its callback runs once, in close, with the record. */
Test(wal_async_read, close_completes_a_parked_read_exactly_once, .timeout = 30)
{
	struct parked_setup *ps = calloc(1, sizeof(*ps));

	park_one(ps);
	release_requests(ps->e, &ps->h);
	cr_assert_eq(aurawal_close(ps->log), 0);
	expect_read_ok(ps);
	auraio_destroy(ps->e);
	free(ps);
}

/* The parked rest fails when it is submitted again (EIO): the callback gets the error,
 * once, and nothing stays counted as pending. */
Test(wal_async_read, a_parked_read_that_then_fails_reports_the_error_once, .timeout = 30)
{
	struct parked_setup *ps = calloc(1, sizeof(*ps));

	park_one(ps);
	release_requests(ps->e, &ps->h);
	test_fault_error(ps->e, AURAIO_FAULT_OP_READ, 0, 0, EIO);
	while (ps->r.calls == 0)
		cr_assert_geq(aurawal_poll(ps->log, -1), 0);
	auraio_fault_clear(ps->e);
	cr_assert_eq(ps->r.calls, 1);
	cr_assert_eq(ps->r.status, -EIO, "%s", aurawal_strerror(ps->r.status));
	cr_assert_eq(aurawal_poll(ps->log, 0), 0);
	expect_idle(ps->log);
	cr_assert_eq(aurawal_close(ps->log), 0);
	cr_assert_eq(ps->r.calls, 1);
	auraio_destroy(ps->e);
	free(ps);
}

/* Take every request of the ring that is free now (submit waitables until refused). */
static void hold_free_requests(auraio_engine_t *e, struct hold *h)
{
	auraio_request_t *r;

	while (h->n < 2 * QD &&
	       (r = auraio_read(e, h->fd, auraio_buf(h->buf), sizeof(h->buf), 0, NULL, NULL)))
		h->reqs[h->n++] = r;
	cr_assert(h->n == 2 * QD || errno == EAGAIN, "%s", strerror(errno));
}

static uint32_t parked_count(aurawal_t *log)
{
	uint32_t n;

	pthread_mutex_lock(&log->mu);
	n = log->nparked;
	pthread_mutex_unlock(&log->mu);
	return n;
}

/* Two reads parked, room for one: a poll submits the first again and keeps the second
 * parked, in front; both then complete, each once, with their records. */
Test(wal_async_read, parked_reads_the_ring_still_refuses_stay_parked_and_complete_later,
     .timeout = 30)
{
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t shrt = { .ops = AURAIO_FAULT_OP_READ,
				.fd = -1,
				.count = 2,
				.kind = AURAIO_FAULT_SHORT,
				.keep = 4096 };
	auraio_engine_t *e = small_engine();
	static uint8_t bufs[2][RLEN];
	struct hold h = { 0 };
	aurawal_loc_t loc[2];
	uint64_t seq[2];
	struct rd r[2] = { { 0 } };
	aurawal_t *log;
	ssize_t res;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 2; i++)
		seq[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &loc[i]);
	wal_preparer_idle(log);
	hold_requests(e, &h, 2 * QD - 2);
	cr_assert_eq(auraio_fault_set(e, &shrt), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(aurawal_read_async(log, loc[i], bufs[i], RLEN, rd_cb, &r[i]), 0);
	while (parked_count(log) < 2) { /* each pass frees the parked reads' requests */
		cr_assert_geq(auraio_wait(e, 100), 0);
		hold_free_requests(e, &h);
	}
	auraio_fault_clear(e);
	cr_assert_eq(h.n, 2 * QD, "the test holds every request");
	h.n--; /* room for one */
	cr_assert_eq(auraio_request_wait(e, h.reqs[h.n], -1, &res), 0);
	cr_assert_eq(aurawal_poll(log, 0), 0);
	cr_assert_eq(parked_count(log), 1, "the second is still parked");
	cr_assert(r[0].calls + r[1].calls == 0);
	release_requests(e, &h);
	while (r[0].calls + r[1].calls < 2)
		cr_assert_geq(aurawal_poll(log, -1), 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(r[i].calls, 1);
		cr_assert_eq(r[i].status, 0, "%s", aurawal_strerror(r[i].status));
		cr_assert_eq(r[i].seq, seq[i]);
		cr_assert(payload_check(bufs[i], RLEN, (uint64_t) i));
	}
	expect_idle(log);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
}

/* ---- callbacks run in other threads ---- */

/* A log whose appends stay in memory (no durable append, a 10 s flush delay): reads of
 * them are answered at once, their completions ready before anyone polls. */
static aurawal_t *memory_log(aurawal_loc_t *locs, int n)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;

	o.flush_delay_us = 10000000;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < n; i++)
		append_i(log, (uint64_t) i, 100, 0, &locs[i]);
	return log;
}

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ran;      /* callbacks that have started */
	int finished; /* callbacks that have returned */
	atomic_int flag;
	int stop_calls;
	aurawal_t *log;
} sh = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL };

/* The first callback to run waits until a second one has run (in another thread). */
static void first_waits_cb(void *arg, int status, size_t len, uint64_t seq)
{
	(void) arg;
	(void) len;
	(void) seq;
	cr_assert_eq(status, 0);
	pthread_mutex_lock(&sh.mu);
	sh.ran++;
	pthread_cond_broadcast(&sh.cv);
	while (sh.ran < 2)
		pthread_cond_wait(&sh.cv, &sh.mu);
	sh.finished++;
	pthread_mutex_unlock(&sh.mu);
}

static void *poll_once(void *arg)
{
	cr_assert_geq(aurawal_poll(arg, 0), 1);
	return NULL;
}

/* Two completions are ready; one poller runs the first, which waits for the second. The
 * second must be left ready for another thread: a poll that took both (as before) made
 * the other's polls find nothing - they returned at once, and the first never ended. */
Test(wal_async_read, a_long_callback_in_one_poller_holds_up_no_other_completion, .timeout = 30)
{
	aurawal_loc_t locs[2];
	aurawal_t *log = memory_log(locs, 2);
	uint8_t bufs[2][100];
	pthread_t t;

	for (int i = 0; i < 2; i++)
		cr_assert_eq(aurawal_read_async(log, locs[i], bufs[i], 100, first_waits_cb, NULL),
			     0);
	cr_assert_eq(pthread_create(&t, NULL, poll_once, log), 0);
	pthread_mutex_lock(&sh.mu);
	while (sh.ran < 1)
		pthread_cond_wait(&sh.cv, &sh.mu);
	pthread_mutex_unlock(&sh.mu);
	cr_assert_eq(aurawal_poll(log, 0), 1, "the second completion was still ready");
	pthread_join(t, NULL);
	cr_assert_eq(sh.finished, 2);
	for (int i = 0; i < 2; i++)
		cr_assert(payload_check(bufs[i], 100, (uint64_t) i));
	cr_assert_eq(aurawal_poll(log, 0), 0);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Runs in the other poller: waits until the main thread sleeps in aurawal_poll_until, then
 * makes its condition true. */
static void wake_sleeper_cb(void *arg, int status, size_t len, uint64_t seq)
{
	(void) arg;
	(void) len;
	(void) seq;
	cr_assert_eq(status, 0);
	pthread_mutex_lock(&sh.mu);
	sh.ran++;
	pthread_cond_broadcast(&sh.cv);
	pthread_mutex_unlock(&sh.mu);
	wal_until_waiter_asleep(sh.log);
	atomic_store(&sh.flag, 1);
}

static struct {
	aurawal_loc_t loc;
	uint8_t buf[100];
} other_read;

/* Another thread's work: it starts the read and runs its callback. */
static void *read_and_poll_once(void *arg)
{
	cr_assert_eq(
	    aurawal_read_async(arg, other_read.loc, other_read.buf, 100, wake_sleeper_cb, NULL), 0);
	cr_assert_eq(aurawal_poll(arg, 0), 1);
	return NULL;
}

/* A thread waiting for a callback another thread is running - not its own work, so a
 * plain poll returns at once (nothing is in flight) - sleeps until it returns, and is
 * woken then. */
Test(wal_async_read, poll_until_sleeps_until_a_callback_in_another_thread_returns, .timeout = 30)
{
	aurawal_t *log = memory_log(&other_read.loc, 1);
	uint8_t *buf = other_read.buf;
	pthread_t t;

	sh.log = log;
	cr_assert_eq(aurawal_poll_until(log, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(aurawal_poll_until(NULL, 0, wal_flag_is_set, &sh.flag), -EINVAL);
	cr_assert_eq(pthread_create(&t, NULL, read_and_poll_once, log), 0);
	pthread_mutex_lock(&sh.mu);
	while (sh.ran < 1)
		pthread_cond_wait(&sh.cv, &sh.mu);
	pthread_mutex_unlock(&sh.mu);
	cr_assert_eq(aurawal_poll(log, -1), 0, "nothing of its own: a plain poll returns");
	sh.stop_calls = 0;
	cr_assert_eq(aurawal_poll_until(log, -1, wal_flag_is_set, &sh.flag), 0);
	cr_assert_eq(atomic_load(&sh.flag), 1);
	cr_assert_leq(sh.stop_calls, 4, "asked %d times: it did not sleep", sh.stop_calls);
	pthread_join(t, NULL);
	cr_assert(payload_check(buf, 100, 0));
	cr_assert_eq(aurawal_close(log), 0);
}

/* ---- a poller asleep for appends, then a read ---- */

static atomic_int read_ran, append_ran, written_before_read;
static aurawal_t *write_log;
static uint64_t append_seq;

static void late_append_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) arg;
	(void) loc;
	(void) seq;
	cr_assert_eq(status, 0);
	atomic_store(&append_ran, 1);
}

static void first_read_cb(void *arg, int status, size_t len, uint64_t seq)
{
	(void) arg;
	(void) len;
	(void) seq;
	cr_assert_eq(status, 0);
	pthread_mutex_lock(&write_log->mu); /* the append's batch is being written, or was */
	atomic_store(&written_before_read,
		     write_log->io_busy || write_log->written_seq >= append_seq);
	pthread_mutex_unlock(&write_log->mu);
	atomic_store(&read_ran, 1);
}

/* A poller asleep while only an append is pending (written within the 10 s flush delay)
 * must be woken by a read started meanwhile: reads complete only when someone reaps the
 * engine, and it is the one to do it. Before, it slept on until the append's batch was
 * written (whose I/O then reaped the read): the read waited for an unrelated write. */
Test(wal_async_read, a_read_started_while_a_poller_sleeps_for_an_append_wakes_it, .timeout = 30)
{
	aurawal_options_t o = wal_opts(NULL);
	uint8_t p[100], buf[100];
	struct iovec iov = { p, sizeof(p) };
	aurawal_loc_t loc;
	aurawal_t *log;
	struct wal_flag_poll fp;
	pthread_t t;

	o.flush_delay_us = 10000000;
	log = wal_open_ok(dir, &o);
	append_i(log, 0, 100, AURAWAL_DURABLE, &loc); /* on disk: a device read */
	wal_preparer_idle(log);			      /* its I/O would reap the read too */
	payload_fill(p, sizeof(p), 1);
	cr_assert_eq(aurawal_append_async(log, &iov, 1, 0, late_append_cb, NULL), 0);
	write_log = log;
	pthread_mutex_lock(&log->mu);
	append_seq = log->next_seq - 1;
	pthread_mutex_unlock(&log->mu);
	fp = (struct wal_flag_poll){ log, &read_ran };
	cr_assert_eq(pthread_create(&t, NULL, wal_poll_until_flag, &fp), 0);
	wal_until_waiter_asleep(log);
	cr_assert_eq(aurawal_read_async(log, loc, buf, 100, first_read_cb, NULL), 0);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&written_before_read), 0,
		     "the read waited for the append's batch to be written");
	cr_assert(payload_check(buf, 100, 0));
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_eq(atomic_load(&append_ran), 1);
}
