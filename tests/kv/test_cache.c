/* SPDX-License-Identifier: MIT */
/* The value cache (kv/src/kv_cache.c): round trips, the capacity bound, S3-FIFO's scan
 * resistance and ghost, and concurrent use (run under TSan in CI). Values are derived
 * from their location, so any byte returned can be checked. */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv_cache.h"

#define MIB	  (1024u * 1024u)
#define MAX_VALUE 2048u

/* A location as the store makes them: segment << 32 | offset. */
static uint64_t loc_of(uint64_t k)
{
	return ((k % 7) << 32) | (k * 64);
}

static uint64_t scramble(uint64_t x)
{
	x *= 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

/* The value stored under loc: `len` bytes, all determined by loc. */
static void value_of(uint64_t loc, size_t len, uint8_t *buf)
{
	uint64_t seed = scramble(loc);

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t) (seed >> (8 * (i % 8))) ^ (uint8_t) i;
}

static void put_value(struct kv_cache *c, uint64_t loc, size_t len)
{
	uint8_t buf[MAX_VALUE];

	value_of(loc, len, buf);
	kv_cache_put(c, loc, buf, len);
}

/* True if loc is cached with exactly the `len` bytes value_of gives. A hit is an access. */
static bool cached_intact(struct kv_cache *c, uint64_t loc, size_t len)
{
	uint8_t got[MAX_VALUE], want[MAX_VALUE];
	size_t n = 0;

	if (kv_cache_get(c, loc, got, sizeof(got), &n) != 0)
		return false;
	value_of(loc, len, want);
	cr_assert_eq(n, len, "loc %llx: length %zu, put %zu", (unsigned long long) loc, n, len);
	cr_assert_arr_eq(got, want, len, "loc %llx: bytes differ", (unsigned long long) loc);
	return true;
}

static struct kv_cache_stats stats(struct kv_cache *c)
{
	struct kv_cache_stats st;

	kv_cache_get_stats(c, &st);
	return st;
}

Test(kv_cache, creating_with_zero_capacity_returns_null)
{
	cr_assert_null(kv_cache_create(0, 0));
	cr_assert_null(kv_cache_create(0, 4));
}

Test(kv_cache, a_null_cache_misses_ignores_puts_and_reports_zero_stats)
{
	uint8_t buf[16] = { 0 };
	void *val = NULL;
	size_t len = 7;
	struct kv_cache_stats st;

	kv_cache_put(NULL, 1, buf, sizeof(buf));
	cr_assert_eq(kv_cache_get(NULL, 1, buf, sizeof(buf), &len), -ENOENT);
	cr_assert_eq(kv_cache_get_alloc(NULL, 1, &val, &len), -ENOENT);
	cr_assert_null(val);
	cr_assert_eq(len, 7);
	memset(&st, 0xff, sizeof(st));
	kv_cache_get_stats(NULL, &st);
	cr_assert_eq(st.hits + st.misses + st.inserts + st.evictions, 0);
	cr_assert_eq(st.bytes + st.entries + st.capacity, 0);
	kv_cache_destroy(NULL);
}

Test(kv_cache, a_put_value_is_returned_by_get_and_a_missing_one_is_enoent)
{
	struct kv_cache *c = kv_cache_create(4 * MIB, 0);
	uint8_t buf[MAX_VALUE];
	size_t len;

	cr_assert_not_null(c);
	put_value(c, loc_of(1), 100);
	cr_assert(cached_intact(c, loc_of(1), 100));
	cr_assert_eq(kv_cache_get(c, loc_of(2), buf, sizeof(buf), &len), -ENOENT);
	cr_assert_eq(stats(c).hits, 1);
	cr_assert_eq(stats(c).misses, 1);
	cr_assert_eq(stats(c).inserts, 1);
	cr_assert_eq(stats(c).entries, 1);
	cr_assert_gt(stats(c).bytes, 100);
	cr_assert_eq(stats(c).capacity, 4 * MIB);
	kv_cache_destroy(c);
}

