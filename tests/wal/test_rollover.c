/* SPDX-License-Identifier: MIT */
/*
 * test_rollover.c - rollovers without a flush (docs/wal_format.md, "Rollover without a
 * flush" and "Recovery rule"): a non-durable stream never flushes, the next durable
 * write pays what the rollovers owe, and the states a crash can leave before that - a
 * segment whose last writes were lost, a successor whose rename was lost, a recycled
 * spare under its old name - open as the clean end of the log, while the same damage
 * after a SYNC mark or a seal block is corruption.
 *
 * The crash states are made with fault injection: with every fsync failing, appends run
 * and roll over as usual, and the first sync fails before anything more is written (the
 * owed flushes come first), so the files hold exactly what a crash before the rollover's
 * flush would leave - then the test removes the bytes the device would have lost.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_internal_test.h" /* the directory's fd */
#include "wal_test.h"

WAL_DIR_SUITE(wal_rollover);

#define RLEN   4000 /* about 260 records per 1 MiB segment */
#define MAXREC 2000

static aurawal_loc_t locs[MAXREC];
static uint64_t seqs[MAXREC];

/* Overwrite [off, off + len) of segment n with zeros: bytes a crash did not let reach
 * the device. */
static void zero_bytes(uint64_t n, uint64_t off, size_t len)
{
	char path[512], z[4096] = { 0 };
	int fd;

	cr_assert_leq(len, sizeof(z));
	wal_seg_file(path, sizeof(path), dir, n);
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(pwrite(fd, z, len, (off_t) off), (ssize_t) len);
	close(fd);
}

/* From now on every fsync and fdatasync fails with EIO. */
static void fail_every_fsync(auraio_engine_t *e)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .fd = -1, .kind = AURAIO_FAULT_ERROR };

	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
}

/* Append non-durable records until record k lands in segment `upto`; returns how many. */
static int append_until(aurawal_t *log, uint64_t upto)
{
	int k = 0;

	do {
		cr_assert_lt(k, MAXREC);
		seqs[k] = append_i(log, (uint64_t) k, RLEN, 0, &locs[k]);
		k++;
	} while (locs[k - 1].segment < upto);
	return k;
}

/* Records 0..n-1 of locs/seqs that lie in segments first..last, checked one by one. */
static int check_records(aurawal_t *log, int n, uint64_t first, uint64_t last)
{
	int have = 0;

	for (int i = 0; i < n; i++)
		if (locs[i].segment >= first && locs[i].segment <= last) {
			read_check(log, locs[i], (uint64_t) i, seqs[i]);
			have++;
		}
	return have;
}

static int count_records(aurawal_t *log)
{
	aurawal_iter_t *it;
	int n = 0, rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, NULL, NULL)) == 1)
		n++;
	cr_assert_eq(rc, 0, "iterating: %s", aurawal_strerror(rc));
	aurawal_iter_close(it);
	return n;
}

/* Segment n's data end (past its last record, the SEAL if sealed), from the listing. */
static uint64_t data_end(aurawal_t *log, uint64_t n)
{
	aurawal_segment_info_t segs[16];
	size_t count;

	cr_assert_eq(aurawal_list_segments(log, segs, 16, &count), 0);
	for (size_t i = 0; i < count && i < 16; i++)
		if (segs[i].number == n)
			return 4096 + segs[i].bytes;
	cr_assert_fail("segment %llu is not listed", (unsigned long long) n);
	return 0;
}

/*
 * The crash state: non-durable records through segment `upto` all written
 * (aurawal_flush), nothing flushed, then the log stopped by a failed sync. Returns the
 * records appended; *end1 = segment 1's data end.
 */
static int unflushed_log(uint64_t upto, uint64_t *end1)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_stats_t st;
	aurawal_t *log;
	int n;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	fail_every_fsync(e);
	n = append_until(log, upto);
	cr_assert_eq(aurawal_flush(log), 0, "aurawal_flush writes everything without a flush");
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, 0, "a rollover flushed: %s", aurawal_strerror(st.failed));
	*end1 = data_end(log, 1);
	cr_assert_eq(aurawal_sync(log), -EIO, "the sync pays the rollovers' flushes first");
	aurawal_close(log);
	auraio_destroy(e);
	return n;
}

