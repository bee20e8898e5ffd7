/* SPDX-License-Identifier: MIT */
/*
 * Recovery from damage in a segment: truncated and zeroed tails, a closed log cut short
 * of its close block, flipped bytes mid-log (in each recovery mode), headers of another
 * format, torn partial records and flipped padding, and point-in-time cuts of them.
 * Segment files renamed, swapped or cut, and point-in-time cuts stopped anywhere:
 * test_recovery_segments.c; injected faults while writing: test_recovery_faults.c
 * (helpers: tests/support/wal_recovery.h).
 */
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_format.h" /* record sizes, to find records in the files */
#include "wal_internal_test.h"
#include "wal_recovery.h"
#include "wal_test.h"

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
