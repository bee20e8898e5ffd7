/* SPDX-License-Identifier: MIT */
/*
 * Recovery and failures: truncated and zeroed tails, flipped bytes mid-log (in each
 * recovery mode), torn writes at every 512-byte boundary of the tail block, EIO on the
 * write and on the sync (fail-stop), ENOSPC (appends succeed again once it clears), a
 * short write inside the write+sync chain, and the kernel refusing entries for a while.
 */
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_format.h" /* record sizes, to find records in the files */
#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_recovery);

#define NREC 50
#define RLEN 200

static aurawal_loc_t locs[NREC];
static uint64_t seqs[NREC];

/* A closed log of NREC records; removes the (empty) ready segment so the log is seg 1. */
static void make_log(void)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	char path[512];

	for (int i = 0; i < NREC; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/0000000000000002.seg", dir);
	unlink(path); /* the ready segment holds nothing */
}

static int seg_fd(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	return fd;
}

/* make_log(), then the log as a crash leaves it: without the close block (an open
 * removes it before appending). A close block vouches for every record up to its end, so
 * a tail cut or torn short of it is damage, not what a crash leaves (docs/wal_format.md,
 * "Recovery rule"). */
static void make_crashed_log(void)
{
	uint8_t zero[SM_END - SM_MARKER] = { 0 };
	int fd;

	make_log();
	fd = seg_fd();
	cr_assert_eq(pwrite(fd, zero, sizeof(zero), SM_MARKER), (ssize_t) sizeof(zero));
	close(fd);
}

/* Records a log yields, oldest first: their payload indices must be 0, 1, 2, ...
 * (records after the first `check` are not checked: unacknowledged ones may exist) */
static int count_records_upto(aurawal_t *log, const int *skip, int check)
{
	aurawal_iter_t *it;
	const void *p;
	size_t len;
	int n = 0, idx = 0, rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, &p, &len)) == 1) {
		if (skip && idx == *skip)
			idx++;
		if (idx < check)
			cr_assert(payload_check(p, len, (uint64_t) idx), "record %d wrong", idx);
		idx++;
		n++;
	}
	cr_assert_eq(rc, 0, "iteration: %s", aurawal_strerror(rc));
	aurawal_iter_close(it);
	return n;
}

static int count_records(aurawal_t *log, const int *skip)
{
	return count_records_upto(log, skip, INT32_MAX);
}

static aurawal_t *open_mode(aurawal_recovery_t mode, struct reports *rs, int *rc)
{
	aurawal_options_t o = wal_opts(rs);
	aurawal_t *log = NULL;

	o.recovery = mode;
	*rc = aurawal_open(dir, &o, &log);
	return log;
}

Test(wal_recovery, a_tail_truncated_at_every_byte_of_the_last_block_is_a_clean_end)
{
	uint64_t end = locs[NREC - 1].offset + wal_rec_size(RLEN);
	uint64_t blk;
	uint8_t *orig;
	int fd;

	make_crashed_log();
	end = locs[NREC - 1].offset + wal_rec_size(RLEN);
	blk = align_down(end - 1, 4096);
	orig = malloc(4096);
	fd = seg_fd();
	cr_assert_eq(pread(fd, orig, 4096, (off_t) blk), 4096);
	for (uint64_t cut = blk; cut <= blk + 4096; cut++) {
		struct reports rs = { 0 };
		int expect = 0, rc;
		aurawal_t *log;

		for (int i = 0; i < NREC; i++)
			expect += locs[i].offset + wal_rec_size(RLEN) <= cut;
		cr_assert_eq(ftruncate(fd, (off_t) cut), 0);
		log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
		cr_assert_eq(rc, 0, "cut %llu: %s", (unsigned long long) cut, aurawal_strerror(rc));
		cr_assert_eq(count_records(log, NULL), expect, "cut at %llu",
			     (unsigned long long) cut);
		cr_assert_eq(rs.corruption, 0, "cut at %llu reported corruption: %s",
			     (unsigned long long) cut, rs.reason);
		aurawal_close(log);
		cr_assert_eq(pwrite(fd, orig, 4096, (off_t) blk), 4096); /* restore */
	}
	close(fd);
	free(orig);
}

Test(wal_recovery, appends_continue_after_a_truncated_tail)
{
	aurawal_options_t o = wal_opts(NULL);
	uint64_t cut;
	aurawal_t *log;
	int fd, n;

	make_crashed_log();
	cut = locs[NREC - 1].offset + 100; /* through the middle of the last record */
	fd = seg_fd();
	cr_assert_eq(ftruncate(fd, (off_t) cut), 0);
	close(fd);
	log = wal_open_ok(dir, &o);
	for (int i = NREC - 1; i < NREC + 20; i++)
		append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	n = count_records(log, NULL);
	cr_assert_eq(n, NREC + 20, "%d records", n);
	cr_assert_eq(aurawal_close(log), 0);
}

