/* SPDX-License-Identifier: MIT */
/*
 * engine.c - engine lifecycle (options, backend choice, rings) and ring routing.
 *
 * Routing: a thread submits to the ring of the CPU it runs on, found with a
 * thread-local copy of sched_getcpu() refreshed every 32 submissions - no syscall and no
 * shared write per request. The cache is per thread, not per engine: the CPU number is
 * the same whichever engine asks.
 *
 * Backend choice: io_uring unless forced otherwise (option or AURAIO_BACKEND); when
 * io_uring cannot be set up and the choice was AUTO, the thread backend takes over and
 * the reason is kept for auraio_get_stats().
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "buffer_pool.h"
#include "engine.h"

#define MAX_RINGS	256
#define MAX_QUEUE_DEPTH 4096
#define ROUTE_REFRESH	32

AURAIO_API void auraio_options_init(auraio_options_t *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->ring_count = 0;
	o->queue_depth = 256;
	o->enable_sqpoll = false;
	o->sqpoll_idle_ms = 1000;
	o->sqpoll_cpu = -1;
	o->initial_in_flight = 0;
	o->min_in_flight = 1;
	o->max_p99_latency_ms = 0;
	o->disable_adaptive = false;
	o->buffer_alignment = 4096;
	o->single_thread = false;
	o->backend = AURAIO_BACKEND_AUTO;
	o->thread_workers = 4;
	o->log_fn = NULL;
	o->log_arg = NULL;
}

void engine_log(struct auraio_engine *e, int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e && e->opts.log_fn)
		e->opts.log_fn(level, msg, e->opts.log_arg);
	else if (level <= AURAIO_LOG_WARN)
		fprintf(stderr, "auraio: %s\n", msg);
}

TLS_IE struct route_tls tls_route;

/* Process-unique engine ids: a cached route names the engine by pointer and id, so an
 * engine created where a destroyed one was is never served the old rings. */
static _Atomic uint64_t next_engine_id = 1;

struct ring *engine_route_slow(struct auraio_engine *e)
{
	int cpu = sched_getcpu();
	unsigned c = cpu < 0 ? 0 : (unsigned) cpu;

	tls_route.id = e->id;
	tls_route.ring = &e->rings[c % e->ring_count];
	tls_route.left = ROUTE_REFRESH - 1;
	return tls_route.ring;
}

void engine_take_all_sq_locks(struct auraio_engine *e)
{
	for (unsigned i = 0; i < e->ring_count; i++)
		sq_lock(&e->rings[i]);
}

void engine_drop_all_sq_locks(struct auraio_engine *e)
{
	for (unsigned i = e->ring_count; i-- > 0;)
		sq_unlock(&e->rings[i]);
}

static bool is_pow2(size_t v)
{
	return v && !(v & (v - 1));
}

/* Check and complete the engine's options; -EINVAL names the bad field in the log. */
static int resolve_options(struct auraio_engine *e)
{
	auraio_options_t *o = &e->opts;
	const char *env = getenv("AURAIO_BACKEND");
	const char *bad = NULL;

	if (o->ring_count < 0 || o->ring_count > MAX_RINGS)
		bad = "ring_count (0..256)";
	else if (o->queue_depth < 1 || o->queue_depth > MAX_QUEUE_DEPTH)
		bad = "queue_depth (1..4096)";
	else if (o->sqpoll_idle_ms < 0)
		bad = "sqpoll_idle_ms (>= 0)";
	else if (o->sqpoll_cpu < -1)
		bad = "sqpoll_cpu (-1 or a CPU number)";
	else if (o->initial_in_flight < 0 || o->min_in_flight < 0)
		bad = "initial_in_flight/min_in_flight (>= 0)";
	else if (!(o->max_p99_latency_ms >= 0))
		bad = "max_p99_latency_ms (>= 0)";
	else if (!is_pow2(o->buffer_alignment) || o->buffer_alignment < 512 ||
		 o->buffer_alignment > (1u << 20))
		bad = "buffer_alignment (power of two, 512..1 MiB)";
	else if (o->backend < AURAIO_BACKEND_AUTO || o->backend > AURAIO_BACKEND_THREADS)
		bad = "backend";
	else if (o->thread_workers < 0 || o->thread_workers > 64)
		bad = "thread_workers (0..64)";
	if (bad) {
		engine_log(e, AURAIO_LOG_ERROR, "invalid option %s", bad);
		return -EINVAL;
	}
	if (o->ring_count == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		o->ring_count = (int) (n < 1 ? 1 : (n > MAX_RINGS ? MAX_RINGS : n));
	}
	o->queue_depth = (int) round_up_pow2_u32((uint32_t) o->queue_depth);
	if (o->thread_workers == 0)
		o->thread_workers = 4;
	if (o->backend == AURAIO_BACKEND_AUTO && env && *env) {
		if (strcmp(env, "threads") == 0)
			o->backend = AURAIO_BACKEND_THREADS;
		else if (strcmp(env, "io_uring") == 0)
			o->backend = AURAIO_BACKEND_IO_URING;
		else /* a typo must not pass for the backend it meant */
			engine_log(e, AURAIO_LOG_WARN,
				   "AURAIO_BACKEND='%.32s' is neither 'threads' nor 'io_uring': "
				   "ignored",
				   env);
	}
	return 0;
}

