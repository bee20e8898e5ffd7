/* SPDX-License-Identifier: MIT */
/*
 * workloads.c - the loops of the synchronous workloads, every operation timed: puts
 * (fills, overwrite, the writer of readwhilewriting) and aurakv_get_into (readrandom,
 * readmissing). Asynchronous gets, multiget and readseq are in async.c.
 *
 * One clock read per operation: the end of one operation is the start of the next, so
 * a latency includes the loop's own few nanoseconds (making the key and picking the
 * value) but the clock is not read twice; and the counters of a synchronous loop are
 * written by its thread only (owner_add, no locked instruction). At 2 us per get
 * these choices keep the tool's share of the time under ~5% (measured against a
 * store that does nothing: ~0.1 us per operation, timing included).
 *
 * An operation counts only if it finished while the phase is MEASURE: one that ends
 * after the clock stopped the run (--duration) is dropped, from the rate, the latency
 * and the found/missing counts alike, so found is always out of `done`.
 *
 * Must never: start an operation once the phase is STOP.
 */
#include <string.h>

#include "kvbench.h"

/* An operation that started at *t finished now: count it if the clock is running.
 * *t becomes now, the start of the next one. */
static bool finish_op(struct job *j, uint64_t *t)
{
	uint64_t t1 = now_ns(), t0 = *t;

	*t = t1;
	if (bench_phase(j->b) != PHASE_MEASURE)
		return false;
	hist_record_owner(&j->hist, t1 - t0);
	owner_add(&j->done, 1);
	return true;
}

/* Classify a finished get. `shared`: the counters may be updated by other threads at
 * the same time (asynchronous callbacks); otherwise only by this job's thread. */
void count_get(struct job *j, int status, size_t vlen, bool shared)
{
	_Atomic uint64_t *c;

	if (status == 0 && vlen == j->b->cfg.value_size)
		c = &j->found;
	else if (status == 0 || status == AURAKV_ENOBUFS)
		c = &j->badsize;
	else if (status == AURAKV_ENOTFOUND)
		c = &j->missing;
	else
		c = NULL;
	if (!c)
		bench_fail(j->b, status);
	else if (shared)
		atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
	else
		owner_add(c, 1);
}

static bool running(struct job *j)
{
	return bench_phase(j->b) == PHASE_MEASURE;
}

/* The key index a fill writes at position pos of this workload. */
static uint64_t fill_index(struct bench *b, uint64_t pos)
{
	pos %= b->cfg.num; /* --writes above num: the order starts over */
	return b->wl->kind == WL_FILLSEQ ? pos : perm_apply(b, pos);
}

/* Put key idx; *t: see finish_op. 0 or the error (the run is failed). */
static int put_one(struct job *j, uint64_t idx, unsigned flags, uint64_t *t)
{
	struct bench *b = j->b;
	const uint8_t *val = value_next(j);
	int rc;

	key_set(b, j->key, idx, false);
	rc = aurakv_put(b->db, j->key, b->cfg.key_size, val, b->cfg.value_size, flags);
	if (rc) {
		bench_fail(b, rc);
		return rc;
	}
	finish_op(j, t);
	return 0;
}

static void run_fill(struct job *j)
{
	unsigned flags = j->b->wl->kind == WL_FILLSYNC ? AURAKV_SYNC : 0;
	uint64_t t = now_ns();

	for (uint64_t i = 0; i < j->count && running(j); i++)
		if (put_one(j, fill_index(j->b, j->first + i * j->stride), flags, &t) != 0)
			return;
}

static void run_overwrite(struct job *j)
{
	uint64_t t = now_ns();

	for (uint64_t i = 0; i < j->count && running(j); i++)
		if (put_one(j, rng_below(&j->rng, j->b->cfg.num), 0, &t) != 0)
			return;
}

/* readwhilewriting's writer: random overwrites until the readers are done. */
static void run_writer(struct job *j)
{
	uint64_t t = now_ns();

	while (running(j))
		if (put_one(j, rng_below(&j->rng, j->b->cfg.num), 0, &t) != 0)
			return;
}

/* Random reads of existing or missing keys. */
static void run_reads(struct job *j, bool missing)
{
	struct bench *b = j->b;
	unsigned ks = b->cfg.key_size;
	size_t cap = b->cfg.value_size;
	uint64_t t = now_ns();

	for (uint64_t i = 0; i < j->count && running(j); i++) {
		size_t vlen = 0;
		int rc;

		key_set(b, j->key, rng_below(&j->rng, b->cfg.num), missing);
		rc = aurakv_get_into(b->db, j->key, ks, j->buf, cap, &vlen);
		if (rc && rc != AURAKV_ENOTFOUND && rc != AURAKV_ENOBUFS) {
			bench_fail(b, rc);
			return;
		}
		if (finish_op(j, &t))
			count_get(j, rc, vlen, false);
	}
}

static void run_measured(struct job *j)
{
	switch (j->b->wl->kind) {
	case WL_FILLSEQ:
	case WL_FILLRANDOM:
	case WL_FILLSYNC:
		run_fill(j);
		break;
	case WL_OVERWRITE:
		run_overwrite(j);
		break;
	case WL_READRANDOM:
	case WL_READWHILEWRITING:
		if (j->b->cfg.async_depth > 0)
			run_async_reads(j);
		else
			run_reads(j, false);
		break;
	case WL_READMISSING:
		run_reads(j, true);
		break;
	case WL_READSEQ:
	case WL_MULTIGET:
		run_multiget(j, j->b->wl->kind == WL_READSEQ);
		break;
	}
}

void *job_main(void *arg)
{
	struct job *j = arg;
	struct bench *b = j->b;

	bench_wait_start(b);
	if (j->writer)
		run_writer(j);
	else if (running(j))
		run_measured(j);
	j->end_ns = now_ns();
	if (!j->writer)
		atomic_fetch_sub(&b->running, 1);
	return NULL;
}