Test(kv_cache, a_zero_length_value_round_trips)
{
	struct kv_cache *c = kv_cache_create(MIB, 1);
	uint8_t buf[1];
	size_t len = 99;
	void *val = NULL;

	kv_cache_put(c, 5, NULL, 0);
	cr_assert_eq(kv_cache_get(c, 5, buf, 0, &len), 0);
	cr_assert_eq(len, 0);
	len = 99;
	cr_assert_eq(kv_cache_get_alloc(c, 5, &val, &len), 0);
	cr_assert_not_null(val);
	cr_assert_eq(len, 0);
	free(val);
	kv_cache_destroy(c);
}

Test(kv_cache, get_with_a_small_buffer_returns_emsgsize_and_the_needed_length)
{
	struct kv_cache *c = kv_cache_create(MIB, 1);
	uint8_t buf[MAX_VALUE];
	size_t len = 0;

	put_value(c, loc_of(3), 300);
	cr_assert_eq(kv_cache_get(c, loc_of(3), buf, 299, &len), -EMSGSIZE);
	cr_assert_eq(len, 300);
	cr_assert_eq(stats(c).hits, 0, "a too-small buffer is not a hit");
	cr_assert(cached_intact(c, loc_of(3), 300), "an exact-size buffer is enough");
	kv_cache_destroy(c);
}

Test(kv_cache, get_alloc_returns_a_malloced_copy)
{
	struct kv_cache *c = kv_cache_create(MIB, 1);
	uint8_t want[MAX_VALUE];
	void *val = NULL;
	size_t len = 0;

	put_value(c, loc_of(4), 1000);
	value_of(loc_of(4), 1000, want);
	cr_assert_eq(kv_cache_get_alloc(c, loc_of(4), &val, &len), 0);
	cr_assert_eq(len, 1000);
	cr_assert_arr_eq(val, want, 1000);
	free(val);
	cr_assert_eq(kv_cache_get_alloc(c, loc_of(5), &val, &len), -ENOENT);
	cr_assert_eq(stats(c).hits, 1);
	kv_cache_destroy(c);
}

Test(kv_cache, a_second_put_on_a_cached_location_keeps_the_first_copy)
{
	struct kv_cache *c = kv_cache_create(MIB, 1);
	uint64_t bytes;

	put_value(c, loc_of(6), 200);
	bytes = stats(c).bytes;
	put_value(c, loc_of(6), 200);
	cr_assert_eq(stats(c).inserts, 1);
	cr_assert_eq(stats(c).entries, 1);
	cr_assert_eq(stats(c).bytes, bytes);
	cr_assert(cached_intact(c, loc_of(6), 200));
	kv_cache_destroy(c);
}

Test(kv_cache, bytes_never_exceed_capacity_while_inserting_ten_times_as_much)
{
	const size_t cap = 4 * MIB;
	struct kv_cache *c = kv_cache_create(cap, 0);
	uint64_t put = 0;
	struct kv_cache_stats st;

	for (uint64_t k = 0; put < 10 * cap; k++) {
		size_t len = 1 + scramble(k) % MAX_VALUE;

		put_value(c, loc_of(k), len);
		put += len;
		st = stats(c);
		cr_assert_leq(st.bytes, cap, "after %llu puts: %llu bytes cached",
			      (unsigned long long) k + 1, (unsigned long long) st.bytes);
	}
	cr_assert_eq(st.capacity, cap);
	cr_assert_gt(st.evictions, 0);
	cr_assert_gt(st.bytes, cap / 2, "the cache is used, not just bounded");
	cr_assert_eq(st.inserts - st.evictions, st.entries);
	kv_cache_destroy(c);
}

