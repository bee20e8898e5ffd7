/* SPDX-License-Identifier: MIT */
/* Releasing segments out of order (the store's GC), the RELEASED record of such gaps,
 * iterators in released segments, and asynchronous reads. When a release may happen and
 * its directory syncs: test_release_sync.c (helpers: tests/support/wal_release.h). */
#include <signal.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_internal_test.h" /* record sizes; waiting for the ready segment */
#include "wal_release.h"
#include "wal_test.h"

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

/* Copy file `from` to `to` (a test's stray file). */
static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
	ssize_t n;

	cr_assert(in >= 0 && out >= 0, "copy %s -> %s: %s", from, to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		cr_assert_eq(write(out, buf, (size_t) n), n);
	cr_assert_eq(n, 0);
	close(in);
	close(out);
}

/*
 * A stray segment file of another log, numbered just below this log's oldest: the first
 * segment found set the log's identity, so this log's own segment had a "bad header",
 * and with no durable evidence readable under the stray's seed the open dropped - and
 * deleted - it as the end of a rollover that was never flushed, durable records and
 * all. A header that is intact but names another log is not a torn rollover: the open
 * must refuse, report it, and delete nothing.
 */
Test(wal_release, a_stray_segment_of_another_log_fails_the_open_and_deletes_nothing)
{
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	aurawal_loc_t loc = { 0 }, locs[3];
	uint64_t seqs[3];
	char *other = temp_dir(), from[512], to[512];
	int rc;

	log = wal_open_ok(dir, &o);
	for (uint64_t i = 0; loc.segment < 3; i++)
		append_i(log, 100 + i, 1000, 0, &loc);
	for (int i = 0; i < 3; i++)
		seqs[i] = append_i(log, (uint64_t) i, 100, AURAWAL_DURABLE, &locs[i]);
	cr_assert_eq(locs[2].segment, 3);
	cr_assert_eq(aurawal_release_segment(log, 1), 0);
	cr_assert_eq(aurawal_release_segment(log, 2), 0);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(other, &o); /* the other log's own segment 2 */
	for (uint64_t i = 0, n = 0; n < 2; i++) {
		aurawal_loc_t l;

		append_i(log, 500 + i, 1000, AURAWAL_DURABLE, &l);
		n = l.segment;
	}
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(from, sizeof(from), "%s/0000000000000002.seg", other);
	snprintf(to, sizeof(to), "%s/0000000000000002.seg", dir);
	copy_file(from, to);

	memset(&rs, 0, sizeof(rs));
	rc = aurawal_open(dir, &o, &log);
	if (rc == 0)
		aurawal_close(log);
	cr_assert(wal_seg_file_exists(dir, 3), "this log's segment was deleted (open: %s)",
		  aurawal_strerror(rc));
	cr_assert_eq(rc, AURAWAL_ECORRUPT, "open: %s", aurawal_strerror(rc));
	cr_assert_geq(rs.corruption, 1);

	cr_assert_eq(unlink(to), 0); /* the stray file taken away: all there */
	memset(&rs, 0, sizeof(rs));
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption + rs.dropped, 0, "%s", rs.reason);
	for (int i = 0; i < 3; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	rm_tree(other);
	free(other);
}

/* aurawal.h: inspect mode reports every damaged range and reads past it; point-in-time
 * recovery reports it, truncates the log there and opens. A lost file is such damage. */
Test(wal_release, a_gap_is_read_past_when_inspecting_and_cut_at_by_point_in_time_recovery)
{
	aurawal_loc_t first[5] = { 0 }, loc;
	uint64_t seq[5], s;
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	char path[512], buf[1000];
	int rc;

	five_segments(first, seq);
	snprintf(path, sizeof(path), "%s/0000000000000003.seg", dir);
	cr_assert_eq(unlink(path), 0); /* a lost file */

	o.recovery = AURAWAL_RECOVER_INSPECT;
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(rc, 0, "inspect: %s", aurawal_strerror(rc));
	cr_assert_eq(rs.corruption, 1);
	cr_assert_eq(rs.last.segment, 3);
	read_check(log, first[1], idx[1], seq[1]);
	read_check(log, first[3], idx[3], seq[3]);
	read_check(log, first[4], idx[4], seq[4]);
	cr_assert_eq(aurawal_read(log, first[2], buf, sizeof(buf), NULL, NULL), -ENOENT);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert(wal_seg_file_exists(dir, 4) && wal_seg_file_exists(dir, 5),
		  "inspect mode changes nothing");

	memset(&rs, 0, sizeof(rs));
	o.recovery = AURAWAL_RECOVER_POINT_IN_TIME;
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(rc, 0, "point in time: %s", aurawal_strerror(rc));
	cr_assert_eq(rs.corruption, 0);
	cr_assert_geq(rs.dropped, 1);
	read_check(log, first[1], idx[1], seq[1]);
	cr_assert_eq(aurawal_read(log, first[3], buf, sizeof(buf), NULL, NULL), -ENOENT);
	s = append_i(log, 999, 10, AURAWAL_DURABLE, &loc);
	cr_assert_eq(loc.segment, 3, "the log goes on after segment 2");
	cr_assert_gt(s, seq[1]);
	cr_assert_eq(aurawal_close(log), 0);

	memset(&rs, 0, sizeof(rs));
	o.recovery = AURAWAL_RECOVER_STRICT;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(rs.corruption + rs.dropped, 0, "%s", rs.reason);
	read_check(log, first[1], idx[1], seq[1]);
	read_check(log, loc, 999, s);
	cr_assert_eq(aurawal_close(log), 0);
}

