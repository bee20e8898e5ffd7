/* SPDX-License-Identifier: MIT */
/*
 * Recovery across segment files: segments renamed to another number or swapped, the last
 * or the ready segment cut inside its header block, damage in or after RELEASED's checksum
 * line, and point-in-time cuts of a log whose process stopped anywhere.
 */
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_format.h" /* record sizes, to find records in the files */
#include "wal_internal_test.h"
#include "wal_recovery.h"
#include "wal_test.h"

/* ---- segment files renamed ---- */

static aurawal_loc_t mlocs[2000];
static uint64_t mseqs[2000];

/* A closed log whose records fill segments 1..3 (3 active, 4 made ready); with
 * `release_first`, segment 1 released (deleted). The number of records. */
static int make_log_of_3_segments(bool release_first)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	int n = 0;

	o.recycle_segments = false;
	log = wal_open_ok(dir, &o);
	do {
		cr_assert_lt(n, 2000);
		mseqs[n] = append_i(log, (uint64_t) n, 4000, 0, &mlocs[n]);
		n++;
	} while (mlocs[n - 1].segment < 3);
	if (release_first)
		cr_assert_eq(aurawal_release_before(log, mlocs[n - 1]), 2);
	/* Segment 4 exists only once the preparer has made it: the rollover to 3 only asked
	 * for it, and a close that came before the preparer woke left it out. */
	wal_preparer_idle(log);
	cr_assert_eq(aurawal_close(log), 0);
	return n;
}

static void rename_seg(uint64_t from, uint64_t to)
{
	char a[512], b[512];

	wal_seg_file(a, sizeof(a), dir, from);
	wal_seg_file(b, sizeof(b), dir, to);
	cr_assert_eq(rename(a, b), 0, "%s: %s", a, strerror(errno));
}

/* Swap the names of segment files a and b. */
static void swap_segs(uint64_t a, uint64_t b)
{
	rename_seg(a, 99);
	rename_seg(b, a);
	rename_seg(99, b);
}

/* A strict and a point-in-time open both fail AURAWAL_ECORRUPT, deleting no file 1..4. */
static void refused_keeping_every_file(struct reports *rs)
{
	for (int mode = 0; mode < 2; mode++) {
		int rc;
		aurawal_t *log = open_mode(
		    mode ? AURAWAL_RECOVER_POINT_IN_TIME : AURAWAL_RECOVER_STRICT, rs, &rc);

		cr_assert_eq(rc, AURAWAL_ECORRUPT, "open: %s", aurawal_strerror(rc));
		cr_assert_null(log);
		for (uint64_t k = 1; k <= 4; k++)
			cr_assert(wal_seg_file_exists(dir, k), "segment file %llu was deleted",
				  (unsigned long long) k);
	}
}

/* A strict open reads each of the n records make_log_of_3_segments appended. */
static void every_record_is_read(struct reports *rs, int n)
{
	int rc;
	aurawal_t *log = open_mode(AURAWAL_RECOVER_STRICT, rs, &rc);

	cr_assert_eq(rc, 0, "%s", aurawal_strerror(rc));
	for (int i = 0; i < n; i++)
		read_check(log, mlocs[i], (uint64_t) i, mseqs[i]);
	aurawal_close(log);
}

/* A file whose intact header names a later segment of the log is taken for a spare
 * whose recycling renames were lost, and deleted - but only when no segment file at or
 * above that number exists: a segment file renamed to a lower number (here the oldest,
 * renamed below it) was deleted, and the open succeeded without its records. */
Test(wal_recovery, a_segment_renamed_to_a_lower_number_is_corruption_not_a_spare)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	int rc;

	make_log_of_3_segments(true);
	cr_assert_not(wal_seg_file_exists(dir, 1));
	cr_assert_not(wal_seg_file_exists(dir, 2));
	rename_seg(3, 1);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "strict open: %s", aurawal_strerror(rc));
	cr_assert_null(log);
	cr_assert_geq(rs.corruption, 1);
	cr_assert(wal_seg_file_exists(dir, 1), "the misnamed segment was deleted");
	rename_seg(1, 3); /* put back: every record is there */
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0, "%s", aurawal_strerror(rc));
	for (int i = 0; mlocs[i].segment; i++)
		if (mlocs[i].segment == 3)
			read_check(log, mlocs[i], (uint64_t) i, mseqs[i]);
	aurawal_close(log);
}

