/* SPDX-License-Identifier: MIT */
/* Engine internals that no public call can reach on demand: request generations, the
 * latency histogram's arithmetic, what one kernel entry submits, and a cancel of an
 * orphan held for resubmission. */
#include <math.h>
#include <pthread.h>
#include <sched.h>

#include "backend.h"
#include "latency_hist.h"
#include "request.h"
#include "test_util.h"

Test(request_pool, a_stale_completion_never_maps_to_a_recycled_request)
{
	struct request_pool pool;
	struct auraio_request *a, *b;
	uint64_t old_ud;

	cr_assert_eq(request_pool_init(&pool, 1, 0), 0);
	a = request_alloc(&pool);
	cr_assert_not_null(a);
	atomic_store(&a->state, REQ_IN_FLIGHT);
	old_ud = request_ud(a);
	cr_assert_eq(request_from_ud(&pool, old_ud), a);
	a->next = NULL;
	request_release_list(&pool, a, a);
	cr_assert_null(request_from_ud(&pool, old_ud), "a freed request took a completion");
	b = request_alloc(&pool);
	cr_assert_eq(b, a, "one slot: the same request comes back");
	atomic_store(&b->state, REQ_IN_FLIGHT);
	cr_assert_neq(request_ud(b), old_ud, "the generation must change");
	cr_assert_null(request_from_ud(&pool, old_ud), "stale user_data matched the new life");
	cr_assert_eq(request_from_ud(&pool, request_ud(b)), b);
	cr_assert_null(request_from_ud(&pool, UINT64_MAX));
	cr_assert_null(request_alloc(&pool), "an empty pool yields NULL");
	request_pool_fini(&pool);
}

Test(request_pool, requests_are_two_cache_lines_with_completion_fields_in_the_second)
{
	cr_assert_eq(sizeof(struct auraio_request), 128);
	cr_assert_eq(offsetof(struct auraio_request, result), 64);
	cr_assert_lt(offsetof(struct auraio_request, user_data), 64);
	cr_assert_lt(offsetof(struct auraio_request, cb), 64);
}

static struct hist_snapshot snap(struct latency_hist *h)
{
	struct hist_snapshot s;

	hist_snapshot(h, &s);
	return s;
}

Test(latency_hist, quantiles_are_within_the_bucket_resolution)
{
	static struct latency_hist h;
	struct hist_snapshot s;

	for (uint64_t v = 1; v <= 100000; v++)
		hist_record(&h, v * 100); /* uniform 100 ns .. 10 ms */
	s = snap(&h);
	cr_assert_eq(s.total, 100000);
	cr_assert_eq(s.max_ns, 10000000);
	cr_assert(fabs(hist_quantile(&s, 0.5) - 5e6) / 5e6 < 0.0625, "p50 %f",
		  hist_quantile(&s, 0.5));
	cr_assert(fabs(hist_quantile(&s, 0.99) - 9.9e6) / 9.9e6 < 0.0625, "p99 %f",
		  hist_quantile(&s, 0.99));
	cr_assert_leq(hist_quantile(&s, 0.999), 1e7);
}

Test(latency_hist, bucket_bounds_cover_every_value_once)
{
	for (uint64_t v = 0; v < 1000000; v = v * 3 / 2 + 1) {
		unsigned b = hist_bucket(v);

		cr_assert_geq(v, hist_bucket_low(b), "v %llu bucket %u", (unsigned long long) v, b);
		cr_assert_lt(v, hist_bucket_low(b) + hist_bucket_width(b));
	}
	cr_assert_lt(hist_bucket(UINT64_MAX), HIST_BUCKETS);
}

Test(latency_hist, an_empty_histogram_reports_zero)
{
	static struct latency_hist h;
	struct hist_snapshot s = snap(&h);

	cr_assert_eq(hist_quantile(&s, 0.99), 0);
}

/*
 * A reap pass counts its completions in runs of one latency (complete.c, struct pass):
 * every request a delivery's callbacks submit carries that delivery's time. The ring's
 * histogram must still hold one count per completion, in the bucket of that
 * completion's own latency: readers resubmitting from their callbacks (long runs) mixed
 * with reads submitted from outside (a run each), against the same counts made one at a
 * time from auraio_request_latency_ns() in the callbacks.
 */
#define RUN_SLOTS 8
#define RUN_IOS	  3000

