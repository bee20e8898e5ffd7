/* SPDX-License-Identifier: MIT */
/* The log's ordinary life, in the spirit of LevelDB's log tests: empty, one record,
 * many across segments, every size, reopen, release, async, the documented layout. */
#include "wal_test.h"

WAL_DIR_SUITE(wal_basic);

/* Iterate the whole log; returns the number of records, checking order and payloads
 * (record i must carry payload i when `check_from` >= 0, numbering from it). */
static uint64_t iterate_all(aurawal_t *log, int64_t check_from)
{
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	uint64_t seq, prev = 0, n = 0;
	const void *p;
	size_t len;
	int rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1) {
		cr_assert_gt(seq, prev, "sequence numbers must grow in log order");
		prev = seq;
		cr_assert_eq(len, loc.size);
		if (check_from >= 0)
			cr_assert(payload_check(p, len, (uint64_t) check_from + n),
				  "record %llu has the wrong payload", (unsigned long long) n);
		n++;
	}
	cr_assert_eq(rc, 0, "iteration ended with %s", aurawal_strerror(rc));
	aurawal_iter_close(it);
	return n;
}

Test(wal_basic, an_empty_log_has_no_records_before_and_after_reopen)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_stats_t st;

	cr_assert_eq(iterate_all(log, 0), 0);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.next_seq, 1);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(iterate_all(log, 0), 0);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, one_durable_record_reads_back_by_location_and_by_iteration)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc;
	uint64_t seq = append_i(log, 0, 100, AURAWAL_DURABLE, &loc);

	cr_assert_eq(seq, 1);
	cr_assert_eq(loc.segment, 1);
	cr_assert_eq(loc.offset, 4096, "the first record follows the header block");
	cr_assert_eq(loc.size, 100);
	read_check(log, loc, 0, seq);
	cr_assert_eq(iterate_all(log, 0), 1);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	read_check(log, loc, 0, seq);
	cr_assert_eq(iterate_all(log, 0), 1);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, an_empty_record_is_a_valid_record)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc;
	uint64_t seq;
	size_t len = 99;
	char b;

	cr_assert_eq(aurawal_append(log, NULL, 0, AURAWAL_DURABLE, &loc, &seq), 0);
	cr_assert_eq(loc.size, 0);
	cr_assert_eq(aurawal_read(log, loc, &b, 0, &len, NULL), 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(iterate_all(log, -1), 1);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, many_records_across_segment_boundaries)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 12000, LEN = 300 };
	static aurawal_loc_t locs[N];
	static uint64_t seqs[N];
	aurawal_segment_info_t segs[16];
	size_t nsegs;

	for (int i = 0; i < N; i++)
		seqs[i] = append_i(log, (uint64_t) i, LEN, 0, &locs[i]);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_gt(locs[N - 1].segment, 3, "12000 x 300 B must span several 1 MiB segments");
	for (int i = 0; i < N; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(iterate_all(log, 0), N);
	cr_assert_eq(aurawal_list_segments(log, segs, 16, &nsegs), 0);
	cr_assert_eq(nsegs, locs[N - 1].segment);
	for (size_t k = 0; k + 1 < nsegs; k++) {
		cr_assert(segs[k].sealed, "segment %llu not sealed",
			  (unsigned long long) segs[k].number);
		cr_assert_lt(segs[k].last_seq, segs[k + 1].first_seq);
	}
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(iterate_all(log, 0), N, "after reopen");
	for (int i = 0; i < N; i += 97)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* aurawal_iter_next_record lists the log's own records too - a SEAL ending each sealed
 * segment, SYNC marks - and with them the records account for every sequence number
 * and every byte of the log (wal_walk_all), in the live log and after reopening. */
Test(wal_basic, iterating_every_record_shows_the_logs_own_records_too)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 6000, LEN = 300 };
	aurawal_loc_t last;
	aurawal_record_t r;
	aurawal_iter_t *it;
	struct wal_walk w;

	for (int i = 0; i < N; i++)
		append_i(log, (uint64_t) i, LEN, i % 100 == 99 ? AURAWAL_DURABLE : 0, &last);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_gt(last.segment, 1, "6000 x 300 B span two 1 MiB segments");
	for (int pass = 0; pass < 2; pass++) {
		w = wal_walk_all(log);
		cr_assert_eq(w.n[AURAWAL_RECORD_DATA], N);
		cr_assert_eq(w.n[AURAWAL_RECORD_SEAL], last.segment - 1, "one per sealed segment");
		cr_assert_geq(w.n[AURAWAL_RECORD_SYNC], 1);
		cr_assert_eq(w.n[AURAWAL_RECORD_VOID], 0);
		cr_assert_eq(aurawal_close(log), 0);
		log = wal_open_ok(dir, &o);
	}
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	cr_assert_eq(aurawal_iter_next_record(it, NULL), -EINVAL);
	cr_assert_eq(aurawal_iter_next_record(NULL, &r), -EINVAL);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, every_record_size_from_zero_to_three_blocks)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	enum { MAXLEN = 3 * 4096 + 64 };
	static aurawal_loc_t locs[MAXLEN + 1];
	static uint64_t seqs[MAXLEN + 1];

	o.segment_size = 8u << 20;
	log = wal_open_ok(dir, &o);
	for (int len = 0; len <= MAXLEN; len++)
		seqs[len] = append_i(log, (uint64_t) len, (size_t) len, 0, &locs[len]);
	cr_assert_eq(aurawal_sync(log), 0);
	for (int len = 0; len <= MAXLEN; len++)
		read_check(log, locs[len], (uint64_t) len, seqs[len]);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	for (int len = 0; len <= MAXLEN; len += 7)
		read_check(log, locs[len], (uint64_t) len, seqs[len]);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, records_larger_than_a_block_and_than_a_batch_buffer)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	size_t sizes[] = { 4097, 9000, 300000, 700000 }; /* the buffer is 256 KiB */
	aurawal_loc_t locs[4];
	uint64_t seqs[4];

	o.segment_size = 4u << 20;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 4; i++)
		seqs[i] = append_i(log, (uint64_t) i, sizes[i], AURAWAL_DURABLE, &locs[i]);
	for (int i = 0; i < 4; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 4; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, reopen_and_append_continues_the_sequence)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	uint64_t last = 0;

	for (int i = 0; i < 100; i++)
		last = append_i(log, (uint64_t) i, 50, 0, NULL);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	for (int i = 100; i < 200; i++) {
		uint64_t s = append_i(log, (uint64_t) i, 50, 0, NULL);

		cr_assert_gt(s, last);
		last = s;
	}
	cr_assert_eq(aurawal_sync(log), 0); /* the iterator sees what is written */
	cr_assert_eq(iterate_all(log, 0), 200);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(iterate_all(log, 0), 200);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, bad_arguments_get_clear_errors)
{
	aurawal_options_t o = wal_opts(NULL), bad = o;
	aurawal_t *log = wal_open_ok(dir, &o), *x;
	struct iovec big = { NULL, (size_t) AURAWAL_MAX_RECORD + 1 };
	char c = 'x', out;
	struct iovec one = { &c, 1 };
	aurawal_loc_t loc;

	cr_assert_eq(aurawal_append(log, NULL, 1, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(aurawal_append(log, &one, -1, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(aurawal_append(log, &one, 1, 0x40, NULL, NULL), -EINVAL);
	cr_assert_eq(aurawal_append(NULL, &one, 1, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(aurawal_sync(NULL), -EINVAL);
	cr_assert_eq(aurawal_flush(NULL), -EINVAL);
	cr_assert_eq(aurawal_flush(log), 0, "nothing to write is not an error");
	big.iov_base = &c;
	cr_assert_eq(aurawal_append(log, &big, 1, 0, NULL, NULL), -EMSGSIZE);
	{
		struct iovec seg_big = { malloc(SMALL_SEGMENT), SMALL_SEGMENT };

		cr_assert_eq(aurawal_append(log, &seg_big, 1, 0, NULL, NULL), -EMSGSIZE,
			     "a record larger than a segment");
		/* the largest that fits: the header block, its header, a SYNC mark, a SEAL */
		seg_big.iov_len = SMALL_SEGMENT - 4200 + 1;
		cr_assert_eq(aurawal_append(log, &seg_big, 1, AURAWAL_DURABLE, NULL, NULL),
			     -EMSGSIZE);
		seg_big.iov_len--;
		memset(seg_big.iov_base, 'b', seg_big.iov_len);
		for (int k = 0; k < 2; k++) /* in the created segment, then in a prepared one */
			cr_assert_eq(aurawal_append(log, &seg_big, 1, AURAWAL_DURABLE, &loc, NULL),
				     0);
		cr_assert_eq(loc.offset, 4096 + 32, "after the second segment's SYNC mark");
		free(seg_big.iov_base);
	}
	cr_assert_eq(aurawal_append(log, &one, 1, AURAWAL_DURABLE, &loc, NULL), 0);
	cr_assert_eq(aurawal_read(log, loc, &out, 0, NULL, NULL), -EMSGSIZE);
	cr_assert_eq(aurawal_read(log, (aurawal_loc_t){ 99, 4096, 1 }, &out, 1, NULL, NULL),
		     -ENOENT);
	cr_assert_eq(aurawal_read(log, (aurawal_loc_t){ 1, 4100, 1 }, &out, 1, NULL, NULL),
		     -EINVAL);
	cr_assert_eq(aurawal_read(log, (aurawal_loc_t){ 1, 4096, 2 }, &out, 2, NULL, NULL),
		     AURAWAL_ECORRUPT, "a location that does not name the record");
	cr_assert_eq(aurawal_close(log), 0);
	bad.segment_size = 12345;
	cr_assert_eq(aurawal_open(dir, &bad, &x), -EINVAL);
	bad = o;
	bad.create_if_missing = false;
	cr_assert_eq(aurawal_open("/var/tmp/no-such-log-dir", &bad, &x), -ENOENT);
	cr_assert_eq(aurawal_open(NULL, &o, &x), -EINVAL);
	cr_assert_eq(aurawal_close(NULL), 0);
}

Test(wal_basic, a_second_opener_is_refused_and_told_the_holder)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log = wal_open_ok(dir, &o), *second;
	char pid[32];

	snprintf(pid, sizeof(pid), "%ld", (long) getpid());
	cr_assert_eq(aurawal_open(dir, &o, &second), AURAWAL_ELOCKED);
	cr_assert_eq(rs.locked, 1);
	cr_assert(strstr(rs.reason, pid), "reason '%s' does not name pid %s", rs.reason, pid);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, release_before_deletes_whole_old_segments)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t first, loc = { 0 };
	aurawal_segment_info_t segs[16];
	size_t n;
	char buf[600];
	int i = 0;
	uint64_t last_seq = 0;

	append_i(log, 0, 500, 0, &first);
	while (loc.segment < 5)
		last_seq = append_i(log, (uint64_t) ++i, 500, 0, &loc);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_release_before(log, loc), 4);
	cr_assert_eq(aurawal_read(log, first, buf, sizeof(buf), NULL, NULL), -ENOENT);
	cr_assert_eq(aurawal_list_segments(log, segs, 16, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(segs[0].number, 5);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_list_segments(log, segs, 16, &n), 0);
	cr_assert_eq(segs[0].number, 5, "the log now starts at segment 5");
	read_check(log, loc, (uint64_t) i, last_seq);
	cr_assert_eq(aurawal_close(log), 0);
}

struct async_state {
	int done, bad;
	uint64_t last_seq;
	aurawal_loc_t locs[2000];
	uint64_t seqs[2000];
};

static void on_appended(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	struct async_state *s = arg;
	int i = s->done++;

	if (status != 0)
		s->bad++;
	s->locs[i] = loc;
	s->seqs[i] = seq;
}

Test(wal_basic, async_appends_complete_through_poll_with_many_in_flight)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	static struct async_state s;
	uint8_t p[128];

	for (int i = 0; i < 2000; i++) {
		struct iovec iov = { p, sizeof(p) };

		payload_fill(p, sizeof(p), (uint64_t) i);
		cr_assert_eq(aurawal_append_async(log, &iov, 1, AURAWAL_DURABLE, on_appended, &s),
			     0);
		if (i % 32 == 31)
			cr_assert_geq(aurawal_poll(log, 0), 0);
	}
	while (s.done < 2000)
		cr_assert_geq(aurawal_poll(log, 1000), 0);
	cr_assert_eq(s.bad, 0);
	for (int i = 0; i < 2000; i++)
		read_check(log, s.locs[i], (uint64_t) i, s.seqs[i]);
	cr_assert_eq(aurawal_append_async(log, NULL, 0, 0, NULL, NULL), -EINVAL, "NULL callback");
	cr_assert_eq(aurawal_close(log), 0);
}

/* With flush_delay_us 0 nothing writes a non-durable record until a buffer fills, a sync
 * or a durable append: a lone thread that appends asynchronously and then polls for the
 * callback would wait forever (and poll(-1) never returns). Polling for it writes it. */
Test(wal_basic, poll_writes_a_non_durable_async_append_when_the_flush_delay_is_off)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	static struct async_state s;
	uint8_t p[100];
	struct iovec iov = { p, sizeof(p) };

	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	payload_fill(p, sizeof(p), 7);
	cr_assert_eq(aurawal_append_async(log, &iov, 1, 0, on_appended, &s), 0);
	cr_assert_eq(aurawal_poll(log, 30000), 1, "the callback did not run");
	cr_assert_eq(s.done, 1);
	cr_assert_eq(s.bad, 0);
	read_check(log, s.locs[0], 7, s.seqs[0]);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, the_worked_example_of_the_format_document)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	struct iovec hello = { "hello", 5 };
	aurawal_loc_t a, b;
	uint64_t sa, sb;
	uint8_t blk[8192];
	char path[512];
	int fd;

	o.segment_size = 64u << 20;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_append(log, &hello, 1, AURAWAL_DURABLE, &a, &sa), 0);
	cr_assert_eq(aurawal_append(log, NULL, 0, AURAWAL_DURABLE, &b, &sb), 0);
	cr_assert_eq(a.offset, 0x1000);
	cr_assert_eq(b.offset, 0x1028);
	cr_assert_eq(sa, 1);
	cr_assert_eq(sb, 2);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, blk, sizeof(blk), 0), (ssize_t) sizeof(blk));
	close(fd);
	cr_assert_arr_eq(blk, "AURAWAL1\1\0\0\0\0\x10\0\0\0\0\0\4\0\0\0\0", 24);
	cr_assert_arr_eq(blk + 32, "\1\0\0\0\0\0\0\0", 8, "segment number 1");
	cr_assert_arr_eq(blk + 0x1000, "AWR1\1\0\0\0\5\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0", 24);
	cr_assert_arr_eq(blk + 0x1020, "hello\0\0\0", 8);
	cr_assert_arr_eq(blk + 0x1028, "AWR1\1\0\0\0\0\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0", 24);
	for (int i = 0x1048; i < 0x2000; i++)
		cr_assert_eq(blk[i], 0, "byte %#x after the end of the log", i);
}

