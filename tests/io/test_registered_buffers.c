/* SPDX-License-Identifier: MIT */
/* Registered buffers: offsets, bounds, in-flight protection, RLIMIT_MEMLOCK fallback. */
#include <auraio.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "test_util.h"

static auraio_engine_t *engine;
static int fd;

static void setup(void)
{
	engine = auraio_create();
	cr_assert_not_null(engine);
	fd = temp_file(1 << 20, 0);
}

static void teardown(void)
{
	auraio_destroy(engine);
	close(fd);
}

TestSuite(registered_buffers, .init = setup, .fini = teardown);

static void quiet_log(int level, const char *msg, void *arg)
{
	(void) level;
	(void) msg;
	(void) arg;
}

static ssize_t wait_req(auraio_request_t *req)
{
	ssize_t res = -12345;

	cr_assert_not_null(req, "submit: %s", strerror(errno));
	cr_assert_eq(auraio_request_wait(engine, req, 10000, &res), 0);
	return res;
}

Test(registered_buffers, reads_land_at_the_sub_buffer_offset)
{
	struct iovec iov[2];
	auraio_stats_t st;

	for (int i = 0; i < 2; i++) {
		iov[i].iov_base = aligned_alloc(4096, 8192);
		iov[i].iov_len = 8192;
		memset(iov[i].iov_base, 0, 8192);
	}
	cr_assert_eq(auraio_register_buffers(engine, iov, 2), 0);
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert(st.buffers_registered || st.backend != AURAIO_BACKEND_IO_URING,
		  "not registered: %s", st.buffers_reason);
	cr_assert_eq(
	    wait_req(auraio_read(engine, fd, auraio_buf_fixed(1, 2048), 4096, 12288, NULL, NULL)),
	    4096);
	cr_assert(check_pattern((char *) iov[1].iov_base + 2048, 4096, 12288));
	cr_assert_eq(((char *) iov[1].iov_base)[2047], 0, "wrote before the offset");
	cr_assert_eq(((char *) iov[1].iov_base)[6144], 0, "wrote past the length");
	fill_pattern(iov[0].iov_base, 8192, 0);
	cr_assert_eq(
	    wait_req(auraio_write(engine, fd, auraio_buf_fixed(0, 0), 8192, 0, NULL, NULL)), 8192);
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
	cr_assert_eq(auraio_unregister_buffers(engine), -ENOENT);
	for (int i = 0; i < 2; i++)
		free(iov[i].iov_base);
}

Test(registered_buffers, the_exact_end_of_a_buffer_is_in_bounds)
{
	static char mem[4096] __attribute__((aligned(4096)));
	struct iovec iov = { mem, sizeof(mem) };

	cr_assert_eq(auraio_register_buffers(engine, &iov, 1), 0);
	cr_assert_eq(
	    wait_req(auraio_read(engine, fd, auraio_buf_fixed(0, 4000), 96, 0, NULL, NULL)), 96);
	cr_assert_eq(wait_req(auraio_read(engine, fd, auraio_buf_fixed(0, 4096), 0, 0, NULL, NULL)),
		     0);
	errno = 0;
	cr_assert_null(auraio_read(engine, fd, auraio_buf_fixed(0, 4000), 97, 0, NULL, NULL));
	cr_assert_eq(errno, EOVERFLOW);
}

Test(registered_buffers, registration_errors_are_reported)
{
	static char mem[4096];
	struct iovec ok = { mem, sizeof(mem) }, empty = { mem, 0 }, null = { NULL, 16 };

	cr_assert_eq(auraio_register_buffers(engine, &empty, 1), -EINVAL);
	cr_assert_eq(auraio_register_buffers(engine, &null, 1), -EINVAL);
	cr_assert_eq(auraio_register_buffers(engine, &ok, 0), -EINVAL);
	cr_assert_eq(auraio_register_buffers(engine, NULL, 1), -EINVAL);
	{
		struct iovec huge = { mem, (1ull << 30) + 1 }; /* never touched: refused first */

		cr_assert_eq(auraio_register_buffers(engine, &huge, 1), -EINVAL);
	}
	cr_assert_eq(auraio_register_buffers(engine, &ok, 1), 0);
	cr_assert_eq(auraio_register_buffers(engine, &ok, 1), -EBUSY);
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
}

Test(registered_buffers, unregister_is_refused_while_fixed_io_is_in_flight)
{
	static char mem[4096];
	struct iovec iov = { mem, sizeof(mem) };
	auraio_request_t *req;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(auraio_register_buffers(engine, &iov, 1), 0);
	req = auraio_read(engine, p[0], auraio_buf_fixed(0, 0), 16, 0, NULL, NULL);
	cr_assert_not_null(req);
	{
		auraio_stats_t st;

		auraio_get_stats(engine, &st);
		if (!st.buffers_registered)
			cr_skip_test("buffers not pinned here: %s", st.buffers_reason);
	}
	cr_assert_eq(auraio_unregister_buffers(engine), -EBUSY);
	cr_assert_eq(write(p[1], "hello", 5), 5);
	cr_assert_eq(wait_req(req), 5);
	cr_assert_eq(memcmp(mem, "hello", 5), 0);
	cr_assert_eq(auraio_unregister_buffers(engine), 0);
	close(p[0]);
	close(p[1]);
}

