/* SPDX-License-Identifier: MIT */
/*
 * wal_fault_fuzz_ops.h - what the threads of a round of the log's fault fuzz do
 * (tests/wal/test_fault_fuzz.c, its only user): the round's state and its model of what
 * each call was told, payloads that name their record, which errors the armed fault
 * explains, the fault schedule, and the random operations - appends (durable, buffered,
 * async), syncs, flushes, reads (sync and async), iterations and releases - and the
 * worker loop that runs them. Every answer is checked as it comes (violate()).
 */
#ifndef AURA_WAL_FAULT_FUZZ_OPS_H
#define AURA_WAL_FAULT_FUZZ_OPS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "wal_test.h"

#define MAX_RECS    2048
#define MAX_THREADS 3
#define MAGIC	    0xA5C3F00Du
#define MAX_SEGS    256
#define BIG_MAX	    (272u << 10) /* above the largest buffer a round uses */

enum plan_kind {
	P_EIO_WRITE,
	P_EIO_FSYNC,
	P_EIO_READ,
	P_EIO_ANY,
	P_ENOSPC,
	P_ENOSPC_WRITE,
	P_SHORT_WRITE,
	P_SHORT_READ,
	P_TEAR,
	P_ENTER,
	P_KINDS
};

static const char *const plan_names[P_KINDS] = {
	"EIO on writes",    "EIO on fsyncs", "EIO on reads", "EIO on any op", "ENOSPC",
	"ENOSPC on writes", "short writes",  "short reads",  "torn write",    "refused entries"
};

enum { ST_PENDING = 0, ST_OK = 1, ST_FAIL = 2 };

struct rec {
	_Atomic int state;
	_Atomic int cb_runs;
	int err;
	unsigned flags;
	uint32_t size;
	bool async;
	aurawal_loc_t loc;
	uint64_t seq;
};

struct round {
	uint64_t seed;
	int index;
	aurawal_t *log;
	auraio_engine_t *e;
	aurawal_options_t o;
	int nthreads, ops;
	enum plan_kind kind;
	auraio_fault_t fault;
	uint64_t arm_at, clear_at; /* op numbers; clear_at UINT64_MAX = never */
	_Atomic uint64_t opcount;
	_Atomic int armed;  /* 0 not yet, 1 armed, 2 cleared */
	pthread_mutex_t mu; /* the fields below */
	struct rec recs[MAX_RECS];
	_Atomic uint32_t nrecs;
	uint64_t durable_floor;	 /* acknowledged records with seq <= this must survive */
	uint64_t max_returned;	 /* highest seq whose append has returned 0 */
	uint64_t release_try;	 /* a release below this segment may have happened */
	uint64_t release_floor;	 /* segments below this were released */
	bool seg_try[MAX_SEGS];	 /* aurawal_release_segment() was called for it */
	bool seg_gone[MAX_SEGS]; /* ... and it may have been released */
	bool mid_release;	 /* a segment may be gone from the middle of the log */
	bool violated;
	char why[512];
	_Atomic int rep_failed, rep_corrupt;
	char failed_reason[200];		/* the first FAILED report's */
	_Atomic int n_read, n_iter, n_released; /* what the round exercised */
};

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s += 0x9E3779B97F4A7C15ull;

	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static void violate(struct round *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->mu);
	if (!r->violated) {
		r->violated = true;
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof(r->why), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->mu);
}

static void reporter(const aurawal_report_t *rep, void *arg)
{
	struct round *r = arg;

	if (rep->kind == AURAWAL_REPORT_FAILED && atomic_fetch_add(&r->rep_failed, 1) == 0)
		snprintf(r->failed_reason, sizeof(r->failed_reason), "%s", rep->reason);
	if (rep->kind == AURAWAL_REPORT_CORRUPTION)
		atomic_fetch_add(&r->rep_corrupt, 1);
}

/* ---- payloads: id in the first 8 bytes when there is room ---- */

