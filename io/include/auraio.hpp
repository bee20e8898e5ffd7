/* SPDX-License-Identifier: MIT */
/*
 * auraio.hpp - header-only C++17 wrapper of auraio.h, namespace auraio.
 *
 * This header is the manual of the wrapper; auraio.h is the manual of the engine and
 * everything said there (routing, batching, borrowing, threading) holds here too. The
 * wrapper adds what follows. It always submits with a callback: waitable requests
 * (cb NULL, auraio_request_wait), linked chains (auraio_submit_linked) and batches
 * (auraio_submit_batch) are reached through handle() and the C API.
 *
 * Not wrapped, and why (call the C function; it is usable from C++ as it is):
 *   auraio_request_wait, auraio_submit_linked, auraio_submit_batch: see above; they take
 *     C callbacks (or none), so there is no callable to hold.
 *   auraio_request_user_data: the user_data of a wrapper request is the wrapper's holder.
 *   auraio_get_dio_alignment, auraio_version, auraio_phase_name: need no engine, hold no
 *     resource and cannot leak; auraio_get_dio_alignment returns -errno (no exception).
 *   auraio_strerror: Error::what() carries the same text (std::generic_category()).
 *   auraio_fault_set, auraio_fault_clear: test hooks, on handle().
 *   auraio_create, auraio_destroy, auraio_options_init: used by Engine and Options.
 *
 * Ownership
 *   Engine owns one auraio_engine_t (destroyed by ~Engine, movable, not copyable) and
 *   Buffer owns one buffer of an engine's pool (freed by ~Buffer, or with the pool by
 *   ~Engine if that comes first). Options, BufferRef and Request are plain values that
 *   own nothing.
 *
 * Errors
 *   Every call that fails in C (NULL with errno from a submit, -errno from the others)
 *   throws auraio::Error, a std::system_error whose code() is the errno in
 *   std::generic_category() and whose what() names the C function, e.g.
 *   "auraio_read: Invalid argument". EAGAIN (the ring is at its in-flight limit) is an
 *   error like any other for read()/write()/...; the try_ variants (try_read() etc.)
 *   instead return an empty Request for it. Not-in-flight is an ordinary result of cancel() (false).
 *
 * Callbacks
 *   A callback is any callable invocable as `cb(auraio::Request &, ssize_t result)`:
 *   lambdas with captures, std::function, function objects, function pointers. Its return
 *   value is ignored. Submitting moves (or copies) it into a heap holder that becomes the
 *   C user_data; the holder is deleted right after the callback returns, or before the
 *   submit call throws, so captured state is released exactly once and never leaks. An
 *   empty std::function or a null function pointer is rejected at submit (EINVAL).
 *   Callbacks run in the thread that polls or waits, as in C; they may submit and may call
 *   poll()/wait(), but must not destroy or move-assign their Engine.
 *
 * Exceptions thrown by callbacks
 *   Callbacks run inside C frames, which must never be unwound. An exception escaping a
 *   callback is therefore caught at the C boundary and stored:
 *     - if the callback ran inside Engine::poll() or Engine::wait() of the same engine
 *       (possibly nested deeper), that poll()/wait() call rethrows it once the C call has
 *       returned. Completions handled by the same call were all delivered normally; if
 *       several callbacks threw, the first exception is rethrown and the others are
 *       discarded.
 *     - if it ran anywhere else (a C function called on handle(), such as
 *       auraio_request_wait()), it is kept by the engine and rethrown by the next
 *       poll()/wait() of that engine, in whichever thread calls it first.
 *     - if it ran inside ~Engine (or a move assignment that destroys the target), which
 *       completes the requests still in flight, it is discarded: a destructor must not
 *       throw, and those callbacks mostly see -ECANCELED.
 *
 * Threading
 *   Exactly the rules of auraio.h: unless single_thread is set, every Engine method may be
 *   called from any thread concurrently, except destruction, move construction and move
 *   assignment, which must not race with any other use of the engine (as auraio_destroy).
 *   Buffer, Options, BufferRef and Request objects are not synchronised; share them only
 *   read-only.
 */
#ifndef AURAIO_HPP
#define AURAIO_HPP

#include "auraio.h"