struct run_check {
	auraio_engine_t *e;
	int fd;
	int left; /* resubmissions still to make from callbacks */
	uint64_t done;
	uint64_t max_ns;
	uint64_t counts[HIST_BUCKETS];
	bool outside_busy; /* the read into buf[RUN_SLOTS] is in flight: one at a time */
	char buf[RUN_SLOTS + 1][4096];
};

static void run_check_cb(struct auraio_request *req, ssize_t res, void *ud)
{
	struct run_check *c = ud;
	uint64_t lat = auraio_request_latency_ns(req);
	int slot = (int) ((char(*)[4096]) req->addr - c->buf);

	cr_assert_eq(res, 4096);
	c->counts[hist_bucket(lat)]++;
	c->max_ns = lat > c->max_ns ? lat : c->max_ns;
	c->done++;
	if (slot == RUN_SLOTS)
		c->outside_busy = false;
	if (slot < RUN_SLOTS && c->left > 0) {
		c->left--;
		cr_assert_not_null(auraio_read(c->e, c->fd, auraio_buf(c->buf[slot]), 4096,
					       (off_t) (c->done % 16) * 4096, run_check_cb, c));
	}
}

Test(latency_hist, a_pass_counts_every_completion_in_its_own_latency_bucket)
{
	static struct run_check c;
	struct hist_snapshot s;
	auraio_ring_stats_t rs;
	uint64_t outside = 0, whist = 0;
	struct ring *r;

	c.e = test_fixed_engine(1, 2 * RUN_SLOTS);
	cr_assert_not_null(c.e);
	c.fd = temp_file(16 * 4096, 0);
	c.left = RUN_IOS;
	for (int i = 0; i < RUN_SLOTS; i++)
		cr_assert_not_null(
		    auraio_read(c.e, c.fd, auraio_buf(c.buf[i]), 4096, 0, run_check_cb, &c));
	while (c.done < RUN_IOS + RUN_SLOTS + outside) {
		/* One read from outside a callback now and then: its own submit time. */
		if (outside < RUN_IOS / 10 && c.done % 7 == 0 && !c.outside_busy &&
		    auraio_read(c.e, c.fd, auraio_buf(c.buf[RUN_SLOTS]), 4096, 0, run_check_cb,
				&c)) {
			outside++;
			c.outside_busy = true;
		}
		cr_assert_geq(auraio_wait(c.e, -1), 0);
	}
	r = &c.e->rings[0];
	hist_snapshot(&r->hist, &s);
	cr_assert_eq(auraio_get_ring_stats(c.e, 0, &rs), 0);
	cr_assert_eq(rs.ops_completed, c.done);
	cr_assert_eq(s.total, c.done, "the histogram holds %llu of %llu completions",
		     (unsigned long long) s.total, (unsigned long long) c.done);
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		cr_assert_eq(s.count[b], c.counts[b], "bucket %u: %llu, the callbacks saw %llu", b,
			     (unsigned long long) s.count[b], (unsigned long long) c.counts[b]);
	cr_assert_eq(s.max_ns, c.max_ns);
	/* The controller's window holds what it counted since it last closed. */
	for (unsigned b = 0; b < WHIST_BUCKETS; b++)
		whist += r->ctl.whist[b];
	cr_assert_eq(whist, r->ctl.win_n);
	cr_log_info("%llu completions, %llu submitted from outside a callback",
		    (unsigned long long) c.done, (unsigned long long) outside);
	auraio_destroy(c.e);
	close(c.fd);
}

/* An engine of one io_uring ring (SQPOLL with a 1 ms idle if `sqpoll`), or a skip. */
static auraio_engine_t *one_uring_ring_qd(bool sqpoll, int queue_depth)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.ring_count = 1;
	if (queue_depth)
		o.queue_depth = queue_depth;
	o.backend = AURAIO_BACKEND_IO_URING;
	o.enable_sqpoll = sqpoll;
	o.sqpoll_idle_ms = 1;
	e = auraio_create_with_options(&o);
	if (!e)
		cr_skip_test("io_uring is not available: %s", strerror(errno));
	return e;
}

static auraio_engine_t *one_uring_ring(bool sqpoll)
{
	return one_uring_ring_qd(sqpoll, 0);
}

/*
 * A thread enters the kernel for the entries it counted when it published them; by then
 * other threads may have published more, a linked chain among them. The kernel takes
 * only as many as it is asked for, and a chain does not continue into the next
 * submission: asked for the stale count, it took a single entry and the head of a
 * write + fdatasync chain, and the sync went unlinked in a later enter. An enter must
 * take everything published. Here: one entry, then a chain of two, all published; an
 * enter for "1" leaves none behind.
 */