/* The heap the cache takes while full of tiny values stays within its capacity. It took
 * up to 1.5x: the ghost's ring and set (24..48 bytes per key, as many keys as main
 * holds entries) were not charged, the table (up to 2.67 slots per entry) was charged 2,
 * and malloc's 16-byte chunks (at least 32) were charged as 16 bytes over the request. */
Test(kv_cache, the_heap_it_takes_stays_within_its_capacity_with_tiny_values)
{
	const size_t cap = 4 * MIB, lens[] = { 0, 1, 9, 40, 100 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct mallinfo2 before = mallinfo2(), after;
		struct kv_cache *c = kv_cache_create(cap, 1);
		size_t used;

		for (uint64_t k = 0; k < 200000; k++)
			put_value(c, loc_of(k), lens[i]);
		after = mallinfo2();
		used = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
		cr_assert_gt(stats(c).evictions, 0, "the cache filled up");
		cr_assert_leq(used, cap, "%zu-byte values: %zu bytes of heap for a %zu-byte cache",
			      lens[i], used, cap);
		cr_assert_leq(stats(c).bytes, cap);
		kv_cache_destroy(c);
	}
}

/* The heap the cache takes, measured by malloc (glibc's counters: the chunks in use and
 * the mmap'd ones): what `c` added since `before`. */
static size_t heap_since(size_t before)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd - before;
}

static size_t heap_now(void)
{
	return heap_since(0);
}

/* Tiny values fill the cache and grow its table; then values of another size evict them.
 * The table was charged 3 slots per entry but shrank only by half per insert, and only
 * below a load of 1/8 (8 slots per entry): with the entries gone, its slots stayed, and
 * the heap passed the capacity by 15 %. */
Test(kv_cache, the_heap_stays_within_capacity_when_larger_values_evict_tiny_ones)
{
	const size_t cap = MIB, lens[] = { 1000, 20000, 100000 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *buf = calloc(1, lens[i]);
		size_t before = heap_now(), worst = 0;
		struct kv_cache *c = kv_cache_create(cap, 1);

		for (uint64_t k = 0; k < 20000; k++)
			put_value(c, loc_of(k), 1);
		for (uint64_t k = 0; k < 2 * cap / lens[i]; k++) {
			size_t used;

			kv_cache_put(c, loc_of(100000 + k), buf, lens[i]);
			used = heap_since(before);
			worst = used > worst ? used : worst;
			cr_assert_leq(stats(c).bytes, cap);
		}
		cr_log_info("%zu-byte values after tiny ones: at most %zu bytes of heap", lens[i],
			    worst);
		cr_assert_leq(worst, cap, "%zu-byte values: %zu bytes of heap for a %zu-byte cache",
			      lens[i], worst, cap);
		free(buf);
		kv_cache_destroy(c);
	}
}

/* A small cache split into many shards: each shard's table (64 slots at least), its
 * ghost's ring and the shards themselves were not charged - 1.5 KiB a shard, twice the
 * capacity of a 64 KiB cache of 64 shards. */
Test(kv_cache, a_small_cache_of_many_shards_stays_within_capacity)
{
	const size_t caps[] = { 64u << 10, 16u << 10 };

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		size_t before = heap_now(), used;
		struct kv_cache *c = kv_cache_create(caps[i], 64);

		for (uint64_t k = 0; k < 20000; k++)
			put_value(c, loc_of(k), k % 200);
		used = c ? heap_since(before) : 0;
		cr_assert_leq(used, caps[i], "%zu bytes of heap for a %zu-byte cache", used,
			      caps[i]);
		cr_assert_leq(stats(c).bytes, caps[i]);
		kv_cache_destroy(c);
	}
}

/* The cache's heap, block by block (kv_cache_heap_bytes), and its charges (stats.bytes)
 * stay within the capacity, and the charges cover the blocks. */
