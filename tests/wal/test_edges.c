/* SPDX-License-Identifier: MIT */
/* The contract of aurawal.h at its edges: options at their bounds, appends whose lengths
 * overflow, iterators opened where no record starts, calls on a failed log. */
#include <limits.h>

#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_edges);

Test(wal_edges, an_append_whose_lengths_overflow_size_t_is_too_large_not_a_small_record)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	char c[16] = "0123456789abcdef";
	struct iovec iov[2] = { { c, 16 }, { c, SIZE_MAX } }; /* 16 + SIZE_MAX wraps to 15 */

	cr_assert_eq(aurawal_append(log, iov, 2, 0, NULL, NULL), -EMSGSIZE);
	cr_assert_eq(aurawal_append_async(log, iov, 2, 0, (aurawal_append_cb) abort, NULL),
		     -EMSGSIZE);
	iov[1].iov_len = SIZE_MAX - 15; /* wraps to exactly 0 */
	cr_assert_eq(aurawal_append(log, iov, 2, AURAWAL_DURABLE, NULL, NULL), -EMSGSIZE);
	cr_assert_eq(aurawal_close(log), 0);
}

/* More entries than IOV_MAX, some of them NULL and empty: one record, their bytes. */
Test(wal_edges, an_append_of_more_iovecs_than_iov_max_with_empty_null_entries_is_one_record)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 3000 };
	struct iovec *iov = calloc(N, sizeof(*iov));
	uint8_t src[N], out[N];
	aurawal_loc_t loc;
	size_t len = 0, k = 0;

	for (size_t i = 0; i < N; i++) {
		src[i] = (uint8_t) (i * 7);
		if (i % 3) /* every third entry: { NULL, 0 } */
			iov[i] = (struct iovec){ &src[i], 1 };
	}
	cr_assert_eq(aurawal_append(log, iov, N, AURAWAL_DURABLE, &loc, NULL), 0);
	cr_assert_eq(loc.size, N - N / 3);
	cr_assert_eq(aurawal_read(log, loc, out, sizeof(out), &len, NULL), 0);
	cr_assert_eq(len, loc.size);
	for (size_t i = 0; i < N; i++)
		if (i % 3)
			cr_assert_eq(out[k++], src[i], "byte %zu", i);
	free(iov);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Wait until no batch is in use: the writer has finished with the batch it took (the
 * failure wakes the sync's waiter before that). */
static void wait_batches_done(aurawal_t *log)
{
	bool busy = true;

	pthread_mutex_lock(&log->mu);
	while (busy) {
		busy = false;
		for (int i = 0; i < log->nbufs; i++)
			busy |= log->bufs[i].busy;
		if (busy)
			pthread_cond_wait(&log->cv_done, &log->mu);
	}
	pthread_mutex_unlock(&log->mu);
}

/* Roll segment 1 over with buffered appends, written but not flushed; then the seal
 * block of segment 1 - written by the next sync, after it flushes segment 1 - fails with
 * EIO. That fails the log while the writer holds the sync's batch, taken before. */
static aurawal_t *failed_by_its_seal_block(auraio_engine_t *e)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_loc_t loc = { 0 };
	aurawal_t *log;
	int fd1;

	o.engine = e;
	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	fd1 = wal_active_fd(log);
	for (uint64_t i = 0; loc.segment < 2; i++)
		append_i(log, i, 3000, 0, &loc);
	cr_assert_eq(aurawal_flush(log), 0);
	{
		auraio_fault_t f = { .ops = AURAIO_FAULT_OP_WRITE,
				     .fd = fd1,
				     .kind = AURAIO_FAULT_ERROR,
				     .error = EIO };

		cr_assert_eq(auraio_fault_set(e, &f), 0);
	}
	cr_assert_eq(aurawal_sync(log), -EIO);
	wait_batches_done(log);
	return log;
}