static void fill(uint8_t *p, uint32_t size, uint32_t id)
{
	if (size < 8) {
		payload_fill(p, size, id);
		return;
	}
	memcpy(p, &(uint32_t){ MAGIC }, 4);
	memcpy(p + 4, &id, 4);
	payload_fill(p + 8, size - 8, id);
}

/* The id a payload names, or -1 if it names none. */
static int64_t payload_id(const uint8_t *p, size_t len)
{
	uint32_t m, id;

	if (len < 8)
		return -1;
	memcpy(&m, p, 4);
	memcpy(&id, p + 4, 4);
	return m == MAGIC ? (int64_t) id : -1;
}

static bool intact(const uint8_t *p, size_t len, uint32_t id, uint32_t size)
{
	if (len != size)
		return false;
	if (size < 8)
		return payload_check(p, len, id);
	return payload_id(p, len) == id && payload_check(p + 8, len - 8, id);
}

/* ---- what an error may be ---- */

static bool plan_is_eio(const struct round *r)
{
	return r->kind <= P_EIO_ANY || r->kind == P_TEAR;
}

static bool plan_is_enospc(const struct round *r)
{
	return r->kind == P_ENOSPC || r->kind == P_ENOSPC_WRITE;
}

/* An error the armed fault explains (after it was armed: before it, none is). */
static bool fault_explains(struct round *r, int rc)
{
	if (!atomic_load(&r->armed))
		return false;
	if (rc == -ENOSPC)
		return plan_is_enospc(r);
	if (rc == -EIO) /* an error on reads alone fails no append nor sync */
		return plan_is_eio(r) && r->kind != P_EIO_READ;
	return false;
}

/* ---- fault schedule ---- */

static void tick(struct round *r)
{
	uint64_t n = atomic_fetch_add(&r->opcount, 1);

	if (n == r->arm_at) {
		if (auraio_fault_set(r->e, &r->fault))
			violate(r, "auraio_fault_set refused the rule");
		atomic_store(&r->armed, 1);
	} else if (n == r->clear_at) {
		auraio_fault_clear(r->e);
		atomic_store(&r->armed, 2);
	}
}

/* ---- appends ---- */

static struct rec *new_rec(struct round *r, uint32_t *id)
{
	uint32_t n = atomic_fetch_add(&r->nrecs, 1);

	if (n >= MAX_RECS)
		return NULL;
	*id = n;
	return &r->recs[n];
}

static void acked(struct round *r, struct rec *x, int status, aurawal_loc_t loc, uint64_t seq)
{
	pthread_mutex_lock(&r->mu);
	x->err = status;
	if (status == 0) {
		x->loc = loc;
		x->seq = seq;
		if (seq > r->max_returned)
			r->max_returned = seq;
		if ((x->flags & AURAWAL_DURABLE) && seq > r->durable_floor)
			r->durable_floor = seq;
	}
	atomic_store(&x->state, status == 0 ? ST_OK : ST_FAIL);
	pthread_mutex_unlock(&r->mu);
}

static void check_append_rc(struct round *r, int rc, int failed_before, const char *what)
{
	if (failed_before && rc != failed_before)
		violate(r, "%s after the log failed (%s) returned %s", what,
			aurawal_strerror(failed_before), aurawal_strerror(rc));
	else if (rc && !fault_explains(r, rc) && rc != aurawal_failed(r->log))
		violate(r, "%s: %s, which the fault (%s, armed %d) does not explain", what,
			aurawal_strerror(rc), plan_names[r->kind], atomic_load(&r->armed));
}

struct cb_arg {
	struct round *r;
	struct rec *x;
};

static void append_cb(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	struct cb_arg *a = arg;

	if (atomic_fetch_add(&a->x->cb_runs, 1))
		violate(a->r, "an append's callback ran twice");
	if (status)
		check_append_rc(a->r, status, 0, "async append callback");
	acked(a->r, a->x, status, loc, seq);
	free(a);
}

static uint32_t random_size(struct round *r, uint64_t *s)
{
	uint64_t d = below(s, 100);

	if (d < 5)
		return (uint32_t) below(s, 8); /* 0..7: no room for an id */
	if (d < 8)
		return (uint32_t) (r->o.buffer_size + below(s, 16u << 10)); /* a batch of its own */
	if (d < 60)
		return 8 + (uint32_t) below(s, 600);
	return 8 + (uint32_t) below(s, 3 * 4096 + 100);
}

