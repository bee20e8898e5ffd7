/* SPDX-License-Identifier: MIT */
/*
 * test_buffer_pool.c - the aligned buffer pool: alignment, size classes, large maps, pointer
 * validation, thread caches (reuse, exit flush, stale caches of destroyed pools), several
 * pools per thread, and cross-thread frees under contention.
 * Threads synchronise through joins, barriers and atomics only, never sleeps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buffer_pool.h"

#define KiB ((size_t) 1024)
#define MiB (1024 * KiB)

static struct buffer_pool *pool_new(size_t alignment)
{
	struct buffer_pool *pool = buffer_pool_create(alignment, 0);

	cr_assert_not_null(pool, "create(%zu): errno %d", alignment, errno);
	return pool;
}

static void touch(void *buf, size_t len)
{
	memset(buf, 0xA5, len);
}

static void *join(pthread_t t)
{
	void *ret;

	cr_assert_eq(pthread_join(t, &ret), 0);
	return ret;
}

Test(buffer_pool, create_rejects_alignment_outside_powers_of_two_from_512_to_1_mib)
{
	const size_t bad[] = { 0, 1, 256, 3000, 4095, 6144, 2 * MiB };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		cr_assert_null(buffer_pool_create(bad[i], 0), "alignment %zu", bad[i]);
		cr_assert_eq(errno, EINVAL);
	}
}

Test(buffer_pool, destroy_accepts_null)
{
	buffer_pool_destroy(NULL);
}

Test(buffer_pool, zero_size_allocation_fails_with_einval)
{
	struct buffer_pool *pool = pool_new(4096);

	errno = 0;
	cr_assert_null(buffer_pool_alloc(pool, 0));
	cr_assert_eq(errno, EINVAL);
	buffer_pool_destroy(pool);
}

Test(buffer_pool, freeing_null_is_a_no_op)
{
	struct buffer_pool *pool = pool_new(4096);

	cr_assert_eq(buffer_pool_free(pool, NULL), 0);
	buffer_pool_destroy(pool);
}

Test(buffer_pool, every_class_and_large_buffer_is_aligned_to_the_pool_alignment)
{
	const size_t aligns[] = { 512, 4096, 65536, MiB };
	const size_t sizes[] = { 1,	512,	4096,	4097,	8192,	12288, 16384,	   32768,
				 65536, 100000, 131072, 262144, 262145, MiB,   3 * MiB + 1 };
	void *bufs[sizeof(sizes) / sizeof(sizes[0])];

	for (size_t a = 0; a < sizeof(aligns) / sizeof(aligns[0]); a++) {
		struct buffer_pool *pool = pool_new(aligns[a]);

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			bufs[i] = buffer_pool_alloc(pool, sizes[i]);
			cr_assert_not_null(bufs[i], "size %zu", sizes[i]);
			cr_assert_eq((uintptr_t) bufs[i] % aligns[a], 0, "size %zu align %zu",
				     sizes[i], aligns[a]);
			cr_assert_geq(buffer_pool_usable_size(pool, bufs[i]), sizes[i]);
			touch(bufs[i], buffer_pool_usable_size(pool, bufs[i]));
		}
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			cr_assert_eq(buffer_pool_free(pool, bufs[i]), 0);
		buffer_pool_destroy(pool);
	}
}

Test(buffer_pool, usable_size_is_the_power_of_two_class_size)
{
	const size_t req[] = { 1, 4096, 4097, 8193, 65535, 65537, 200000, 262144 };
	const size_t want[] = { 4096, 4096, 8192, 16384, 65536, 131072, 262144, 262144 };
	struct buffer_pool *pool = pool_new(4096);

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		void *p = buffer_pool_alloc(pool, req[i]);

		cr_assert_eq(buffer_pool_usable_size(pool, p), want[i], "request %zu", req[i]);
		cr_assert_eq(buffer_pool_free(pool, p), 0);
	}
	buffer_pool_destroy(pool);
}

Test(buffer_pool, classes_below_the_alignment_are_rounded_up_to_it)
{
	struct buffer_pool *pool = pool_new(65536);
	void *small = buffer_pool_alloc(pool, 1), *mid = buffer_pool_alloc(pool, 70000);

	cr_assert_eq(buffer_pool_usable_size(pool, small), 65536);
	cr_assert_eq(buffer_pool_usable_size(pool, mid), 131072);
	cr_assert_eq(buffer_pool_free(pool, small), 0);
	cr_assert_eq(buffer_pool_free(pool, mid), 0);
	buffer_pool_destroy(pool);
}

Test(buffer_pool, large_allocation_round_trips_and_gives_its_memory_back)
{
	struct buffer_pool *pool = pool_new(4096);
	size_t page = (size_t) sysconf(_SC_PAGESIZE), size = MiB + 1;
	uint64_t before = buffer_pool_bytes(pool);
	unsigned char *p = buffer_pool_alloc(pool, size);
	size_t usable;

	cr_assert_not_null(p);
	usable = buffer_pool_usable_size(pool, p);
	cr_assert_eq(usable, (size + page - 1) / page * page);
	cr_assert_eq(buffer_pool_bytes(pool), before + usable);
	touch(p, usable);
	cr_assert_eq(p[usable - 1], 0xA5);
	cr_assert_eq(buffer_pool_free(pool, p), 0);
	cr_assert_eq(buffer_pool_bytes(pool), before);
	cr_assert_eq(buffer_pool_usable_size(pool, p), 0);
	cr_assert_eq(buffer_pool_free(pool, p), -EINVAL, "a second free of a large map");
	buffer_pool_destroy(pool);
}

Test(buffer_pool, bytes_count_the_memory_held_from_the_system)
{
	struct buffer_pool *pool = pool_new(4096);
	void *p;

	cr_assert_eq(buffer_pool_bytes(pool), 0);
	p = buffer_pool_alloc(pool, 4096);
	cr_assert_geq(buffer_pool_bytes(pool), 4096);
	cr_assert_eq(buffer_pool_free(pool, p), 0);
	cr_assert_gt(buffer_pool_bytes(pool), 0, "freed class buffers stay in the pool");
	buffer_pool_destroy(pool);
}

Test(buffer_pool, freed_buffer_is_reused_by_the_same_thread)
{
	struct buffer_pool *pool = pool_new(4096);

	for (size_t size = 4096; size <= 256 * KiB; size *= 2) {
		void *p = buffer_pool_alloc(pool, size);

		cr_assert_eq(buffer_pool_free(pool, p), 0);
		cr_assert_eq(buffer_pool_alloc(pool, size), p, "size %zu", size);
		cr_assert_eq(buffer_pool_free(pool, p), 0);
	}
	buffer_pool_destroy(pool);
}

Test(buffer_pool, pointers_not_from_the_pool_are_rejected_with_einval)
{
	struct buffer_pool *pool = pool_new(4096), *other = pool_new(4096);
	void *heap = malloc(8192), *theirs = buffer_pool_alloc(other, 4096);
	size_t page = (size_t) sysconf(_SC_PAGESIZE);
	void *gone = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int on_stack = 0;

	cr_assert_neq(gone, MAP_FAILED);
	cr_assert_eq(munmap(gone, page), 0);
	/* gone is unmapped: touching it would crash, so passing proves no dereference. */
	void *foreign[] = { heap, &on_stack, gone, theirs, (void *) (uintptr_t) 4096 };
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		cr_assert_eq(buffer_pool_free(pool, foreign[i]), -EINVAL, "pointer %zu", i);
		cr_assert_eq(buffer_pool_usable_size(pool, foreign[i]), 0, "pointer %zu", i);
	}
	cr_assert_eq(buffer_pool_free(other, theirs), 0, "its own pool still takes it");
	free(heap);
	buffer_pool_destroy(other);
	buffer_pool_destroy(pool);
}

