/* SPDX-License-Identifier: MIT */
/*
 * Regression: a thread that publishes SQEs and then waits must submit them even when it
 * finds completions already waiting. It cleared need_enter and the entries are no
 * longer staged, so no later publish would enter for them: the wait returned early
 * without entering, and the entry sat in the SQ ring while every thread slept (seen as
 * a hang of the WAL: a seal-block write published, never submitted).
 *
 * Built on the engine's internals: the window between reaping nothing and checking the
 * CQ is a few instructions wide, so the test sets up its outcome directly - a CQE
 * posted and not reaped, one more SQE published and not submitted - and calls the
 * backend's wait.
 */
#include "backend_uring.h"
#include "engine.h"
#include "test_util.h"

static void read_done(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	cr_assert_eq(res, 4096);
	*(int *) ud = 1;
}

Test(wait_submits, a_wait_that_finds_completions_ready_still_submits_what_was_published)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;
	struct ring *r;
	struct io_uring *u;
	struct io_uring_sqe *sqe;
	unsigned to_submit;
	char buf[4096];
	int fd = temp_file(4096, 0), done = 0;

	auraio_options_init(&o);
	o.ring_count = 1;
	o.disable_adaptive = true;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("io_uring backend not in use: %s", st.backend_reason);
	if (st.sqpoll_active)
		cr_skip_test("SQPOLL ring: the kernel thread submits");
	r = &e->rings[0];
	u = U(r);

	/* A read whose CQE is posted but not reaped: a page-cache read completes inline
	 * when it is submitted (a lone request is submitted at once). */
	cr_assert_not_null(auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 0, read_done, &done));
	while (io_uring_cq_ready(u) == 0) /* with task work parked, enter to post it */
		io_uring_get_events(u);

	/* One more entry published, not submitted - as ring_wait_dispatch leaves it. */
	sq_lock(r);
	sqe = io_uring_get_sqe(u);
	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, UD_INTERNAL);
	counter_add(&r->internal_submitted, 1);
	to_submit = uring_publish(r);
	sq_unlock(r);
	cr_assert_eq(to_submit, 1);
	atomic_store(&r->need_enter, false);

	cr_assert_eq(r->ops->wait(r, to_submit, -1), 0);
	cr_assert(io_uring_smp_load_acquire(u->sq.khead) == u->sq.sqe_tail ||
		      atomic_load(&r->need_enter),
		  "the published entry was neither submitted nor left for a retry");

	/* Everything completes: the read, and the nop (internal). */
	while (!done)
		cr_assert_geq(auraio_wait(e, 1000), 0);
	auraio_destroy(e); /* drains the internal nop too */
	close(fd);
}

/*
 * Regression: a batch a callback sends at the batch threshold counts the time its
 * entries waited. They are stamped with the delivery pass's time (submit_clock), and
 * the batch was closed with that same time, so it was counted as sent without waiting
 * however long the callbacks before it ran - and the batch optimizer, which halves the
 * threshold when batches wait too long (docs/aimd.md), never saw those waits. The
 * optimizer runs only with the adaptive controller on (a fixed limit reads no clock for
 * it): an adaptive ring, whose threshold starts at 1 - every submission its own batch.
 */
struct late_batch {
	auraio_engine_t *e;
	struct ring *r;
	int fd, done;
	uint64_t spun_ns, waited_ns, batches;
	char buf[16][512];
};

static void late_read_done(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	cr_assert_eq(res, 512);
	((struct late_batch *) ud)->done++;
}

static void late_batch_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct late_batch *lb = ud;
	uint64_t start = now_ns(), wait0, batches0;

	(void) req;
	(void) res;
	wait0 = counter_get(&lb->r->batch_wait_ns);
	batches0 = counter_get(&lb->r->batches);
	/* The callbacks before the batch's entries take a millisecond (the clock must
	 * advance; nothing is waited for). */
	while (now_ns() < start + NSEC_PER_MSEC)
		;
	lb->spun_ns = now_ns() - start;
	for (int i = 0; i < 16; i++)
		cr_assert_not_null(auraio_read(lb->e, lb->fd, auraio_buf(lb->buf[i]), 512,
					       (off_t) i * 512, late_read_done, lb));
	lb->waited_ns = counter_get(&lb->r->batch_wait_ns) - wait0;
	lb->batches = counter_get(&lb->r->batches) - batches0;
}

Test(wait_submits, a_batch_a_callback_sends_counts_the_time_its_entries_waited)
{
	struct late_batch lb = { .fd = temp_file(16 * 512, 0) };
	auraio_ring_stats_t rs;
	char one[1];

	auraio_engine_t *engine;
	auraio_options_t o;

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 64;
	o.initial_in_flight = 64; /* room for the 16 reads from the start */
	engine = auraio_create_with_options(&o);
	cr_assert_not_null(engine);
	lb.e = engine;
	cr_assert_eq(auraio_get_ring_stats(engine, 0, &rs), 0);
	cr_assert_eq(rs.batch_threshold, 1);
	lb.r = &engine->rings[0];
	cr_assert_not_null(auraio_read(engine, lb.fd, auraio_buf(one), 1, 0, late_batch_cb, &lb));
	while (lb.spun_ns == 0)
		cr_assert_geq(auraio_wait(engine, 1000), 0);
	cr_assert_geq(lb.batches, 1, "nothing was sent from the callback");
	cr_assert_geq(lb.waited_ns, lb.spun_ns, "the entries waited %lu ns, counted %lu ns",
		      (unsigned long) lb.spun_ns, (unsigned long) lb.waited_ns);
	while (lb.done < 16)
		cr_assert_geq(auraio_wait(engine, 1000), 0);
	auraio_destroy(engine);
	close(lb.fd);
}
