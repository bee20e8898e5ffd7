/* SPDX-License-Identifier: MIT */
/*
 * Injected faults under the store's GC: a read error, lack of space, a write error or an
 * index that cannot take the moved entries fails that collection (or, for a write error,
 * the store) and keeps its victim, every value readable, also after a reopen.
 */
#include <criterion/criterion.h>

#include "kv_db.h"
#include "kv_index_internal.h"
#include "fault_engine.h"
#include "kv_faults.h"
#include "kv_test.h"
#include "wal_internal_test.h"

/* ---- faults while GC copies a segment forward ---- */

#define GC_KEYS 16000

/* The write key k holds after fill_for_gc(). */
static uint64_t gc_write(uint64_t k)
{
	return k % 2 ? 2 : 1;
}

/* Keys 0..GC_KEYS-1 written once, then the odd ones again, across several 1 MiB
 * segments: every segment of the first pass is about half live, so GC has something to
 * copy from each victim (none is released without writing). Returns the number of
 * segments. */
static size_t fill_for_gc(aurakv_t *db)
{
	size_t n = 0;

	for (uint64_t k = 0; k < GC_KEYS; k++)
		cr_assert_eq(put_w(db, k, 1, k % 500 == 499 ? AURAKV_SYNC : 0), 0);
	for (uint64_t k = 1; k < GC_KEYS; k += 2)
		cr_assert_eq(put_w(db, k, 2, k % 501 == 0 ? AURAKV_SYNC : 0), 0);
	cr_assert_eq(aurakv_sync(db), 0);
	cr_assert_eq(aurakv_get_segment_stats(db, NULL, 0, &n), 0);
	cr_assert_geq(n, 3, "the fill spans several segments (%zu)", n);
	return n;
}

static size_t segment_count(aurakv_t *db)
{
	size_t n = 0;

	cr_assert_eq(aurakv_get_segment_stats(db, NULL, 0, &n), 0);
	return n;
}

static void expect_gc_fill(aurakv_t *db)
{
	for (uint64_t k = 0; k < GC_KEYS; k++)
		expect(db, k, gc_write(k));
	expect(db, GC_KEYS, 0);
}

static void expect_gc_fill_after_reopen(void)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);

	expect_gc_fill(db);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Faults (`ops` fail with -err, `count` of them, 0 = until cleared) while GC collects:
 * the collection fails with that error and keeps its victim, every key keeps its value
 * meanwhile (`during` checks more, the fault still set), and once the fault is gone the
 * next collection frees segments and a store opened again has every value. */
static void gc_fault_then_recovery(unsigned ops, uint64_t count, int err,
				   void (*during)(aurakv_t *db))
{
	auraio_engine_t *e = test_faulty_engine();
	aurakv_t *db = open_on(e);
	size_t before = fill_for_gc(db);
	uint64_t first = first_segment(db);

	log_idle(db);
	test_fault_error(e, ops, 0, count, err);
	cr_assert_eq(aurakv_compact(db), -err);
	cr_assert_eq(first_segment(db), first, "the victim was not released");
	cr_assert_geq(segment_count(db), before);
	expect_gc_fill(db);
	if (during)
		during(db);
	auraio_fault_clear(e);
	expect_gc_fill(db);
	cr_assert_eq(aurakv_compact(db), 0);
	cr_assert_lt(segment_count(db), before, "the next collection freed segments");
	expect_gc_fill(db);
	cr_assert_eq(aurakv_close(db), 0);
	auraio_destroy(e);
	expect_gc_fill_after_reopen();
}

Test(kv_faults, a_gc_read_error_fails_that_collection_and_keeps_its_segment)
{
	gc_fault_then_recovery(AURAIO_FAULT_OP_READ, 1, EIO, NULL);
}

static void still_out_of_space(aurakv_t *db)
{
	aurakv_stats_t st;

	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_gt(st.gc_bytes_copied, 0, "GC had copied records when space ran out");
	cr_assert_eq(put_w(db, 0, 3, AURAKV_SYNC), -ENOSPC);
}

/* Out of space while GC copies: the index still names the victim's records, so every
 * get finds its value; once space returns the copies are written and GC completes. */
Test(kv_faults, gc_out_of_space_keeps_its_victim_and_every_value_readable)
{
	gc_fault_then_recovery(AURAIO_FAULT_OP_WRITE, 0, ENOSPC, still_out_of_space);
}

/* An I/O error on GC's writes fails the store (fail-stop, as any write's would); the
 * victim is not released, so a store opened again has every value. */