static void do_append(struct round *r, uint64_t *s, uint8_t *buf, unsigned flags, bool async)
{
	uint32_t id;
	struct rec *x = new_rec(r, &id);
	struct iovec iov[2];
	aurawal_loc_t loc = { 0 };
	uint64_t seq = 0;
	int failed, rc, cnt;

	if (!x)
		return;
	x->size = random_size(r, s);
	x->flags = flags;
	x->async = async;
	fill(buf, x->size, id);
	cnt = x->size ? 1 + (x->size > 16 && below(s, 2)) : (int) below(s, 2);
	iov[0] = (struct iovec){ buf, cnt == 2 ? 16 : x->size };
	iov[1] = (struct iovec){ buf + 16, x->size - 16 };
	failed = aurawal_failed(r->log);
	if (async) {
		struct cb_arg *a = malloc(sizeof(*a));

		*a = (struct cb_arg){ r, x };
		rc = aurawal_append_async(r->log, iov, cnt, flags, append_cb, a);
		check_append_rc(r, rc, failed, "async append");
		if (rc) {
			free(a);
			acked(r, x, rc, loc, seq);
		}
		return;
	}
	rc = aurawal_append(r->log, iov, cnt, flags, &loc, &seq);
	check_append_rc(r, rc, failed, flags ? "durable append" : "append");
	if (rc == 0 && loc.size != x->size)
		violate(r, "append of %u bytes got a location of %u", x->size, loc.size);
	acked(r, x, rc, loc, seq);
}

static void do_sync(struct round *r)
{
	uint64_t upto;
	int failed = aurawal_failed(r->log), rc;

	pthread_mutex_lock(&r->mu);
	upto = r->max_returned;
	pthread_mutex_unlock(&r->mu);
	rc = aurawal_sync(r->log);
	check_append_rc(r, rc, failed, "sync");
	if (rc == 0) {
		pthread_mutex_lock(&r->mu);
		if (upto > r->durable_floor)
			r->durable_floor = upto;
		pthread_mutex_unlock(&r->mu);
	}
}

static void do_flush(struct round *r)
{
	int failed = aurawal_failed(r->log), rc = aurawal_flush(r->log);

	/* After a failure a flush with nothing left to write has nothing to say (aurawal.h
	 * promises the error to appends and syncs; flush returns it for what was lost). */
	check_append_rc(r, failed && rc == 0 ? failed : rc, failed, "flush");
}

/* ---- reads ---- */

/* A random record acknowledged so far (NULL if none): id in *id. */
static struct rec *pick_ok(struct round *r, uint64_t *s, uint32_t upto, uint32_t *id)
{
	for (int tries = 0; tries < 8 && upto; tries++) {
		uint32_t i = (uint32_t) below(s, upto);

		if (atomic_load(&r->recs[i].state) == ST_OK) {
			*id = i;
			return &r->recs[i];
		}
	}
	return NULL;
}

static uint32_t model_size(struct round *r)
{
	uint32_t n = atomic_load(&r->nrecs);

	return n < MAX_RECS ? n : MAX_RECS;
}

/* May segment seg have been released by now? */
static bool maybe_released(struct round *r, uint64_t seg)
{
	bool v;

	pthread_mutex_lock(&r->mu);
	v = seg < r->release_try || (seg < MAX_SEGS && r->seg_try[seg]);
	pthread_mutex_unlock(&r->mu);
	return v;
}

/* Is segment seg out of the log (so its records need not survive)? */
static bool gone(const struct round *r, uint64_t seg)
{
	return seg < r->release_floor || (seg < MAX_SEGS && r->seg_gone[seg]);
}

