/* SPDX-License-Identifier: MIT */
/*
 * A randomized fault-injection fuzz of the store under CONCURRENT use: test_fault_fuzz.c
 * with 2-4 threads. Each round opens a store on an engine with fault injection; the
 * threads run random puts, deletes and batches (durable or not) on keys of their own and
 * on keys they share, gets, get_into, multi-gets, asynchronous gets (thread 0 polls; the
 * other threads leave theirs to it, to the main thread, or to aurakv_close()), syncs and
 * compactions, while ONE random fault rule (test_fault_fuzz.c's menu) is armed by
 * whichever thread reaches a random operation, and maybe cleared at a later one. Then
 * the threads are joined (aurakv_close() must not race with other calls), the store is
 * closed (the rule still armed or not), and opened again without faults.
 *
 * Time is a global ticket counter: a call takes one before it starts and one after it
 * returns, so "x returned before y started" is x.end < y.start. Every write is logged
 * per key with its tickets and result. What is checked (aurakv.h):
 *   - a value read for a key is a put of that key that returned 0 (a failed write is
 *     never indexed); the owner of a key reads exactly its last acknowledged write;
 *   - a call fails only once the rule is armed, with its error (or -EIO); writes never
 *     for a read rule, and no longer once an ENOSPC rule is cleared; after the log
 *     reported a fail-stop, every put and compaction fails;
 *   - every asynchronous get's callback runs exactly once, also when close runs it;
 *   - reopened: each key holds a write not superseded by a durable one (y durable and
 *     x.end < y.start: x is gone), never an -ENOSPC write, nothing never written; a
 *     batch is all there or not at all; no corruption reported; aurakv_verify() is clean.
 * Seeds are printed with the rule in every failure. KV_MT_FUZZ_ROUNDS raises the number
 * of rounds, KV_MT_FUZZ_SEED moves the first seed, KV_MT_FUZZ_OPS sets the operations
 * per thread. The threads' interleaving, and so which I/O the rule hits, varies by run.
 * The checks after a round are in fault_mt_fuzz_check.c.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "fault_engine.h"
#include "fault_mt_fuzz.h"

KV_DIR_SUITE(kv_fault_mt_fuzz, 600);

static uint64_t below(uint64_t *s, uint64_t n)
{
	return kv_fuzz_below(s, n);
}

/* The round that runs (the model: fault_mt_fuzz.h). */
struct round R;

static uint64_t tick(void)
{
	return atomic_fetch_add(&R.clock, 1) + 1;
}

/* The first violation, kept for the main thread to assert (cr_assert only runs there). */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&R.mu);
	if (!R.why[0]) {
		va_start(ap, fmt);
		vsnprintf(R.why, sizeof(R.why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&R.mu);
	atomic_store(&R.stop, 1);
}

static void mt_report(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	uint64_t zero = 0;

	if (kind == AURAKV_REPORT_IO_ERROR && strstr(msg, "the log failed"))
		atomic_compare_exchange_strong(&R.fail_at, &zero, tick());
	pthread_mutex_lock(&R.mu);
	kv_record_report(kind, msg, arg);
	pthread_mutex_unlock(&R.mu);
}

/* Log a write before it is made; its result is filled in by wrote(). */
static struct wr *log_write(uint64_t k, uint64_t w, uint64_t start, bool put, bool sync)
{
	struct mkey *m = &R.keys[k];
	size_t i;

	pthread_mutex_lock(&m->mu);
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->v = realloc(m->v, m->cap * sizeof(*m->v));
	}
	i = m->n++;
	m->v[i] = (struct wr){ w, start, UINT64_MAX, 1, put, sync, false };
	pthread_mutex_unlock(&m->mu);
	return (struct wr *) (uintptr_t) i; /* an index: the array may move */
}

