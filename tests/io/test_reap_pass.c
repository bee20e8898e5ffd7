/* SPDX-License-Identifier: MIT */
/*
 * A reap pass's counts (complete.c, reap_batch): operations of every kind - reads
 * (short, failing, into a registered buffer), writes, fsync, callbacks and waitables -
 * with cancels' and stale CQEs among them, in one pass that wraps the CQ ring at each
 * position: ops, bytes read and written, errors, stale, internal and fixed-buffer
 * completions each grow by exactly their share, and the latency histogram by the
 * completions.
 *
 * White-box where no public call reaches a case on demand: the tests place the CQ head
 * and stage no-ops whose CQEs the pass must count as stale or internal.
 */
#include "fast_path_test.h"

TestSuite(reap_pass, .timeout = 30);

/* ---- a reap pass's counts ---- */

struct mixed {
	auraio_request_t *w2, *c;
	atomic_long res[6];
	atomic_int done;
	char a[512], w1[512], e[512], fixed_at[512], b[512], w2buf[512], cbuf[512];
};

static void mixed_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	atomic_long *slot = ud;

	(void) req;
	atomic_store(slot, (long) res);
}

/* The counters a pass adds to. */
struct pass_counts {
	uint64_t ops, bytes_read, bytes_written, errors, stale, internal, fixed, hist;
};

static struct pass_counts pass_counts(auraio_engine_t *e)
{
	struct ring *r = &e->rings[0];
	auraio_ring_stats_t s;

	cr_assert_eq(auraio_get_ring_stats(e, 0, &s), 0);
	return (struct pass_counts){ .ops = s.ops_completed,
				     .bytes_read = s.bytes_read,
				     .bytes_written = s.bytes_written,
				     .errors = s.errors,
				     .stale = s.stale_completions,
				     .internal = counter_get(&r->internal_completed),
				     .fixed = counter_get(&r->fixed_buf_completed),
				     .hist = hist_total(r) };
}

/* A no-op carrying user_data ud, staged unpublished (the next publish sends it). */
static void stage_nop(struct ring *r, uint64_t ud)
{
	struct io_uring_sqe *sqe;

	sq_lock(r);
	sqe = uring_peek_sqe(r);
	cr_assert_not_null(sqe, "no SQ room for a no-op");
	uring_take_sqe(r);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
	if (ud == UD_INTERNAL)
		counter_add(&r->internal_submitted, 1);
	sq_unlock(r);
}

/*
 * Eight operations of every kind - reads (one short, one into a registered buffer, one
 * failing), writes, an fsync, callbacks and waitables - on a ring of queue_depth 8 (its
 * limit). With nops, no-ops staged between them complete as two cancels' CQEs (internal)
 * and three stale ones: of a free slot, of no slot, of a request in flight under another
 * generation. Returns the expected counts' increase.
 */
static struct pass_counts submit_mixed(auraio_engine_t *e, int fd, int wfd, struct mixed *m,
				       bool nops)
{
	struct ring *r = &e->rings[0];
	auraio_request_t *x;

	for (int i = 0; i < 6; i++)
		atomic_store(&m->res[i], LONG_MIN);
	cr_assert_not_null(auraio_read(e, fd, auraio_buf(m->a), 512, 0, mixed_cb, &m->res[0]));
	if (nops)
		stage_nop(r, UD_INTERNAL);
	fill_pattern(m->w1, 512, 1);
	cr_assert_not_null(
	    auraio_write(e, fd, auraio_buf(m->w1), 512, 16384, mixed_cb, &m->res[1]));
	if (nops)
		stage_nop(r, ((uint64_t) 0xdeadbeefu << 32) | (r->pool.nreqs - 1));
	cr_assert_not_null(auraio_read(e, wfd, auraio_buf(m->e), 512, 0, mixed_cb, &m->res[2]));
	cr_assert_not_null(auraio_fsync(e, fd, 0, mixed_cb, &m->res[3]));
	if (nops)
		stage_nop(r, r->pool.nreqs);
	cr_assert_not_null(
	    x = auraio_read(e, fd, auraio_buf_fixed(0, 512), 512, 4096, mixed_cb, &m->res[4]));
	cr_assert(x->flags & REQF_REG_BUF);
	fill_pattern(m->w2buf, 512, 2);
	cr_assert_not_null(m->w2 =
			       auraio_write(e, fd, auraio_buf(m->w2buf), 512, 20480, NULL, NULL));
	if (nops)
		stage_nop(r, UD_INTERNAL);
	cr_assert_not_null(
	    auraio_read(e, fd, auraio_buf(m->b), 512, 65536 - 100, mixed_cb, &m->res[5]));
	if (nops)
		stage_nop(r, m->w2->ud ^ (1ull << 32));
	cr_assert_not_null(m->c = auraio_read(e, fd, auraio_buf(m->cbuf), 512, 8192, NULL, NULL));
	cr_assert_geq(auraio_flush(e), 0);
	return (struct pass_counts){ .ops = 8,
				     .bytes_read = 512 + 512 + 100 + 512,
				     .bytes_written = 1024,
				     .errors = 1,
				     .stale = nops ? 3 : 0,
				     .internal = nops ? 2 : 0,
				     .fixed = 1,
				     .hist = 8 };
}