Test(buffer_pool, pointers_inside_a_buffer_are_rejected_with_einval)
{
	struct buffer_pool *pool = pool_new(4096);
	char *small = buffer_pool_alloc(pool, 4096), *mid = buffer_pool_alloc(pool, 8192);
	char *large = buffer_pool_alloc(pool, MiB);
	/* mid + 4096 is on a 4 KiB boundary, but not on one of its 8 KiB class. */
	char *inside[] = { small + 1, small + 512, mid + 4096, large + 4096, large + 1 };

	for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
		cr_assert_eq(buffer_pool_free(pool, inside[i]), -EINVAL, "pointer %zu", i);
		cr_assert_eq(buffer_pool_usable_size(pool, inside[i]), 0, "pointer %zu", i);
	}
	cr_assert_eq(buffer_pool_free(pool, small), 0);
	cr_assert_eq(buffer_pool_free(pool, mid), 0);
	cr_assert_eq(buffer_pool_free(pool, large), 0);
	buffer_pool_destroy(pool);
}

Test(buffer_pool, explicit_shard_counts_work)
{
	const unsigned counts[] = { 1, 3, 1000 };

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct buffer_pool *pool = buffer_pool_create(4096, counts[i]);
		void *p;

		cr_assert_not_null(pool, "shards %u", counts[i]);
		p = buffer_pool_alloc(pool, 10000);
		cr_assert_eq(buffer_pool_usable_size(pool, p), 16384);
		cr_assert_eq(buffer_pool_free(pool, p), 0);
		buffer_pool_destroy(pool);
	}
}

