/* SPDX-License-Identifier: MIT */
/*
 * Segment summaries (docs/wal_format.md, "Segment summary" and "Summaries at open"):
 * the seal block of a full segment and the close block of a closed log, their bytes,
 * what opening a log reads thanks to them (counted on an engine the test owns), that
 * scan_sealed = false trusts seal blocks but still checks SEAL records, and that a
 * summary never hides a record or a damage the rules would report.
 */
#include <signal.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_format.h"
#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_summary);

static int seg_open(uint64_t n)
{
	char path[512];
	int fd;

	wal_seg_file(path, sizeof(path), dir, n);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	return fd;
}

static void read_block0(uint64_t n, uint8_t *blk)
{
	int fd = seg_open(n);

	cr_assert_eq(pread(fd, blk, 4096, 0), 4096);
	close(fd);
}

static void poke_byte(uint64_t n, uint64_t off)
{
	int fd = seg_open(n);
	uint8_t c;

	cr_assert_eq(pread(fd, &c, 1, (off_t) off), 1);
	c ^= 0x20;
	cr_assert_eq(pwrite(fd, &c, 1, (off_t) off), 1);
	close(fd);
}

/* The summary of segment n as the document lays it out; its kind, 0 if none/invalid. */
struct sum {
	uint64_t kind; /* 64-bit like the rest: no padding, so memcmp compares fields only */
	uint64_t data_end, first, last, records, next;
};

static struct sum read_summary(uint64_t n)
{
	uint8_t blk[4096];
	struct sum s = { 0 };
	uint64_t seed;

	read_block0(n, blk);
	cr_assert_arr_eq(blk, "AURAWAL1", 8, "the header is intact");
	seed = get_le64(blk + 24) ^ (n * 0x9E3779B97F4A7C15ull);
	if (memcmp(blk + 64, "AWS1", 4) != 0 ||
	    get_le64(blk + 112) != XXH3_64bits_withSeed(blk + 64, 48, seed))
		return s; /* none, or damaged */
	cr_assert(blk[69] == 0 && blk[70] == 0 && blk[71] == 0);
	for (int i = 120; i < 4096; i++)
		cr_assert_eq(blk[i], 0, "byte %d of block 0", i);
	s.kind = blk[68];
	s.data_end = get_le64(blk + 72);
	s.first = get_le64(blk + 80);
	s.last = get_le64(blk + 88);
	s.records = get_le64(blk + 96);
	s.next = get_le64(blk + 104);
	return s;
}

/* Records of each segment by iteration (SEALs not counted). */
static void count_per_segment(aurawal_t *log, uint64_t *count, size_t max)
{
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	int rc;

	memset(count, 0, sizeof(*count) * max);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &loc, NULL, NULL, NULL)) == 1)
		if (loc.segment < max)
			count[loc.segment]++;
	cr_assert_eq(rc, 0, "iteration: %s", aurawal_strerror(rc));
	aurawal_iter_close(it);
}

/* A closed log of 1 MiB segments through segment `last` (which holds a few records), and
 * the next one, made ready. */
static uint64_t make_segments(uint64_t last)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 };
	uint64_t i = 0;

	for (; loc.segment < last || loc.offset < 20000; i++)
		append_i(log, i, 2000 + i % 300, i % 50 ? 0 : AURAWAL_DURABLE, &loc);
	/* Segment last + 1 exists only once the preparer has made it: a close that came
	 * before the preparer woke left it out (a CI flake, "...0006.seg: No such file"). */
	wal_preparer_idle(log);
	cr_assert_eq(aurawal_close(log), 0);
	return i;
}

Test(wal_summary, a_full_segment_gets_a_seal_block_that_describes_it)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_segment_info_t segs[8];
	uint64_t count[8];
	aurawal_t *log;
	size_t n;

	make_segments(3);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &n), 0);
	count_per_segment(log, count, 8);
	cr_assert_eq(aurawal_close(log), 0);
	for (size_t k = 0; k < 2; k++) {
		struct sum s = read_summary(segs[k].number);

		cr_assert(segs[k].sealed);
		cr_assert_eq(s.kind, 1, "segment %llu has no seal block",
			     (unsigned long long) segs[k].number);
		cr_assert_eq(s.data_end, 4096 + segs[k].bytes);
		cr_assert_eq(s.first, segs[k].first_seq);
		cr_assert_eq(s.last, segs[k].last_seq, "the last record is the SEAL");
		/* segments after the first were made ready by the preparer and hold durable
		 * appends (every 50th): their first durable write carries a SYNC mark */
		cr_assert_eq(s.records, count[segs[k].number] + 1 + (segs[k].number > 1),
			     "its records, its SYNC mark if any, and the SEAL");
		cr_assert_eq(s.next, segs[k].number + 1);
	}
}