/* Two segment files swapped (the oldest and the empty ready one): the oldest's records
 * must not be dropped - the file named 1 holds the ready segment's header, the file
 * named 4 the oldest's: neither is a spare, and the open fails deleting nothing. */
Test(wal_recovery, swapped_segment_files_are_corruption_and_nothing_is_deleted)
{
	struct reports rs = { 0 };
	int n;

	n = make_log_of_3_segments(false);
	cr_assert(wal_seg_file_exists(dir, 4), "the ready segment");
	swap_segs(1, 4);
	refused_keeping_every_file(&rs);
	swap_segs(1, 4);
	every_record_is_read(&rs, n);
}

/* Two segments in the middle swapped: each file holds an intact header of another
 * segment of the log. Taken for a break with no evidence readable under the files'
 * names (their records are checked with the other segment's seed), they were dropped -
 * deleted, and the open succeeded without their records. No crash swaps names: the
 * open fails, deleting nothing, in every mode but inspect. */
Test(wal_recovery, swapped_segments_in_the_middle_are_corruption_and_nothing_is_deleted)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	int n, rc;

	n = make_log_of_3_segments(false);
	swap_segs(2, 3);
	refused_keeping_every_file(&rs);
	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
	cr_assert_eq(rc, 0, "inspect: %s", aurawal_strerror(rc));
	cr_assert_geq(rs.corruption, 1);
	aurawal_close(log);
	swap_segs(2, 3);
	every_record_is_read(&rs, n);
}

/* The last segment holding records of a closed log cut inside its header block (its
 * close block goes with it). It was taken for a segment whose rollover a crash never
 * flushed and dropped with its records as information: the open succeeded without them.
 * No crash leaves a numbered segment file short - it gets its full size before its
 * number - so a cut file is damage: the open fails, deleting nothing. */
Test(wal_recovery, the_last_segment_cut_inside_its_header_block_is_corruption)
{
	static const off_t cuts[] = { 0, 100, 4095 };

	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		struct reports rs = { 0 };
		aurawal_t *log;
		char path[512];
		int n, rc;

		rm_tree(dir);
		cr_assert_eq(mkdir(dir, 0755), 0);
		n = make_log_of_3_segments(false);
		cr_assert_eq(mlocs[n - 1].segment, 3);
		wal_seg_file(path, sizeof(path), dir, 3);
		cr_assert_eq(truncate(path, cuts[c]), 0);
		for (int again = 0; again < 2; again++) { /* the first changed nothing */
			memset(&rs, 0, sizeof(rs));
			log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
			cr_assert_eq(rc, AURAWAL_ECORRUPT, "cut to %lld: %s (%s)",
				     (long long) cuts[c], aurawal_strerror(rc), rs.reason);
			cr_assert_null(log);
			cr_assert_geq(rs.corruption, 1);
			cr_assert_eq(rs.dropped, 0, "dropped: %s", rs.reason);
			cr_assert(wal_seg_file_exists(dir, 3) && wal_seg_file_exists(dir, 4),
				  "a segment was deleted");
		}
		log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
		cr_assert_eq(rc, 0, "inspect: %s", aurawal_strerror(rc));
		for (int i = 0; i < n && mlocs[i].segment < 3; i++)
			read_check(log, mlocs[i], (uint64_t) i, mseqs[i]);
		aurawal_close(log);
	}
}

/* The empty segment made ready before the close, cut the same way: segment 3's close
 * block proves it held no record. Nothing is lost; it is dropped as information. */
Test(wal_recovery, the_empty_ready_segment_cut_inside_its_header_block_loses_nothing)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	char path[512];
	int n, rc;

	n = make_log_of_3_segments(false);
	wal_seg_file(path, sizeof(path), dir, 4);
	cr_assert_eq(truncate(path, 100), 0);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0, "%s (%s)", aurawal_strerror(rc), rs.reason);
	cr_assert_eq(rs.corruption, 0, "%s", rs.reason);
	cr_assert_geq(rs.dropped, 1, "the cut file is said");
	for (int i = 0; i < n; i++)
		read_check(log, mlocs[i], (uint64_t) i, mseqs[i]);
	append_i(log, (uint64_t) n, 4000, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
}

