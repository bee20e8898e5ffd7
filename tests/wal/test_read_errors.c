/* SPDX-License-Identifier: MIT */
/*
 * Read errors are errors: an EIO while opening (recovery), reading a record or iterating
 * is returned as such - never taken for the end of the log (which would truncate it), a
 * torn tail, or corruption - and a failed open leaves the log as it was. Likewise an EIO
 * or ENOSPC on any write or sync of an open, of the appends after it, or of the close,
 * and a torn write there.
 */
#include "wal_test.h"

WAL_DIR_SUITE(wal_read_errors);

#define NREC 2500
#define RLEN 1000 /* ~2.5 MB: three 1 MiB segments */

static aurawal_loc_t locs[NREC];
static uint64_t seqs[NREC];

static void make_log(void)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);

	for (int i = 0; i < NREC; i++)
		seqs[i] =
		    append_i(log, (uint64_t) i, RLEN, i % 50 == 49 ? AURAWAL_DURABLE : 0, &locs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_gt(locs[NREC - 1].segment, 2, "the log spans three segments");
}

/* Iterate the whole log: 1 = every record 0..NREC-1 in order, else the error. */
static int iterate(aurawal_t *log)
{
	aurawal_iter_t *it;
	const void *p;
	size_t len;
	int n = 0, rc = aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it);

	if (rc)
		return rc;
	while ((rc = aurawal_iter_next(it, NULL, NULL, &p, &len)) == 1) {
		cr_assert_lt(n, NREC);
		cr_assert(payload_check(p, len, (uint64_t) n), "record %d", n);
		n++;
	}
	aurawal_iter_close(it);
	if (rc)
		return rc;
	cr_assert_eq(n, NREC, "iteration ended after %d records without an error", n);
	return 1;
}

static void expect_intact(void)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log = wal_open_ok(dir, &o);

	cr_assert_eq(iterate(log), 1);
	cr_assert_eq(rs.corruption + rs.torn + rs.dropped, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_close(log), 0);
}

/* The k-th read of an open fails, for every k until an open no longer reads that much:
 * the open fails with -EIO (or does not need the read and succeeds with every record),
 * says nothing of damage, and the log is intact afterwards. Returns the reads counted. */
static uint64_t eio_at_each_read_of_an_open(aurawal_recovery_t mode, bool scan_sealed)
{
	uint64_t k;
	int failed = 0;

	for (k = 0;; k++) {
		auraio_engine_t *e = test_faulty_engine();
		struct reports rs = { 0 };
		aurawal_options_t o = wal_opts(&rs);
		aurawal_t *log = NULL;
		auraio_stats_t st;
		int rc;

		o.engine = e;
		o.recovery = mode;
		o.scan_sealed = scan_sealed;
		test_fault_error(e, AURAIO_FAULT_OP_READ, k, 1, EIO);
		rc = aurawal_open(dir, &o, &log);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		cr_assert(rc == 0 || rc == -EIO, "mode %d: read %llu failed: open says %s", mode,
			  (unsigned long long) k, aurawal_strerror(rc));
		cr_assert_eq(rs.corruption + rs.torn + rs.dropped, 0,
			     "mode %d: read %llu failed: reported as damage: %s", mode,
			     (unsigned long long) k, rs.reason);
		if (rc == 0) {
			auraio_fault_clear(e);
			cr_assert_eq(iterate(log), 1);
			cr_assert_eq(aurawal_close(log), 0);
		} else {
			failed++;
		}
		auraio_destroy(e);
		expect_intact();
		if (st.faults_injected == 0)
			break; /* the open made fewer than k + 1 reads */
	}
	cr_assert_gt(failed, 0);
	return k;
}

Test(wal_read_errors, an_eio_at_each_read_of_an_open_fails_it_and_truncates_nothing, .timeout = 240)
{
	make_log();
	for (int mode = AURAWAL_RECOVER_STRICT; mode <= AURAWAL_RECOVER_POINT_IN_TIME; mode++)
		for (int scan = 0; scan <= 1; scan++)
			cr_log_info("recovery mode %d, scan_sealed %d: an open made %llu reads",
				    mode, scan,
				    (unsigned long long) eio_at_each_read_of_an_open(
					(aurawal_recovery_t) mode, scan));
}

