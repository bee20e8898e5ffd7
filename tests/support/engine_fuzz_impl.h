/* SPDX-License-Identifier: MIT */
/*
 * engine_fuzz_impl.h - the shared frame of the engine fuzzes (engine_fuzz.h says what
 * it is and how to use it). Include it in exactly one file of a suite, after that suite
 * defined `struct round` and MIN_FREE.
 *
 * Threads: each worker owns its fops and is the only one to retire them; callbacks (any
 * thread) only deliver. After the workers joined, the main thread owns every fop.
 */
#ifndef AURA_ENGINE_FUZZ_IMPL_H
#define AURA_ENGINE_FUZZ_IMPL_H

#include "engine_fuzz.h"

#ifndef MIN_FREE
#error "define MIN_FREE (free fops a worker keeps before a step) before engine_fuzz_impl.h"
#endif

static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

void violation(struct round *r, const char *what, const struct fop *f, long res)
{
	pthread_mutex_lock(&why_lock);
	if (atomic_fetch_add(&r->bad, 1) == 0) {
		int n = snprintf(
		    r->why, sizeof(r->why),
		    "%s: op %d file %d block %d waitable %d len %zu result %ld prev %ld cancel %d "
		    "how %d hasprev %d orphan %d destroying %d single %d",
		    what, f ? (int) f->opcode : -1, f ? f->file : -1, f ? f->block : -1,
		    f ? f->waitable : -1, f ? f->len : 0, res, f && f->prev_known ? f->prev_res : 0,
		    f ? (int) atomic_load(&f->cancel_ok) : 0, f ? f->how : -1, f ? f->has_prev : -1,
		    f ? f->w->orphan : -1, (int) r->destroying, (int) r->single);

		if (n > 0 && (size_t) n < sizeof(r->why))
			describe(r, f, r->why + n, sizeof(r->why) - (size_t) n);
	}
	pthread_mutex_unlock(&why_lock);
}

/* ---- a worker's requests ---- */

struct fop *fop_get(struct worker *w)
{
	for (int i = 0; i < MAXFOPS; i++) {
		struct fop *f = &w->fops[i];

		if (f->state == F_FREE) {
			f->next = f->pin = f->target = f->cont = NULL;
			f->has_prev = f->prev_known = f->is_cont = f->parent_retired = false;
			f->may_fault = f->fixed = false;
			f->req = NULL;
			f->how = 0;
			atomic_store(&f->cstate, C_NONE);
			atomic_store(&f->cancel_ok, false);
			atomic_store(&f->delivered, 0);
			atomic_store(&f->result, -99999);
			return f;
		}
	}
	return NULL;
}

int free_fops(const struct worker *w)
{
	int n = 0;

	for (int i = 0; i < MAXFOPS; i++)
		n += w->fops[i].state == F_FREE;
	return n;
}

