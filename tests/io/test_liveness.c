/* SPDX-License-Identifier: MIT */
/*
 * A targeted liveness stress of the waiting paths: no hang, no lost wake-up.
 *
 * Each round builds a 1- or 2-ring engine (io_uring, or now and then the thread backend)
 * and runs 2-4 threads. Each thread does a few operations, each on a random ring: a
 * waitable read collected with auraio_request_wait(-1) or with request_wait(0) in a
 * loop; a read with a callback, then auraio_wait(-1), auraio_poll() or auraio_flush() and
 * auraio_wait(-1) until the callback ran (on whichever thread); a batch of reads; a pipe
 * read that only a cancel completes, cancelled and then collected - or posted to a
 * canceller thread that cancels it and moves on while its owner waits; a read with a
 * callback, flushed, whose thread then waits for the callback without calling in while
 * an event-loop thread loops in auraio_wait(-1) (the submit rules). On io_uring most
 * rounds refuse kernel entries (an AURAIO_FAULT_ENTER rule with small skip and count,
 * re-armed while the threads run), so that entries are refused while other threads
 * sleep in the kernel, on a ring's eventcount or on the epoll set.
 *
 * Checked: every operation completes with the result auraio.h promises (the read's bytes,
 * -ECANCELED for the cancelled pipe read), and every round ends. A watchdog gives a
 * round AURA_LIVENESS_HANG_S seconds (default 20); if it stalls, it prints the seed, what
 * each thread was doing (and whether it is asleep) and each ring's state, and fails.
 *
 * Bounded: rounds run for AURA_LIVENESS_MS milliseconds (default 5000). AURA_LIVENESS_ROUNDS
 * runs exactly that many rounds instead; AURA_LIVENESS_SEED sets the first round's seed
 * (round i uses seed + i). A seed replays a round's operations, not its interleaving.
 * Either way a run stops before the suite's timeout (T_LIMIT), printing the seed to go on
 * from: a longer campaign is several runs.
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "backend.h"
#include "io_route.h"
#include "test_util.h"

#define MAXTHR	 4
#define NOPS	 12 /* per thread per round */
#define FILE_SZ	 65536
#define BLK	 512
#define T_LIMIT	 120 /* the suite's own timeout, seconds; the watchdog fires first */
#define HANG_DEF 20

enum what {
	W_START,
	W_SUBMIT,
	W_REQ_WAIT,
	W_REQ_POLL0,
	W_WAIT,
	W_POLL,
	W_FLUSH,
	W_CANCEL,
	W_HANDOFF,
	W_DONE,
};

static const char *const what_name[] = {
	"starting",
	"submitting",
	"auraio_request_wait(-1)",
	"auraio_request_wait(0) loop",
	"auraio_wait(-1)",
	"auraio_poll loop",
	"auraio_flush",
	"auraio_cancel",
	"waiting for its callback, not calling in",
	"done",
};

enum kind {
	K_REQ_WAIT,
	K_REQ_POLL0,
	K_CB_WAIT,
	K_CB_POLL,
	K_CB_FLUSH,
	K_BATCH,
	K_CANCEL,
	K_XCANCEL,
	K_HANDOFF,
	K_N,
};

struct round {
	auraio_engine_t *e;
	unsigned seed;
	int rings, nthr;
	bool uring;
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int finished;
	/* K_XCANCEL: a thread posts its pipe read here and waits for it; the canceller
	 * thread cancels it and moves on, never waiting for it. */
	_Atomic(auraio_request_t *) box[MAXTHR];
	sem_t posted;
	atomic_bool stop;
	pthread_t canceller;
	pthread_t loop; /* an event loop: auraio_wait(-1) until the round ends */
};

struct worker {
	struct round *rd;
	pthread_t thread;
	unsigned rng;
	int idx;
	atomic_int tid;
	atomic_int what;
	atomic_int op;
	atomic_int kind;
	int pipe[2];
};

struct cb_done {
	atomic_int n;
	atomic_long res;
};

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 16) & 0x7fff;
}

static void done_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct cb_done *d = ud;

	(void) req;
	atomic_store(&d->res, (long) res);
	atomic_fetch_add(&d->n, 1);
}

static void set_what(struct worker *w, enum what x)
{
	atomic_store(&w->what, (int) x);
}

/* A read of one block, retried while the ring is full (EAGAIN: reap, then retry). */
static auraio_request_t *read_blk(struct worker *w, int fd, void *buf, off_t off, struct cb_done *d)
{
	auraio_request_t *req;

	set_what(w, W_SUBMIT);
	while (!(req = auraio_read(w->rd->e, fd, auraio_buf(buf), fd == w->rd->fd ? BLK : 1, off,
				   d ? done_cb : NULL, d))) {
		cr_assert_eq(errno, EAGAIN, "submit: %s", strerror(errno));
		auraio_poll(w->rd->e);
		sched_yield();
	}
	return req;
}

