/* SPDX-License-Identifier: MIT */
/*
 * cpp_wrapper_test.h - what the auraio.hpp suites (tests/io/test_cpp_wrapper*.cpp) share:
 * a temporary file of pattern bytes and its check, waiting for a completion with a
 * deadline (never a sleep), and catching the auraio::Error a call throws.
 */
#ifndef AURA_CPP_WRAPPER_TEST_H
#define AURA_CPP_WRAPPER_TEST_H

#include <criterion/criterion.h>

#include <auraio.hpp>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace
{

inline uint8_t pattern_byte(uint64_t offset)
{
	return static_cast<uint8_t>((offset * 2654435761u) >> 13);
}

inline bool check_pattern(const void *buf, size_t len, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		if (static_cast<const uint8_t *>(buf)[i] != pattern_byte(offset + i))
			return false;
	return true;
}

/* A file of `size` pattern bytes in /var/tmp, unlinked at once, closed on scope exit. */
struct TempFile {
	int fd = -1;

	explicit TempFile(size_t size)
	{
		char path[] = "/var/tmp/auracpp.XXXXXX";
		std::vector<uint8_t> data(size);

		fd = mkstemp(path);
		cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
		unlink(path);
		for (size_t i = 0; i < size; i++)
			data[i] = pattern_byte(i);
		cr_assert_eq(pwrite(fd, data.data(), size, 0), static_cast<ssize_t>(size));
	}
	~TempFile()
	{
		close(fd);
	}
	TempFile(const TempFile &) = delete;
	TempFile &operator=(const TempFile &) = delete;
};

/* Wait until `done()` holds; the deadline only decides when to give up. */
template <class Pred> void wait_for(auraio::Engine &engine, Pred done)
{
	for (int i = 0; i < 1000 && !done(); i++)
		engine.wait(100);
	cr_assert(done(), "completion never arrived");
}

/* Run `fn` and return the auraio::Error it throws (failing the test if none). */
template <class Fn> auraio::Error expect_error(Fn fn)
{
	try {
		fn();
	} catch (const auraio::Error &e) {
		return e;
	}
	cr_assert_fail("no auraio::Error thrown");
	return auraio::Error(0, "unreachable");
}

} /* namespace */

#endif
