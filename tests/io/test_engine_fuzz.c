/* SPDX-License-Identifier: MIT */
/*
 * A bounded randomized fuzz of the engine under concurrency and one injected fault.
 *
 * Each round builds an engine with random options (1-3 rings, a small queue depth,
 * sometimes single_thread with one thread, sometimes registered files and buffers) and
 * runs 1-4 threads doing random reads, writes, readv, writev, fsyncs, linked chains,
 * batches and cancels on three temporary files (one O_DIRECT), with callbacks or
 * waitable requests, besides pollers; one random fault rule is armed at a random point.
 * Threads exit with I/O in flight (orphans); some rounds destroy the engine with I/O in
 * flight.
 *
 * Checked: every accepted request completes exactly once, with a result the operation
 * and the rule allow (-ECANCELED only after a broken link, a cancel or destroy); data
 * read equals what completed writes wrote where no fault hit (each block has one owner
 * thread and at most one operation at a time, but for a chain reading back its own
 * write); no wait hangs; after draining, submitted == completed and nothing in flight.
 *
 * Seeds are fixed and printed: AURA_IO_FUZZ_SEED=<seed> replays a round,
 * AURA_IO_FUZZ_ROUNDS=<n> runs more rounds (default 40, plus rounds that found a defect).
 */
#include <auraio.h>
#include <pthread.h>
#include <sched.h>

#include "test_util.h"

#define NFILES	 3
#define BS	 4096
#define NBLOCKS	 16 /* per file */
#define MAXFOPS	 24 /* per worker */
#define MAXTHR	 4
#define UNKNOWN	 UINT32_MAX
#define DEADLINE (20ull * 1000000000ull)

enum fstate { F_FREE, F_PENDING };

struct worker;

struct fop {
	struct worker *w;
	enum fstate state;
	auraio_opcode_t opcode;
	bool waitable;
	int file, block;
	uint32_t version; /* write: what it writes; read: what it should find */
	size_t len;	  /* full length (0 for fsync) */
	struct fop *next; /* next link of its chain */
	bool has_prev, prev_known;
	long prev_res;	       /* the previous link's result, once retired */
	struct fop *pin;       /* a callback fop that may cancel this one */
	struct fop *target;    /* a waitable this one's callback cancels */
	auraio_request_t *req; /* waitables only: valid until collected */
	bool may_fault;	       /* submitted after the rule may have been armed */
	atomic_bool cancel_ok; /* a cancel of it returned 0 */
	atomic_int delivered;
	atomic_long result;
	size_t prev_len;
	int how; /* debug: 0 single, 1 chain, 2 batch, 3 cancelling */
	struct iovec iov[4];
	uint8_t *buf;
};

struct round {
	auraio_engine_t *e;
	unsigned seed;
	int fds[NFILES];
	bool odirect[NFILES];
	size_t dio_align;
	uint32_t expect[NFILES][NBLOCKS]; /* version on disk, or UNKNOWN */
	atomic_uint next_version;
	bool single, regbuf, destroying;
	int nthreads;
	auraio_fault_t rule;
	int arm_step; /* worker 0 arms the rule at this step (-1: never) */
	atomic_bool armed;
	atomic_bool stop;
	atomic_int bad;
	char why[256];
	uint8_t *mem; /* MAXTHR * MAXFOPS blocks, registered when regbuf */
	atomic_long fault_results;
};

struct worker {
	struct round *r;
	int id;
	unsigned seed;
	bool orphan;
	int steps;
	struct fop fops[MAXFOPS];
};

static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

static void violation(struct round *r, const char *what, const struct fop *f, long res)
{
	pthread_mutex_lock(&why_lock);
	if (atomic_fetch_add(&r->bad, 1) == 0)
		snprintf(r->why, sizeof(r->why),
			 "%s: op %d file %d block %d waitable %d len %zu result %ld rule kind %d "
			 "ops %u fd %d skip %lu count %lu keep %zu prev %ld cancel %d regbuf %d "
			 "how %d hasprev %d orphan %d destroying %d",
			 what, f ? (int) f->opcode : -1, f ? f->file : -1, f ? f->block : -1,
			 f ? f->waitable : -1, f ? f->len : 0, res, r->rule.kind, r->rule.ops,
			 r->rule.fd, (unsigned long) r->rule.skip, (unsigned long) r->rule.count,
			 r->rule.keep, f && f->prev_known ? f->prev_res : 0,
			 f ? (int) atomic_load(&f->cancel_ok) : 0, r->regbuf, f ? f->how : -1,
			 f ? f->has_prev : -1, f ? f->w->orphan : -1, (int) r->destroying);
	pthread_mutex_unlock(&why_lock);
}

