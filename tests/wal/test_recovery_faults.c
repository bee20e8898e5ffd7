/* SPDX-License-Identifier: MIT */
/*
 * Recovery after injected faults while writing: torn writes at every 512-byte boundary
 * of the tail block, EIO on the write and on the sync (fail-stop), ENOSPC (appends
 * succeed again once it clears), a short write inside the write+sync chain, and the
 * kernel refusing entries for a while.
 */
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_format.h" /* record sizes, to find records in the files */
#include "wal_internal_test.h"
#include "wal_recovery.h"
#include "wal_test.h"

/* ---- injected faults: the log runs on an engine the test controls ---- */

static void set_fault(auraio_engine_t *e, auraio_fault_t f)
{
	cr_assert_eq(auraio_fault_set(e, &f), 0);
}

/* After reopening with a healthy engine, records 0..n-1 must all be there. */
static void expect_prefix_survives(int n)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	int have = count_records_upto(log, NULL, n);

	cr_assert_geq(have, n, "%d acknowledged records, %d survived", n, have);
	for (int i = 0; i < n; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_recovery, a_torn_write_at_each_512_byte_boundary_keeps_acknowledged_records)
{
	for (int k = 0; k <= 8; k++) {
		auraio_engine_t *e = test_faulty_engine();
		aurawal_options_t o = wal_opts(NULL);
		aurawal_t *log;
		uint8_t p[RLEN];
		struct iovec iov = { p, RLEN };

		rm_tree(dir);
		cr_assert_eq(mkdir(dir, 0755), 0);
		o.engine = e;
		log = wal_open_ok(dir, &o);
		for (int i = 0; i < 7; i++) /* 7 x 232 B: the tail block is half full */
			seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
		wal_preparer_idle(log);

		set_fault(e, (auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE,
					       .fd = -1,
					       .count = 1,
					       .kind = AURAIO_FAULT_TEAR,
					       .keep = (size_t) k * 512 });
		payload_fill(p, RLEN, 7);
		cr_assert_lt(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), 0,
			     "a torn write must not be acknowledged");
		aurawal_close(log);
		auraio_destroy(e);
		expect_prefix_survives(7);
	}
}

static void on_read(void *arg, int status, size_t len, uint64_t seq)
{
	(void) len;
	(void) seq;
	*(int *) arg = status;
}

static void fail_stop_on(unsigned ops, aurawal_sync_mode_t mode)
{
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_stats_t st;
	aurawal_loc_t lost;
	aurawal_t *log;
	uint8_t p[RLEN];
	struct iovec iov = { p, RLEN };
	int status = 1;

	o.engine = e;
	o.sync_mode = mode;
	/* The buffered append below must still be in memory when the durable one's write
	 * fails: with the default delay (1 ms) a descheduled test thread let the writer write
	 * it alone, unsynced and unfaulted - then it is on disk and reads back (a CI flake). */
	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 10; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	wal_preparer_idle(log);

	set_fault(e,
		  (auraio_fault_t){
		      .ops = ops, .fd = -1, .count = 1, .kind = AURAIO_FAULT_ERROR, .error = EIO });
	/* A buffered append (0: it is in memory) goes down with the durable one's write. */
	append_i(log, 10, RLEN, 0, &lost);
	cr_assert_eq(aurawal_failed(log), 0, "healthy until the write fails");
	cr_assert_eq(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), -EIO);
	cr_assert_eq(aurawal_failed(log), -EIO);
	cr_assert_eq(aurawal_failed(NULL), -EINVAL);
	/* The reporter heard why, before the append did: which I/O, where, the error. The
	 * failed fsync may be the directory's, which a durable write pays first when the
	 * ready segment was renamed after the last one. */
	cr_assert_eq(rs.failed, 1, "the fail-stop was reported %d times", rs.failed);
	cr_assert_eq(rs.last.kind, AURAWAL_REPORT_FAILED);
	cr_assert(strstr(rs.reason, strerror(EIO)), "%s", rs.reason);
	if (strstr(rs.reason, "the directory's fsync")) {
		cr_assert_eq(ops, AURAIO_FAULT_OP_FSYNC, "%s", rs.reason);
		cr_assert_eq(rs.last.segment, 0);
	} else {
		cr_assert(strstr(rs.reason, "durable write"), "%s", rs.reason);
		cr_assert_eq(rs.last.segment, locs[9].segment);
		cr_assert_leq(rs.last.offset, locs[9].offset + wal_rec_size(RLEN));
		cr_assert_gt(rs.last.length, 0);
	}
	auraio_fault_clear(e);
	/* Never stored: reading it is the failure's error, not corruption (nor a report). */
	cr_assert_eq(aurawal_read(log, lost, p, sizeof(p), NULL, NULL), -EIO);
	cr_assert_eq(aurawal_read_async(log, lost, p, sizeof(p), on_read, &status), 0);
	while (status == 1)
		cr_assert_geq(aurawal_poll(log, 1000), 0);
	cr_assert_eq(status, -EIO);
	cr_assert_eq(rs.corruption, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), -EIO,
		     "fail-stop: the log refuses appends after an I/O error");
	cr_assert_eq(aurawal_append(log, &iov, 1, 0, NULL, NULL), -EIO);
	cr_assert_eq(aurawal_sync(log), -EIO);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, -EIO);
	read_check(log, locs[3], 3, seqs[3]); /* reads still work */
	cr_assert_eq(aurawal_close(log), -EIO);
	cr_assert_eq(rs.failed, 1, "reported once, not per refused call");
	auraio_destroy(e);
	expect_prefix_survives(10);
}

