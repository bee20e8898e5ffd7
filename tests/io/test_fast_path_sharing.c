/* SPDX-License-Identifier: MIT */
/*
 * The fast path shared: a contended sq_lock (a callback's read that waits for it must
 * wake the next sleeper; callbacks and outside threads on one ring), and the cached
 * route (two engines, two rings, an engine destroyed and another created, the refresh
 * every 32 submissions).
 *
 * White-box where no public call reaches a case on demand: the tests hold a ring's
 * sq_lock, read its lock word, and read and set the thread's cached route (tls_route).
 * Chains of reads per test: AURA_FAST_PATH_ROUNDS (default 200).
 */
#include "fast_path_test.h"

TestSuite(fast_path_sharing, .timeout = 30);

/* ---- a contended sq_lock: sleepers are woken on every way out ---- */

/*
 * A callback's read finds the sq_lock held by another thread: it leaves the inline path
 * for the outside one, which sleeps on the lock; a second thread then sleeps on it too.
 * The holder lets go, waking the first sleeper (futex waiters of one priority wake in
 * order): the callback's read. It stages its request and, letting go of the lock, must
 * wake the other sleeper (fast_wake; fast_send when the batch is due) - or that one
 * sleeps for ever - and leave the lock free.
 */
struct contend_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int in_cb, held, done, ran, main_tid, second_tid, second_got;
	auraio_request_t *got;
};

/* Until thread tid sleeps in the kernel (on the lock: nothing else blocks there) with
 * the lock marked "held with sleepers"; false at the deadline. */
static bool until_asleep_on(struct ring *r, atomic_int *tid, uint64_t deadline)
{
	while (test_now_ns() < deadline) {
		int t = atomic_load(tid);

		if (t && atomic_load(&r->sq_lock.v) == 2 && thread_syscall(t) == SYS_futex)
			return true;
		sched_yield();
	}
	return false;
}

static void *second_sleeper(void *arg)
{
	struct contend_ctx *c = arg;
	struct ring *r = &c->e->rings[0];

	atomic_store(&c->second_tid, (int) syscall(SYS_gettid));
	sq_lock(r);
	atomic_store(&c->second_got, 1);
	sq_unlock(r);
	return NULL;
}

static void *holder(void *arg)
{
	struct contend_ctx *c = arg;
	struct ring *r = &c->e->rings[0];
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
	pthread_t t;
	bool slept;

	sq_lock(r);
	atomic_store(&c->held, 1);
	slept = until_asleep_on(r, &c->main_tid, deadline);
	cr_assert_eq(pthread_create(&t, NULL, second_sleeper, c), 0);
	slept = slept && until_asleep_on(r, &c->second_tid, deadline);
	sq_unlock(r);
	cr_assert_eq(pthread_join(t, NULL), 0);
	return (void *) (uintptr_t) slept;
}

static void contended_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct contend_ctx *c = ud;
	static char b[512];

	(void) req;
	cr_assert_eq(res, 512);
	atomic_store(&c->in_cb, 1);
	c->got = auraio_read(c->e, c->fd, auraio_buf(b), 512, 0, count_cb, &c->done);
	cr_assert_not_null(c->got, "%s", strerror(errno));
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path_sharing, a_callbacks_read_that_waited_for_the_sq_lock_wakes_the_next_sleeper)
{
	/* queue_depth 64: batch threshold 16, the read is staged (fast_wake); 4: the
	 * threshold is 1, the batch is due (fast_send). */
	static const int qds[] = { 64, 4 };

	if (thread_syscall((pid_t) syscall(SYS_gettid)) == -2)
		cr_skip_test("no /proc/self/task/TID/syscall: cannot tell a thread asleep");
	for (size_t q = 0; q < ARRAY_SIZE(qds); q++) {
		auraio_engine_t *e = engine_with(1, qds[q], false);
		int fd = temp_file(8192, 0);
		struct contend_ctx c = { .e = e, .fd = fd };
		uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
		static char b[512];
		pthread_t t;
		void *slept;

		atomic_store(&c.main_tid, (int) syscall(SYS_gettid));
		cr_assert_not_null(auraio_read(e, fd, auraio_buf(b), 512, 0, contended_cb, &c));
		cr_assert_eq(pthread_create(&t, NULL, holder, &c), 0);
		while (!atomic_load(&c.held))
			sched_yield();
		wait_flag(e, &c.ran, 1);
		while (!atomic_load(&c.second_got)) {
			cr_assert_lt(test_now_ns(), deadline,
				     "a sleeper on the sq_lock was never woken (qd %d)", qds[q]);
			sched_yield();
		}
		cr_assert_eq(pthread_join(t, &slept), 0);
		cr_assert(slept, "the threads never slept on the held sq_lock (qd %d)", qds[q]);
		wait_flag(e, &c.done, 1);
		assert_unlocked(e, "the end");
		auraio_destroy(e);
		close(fd);
	}
}