Test(registered_buffers, unregister_is_refused_while_io_on_unpinned_buffers_is_in_flight)
{
	static char mem[4096];
	struct iovec iov = { mem, sizeof(mem) };
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_request_t *req;
	auraio_stats_t st;
	ssize_t res = 0;
	int p[2];

	/* The thread backend never pins: the memory is still borrowed while I/O uses it. */
	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.log_fn = quiet_log;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(auraio_register_buffers(e, &iov, 1), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.buffers_registered, false);
	req = auraio_read(e, p[0], auraio_buf_fixed(0, 0), 16, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_unregister_buffers(e), -EBUSY);
	cr_assert_eq(write(p[1], "hello", 5), 5);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 5);
	cr_assert_eq(auraio_unregister_buffers(e), 0);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

static char logged[256];

static void capture_log(int level, const char *msg, void *arg)
{
	(void) level;
	(void) arg;
	snprintf(logged, sizeof(logged), "%s", msg);
}

/* The kernel holds a process to RLIMIT_MEMLOCK only without CAP_IPC_LOCK. */
static bool cap_ipc_lock(bool drop)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	unsigned bit = CAP_TO_MASK(CAP_IPC_LOCK), word = CAP_TO_INDEX(CAP_IPC_LOCK);
	bool held;

	cr_assert_eq(syscall(SYS_capget, &hdr, data), 0, "capget: %s", strerror(errno));
	held = (data[word].effective & bit) != 0;
	if (held && drop) {
		data[word].effective &= ~bit;
		data[word].permitted &= ~bit;
		cr_assert_eq(syscall(SYS_capset, &hdr, data), 0, "capset: %s", strerror(errno));
	}
	return held;
}

Test(registered_buffers, over_the_memlock_limit_io_still_works_unpinned)
{
	struct rlimit rl = { .rlim_cur = 64 * 1024, .rlim_max = 64 * 1024 }; /* ulimit -l 64 */
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;
	struct iovec iov;
	ssize_t res = 0;
	auraio_request_t *req;

	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	cap_ipc_lock(true); /* as root: be held to the limit like an ordinary process */
	auraio_options_init(&o);
	o.log_fn = capture_log;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	iov.iov_base = aligned_alloc(4096, 1 << 20);
	iov.iov_len = 1 << 20;
	cr_assert_eq(auraio_register_buffers(e, &iov, 1), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.buffers_registered, false);
	cr_assert(strstr(st.buffers_reason, "RLIMIT_MEMLOCK"), "reason: %s", st.buffers_reason);
	cr_assert(strstr(logged, "RLIMIT_MEMLOCK"), "log: %s", logged);
	req = auraio_read(e, fd, auraio_buf_fixed(0, 4096), 8192, 65536, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 8192);
	cr_assert(check_pattern((char *) iov.iov_base + 4096, 8192, 65536));
	errno = 0;
	cr_assert_null(auraio_read(e, fd, auraio_buf_fixed(0, 1 << 20), 1, 0, NULL, NULL));
	cr_assert_eq(errno, EOVERFLOW, "bounds are still checked when degraded");
	cr_assert_eq(auraio_unregister_buffers(e), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.buffers_reason[0], '\0', "nothing is registered, nothing degraded: %s",
		     st.buffers_reason);
	auraio_destroy(e);
	free(iov.iov_base);
}

Test(registered_buffers, with_cap_ipc_lock_buffers_over_the_memlock_limit_are_pinned)
{
	struct rlimit rl = { .rlim_cur = 64 * 1024, .rlim_max = 64 * 1024 };
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;
	auraio_request_t *req;
	struct iovec iov;
	ssize_t res = 0;

	if (!cap_ipc_lock(false))
		cr_skip_test("needs CAP_IPC_LOCK");
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_IO_URING;
	o.ring_count = 2;
	e = auraio_create_with_options(&o);
	if (!e)
		cr_skip_test("io_uring unavailable: %s", strerror(errno));
	iov.iov_base = aligned_alloc(4096, 1 << 20);
	iov.iov_len = 1 << 20;
	memset(iov.iov_base, 0, iov.iov_len);
	cr_assert_eq(auraio_register_buffers(e, &iov, 1), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	/* The kernel does not count pinned pages of a CAP_IPC_LOCK process against the
	 * limit: refusing them here would only lose the optimisation. */
	cr_assert(st.buffers_registered, "not registered: %s", st.buffers_reason);
	req = auraio_read(e, fd, auraio_buf_fixed(0, 4096), 8192, 65536, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 8192);
	cr_assert(check_pattern((char *) iov.iov_base + 4096, 8192, 65536));
	cr_assert_eq(auraio_unregister_buffers(e), 0);
	auraio_destroy(e);
	free(iov.iov_base);
}
