/* SPDX-License-Identifier: MIT */
/*
 * Streams (pipes) on the thread backend, against what auraio.h promises and what
 * io_uring does:
 *   - auraio_cancel() of a request queued behind workers that all wait on streams that
 *     never get data: "the request then completes with -ECANCELED". It used to complete
 *     only when a worker took it - never, if no stream got data. io_uring completes a
 *     request it has not started at once; so does the thread backend now.
 *   - a read of an empty O_NONBLOCK pipe: io_uring (checked on 6.18) does not complete
 *     it with -EAGAIN but waits for data, as for a blocking pipe; the thread backend
 *     does the same. Both backends are tested.
 * A hang is caught by the suite's timeout.
 */
#include <fcntl.h>

#include "test_util.h"

#define T_TIMEOUT 20

TestSuite(thread_backend_streams, .timeout = T_TIMEOUT);

/* A 1-ring thread-backend engine with `workers` workers. */
static auraio_engine_t *threads_engine(int workers)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.ring_count = 1;
	o.thread_workers = workers;
	o.disable_adaptive = true; /* the in-flight limit stays at queue_depth */
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "auraio_create: %s", strerror(errno));
	return e;
}

#define MAX_BLOCKERS 4

/* `n` pipe reads that hold the ring's `n` workers until their pipes get data. */
struct blockers {
	int n;
	int p[MAX_BLOCKERS][2];
	char buf[MAX_BLOCKERS];
	struct recorder rec[MAX_BLOCKERS];
};

static void block_workers(auraio_engine_t *e, struct blockers *b, int n)
{
	b->n = n;
	for (int i = 0; i < n; i++) {
		cr_assert_eq(pipe(b->p[i]), 0);
		cr_assert_not_null(auraio_read(e, b->p[i][0], auraio_buf(&b->buf[i]), 1, 0,
					       record_cb, &b->rec[i]));
	}
}

/* Feed every blocker's pipe; each read completes once with its byte. */
static void release_workers(auraio_engine_t *e, struct blockers *b)
{
	for (int i = 0; i < b->n; i++) {
		cr_assert_eq(atomic_load(&b->rec[i].calls), 0, "blocker %d completed early", i);
		cr_assert_eq(write(b->p[i][1], "q", 1), 1);
	}
	for (int i = 0; i < b->n; i++) {
		while (atomic_load(&b->rec[i].calls) == 0)
			cr_assert(auraio_wait(e, -1) >= 0);
		cr_assert_eq(atomic_load(&b->rec[i].last), 1);
		cr_assert_eq(b->buf[i], 'q');
	}
}

static void close_blockers(struct blockers *b)
{
	for (int i = 0; i < b->n; i++) {
		close(b->p[i][0]);
		close(b->p[i][1]);
	}
}

/*
 * Every worker waits on an empty pipe; a file read queued behind them is cancelled.
 * Workers take requests in order, so none can take the file read. Its completion must
 * not depend on a stream getting data: it is ready as soon as auraio_cancel() returns
 * (request_wait with timeout 0 handles what is ready once, then checks).
 */
static void cancel_behind_blocked_workers(int workers)
{
	auraio_engine_t *e = threads_engine(workers);
	struct blockers b = { 0 };
	auraio_request_t *victim;
	int fd = temp_file(4096, 0);
	char buf[4096];
	ssize_t res = 0;

	block_workers(e, &b, workers);
	victim = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 0, NULL, NULL);
	cr_assert_not_null(victim);
	cr_assert_geq(auraio_flush(e), 0);
	cr_assert_eq(auraio_cancel(e, victim), 0);
	cr_assert_eq(auraio_request_wait(e, victim, 0, &res), 0,
		     "the cancelled read waits for a worker (%d blocked on pipes)", workers);
	cr_assert_eq(res, -ECANCELED);
	release_workers(e, &b);
	cr_assert_eq(auraio_wait(e, -1), 0, "something was still in flight");
	auraio_destroy(e);
	close_blockers(&b);
	close(fd);
}