#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace auraio
{

/* ------------------------------------------------------------------------------------- */
/* Error                                                                                 */
/* ------------------------------------------------------------------------------------- */

/**
 * What every failing call throws. code() is the errno (positive) in
 * std::generic_category(); what() is "<C function>: <strerror text>".
 */
class Error : public std::system_error
{
      public:
	/** `err` is an errno or -errno; `operation` names the failing call (not NULL). */
	Error(int err, const char *operation)
	    : std::system_error(err < 0 ? -err : err, std::generic_category(), operation)
	{
	}

	/** The positive errno, the same as code().value(). */
	int errno_value() const noexcept
	{
		return code().value();
	}
};

namespace detail
{
/* -errno (or a count) from C -> the count, or throw. */
inline int check(int rc, const char *operation)
{
	if (rc < 0)
		throw Error(rc, operation);
	return rc;
}

/* Container sizes go to C as int. */
inline int to_count(std::size_t n, const char *operation)
{
	if (n > static_cast<std::size_t>(INT_MAX))
		throw Error(EINVAL, operation);
	return static_cast<int>(n);
}
} /* namespace detail */

/* ------------------------------------------------------------------------------------- */
/* Options                                                                               */
/* ------------------------------------------------------------------------------------- */

/**
 * Engine options: an auraio_options_t that starts from auraio_options_init(), with one
 * chainable setter per field (`opts.ring_count(1).queue_depth(64)`) and a getter of the
 * same name. Defaults, units and ranges are those documented on auraio_options_t; setters
 * do not validate, the Engine constructor does (Error EINVAL). A plain value: copy freely.
 */
class Options
{
      public:
	/** The defaults of auraio_options_init(). Never throws. */
	Options() noexcept
	{
		auraio_options_init(&opts_);
	}

	/** The C struct, for fields set directly or for passing to the C API. */
	auraio_options_t &c_options() noexcept
	{
		return opts_;
	}
	const auraio_options_t &c_options() const noexcept
	{
		return opts_;
	}

	/** Rings; 0 = one per online CPU (default), at most 256. */
	Options &ring_count(int n) noexcept
	{
		opts_.ring_count = n;
		return *this;
	}
	int ring_count() const noexcept
	{
		return opts_.ring_count;
	}

	/** Per ring SQ size and in-flight cap; default 256, 1..4096, rounded up to a power
	 * of two. */
	Options &queue_depth(int n) noexcept
	{
		opts_.queue_depth = n;
		return *this;
	}
	int queue_depth() const noexcept
	{
		return opts_.queue_depth;
	}

	/** Kernel SQ polling thread per ring; default false; silently falls back if refused. */
	Options &enable_sqpoll(bool on) noexcept
	{
		opts_.enable_sqpoll = on;
		return *this;
	}
	bool enable_sqpoll() const noexcept
	{
		return opts_.enable_sqpoll;
	}

	/** Idle milliseconds before the SQPOLL thread sleeps; default 1000, >= 0. */
	Options &sqpoll_idle_ms(int ms) noexcept
	{
		opts_.sqpoll_idle_ms = ms;
		return *this;
	}
	int sqpoll_idle_ms() const noexcept
	{
		return opts_.sqpoll_idle_ms;
	}

	/** CPU of the SQPOLL thread; default -1 (unpinned), else >= 0 (a CPU the kernel
	 * refuses means no SQPOLL); below -1 is refused. */
	Options &sqpoll_cpu(int cpu) noexcept
	{
		opts_.sqpoll_cpu = cpu;
		return *this;
	}
	int sqpoll_cpu() const noexcept
	{
		return opts_.sqpoll_cpu;
	}

	/** Starting in-flight limit; default 0 = queue_depth (fixed) or 4 (adaptive); >= 0,
	 * clamped to min_in_flight..queue_depth. */
	Options &initial_in_flight(int n) noexcept
	{
		opts_.initial_in_flight = n;
		return *this;
	}
	int initial_in_flight() const noexcept
	{
		return opts_.initial_in_flight;
	}

	/** Floor of the in-flight limit; default 1 (0 = 1), >= 0, clamped to queue_depth. */
	Options &min_in_flight(int n) noexcept
	{
		opts_.min_in_flight = n;
		return *this;
	}
	int min_in_flight() const noexcept
	{
		return opts_.min_in_flight;
	}

	/** P99 guard in milliseconds; default 0 = 10 ms; >= 0 (NaN is refused); INFINITY =
	 * no guard. */
	Options &max_p99_latency_ms(double ms) noexcept
	{
		opts_.max_p99_latency_ms = ms;
		return *this;
	}
	double max_p99_latency_ms() const noexcept
	{
		return opts_.max_p99_latency_ms;
	}

	/** true = the in-flight limit stays fixed; default false. */
	Options &disable_adaptive(bool on) noexcept
	{
		opts_.disable_adaptive = on;
		return *this;
	}
	bool disable_adaptive() const noexcept
	{
		return opts_.disable_adaptive;
	}

	/** Alignment of buffer_alloc()/Buffer; default 4096, a power of two in 512..1 MiB. */
	Options &buffer_alignment(std::size_t bytes) noexcept
	{
		opts_.buffer_alignment = bytes;
		return *this;
	}
	std::size_t buffer_alignment() const noexcept
	{
		return opts_.buffer_alignment;
	}

	/** true = one thread at a time uses the engine, no locks; default false. */
	Options &single_thread(bool on) noexcept
	{
		opts_.single_thread = on;
		return *this;
	}
	bool single_thread() const noexcept
	{
		return opts_.single_thread;
	}

	/** Backend; default AURAIO_BACKEND_AUTO (AURAIO_BACKEND env var may override AUTO). */
	Options &backend(auraio_backend_t b) noexcept
	{
		opts_.backend = b;
		return *this;
	}
	auraio_backend_t backend() const noexcept
	{
		return opts_.backend;
	}

	/** Thread backend: worker threads per ring; default 4 (0 = 4), range 0..64. */
	Options &thread_workers(int n) noexcept
	{
		opts_.thread_workers = n;
		return *this;
	}
	int thread_workers() const noexcept
	{
		return opts_.thread_workers;
	}

	/** The type of a log sink (auraio_options_t.log_fn). */
	using LogFn = void (*)(int level, const char *message, void *arg);

	/** Log sink (NULL = warnings and errors to stderr) and its argument, borrowed for the
	 * engine's lifetime. The function is called from engine threads: it must not throw. */
	Options &log_fn(LogFn fn, void *arg = nullptr) noexcept
	{
		opts_.log_fn = fn;
		opts_.log_arg = arg;
		return *this;
	}
	LogFn log_fn() const noexcept
	{
		return opts_.log_fn;
	}

	/** The log sink's argument (set with log_fn()). */
	void *log_arg() const noexcept
	{
		return opts_.log_arg;
	}

      private:
	auraio_options_t opts_;
};

/* ------------------------------------------------------------------------------------- */
/* BufferRef                                                                             */
/* ------------------------------------------------------------------------------------- */

/**
 * Names the memory of a read or write, as auraio_buf_t: a plain pointer (implicitly, so
 * `engine.read(fd, ptr, ...)` works with a `void *`, `char *` or array) or a registered
 * buffer, `BufferRef::fixed(index, offset)`. Owns nothing; the memory is borrowed by the
 * request until it completes.
 */
class BufferRef
{
      public:
	/** A plain pointer (NULL is accepted here and rejected by the submit: EINVAL). */
	BufferRef(void *ptr) noexcept : buf_(auraio_buf(ptr))
	{
	}

	/** From the C value. */
	BufferRef(const auraio_buf_t &buf) noexcept : buf_(buf)
	{
	}

	/** Byte `offset` of registered buffer `index` (Engine::register_buffers). */
	static BufferRef fixed(int index, std::size_t offset = 0) noexcept
	{
		return BufferRef(auraio_buf_fixed(index, offset));
	}

	/** The C value. */
	const auraio_buf_t &c_buf() const noexcept
	{
		return buf_;
	}
	operator auraio_buf_t() const noexcept
	{
		return buf_;
	}

      private:
	auraio_buf_t buf_;
};

/* ------------------------------------------------------------------------------------- */
/* Request                                                                               */
/* ------------------------------------------------------------------------------------- */

/**
 * A non-owning handle of one submitted request (an auraio_request_t *), pointer-sized and
 * copyable. Callbacks receive one by reference; read()/write()/... return one.
 * Lifetime: the handle is valid until the request's callback returns (inside the callback
 * it always is). A handle returned by a submit may be used with Engine::cancel() only
 * while its completion has not been delivered; kept longer, it may name a recycled
 * request (auraio.h, auraio_cancel). An empty Request (try_read() refused with EAGAIN)
 * converts to false.
 */
class Request
{
      public:
	/** An empty handle. */
	Request() noexcept = default;

	/** Wraps a C handle (NULL = empty). */
	explicit Request(auraio_request_t *req) noexcept : req_(req)
	{
	}

	/** The fd the request was submitted on; -1 if empty. */
	int fd() const noexcept
	{
		return auraio_request_fd(req_);
	}

	/** Inside the callback: submission-to-completion latency in ns; 0 if empty. */
	std::uint64_t latency_ns() const noexcept
	{
		return auraio_request_latency_ns(req_);
	}

	/** The C handle (NULL if empty). Its user_data belongs to the wrapper: do not use. */
	auraio_request_t *handle() const noexcept
	{
		return req_;
	}

	/** true unless empty. */
	explicit operator bool() const noexcept
	{
		return req_ != nullptr;
	}

      private:
	auraio_request_t *req_ = nullptr;
};

/* ------------------------------------------------------------------------------------- */
/* Callback plumbing (not API)                                                           */
/* ------------------------------------------------------------------------------------- */

namespace detail
{
/*
 * Per-engine state at a stable heap address: Engine may move, holders in flight keep
 * pointing here. Shared by the Engine and its Buffers; `engine` is NULL once destroyed.
 * `parked` holds an exception from a callback that ran outside any poll()/wait() of this
 * engine; `has_parked` lets poll()/wait() skip the mutex when there is none (release in
 * park() pairs with the acquire in take_parked()).
 */
struct EngineState {
	auraio_engine_t *engine = nullptr;
	std::atomic<bool> has_parked{ false };
	std::mutex mu;
	std::exception_ptr parked;

	void park(std::exception_ptr e)
	{
		std::lock_guard<std::mutex> lock(mu);
		if (!parked)
			parked = std::move(e);
		has_parked.store(true, std::memory_order_release);
	}

	std::exception_ptr take_parked()
	{
		if (!has_parked.load(std::memory_order_acquire))
			return nullptr;
		std::lock_guard<std::mutex> lock(mu);
		has_parked.store(false, std::memory_order_relaxed);
		return std::exchange(parked, nullptr);
	}
};

/*
 * A poll()/wait() (or ~Engine) in progress on this thread: callbacks of `state` that
 * throw while it is active store their exception here. Frames nest (a callback may
 * poll), linked through `prev`; the innermost frame of the same engine wins. Only this
 * thread touches its frames, so no synchronisation is needed.
 */
struct CatchFrame {
	const EngineState *state;
	CatchFrame *prev;
	std::exception_ptr error;
};

inline CatchFrame *&current_frame() noexcept
{
	static thread_local CatchFrame *top = nullptr;
	return top;
}

/* Push a frame for the lifetime of the scope. */
class CatchScope
{
      public:
	explicit CatchScope(const EngineState *state) noexcept
	    : frame_{ state, current_frame(), nullptr }
	{
		current_frame() = &frame_;
	}
	~CatchScope()
	{
		current_frame() = frame_.prev;
	}
	CatchScope(const CatchScope &) = delete;
	CatchScope &operator=(const CatchScope &) = delete;

	std::exception_ptr take() noexcept
	{
		return std::exchange(frame_.error, nullptr);
	}

      private:
	CatchFrame frame_;
};

/* Route an exception caught at the C boundary (see "Exceptions thrown by callbacks"). */
inline void capture(EngineState *state, std::exception_ptr e)
{
	for (CatchFrame *f = current_frame(); f; f = f->prev) {
		if (f->state == state) {
			if (!f->error)
				f->error = std::move(e);
			return;
		}
	}
	state->park(std::move(e));
}

/* The type-erased holder that is the C user_data. */
struct CallbackBase {
	explicit CallbackBase(EngineState *s) noexcept : state(s)
	{
	}
	virtual ~CallbackBase() = default;
	virtual void invoke(Request &req, ssize_t result) = 0;

	EngineState *state;
};

template <class F> struct Callback final : CallbackBase {
	template <class G> Callback(EngineState *s, G &&g) : CallbackBase(s), fn(std::forward<G>(g))
	{
	}
	void invoke(Request &req, ssize_t result) override
	{
		fn(req, result);
	}

	F fn;
};

/*
 * The C callback. noexcept: nothing may unwind into the C library. The holder is deleted
 * when this returns (unique_ptr), after the callable has returned or thrown.
 */
inline void trampoline(auraio_request_t *req, ssize_t result, void *user_data) noexcept
{
	std::unique_ptr<CallbackBase> cb(static_cast<CallbackBase *>(user_data));
	Request r(req);

	try {
		cb->invoke(r, result);
	} catch (...) {
		capture(cb->state, std::current_exception());
	}
}

template <class T> struct is_std_function : std::false_type {
};
template <class R, class... A> struct is_std_function<std::function<R(A...)>> : std::true_type {
};

/* An empty std::function or null function pointer would only fail at completion. */
template <class D> bool callable_is_empty(const D &fn) noexcept
{
	if constexpr (std::is_pointer_v<D> || std::is_member_pointer_v<D> ||
		      is_std_function<D>::value)
		return !fn;
	else
		return false;
}

template <class F>
std::unique_ptr<CallbackBase> make_callback(EngineState *state, F &&fn, const char *operation)
{
	using D = std::decay_t<F>;
	static_assert(std::is_invocable_v<D &, Request &, ssize_t>,
		      "an auraio callback must be invocable as cb(auraio::Request &, ssize_t)");
	if (callable_is_empty<D>(fn))
		throw Error(EINVAL, operation);
	return std::unique_ptr<CallbackBase>(new Callback<D>(state, std::forward<F>(fn)));
}
} /* namespace detail */

/* ------------------------------------------------------------------------------------- */
/* Engine                                                                                */
/* ------------------------------------------------------------------------------------- */

/**
 * An engine (auraio_engine_t): constructed with auraio_create_with_options(), destroyed
 * by the destructor. Move-only. A moved-from Engine holds no engine: handle() is NULL,
 * buffer_free() does nothing, and every other method but the destructor and assignment
 * throws Error EINVAL.
 *
 * Submit methods (read, write, readv, writev, fsync, fdatasync) follow the shared rules
 * of auraio.h: memory is borrowed until completion, registered fds are used
 * automatically, nothing is run before the call returns. Each returns the Request handle
 * (see Request for how long it stays valid) and throws Error with the operation named:
 *   EINVAL    fd < 0, buffer NULL, bad iovcnt, registered buffer index unknown,
 *             misaligned O_DIRECT on a registered file, empty callback, moved-from engine
 *   EOVERFLOW registered buffer offset + len exceeds the registered buffer
 *   EAGAIN    the ring is at its in-flight limit: poll()/wait(), then retry
 *             (the try_ variants - try_read(), try_write(), try_readv(), try_writev(),
 *             try_fsync(), try_fdatasync() - return an empty Request instead)
 *   ESHUTDOWN the engine is being destroyed
 * If the submit throws, the callback was never called and has already been destroyed.
 */
class Engine
{
      public:
	/** An engine with default options. Throws Error (errno of auraio_create). */
	Engine() : Engine(Options())
	{
	}

	/**
	 * An engine with `opts` (copied; log_arg stays borrowed). Throws Error: EINVAL (an
	 * option out of range), ENOMEM, ENOSYS/EPERM (backend IO_URING forced but
	 * unavailable), or another errno of io_uring_setup/pthread_create.
	 */
	explicit Engine(const Options &opts) : state_(std::make_shared<detail::EngineState>())
	{
		state_->engine = auraio_create_with_options(&opts.c_options());
		if (!state_->engine)
			throw Error(errno ? errno : EINVAL, "auraio_create_with_options");
	}

	/** Destroys the engine: requests in flight complete (see auraio_destroy) and their
	 * callbacks run here; exceptions they throw are discarded. Pool buffers are freed:
	 * a Buffer of this engine still alive then dangles (see Buffer). Until this returns,
	 * the kernel may still write into the memory of requests in flight and their
	 * callbacks still run: declare the Engine after that memory and the state the
	 * callbacks capture (locals and members are destroyed in reverse order), or wait()
	 * until nothing is in flight first. */
	~Engine()
	{
		destroy();
	}

	Engine(const Engine &) = delete;
	Engine &operator=(const Engine &) = delete;

	/** Takes over `other`'s engine; in-flight requests and their callbacks follow it. */
	Engine(Engine &&other) noexcept : state_(std::move(other.state_))
	{
	}

	/** Destroys this engine (as the destructor), then takes over `other`'s. */
	Engine &operator=(Engine &&other) noexcept
	{
		if (this != &other) {
			destroy();
			state_ = std::move(other.state_);
		}
		return *this;
	}

	/** The C engine, borrowed (owned by this object; NULL if moved from). Calls made on
	 * it directly follow auraio.h; do not destroy it. */
	auraio_engine_t *handle() const noexcept
	{
		return state_ ? state_->engine : nullptr;
	}

	/* --- Submission ------------------------------------------------------------- */

	/** Read `len` bytes at `offset` of `fd` into `buf`; result = bytes read (0 at EOF).
	 * Errors: see the class comment. */
	template <class F>
	Request read(int fd, BufferRef buf, std::size_t len, off_t offset, F &&cb)
	{
		return submit_rw(false, fd, buf, len, offset, std::forward<F>(cb), true);
	}

	/** Write `len` bytes from `buf` at `offset` of `fd`; result = bytes written. */
	template <class F>
	Request write(int fd, BufferRef buf, std::size_t len, off_t offset, F &&cb)
	{
		return submit_rw(true, fd, buf, len, offset, std::forward<F>(cb), true);
	}

	/** As read(), but EAGAIN returns an empty Request (the callback is destroyed
	 * uncalled) instead of throwing. Other errors throw. */
	template <class F>
	Request try_read(int fd, BufferRef buf, std::size_t len, off_t offset, F &&cb)
	{
		return submit_rw(false, fd, buf, len, offset, std::forward<F>(cb), false);
	}

	/** As write(), but EAGAIN returns an empty Request instead of throwing. */
	template <class F>
	Request try_write(int fd, BufferRef buf, std::size_t len, off_t offset, F &&cb)
	{
		return submit_rw(true, fd, buf, len, offset, std::forward<F>(cb), false);
	}

	/** Scatter read into iov[0..iovcnt) (the array is borrowed until completion). */
	template <class F> Request readv(int fd, const iovec *iov, int iovcnt, off_t offset, F &&cb)
	{
		return submit_vec(false, fd, iov, iovcnt, offset, std::forward<F>(cb), true);
	}

	/** Gather write from iov[0..iovcnt) (the array is borrowed until completion). */
	template <class F>
	Request writev(int fd, const iovec *iov, int iovcnt, off_t offset, F &&cb)
	{
		return submit_vec(true, fd, iov, iovcnt, offset, std::forward<F>(cb), true);
	}

	/** fsync `fd`; result = 0 or -errno. */
	template <class F> Request fsync(int fd, F &&cb)
	{
		return submit_sync(fd, 0, std::forward<F>(cb), true);
	}

	/** fdatasync `fd` (AURAIO_FSYNC_DATASYNC); result = 0 or -errno. */
	template <class F> Request fdatasync(int fd, F &&cb)
	{
		return submit_sync(fd, AURAIO_FSYNC_DATASYNC, std::forward<F>(cb), true);
	}

	/** As readv(), but EAGAIN returns an empty Request instead of throwing. */
	template <class F>
	Request try_readv(int fd, const iovec *iov, int iovcnt, off_t offset, F &&cb)
	{
		return submit_vec(false, fd, iov, iovcnt, offset, std::forward<F>(cb), false);
	}

	/** As writev(), but EAGAIN returns an empty Request instead of throwing. */
	template <class F>
	Request try_writev(int fd, const iovec *iov, int iovcnt, off_t offset, F &&cb)
	{
		return submit_vec(true, fd, iov, iovcnt, offset, std::forward<F>(cb), false);
	}

	/** As fsync(), but EAGAIN returns an empty Request instead of throwing. */
	template <class F> Request try_fsync(int fd, F &&cb)
	{
		return submit_sync(fd, 0, std::forward<F>(cb), false);
	}

	/** As fdatasync(), but EAGAIN returns an empty Request instead of throwing. */
	template <class F> Request try_fdatasync(int fd, F &&cb)
	{
		return submit_sync(fd, AURAIO_FSYNC_DATASYNC, std::forward<F>(cb), false);
	}

	/**
	 * Ask the kernel to cancel `req` (a handle from a submit whose completion has not been
	 * delivered). true: requested; the callback will see -ECANCELED or the real result.
	 * false: `req` is empty or no longer in flight (auraio_cancel's -EINVAL). Throws
	 * Error for any other failure (EAGAIN: no room for the cancel request now; see
	 * auraio_cancel).
	 */
	bool cancel(Request req)
	{
		int rc = auraio_cancel(handle(), req.handle());

		if (rc == -EINVAL && handle())
			return false;
		detail::check(rc, "auraio_cancel");
		return true;
	}

	/** Submit every batched request now (every ring). Returns SQEs submitted. Throws
	 * Error EAGAIN or EBUSY when the kernel refused them for now: they stay batched and
	 * the next flush(), poll() or wait() retries them. */
	int flush()
	{
		return detail::check(auraio_flush(handle()), "auraio_flush");
	}

	/* --- Completion ------------------------------------------------------------- */

	/**
	 * Handle every ready completion without blocking (auraio_poll) and return how many
	 * this call handled. Throws Error EINVAL if moved from, or rethrows an exception a
	 * callback threw (see the file comment), after all completions were handled.
	 */
	int poll()
	{
		detail::CatchScope scope(state_.get());
		int n = auraio_poll(handle());

		rethrow(scope);
		return detail::check(n, "auraio_poll");
	}

	/**
	 * As poll(), but block until at least one completion is handled or `timeout_ms`
	 * passes (-1 = no limit). Returns the number handled; 0 on timeout, when nothing is in
	 * flight, when another thread handled it, or at once (no exception) when the kernel
	 * refused what was batched for now (EAGAIN/EBUSY: the next call retries it; flush()
	 * reports it as an Error). What callbacks submit is sent by the next wait(): call
	 * flush() if there will be none. Throws as poll().
	 */
	int wait(int timeout_ms = -1)
	{
		detail::CatchScope scope(state_.get());
		int n = auraio_wait(handle(), timeout_ms);

		rethrow(scope);
		return detail::check(n, "auraio_wait");
	}

	/** An fd readable while completions are ready (for epoll); owned by the engine, valid
	 * until it is destroyed: do not read or close it. Throws Error. */
	int poll_fd() const
	{
		return detail::check(auraio_get_poll_fd(handle()), "auraio_get_poll_fd");
	}

	/* --- Registration ----------------------------------------------------------- */

	/**
	 * Register `fds` with every ring (-1 = sparse slot); they must stay open until
	 * unregistered or replaced. Throws Error: EINVAL (empty, more than 65536, an fd twice),
	 * EBUSY (already registered), EBADF, ENOMEM, other kernel errno.
	 */
	void register_files(const std::vector<int> &fds)
	{
		const char *op = "auraio_register_files";

		detail::check(
		    auraio_register_files(handle(), fds.data(), detail::to_count(fds.size(), op)),
		    op);
	}

	/** Replace slot `index` with `fd` (-1 clears it). Throws Error: EINVAL (index out of
	 * range, fd in another slot), ENOENT (no files registered), EBADF, EAGAIN (the kernel
	 * refused the requests still batched, which go first: nothing changed; retry after
	 * flush(), poll() or wait()), other errno. */
	void update_file(int index, int fd)
	{
		detail::check(auraio_update_file(handle(), index, fd), "auraio_update_file");
	}

	/** Unregister all files. Throws Error: ENOENT (none registered), EAGAIN (as for
	 * update_file(): nothing changed; retry after flush()). */
	void unregister_files()
	{
		detail::check(auraio_unregister_files(handle()), "auraio_unregister_files");
	}

	/**
	 * Register `iovs` for BufferRef::fixed(i, offset). The memory stays borrowed (valid, at
	 * the same address) until unregister_buffers(); the vector itself is not kept. May
	 * degrade silently to plain pointers (RLIMIT_MEMLOCK; stats().buffers_registered).
	 * Throws Error: EINVAL (empty, NULL or zero-length entry, more than 16384), EBUSY
	 * (already registered), ENOMEM, other kernel errno.
	 */
	void register_buffers(const std::vector<iovec> &iovs)
	{
		const char *op = "auraio_register_buffers";

		detail::check(auraio_register_buffers(handle(), iovs.data(),
						      detail::to_count(iovs.size(), op)),
			      op);
	}

	/** Unregister the buffers. Throws Error: EBUSY (fixed-buffer I/O in flight), ENOENT
	 * (none registered). */
	void unregister_buffers()
	{
		detail::check(auraio_unregister_buffers(handle()), "auraio_unregister_buffers");
	}

	/* --- Buffers ---------------------------------------------------------------- */

	/**
	 * A pool buffer of at least `size` bytes aligned to buffer_alignment. The caller
	 * frees it with buffer_free() (any thread) or leaves it to the destructor; prefer
	 * Buffer, which frees itself. Throws Error: EINVAL (size 0), ENOMEM.
	 */
	void *buffer_alloc(std::size_t size)
	{
		void *p = auraio_buffer_alloc(handle(), size);

		if (!p)
			throw Error(errno ? errno : ENOMEM, "auraio_buffer_alloc");
		return p;
	}

	/** Return a buffer_alloc() buffer to the pool. NULL is ignored; a foreign pointer is
	 * ignored and logged. Never throws. */
	void buffer_free(void *ptr) noexcept
	{
		auraio_buffer_free(handle(), ptr);
	}

	/* --- Statistics ------------------------------------------------------------- */

	/** Engine-wide stats (auraio_get_stats). Throws Error EINVAL if moved from. */
	auraio_stats_t stats() const
	{
		auraio_stats_t s{};

		detail::check(auraio_get_stats(handle(), &s), "auraio_get_stats");
		return s;
	}

	/** Stats of ring `ring`. Throws Error EINVAL for an index outside 0..ring_count()-1. */
	auraio_ring_stats_t ring_stats(int ring) const
	{
		auraio_ring_stats_t s{};

		detail::check(auraio_get_ring_stats(handle(), ring, &s), "auraio_get_ring_stats");
		return s;
	}

	/** Number of rings (>= 1). Throws Error EINVAL if moved from. */
	int ring_count() const
	{
		return detail::check(auraio_ring_count(handle()), "auraio_ring_count");
	}

      private:
	friend class Buffer;

	/* Shared with the Buffers of this engine, which must learn that it is gone. */
	std::shared_ptr<detail::EngineState> state_;

	using Holder = std::unique_ptr<detail::CallbackBase>;

	/* The heap holder of a callback, owned here until the C submit accepts it. */
	template <class F> Holder hold(F &&cb, const char *operation)
	{
		return detail::make_callback(state_.get(), std::forward<F>(cb), operation);
	}

	static auraio_callback_t trampoline() noexcept
	{
		return &detail::trampoline;
	}

	/* The submit methods: hold the callback, call the C submit, hand the holder over
	 * (done). throw_eagain false: the try_ variants. */
	template <class F>
	Request submit_rw(bool write, int fd, BufferRef buf, std::size_t len, off_t offset, F &&cb,
			  bool throw_eagain)
	{
		const char *op = write ? "auraio_write" : "auraio_read";
		auto h = hold(std::forward<F>(cb), op);

		return done((write ? auraio_write : auraio_read)(handle(), fd, buf, len, offset,
								 trampoline(), h.get()),
			    h, op, throw_eagain);
	}

	template <class F>
	Request submit_vec(bool write, int fd, const iovec *iov, int iovcnt, off_t offset, F &&cb,
			   bool throw_eagain)
	{
		const char *op = write ? "auraio_writev" : "auraio_readv";
		auto h = hold(std::forward<F>(cb), op);

		return done((write ? auraio_writev : auraio_readv)(handle(), fd, iov, iovcnt,
								   offset, trampoline(), h.get()),
			    h, op, throw_eagain);
	}

	template <class F> Request submit_sync(int fd, unsigned flags, F &&cb, bool throw_eagain)
	{
		auto h = hold(std::forward<F>(cb), "auraio_fsync");

		return done(auraio_fsync(handle(), fd, flags, trampoline(), h.get()), h,
			    "auraio_fsync", throw_eagain);
	}

	/* After the C submit: `req` owns the holder now, or NULL (errno) and the holder is
	 * destroyed uncalled before the error is reported. */
	static Request done(auraio_request_t *req, Holder &holder, const char *operation,
			    bool throw_eagain)
	{
		if (!req) {
			int err = errno ? errno : EIO;

			holder.reset();
			if (err == EAGAIN && !throw_eagain)
				return Request();
			throw Error(err, operation);
		}
		/* Owned by the C request now; it may already have run in another thread. */
		holder.release();
		return Request(req);
	}

	/* After a C poll/wait: the first exception of a callback run by this call, else one
	 * parked by a callback run elsewhere. */
	void rethrow(detail::CatchScope &scope)
	{
		std::exception_ptr e = scope.take();

		if (!e && state_)
			e = state_->take_parked();
		if (e)
			std::rethrow_exception(e);
	}

	void destroy() noexcept
	{
		if (!state_)
			return;
		{
			/* exceptions of the last callbacks */
			detail::CatchScope discard(state_.get());
			auraio_destroy(state_->engine);
		}
		state_->engine = nullptr; /* Buffers still alive free nothing now */
		state_.reset();
	}
};

/* ------------------------------------------------------------------------------------- */
/* Buffer                                                                                */
/* ------------------------------------------------------------------------------------- */

/**
 * Owns one buffer of an engine's pool (Engine::buffer_alloc) and frees it on destruction.
 * Move-only; a moved-from or default Buffer is empty (data() NULL, size() 0). It must
 * outlive every request that uses it. Destroying its Engine (or assigning over it) frees
 * the whole pool: a Buffer still alive then dangles (data() must not be used), and
 * destroying or resetting it frees nothing, safely. The Buffer keeps the wrapper's small
 * per-engine record alive to know this, never the engine.
 * Converts implicitly to BufferRef, so `engine.read(fd, buffer, buffer.size(), ...)`.
 */
class Buffer
{
      public:
	/** An empty buffer. */
	Buffer() noexcept = default;

	/** A buffer of at least `size` bytes from `engine`'s pool. Throws Error: EINVAL
	 * (size 0 or moved-from engine), ENOMEM. */
	Buffer(Engine &engine, std::size_t size)
	    : owner_(engine.state_), ptr_(engine.buffer_alloc(size)), size_(size)
	{
	}

	~Buffer()
	{
		reset();
	}

	Buffer(const Buffer &) = delete;
	Buffer &operator=(const Buffer &) = delete;

	Buffer(Buffer &&other) noexcept
	    : owner_(std::move(other.owner_)), ptr_(std::exchange(other.ptr_, nullptr)),
	      size_(std::exchange(other.size_, 0))
	{
	}

	Buffer &operator=(Buffer &&other) noexcept
	{
		if (this != &other) {
			reset();
			owner_ = std::move(other.owner_);
			ptr_ = std::exchange(other.ptr_, nullptr);
			size_ = std::exchange(other.size_, 0);
		}
		return *this;
	}

	/** The memory (NULL if empty). */
	void *data() const noexcept
	{
		return ptr_;
	}

	/** The size asked for (the pool may have given more); 0 if empty. */
	std::size_t size() const noexcept
	{
		return size_;
	}

	/** true unless empty. */
	explicit operator bool() const noexcept
	{
		return ptr_ != nullptr;
	}

	/** A plain-pointer reference to the memory. */
	operator BufferRef() const noexcept
	{
		return BufferRef(ptr_);
	}

	/** Free the buffer now (no-op if empty); the Buffer becomes empty. */
	void reset() noexcept
	{
		if (ptr_ && owner_)
			auraio_buffer_free(owner_->engine, ptr_); /* NULL engine: gone, ignored */
		owner_.reset();
		ptr_ = nullptr;
		size_ = 0;
	}

	/** Give up ownership: the caller frees the pointer with Engine::buffer_free(). */
	void *release() noexcept
	{
		void *p = ptr_;

		owner_.reset();
		ptr_ = nullptr;
		size_ = 0;
		return p;
	}

      private:
	std::shared_ptr<detail::EngineState> owner_;
	void *ptr_ = nullptr;
	std::size_t size_ = 0;
};

} /* namespace auraio */

#endif /* AURAIO_HPP */
