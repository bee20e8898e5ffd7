/* SPDX-License-Identifier: MIT */
/*
 * Orphans submitted again (docs/auraio.md, "Orphans"; complete.c): a request that fails
 * with -EFAULT goes to the kernel again, up to MAX_RETRIES (8) times, and a real EFAULT
 * is delivered after the last. Deterministic, with the public API only: a read into a
 * page mapped PROT_NONE fails with -EFAULT exactly as an orphan does; made readable, the
 * next submission succeeds. An ENTER fault rule makes the kernel refuse a chosen
 * submission - the resubmission itself - and the tests check that it is sent again and
 * that the request completes exactly once, with the right result.
 *
 * io_uring only: the thread backend has no orphans (its -EFAULT is delivered at once).
 */
#include <sys/mman.h>

#include "refusing_engine.h"

#define T_TIMEOUT   20
#define MAX_RETRIES 8 /* complete.c: submissions again of one request */

TestSuite(refused_orphans, .timeout = T_TIMEOUT);

struct bad_read {
	auraio_engine_t *e;
	int fd;
	char *page; /* PROT_NONE until made readable */
	struct recorder rec;
};

static void bad_read_start(struct bad_read *b)
{
	long ps = sysconf(_SC_PAGESIZE);

	b->e = uring_engine(1);
	b->fd = temp_file((size_t) ps, 0);
	b->page = mmap(NULL, (size_t) ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(b->page, MAP_FAILED);
}

static void bad_read_submit(struct bad_read *b)
{
	cr_assert_not_null(auraio_read(b->e, b->fd, auraio_buf(b->page),
				       (size_t) sysconf(_SC_PAGESIZE), 0, record_cb, &b->rec));
}

static void bad_read_end(struct bad_read *b)
{
	auraio_fault_clear(b->e);
	auraio_destroy(b->e);
	munmap(b->page, (size_t) sysconf(_SC_PAGESIZE));
	close(b->fd);
}

/* Install rule f (the test is skipped where fault injection is not compiled in). */
static void set_rule(struct bad_read *b, const auraio_fault_t *f)
{
	int rc = auraio_fault_set(b->e, f);

	if (rc == -ENOTSUP) {
		bad_read_end(b);
		cr_skip_test("fault injection is not compiled into this build");
	}
	cr_assert_eq(rc, 0);
}

static uint64_t orphans_of(auraio_engine_t *e)
{
	auraio_stats_t st;

	cr_assert_eq(auraio_get_stats(e, &st), 0);
	return st.orphans_resubmitted;
}

/* Wait until the request's callback has run; then nothing more is delivered. */
static void wait_delivered(struct bad_read *b)
{
	while (atomic_load(&b->rec.calls) == 0)
		cr_assert(auraio_wait(b->e, -1) >= 0);
	cr_assert_eq(auraio_wait(b->e, -1), 0, "something was still in flight");
	cr_assert_eq(atomic_load(&b->rec.calls), 1);
}

/* The control: a -EFAULT comes back every time, and is delivered after the last try. */
Test(refused_orphans, an_efault_that_stays_is_delivered_after_the_last_retry)
{
	struct bad_read b = { 0 };

	bad_read_start(&b);
	bad_read_submit(&b);
	wait_delivered(&b);
	cr_assert_eq(atomic_load(&b.rec.last), -EFAULT);
	cr_assert_eq(orphans_of(b.e), MAX_RETRIES);
	bad_read_end(&b);
}

/*
 * The kernel refuses the first resubmission (the second call that submits entries). The
 * orphan stays in the SQ and no callback runs; the next wait sends it again. The buffer is made
 * readable in between, so the retry succeeds: the read completes once, in full, with the
 * file's bytes.
 */
Test(refused_orphans, a_refused_resubmission_is_sent_again_and_completes_once)
{
	struct bad_read b = { 0 };
	auraio_fault_t f = {
		.fd = -1, .skip = 1, .count = 1, .kind = AURAIO_FAULT_ENTER, .error = EAGAIN
	};
	long ps = sysconf(_SC_PAGESIZE);

	bad_read_start(&b);
	set_rule(&b, &f);
	bad_read_submit(&b);
	/* The read's -EFAULT is reaped and the read submitted again: refused. */
	while (faults_of(b.e) == 0)
		cr_assert_eq(auraio_poll(b.e), 0);
	cr_assert_eq(orphans_of(b.e), 1);
	cr_assert_eq(atomic_load(&b.rec.calls), 0);
	cr_assert_eq(mprotect(b.page, (size_t) ps, PROT_READ | PROT_WRITE), 0);
	wait_delivered(&b);
	cr_assert_eq(atomic_load(&b.rec.last), ps, "result %ld", (long) atomic_load(&b.rec.last));
	cr_assert(check_pattern(b.page, (size_t) ps, 0));
	cr_assert_eq(orphans_of(b.e), 1, "sent again more than once");
	cr_assert_eq(faults_of(b.e), 1);
	bad_read_end(&b);
}

/*
 * Refused resubmissions do not count as tries, nor add any: with the kernel refusing
 * three of them, the request still goes to the kernel 1 + MAX_RETRIES times and the
 * -EFAULT is delivered once, after the last.
 */
Test(refused_orphans, refused_resubmissions_keep_the_retry_limit)
{
	struct bad_read b = { 0 };
	auraio_fault_t f = { .fd = -1, .skip = 2, .count = 3, .kind = AURAIO_FAULT_ENTER };

	bad_read_start(&b);
	set_rule(&b, &f);
	bad_read_submit(&b);
	wait_delivered(&b);
	cr_assert_eq(atomic_load(&b.rec.last), -EFAULT);
	cr_assert_eq(orphans_of(b.e), MAX_RETRIES);
	cr_assert_eq(faults_of(b.e), 3);
	bad_read_end(&b);
}

/*
 * A chain headed by the failing read (read into the page, then a write of the page to
 * another file): the kernel fails the write -ECANCELED right after the read, the engine
 * holds both and sends the chain again whole. The kernel refuses that submission; sent
 * again by the next wait, with the page readable, the chain runs in order: the write
 * copies what the read got. Each member completes once.
 */
Test(refused_orphans, a_refused_chain_resubmission_is_sent_again_whole_and_in_order)
{
	struct bad_read b = { 0 };
	auraio_fault_t f = { .fd = -1, .skip = 1, .count = 1, .kind = AURAIO_FAULT_ENTER };
	long ps = sysconf(_SC_PAGESIZE);
	int out = temp_file(0, 0);
	struct recorder wrec = { 0 };
	char *back = malloc((size_t) ps);
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_READ, .buf = auraio_buf(NULL), .len = (size_t) ps },
		{ .opcode = AURAIO_OP_WRITE,
		  .fd = out,
		  .buf = auraio_buf(NULL),
		  .len = (size_t) ps,
		  .cb = record_cb,
		  .user_data = &wrec },
	};

	cr_assert_not_null(back);
	bad_read_start(&b);
	ops[0].fd = b.fd;
	ops[0].buf = ops[1].buf = auraio_buf(b.page);
	ops[0].cb = record_cb;
	ops[0].user_data = &b.rec;
	set_rule(&b, &f);
	cr_assert_eq(auraio_submit_linked(b.e, ops, 2, NULL), 0);
	cr_assert_geq(auraio_flush(b.e), 0);
	while (faults_of(b.e) == 0)
		cr_assert_eq(auraio_poll(b.e), 0);
	cr_assert_eq(orphans_of(b.e), 2, "the chain was not held and sent again whole");
	cr_assert_eq(atomic_load(&b.rec.calls) + atomic_load(&wrec.calls), 0);
	cr_assert_eq(mprotect(b.page, (size_t) ps, PROT_READ | PROT_WRITE), 0);
	while (atomic_load(&wrec.calls) == 0)
		cr_assert(auraio_wait(b.e, -1) >= 0);
	cr_assert_eq(auraio_wait(b.e, -1), 0, "something was still in flight");
	cr_assert_eq(atomic_load(&b.rec.calls), 1);
	cr_assert_eq(atomic_load(&wrec.calls), 1);
	cr_assert_eq(atomic_load(&b.rec.last), ps);
	cr_assert_eq(atomic_load(&wrec.last), ps);
	cr_assert_eq(pread(out, back, (size_t) ps, 0), ps);
	cr_assert(check_pattern(back, (size_t) ps, 0), "the write ran before the read");
	cr_assert_eq(orphans_of(b.e), 2);
	free(back);
	close(out);
	bad_read_end(&b);
}
