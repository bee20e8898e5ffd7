/* SPDX-License-Identifier: MIT */
/*
 * A randomized fault-injection fuzz of the store. Each round opens a store on an engine
 * with fault injection, runs a random mix of puts, deletes and batches (durable or not),
 * gets, multi-gets, syncs, compactions and close/reopen, arms ONE random fault rule (EIO,
 * ENOSPC, short or torn I/O; on writes, fsyncs, reads or all) at a random point, and
 * keeps a model of what each call returned. It checks aurakv.h's contract as it goes and
 * again on a store opened without faults:
 *   - a get that returns a value returns the key's last acknowledged write (a failed
 *     write is never seen), or an I/O error once a fault is armed - never a wrong value
 *     and never AURAKV_ECORRUPT (nothing on the device is damaged);
 *   - a write fails only once a fault is armed, with the fault's error (or -EIO); never
 *     for failed reads; and no longer once an ENOSPC rule is cleared (space returned);
 *     -ENOSPC writes are never stored - but for aurakv.h's one exception: a write whose
 *     record reached the log file while only the sync after it failed may be found after
 *     a close that returned -ENOSPC, if no put or sync returned 0 after it (those come
 *     after the log's write that voids it);
 *   - reopened: every key holds its last durable write or a later one (acknowledged, or
 *     failed with an I/O error), nothing else; no key appears that was never written; a
 *     batch is all there or not at all; nothing is reported as corruption, and
 *     aurakv_verify() finds nothing wrong.
 * Seeds are fixed and printed, with the rule, in every failure: KV_FUZZ_SEED=<seed>
 * KV_FUZZ_ROUNDS=1 replays one round (the operations exactly; which I/O the rule hits can
 * vary with the store's background threads). KV_FUZZ_ROUNDS raises the number of rounds
 * (default FUZZ_ROUNDS, ~12 s), KV_FUZZ_SEED moves the first seed, KV_FUZZ_OPS sets the
 * operations per round.
 */
#include <criterion/criterion.h>

#include "fault_engine.h"
#include "kv_fuzz.h"

#define FUZZ_ROUNDS 40
#define FUZZ_OPS    240
#define FUZZ_KEYS   48
#define FUZZ_MAYBE  64 /* values a key may hold after a reopen */
#define FUZZ_BATCH  64 /* batches tracked between two reopens */

KV_DIR_SUITE(kv_fault_fuzz, 600);

/* ---- the round's random choices ---- */

static uint64_t rng_state;

static uint64_t below(uint64_t n)
{
	return kv_fuzz_below(&rng_state, n);
}

/* Where a failure happened: every assertion says it. */
static uint64_t cur_seed;
static int cur_op;
static char cur_fault[160];

