/* SPDX-License-Identifier: MIT */
/*
 * buffer_pool.h - the engine's aligned buffer pool (auraio_buffer_alloc/free).
 *
 * Tiers: a per-thread cache (L1: a stack per size class, zero locks and zero atomics on
 * the fast path) in front of a sharded global pool (L2: shards by CPU count, at most 256,
 * each a mutex and a free list per class). Size classes are powers of two from 4 KiB to
 * 256 KiB; larger requests are mapped individually. Every buffer is aligned to the pool's
 * alignment (4096 by default). A buffer may be freed by any thread; the size is found from
 * the pointer. A thread cache is bound to one pool by (pointer, generation), so it can
 * never hand out memory of a destroyed pool, and several pools per process work.
 */
#ifndef AURAIO_BUFFER_POOL_H
#define AURAIO_BUFFER_POOL_H

#include <stddef.h>
#include <stdint.h>

struct buffer_pool;

/* alignment: power of two in 512..1 MiB. shards: 0 = by CPU count. NULL on ENOMEM/EINVAL
 * (errno set). */
struct buffer_pool *buffer_pool_create(size_t alignment, unsigned shards);

/* Frees every buffer of the pool, cached or not. No other call may race with it. */
void buffer_pool_destroy(struct buffer_pool *pool);

/* NULL with errno EINVAL (size 0) or ENOMEM. Any thread. */
void *buffer_pool_alloc(struct buffer_pool *pool, size_t size);

/* 0, or -EINVAL if ptr is not a live buffer of this pool (nothing is freed then).
 * NULL is accepted (returns 0). Any thread. */
int buffer_pool_free(struct buffer_pool *pool, void *ptr);

/* Usable size of a live buffer of this pool (its class size), 0 if not one. */
size_t buffer_pool_usable_size(struct buffer_pool *pool, const void *ptr);

/* Bytes of memory the pool currently holds from the system. */
uint64_t buffer_pool_bytes(const struct buffer_pool *pool);

/* Test and diagnostic aid (not for hot paths): class buffers currently outside the shard
 * free lists, that is, held by the application or sitting in some thread's cache. Large
 * buffers are not counted. Reads counters without locks, so it is exact only while no other
 * thread uses the pool. After every thread that used the pool has exited and the
 * application holds no buffer, it is 0. */
uint64_t buffer_pool_in_threads(struct buffer_pool *pool);

#endif