Test(uring_enter, an_enter_for_a_stale_count_takes_every_published_entry)
{
	auraio_engine_t *e;
	struct ring *r;

	e = one_uring_ring(false);
	r = &e->rings[0];
	sq_lock(r);
	cr_assert_eq(uring_make_room(r, 3), 3);
	for (int i = 0; i < 3; i++) {
		struct io_uring_sqe *sqe = uring_next_sqe(r);

		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, UD_INTERNAL);
		if (i == 1)
			sqe->flags |= IOSQE_IO_LINK; /* entries 1 and 2: a chain */
	}
	counter_add(&r->internal_submitted, 3); /* their CQEs are the engine's own */
	cr_assert_eq(uring_publish(r), 3);
	sq_unlock(r);
	cr_assert_eq(r->ops->enter(r, 1), 0);
	cr_assert_eq(uring_sq_room(r), U(r)->sq.ring_entries,
		     "the enter left %u published entries behind: a chain could be split",
		     U(r)->sq.ring_entries - uring_sq_room(r));
	auraio_destroy(e); /* waits for the three CQEs */
}

/*
 * The kernel waits for completions only when it took every entry it was asked for
 * (io_uring_enter: "ret != to_submit" skips the wait). Asked for the whole SQ (enter_count)
 * it always takes fewer, so a wait that also submits returned at once with nothing
 * completed: auraio_wait(-1) came back with 0 while its I/O was in flight. Here: a
 * published 200 ms timeout; a wait with no limit that submits it must return with its
 * CQE ready.
 */
Test(uring_wait, a_wait_that_submits_still_blocks_for_a_completion)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };
	auraio_engine_t *e;
	struct io_uring_sqe *sqe;
	struct ring *r;
	unsigned to_submit;
	int rc;

	e = one_uring_ring(false);
	r = &e->rings[0];
	sq_lock(r);
	cr_assert_eq(uring_make_room(r, 1), 1);
	sqe = uring_next_sqe(r);
	io_uring_prep_timeout(sqe, &ts, 0, 0);
	io_uring_sqe_set_data64(sqe, UD_INTERNAL);
	counter_add(&r->internal_submitted, 1); /* its CQE is the engine's own */
	to_submit = uring_publish(r);
	sq_unlock(r);
	cr_assert_eq(to_submit, 1);
	/* A notify signal (COOP_TASKRUN) may end a wait early: then wait again. */
	while ((rc = r->ops->wait(r, to_submit, -1)) == -EINTR)
		to_submit = 0;
	cr_assert_eq(rc, 0);
	cr_assert_geq(io_uring_cq_ready(U(r)), 1,
		      "the wait submitted the timeout and returned without waiting for it");
	auraio_destroy(e); /* reaps the timeout's CQE */
}

/*
 * With SQPOLL an enter only wakes the kernel thread, and the kernel returns the count it
 * was asked for, not what it took. Asked for the whole SQ (enter_count), every wake-up
 * added ring_entries to sqes_submitted: far more SQEs than requests. Here: reads issued
 * while the SQ thread sleeps, each waking it.
 */
Test(uring_enter, waking_the_sqpoll_thread_counts_only_what_was_published)
{
	auraio_engine_t *e;
	auraio_stats_t st;
	struct ring *r;
	char buf[512];
	int fd = temp_file(8192, 0);

	e = one_uring_ring(true);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (!st.sqpoll_active)
		cr_skip_test("the kernel refused SQPOLL here: %s", st.backend_reason);
	r = &e->rings[0];
	for (int i = 0; i < 4; i++) {
		auraio_request_t *req;
		ssize_t res = 0;

		/* The SQ thread goes to sleep after its idle time: wait until it has. */
		while (!(IO_URING_READ_ONCE(*U(r)->sq.kflags) & IORING_SQ_NEED_WAKEUP))
			sched_yield();
		req = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 0, NULL, NULL);
		cr_assert_not_null(req);
		cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
		cr_assert_eq(res, (ssize_t) sizeof(buf));
	}
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_leq(st.total.sqes_submitted, st.total.ops_submitted,
		      "%llu SQEs counted for %llu requests",
		      (unsigned long long) st.total.sqes_submitted,
		      (unsigned long long) st.total.ops_submitted);
	auraio_destroy(e);
	close(fd);
}

/* A CQE for ud with result res, made by the kernel: a NOP with IORING_NOP_INJECT_RESULT
 * (nop_flags shares rw_flags' place; not in every header yet). */
