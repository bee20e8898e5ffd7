/* SPDX-License-Identifier: MIT */
/* auraio_submit_batch: independent operations in one call, accepted as a prefix. */
#include <auraio.h>
#include <pthread.h>
#include <sched.h>

#include "io_concurrency.h"

#define FILE_SIZE (1 << 20)

static auraio_engine_t *engine;
static int fd;

static void setup(void)
{
	/* a fixed limit: the adaptive controller would start lower and cut batches short */
	engine = test_fixed_engine(0, 64);
	cr_assert_not_null(engine);
	fd = temp_file(FILE_SIZE, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(batch, .init = setup, .fini = teardown);

static auraio_op_t read_op(int f, void *buf, size_t len, off_t off, auraio_callback_t cb, void *ud)
{
	auraio_op_t op = { .opcode = AURAIO_OP_READ,
			   .fd = f,
			   .buf = auraio_buf(buf),
			   .len = len,
			   .offset = off,
			   .cb = cb,
			   .user_data = ud };
	return op;
}

static ssize_t collect(auraio_engine_t *e, auraio_request_t *req)
{
	ssize_t res = -12345;

	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	return res;
}

/* Handle completions until `rec` has seen `calls` callbacks. */
static void wait_calls(auraio_engine_t *e, struct recorder *rec, int calls)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

	while (atomic_load(&rec->calls) < calls) {
		cr_assert_geq(auraio_wait(e, 100), 0);
		cr_assert_lt(test_now_ns(), deadline, "only %d of %d callbacks", rec->calls, calls);
	}
}

Test(batch, every_operation_of_a_batch_reads_its_own_block)
{
	enum { N = 16 };
	static char bufs[N][4096];
	auraio_op_t ops[N];
	auraio_request_t *reqs[N];

	for (int i = 0; i < N; i++)
		ops[i] = read_op(fd, bufs[i], 4096, (off_t) (N - i) * 8192, NULL, NULL);
	cr_assert_eq(auraio_submit_batch(engine, ops, N, reqs), N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(collect(engine, reqs[i]), 4096);
		cr_assert(check_pattern(bufs[i], 4096, (uint64_t) (N - i) * 8192),
			  "op %d read the wrong bytes", i);
	}
}

Test(batch, callbacks_run_once_per_operation_and_mixed_opcodes_work)
{
	static char wbuf[4096], rbuf[4096];
	struct recorder rec = { 0 };
	auraio_op_t ops[3];
	auraio_stats_t st;

	fill_pattern(wbuf, sizeof(wbuf), 7);
	ops[0] = (auraio_op_t){ .opcode = AURAIO_OP_WRITE,
				.fd = fd,
				.buf = auraio_buf(wbuf),
				.len = sizeof(wbuf),
				.offset = 4096,
				.cb = record_cb,
				.user_data = &rec };
	ops[1] = read_op(fd, rbuf, sizeof(rbuf), 65536, record_cb, &rec);
	ops[2] = (auraio_op_t){ .opcode = AURAIO_OP_FSYNC,
				.fd = fd,
				.flags = AURAIO_OP_DATASYNC,
				.cb = record_cb,
				.user_data = &rec };
	cr_assert_eq(auraio_submit_batch(engine, ops, 3, NULL), 3);
	wait_calls(engine, &rec, 3);
	cr_assert_eq(auraio_wait(engine, 0), 0, "no fourth completion");
	cr_assert_eq(rec.calls, 3);
	cr_assert(check_pattern(rbuf, sizeof(rbuf), 65536));
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.total.ops_completed, 3);
}