/*
 * Threads submitting from outside (fast_outside) and callbacks resubmitting inline on
 * one ring's sq_lock at once; TSan checks the hand-offs. Every read is checked and
 * delivered exactly once.
 */
struct outsider {
	auraio_engine_t *e;
	int fd;
	int rounds;
	atomic_int *bad;
};

static void *outside_submitter(void *arg)
{
	struct outsider *o = arg;
	char buf[512];

	for (int i = 0; i < o->rounds; i++) {
		off_t off = (off_t) (i % 64) * 4096 + 512;
		auraio_request_t *req;
		ssize_t res = 0;

		while (!(req = auraio_read(o->e, o->fd, auraio_buf(buf), 512, off, NULL, NULL))) {
			if (errno != EAGAIN) {
				atomic_fetch_add(o->bad, 1);
				return NULL;
			}
			auraio_poll(o->e);
		}
		if (auraio_request_wait(o->e, req, 10000, &res) != 0 || res != 512 ||
		    !check_pattern(buf, 512, (uint64_t) off))
			atomic_fetch_add(o->bad, 1);
	}
	return NULL;
}

Test(fast_path_sharing, callbacks_and_outside_threads_share_one_rings_sq_lock)
{
	int rounds = (int) test_env_u64("AURA_FAST_PATH_ROUNDS", 200);

	for (int q = 0; q < 2; q++) {
		auraio_engine_t *e = engine_with(1, q ? 64 : 8, false);
		int fd = temp_file(64 * 4096, 0);
		atomic_int bad = 0, finished = 0;
		struct chain ch[4];
		struct outsider o = { .e = e, .fd = fd, .rounds = rounds, .bad = &bad };
		pthread_t t[2];
		uint64_t deadline = test_now_ns() + 25ull * 1000000000ull;
		auraio_stats_t st;

		for (int i = 0; i < 2; i++)
			cr_assert_eq(pthread_create(&t[i], NULL, outside_submitter, &o), 0);
		for (int i = 0; i < 4; i++) {
			ch[i] = (struct chain){ .e = e,
						.fd = fd,
						.left = rounds,
						.off = (off_t) i * 4096,
						.bad = &bad,
						.finished = &finished };
			while (!auraio_read(e, fd, auraio_buf(ch[i].buf), 512, ch[i].off, chain_cb,
					    &ch[i])) {
				cr_assert_eq(errno, EAGAIN);
				auraio_poll(e);
			}
		}
		while (atomic_load(&finished) < 4) {
			cr_assert_geq(auraio_wait(e, 100), 0);
			cr_assert_lt(test_now_ns(), deadline, "chains stalled at %d of 4",
				     atomic_load(&finished));
		}
		for (int i = 0; i < 2; i++)
			cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_assert_eq(atomic_load(&bad), 0);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		cr_assert_eq(st.total.ops_completed, (uint64_t) rounds * 6);
		cr_assert_eq(st.total.bytes_read, (uint64_t) rounds * 6 * 512);
		cr_assert_eq(hist_total(&e->rings[0]), st.total.ops_completed);
		assert_unlocked(e, "the end");
		auraio_destroy(e);
		close(fd);
	}
}

/* ---- the cached route ---- */

/* A callback of engine A submits to B and to A in turn: each request goes to its own
 * engine's ring, B's at once (B is idle, not being delivered), A's into the delivery's
 * batch. */
struct two_ctx {
	auraio_engine_t *a, *b;
	int fd;
	atomic_int a_done, b_done, ran;
};

