/* SPDX-License-Identifier: MIT */
/*
 * fault_mt_fuzz.h - what the parts of the kv_fault_mt_fuzz suite share (test_fault_mt_fuzz.c
 * says what the fuzz does and checks): its round, the model of every write, the values,
 * and the checks after the round (fault_mt_fuzz_check.c).
 */
#ifndef AURA_FAULT_MT_FUZZ_H
#define AURA_FAULT_MT_FUZZ_H

#include <pthread.h>
#include <stdatomic.h>

#include "kv_fuzz.h"

#define MT_ROUNDS  60
#define MT_OPS	   150 /* per thread */
#define MT_THREADS 4
#define MT_SHARED  8  /* keys every thread writes */
#define MT_OWN	   12 /* keys only their thread writes */
#define MT_KEYS	   (MT_SHARED + MT_THREADS * MT_OWN)
#define MT_BATCH   6
#define MT_OBS	   8192 /* values read, checked after the round */

/* The model: every write of every key, with its tickets. */
struct wr {
	uint64_t w; /* write number (unique); a delete has one too */
	uint64_t start, end;
	int rc;
	bool put, sync;
	bool shadowed; /* a batch entry a later one for its key replaced: readers may see it
			  while the batch is applied, a reopened store never holds it */
};

struct mkey {
	pthread_mutex_t mu;
	struct wr *v;
	size_t n, cap;
};

struct mbatch {
	uint64_t start, end;
	int rc, n;
	uint64_t k[MT_BATCH], w[MT_BATCH]; /* the last entry of each key */
	bool put[MT_BATCH];
	int nshadow; /* entries replaced by a later one for their key */
	uint64_t sk[MT_BATCH], sw[MT_BATCH];
};

struct obs {
	uint64_t k, w;
};

struct round {
	aurakv_t *db;
	auraio_engine_t *e;
	char path[600];
	uint64_t seed;
	char fault[200];
	auraio_fault_t rule;
	int err, nthreads;
	bool enospc_only;
	uint64_t arm_at, clear_at; /* operation numbers */
	_Atomic uint64_t clock, ops, next_w;
	_Atomic uint64_t armed_at, cleared_at, fail_at, durable_start; /* tickets; 0 = never */
	_Atomic int outstanding, async_issued, async_done, stop;
	struct mkey keys[MT_KEYS];
	pthread_mutex_t mu; /* batches, observations, the first failure, reports */
	struct mbatch *batches;
	size_t nbatches, capbatches;
	struct obs obs[MT_OBS];
	size_t nobs;
	char why[512];
	struct kv_reports rs;
};

/* The round that runs (test_fault_mt_fuzz.c); one at a time. */
extern struct round R;

static inline size_t val_len(uint64_t k, uint64_t w)
{
	return kv_fuzz_value_len(k, w, 4, 4096, 40000);
}

static inline bool val_ok(const void *v, size_t len, uint64_t k, uint64_t w)
{
	return kv_fuzz_value_ok(v, len, k, w, val_len(k, w));
}

/* After the round (fault_mt_fuzz_check.c): every value read was a put of its key that
 * returned 0; the reopened store (R.db) holds a state the model allows. */
void check_observed(void);
void check_reopened(void);

#endif
