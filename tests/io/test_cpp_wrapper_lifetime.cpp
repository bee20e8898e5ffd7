/* SPDX-License-Identifier: MIT */
/*
 * test_cpp_wrapper_lifetime.cpp - auraio.hpp: errors (errno, operation name, EAGAIN and
 * try_read), callback holder lifetime, exceptions thrown by callbacks, Engine moves and
 * Buffer RAII (helpers: tests/support/cpp_wrapper_test.h).
 * Completions are awaited with Engine::wait() and a deadline, never with sleeps.
 * No cr_assert runs inside a callback: callbacks record, the test body asserts.
 */
#include <criterion/criterion.h>

#include <auraio.hpp>

#include "cpp_wrapper_test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

/* One ring with a fixed in-flight limit: deterministic EAGAIN. */
auraio::Options tight_options(int limit)
{
	auraio::Options o;

	o.ring_count(1).queue_depth(limit).disable_adaptive(true).initial_in_flight(limit);
	return o;
}

} /* namespace */

/* --- Errors ------------------------------------------------------------------------- */

Test(cpp_errors, read_on_fd_minus_one_throws_einval_naming_the_operation)
{
	auraio::Engine engine;
	char buf[16];

	try {
		engine.read(-1, buf, sizeof(buf), 0, [](auraio::Request &, ssize_t) {});
		cr_assert_fail("no exception");
	} catch (const std::system_error &e) { /* Error is a std::system_error */
		const auraio::Error *ae = dynamic_cast<const auraio::Error *>(&e);

		cr_assert_not_null(ae);
		cr_assert_eq(e.code().value(), EINVAL);
		cr_assert_eq(ae->errno_value(), EINVAL);
		cr_assert(e.code() == std::errc::invalid_argument);
		cr_assert(strstr(e.what(), "auraio_read"), "what(): %s", e.what());
	}
}

Test(cpp_errors, fixed_buffer_past_its_end_throws_eoverflow_and_unknown_index_einval)
{
	TempFile f(8192);
	auraio::Engine engine;
	std::vector<char> mem(4096);

	engine.register_buffers({ { mem.data(), mem.size() } });
	auto noop = [](auraio::Request &, ssize_t) {};
	auraio::Error over = expect_error(
	    [&] { engine.read(f.fd, auraio::BufferRef::fixed(0, 2048), 4096, 0, noop); });
	cr_assert_eq(over.errno_value(), EOVERFLOW);
	auraio::Error unknown =
	    expect_error([&] { engine.read(f.fd, auraio::BufferRef::fixed(1), 16, 0, noop); });
	cr_assert_eq(unknown.errno_value(), EINVAL);
	engine.unregister_buffers();
}

Test(cpp_errors, unregister_files_without_registration_throws_enoent)
{
	auraio::Engine engine;
	auraio::Error e = expect_error([&] { engine.unregister_files(); });

	cr_assert_eq(e.errno_value(), ENOENT);
	cr_assert(strstr(e.what(), "auraio_unregister_files"), "what(): %s", e.what());
	cr_assert_eq(expect_error([&] { engine.update_file(0, 0); }).errno_value(), ENOENT);
}

Test(cpp_errors, unregister_buffers_without_registration_throws_enoent)
{
	auraio::Engine engine;

	cr_assert_eq(expect_error([&] { engine.unregister_buffers(); }).errno_value(), ENOENT);
}

Test(cpp_errors, full_ring_throws_eagain_and_try_read_returns_an_empty_request)
{
	TempFile f(8192);
	auraio::Engine engine(tight_options(1));
	char a[4096], b[4096];
	auto token = std::make_shared<int>(0);
	ssize_t first = -1;

	engine.read(f.fd, a, sizeof(a), 0, [&](auraio::Request &, ssize_t n) { first = n; });
	/* The first read is in flight until a poll handles it: the limit of 1 is reached. */
	auraio::Error e = expect_error(
	    [&] { engine.read(f.fd, b, sizeof(b), 4096, [token](auraio::Request &, ssize_t) {}); });
	cr_assert_eq(e.errno_value(), EAGAIN);
	auraio::Request r =
	    engine.try_read(f.fd, b, sizeof(b), 4096, [token](auraio::Request &, ssize_t) {});
	cr_assert_not(static_cast<bool>(r));
	iovec iov = { b, sizeof(b) };
	auto nop = [token](auraio::Request &, ssize_t) {};
	cr_assert_not(static_cast<bool>(engine.try_readv(f.fd, &iov, 1, 4096, nop)));
	cr_assert_not(static_cast<bool>(engine.try_writev(f.fd, &iov, 1, 4096, nop)));
	cr_assert_not(static_cast<bool>(engine.try_fsync(f.fd, nop)));
	cr_assert_not(static_cast<bool>(engine.try_fdatasync(f.fd, nop)));
	cr_assert_eq(token.use_count(), 2, "refused callbacks were destroyed (nop holds one)");
	wait_for(engine, [&] { return first != -1; });
	cr_assert_eq(first, 4096);
	ssize_t second = -1;
	r = engine.try_write(f.fd, b, sizeof(b), 4096,
			     [&](auraio::Request &, ssize_t n) { second = n; });
	cr_assert(static_cast<bool>(r), "room again after the completion was handled");
	wait_for(engine, [&] { return second != -1; });
	cr_assert_eq(second, 4096);
	ssize_t synced = -1;
	r = engine.try_fdatasync(f.fd, [&](auraio::Request &, ssize_t n) { synced = n; });
	cr_assert(static_cast<bool>(r), "room again: try_fdatasync submits");
	wait_for(engine, [&] { return synced != -1; });
	cr_assert_eq(synced, 0);
}

