/* SPDX-License-Identifier: MIT */
/*
 * buffer_pool.c - the aligned buffer pool: size classes, chunks and the chunk map, large
 * mappings, the sharded free lists (L2), the per-thread caches (L1) and the process-wide
 * registry of live pools. The address tables behind the chunk map and the large map are
 * addr_table.c/.h.
 *
 * Layout: class buffers (4 KiB..256 KiB, powers of two) are carved from 2 MiB chunks mapped
 * at 2 MiB alignment. A chunk serves one class and its buffers sit at multiples of the class
 * size, so each buffer is aligned to its class size; classes smaller than the pool alignment
 * are never used, which makes every buffer aligned to the pool alignment. Requests above
 * 256 KiB (or above the alignment's smallest usable class) are mapped one by one.
 *
 * Invariants:
 * - ptr is a class buffer of this pool iff its chunk base (ptr & ~(CHUNK_SIZE - 1)) is in
 *   pool->chunks, ptr is at a multiple of the chunk's class size and below the chunk's carved
 *   mark; ptr is a large buffer iff it is the exact start of an entry of pool->large. Only
 *   the pool's own tables are read to decide this: a foreign pointer is never dereferenced.
 * - Chunks go back to the system only in buffer_pool_destroy. The chunk map is insert-only
 *   and the arrays it outgrows are kept until destroy, so a lock-free reader never reads
 *   freed memory.
 * - A thread cache holds buffers of exactly one pool, named by (pointer, generation).
 *   Generations are unique in the process. The cached pointer is only compared; the pool is
 *   reached through the registry, under registry_lock, and only while it is registered.
 * - A buffer on a shard free list keeps the next link in its first bytes; a buffer in a
 *   thread cache or held by the application carries no pool data.
 *
 * Must never: take a lock or an atomic read-modify-write on the L1 fast paths; dereference a
 * pointer before the pool's tables said it is ours; touch a pool after it left the registry.
 * A double free of a class buffer is not detected (that would need shared per-buffer state
 * on the fast path); a double free of a large buffer returns -EINVAL.
 *
 * Lock order: registry_lock -> shard->lock. Never two shard locks at once. pool->map_lock is
 * a leaf: taken under no other lock, and no lock is taken while it is held.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addr_table.h"
#include "buffer_pool.h"
#include "internal.h"

#define CLASS_MIN_SHIFT 12
#define NUM_CLASSES	7
#define CLASS_LARGE	NUM_CLASSES
#define CHUNK_SHIFT	21
#define CHUNK_SIZE	((size_t) 1 << CHUNK_SHIFT)
#define CACHE_MAX	32 /* slots per class in a thread cache */
#define MAX_SHARDS	256
#define CPU_REFRESH	32 /* slow-path calls between two sched_getcpu() */
#define ALIGN_MIN	512
#define ALIGN_MAX	((size_t) 1 << 20)

/* Thread cache bound per class: 32 buffers up to 32 KiB, then about 1 MiB per class, at
 * least 8, so one thread caches at most ~6 MiB. Overflow and refill move half of it. */
static const uint8_t cache_cap[NUM_CLASSES] = { 32, 32, 32, 32, 16, 8, 8 };

/* ---- pool, shards, thread cache ---------------------------------------------------------- */

struct free_list {
	void *head; /* linked through the buffers' first bytes (shard lock) */
	/* Written under the shard lock; read without it, relaxed, as a steal hint and by
	 * buffer_pool_in_threads. A stale value only costs a useless lock or a skipped shard. */
	_Atomic uint32_t count;
};

struct shard {
	pthread_mutex_t lock;
	struct free_list list[NUM_CLASSES];
} cache_aligned;

struct chunk {
	uintptr_t base;
	/* Bytes carved from the start. Release under map_lock in carve, pairs with the acquire
	 * in chunk_class_of: a freed pointer below the mark was really handed out. */
	_Atomic uint32_t carved;
	uint8_t cls;
};

struct buffer_pool {
	/* Read-only after create; the fast paths read these. */
	uint64_t gen;
	size_t alignment;
	size_t page;
	uint32_t shard_mask;
	uint8_t min_class; /* smallest class >= alignment; CLASS_LARGE = none */
	struct shard *shards;
	struct addr_table chunks;		 /* base -> struct chunk *; lock-free readers */
	struct buffer_pool *reg_prev, *reg_next; /* registry_lock */

	pthread_mutex_t map_lock cache_aligned;
	struct addr_table large;	    /* addr -> length; map_lock only */
	struct chunk *carving[NUM_CLASSES]; /* chunk being carved per class */
	counter_t bytes;		    /* written under map_lock */
	counter_t carved_bufs;		    /* written under map_lock */
};

