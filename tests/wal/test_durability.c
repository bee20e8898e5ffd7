/* SPDX-License-Identifier: MIT */
/* What makes the log's names durable: the directory a new log is created in, the ready
 * segment's header at close, releases whose directory sync fails. The syncs are made
 * through the engine, so the tests fail them with fault injection and check that the
 * failure surfaces - or, where the operation has taken effect, that it is reported as
 * done and the sync stays owed. */
#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_durability);

/*
 * An open that creates the log - here in a directory it makes itself - must leave every
 * name on the way to the log durable, the directory's own entry in its parent included:
 * without a sync of the parent, a power loss after the first durable append could lose
 * the whole directory with the acknowledged record. Each sync of such an open is failed
 * in turn: the open fails with the error and a retry (which finds the directory there
 * already) creates the log. A creating open makes six syncs: the parent directory, then
 * segment 1's zeros, its header and the log's directory, then (end of recovery) the
 * active segment and the directory again. It made five: the parent's was missing.
 */
Test(wal_durability, every_sync_of_an_open_that_creates_its_directory_can_fail_it_and_a_retry_works)
{
	uint64_t k;

	for (k = 0;; k++) {
		auraio_engine_t *e = test_faulty_engine();
		aurawal_options_t o = wal_opts(NULL);
		aurawal_t *log = NULL;
		char *sub = NULL;
		aurawal_loc_t loc;
		uint64_t seq;
		int rc;

		cr_assert_geq(asprintf(&sub, "%s/log%llu", dir, (unsigned long long) k), 0);
		o.engine = e;
		test_fault_error(e, AURAIO_FAULT_OP_FSYNC, k, 1, EIO);
		rc = aurawal_open(sub, &o, &log);
		auraio_fault_clear(e);
		if (rc == 0) {
			cr_assert_eq(aurawal_close(log), 0);
			auraio_destroy(e);
			free(sub);
			break;
		}
		cr_assert_eq(rc, -EIO, "sync %llu failed: open says %s", (unsigned long long) k,
			     aurawal_strerror(rc));
		log = wal_open_ok(sub, &o); /* the retry: the directory is there already */
		seq = append_i(log, 1, 100, AURAWAL_DURABLE, &loc);
		cr_assert_eq(aurawal_close(log), 0);
		log = wal_open_ok(sub, &o);
		read_check(log, loc, 1, seq);
		cr_assert_eq(aurawal_close(log), 0);
		auraio_destroy(e);
		free(sub);
	}
	cr_assert_eq(k, 6, "a creating open made %llu syncs, not 6: is the parent synced?",
		     (unsigned long long) k);
}

/* The directory holding the log is found from a relative name, with or without a
 * trailing slash (the current directory then), as from an absolute one. */
Test(wal_durability, a_log_named_relative_to_the_current_directory_is_created)
{
	static const char *const names[] = { "rel", "rel2/", "./rel3//" };
	aurawal_options_t o = wal_opts(NULL);

	cr_assert_eq(chdir(dir), 0, "%s: %s", dir, strerror(errno));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		aurawal_t *log = wal_open_ok(names[i], &o);
		aurawal_loc_t loc;
		uint64_t seq = append_i(log, i, 100, AURAWAL_DURABLE, &loc);

		cr_assert_eq(aurawal_close(log), 0);
		log = wal_open_ok(names[i], &o);
		read_check(log, loc, i, seq);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

/* The ready segment's fd (the preparer idle first: it then holds one). */
static int ready_fd(aurawal_t *log)
{
	int fd;

	wal_preparer_idle(log);
	pthread_mutex_lock(&log->mu);
	fd = log->ready->fd;
	pthread_mutex_unlock(&log->mu);
	return fd;
}

/*
 * Without flush_on_rollover the preparer writes the ready segment's header (and renames
 * it) without a flush: owed until the first durable write into it. A clean close synced
 * the directory - so the name was durable - but not the header: after a power loss the
 * next open found a numbered segment with no valid header and reported it dropped (the
 * store reports that as corruption). Close flushes it now; its failure is close's.
 */
Test(wal_durability, close_flushes_the_ready_segments_header_and_says_if_it_cannot)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR };
	struct reports rs = { 0 };
	aurawal_loc_t loc;
	aurawal_t *log;
	uint64_t seq;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	seq = append_i(log, 7, 100, AURAWAL_DURABLE, &loc);
	f.fd = ready_fd(log);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_close(log), -EIO, "close did not flush the ready segment");
	auraio_fault_clear(e);

	o = wal_opts(&rs); /* a ready segment found at open is owed again: flushed at close */
	o.engine = e;
	log = wal_open_ok(dir, &o);
	read_check(log, loc, 7, seq);
	f.fd = ready_fd(log);
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_close(log), -EIO);
	auraio_fault_clear(e);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_eq(rs.n, 0, "%s", rs.reason);
	auraio_destroy(e);
}