static void wrote(uint64_t k, struct wr *idx, uint64_t end, int rc)
{
	struct mkey *m = &R.keys[k];

	pthread_mutex_lock(&m->mu);
	m->v[(uintptr_t) idx].end = end;
	m->v[(uintptr_t) idx].rc = rc;
	pthread_mutex_unlock(&m->mu);
}

static void shadowed(uint64_t k, struct wr *idx, uint64_t end, int rc)
{
	struct mkey *m = &R.keys[k];

	pthread_mutex_lock(&m->mu);
	m->v[(uintptr_t) idx].end = end;
	m->v[(uintptr_t) idx].rc = rc;
	m->v[(uintptr_t) idx].shadowed = true;
	pthread_mutex_unlock(&m->mu);
}

static void durable_point(uint64_t start)
{
	uint64_t d = atomic_load(&R.durable_start);

	while (d < start && !atomic_compare_exchange_weak(&R.durable_start, &d, start))
		;
}

static void observe(uint64_t k, uint64_t w)
{
	pthread_mutex_lock(&R.mu);
	if (R.nobs < MT_OBS)
		R.obs[R.nobs++] = (struct obs){ k, w };
	pthread_mutex_unlock(&R.mu);
}

/* ---- a thread ---- */

struct worker {
	int id;
	uint64_t rng;
	uint64_t acked[MT_OWN]; /* own keys: last acknowledged write; 0 = absent */
};

static uint64_t own_key(const struct worker *t, uint64_t i)
{
	return MT_SHARED + (uint64_t) t->id * MT_OWN + i;
}

static uint64_t pick_key(struct worker *t)
{
	return below(&t->rng, 5) < 3 ? own_key(t, below(&t->rng, MT_OWN))
				     : below(&t->rng, MT_SHARED);
}

/* Is k one of t's own keys (t the only writer)? Its slot, or -1. */
static int own_slot(const struct worker *t, uint64_t k)
{
	if (!t || k < own_key(t, 0) || k >= own_key(t, MT_OWN))
		return -1;
	return (int) (k - own_key(t, 0));
}

/* A call's error is allowed: the rule was armed before it returned, with its error. */
static bool error_ok(int rc, uint64_t end)
{
	uint64_t a = atomic_load(&R.armed_at);

	return a && a < end && (rc == -R.err || rc == -EIO);
}

/* A get's answer for key k: a value the key was written with (checked again after the
 * round: that write returned 0); exactly the owner's last acknowledged write when the
 * owner (t) reads it. */
static void check_answer(struct worker *t, uint64_t k, int rc, const void *v, size_t len,
			 uint64_t end, const char *what)
{
	int slot = own_slot(t, k);
	uint64_t w;

	if (rc != 0 && rc != AURAKV_ENOTFOUND) {
		if (!error_ok(rc, end))
			fail("%s of key %llu: %s (rule armed at %llu, now %llu)", what,
			     (unsigned long long) k, aurakv_strerror(rc),
			     (unsigned long long) atomic_load(&R.armed_at),
			     (unsigned long long) end);
		return;
	}
	if (rc == AURAKV_ENOTFOUND) {
		if (slot >= 0 && t->acked[slot])
			fail("%s of own key %llu: not found, write %llu acknowledged", what,
			     (unsigned long long) k, (unsigned long long) t->acked[slot]);
		return;
	}
	w = kv_value_write(v, len, k);
	if (w == UINT64_MAX || w == 0 || !val_ok(v, len, k, w))
		return fail("%s of key %llu: a value never written (%zu bytes)", what,
			    (unsigned long long) k, len);
	if (slot >= 0 && t->acked[slot] != w)
		return fail("%s of own key %llu: write %llu, want %llu", what,
			    (unsigned long long) k, (unsigned long long) w,
			    (unsigned long long) t->acked[slot]);
	observe(k, w);
}