/* Until the callback ran, on this thread or any other: the way the kind says. */
static void until_called(struct worker *w, struct cb_done *d, int want, enum kind k)
{
	auraio_engine_t *e = w->rd->e;
	int rc;

	if (k == K_CB_FLUSH || k == K_HANDOFF) {
		set_what(w, W_FLUSH);
		while ((rc = auraio_flush(e)) == -EAGAIN || rc == -EBUSY)
			;
		cr_assert_geq(rc, 0);
	}
	while (atomic_load(&d->n) < want) {
		if (k == K_HANDOFF) { /* the event loop thread (or anyone) delivers it */
			set_what(w, W_HANDOFF);
			sched_yield();
		} else if (k == K_CB_POLL) {
			set_what(w, W_POLL);
			cr_assert_geq(auraio_poll(e), 0);
			sched_yield();
		} else {
			set_what(w, W_WAIT);
			cr_assert_geq(auraio_wait(e, -1), 0);
		}
	}
}

static void check_read(long res, const char *buf, off_t off)
{
	cr_assert_eq(res, BLK);
	cr_assert(check_pattern(buf, BLK, (uint64_t) off));
}

static void collect(struct worker *w, auraio_request_t *req, bool poll0, ssize_t *res)
{
	int rc;

	if (!poll0) {
		set_what(w, W_REQ_WAIT);
		cr_assert_eq(auraio_request_wait(w->rd->e, req, -1, res), 0);
		return;
	}
	set_what(w, W_REQ_POLL0);
	while ((rc = auraio_request_wait(w->rd->e, req, 0, res)) == -ETIMEDOUT)
		sched_yield();
	cr_assert_eq(rc, 0);
}

/* A pipe read only a cancel completes: cancelled - by this thread, or by the canceller
 * thread while this one waits (cross) - then collected with -ECANCELED. */
static void cancel_op(struct worker *w, bool waitable, bool cross)
{
	auraio_engine_t *e = w->rd->e;
	struct cb_done d = { 0 };
	auraio_request_t *req;
	ssize_t res = 0;
	char b;
	int rc;

	req = read_blk(w, w->pipe[0], &b, 0, waitable ? NULL : &d);
	if (cross) {
		atomic_store(&w->rd->box[w->idx], req);
		cr_assert_eq(sem_post(&w->rd->posted), 0);
	} else {
		set_what(w, W_CANCEL);
		while ((rc = auraio_cancel(e, req)) == -EAGAIN)
			auraio_poll(e);
		cr_assert_eq(rc, 0);
	}
	if (waitable) {
		collect(w, req, rnd(&w->rng) % 2, &res);
	} else {
		until_called(w, &d, 1, K_CB_WAIT);
		res = atomic_load(&d.res);
	}
	cr_assert_eq(res, -ECANCELED);
}

static void rearm(struct worker *w)
{
	auraio_fault_t f = { .fd = -1, .kind = AURAIO_FAULT_ENTER };

	f.skip = rnd(&w->rng) % 6;
	f.count = 1 + rnd(&w->rng) % 4;
	cr_assert_eq(auraio_fault_set(w->rd->e, &f), 0);
}

static void one_op(struct worker *w, enum kind k)
{
	char buf[2][BLK];
	off_t off[2];
	struct cb_done d = { 0 };
	auraio_request_t *req;
	ssize_t res = 0;

	for (int i = 0; i < 2; i++)
		off[i] = (off_t) (rnd(&w->rng) % (FILE_SZ / BLK)) * BLK;
	switch (k) {
	case K_REQ_WAIT:
	case K_REQ_POLL0:
		req = read_blk(w, w->rd->fd, buf[0], off[0], NULL);
		collect(w, req, k == K_REQ_POLL0, &res);
		check_read(res, buf[0], off[0]);
		break;
	case K_CB_WAIT:
	case K_CB_POLL:
	case K_CB_FLUSH:
	case K_HANDOFF:
		read_blk(w, w->rd->fd, buf[0], off[0], &d);
		until_called(w, &d, 1, k);
		check_read(atomic_load(&d.res), buf[0], off[0]);
		break;
	case K_BATCH: {
		auraio_op_t ops[2];
		int rc, at = 0;

		for (int i = 0; i < 2; i++)
			ops[i] = (auraio_op_t){ .opcode = AURAIO_OP_READ,
						.fd = w->rd->fd,
						.buf = auraio_buf(buf[i]),
						.len = BLK,
						.offset = off[i],
						.cb = done_cb,
						.user_data = &d };
		set_what(w, W_SUBMIT);
		while (at < 2) {
			rc = auraio_submit_batch(w->rd->e, ops + at, 2 - at, NULL);
			if (rc > 0) {
				at += rc;
				continue;
			}
			cr_assert_eq(rc, -EAGAIN);
			auraio_poll(w->rd->e);
		}
		until_called(w, &d, 2, K_CB_WAIT);
		cr_assert_eq(atomic_load(&d.res), BLK);
		break;
	}
	default:
		cancel_op(w, rnd(&w->rng) % 2, k == K_XCANCEL);
		break;
	}
}

