/* SPDX-License-Identifier: MIT */
/* test_read_path.c - reading records back while the log changes under the reader. */
#include <pthread.h>
#include <stdatomic.h>

#include "wal_test.h"

WAL_DIR_SUITE(wal_read_path);

static void read_cb_status(void *arg, int status, size_t len, uint64_t seq)
{
	(void) len;
	(void) seq;
	*(int *) arg = status;
}

struct appender {
	aurawal_t *log;
	int n;
	size_t len;
	aurawal_loc_t *locs;
	uint64_t *seqs;
	atomic_int done;
};

static void *append_all(void *arg)
{
	struct appender *a = arg;

	for (int i = 0; i < a->n; i++) {
		uint8_t p[4000];
		size_t len = 1 + (size_t) (i * 37) % a->len;
		struct iovec iov = { p, len };

		payload_fill(p, len, (uint64_t) i);
		if (aurawal_append(a->log, &iov, 1, i % 50 == 0 ? AURAWAL_DURABLE : 0, &a->locs[i],
				   &a->seqs[i]) != 0)
			break;
		atomic_store(&a->done, i + 1);
	}
	return NULL;
}

Test(wal_read_path, an_iterator_racing_appends_sees_every_record_once_in_order, .timeout = 60)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	enum { N = 3000 };
	static aurawal_loc_t locs[N];
	static uint64_t seqs[N], seen_seq[N];
	static aurawal_loc_t seen[N];
	struct appender a = { NULL, N, 4000, locs, seqs, 0 };
	aurawal_iter_t *it;
	pthread_t t;
	int got = 0;

	o.flush_delay_us = 50;
	log = wal_open_ok(dir, &o);
	a.log = log;
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	cr_assert_eq(pthread_create(&t, NULL, append_all, &a), 0);
	while (got < N) {
		aurawal_loc_t loc;
		uint64_t seq;
		const void *p;
		size_t len;
		int rc = aurawal_iter_next(it, &loc, &seq, &p, &len);

		cr_assert_geq(rc, 0, "record %d: %s", got, aurawal_strerror(rc));
		if (rc == 0) {
			if (atomic_load(&a.done) == N)
				cr_assert_eq(aurawal_flush(log), 0);
			continue;
		}
		cr_assert_lt(got, atomic_load(&a.done) + 1);
		cr_assert_eq(len, 1 + (size_t) (got * 37) % 4000);
		cr_assert(payload_check(p, len, (uint64_t) got), "record %d", got);
		seen[got] = loc;
		seen_seq[got] = seq;
		got++;
	}
	pthread_join(t, NULL);
	for (int i = 0; i < N; i++) /* the same records, not just the same payloads */
		cr_assert(seen[i].segment == locs[i].segment && seen[i].offset == locs[i].offset &&
			      seen_seq[i] == seqs[i],
			  "record %d", i);
	cr_assert_eq(aurawal_iter_next(it, NULL, NULL, NULL, NULL), 0);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);
}

struct chain {
	aurawal_t *log;
	aurawal_loc_t loc;
	uint8_t buf[300];
	int left, calls, bad;
};

static void chain_cb(void *arg, int status, size_t len, uint64_t seq)
{
	struct chain *c = arg;

	(void) seq;
	c->calls++;
	if (status != 0 || len != 300)
		c->bad++;
	if (c->left-- > 0 && aurawal_read_async(c->log, c->loc, c->buf, 300, chain_cb, c) != 0)
		c->bad++;
}

Test(wal_read_path, a_read_callback_that_reads_again_completes_under_poll_and_close)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	struct chain c = { 0 };

	c.log = log;
	append_i(log, 0, 300, AURAWAL_DURABLE, &c.loc);
	c.left = 5;
	cr_assert_eq(aurawal_read_async(log, c.loc, c.buf, 300, chain_cb, &c), 0);
	while (c.calls < 6)
		cr_assert_geq(aurawal_poll(log, -1), 0);
	cr_assert_eq(c.bad, 0);
	c.left = 5;
	c.calls = 0;
	cr_assert_eq(aurawal_read_async(log, c.loc, c.buf, 300, chain_cb, &c), 0);
	cr_assert_eq(aurawal_close(log), 0);
	cr_assert_eq(c.calls, 6);
	cr_assert_eq(c.bad, 0);
}