/* A write's result (put: it stores a value) is allowed. */
static void check_write(int rc, uint64_t start, uint64_t end, bool put, const char *what)
{
	uint64_t f = atomic_load(&R.fail_at), c = atomic_load(&R.cleared_at);

	if (rc == 0) {
		if (put && f && f < start)
			fail("%s returned 0 after the log failed (tickets %llu > %llu)", what,
			     (unsigned long long) start, (unsigned long long) f);
		return;
	}
	if (!error_ok(rc, end) || R.rule.ops == AURAIO_FAULT_OP_READ)
		return fail("%s: %s (rule armed at %llu, call %llu..%llu; %s)", what,
			    aurakv_strerror(rc), (unsigned long long) atomic_load(&R.armed_at),
			    (unsigned long long) start, (unsigned long long) end, R.rs.last);
	if (R.enospc_only && c && c < start && !(f && f < end))
		fail("%s: %s after the ENOSPC rule was cleared (at %llu, call %llu)", what,
		     aurakv_strerror(rc), (unsigned long long) c, (unsigned long long) start);
}

static void fill_value(uint8_t **v, size_t *len, uint64_t k, uint64_t w)
{
	*len = val_len(k, w);
	*v = malloc(*len);
	cr_assert_not_null(*v);
	kv_value(*v, *len, k, w);
}

static void own_acked(struct worker *t, uint64_t k, uint64_t val)
{
	int slot = own_slot(t, k);

	if (slot >= 0)
		t->acked[slot] = val;
}

static void op_put(struct worker *t, bool del)
{
	uint64_t k = pick_key(t), w = atomic_fetch_add(&R.next_w, 1), start, end;
	unsigned flags = below(&t->rng, 4) == 0 ? AURAKV_SYNC : 0;
	uint8_t *v = NULL;
	size_t len = 0;
	struct wr *i;
	char key[32];
	int rc;

	if (!del)
		fill_value(&v, &len, k, w);
	start = tick();
	i = log_write(k, w, start, !del, flags != 0);
	rc = del ? aurakv_delete(R.db, key, kv_key(key, k), flags)
		 : aurakv_put(R.db, key, kv_key(key, k), v, len, flags);
	end = tick();
	free(v);
	wrote(k, i, end, rc);
	check_write(rc, start, end, !del, del ? "delete" : "put");
	if (rc == 0) {
		own_acked(t, k, del ? 0 : w);
		if (flags)
			durable_point(start);
	}
}

static void op_batch(struct worker *t)
{
	aurakv_batch_t *b = aurakv_batch_new();
	struct mbatch mb = { 0 };
	struct wr *idx[MT_BATCH], *sidx[MT_BATCH];
	int n = (int) below(&t->rng, MT_BATCH + 1);
	unsigned flags = below(&t->rng, 3) == 0 ? AURAKV_SYNC : 0;
	bool any_put = false;
	char key[32];
	int rc;

	cr_assert_not_null(b);
	for (int i = 0; i < n; i++) {
		uint64_t k = pick_key(t), w = atomic_fetch_add(&R.next_w, 1);
		bool put = below(&t->rng, 4) != 0;
		int j;

		if (put) {
			uint8_t *v;
			size_t len;

			fill_value(&v, &len, k, w);
			cr_assert_eq(aurakv_batch_put(b, key, kv_key(key, k), v, len), 0);
			free(v);
		} else {
			cr_assert_eq(aurakv_batch_delete(b, key, kv_key(key, k)), 0);
		}
		for (j = 0; j < mb.n && mb.k[j] != k; j++)
			;
		if (j < mb.n && mb.put[j]) {
			mb.sk[mb.nshadow] = k;
			mb.sw[mb.nshadow++] = mb.w[j];
		}
		mb.k[j] = k; /* later entries for a key win */
		mb.w[j] = w;
		mb.put[j] = put;
		mb.n += j == mb.n;
	}
	mb.start = tick();
	for (int j = 0; j < mb.n; j++) {
		idx[j] = log_write(mb.k[j], mb.w[j], mb.start, mb.put[j], flags != 0);
		any_put |= mb.put[j];
	}
	for (int j = 0; j < mb.nshadow; j++)
		sidx[j] = log_write(mb.sk[j], mb.sw[j], mb.start, true, flags != 0);
	rc = aurakv_write(R.db, b, flags);
	mb.end = tick();
	mb.rc = rc;
	aurakv_batch_free(b);
	for (int j = 0; j < mb.n; j++)
		wrote(mb.k[j], idx[j], mb.end, rc);
	for (int j = 0; j < mb.nshadow; j++)
		shadowed(mb.sk[j], sidx[j], mb.end, rc);
	check_write(rc, mb.start, mb.end, any_put, "batch");
	if (rc == 0) {
		for (int j = 0; j < mb.n; j++)
			own_acked(t, mb.k[j], mb.put[j] ? mb.w[j] : 0);
		if (flags)
			durable_point(mb.start);
	}
	if (mb.n < 2)
		return;
	pthread_mutex_lock(&R.mu);
	if (R.nbatches == R.capbatches) {
		R.capbatches = R.capbatches ? 2 * R.capbatches : 64;
		R.batches = realloc(R.batches, R.capbatches * sizeof(*R.batches));
	}
	R.batches[R.nbatches++] = mb;
	pthread_mutex_unlock(&R.mu);
}