static void two_engines_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct two_ctx *c = ud;
	static char bufs[8][512];

	(void) req;
	cr_assert_eq(res, 512);
	for (int i = 0; i < 4; i++) {
		auraio_request_t *rb, *ra;

		rb =
		    auraio_read(c->b, c->fd, auraio_buf(bufs[2 * i]), 512, 0, count_cb, &c->b_done);
		cr_assert_not_null(rb, "%s", strerror(errno));
		cr_assert_eq(rb, &c->b->rings[0].pool.reqs[rb->ud & 0xffffffffu],
			     "B's read took a request of another engine");
		/* B idle: sent at once; then below B's batch threshold with B busy. */
		cr_assert_eq(atomic_load(&c->b->rings[0].staged), (uint32_t) i,
			     "B's read %d is batched with A's delivery", i);
		cr_assert_eq(tls_route.id, c->b->id);
		ra = auraio_read(c->a, c->fd, auraio_buf(bufs[2 * i + 1]), 512, 0, count_cb,
				 &c->a_done);
		cr_assert_not_null(ra, "%s", strerror(errno));
		cr_assert_eq(ra, &c->a->rings[0].pool.reqs[ra->ud & 0xffffffffu],
			     "A's read took a request of another engine");
		cr_assert_eq(atomic_load(&c->a->rings[0].staged), (uint32_t) (i + 1),
			     "A's read from A's callback is not in the delivery's batch");
		cr_assert_eq(tls_route.id, c->a->id);
	}
	assert_unlocked(c->a, "A's callback");
	assert_unlocked(c->b, "A's callback");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path_sharing, a_callback_of_one_engine_submits_to_another_and_back)
{
	struct two_ctx c = { .a = engine_with(1, 64, false), .b = engine_with(1, 64, false) };
	static char b[512];
	auraio_stats_t sa, sb;

	c.fd = temp_file(8192, 0);
	cr_assert_neq(c.a->id, c.b->id);
	cr_assert_not_null(auraio_read(c.a, c.fd, auraio_buf(b), 512, 0, two_engines_cb, &c));
	wait_flag(c.a, &c.ran, 1);
	wait_flag(c.a, &c.a_done, 4);
	wait_flag(c.b, &c.b_done, 4);
	cr_assert_eq(auraio_get_stats(c.a, &sa), 0);
	cr_assert_eq(auraio_get_stats(c.b, &sb), 0);
	cr_assert_eq(sa.total.ops_completed, 5);
	cr_assert_eq(sb.total.ops_completed, 4);
	auraio_destroy(c.a);
	auraio_destroy(c.b);
	close(c.fd);
}

/* An engine destroyed with this thread's route cached, another created (perhaps at the
 * same address): the new one is routed by its own id, and a callback's read lands on
 * its own ring. Under ASan a route served from the freed engine is a use after free. */
struct reborn_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int done, ran;
};

static void reborn_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct reborn_ctx *c = ud;
	static char b[512];
	auraio_request_t *again;

	(void) req;
	cr_assert_eq(res, 512);
	again = auraio_read(c->e, c->fd, auraio_buf(b), 512, 512, count_cb, &c->done);
	cr_assert_not_null(again, "%s", strerror(errno));
	cr_assert_eq(again, &c->e->rings[0].pool.reqs[again->ud & 0xffffffffu]);
	cr_assert_eq(tls_route.id, c->e->id);
	cr_assert_eq(tls_route.ring, &c->e->rings[0]);
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path_sharing, an_engine_created_after_a_destroyed_one_is_routed_by_its_own_id)
{
	int fd = temp_file(8192, 0);
	uint64_t last_id = 0;

	for (int round = 0; round < 20; round++) {
		struct reborn_ctx c = { .e = engine_with(1, 8, round & 1), .fd = fd };
		static char b[512];
		auraio_stats_t st;

		cr_assert_neq(c.e->id, last_id, "an engine id was reused");
		if (round > 0)
			cr_assert_eq(tls_route.id, last_id, "the route of the destroyed engine");
		cr_assert_not_null(auraio_read(c.e, fd, auraio_buf(b), 512, 0, reborn_cb, &c));
		wait_flag(c.e, &c.ran, 1);
		wait_flag(c.e, &c.done, 1);
		cr_assert_eq(auraio_get_stats(c.e, &st), 0);
		cr_assert_eq(st.total.ops_completed, 2);
		last_id = c.e->id;
		auraio_destroy(c.e);
	}
	close(fd);
}

