/* SPDX-License-Identifier: MIT */
/*
 * engine_fuzz2_cont.c - engine_fuzz2's continuations: a callback request may have one
 * reserved with it (fops of the same worker, pending from the start), which its
 * callback submits - a read-back of what it wrote, or a new write, alone or followed by
 * its read-back in a chain, sometimes with a continuation of its own - or skips when the
 * parent did not complete in full or the submit is refused. Callbacks also poll, wait,
 * flush or change a registration from inside.
 *
 * A callback runs in any thread: it publishes a continuation's fate (cstate) and handle
 * for the owner, which retires it, and never frees a fop.
 */
#include "engine_fuzz2.h"

/* Callbacks run in any thread: they draw from a seed of their own thread. */
static unsigned *cb_seed(const struct fop *f)
{
	static _Thread_local unsigned seed;
	static _Thread_local bool seeded;

	if (!seeded) {
		seed = f->version * 2654435761u + (unsigned) f->block;
		seeded = true;
	}
	return &seed;
}

/*
 * Reserve a continuation for parent p (a callback request on a block): a read-back of
 * what p wrote, or a new write of p's block, alone or followed by its read-back in a
 * chain; submitted by p's callback when p completed in full. Depth-limited.
 */
void reserve_cont(struct worker *w, struct fop *p, int depth)
{
	struct fop *c, *c2 = NULL;
	bool wr;

	if (p->waitable || p->opcode == AURAIO_OP_FSYNC || depth > 2 || free_fops(w) < 6 ||
	    rand_r(&w->seed) % 3 == 0)
		return;
	c = fop_get(w);
	c->file = p->file;
	c->block = p->block;
	c->waitable = rand_r(&w->seed) % 4 == 0; /* collected by w, submitted by a callback */
	c->is_cont = true;
	c->how = 3;
	wr = !is_write(p->opcode) || rand_r(&w->seed) % 3 == 0;
	make_op(w, c,
		wr ? (rand_r(&w->seed) & 1 ? AURAIO_OP_WRITE : AURAIO_OP_WRITEV)
		   : (rand_r(&w->seed) & 1 ? AURAIO_OP_READ : AURAIO_OP_READV),
		&c->op, false);
	if (!wr)
		c->version = p->version;
	c->state = F_PENDING;
	p->cont = c;
	if (wr && rand_r(&w->seed) % 2) { /* a write + read-back chain */
		c2 = fop_get(w);
		c2->file = c->file;
		c2->block = c->block;
		c2->waitable = rand_r(&w->seed) % 4 == 0;
		c2->is_cont = true;
		c2->how = 3;
		make_op(w, c2, AURAIO_OP_READ, &c2->op, false);
		c2->version = c->version;
		c2->has_prev = true;
		c2->state = F_PENDING;
		c->next = c2;
	}
	reserve_cont(w, c2 ? c2 : c, depth + 1);
}

/* A continuation that will not run, nor will any below it. */
static void skip_cont(struct fop *c)
{
	for (; c; c = c->cont) {
		if (c->next)
			atomic_store(&c->next->cstate, C_SKIPPED);
		atomic_store(&c->cstate, C_SKIPPED);
		if (c->next)
			c = c->next;
	}
}

/* From p's callback: submit p's continuation, through a random submit call. */
static void submit_cont(struct round *r, struct fop *p, ssize_t res)
{
	struct fop *c = p->cont;
	auraio_request_t *req = NULL, *reqs[2] = { NULL, NULL };
	auraio_op_t ops[2];
	int rc, err = 0;

	if (res != (ssize_t) p->len) {
		skip_cont(c);
		return;
	}
	if (c->next) {
		ops[0] = c->op;
		ops[1] = c->next->op;
		rc = auraio_submit_linked(r->e, ops, 2, reqs);
		err = -rc;
		req = reqs[0];
		c->next->req = reqs[1];
	} else if (rand_r(cb_seed(p)) % 3 == 0) {
		rc = auraio_submit_batch(r->e, &c->op, 1, &req);
		err = rc == 1 ? 0 : -rc;
	} else {
		req = submit_op(r->e, &c->op); /* its user_data is c */
		err = req ? 0 : errno;
	}
	if (err == 0) {
		c->req = req; /* published by the stores below (the owner collects waitables) */
		if (c->next)
			atomic_store(&c->next->cstate, C_ACCEPTED);
		atomic_store(&c->cstate, C_ACCEPTED);
		atomic_fetch_add(&r->conts_run, 1);
		return;
	}
	if (err != EAGAIN && !(err == ESHUTDOWN && r->destroying))
		violation(r, "a callback's submission refused", c, -err);
	skip_cont(c);
}

/* Inside a callback: sometimes poll, wait, flush or change a registration. */
static void callback_extras(struct round *r, struct fop *f)
{
	unsigned *seed = cb_seed(f);
	unsigned x = rand_r(seed) % 16;
	int rc = 0;

	if (x == 0)
		rc = auraio_poll(r->e);
	else if (x == 1)
		rc = auraio_wait(r->e, 0);
	else if (x == 2)
		rc = auraio_wait(r->e, 1);
	else if (x == 3)
		auraio_flush(r->e); /* its result is the kernel's say */
	else if (x == 4 && pthread_mutex_trylock(&r->reg_lock) == 0) {
		change_registration(r, seed);
		pthread_mutex_unlock(&r->reg_lock);
	}
	if (rc < 0)
		violation(r, "poll or wait from a callback", f, rc);
}

void fop_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct fop *f = ud;
	struct round *r = f->w->r;

	if (auraio_request_user_data(req) != f)
		violation(r, "user_data", f, res);
	if (f->state != F_PENDING || f->waitable)
		violation(r, "callback for a fop not pending", f, res);
	if (f->cont)
		submit_cont(r, f, res);
	callback_extras(r, f);
	deliver(r, f, (long) res);
}