static uint8_t content_byte(int file, int block, uint32_t version, size_t i)
{
	uint64_t off = (uint64_t) block * BS + i;

	if (version == 0)
		return pattern_byte(off); /* what temp_file wrote */
	return (uint8_t) ((off * 40503u + version * 2654435761u + (unsigned) file * 97u) >> 7);
}

static void fill(uint8_t *buf, int file, int block, uint32_t version)
{
	for (size_t i = 0; i < BS; i++)
		buf[i] = content_byte(file, block, version, i);
}

static bool matches(const uint8_t *buf, size_t n, int file, int block, uint32_t version)
{
	for (size_t i = 0; i < n; i++)
		if (buf[i] != content_byte(file, block, version, i))
			return false;
	return true;
}

static unsigned op_class(auraio_opcode_t op)
{
	if (op == AURAIO_OP_READ || op == AURAIO_OP_READV)
		return AURAIO_FAULT_OP_READ;
	if (op == AURAIO_OP_WRITE || op == AURAIO_OP_WRITEV)
		return AURAIO_FAULT_OP_WRITE;
	return AURAIO_FAULT_OP_FSYNC;
}

static bool full(const struct fop *f, long res)
{
	return res == (long) f->len;
}

/* Can the rule have produced `res` for f? */
static bool fault_explains(const struct round *r, const struct fop *f, long res)
{
	const auraio_fault_t *rule = &r->rule;
	unsigned cls = op_class(f->opcode);

	if (!f->may_fault || rule->kind == AURAIO_FAULT_ENTER)
		return false;
	if ((rule->ops && !(rule->ops & cls)) || (rule->fd >= 0 && rule->fd != r->fds[f->file]))
		return false;
	if (res == -(long) rule->error)
		return true;
	if (rule->kind != AURAIO_FAULT_SHORT || cls == AURAIO_FAULT_OP_FSYNC)
		return false;
	return res == (long) rule->keep || (res == -EINVAL && r->odirect[f->file]);
}

/* The owner (or main, after the threads joined) checks a completed fop and updates the
 * expected file contents. */
static void retire(struct round *r, struct fop *f)
{
	long res = atomic_load(&f->result);
	bool prev_broken = f->prev_known && f->prev_res != (long) f->prev_len;

	if (atomic_load(&f->delivered) != 1)
		violation(r, "delivered more than once", f, res);
	if (prev_broken && res != -ECANCELED)
		violation(r, "a link after a broken one was not cancelled", f, res);
	else if (res == -ECANCELED && !prev_broken && !atomic_load(&f->cancel_ok) && !r->destroying)
		violation(r, "-ECANCELED with no cancel and no broken link", f, res);
	else if (res != -ECANCELED && !full(f, res) && !fault_explains(r, f, res))
		violation(r, "result the op and the rule do not explain", f, res);
	if (res < 0 && res != -ECANCELED && fault_explains(r, f, res))
		atomic_fetch_add(&r->fault_results, 1);

	if (f->opcode == AURAIO_OP_WRITE || f->opcode == AURAIO_OP_WRITEV) {
		/* a cancelled or faulted write may have written some of it, or none */
		r->expect[f->file][f->block] = full(f, res) ? f->version : UNKNOWN;
	} else if ((f->opcode == AURAIO_OP_READ || f->opcode == AURAIO_OP_READV) && res > 0 &&
		   f->version != UNKNOWN &&
		   !matches(f->buf, (size_t) res, f->file, f->block, f->version)) {
		violation(r, "read data differs from what the last write wrote", f, res);
	}
	if (f->next) {
		f->next->prev_res = res;
		f->next->prev_len = f->len;
		f->next->prev_known = true;
	}
	if (f->target)
		f->target->pin = NULL;
	f->state = F_FREE;
}