struct releaser {
	aurawal_t *log;
	atomic_int stop;
	int n;
	aurawal_loc_t *locs;
};

static void *append_release(void *arg)
{
	struct releaser *r = arg;

	for (int i = 0; i < r->n; i++) {
		uint8_t p[3000];
		struct iovec iov = { p, sizeof(p) };

		payload_fill(p, sizeof(p), (uint64_t) i);
		cr_assert_eq(aurawal_append(r->log, &iov, 1, 0, &r->locs[i], NULL), 0);
		if (i % 400 == 399)
			cr_assert_geq(aurawal_release_before(r->log, r->locs[i]), 0);
		atomic_store(&r->stop, i + 1);
	}
	return NULL;
}

Test(wal_read_path, reads_racing_release_and_recycling_get_the_record_or_enoent, .timeout = 60)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	enum { N = 4000 };
	static aurawal_loc_t locs[N];
	struct releaser r = { NULL, 0, N, locs };
	static uint8_t buf[3000];
	pthread_t t;
	int k = 0, ok = 0, gone = 0;

	o.spare_segments = 2;
	log = wal_open_ok(dir, &o);
	r.log = log;
	cr_assert_eq(pthread_create(&t, NULL, append_release, &r), 0);
	while (atomic_load(&r.stop) < N) {
		int d = atomic_load(&r.stop), i, rc;
		size_t len;

		if (d == 0)
			continue;
		i = (k++ * 7919) % d;
		rc = aurawal_read(log, locs[i], buf, sizeof(buf), &len, NULL);
		cr_assert(rc == 0 || rc == -ENOENT, "read %d: %s", i, aurawal_strerror(rc));
		if (rc == 0) {
			cr_assert(payload_check(buf, len, (uint64_t) i));
			ok++;
		} else {
			gone++;
		}
	}
	pthread_join(t, NULL);
	cr_assert_gt(ok, 0);
	cr_assert_eq(aurawal_close(log), 0);
}

static void append_cb_status(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) loc;
	(void) seq;
	*(int *) arg = status;
}

/* aurawal.h (aurawal_failed, aurawal_read): once the log has failed, a record that was
 * appended but not yet written is lost - reading it answers the failure's error, never
 * the bytes of a buffer that will not reach the disk now. Here the write of a full
 * buffer fails while the last record waits in the next one. */
Test(wal_read_path, a_record_not_yet_written_when_the_log_fails_reads_as_the_failure)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	aurawal_loc_t lost;
	uint8_t p[3000], buf[3000];
	struct iovec iov = { p, sizeof(p) };
	int rc, first = 1, st = 1;

	o.engine = e;
	o.buffer_size = 64u << 10;
	o.flush_delay_us = 0; /* a buffer is written when it fills, not before */
	log = wal_open_ok(dir, &o);
	test_fault_error(e, AURAIO_FAULT_OP_WRITE, 0, 0, EIO);
	cr_assert_eq(aurawal_append_async(log, &iov, 1, 0, append_cb_status, &first), 0);
	/* Fill the first buffer: it is closed (and written) only when a record does not fit,
	 * and that record is placed in the next buffer under the same lock - so it is there
	 * before the write fails, and no append before it can fail. */
	lost.offset = 0;
	for (uint64_t i = 1; lost.offset + 32 + 3000 <= 4096 + (64u << 10); i++)
		append_i(log, i, 3000, 0, &lost);
	while (first == 1) /* the first buffer's write failed */
		cr_assert_geq(aurawal_poll(log, -1), 0);
	cr_assert_eq(first, -EIO);
	cr_assert_eq(aurawal_failed(log), -EIO);
	rc = aurawal_read(log, lost, buf, sizeof(buf), NULL, NULL);
	cr_assert_eq(rc, -EIO, "read of a lost record: %s", aurawal_strerror(rc));
	cr_assert_eq(aurawal_read_async(log, lost, buf, sizeof(buf), read_cb_status, &st), 0);
	while (st == 1)
		cr_assert_geq(aurawal_poll(log, -1), 0);
	cr_assert_eq(st, -EIO);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), -EIO);
	auraio_destroy(e);
}

