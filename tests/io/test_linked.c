/* SPDX-License-Identifier: MIT */
/* Linked chains: order, a failed or short link cancels the rest, capacity rules. */
#include <auraio.h>

#include "test_util.h"

static auraio_engine_t *engine;
static int fd;

static void setup(void)
{
	engine = auraio_create();
	cr_assert_not_null(engine);
	fd = temp_file(65536, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(linked, .init = setup, .fini = teardown);

static auraio_op_t write_op(int f, void *buf, size_t len, off_t off)
{
	auraio_op_t op = { .opcode = AURAIO_OP_WRITE,
			   .fd = f,
			   .buf = auraio_buf(buf),
			   .len = len,
			   .offset = off };
	return op;
}

static auraio_op_t sync_op(int f)
{
	auraio_op_t op = { .opcode = AURAIO_OP_FSYNC, .fd = f, .flags = AURAIO_OP_DATASYNC };
	return op;
}

static ssize_t collect(auraio_request_t *req)
{
	ssize_t res = -12345;

	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	return res;
}

Test(linked, write_then_sync_both_succeed_in_one_submission)
{
	char buf[4096];
	auraio_op_t ops[2];
	auraio_request_t *reqs[2];

	fill_pattern(buf, sizeof(buf), 1);
	ops[0] = write_op(fd, buf, sizeof(buf), 0);
	ops[1] = sync_op(fd);
	cr_assert_eq(auraio_submit_linked(engine, ops, 2, reqs), 0);
	cr_assert_eq(collect(reqs[0]), 4096);
	cr_assert_eq(collect(reqs[1]), 0);
}

Test(linked, a_dsync_write_is_accepted)
{
	char buf[512];
	auraio_op_t op = write_op(fd, buf, sizeof(buf), 0);
	auraio_request_t *req;

	op.flags = AURAIO_OP_DSYNC;
	cr_assert_eq(auraio_submit_linked(engine, &op, 1, &req), 0);
	cr_assert_eq(collect(req), 512);
}

Test(linked, a_failed_link_cancels_the_rest_of_the_chain)
{
	char buf[16];
	auraio_op_t ops[3];
	auraio_request_t *reqs[3];
	int wronly = open("/dev/null", O_WRONLY);

	ops[0] = (auraio_op_t){
		.opcode = AURAIO_OP_READ, .fd = wronly, .buf = auraio_buf(buf), .len = sizeof(buf)
	};
	ops[1] = write_op(fd, buf, sizeof(buf), 0);
	ops[2] = sync_op(fd);
	cr_assert_eq(auraio_submit_linked(engine, ops, 3, reqs), 0);
	cr_assert_eq(collect(reqs[0]), -EBADF);
	cr_assert_eq(collect(reqs[1]), -ECANCELED);
	cr_assert_eq(collect(reqs[2]), -ECANCELED);
	close(wronly);
}

Test(linked, a_short_write_breaks_the_chain_so_the_sync_cannot_vouch_for_it)
{
	char buf[8192];
	auraio_op_t ops[2];
	auraio_request_t *reqs[2];
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE,
			     .fd = -1,
			     .kind = AURAIO_FAULT_SHORT,
			     .keep = 1000,
			     .count = 1 };

	if (auraio_fault_set(engine, &f) == -ENOTSUP)
		cr_skip_test("fault injection is not compiled in");
	ops[0] = write_op(fd, buf, sizeof(buf), 0);
	ops[1] = sync_op(fd);
	cr_assert_eq(auraio_submit_linked(engine, ops, 2, reqs), 0);
	cr_assert_eq(collect(reqs[0]), 1000);
	cr_assert_eq(collect(reqs[1]), -ECANCELED);
}

Test(linked, chain_arguments_are_checked)
{
	char buf[16];
	auraio_op_t ops[2] = { write_op(fd, buf, 16, 0), write_op(-1, buf, 16, 0) };
	auraio_options_t o;
	auraio_engine_t *small;
	auraio_op_t many[9];

	cr_assert_eq(auraio_submit_linked(engine, ops, 2, NULL), -EINVAL, "bad fd in link 2");
	cr_assert_eq(auraio_submit_linked(engine, ops, 0, NULL), -EINVAL);
	cr_assert_eq(auraio_submit_linked(engine, NULL, 1, NULL), -EINVAL);
	auraio_options_init(&o);
	o.queue_depth = 8;
	small = auraio_create_with_options(&o);
	cr_assert_not_null(small);
	for (int i = 0; i < 9; i++)
		many[i] = write_op(fd, buf, 16, 0);
	cr_assert_eq(auraio_submit_linked(small, many, 9, NULL), -EINVAL, "longer than the queue");
	auraio_destroy(small);
}

Test(linked, a_chain_longer_than_the_limit_goes_when_the_ring_is_idle)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_op_t ops[4];
	auraio_request_t *reqs[4];
	char buf[4][64];

	auraio_options_init(&o);
	o.queue_depth = 8;
	o.initial_in_flight = 2;
	o.disable_adaptive = true;
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	for (int i = 0; i < 4; i++)
		ops[i] = write_op(fd, buf[i], 64, i * 64);
	cr_assert_eq(auraio_submit_linked(e, ops, 4, reqs), 0);
	for (int i = 0; i < 4; i++) {
		ssize_t res = 0;

		cr_assert_eq(auraio_request_wait(e, reqs[i], 10000, &res), 0);
		cr_assert_eq(res, 64);
	}
	auraio_destroy(e);
}