static void fop_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct fop *f = ud;
	struct round *r = f->w->r;

	(void) req;
	if (f->state != F_PENDING || f->waitable)
		violation(r, "callback for a fop not pending", f, res);
	if (f->target) {
		int rc = auraio_cancel(r->e, f->target->req);

		if (rc == 0)
			atomic_store(&f->target->cancel_ok, true);
		else if (rc != -EINVAL && rc != -EAGAIN)
			violation(r, "cancel from a callback", f->target, rc);
	}
	if (!r->single && (rand_r(&f->w->seed) & 7) == 0 && auraio_poll(r->e) < 0)
		violation(r, "poll from a callback", f, res);
	atomic_store(&f->result, (long) res);
	atomic_fetch_add(&f->delivered, 1);
}

static struct fop *fop_get(struct worker *w)
{
	for (int i = 0; i < MAXFOPS; i++) {
		struct fop *f = &w->fops[i];

		if (f->state == F_FREE) {
			f->next = f->pin = f->target = NULL;
			f->has_prev = f->prev_known = false;
			f->req = NULL;
			f->may_fault = false;
			atomic_store(&f->cancel_ok, false);
			atomic_store(&f->delivered, 0);
			atomic_store(&f->result, -99999);
			return f;
		}
	}
	return NULL;
}

static bool block_busy(struct worker *w, int file, int block)
{
	for (int i = 0; i < MAXFOPS; i++) {
		struct fop *f = &w->fops[i];

		if (f->state == F_PENDING && f->opcode != AURAIO_OP_FSYNC && f->file == file &&
		    f->block == block)
			return true;
	}
	return false;
}

/* A free block owned by w (blocks are dealt to workers round-robin), or -1. */
static int pick_block(struct worker *w, int file)
{
	int start = (int) (rand_r(&w->seed) % NBLOCKS);

	for (int k = 0; k < NBLOCKS; k++) {
		int b = (start + k) % NBLOCKS;

		if (b % w->r->nthreads == w->id && !block_busy(w, file, b))
			return b;
	}
	return -1;
}

/* Fill f as a random operation (fsync, or one on a free block) and its auraio_op_t. */
static bool make_op(struct worker *w, struct fop *f, auraio_op_t *op, int readback_of)
{
	struct round *r = w->r;
	unsigned x = rand_r(&w->seed);
	int kind = readback_of >= 0 ? (int) (x % 2) * 2 : (int) (x % 9);
	size_t seg = r->odirect[f->file] ? r->dio_align : 512;

	memset(op, 0, sizeof(*op));
	f->opcode = kind == 8 ? AURAIO_OP_FSYNC : (auraio_opcode_t) (kind % 4);
	f->len = f->opcode == AURAIO_OP_FSYNC ? 0 : BS;
	f->block = readback_of >= 0 ? readback_of : 0;
	if (f->opcode != AURAIO_OP_FSYNC && readback_of < 0 &&
	    (f->block = pick_block(w, f->file)) < 0)
		return false;
	op->opcode = f->opcode;
	op->fd = r->fds[f->file];
	op->offset = (off_t) f->block * BS;
	op->len = f->len;
	op->cb = f->waitable ? NULL : fop_cb;
	op->user_data = f;
	if (f->opcode == AURAIO_OP_FSYNC) {
		op->flags = (x >> 8) & 1 ? AURAIO_OP_DATASYNC : 0;
		return true;
	}
	if (f->opcode == AURAIO_OP_WRITE || f->opcode == AURAIO_OP_WRITEV) {
		f->version = atomic_fetch_add(&r->next_version, 1) + 1;
		fill(f->buf, f->file, f->block, f->version);
		op->flags = (x >> 8) % 5 == 0 ? AURAIO_OP_DSYNC : 0;
	} else if (readback_of < 0) {
		f->version = r->expect[f->file][f->block];
		memset(f->buf, 0xee, BS);
	}
	if (f->opcode == AURAIO_OP_READV || f->opcode == AURAIO_OP_WRITEV) {
		size_t cut1 = seg * (1 + (x >> 12) % (BS / seg)) % BS;
		size_t cut2 = seg * (1 + (x >> 16) % (BS / seg)) % BS;
		size_t a = cut1 < cut2 ? cut1 : cut2, b = cut1 < cut2 ? cut2 : cut1;
		size_t edges[4] = { 0, a, b, BS };
		int k = 0;

		for (int i = 0; i < 3; i++) /* 1 to 3 pieces covering the block */
			if (edges[i + 1] > edges[i])
				f->iov[k++] =
				    (struct iovec){ f->buf + edges[i], edges[i + 1] - edges[i] };
		if (k == 0)
			f->iov[k++] = (struct iovec){ f->buf, BS };
		op->iov = f->iov;
		op->iovcnt = k;
		return true;
	}
	if (r->regbuf && ((x >> 20) & 1))
		op->buf = auraio_buf_fixed(0, (size_t) (f->buf - r->mem));
	else
		op->buf = auraio_buf(f->buf);
	return true;
}

