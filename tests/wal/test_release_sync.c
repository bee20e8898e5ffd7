/* SPDX-License-Identifier: MIT */
/* Releasing segments safely: a segment is released only once its last batch is written
 * and durable, RELEASED is replaced only after earlier removals are durable, and a
 * release whose record or directory sync fails keeps its segment or says what it did. */
#include <signal.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_internal_test.h" /* record sizes; waiting for the ready segment */
#include "wal_release.h"
#include "wal_test.h"

/* ---- a segment is released only once its last batch is written and durable ---- */

#define RLEN 1000

/* Append buffered records until the next one would roll segment `seg` over, make them
 * durable, then make every write to that segment's file fail with ENOSPC and append
 * that one: the segment's SEAL is then queued and cannot be written (nor anything after
 * it). Returns the new record's location. */
static aurawal_loc_t roll_over_with_the_seal_stuck(aurawal_t *log, auraio_engine_t *e, uint64_t seg,
						   uint64_t *i)
{
	aurawal_loc_t loc = { 0 };
	auraio_fault_t nospace = { .ops = AURAIO_FAULT_OP_WRITE,
				   .count = 0,
				   .kind = AURAIO_FAULT_ERROR,
				   .error = ENOSPC };

	do
		append_i(log, (*i)++, RLEN, 0, &loc);
	while (loc.offset + 2 * wal_rec_size(RLEN) + wal_rec_size(8) <= SMALL_SEGMENT);
	cr_assert_eq(loc.segment, seg);
	cr_assert_eq(aurawal_sync(log), 0);
	/* the next segment must be ready before writes fail, or the rollover cannot happen */
	pthread_mutex_lock(&log->mu);
	while (!log->ready && !log->space_err)
		pthread_cond_wait(&log->cv_ready, &log->mu);
	cr_assert_not_null(log->ready, "no ready segment: %s", aurawal_strerror(log->space_err));
	nospace.fd = log->active->fd;
	pthread_mutex_unlock(&log->mu);
	cr_assert_eq(auraio_fault_set(e, &nospace), 0);
	append_i(log, (*i)++, RLEN, 0, &loc); /* buffered: returns before any write */
	cr_assert_eq(loc.segment, seg + 1, "this append should have rolled the segment over");
	return loc;
}

Test(wal_release, release_before_waits_for_a_segment_whose_seal_is_not_written_yet)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_stats_t st;
	aurawal_loc_t loc, last;
	aurawal_t *log;
	uint64_t i = 0, s;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	loc = roll_over_with_the_seal_stuck(log, e, 1, &i);
	/* Segment 1's SEAL cannot be written: releasing it now would close its file under
	 * the writer (which then fails the log with EBADF, or writes into whatever file
	 * got the fd number). The release must not happen. */
	cr_assert_eq(aurawal_release_before(log, loc), -ENOSPC);
	cr_assert(wal_seg_file_exists(dir, 1), "segment 1 was released with its seal unwritten");
	auraio_fault_clear(e);
	s = append_i(log, i, RLEN, AURAWAL_DURABLE, &last); /* retries the queued batches */
	cr_assert_eq(aurawal_release_before(log, loc), 1);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, 0, "the log failed: %s", aurawal_strerror(st.failed));
	read_check(log, last, i, s);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	o.engine = NULL;
	log = wal_open_ok(dir, &o);
	read_check(log, last, i, s);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_release, release_segment_waits_for_the_seal_of_the_segment_it_releases)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_segment_info_t segs[8];
	aurawal_loc_t first, last;
	aurawal_t *log;
	uint64_t i = 1, s0, s;
	size_t n;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	s0 = append_i(log, 0, RLEN, AURAWAL_DURABLE, &first);
	roll_over_with_the_seal_stuck(log, e, 1, &i);
	/* The failed write must have happened before the fault is cleared: one still in
	 * flight then fails every append waiting behind it, the next one included. */
	cr_assert_eq(aurawal_sync(log), -ENOSPC);
	auraio_fault_clear(e);
	append_i(log, i++, RLEN, AURAWAL_DURABLE, NULL);
	roll_over_with_the_seal_stuck(log, e, 2, &i);
	/* segment 2 (not the oldest: a gap RELEASED must record) has its SEAL stuck */
	cr_assert_eq(aurawal_release_segment(log, 2), -ENOSPC);
	cr_assert(wal_seg_file_exists(dir, 2), "segment 2 was released with its seal unwritten");
	auraio_fault_clear(e);
	s = append_i(log, i, RLEN, AURAWAL_DURABLE, &last);
	cr_assert_eq(aurawal_release_segment(log, 2), 0);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	o.engine = NULL;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(segs[0].number, 1);
	cr_assert_eq(segs[1].number, 3);
	read_check(log, first, 0, s0);
	read_check(log, last, i, s);
	cr_assert_eq(aurawal_close(log), 0);
}

