/* SPDX-License-Identifier: MIT */
/*
 * kv_faults.h - the kv_faults suite (tests/kv/test_faults*.c: a fresh store directory in
 * `dir` per test, 120 s) and what its files share: stores opened on a faulty engine with
 * no background I/O, keyed writes (put_w) and their checks (expect), and a store of
 * NKEYS keys reopened and sampled.
 */
#ifndef AURA_KV_FAULTS_H
#define AURA_KV_FAULTS_H

#include <criterion/criterion.h>

#include "kv_db.h"
#include "fault_engine.h"
#include "kv_test.h"
#include "wal_internal_test.h"

KV_DIR_SUITE(kv_faults, 120);

#define N      200
#define SPREAD 300

/* The log's preparer idle (wal_internal_test.h): faults for any file hit the store. */
static inline void log_idle(aurakv_t *db)
{
	wal_preparer_idle(db->db->wal);
}

static inline aurakv_t *open_on_rs(auraio_engine_t *e, struct kv_reports *rs)
{
	aurakv_options_t o = kv_opts(rs);

	o.engine = e;
	o.background_gc = false; /* no background I/O for a fault to hit instead */
	o.write_hints = false;
	o.cache_size = 0; /* every get reads the log */
	return kv_open_ok(dir, &o);
}

static inline aurakv_t *open_on(auraio_engine_t *e)
{
	return open_on_rs(e, NULL);
}

static inline int put_w(aurakv_t *db, uint64_t k, uint64_t w, unsigned flags)
{
	uint8_t v[SPREAD + 16];
	size_t len = kv_value_len(k, w, SPREAD);
	char key[32];

	kv_value(v, len, k, w);
	return aurakv_put(db, key, kv_key(key, k), v, len, flags);
}

/* Key k holds write w (w == 0: k is absent). */
static inline void expect(aurakv_t *db, uint64_t k, uint64_t w)
{
	char key[32];
	void *v = NULL;
	size_t len = 0;
	int rc = aurakv_get(db, key, kv_key(key, k), &v, &len);

	if (w == 0) {
		cr_assert_eq(rc, AURAKV_ENOTFOUND, "key %llu: %s (write %llu)",
			     (unsigned long long) k, aurakv_strerror(rc),
			     rc == 0 ? (unsigned long long) kv_value_write(v, len, k) : 0ull);
		return;
	}
	cr_assert_eq(rc, 0, "key %llu: %s", (unsigned long long) k, aurakv_strerror(rc));
	cr_assert(kv_value_is(v, len, k, w, SPREAD), "key %llu: not write %llu (write %llu)",
		  (unsigned long long) k, (unsigned long long) w,
		  (unsigned long long) kv_value_write(v, len, k));
	aurakv_free(v);
}

#define NKEYS 12000

/* A store opened again (healthy engine): every 7th key holds write 1, and key NKEYS
 * (never written) is absent. */
static inline void expect_sample_after_reopen(void)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);

	for (uint64_t k = 0; k < NKEYS; k += 7)
		expect(db, k, 1);
	expect(db, NKEYS, 0);
	cr_assert_eq(aurakv_close(db), 0);
}

/* A closed store of NKEYS keys holding write 1: several 1 MiB segments, with hints. */
static inline void make_nkeys_store(void)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);

	for (uint64_t i = 0; i < NKEYS; i++)
		cr_assert_eq(put_w(db, i, 1, i % 1000 == 999 ? AURAKV_SYNC : 0), 0);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Open the store on engine e (whose fault rule is set), reports to rs, no background GC:
 * aurakv_open's result, the store in *db. */
static inline int open_faulty(auraio_engine_t *e, struct kv_reports *rs, aurakv_t **db)
{
	aurakv_options_t o = kv_opts(rs);

	o.engine = e;
	o.background_gc = false;
	*db = NULL;
	return aurakv_open(dir, &o, db);
}

static inline uint64_t first_segment(aurakv_t *db)
{
	aurakv_segment_stats_t s;
	size_t n = 0;

	cr_assert_eq(aurakv_get_segment_stats(db, &s, 1, &n), 0);
	cr_assert_gt(n, 0);
	return s.number;
}

#endif