/* What a read of record id (acknowledged) answered: rc, payload p of len, seq. */
static void check_read(struct round *r, struct rec *x, uint32_t id, int rc, const uint8_t *p,
		       size_t len, uint64_t seq, const char *what)
{
	bool read_fault = r->kind == P_EIO_READ || r->kind == P_EIO_ANY;

	if (rc == 0) {
		if (seq != x->seq || !intact(p, len, id, x->size))
			violate(r,
				"%s of record %u at %llu:%u: seq %llu (want %llu) or payload wrong",
				what, id, (unsigned long long) x->loc.segment, x->loc.offset,
				(unsigned long long) seq, (unsigned long long) x->seq);
		return;
	}
	if (rc == -ENOENT && maybe_released(r, x->loc.segment))
		return;
	if (rc == -EIO && read_fault && atomic_load(&r->armed))
		return;
	if (rc != 0 && rc == aurawal_failed(r->log) && !(x->flags & AURAWAL_DURABLE))
		return; /* appended, not yet written when the log failed: never stored */
	violate(r, "%s of acknowledged record %u (%s%s) at %llu:%u: %s (fault %s, armed %d)", what,
		id, x->flags ? "durable" : "buffered", x->async ? ", async" : "",
		(unsigned long long) x->loc.segment, x->loc.offset, aurawal_strerror(rc),
		plan_names[r->kind], atomic_load(&r->armed));
}

static void do_read(struct round *r, uint64_t *s, uint8_t *buf)
{
	uint32_t id;
	struct rec *x = pick_ok(r, s, model_size(r), &id);
	size_t len = 0;
	uint64_t seq = 0;
	int rc;

	if (!x)
		return;
	rc = aurawal_read(r->log, x->loc, buf, BIG_MAX, &len, &seq);
	check_read(r, x, id, rc, buf, len, seq, "read");
	atomic_fetch_add(&r->n_read, rc == 0);
}

struct read_arg {
	struct round *r;
	struct rec *x;
	uint32_t id;
	uint8_t *buf;
};

static void read_cb(void *arg, int status, size_t len, uint64_t seq)
{
	struct read_arg *a = arg;

	check_read(a->r, a->x, a->id, status, a->buf, len, seq, "async read");
	free(a->buf);
	free(a);
}

static void do_read_async(struct round *r, uint64_t *s)
{
	uint32_t id;
	struct rec *x = pick_ok(r, s, model_size(r), &id);
	struct read_arg *a;
	int rc;

	if (!x)
		return;
	a = malloc(sizeof(*a));
	*a = (struct read_arg){ r, x, id, malloc(x->size ? x->size : 1) };
	rc = aurawal_read_async(r->log, x->loc, a->buf, x->size, read_cb, a);
	if (rc)
		read_cb(a, rc, 0, 0);
}