static void check_bound(struct kv_cache *c, size_t cap, uint64_t op)
{
	size_t real = kv_cache_heap_bytes(c), charged = stats(c).bytes;

	cr_assert_leq(real, cap, "op %llu: %zu bytes of blocks for %zu", (unsigned long long) op,
		      real, cap);
	cr_assert_leq(charged, cap, "op %llu: %zu bytes charged for %zu", (unsigned long long) op,
		      charged, cap);
	cr_assert_leq(real, charged, "op %llu: %zu bytes of blocks, %zu charged",
		      (unsigned long long) op, real, charged);
}

/* Fill far past the capacity with value sizes that change by phase (tiny, small, mixed,
 * large, tiny again) and accesses that make ghosts and bring keys back from them: a
 * working set re-read and re-put, one-time scans, keys put again soon after eviction.
 * KV_CACHE_BOUND_SEED, KV_CACHE_BOUND_ROUNDS (default 1). */
Test(kv_cache, all_its_heap_stays_within_capacity_under_varied_sizes_and_ghosts)
{
	const char *env = getenv("KV_CACHE_BOUND_SEED"), *renv = getenv("KV_CACHE_BOUND_ROUNDS");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : 0xcac4e5eedull;
	unsigned rounds = renv && *renv ? (unsigned) strtoul(renv, NULL, 0) : 1;
	const struct {
		size_t cap;
		unsigned shards;
	} cfg[] = { { 256u << 10, 1 }, { MIB, 4 }, { 64u << 10, 64 }, { KV_CACHE_MIN, 1 } };
	static const size_t max_len[] = { 4, 100, MAX_VALUE, 1000, 2 };

	cr_log_info("KV_CACHE_BOUND_SEED=%llu, %u rounds", (unsigned long long) seed, rounds);
	for (unsigned r = 0; r < rounds; r++)
		for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
			struct kv_cache *c = kv_cache_create(cfg[i].cap, cfg[i].shards);
			uint64_t op = 0, next = 0;

			cr_assert_not_null(c);
			for (size_t ph = 0; ph < sizeof(max_len) / sizeof(max_len[0]); ph++) {
				uint64_t ops = 4 * cfg[i].cap / (max_len[ph] / 2 + 90);

				for (uint64_t j = 0; j < ops; j++, op++) {
					uint64_t x = scramble(seed + op), k;
					size_t len;

					if (x % 4 == 0) /* the working set: read, put if gone */
						k = x / 4 % 64;
					else if (x % 4 == 1) /* back soon after eviction: ghosts */
						k = next > 100 ? next - 1 - x / 4 % 100 : next;
					else /* a scan: each key once */
						k = next++;
					len = 1 + k * 2654435761u % max_len[ph];
					if (!cached_intact(c, loc_of(1000000 * ph + k), len))
						put_value(c, loc_of(1000000 * ph + k), len);
					if (op % 16 == 0)
						check_bound(c, cfg[i].cap, op);
				}
				check_bound(c, cfg[i].cap, op);
			}
			cr_assert_gt(stats(c).evictions, 0);
			kv_cache_destroy(c);
			seed = scramble(seed);
		}
}

/* Thousands of tiny entries, then a few big ones evicting them: the hash table grows, then
 * shrinks back with the entries (rehashing each time), and every entry stays findable. */
Test(kv_cache, entries_stay_findable_while_the_table_grows_and_shrinks)
{
	const size_t cap = MIB, big = 100000;
	struct kv_cache *c = kv_cache_create(cap, 1);
	uint8_t *buf = malloc(big), *want = malloc(big);
	uint64_t tiny = 0, found = 0;
	size_t len;

	for (uint64_t k = 0; k < 10000; k++)
		put_value(c, loc_of(k), 1);
	for (uint64_t k = 0; k < 10000; k++)
		cr_assert(cached_intact(c, loc_of(k), 1));
	for (uint64_t k = 0; k < 40; k++) {
		value_of(loc_of(20000 + k), big, want);
		kv_cache_put(c, loc_of(20000 + k), want, big);
		cr_assert_eq(kv_cache_get(c, loc_of(20000 + k), buf, big, &len), 0);
		cr_assert_arr_eq(buf, want, big);
	}
	for (uint64_t k = 0; k < 10000; k++)
		tiny += cached_intact(c, loc_of(k), 1);
	for (uint64_t k = 0; k < 40; k++)
		found += kv_cache_get(c, loc_of(20000 + k), buf, big, &len) == 0;
	cr_assert_eq(tiny + found, stats(c).entries, "every entry is findable");
	cr_assert_lt(tiny, 100, "the big values evicted the tiny ones");
	free(buf);
	free(want);
	kv_cache_destroy(c);
}