Test(kv_faults, a_gc_write_error_fails_the_store_and_loses_nothing)
{
	auraio_engine_t *e = test_faulty_engine();
	aurakv_t *db = open_on(e);
	uint64_t first;
	auraio_fault_t f = {
		.ops = AURAIO_FAULT_OP_WRITE, .count = 1, .kind = AURAIO_FAULT_ERROR, .error = EIO
	};

	fill_for_gc(db);
	first = first_segment(db);
	log_idle(db);
	/* The copies' first write, into the active segment: if they fill it, the
	 * preparer's writes for the next one must not take the fault instead. */
	f.fd = wal_active_fd(db->db->wal);
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurakv_compact(db), -EIO);
	auraio_fault_clear(e);
	cr_assert_eq(first_segment(db), first, "the victim was not released");
	cr_assert_eq(put_w(db, 0, 3, AURAKV_SYNC), -EIO, "the store has failed");
	for (uint64_t k = 0; k < GC_KEYS; k += 13)
		expect(db, k, gc_write(k)); /* reads still work */
	cr_assert_eq(aurakv_close(db), -EIO);
	auraio_destroy(e);
	expect_gc_fill_after_reopen();
}

/* The index's node pool run dry: every free node it holds is set aside and the system
 * refuses it more (pool.fail, the index's test hook), so any change of the index that
 * needs a node fails with -ENOMEM; index_refill() gives the nodes back. */
struct pool_stash {
	struct kvix_node *free;
};

static void index_run_dry(struct kv_index *ix, struct pool_stash *s)
{
	pthread_mutex_lock(&ix->wlock);
	ix->pool.fail = true;
	(void) kvix_pool_reserve(&ix->pool, SIZE_MAX); /* the rest of its slab, carved */
	s->free = ix->pool.free;
	ix->pool.free = NULL;
	ix->pool.nfree = 0;
	pthread_mutex_unlock(&ix->wlock);
}

static void index_refill(struct kv_index *ix, struct pool_stash *s)
{
	pthread_mutex_lock(&ix->wlock);
	while (s->free) {
		struct kvix_node *n = s->free;

		s->free = n->link;
		kvix_pool_push(&ix->pool, n);
	}
	ix->pool.fail = false;
	pthread_mutex_unlock(&ix->wlock);
}

/* Keys GC_KEYS + 1 .. + 64 put and deleted first: live tombstones in the oldest segment,
 * which GC drops from the index instead of copying them. */
static void tombstones_first(aurakv_t *db)
{
	for (uint64_t k = GC_KEYS + 1; k <= GC_KEYS + 64; k++)
		cr_assert_eq(put_w(db, k, 1, 0), 0);
	for (uint64_t k = GC_KEYS + 1; k <= GC_KEYS + 64; k++) {
		char key[32];

		cr_assert_eq(aurakv_delete(db, key, kv_key(key, k), 0), 0);
	}
}

/*
 * The index cannot take GC's changes (out of memory: switching a key to its copy when its
 * entry must move; dropping a tombstone from the oldest segment takes no memory, as a
 * removal takes no node). GC ignored the error: the keys stayed on the victim, whose
 * release then found live bytes in it and reported that as corruption, and the segment
 * was left out of GC until reopened. Out of memory is not corruption: the collection
 * fails with -ENOMEM, the victim is kept (every value still reads) and collected once
 * memory is back, nothing reported.
 */
Test(kv_faults, gc_the_index_cannot_take_fails_with_enomem_and_keeps_its_victim)
{
	struct kv_reports rs = { 0 };
	aurakv_options_t o = kv_opts(&rs);
	struct pool_stash stash = { 0 };
	size_t before, kept;
	uint64_t first;
	aurakv_t *db;
	int rc;

	o.background_gc = false;
	o.write_hints = false;
	db = kv_open_ok(dir, &o);
	tombstones_first(db);
	before = fill_for_gc(db);
	first = first_segment(db);
	index_run_dry(db->db->ix, &stash);
	rc = aurakv_compact(db);
	cr_assert_eq(rc, -ENOMEM, "compact: %s", aurakv_strerror(rc));
	cr_assert_eq(rs.corruption, 0, "out of memory reported as corruption: %s", rs.last);
	kept = segment_count(db);
	expect_gc_fill(db);
	index_refill(db->db->ix, &stash);
	cr_assert_eq(aurakv_compact(db), 0, "collected once memory is back");
	cr_assert_eq(rs.corruption, 0, "%s", rs.last);
	cr_assert_lt(segment_count(db), kept, "the victim kept, collected now");
	cr_assert_lt(segment_count(db), before, "the next collection freed segments");
	cr_assert_neq(first_segment(db), first);
	expect_gc_fill(db);
	for (uint64_t k = GC_KEYS + 1; k <= GC_KEYS + 64; k++)
		expect(db, k, 0);
	cr_assert_eq(aurakv_close(db), 0);
	expect_gc_fill_after_reopen();
}