static void op_get(struct worker *t)
{
	uint64_t k = pick_key(t), end;
	char key[32];
	size_t klen = kv_key(key, k), len = 0;
	int rc;

	if (below(&t->rng, 3) == 0) {
		size_t cap = 64 * 1024;
		void *buf = malloc(cap);

		cr_assert_not_null(buf);
		rc = aurakv_get_into(R.db, key, klen, buf, cap, &len);
		end = tick();
		check_answer(t, k, rc, buf, len, end, "get_into");
		free(buf);
		return;
	}
	void *v = NULL;

	rc = aurakv_get(R.db, key, klen, &v, &len);
	end = tick();
	check_answer(t, k, rc, v, len, end, "get");
	if (rc != 0 && v)
		fail("get of key %llu: %s with a value", (unsigned long long) k,
		     aurakv_strerror(rc));
	aurakv_free(v);
}

/* An asynchronous get. Thread 0 waits for its own (polling); the others leave theirs to
 * whoever polls: their answers are checked without the owner's exactness. */
struct aget {
	struct worker *t; /* NULL: checked as anyone's read */
	uint64_t k;
	_Atomic bool done;
	bool heap;
};

static void aget_cb(void *arg, int status, const void *val, size_t vlen)
{
	struct aget *g = arg;

	check_answer(g->t, g->k, status, val, vlen, tick(), "get_async");
	atomic_fetch_add(&R.async_done, 1);
	if (g->heap) {
		atomic_fetch_sub(&R.outstanding, 1);
		free(g);
		return;
	}
	atomic_store(&g->done, true);
}

static void op_get_async(struct worker *t)
{
	uint64_t k = pick_key(t);
	struct aget mine = { .t = t, .k = k }, *g = &mine;
	char key[32];
	int rc;

	if (t->id != 0) {
		g = calloc(1, sizeof(*g));
		cr_assert_not_null(g);
		g->k = k;
		g->heap = true;
		atomic_fetch_add(&R.outstanding, 1);
	}
	atomic_fetch_add(&R.async_issued, 1);
	rc = aurakv_get_async(R.db, key, kv_key(key, k), aget_cb, g);
	if (rc != 0) {
		fail("get_async: %s", aurakv_strerror(rc));
		return;
	}
	if (g != &mine)
		return;			   /* g may be gone: its callback may have run */
	while (!atomic_load(&mine.done)) { /* a hang is the suite's timeout */
		rc = aurakv_poll(R.db, 1000);
		if (rc < 0)
			return fail("poll: %s", aurakv_strerror(rc));
	}
}