static void check_mixed(auraio_engine_t *e, struct mixed *m, struct pass_counts before,
			struct pass_counts want, const char *where)
{
	struct pass_counts after = pass_counts(e);
	static const long results[6] = { 512, 512, -EBADF, 0, 512, 100 };
	ssize_t res = 0;

#define DELTA(f)                                                                                   \
	cr_assert_eq(after.f - before.f, want.f, "%s: " #f " grew by %lu, want %lu", where,        \
		     (unsigned long) (after.f - before.f), (unsigned long) want.f)
	DELTA(ops);
	DELTA(bytes_read);
	DELTA(bytes_written);
	DELTA(errors);
	DELTA(stale);
	DELTA(internal);
	DELTA(fixed);
	DELTA(hist);
#undef DELTA
	for (int i = 0; i < 6; i++)
		cr_assert_eq(atomic_load(&m->res[i]), results[i], "%s: operation %d: %ld", where, i,
			     atomic_load(&m->res[i]));
	cr_assert_eq(auraio_request_wait(e, m->w2, 0, &res), 0, "%s: a waitable not done", where);
	cr_assert_eq(res, 512);
	cr_assert_eq(auraio_request_wait(e, m->c, 0, &res), 0, "%s: a waitable not done", where);
	cr_assert_eq(res, 512);
	cr_assert(check_pattern(m->a, 512, 0) && check_pattern(m->cbuf, 512, 8192));
	cr_assert(check_pattern(m->b, 100, 65536 - 100));
}

static char fixbuf[4096] __attribute__((aligned(4096)));

/*
 * One reap pass of 13 CQEs - 8 operations of every kind, 2 cancels', 3 stale - with the
 * CQ head at each of the CQ's 16 positions, so that the pass wraps the ring at each
 * point: every counter grows by exactly its share, the histogram by the completions.
 */
Test(reap_pass, one_pass_wrapping_the_cq_counts_every_kind_of_completion_exactly)
{
	auraio_engine_t *e = engine_with(1, 8, false);
	struct ring *r = &e->rings[0];
	int fd = temp_file(65536, 0), wfd = open("/dev/null", O_WRONLY);
	struct iovec reg = { .iov_base = fixbuf, .iov_len = sizeof(fixbuf) };
	static struct mixed m;
	unsigned entries;
	char where[64];

	if (!on_uring(e))
		cr_skip_test("CQ positions and staged CQEs are io_uring's; this engine uses "
			     "worker threads");
	cr_assert_geq(wfd, 0);
	cr_assert_eq(auraio_register_buffers(e, &reg, 1), 0);
	entries = U(r)->cq.ring_entries;
	cr_assert_eq(entries, 16, "the CQ is twice queue_depth");
	for (unsigned pos = 0; pos < entries; pos++) {
		uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
		struct pass_counts before, want;
		static char b[512];

		/* One CQE at a time until the head is at pos. */
		while ((*U(r)->cq.khead & (entries - 1)) != pos) {
			auraio_request_t *x = auraio_read(e, fd, auraio_buf(b), 512, 0, NULL, NULL);

			cr_assert_not_null(x);
			cr_assert_eq(auraio_request_wait(e, x, 5000, NULL), 0);
		}
		before = pass_counts(e);
		want = submit_mixed(e, fd, wfd, &m, true);
		while (io_uring_cq_ready(U(r)) < 13) {
			io_uring_get_events(U(r)); /* task work (COOP_TASKRUN) posts its CQEs */
			cr_assert_lt(test_now_ns(), deadline, "only %u CQEs came",
				     io_uring_cq_ready(U(r)));
			sched_yield();
		}
		cr_assert_eq(io_uring_cq_ready(U(r)), 13);
		cr_assert_eq(auraio_poll(e), 8, "one pass handles the 8 operations");
		cr_assert_eq(io_uring_cq_ready(U(r)), 0);
		snprintf(where, sizeof(where), "CQ head at %u", pos);
		check_mixed(e, &m, before, want, where);
	}
	cr_assert_eq(pass_counts(e).hist, pass_counts(e).ops);
	cr_assert_eq(counter_get(&r->internal_completed), counter_get(&r->internal_submitted));
	cr_assert_eq(auraio_unregister_buffers(e), 0);
	auraio_destroy(e);
	close(fd);
	close(wfd);
}

/* The same operations reaped as they come, on either backend, locked or not. */
Test(reap_pass, mixed_operations_count_bytes_errors_and_fixed_buffers_exactly)
{
	for (int single = 0; single < 2; single++) {
		auraio_engine_t *e = engine_with(1, 8, single);
		int fd = temp_file(65536, 0), wfd = open("/dev/null", O_WRONLY);
		struct iovec reg = { .iov_base = fixbuf, .iov_len = sizeof(fixbuf) };
		static struct mixed m;

		cr_assert_geq(wfd, 0);
		cr_assert_eq(auraio_register_buffers(e, &reg, 1), 0);
		for (int round = 0; round < 4; round++) {
			struct pass_counts before = pass_counts(e), want;
			uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;
			auraio_stats_t st;

			want = submit_mixed(e, fd, wfd, &m, false);
			do {
				cr_assert_geq(auraio_wait(e, 100), 0);
				cr_assert_eq(auraio_get_stats(e, &st), 0);
				cr_assert_lt(test_now_ns(), deadline);
			} while (st.total.in_flight);
			check_mixed(e, &m, before, want, mode_name(single));
		}
		cr_assert_eq(auraio_unregister_buffers(e), 0);
		auraio_destroy(e);
		close(fd);
		close(wfd);
	}
}
