/* SPDX-License-Identifier: MIT */
/*
 * Large records and gathered writes: records bigger than a batch buffer reuse their
 * memory instead of mapping fresh pages each time; batches that queue up behind a write
 * go out together in one write; a torn gathered write loses no acknowledged record and
 * leaves a log that opens cleanly; a mixed stream reads back after reopen.
 */
#include <pthread.h>
#include <sys/resource.h>

#include "wal_internal_test.h"
#include "wal_test.h"

WAL_DIR_SUITE(wal_large);

static long minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

Test(wal_large, records_larger_than_a_batch_buffer_reuse_memory_instead_of_mapping_it)
{
	enum { N = 100, LEN = 300 << 10 }; /* the batch buffer is 256 KiB */
	aurawal_options_t o = wal_opts(NULL);
	static uint8_t payload[N][LEN];
	static aurawal_loc_t locs[N];
	static uint64_t seqs[N];
	aurawal_t *log;
	long faults;

	o.segment_size = 64u << 20; /* no segment is built while appending */
	for (int i = 0; i < N; i++)
		payload_fill(payload[i], LEN, (uint64_t) i);
	log = wal_open_ok(dir, &o);
	wal_preparer_idle(log);
	faults = minor_faults();
	for (int i = 0; i < N; i++) {
		struct iovec iov = { payload[i], LEN };

		cr_assert_eq(aurawal_append(log, &iov, 1, 0, &locs[i], &seqs[i]), 0);
	}
	cr_assert_eq(aurawal_sync(log), 0);
	faults = minor_faults() - faults;
	/* A fresh mapping per record faulted in its ~75 pages for every record copied. */
	cr_log_info("%ld page faults for %d records of %d KiB", faults, N, LEN >> 10);
#ifndef __SANITIZE_THREAD__ /* TSan's shadow memory faults in pages of its own */
	cr_assert_lt(faults, N * (LEN / 4096) / 3, "%ld page faults for %d large records", faults,
		     N);
#endif
	for (int i = 0; i < N; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < N; i += 7)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

/* ---- holding the writer back: a ring filled with pipe reads ---- */

struct stall {
	int fds[64][2];
	int n;
	char b[64];
	struct recorder rec;
};

/* One ring, few slots, no adaptive limit: pipe reads can fill it, so the log's writer
 * cannot submit until the test lets them complete. */
static auraio_engine_t *small_engine(bool faults)
{
	auraio_options_t eo;
	auraio_engine_t *e;
	auraio_fault_t probe = { .fd = -1, .count = 1, .skip = UINT64_MAX };

	auraio_options_init(&eo);
	eo.ring_count = 1;
	eo.queue_depth = 8;
	eo.disable_adaptive = true;
	e = auraio_create_with_options(&eo);
	cr_assert_not_null(e);
	if (faults && auraio_fault_set(e, &probe) == -ENOTSUP) {
		auraio_destroy(e);
		cr_skip_test("fault injection is not compiled into this build");
	}
	auraio_fault_clear(e);
	return e;
}

static void stall(auraio_engine_t *e, struct stall *s)
{
	memset(s, 0, sizeof(*s));
	for (; s->n < 64; s->n++) {
		cr_assert_eq(pipe(s->fds[s->n]), 0);
		if (!auraio_read(e, s->fds[s->n][0], auraio_buf(&s->b[s->n]), 1, 0, record_cb,
				 &s->rec)) {
			cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
			close(s->fds[s->n][0]);
			close(s->fds[s->n][1]);
			break;
		}
	}
	cr_assert_gt(s->n, 0);
	cr_assert_lt(s->n, 64, "the ring never filled");
}

static void unstall(auraio_engine_t *e, struct stall *s)
{
	for (int i = 0; i < s->n; i++)
		cr_assert_eq(write(s->fds[i][1], "x", 1), 1);
	while (atomic_load(&s->rec.calls) < s->n)
		auraio_wait(e, 100);
	for (int i = 0; i < s->n; i++) {
		close(s->fds[i][0]);
		close(s->fds[i][1]);
	}
}

enum { GLEN = 100 << 10 }; /* two records per 256 KiB batch buffer */

/* Buffered records filling every batch buffer but one while the writer is held back
 * (its first write cannot be submitted). Returns the number appended. */
static int fill_buffers(aurawal_t *log, aurawal_loc_t *locs, uint64_t *seqs, uint64_t first)
{
	int n = 2 * (log->nbufs - 1) + 1;

	for (int i = 0; i < n; i++)
		seqs[i] = append_i(log, first + (uint64_t) i, GLEN, 0, &locs[i]);
	return n;
}

static aurawal_options_t gather_opts(auraio_engine_t *e)
{
	aurawal_options_t o = wal_opts(NULL);

	o.engine = e;
	o.segment_size = 16u << 20;
	o.flush_delay_us = 10000000; /* written when a buffer fills or on sync, only */
	return o;
}

Test(wal_large, batches_queued_behind_a_write_go_out_together_in_one_write)
{
	auraio_engine_t *e = small_engine(false);
	aurawal_options_t o = gather_opts(e);
	static aurawal_loc_t locs[64];
	static uint64_t seqs[64];
	static struct stall s;
	aurawal_stats_t st;
	aurawal_t *log = wal_open_ok(dir, &o);
	int n;

	wal_preparer_idle(log);
	stall(e, &s);
	n = fill_buffers(log, locs, seqs, 0); /* the old writer had 3 buffers: this hung */
	unstall(e, &s);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_get_stats(log, &st), 0);
	cr_log_info("%d records in %d batches: %llu writes", n, log->nbufs,
		    (unsigned long long) st.writes);
	/* one write per batch before; now those queued behind the held-back write go out
	 * together, half of the buffers at a time */
	cr_assert_leq(st.writes, (uint64_t) log->nbufs / 2,
		      "%llu writes for %d batches: queued batches were not gathered",
		      (unsigned long long) st.writes, log->nbufs);
	for (int i = 0; i < n; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	auraio_destroy(e);
	o.engine = NULL;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < n; i++)
		read_check(log, locs[i], (uint64_t) i, seqs[i]);
	cr_assert_eq(aurawal_close(log), 0);
}