/* A free fop made into a random operation and marked pending, or NULL. */
static struct fop *new_op(struct worker *w, auraio_op_t *op, int readback_of, int file)
{
	struct fop *f = fop_get(w);

	if (!f)
		return NULL;
	f->file = file >= 0 ? file : (int) (rand_r(&w->seed) % NFILES);
	f->waitable = (rand_r(&w->seed) & 1) != 0;
	if (!make_op(w, f, op, readback_of))
		return NULL;
	f->state = F_PENDING;
	return f;
}

static void submitted(struct worker *w, struct fop **fs, auraio_request_t **reqs, int n)
{
	bool armed = atomic_load(&w->r->armed); /* read after the submit returned */

	for (int i = 0; i < n; i++) {
		fs[i]->may_fault = armed;
		if (fs[i]->waitable || w->r->single)
			fs[i]->req = reqs[i];
	}
}

static void refused(struct worker *w, struct fop **fs, int n, int err, const char *what)
{
	if (err != EAGAIN)
		violation(w->r, what, fs[0], -err);
	for (int i = 0; i < n; i++)
		fs[i]->state = F_FREE;
}

/* Collect waitable f (not pinned by a callback that may still cancel it). */
static void collect(struct worker *w, struct fop *f, int timeout_ms)
{
	ssize_t res = -99999;
	int rc = auraio_request_wait(w->r->e, f->req, timeout_ms, &res);

	if (rc == -ETIMEDOUT && timeout_ms >= 0 && timeout_ms < 10000)
		return;
	if (rc != 0) {
		violation(w->r, "request_wait", f, rc);
		return;
	}
	atomic_store(&f->result, (long) res);
	atomic_fetch_add(&f->delivered, 1);
}

/* Retire every delivered fop whose chain predecessor is retired; how many. With
 * `orphaned`, also those whose predecessor will never be (a waitable at destroy). */
static int retire_pass(struct worker *w, bool orphaned)
{
	int n = 0;

	for (int again = 1; again;) {
		again = 0;
		for (int i = 0; i < MAXFOPS; i++) {
			struct fop *f = &w->fops[i];

			if (f->state != F_PENDING || atomic_load(&f->delivered) == 0)
				continue;
			if (f->has_prev && !f->prev_known && !orphaned)
				continue;
			retire(w->r, f);
			n++;
			again = 1;
		}
	}
	return n;
}

/* Make progress: retire what completed; if nothing did, collect a waitable or wait. */
static void reap_own(struct worker *w)
{
	struct round *r = w->r;

	if (retire_pass(w, false) > 0)
		return;
	for (int i = 0; i < MAXFOPS; i++) {
		struct fop *f = &w->fops[i];

		if (f->state == F_PENDING && f->waitable && !f->pin &&
		    atomic_load(&f->delivered) == 0) {
			collect(w, f, 10000);
			retire_pass(w, false);
			return;
		}
	}
	if (auraio_wait(r->e, 50) < 0)
		violation(r, "auraio_wait", NULL, 0);
	retire_pass(w, false);
}

static int pending_count(const struct worker *w)
{
	int n = 0;

	for (int i = 0; i < MAXFOPS; i++)
		n += w->fops[i].state == F_PENDING;
	return n;
}