Test(cpp_errors, failed_submission_destroys_the_callback_without_calling_it)
{
	auraio::Engine engine;
	auto token = std::make_shared<int>(0);
	bool called = false;
	char buf[16];

	auraio::Error e = expect_error([&] {
		engine.write(-1, buf, sizeof(buf), 0,
			     [token, &called](auraio::Request &, ssize_t) { called = true; });
	});
	cr_assert_eq(e.errno_value(), EINVAL);
	cr_assert_eq(token.use_count(), 1);
	engine.poll();
	cr_assert_not(called);
}

Test(cpp_errors, empty_std_function_is_rejected_with_einval_at_submit)
{
	TempFile f(4096);
	auraio::Engine engine;
	std::function<void(auraio::Request &, ssize_t)> empty;
	char buf[16];

	cr_assert_eq(
	    expect_error([&] { engine.read(f.fd, buf, sizeof(buf), 0, empty); }).errno_value(),
	    EINVAL);
	cr_assert_eq(engine.stats().total.ops_submitted, 0u, "nothing reached the engine");
}

/* --- Callback lifetime and exceptions ----------------------------------------------- */

Test(cpp_callbacks, holder_is_destroyed_right_after_the_callback_returns)
{
	TempFile f(4096);
	auraio::Engine engine;
	auto token = std::make_shared<int>(0);
	long count_inside = 0;
	bool done = false;
	char buf[4096];

	engine.read(f.fd, buf, sizeof(buf), 0,
		    [token, &count_inside, &done](auraio::Request &, ssize_t) {
			    count_inside = token.use_count();
			    done = true;
		    });
	cr_assert_eq(token.use_count(), 2, "the holder keeps one copy");
	wait_for(engine, [&] { return done; });
	cr_assert_eq(count_inside, 2);
	cr_assert_eq(token.use_count(), 1, "holder deleted after the callback");
}

Test(cpp_callbacks, exception_from_a_callback_is_rethrown_by_the_wait_that_ran_it)
{
	TempFile f(8192);
	auraio::Engine engine(auraio::Options().ring_count(1));
	char a[4096], b[4096];
	ssize_t other = -1;
	bool thrown = false, caught = false;

	engine.read(f.fd, a, sizeof(a), 0, [&](auraio::Request &, ssize_t) {
		thrown = true;
		throw std::runtime_error("callback failed");
	});
	engine.read(f.fd, b, sizeof(b), 4096, [&](auraio::Request &, ssize_t n) { other = n; });
	for (int i = 0; i < 1000 && !caught; i++) {
		try {
			engine.wait(100);
		} catch (const std::runtime_error &e) {
			caught = true;
			cr_assert_str_eq(e.what(), "callback failed");
		}
	}
	cr_assert(thrown && caught);
	wait_for(engine, [&] { return other != -1; });
	cr_assert_eq(other, 4096, "the other completion was delivered normally");
	cr_assert_eq(engine.poll(), 0, "the exception is rethrown once");
}

Test(cpp_callbacks, exception_from_a_callback_run_by_a_c_call_is_rethrown_by_the_next_poll)
{
	TempFile f(4096);
	auraio::Engine engine;
	bool thrown = false, caught = false;
	char buf[4096];

	engine.read(f.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t) {
		thrown = true;
		throw std::logic_error("parked");
	});
	for (int i = 0; i < 1000 && !thrown; i++)
		cr_assert_geq(auraio_wait(engine.handle(), 100), 0);
	cr_assert(thrown);
	try {
		engine.poll();
	} catch (const std::logic_error &e) {
		caught = true;
		cr_assert_str_eq(e.what(), "parked");
	}
	cr_assert(caught);
	cr_assert_eq(engine.wait(0), 0, "rethrown once");
}

