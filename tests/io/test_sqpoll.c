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