struct counted {
	int calls, status;
	size_t len;
	uint64_t seq;
};

static void counted_cb(void *arg, int status, size_t len, uint64_t seq)
{
	struct counted *c = arg;

	c->seq = seq;
	c->calls++;
	c->status = status;
	c->len = len;
}

/* A device read that fails: the asynchronous read's callback runs once, with the error
 * (not corruption), and a later read of the same record succeeds; an iterator whose read
 * failed resumes at the same record. */
Test(wal_read_path, a_failed_device_read_is_reported_once_and_the_record_reads_again)
{
	auraio_engine_t *e = test_faulty_engine();
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	aurawal_loc_t loc, at;
	aurawal_iter_t *it;
	struct counted c = { 0, 1, 0, 0 };
	uint8_t buf[500];
	uint64_t seq;

	o.engine = e;
	log = wal_open_ok(dir, &o);
	append_i(log, 0, 500, AURAWAL_DURABLE, NULL);
	seq = append_i(log, 1, 500, AURAWAL_DURABLE, &loc);
	test_fault_error(e, AURAIO_FAULT_OP_READ, 0, 1, EIO);
	cr_assert_eq(aurawal_read_async(log, loc, buf, sizeof(buf), counted_cb, &c), 0);
	while (c.calls == 0)
		cr_assert_geq(aurawal_poll(log, -1), 0);
	cr_assert_eq(aurawal_poll(log, 0), 0);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.status, -EIO);
	read_check(log, loc, 1, seq);
	cr_assert_eq(aurawal_iter_open(log, loc, &it), 0);
	test_fault_error(e, AURAIO_FAULT_OP_READ, 0, 1, EIO);
	cr_assert_eq(aurawal_iter_next(it, &at, NULL, NULL, NULL), -EIO);
	cr_assert_eq(aurawal_iter_next(it, &at, NULL, NULL, NULL), 1);
	cr_assert_eq(at.offset, loc.offset);
	cr_assert_eq(aurawal_iter_next(it, NULL, NULL, NULL, NULL), 0);
	aurawal_iter_close(it);
	auraio_fault_clear(e);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
}

/* The iterator reads a segment in 1 MiB chunks: records that straddle a chunk's end, or
 * are larger than a chunk, come back whole and in order, and each reads by location. */
Test(wal_read_path, records_across_the_iterators_read_chunks_come_back_whole, .timeout = 60)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	enum { N = 60 };
	static aurawal_loc_t locs[N];
	static uint64_t seqs[N];
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	const void *p;
	size_t len;
	uint64_t seq;
	int n = 0;

	o.segment_size = 8u << 20;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < N; i++) {
		size_t sz = i % 10 == 9 ? (1u << 20) + 4096 + (size_t) i : 50000 + (size_t) i * 997;

		seqs[i] =
		    append_i(log, (uint64_t) i, sz, i % 7 == 0 ? AURAWAL_DURABLE : 0, &locs[i]);
	}
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while (aurawal_iter_next(it, &loc, &seq, &p, &len) == 1) {
		cr_assert_lt(n, N);
		cr_assert(loc.segment == locs[n].segment && loc.offset == locs[n].offset);
		cr_assert_eq(seq, seqs[n]);
		cr_assert_eq(len, locs[n].size);
		cr_assert(payload_check(p, len, (uint64_t) n), "record %d", n);
		n++;
	}
	cr_assert_eq(n, N);
	aurawal_iter_close(it);
	for (int i = 0; i < N; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* Many more asynchronous reads than the engine's ring and the log's registered buffers
 * hold, issued before any poll: each callback runs exactly once, with its record. */
Test(wal_read_path, thousands_of_async_reads_in_flight_each_complete_once, .timeout = 60)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	enum { N = 200, R = 4000 };
	static aurawal_loc_t locs[N];
	static uint64_t seqs[N];
	static struct counted c[R];
	static uint8_t bufs[R][300];
	int done = 0;

	for (int i = 0; i < N; i++)
		seqs[i] = append_i(log, (uint64_t) i, 300, 0, &locs[i]);
	cr_assert_eq(aurawal_sync(log), 0);
	for (int r = 0; r < R; r++)
		cr_assert_eq(aurawal_read_async(log, locs[r % N], bufs[r], 300, counted_cb, &c[r]),
			     0);
	while (done < R) {
		int n = aurawal_poll(log, -1);

		cr_assert_gt(n, 0);
		done += n;
	}
	cr_assert_eq(aurawal_poll(log, 0), 0);
	for (int r = 0; r < R; r++) {
		cr_assert_eq(c[r].calls, 1, "read %d: %d callbacks", r, c[r].calls);
		cr_assert_eq(c[r].status, 0, "read %d: %s", r, aurawal_strerror(c[r].status));
		cr_assert_eq(c[r].len, 300);
		cr_assert_eq(c[r].seq, seqs[r % N]);
		cr_assert(payload_check(bufs[r], 300, (uint64_t) (r % N)), "read %d", r);
	}
	cr_assert_eq(aurawal_close(log), 0);
}

