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