Test(wal_summary, closing_writes_a_close_block_and_the_next_open_removes_it)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_segment_info_t seg;
	aurawal_t *log = wal_open_ok(dir, &o);
	struct sum s;
	size_t n;

	for (int i = 0; i < 30; i++)
		append_i(log, (uint64_t) i, 500, 0, NULL);
	cr_assert_eq(aurawal_list_segments(log, &seg, 1, &n), 0);
	cr_assert_eq(aurawal_close(log), 0);
	s = read_summary(1);
	cr_assert_eq(s.kind, 2, "no close block");
	cr_assert_eq(s.records, 30);
	cr_assert_eq(s.data_end, 4096 + 30 * wal_rec_size(500));
	cr_assert_eq(s.next, 0);

	log = wal_open_ok(dir, &o);
	cr_assert_eq(read_summary(1).kind, 0, "an open log must not keep its close block");
	append_i(log, 30, 500, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	s = read_summary(1);
	cr_assert_eq(s.kind, 2);
	cr_assert_eq(s.records, 31);
	cr_assert_eq(s.last, 31);
}

/* Bytes an open of the log reads, on an engine of the test's. */
static uint64_t bytes_read_by_open(aurawal_options_t o, aurawal_t **out)
{
	auraio_engine_t *e = auraio_create();
	auraio_stats_t st;
	aurawal_t *log;
	int rc;

	cr_assert_not_null(e);
	o.engine = e;
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	if (out) {
		*out = rc == 0 ? log : NULL;
		if (rc)
			auraio_destroy(e);
		return rc ? UINT64_MAX : st.total.bytes_read;
	}
	cr_assert_eq(rc, 0, "open: %s", aurawal_strerror(rc));
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	return st.total.bytes_read;
}

Test(wal_summary, a_new_log_opens_without_reading_its_empty_segment)
{
	aurawal_options_t o = wal_opts(NULL);
	uint64_t b;

	o.segment_size = 64u << 20;
	b = bytes_read_by_open(o, NULL);
	cr_log_info("creating a log read %llu bytes", (unsigned long long) b);
	cr_assert_lt(b, 64u << 10, "creating a log read %llu bytes", (unsigned long long) b);
}

Test(wal_summary, a_cleanly_closed_log_reopens_without_scanning_past_its_end)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	uint64_t b;

	o.segment_size = 64u << 20;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 100; i++)
		append_i(log, (uint64_t) i, 300, 0, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	b = bytes_read_by_open(o, NULL); /* a first chunk of records, not 128 MiB */
	cr_log_info("reopening read %llu bytes", (unsigned long long) b);
	cr_assert_leq(b, 2u << 20, "reopening read %llu bytes", (unsigned long long) b);
	log = wal_open_ok(dir, &o);
	for (int i = 100; i < 200; i++)
		append_i(log, (uint64_t) i, 300, 0, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	{
		uint64_t count[2];

		count_per_segment(log, count, 2);
		cr_assert_eq(count[1], 200);
	}
	cr_assert_eq(aurawal_close(log), 0);
}

/* The location of the k-th record of segment n. */
static aurawal_loc_t nth_record(uint64_t n, int k)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_iter_t *it;
	aurawal_loc_t loc = { 0 };

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ n, 4096, 0 }, &it), 0);
	for (int i = 0; i <= k; i++)
		cr_assert_eq(aurawal_iter_next(it, &loc, NULL, NULL, NULL), 1);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
	return loc;
}

Test(wal_summary, with_scan_sealed_off_sealed_segments_are_trusted_and_damage_shows_when_read)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_loc_t bad;
	aurawal_iter_t *it;
	aurawal_t *log;
	uint8_t buf[4096];
	uint64_t b, total;
	int rc, n = 0;

	total = make_segments(5);
	bad = nth_record(2, 100);
	poke_byte(2, bad.offset + 32 + 7); /* a payload byte, mid segment 2 */

	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT,
		     "scan_sealed (the default) checks every record at open");
	cr_assert_geq(rs.corruption, 1);

	o.scan_sealed = false;
	memset(&rs, 0, sizeof(rs));
	b = bytes_read_by_open(o, &log);
	cr_assert_not_null(log, "open with scan_sealed off");
	cr_assert_eq(rs.corruption, 0);
	cr_log_info("%llu bytes read to open a log of 5+ MiB", (unsigned long long) b);
	cr_assert_lt(b, 2u << 20, "%llu bytes read: sealed segments were read in full",
		     (unsigned long long) b);
	cr_assert_eq(aurawal_read(log, bad, buf, sizeof(buf), NULL, NULL), AURAWAL_ECORRUPT);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, NULL, NULL)) == 1)
		n++;
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "the iterator reaches the damage");
	cr_assert_lt((uint64_t) n, total);
	aurawal_iter_close(it);
	{
		auraio_engine_t *e = aurawal_engine(log);

		aurawal_close(log);
		auraio_destroy(e);
	}
}

