/* SPDX-License-Identifier: MIT */
/* kv_test.h - helpers for the store's suites: temporary stores, self-describing values
 * (a value names its key and write, so any value read can be checked on its own), a
 * reporter that keeps what the store said, and file helpers to damage a store. */
#ifndef AURA_KV_TEST_H
#define AURA_KV_TEST_H

#include <aurakv.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "test_util.h"

#define KV_SMALL_SEGMENT (1u << 20) /* rollovers (and so hints and GC) come quickly */

/* A fresh directory for a store (removed with kv_rm_tree). */
static inline char *kv_temp_dir(void)
{
	return test_temp_dir("aurakv");
}

static inline void kv_rm_tree(const char *dir)
{
	test_rm_tree(dir);
}

/*
 * A suite in which every test gets a fresh directory for a store in `dir`, removed after
 * the test, and `secs` seconds: KV_DIR_SUITE(kv_gc, 240);
 */
#define KV_DIR_SUITE(name, secs)                                                                   \
	static char *dir;                                                                          \
	static void dir_setup(void)                                                                \
	{                                                                                          \
		dir = kv_temp_dir();                                                               \
	}                                                                                          \
	static void dir_teardown(void)                                                             \
	{                                                                                          \
		kv_rm_tree(dir);                                                                   \
		free(dir);                                                                         \
	}                                                                                          \
	TestSuite(name, .init = dir_setup, .fini = dir_teardown, .timeout = secs)

/* Reports the store made, kept for assertions. */
struct kv_reports {
	int info, corruption, locked, io_error;
	char last[512];
	char last_locked[512];
};

static inline void kv_record_report(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	struct kv_reports *r = arg;

	if (kind == AURAKV_REPORT_CORRUPTION)
		r->corruption++;
	else if (kind == AURAKV_REPORT_LOCKED) {
		r->locked++;
		snprintf(r->last_locked, sizeof(r->last_locked), "%s", msg);
	} else if (kind == AURAKV_REPORT_IO_ERROR)
		r->io_error++;
	else
		r->info++;
	snprintf(r->last, sizeof(r->last), "%s", msg);
}

/* Options for tests: small segments, reports recorded (rs may be NULL). */
static inline aurakv_options_t kv_opts(struct kv_reports *rs)
{
	aurakv_options_t o;

	aurakv_options_init(&o);
	o.segment_size = KV_SMALL_SEGMENT;
	if (rs) {
		o.reporter = kv_record_report;
		o.reporter_arg = rs;
	}
	return o;
}

static inline aurakv_t *kv_open_ok(const char *dir, const aurakv_options_t *o)
{
	aurakv_t *db = NULL;
	int rc = aurakv_open(dir, o, &db);

	cr_assert_eq(rc, 0, "open %s: %s", dir, aurakv_strerror(rc));
	return db;
}

/* Key i as text ("k00000042"): ordered like i. */
static inline size_t kv_key(char *buf, uint64_t i)
{
	return (size_t) snprintf(buf, 32, "k%08llu", (unsigned long long) i);
}

/* The value of write `w` of key `k`: `len` bytes; the first 16 hold (k, w). */
static inline void kv_value(uint8_t *v, size_t len, uint64_t k, uint64_t w)
{
	uint64_t x = (k * 0x9E3779B97F4A7C15ull) ^ (w * 0xC2B2AE3D27D4EB4Full) ^ 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = (uint8_t) x;
	}
	for (size_t i = 0; i < 8 && i < len; i++)
		v[i] = (uint8_t) (k >> (8 * i));
	for (size_t i = 0; i < 8 && 8 + i < len; i++)
		v[8 + i] = (uint8_t) (w >> (8 * i));
}

/* The length of write w of key k: 16 .. 16 + spread - 1. */
static inline size_t kv_value_len(uint64_t k, uint64_t w, size_t spread)
{
	return 16 + (size_t) ((k * 31 + w * 17) % spread);
}

/* Does v (len bytes) hold exactly write w of key k? */
static inline bool kv_value_is(const void *v, size_t len, uint64_t k, uint64_t w, size_t spread)
{
	uint8_t buf[4096];

	if (len != kv_value_len(k, w, spread) || len > sizeof(buf))
		return false;
	kv_value(buf, len, k, w);
	return memcmp(buf, v, len) == 0;
}

/* Keys 0, step, 2 step, ... below n each read back as write w (values of `spread`). */
static inline void kv_check_keys(aurakv_t *db, uint64_t n, uint64_t step, uint64_t w, size_t spread)
{
	char k[32];

	for (uint64_t i = 0; i < n; i += step) {
		void *v;
		size_t len;
		int rc = aurakv_get(db, k, kv_key(k, i), &v, &len);

		cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long) i, aurakv_strerror(rc));
		cr_assert(kv_value_is(v, len, i, w, spread), "key %llu: wrong value",
			  (unsigned long long) i);
		aurakv_free(v);
	}
}

/* The write number a value of key k claims (its bytes 8..16), or UINT64_MAX. */
static inline uint64_t kv_value_write(const void *v, size_t len, uint64_t k)
{
	const uint8_t *p = v;
	uint64_t kk = 0, w = 0;

	if (len < 16)
		return UINT64_MAX;
	for (int i = 7; i >= 0; i--) {
		kk = (kk << 8) | p[i];
		w = (w << 8) | p[8 + i];
	}
	return kk == k ? w : UINT64_MAX;
}

/* Bytes of every file under dir (allocated blocks). */
static uint64_t kv_du_sum;
static inline int kv_du_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void) path;
	(void) f;
	if (flag == FTW_F)
		kv_du_sum += (uint64_t) st->st_blocks * 512;
	return 0;
}

static inline uint64_t kv_disk_usage(const char *dir)
{
	kv_du_sum = 0;
	nftw(dir, kv_du_one, 16, FTW_PHYS);
	return kv_du_sum;
}

/* Flip one byte of a file at `off`. */
static inline void kv_flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(pread(fd, &b, 1, (off_t) off), 1);
	b ^= 0x5a;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t) off), 1);
	fsync(fd);
	close(fd);
}

/* The path of segment `seg`'s file in a store (docs/wal_format.md names). */
static inline void kv_segment_path(char *out, size_t cap, const char *dir, uint64_t seg)
{
	snprintf(out, cap, "%s/wal/%016llx.seg", dir, (unsigned long long) seg);
}

static inline void kv_hint_file(char *out, size_t cap, const char *dir, uint64_t seg)
{
	snprintf(out, cap, "%s/hints/%016llx.hint", dir, (unsigned long long) seg);
}

#endif