/* Two rings: a callback of ring 0 whose thread's route names ring 1 submits to ring 1,
 * at once (ring 1 is not being delivered); routed back to ring 0, into the delivery's
 * batch. Each submission uses the route once. */
struct rings_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int done, ran;
};

static void ring0_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct rings_ctx *c = ud;
	struct ring *r0 = &c->e->rings[0], *r1 = &c->e->rings[1];
	static char b[2][512];
	auraio_request_t *x;

	cr_assert_eq(req->ring, 0);
	cr_assert_eq(res, 512);
	tls_route = (struct route_tls){ .id = c->e->id, .ring = r1, .left = 10 };
	x = auraio_read(c->e, c->fd, auraio_buf(b[0]), 512, 0, count_cb, &c->done);
	cr_assert_not_null(x, "%s", strerror(errno));
	cr_assert_eq(x->ring, 1, "routed to ring 1, submitted to ring %u", x->ring);
	cr_assert_eq(atomic_load(&r1->staged), 0, "ring 1's read waits for ring 0's delivery");
	cr_assert_eq(tls_route.left, 9);
	tls_route = (struct route_tls){ .id = c->e->id, .ring = r0, .left = 10 };
	x = auraio_read(c->e, c->fd, auraio_buf(b[1]), 512, 0, count_cb, &c->done);
	cr_assert_not_null(x, "%s", strerror(errno));
	cr_assert_eq(x->ring, 0);
	cr_assert_eq(atomic_load(&r0->staged), 1, "ring 0's read from its callback was sent");
	cr_assert_eq(tls_route.left, 9);
	assert_unlocked(c->e, "ring 0's callback");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path_sharing, a_callback_of_ring_0_routed_to_ring_1_submits_to_ring_1)
{
	auraio_engine_t *e = engine_with(2, 64, false);
	struct rings_ctx c = { .e = e, .fd = temp_file(8192, 0) };
	static char b[512];

	tls_route = (struct route_tls){ .id = e->id, .ring = &e->rings[0], .left = 10 };
	cr_assert_not_null(auraio_read(e, c.fd, auraio_buf(b), 512, 0, ring0_cb, &c));
	wait_flag(e, &c.ran, 1);
	wait_flag(e, &c.done, 2);
	assert_unlocked(e, "the end");
	auraio_destroy(e);
	close(c.fd);
}

/* From a callback, each read uses the route once; at 0 it is looked up again (every 32
 * submissions), and the read still lands on the route's ring. */
struct refresh_ctx {
	auraio_engine_t *e;
	int fd;
	atomic_int done, ran;
	int refreshes;
};

static void refresh_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct refresh_ctx *c = ud;
	static char b[40][512];

	(void) req;
	cr_assert_eq(res, 512);
	for (int i = 0; i < 40; i++) {
		unsigned before = tls_route.left;
		auraio_request_t *x;

		x = auraio_read(c->e, c->fd, auraio_buf(b[i]), 512, 0, count_cb, &c->done);
		cr_assert_not_null(x, "read %d: %s", i, strerror(errno));
		cr_assert_eq(tls_route.id, c->e->id);
		cr_assert_eq(x->ring, tls_route.ring->index);
		if (before == 0) {
			cr_assert_eq(tls_route.left, 31, "read %d: no refresh at 0", i);
			c->refreshes++;
		} else {
			cr_assert_eq(tls_route.left, before - 1, "read %d used the route %u times",
				     i, before - tls_route.left);
		}
	}
	assert_unlocked(c->e, "40 reads from a callback");
	atomic_fetch_add(&c->ran, 1);
}

Test(fast_path_sharing, the_route_is_used_once_per_read_and_refreshed_every_32)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 64, single);
		struct refresh_ctx c = { .e = e, .fd = temp_file(8192, 0) };
		static char b[512];

		cr_assert_not_null(auraio_read(e, c.fd, auraio_buf(b), 512, 0, refresh_cb, &c));
		wait_flag(e, &c.ran, 1);
		cr_assert_geq(c.refreshes, 1);
		wait_flag(e, &c.done, 40);
		auraio_destroy(e);
		close(c.fd);
	}
}