Test(batch, the_in_flight_limit_accepts_a_prefix_and_the_rest_goes_later)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_op_t ops[5];
	auraio_request_t *reqs[5];
	auraio_ring_stats_t rs;
	char b[5][8];
	int p[2];

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 8;
	o.initial_in_flight = 3;
	o.disable_adaptive = true;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	/* Pipe reads stay in flight until the test writes. */
	for (int i = 0; i < 5; i++)
		ops[i] = read_op(p[0], b[i], 1, 0, NULL, NULL);
	cr_assert_eq(auraio_submit_batch(e, ops, 5, reqs), 3, "the limit is 3");
	cr_assert_eq(auraio_submit_batch(e, ops + 3, 2, reqs + 3), -EAGAIN);
	cr_assert_eq(auraio_get_ring_stats(e, 0, &rs), 0);
	cr_assert_eq(rs.in_flight, 3);
	cr_assert_eq(rs.eagain, 2, "the cut batch and the refused one");
	cr_assert_eq(write(p[1], "abc", 3), 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(collect(e, reqs[i]), 1);
	cr_assert_eq(auraio_submit_batch(e, ops + 3, 2, reqs + 3), 2);
	cr_assert_eq(write(p[1], "de", 2), 2);
	for (int i = 3; i < 5; i++)
		cr_assert_eq(collect(e, reqs[i]), 1);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

/* What the plain lane keeps in a request is enough for the accessors and for cancel. */
Test(batch, a_batched_request_can_be_cancelled_and_knows_its_fd_and_user_data)
{
	auraio_op_t ops[2];
	auraio_request_t *reqs[2];
	char b[2][8];
	int p[2], tag = 7;

	cr_assert_eq(pipe(p), 0);
	for (int i = 0; i < 2; i++)
		ops[i] = read_op(p[0], b[i], 1, 0, NULL, &tag);
	cr_assert_eq(auraio_submit_batch(engine, ops, 2, reqs), 2);
	cr_assert_eq(auraio_request_fd(reqs[0]), p[0]);
	cr_assert_eq(auraio_request_user_data(reqs[1]), &tag);
	cr_assert_eq(auraio_cancel(engine, reqs[0]), 0);
	cr_assert_eq(collect(engine, reqs[0]), -ECANCELED);
	cr_assert_eq(write(p[1], "z", 1), 1);
	cr_assert_eq(collect(engine, reqs[1]), 1);
	cr_assert_eq(b[1][0], 'z');
	close(p[0]);
	close(p[1]);
}

Test(batch, an_invalid_operation_ends_the_prefix_and_reports_its_error_next_call)
{
	static char bufs[4][512];
	auraio_op_t ops[4];
	auraio_request_t *reqs[4];
	auraio_stats_t st;

	for (int i = 0; i < 4; i++)
		ops[i] = read_op(fd, bufs[i], 512, (off_t) i * 512, NULL, NULL);
	ops[2].fd = -1;
	cr_assert_eq(auraio_submit_batch(engine, ops, 4, reqs), 2);
	cr_assert_eq(auraio_submit_batch(engine, ops + 2, 2, reqs + 2), -EINVAL);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(collect(engine, reqs[i]), 512);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.total.ops_submitted, 2, "nothing after the bad op was submitted");
}

Test(batch, a_registered_buffer_overrun_in_the_batch_ends_the_prefix_with_eoverflow)
{
	static char mem[8192];
	struct iovec iov = { mem, sizeof(mem) };
	auraio_op_t ops[2];
	auraio_request_t *reqs[2];

	cr_assert_eq(auraio_register_buffers(engine, &iov, 1), 0);
	ops[0] = read_op(fd, NULL, 4096, 0, NULL, NULL);
	ops[0].buf = auraio_buf_fixed(0, 0);
	ops[1] = ops[0];
	ops[1].buf = auraio_buf_fixed(0, 4097); /* 4097 + 4096 > 8192 */
	cr_assert_eq(auraio_submit_batch(engine, ops, 2, reqs), 1);
	cr_assert_eq(auraio_submit_batch(engine, ops + 1, 1, reqs + 1), -EOVERFLOW);
	cr_assert_eq(collect(engine, reqs[0]), 4096);
	cr_assert(check_pattern(mem, 4096, 0));
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
}

/* Registered buffers take the general path: every index and offset must reach the
 * kernel as a registered buffer, never as a pointer. */