static void submit_single(struct worker *w)
{
	auraio_engine_t *e = w->r->e;
	auraio_op_t op;
	struct fop *f = new_op(w, &op, -1, -1);
	auraio_request_t *req = NULL;

	if (!f)
		return;
	switch (op.opcode) {
	case AURAIO_OP_READ:
		req = auraio_read(e, op.fd, op.buf, op.len, op.offset, op.cb, f);
		break;
	case AURAIO_OP_WRITE:
		req = auraio_write(e, op.fd, op.buf, op.len, op.offset, op.cb, f);
		break;
	case AURAIO_OP_READV:
		req = auraio_readv(e, op.fd, op.iov, op.iovcnt, op.offset, op.cb, f);
		break;
	case AURAIO_OP_WRITEV:
		req = auraio_writev(e, op.fd, op.iov, op.iovcnt, op.offset, op.cb, f);
		break;
	default:
		req = auraio_fsync(e, op.fd, op.flags, op.cb, f);
	}
	f->how = 0;
	if (req)
		submitted(w, &f, &req, 1);
	else
		refused(w, &f, 1, errno, "single submit");
}

/* A chain of 2-4: sometimes a write read back later in the chain (order check). */
static void submit_chain(struct worker *w)
{
	auraio_op_t ops[4];
	struct fop *fs[4];
	auraio_request_t *reqs[4];
	int n = 2 + (int) (rand_r(&w->seed) % 3), k = 0, rc;

	while (k < n) {
		int rb = -1, file = -1;

		if (k > 0 &&
		    (fs[0]->opcode == AURAIO_OP_WRITE || fs[0]->opcode == AURAIO_OP_WRITEV) &&
		    rand_r(&w->seed) % 2) {
			rb = fs[0]->block;
			file = fs[0]->file;
		}
		if (!(fs[k] = new_op(w, &ops[k], rb, file)))
			break;
		if (rb >= 0)
			fs[k]->version = fs[0]->version;
		if (k > 0) {
			fs[k - 1]->next = fs[k];
			fs[k]->has_prev = true;
		}
		k++;
	}
	if (k < 2) {
		for (int i = 0; i < k; i++)
			fs[i]->state = F_FREE;
		return;
	}
	fs[k - 1]->next = NULL;
	for (int i = 0; i < k; i++)
		fs[i]->how = 1;
	rc = auraio_submit_linked(w->r->e, ops, k, reqs);
	if (rc == 0)
		submitted(w, fs, reqs, k);
	else
		refused(w, fs, k, -rc, "submit_linked");
}

static void submit_batch(struct worker *w)
{
	auraio_op_t ops[4];
	struct fop *fs[4];
	auraio_request_t *reqs[4];
	int n = 2 + (int) (rand_r(&w->seed) % 3), k = 0, rc;

	while (k < n && (fs[k] = new_op(w, &ops[k], -1, -1)))
		k++;
	if (k == 0)
		return;
	for (int i = 0; i < k; i++)
		fs[i]->how = 2;
	rc = auraio_submit_batch(w->r->e, ops, k, reqs);
	if (rc > k)
		violation(w->r, "batch accepted more than it was given", fs[0], rc);
	if (rc > 0) {
		submitted(w, fs, reqs, rc);
		for (int i = rc; i < k; i++)
			fs[i]->state = F_FREE;
	} else {
		refused(w, fs, k, -rc, "submit_batch");
	}
}

/* A callback request whose callback cancels one of w's pending waitables. */
static void submit_cancelling(struct worker *w)
{
	struct fop *t = NULL;

	for (int i = 0; i < MAXFOPS && !t; i++) {
		struct fop *f = &w->fops[i];

		if (f->state == F_PENDING && f->waitable && f->req && !f->pin &&
		    atomic_load(&f->delivered) == 0)
			t = f;
	}
	if (!t)
		return;
	for (int tries = 0; tries < 4; tries++) {
		auraio_op_t op;
		struct fop *f = new_op(w, &op, -1, -1);
		auraio_request_t *req = NULL;
		int rc;

		if (!f)
			return;
		if (f->waitable) {
			f->state = F_FREE;
			continue;
		}
		f->target = t;
		f->how = 3;
		t->pin = f;
		rc = auraio_submit_batch(w->r->e, &op, 1, &req);
		if (rc == 1) {
			submitted(w, &f, &req, 1);
		} else {
			t->pin = NULL;
			refused(w, &f, 1, -rc, "cancelling submit");
		}
		return;
	}
}

