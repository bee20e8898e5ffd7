/* SPDX-License-Identifier: MIT */
/*
 * test_architecture_snippets.c - the C snippets of docs AURAIO_ARCHITECTURE.md, section 6
 * (registered files, registered buffers, SQPOLL), pasted as they appear there and run on
 * real files. Names the document leaves undefined (fd1, count, index, new_fd, fd, offset,
 * cb, data) are defined minimally around each snippet; the snippet lines themselves keep
 * the document's text. Their effects are then checked: the bytes read, the stats, and
 * the errors that prove the registration state.
 */
#include <auraio.h>

#include "test_util.h"

/* The completion counter the snippets' `cb` and `data` stand for. */
static void cb(auraio_request_t *req, ssize_t result, void *data)
{
	record_cb(req, result, data);
}

/* Wait (with a deadline, not a sleep) until `rec` has seen `calls` completions. */
static void wait_calls(auraio_engine_t *engine, struct recorder *rec, int calls)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

	while (atomic_load(&rec->calls) < calls && test_now_ns() < deadline)
		cr_assert_geq(auraio_wait(engine, 100), 0);
	cr_assert_eq(atomic_load(&rec->calls), calls, "completions missing");
}

/* Read 4096 bytes at `off` of `fd` through the plain-fd API and check the pattern. */
static void read_and_check(auraio_engine_t *engine, int fd, off_t off)
{
	struct recorder rec = { 0 };
	char buf[4096];

	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), off, cb, &rec),
			   "read: %s", strerror(errno));
	wait_calls(engine, &rec, 1);
	cr_assert_eq(atomic_load(&rec.last), 4096);
	cr_assert(check_pattern(buf, sizeof(buf), (uint64_t) off));
}

Test(architecture_snippets, registered_files_c_snippet_registers_reads_updates_and_unregisters)
{
	auraio_engine_t *engine = auraio_create();
	int fd1 = temp_file(8192, 0), fd2 = temp_file(8192, 0), fd3 = temp_file(8192, 0);
	int count = 3, index = 0, new_fd = temp_file(8192, 0);
	auraio_stats_t st;

	cr_assert_not_null(engine);

	/* clang-format off */
	// At startup: register all file descriptors
	int fds[] = { fd1, fd2, fd3, /* ... */ };
	auraio_register_files(engine, fds, count);
	/* clang-format on */

	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.files_registered, 3);

	/* clang-format off */
	// I/O operations automatically use registered files when available.
	// No change needed to auraio_read/auraio_write calls.
	/* clang-format on */
	read_and_check(engine, fd1, 0);
	read_and_check(engine, fd3, 4096);

	/* clang-format off */
	// To replace a file descriptor (e.g., log rotation):
	auraio_update_file(engine, index, new_fd);
	/* clang-format on */

	/* new_fd now holds slot 0: placing it in another slot is refused. */
	cr_assert_eq(auraio_update_file(engine, 1, new_fd), -EINVAL);
	read_and_check(engine, new_fd, 4096);
	read_and_check(engine, fd1, 0); /* fd1 is an ordinary fd again */

	/* clang-format off */
	// At shutdown:
	auraio_unregister_files(engine);
	/* clang-format on */

	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	cr_assert_eq(st.files_registered, 0);
	cr_assert_eq(auraio_unregister_files(engine), -ENOENT);
	auraio_destroy(engine);
	close(fd1);
	close(fd2);
	close(fd3);
	close(new_fd);
}

Test(architecture_snippets, registered_buffers_c_snippet_reads_into_buffer_zero_and_its_middle)
{
	auraio_engine_t *engine = auraio_create();
	int fd = temp_file(16384, 0);
	off_t offset = 8192;
	struct recorder rec = { 0 };
	struct recorder *data = &rec;

	cr_assert_not_null(engine);

	/* clang-format off */
	// Allocate and register a pool of buffers at startup
#define NUM_BUFFERS 256
#define BUF_SIZE 4096

	void *bufs[NUM_BUFFERS];
	struct iovec iovs[NUM_BUFFERS];
	for (int i = 0; i < NUM_BUFFERS; i++) {
		bufs[i] = aligned_alloc(4096, BUF_SIZE);
		iovs[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = BUF_SIZE };
	}
	auraio_register_buffers(engine, iovs, NUM_BUFFERS);
	/* clang-format on */

	/* Registered (or degraded to plain pointers under RLIMIT_MEMLOCK): either way the
	 * buffers are known, so registering again is refused. */
	cr_assert_eq(auraio_register_buffers(engine, iovs, NUM_BUFFERS), -EBUSY);
	memset(bufs[0], 0, BUF_SIZE);

	/* clang-format off */
	// Use registered buffers by index:
	auraio_read(engine, fd, auraio_buf_fixed(0, 0), BUF_SIZE, offset, cb, data);
	/* clang-format on */

	wait_calls(engine, &rec, 1);
	cr_assert_eq(atomic_load(&rec.last), BUF_SIZE);
	cr_assert(check_pattern(bufs[0], BUF_SIZE, (uint64_t) offset));

	/* clang-format off */
	// For sub-buffer offsets (reading into the middle of a registered buffer):
	auraio_read(engine, fd, auraio_buf_fixed(0, 2048), 2048, offset, cb, data);
	/* clang-format on */

	wait_calls(engine, &rec, 2);
	cr_assert_eq(atomic_load(&rec.last), 2048);
	cr_assert(check_pattern(bufs[0], 2048, (uint64_t) offset), "first half untouched");
	cr_assert(check_pattern((char *) bufs[0] + 2048, 2048, (uint64_t) offset));

	/* clang-format off */
	// At shutdown:
	auraio_unregister_buffers(engine);
	for (int i = 0; i < NUM_BUFFERS; i++) free(bufs[i]);
	/* clang-format on */

	cr_assert_eq(auraio_unregister_buffers(engine), -ENOENT);
	auraio_destroy(engine);
	close(fd);
}

Test(architecture_snippets, sqpoll_c_snippet_creates_an_engine_that_reads)
{
	int fd = temp_file(8192, 0);
	struct recorder rec = { 0 };
	char buf[4096];
	auraio_stats_t st;

	/* clang-format off */
	auraio_options_t opts;
	auraio_options_init(&opts);
	opts.enable_sqpoll = true;
	opts.sqpoll_idle_ms = 2000;  // Kernel thread sleeps after 2s idle
	auraio_engine_t *engine = auraio_create_with_options(&opts);
	/* clang-format on */

	cr_assert_not_null(engine, "create: %s", strerror(errno));
	cr_assert_eq(auraio_get_stats(engine, &st), 0);
	/* SQPOLL may be refused (then the rings run in normal mode); the read works either way. */
	cr_log_info("sqpoll_active = %d", st.sqpoll_active);
	cr_assert_not_null(auraio_read(engine, fd, auraio_buf(buf), sizeof(buf), 4096, cb, &rec));
	wait_calls(engine, &rec, 1);
	cr_assert_eq(atomic_load(&rec.last), 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 4096));
	auraio_destroy(engine);
	close(fd);
}