/* What a store (and walbench --recycle) does: buffered appends, and at each new segment
 * a release of the ones before - while their SEAL may still be queued in the writer. */
Test(wal_release, buffered_appends_with_a_release_at_each_rollover_keep_the_log_healthy)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { LEN = 60000, ROLLOVERS = 60 };
	aurawal_loc_t loc = { 0 }, first_kept = { 0 };
	aurawal_stats_t st;
	aurawal_iter_t *it;
	uint64_t seg = 1, i = 0, first_i = 0, n = 0, seq;
	const void *p;
	size_t len;
	int rc;

	while (seg <= ROLLOVERS) {
		append_i(log, i++, LEN, 0, &loc);
		if (loc.segment == seg)
			continue;
		seg = loc.segment;
		first_kept = loc;
		first_i = i - 1;
		rc = aurawal_release_before(log, loc);
		cr_assert_geq(rc, 0, "release at segment %llu: %s", (unsigned long long) seg,
			      aurawal_strerror(rc));
	}
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, 0, "the log failed: %s", aurawal_strerror(st.failed));
	cr_assert_eq(aurawal_close(log), 0);
	/* the segments kept hold exactly the records appended since the last release */
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1) {
		if (n == 0)
			cr_assert_eq(loc.segment, first_kept.segment);
		cr_assert(payload_check(p, len, first_i + n), "record %llu is damaged",
			  (unsigned long long) (first_i + n));
		n++;
	}
	cr_assert_eq(rc, 0, "iteration: %s", aurawal_strerror(rc));
	cr_assert_eq(first_i + n, i);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
}

/* aurawal.h: a release_before() becomes durable with the next durable append, sync or
 * close. A sync with every record durable already returned at once: the directory,
 * where the release renamed and removed files, was not synced - it is now, and its
 * failure is the sync's (and fails the log, as when a durable write pays it). */
Test(wal_release, a_sync_after_release_before_syncs_the_directory_even_with_every_record_durable)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR };
	aurawal_loc_t loc = { 0 };
	aurawal_stats_t st;
	aurawal_t *log;
	uint64_t i = 0;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	while (loc.segment < 3)
		append_i(log, i++, RLEN, 0, &loc);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_release_before(log, loc), 2);
	f.fd = wal_dir_fd(log);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_sync(log), -EIO, "the release's directory sync was not made");
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.failed, -EIO);
	aurawal_close(log);
	auraio_destroy(e);
}

static void read_released(char *buf, size_t size)
{
	char path[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/RELEASED", dir);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	n = read(fd, buf, size - 1);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	close(fd);
}

/* A RELEASED that stops naming a segment (below the oldest now) replaces the old one
 * only once the directory holds the removals no sync covered yet (release_before's,
 * without flush_on_rollover): otherwise a crash could keep segments 1 and 2 and lose
 * the record of 3's gap. So with the directory sync failing, RELEASED is not replaced.
 * It used to be renamed first, the directory synced after. */
Test(wal_release, released_is_replaced_only_after_earlier_removals_are_durable)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR };
	char before[256], after[256];
	aurawal_t *log;

	five_segments(first, seq);
	o.engine = e;
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	cr_assert_eq(aurawal_release_segment(log, 3), 0);
	cr_assert_eq(aurawal_release_before(log, first[3]), 2); /* 1 and 2, without a sync */
	read_released(before, sizeof(before));
	f.fd = wal_dir_fd(log);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_release_segment(log, 5), -EIO);
	read_released(after, sizeof(after));
	cr_assert_str_eq(after, before, "RELEASED was replaced before the removals were durable");
	aurawal_close(log);
	auraio_destroy(e);
}

/* Recording the gap in RELEASED fails (its write or its sync): the release fails with
 * the error, the segment stays - readable now and after reopening - and a later release
 * of it succeeds. */