Test(cpp_callbacks, exceptions_from_callbacks_run_by_the_destructor_are_discarded)
{
	TempFile f(4096);
	bool called = false;
	char buf[4096];

	{
		auraio::Engine engine;

		engine.read(f.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t) {
			called = true;
			throw std::runtime_error("during destruction");
		});
	} /* ~Engine completes the read and must neither throw nor terminate */
	cr_assert(called);
}

/* A callback's submissions stay staged until the wait that ran it is called again; here
 * they fill the ring's submission queue (depth 4) and ~Engine comes instead. It must
 * cancel them, run each callback once and free each holder (a hang is the failure). */
Test(cpp_callbacks, destructor_after_callbacks_filled_the_submission_queue_runs_every_callback,
     .timeout = 20)
{
	TempFile f(4096);
	auto token = std::make_shared<int>(0);
	int p[2], calls = 0;
	ssize_t last = 0;
	char one[1], b[4];
	bool filled = false;

	cr_assert_eq(pipe(p), 0);
	{
		auraio::Engine engine(tight_options(4));

		engine.read(f.fd, one, 1, 0, [&](auraio::Request &, ssize_t) {
			for (int i = 0; i < 4; i++)
				engine.read(p[0], &b[i], 1, 0,
					    [token, &calls, &last](auraio::Request &, ssize_t n) {
						    calls++;
						    last = n;
					    });
			filled = true;
		});
		wait_for(engine, [&] { return filled; });
		cr_assert_eq(token.use_count(), 5, "four holders in flight");
	}
	cr_assert_eq(calls, 4);
	cr_assert_eq(last, -ECANCELED);
	cr_assert_eq(token.use_count(), 1, "every holder was freed");
	close(p[0]);
	close(p[1]);
}

/* --- Moves -------------------------------------------------------------------------- */

Test(cpp_move, move_construction_transfers_the_engine_and_its_requests_in_flight)
{
	TempFile f(4096);
	auraio::Engine a;
	auraio_engine_t *h = a.handle();
	char buf[4096];
	ssize_t got = -1;

	a.read(f.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t n) { got = n; });
	auraio::Engine b(std::move(a));
	cr_assert_null(a.handle());
	cr_assert_eq(b.handle(), h);
	wait_for(b, [&] { return got != -1; });
	cr_assert_eq(got, 4096);
	cr_assert(check_pattern(buf, 4096, 0));
}

Test(cpp_move, move_assignment_destroys_the_old_engine_and_runs_its_callbacks)
{
	TempFile f(4096);
	auraio::Engine a, b;
	auraio_engine_t *ha = a.handle();
	char buf[4096];
	ssize_t got = 1;
	bool called = false;

	b.read(f.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t n) {
		got = n;
		called = true;
	});
	b = std::move(a);
	cr_assert(called, "the old engine completed its request while being destroyed");
	cr_assert(got == 4096 || got == -ECANCELED, "result %zd", got);
	cr_assert_eq(b.handle(), ha);
	cr_assert_null(a.handle());
	cr_assert_geq(b.stats().ring_count, 1);
}

Test(cpp_move, moved_from_engine_throws_einval)
{
	auraio::Engine a;
	auraio::Engine b(std::move(a));
	char buf[16];

	cr_assert_eq(expect_error([&] { a.poll(); }).errno_value(), EINVAL);
	cr_assert_eq(expect_error([&] { a.stats(); }).errno_value(), EINVAL);
	cr_assert_eq(expect_error([&] {
			     a.read(0, buf, sizeof(buf), 0, [](auraio::Request &, ssize_t) {});
		     }).errno_value(),
		     EINVAL);
}

/* --- Buffers ------------------------------------------------------------------------ */

Test(cpp_buffer, buffer_owns_an_aligned_pool_buffer_usable_for_io)
{
	TempFile f(8192);
	auraio::Engine engine(auraio::Options().buffer_alignment(8192));
	auraio::Buffer buf(engine, 4096);
	ssize_t got = -1;

	cr_assert_not_null(buf.data());
	cr_assert_eq(buf.size(), 4096u);
	cr_assert_eq(reinterpret_cast<uintptr_t>(buf.data()) % 8192, 0u);
	engine.read(f.fd, buf, buf.size(), 4096, [&](auraio::Request &, ssize_t n) { got = n; });
	wait_for(engine, [&] { return got != -1; });
	cr_assert_eq(got, 4096);
	cr_assert(check_pattern(buf.data(), 4096, 4096));
}