Test(kv_cache, values_larger_than_an_eighth_of_a_shard_are_not_cached)
{
	struct kv_cache *c = kv_cache_create(8 * MAX_VALUE, 1); /* an eighth: MAX_VALUE */
	uint64_t empty = stats(c).bytes;			/* its tables and own block */
	size_t len;
	uint8_t buf[MAX_VALUE + 1] = { 0 };

	kv_cache_put(c, 1, buf, MAX_VALUE + 1);
	cr_assert_eq(kv_cache_get(c, 1, buf, sizeof(buf), &len), -ENOENT);
	cr_assert_eq(stats(c).inserts, 0);
	cr_assert_eq(stats(c).bytes, empty);
	put_value(c, loc_of(2), MAX_VALUE / 2);
	cr_assert(cached_intact(c, loc_of(2), MAX_VALUE / 2), "a sixteenth is cached");
	kv_cache_destroy(c);
}

Test(kv_cache, many_shards_split_the_capacity_exactly)
{
	struct kv_cache *c = kv_cache_create(10 * MIB + 5, 3); /* rounded up to 4 shards */

	cr_assert_eq(stats(c).capacity, 10 * MIB + 5);
	for (uint64_t k = 0; k < 1000; k++)
		put_value(c, loc_of(k), 500);
	for (uint64_t k = 0; k < 1000; k++)
		cr_assert(cached_intact(c, loc_of(k), 500));
	kv_cache_destroy(c);
}

/* The S3-FIFO scenario. A working set W of 40% of the capacity is read a few times; then
 * a scan of 10x the capacity streams through (miss, put), with one read of a W key every
 * 10 scan keys, round robin. Between two reads of a W key, all of W and 10 |W| scan keys
 * are touched: 4.4x the capacity, so LRU (and FIFO) would miss every W read during the
 * scan and keep none of W at the end. S3-FIFO keeps W in main: scan keys pass through
 * small (never read there) into the ghost. */
#define SCAN_VALUE 100u
#define SCAN_BASE  (1ull << 24)

static uint64_t scan_through(struct kv_cache *c, uint64_t first, uint64_t n, uint64_t w_keys,
			     uint64_t *w_hits)
{
	uint8_t buf[SCAN_VALUE];
	size_t len;
	uint64_t reads = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t loc = loc_of(first + i);

		cr_assert_eq(kv_cache_get(c, loc, buf, sizeof(buf), &len), -ENOENT);
		put_value(c, loc, SCAN_VALUE);
		if (w_hits && i % 10 == 9) {
			*w_hits += cached_intact(c, loc_of(reads % w_keys), SCAN_VALUE);
			reads++;
		}
	}
	return reads;
}