Test(buffer_pool, one_thread_alternating_between_two_pools_gets_buffers_of_each)
{
	struct buffer_pool *a = pool_new(4096), *b = pool_new(4096);
	void *held_a[16], *held_b[16];

	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 16; i++) {
			held_a[i] = buffer_pool_alloc(a, 4096 << (i % 3));
			held_b[i] = buffer_pool_alloc(b, 4096 << (i % 3));
			cr_assert_gt(buffer_pool_usable_size(a, held_a[i]), 0);
			cr_assert_eq(buffer_pool_usable_size(b, held_a[i]), 0);
			cr_assert_gt(buffer_pool_usable_size(b, held_b[i]), 0);
			cr_assert_eq(buffer_pool_usable_size(a, held_b[i]), 0);
			touch(held_a[i], 4096);
			touch(held_b[i], 4096);
		}
		for (int i = 0; i < 16; i++) {
			cr_assert_eq(buffer_pool_free(b, held_a[i]), -EINVAL);
			cr_assert_eq(buffer_pool_free(a, held_a[i]), 0);
			cr_assert_eq(buffer_pool_free(b, held_b[i]), 0);
		}
	}
	/* Alternating flushes caches back and forth; nothing may leak into new chunks. */
	cr_assert_leq(buffer_pool_bytes(a), 3 * 2 * MiB);
	cr_assert_leq(buffer_pool_bytes(b), 3 * 2 * MiB);
	buffer_pool_destroy(a);
	buffer_pool_destroy(b);
}

static void alloc_only_from(struct buffer_pool *pool)
{
	void *bufs[64];

	for (int i = 0; i < 64; i++) {
		bufs[i] = buffer_pool_alloc(pool, 4096);
		cr_assert_eq(buffer_pool_usable_size(pool, bufs[i]), 4096, "buffer %d", i);
		touch(bufs[i], 4096);
	}
	for (int i = 0; i < 64; i++)
		cr_assert_eq(buffer_pool_free(pool, bufs[i]), 0);
}

Test(buffer_pool, a_cache_of_a_destroyed_pool_is_never_handed_out_by_a_new_pool)
{
	/* Each cycle leaves this thread's cache full of a pool it then destroys. glibc usually
	 * gives the next pool the dead pool's address (ASan's quarantine prevents it), and then
	 * only the generation tells the two apart: cycle so that this happens. */
	for (int cycle = 0; cycle < 64; cycle++) {
		struct buffer_pool *pool = pool_new(4096);

		alloc_only_from(pool);
		buffer_pool_destroy(pool);
	}
}

struct stale_arg {
	pthread_barrier_t cached, destroyed;
	struct buffer_pool *dead, *fresh;
};

static void *stale_worker(void *p)
{
	struct stale_arg *arg = p;
	void *bufs[24];

	for (int i = 0; i < 24; i++)
		bufs[i] = buffer_pool_alloc(arg->dead, 8192);
	for (int i = 0; i < 24; i++)
		cr_assert_eq(buffer_pool_free(arg->dead, bufs[i]), 0);
	pthread_barrier_wait(&arg->cached);
	pthread_barrier_wait(&arg->destroyed);
	alloc_only_from(arg->fresh);
	return NULL;
}