/* A cleanly closed log whose last records are cut off (the file truncated) or zeroed:
 * its close block says they were there, durable - damage, not a crash's torn tail. It
 * was dropped as a torn tail, and a client read older data without a word. */
static void closed_log_short_of_its_close_block(bool zero_it)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	uint64_t cut;
	int fd, rc;

	make_log();
	cut = locs[NREC - 3].offset + 40;
	fd = seg_fd();
	if (zero_it) {
		uint8_t zero[600] = { 0 };

		cr_assert_eq(pwrite(fd, zero, sizeof(zero), (off_t) cut), (ssize_t) sizeof(zero));
	} else {
		cr_assert_eq(ftruncate(fd, (off_t) cut), 0);
	}
	close(fd);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "strict: %s", aurawal_strerror(rc));
	cr_assert_null(log);
	cr_assert_geq(rs.corruption, 1, "reported");
	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
	cr_assert_eq(rc, 0, "inspect: %s (%d reports: %s)", aurawal_strerror(rc), rs.n, rs.reason);
	cr_assert_geq(rs.corruption, 1, "inspect reports it");
	cr_assert_eq(count_records(log, NULL), NREC - 3, "inspect reads up to the damage");
	aurawal_close(log);
	log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, &rs, &rc);
	cr_assert_eq(rc, 0, "point in time: %s", aurawal_strerror(rc));
	cr_assert_eq(count_records(log, NULL), NREC - 3, "the log ends before the damage");
	aurawal_close(log);
}

Test(wal_recovery, a_closed_log_truncated_short_of_its_close_block_is_corruption)
{
	closed_log_short_of_its_close_block(false);
}

Test(wal_recovery, a_closed_log_zeroed_short_of_its_close_block_is_corruption)
{
	closed_log_short_of_its_close_block(true);
}

/* A closed log cut a few bytes into a block, inside a record that began in the block
 * before: point-in-time recovery zeroes from the cut's block on - the file's end is not
 * block-aligned there, and the zeroing wrote an O_DIRECT length that was not (-EINVAL,
 * found by wal_corrupt_fuzz once a close block made such a cut corruption). */
Test(wal_recovery, point_in_time_cuts_a_closed_log_whose_file_ends_mid_block)
{
	struct reports rs = { 0 };
	uint64_t cut = 0;
	aurawal_t *log;
	int fd, rc, n = 0;

	make_log();
	for (int i = 1; i < NREC - 1 && !cut; i++) {
		uint64_t b = (locs[i].offset / WAL_BLOCK + 1) * WAL_BLOCK;

		if (locs[i + 1].offset > b + 8) {
			cut = b + 8; /* record i spans the boundary b */
			n = i;
		}
	}
	cr_assert_neq(cut, 0, "a record spans a block boundary");
	fd = seg_fd();
	cr_assert_eq(ftruncate(fd, (off_t) cut), 0);
	close(fd);
	log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, &rs, &rc);
	cr_assert_eq(rc, 0, "point in time: %s", aurawal_strerror(rc));
	cr_assert_geq(rs.dropped, 1, "the cut is reported");
	cr_assert_eq(count_records(log, NULL), n, "the log ends before the damaged record");
	append_i(log, (uint64_t) n, RLEN, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0, "after the cut the log is sound: %s", aurawal_strerror(rc));
	cr_assert_eq(count_records(log, NULL), n + 1);
	aurawal_close(log);
}

/* Flip one byte of record 25 at `where` bytes into it. */
static void flip(uint64_t where)
{
	int fd = seg_fd();
	uint8_t c;

	cr_assert_eq(pread(fd, &c, 1, (off_t) (locs[25].offset + where)), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t) (locs[25].offset + where)), 1);
	close(fd);
}

static void corruption_is_reported_in_every_mode(uint64_t where)
{
	struct reports rs = { 0 };
	int skip = 25, rc;
	aurawal_t *log;

	make_log();
	flip(where);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "strict open: %s", aurawal_strerror(rc));
	cr_assert_null(log);
	cr_assert_eq(rs.corruption, 1);
	cr_assert_eq(rs.first_corrupt_offset, locs[25].offset);
	cr_assert_eq(rs.last.length, wal_rec_size(RLEN), "damaged range up to the next record");

	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(count_records(log, &skip), NREC - 1, "inspect reads past the damage");
	cr_assert_geq(rs.corruption, 1);
	aurawal_close(log);

	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, &rs, &rc);
	cr_assert_eq(rc, 0, "point-in-time open: %s", aurawal_strerror(rc));
	cr_assert_eq(rs.dropped, 1);
	cr_assert_eq(count_records(log, NULL), 25, "truncated at the damage");
	append_i(log, 25, RLEN, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	memset(&rs, 0, sizeof(rs));
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0, "after point-in-time recovery the log is sound: %s",
		     aurawal_strerror(rc));
	cr_assert_eq(count_records(log, NULL), 26);
	aurawal_close(log);
}