static void inject_cqe(struct ring *r, uint64_t ud, int res)
{
	struct io_uring_sqe *sqe;
	unsigned to_submit;

	sq_lock(r);
	cr_assert_eq(uring_make_room(r, 1), 1);
	sqe = uring_next_sqe(r);
	io_uring_prep_nop(sqe);
	sqe->rw_flags = 1u << 0; /* IORING_NOP_INJECT_RESULT */
	sqe->len = (unsigned) res;
	io_uring_sqe_set_data64(sqe, ud);
	to_submit = uring_publish(r);
	sq_unlock(r);
	cr_assert_eq(r->ops->enter(r, to_submit), 0);
}

/* Does this kernel make a NOP complete with the result it carries? */
static bool nop_injects_results(void)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	bool yes = false;

	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	io_uring_prep_nop(io_uring_get_sqe(&ring));
	ring.sq.sqes[0].rw_flags = 1u << 0; /* IORING_NOP_INJECT_RESULT */
	ring.sq.sqes[0].len = (unsigned) -EFAULT;
	if (io_uring_submit_and_wait(&ring, 1) == 1 && io_uring_peek_cqe(&ring, &cqe) == 0)
		yes = cqe->res == -EFAULT;
	io_uring_queue_exit(&ring);
	return yes;
}

/*
 * An orphan held for resubmission, made by hand on a fresh 1-ring io_uring engine: the
 * chain a (a read of the empty pipe p[0]) -> b (a write of buf to p[1]) is marked in
 * flight without reaching the kernel, and a NOP injects a's orphan CQE (-EFAULT): a is
 * held until b's CQE comes (inject it with inject_cqe). Skips where the kernel cannot.
 */
struct held_chain {
	int queue_depth; /* of the engine; 0 = the default */
	auraio_engine_t *e;
	struct ring *r;
	struct auraio_request *a, *b;
	int p[2];
	char buf[16];
};

static void held_chain_make(struct held_chain *h)
{
	struct auraio_request *a, *b;
	struct ring *r;

	if (!nop_injects_results())
		cr_skip_test("the kernel cannot inject a NOP's result (IORING_NOP_INJECT_RESULT)");
	cr_assert_eq(pipe(h->p), 0);
	h->e = one_uring_ring_qd(false, h->queue_depth);
	r = h->r = &h->e->rings[0];
	sq_lock(r);
	a = h->a = request_alloc(&r->pool);
	b = h->b = request_alloc(&r->pool);
	cr_assert(a && b);
	a->opcode = AURAIO_OP_READ;
	a->flags = REQF_WAITABLE | REQF_LINK;
	a->fd = h->p[0];
	a->addr = h->buf;
	a->len = sizeof(h->buf);
	a->offset = -1;
	a->rw_flags = 0;
	a->chain_next = b;
	b->opcode = AURAIO_OP_WRITE;
	b->flags = REQF_WAITABLE;
	b->fd = h->p[1];
	b->addr = h->buf;
	b->len = sizeof(h->buf);
	b->offset = -1;
	b->rw_flags = 0;
	b->chain = CHAIN_PRED;
	atomic_store(&a->state, REQ_IN_FLIGHT);
	atomic_store(&b->state, REQ_IN_FLIGHT);
	atomic_store(&r->submitted, atomic_load(&r->submitted) + 2);
	sq_unlock(r);
	inject_cqe(r, request_ud(a), -EFAULT); /* the read, orphaned: held */
	auraio_poll(h->e);
}