Test(cpp_buffer, destroyed_buffer_goes_back_to_the_pool)
{
	auraio::Engine engine;
	void *first;

	{
		auraio::Buffer b(engine, 4096);
		first = b.data();
	}
	auraio::Buffer again(engine, 4096);
	cr_assert_eq(again.data(), first, "the thread cache hands the freed buffer back");
}

Test(cpp_buffer, move_leaves_the_source_empty_and_release_gives_up_ownership)
{
	auraio::Engine engine;
	auraio::Buffer a(engine, 4096);
	void *p = a.data();
	auraio::Buffer b(std::move(a));

	cr_assert_null(a.data());
	cr_assert_eq(a.size(), 0u);
	cr_assert_not(static_cast<bool>(a));
	cr_assert_eq(b.data(), p);
	auraio::Buffer c;
	c = std::move(b);
	cr_assert_eq(c.data(), p);
	void *raw = c.release();
	cr_assert_eq(raw, p);
	cr_assert_null(c.data());
	engine.buffer_free(raw);
	void *again = engine.buffer_alloc(4096);
	cr_assert_eq(again, p, "buffer_free returned it to the pool");
	engine.buffer_free(again);
	engine.buffer_free(nullptr);
}

Test(cpp_buffer, zero_byte_allocation_throws_einval)
{
	auraio::Engine engine;

	cr_assert_eq(expect_error([&] { engine.buffer_alloc(0); }).errno_value(), EINVAL);
	cr_assert_eq(expect_error([&] { auraio::Buffer b(engine, 0); }).errno_value(), EINVAL);
}

static void count_log(int, const char *, void *arg)
{
	++*static_cast<int *>(arg);
}

/* A Buffer declared before its Engine (or whose Engine was assigned over) is destroyed
 * after the engine freed its pool: it must not reach into the dead engine. When a new
 * engine took the old one's address, a free into it would be logged as foreign. */
Test(cpp_buffer, buffer_that_outlives_its_engine_frees_nothing)
{
	int logged = 0;
	auraio::Buffer early;
	auraio::Buffer other;
	auraio::Engine engine(auraio::Options().log_fn(count_log, &logged));

	{
		auraio::Engine gone(auraio::Options().log_fn(count_log, &logged));

		early = auraio::Buffer(gone, 4096);
		cr_assert_not_null(early.data());
	}
	engine = auraio::Engine(auraio::Options().log_fn(count_log, &logged));
	other = auraio::Buffer(engine, 4096);
	engine = auraio::Engine(auraio::Options().log_fn(count_log, &logged));
	early.reset();
	cr_assert_null(early.data());
	other.reset();
	cr_assert_eq(logged, 0, "a buffer freed into an engine that does not own it");
}

/* A write staged by a callback, then update_file() while the kernel refuses entries: the
 * C call's -EAGAIN surfaces as Error EAGAIN (nothing changed), and once the write went
 * out the same update succeeds. */
Test(cpp_errors, update_file_refused_by_the_kernel_throws_eagain_and_can_be_retried)
{
	TempFile f1(4096), f2(4096);
	auraio::Engine engine(
	    auraio::Options().ring_count(1).queue_depth(64).disable_adaptive(true));
	auraio_fault_t refuse = {};
	char one[1], data[512];
	int eagain = 0, other = 0;
	ssize_t wrote = -1;
	bool ran = false;

	if (engine.stats().backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
	if (auraio_fault_clear(engine.handle()) == -ENOTSUP)
		cr_skip_test("fault injection is not compiled into this build");
	refuse.fd = -1;
	refuse.kind = AURAIO_FAULT_ENTER;
	refuse.error = EAGAIN;
	memset(data, 0xab, sizeof(data));
	engine.register_files({ f1.fd });
	engine.read(f1.fd, one, 1, 0, [&](auraio::Request &, ssize_t) {
		engine.write(f1.fd, data, sizeof(data), 0,
			     [&](auraio::Request &, ssize_t n) { wrote = n; });
		auraio_fault_set(engine.handle(), &refuse);
		try {
			engine.update_file(0, f2.fd);
		} catch (const auraio::Error &e) {
			(e.errno_value() == EAGAIN ? eagain : other)++;
		}
		auraio_fault_clear(engine.handle());
		ran = true;
	});
	wait_for(engine, [&] { return ran; });
	cr_assert_eq(eagain, 1, "update_file did not report the refusal");
	cr_assert_eq(other, 0);
	wait_for(engine, [&] { return wrote != -1; });
	cr_assert_eq(wrote, 512);
	engine.update_file(0, f2.fd);
	cr_assert_eq(engine.stats().files_registered, 1);
}
