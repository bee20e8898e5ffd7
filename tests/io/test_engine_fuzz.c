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
#define MAXFOPS	 24 /* per worker */
#define MIN_FREE 4  /* a worker reaps until it has as many free */

#include "engine_fuzz.h"

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
	char why[320];
	uint8_t *mem; /* MAXTHR * MAXFOPS blocks, registered when regbuf */
	atomic_long fault_results;
};

#include "engine_fuzz_impl.h"

void describe(struct round *r, const struct fop *f, char *out, size_t cap)
{
	snprintf(out, cap, "; rule kind %d ops %u fd %d skip %lu count %lu keep %zu regbuf %d%s",
		 r->rule.kind, r->rule.ops, r->rule.fd, (unsigned long) r->rule.skip,
		 (unsigned long) r->rule.count, r->rule.keep, r->regbuf,
		 f && f->may_fault ? " may fault" : "");
}

void deliver(struct round *r, struct fop *f, long res)
{
	(void) r;
	atomic_store(&f->result, res);
	atomic_fetch_add(&f->delivered, 1);
}

static unsigned op_class(auraio_opcode_t op)
{
	if (op == AURAIO_OP_READ || op == AURAIO_OP_READV)
		return AURAIO_FAULT_OP_READ;
	if (op == AURAIO_OP_WRITE || op == AURAIO_OP_WRITEV)
		return AURAIO_FAULT_OP_WRITE;
	return AURAIO_FAULT_OP_FSYNC;
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

/* Counts the results the rule explains that are errors (checked against the engine's
 * count of faults injected). */
bool result_explained(struct round *r, const struct fop *f, long res)
{
	bool explained = fault_explains(r, f, res);

	if (explained && res < 0)
		atomic_fetch_add(&r->fault_results, 1);
	return explained;
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
	deliver(r, f, (long) res);
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

static void submit_single(struct worker *w)
{
	auraio_op_t op;
	struct fop *f = new_op(w, &op, -1, -1);
	auraio_request_t *req = NULL;

	if (!f)
		return;
	req = submit_op(w->r->e, &op);
	f->how = 0;
	if (req)
		submitted(w, &f, &req, 1);
	else
		refused(w, &f, 1, errno, "single submit");
}

/* A chain of 2-4: sometimes a write read back later in the chain (order check). */
static void submit_chain(struct worker *w)
{
	struct group g;
	struct fop **fs = g.fs;
	int rc;

	group_start(w, &g);
	while (g.k < g.n) {
		int rb = -1, file = -1, k = g.k;

		if (k > 0 &&
		    (fs[0]->opcode == AURAIO_OP_WRITE || fs[0]->opcode == AURAIO_OP_WRITEV) &&
		    rand_r(&w->seed) % 2) {
			rb = fs[0]->block;
			file = fs[0]->file;
		}
		if (!(fs[k] = new_op(w, &g.ops[k], rb, file)))
			break;
		if (rb >= 0)
			fs[k]->version = fs[0]->version;
		if (k > 0) {
			fs[k - 1]->next = fs[k];
			fs[k]->has_prev = true;
		}
		g.k++;
	}
	if (g.k < 2) {
		for (int i = 0; i < g.k; i++)
			fs[i]->state = F_FREE;
		return;
	}
	fs[g.k - 1]->next = NULL;
	for (int i = 0; i < g.k; i++)
		fs[i]->how = 1;
	rc = auraio_submit_linked(w->r->e, g.ops, g.k, g.reqs);
	if (rc == 0)
		submitted(w, fs, g.reqs, g.k);
	else
		refused(w, fs, g.k, -rc, "submit_linked");
}

static void submit_batch(struct worker *w)
{
	struct group g;
	int rc;

	group_start(w, &g);
	while (g.k < g.n && (g.fs[g.k] = new_op(w, &g.ops[g.k], -1, -1)))
		g.k++;
	if (g.k == 0)
		return;
	for (int i = 0; i < g.k; i++)
		g.fs[i]->how = 2;
	rc = auraio_submit_batch(w->r->e, g.ops, g.k, g.reqs);
	if (rc > g.k)
		violation(w->r, "batch accepted more than it was given", g.fs[0], rc);
	if (rc > 0) {
		submitted(w, g.fs, g.reqs, rc);
		for (int i = rc; i < g.k; i++)
			g.fs[i]->state = F_FREE;
	} else {
		refused(w, g.fs, g.k, -rc, "submit_batch");
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

static void arm_rule(struct round *r)
{
	atomic_store(&r->armed, true); /* before: a submit that sees false was not hit */
	if (auraio_fault_set(r->e, &r->rule) != 0)
		violation(r, "fault_set", NULL, 0);
}

void step_begins(struct worker *w, int step)
{
	if (w->id == 0 && step == w->r->arm_step)
		arm_rule(w->r);
}

/* A worker's step x (0 .. 15) runs steps[x]. */
static void (*const steps[16])(struct worker *) = {
	submit_single, submit_single, submit_single,	 submit_single, submit_chain, submit_chain,
	submit_batch,  submit_batch,  cancel_one,	 cancel_one,	step_poll,    step_wait,
	step_flush,    reap_own,      submit_cancelling, submit_single
};

void take_step(struct worker *w, unsigned x)
{
	steps[x](w);
}

/* What the fault rule did agrees with what the engine counted. */
void check_drained(struct round *r, const auraio_stats_t *st)
{
	cr_assert_leq((uint64_t) atomic_load(&r->fault_results), st->faults_injected,
		      "seed %u: %ld fault results, %lu injected", r->seed,
		      atomic_load(&r->fault_results), (unsigned long) st->faults_injected);
	if (r->rule.count)
		cr_assert_leq(st->faults_injected, r->rule.count, "seed %u", r->seed);
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

/* Whether this build has fault injection (a Release build does not): without it the
 * rounds run with no rule armed, the rest of the fuzz unchanged. */
static bool faults_compiled;

static bool fault_injection_compiled(void)
{
	auraio_engine_t *e = auraio_create();
	auraio_fault_t probe = { .fd = -1, .count = 1, .skip = UINT64_MAX };
	bool yes;

	cr_assert_not_null(e);
	yes = auraio_fault_set(e, &probe) != -ENOTSUP;
	auraio_fault_clear(e);
	auraio_destroy(e);
	return yes;
}

static void run_round(unsigned seed)
{
	struct round *r = calloc(1, sizeof(*r));
	struct worker *ws = calloc(MAXTHR, sizeof(*ws));
	size_t memlen = (size_t) MAXTHR * MAXFOPS * BS;
	bool poller;

	cr_assert(r && ws);
	r->seed = seed;
	r->single = rand_r(&seed) % 5 == 0;
	r->e = round_engine(r, &seed);
	cr_assert_not_null(r->e, "seed %u: create: %s", r->seed, strerror(errno));
	open_files(r);
	for (int i = 0; i < NFILES; i++)
		r->odirect[i] = i == NFILES - 1;
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
	if (!faults_compiled)
		r->arm_step = -1; /* after drawing it: a seed replays the same round either way */
	r->destroying = rand_r(&seed) % 4 == 0;
	poller = !r->single && rand_r(&seed) % 3 != 0;
	run_workers(r, ws, &seed, 4, poller);
	end_round(r, ws);
	check_files(r);
	cr_assert_eq(atomic_load(&r->bad), 0, "seed %u: %s", r->seed, r->why);
	for (int i = 0; i < NFILES; i++)
		close(r->fds[i]);
	free(r->mem);
	free(ws);
	free(r);
}

Test(engine_fuzz, random_io_cancels_chains_and_one_fault_complete_exactly_once, .timeout = 120)
{
	unsigned seed0 = (unsigned) test_env_u64("AURA_IO_FUZZ_SEED", 0);
	unsigned rounds = (unsigned) test_env_u64("AURA_IO_FUZZ_ROUNDS", seed0 ? 1 : 40);

	/* Rounds that found a defect run in every default run as well. */
	static const unsigned found[] = {
		3303, /* an orphaned torn write completed -ECANCELED (about one run in two) */
	};
	unsigned extra = seed0 ? 0 : (unsigned) (sizeof(found) / sizeof(found[0]));

	rounds += extra;
	faults_compiled = fault_injection_compiled();
	if (!faults_compiled)
		fprintf(stderr, "engine_fuzz: fault injection is not compiled into this build: "
				"no rule is armed\n");
	for (unsigned i = 0; i < rounds; i++) {
		unsigned seed = round_seed(i, seed0, found, extra, 1000u);

		fprintf(stderr, "engine_fuzz: round %u seed %u\n", i, seed);
		run_round(seed);
	}
}