#define FZ(cond, fmt, ...)                                                                         \
	cr_assert(cond, "seed %llu op %d (%s): " fmt, (unsigned long long) cur_seed, cur_op,       \
		  cur_fault, ##__VA_ARGS__)

/* ---- values: write w of key k, self-describing (kv_test.h) ---- */

/* The length of write w: mostly small, one in three large, so that a round fills a few
 * 1 MiB segments: they are sealed, hinted and collected while the fault may strike. */
static size_t val_len(uint64_t k, uint64_t w)
{
	return kv_fuzz_value_len(k, w, 3, 8192, 90000);
}

static bool val_ok(const void *v, size_t len, uint64_t k, uint64_t w)
{
	return kv_fuzz_value_ok(v, len, k, w, val_len(k, w));
}

/* ---- the model ---- */

struct fkey {
	uint64_t acked;		    /* last acknowledged write; 0 = absent */
	uint64_t maybe[FUZZ_MAYBE]; /* what a reopen may find (0 = absent) */
	int nmaybe;
	uint64_t limbo[FUZZ_MAYBE]; /* writes told -ENOSPC that a close failing with -ENOSPC
				       may leave in the log (aurakv.h, aurakv_put) */
	int nlimbo;
};

struct fbatch {
	uint64_t first, last; /* its entries' write numbers */
};

struct fuzz {
	struct fkey keys[FUZZ_KEYS];
	struct fbatch batches[FUZZ_BATCH];
	int nbatches;
	uint64_t last_try[FUZZ_KEYS]; /* the last write attempted on each key */
	uint64_t next_w;
	aurakv_t *db;
	auraio_engine_t *e;
	char path[600];
	struct kv_reports rs;
	aurakv_options_t o;
	/* the fault */
	auraio_fault_t rule;
	int err;	  /* the error the rule injects */
	bool armed;	  /* the rule is set */
	bool tolerant;	  /* a rule was set since the last healthy reopen: errors allowed */
	bool enospc_only; /* the rule fails writes or syncs (only) with ENOSPC */
	bool cleared;	  /* the rule was set, then cleared ("space returned") */
	int write_failures, get_errors, reopens;
};

static void maybe_add(struct fkey *k, uint64_t w)
{
	for (int i = 0; i < k->nmaybe; i++)
		if (k->maybe[i] == w)
			return;
	FZ(k->nmaybe < FUZZ_MAYBE, "too many candidate values for a key");
	k->maybe[k->nmaybe++] = w;
}

static bool maybe_has(const struct fkey *k, uint64_t w)
{
	for (int i = 0; i < k->nmaybe; i++)
		if (k->maybe[i] == w)
			return true;
	return false;
}

/* Everything acknowledged is durable now (a durable write, sync or close returned 0). */
static void durable_point(struct fuzz *f)
{
	for (int i = 0; i < FUZZ_KEYS; i++) {
		f->keys[i].maybe[0] = f->keys[i].acked;
		f->keys[i].nmaybe = 1;
	}
}

/* A put, a SYNC write or a sync returned 0: the log wrote again after any ENOSPC, and
 * that write voided every record told -ENOSPC (aurakv.h, aurakv_put). */
static void log_wrote_again(struct fuzz *f)
{
	for (int i = 0; i < FUZZ_KEYS; i++)
		f->keys[i].nlimbo = 0;
}

/* The store is closed: if its close failed, what was in limbo may be in the log. */
static void limbo_settle(struct fuzz *f, int close_rc)
{
	for (int i = 0; i < FUZZ_KEYS; i++) {
		struct fkey *k = &f->keys[i];

		for (int j = 0; close_rc != 0 && j < k->nlimbo; j++)
			maybe_add(k, k->limbo[j]);
		k->nlimbo = 0;
	}
}

/* The outcome of write `w` to key k (val: its write number, 0 for a delete). */
static void wrote(struct fuzz *f, uint64_t k, uint64_t val, int rc)
{
	struct fkey *key = &f->keys[k];

	if (rc == 0) {
		key->acked = val;
		maybe_add(key, val);
	} else if (rc != -ENOSPC) {
		maybe_add(key, val); /* an I/O error: the record may have got there */
	} else {
		FZ(key->nlimbo < FUZZ_MAYBE, "too many writes told -ENOSPC for a key");
		key->limbo[key->nlimbo++] = val;
	}
}

/* May a write fail now? Only once a rule was armed; never for failed reads (writes
 * read nothing); and no longer once an ENOSPC rule is cleared: "writes work again once
 * space is freed" (aurakv.h). */
static bool writes_may_fail(const struct fuzz *f)
{
	if (!f->tolerant || f->rule.ops == AURAIO_FAULT_OP_READ)
		return false;
	return !(f->enospc_only && f->cleared);
}

/* A write's result is allowed: 0, or the fault's error (or -EIO) once one was armed. */
static void check_write_rc(struct fuzz *f, int rc, const char *what)
{
	if (rc == 0)
		return;
	f->write_failures++;
	FZ(writes_may_fail(f), "%s failed: %s (armed %d, cleared %d; last report: %s)", what,
	   aurakv_strerror(rc), f->armed, f->cleared, f->rs.last);
	FZ(rc == -f->err || rc == -EIO, "%s: %s (fault error %s)", what, aurakv_strerror(rc),
	   strerror(f->err));
}

static void check_get_rc(struct fuzz *f, int rc, uint64_t k, const char *what)
{
	if (rc == 0 || rc == AURAKV_ENOTFOUND)
		return;
	f->get_errors++;
	FZ(f->tolerant, "%s of key %llu: %s with no fault armed", what, (unsigned long long) k,
	   aurakv_strerror(rc));
	FZ(rc == -f->err || rc == -EIO, "%s of key %llu: %s (fault error %s)", what,
	   (unsigned long long) k, aurakv_strerror(rc), strerror(f->err));
}

/* A get's answer (rc, v, len) for key k agrees with the model. */
static void check_answer(struct fuzz *f, uint64_t k, int rc, const void *v, size_t len,
			 const char *what)
{
	uint64_t a = f->keys[k].acked;

	check_get_rc(f, rc, k, what);
	if (rc == AURAKV_ENOTFOUND)
		FZ(a == 0, "%s of key %llu: not found, but write %llu was acknowledged", what,
		   (unsigned long long) k, (unsigned long long) a);
	if (rc == 0)
		FZ(a != 0 && val_ok(v, len, k, a),
		   "%s of key %llu: a value (write %llu, %zu bytes), want write %llu", what,
		   (unsigned long long) k, (unsigned long long) kv_value_write(v, len, k), len,
		   (unsigned long long) a);
}

/* ---- operations ---- */

static size_t key_of(char *buf, uint64_t k)
{
	return kv_key(buf, k);
}

static void op_put(struct fuzz *f)
{
	uint64_t k = below(FUZZ_KEYS), w = f->next_w++;
	unsigned flags = below(4) == 0 ? AURAKV_SYNC : 0;
	size_t len = val_len(k, w);
	uint8_t *v = malloc(len);
	char key[32];
	int rc;

	cr_assert_not_null(v);
	kv_value(v, len, k, w);
	f->last_try[k] = w;
	rc = aurakv_put(f->db, key, key_of(key, k), v, len, flags);
	free(v);
	check_write_rc(f, rc, "put");
	wrote(f, k, w, rc);
	if (rc == 0)
		log_wrote_again(f);
	if (rc == 0 && flags)
		durable_point(f);
}

static void op_delete(struct fuzz *f)
{
	uint64_t k = below(FUZZ_KEYS), w = f->next_w++;
	unsigned flags = below(4) == 0 ? AURAKV_SYNC : 0;
	char key[32];
	int rc;

	f->last_try[k] = w;
	rc = aurakv_delete(f->db, key, key_of(key, k), flags);
	check_write_rc(f, rc, "delete");
	wrote(f, k, 0, rc);
	if (rc == 0 && flags) { /* a delete of an absent key writes nothing, but syncs */
		log_wrote_again(f);
		durable_point(f);
	}
}

static void op_batch(struct fuzz *f)
{
	aurakv_batch_t *b = aurakv_batch_new();
	int n = (int) below(9); /* 0 .. 8 entries; an empty batch is valid */
	unsigned flags = below(3) == 0 ? AURAKV_SYNC : 0;
	uint64_t ks[8], ws[8], first = f->next_w;
	bool del[8];
	char key[32];
	int rc;

	cr_assert_not_null(b);
	for (int i = 0; i < n; i++) {
		ks[i] = below(FUZZ_KEYS);
		ws[i] = f->next_w++;
		del[i] = below(4) == 0;
		if (del[i]) {
			cr_assert_eq(aurakv_batch_delete(b, key, key_of(key, ks[i])), 0);
		} else {
			size_t len = val_len(ks[i], ws[i]);
			uint8_t *v = malloc(len);

			cr_assert_not_null(v);
			kv_value(v, len, ks[i], ws[i]);
			cr_assert_eq(aurakv_batch_put(b, key, key_of(key, ks[i]), v, len), 0);
			free(v);
		}
		f->last_try[ks[i]] = ws[i];
	}
	rc = aurakv_write(f->db, b, flags);
	aurakv_batch_free(b);
	check_write_rc(f, rc, "batch");
	for (int i = 0; i < n; i++) /* in order: later entries for a key win */
		wrote(f, ks[i], del[i] ? 0 : ws[i], rc);
	if (rc == 0 && flags) { /* an empty batch writes nothing, but syncs */
		log_wrote_again(f);
		durable_point(f);
	}
	if (n > 1 && f->nbatches < FUZZ_BATCH)
		f->batches[f->nbatches++] = (struct fbatch){ first, f->next_w - 1 };
}

/* An asynchronous get's answer, checked once it has come. */
struct aget {
	struct fuzz *f;
	uint64_t k;
	bool done;
};

static void aget_cb(void *arg, int status, const void *val, size_t vlen)
{
	struct aget *g = arg;

	check_answer(g->f, g->k, status, val, vlen, "get_async");
	g->done = true;
}

static void op_get_async(struct fuzz *f, uint64_t k)
{
	struct aget g = { f, k, false };
	char key[32];
	int rc = aurakv_get_async(f->db, key, key_of(key, k), aget_cb, &g);

	FZ(rc == 0, "get_async: %s", aurakv_strerror(rc));
	while (!g.done) { /* a hang is the suite's timeout */
		rc = aurakv_poll(f->db, 1000);
		FZ(rc >= 0, "poll: %s", aurakv_strerror(rc));
	}
}

static void op_get(struct fuzz *f)
{
	uint64_t k = below(FUZZ_KEYS);
	char key[32];
	size_t klen = key_of(key, k), len = 0;
	int rc;

	if (below(4) == 0) {
		op_get_async(f, k);
		return;
	}

	if (below(4) == 0) { /* into the caller's buffer */
		size_t cap = 128 * 1024;
		void *buf = malloc(cap);

		cr_assert_not_null(buf);
		rc = aurakv_get_into(f->db, key, klen, buf, cap, &len);
		check_answer(f, k, rc, buf, len, "get_into");
		free(buf);
		return;
	}
	void *v = NULL;

	rc = aurakv_get(f->db, key, klen, &v, &len);
	check_answer(f, k, rc, v, len, "get");
	if (rc != 0)
		FZ(v == NULL, "get of key %llu: %s with a value", (unsigned long long) k,
		   aurakv_strerror(rc));
	aurakv_free(v);
}

static void op_multi_get(struct fuzz *f)
{
	enum { MAXN = 12 };
	char keys[MAXN][32];
	const void *kp[MAXN];
	size_t klens[MAXN], vlens[MAXN];
	uint64_t ks[MAXN];
	void *vals[MAXN];
	int status[MAXN], rc;
	size_t n = 1 + below(MAXN);

	for (size_t i = 0; i < n; i++) {
		ks[i] = below(FUZZ_KEYS);
		klens[i] = key_of(keys[i], ks[i]);
		kp[i] = keys[i];
	}
	rc = aurakv_multi_get(f->db, n, kp, klens, vals, vlens, status, (unsigned) below(5));
	FZ(rc == 0, "multi_get: %s", aurakv_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		check_answer(f, ks[i], status[i], vals[i], vlens[i], "multi_get");
		if (status[i] != 0)
			FZ(vals[i] == NULL && vlens[i] == 0, "multi_get: status %d with a value",
			   status[i]);
		aurakv_free(vals[i]);
	}
}

static void op_sync(struct fuzz *f)
{
	int rc = aurakv_sync(f->db);

	check_write_rc(f, rc, "sync");
	if (rc == 0) {
		log_wrote_again(f);
		durable_point(f);
	}
}

static void op_compact(struct fuzz *f)
{
	int rc = aurakv_compact(f->db);

	if (rc == 0)
		return;
	FZ(f->tolerant, "compact: %s with no fault armed", aurakv_strerror(rc));
	FZ(rc == -f->err || rc == -EIO || rc == -ENOSPC, "compact: %s (fault error %s)",
	   aurakv_strerror(rc), strerror(f->err));
}

/* ---- open, close, verify ---- */

static int open_store(struct fuzz *f, auraio_engine_t *e)
{
	aurakv_options_t o = f->o;

	o.engine = e;
	f->db = NULL;
	return aurakv_open(f->path, &o, &f->db);
}

/* Close: 0 makes everything acknowledged durable; an error only once a fault was armed. */
static void close_store(struct fuzz *f)
{
	int rc = aurakv_close(f->db);

	f->db = NULL;
	limbo_settle(f, rc);
	if (rc == 0) {
		durable_point(f);
		return;
	}
	FZ(writes_may_fail(f), "close: %s (armed %d, cleared %d)", aurakv_strerror(rc), f->armed,
	   f->cleared);
	FZ(rc == -f->err || rc == -EIO, "close: %s (fault error %s)", aurakv_strerror(rc),
	   strerror(f->err));
}

struct seen {
	struct fuzz *f;
	uint64_t found[FUZZ_KEYS]; /* write number found; 0 = absent */
};

static int see_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct seen *s = arg;
	uint64_t k = kv_fuzz_key_number(key, klen), w;

	FZ(k < FUZZ_KEYS, "a key that was never written: %.*s", (int) klen, (const char *) key);
	w = kv_value_write(val, vlen, k);
	FZ(w != UINT64_MAX && w != 0 && val_ok(val, vlen, k, w),
	   "key %llu holds a value that was never written (%zu bytes)", (unsigned long long) k,
	   vlen);
	s->found[k] = w;
	return 0;
}

