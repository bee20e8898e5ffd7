/* SPDX-License-Identifier: MIT */
/*
 * kv_fuzz.h - what the store's randomized suites (kv/test_fault_fuzz.c,
 * kv/test_fault_mt_fuzz.c, kv/test_corrupt_fuzz.c) share: their random stream, the
 * lengths of their self-describing values (kv_test.h) and the check of a value read, a
 * reporter safe to call from the store's threads, and the menu of fault rules.
 *
 * Nothing here calls cr_assert: the multi-threaded fuzz calls these from its workers,
 * where an assertion cannot end the test (it records the failure for the main thread).
 */
#ifndef AURA_KV_FUZZ_H
#define AURA_KV_FUZZ_H

#include <pthread.h>

#include "kv_test.h"

/* xorshift64*: the next number of stream *s (a seed never 0). */
static inline uint64_t kv_fuzz_rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* A number below n drawn from stream *s (0 for n 0, drawing nothing). */
static inline uint64_t kv_fuzz_below(uint64_t *s, uint64_t n)
{
	return n ? kv_fuzz_rnd(s) % n : 0;
}

/*
 * The length of write w of key k: one in `one_in` is large, `big` + 0 .. big_spread - 1
 * bytes (enough of them roll segments over, so that they are sealed, hinted and
 * collected during a round), the others 16 .. 615 bytes.
 */
static inline size_t kv_fuzz_value_len(uint64_t k, uint64_t w, unsigned one_in, size_t big,
				       size_t big_spread)
{
	uint64_t h = (k * 0x9E3779B97F4A7C15ull) ^ (w * 0xC2B2AE3D27D4EB4Full);

	h ^= h >> 29;
	if (h % one_in == 0)
		return big + (size_t) (h >> 8) % big_spread;
	return 16 + (size_t) (h >> 8) % 600;
}

/* Is v (len bytes) exactly write w of key k, `want` bytes long? False as well if no
 * memory was left to compare it with (the caller's check then fails, as it should). */
static inline bool kv_fuzz_value_ok(const void *v, size_t len, uint64_t k, uint64_t w, size_t want)
{
	uint8_t *buf;
	bool ok;

	if (len != want)
		return false;
	buf = malloc(want);
	if (!buf)
		return false;
	kv_value(buf, want, k, w);
	ok = memcmp(buf, v, want) == 0;
	free(buf);
	return ok;
}

/* kv_record_report under a lock: the store reports from its background thread and the
 * log's preparer too, at once when both meet a fault. The counts are read after the
 * store is closed (its threads joined). */
static pthread_mutex_t kv_fuzz_report_mu = PTHREAD_MUTEX_INITIALIZER;

static inline void kv_fuzz_report(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	pthread_mutex_lock(&kv_fuzz_report_mu);
	kv_record_report(kind, msg, arg);
	pthread_mutex_unlock(&kv_fuzz_report_mu);
}

/* ONE fault rule for a round, and what a call that meets it may return. */
struct kv_fuzz_fault {
	auraio_fault_t rule;
	int err;	  /* the error the rule injects */
	bool enospc_only; /* the rule fails writes or syncs (only) with ENOSPC */
};

/*
 * A random rule from the menu: EIO, ENOSPC, short or torn I/O; on writes, fsyncs, reads
 * or all; after 0-23 operations it meets, for 1-3 of them or (0) until cleared. Draws,
 * in this order, the menu entry, skip, count and keep: seeds replay their rounds.
 */
static inline struct kv_fuzz_fault kv_fuzz_pick_fault(uint64_t *rng)
{
	static const struct {
		unsigned ops;
		auraio_fault_kind_t kind;
		int err;
	} menu[] = {
		{ AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_ERROR, EIO },
		{ AURAIO_FAULT_OP_FSYNC, AURAIO_FAULT_ERROR, EIO },
		{ AURAIO_FAULT_OP_READ, AURAIO_FAULT_ERROR, EIO },
		{ AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_ERROR, ENOSPC },
		{ AURAIO_FAULT_OP_WRITE | AURAIO_FAULT_OP_FSYNC, AURAIO_FAULT_ERROR, ENOSPC },
		{ AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_SHORT, EIO },
		{ AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_TEAR, EIO },
		{ 0, AURAIO_FAULT_ERROR, EIO },
		{ AURAIO_FAULT_OP_READ, AURAIO_FAULT_SHORT, EIO },
	};
	int m = (int) kv_fuzz_below(rng, sizeof(menu) / sizeof(menu[0]));
	struct kv_fuzz_fault f = { .err = menu[m].err };

	f.rule.ops = menu[m].ops;
	f.rule.fd = -1;
	f.rule.skip = kv_fuzz_below(rng, 24);
	f.rule.count = kv_fuzz_below(rng, 4); /* 0: until cleared */
	f.rule.kind = menu[m].kind;
	f.rule.error = menu[m].err;
	/* Whole sectors: a short transfer on an O_DIRECT file (the log's) is; the engine
	 * reports `keep` whatever the kernel did with an unaligned cut. */
	f.rule.keep = 512 * (size_t) kv_fuzz_below(rng, 18);
	/* A read of 0 bytes is the end of the file, never a short transfer mid-file. */
	if (menu[m].kind == AURAIO_FAULT_SHORT && menu[m].ops == AURAIO_FAULT_OP_READ)
		f.rule.keep += 512;
	f.enospc_only = menu[m].err == ENOSPC && menu[m].kind == AURAIO_FAULT_ERROR;
	return f;
}

static inline const char *kv_fuzz_kind_name(auraio_fault_kind_t k)
{
	return k == AURAIO_FAULT_ERROR ? "error" : k == AURAIO_FAULT_SHORT ? "short" : "tear";
}

/* The start of a fuzz's closing line on stderr: "name: 40 rounds (seeds 1..40), ". */
static inline void kv_fuzz_summary(const char *name, uint64_t rounds, uint64_t seed0)
{
	fprintf(stderr, "%s: %llu rounds (seeds %llu..%llu), ", name, (unsigned long long) rounds,
		(unsigned long long) seed0, (unsigned long long) (seed0 + rounds - 1));
}

/* The number of key `key` (klen bytes) as kv_key() wrote it, or UINT64_MAX. */
static inline uint64_t kv_fuzz_key_number(const void *key, size_t klen)
{
	char kb[32];

	if (klen != 9 || ((const char *) key)[0] != 'k')
		return UINT64_MAX;
	memcpy(kb, key, klen);
	kb[klen] = 0;
	return strtoull(kb + 1, NULL, 10);
}

#endif
