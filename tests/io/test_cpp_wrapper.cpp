/* SPDX-License-Identifier: MIT */
/*
 * test_cpp_wrapper.cpp - auraio.hpp: Options reach the C struct and the engine, I/O
 * through lambdas, std::function and function objects, BufferRef and registration.
 * Errors, callback lifetime, exceptions thrown by callbacks, Engine moves and Buffer
 * RAII: test_cpp_wrapper_lifetime.cpp (helpers: tests/support/cpp_wrapper_test.h).
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

struct Recorder {
	int calls = 0;
	ssize_t result = -12345;
};

/* A function object callback. */
struct CountingCallback {
	Recorder *rec;
	void operator()(auraio::Request &, ssize_t result) const
	{
		rec->calls++;
		rec->result = result;
	}
};

Recorder fn_ptr_rec;
void fn_ptr_callback(auraio::Request &, ssize_t result)
{
	fn_ptr_rec.calls++;
	fn_ptr_rec.result = result;
}

} /* namespace */

/* --- Options ------------------------------------------------------------------------ */

Test(cpp_options, defaults_equal_auraio_options_init)
{
	auraio_options_t c;
	auraio::Options o;

	auraio_options_init(&c);
	cr_assert_eq(o.ring_count(), c.ring_count);
	cr_assert_eq(o.queue_depth(), c.queue_depth);
	cr_assert_eq(o.enable_sqpoll(), c.enable_sqpoll);
	cr_assert_eq(o.sqpoll_idle_ms(), c.sqpoll_idle_ms);
	cr_assert_eq(o.sqpoll_cpu(), c.sqpoll_cpu);
	cr_assert_eq(o.initial_in_flight(), c.initial_in_flight);
	cr_assert_eq(o.min_in_flight(), c.min_in_flight);
	cr_assert_eq(o.max_p99_latency_ms(), c.max_p99_latency_ms);
	cr_assert_eq(o.disable_adaptive(), c.disable_adaptive);
	cr_assert_eq(o.buffer_alignment(), c.buffer_alignment);
	cr_assert_eq(o.single_thread(), c.single_thread);
	cr_assert_eq(o.backend(), c.backend);
	cr_assert_eq(o.thread_workers(), c.thread_workers);
	cr_assert(o.c_options().log_fn == nullptr);
	cr_assert(o.log_fn() == nullptr);
	cr_assert_null(o.log_arg());
}

static void quiet_log(int, const char *, void *)
{
}

Test(cpp_options, every_setter_chains_and_reaches_the_c_struct)
{
	int log_arg = 0;
	auraio::Options o;

	o.ring_count(3)
	    .queue_depth(64)
	    .enable_sqpoll(true)
	    .sqpoll_idle_ms(2000)
	    .sqpoll_cpu(1)
	    .initial_in_flight(8)
	    .min_in_flight(2)
	    .max_p99_latency_ms(2.5)
	    .disable_adaptive(true)
	    .buffer_alignment(8192)
	    .single_thread(true)
	    .backend(AURAIO_BACKEND_THREADS)
	    .thread_workers(6)
	    .log_fn(quiet_log, &log_arg);
	const auraio_options_t &c = o.c_options();
	cr_assert_eq(c.ring_count, 3);
	cr_assert_eq(c.queue_depth, 64);
	cr_assert(c.enable_sqpoll);
	cr_assert_eq(c.sqpoll_idle_ms, 2000);
	cr_assert_eq(c.sqpoll_cpu, 1);
	cr_assert_eq(c.initial_in_flight, 8);
	cr_assert_eq(c.min_in_flight, 2);
	cr_assert_eq(c.max_p99_latency_ms, 2.5);
	cr_assert(c.disable_adaptive);
	cr_assert_eq(c.buffer_alignment, 8192u);
	cr_assert(c.single_thread);
	cr_assert_eq(c.backend, AURAIO_BACKEND_THREADS);
	cr_assert_eq(c.thread_workers, 6);
	cr_assert_eq(c.log_fn, &quiet_log);
	cr_assert_eq(c.log_arg, &log_arg);
	/* and every field reads back through its getter */
	cr_assert_eq(o.ring_count(), 3);
	cr_assert_eq(o.queue_depth(), 64);
	cr_assert(o.enable_sqpoll());
	cr_assert_eq(o.sqpoll_idle_ms(), 2000);
	cr_assert_eq(o.sqpoll_cpu(), 1);
	cr_assert_eq(o.initial_in_flight(), 8);
	cr_assert_eq(o.min_in_flight(), 2);
	cr_assert_eq(o.max_p99_latency_ms(), 2.5);
	cr_assert(o.disable_adaptive());
	cr_assert_eq(o.buffer_alignment(), 8192u);
	cr_assert(o.single_thread());
	cr_assert_eq(o.backend(), AURAIO_BACKEND_THREADS);
	cr_assert_eq(o.thread_workers(), 6);
	cr_assert(o.log_fn() == &quiet_log);
	cr_assert_eq(o.log_arg(), &log_arg);
}