Test(batch, registered_buffers_at_every_index_and_offset_read_their_blocks)
{
	enum { N = 8 };
	static char mem[2][16384];
	struct iovec iov[2] = { { mem[0], sizeof(mem[0]) }, { mem[1], sizeof(mem[1]) } };
	auraio_op_t ops[N];
	auraio_request_t *reqs[N];

	cr_assert_eq(auraio_register_buffers(engine, iov, 2), 0);
	for (int i = 0; i < N; i++) {
		ops[i] = read_op(fd, NULL, 4096, (off_t) (i + 3) * 4096, NULL, NULL);
		ops[i].buf = auraio_buf_fixed(i % 2, (size_t) (i / 2) * 4096);
	}
	cr_assert_eq(auraio_submit_batch(engine, ops, N, reqs), N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(collect(engine, reqs[i]), 4096, "op %d", i);
	for (int i = 0; i < N; i++)
		cr_assert(
		    check_pattern(mem[i % 2] + (i / 2) * 4096, 4096, (uint64_t) (i + 3) * 4096),
		    "op %d", i);
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
}

/* A registered file goes out through its slot (slot 0 is /dev/zero: a slot mix-up
 * would read zeros); an O_DIRECT one is checked for alignment first. */
Test(batch, registered_files_are_read_through_their_slot_and_o_direct_is_checked)
{
	static char bufs[3][4096] __attribute__((aligned(4096)));
	int zero = open("/dev/zero", O_RDONLY);
	int dfd = temp_file(65536, O_DIRECT);
	int fds[3];
	auraio_op_t ops[3];
	auraio_request_t *reqs[3];

	cr_assert_geq(zero, 0);
	fds[0] = zero;
	fds[1] = fd;
	fds[2] = dfd;
	cr_assert_eq(auraio_register_files(engine, fds, 3), 0);
	ops[0] = read_op(fd, bufs[0], 4096, 8192, NULL, NULL);
	ops[1] = read_op(dfd, bufs[1], 4096, 4096, NULL, NULL);
	ops[2] = read_op(dfd, bufs[2], 4096, 100, NULL, NULL); /* misaligned for O_DIRECT */
	cr_assert_eq(auraio_submit_batch(engine, ops, 3, reqs), 2);
	cr_assert_eq(auraio_submit_batch(engine, ops + 2, 1, reqs + 2), -EINVAL);
	cr_assert_eq(collect(engine, reqs[0]), 4096);
	cr_assert_eq(collect(engine, reqs[1]), 4096);
	cr_assert(check_pattern(bufs[0], 4096, 8192));
	cr_assert(check_pattern(bufs[1], 4096, 4096));
	cr_assert_eq(auraio_unregister_files(engine), 0);
	close(dfd);
	close(zero);
}

Test(batch, bad_arguments_are_refused_with_einval)
{
	char buf[16];
	auraio_op_t op = read_op(fd, buf, sizeof(buf), 0, NULL, NULL);

	cr_assert_eq(auraio_submit_batch(NULL, &op, 1, NULL), -EINVAL);
	cr_assert_eq(auraio_submit_batch(engine, NULL, 1, NULL), -EINVAL);
	cr_assert_eq(auraio_submit_batch(engine, &op, 0, NULL), -EINVAL);
	cr_assert_eq(auraio_submit_batch(engine, &op, -1, NULL), -EINVAL);
	op.opcode = (auraio_opcode_t) 99;
	cr_assert_eq(auraio_submit_batch(engine, &op, 1, NULL), -EINVAL);
}

/* More operations than the internal handle array when reqs is NULL: all go. */
Test(batch, a_large_batch_without_handles_submits_every_operation)
{
	enum { N = 200 };
	auraio_engine_t *e = test_fixed_engine(0, 256);
	static char bufs[N][512];
	static auraio_op_t ops[N];
	struct recorder rec = { 0 };

	cr_assert_not_null(e);
	for (int i = 0; i < N; i++)
		ops[i] = read_op(fd, bufs[i], 512, (off_t) i * 512, record_cb, &rec);
	cr_assert_eq(auraio_submit_batch(e, ops, N, NULL), N);
	wait_calls(e, &rec, N);
	cr_assert_eq(rec.calls, N);
	for (int i = 0; i < N; i++)
		cr_assert(check_pattern(bufs[i], 512, (uint64_t) i * 512));
	auraio_destroy(e);
}

/* A callback that resubmits its slot together with the others in one batch. */
struct chain_state {
	auraio_engine_t *e;
	int left; /* batches still to submit */
	int done; /* completions seen */
	char bufs[4][512];
};

static void batch_again_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct chain_state *s = ud;

	(void) req;
	cr_assert_eq(res, 512);
	/* The last completion of each batch submits the next batch. */
	if (++s->done % 4 == 0 && s->left > 0) {
		auraio_op_t ops[4];

		s->left--;
		for (int i = 0; i < 4; i++)
			ops[i] = read_op(fd, s->bufs[i], 512, (off_t) (i + s->left) * 512,
					 batch_again_cb, s);
		cr_assert_eq(auraio_submit_batch(s->e, ops, 4, NULL), 4);
	}
}