/* Cancels what the workers post, once each, and never waits for it: a thread that
 * cancels and moves on (auraio_cancel returned 0: the request "then completes"). */
static void *canceller(void *arg)
{
	struct round *rd = arg;

	for (;;) {
		while (sem_wait(&rd->posted) != 0)
			cr_assert_eq(errno, EINTR);
		if (atomic_load(&rd->stop))
			return NULL;
		for (int i = 0; i < rd->nthr; i++) {
			auraio_request_t *req = atomic_exchange(&rd->box[i], NULL);
			int rc;

			if (!req)
				continue;
			while ((rc = auraio_cancel(rd->e, req)) == -EAGAIN)
				auraio_poll(rd->e);
			cr_assert_eq(rc, 0);
		}
	}
}

/* The submit rules' other party: a thread whose blocking auraio_wait() delivers the
 * callbacks of threads that flushed and wait without calling in (K_HANDOFF). */
static void *event_loop(void *arg)
{
	struct round *rd = arg;

	while (!atomic_load(&rd->stop))
		if (auraio_wait(rd->e, -1) == 0)
			sched_yield(); /* nothing in flight: do not spin flat out */
	return NULL;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct round *rd = w->rd;

	atomic_store(&w->tid, (int) syscall(SYS_gettid));
	for (int i = 0; i < NOPS; i++) {
		enum kind k = (enum kind)(rnd(&w->rng) % K_N);

		atomic_store(&w->op, i);
		atomic_store(&w->kind, (int) k);
		route_to(rd->e, rnd(&w->rng) % (unsigned) rd->rings);
		if (rd->uring && w->idx == 0 && rnd(&w->rng) % 3 == 0)
			rearm(w);
		one_op(w, k);
	}
	set_what(w, W_DONE);
	pthread_mutex_lock(&rd->lock);
	rd->finished++;
	pthread_cond_signal(&rd->cv);
	pthread_mutex_unlock(&rd->lock);
	return NULL;
}

static const char *kind_name(int k)
{
	static const char *const n[] = { "waitable/request_wait",
					 "waitable/request_wait(0)",
					 "callback/wait",
					 "callback/poll",
					 "callback/flush",
					 "batch",
					 "cancel",
					 "cancelled by another thread",
					 "callback/flush, then delivered by others" };
	return k >= 0 && k < K_N ? n[k] : "?";
}

/* The round stalled: say what every thread and every ring was doing, then fail. */
static void report_stall(struct round *rd, struct worker *ws)
{
	fprintf(stderr, "liveness: round seed %u STALLED (%d rings, %d threads, %s)\n", rd->seed,
		rd->rings, rd->nthr, rd->uring ? "io_uring" : "threads");
	for (int i = 0; i < rd->nthr; i++) {
		struct worker *w = &ws[i];
		int what = atomic_load(&w->what);

		fprintf(stderr, "  thread %d (tid %d): op %d (%s), %s%s\n", i, atomic_load(&w->tid),
			atomic_load(&w->op), kind_name(atomic_load(&w->kind)), what_name[what],
			what != W_DONE && thread_sleeping((pid_t) atomic_load(&w->tid)) ? ", asleep"
											: "");
	}
	for (int i = 0; i < rd->rings; i++) {
		struct ring *r = &rd->e->rings[i];

		fprintf(stderr,
			"  ring %d: in flight %llu, staged %u, need_enter %d, internal pending "
			"%llu, cq_lock %u, sq_lock %u, eventcount sleepers %u",
			i, (unsigned long long) ring_in_flight(r), atomic_load(&r->staged),
			(int) atomic_load(&r->need_enter),
			(unsigned long long) (counter_get(&r->internal_submitted) -
					      counter_get(&r->internal_completed)),
			atomic_load(&r->cq_lock.v), atomic_load(&r->sq_lock.v),
			atomic_load(&r->ev.sleepers));
		if (rd->uring)
			fprintf(stderr, ", SQ published unconsumed %u",
				*U(r)->sq.ktail - *U(r)->sq.khead);
		fprintf(stderr, "\n");
	}
	cr_assert_fail("liveness: round seed %u stalled (AURA_LIVENESS_SEED=%u replays it)",
		       rd->seed, rd->seed);
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *s = getenv(name);

	return s && *s ? (unsigned) strtoul(s, NULL, 0) : dflt;
}