/* Cancel a random pending request of w: any waitable; a callback one only when w is the
 * only thread running callbacks (single_thread), so its handle is surely still valid. */
static void cancel_one(struct worker *w)
{
	struct round *r = w->r;
	int start = (int) (rand_r(&w->seed) % MAXFOPS);

	for (int k = 0; k < MAXFOPS; k++) {
		struct fop *f = &w->fops[(start + k) % MAXFOPS];
		int rc;

		if (f->state != F_PENDING || atomic_load(&f->delivered) != 0 || !f->req)
			continue;
		rc = auraio_cancel(r->e, f->req);
		if (rc == 0) {
			atomic_store(&f->cancel_ok, true);
		} else if (rc == -EINVAL && !f->waitable) {
			violation(r, "cancel refused a callback request not yet delivered", f, rc);
		} else if (rc == -EINVAL && !f->pin) {
			/* not in flight: it completed, so it can be collected at once */
			ssize_t res;

			if (auraio_request_wait(r->e, f->req, 0, &res) != 0)
				violation(r, "cancel said done but request_wait(0) disagrees", f,
					  rc);
			else {
				atomic_store(&f->result, (long) res);
				atomic_fetch_add(&f->delivered, 1);
			}
		} else if (rc != -EAGAIN && rc != -EINVAL) {
			violation(r, "cancel", f, rc);
		}
		return;
	}
}

static void arm_rule(struct round *r)
{
	atomic_store(&r->armed, true); /* before: a submit that sees false was not hit */
	if (auraio_fault_set(r->e, &r->rule) != 0)
		violation(r, "fault_set", NULL, 0);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct round *r = w->r;
	uint64_t deadline = test_now_ns() + DEADLINE;

	for (int step = 0; step < w->steps && !atomic_load(&r->bad); step++) {
		unsigned x = rand_r(&w->seed) % 16;

		if (w->id == 0 && step == r->arm_step)
			arm_rule(r);
		while (pending_count(w) > MAXFOPS - 4 && !atomic_load(&r->bad)) {
			reap_own(w);
			if (test_now_ns() > deadline)
				violation(r, "worker made no progress: hang", NULL, 0);
		}
		if (x < 4 || x == 15)
			submit_single(w);
		else if (x < 6)
			submit_chain(w);
		else if (x < 8)
			submit_batch(w);
		else if (x == 8 || x == 9)
			cancel_one(w);
		else if (x == 10 && auraio_poll(r->e) < 0)
			violation(r, "poll", NULL, 0);
		else if (x == 11 && auraio_wait(r->e, (int) (rand_r(&w->seed) % 2) * 10) < 0)
			violation(r, "wait", NULL, 0);
		else if (x == 12)
			auraio_flush(r->e); /* -EBUSY under an ENTER rule is fine */
		else if (x == 13)
			reap_own(w);
		else if (x == 14)
			submit_cancelling(w);
		retire_pass(w, false);
	}
	if (!w->orphan && (rand_r(&w->seed) & 1))
		auraio_flush(r->e);
	return NULL; /* what is pending is left to the main thread (orphans) */
}

static void *poller_main(void *arg)
{
	struct round *r = arg;
	unsigned seed = r->seed;

	while (!atomic_load(&r->stop)) {
		int rc = rand_r(&seed) & 1 ? auraio_poll(r->e) : auraio_wait(r->e, 5);

		if (rc < 0)
			violation(r, "poller", NULL, rc);
		if (rc == 0)
			sched_yield();
	}
	return NULL;
}

/* Main, after the threads joined: collect and retire everything. */
static void drain(struct round *r, struct worker *ws)
{
	uint64_t deadline = test_now_ns() + DEADLINE;

	for (int t = 0; t < r->nthreads; t++) {
		while (pending_count(&ws[t]) > 0 && !atomic_load(&r->bad)) {
			reap_own(&ws[t]);
			if (test_now_ns() > deadline)
				violation(r, "drain made no progress: hang", NULL, 0);
		}
	}
}