Test(kv_cache, a_working_set_survives_a_one_time_scan_of_ten_times_the_capacity)
{
	const size_t cap = 2 * MIB;
	struct kv_cache *c = kv_cache_create(cap, 1);
	uint64_t charge, w_keys, scan_keys, reads, w_hits = 0, kept = 0;

	charge = stats(c).bytes; /* the empty cache's tables */
	put_value(c, loc_of(0), SCAN_VALUE);
	charge = stats(c).bytes - charge; /* one entry's full charge */
	w_keys = cap * 4 / 10 / charge;
	scan_keys = 10 * cap / charge;
	cr_assert_gt((w_keys + 10 * w_keys) * charge, cap, "reuse distance beyond LRU's reach");
	for (int round = 0; round < 3; round++)
		for (uint64_t k = 0; k < w_keys; k++)
			if (!cached_intact(c, loc_of(k), SCAN_VALUE))
				put_value(c, loc_of(k), SCAN_VALUE);
	reads = scan_through(c, SCAN_BASE, scan_keys, w_keys, &w_hits);
	for (uint64_t k = 0; k < w_keys; k++)
		kept += cached_intact(c, loc_of(k), SCAN_VALUE);
	cr_log_info("W %llu keys, scan %llu keys; W reads during the scan: %llu of %llu hit "
		    "(LRU/FIFO: 0); W kept after: %llu (LRU/FIFO: 0)",
		    (unsigned long long) w_keys, (unsigned long long) scan_keys,
		    (unsigned long long) w_hits, (unsigned long long) reads,
		    (unsigned long long) kept);
	cr_assert_geq(w_hits * 10, reads * 9, "%llu of %llu", (unsigned long long) w_hits,
		      (unsigned long long) reads);
	cr_assert_geq(kept * 10, w_keys * 9, "%llu of %llu", (unsigned long long) kept,
		      (unsigned long long) w_keys);
	kv_cache_destroy(c);
}

/* Keys put once, evicted from small unread (into the ghost), and put again soon enter main
 * directly, where a scan cannot reach them; keys put once without that history are swept
 * out by the same scan. A thousand keys, so that the ghost's hash set is exercised. */
#define AGAIN 1000u

Test(kv_cache, keys_put_again_soon_after_eviction_go_to_main_and_survive_a_scan)
{
	const size_t cap = MIB;
	struct kv_cache *c = kv_cache_create(cap, 1);
	uint8_t buf[SCAN_VALUE];
	size_t len;
	uint64_t next = SCAN_BASE, kept = 0, kept_once = 0;

	for (uint64_t k = 0; k < AGAIN; k++) /* the oldest in small, never read: first out */
		put_value(c, loc_of(k), SCAN_VALUE);
	while (stats(c).evictions < AGAIN)
		put_value(c, loc_of(next++), SCAN_VALUE);
	for (uint64_t k = 0; k < AGAIN; k++) {
		cr_assert_eq(kv_cache_get(c, loc_of(k), buf, sizeof(buf), &len), -ENOENT);
		put_value(c, loc_of(k), SCAN_VALUE);
		put_value(c, loc_of(AGAIN + k), SCAN_VALUE); /* put once */
	}
	scan_through(c, next, 10 * cap / SCAN_VALUE, 0, NULL);
	for (uint64_t k = 0; k < AGAIN; k++) {
		kept += cached_intact(c, loc_of(k), SCAN_VALUE);
		kept_once += cached_intact(c, loc_of(AGAIN + k), SCAN_VALUE);
	}
	cr_assert_eq(kept, AGAIN, "the ghost sent them all to main");
	cr_assert_eq(kept_once, 0);
	kv_cache_destroy(c);
}

/* Main is a CLOCK: an entry with freq > 0 at its head loses one and goes round again. Old
 * (read twice) and young (read once) fill 94% of the shard and are promoted to main in
 * that order; new keys then push main back to its 90% share. CLOCK evicts young ones
 * and keeps every old one, although they are older; a plain FIFO main would do the
 * opposite. */