/* b's CQE comes: the chain goes out again; both requests must end cancelled. */
static void held_chain_expect_cancelled(struct held_chain *h, const char *why)
{
	ssize_t res = 0;

	inject_cqe(h->r, request_ud(h->b), -ECANCELED);
	auraio_poll(h->e);
	cr_assert_eq(auraio_request_wait(h->e, h->a, 10000, &res), 0, "%s", why);
	cr_assert_eq(res, -ECANCELED);
	cr_assert_eq(auraio_request_wait(h->e, h->b, 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	auraio_destroy(h->e);
	close(h->p[0]);
	close(h->p[1]);
}

/*
 * auraio_cancel() of a request held for resubmission (an orphan whose chain's CQEs are
 * not all in) finds nothing in the kernel; the request was then submitted again and ran
 * as if never cancelled - a read from an empty pipe never completed, though the cancel
 * had returned 0 ("completes with -ECANCELED, or with its own result if it finished
 * first"). Here the chain (a pipe read, then a write) is staged by hand and its orphan
 * CQEs are made by NOPs that inject them.
 */
Test(orphans, a_request_cancelled_while_held_is_cancelled_once_submitted_again)
{
	struct held_chain h = { 0 };

	held_chain_make(&h);
	cr_assert_eq(auraio_cancel(h.e, h.a), 0);
	held_chain_expect_cancelled(&h, "the cancelled read was submitted again and left running");
}

/*
 * A chain held for resubmission while the engine is being destroyed: ring_drain's cancel
 * of everything found it held, and it was then submitted again and left running - a
 * read from an empty pipe kept destroy waiting for ever. Here destroy's start is stood in
 * for by its flag, between the orphan CQE of the read and the rest of its chain.
 */
Test(orphans, a_chain_held_when_destroy_begins_is_cancelled_once_submitted_again)
{
	struct held_chain h = { 0 };

	held_chain_make(&h);
	atomic_store(&h.e->shutting_down, true); /* destroy has begun */
	held_chain_expect_cancelled(&h, "the held read was submitted again during destroy");
}

/*
 * A held chain goes out again with a cancel after each member auraio_cancel() was called
 * for. The resubmission waited for SQ room for all of them at once, which a full-length
 * chain with a cancel never finds in an SQ of queue_depth entries: the reaper spun for
 * ever (the engine fuzz2 hung in destroy, where every member gets one, at queue_depth 4).
 * Here queue_depth 2: the read and write, and a cancel of the read.
 */
Test(orphans, a_held_chain_as_long_as_the_queue_goes_again_with_its_cancels)
{
	struct held_chain h = { .queue_depth = 2 };

	held_chain_make(&h);
	cr_assert_eq(auraio_cancel(h.e, h.a), 0);
	held_chain_expect_cancelled(&h, "the cancelled read was submitted again and left running");
}

/*
 * An orphan submitted again after its registered slot was replaced: the resubmission
 * was built from the slot, so the write went to the slot's new file - "I/O in flight on
 * the old fd completes normally" (auraio_update_file). Here a write on slot 0 is marked
 * in flight by hand, the slot is replaced, and a NOP injects the write's orphan CQE.
 */
Test(orphans, an_orphan_whose_slot_was_replaced_goes_again_to_the_file_it_named)
{
	int a = temp_file(8192, 0), b = temp_file(8192, 0);
	struct auraio_request *w;
	auraio_engine_t *e;
	struct ring *r;
	char data[512], back[512];
	ssize_t res = 0;

	if (!nop_injects_results())
		cr_skip_test("the kernel cannot inject a NOP's result (IORING_NOP_INJECT_RESULT)");
	e = one_uring_ring(false);
	r = &e->rings[0];
	memset(data, 0xab, sizeof(data));
	cr_assert_eq(auraio_register_files(e, &a, 1), 0);
	sq_lock(r);
	w = request_alloc(&r->pool);
	cr_assert_not_null(w);
	w->opcode = AURAIO_OP_WRITE;
	w->flags = REQF_WAITABLE | REQF_FIXED_FILE;
	w->fd = a;
	w->file_slot = 0;
	w->addr = data;
	w->len = sizeof(data);
	w->offset = 0;
	w->rw_flags = 0;
	atomic_store(&w->state, REQ_IN_FLIGHT);
	atomic_store(&r->submitted, atomic_load(&r->submitted) + 1);
	sq_unlock(r);
	cr_assert_eq(auraio_update_file(e, 0, b), 0);
	inject_cqe(r, request_ud(w), -EFAULT); /* orphaned: submitted again */
	cr_assert_eq(auraio_request_wait(e, w, 10000, &res), 0);
	cr_assert_eq(res, 512, "the write: %zd", res);
	cr_assert_eq(pread(a, back, sizeof(back), 0), 512);
	cr_assert_eq(memcmp(back, data, sizeof(back)), 0, "the write missed the file it named");
	cr_assert_eq(pread(b, back, sizeof(back), 0), 512);
	cr_assert(check_pattern(back, sizeof(back), 0), "the write went to the new slot's file");
	auraio_destroy(e);
	close(a);
	close(b);
}

#ifdef AURAIO_FAULT_INJECTION
/*
 * A torn write (a TEAR fault: the write cut to its first sectors, its result replaced)
 * whose flushing thread exited before the kernel ran it: the kernel failed it with
 * -ECANCELED (no io-wq left to punt it to), and the reaper took it for a fault of its
 * own, not an orphaning - it completed -ECANCELED though nobody cancelled it (the engine
 * fuzz, seed 3303, in one run of two). It never ran: it must go again, and complete with
 * the rule's error once the cut write has run. Here the write is marked in flight by
 * hand, as fault.c makes it, and a NOP injects the orphan's CQE.
 */
Test(orphans, a_torn_write_orphaned_goes_again_and_completes_with_the_rules_error)
{
	int fd = temp_file(8192, 0);
	struct auraio_request *w;
	auraio_engine_t *e;
	struct ring *r;
	char data[1024], back[1024];
	ssize_t res = 0;

	if (!nop_injects_results())
		cr_skip_test("the kernel cannot inject a NOP's result (IORING_NOP_INJECT_RESULT)");
	e = one_uring_ring(false);
	r = &e->rings[0];
	memset(data, 0xab, sizeof(data));
	sq_lock(r);
	w = request_alloc(&r->pool);
	cr_assert_not_null(w);
	w->opcode = AURAIO_OP_WRITE;
	w->flags = REQF_WAITABLE | REQF_FAULT; /* TEAR: cut to 512 bytes, result -EIO */
	w->fault_result = -EIO;
	w->fd = fd;
	w->addr = data;
	w->len = 512;
	w->offset = 0;
	w->rw_flags = 0;
	atomic_store(&w->state, REQ_IN_FLIGHT);
	atomic_store(&r->submitted, atomic_load(&r->submitted) + 1);
	sq_unlock(r);
	inject_cqe(r, request_ud(w), -ECANCELED); /* orphaned: no cancel was asked for */
	cr_assert_eq(auraio_request_wait(e, w, 10000, &res), 0);
	cr_assert_eq(res, -EIO, "the torn write completed %zd (-ECANCELED: taken for a fault)",
		     res);
	cr_assert_eq(pread(fd, back, sizeof(back), 0), (ssize_t) sizeof(back));
	cr_assert_eq(memcmp(back, data, 512), 0, "the torn write's sectors were not written");
	cr_assert(check_pattern(back + 512, 512, 512), "the torn write went past its cut");
	auraio_destroy(e);
	close(fd);
}
#endif

/*
 * The reaper of a chain submitted again after an orphaning reads and writes what the
 * resubmission wrote into its requests (their place in the chain, retry counts). The
 * kernel orders the two, but the engine did not say so in C: the only release the reaper
 * acquires (req->state) predates the resubmission, so ThreadSanitizer reported a race in
 * the engine fuzz2 (seed 5063). Here the main thread resubmits a held chain (a pipe read,
 * then a write) and a thread that has not synchronised with it since reaps both - the
 * relaxed flag it spins on is a start signal that orders nothing. Meaningful under TSan.
 */
struct late_reaper {
	struct held_chain *h;
	atomic_bool go;
	ssize_t res[2];
	int rc[2];
};

static void *late_reap(void *arg)
{
	struct late_reaper *l = arg;

	while (!atomic_load_explicit(&l->go, memory_order_relaxed))
		sched_yield();
	l->rc[0] = auraio_request_wait(l->h->e, l->h->a, 10000, &l->res[0]);
	l->rc[1] = auraio_request_wait(l->h->e, l->h->b, 10000, &l->res[1]);
	return NULL;
}

Test(orphans, a_chain_submitted_again_is_published_to_the_thread_that_reaps_it)
{
	struct held_chain h = { 0 };
	struct late_reaper l = { .h = &h, .rc = { 1, 1 } };
	char data[sizeof(h.buf)];
	pthread_t th;

	held_chain_make(&h);
	cr_assert_eq(pthread_create(&th, NULL, late_reap, &l), 0);
	inject_cqe(h.r, request_ud(h.b), -ECANCELED); /* the chain goes out again */
	while (counter_get(&h.r->resubmitted) == 0)
		cr_assert_geq(auraio_poll(h.e), 0);
	atomic_store_explicit(&l.go, true, memory_order_relaxed);
	memset(data, 'x', sizeof(data));
	cr_assert_eq(write(h.p[1], data, sizeof(data)), (ssize_t) sizeof(data));
	pthread_join(th, NULL);
	cr_assert_eq(l.rc[0], 0);
	cr_assert_eq(l.res[0], (ssize_t) sizeof(data), "the read: %zd", l.res[0]);
	cr_assert_eq(l.rc[1], 0);
	cr_assert_eq(l.res[1], (ssize_t) sizeof(data), "the write: %zd", l.res[1]);
	auraio_destroy(h.e);
	close(h.p[0]);
	close(h.p[1]);
}