/* A read and an asynchronous read answer the same for each wrong location, whether the
 * record it names is on disk or still in memory. */
static int read_both(aurawal_t *log, aurawal_loc_t loc, void *buf, size_t cap)
{
	struct counted c = { 0, 1, 0, 0 };
	int rc = aurawal_read(log, loc, buf, cap, NULL, NULL);
	int arc = aurawal_read_async(log, loc, buf, cap, counted_cb, &c);

	if (arc == 0) {
		while (c.calls == 0)
			cr_assert_geq(aurawal_poll(log, -1), 0);
		arc = c.status;
	}
	cr_assert_eq(rc, arc, "at %llu:%u+%u: read %s, async %s", (unsigned long long) loc.segment,
		     loc.offset, loc.size, aurawal_strerror(rc), aurawal_strerror(arc));
	return rc;
}

Test(wal_read_path, wrong_locations_get_the_same_documented_error_on_disk_and_in_memory)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log;
	aurawal_loc_t d, m, e;
	static uint8_t buf[8192];
	int rc;

	o.flush_delay_us = 0;
	log = wal_open_ok(dir, &o);
	append_i(log, 0, 1000, AURAWAL_DURABLE, &d);
	append_i(log, 1, 0, AURAWAL_DURABLE, &e);
	append_i(log, 2, 1000, 0, &m); /* in memory: no flush delay */
	cr_assert_eq(read_both(log, e, NULL, 0), 0);
	for (int k = 0; k < 2; k++) {
		aurawal_loc_t l = k ? m : d, x;

		cr_assert_eq(read_both(log, l, buf, sizeof(buf)), 0);
		x = l, x.size = 0;
		cr_assert_eq(read_both(log, x, NULL, 0), AURAWAL_ECORRUPT);
		x = l, x.size = 992;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), AURAWAL_ECORRUPT);
		x = l, x.offset += 8, x.size = 8;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), AURAWAL_ECORRUPT);
		x = l, x.offset += 4;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), -EINVAL);
		x = l, x.size = 8000; /* past the end of what is appended */
		rc = read_both(log, x, buf, sizeof(buf));
		cr_assert_eq(rc, -EINVAL, "k %d: %s", k, aurawal_strerror(rc));
		x = l, x.offset = 2048;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), -EINVAL);
		x = l, x.segment = 7;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), -ENOENT);
		x = l, x.segment = 0;
		cr_assert_eq(read_both(log, x, buf, sizeof(buf)), -ENOENT);
		cr_assert_eq(aurawal_read(log, l, buf, 999, NULL, NULL), -EMSGSIZE);
		cr_assert_eq(aurawal_read_async(log, l, buf, 999, counted_cb, NULL), -EMSGSIZE);
		cr_assert_eq(aurawal_read(log, l, NULL, 1000, NULL, NULL), -EINVAL);
	}

	cr_assert_eq(read_both(log, (aurawal_loc_t){ 1, (uint32_t) (m.offset + 1032), 0 }, NULL, 0),
		     -EINVAL);
	cr_assert_eq(aurawal_close(log), 0);
}
