/* SPDX-License-Identifier: MIT */
/* SQPOLL: works when granted, falls back silently when refused, reports the mode. */
#include <auraio.h>

#include "test_util.h"

static void one_read(auraio_engine_t *e)
{
	int fd = temp_file(8192, 0);
	char buf[4096];
	ssize_t res = 0;
	auraio_request_t *req = auraio_read(e, fd, auraio_buf(buf), sizeof(buf), 4096, NULL, NULL);

	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 4096));
	close(fd);
}

Test(sqpoll, granted_sqpoll_is_reported_and_does_io)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	auraio_options_init(&o);
	o.enable_sqpoll = true;
	o.sqpoll_idle_ms = 2000;
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("io_uring unavailable: %s", st.backend_reason);
	if (!st.sqpoll_active)
		cr_skip_test("the kernel refused SQPOLL here: %s", st.backend_reason);
	for (int i = 0; i < 50; i++)
		one_read(e);
	auraio_destroy(e);
}

static void quiet(int level, const char *msg, void *arg)
{
	(void) level;
	(void) msg;
	(void) arg;
}

Test(sqpoll, a_refused_sqpoll_falls_back_to_a_normal_ring)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	auraio_options_init(&o);
	o.enable_sqpoll = true;
	o.sqpoll_cpu = 100000; /* no such CPU: the kernel refuses the SQPOLL thread */
	o.log_fn = quiet;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "create must not fail: %s", strerror(errno));
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.sqpoll_active, false);
	if (st.backend == AURAIO_BACKEND_IO_URING)
		cr_assert(strstr(st.backend_reason, "SQPOLL"), "reason: %s", st.backend_reason);
	one_read(e);
	auraio_destroy(e);
}

/*
 * Registered files under SQPOLL. Publishing an entry is its submission, but the kernel
 * thread looks a fixed slot up only when it takes the entry; auraio_update_file() must
 * therefore not change a slot until that thread has taken every entry queued before the
 * call (docs/auraio.md, "Registration"). Each test runs on one ring whose SQ thread
 * sleeps after 1 ms idle, so updates race both a busy and a sleeping thread.
 */
static auraio_engine_t *sqpoll_ring(void)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	auraio_options_init(&o);
	o.enable_sqpoll = true;
	o.sqpoll_idle_ms = 1;
	o.ring_count = 1;
	o.queue_depth = 64;
	o.disable_adaptive = true;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING || !st.sqpoll_active) {
		char why[256];

		snprintf(why, sizeof(why), "%s", st.backend_reason);
		auraio_destroy(e);
		cr_skip_test("no SQPOLL ring here: %s", why);
	}
	return e;
}

/* Every block of `len` bytes at `off` in fd is `byte`. */
static bool file_holds(int fd, off_t off, size_t len, uint8_t byte)
{
	uint8_t buf[512];

	if (len > sizeof(buf) || pread(fd, buf, len, off) != (ssize_t) len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != byte)
			return false;
	return true;
}

static void wait_write(auraio_engine_t *e, auraio_request_t *req, int round)
{
	ssize_t res = 0;

	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0, "round %d", round);
	cr_assert_eq(res, 512, "round %d: %zd", round, res);
}

Test(sqpoll, update_file_never_sends_an_earlier_write_to_the_new_file)
{
	enum { ROUNDS = 400, LEN = 512, DEPTH = 32 };
	auraio_engine_t *e = sqpoll_ring();
	int f[2] = { temp_file(ROUNDS * LEN, 0), temp_file(ROUNDS * LEN, 0) };
	static uint8_t data[ROUNDS][LEN];
	auraio_request_t *req[ROUNDS];

	cr_assert_eq(auraio_register_files(e, &f[0], 1), 0);
	/* Round i writes to the file in slot 0, then puts the other file there at once:
	 * the write must still land in the file it named, whether or not the SQ thread had
	 * taken it when the slot changed. */
	for (int i = 0; i < ROUNDS; i++) {
		int cur = f[i % 2], next = f[(i + 1) % 2];

		if (i >= DEPTH) /* at most DEPTH in flight: the ring's limit is 64 */
			wait_write(e, req[i - DEPTH], i - DEPTH);
		memset(data[i], 0x40 + i % 64, LEN);
		req[i] =
		    auraio_write(e, cur, auraio_buf(data[i]), LEN, (off_t) i * LEN, NULL, NULL);
		cr_assert_not_null(req[i], "round %d: %s", i, strerror(errno));
		cr_assert_eq(auraio_update_file(e, 0, next), 0, "round %d", i);
	}
	for (int i = ROUNDS - DEPTH; i < ROUNDS; i++)
		wait_write(e, req[i], i);
	for (int i = 0; i < ROUNDS; i++) {
		int named = f[i % 2], other = f[(i + 1) % 2];
		uint8_t back[LEN];

		cr_assert(file_holds(named, (off_t) i * LEN, LEN, (uint8_t) (0x40 + i % 64)),
			  "round %d: the write is not in the file it named", i);
		cr_assert_eq(pread(other, back, LEN, (off_t) i * LEN), LEN);
		cr_assert(check_pattern(back, LEN, (uint64_t) i * LEN),
			  "round %d: the write reached the slot's next file", i);
	}
	cr_assert_eq(auraio_unregister_files(e), 0);
	auraio_destroy(e);
	close(f[0]);
	close(f[1]);
}

struct staged_swap {
	auraio_engine_t *e;
	int old_fd, new_fd;
	uint8_t data[512];
	auraio_request_t *write;
	int update_rc;
};

/* A callback's submission is staged until the delivering call ends; the slot changes
 * while it is. */
static void write_then_update_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct staged_swap *s = ud;

	(void) req;
	(void) res;
	s->write =
	    auraio_write(s->e, s->old_fd, auraio_buf(s->data), sizeof(s->data), 0, NULL, NULL);
	s->update_rc = auraio_update_file(s->e, 0, s->new_fd);
}

Test(sqpoll, a_write_staged_by_a_callback_before_update_file_goes_to_the_file_it_named)
{
	struct staged_swap s = { .update_rc = 1 };
	static char one[1];
	ssize_t res = 0;
	uint8_t back[512];

	s.e = sqpoll_ring();
	s.old_fd = temp_file(65536, 0);
	s.new_fd = temp_file(65536, 0);
	memset(s.data, 0xab, sizeof(s.data));
	cr_assert_eq(auraio_register_files(s.e, &s.old_fd, 1), 0);
	cr_assert_not_null(
	    auraio_read(s.e, s.old_fd, auraio_buf(one), 1, 0, write_then_update_cb, &s));
	while (s.update_rc == 1)
		cr_assert_geq(auraio_wait(s.e, -1), 0);
	cr_assert_eq(s.update_rc, 0, "%s", auraio_strerror(s.update_rc));
	cr_assert_not_null(s.write);
	cr_assert_eq(auraio_request_wait(s.e, s.write, 10000, &res), 0);
	cr_assert_eq(res, 512, "the write: %zd", res);
	cr_assert(file_holds(s.old_fd, 0, sizeof(s.data), 0xab),
		  "the write missed the file it named");
	cr_assert_eq(pread(s.new_fd, back, sizeof(back), 0), 512);
	cr_assert(check_pattern(back, sizeof(back), 0), "the write went to the new slot's file");
	auraio_destroy(s.e);
	close(s.old_fd);
	close(s.new_fd);
}