/* RELEASED ends with its checksum line, "end <16 hex digits>\n" (docs/wal_format.md):
 * bytes after it, or that line's own newline damaged, were never checked - the parser
 * took the last line starting with "end " and read a number from it - so garbage
 * appended to the file, or a flipped bit there, went unreported. */
Test(wal_recovery, bytes_after_or_in_releaseds_checksum_line_are_corruption)
{
	static const char *const tails[] = { "x", "\n", "7\n", "end 0\n", "\0" };
	aurawal_options_t o = wal_opts(NULL);
	char path[512], text[256];
	aurawal_t *log;
	ssize_t len;
	int fd, rc;

	make_log_of_3_segments(false);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_release_segment(log, 2), 0);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/RELEASED", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	len = pread(fd, text, sizeof(text), 0);
	cr_assert_gt(len, 21);
	cr_assert_eq(text[len - 1], '\n');
	for (size_t k = 0; k <= sizeof(tails) / sizeof(tails[0]); k++) {
		struct reports rs = { 0 };

		if (k < sizeof(tails) / sizeof(tails[0])) { /* appended */
			size_t n = strlen(tails[k]) ? strlen(tails[k]) : 1;

			cr_assert_eq(pwrite(fd, tails[k], n, len), (ssize_t) n);
		} else { /* the last newline flipped */
			char c = '\n' ^ 0x01;

			cr_assert_eq(pwrite(fd, &c, 1, len - 1), 1);
		}
		log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
		cr_assert_eq(rc, AURAWAL_ECORRUPT, "damage %zu: strict open: %s", k,
			     aurawal_strerror(rc));
		cr_assert_eq(rs.corruption, 1);
		cr_assert_eq(ftruncate(fd, len), 0); /* restore */
		cr_assert_eq(pwrite(fd, text, (size_t) len, 0), len);
	}
	close(fd);
	log = open_mode(AURAWAL_RECOVER_STRICT, NULL, &rc);
	cr_assert_eq(rc, 0, "restored: %s", aurawal_strerror(rc));
	aurawal_close(log);
}

/* ---- a point-in-time cut interrupted ---- */

/* A point-in-time open whose I/O fails from its `skip`-th operation on, as if the machine
 * stopped there (a failed operation writes nothing; those before it reached the files). */
static int pit_open_stopped_after(uint64_t skip)
{
	auraio_engine_t *e = test_faulty_engine();
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs); /* quiet */
	aurawal_t *log = NULL;
	int rc;

	o.engine = e;
	o.recovery = AURAWAL_RECOVER_POINT_IN_TIME;
	test_fault_error(e, 0, skip, 0, EIO);
	rc = aurawal_open(dir, &o, &log);
	auraio_fault_clear(e);
	if (rc == 0)
		aurawal_close(log);
	auraio_destroy(e);
	return rc;
}

/* Valid records an inspecting open finds in segment `seg` after offset `off`. */
static int records_after(uint64_t seg, uint64_t off)
{
	struct reports rs = { 0 };
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	const void *p;
	aurawal_t *log;
	size_t len;
	int n = 0, rc;

	log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
	cr_assert_eq(rc, 0, "inspect: %s", aurawal_strerror(rc));
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while (aurawal_iter_next(it, &loc, NULL, &p, &len) == 1)
		n += loc.segment == seg && loc.offset > off;
	aurawal_iter_close(it);
	aurawal_close(log);
	return n;
}

/* A closed log (one segment with a close block, or three with seal blocks) with a payload
 * byte of record `*keep` flipped: a point-in-time open keeps the `*keep` records before
 * it. Returns the damaged record's location. */
static aurawal_loc_t damaged_closed_log(bool three_segments, int *keep)
{
	aurawal_loc_t at;
	char path[512];
	uint8_t c;
	int fd, n;

	rm_tree(dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	if (!three_segments) {
		make_log();
		*keep = 25;
		at = locs[25];
	} else {
		n = make_log_of_3_segments(false);
		for (*keep = 0; mlocs[*keep].segment < 2; (*keep)++)
			;
		at = mlocs[*keep];
		cr_assert(*keep + 1 < n && mlocs[*keep + 1].segment == 2, "a record follows it");
	}
	wal_seg_file(path, sizeof(path), dir, at.segment);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &c, 1, (off_t) at.offset + 32 + 17), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t) at.offset + 32 + 17), 1);
	close(fd);
	return at;
}