Test(wal_rollover, a_non_durable_stream_never_flushes_and_the_next_sync_pays_the_rollovers)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	uint64_t end1;
	int n = unflushed_log(4, &end1), have;

	(void) end1;

	/* No crash happened: everything written is there, in order. */
	log = wal_open_ok(dir, &o);
	have = check_records(log, n, 1, 4);
	cr_assert_eq(have, n);
	cr_assert_eq(count_records(log), n);
	cr_assert_eq(aurawal_close(log), 0);
}

/* The directory sync a rollover owes (the next segment's rename) is paid before a
 * durable append returns: if it fails, so does the append, and the log with it. It used
 * to be a plain fsync(), out of fault injection's reach, as were all the log's
 * directory syncs. */
Test(wal_rollover, a_durable_append_fails_when_the_directory_sync_it_owes_fails)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR };
	aurawal_stats_t st;
	aurawal_loc_t loc;
	aurawal_t *log;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	append_until(log, 2);
	f.fd = wal_dir_fd(log);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_append(log, &(struct iovec){ "x", 1 }, 1, AURAWAL_DURABLE, &loc, NULL),
		     -EIO, "acknowledged without the directory sync");
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, -EIO);
	aurawal_close(log);
	auraio_destroy(e);
}

/* The ready segment a reopened log finds (made ready before the last close, its header
 * written without a flush) is owed a flush like a new one: the first durable append in
 * it syncs its header first - a failure fails the append - and carries its SYNC mark.
 * It used to be taken as flushed: a DSYNC write made the record durable, not the
 * header, and a power loss could leave the record in a segment the next open drops. */
Test(wal_rollover, the_ready_segment_found_at_open_owes_its_header_flush)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR };
	aurawal_loc_t loc;
	aurawal_t *log = wal_open_ok(dir, &o);

	append_i(log, 0, RLEN, AURAWAL_DURABLE, NULL);
	wal_preparer_idle(log); /* segment 2 made ready */
	cr_assert_eq(aurawal_close(log), 0);
	o.engine = e;
	log = wal_open_ok(dir, &o);
	pthread_mutex_lock(&log->mu);
	cr_assert(log->ready && log->ready->number == 2, "segment 2 is not the ready one");
	f.fd = log->ready->fd;
	pthread_mutex_unlock(&log->mu);
	append_until(log, 2);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_append(log, &(struct iovec){ "x", 1 }, 1, AURAWAL_DURABLE, &loc, NULL),
		     -EIO, "acknowledged without flushing segment 2's header");
	aurawal_close(log);
	auraio_destroy(e);
}

Test(wal_rollover, the_first_durable_append_in_the_ready_segment_found_at_open_carries_a_mark)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_record_t r;
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	int marks = 0;

	append_i(log, 0, RLEN, AURAWAL_DURABLE, NULL);
	wal_preparer_idle(log);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	append_until(log, 2);
	append_i(log, 9999, 10, AURAWAL_DURABLE, &loc);
	cr_assert_eq(loc.segment, 2);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ .segment = 2 }, &it), 0);
	while (aurawal_iter_next_record(it, &r) == 1)
		marks += r.type == AURAWAL_RECORD_SYNC;
	aurawal_iter_close(it);
	cr_assert_eq(marks, 1, "segment 2 holds %d SYNC marks", marks);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_rollover, a_crash_before_the_rollover_flush_ends_the_log_in_the_torn_segment)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	uint64_t end1, s;
	int n, in1;

	n = unflushed_log(3, &end1);
	zero_bytes(1, end1 - 40, 40); /* segment 1's SEAL never reached the device */
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption, 0, "reported: %s", rs.reason);
	cr_assert_geq(rs.dropped, 2, "segments 2 and 3 are dropped, and reported");
	in1 = check_records(log, n, 1, 1);
	cr_assert_eq(count_records(log), in1, "the log ends where segment 1 was torn");
	/* and goes on from there */
	s = append_i(log, 7777, RLEN, AURAWAL_DURABLE, NULL);
	cr_assert_gt(s, seqs[in1 - 1]);
	cr_assert_eq(aurawal_close(log), 0);
	memset(&rs, 0, sizeof(rs));
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption + rs.dropped, 0);
	cr_assert_eq(count_records(log), in1 + 1);
	check_records(log, n, 1, 1);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_rollover, damage_before_a_sync_mark_or_a_seal_block_is_corruption)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log = wal_open_ok(dir, &o);
	uint64_t end1;
	int n = append_until(log, 2);

	/* a durable append in segment 2: segment 1 is flushed and gets its seal block, and
	 * segment 2 its SYNC mark */
	seqs[n] = append_i(log, (uint64_t) n, RLEN, AURAWAL_DURABLE, &locs[n]);
	end1 = data_end(log, 1);
	cr_assert_eq(aurawal_close(log), 0);

	zero_bytes(1, end1 - 40, 40); /* the SEAL: media damage, not a crash */
	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT, "with a seal block");
	cr_assert_geq(rs.corruption, 1);
	cr_assert(strstr(rs.reason, "seal"), "reason: %s", rs.reason);

	zero_bytes(1, 64, 56); /* the seal block too: the SYNC mark is the evidence left */
	memset(&rs, 0, sizeof(rs));
	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT, "with a SYNC mark");
	cr_assert_geq(rs.corruption, 1);
	cr_assert_eq(rs.dropped, 0, "nothing dropped silently");
}