/*
 * Cache line 0 holds all the fast path reads: the binding (pool, gen) and the counts.
 * pool is compared, never dereferenced. The stacks are cold and live in the lines after.
 */
struct thread_cache {
	struct buffer_pool *pool;
	uint64_t gen; /* 0 = unbound */
	uint8_t count[NUM_CLASSES];
	bool registered; /* pthread_setspecific done, so thread exit flushes */
	uint32_t cpu;
	uint32_t cpu_age;
	void *stack[NUM_CLASSES][CACHE_MAX] cache_aligned;
};

static TLS_IE struct thread_cache tls_cache;

/* Process-wide registry of live pools: the rare path. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct buffer_pool *registry_head; /* registry_lock */
static uint64_t registry_next_gen = 1;	  /* registry_lock */
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;
static int cache_key_err;

static size_t class_size(unsigned c)
{
	return (size_t) 1 << (CLASS_MIN_SHIFT + c);
}

/* A comparison cascade, not CLZ: cheaper for the common 4..64 KiB sizes (see the
 * architecture doc, section 7). */
static inline unsigned size_class(size_t size)
{
	if (size <= 4096)
		return 0;
	if (size <= 8192)
		return 1;
	if (size <= 16384)
		return 2;
	if (size <= 32768)
		return 3;
	if (size <= 65536)
		return 4;
	if (size <= 131072)
		return 5;
	if (size <= 262144)
		return 6;
	return CLASS_LARGE;
}

static inline unsigned pool_class(const struct buffer_pool *pool, size_t size)
{
	unsigned c = size_class(size);

	return c < pool->min_class ? pool->min_class : c;
}

static void *link_get(void *buf)
{
	void *next;

	memcpy(&next, buf, sizeof(next));
	return next;
}

static void link_set(void *buf, void *next)
{
	memcpy(buf, &next, sizeof(next));
}

/* ---- L2: shards ------------------------------------------------------------------------ */

static unsigned cache_cpu(struct thread_cache *tc)
{
	if (unlikely(tc->cpu_age == 0)) {
		int cpu = sched_getcpu();

		tc->cpu = cpu < 0 ? 0 : (uint32_t) cpu;
		tc->cpu_age = CPU_REFRESH;
	}
	tc->cpu_age--;
	return tc->cpu;
}