Test(wal_edges, a_log_failed_while_a_sync_pays_a_rollovers_debt_writes_nothing_more)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_t *log = failed_by_its_seal_block(e);
	aurawal_stats_t st;
	char c = 'x';
	struct iovec one = { &c, 1 };

	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, -EIO);
	cr_assert_eq(st.syncs, 0, "a batch was made durable after the log failed");
	cr_assert_eq(aurawal_sync(log), -EIO, "a failed log's sync is its failure");
	cr_assert_eq(aurawal_flush(log), -EIO);
	cr_assert_eq(aurawal_append(log, &one, 1, 0, NULL, NULL), -EIO);
	cr_assert_eq(aurawal_append(log, &one, 1, AURAWAL_DURABLE, NULL, NULL), -EIO);
	cr_assert_eq(aurawal_close(log), -EIO, "close reports the failure too");
	auraio_destroy(e);
}

/* Each option out of its range (aurawal.h) fails the open with -EINVAL before anything
 * is made on disk: not even the directory is created. */
Test(wal_edges, every_option_out_of_range_is_refused_before_anything_is_created)
{
	aurawal_options_t o = wal_opts(NULL), bad[16];
	char sub[512];
	struct stat st;
	aurawal_t *log = NULL;
	int n = 0;

	for (int i = 0; i < 16; i++)
		bad[i] = o;
	bad[n++].segment_size = 0;
	bad[n++].segment_size = (1u << 20) - 4096;
	bad[n++].segment_size = (1u << 20) + 512;
	bad[n++].segment_size = (4ull << 30) + 4096;
	bad[n++].segment_size = UINT64_MAX;
	bad[n++].buffer_size = 0;
	bad[n++].buffer_size = (64u << 10) - 4096;
	bad[n++].buffer_size = (64u << 10) + 8; /* not a whole number of blocks */
	bad[n++].buffer_size = (256u << 20) + 4096;
	bad[n++].flush_delay_us = 10000001;
	bad[n++].spare_segments = 0;
	bad[n++].spare_segments = 65;
	bad[n++].sync_mode = (aurawal_sync_mode_t) 2;
	bad[n++].sync_mode = (aurawal_sync_mode_t) -1;
	bad[n++].recovery = (aurawal_recovery_t) 3;
	bad[n++].recovery = (aurawal_recovery_t) -1;
	snprintf(sub, sizeof(sub), "%s/log", dir);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(aurawal_open(sub, &bad[i], &log), -EINVAL, "options #%d", i);
		cr_assert_null(log);
		cr_assert_neq(stat(sub, &st), 0, "options #%d created the directory", i);
	}
	/* the bounds themselves are valid (not the largest sizes: a test makes no 4 GiB file) */
	o.buffer_size = 64u << 10;
	o.flush_delay_us = 10000000;
	o.spare_segments = 64;
	o.sync_mode = AURAWAL_SYNC_FDATASYNC;
	o.create_if_missing = true;
	log = wal_open_ok(sub, &o);
	cr_assert_eq(aurawal_close(log), 0);
}

/* An iterator starts where a record starts. A place where none can start - past the end
 * of what is appended, or not 8-aligned - is refused at once, not reported later as
 * corruption once records are appended past it. */