static void run_round(unsigned seed, int fd, unsigned hang_s)
{
	struct round rd = { .seed = seed, .fd = fd };
	struct worker ws[MAXTHR];
	unsigned s = seed;
	auraio_options_t o;
	pthread_condattr_t ca;
	struct timespec dl;
	auraio_stats_t st;

	rd.rings = 1 + (int) (rnd(&s) % 2);
	rd.nthr = 2 + (int) (rnd(&s) % 3);
	auraio_options_init(&o);
	o.ring_count = rd.rings;
	o.queue_depth = rnd(&s) % 2 ? 8 : 16;
	if (rnd(&s) % 5 == 0)
		o.backend = AURAIO_BACKEND_THREADS;
	rd.e = auraio_create_with_options(&o);
	cr_assert_not_null(rd.e);
	cr_assert_eq(auraio_get_stats(rd.e, &st), 0);
	rd.uring = st.backend == AURAIO_BACKEND_IO_URING;
	if (rd.uring && rnd(&s) % 4 != 0) {
		auraio_fault_t f = { .fd = -1, .kind = AURAIO_FAULT_ENTER };

		f.skip = rnd(&s) % 4;
		f.count = 1 + rnd(&s) % 3;
		cr_assert_eq(auraio_fault_set(rd.e, &f), 0);
	}
	pthread_mutex_init(&rd.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rd.cv, &ca);
	cr_assert_eq(sem_init(&rd.posted, 0, 0), 0);
	cr_assert_eq(pthread_create(&rd.canceller, NULL, canceller, &rd), 0);
	cr_assert_eq(pthread_create(&rd.loop, NULL, event_loop, &rd), 0);
	for (int i = 0; i < rd.nthr; i++) {
		ws[i] = (struct worker){ .rd = &rd, .idx = i, .rng = seed * 31u + (unsigned) i };
		cr_assert_eq(pipe(ws[i].pipe), 0);
		cr_assert_eq(pthread_create(&ws[i].thread, NULL, work, &ws[i]), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += hang_s;
	pthread_mutex_lock(&rd.lock);
	while (rd.finished < rd.nthr)
		if (pthread_cond_timedwait(&rd.cv, &rd.lock, &dl) == ETIMEDOUT)
			break;
	if (rd.finished < rd.nthr) {
		pthread_mutex_unlock(&rd.lock);
		report_stall(&rd, ws);
	}
	pthread_mutex_unlock(&rd.lock);
	for (int i = 0; i < rd.nthr; i++) {
		pthread_join(ws[i].thread, NULL);
		close(ws[i].pipe[0]);
		close(ws[i].pipe[1]);
	}
	atomic_store(&rd.stop, true);
	cr_assert_eq(sem_post(&rd.posted), 0);
	pthread_join(rd.canceller, NULL);
	pthread_join(rd.loop, NULL);
	sem_destroy(&rd.posted);
	for (int i = 0; i < rd.rings; i++)
		cr_assert_eq(ring_in_flight(&rd.e->rings[i]), 0);
	auraio_destroy(rd.e);
	pthread_cond_destroy(&rd.cv);
	pthread_condattr_destroy(&ca);
	pthread_mutex_destroy(&rd.lock);
}

Test(liveness, waits_polls_flushes_and_cancels_under_refused_entries_never_stall,
     .timeout = T_LIMIT)
{
	unsigned seed0 = env_uint("AURA_LIVENESS_SEED", 1);
	unsigned rounds = env_uint("AURA_LIVENESS_ROUNDS", 0);
	uint64_t budget = (uint64_t) env_uint("AURA_LIVENESS_MS", 5000) * 1000000ull;
	unsigned hang_s = env_uint("AURA_LIVENESS_HANG_S", HANG_DEF);
	uint64_t start = test_now_ns();
	int fd = temp_file(FILE_SZ, 0);
	auraio_fault_t probe = { .fd = -1, .count = 1, .kind = AURAIO_FAULT_ENTER };
	auraio_engine_t *e = auraio_create();
	unsigned i;

	cr_assert_not_null(e);
	if (auraio_fault_set(e, &probe) == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	auraio_destroy(e);
	for (i = 0; rounds ? i < rounds : test_now_ns() - start < budget; i++) {
		/* The suite's timeout would end a long run as a failure: stop in time, and say
		 * where to go on from. */
		if (test_now_ns() - start + (uint64_t) (hang_s + 5) * 1000000000ull >=
		    (uint64_t) T_LIMIT * 1000000000ull) {
			fprintf(stderr,
				"liveness: stopping before the suite's %d s timeout; go on with "
				"AURA_LIVENESS_SEED=%u\n",
				T_LIMIT, seed0 + i);
			break;
		}
		run_round(seed0 + i, fd, hang_s);
	}
	fprintf(stderr, "liveness: %u rounds from seed %u in %.1f s\n", i, seed0,
		(double) (test_now_ns() - start) / 1e9);
	close(fd);
}
