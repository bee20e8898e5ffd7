/* SPDX-License-Identifier: MIT */
/*
 * internal.h - small helpers shared by every file of libauraio: branch hints, cache-line
 * alignment, the monotonic clock, relaxed atomic counters.
 * Nothing here allocates or locks.
 */
#ifndef AURAIO_INTERNAL_H
#define AURAIO_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define CACHE_LINE    64
#define cache_aligned __attribute__((aligned(CACHE_LINE)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Thread-local state of the library. initial-exec: one fs-relative load per access
 * instead of a __tls_get_addr call (the library is built position-independent, which
 * would otherwise use the general-dynamic model on every hot-path access). */
#define TLS_IE __thread __attribute__((tls_model("initial-exec")))

#define NSEC_PER_SEC  1000000000ull
#define NSEC_PER_MSEC 1000000ull

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/*
 * Counters written by one lock holder and read by anyone (stats): relaxed atomics.
 * On x86 these compile to plain loads and stores; they exist so that a concurrent
 * stats reader is not a data race.
 */
typedef _Atomic uint64_t counter_t;

static inline void counter_add(counter_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
			      memory_order_relaxed);
}

static inline uint64_t counter_get(const counter_t *c)
{
	return atomic_load_explicit((counter_t *) c, memory_order_relaxed);
}

static inline uint32_t round_up_pow2_u32(uint32_t v)
{
	if (v <= 1)
		return 1;
	return 1u << (32 - __builtin_clz(v - 1));
}

#endif