Test(wal_edges, an_iterator_from_a_place_where_no_record_can_start_is_refused)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t first, loc;
	aurawal_iter_t *it = NULL;

	append_i(log, 0, 100, AURAWAL_DURABLE, &first);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 8192, 0 }, &it), -EINVAL,
		     "past the end of the active segment");
	cr_assert_null(it);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 4100, 0 }, &it), -EINVAL);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 2, 0, 0 }, &it), -ENOENT,
		     "a segment that does not exist yet");
	/* the end of what is appended is a valid start: the next append is found there */
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 4096 + 32 + 104, 0 }, &it), 0);
	cr_assert_eq(aurawal_iter_next(it, NULL, NULL, NULL, NULL), 0);
	for (int i = 1; i < 100; i++)
		append_i(log, (uint64_t) i, 100, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_iter_next(it, &loc, NULL, NULL, NULL), 1);
	cr_assert_eq(loc.offset, 4096 + 32 + 104);
	aurawal_iter_close(it);
	/* an offset inside the header block means the segment's first record */
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 0, 0 }, &it), 0);
	cr_assert_eq(aurawal_iter_next(it, &loc, NULL, NULL, NULL), 1);
	cr_assert_eq(loc.offset, first.offset);
	aurawal_iter_close(it);
	/* segment 0 means the oldest record, whatever the offset says */
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0, 4100, 7 }, &it), 0);
	cr_assert_eq(aurawal_iter_next(it, &loc, NULL, NULL, NULL), 1);
	cr_assert_eq(loc.segment, first.segment);
	cr_assert_eq(loc.offset, first.offset);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
}

static void read_cb_status(void *arg, int status, size_t len, uint64_t seq)
{
	(void) len;
	(void) seq;
	*(int *) arg = status;
}

/* The log's own records (SEAL, SYNC) are intact: reading one by its location is not
 * corruption, it is no appended record - as for a VOID record. */
Test(wal_edges, reading_at_a_seal_or_a_sync_mark_is_no_record_not_corruption)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 };
	aurawal_iter_t *it;
	aurawal_record_t r;
	uint8_t buf[64];
	int seen[5] = { 0 }, rc;

	for (uint64_t i = 0; loc.segment < 3; i++)
		append_i(log, i, 3000, AURAWAL_DURABLE, &loc);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next_record(it, &r)) == 1) {
		int st = 1;

		if (r.type != AURAWAL_RECORD_SEAL && r.type != AURAWAL_RECORD_SYNC)
			continue;
		seen[r.type]++;
		cr_assert_eq(aurawal_read(log, r.loc, buf, sizeof(buf), NULL, NULL), -ENOENT,
			     "record type %d at %llu:%u", r.type,
			     (unsigned long long) r.loc.segment, r.loc.offset);
		cr_assert_eq(aurawal_read_async(log, r.loc, buf, sizeof(buf), read_cb_status, &st),
			     0);
		while (st == 1)
			cr_assert_geq(aurawal_poll(log, -1), 0);
		cr_assert_eq(st, -ENOENT);
	}
	cr_assert_eq(rc, 0);
	aurawal_iter_close(it);
	cr_assert_geq(seen[AURAWAL_RECORD_SEAL], 2);
	cr_assert_geq(seen[AURAWAL_RECORD_SYNC], 2);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Iterators kept open while segments are released (aurawal.h: positioned in a released
 * segment, they get -ENOENT; the others read on, past the gap). */