static int ring_init(struct auraio_engine *e, struct ring *r, unsigned index)
{
	int rc;

	r->engine = e;
	r->ops = e->ops;
	r->index = (uint16_t) index;
	r->locking = !e->opts.single_thread;
	r->queue_depth = (uint32_t) e->opts.queue_depth;
	lock_init(&r->sq_lock);
	lock_init(&r->cq_lock);
	ev_init(&r->ev);
	adaptive_init(&r->ctl, &e->opts, r->queue_depth);
	rc = request_pool_init(&r->pool, 2 * r->queue_depth, (uint16_t) index);
	if (rc)
		return rc;
	rc = r->ops->ring_init(r);
	if (rc)
		request_pool_fini(&r->pool);
	return rc;
}

static void ring_fini(struct ring *r)
{
	r->ops->ring_fini(r);
	request_pool_fini(&r->pool);
}

/* Ring 0 decides the backend: io_uring, or threads when AUTO and io_uring fails. */
static int init_first_ring(struct auraio_engine *e)
{
	int rc;

	e->ops =
	    e->opts.backend == AURAIO_BACKEND_THREADS ? &backend_threads_ops : &backend_uring_ops;
	rc = ring_init(e, &e->rings[0], 0);
	if (rc == 0 || e->ops == &backend_threads_ops || e->opts.backend != AURAIO_BACKEND_AUTO)
		return rc;
	snprintf(e->backend_reason, sizeof(e->backend_reason),
		 "io_uring unavailable: io_uring_setup: %s", strerror(-rc));
	engine_log(e, AURAIO_LOG_WARN, "%s; using the thread backend", e->backend_reason);
	e->ops = &backend_threads_ops;
	memset(&e->rings[0], 0, sizeof(e->rings[0]));
	return ring_init(e, &e->rings[0], 0);
}

static int init_rings(struct auraio_engine *e)
{
	int rc = init_first_ring(e);

	if (rc)
		return rc;
	e->ring_count = 1;
	e->sqpoll_active = e->opts.enable_sqpoll && e->rings[0].sqpoll;
	e->coop_taskrun = e->rings[0].coop;
	for (unsigned i = 1; i < (unsigned) e->opts.ring_count; i++) {
		rc = ring_init(e, &e->rings[i], i);
		if (rc)
			return rc;
		e->ring_count++;
		e->sqpoll_active = e->sqpoll_active && e->rings[i].sqpoll;
		e->coop_taskrun = e->coop_taskrun && e->rings[i].coop;
	}
	e->backend =
	    e->ops == &backend_uring_ops ? AURAIO_BACKEND_IO_URING : AURAIO_BACKEND_THREADS;
	if (e->backend == AURAIO_BACKEND_THREADS)
		atomic_init(&e->fast_off, FAST_OFF_BACKEND);
	if (e->backend == AURAIO_BACKEND_THREADS && !e->backend_reason[0])
		snprintf(e->backend_reason, sizeof(e->backend_reason), "thread backend requested");
	if (e->opts.enable_sqpoll && e->backend == AURAIO_BACKEND_THREADS) {
		/* SQPOLL is an io_uring mode: keep why the thread backend runs */
		size_t used = strlen(e->backend_reason);

		snprintf(e->backend_reason + used, sizeof(e->backend_reason) - used,
			 "; no SQPOLL without io_uring");
	} else if (e->opts.enable_sqpoll && !e->sqpoll_active) {
		snprintf(e->backend_reason, sizeof(e->backend_reason),
			 "SQPOLL refused by the kernel; normal rings");
	}
	return 0;
}