static unsigned shard_take(struct shard *s, unsigned c, void **out, unsigned want)
{
	struct free_list *l = &s->list[c];
	uint32_t count;
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (; n < want && l->head; n++) {
		out[n] = l->head;
		l->head = link_get(l->head);
	}
	count = atomic_load_explicit(&l->count, memory_order_relaxed);
	atomic_store_explicit(&l->count, count - n, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void shard_give(struct shard *s, unsigned c, void **bufs, unsigned n)
{
	struct free_list *l = &s->list[c];
	uint32_t count;

	/* The buffers are ours: chain them before taking the lock. */
	for (unsigned i = 0; i + 1 < n; i++)
		link_set(bufs[i], bufs[i + 1]);
	pthread_mutex_lock(&s->lock);
	link_set(bufs[n - 1], l->head);
	l->head = bufs[0];
	count = atomic_load_explicit(&l->count, memory_order_relaxed);
	atomic_store_explicit(&l->count, count + n, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
}

/* The home shard first, then steal from any shard whose hint says it has some. */
static unsigned shards_take(struct buffer_pool *pool, unsigned home, unsigned c, void **out,
			    unsigned want)
{
	for (unsigned i = 0; i <= pool->shard_mask; i++) {
		struct shard *s = &pool->shards[(home + i) & pool->shard_mask];
		unsigned n;

		if (i > 0 && atomic_load_explicit(&s->list[c].count, memory_order_relaxed) == 0)
			continue;
		n = shard_take(s, c, out, want);
		if (n)
			return n;
	}
	return 0;
}

/* ---- chunks and large mappings (map_lock) ----------------------------------------------- */

/* Over-map and trim so the mapping starts at a multiple of align. */
static void *map_aligned(size_t len, size_t align, size_t page)
{
	size_t over = align > page ? align : 0, head;
	void *raw =
	    mmap(NULL, len + over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start;

	if (raw == MAP_FAILED)
		return NULL;
	if (!over)
		return raw; /* mmap is page aligned, which is enough */
	start = ((uintptr_t) raw + align - 1) & ~(uintptr_t) (align - 1);
	head = start - (uintptr_t) raw;
	if (head)
		munmap(raw, head);
	if (over - head)
		munmap((void *) (start + len), over - head);
	return (void *) start;
}

static struct chunk *chunk_new(struct buffer_pool *pool, unsigned c)
{
	struct chunk *ch = malloc(sizeof(*ch));
	void *base;

	if (!ch)
		return NULL;
	base = map_aligned(CHUNK_SIZE, CHUNK_SIZE, pool->page);
	if (!base) {
		free(ch);
		return NULL;
	}
	ch->base = (uintptr_t) base;
	ch->cls = (uint8_t) c;
	atomic_init(&ch->carved, 0);
	if (addr_insert(&pool->chunks, ch->base, (uintptr_t) ch)) {
		munmap(base, CHUNK_SIZE);
		free(ch);
		return NULL;
	}
	counter_add(&pool->bytes, CHUNK_SIZE);
	pool->carving[c] = ch;
	return ch;
}

/* Cut up to want fresh buffers of class c; a new chunk only when the current one is used up. */
static unsigned carve(struct buffer_pool *pool, unsigned c, void **out, unsigned want)
{
	size_t size = class_size(c);
	struct chunk *ch;
	uint32_t off;
	unsigned n = 0;

	pthread_mutex_lock(&pool->map_lock);
	ch = pool->carving[c];
	if (!ch || atomic_load_explicit(&ch->carved, memory_order_relaxed) >= CHUNK_SIZE)
		ch = chunk_new(pool, c);
	if (ch) {
		off = atomic_load_explicit(&ch->carved, memory_order_relaxed);
		for (; n < want && off < CHUNK_SIZE; n++, off += size)
			out[n] = (void *) (ch->base + off);
		atomic_store_explicit(&ch->carved, off, memory_order_release);
		counter_add(&pool->carved_bufs, n);
	}
	pthread_mutex_unlock(&pool->map_lock);
	return n;
}

static void *large_alloc(struct buffer_pool *pool, size_t size)
{
	size_t len;
	void *p;
	int err;

	if (size > (SIZE_MAX >> 2)) {
		errno = ENOMEM;
		return NULL;
	}
	len = (size + pool->page - 1) & ~(pool->page - 1);
	p = map_aligned(len, pool->alignment, pool->page);
	if (!p)
		return NULL;
	pthread_mutex_lock(&pool->map_lock);
	err = addr_insert(&pool->large, (uintptr_t) p, len);
	if (!err)
		counter_add(&pool->bytes, len);
	pthread_mutex_unlock(&pool->map_lock);
	if (err) {
		munmap(p, len);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

static int large_free(struct buffer_pool *pool, void *ptr)
{
	size_t len;

	pthread_mutex_lock(&pool->map_lock);
	len = addr_remove(&pool->large, (uintptr_t) ptr);
	if (len)
		atomic_store_explicit(&pool->bytes, counter_get(&pool->bytes) - len,
				      memory_order_relaxed);
	pthread_mutex_unlock(&pool->map_lock);
	if (!len)
		return -EINVAL;
	munmap(ptr, len);
	return 0;
}

/* Class of a class buffer of this pool, or -1. Lock-free; never dereferences ptr. */
static inline int chunk_class_of(struct buffer_pool *pool, const void *ptr)
{
	uintptr_t p = (uintptr_t) ptr, base = p & ~(uintptr_t) (CHUNK_SIZE - 1);
	struct chunk *ch = (struct chunk *) addr_find(&pool->chunks, base);

	if (!ch || ((p - base) & (class_size(ch->cls) - 1)))
		return -1;
	if (p - base >= atomic_load_explicit(&ch->carved, memory_order_acquire))
		return -1;
	return ch->cls;
}

/* ---- registry and thread-cache binding -------------------------------------------------- */

static struct buffer_pool *registry_find(uint64_t gen)
{
	for (struct buffer_pool *p = registry_head; p; p = p->reg_next)
		if (p->gen == gen)
			return p;
	return NULL;
}

static void registry_add(struct buffer_pool *pool)
{
	pthread_mutex_lock(&registry_lock);
	pool->gen = registry_next_gen++;
	pool->reg_prev = NULL;
	pool->reg_next = registry_head;
	if (registry_head)
		registry_head->reg_prev = pool;
	registry_head = pool;
	pthread_mutex_unlock(&registry_lock);
}

/* Once this returns, no thread cache flush can reach the pool. */
static void registry_remove(struct buffer_pool *pool)
{
	pthread_mutex_lock(&registry_lock);
	if (pool->reg_prev)
		pool->reg_prev->reg_next = pool->reg_next;
	else
		registry_head = pool->reg_next;
	if (pool->reg_next)
		pool->reg_next->reg_prev = pool->reg_prev;
	pthread_mutex_unlock(&registry_lock);
}

/* registry_lock held. Give the cache back to its pool if alive, else forget it; unbind. */
static void cache_flush_locked(struct thread_cache *tc)
{
	struct buffer_pool *pool = tc->gen ? registry_find(tc->gen) : NULL;

	for (unsigned c = 0; c < NUM_CLASSES; c++) {
		if (pool && tc->count[c])
			shard_give(&pool->shards[cache_cpu(tc) & pool->shard_mask], c, tc->stack[c],
				   tc->count[c]);
		tc->count[c] = 0;
	}
	tc->pool = NULL;
	tc->gen = 0;
}

static void cache_on_thread_exit(void *arg)
{
	struct thread_cache *tc = arg;

	pthread_mutex_lock(&registry_lock);
	cache_flush_locked(tc);
	pthread_mutex_unlock(&registry_lock);
	tc->registered = false;
}

static void cache_key_init(void)
{
	cache_key_err = pthread_key_create(&cache_key, cache_on_thread_exit);
}

static void cache_rebind(struct thread_cache *tc, struct buffer_pool *pool)
{
	if (tc->gen) {
		pthread_mutex_lock(&registry_lock);
		cache_flush_locked(tc);
		pthread_mutex_unlock(&registry_lock);
	}
	tc->pool = pool;
	tc->gen = pool->gen;
	/* If this fails (ENOMEM) thread exit will not flush; it is retried on the next bind. */
	if (!tc->registered && pthread_setspecific(cache_key, tc) == 0)
		tc->registered = true;
}

static inline bool cache_bound(const struct thread_cache *tc, const struct buffer_pool *pool)
{
	/* Compares the caller's pool, which is alive, with the cached identity. */
	return tc->pool == pool && tc->gen == pool->gen;
}

/* Move the n coldest (bottom) buffers of class c to the home shard. */
static void cache_spill(struct buffer_pool *pool, struct thread_cache *tc, unsigned c, unsigned n)
{
	void **stack = tc->stack[c];

	shard_give(&pool->shards[cache_cpu(tc) & pool->shard_mask], c, stack, n);
	memmove(stack, stack + n, (tc->count[c] - n) * sizeof(*stack));
	tc->count[c] = (uint8_t) (tc->count[c] - n);
}

static void *alloc_slow(struct buffer_pool *pool, struct thread_cache *tc, unsigned c)
{
	unsigned home, n;

	if (!cache_bound(tc, pool))
		cache_rebind(tc, pool); /* leaves the cache empty */
	home = cache_cpu(tc) & pool->shard_mask;
	n = shards_take(pool, home, c, tc->stack[c], cache_cap[c] / 2);
	if (!n)
		n = carve(pool, c, tc->stack[c], cache_cap[c] / 2);
	if (!n) {
		errno = ENOMEM;
		return NULL;
	}
	tc->count[c] = (uint8_t) (n - 1);
	return tc->stack[c][n - 1];
}

/* ---- public ---------------------------------------------------------------------------- */

static uint32_t shard_count(unsigned shards)
{
	long n = shards;

	if (n == 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
	}
	if (n > MAX_SHARDS)
		n = MAX_SHARDS;
	return round_up_pow2_u32((uint32_t) n);
}

static int pool_init_shards(struct buffer_pool *pool, unsigned shards)
{
	uint32_t n = shard_count(shards);
	void *mem;

	if (posix_memalign(&mem, CACHE_LINE, n * sizeof(struct shard)))
		return -ENOMEM;
	pool->shards = mem;
	memset(pool->shards, 0, n * sizeof(struct shard));
	for (uint32_t i = 0; i < n; i++)
		pthread_mutex_init(&pool->shards[i].lock, NULL);
	pool->shard_mask = n - 1;
	return 0;
}

static void pool_free_shards(struct buffer_pool *pool)
{
	for (uint32_t i = 0; i <= pool->shard_mask; i++)
		pthread_mutex_destroy(&pool->shards[i].lock);
	free(pool->shards);
}

struct buffer_pool *buffer_pool_create(size_t alignment, unsigned shards)
{
	struct buffer_pool *pool;
	void *mem;

	if (alignment < ALIGN_MIN || alignment > ALIGN_MAX || (alignment & (alignment - 1))) {
		errno = EINVAL;
		return NULL;
	}
	pthread_once(&cache_key_once, cache_key_init);
	if (cache_key_err) {
		errno = cache_key_err;
		return NULL;
	}
	if (posix_memalign(&mem, CACHE_LINE, sizeof(*pool))) {
		errno = ENOMEM;
		return NULL;
	}
	pool = memset(mem, 0, sizeof(*pool));
	pool->alignment = alignment;
	pool->page = (size_t) sysconf(_SC_PAGESIZE);
	pool->min_class = (uint8_t) size_class(alignment);
	pthread_mutex_init(&pool->map_lock, NULL);
	if (pool_init_shards(pool, shards))
		goto fail_shards;
	if (addr_table_init(&pool->chunks, true))
		goto fail_chunks;
	if (addr_table_init(&pool->large, false))
		goto fail_large;
	registry_add(pool);
	return pool;

fail_large:
	addr_table_fini(&pool->chunks);
fail_chunks:
	pool_free_shards(pool);
fail_shards:
	pthread_mutex_destroy(&pool->map_lock);
	free(pool);
	errno = ENOMEM;
	return NULL;
}

void buffer_pool_destroy(struct buffer_pool *pool)
{
	struct addr_array *a;

	if (!pool)
		return;
	/* Caches still bound to this pool are discarded lazily: their generation is gone. */
	registry_remove(pool);
	a = atomic_load_explicit(&pool->chunks.cur, memory_order_relaxed);
	for (size_t i = 0; i <= a->mask; i++) {
		struct chunk *ch =
		    (struct chunk *) atomic_load_explicit(&a->slot[i].val, memory_order_relaxed);
		if (ch) {
			munmap((void *) ch->base, CHUNK_SIZE);
			free(ch);
		}
	}
	a = atomic_load_explicit(&pool->large.cur, memory_order_relaxed);
	for (size_t i = 0; i <= a->mask; i++) {
		uintptr_t k = atomic_load_explicit(&a->slot[i].key, memory_order_relaxed);
		uintptr_t len = atomic_load_explicit(&a->slot[i].val, memory_order_relaxed);

		if (len)
			munmap((void *) k, len);
	}
	addr_table_fini(&pool->chunks);
	addr_table_fini(&pool->large);
	pool_free_shards(pool);
	pthread_mutex_destroy(&pool->map_lock);
	free(pool);
}

void *buffer_pool_alloc(struct buffer_pool *pool, size_t size)
{
	struct thread_cache *tc = &tls_cache;
	unsigned c = pool_class(pool, size);

	if (unlikely(size == 0)) {
		errno = EINVAL;
		return NULL;
	}
	if (unlikely(c == CLASS_LARGE))
		return large_alloc(pool, size);
	if (likely(cache_bound(tc, pool) && tc->count[c]))
		return tc->stack[c][--tc->count[c]];
	return alloc_slow(pool, tc, c);
}

int buffer_pool_free(struct buffer_pool *pool, void *ptr)
{
	struct thread_cache *tc = &tls_cache;
	int c;

	if (unlikely(!ptr))
		return 0;
	c = chunk_class_of(pool, ptr);
	if (unlikely(c < 0))
		return large_free(pool, ptr);
	if (unlikely(!cache_bound(tc, pool)))
		cache_rebind(tc, pool);
	if (unlikely(tc->count[c] == cache_cap[c]))
		cache_spill(pool, tc, (unsigned) c, cache_cap[c] / 2);
	tc->stack[c][tc->count[c]++] = ptr;
	return 0;
}

size_t buffer_pool_usable_size(struct buffer_pool *pool, const void *ptr)
{
	size_t len;
	int c;

	if (!ptr)
		return 0;
	c = chunk_class_of(pool, ptr);
	if (c >= 0)
		return class_size((unsigned) c);
	pthread_mutex_lock(&pool->map_lock);
	len = addr_find(&pool->large, (uintptr_t) ptr);
	pthread_mutex_unlock(&pool->map_lock);
	return len;
}

uint64_t buffer_pool_bytes(const struct buffer_pool *pool)
{
	return counter_get(&pool->bytes);
}

uint64_t buffer_pool_in_threads(struct buffer_pool *pool)
{
	uint64_t in_shards = 0;

	for (uint32_t i = 0; i <= pool->shard_mask; i++)
		for (unsigned c = 0; c < NUM_CLASSES; c++)
			in_shards += atomic_load_explicit(&pool->shards[i].list[c].count,
							  memory_order_relaxed);
	return counter_get(&pool->carved_bufs) - in_shards;
}