/* After auraio_destroy: every callback delivered exactly once; waitables released. */
static void after_destroy(struct round *r, struct worker *ws)
{
	for (int t = 0; t < r->nthreads; t++) {
		struct worker *w = &ws[t];

		for (int i = 0; i < MAXFOPS; i++) {
			struct fop *f = &w->fops[i];

			if (f->state != F_PENDING)
				continue;
			if (!f->waitable && atomic_load(&f->delivered) != 1)
				violation(r, "destroy did not deliver a callback exactly once", f,
					  atomic_load(&f->delivered));
		}
		retire_pass(w, true);
		for (int i = 0; i < MAXFOPS; i++) {
			struct fop *f = &w->fops[i];

			if (f->state == F_PENDING && op_class(f->opcode) == AURAIO_FAULT_OP_WRITE)
				r->expect[f->file][f->block] = UNKNOWN; /* never collected */
			f->state = F_FREE;
		}
	}
}

static void check_files(struct round *r)
{
	uint8_t *buf = aligned_alloc(4096, BS);

	cr_assert_not_null(buf);
	for (int file = 0; file < NFILES; file++)
		for (int b = 0; b < NBLOCKS; b++) {
			uint32_t v = r->expect[file][b];

			if (v == UNKNOWN)
				continue;
			cr_assert_eq(pread(r->fds[file], buf, BS, (off_t) b * BS), BS);
			if (!matches(buf, BS, file, b, v))
				violation(r, "file holds other data than the last full write", NULL,
					  b);
		}
	free(buf);
}

static void random_rule(struct round *r, unsigned *seed)
{
	static const int errs[] = { EIO, ENOSPC, EROFS };
	auraio_fault_t *f = &r->rule;

	memset(f, 0, sizeof(*f));
	f->kind = (auraio_fault_kind_t) (rand_r(seed) % 4);
	f->ops = rand_r(seed) % 8;
	f->fd = rand_r(seed) % 3 == 0 ? r->fds[rand_r(seed) % NFILES] : -1;
	f->skip = rand_r(seed) % 20;
	f->count = rand_r(seed) % 6; /* 0 = every one until cleared */
	f->error = errs[rand_r(seed) % 3];
	f->keep = 512 * (rand_r(seed) % 8);
	if (f->kind == AURAIO_FAULT_ENTER) {
		f->count = 1 + f->count % 4; /* refusing every entry forever would stall I/O */
		f->error = rand_r(seed) & 1 ? EBUSY : EAGAIN;
	}
}

static auraio_engine_t *round_engine(struct round *r, unsigned *seed)
{
	auraio_options_t o;
	static const int qds[] = { 4, 8, 16 };

	auraio_options_init(&o);
	o.ring_count = 1 + (int) (rand_r(seed) % 3);
	o.queue_depth = qds[rand_r(seed) % 3];
	o.single_thread = r->single;
	o.disable_adaptive = rand_r(seed) & 1;
	o.thread_workers = 1 + (int) (rand_r(seed) % 3);
	return auraio_create_with_options(&o);
}