Test(wal_rollover, a_sealed_last_segment_whose_successor_was_lost_gets_a_new_one)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_segment_info_t segs[8];
	aurawal_loc_t loc;
	aurawal_t *log;
	uint64_t end1;
	size_t count;
	int n, in1;
	char path[512];

	n = unflushed_log(2, &end1);
	for (uint64_t k = 2; k <= 3; k++) { /* the renames that made them were lost */
		wal_seg_file(path, sizeof(path), dir, k);
		unlink(path);
	}
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption, 0, "reported: %s", rs.reason);
	in1 = check_records(log, n, 1, 1);
	cr_assert_eq(count_records(log), in1);
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &count), 0);
	cr_assert_eq(count, 2);
	cr_assert(segs[0].sealed);
	cr_assert_eq(segs[1].number, 2, "the successor is made again");
	append_i(log, 9999, RLEN, AURAWAL_DURABLE, &loc);
	cr_assert_eq(loc.segment, 2);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(count_records(log), in1 + 1);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_rollover, a_recycled_spare_under_its_old_name_is_not_part_of_the_log)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_segment_info_t segs[8];
	aurawal_t *log = wal_open_ok(dir, &o);
	char from[512], to[512], cmd[1100];
	size_t count;
	int n = append_until(log, 4), later = 0;

	cr_assert_eq(aurawal_close(log), 0);
	/* segment 1 released and its file reused for segment 4, but neither rename reached
	 * the disk: the file named 1 holds segment 4's header */
	wal_seg_file(from, sizeof(from), dir, 4);
	wal_seg_file(to, sizeof(to), dir, 1);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	cr_assert_eq(system(cmd), 0);

	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption, 0, "reported: %s", rs.reason);
	cr_assert_not(wal_seg_file_exists(dir, 1), "the leftover is deleted");
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &count), 0);
	cr_assert_eq(segs[0].number, 2, "the log starts at segment 2");
	for (int i = 0; i < n; i++)
		later += locs[i].segment > 1;
	cr_assert_eq(check_records(log, n, 2, 4), later);
	cr_assert_eq(count_records(log), later);
	cr_assert_eq(aurawal_close(log), 0);
}

/* The store's setting: every rollover flushes at once - so with every fsync failing,
 * the first rollover fails the log. */
Test(wal_rollover, with_flush_on_rollover_a_rollover_flushes_at_once)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	uint8_t p[RLEN];
	struct iovec iov = { p, RLEN };
	aurawal_loc_t loc = { 0 };
	int rc = 0, k;

	o.engine = e;
	o.flush_on_rollover = true;
	log = wal_open_ok(dir, &o);
	fail_every_fsync(e);
	for (k = 0; k < 5 * 260 && rc == 0 && loc.segment < 4; k++)
		rc = aurawal_append(log, &iov, 1, 0, &loc, NULL);
	cr_assert_eq(rc, -EIO, "appends went on past segment %llu (rc %d)",
		     (unsigned long long) loc.segment, rc);
	aurawal_close(log);
	auraio_destroy(e);
}

/* Segments dropped after a break give their numbers back; one that was released out of
 * order (listed in RELEASED) must not make the next open delete its successor. */