Test(wal_edges, iterators_kept_open_across_releases_see_enoent_or_read_past_the_gap)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 }, at;
	aurawal_iter_t *in1, *in2;
	aurawal_segment_info_t info[8];
	size_t n = 99;
	uint8_t buf[4096];

	for (uint64_t i = 0; loc.segment < 5; i++)
		append_i(log, i, 3000, 0, &loc);
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 0, 0 }, &in1), 0);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 2, 0, 0 }, &in2), 0);
	cr_assert_eq(aurawal_iter_next(in1, &at, NULL, NULL, NULL), 1);
	cr_assert_eq(aurawal_release_segment(log, 3), 0);
	cr_assert_eq(aurawal_release_before(log, (aurawal_loc_t){ 2, 0, 0 }), 1);
	cr_assert_eq(aurawal_release_before(log, (aurawal_loc_t){ 2, 0, 0 }), 0, "twice");
	cr_assert_eq(aurawal_iter_next(in1, NULL, NULL, NULL, NULL), -ENOENT);
	cr_assert_eq(aurawal_read(log, at, buf, sizeof(buf), NULL, NULL), -ENOENT);
	do
		cr_assert_eq(aurawal_iter_next(in2, &at, NULL, NULL, NULL), 1);
	while (at.segment == 2);
	cr_assert_eq(at.segment, 4, "the released segment 3 is skipped");
	aurawal_iter_close(in1);
	aurawal_iter_close(in2);
	cr_assert_eq(aurawal_list_segments(log, NULL, 0, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(aurawal_list_segments(log, info, 1, &n), 0);
	cr_assert_eq(n, 3, "the total, though one was copied");
	cr_assert_eq(info[0].number, 2);
	/* a location beyond the log releases everything but the active segment */
	cr_assert_eq(aurawal_release_before(log, (aurawal_loc_t){ 99, 0, 0 }), 2);
	cr_assert_eq(aurawal_list_segments(log, info, 8, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(info[0].number, 5);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_edges, strerror_has_text_for_every_int)
{
	int codes[] = { 0,
			-EIO,
			-ENOSPC,
			AURAWAL_ECORRUPT,
			AURAWAL_ECLOSED,
			AURAWAL_EFORMAT,
			AURAWAL_ELOCKED,
			-31000,
			-31005,
			-31999,
			EIO,
			1 << 20,
			-(1 << 20),
			INT_MAX,
			INT_MIN };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = aurawal_strerror(codes[i]);

		cr_assert_not_null(s, "code %d", codes[i]);
		cr_assert_gt(strlen(s), 0, "code %d", codes[i]);
	}
	cr_assert_str_eq(aurawal_strerror(-31005), "unknown error");
	cr_assert_str_eq(aurawal_strerror(INT_MIN), "unknown error");
}

/* -ENOENT (no log, create_if_missing false) is a refusal too: it leaves an existing
 * directory as it was - no LOCK file, and files that look like spares kept. */
Test(wal_edges, opening_a_directory_without_a_log_and_without_create_changes_nothing)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = NULL;
	char path[512];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/spare-0000000000000001.seg", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	o.create_if_missing = false;
	cr_assert_eq(aurawal_open(dir, &o, &log), -ENOENT);
	cr_assert_null(log);
	cr_assert_eq(stat(path, &st), 0, "the open deleted a file of the directory");
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	cr_assert_neq(stat(path, &st), 0, "the refused open left a LOCK file");
	o.recovery = AURAWAL_RECOVER_INSPECT;
	cr_assert_eq(aurawal_open(dir, &o, &log), -ENOENT);
	cr_assert_neq(stat(path, &st), 0);
}

struct stats_run {
	aurawal_t *log;
	int per_thread;
};

static void *stats_appender(void *arg)
{
	struct stats_run *r = arg;

	for (int i = 0; i < r->per_thread; i++)
		append_i(r->log, (uint64_t) i, 200, i % 4 ? 0 : AURAWAL_DURABLE, NULL);
	return NULL;
}

/* Stats taken while appenders run are a consistent snapshot: counters never go back and
 * never pass what the appends add up to (and, under TSan, no data race). */
Test(wal_edges, stats_taken_during_concurrent_appends_are_consistent_snapshots)
{
	aurawal_options_t o = wal_opts(NULL);
	struct stats_run run = { wal_open_ok(dir, &o), 500 };
	pthread_t t[4];
	aurawal_stats_t prev = { 0 }, st;
	uint64_t total = 4 * (uint64_t) run.per_thread;

	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, stats_appender, &run), 0);
	do {
		cr_assert_eq(aurawal_get_stats(run.log, &st), 0);
		cr_assert_geq(st.appends, prev.appends);
		cr_assert_geq(st.durable_appends, prev.durable_appends);
		cr_assert_geq(st.next_seq, prev.next_seq);
		cr_assert_geq(st.segments, 1);
		cr_assert_leq(st.appends, total);
		cr_assert_leq(st.durable_appends, st.appends);
		cr_assert_eq(st.bytes, 200 * st.appends);
		cr_assert_eq(st.failed, 0);
		prev = st;
	} while (st.appends < total);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(aurawal_close(run.log), 0);
}