/* --- Engine ------------------------------------------------------------------------- */

Test(cpp_engine, default_engine_has_a_handle_and_at_least_one_ring)
{
	auraio::Engine engine;

	cr_assert_not_null(engine.handle());
	cr_assert_geq(engine.stats().ring_count, 1);
	cr_assert_eq(engine.ring_count(), engine.stats().ring_count);
}

Test(cpp_engine, options_set_through_the_wrapper_reach_the_engine)
{
	auraio::Options opts;

	opts.ring_count(1).queue_depth(64).disable_adaptive(true).initial_in_flight(8);
	auraio::Engine engine(opts);
	auraio_ring_stats_t rs = engine.ring_stats(0);

	cr_assert_eq(engine.stats().ring_count, 1);
	cr_assert_eq(rs.queue_depth, 64u);
	cr_assert_eq(rs.in_flight_limit, 8u);
	cr_assert_eq(rs.phase, AURAIO_PHASE_FIXED);
}

Test(cpp_engine, thread_backend_option_selects_the_thread_backend_and_it_reads)
{
	TempFile f(8192);
	auraio::Options opts;
	char buf[4096];
	Recorder rec;

	opts.ring_count(1).backend(AURAIO_BACKEND_THREADS).thread_workers(2);
	auraio::Engine engine(opts);
	cr_assert_eq(engine.stats().backend, AURAIO_BACKEND_THREADS);
	engine.read(f.fd, buf, sizeof(buf), 4096, CountingCallback{ &rec });
	wait_for(engine, [&] { return rec.calls == 1; });
	cr_assert_eq(rec.result, 4096);
	cr_assert(check_pattern(buf, sizeof(buf), 4096));
}

Test(cpp_engine, out_of_range_option_throws_einval_from_the_constructor)
{
	auraio::Options opts;

	opts.queue_depth(5000).log_fn(quiet_log);
	auraio::Error e = expect_error([&] { auraio::Engine engine(opts); });
	cr_assert_eq(e.errno_value(), EINVAL);
	cr_assert(strstr(e.what(), "auraio_create_with_options"), "what(): %s", e.what());
}

Test(cpp_engine, poll_fd_is_an_open_descriptor)
{
	auraio::Engine engine;
	int pfd = engine.poll_fd();

	cr_assert_geq(pfd, 0);
	cr_assert_neq(fcntl(pfd, F_GETFD), -1);
}

Test(cpp_engine, ring_stats_outside_the_rings_throws_einval)
{
	auraio::Engine engine;

	cr_assert_eq(expect_error([&] { engine.ring_stats(engine.ring_count()); }).errno_value(),
		     EINVAL);
	cr_assert_eq(expect_error([&] { engine.ring_stats(-1); }).errno_value(), EINVAL);
}

/* --- I/O through callbacks ---------------------------------------------------------- */

Test(cpp_io, lambda_callback_receives_the_read_result)
{
	TempFile f(16384);
	auraio::Engine engine;
	std::vector<char> storage(4096);
	void *buf = storage.data(); /* a plain pointer converts to BufferRef */
	ssize_t got = -1;
	int seen_fd = -2;
	uint64_t latency = 0;
	bool done = false;

	auraio::Request req =
	    engine.read(f.fd, buf, 4096, 8192, [&](auraio::Request &r, ssize_t result) {
		    got = result;
		    seen_fd = r.fd();
		    latency = r.latency_ns();
		    done = true;
	    });
	cr_assert(static_cast<bool>(req));
	wait_for(engine, [&] { return done; });
	cr_assert_eq(got, 4096);
	cr_assert_eq(seen_fd, f.fd);
	cr_assert_gt(latency, 0u);
	cr_assert(check_pattern(buf, 4096, 8192));
}

