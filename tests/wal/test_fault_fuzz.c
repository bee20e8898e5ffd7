/* SPDX-License-Identifier: MIT */
/*
 * A bounded randomized fault-injection fuzz of the log. Each round opens a log on an
 * engine the test controls (small segments, random sync mode, flush delay and
 * flush_on_rollover), runs 1-3 threads of random durable, buffered and asynchronous
 * appends, syncs, flushes, reads, iterations and releases (aurawal_release_before and
 * aurawal_release_segment), and arms ONE random fault
 * rule at a random point (EIO, ENOSPC cleared later, a short or torn write, a short
 * read, refused kernel entries). A model records what each call was told. After close
 * the log is reopened without faults and checked against aurawal.h's contract:
 *   - every acknowledged durable record (and every record before it in the log, and
 *     everything if close returned 0) is readable intact at its location, with its
 *     sequence number, and found by the iterator in sequence order;
 *   - no append told -ENOSPC is found - unless close returned -ENOSPC: then one whose
 *     write went through before its sync failed may be (aurawal.h, Errors);
 *   - sequence numbers are unique and increase along the log;
 *   - once ENOSPC clears, appends succeed without reopening;
 *   - once the log has failed, appends and syncs answer its error;
 *   - faults that lose nothing (short writes and reads, refused entries) fail nothing.
 * An append told -EIO may or may not be found (aurawal.h promises absence for -ENOSPC
 * only): such records are counted, not judged.
 * Seeds are fixed and printed. WAL_FUZZ_ROUNDS raises the number of rounds,
 * WAL_FUZZ_SEED picks another base seed (one round: WAL_FUZZ_FIRST=<round>).
 * The threads' operations: tests/support/wal_fault_fuzz_ops.h; planning a round and
 * judging it: here.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "wal_fault_fuzz_ops.h"
#include "wal_test.h"

#define DEFAULT_ROUNDS 64
#define DEFAULT_SEED   0x5EEDF00Dull

/* ---- one round ---- */

static bool uring_engine(auraio_engine_t *e)
{
	auraio_stats_t st;

	return auraio_get_stats(e, &st) == 0 && st.backend == AURAIO_BACKEND_IO_URING;
}

static void plan_round(struct round *r, uint64_t *s)
{
	static const unsigned delays[] = { 0, 200, 1000, 5000 };
	uint64_t total;

	aurawal_options_init(&r->o);
	r->o.segment_size = SMALL_SEGMENT;
	r->o.buffer_size = below(s, 2) ? 64u << 10 : 256u << 10;
	r->o.flush_delay_us = delays[below(s, 4)];
	r->o.sync_mode = below(s, 2) ? AURAWAL_SYNC_DSYNC : AURAWAL_SYNC_FDATASYNC;
	r->o.flush_on_rollover = below(s, 3) == 0;
	r->o.recycle_segments = below(s, 4) != 0;
	r->o.reporter = reporter;
	r->o.reporter_arg = r;
	r->o.engine = r->e;
	r->nthreads = 1 + (int) below(s, MAX_THREADS);
	r->ops = (int) (360 / r->nthreads) + (int) below(s, 120);
	total = (uint64_t) r->ops * (uint64_t) r->nthreads;
	do
		r->kind = (enum plan_kind) below(s, P_KINDS);
	while (r->kind == P_ENTER && !uring_engine(r->e));
	r->fault = (auraio_fault_t){ .fd = -1, .skip = below(s, 12), .count = 1 + below(s, 3) };
	r->arm_at = below(s, total * 2 / 3);
	r->clear_at = UINT64_MAX;
	switch (r->kind) {
	case P_EIO_WRITE:
	case P_EIO_FSYNC:
	case P_EIO_READ:
	case P_EIO_ANY: {
		static const unsigned ops[] = { AURAIO_FAULT_OP_WRITE, AURAIO_FAULT_OP_FSYNC,
						AURAIO_FAULT_OP_READ, 0 };
		r->fault.ops = ops[r->kind - P_EIO_WRITE];
		r->fault.kind = AURAIO_FAULT_ERROR;
		r->fault.error = EIO;
		if (below(s, 3) == 0)
			r->fault.count = 0; /* until the round ends */
		break;
	}
	case P_ENOSPC:
	case P_ENOSPC_WRITE:
		r->fault.ops =
		    AURAIO_FAULT_OP_WRITE | (r->kind == P_ENOSPC ? AURAIO_FAULT_OP_FSYNC : 0);
		r->fault.kind = AURAIO_FAULT_ERROR;
		r->fault.error = ENOSPC;
		r->fault.count = 0;
		r->clear_at = r->arm_at + 5 + below(s, 60);
		break;
	case P_SHORT_WRITE:
	case P_SHORT_READ:
		r->fault.ops =
		    r->kind == P_SHORT_WRITE ? AURAIO_FAULT_OP_WRITE : AURAIO_FAULT_OP_READ;
		r->fault.kind = AURAIO_FAULT_SHORT;
		/* Whole blocks, as O_DIRECT transfers; never 0, which is the end of the file to
		 * a read and no progress to a write (the writer gives up: -EIO). */
		r->fault.keep = 4096 * (1 + below(s, 3));
		r->fault.count = 1 + below(s, 4);
		break;
	case P_TEAR:
		r->fault.ops = AURAIO_FAULT_OP_WRITE;
		r->fault.kind = AURAIO_FAULT_TEAR;
		r->fault.keep = 512 * below(s, 17);
		r->fault.count = 1;
		break;
	case P_ENTER:
		r->fault.kind = AURAIO_FAULT_ENTER;
		r->fault.count = 1 + below(s, 50);
		break;
	default:
		break;
	}
}