Test(wal_large, a_torn_gathered_write_keeps_acknowledged_records_and_the_log_opens_cleanly)
{
	/* where the second write (several batches gathered) is torn: in its first block,
	 * at a record boundary or not, inside a later batch */
	static const size_t keeps[] = { 0, 512, 4096, 8192, 100 << 10, 200 << 10, 300 << 10 };

	for (size_t k = 0; k < sizeof(keeps) / sizeof(keeps[0]); k++) {
		auraio_engine_t *e = small_engine(true);
		aurawal_options_t o = gather_opts(e);
		static aurawal_loc_t acked[8], locs[64];
		static uint64_t acked_seq[8], seqs[64];
		static struct stall s;
		struct reports rs = { 0 };
		aurawal_t *log;
		aurawal_iter_t *it;
		uint64_t seq;
		int n = 0, rc;

		rm_tree(dir);
		cr_assert_eq(mkdir(dir, 0755), 0);
		log = wal_open_ok(dir, &o);
		for (int i = 0; i < 8; i++) /* acknowledged: they must survive */
			acked_seq[i] =
			    append_i(log, (uint64_t) i, 3000, AURAWAL_DURABLE, &acked[i]);
		wal_preparer_idle(log);
		stall(e, &s);
		fill_buffers(log, locs, seqs, 8);
		pthread_mutex_lock(&log->mu);
		cr_assert_eq(auraio_fault_set(e, &(auraio_fault_t){ .ops = AURAIO_FAULT_OP_WRITE,
								    .fd = log->active->fd,
								    .skip = 1,
								    .count = 1,
								    .kind = AURAIO_FAULT_TEAR,
								    .keep = keeps[k] }),
			     0);
		pthread_mutex_unlock(&log->mu);
		unstall(e, &s);
		cr_assert_lt(aurawal_sync(log), 0, "the torn write must not be acknowledged");
		aurawal_close(log);
		auraio_destroy(e);

		o = wal_opts(&rs); /* strict recovery, an engine without faults */
		log = wal_open_ok(dir, &o);
		cr_assert_eq(rs.corruption, 0, "keep %zu: %s", keeps[k], rs.reason);
		for (int i = 0; i < 8; i++)
			read_check(log, acked[i], (uint64_t) i, acked_seq[i]);
		cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
		while ((rc = aurawal_iter_next(it, NULL, &seq, NULL, NULL)) == 1)
			n++;
		cr_assert_eq(rc, 0);
		cr_assert_geq(n, 8);
		aurawal_iter_close(it);
		cr_assert_eq(aurawal_close(log), 0);
	}
}

/* ---- a mixed stream from several threads ---- */

struct mixer {
	aurawal_t *log;
	int id;
	aurawal_loc_t locs[60];
	uint64_t seqs[60];
	size_t lens[60];
};

static void *mix(void *arg)
{
	struct mixer *m = arg;

	for (int i = 0; i < 60; i++) {
		uint64_t key = (uint64_t) m->id * 60 + (uint64_t) i;

		m->lens[i] = (key % 5 == 0) ? 700000 + key : (key % 3 == 0) ? 70000 : 200 + key;
		m->seqs[i] =
		    append_i(m->log, key, m->lens[i], i % 4 ? 0 : AURAWAL_DURABLE, &m->locs[i]);
	}
	return NULL;
}

Test(wal_large, large_and_small_records_from_several_threads_read_back_after_reopen)
{
	aurawal_options_t o = wal_opts(NULL);
	static struct mixer m[4];
	aurawal_t *log;
	pthread_t t[4];

	o.segment_size = 4u << 20;
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 4; i++) {
		m[i].log = log;
		m[i].id = i;
		cr_assert_eq(pthread_create(&t[i], NULL, mix, &m[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(aurawal_close(log), 0);
	log = wal_open_ok(dir, &o);
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 60; k++)
			read_check(log, m[i].locs[k], (uint64_t) i * 60 + (uint64_t) k,
				   m[i].seqs[k]);
	cr_assert_eq(aurawal_close(log), 0);
}