Test(buffer_pool, another_thread_caching_a_destroyed_pool_gets_memory_of_the_new_pool)
{
	struct stale_arg arg = { .dead = pool_new(4096) };
	pthread_t t;

	pthread_barrier_init(&arg.cached, NULL, 2);
	pthread_barrier_init(&arg.destroyed, NULL, 2);
	cr_assert_eq(pthread_create(&t, NULL, stale_worker, &arg), 0);
	pthread_barrier_wait(&arg.cached);
	buffer_pool_destroy(arg.dead);
	arg.fresh = pool_new(4096);
	pthread_barrier_wait(&arg.destroyed);
	join(t);
	buffer_pool_destroy(arg.fresh);
	pthread_barrier_destroy(&arg.cached);
	pthread_barrier_destroy(&arg.destroyed);
}

struct exit_arg {
	struct buffer_pool *pool;
	void *bufs[20];
	uint64_t in_threads_before_exit;
};

static void *alloc_free_and_exit(void *p)
{
	struct exit_arg *arg = p;

	for (int i = 0; i < 20; i++)
		arg->bufs[i] = buffer_pool_alloc(arg->pool, 4096);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(buffer_pool_free(arg->pool, arg->bufs[i]), 0);
	arg->in_threads_before_exit = buffer_pool_in_threads(arg->pool);
	return NULL;
}

Test(buffer_pool, an_exiting_thread_returns_its_cache_to_the_pool)
{
	struct exit_arg arg = { .pool = pool_new(4096) };
	void *mine[64];
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, alloc_free_and_exit, &arg), 0);
	join(t);
	cr_assert_geq(arg.in_threads_before_exit, 20, "the worker cached its buffers");
	cr_assert_eq(buffer_pool_in_threads(arg.pool), 0, "and gave them back on exit");
	/* Shards are drained before any new chunk is carved, so 64 allocations here must
	 * include every buffer the worker used. */
	for (int i = 0; i < 64; i++)
		mine[i] = buffer_pool_alloc(arg.pool, 4096);
	for (int w = 0; w < 20; w++) {
		int found = 0;

		for (int i = 0; i < 64; i++)
			found |= mine[i] == arg.bufs[w];
		cr_assert(found, "worker buffer %d was not reused", w);
	}
	for (int i = 0; i < 64; i++)
		cr_assert_eq(buffer_pool_free(arg.pool, mine[i]), 0);
	buffer_pool_destroy(arg.pool);
}

static void *short_lived(void *p)
{
	struct buffer_pool *pool = p;
	void *bufs[40];

	for (int i = 0; i < 40; i++)
		bufs[i] = buffer_pool_alloc(pool, i < 32 ? 4096 : 65536);
	for (int i = 0; i < 40; i++)
		cr_assert_eq(buffer_pool_free(pool, bufs[i]), 0);
	return NULL;
}

Test(buffer_pool, many_short_lived_threads_keep_memory_bounded)
{
	struct buffer_pool *pool = pool_new(4096);
	uint64_t after_first;
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, short_lived, pool), 0);
	join(t);
	after_first = buffer_pool_bytes(pool);
	/* Without the exit flush each thread would strand ~640 KiB: ~128 MiB in total. */
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(pthread_create(&t, NULL, short_lived, pool), 0);
		join(t);
	}
	cr_assert_leq(buffer_pool_bytes(pool), 2 * after_first);
	cr_assert_eq(buffer_pool_in_threads(pool), 0);
	buffer_pool_destroy(pool);
}

/*
 * Contention: 8 threads allocate buffers of several classes, stamp each with a unique serial
 * (size word, then the serial at every 4 KiB and in the last word), keep a window of them
 * and re-check the window on every step, so a buffer handed to two owners at once is caught
 * by whichever owner stamped first. The oldest buffer goes through a shared slot array to a
 * random other thread, which checks it is whole and frees it: most frees are cross-thread.
 */
#define MT_THREADS 8
#define MT_ITERS   10000
#define MT_WINDOW  8
#define MT_SLOTS   64

static _Atomic(uint64_t *) mt_slots[MT_SLOTS];
static const size_t mt_sizes[] = { 4096, 100, 8192, 16384, 30000, 65536, 4096, 12288 };

struct mt_arg {
	struct buffer_pool *pool;
	uint64_t id;
	uint64_t rng;
	uint64_t bytes_allocated;
};

static uint64_t mt_rand(struct mt_arg *arg)
{
	arg->rng ^= arg->rng << 13;
	arg->rng ^= arg->rng >> 7;
	arg->rng ^= arg->rng << 17;
	return arg->rng;
}

static void mt_stamp(uint64_t *buf, size_t size, uint64_t serial)
{
	size_t words = size / sizeof(uint64_t);

	buf[0] = size;
	for (size_t w = 1; w < words; w += 512)
		buf[w] = serial;
	buf[words - 1] = serial;
}