/* DSYNC (the default): the sync is part of the write, so an EIO from either comes back
 * as the write's result. */
Test(wal_recovery, eio_on_the_dsync_write_fails_the_log_and_loses_nothing_acknowledged)
{
	fail_stop_on(AURAIO_FAULT_OP_WRITE, AURAWAL_SYNC_DSYNC);
}

/* The default makes a batch durable with its write alone: with every fsync failing, durable
 * appends still succeed (and count their syncs); FDATASYNC mode fails on the first. */
Test(wal_recovery, the_default_dsync_mode_needs_no_fsync_per_batch)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL), d;
	aurawal_stats_t st;
	aurawal_t *log;

	aurawal_options_init(&d);
	cr_assert_eq(d.sync_mode, AURAWAL_SYNC_DSYNC);
	o.engine = e;
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	/* The ready segment's rename owes a directory sync, which the first durable write
	 * pays: once, not per batch. Paid before fsyncs fail. */
	seqs[0] = append_i(log, 0, RLEN, AURAWAL_DURABLE, &locs[0]);
	set_fault(e, (auraio_fault_t){ .ops = AURAIO_FAULT_OP_FSYNC,
				       .fd = -1,
				       .count = 0,
				       .kind = AURAIO_FAULT_ERROR,
				       .error = EIO });
	for (int i = 1; i < 10; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_geq(st.syncs, 10);
	cr_assert_eq(st.failed, 0);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	expect_prefix_survives(10);
}

/* A DSYNC write may go to the disk on its own (FUA) without flushing the device's cache:
 * it makes its own blocks durable, not what was written before. Records the flush delay
 * or aurawal_flush() wrote without a sync, in blocks the durable write does not rewrite,
 * need an fdatasync before a durable append (or a sync) that covers them returns: with
 * every fsync failing, that append fails instead of acknowledging them. */
Test(wal_recovery, a_dsync_write_after_records_written_without_a_sync_syncs_them_too)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	uint8_t p[RLEN];
	struct iovec iov = { p, RLEN };
	aurawal_t *log;

	o.engine = e;
	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	for (int i = 0; i < 30; i++) /* over two blocks */
		seqs[i] = append_i(log, (uint64_t) i, RLEN, 0, &locs[i]);
	cr_assert_eq(aurawal_flush(log), 0);
	set_fault(e, (auraio_fault_t){ .ops = AURAIO_FAULT_OP_FSYNC,
				       .fd = -1,
				       .count = 0,
				       .kind = AURAIO_FAULT_ERROR,
				       .error = EIO });
	payload_fill(p, RLEN, 30);
	cr_assert_eq(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), -EIO,
		     "acknowledged without syncing what was written before it");
	cr_assert_eq(aurawal_close(log), -EIO);
	auraio_destroy(e);
}

Test(wal_recovery, eio_on_the_write_fails_the_log_and_loses_nothing_acknowledged)
{
	fail_stop_on(AURAIO_FAULT_OP_WRITE, AURAWAL_SYNC_FDATASYNC);
}