/* A damaged RELEASED no longer says which gaps are intended: a strict open refuses the
 * log, but inspect mode (waldump) reports it and reads every segment there is, each gap
 * reported as a missing segment. */
Test(wal_release, a_damaged_released_file_is_reported_and_inspect_mode_reads_on)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_t *log;
	char path[512], c;
	int fd, rc;

	five_segments(first, seq);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_release_segment(log, 3), 0);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/RELEASED", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &c, 1, 0), 1);
	c = c == '3' ? '7' : '3';
	cr_assert_eq(pwrite(fd, &c, 1, 0), 1);
	close(fd);

	cr_assert_eq(aurawal_open(dir, &o, &log), AURAWAL_ECORRUPT);
	cr_assert_geq(rs.corruption, 1);
	cr_assert(strstr(rs.reason, "RELEASED"), "reason: %s", rs.reason);

	memset(&rs, 0, sizeof(rs));
	o.recovery = AURAWAL_RECOVER_INSPECT;
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(rc, 0, "inspect: %s", aurawal_strerror(rc));
	cr_assert_geq(rs.corruption, 2, "RELEASED, and the gap it no longer explains");
	read_check(log, first[1], idx[1], seq[1]);
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Write a whole, valid RELEASED record naming segment 3 into the file `name` of the
 * log's directory; its path goes to path. */
static void write_released_3(const char *name, char *path, size_t cap)
{
	char text[64];
	size_t len = (size_t) snprintf(text, sizeof(text), "3\n");
	int fd;

	len += (size_t) snprintf(text + len, sizeof(text) - len, "end %016llx\n",
				 (unsigned long long) XXH3_64bits(text, len));
	snprintf(path, cap, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t) len);
	close(fd);
}

Test(wal_release, an_interrupted_release_is_finished_at_open)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	char path[512];

	five_segments(first, seq);
	/* RELEASED names segment 3, but the crash came before its file was deleted */
	write_released_3("RELEASED", path, sizeof(path));
	log = wal_open_ok(dir, &o);
	snprintf(path, sizeof(path), "%s/0000000000000003.seg", dir);
	cr_assert_eq(access(path, F_OK), -1, "the released segment's file was not removed");
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* A crash in the middle of writing RELEASED leaves RELEASED.tmp - whole here, naming
 * segment 3, as if it came between the tmp file's sync and its rename. It was never
 * RELEASED: segment 3 stays. Open deletes the leftover; inspect mode leaves it. */
Test(wal_release, a_leftover_released_tmp_is_deleted_at_open_and_never_applied)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	char path[512];

	five_segments(first, seq);
	write_released_3("RELEASED.tmp", path, sizeof(path));

	o.recovery = AURAWAL_RECOVER_INSPECT;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_eq(access(path, F_OK), 0, "inspect mode changed the directory");

	o.recovery = AURAWAL_RECOVER_STRICT;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(access(path, F_OK), -1, "the leftover RELEASED.tmp is still there");
	read_check(log, first[3], idx[3], seq[3]);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/RELEASED", dir);
	cr_assert_eq(access(path, F_OK), -1, "no RELEASED was made of it");
}

/* The child: with an iterator still in segment 1, release segment 1, then segment 2
 * (the oldest now), and die by SIGKILL before the iterator is closed. Exit codes name
 * the step that failed. */