Test(wal_basic, sync_makes_records_durable_that_the_flush_delay_already_wrote, .timeout = 30)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	aurawal_stats_t st;
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

	o.flush_delay_us = 100;
	log = wal_open_ok(dir, &o);
	append_i(log, 0, 100, 0, NULL); /* buffered: written by the flush delay, not synced */
	do {
		cr_assert_eq(aurawal_get_stats(log, &st), 0);
	} while (st.writes == 0 && test_now_ns() < deadline);
	cr_assert_eq(st.writes, 1, "the flush delay did not write the record");
	cr_assert_eq(st.syncs, 0);
	/* Nothing is left to write: the sync must still make the record durable. */
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.syncs, 1);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_basic, aurawal_flush_writes_buffered_records_without_a_sync)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_stats_t st;
	aurawal_t *log;

	o.flush_delay_us = 0; /* written only when a buffer fills, on a sync or a flush */
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 20; i++)
		append_i(log, (uint64_t) i, 100, 0, NULL);
	cr_assert_eq(iterate_all(log, 0), 0, "the iterator reads what is written: nothing yet");
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(iterate_all(log, 0), 20);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_assert_eq(st.syncs, 0, "aurawal_flush made nothing durable");
	cr_assert_geq(st.writes, 1);
	cr_assert_eq(aurawal_close(log), 0);
}