/*
 * Point-in-time recovery cuts the log at damage: it zeroes the segment's records after
 * it and drops the later segments. A crash part-way must not leave a log that a strict
 * open reports as corrupt with nothing valid after the damage any more: the cut zeroed
 * the records while the segment's summary still named them - a close block (the log's
 * end beyond the records now gone) or a seal block (durable evidence for a break, with
 * the later segments not yet deleted). The summary is removed, durably, first, and the
 * later segments deleted before the records are zeroed. After a stop at each I/O of the
 * open: a strict open succeeds with the records before the damage, or fails on damage
 * that valid records still follow; and point-in-time recovery finishes the cut.
 */
static void pit_cut_stopped_anywhere(bool three_segments)
{
	uint64_t skip;

	for (skip = 0; skip < 1000; skip++) {
		struct reports rs = { 0 };
		aurawal_t *log;
		int keep, rc;
		aurawal_loc_t at = damaged_closed_log(three_segments, &keep);

		if (pit_open_stopped_after(skip) == 0)
			break; /* no step left to stop at */
		log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
		if (rc == 0) {
			cr_assert_eq(rs.corruption, 0, "stop at %llu: %s",
				     (unsigned long long) skip, rs.reason);
			cr_assert_eq(count_records(log, NULL), keep);
			aurawal_close(log);
		} else {
			cr_assert_eq(rc, AURAWAL_ECORRUPT, "stop at %llu: %s",
				     (unsigned long long) skip, aurawal_strerror(rc));
			cr_assert_gt(records_after(at.segment, at.offset), 0,
				     "stop at %llu: corruption reported, nothing valid after the "
				     "damage: %s",
				     (unsigned long long) skip, rs.reason);
		}
		log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, &rs, &rc);
		cr_assert_eq(rc, 0, "stop at %llu: %s", (unsigned long long) skip,
			     aurawal_strerror(rc));
		cr_assert_eq(count_records(log, NULL), keep);
		aurawal_close(log);
		memset(&rs, 0, sizeof(rs));
		log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
		cr_assert_eq(rc, 0, "stop at %llu, cut again: %s", (unsigned long long) skip,
			     rs.reason);
		cr_assert_eq(count_records(log, NULL), keep);
		aurawal_close(log);
	}
	cr_assert_gt(skip, 3, "the open stopped at no step");
	cr_assert_lt(skip, 1000, "the open never got through");
}

Test(wal_recovery, a_point_in_time_cut_of_a_closed_segment_stopped_anywhere_is_no_false_corruption)
{
	pit_cut_stopped_anywhere(false);
}

Test(wal_recovery, a_point_in_time_cut_of_a_sealed_segment_stopped_anywhere_is_no_false_corruption)
{
	pit_cut_stopped_anywhere(true);
}

/* A segment file cut short (not at a block boundary) after damage: point-in-time recovery
 * cuts the log at the damage. Its zeroing wrote a partial last block with O_DIRECT
 * (EINVAL: the open failed with an undocumented error), and skipped the block of the cut
 * when it reached past the file's end, leaving valid records after the damage there -
 * found again by the next open if the process died before appending or closing (a close
 * block hides them). */
Test(wal_recovery, a_point_in_time_cut_of_a_segment_file_cut_short_holds)
{
	const int ends[] = { 30, 45 }; /* in the block of the damage (17..35), after it */

	for (int k = 0; k < 2; k++) {
		struct reports rs = { 0 };
		aurawal_t *log;
		int keep, fd, rc, st;
		pid_t pid;

		damaged_closed_log(false, &keep);
		fd = seg_fd();
		cr_assert_eq(ftruncate(fd, (off_t) locs[ends[k]].offset + 100), 0);
		close(fd);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) { /* opens, cuts, and dies without closing */
			log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, &rs, &rc);
			_exit(rc == 0 ? (count_records(log, NULL) == keep ? 0 : 1) : 2);
		}
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "cut at record %d: the point-in-time open failed (%d)", ends[k],
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
		cr_assert_eq(rc, 0, "cut at record %d, strict: %s", ends[k], rs.reason);
		cr_assert_eq(rs.corruption + rs.dropped, 0, "%s", rs.reason);
		cr_assert_eq(count_records(log, NULL), keep);
		append_i(log, (uint64_t) keep, RLEN, AURAWAL_DURABLE, NULL);
		cr_assert_eq(aurawal_close(log), 0);
	}
}