static void engine_free(struct auraio_engine *e)
{
	for (unsigned i = 0; i < e->ring_count; i++)
		ring_fini(&e->rings[i]);
	registry_fini(e);
	fault_fini(e);
	if (e->pool)
		buffer_pool_destroy(e->pool);
	if (e->epoll_fd >= 0)
		close(e->epoll_fd);
	pthread_mutex_destroy(&e->epoll_lock);
	pthread_mutex_destroy(&e->fault_lock);
	free(e->rings);
	free(e);
}

AURAIO_API auraio_engine_t *auraio_create_with_options(const auraio_options_t *opts)
{
	struct auraio_engine *e = calloc(1, sizeof(*e));
	size_t rings_size;
	int rc;

	if (!e) {
		errno = ENOMEM;
		return NULL;
	}
	if (opts)
		e->opts = *opts;
	else
		auraio_options_init(&e->opts);
	e->epoll_fd = -1;
	e->id = atomic_fetch_add(&next_engine_id, 1);
	pthread_mutex_init(&e->epoll_lock, NULL);
	pthread_mutex_init(&e->fault_lock, NULL);
	rc = resolve_options(e);
	if (rc == 0) {
		rings_size = sizeof(struct ring) * (size_t) e->opts.ring_count;
		e->rings = aligned_alloc(CACHE_LINE, rings_size);
		rc = e->rings ? 0 : -ENOMEM;
	}
	if (rc == 0) {
		memset(e->rings, 0, rings_size);
		rc = init_rings(e);
	}
	if (rc == 0) {
		e->pool = buffer_pool_create(e->opts.buffer_alignment, 0);
		rc = e->pool ? 0 : -errno;
	}
	if (rc) {
		engine_free(e);
		errno = -rc;
		return NULL;
	}
	return e;
}

AURAIO_API auraio_engine_t *auraio_create(void)
{
	return auraio_create_with_options(NULL);
}

AURAIO_API void auraio_destroy(auraio_engine_t *e)
{
	if (!e)
		return;
	atomic_store(&e->shutting_down, true);
	atomic_fetch_or_explicit(&e->fast_off, FAST_OFF_DOWN, memory_order_relaxed);
	for (unsigned i = 0; i < e->ring_count; i++)
		ring_drain(&e->rings[i]);
	engine_free(e);
}

/* The epoll set over every ring's completion fd, made on first use. */
AURAIO_API int auraio_get_poll_fd(auraio_engine_t *e)
{
	int fd, rc = 0;

	if (!e)
		return -EINVAL;
	pthread_mutex_lock(&e->epoll_lock);
	fd = e->epoll_fd;
	if (fd < 0) {
		fd = epoll_create1(EPOLL_CLOEXEC);
		for (unsigned i = 0; fd >= 0 && rc == 0 && i < e->ring_count; i++) {
			struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

			rc = epoll_ctl(fd, EPOLL_CTL_ADD, e->rings[i].ops->poll_fd(&e->rings[i]),
				       &ev);
		}
		if (fd < 0 || rc < 0) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			fd = rc;
		} else {
			e->epoll_fd = fd;
		}
	}
	pthread_mutex_unlock(&e->epoll_lock);
	return fd;
}

AURAIO_API int auraio_ring_count(auraio_engine_t *e)
{
	return e ? (int) e->ring_count : -EINVAL;
}

AURAIO_API void *auraio_buffer_alloc(auraio_engine_t *e, size_t size)
{
	if (!e) {
		errno = EINVAL;
		return NULL;
	}
	return buffer_pool_alloc(e->pool, size);
}

AURAIO_API void auraio_buffer_free(auraio_engine_t *e, void *ptr)
{
	if (!e || !ptr)
		return;
	if (buffer_pool_free(e->pool, ptr) < 0)
		engine_log(e, AURAIO_LOG_WARN,
			   "auraio_buffer_free: %p is not a buffer of this engine", ptr);
}