/* Read what the store holds (retrying while a fault fails the walk) into s->found. */
static void observe(struct fuzz *f, struct seen *s)
{
	for (int tries = 0;; tries++) {
		int rc;

		memset(s->found, 0, sizeof(s->found));
		rc = aurakv_foreach(f->db, NULL, 0, see_one, s);
		if (rc == 0)
			return;
		check_get_rc(f, rc, 0, "foreach");
		if (tries >= 2 && f->armed) {
			auraio_fault_clear(f->e);
			f->armed = false;
			f->cleared = true;
		}
		FZ(tries < 8, "foreach keeps failing: %s", aurakv_strerror(rc));
	}
}

/* The store just opened holds a state the model allows; it becomes the model's state. */
static void verify_and_rebase(struct fuzz *f)
{
	struct seen s = { .f = f };

	observe(f, &s);
	for (int k = 0; k < FUZZ_KEYS; k++)
		FZ(maybe_has(&f->keys[k], s.found[k]),
		   "reopened: key %d holds write %llu; acknowledged %llu, %d candidates (first "
		   "%llu)",
		   k, (unsigned long long) s.found[k], (unsigned long long) f->keys[k].acked,
		   f->keys[k].nmaybe, (unsigned long long) f->keys[k].maybe[0]);
	/* A batch is atomic: of the keys it wrote last, its puts are all there or none. */
	for (int i = 0; i < f->nbatches; i++) {
		const struct fbatch *b = &f->batches[i];
		int there = 0, absent = 0;

		for (int k = 0; k < FUZZ_KEYS; k++) {
			uint64_t t = f->last_try[k];

			if (t < b->first || t > b->last)
				continue;
			if (s.found[k] == t)
				there++;
			else if (maybe_has(&f->keys[k], t) && t != 0)
				absent++;
		}
		FZ(there == 0 || absent == 0,
		   "reopened: batch of writes %llu..%llu half there (%d there, %d not)",
		   (unsigned long long) b->first, (unsigned long long) b->last, there, absent);
	}
	for (int k = 0; k < FUZZ_KEYS; k++) {
		f->keys[k].acked = s.found[k];
		f->keys[k].maybe[0] = s.found[k];
		f->keys[k].nmaybe = 1;
	}
	f->nbatches = 0;
}

