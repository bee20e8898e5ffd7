/* SPDX-License-Identifier: MIT */
/*
 * async.c - gets with many reads in flight from one thread: readrandom with
 * --async-depth D (aurakv_get_async + aurakv_poll, D slots per thread), and multiget
 * and readseq (aurakv_multi_get of --batch random keys / keys in key order, one
 * latency sample per batch).
 *
 * A slot is one asynchronous get. Its callback runs inside aurakv_get_async (a cached
 * value, a missing key) or in whichever thread polls the store, so the callback never
 * submits: it records, frees the slot, and the owner refills free slots in its own
 * loop. (Resubmitting from the callback would recurse without bound when every get is
 * answered inline from the cache.) Latency is submit to callback.
 *
 * Must never: let the owner leave while a callback of one of its slots may still run
 * (the owner leaves only when it sees job.in_flight == 0, which the callback
 * decrements as its very last access to the job).
 */
#include <string.h>

#include "kvbench.h"

/* With several threads polling, another one may run our last callbacks while we wait
 * in poll: a bounded wait lets us notice that nothing of ours is in flight any more. */
#define MULTI_THREAD_POLL_MS 10

static void on_get(void *arg, int status, const void *val, size_t vlen)
{
	struct slot *s = arg;
	struct job *j = s->job;
	uint64_t t = now_ns();

	(void) val;
	if (status != 0 && status != AURAKV_ENOTFOUND) {
		bench_fail(j->b, status);
	} else if (bench_phase(j->b) == PHASE_MEASURE) {
		hist_record(&j->hist, t - s->t0);
		atomic_fetch_add_explicit(&j->done, 1, memory_order_relaxed);
		count_get(j, status, vlen, true);
	}
	/* Release: pairs with the owner's acquire load of `busy`; t0 may be overwritten
	 * once it sees 0. */
	atomic_store_explicit(&s->busy, 0, memory_order_release);
	/* Release: pairs with the owner's acquire load of in_flight before it leaves; our
	 * last access to the job. */
	atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_release);
}

/* Submit slot s for key index idx. 0, or the error of aurakv_get_async (the callback
 * does not run then). */
static int slot_submit(struct job *j, struct slot *s, uint64_t idx)
{
	struct bench *b = j->b;
	int rc;

	key_set(b, j->key, idx, false);
	/* Mark it before the submit: the callback may run before the submit returns. */
	atomic_store_explicit(&s->busy, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&j->in_flight, 1, memory_order_relaxed);
	s->t0 = now_ns();
	rc = aurakv_get_async(b->db, j->key, b->cfg.key_size, on_get, s);
	if (rc) {
		atomic_store_explicit(&s->busy, 0, memory_order_relaxed);
		atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_relaxed);
	}
	return rc;
}

/* One pass over the slots: submit each free one while there is work. Returns the gets
 * submitted; *stop on the end of the run or an error. */
static uint64_t refill_pass(struct job *j, uint64_t left, bool *stop)
{
	struct bench *b = j->b;
	uint64_t n = 0;

	for (int i = 0; i < b->cfg.async_depth && n < left; i++) {
		struct slot *s = &j->slots[i];
		int rc;

		if (bench_phase(b) != PHASE_MEASURE) {
			*stop = true;
			break;
		}
		if (atomic_load_explicit(&s->busy, memory_order_acquire))
			continue;
		rc = slot_submit(j, s, rng_below(&j->rng, b->cfg.num));
		if (rc) {
			bench_fail(b, rc);
			*stop = true;
			break;
		}
		n++;
	}
	return n;
}

/* Fill every free slot while there is work, until a pass finds none free: a get answered
 * inside aurakv_get_async (a cached value) frees its slot at once, and one pass would
 * leave it empty through the next poll - fewer than --async-depth gets in flight.
 * Returns the gets submitted. */
static uint64_t refill(struct job *j, uint64_t left)
{
	uint64_t n = 0, pass;
	bool stop = false;

	do
		n += pass = refill_pass(j, left - n, &stop);
	while (pass && !stop && n < left);
	return n;
}

void run_async_reads(struct job *j)
{
	struct bench *b = j->b;
	int timeout = b->measured > 1 ? MULTI_THREAD_POLL_MS : -1;
	uint64_t submitted = 0;

	for (int i = 0; i < b->cfg.async_depth; i++)
		j->slots[i].job = j;
	for (;;) {
		bool more;
		int rc;

		submitted += refill(j, j->count - submitted);
		more = submitted < j->count && bench_phase(b) == PHASE_MEASURE;
		if (atomic_load_explicit(&j->in_flight, memory_order_acquire) == 0) {
			if (!more)
				break;
			continue;
		}
		rc = aurakv_poll(b->db, timeout);
		if (rc < 0) {
			bench_fail(b, rc);
			break;
		}
	}
}

/* Check and count one batch's results, free its values. */
static void multiget_finish(struct job *j, size_t n, bool measured)
{
	for (size_t k = 0; k < n; k++) {
		int st = j->status[k];

		if (st != 0 && st != AURAKV_ENOTFOUND)
			bench_fail(j->b, st);
		else if (measured)
			count_get(j, st, j->vlens[k], false);
		aurakv_free(j->vals[k]);
	}
}

/* Batches of random keys (multiget) or of the keys in key order (readseq). */
void run_multiget(struct job *j, bool seq)
{
	struct bench *b = j->b;
	unsigned ks = b->cfg.key_size;
	unsigned depth = (unsigned) b->cfg.async_depth;
	size_t n;

	for (uint64_t i = 0; i < j->count && bench_phase(b) == PHASE_MEASURE; i += n) {
		uint64_t t0, t;
		bool measured;
		int rc;

		n = j->count - i < b->cfg.batch ? (size_t) (j->count - i) : b->cfg.batch;
		for (size_t k = 0; k < n; k++) {
			uint64_t idx =
			    seq ? (j->first + i + k) % b->cfg.num : rng_below(&j->rng, b->cfg.num);

			key_set(b, j->key + k * ks, idx, false);
		}
		t0 = now_ns();
		rc = aurakv_multi_get(b->db, n, j->keyv, j->klens, j->vals, j->vlens, j->status,
				      depth);
		t = now_ns();
		if (rc) {
			bench_fail(b, rc);
			return;
		}
		measured = bench_phase(b) == PHASE_MEASURE;
		multiget_finish(j, n, measured);
		if (measured) {
			hist_record_owner(&j->hist, t - t0);
			owner_add(&j->done, n);
		}
	}
}