/* End of the run, faults still as they are: the log answers as the contract says. */
static void check_after_run(struct round *r, uint8_t *buf)
{
	int failed = aurawal_failed(r->log), rc;
	struct iovec iov = { buf, 100 };

	if (r->violated)
		return;
	if (failed) {
		cr_assert(plan_is_eio(r) && r->kind != P_EIO_READ,
			  "round %d: the log failed (%s: %s) under %s", r->index,
			  aurawal_strerror(failed), r->failed_reason, plan_names[r->kind]);
		cr_assert_eq(aurawal_append(r->log, &iov, 1, AURAWAL_DURABLE, NULL, NULL), failed);
		cr_assert_eq(aurawal_append(r->log, &iov, 1, 0, NULL, NULL), failed);
		cr_assert_eq(aurawal_sync(r->log), failed);
		return;
	}
	if (plan_is_enospc(r) && atomic_load(&r->armed) == 2) {
		/* Space returned: a new append is stored, without reopening. */
		fill(buf, 100, MAX_RECS + 1);
		rc = aurawal_append(r->log, &iov, 1, AURAWAL_DURABLE, NULL, NULL);
		cr_assert_eq(rc, 0, "round %d: a durable append after ENOSPC cleared: %s", r->index,
			     aurawal_strerror(rc));
		do_sync(r);
		cr_assert(!r->violated, "round %d: %s", r->index, r->why);
	}
}

