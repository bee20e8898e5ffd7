/* SPDX-License-Identifier: MIT */
/* Releasing segments out of order (the store's GC), the RELEASED record of such gaps,
 * and asynchronous reads. */
#include <xxhash.h>

#include "wal_test.h"

static char *dir;

static void setup(void)
{
	dir = temp_dir();
}

static void teardown(void)
{
	rm_tree(dir);
	free(dir);
}

TestSuite(wal_release, .init = setup, .fini = teardown);

static uint64_t idx[5]; /* payload index of first[i] (seals use sequence numbers too) */

/* Fill segments 1..5 (closed log); first[i] is the first record of segment i+1. */
static void five_segments(aurawal_loc_t *first, uint64_t *seq)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 };
	uint64_t s;

	for (uint64_t i = 0; loc.segment < 6; i++) {
		s = append_i(log, i, 1000, 0, &loc);
		if (loc.segment <= 5 && first[loc.segment - 1].segment == 0) {
			first[loc.segment - 1] = loc;
			seq[loc.segment - 1] = s;
			idx[loc.segment - 1] = i;
		}
	}
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_release, a_segment_in_the_middle_can_be_released_and_the_gap_survives_reopen)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	aurawal_options_t o = wal_opts(NULL);
	aurawal_segment_info_t segs[16];
	aurawal_t *log;
	char buf[1000];
	size_t n;

	five_segments(first, seq);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_release_segment(log, 3), 0);
	cr_assert_eq(aurawal_release_segment(log, 3), -ENOENT, "already released");
	cr_assert_eq(aurawal_read(log, first[2], buf, sizeof(buf), NULL, NULL), -ENOENT);
	cr_assert_eq(aurawal_list_segments(log, segs, 16, &n), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_neq(segs[i].number, 3);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o); /* a gap that RELEASED explains is not corruption */
	read_check(log, first[1], idx[1], seq[1]);
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_read(log, first[2], buf, sizeof(buf), NULL, NULL), -ENOENT);
	/* the oldest going away prunes RELEASED; everything still opens */
	cr_assert_eq(aurawal_release_segment(log, 1), 0);
	cr_assert_eq(aurawal_release_segment(log, 2), 0);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_list_segments(log, segs, 16, &n), 0);
	cr_assert_eq(segs[0].number, 4);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_release, the_active_segment_cannot_be_released)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);

	append_i(log, 0, 10, AURAWAL_DURABLE, NULL);
	cr_assert_eq(aurawal_release_segment(log, 1), -EBUSY);
	cr_assert_eq(aurawal_release_segment(log, 77), -ENOENT);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_release, a_gap_that_released_does_not_explain_is_corruption)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	char path[512];

	five_segments(first, seq);
	snprintf(path, sizeof(path), "%s/0000000000000003.seg", dir);
	cr_assert_eq(unlink(path), 0); /* a lost file */
	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT);
	cr_assert_eq(rs.corruption, 1);
	cr_assert(strstr(rs.reason, "missing"), "reason: %s", rs.reason);
}

Test(wal_release, an_interrupted_release_is_finished_at_open)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	char path[512], text[64];
	int fd;
	size_t len;

	five_segments(first, seq);
	/* RELEASED names segment 3, but the crash came before its file was deleted */
	len = (size_t) snprintf(text, sizeof(text), "3\n");
	len += (size_t) snprintf(text + len, sizeof(text) - len, "end %016llx\n",
				 (unsigned long long) XXH3_64bits(text, len));
	snprintf(path, sizeof(path), "%s/RELEASED", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_eq(write(fd, text, len), (ssize_t) len);
	close(fd);
	log = wal_open_ok(dir, &o);
	snprintf(path, sizeof(path), "%s/0000000000000003.seg", dir);
	cr_assert_eq(access(path, F_OK), -1, "the released segment's file was not removed");
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_close(log), 0);
}

struct async_read {
	int done, status;
	size_t len;
	uint64_t seq;
};

static void on_read(void *arg, int status, size_t len, uint64_t seq)
{
	struct async_read *r = arg;

	r->status = status;
	r->len = len;
	r->seq = seq;
	r->done++;
}

Test(wal_release, async_reads_deliver_payloads_through_poll)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 64 };
	aurawal_loc_t locs[N];
	uint64_t seqs[N];
	static struct async_read r[N];
	static uint8_t bufs[N][300];
	int done = 0;

	cr_assert_not_null(aurawal_engine(log));
	for (int i = 0; i < N; i++)
		seqs[i] =
		    append_i(log, (uint64_t) i, 300, i < N / 2 ? AURAWAL_DURABLE : 0, &locs[i]);
	/* half are on disk, the last ones may still be in memory: both paths */
	for (int i = 0; i < N; i++)
		cr_assert_eq(aurawal_read_async(log, locs[i], bufs[i], 300, on_read, &r[i]), 0);
	while (done < N) {
		int n = aurawal_poll(log, 1000);

		cr_assert_geq(n, 0);
		done += n;
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(r[i].done, 1);
		cr_assert_eq(r[i].status, 0, "read %d: %s", i, aurawal_strerror(r[i].status));
		cr_assert_eq(r[i].len, 300);
		cr_assert_eq(r[i].seq, seqs[i]);
		cr_assert(payload_check(bufs[i], 300, (uint64_t) i));
	}
	cr_assert_eq(
	    aurawal_read_async(log, (aurawal_loc_t){ 9, 4096, 1 }, bufs[0], 1, on_read, &r[0]),
	    -ENOENT);
	cr_assert_eq(aurawal_close(log), 0);
}
