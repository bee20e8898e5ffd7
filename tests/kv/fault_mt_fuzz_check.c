/* SPDX-License-Identifier: MIT */
/*
 * fault_mt_fuzz_check.c - kv_fault_mt_fuzz's checks after a round, against the model of
 * every write and its tickets (fault_mt_fuzz.h): what the threads read, and what the store
 * holds once reopened without faults. Runs in the main thread, the workers joined.
 */
#include "fault_mt_fuzz.h"

static struct wr *find_write(struct mkey *m, uint64_t w)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i].w == w)
			return &m->v[i];
	return NULL;
}

static bool is_durable(const struct wr *y)
{
	return y->rc == 0 && !y->shadowed && (y->sync || y->end < atomic_load(&R.durable_start));
}

/* Could the reopened store hold write c (NULL: the initial absence) of key m? */
static bool allowed(const struct mkey *m, const struct wr *c)
{
	uint64_t cend = c ? c->end : 0;

	if (c && (c->rc == -ENOSPC || c->shadowed))
		return false; /* -ENOSPC: nothing stored; a replaced batch entry */
	for (size_t i = 0; i < m->n; i++)
		if (is_durable(&m->v[i]) && cend < m->v[i].start)
			return false; /* superseded by a durable write */
	return true;
}

static uint64_t found[MT_KEYS]; /* write number found on reopen; 0 = absent */

static int see_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	uint64_t k = kv_fuzz_key_number(key, klen), w;

	(void) arg;
	cr_assert(k < MT_KEYS, "seed %llu (%s): a key never written: %.*s",
		  (unsigned long long) R.seed, R.fault, (int) klen, (const char *) key);
	w = kv_value_write(val, vlen, k);
	cr_assert(w != UINT64_MAX && w && val_ok(val, vlen, k, w),
		  "seed %llu (%s): key %llu holds a value never written",
		  (unsigned long long) R.seed, R.fault, (unsigned long long) k);
	found[k] = w;
	return 0;
}

/* Is the found state of key k certainly older than batch b (every write it can be
 * returned before b started)? Is it certainly b's? */
static void state_vs_batch(uint64_t k, const struct mbatch *b, int j, bool *before, bool *is_b)
{
	struct mkey *m = &R.keys[k];

	*is_b = found[k] && found[k] == b->w[j] && b->put[j];
	*before = true;
	if (found[k]) {
		struct wr *c = find_write(m, found[k]);

		*before = c && c->end < b->start;
		return;
	}
	for (size_t i = 0; i < m->n; i++) /* absent: the initial state or any delete */
		if (!m->v[i].put && m->v[i].end >= b->start)
			*before = false;
}

void check_reopened(void)
{
	memset(found, 0, sizeof(found));
	int rc = aurakv_foreach(R.db, NULL, 0, see_one, NULL);

	cr_assert_eq(rc, 0, "seed %llu (%s): foreach: %s", (unsigned long long) R.seed, R.fault,
		     aurakv_strerror(rc));
	for (uint64_t k = 0; k < MT_KEYS; k++) {
		struct mkey *m = &R.keys[k];
		bool ok = false;

		if (found[k]) {
			struct wr *c = find_write(m, found[k]);

			ok = c && c->put && allowed(m, c);
		} else {
			ok = allowed(m, NULL);
			for (size_t i = 0; i < m->n && !ok; i++)
				ok = !m->v[i].put && allowed(m, &m->v[i]);
		}
		cr_assert(ok, "seed %llu (%s): reopened: key %llu holds write %llu (%zu writes)",
			  (unsigned long long) R.seed, R.fault, (unsigned long long) k,
			  (unsigned long long) found[k], m->n);
	}
	for (size_t i = 0; i < R.nbatches; i++) {
		const struct mbatch *b = &R.batches[i];
		int there = 0, older = 0;

		for (int j = 0; j < b->n; j++) {
			bool before, is_b;

			state_vs_batch(b->k[j], b, j, &before, &is_b);
			there += is_b;
			older += before;
		}
		cr_assert(there == 0 || older == 0,
			  "seed %llu (%s): reopened: batch %llu..%llu (rc %d) half there (%d "
			  "there, %d older)",
			  (unsigned long long) R.seed, R.fault, (unsigned long long) b->start,
			  (unsigned long long) b->end, b->rc, there, older);
	}
}

/* Every value read was a put of its key that returned 0. */
void check_observed(void)
{
	for (size_t i = 0; i < R.nobs; i++) {
		struct wr *c = find_write(&R.keys[R.obs[i].k], R.obs[i].w);

		cr_assert(c && c->put && c->rc == 0,
			  "seed %llu (%s): key %llu read as write %llu, which %s",
			  (unsigned long long) R.seed, R.fault, (unsigned long long) R.obs[i].k,
			  (unsigned long long) R.obs[i].w,
			  !c	    ? "was never made"
			  : !c->put ? "was a delete"
				    : "failed");
	}
}