Test(wal_release, a_release_whose_record_cannot_be_written_keeps_the_segment)
{
	static const unsigned ops[] = { AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_OP_FSYNC };
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	struct reports rs = { 0 };

	five_segments(first, seq);
	for (int i = 0; i < 2; i++) {
		auraio_engine_t *e = test_faulty_engine();
		aurawal_options_t o = wal_opts(&rs);
		aurawal_t *log;

		o.engine = e;
		log = wal_open_ok(dir, &o);
		wal_preparer_idle(log); /* so the fault hits RELEASED's write or sync */
		test_fault_error(e, ops[i], 0, 1, EIO);
		cr_assert_eq(aurawal_release_segment(log, 3), -EIO);
		auraio_fault_clear(e);
		read_check(log, first[2], idx[2], seq[2]);
		cr_assert_eq(aurawal_close(log), 0);
		auraio_destroy(e);
		o = wal_opts(&rs);
		log = wal_open_ok(dir, &o);
		cr_assert_eq(rs.corruption, 0, "%s", rs.reason);
		read_check(log, first[2], idx[2], seq[2]);
		cr_assert_eq(aurawal_close(log), 0);
	}
	{
		aurawal_options_t o = wal_opts(&rs);
		aurawal_t *log = wal_open_ok(dir, &o);
		char buf[1000];

		cr_assert_eq(aurawal_release_segment(log, 3), 0);
		cr_assert_eq(aurawal_read(log, first[2], buf, sizeof(buf), NULL, NULL), -ENOENT);
		cr_assert_eq(aurawal_close(log), 0);
		log = wal_open_ok(dir, &o);
		cr_assert_eq(rs.corruption, 0, "%s", rs.reason);
		read_check(log, first[3], idx[3], seq[3]);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

/* Segments in the log now (numbers), at most 16. */
static size_t list_numbers(aurawal_t *log, uint64_t *out)
{
	aurawal_segment_info_t segs[16];
	size_t n = 0;

	cr_assert_eq(aurawal_list_segments(log, segs, 16, &n), 0);
	for (size_t i = 0; i < n && i < 16; i++)
		out[i] = segs[i].number;
	return n;
}

/* The log opened on a faulty engine with its directory clean: the preparer idle, and
 * the renames it made synced - so a release's first directory sync is its own. */
static aurawal_t *open_clean(auraio_engine_t *e, struct reports *rs, bool flush_on_rollover)
{
	aurawal_options_t o = wal_opts(rs);
	aurawal_t *log;

	o.engine = e;
	o.flush_on_rollover = flush_on_rollover;
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	cr_assert_eq(aurawal_sync(log), 0);
	return log;
}

/* A failed directory sync stays owed: with every directory sync failing, the next
 * aurawal_sync() fails on it. The fault is cleared after. */
static void sync_still_owes_the_directory(auraio_engine_t *e, aurawal_t *log)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC,
			     .fd = wal_dir_fd(log),
			     .kind = AURAIO_FAULT_ERROR };

	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_sync(log), -EIO, "the directory sync is still owed");
	auraio_fault_clear(e);
}

/*
 * release_before with flush_on_rollover syncs the directory at once; that sync failing
 * does not undo the release: the segments are out of the log. It returned the sync's
 * -EIO all the same, so the caller took them for kept. It returns their number, as
 * aurawal.h says, and the directory stays owed: the next sync syncs it (its failure
 * fails the log), and what a crash before that may do is what it may do after a
 * release without flush_on_rollover - find them again in front of the log.
 */