Test(kv_cache, main_evicts_the_less_read_entries_before_older_more_read_ones)
{
	const size_t cap = MIB;
	struct kv_cache *c = kv_cache_create(cap, 1);
	uint64_t charge, n, kept_old = 0, kept_young = 0;

	charge = stats(c).bytes; /* the empty cache's tables */
	put_value(c, loc_of(0), SCAN_VALUE);
	charge = stats(c).bytes - charge; /* one entry's full charge */
	n = cap * 47 / 100 / charge;	  /* old: [0, n), young: [n, 2n); 94% > main share */
	for (uint64_t k = 1; k < 2 * n; k++)
		put_value(c, loc_of(k), SCAN_VALUE);
	for (uint64_t k = 0; k < 3 * n; k++) /* old twice, young once */
		cr_assert(cached_intact(c, loc_of(k % (2 * n)), SCAN_VALUE));
	scan_through(c, SCAN_BASE, n / 2, 0, NULL);
	for (uint64_t k = 0; k < n; k++) {
		kept_old += cached_intact(c, loc_of(k), SCAN_VALUE);
		kept_young += cached_intact(c, loc_of(n + k), SCAN_VALUE);
	}
	cr_log_info("of %llu each: old kept %llu, young kept %llu", (unsigned long long) n,
		    (unsigned long long) kept_old, (unsigned long long) kept_young);
	cr_assert_eq(kept_old, n);
	cr_assert_lt(kept_young, n);
	kv_cache_destroy(c);
}

/* Four threads on overlapping locations, each get or put at random, for a second (and at
 * least MIN_OPS each: a thread that starts after the second, descheduled on a loaded
 * machine, did nothing, and hits and evictions could stay 0). A small cache with few
 * shards keeps evicting and contending. */
#define THREADS	    4
#define KEYS	    4096u
#define RUN_SECONDS 1
#define MIN_OPS	    16384 /* per thread, however late it starts: enough to evict and hit */

struct worker {
	struct kv_cache *c;
	uint64_t seed, hits, ops;
	struct timespec deadline;
};

static bool past(const struct timespec *deadline)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec ||
	       (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static size_t len_of(uint64_t loc)
{
	return 1 + scramble(loc ^ 0x5555) % 600;
}

static void one_op(struct worker *w, uint64_t r)
{
	uint64_t loc = loc_of((r >> 8) % KEYS);
	void *val;
	size_t len;

	if (r % 16 == 0 && kv_cache_get_alloc(w->c, loc, &val, &len) == 0) {
		uint8_t want[MAX_VALUE];

		value_of(loc, len_of(loc), want);
		cr_assert_eq(len, len_of(loc));
		cr_assert_arr_eq(val, want, len);
		free(val);
		w->hits++;
	} else if (r % 16 == 1) {
		put_value(w->c, loc, len_of(loc));
	} else if (cached_intact(w->c, loc, len_of(loc))) {
		w->hits++;
	} else {
		put_value(w->c, loc, len_of(loc));
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!past(&w->deadline) || w->ops < MIN_OPS)
		for (int i = 0; i < 64; i++, w->ops++) {
			w->seed = scramble(w->seed + 1);
			one_op(w, w->seed);
		}
	return NULL;
}

Test(kv_cache, four_threads_on_overlapping_locations_only_ever_read_what_was_put)
{
	struct kv_cache *c = kv_cache_create(512 * 1024, 4);
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct timespec deadline;
	uint64_t hits = 0, ops = 0;
	struct kv_cache_stats st;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += RUN_SECONDS;
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .c = c, .seed = (uint64_t) i + 1, .deadline = deadline };
		cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		hits += w[i].hits;
		ops += w[i].ops;
	}
	st = stats(c);
	cr_log_info("%llu ops, %llu hits, %llu evictions", (unsigned long long) ops,
		    (unsigned long long) hits, (unsigned long long) st.evictions);
	cr_assert_gt(hits, 0);
	cr_assert_gt(st.evictions, 0, "the test must exercise eviction");
	cr_assert_leq(st.bytes, st.capacity);
	cr_assert_eq(st.hits, hits);
	cr_assert_eq(st.inserts - st.evictions, st.entries);
	kv_cache_destroy(c);
}