static void release_under_an_iterator_then_die(void)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = NULL;
	aurawal_iter_t *it;

	if (aurawal_open(dir, &o, &log) != 0)
		_exit(3);
	if (aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it) != 0)
		_exit(4);
	if (aurawal_release_segment(log, 1) != 0 || aurawal_release_segment(log, 2) != 0)
		_exit(5);
	raise(SIGKILL);
	_exit(6);
}

/* A release that returned is what a crash finds, even while a reader was still in the
 * segment: its file used to stay until the reader let go, so a crash meanwhile brought
 * segment 1 back - in front of a gap (segment 2, released as the oldest, is in no
 * RELEASED record) that the next open called corruption. */
Test(wal_release, a_segment_released_while_an_iterator_is_in_it_stays_released_after_a_crash)
{
	aurawal_loc_t first[5] = { 0 };
	uint64_t seq[5];
	struct reports rs = { 0 };
	aurawal_options_t o = wal_opts(&rs);
	aurawal_segment_info_t segs[8];
	aurawal_t *log = NULL;
	size_t n;
	pid_t pid;
	int st, rc;

	five_segments(first, seq);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		release_under_an_iterator_then_die();
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the child failed: status %d", st);
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(rc, 0, "reopening after the crash: %s (%s)", aurawal_strerror(rc), rs.reason);
	cr_assert_eq(rs.corruption, 0, "%s", rs.reason);
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &n), 0);
	cr_assert_eq(segs[0].number, 3, "segment %llu came back",
		     (unsigned long long) segs[0].number);
	read_check(log, first[2], idx[2], seq[2]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* The reader still in a released segment reads on through its file; then it is told
 * the segment is gone, as any reader there is. */
Test(wal_release, an_iterator_in_a_released_segment_reads_on_then_gets_enoent)
{
	aurawal_loc_t first[5] = { 0 }, loc;
	uint64_t seq[5], s;
	aurawal_options_t o = wal_opts(NULL);
	aurawal_iter_t *it;
	aurawal_t *log;
	const void *p;
	size_t len;
	int rc;

	five_segments(first, seq);
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	cr_assert_eq(aurawal_iter_next(it, &loc, &s, &p, &len), 1);
	cr_assert_eq(aurawal_release_segment(log, 1), 0);
	cr_assert(!wal_seg_file_exists(dir, 1),
		  "segment 1's file is still there after its release");
	cr_assert_eq(s, seq[0]);
	cr_assert(payload_check(p, len, idx[0]));
	while ((rc = aurawal_iter_next(it, &loc, &s, &p, &len)) == 1)
		cr_assert_eq(loc.segment, 1, "the iterator left the released segment");
	cr_assert_eq(rc, -ENOENT, "%s", aurawal_strerror(rc));
	aurawal_iter_close(it);
	read_check(log, first[1], idx[1], seq[1]);
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

/* Each of the n reads of 300-byte payload i completed once, with its record. */
static void check_reads(const struct async_read *r, uint8_t (*bufs)[300], const uint64_t *seqs,
			int n)
{
	for (int i = 0; i < n; i++) {
		cr_assert_eq(r[i].done, 1, "read %d: %d callbacks", i, r[i].done);
		cr_assert_eq(r[i].status, 0, "read %d: %s", i, aurawal_strerror(r[i].status));
		cr_assert_eq(r[i].len, 300);
		cr_assert_eq(r[i].seq, seqs[i]);
		cr_assert(payload_check(bufs[i], 300, (uint64_t) i));
	}
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
	check_reads(r, bufs, seqs, N);
	cr_assert_eq(
	    aurawal_read_async(log, (aurawal_loc_t){ 9, 4096, 1 }, bufs[0], 1, on_read, &r[0]),
	    -ENOENT);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_release, close_completes_async_reads_still_in_flight_and_runs_their_callbacks)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 64 };
	aurawal_loc_t locs[N];
	uint64_t seqs[N];
	static struct async_read r[N];
	static uint8_t bufs[N][300];

	for (int i = 0; i < N; i++)
		seqs[i] = append_i(log, (uint64_t) i, 300, AURAWAL_DURABLE, &locs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	/* Read-only: its close writes nothing, so nothing else reaps the reads meanwhile. */
	o.recovery = AURAWAL_RECOVER_INSPECT;
	log = wal_open_ok(dir, &o);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++) /* device reads, and nobody polls */
		cr_assert_eq(aurawal_read_async(log, locs[i], bufs[i], 300, on_read, &r[i]), 0);
	cr_assert_eq(aurawal_close(log), 0);
	check_reads(r, bufs, seqs, N);
}
