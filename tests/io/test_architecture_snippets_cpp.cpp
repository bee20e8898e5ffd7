/* SPDX-License-Identifier: MIT */
/*
 * test_architecture_snippets_cpp.cpp - the C++ snippets of AURAIO_ARCHITECTURE.md, section 6
 * (registered files, registered buffers, SQPOLL), pasted as they appear there and run on
 * real files through auraio.hpp. Names the document leaves undefined (engine, fd1..fd3,
 * new_fd, fd, buf, len, offset, callback) are defined minimally around each snippet; the
 * snippet lines keep the document's text (clang-format is off for them). Waits for the
 * completions are added between snippet parts, then the bytes and the registration state
 * are checked.
 */
#include <criterion/criterion.h>

#include <auraio.hpp>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace
{

uint8_t pattern_byte(uint64_t offset)
{
	return static_cast<uint8_t>((offset * 2654435761u) >> 13);
}

bool check_pattern(const void *buf, size_t len, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		if (static_cast<const uint8_t *>(buf)[i] != pattern_byte(offset + i))
			return false;
	return true;
}

/* A file of `size` pattern bytes in /var/tmp, unlinked at once; the caller closes it. */
int temp_file(size_t size)
{
	char path[] = "/var/tmp/auracpp.XXXXXX";
	std::vector<uint8_t> data(size);
	int fd = mkstemp(path);

	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	unlink(path);
	for (size_t i = 0; i < size; i++)
		data[i] = pattern_byte(i);
	cr_assert_eq(pwrite(fd, data.data(), size, 0), static_cast<ssize_t>(size));
	return fd;
}

/* Completion record shared by a snippet's `callback`. */
struct Seen {
	int calls = 0;
	ssize_t last = -12345;
};

/* Wait until `seen` has `calls` completions; the deadline only decides when to give up. */
void wait_calls(auraio::Engine &engine, const Seen &seen, int calls)
{
	for (int i = 0; i < 1000 && seen.calls < calls; i++)
		engine.wait(100);
	cr_assert_eq(seen.calls, calls, "completions missing");
}

auraio::Error expect_error(auraio::Engine &engine, void (auraio::Engine::*method)())
{
	try {
		(engine.*method)();
	} catch (const auraio::Error &e) {
		return e;
	}
	cr_assert_fail("no auraio::Error thrown");
	return auraio::Error(0, "unreachable");
}

} /* namespace */

Test(architecture_snippets_cpp, registered_files_snippet_registers_reads_updates_and_unregisters)
{
	auraio::Engine engine;
	int fd1 = temp_file(8192), fd2 = temp_file(8192), fd3 = temp_file(8192);
	int new_fd = temp_file(8192);
	char buf[4096];
	size_t len = sizeof(buf);
	off_t offset = 4096;
	Seen seen;
	auto callback = [&seen](auraio::Request &, ssize_t result) {
		seen.calls++;
		seen.last = result;
	};

	/* clang-format off */
std::vector<int> fds = { fd1, fd2, fd3 };
engine.register_files(fds);

// I/O calls unchanged
engine.read(fd1, buf, len, offset, callback);
	/* clang-format on */

	cr_assert_eq(engine.stats().files_registered, 3);
	wait_calls(engine, seen, 1);
	cr_assert_eq(seen.last, 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 4096));

	/* clang-format off */
// Replace a registered fd:
engine.update_file(0, new_fd);
	/* clang-format on */

	/* new_fd holds slot 0 now, so it cannot go into another slot. */
	try {
		engine.update_file(1, new_fd);
		cr_assert_fail("new_fd was not registered in slot 0");
	} catch (const auraio::Error &e) {
		cr_assert_eq(e.errno_value(), EINVAL);
	}
	memset(buf, 0, sizeof(buf));
	engine.read(new_fd, buf, len, 0, callback);
	wait_calls(engine, seen, 2);
	cr_assert_eq(seen.last, 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 0));

	/* clang-format off */
// Cleanup:
engine.unregister_files();
	/* clang-format on */

	cr_assert_eq(engine.stats().files_registered, 0);
	cr_assert_eq(expect_error(engine, &auraio::Engine::unregister_files).errno_value(), ENOENT);
	close(fd1);
	close(fd2);
	close(fd3);
	close(new_fd);
}

Test(architecture_snippets_cpp, registered_buffers_snippet_reads_into_buffer_zero)
{
	auraio::Engine engine;
	int fd = temp_file(16384);
	off_t offset = 8192;
	Seen seen;
	auto callback = [&seen](auraio::Request &, ssize_t result) {
		seen.calls++;
		seen.last = result;
	};

	/* clang-format off */
std::vector<void*> bufs(256);
std::vector<iovec> iovs(256);
for (int i = 0; i < 256; i++) {
    bufs[i] = aligned_alloc(4096, 4096);
    iovs[i] = { bufs[i], 4096 };
}
engine.register_buffers(iovs);

// Use registered buffers:
engine.read(fd, auraio::BufferRef::fixed(0), 4096, offset, callback);
	/* clang-format on */

	wait_calls(engine, seen, 1);
	cr_assert_eq(seen.last, 4096);
	cr_assert(check_pattern(bufs[0], 4096, 8192));

	/* clang-format off */
// Cleanup:
engine.unregister_buffers();
	/* clang-format on */

	cr_assert_eq(expect_error(engine, &auraio::Engine::unregister_buffers).errno_value(),
		     ENOENT);
	for (void *b : bufs)
		free(b);
	close(fd);
}

Test(architecture_snippets_cpp, sqpoll_snippet_creates_an_engine_that_reads)
{
	int fd = temp_file(8192);
	char buf[4096];
	Seen seen;

	/* clang-format off */
auraio::Options opts;
opts.enable_sqpoll(true)
    .sqpoll_idle_ms(2000);
auraio::Engine engine(opts);
	/* clang-format on */

	cr_assert(opts.c_options().enable_sqpoll);
	cr_assert_eq(opts.c_options().sqpoll_idle_ms, 2000);
	cr_log_info("sqpoll_active = %d", engine.stats().sqpoll_active);
	engine.read(fd, buf, sizeof(buf), 4096, [&seen](auraio::Request &, ssize_t result) {
		seen.calls++;
		seen.last = result;
	});
	wait_calls(engine, seen, 1);
	cr_assert_eq(seen.last, 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 4096));
	close(fd);
}