static void op_multi_get(struct worker *t)
{
	enum { MAXN = 10 };
	char keys[MAXN][32];
	const void *kp[MAXN];
	size_t klens[MAXN], vlens[MAXN];
	uint64_t ks[MAXN], end;
	void *vals[MAXN];
	int status[MAXN], rc;
	size_t n = 1 + below(&t->rng, MAXN);

	for (size_t i = 0; i < n; i++) {
		ks[i] = pick_key(t);
		klens[i] = kv_key(keys[i], ks[i]);
		kp[i] = keys[i];
	}
	rc =
	    aurakv_multi_get(R.db, n, kp, klens, vals, vlens, status, (unsigned) below(&t->rng, 5));
	end = tick();
	if (rc != 0)
		return fail("multi_get: %s", aurakv_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		check_answer(t, ks[i], status[i], vals[i], vlens[i], end, "multi_get");
		aurakv_free(vals[i]);
	}
}

static void op_sync(struct worker *t)
{
	(void) t;
	uint64_t start = tick(), end;
	int rc = aurakv_sync(R.db);

	end = tick();
	check_write(rc, start, end, false, "sync");
	if (rc == 0)
		durable_point(start);
}

static void op_compact(struct worker *t)
{
	(void) t;
	uint64_t start = tick(), end, f;
	int rc = aurakv_compact(R.db);

	end = tick();
	f = atomic_load(&R.fail_at);
	if (rc == 0 && f && f < start)
		fail("compact returned 0 after the log failed");
	if (rc != 0 && !error_ok(rc, end) && !(rc == -ENOSPC && atomic_load(&R.armed_at)))
		fail("compact: %s", aurakv_strerror(rc));
}

static void op_write(struct worker *t)
{
	op_put(t, false);
}

static void op_delete(struct worker *t)
{
	op_put(t, true);
}

/* The operations' mix: a draw r below 100 runs the first whose upto exceeds it. */
static const struct {
	uint64_t upto;
	void (*run)(struct worker *t);
} mix[] = {
	{ 24, op_write }, { 32, op_delete },	{ 42, op_batch },
	{ 58, op_get },	  { 68, op_get_async }, { 80, op_multi_get },
	{ 86, op_sync },  { 88, op_compact },	{ 100, op_get },
};

/* The thread that reaches operation arm_at arms the rule; clear_at clears it. */
static void maybe_fault(void)
{
	uint64_t n = atomic_fetch_add(&R.ops, 1);

	if (n == R.arm_at) {
		atomic_store(&R.armed_at, tick()); /* before any error it causes */
		cr_assert_eq(auraio_fault_set(R.e, &R.rule), 0);
	}
	if (n == R.clear_at) {
		auraio_fault_clear(R.e);
		atomic_store(&R.cleared_at, tick()); /* after: later calls meet no fault */
	}
}

static void *worker_main(void *arg)
{
	struct worker *t = arg;
	int nops = (int) test_env_u64("KV_MT_FUZZ_OPS", MT_OPS);

	for (int op = 0; op < nops && !atomic_load(&R.stop); op++) {
		uint64_t r = below(&t->rng, 100);

		maybe_fault();
		if (t->id == 0 && aurakv_poll(R.db, 0) < 0)
			fail("poll failed");
		int m = 0;

		while (r >= mix[m].upto)
			m++;
		mix[m].run(t);
	}
	return NULL;
}

static void pick_fault(uint64_t *rng)
{
	struct kv_fuzz_fault pick = kv_fuzz_pick_fault(rng);

	R.rule = pick.rule;
	R.err = pick.err;
	R.enospc_only = pick.enospc_only;
}

static void reset_round(void)
{
	for (int k = 0; k < MT_KEYS; k++)
		free(R.keys[k].v);
	free(R.batches);
	memset(&R, 0, sizeof(R));
	pthread_mutex_init(&R.mu, NULL);
	for (int k = 0; k < MT_KEYS; k++)
		pthread_mutex_init(&R.keys[k].mu, NULL);
	atomic_store(&R.next_w, 1);
}