Test(wal_rollover, a_dropped_number_released_out_of_order_is_forgotten)
{
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_loc_t loc = { 0 };
	aurawal_t *log;
	uint64_t end2;
	int n;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	n = append_until(log, 4);
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_release_segment(log, 3), 0, "out of order: recorded in RELEASED");
	end2 = data_end(log, 2);
	fail_every_fsync(e);
	cr_assert_eq(aurawal_sync(log), -EIO);
	aurawal_close(log);
	auraio_destroy(e);
	zero_bytes(2, end2 - 40, 40); /* segment 2's SEAL never reached the device */

	o.engine = NULL;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption, 0, "reported: %s", rs.reason);
	cr_assert_eq(count_records(log), check_records(log, n, 1, 2));
	while (loc.segment < 4) /* segment 3 again, then 4 */
		append_i(log, 5555, RLEN, AURAWAL_DURABLE, &loc);
	cr_assert_eq(aurawal_close(log), 0);
	memset(&rs, 0, sizeof(rs));
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption + rs.dropped, 0, "reported: %s", rs.reason);
	cr_assert(wal_seg_file_exists(dir, 3), "the new segment 3 was deleted as released");
	cr_assert_eq(aurawal_close(log), 0);
}

/* The SYNC marks of segment n. */
static int marks_in(aurawal_t *log, uint64_t n)
{
	aurawal_record_t r;
	aurawal_iter_t *it;
	int marks = 0;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ .segment = n }, &it), 0);
	while (aurawal_iter_next_record(it, &r) == 1 && r.loc.segment == n)
		marks += r.type == AURAWAL_RECORD_SYNC;
	aurawal_iter_close(it);
	return marks;
}

/* With flush_on_rollover the previous segment is durable before anything is written
 * into the next: its first write, durable or not, carries the SYNC mark that says so. */
Test(wal_rollover, with_flush_on_rollover_each_new_segment_starts_with_a_sync_mark)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;

	o.flush_on_rollover = true;
	log = wal_open_ok(dir, &o);
	append_until(log, 3);
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(marks_in(log, 1), 0, "the first segment follows nothing");
	cr_assert_eq(marks_in(log, 2), 1, "segment 2 holds %d SYNC marks", marks_in(log, 2));
	cr_assert_eq(marks_in(log, 3), 1, "segment 3 holds %d SYNC marks", marks_in(log, 3));
	cr_assert_eq(aurawal_close(log), 0);
}

/*
 * Non-durable appends through segment 3, a clean close, then the last sealed segment
 * damaged (its SEAL and seal block zeroed; then the file emptied): each is corruption -
 * the open fails, reports it, drops nothing, keeps segment 3. With flush_on_rollover it
 * was taken for a rollover whose flush was never made (there is none in that mode): the
 * open dropped it and every segment after it, reported as holding nothing acknowledged.
 */
static void damaged_last_sealed_segment_is_corruption(bool flush_on_rollover)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	char path[512];
	aurawal_t *log;
	uint64_t end2;

	o.flush_on_rollover = flush_on_rollover;
	log = wal_open_ok(dir, &o);
	append_until(log, 3);
	end2 = data_end(log, 2);
	cr_assert_eq(aurawal_close(log), 0);

	zero_bytes(2, end2 - 40, 40); /* the SEAL */
	zero_bytes(2, 64, 56);	      /* and its seal block */
	wal_seg_file(path, sizeof(path), dir, 2);
	for (int emptied = 0; emptied < 2; emptied++) {
		if (emptied)
			cr_assert_eq(truncate(path, 0), 0, "%s", strerror(errno));
		memset(&rs, 0, sizeof(rs));
		cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT, "%s",
			     emptied ? "segment 2 emptied" : "SEAL and seal block lost");
		cr_assert_geq(rs.corruption, 1);
		cr_assert_eq(rs.dropped, 0, "nothing dropped as never acknowledged");
		cr_assert(wal_seg_file_exists(dir, 3), "segment 3 is kept");
	}
}

Test(wal_rollover, with_flush_on_rollover_damage_to_the_last_sealed_segment_is_corruption)
{
	damaged_last_sealed_segment_is_corruption(true);
}

/* Without flush_on_rollover the close pays what the rollovers owe, and its durable
 * write carries the active segment's mark: the same damage is corruption too. */
Test(wal_rollover, after_a_clean_close_damage_to_the_last_sealed_segment_is_corruption)
{
	damaged_last_sealed_segment_is_corruption(false);
}