/* True if buf holds one consistent stamp (any serial); *serial gets it. */
static int mt_whole(const uint64_t *buf, uint64_t *serial)
{
	size_t size = buf[0], words = size / sizeof(uint64_t);

	if (size < 4096 || size > 65536)
		return 0;
	*serial = buf[1];
	for (size_t w = 1; w < words; w += 512)
		if (buf[w] != *serial)
			return 0;
	return buf[words - 1] == *serial;
}

static void mt_check_and_free(struct buffer_pool *pool, uint64_t *buf)
{
	uint64_t serial;

	cr_assert(mt_whole(buf, &serial), "received buffer %p is torn", (void *) buf);
	cr_assert_geq(buffer_pool_usable_size(pool, buf), buf[0]);
	cr_assert_eq(buffer_pool_free(pool, buf), 0);
}

static void mt_step(struct mt_arg *arg, uint64_t **window, uint64_t *serials, uint64_t i)
{
	size_t size = mt_sizes[mt_rand(arg) % (sizeof(mt_sizes) / sizeof(mt_sizes[0]))];
	size_t slot = i % MT_WINDOW, stamp = size < 4096 ? 4096 : size;
	uint64_t *buf, *got, serial;

	for (int w = 0; w < MT_WINDOW; w++)
		cr_assert(!window[w] || (mt_whole(window[w], &serial) && serial == serials[w]),
			  "buffer %p has two owners", (void *) window[w]);
	if (window[slot]) {
		/* seq_cst exchange: publishes our stamp and acquires the previous owner's. */
		got = atomic_exchange(&mt_slots[mt_rand(arg) % MT_SLOTS], window[slot]);
		if (got)
			mt_check_and_free(arg->pool, got);
	}
	buf = buffer_pool_alloc(arg->pool, size);
	cr_assert_not_null(buf);
	cr_assert_geq(buffer_pool_usable_size(arg->pool, buf), size);
	serials[slot] = arg->id << 32 | i;
	mt_stamp(buf, stamp, serials[slot]);
	window[slot] = buf;
	arg->bytes_allocated += size;
}

static void *mt_worker(void *p)
{
	struct mt_arg *arg = p;
	uint64_t *window[MT_WINDOW] = { 0 }, serials[MT_WINDOW];

	for (uint64_t i = 0; i < MT_ITERS; i++)
		mt_step(arg, window, serials, i);
	for (int w = 0; w < MT_WINDOW; w++)
		mt_check_and_free(arg->pool, window[w]);
	return NULL;
}

static void *mt_drain(void *p)
{
	for (int s = 0; s < MT_SLOTS; s++) {
		uint64_t *buf = atomic_exchange(&mt_slots[s], NULL);

		if (buf)
			mt_check_and_free(p, buf);
	}
	return NULL;
}

Test(buffer_pool, eight_threads_with_cross_thread_frees_never_share_a_buffer)
{
	struct buffer_pool *pool = pool_new(4096);
	struct mt_arg args[MT_THREADS];
	pthread_t t[MT_THREADS];
	uint64_t total = 0;

	for (int i = 0; i < MT_THREADS; i++) {
		args[i] = (struct mt_arg){ .pool = pool,
					   .id = (uint64_t) i + 1,
					   .rng = 0x9E3779B97F4A7C15ull * (uint64_t) (i + 1) };
		cr_assert_eq(pthread_create(&t[i], NULL, mt_worker, &args[i]), 0);
	}
	for (int i = 0; i < MT_THREADS; i++) {
		join(t[i]);
		total += args[i].bytes_allocated;
	}
	/* Drain in a thread of its own so that its cache, too, is flushed when it exits. */
	cr_assert_eq(pthread_create(&t[0], NULL, mt_drain, pool), 0);
	join(t[0]);
	cr_assert_eq(buffer_pool_in_threads(pool), 0, "every thread cache came back");
	/* ~1.4 GB went through; live + cached at any time is a few MiB per thread. */
	cr_assert_gt(total, 1024 * MiB);
	cr_assert_leq(buffer_pool_bytes(pool), 64 * MiB, "pool holds %llu bytes",
		      (unsigned long long) buffer_pool_bytes(pool));
	buffer_pool_destroy(pool);
}