static void op_reopen(struct fuzz *f)
{
	int rc;

	close_store(f);
	f->reopens++;
	rc = open_store(f, f->e);
	if (rc != 0) {
		FZ(f->tolerant, "reopen: %s with no fault armed", aurakv_strerror(rc));
		FZ(rc == -f->err || rc == -EIO, "reopen: %s (fault error %s): %s",
		   aurakv_strerror(rc), strerror(f->err), f->rs.last);
		auraio_fault_clear(f->e);
		f->armed = false;
		f->cleared = true;
		rc = open_store(f, f->e);
		FZ(rc == 0, "reopen with the fault cleared: %s (%s)", aurakv_strerror(rc),
		   f->rs.last);
	}
	verify_and_rebase(f);
	if (!f->armed)
		f->tolerant = false; /* a healthy store again: no errors expected */
}

/* ---- the fault ---- */

static void pick_fault(struct fuzz *f)
{
	struct kv_fuzz_fault pick = kv_fuzz_pick_fault(&rng_state);

	f->rule = pick.rule;
	f->err = pick.err;
	f->enospc_only = pick.enospc_only;
}

/* ---- a round ---- */

/* The operations' mix: a draw r below 100 runs the first whose upto exceeds it. */
static const struct {
	uint64_t upto;
	void (*run)(struct fuzz *f);
} mix[] = {
	{ 30, op_put },	      { 40, op_delete }, { 52, op_batch },   { 72, op_get },
	{ 84, op_multi_get }, { 90, op_sync },	 { 94, op_compact }, { 100, op_reopen },
};