Test(batch, a_callback_can_submit_a_batch)
{
	struct chain_state s = { .e = engine, .left = 5 };
	auraio_op_t ops[4];
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

	for (int i = 0; i < 4; i++)
		ops[i] = read_op(fd, s.bufs[i], 512, (off_t) i * 512, batch_again_cb, &s);
	cr_assert_eq(auraio_submit_batch(engine, ops, 4, NULL), 4);
	while (s.done < 24) {
		cr_assert_geq(auraio_wait(engine, 100), 0);
		cr_assert_lt(test_now_ns(), deadline, "%d of 24 completions", s.done);
	}
	cr_assert_eq(auraio_wait(engine, 0), 0);
	cr_assert_eq(s.done, 24);
	for (int i = 0; i < 4; i++)
		cr_assert(check_pattern(s.bufs[i], 512, (uint64_t) i * 512));
}

Test(batch, a_fault_rule_hits_operations_of_a_batch_one_by_one)
{
	static char bufs[3][512];
	auraio_op_t ops[3];
	auraio_request_t *reqs[3];
	auraio_fault_t f = { 0 };
	int rc;

	f.kind = AURAIO_FAULT_ERROR;
	f.ops = AURAIO_FAULT_OP_READ;
	f.fd = fd;
	f.skip = 1;
	f.count = 1;
	f.error = EIO;
	rc = auraio_fault_set(engine, &f);
	if (rc == -ENOTSUP)
		cr_skip_test("fault injection not compiled in");
	cr_assert_eq(rc, 0);
	for (int i = 0; i < 3; i++)
		ops[i] = read_op(fd, bufs[i], 512, (off_t) i * 512, NULL, NULL);
	cr_assert_eq(auraio_submit_batch(engine, ops, 3, reqs), 3);
	cr_assert_eq(collect(engine, reqs[0]), 512);
	cr_assert_eq(collect(engine, reqs[1]), -EIO, "the 2nd read is the faulted one");
	cr_assert_eq(collect(engine, reqs[2]), 512, "independent: not cancelled");
}

/* ---- concurrency: batches from several threads, one poller (run under TSan in CI) ---- */

#define MT_THREADS 4
#define MT_BATCHES 60
#define MT_BATCH   16

static void *mt_submitter(void *arg)
{
	struct shared *s = arg;
	enum { N = MT_BATCHES * MT_BATCH };
	struct op *mo = calloc(N, sizeof(*mo));
	auraio_op_t ops[MT_BATCH];
	unsigned seed = (unsigned) (uintptr_t) &mo;

	cr_assert_not_null(mo);
	for (int b = 0; b < MT_BATCHES; b++) {
		int done = 0;

		for (int i = 0; i < MT_BATCH; i++) {
			struct op *m = &mo[b * MT_BATCH + i];

			m->s = s;
			m->off = (off_t) (rand_r(&seed) % (FILE_SIZE / 512)) * 512;
			ops[i] = read_op(s->fd, m->buf, 512, m->off, check_cb, m);
		}
		while (done < MT_BATCH) { /* the rest of a cut batch goes once there is room */
			int rc = auraio_submit_batch(s->e, ops + done, MT_BATCH - done, NULL);

			if (rc > 0)
				done += rc;
			else
				cr_assert_eq(rc, -EAGAIN, "submit: %s", strerror(-rc));
			if (done < MT_BATCH)
				sched_yield(); /* the poller frees room */
		}
	}
	wait_delivered(mo, N);
	free(mo);
	return NULL;
}

Test(batch, batches_from_several_threads_each_complete_once_with_their_data)
{
	struct shared s = { .e = test_fixed_engine(0, 32), .fd = fd }; /* small: batches get cut */

	cr_assert_not_null(s.e);
	run_with_poller(&s, MT_THREADS, mt_submitter);
	cr_assert_eq(atomic_load(&s.bad), 0);
	cr_assert_eq(atomic_load(&s.completed), MT_THREADS * MT_BATCHES * MT_BATCH);
	auraio_destroy(s.e);
}