/* A few steps of an iterator from a random acknowledged record (or the oldest). */
static void do_iter(struct round *r, uint64_t *s)
{
	uint32_t id = 0;
	struct rec *x = pick_ok(r, s, model_size(r), &id);
	aurawal_loc_t from = x && below(s, 2) ? x->loc : (aurawal_loc_t){ 0 };
	aurawal_iter_t *it;
	aurawal_loc_t loc, prev = { 0 };
	uint64_t seq, prev_seq = 0;
	const void *p;
	size_t len;
	int rc = aurawal_iter_open(r->log, from, &it);

	if (rc) {
		if (!(rc == -ENOENT && maybe_released(r, from.segment)))
			violate(r, "iter_open at %llu:%u: %s", (unsigned long long) from.segment,
				from.offset, aurawal_strerror(rc));
		return;
	}
	for (int k = 0; k < 40 && (rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1; k++) {
		int64_t pid = payload_id(p, len);

		if (prev_seq && (seq <= prev_seq || loc.segment < prev.segment ||
				 (loc.segment == prev.segment && loc.offset <= prev.offset)))
			violate(r, "iterator: seq %llu at %llu:%u after seq %llu at %llu:%u",
				(unsigned long long) seq, (unsigned long long) loc.segment,
				loc.offset, (unsigned long long) prev_seq,
				(unsigned long long) prev.segment, prev.offset);
		if (pid >= 0 && pid < (int64_t) model_size(r)) {
			struct rec *y = &r->recs[pid];

			if (atomic_load(&y->state) == ST_OK &&
			    (y->seq != seq || y->loc.offset != loc.offset ||
			     y->loc.segment != loc.segment ||
			     !intact(p, len, (uint32_t) pid, y->size)))
				violate(r,
					"iterator found record %lld at seq %llu differing from "
					"its acknowledgement",
					(long long) pid, (unsigned long long) seq);
		}
		prev = loc;
		prev_seq = seq;
		atomic_fetch_add(&r->n_iter, 1);
	}
	if (rc < 0 && rc != -ENOENT && !(rc == -EIO && plan_is_eio(r) && atomic_load(&r->armed)))
		violate(r, "iter_next: %s (fault %s, armed %d)", aurawal_strerror(rc),
			plan_names[r->kind], atomic_load(&r->armed));
	aurawal_iter_close(it);
}

static void do_release(struct round *r, uint64_t *s)
{
	uint32_t id, n = model_size(r);
	struct rec *x = pick_ok(r, s, below(s, 2) ? n / 2 : n, &id);
	int failed = aurawal_failed(r->log), rc;

	if (!x || x->loc.segment < 2)
		return;
	pthread_mutex_lock(&r->mu);
	if (x->loc.segment > r->release_try)
		r->release_try = x->loc.segment;
	pthread_mutex_unlock(&r->mu);
	rc = aurawal_release_before(r->log, x->loc);
	if (rc > 0)
		atomic_fetch_add(&r->n_released, rc);
	if (rc >= 0) {
		pthread_mutex_lock(&r->mu);
		if (x->loc.segment > r->release_floor)
			r->release_floor = x->loc.segment;
		pthread_mutex_unlock(&r->mu);
	} else {
		check_append_rc(r, rc, failed, "release_before");
	}
}

/* Release the segment of a random acknowledged record (a gap in the log). */
static void do_release_segment(struct round *r, uint64_t *s)
{
	uint32_t id;
	struct rec *x = pick_ok(r, s, model_size(r), &id);
	uint64_t seg;
	int failed = aurawal_failed(r->log), rc;

	if (!x || x->loc.segment >= MAX_SEGS)
		return;
	seg = x->loc.segment;
	pthread_mutex_lock(&r->mu);
	r->seg_try[seg] = true;
	pthread_mutex_unlock(&r->mu);
	rc = aurawal_release_segment(r->log, seg);
	if (rc == -EBUSY || rc == -ENOENT)
		return; /* the active segment; or released already */
	if (rc)
		check_append_rc(r, rc, failed, "release_segment");
	pthread_mutex_lock(&r->mu);
	r->seg_gone[seg] = true; /* an error may leave it released (aurawal.h) */
	r->mid_release = true;
	pthread_mutex_unlock(&r->mu);
	if (rc == 0)
		atomic_fetch_add(&r->n_released, 1);
}

struct worker {
	struct round *r;
	uint64_t seed;
};

static void *worker(void *arg)
{
	struct worker *w = arg;
	struct round *r = w->r;
	uint64_t s = w->seed;
	uint8_t *buf = malloc(BIG_MAX);

	for (int i = 0; i < r->ops && !r->violated; i++) {
		uint64_t d = below(&s, 100);

		tick(r);
		if (d < 30)
			do_append(r, &s, buf, AURAWAL_DURABLE, false);
		else if (d < 50)
			do_append(r, &s, buf, 0, false);
		else if (d < 65)
			do_append(r, &s, buf, below(&s, 2) ? AURAWAL_DURABLE : 0, true);
		else if (d < 69)
			do_sync(r);
		else if (d < 72)
			do_flush(r);
		else if (d < 82)
			do_read(r, &s, buf);
		else if (d < 86)
			do_read_async(r, &s);
		else if (d < 91)
			do_iter(r, &s);
		else if (d < 94)
			do_release(r, &s);
		else if (d < 95)
			do_release_segment(r, &s);
		else
			aurawal_poll(r->log, (int) below(&s, 2));
	}
	free(buf);
	return NULL;
}

#endif