/* What the rounds did, to show the fuzz reached the faults it means to test. */
struct totals {
	uint64_t ops, injected, write_failures, get_errors, reopens;
};

static void run_round(uint64_t seed, int nops, struct totals *t)
{
	struct fuzz *f = calloc(1, sizeof(*f));
	int arm_at, clear_at, rc;
	struct kv_reports rs2 = { 0 };
	aurakv_verify_result_t vr;
	auraio_stats_t st;

	cr_assert_not_null(f);
	cur_seed = seed;
	cur_op = -1;
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
	f->next_w = 1;
	durable_point(f); /* an empty store: every key absent */
	snprintf(f->path, sizeof(f->path), "%s/r%llu", dir, (unsigned long long) seed);
	f->o = kv_opts(&f->rs);
	f->o.reporter = kv_fuzz_report;
	f->o.background_gc = below(2);
	f->o.write_hints = below(3) != 0;
	f->o.cache_size = below(2) ? 1u << 20 : 0;
	f->o.flush_delay_us = below(2) ? 1000 : 0;
	pick_fault(f);
	arm_at = (int) below((uint64_t) nops);
	clear_at = arm_at + 1 + (int) below((uint64_t) nops);
	snprintf(cur_fault, sizeof(cur_fault),
		 "%s %s ops %u skip %llu count %llu keep %zu at op %d..%d; gc %d hints %d "
		 "cache %zu flush %u",
		 kv_fuzz_kind_name(f->rule.kind), strerror(f->err), f->rule.ops,
		 (unsigned long long) f->rule.skip, (unsigned long long) f->rule.count,
		 f->rule.keep, arm_at, clear_at, f->o.background_gc, f->o.write_hints,
		 f->o.cache_size, f->o.flush_delay_us);
	f->e = test_faulty_engine();
	rc = open_store(f, f->e);
	FZ(rc == 0, "open: %s", aurakv_strerror(rc));

	for (cur_op = 0; cur_op < nops; cur_op++) {
		uint64_t r = below(100);
		int m = 0;

		if (cur_op == arm_at) {
			cr_assert_eq(auraio_fault_set(f->e, &f->rule), 0);
			f->armed = f->tolerant = true;
		}
		if (cur_op == clear_at && f->armed) {
			auraio_fault_clear(f->e);
			f->armed = false;
			f->cleared = true;
		}
		while (r >= mix[m].upto)
			m++;
		mix[m].run(f);
	}
	t->ops += (uint64_t) nops;
	cur_op = nops;
	cr_assert_eq(auraio_get_stats(f->e, &st), 0);
	auraio_fault_clear(f->e);
	f->cleared = f->cleared || f->armed;
	f->armed = false;
	close_store(f);
	auraio_destroy(f->e);

	/* Opened again without faults: the state is one the model allows. */
	f->o.engine = NULL;
	rc = open_store(f, NULL);
	FZ(rc == 0, "final open: %s (%s)", aurakv_strerror(rc), f->rs.last);
	verify_and_rebase(f);
	close_store(f);
	FZ(f->rs.corruption == 0, "corruption reported (%s %s/%s): %s",
	   kv_fuzz_kind_name(f->rule.kind), strerror(f->err), f->rule.ops == 0 ? "all" : "some",
	   f->rs.last);
	f->o.reporter_arg = &rs2;
	rc = aurakv_verify(f->path, &f->o, &vr);
	FZ(rc == 0, "verify: %s (%llu corrupt, %llu bad hints): %s", aurakv_strerror(rc),
	   (unsigned long long) vr.corrupt, (unsigned long long) vr.bad_hints, rs2.last);
	if (getenv("KV_FUZZ_VERBOSE"))
		fprintf(stderr,
			"kv_fault_fuzz: seed %llu: %s %s ops %u skip %llu count %llu at op %d..%d: "
			"%llu injected, %d write failures, %d get errors, %d reopens\n",
			(unsigned long long) seed, kv_fuzz_kind_name(f->rule.kind),
			strerror(f->err), f->rule.ops, (unsigned long long) f->rule.skip,
			(unsigned long long) f->rule.count, arm_at, clear_at,
			(unsigned long long) st.faults_injected, f->write_failures, f->get_errors,
			f->reopens);
	t->injected += st.faults_injected;
	t->write_failures += (uint64_t) f->write_failures;
	t->get_errors += (uint64_t) f->get_errors;
	t->reopens += (uint64_t) f->reopens;
	test_rm_tree(f->path);
	free(f);
}

Test(kv_fault_fuzz, random_operations_under_one_random_fault_keep_the_contract)
{
	uint64_t rounds = test_env_u64("KV_FUZZ_ROUNDS", FUZZ_ROUNDS);
	uint64_t seed0 = test_env_u64("KV_FUZZ_SEED", 1);
	int nops = (int) test_env_u64("KV_FUZZ_OPS", FUZZ_OPS);
	struct totals t = { 0 };

	for (uint64_t i = 0; i < rounds; i++)
		run_round(seed0 + i, nops, &t);
	kv_fuzz_summary("kv_fault_fuzz", rounds, seed0);
	fprintf(stderr,
		"%llu operations, %llu faults injected, %llu writes and %llu gets failed, %llu "
		"reopens: the contract held\n",
		(unsigned long long) t.ops, (unsigned long long) t.injected,
		(unsigned long long) t.write_failures, (unsigned long long) t.get_errors,
		(unsigned long long) t.reopens);
	/* Not vacuous: faults were met, and calls failed because of them. */
	cr_assert(rounds < 10 || (t.injected > 0 && t.write_failures > 0 && t.get_errors > 0),
		  "the faults were never met: %llu injected", (unsigned long long) t.injected);
}