Test(wal_summary, a_seal_block_is_trusted_only_if_the_seal_record_matches_it)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	struct sum s;

	make_segments(4);
	s = read_summary(2);
	cr_assert_eq(s.kind, 1);
	poke_byte(2, s.data_end - 8); /* the SEAL's payload: the next segment's number */
	o.scan_sealed = false;
	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT,
		     "a damaged SEAL under a valid seal block must not be trusted");
	cr_assert_geq(rs.corruption, 1);
	cr_assert(strstr(rs.reason, "seal"), "reason: %s", rs.reason);
}

Test(wal_summary, a_damaged_seal_block_is_ignored_and_written_again)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	struct sum before, after;
	aurawal_t *log;

	make_segments(4);
	before = read_summary(2);
	cr_assert_eq(before.kind, 1);
	poke_byte(2, 80); /* the summary's first sequence: its checksum fails */
	cr_assert_eq(read_summary(2).kind, 0);
	o.scan_sealed = false;
	log = wal_open_ok(dir, &o); /* segment 2 is read in full instead */
	cr_assert_eq(rs.n, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_close(log), 0);
	after = read_summary(2);
	cr_assert_eq(memcmp(&after, &before, sizeof(before)), 0,
		     "the seal block was not written again");
}

Test(wal_summary, logs_without_summaries_open_as_before_and_gain_seal_blocks)
{
	aurawal_options_t o = wal_opts(NULL);
	uint8_t zero[64] = { 0 };
	uint64_t full, trusted;
	aurawal_t *log;

	make_segments(5);
	for (uint64_t n = 1; n <= 6; n++) { /* as written before summaries existed */
		int fd = seg_open(n);

		cr_assert_eq(pwrite(fd, zero, sizeof(zero), 64), (ssize_t) sizeof(zero));
		close(fd);
		cr_assert_eq(read_summary(n).kind, 0);
	}
	o.scan_sealed = false;
	full = bytes_read_by_open(o, NULL); /* reads all, writes the seal blocks */
	for (uint64_t n = 1; n <= 4; n++)
		cr_assert_eq(read_summary(n).kind, 1, "segment %llu", (unsigned long long) n);
	trusted = bytes_read_by_open(o, NULL);
	cr_log_info("open read %llu bytes, then %llu", (unsigned long long) full,
		    (unsigned long long) trusted);
	cr_assert_lt(trusted, full / 2);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_close(log), 0);
}

/* A child appends durably after the log was closed and reopened, then dies without
 * closing. */
static void append_and_die(uint64_t from, int n)
{
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		aurawal_options_t o = wal_opts(NULL);
		aurawal_t *log;
		uint8_t p[500];

		if (aurawal_open(dir, &o, &log) != 0)
			_exit(3);
		for (int i = 0; i < n; i++) {
			struct iovec iov = { p, sizeof(p) };

			payload_fill(p, sizeof(p), from + (uint64_t) i);
			if (aurawal_append(log, &iov, 1, AURAWAL_DURABLE, NULL, NULL) != 0)
				_exit(4);
		}
		kill(getpid(), SIGKILL);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st), "the child failed: status %d", st);
}

Test(wal_summary, a_close_block_never_hides_records_appended_after_it)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	uint64_t count[2];
	aurawal_t *log = wal_open_ok(dir, &o);
	struct sum s, s2;

	for (int i = 0; i < 30; i++)
		append_i(log, (uint64_t) i, 500, 0, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	s = read_summary(1);
	cr_assert_eq(s.kind, 2);
	append_and_die(30, 20);
	log = wal_open_ok(dir, &o);
	count_per_segment(log, count, 2);
	cr_assert_eq(count[1], 50, "records appended after the close block were lost");
	cr_assert_eq(aurawal_close(log), 0);
	/* and damage right where the old close block said the log ended is damage
	 * followed by valid records - not a clean end */
	s2 = read_summary(1);
	cr_assert_eq(s2.kind, 2);
	append_and_die(50, 20);
	poke_byte(1, s2.data_end + 40);
	memset(&rs, 0, sizeof(rs));
	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT);
	cr_assert_geq(rs.corruption, 1);
}