Test(thread_backend_streams, a_cancel_behind_one_blocked_worker_completes_at_once)
{
	cancel_behind_blocked_workers(1);
}

Test(thread_backend_streams, a_cancel_behind_all_blocked_workers_completes_at_once)
{
	cancel_behind_blocked_workers(MAX_BLOCKERS);
}

/*
 * A write + fsync chain queued behind a blocked worker, its head cancelled: both
 * complete -ECANCELED at once, once each, and the write never reaches the file.
 */
Test(thread_backend_streams, a_cancelled_queued_chain_completes_at_once_and_never_runs)
{
	auraio_engine_t *e = threads_engine(1);
	struct blockers b = { 0 };
	int fd = temp_file(4096, 0);
	char data[512], back[512];
	struct recorder rec[2] = { 0 };
	auraio_request_t *reqs[2];
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_WRITE,
		  .fd = fd,
		  .buf = auraio_buf(data),
		  .len = sizeof(data),
		  .offset = 0,
		  .cb = record_cb,
		  .user_data = &rec[0] },
		{ .opcode = AURAIO_OP_FSYNC, .fd = fd, .cb = record_cb, .user_data = &rec[1] },
	};

	fill_pattern(data, sizeof(data), 99); /* not the file's pattern at 0 */
	block_workers(e, &b, 1);
	cr_assert_eq(auraio_submit_linked(e, ops, 2, reqs), 0);
	cr_assert_geq(auraio_flush(e), 0);
	cr_assert_eq(auraio_cancel(e, reqs[0]), 0);
	cr_assert_eq(auraio_poll(e), 2, "the cancelled chain waits for a worker");
	cr_assert_eq(atomic_load(&rec[0].last), -ECANCELED);
	cr_assert_eq(atomic_load(&rec[1].last), -ECANCELED);
	release_workers(e, &b);
	cr_assert_eq(auraio_wait(e, -1), 0);
	cr_assert_eq(atomic_load(&rec[0].calls), 1);
	cr_assert_eq(atomic_load(&rec[1].calls), 1);
	cr_assert_eq(pread(fd, back, sizeof(back), 0), (ssize_t) sizeof(back));
	cr_assert(check_pattern(back, sizeof(back), 0), "the cancelled write ran");
	auraio_destroy(e);
	close_blockers(&b);
	close(fd);
}

/* A request not yet handed to the workers (batched) is found by the cancel too. */
Test(thread_backend_streams, a_cancelled_batched_request_completes_at_once)
{
	auraio_engine_t *e = threads_engine(1);
	struct blockers b = { 0 };
	auraio_request_t *victim;
	int fd = temp_file(4096, 0);
	char buf[4096];
	ssize_t res = 0;

	block_workers(e, &b, 1);
	/* Not flushed: the ring has something in flight, so it stays batched. */
	victim = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 0, NULL, NULL);
	cr_assert_not_null(victim);
	cr_assert_eq(auraio_cancel(e, victim), 0);
	cr_assert_eq(auraio_request_wait(e, victim, 0, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	release_workers(e, &b);
	auraio_destroy(e);
	close_blockers(&b);
	close(fd);
}

/*
 * Destroy with every worker blocked on a stream and requests queued behind them: every
 * callback runs once, with -ECANCELED.
 */
Test(thread_backend_streams, destroy_behind_blocked_workers_cancels_everything_once)
{
	auraio_engine_t *e = threads_engine(2);
	struct blockers b = { 0 };
	struct recorder rec = { 0 };
	int fd = temp_file(4096, 0);
	char buf[3][512];

	block_workers(e, &b, 2);
	for (int i = 0; i < 3; i++)
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(buf[i]), sizeof(buf[i]), 512 * i,
					       record_cb, &rec));
	cr_assert_geq(auraio_flush(e), 0);
	auraio_destroy(e);
	cr_assert_eq(atomic_load(&rec.calls), 3);
	cr_assert_eq(atomic_load(&rec.last), -ECANCELED);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(atomic_load(&b.rec[i].calls), 1);
		cr_assert_eq(atomic_load(&b.rec[i].last), -ECANCELED);
	}
	close_blockers(&b);
	close(fd);
}