Test(wal_release, release_before_whose_directory_sync_fails_returns_what_it_released)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5], nums[16];
	auraio_engine_t *e = test_faulty_engine();
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC, .kind = AURAIO_FAULT_ERROR, .count = 1 };
	struct reports rs = { 0 };
	auraio_stats_t st;
	aurawal_t *log;

	five_segments(first, seq);
	log = open_clean(e, &rs, true);
	f.fd = wal_dir_fd(log);
	f.error = EIO;
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurawal_release_before(log, first[2]), 2, "the release is done");
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.faults_injected, 1, "the directory sync was made, and failed");
	cr_assert_eq(list_numbers(log, nums), 4);
	cr_assert_eq(nums[0], 3);
	cr_assert_eq(aurawal_release_before(log, first[2]), 0, "a retry has nothing to do");
	sync_still_owes_the_directory(e, log);
	aurawal_close(log);
	auraio_destroy(e);
	/* The failed directory sync failed the log, and the reporter heard it. */
	cr_assert_eq(rs.failed, 1, "%s", rs.reason);
	cr_assert(strstr(rs.reason, "directory"), "%s", rs.reason);
	rs = (struct reports){ 0 };
	{
		aurawal_options_t o = wal_opts(&rs);

		log = wal_open_ok(dir, &o);
		cr_assert_eq(rs.n, 0, "%s", rs.reason);
		cr_assert_eq(list_numbers(log, nums), 4);
		read_check(log, first[2], idx[2], seq[2]);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

/* RELEASED's text holds the line "<n>". */
static bool released_names(uint64_t n)
{
	char buf[256], line[32];

	read_released(buf, sizeof(buf));
	snprintf(line, sizeof(line), "%llu\n", (unsigned long long) n);
	if (strncmp(buf, line, strlen(line)) == 0)
		return true;
	snprintf(line, sizeof(line), "\n%llu\n", (unsigned long long) n);
	return strstr(buf, line) != NULL;
}

/* Five segments, the log opened on faulty engine e, and the next directory sync of the
 * log after `skip` of them failing with EIO (once). */
static aurawal_t *five_with_a_dir_sync_failing(auraio_engine_t *e, struct reports *rs,
					       aurawal_loc_t *first, uint64_t *seq, uint64_t skip)
{
	auraio_fault_t f = { .ops = AURAIO_FAULT_OP_FSYNC,
			     .kind = AURAIO_FAULT_ERROR,
			     .skip = skip,
			     .count = 1,
			     .error = EIO };
	aurawal_t *log;

	five_segments(first, seq);
	log = open_clean(e, rs, false);
	f.fd = wal_dir_fd(log);
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	return log;
}

/*
 * release_segment of a segment in the middle: RELEASED names it (durably) before its
 * file goes, so the next open deletes the file whatever the directory held at a crash.
 * The directory sync after the removal failing changes nothing of that - yet the call
 * returned -EIO, the segment gone from the log (a retry: -ENOENT). It returns 0; the
 * sync stays owed, paid by the next sync or close.
 */
Test(wal_release, release_segment_whose_last_directory_sync_fails_is_done_once_recorded)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5], nums[16];
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	auraio_stats_t st;
	aurawal_t *log;
	char buf[1000];

	/* skip 1: RELEASED's own directory sync succeeds */
	log = five_with_a_dir_sync_failing(e, &rs, first, seq, 1);
	cr_assert_eq(aurawal_release_segment(log, 3), 0, "recorded in RELEASED: released");
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.faults_injected, 1, "the last directory sync was made, and failed");
	cr_assert(released_names(3));
	cr_assert_not(wal_seg_file_exists(dir, 3));
	cr_assert_eq(aurawal_release_segment(log, 3), -ENOENT);
	cr_assert_eq(list_numbers(log, nums), 5);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.n, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_read(log, first[2], buf, sizeof(buf), NULL, NULL), -ENOENT);
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_close(log), 0);
}

/*
 * The oldest segment's release writes no RELEASED: only the directory sync after its
 * removal makes it durable. That failing, the call says so (-EIO), though the segment
 * is out of the log (a retry: -ENOENT); the sync stays owed - the next sync makes it,
 * and fails the log if it fails - and until then a crash may find the segment again in
 * front of the log, as after release_before.
 */
Test(wal_release, release_segment_of_the_oldest_whose_directory_sync_fails_says_so)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5], nums[16];
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_t *log = five_with_a_dir_sync_failing(e, &rs, first, seq, 0);

	cr_assert_eq(aurawal_release_segment(log, 1), -EIO);
	cr_assert_not(wal_seg_file_exists(dir, 1));
	cr_assert_eq(aurawal_release_segment(log, 1), -ENOENT, "released all the same");
	cr_assert_eq(list_numbers(log, nums), 5);
	cr_assert_eq(nums[0], 2);
	sync_still_owes_the_directory(e, log);
	aurawal_close(log);
	auraio_destroy(e);
}

/*
 * RELEASED is renamed into place, then the directory synced: that sync failing fails
 * the release, and the segment stays in the log - but the new RELEASED naming it was
 * left in place, so the next open deleted the segment the caller was told was kept.
 * The old record is put back: the segment stays, now and after reopening.
 */
Test(wal_release, a_release_whose_record_is_renamed_but_not_synced_keeps_the_segment)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	auraio_stats_t st;
	aurawal_t *log = five_with_a_dir_sync_failing(e, &rs, first, seq, 0);

	cr_assert_eq(aurawal_release_segment(log, 3), -EIO);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.faults_injected, 1, "RELEASED's directory sync was made, and failed");
	cr_assert_not(released_names(3), "RELEASED still names the segment kept");
	read_check(log, first[2], idx[2], seq[2]);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.n, 0, "%s", rs.reason);
	read_check(log, first[2], idx[2], seq[2]);
	cr_assert_eq(aurawal_release_segment(log, 3), 0, "a retry releases it");
	cr_assert_eq(aurawal_close(log), 0);
}