Test(wal_recovery, eio_on_the_sync_fails_the_log_and_loses_nothing_acknowledged)
{
	fail_stop_on(AURAIO_FAULT_OP_FSYNC, AURAWAL_SYNC_FDATASYNC);
}

Test(wal_recovery, enospc_fails_the_appends_and_they_succeed_again_once_it_clears)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	uint8_t p[RLEN];
	struct iovec iov = { p, RLEN };

	o.engine = e;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 10; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	wal_preparer_idle(log);

	set_fault(e, (auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE,
				       .fd = -1,
				       .count = 0,
				       .kind = AURAIO_FAULT_ERROR,
				       .error = ENOSPC });
	payload_fill(p, RLEN, 999);
	cr_assert_eq(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), -ENOSPC);
	cr_assert_eq(aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), -ENOSPC,
		     "still no space");
	auraio_fault_clear(e);
	for (int i = 10; i < 20; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	for (int i = 0; i < 20; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	{
		aurawal_options_t o2 = wal_opts(NULL);

		log = wal_open_ok(dir, &o2);
		for (int i = 0; i < 20; i++)
			read_check(log, locs[i], (uint64_t) i, seqs[i]);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

/* The durable write of a `len`-byte record comes short `shorts` times in a row (a block
 * at a time): it is completed, acknowledged, and in the log after reopening. */
static void short_writes_are_completed(aurawal_sync_mode_t mode, size_t len, uint64_t shorts)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;

	o.engine = e;
	o.sync_mode = mode;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 5; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	/* the batch write spans several blocks; only the first lands */
	wal_preparer_idle(log);

	set_fault(e, (auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE,
				       .fd = -1,
				       .count = shorts,
				       .kind = AURAIO_FAULT_SHORT,
				       .keep = 4096 });
	seqs[5] = append_i(log, 5, len, AURAWAL_DURABLE, &locs[5]);
	read_check(log, locs[5], 5, seqs[5]);
	cr_assert_eq(aurawal_failed(log), 0);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	{
		aurawal_options_t o2 = wal_opts(NULL);

		log = wal_open_ok(dir, &o2);
		for (int i = 0; i < 6; i++)
			read_check(log, locs[i], (uint64_t) i, seqs[i]);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

Test(wal_recovery, a_short_write_in_the_chain_is_completed_not_acknowledged_on_the_sync)
{
	short_writes_are_completed(AURAWAL_SYNC_FDATASYNC, 5000, 1);
}

/* DSYNC: the kernel syncs what a short write wrote; the rest must still be written. */
Test(wal_recovery, a_short_dsync_write_is_completed_not_acknowledged_as_written)
{
	short_writes_are_completed(AURAWAL_SYNC_DSYNC, 5000, 1);
}

/* A short count is progress, not an error: however many come in a row, the write goes
 * on from where the last one ended - the log does not fail (fail-stop is for errors). */
Test(wal_recovery, several_short_writes_in_a_row_are_completed_not_a_failure)
{
	short_writes_are_completed(AURAWAL_SYNC_FDATASYNC, 20000, 3);
	rm_tree(dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	short_writes_are_completed(AURAWAL_SYNC_DSYNC, 20000, 3);
}

/* io_uring_enter refusing entries (EAGAIN, EBUSY) is transient, not an I/O error: the
 * engine submits them again, and the log neither fails nor loses anything. */
Test(wal_recovery, refused_kernel_entries_are_retried_and_fail_nothing, .timeout = 120)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_stats_t est;
	aurawal_stats_t st;
	aurawal_t *log;

	cr_assert_eq(auraio_get_stats(e, &est), 0);
	if (est.backend != AURAIO_BACKEND_IO_URING) {
		auraio_destroy(e);
		cr_skip_test("ENTER faults model io_uring_enter; this engine uses worker threads");
	}
	o.engine = e;
	log = wal_open_ok(dir, &o);
	set_fault(e, (auraio_fault_t){ .fd = -1, .count = 40, .kind = AURAIO_FAULT_ENTER });
	for (int i = 0; i < NREC; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, i % 3 ? AURAWAL_DURABLE : 0, &locs[i]);
	cr_assert_eq(aurawal_sync(log), 0);
	for (int i = 0; i < NREC; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(auraio_get_stats(e, &est), 0);
	cr_assert_eq(est.faults_injected, 40, "every refusal of the rule was met and retried");
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, 0);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	expect_prefix_survives(NREC);
}