Test(wal_read_errors, an_eio_while_reading_or_iterating_is_returned_as_eio)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	uint8_t buf[RLEN];
	size_t len;
	int rc, n = 0;

	make_log();
	o.engine = e;
	log = wal_open_ok(dir, &o);
	test_fault_error(e, AURAIO_FAULT_OP_READ, 0, 1, EIO);
	cr_assert_eq(aurawal_read(log, locs[10], buf, sizeof(buf), &len, NULL), -EIO);
	read_check(log, locs[10], 10, seqs[10]);
	for (uint64_t k = 0; k < 4; k++) {
		test_fault_error(e, AURAIO_FAULT_OP_READ, k, 1, EIO);
		rc = iterate(log);
		cr_assert(rc == -EIO || rc == 1, "iteration with read %llu failing: %s",
			  (unsigned long long) k, aurawal_strerror(rc));
		n += rc == -EIO;
	}
	cr_assert_gt(n, 0, "no iteration met its failed read");
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	expect_intact();
}

static void read_cb(void *arg, int status, size_t len, uint64_t seq)
{
	int *out = arg;

	(void) len;
	(void) seq;
	*out = status;
}

/* A read may transfer less than asked (a short count, as the kernel may give): that is
 * no damage. The rest is read, and the record comes back intact - not AURAWAL_ECORRUPT. */
Test(wal_read_errors, a_short_read_is_completed_not_taken_for_corruption)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_READ,
			     .fd = -1,
			     .count = 1,
			     .kind = AURAIO_FAULT_SHORT,
			     .keep = 4096 };
	uint8_t *buf = malloc(5000);
	aurawal_loc_t loc[4];
	uint64_t seq[4];
	aurawal_iter_t *it;
	aurawal_t *log;
	const void *p;
	size_t len;
	int status;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 4; i++) /* 5000 B: each record spans two or three blocks */
		seq[i] = append_i(log, (uint64_t) i, 5000, AURAWAL_DURABLE, &loc[i]);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(auraio_fault_set(e, &f), 0);
		read_check(log, loc[i], (uint64_t) i, seq[i]);
		cr_assert_eq(auraio_fault_set(e, &f), 0);
		status = 1;
		cr_assert_eq(aurawal_read_async(log, loc[i], buf, 5000, read_cb, &status), 0);
		while (status == 1)
			cr_assert_geq(aurawal_poll(log, 1000), 0);
		cr_assert_eq(status, 0, "async read %d: %s", i, aurawal_strerror(status));
		cr_assert(payload_check(buf, 5000, (uint64_t) i));
	}
	cr_assert_eq(auraio_fault_set(e, &f), 0); /* the iterator's reads too */
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(aurawal_iter_next(it, NULL, NULL, &p, &len), 1, "record %d", i);
		cr_assert(len == 5000 && payload_check(p, len, (uint64_t) i), "record %d", i);
	}
	cr_assert_eq(aurawal_iter_next(it, NULL, NULL, NULL, NULL), 0);
	aurawal_iter_close(it);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	free(buf);
}

#define NEXTRA 8 /* durable appends after the open */

/* Opened again (healthy engine): the log holds records 0..NREC-1, made by make_log(),
 * then the appends tried after them whose bit is set in `stored` (bit i: record
 * NREC + i) - and, where `maybe` has the bit, perhaps that one too (an EIO does not say
 * whether its write reached the device). Nothing is reported as damage - but for a torn
 * tail when `torn_ok` (a torn write's prefix is the clean end of the log). */
static void expect_records(unsigned stored, unsigned maybe, bool torn_ok)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_iter_t *it;
	const void *p;
	size_t len;
	int rc, i = 0, next = 0;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, &p, &len)) == 1) {
		if (i < NREC) {
			cr_assert(payload_check(p, len, (uint64_t) i), "record %d", i);
		} else {
			while (next < NEXTRA && !((stored | maybe) >> next & 1))
				next++;
			cr_assert_lt(next, NEXTRA, "a record after every append acknowledged");
			cr_assert(payload_check(p, len, (uint64_t) (NREC + next)),
				  "record %d is not append %d", i, next);
			stored &= ~(1u << next);
			next++;
		}
		i++;
	}
	aurawal_iter_close(it);
	cr_assert_eq(rc, 0, "%s", aurawal_strerror(rc));
	cr_assert_geq(i, NREC);
	cr_assert_eq(stored, 0, "acknowledged appends missing: mask %#x", stored);
	cr_assert_eq(rs.corruption + (torn_ok ? 0 : rs.torn) + rs.dropped, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_close(log), 0);
}