/* A rollover has sealed segment 1, but the batch holding its last records and its SEAL
 * is not written yet (here: no space for it). An iterator that has read all that is
 * written of segment 1 is at the end of what is written: it does not move on to
 * segment 2, skipping those records - once they are written it returns them, in order,
 * and only then those of segment 2. */
Test(wal_edges, an_iterator_waits_for_the_unwritten_end_of_a_segment_a_rollover_sealed)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	uint64_t rec = 32 + 3000, seal = 32 + 8;
	aurawal_loc_t last, in1, in2, got;
	aurawal_iter_t *it;
	aurawal_t *log;
	uint64_t i = 0;
	int rc;

	o.engine = e;
	o.flush_delay_us = 0; /* buffered records stay buffered until asked */
	log = wal_open_ok(dir, &o);
	while (wal_room_left(log) >= 3 * rec + seal)
		append_i(log, i++, 3000, 0, &last);
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 1, 0, 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &got, NULL, NULL, NULL)) == 1)
		;
	cr_assert_eq(rc, 0);
	cr_assert(got.segment == last.segment && got.offset == last.offset);

	append_i(log, i++, 3000, 0, &in1); /* buffered in segment 1 */
	cr_assert_eq(in1.segment, 1);
	wal_preparer_idle(log);
	test_fault_error(e, AURAIO_FAULT_OP_WRITE, 0, 0, ENOSPC);
	append_i(log, i++, (size_t) wal_room_left(log), 0, &in2); /* rolls over */
	cr_assert_eq(in2.segment, 2);
	pthread_mutex_lock(&log->mu); /* the writer's attempt at segment 1's end failed */
	while (!log->enospc)
		pthread_cond_wait(&log->cv_done, &log->mu);
	pthread_mutex_unlock(&log->mu);
	cr_assert_eq(aurawal_iter_next(it, &got, NULL, NULL, NULL), 0,
		     "nothing more is written yet");

	auraio_fault_clear(e);
	append_i(log, i++, 0, 0, NULL); /* asks for the failed write to be retried now */
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_iter_next(it, &got, NULL, NULL, NULL), 1);
	cr_assert(got.segment == in1.segment && got.offset == in1.offset,
		  "the iterator skipped to %llu:%u", (unsigned long long) got.segment, got.offset);
	cr_assert_eq(aurawal_iter_next(it, &got, NULL, NULL, NULL), 1);
	cr_assert(got.segment == in2.segment && got.offset == in2.offset);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
}

struct reappend {
	aurawal_t *log;
	int status, again;
};

/* An async append's callback that appends once more, buffered. */
static void append_again_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	struct reappend *r = arg;
	char c = 'y';
	struct iovec one = { &c, 1 };

	(void) loc;
	(void) seq;
	r->status = status;
	r->again = aurawal_append(r->log, &one, 1, 0, NULL, NULL);
}

/* The sync at the start of close runs a callback, which appends a buffered record; close
 * writes it after all, and when that write fails, close says so (aurawal.h: it returns
 * the error that kept buffered records from becoming durable) rather than 0. */
Test(wal_edges, close_reports_the_failure_of_a_record_a_callback_appended_during_it)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	struct reappend r = { NULL, 1, 1 };
	char c = 'x';
	struct iovec one = { &c, 1 };

	o.engine = e;
	o.flush_delay_us = 0;
	r.log = wal_open_ok(dir, &o);
	wal_preparer_idle(r.log);
	test_fault_error(e, AURAIO_FAULT_OP_WRITE, 1, 0, EIO); /* every write after the next */
	cr_assert_eq(aurawal_append_async(r.log, &one, 1, AURAWAL_DURABLE, append_again_cb, &r), 0);
	cr_assert_eq(aurawal_close(r.log), -EIO);
	cr_assert_eq(r.status, 0, "the first record was written");
	cr_assert_eq(r.again, 0, "the second one was buffered, then its write failed");
	auraio_destroy(e);
}