static void run_round(unsigned seed)
{
	struct round *r = calloc(1, sizeof(*r));
	struct worker *ws = calloc(MAXTHR, sizeof(*ws));
	size_t memlen = (size_t) MAXTHR * MAXFOPS * BS;
	pthread_t th[MAXTHR], pol;
	bool poller;
	auraio_stats_t st;

	cr_assert(r && ws);
	r->seed = seed;
	r->single = rand_r(&seed) % 5 == 0;
	r->e = round_engine(r, &seed);
	cr_assert_not_null(r->e, "seed %u: create: %s", r->seed, strerror(errno));
	for (int i = 0; i < NFILES; i++) {
		r->odirect[i] = i == NFILES - 1;
		r->fds[i] = temp_file(NBLOCKS * BS, r->odirect[i] ? O_DIRECT : 0);
	}
	if (auraio_get_dio_alignment(r->fds[NFILES - 1], NULL, &r->dio_align) != 0 ||
	    r->dio_align == 0 || r->dio_align > BS)
		r->dio_align = BS;
	r->mem = aligned_alloc(4096, memlen);
	cr_assert_not_null(r->mem);
	if (rand_r(&seed) % 3 == 0)
		cr_assert_eq(auraio_register_files(r->e, r->fds, NFILES), 0);
	if (rand_r(&seed) % 3 == 0) {
		struct iovec iov = { r->mem, memlen };

		cr_assert_eq(auraio_register_buffers(r->e, &iov, 1), 0);
		r->regbuf = true;
	}
	random_rule(r, &seed);
	r->nthreads = r->single ? 1 : 1 + (int) (rand_r(&seed) % MAXTHR);
	r->arm_step = (int) (rand_r(&seed) % 80);
	r->destroying = rand_r(&seed) % 4 == 0;
	poller = !r->single && rand_r(&seed) % 3 != 0;
	for (int t = 0; t < r->nthreads; t++) {
		struct worker *w = &ws[t];

		w->r = r;
		w->id = t;
		w->seed = seed + (unsigned) t * 7919u;
		w->orphan = t > 0 && rand_r(&seed) % 3 == 0;
		w->steps =
		    w->orphan ? 1 + (int) (rand_r(&seed) % 4) : 40 + (int) (rand_r(&seed) % 80);
		for (int i = 0; i < MAXFOPS; i++)
			w->fops[i] =
			    (struct fop){ .w = w, .buf = r->mem + ((size_t) t * MAXFOPS + i) * BS };
	}
	if (poller)
		cr_assert_eq(pthread_create(&pol, NULL, poller_main, r), 0);
	for (int t = 0; t < r->nthreads; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &ws[t]), 0);
	for (int t = 0; t < r->nthreads; t++)
		pthread_join(th[t], NULL);
	atomic_store(&r->stop, true);
	if (poller)
		pthread_join(pol, NULL);

	if (r->destroying) {
		auraio_destroy(r->e);
		after_destroy(r, ws);
	} else {
		drain(r, ws);
		auraio_fault_clear(r->e);
		cr_assert_eq(auraio_get_stats(r->e, &st), 0);
		if (!atomic_load(&r->bad)) {
			cr_assert_eq(st.total.ops_submitted, st.total.ops_completed,
				     "seed %u: submitted %lu completed %lu", r->seed,
				     (unsigned long) st.total.ops_submitted,
				     (unsigned long) st.total.ops_completed);
			cr_assert_eq(st.total.in_flight, 0, "seed %u: in flight %u", r->seed,
				     st.total.in_flight);
			cr_assert_leq((uint64_t) atomic_load(&r->fault_results), st.faults_injected,
				      "seed %u: %ld fault results, %lu injected", r->seed,
				      atomic_load(&r->fault_results),
				      (unsigned long) st.faults_injected);
			if (r->rule.count)
				cr_assert_leq(st.faults_injected, r->rule.count, "seed %u",
					      r->seed);
		}
		auraio_destroy(r->e);
	}
	check_files(r);
	cr_assert_eq(atomic_load(&r->bad), 0, "seed %u: %s", r->seed, r->why);
	for (int i = 0; i < NFILES; i++)
		close(r->fds[i]);
	free(r->mem);
	free(ws);
	free(r);
}

static unsigned env_uint(const char *name, unsigned dflt)
{
	const char *s = getenv(name);

	return s && *s ? (unsigned) strtoul(s, NULL, 0) : dflt;
}

Test(engine_fuzz, random_io_cancels_chains_and_one_fault_complete_exactly_once, .timeout = 120)
{
	unsigned seed0 = env_uint("AURA_IO_FUZZ_SEED", 0);
	unsigned rounds = env_uint("AURA_IO_FUZZ_ROUNDS", seed0 ? 1 : 40);

	/* Rounds that found a defect run in every default run as well. */
	static const unsigned found[] = {
		3303, /* an orphaned torn write completed -ECANCELED (about one run in two) */
	};
	unsigned extra = seed0 ? 0 : (unsigned) (sizeof(found) / sizeof(found[0]));

	rounds += extra;
	for (unsigned i = 0; i < rounds; i++) {
		unsigned seed = seed0 ? seed0 + i : i < extra ? found[i] : 1000u + (i - extra) * 7u;

		fprintf(stderr, "engine_fuzz: round %u seed %u\n", i, seed);
		run_round(seed);
	}
}