/* Reopen without faults and hold the log against the model. */
static void check_reopened(struct round *r, const char *dir, int close_rc, uint8_t *buf)
{
	aurawal_options_t o = r->o;
	uint32_t n = model_size(r);
	aurawal_t *log = NULL;
	aurawal_iter_t *it;
	aurawal_loc_t loc, prev = { 0 };
	uint64_t seq, prev_seq = 0, must = 0, found = 0, failed_found = 0;
	const void *p;
	size_t len;
	bool *seen = calloc(n + 1, 1);
	int rc;

	o.engine = NULL;
	atomic_store(&r->rep_corrupt, 0);
	rc = aurawal_open(dir, &o, &log);
	cr_assert_eq(rc, 0, "round %d: reopen: %s", r->index, aurawal_strerror(rc));
	cr_assert_eq(atomic_load(&r->rep_corrupt), 0, "round %d: corruption at reopen", r->index);
	if (!r->mid_release) /* it expects each SEAL's successor next */
		wal_walk_all(log);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1) {
		int64_t id = payload_id(p, len);

		cr_assert(
		    !prev_seq || (seq > prev_seq &&
				  (loc.segment > prev.segment ||
				   (loc.segment == prev.segment && loc.offset > prev.offset))),
		    "round %d: seq %llu at %llu:%u after seq %llu at %llu:%u", r->index,
		    (unsigned long long) seq, (unsigned long long) loc.segment, loc.offset,
		    (unsigned long long) prev_seq, (unsigned long long) prev.segment, prev.offset);
		prev = loc;
		prev_seq = seq;
		if (id < 0 || id >= (int64_t) n)
			continue; /* a short record, or the post-run check's */
		struct rec *x = &r->recs[id];

		cr_assert(!seen[id], "round %d: record %lld found twice", r->index, (long long) id);
		seen[id] = true;
		cr_assert(intact(p, len, (uint32_t) id, x->size), "round %d: record %lld damaged",
			  r->index, (long long) id);
		cr_assert_neq(atomic_load(&x->state), ST_PENDING,
			      "round %d: append %lld never learnt its outcome", r->index,
			      (long long) id);
		cr_assert(!(atomic_load(&x->state) == ST_FAIL && x->err == -ENOSPC) ||
			      close_rc == -ENOSPC,
			  "round %d: append %lld (%s%s) was told -ENOSPC but is in the log at "
			  "%llu:%u seq %llu",
			  r->index, (long long) id, x->flags ? "durable" : "buffered",
			  x->async ? ", async" : "", (unsigned long long) loc.segment, loc.offset,
			  (unsigned long long) seq);
		failed_found += atomic_load(&x->state) == ST_FAIL;
		if (atomic_load(&x->state) == ST_OK)
			cr_assert(
			    x->seq == seq && x->loc.segment == loc.segment &&
				x->loc.offset == loc.offset,
			    "round %d: record %lld found at %llu:%u seq %llu, acknowledged at "
			    "%llu:%u seq %llu",
			    r->index, (long long) id, (unsigned long long) loc.segment, loc.offset,
			    (unsigned long long) seq, (unsigned long long) x->loc.segment,
			    x->loc.offset, (unsigned long long) x->seq);
		found++;
	}
	cr_assert_eq(rc, 0, "round %d: iterating the reopened log: %s", r->index,
		     aurawal_strerror(rc));
	aurawal_iter_close(it);

	for (uint32_t id = 0; id < n; id++) {
		struct rec *x = &r->recs[id];
		size_t got = 0;
		uint64_t s = 0;

		if (atomic_load(&x->state) != ST_OK || gone(r, x->loc.segment))
			continue;
		if (!(x->flags & AURAWAL_DURABLE) && x->seq > r->durable_floor && close_rc != 0)
			continue; /* buffered, never covered by a sync: may be lost */
		must++;
		cr_assert(x->size < 8 || seen[id],
			  "round %d: acknowledged %s%s record %u (seq %llu at %llu:%u) is not in "
			  "the reopened log (durable floor %llu, close %s)",
			  r->index, x->flags ? "durable" : "buffered", x->async ? " async" : "", id,
			  (unsigned long long) x->seq, (unsigned long long) x->loc.segment,
			  x->loc.offset, (unsigned long long) r->durable_floor,
			  aurawal_strerror(close_rc));
		rc = aurawal_read(log, x->loc, buf, BIG_MAX, &got, &s);
		cr_assert(rc == 0 && s == x->seq && intact(buf, got, id, x->size),
			  "round %d: reading record %u at %llu:%u after reopening: %s", r->index,
			  id, (unsigned long long) x->loc.segment, x->loc.offset,
			  aurawal_strerror(rc));
	}
	cr_assert_eq(aurawal_close(log), 0);
	free(seen);
	/* An append told -EIO (its write or sync failed) may or may not be in the log, as
	 * may one told -ENOSPC if close returned -ENOSPC (aurawal.h). Counted, not judged. */
	cr_log_info("round %d: %u appends, %llu must survive, %llu found (%llu told an error)",
		    r->index, n, (unsigned long long) must, (unsigned long long) found,
		    (unsigned long long) failed_found);
}

/* Every acknowledged record has its own sequence number and location. */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

static void check_unique(struct round *r)
{
	uint32_t n = model_size(r), k = 0;
	uint64_t *seqs = malloc(sizeof(uint64_t) * (n + 1));

	for (uint32_t i = 0; i < n; i++)
		if (atomic_load(&r->recs[i].state) == ST_OK)
			seqs[k++] = r->recs[i].seq;
	qsort(seqs, k, sizeof(uint64_t), cmp_u64);
	for (uint32_t i = 1; i < k; i++)
		cr_assert_neq(seqs[i], seqs[i - 1], "round %d: seq %llu given twice", r->index,
			      (unsigned long long) seqs[i]);
	free(seqs);
}

