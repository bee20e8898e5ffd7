/* SPDX-License-Identifier: MIT */
/*
 * Injected faults at each write or sync of the store, in turn: EIO loses nothing, ENOSPC
 * stores exactly what was acknowledged; and a durable no-op (a delete of a missing key,
 * an empty batch) makes the earlier writes durable.
 */
#include <criterion/criterion.h>

#include "kv_db.h"
#include "kv_index_internal.h"
#include "fault_engine.h"
#include "kv_faults.h"
#include "kv_test.h"
#include "wal_internal_test.h"

#define KV_NEXTRA 8 /* SYNC puts after the open */

/*
 * The k-th write or sync fails with -err, for every k until an open, KV_NEXTRA SYNC puts
 * and a close no longer make that many: the open fails with -err or succeeds; nothing is
 * taken for corruption. EIO: a put is acknowledged or fails with -EIO (the store fails,
 * and the rest with it), and the store opened again has every key's last acknowledged
 * write. ENOSPC (one failure, then space again): a put fails with -ENOSPC or is
 * acknowledged, later ones work, and the store opened again agrees with every put's
 * result - none told -ENOSPC is there. (Background hint writes, if any, are among those
 * failed in turn.)
 */
static void kv_fault_at_each_write_or_sync(int err)
{
	aurakv_options_t o;
	aurakv_t *db;
	int open_failed = 0, put_failed = 0;
	/* Key i's last acknowledged write; 0 once a later put of it failed with EIO (which
	 * does not say whether its write reached the device). */
	uint64_t last[KV_NEXTRA], k;

	for (uint64_t i = 0; i < KV_NEXTRA; i++)
		last[i] = 1;
	make_nkeys_store();
	for (k = 0;; k++) {
		auraio_engine_t *e = test_faulty_engine();
		struct kv_reports rs = { 0 };
		auraio_stats_t st;
		int rc;

		test_fault_error(e, AURAIO_FAULT_OP_WRITE | AURAIO_FAULT_OP_FSYNC, k, 1, err);
		rc = open_faulty(e, &rs, &db);
		cr_assert(rc == 0 || rc == -err, "write %llu failed: open says %s",
			  (unsigned long long) k, aurakv_strerror(rc));
		if (rc == 0) {
			/* Each round rewrites the same keys with a new write: 2 + k. */
			for (uint64_t i = 0; i < KV_NEXTRA; i++) {
				rc = put_w(db, i, 2 + k, AURAKV_SYNC);
				if (rc == 0) {
					last[i] = 2 + k;
					continue;
				}
				cr_assert_eq(rc, -err, "write %llu failed: put %llu says %s",
					     (unsigned long long) k, (unsigned long long) i,
					     aurakv_strerror(rc));
				put_failed++;
				if (err == EIO) {
					last[i] = 0;
					break;
				}
			}
			rc = aurakv_close(db);
			cr_assert(rc == 0 || rc == -err, "write %llu failed: close says %s",
				  (unsigned long long) k, aurakv_strerror(rc));
		} else {
			open_failed++;
		}
		cr_assert_eq(rs.corruption, 0, "write %llu failed: reported as corruption: %s",
			     (unsigned long long) k, rs.last);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		auraio_destroy(e);
		/* Opened again: every key holds its last acknowledged write. */
		o = kv_opts(NULL);
		db = kv_open_ok(dir, &o);
		for (uint64_t i = 0; i < KV_NEXTRA; i++)
			if (last[i])
				expect(db, i, last[i]);
		for (uint64_t i = KV_NEXTRA; i < NKEYS; i += 7)
			expect(db, i, 1);
		cr_assert_eq(aurakv_close(db), 0);
		if (st.faults_injected == 0)
			break; /* the round made fewer than k + 1 writes and syncs */
	}
	cr_log_info("%s: %llu writes and syncs failed in turn: %d opens and %d puts failed",
		    strerror(err), (unsigned long long) k, open_failed, put_failed);
	cr_assert_gt(open_failed, 0);
	cr_assert_gt(put_failed, 0);
}

Test(kv_faults, an_eio_at_each_write_or_sync_after_an_open_loses_nothing)
{
	kv_fault_at_each_write_or_sync(EIO);
}

Test(kv_faults, an_enospc_at_each_write_or_sync_stores_exactly_what_was_acknowledged)
{
	kv_fault_at_each_write_or_sync(ENOSPC);
}

/* A put is buffered, its write then fails: only a call that makes earlier writes durable
 * learns of it. `commit` is such a call, with AURAKV_SYNC, that stores nothing itself. */
static void durable_noop_syncs_earlier_writes(int (*commit)(aurakv_t *db))
{
	auraio_engine_t *e = test_faulty_engine();
	aurakv_t *db = open_on(e);

	log_idle(db);
	test_fault_error(e, AURAIO_FAULT_OP_WRITE | AURAIO_FAULT_OP_FSYNC, 0, 0, EIO);
	cr_assert_eq(put_w(db, 1, 1, 0), 0);
	cr_assert_eq(commit(db), -EIO, "an AURAKV_SYNC call returned 0 with the put not durable");
	auraio_fault_clear(e);
	aurakv_close(db);
	auraio_destroy(e);
}

static int delete_missing_sync(aurakv_t *db)
{
	return aurakv_delete(db, "never-written", 13, AURAKV_SYNC);
}

static int empty_batch_sync(aurakv_t *db)
{
	aurakv_batch_t *b = aurakv_batch_new();
	int rc = aurakv_write(db, b, AURAKV_SYNC);

	aurakv_batch_free(b);
	return rc;
}

Test(kv_faults, a_durable_delete_of_a_missing_key_makes_earlier_writes_durable)
{
	durable_noop_syncs_earlier_writes(delete_missing_sync);
}

Test(kv_faults, a_durable_empty_batch_makes_earlier_writes_durable)
{
	durable_noop_syncs_earlier_writes(empty_batch_sync);
}