Test(wal_recovery, a_flipped_byte_in_a_header_mid_log_is_corruption)
{
	corruption_is_reported_in_every_mode(9); /* the length field */
}

Test(wal_recovery, a_flipped_byte_in_a_payload_mid_log_is_corruption)
{
	corruption_is_reported_in_every_mode(32 + 17);
}

Test(wal_recovery, a_flipped_byte_in_a_checksum_mid_log_is_corruption)
{
	corruption_is_reported_in_every_mode(24 + 3);
}

/* A process that opened with point-in-time recovery dies before it appends anything: the
 * cut must already be on disk. The records after the damage that share its block (25's
 * block holds 17..35) must be gone too, or the next strict open finds damage followed by
 * valid records again - and a second point-in-time open would report the range again. */
Test(wal_recovery, a_point_in_time_cut_holds_when_the_process_dies_before_appending)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	pid_t pid;
	int st, rc;

	make_log();
	flip(32 + 17);
	cr_assert_eq(align_down(locs[25].offset, 4096), align_down(locs[26].offset, 4096));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) { /* opens, cuts, and dies without closing */
		log = open_mode(AURAWAL_RECOVER_POINT_IN_TIME, NULL, &rc);
		_exit(rc == 0 && count_records(log, NULL) == 25 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the point-in-time open failed");
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0, "a strict open after the cut: %s (%s)", aurawal_strerror(rc),
		     rs.reason);
	cr_assert_eq(rs.corruption + rs.dropped, 0, "reported again: %s", rs.reason);
	cr_assert_eq(count_records(log, NULL), 25);
	append_i(log, 25, RLEN, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Segment 1's header with the 32-bit field at `off` set to `value`, its checksum made
 * right again: an intact header of another format. Open refuses it with EFORMAT,
 * reports it and deletes nothing; with the header restored, everything is there. */
static void another_format_is_refused(uint64_t off, uint32_t value)
{
	uint8_t blk[4096], orig[4096];
	struct reports rs = { 0 };
	struct stat st;
	aurawal_t *log;
	int fd, rc;

	make_log();
	fd = seg_fd();
	cr_assert_eq(pread(fd, orig, sizeof(orig), 0), (ssize_t) sizeof(orig));
	memcpy(blk, orig, sizeof(blk));
	memcpy(blk + off, &value, sizeof(value)); /* little-endian machine, as the format */
	{
		uint64_t sum = XXH3_64bits(blk, 48);

		memcpy(blk + 48, &sum, sizeof(sum));
	}
	cr_assert_eq(pwrite(fd, blk, sizeof(blk), 0), (ssize_t) sizeof(blk));
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_null(log);
	cr_assert_eq(rc, AURAWAL_EFORMAT, "open: %s", aurawal_strerror(rc));
	cr_assert_eq(rs.corruption, 1, "reported once (%d)", rs.corruption);
	cr_assert_eq(rs.last.segment, 1);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq((uint64_t) st.st_size, SMALL_SEGMENT, "the segment is left as it was");
	cr_assert_eq(pwrite(fd, orig, sizeof(orig), 0), (ssize_t) sizeof(orig));
	close(fd);
	log = open_mode(AURAWAL_RECOVER_STRICT, NULL, &rc);
	cr_assert_eq(rc, 0, "reopen: %s", aurawal_strerror(rc));
	cr_assert_eq(count_records(log, NULL), NREC);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_recovery, a_header_of_a_newer_version_is_refused_as_another_format)
{
	another_format_is_refused(8, 2);
}

Test(wal_recovery, a_header_with_another_block_size_is_refused_as_another_format)
{
	another_format_is_refused(12, 8192);
}

Test(wal_recovery, a_zeroed_tail_is_a_clean_end_without_reports)
{
	struct reports rs = { 0 };
	uint8_t zero[3 * 232] = { 0 };
	aurawal_t *log;
	int fd, rc;

	make_crashed_log();
	fd = seg_fd();
	cr_assert_eq(pwrite(fd, zero, 3 * wal_rec_size(RLEN), (off_t) locs[NREC - 3].offset),
		     (ssize_t) (3 * wal_rec_size(RLEN)));
	close(fd);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(count_records(log, NULL), NREC - 3);
	cr_assert_eq(rs.n, 0, "a zeroed tail needs no report: %s", rs.reason);
	aurawal_close(log);
}

Test(wal_recovery, a_torn_partial_record_at_the_tail_is_dropped_and_reported)
{
	struct reports rs = { 0 };
	aurawal_t *log;
	int fd, rc;
	uint8_t junk[64];

	make_crashed_log();
	memset(junk, 0xab, sizeof(junk));
	fd = seg_fd();
	/* the last record's payload half overwritten: a record torn mid-write */
	cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t) (locs[NREC - 1].offset + 40)), 64);
	close(fd);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(count_records(log, NULL), NREC - 1);
	cr_assert_eq(rs.torn, 1);
	cr_assert_eq(rs.corruption, 0);
	aurawal_close(log);
}