int pending_count(const struct worker *w)
{
	return MAXFOPS - free_fops(w);
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

int pick_block(struct worker *w, int file)
{
	int start = (int) (rand_r(&w->seed) % NBLOCKS);

	for (int k = 0; k < NBLOCKS; k++) {
		int b = (start + k) % NBLOCKS;

		if (b % w->r->nthreads == w->id && !block_busy(w, file, b))
			return b;
	}
	return -1;
}

void collect(struct worker *w, struct fop *f, int timeout_ms)
{
	ssize_t res = -99999;
	int rc = auraio_request_wait(w->r->e, f->req, timeout_ms, &res);

	if (rc == -ETIMEDOUT && timeout_ms >= 0 && timeout_ms < 10000)
		return;
	if (rc != 0) {
		violation(w->r, "request_wait", f, rc);
		return;
	}
	deliver(w->r, f, (long) res);
}

/* Can f be collected by a wait now? Not while a callback may still cancel it (pin), nor
 * a continuation its parent's callback has not submitted. */
static bool collectable(struct fop *f)
{
	return f->state == F_PENDING && f->waitable && !f->pin && atomic_load(&f->delivered) == 0 &&
	       (!f->is_cont || atomic_load(&f->cstate) == C_ACCEPTED);
}

/* ---- retiring ---- */

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
	else if (res != -ECANCELED && res != (long) f->len && !result_explained(r, f, res))
		violation(r, "a result neither the full length nor one the fault explains", f, res);

	/* a cancelled or faulted write may have written some of it, or none */
	if (is_write(f->opcode))
		r->expect[f->file][f->block] = res == (long) f->len ? f->version : UNKNOWN;
	else if (is_read(f->opcode) && res > 0 && f->version != UNKNOWN &&
		 !matches(f->buf, (size_t) res, f->file, f->block, f->version))
		violation(r, "read data differs from what the last write wrote", f, res);
	if (f->next) {
		f->next->prev_res = res;
		f->next->prev_len = f->len;
		f->next->prev_known = true;
	}
	if (f->target)
		f->target->pin = NULL;
	for (struct fop *c = f->cont; c; c = c->next)
		c->parent_retired = true;
	f->state = F_FREE;
}

/* Free a skipped continuation once its parent retired (nothing to check). */
static bool retire_skipped(struct fop *f)
{
	if (atomic_load(&f->cstate) != C_SKIPPED || !f->parent_retired)
		return false;
	if (f->next)
		f->next->parent_retired = true;
	for (struct fop *c = f->cont; c; c = c->next)
		c->parent_retired = true;
	f->state = F_FREE;
	return true;
}

int retire_pass(struct worker *w, bool orphaned)
{
	int n = 0;

	for (int again = 1; again;) {
		again = 0;
		for (int i = 0; i < MAXFOPS; i++) {
			struct fop *f = &w->fops[i];

			if (f->state != F_PENDING)
				continue;
			if (f->is_cont && retire_skipped(f)) {
				n++;
				again = 1;
				continue;
			}
			if (atomic_load(&f->delivered) == 0)
				continue;
			if (!orphaned &&
			    ((f->has_prev && !f->prev_known) || (f->is_cont && !f->parent_retired)))
				continue;
			retire(w->r, f);
			n++;
			again = 1;
		}
	}
	return n;
}

void reap_own(struct worker *w)
{
	if (retire_pass(w, false) > 0)
		return;
	for (int i = 0; i < MAXFOPS; i++) {
		struct fop *f = &w->fops[i];

		if (collectable(f)) {
			collect(w, f, 10000);
			retire_pass(w, false);
			return;
		}
	}
	if (auraio_wait(w->r->e, 50) < 0)
		violation(w->r, "auraio_wait", NULL, 0);
	retire_pass(w, false);
}

/* Any waitable (its handle is valid until collected); a callback one only in a
 * single_thread engine, where w runs every callback, so that its handle is surely still
 * valid. */
void cancel_one(struct worker *w)
{
	struct round *r = w->r;
	int start = (int) (rand_r(&w->seed) % MAXFOPS);

	for (int k = 0; k < MAXFOPS; k++) {
		struct fop *f = &w->fops[(start + k) % MAXFOPS];
		int rc;

		if (f->state != F_PENDING || (!f->waitable && !r->single) ||
		    (f->is_cont && atomic_load(&f->cstate) != C_ACCEPTED) || !f->req ||
		    atomic_load(&f->delivered) != 0)
			continue;
		rc = auraio_cancel(r->e, f->req);
		if (rc == 0)
			atomic_store(&f->cancel_ok, true);
		else if (rc == -EINVAL && !f->waitable)
			violation(r, "cancel refused a callback request not yet delivered", f, rc);
		else if (rc == -EINVAL && !f->pin)
			collect(w, f, 0); /* not in flight: completed, collectable at once */
		else if (rc != -EAGAIN && rc != -EINVAL)
			violation(r, "cancel", f, rc);
		if (rc == -EINVAL && !f->pin && atomic_load(&f->delivered) == 0)
			violation(r, "cancel said done but request_wait(0) disagrees", f, rc);
		return;
	}
}