/*
 * An empty O_NONBLOCK pipe: the read does not complete with -EAGAIN; it stays in flight
 * (a wait with a timeout returns 0, the callback has not run) and completes with the
 * data once they come - on io_uring and on the thread backend alike.
 */
static void nonblocking_pipe_read(auraio_backend_t backend)
{
	auraio_options_t o;
	auraio_engine_t *e;
	struct recorder rec = { 0 };
	auraio_stats_t st;
	int p[2];
	char buf[8];

	auraio_options_init(&o);
	o.backend = backend;
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
	cr_assert_not_null(auraio_read(e, p[0], auraio_buf(buf), sizeof(buf), 0, record_cb, &rec));
	cr_assert_eq(auraio_wait(e, 20), 0);
	cr_assert_eq(auraio_poll(e), 0);
	cr_assert_eq(atomic_load(&rec.calls), 0, "%s backend: completed with %ld",
		     st.backend == AURAIO_BACKEND_THREADS ? "thread" : "io_uring",
		     (long) atomic_load(&rec.last));
	cr_assert_eq(write(p[1], "abc", 3), 3);
	while (atomic_load(&rec.calls) == 0)
		cr_assert(auraio_wait(e, -1) >= 0);
	cr_assert_eq(atomic_load(&rec.last), 3);
	cr_assert_eq(memcmp(buf, "abc", 3), 0);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

Test(thread_backend_streams, an_empty_nonblocking_pipe_read_waits_for_data_on_threads)
{
	nonblocking_pipe_read(AURAIO_BACKEND_THREADS);
}

Test(thread_backend_streams, an_empty_nonblocking_pipe_read_waits_for_data_by_default)
{
	nonblocking_pipe_read(AURAIO_BACKEND_AUTO);
}

/*
 * A full O_NONBLOCK pipe: a write does not complete with -EAGAIN either; it waits for
 * room and completes whole once a reader drains the pipe - on both backends.
 */
static void nonblocking_pipe_write(auraio_backend_t backend)
{
	static char fill[4096], drain[65536];
	auraio_options_t o;
	auraio_engine_t *e;
	struct recorder rec = { 0 };
	char msg[100];
	size_t filled = 0;
	int p[2];

	auraio_options_init(&o);
	o.backend = backend;
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
	for (ssize_t n; (n = write(p[1], fill, sizeof(fill))) > 0;)
		filled += (size_t) n;
	cr_assert_eq(errno, EAGAIN);
	fill_pattern(msg, sizeof(msg), 3);
	cr_assert_not_null(auraio_write(e, p[1], auraio_buf(msg), sizeof(msg), 0, record_cb, &rec));
	cr_assert_eq(auraio_wait(e, 20), 0);
	cr_assert_eq(auraio_poll(e), 0);
	cr_assert_eq(atomic_load(&rec.calls), 0, "completed with %ld",
		     (long) atomic_load(&rec.last));
	/* Exactly the fill: what follows it in the pipe is the engine's write. */
	for (size_t got = 0; got < filled;) {
		size_t want = filled - got < sizeof(drain) ? filled - got : sizeof(drain);
		ssize_t n = read(p[0], drain, want);

		cr_assert_gt(n, 0);
		got += (size_t) n;
	}
	while (atomic_load(&rec.calls) == 0)
		cr_assert(auraio_wait(e, -1) >= 0);
	cr_assert_eq(atomic_load(&rec.last), (long) sizeof(msg));
	cr_assert_eq(read(p[0], drain, sizeof(drain)), (ssize_t) sizeof(msg));
	cr_assert(check_pattern(drain, sizeof(msg), 3));
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

Test(thread_backend_streams, a_write_to_a_full_nonblocking_pipe_waits_for_room_on_threads)
{
	nonblocking_pipe_write(AURAIO_BACKEND_THREADS);
}

Test(thread_backend_streams, a_write_to_a_full_nonblocking_pipe_waits_for_room_by_default)
{
	nonblocking_pipe_write(AURAIO_BACKEND_AUTO);
}