Test(cpp_io, write_then_read_round_trip_through_lambdas)
{
	TempFile f(0);
	auraio::Engine engine;
	std::string out = "the quick brown fox jumps over the lazy dog";
	std::string in(out.size(), '\0');
	ssize_t wrote = -1, read_back = -1;

	engine.write(f.fd, &out[0], out.size(), 100,
		     [&wrote](auraio::Request &, ssize_t n) { wrote = n; });
	wait_for(engine, [&] { return wrote != -1; });
	cr_assert_eq(wrote, static_cast<ssize_t>(out.size()));
	engine.read(f.fd, &in[0], in.size(), 100,
		    [&read_back](auraio::Request &, ssize_t n) { read_back = n; });
	wait_for(engine, [&] { return read_back != -1; });
	cr_assert_eq(read_back, static_cast<ssize_t>(out.size()));
	cr_assert_str_eq(in.c_str(), out.c_str());
}

Test(cpp_io, std_function_function_object_and_function_pointer_callbacks_are_called)
{
	TempFile f(12288);
	auraio::Engine engine;
	char a[4096], b[4096], c[4096];
	Recorder ra, rb;
	std::function<void(auraio::Request &, ssize_t)> sf = [&ra](auraio::Request &, ssize_t n) {
		ra.calls++;
		ra.result = n;
	};

	fn_ptr_rec = Recorder();
	engine.read(f.fd, a, sizeof(a), 0, sf);
	engine.read(f.fd, b, sizeof(b), 4096, CountingCallback{ &rb });
	engine.read(f.fd, c, sizeof(c), 8192, fn_ptr_callback);
	wait_for(engine, [&] { return ra.calls + rb.calls + fn_ptr_rec.calls == 3; });
	cr_assert_eq(ra.result, 4096);
	cr_assert_eq(rb.result, 4096);
	cr_assert_eq(fn_ptr_rec.result, 4096);
	cr_assert(check_pattern(a, 4096, 0) && check_pattern(b, 4096, 4096) &&
		  check_pattern(c, 4096, 8192));
}

Test(cpp_io, writev_then_readv_round_trip)
{
	TempFile f(0);
	auraio::Engine engine;
	char w0[100], w1[300], r0[250], r1[150];
	iovec wv[2] = { { w0, sizeof(w0) }, { w1, sizeof(w1) } };
	iovec rv[2] = { { r0, sizeof(r0) }, { r1, sizeof(r1) } };
	ssize_t wrote = -1, got = -1;

	memset(w0, 'a', sizeof(w0));
	memset(w1, 'b', sizeof(w1));
	engine.writev(f.fd, wv, 2, 0, [&](auraio::Request &, ssize_t n) { wrote = n; });
	wait_for(engine, [&] { return wrote != -1; });
	cr_assert_eq(wrote, 400);
	engine.readv(f.fd, rv, 2, 0, [&](auraio::Request &, ssize_t n) { got = n; });
	wait_for(engine, [&] { return got != -1; });
	cr_assert_eq(got, 400);
	for (int i = 0; i < 250; i++)
		cr_assert_eq(r0[i], i < 100 ? 'a' : 'b', "byte %d", i);
	for (int i = 0; i < 150; i++)
		cr_assert_eq(r1[i], 'b', "byte %d", 250 + i);
}

Test(cpp_io, fsync_and_fdatasync_complete_with_zero)
{
	TempFile f(4096);
	auraio::Engine engine;
	ssize_t full = -1, data = -1;

	engine.fsync(f.fd, [&](auraio::Request &, ssize_t r) { full = r; });
	engine.fdatasync(f.fd, [&](auraio::Request &, ssize_t r) { data = r; });
	wait_for(engine, [&] { return full != -1 && data != -1; });
	cr_assert_eq(full, 0);
	cr_assert_eq(data, 0);
}

Test(cpp_io, returned_request_names_the_fd_and_can_be_cancelled_until_delivered)
{
	TempFile f(4096);
	auraio::Engine engine;
	char buf[4096];
	ssize_t got = 1;
	bool done = false;

	auraio::Request req =
	    engine.read(f.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t r) {
		    got = r;
		    done = true;
	    });
	cr_assert_eq(req.fd(), f.fd);
	/* Not delivered yet (nothing polled): still in flight for auraio_cancel. */
	cr_assert(engine.cancel(req));
	wait_for(engine, [&] { return done; });
	cr_assert(got == 4096 || got == -ECANCELED, "result %zd", got);
	cr_assert_not(engine.cancel(auraio::Request()), "an empty request is not in flight");
}