/* ---- the threads ---- */

void step_poll(struct worker *w)
{
	if (auraio_poll(w->r->e) < 0)
		violation(w->r, "poll", NULL, 0);
}

void step_wait(struct worker *w)
{
	if (auraio_wait(w->r->e, (int) (rand_r(&w->seed) % 2) * 10) < 0)
		violation(w->r, "wait", NULL, 0);
}

void step_flush(struct worker *w)
{
	auraio_flush(w->r->e); /* its result is the kernel's say (-EBUSY under an ENTER rule) */
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct round *r = w->r;

	for (int step = 0; step < w->steps && !atomic_load(&r->bad); step++) {
		unsigned x = rand_r(&w->seed) % 16;
		/* A hang is no room for DEADLINE in one wait; not a slow round (TSan, load). */
		uint64_t deadline = test_now_ns() + DEADLINE;

		step_begins(w, step);
		while (free_fops(w) < MIN_FREE && !atomic_load(&r->bad)) {
			reap_own(w);
			if (test_now_ns() > deadline)
				violation(r, "worker made no progress: hang", NULL, 0);
		}
		take_step(w, x);
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

void run_workers(struct round *r, struct worker *ws, unsigned *seed, int orphan_steps, bool poller)
{
	pthread_t th[MAXTHR], pol;

	for (int t = 0; t < r->nthreads; t++) {
		struct worker *w = &ws[t];

		w->r = r;
		w->id = t;
		w->seed = *seed + (unsigned) t * 7919u;
		w->orphan = t > 0 && rand_r(seed) % 3 == 0;
		w->steps = w->orphan ? 1 + (int) (rand_r(seed) % (unsigned) orphan_steps)
				     : 40 + (int) (rand_r(seed) % 80);
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
}

/* ---- the end of a round ---- */

void open_files(struct round *r)
{
	for (int i = 0; i < NFILES; i++)
		r->fds[i] = temp_file(NBLOCKS * BS, i == NFILES - 1 ? O_DIRECT : 0);
	if (auraio_get_dio_alignment(r->fds[NFILES - 1], NULL, &r->dio_align) != 0 ||
	    r->dio_align == 0 || r->dio_align > BS)
		r->dio_align = BS;
}

/* Main, after the threads joined: collect and retire everything. */
static void drain(struct round *r, struct worker *ws)
{
	for (int t = 0; t < r->nthreads; t++) {
		uint64_t deadline = test_now_ns() + DEADLINE; /* for each worker's requests */

		while (pending_count(&ws[t]) > 0 && !atomic_load(&r->bad)) {
			reap_own(&ws[t]);
			if (test_now_ns() > deadline)
				violation(r, "drain made no progress: hang", &ws[t].fops[0], 0);
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
			bool unsent = f->is_cont && atomic_load(&f->cstate) != C_ACCEPTED;

			if (f->state != F_PENDING || f->waitable || unsent)
				continue;
			if (atomic_load(&f->delivered) != 1)
				violation(r, "destroy did not deliver a callback exactly once", f,
					  atomic_load(&f->delivered));
		}
		retire_pass(w, true);
		for (int i = 0; i < MAXFOPS; i++) {
			struct fop *f = &w->fops[i];

			if (f->state == F_PENDING && is_write(f->opcode))
				r->expect[f->file][f->block] = UNKNOWN; /* never collected */
			f->state = F_FREE;
		}
	}
}

void end_round(struct round *r, struct worker *ws)
{
	auraio_stats_t st;

	if (r->destroying) {
		auraio_destroy(r->e);
		after_destroy(r, ws);
		return;
	}
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
		check_drained(r, &st);
	}
	auraio_destroy(r->e);
}

void check_files(struct round *r)
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
					  file * 100 + b);
		}
	free(buf);
}

#endif