/* The zero bytes that pad a record to 8 are part of the record (docs/wal_format.md,
 * "Record"): a flipped bit there is damage, like one in its payload. It went unseen -
 * the checksum covers the header and the payload only - and the record read back as
 * intact. */
Test(wal_recovery, a_flipped_bit_in_a_records_padding_is_corruption)
{
	aurawal_options_t o = wal_opts(NULL);
	struct reports rs = { 0 };
	aurawal_loc_t l[40];
	uint8_t buf[16], c;
	aurawal_t *log = wal_open_ok(dir, &o);
	int fd, rc;

	for (int i = 0; i < 40; i++)
		append_i(log, (uint64_t) i, 13, AURAWAL_DURABLE, &l[i]); /* 3 bytes of pad */
	cr_assert_eq(aurawal_close(log), 0);
	fd = seg_fd();
	cr_assert_eq(pread(fd, &c, 1, (off_t) (l[20].offset + 32 + 13 + 1)), 1);
	cr_assert_eq(c, 0, "padding is zero");
	c ^= 0x10;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t) (l[20].offset + 32 + 13 + 1)), 1);
	close(fd);

	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "strict open: %s", aurawal_strerror(rc));
	cr_assert_eq(rs.first_corrupt_offset, l[20].offset);
	log = open_mode(AURAWAL_RECOVER_INSPECT, &rs, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(aurawal_read(log, l[20], buf, sizeof(buf), NULL, NULL), AURAWAL_ECORRUPT);
	cr_assert_eq(aurawal_read(log, l[21], buf, sizeof(buf), NULL, NULL), 0);
	cr_assert(payload_check(buf, 13, 21));
	aurawal_close(log);
}

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

static void seg_name(char *buf, size_t size, uint64_t n)
{
	snprintf(buf, size, "%s/%016llx.seg", dir, (unsigned long long) n);
}

static void rename_seg(uint64_t from, uint64_t to)
{
	char a[512], b[512];

	seg_name(a, sizeof(a), from);
	seg_name(b, sizeof(b), to);
	cr_assert_eq(rename(a, b), 0, "%s: %s", a, strerror(errno));
}

static bool seg_file_exists(uint64_t n)
{
	char a[512];

	seg_name(a, sizeof(a), n);
	return access(a, F_OK) == 0;
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
			cr_assert(seg_file_exists(k), "segment file %llu was deleted",
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
	cr_assert_not(seg_file_exists(1));
	cr_assert_not(seg_file_exists(2));
	rename_seg(3, 1);
	log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "strict open: %s", aurawal_strerror(rc));
	cr_assert_null(log);
	cr_assert_geq(rs.corruption, 1);
	cr_assert(seg_file_exists(1), "the misnamed segment was deleted");
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
	cr_assert(seg_file_exists(4), "the ready segment");
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
		seg_name(path, sizeof(path), 3);
		cr_assert_eq(truncate(path, cuts[c]), 0);
		for (int again = 0; again < 2; again++) { /* the first changed nothing */
			memset(&rs, 0, sizeof(rs));
			log = open_mode(AURAWAL_RECOVER_STRICT, &rs, &rc);
			cr_assert_eq(rc, AURAWAL_ECORRUPT, "cut to %lld: %s (%s)",
				     (long long) cuts[c], aurawal_strerror(rc), rs.reason);
			cr_assert_null(log);
			cr_assert_geq(rs.corruption, 1);
			cr_assert_eq(rs.dropped, 0, "dropped: %s", rs.reason);
			cr_assert(seg_file_exists(3) && seg_file_exists(4),
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
	seg_name(path, sizeof(path), 4);
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
	seg_name(path, sizeof(path), at.segment);
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