struct totals {
	uint64_t injected, async_issued, close_runs, fail_stops;
};

static void close_round(bool armed_at_close)
{
	uint64_t start = tick();
	int issued, rc = aurakv_close(R.db);

	R.db = NULL;
	issued = atomic_load(&R.async_issued);
	cr_assert(atomic_load(&R.async_done) == issued && atomic_load(&R.outstanding) == 0,
		  "seed %llu (%s): %d async gets, %d callbacks ran", (unsigned long long) R.seed,
		  R.fault, issued, atomic_load(&R.async_done));
	if (rc == 0) {
		atomic_store(&R.durable_start, UINT64_MAX); /* everything acknowledged */
		return;
	}
	cr_assert(error_ok(rc, tick()) && R.rule.ops != AURAIO_FAULT_OP_READ,
		  "seed %llu (%s): close: %s", (unsigned long long) R.seed, R.fault,
		  aurakv_strerror(rc));
	cr_assert(!R.enospc_only || armed_at_close || atomic_load(&R.fail_at),
		  "seed %llu (%s): close: %s after the ENOSPC rule was cleared",
		  (unsigned long long) R.seed, R.fault, aurakv_strerror(rc));
	(void) start;
}

static void run_round(uint64_t seed, struct totals *tot)
{
	uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
	struct worker ws[MT_THREADS];
	pthread_t th[MT_THREADS];
	aurakv_options_t o;
	aurakv_verify_result_t vr;
	struct kv_reports rs2 = { 0 };
	auraio_stats_t st;
	int nops = (int) test_env_u64("KV_MT_FUZZ_OPS", MT_OPS), rc;
	bool leave_to_close, clear_before_close, armed_at_close;

	reset_round();
	R.seed = seed;
	R.nthreads = 2 + (int) below(&rng, MT_THREADS - 1);
	snprintf(R.path, sizeof(R.path), "%s/m%llu", dir, (unsigned long long) seed);
	o = kv_opts(&R.rs);
	o.reporter = mt_report;
	o.background_gc = below(&rng, 2);
	o.write_hints = below(&rng, 3) != 0;
	o.cache_size = below(&rng, 2) ? 1u << 20 : 0;
	o.flush_delay_us = below(&rng, 2) ? 1000 : 0;
	pick_fault(&rng);
	R.arm_at = below(&rng, (uint64_t) (nops * R.nthreads));
	R.clear_at = R.arm_at + 1 + below(&rng, (uint64_t) (nops * R.nthreads));
	leave_to_close = below(&rng, 2);
	clear_before_close = below(&rng, 2);
	snprintf(R.fault, sizeof(R.fault),
		 "%d threads; %s %s ops %u skip %llu count %llu keep %zu at op %llu..%llu; gc %d "
		 "hints %d cache %zu flush %u",
		 R.nthreads, kv_fuzz_kind_name(R.rule.kind), strerror(R.err), R.rule.ops,
		 (unsigned long long) R.rule.skip, (unsigned long long) R.rule.count, R.rule.keep,
		 (unsigned long long) R.arm_at, (unsigned long long) R.clear_at, o.background_gc,
		 o.write_hints, o.cache_size, o.flush_delay_us);
	if (getenv("KV_MT_FUZZ_VERBOSE"))
		fprintf(stderr, "kv_fault_mt_fuzz: seed %llu: %s\n", (unsigned long long) seed,
			R.fault);
	R.e = test_faulty_engine();
	o.engine = R.e;
	rc = aurakv_open(R.path, &o, &R.db);
	cr_assert_eq(rc, 0, "seed %llu: open: %s", (unsigned long long) seed, aurakv_strerror(rc));

	for (int i = 0; i < R.nthreads; i++) {
		ws[i] =
		    (struct worker){ .id = i, .rng = rng ^ (0xA5A5A5A5ull * (uint64_t) (i + 1)) };
		cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &ws[i]), 0);
	}
	for (int i = 0; i < R.nthreads; i++)
		cr_assert_eq(pthread_join(th[i], NULL), 0);
	cr_assert(!R.why[0], "seed %llu (%s): %s", (unsigned long long) seed, R.fault, R.why);
	/* Gets left in flight: polled here, or run by close. */
	while (!leave_to_close && atomic_load(&R.outstanding) > 0)
		cr_assert_geq(aurakv_poll(R.db, 1000), 0);
	cr_assert_eq(auraio_get_stats(R.e, &st), 0);
	if (clear_before_close) {
		auraio_fault_clear(R.e);
		if (atomic_load(&R.armed_at) && !atomic_load(&R.cleared_at))
			atomic_store(&R.cleared_at, tick());
	}
	armed_at_close = atomic_load(&R.armed_at) && !atomic_load(&R.cleared_at);
	tot->close_runs += (uint64_t) atomic_load(&R.outstanding);
	close_round(armed_at_close);
	cr_assert(!R.why[0], "seed %llu (%s): %s", (unsigned long long) seed, R.fault, R.why);
	auraio_destroy(R.e);
	R.e = NULL;
	check_observed();

	/* Opened again without faults: a state the model allows, and writable. */
	o.engine = NULL;
	rc = aurakv_open(R.path, &o, &R.db);
	cr_assert_eq(rc, 0, "seed %llu (%s): reopen: %s (%s)", (unsigned long long) seed, R.fault,
		     aurakv_strerror(rc), R.rs.last);
	check_reopened();
	{
		char key[32];

		rc = aurakv_put(R.db, key, kv_key(key, 0), "x", 1, AURAKV_SYNC);
		cr_assert_eq(rc, 0, "seed %llu (%s): a put after the reopen: %s",
			     (unsigned long long) seed, R.fault, aurakv_strerror(rc));
	}
	cr_assert_eq(aurakv_close(R.db), 0);
	R.db = NULL;
	cr_assert_eq(R.rs.corruption, 0, "seed %llu (%s): corruption reported: %s",
		     (unsigned long long) seed, R.fault, R.rs.last);
	o.reporter = kv_record_report;
	o.reporter_arg = &rs2;
	rc = aurakv_verify(R.path, &o, &vr);
	cr_assert_eq(rc, 0, "seed %llu (%s): verify: %s: %s", (unsigned long long) seed, R.fault,
		     aurakv_strerror(rc), rs2.last);
	if (getenv("KV_MT_FUZZ_VERBOSE"))
		fprintf(stderr, "kv_fault_mt_fuzz: seed %llu (%s): %llu injected, fail-stop %d\n",
			(unsigned long long) seed, R.fault, (unsigned long long) st.faults_injected,
			atomic_load(&R.fail_at) != 0);
	tot->injected += st.faults_injected;
	tot->async_issued += (uint64_t) atomic_load(&R.async_issued);
	tot->fail_stops += atomic_load(&R.fail_at) != 0;
	test_rm_tree(R.path);
}

Test(kv_fault_mt_fuzz, threads_under_one_random_fault_keep_the_contract)
{
	uint64_t rounds = test_env_u64("KV_MT_FUZZ_ROUNDS", MT_ROUNDS);
	uint64_t seed0 = test_env_u64("KV_MT_FUZZ_SEED", 1);
	struct totals t = { 0 };

	for (uint64_t i = 0; i < rounds; i++)
		run_round(seed0 + i, &t);
	reset_round();
	kv_fuzz_summary("kv_fault_mt_fuzz", rounds, seed0);
	fprintf(stderr,
		"%llu faults injected, %llu fail-stops, %llu async gets (%llu run by close): the "
		"contract held\n",
		(unsigned long long) t.injected, (unsigned long long) t.fail_stops,
		(unsigned long long) t.async_issued, (unsigned long long) t.close_runs);
	cr_assert(rounds < 5 || t.injected > 0, "the faults were never met");
}
