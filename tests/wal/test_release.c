/* SPDX-License-Identifier: MIT */
/* Releasing segments out of order (the store's GC), the RELEASED record of such gaps,
 * and asynchronous reads. */
#include <signal.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_internal_test.h" /* record sizes; waiting for the ready segment */
#include "wal_test.h"

WAL_DIR_SUITE(wal_release);

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

static bool seg_file_exists(uint64_t n)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%016llx.seg", dir, (unsigned long long) n);
	return access(path, F_OK) == 0;
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
	cr_assert(seg_file_exists(3), "this log's segment was deleted (open: %s)",
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
	cr_assert(seg_file_exists(4) && seg_file_exists(5), "inspect mode changes nothing");

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
	cr_assert(!seg_file_exists(1), "segment 1's file is still there after its release");
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
	cr_assert(seg_file_exists(1), "segment 1 was released with its seal unwritten");
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
	cr_assert(seg_file_exists(2), "segment 2 was released with its seal unwritten");
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
	cr_assert_not(seg_file_exists(3));
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
	cr_assert_not(seg_file_exists(1));
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