/*
 * The k-th operation matching `rule` fails (rule.skip = k), for every k until an open,
 * NEXTRA durable appends and a close no longer make that many: the open fails with
 * -err or succeeds; nothing is taken for damage (but a torn write may leave a torn
 * tail). EIO - an error, or a torn write (only a prefix reaches the file): an append is
 * acknowledged or fails with -EIO (fail-stop: the rest fail too), and the log opened
 * again has every record it had and every append acknowledged. ENOSPC (one failure: the
 * space "returns" at once): an append fails with -ENOSPC or is acknowledged, later ones
 * work again, and the log opened again has exactly the appends acknowledged - never one
 * told -ENOSPC. (The log's preparer, if it writes meanwhile, has its writes among those
 * failed in turn.)
 */
static void fault_at_each(auraio_fault_t rule)
{
	int err = rule.error;
	bool tear = rule.kind == AURAIO_FAULT_TEAR;
	int open_failed = 0, append_failed = 0;
	uint64_t k;

	for (k = 0;; k++) {
		auraio_engine_t *e = test_faulty_engine();
		struct reports rs = { 0 };
		aurawal_options_t o = wal_opts(&rs);
		aurawal_t *log = NULL;
		auraio_stats_t st;
		uint8_t p[RLEN];
		struct iovec iov = { p, RLEN };
		unsigned stored = 0, maybe = 0;
		int rc;

		rm_tree(dir);
		cr_assert_eq(mkdir(dir, 0755), 0);
		make_log();
		o.engine = e;
		rule.skip = k;
		cr_assert_eq(auraio_fault_set(e, &rule), 0);
		rc = aurawal_open(dir, &o, &log);
		cr_assert(rc == 0 || rc == -err, "write %llu failed: open says %s",
			  (unsigned long long) k, aurawal_strerror(rc));
		if (rc == 0) {
			for (int i = 0; i < NEXTRA; i++) {
				payload_fill(p, RLEN, (uint64_t) (NREC + i));
				rc = aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL);
				if (rc == 0) {
					stored |= 1u << i;
					continue;
				}
				cr_assert_eq(rc, -err, "write %llu failed: append %d says %s",
					     (unsigned long long) k, i, aurawal_strerror(rc));
				append_failed++;
				if (err == EIO) {
					maybe |= 1u << i;
					break;
				}
			}
			rc = aurawal_close(log);
			cr_assert(rc == 0 || rc == -err, "write %llu failed: close says %s",
				  (unsigned long long) k, aurawal_strerror(rc));
		} else {
			open_failed++;
		}
		cr_assert_eq(rs.corruption + rs.torn + rs.dropped, 0,
			     "write %llu failed: reported as damage: %s", (unsigned long long) k,
			     rs.reason);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		auraio_destroy(e);
		expect_records(stored, maybe, tear);
		if (st.faults_injected == 0)
			break; /* the run made fewer than k + 1 writes and syncs */
	}
	cr_log_info("%s%s: %llu operations failed in turn: %d opens and %d appends failed",
		    tear ? "torn, " : "", strerror(err), (unsigned long long) k, open_failed,
		    append_failed);
	cr_assert_gt(open_failed, 0);
	cr_assert_gt(append_failed, 0);
}

static auraio_fault_t each_write_or_sync(int err)
{
	return (auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE | AURAIO_FAULT_OP_FSYNC,
				 .fd = -1,
				 .count = 1,
				 .kind = AURAIO_FAULT_ERROR,
				 .error = err };
}

Test(wal_read_errors, an_eio_at_each_write_or_sync_after_an_open_loses_nothing, .timeout = 240)
{
	fault_at_each(each_write_or_sync(EIO));
}

Test(wal_read_errors, an_enospc_at_each_write_or_sync_stores_exactly_what_was_acknowledged,
     .timeout = 240)
{
	fault_at_each(each_write_or_sync(ENOSPC));
}

/* Each write torn in turn - 1, 4 and 7 of a block's 8 sectors reach the file - failing
 * with EIO: the open's close-block rewrite, the appends' batches, the close's block. */
Test(wal_read_errors, a_torn_write_at_each_write_after_an_open_loses_nothing, .timeout = 240)
{
	for (size_t keep = 512; keep < 4096; keep += 1536)
		fault_at_each((auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE,
						.fd = -1,
						.count = 1,
						.kind = AURAIO_FAULT_TEAR,
						.keep = keep,
						.error = EIO });
}