Test(cpp_io, callback_may_submit_the_next_read)
{
	TempFile f(8192);
	auraio::Engine engine;
	char first[4096], second[4096];
	ssize_t got2 = -1;

	engine.read(f.fd, first, sizeof(first), 0, [&](auraio::Request &, ssize_t) {
		engine.read(f.fd, second, sizeof(second), 4096,
			    [&](auraio::Request &, ssize_t n) { got2 = n; });
	});
	wait_for(engine, [&] { return got2 != -1; });
	cr_assert_eq(got2, 4096);
	cr_assert(check_pattern(first, 4096, 0) && check_pattern(second, 4096, 4096));
}

/* --- BufferRef ---------------------------------------------------------------------- */

Test(cpp_buffer_ref, plain_pointer_converts_to_an_unregistered_reference)
{
	char mem[16];
	auraio::BufferRef ref = mem;
	auraio_buf_t c = ref;

	cr_assert_eq(c.type, AURAIO_BUF_UNREGISTERED);
	cr_assert_eq(c.u.ptr, static_cast<void *>(mem));
}

Test(cpp_buffer_ref, fixed_reference_names_index_and_offset_which_defaults_to_zero)
{
	auraio_buf_t a = auraio::BufferRef::fixed(3, 128);
	auraio_buf_t b = auraio::BufferRef::fixed(5).c_buf();

	cr_assert_eq(a.type, AURAIO_BUF_REGISTERED);
	cr_assert_eq(a.u.fixed.index, 3);
	cr_assert_eq(a.u.fixed.offset, 128u);
	cr_assert_eq(b.type, AURAIO_BUF_REGISTERED);
	cr_assert_eq(b.u.fixed.index, 5);
	cr_assert_eq(b.u.fixed.offset, 0u);
}

/* --- Registration ------------------------------------------------------------------- */

Test(cpp_registration, reads_land_in_the_registered_buffer_at_index_and_offset)
{
	TempFile f(16384);
	auraio::Engine engine;
	std::vector<std::vector<char>> mem(2, std::vector<char>(8192, 0));
	std::vector<iovec> iovs = { { mem[0].data(), 8192 }, { mem[1].data(), 8192 } };
	ssize_t got = -1;

	engine.register_buffers(iovs);
	engine.read(f.fd, auraio::BufferRef::fixed(1, 100), 4096, 4096,
		    [&](auraio::Request &, ssize_t n) { got = n; });
	wait_for(engine, [&] { return got != -1; });
	cr_assert_eq(got, 4096);
	cr_assert(check_pattern(mem[1].data() + 100, 4096, 4096));
	cr_assert_eq(mem[1][99], 0, "wrote before the offset");
	cr_assert_eq(mem[1][4196], 0, "wrote past the length");
	cr_assert_eq(mem[0][0], 0, "wrote into the wrong buffer");
	cr_assert_eq(expect_error([&] { engine.register_buffers(iovs); }).errno_value(), EBUSY);
	engine.unregister_buffers();
}

Test(cpp_registration, files_register_update_and_unregister_while_reads_keep_working)
{
	TempFile f1(4096), f2(4096), f3(4096), f4(8192);
	auraio::Engine engine;
	char buf[4096];
	ssize_t got = -1;

	engine.register_files({ f1.fd, f2.fd, f3.fd });
	cr_assert_eq(engine.stats().files_registered, 3);
	engine.read(f2.fd, buf, sizeof(buf), 0, [&](auraio::Request &, ssize_t n) { got = n; });
	wait_for(engine, [&] { return got != -1; });
	cr_assert_eq(got, 4096);
	cr_assert(check_pattern(buf, 4096, 0));

	engine.update_file(0, f4.fd);
	/* f4 now sits in slot 0, so it cannot be placed in another slot. */
	cr_assert_eq(expect_error([&] { engine.update_file(1, f4.fd); }).errno_value(), EINVAL);
	got = -1;
	engine.read(f4.fd, buf, sizeof(buf), 4096, [&](auraio::Request &, ssize_t n) { got = n; });
	wait_for(engine, [&] { return got != -1; });
	cr_assert_eq(got, 4096);
	cr_assert(check_pattern(buf, 4096, 4096));

	engine.unregister_files();
	cr_assert_eq(engine.stats().files_registered, 0);
}