static void run_round(uint64_t seed, int index)
{
	struct round *r = calloc(1, sizeof(*r));
	struct worker w[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	uint64_t s = seed;
	uint8_t *buf = malloc(BIG_MAX);
	char *dir = temp_dir();
	int close_rc;

	r->seed = seed;
	r->index = index;
	pthread_mutex_init(&r->mu, NULL);
	r->e = test_faulty_engine();
	plan_round(r, &s);
	cr_log_info("round %d seed %#llx: %d threads x %d ops, %s (skip %llu count %llu keep %zu) "
		    "at op %llu, sync %s, delay %u us, flush_on_rollover %d, buffer %zu KiB",
		    index, (unsigned long long) seed, r->nthreads, r->ops, plan_names[r->kind],
		    (unsigned long long) r->fault.skip, (unsigned long long) r->fault.count,
		    r->fault.keep, (unsigned long long) r->arm_at,
		    r->o.sync_mode == AURAWAL_SYNC_DSYNC ? "DSYNC" : "FDATASYNC",
		    r->o.flush_delay_us, r->o.flush_on_rollover, r->o.buffer_size >> 10);
	cr_assert_eq(aurawal_open(dir, &r->o, &r->log), 0);
	for (int i = 0; i < r->nthreads; i++) {
		w[i] = (struct worker){ r, rnd(&s) };
		cr_assert_eq(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < r->nthreads; i++)
		pthread_join(t[i], NULL);
	cr_assert(!r->violated, "round %d (seed %#llx): %s", index, (unsigned long long) seed,
		  r->why);
	if (plan_is_enospc(r) && atomic_load(&r->armed) && below(&s, 4)) {
		auraio_fault_clear(r->e); /* else close meets it */
		atomic_store(&r->armed, 2);
	}
	check_after_run(r, buf);
	if (!plan_is_enospc(r) || below(&s, 2)) {
		auraio_fault_clear(r->e);
		if (atomic_load(&r->armed))
			atomic_store(&r->armed, 2);
	}
	close_rc = aurawal_close(r->log);
	cr_assert(!r->violated, "round %d (seed %#llx): %s", index, (unsigned long long) seed,
		  r->why);
	if (close_rc)
		cr_assert(fault_explains(r, close_rc) || close_rc == -EIO || close_rc == -ENOSPC,
			  "round %d: close: %s", index, aurawal_strerror(close_rc));
	if (!plan_is_eio(r) && !plan_is_enospc(r))
		cr_assert_eq(close_rc, 0, "round %d: %s failed close: %s", index,
			     plan_names[r->kind], aurawal_strerror(close_rc));
	{
		auraio_stats_t st;

		cr_assert_eq(auraio_get_stats(r->e, &st), 0);
		cr_log_info("round %d: %llu faults injected, close %s, failed %d; %d reads, %d "
			    "records iterated, %d segments released",
			    index, (unsigned long long) st.faults_injected,
			    aurawal_strerror(close_rc), atomic_load(&r->rep_failed),
			    atomic_load(&r->n_read), atomic_load(&r->n_iter),
			    atomic_load(&r->n_released));
	}
	auraio_destroy(r->e);
	check_unique(r);
	check_reopened(r, dir, close_rc, buf);
	rm_tree(dir);
	free(dir);
	free(buf);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static long env_num(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 0) : dflt;
}

Test(wal_fault_fuzz, random_faults_keep_the_durability_contract, .timeout = 300)
{
	long rounds = env_num("WAL_FUZZ_ROUNDS", DEFAULT_ROUNDS);
	long first = env_num("WAL_FUZZ_FIRST", 0);
	uint64_t base = (uint64_t) env_num("WAL_FUZZ_SEED", (long) DEFAULT_SEED);

	cr_log_info("base seed %#llx, rounds %ld..%ld", (unsigned long long) base, first,
		    first + rounds - 1);
	for (long i = first; i < first + rounds; i++) {
		uint64_t s = base + (uint64_t) i * 0x100000001B3ull;

		if (getenv("WAL_FUZZ_VERBOSE")) /* which round, should one hang */
			fprintf(stderr, "wal_fault_fuzz: round %ld\n", i);
		run_round(rnd(&s), (int) i);
	}
	/* A round that found a hang (appenders waiting for the next segment when the log
	 * failed: reserve, prepare_retry; it hung in about one run in three under load):
	 * kept in every default run. */
	if (!getenv("WAL_FUZZ_SEED") && !getenv("WAL_FUZZ_FIRST")) {
		uint64_t s = 0x4242 + 47 * 0x100000001B3ull;

		run_round(rnd(&s), 47);
	}
}
