/* SPDX-License-Identifier: MIT */
/*
 * engine_fuzz.h - the frame the engine's two randomized suites (io/test_engine_fuzz.c:
 * concurrency and one injected fault; io/test_engine_fuzz2*.c: callbacks that submit,
 * registrations that change) share: the files and blocks they write, the bookkeeping of
 * each request from submit to retire, the worker and poller threads, and the checks
 * after a round (every request delivered exactly once, the files hold what the last full
 * writes wrote).
 *
 * Use: define MAXFOPS (requests a worker may have pending), include this, define
 * `struct round` (members e, seed, fds, dio_align, expect, next_version, single,
 * destroying, nthreads, stop, bad, why, mem, as the fuzzes have them), then include
 * engine_fuzz_impl.h in exactly one file of the suite (with MIN_FREE defined: the free
 * requests a worker makes room for before each step). The suite defines the hooks
 * declared below. A fop's fields serve both fuzzes; those one fuzz never sets stay zero
 * there, and the shared code then acts as that fuzz did on its own.
 */
#ifndef AURA_ENGINE_FUZZ_H
#define AURA_ENGINE_FUZZ_H

#include <auraio.h>
#include <pthread.h>
#include <sched.h>

#include "test_util.h"

#ifndef MAXFOPS
#error "define MAXFOPS (requests per worker) before engine_fuzz.h"
#endif

#define NFILES	 3 /* data files; the last one O_DIRECT */
#define BS	 4096
#define NBLOCKS	 16 /* per file */
#define MAXTHR	 4
#define UNKNOWN	 UINT32_MAX
#define DEADLINE (20ull * 1000000000ull)

enum fstate { F_FREE, F_PENDING };
enum cstate { C_NONE, C_ACCEPTED, C_SKIPPED }; /* a continuation's fate */

struct round;
struct worker;

/* One request of a worker, from the submit that makes it pending to its retire. */
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
	long prev_res; /* the previous link's result, once retired */
	size_t prev_len;
	auraio_request_t *req; /* valid until collected (waitables) or its callback */
	atomic_bool cancel_ok; /* a cancel of it returned 0 */
	atomic_int delivered;
	atomic_long result;
	int how; /* debug: which way it was submitted (each fuzz numbers its ways) */
	struct iovec iov[4];
	uint8_t *buf;
	/* test_engine_fuzz.c: callbacks that cancel, and the fault rule */
	struct fop *pin;    /* a callback fop that may cancel this one */
	struct fop *target; /* a waitable this one's callback cancels */
	bool may_fault;	    /* submitted after the rule may have been armed */
	/* test_engine_fuzz2: continuations and fixed buffers */
	struct fop *cont; /* submitted by this one's callback (reserved with it) */
	bool is_cont, parent_retired;
	atomic_int cstate; /* a continuation: enum cstate, set by the parent's callback */
	bool fixed;	   /* counted in the round's fixed_outstanding */
	auraio_op_t op;	   /* a continuation's prepared op */
};

struct worker {
	struct round *r;
	int id;
	unsigned seed;
	bool orphan;
	int steps;
	struct fop fops[MAXFOPS];
};

/* ---- the shared frame (engine_fuzz_impl.h) ---- */

/* Record the round's first violation (what, f, res) and count every one. */
void violation(struct round *r, const char *what, const struct fop *f, long res);
/* A free fop of w, its bookkeeping reset, or NULL. */
struct fop *fop_get(struct worker *w);
int free_fops(const struct worker *w);
int pending_count(const struct worker *w);
/* A free block of `file` owned by w (blocks are dealt to workers round-robin), or -1. */
int pick_block(struct worker *w, int file);
/* Collect waitable f (a timeout under 10 s is no violation: it stays pending). */
void collect(struct worker *w, struct fop *f, int timeout_ms);
/* Retire every delivered fop whose predecessor (chain or continuation parent) is
 * retired; how many. With `orphaned`, also those whose predecessor never will be. */
int retire_pass(struct worker *w, bool orphaned);
/* Make progress: retire what completed; if nothing did, collect a waitable or wait. */
void reap_own(struct worker *w);
/* Cancel a random pending request of w whose handle is surely valid. */
void cancel_one(struct worker *w);
/* Worker steps both fuzzes take: auraio_poll, auraio_wait (0 or 10 ms), auraio_flush. */
void step_poll(struct worker *w);
void step_wait(struct worker *w);
void step_flush(struct worker *w);
/* The round's files (the last one O_DIRECT) and the O_DIRECT alignment. */
void open_files(struct round *r);
/* Set up r->nthreads workers (drawing from *seed), run them and a poller if `poller`,
 * join them; an orphan worker takes 1 .. orphan_steps steps. */
void run_workers(struct round *r, struct worker *ws, unsigned *seed, int orphan_steps, bool poller);
/* Destroy the engine with I/O in flight (r->destroying), or drain it first; check what
 * each way promises. */
void end_round(struct round *r, struct worker *ws);
/* Every block of the data files holds what the last full write wrote (or is UNKNOWN). */
void check_files(struct round *r);

/* ---- hooks: each fuzz defines these ---- */

/* Add the fuzz's own state (f may be NULL) to a violation's text: cap bytes at out. */
void describe(struct round *r, const struct fop *f, char *out, size_t cap);
/* f completed with res (a callback ran, or a wait collected it). */
void deliver(struct round *r, struct fop *f, long res);
/* A result neither the full length nor -ECANCELED: does the round's fault explain it? */
bool result_explained(struct round *r, const struct fop *f, long res);
/* Before worker step `step` (and the room made for it). */
void step_begins(struct worker *w, int step);
/* Worker step: action x (0 .. 15). */
void take_step(struct worker *w, unsigned x);
/* After draining (the fault cleared), with no violation so far: the engine's stats
 * (whose submitted and completed agree, nothing in flight) agree with the fuzz's. */
void check_drained(struct round *r, const auraio_stats_t *st);

/* ---- what the fuzzes write and read ---- */

static inline uint8_t content_byte(int file, int block, uint32_t version, size_t i)
{
	uint64_t off = (uint64_t) block * BS + i;

	if (version == 0)
		return pattern_byte(off); /* what temp_file wrote */
	return (uint8_t) ((off * 40503u + version * 2654435761u + (unsigned) file * 97u) >> 7);
}

static inline void fill(uint8_t *buf, int file, int block, uint32_t version)
{
	for (size_t i = 0; i < BS; i++)
		buf[i] = content_byte(file, block, version, i);
}

static inline bool matches(const uint8_t *buf, size_t n, int file, int block, uint32_t version)
{
	for (size_t i = 0; i < n; i++)
		if (buf[i] != content_byte(file, block, version, i))
			return false;
	return true;
}

static inline bool is_write(auraio_opcode_t op)
{
	return op == AURAIO_OP_WRITE || op == AURAIO_OP_WRITEV;
}

static inline bool is_read(auraio_opcode_t op)
{
	return op == AURAIO_OP_READ || op == AURAIO_OP_READV;
}

/* Submit op alone through the call of its opcode (auraio_read, ...): its request, or
 * NULL and errno. */
static inline auraio_request_t *submit_op(auraio_engine_t *e, const auraio_op_t *op)
{
	void *ud = op->user_data;

	switch (op->opcode) {
	case AURAIO_OP_READ:
		return auraio_read(e, op->fd, op->buf, op->len, op->offset, op->cb, ud);
	case AURAIO_OP_WRITE:
		return auraio_write(e, op->fd, op->buf, op->len, op->offset, op->cb, ud);
	case AURAIO_OP_READV:
		return auraio_readv(e, op->fd, op->iov, op->iovcnt, op->offset, op->cb, ud);
	case AURAIO_OP_WRITEV:
		return auraio_writev(e, op->fd, op->iov, op->iovcnt, op->offset, op->cb, ud);
	default:
		return auraio_fsync(e, op->fd, op->flags, op->cb, ud);
	}
}

/* A chain or batch in the making: n (2-4) operations wanted, k made. */
struct group {
	auraio_op_t ops[4];
	struct fop *fs[4];
	auraio_request_t *reqs[4];
	int n, k;
};

static inline void group_start(struct worker *w, struct group *g)
{
	g->n = 2 + (int) (rand_r(&w->seed) % 3);
	g->k = 0;
}

/* Round i's seed: seed0 + i when the suite's SEED variable gave seed0; otherwise first
 * the `nfound` rounds that found a defect, then base, base + 7, base + 14, ... */
static inline unsigned round_seed(unsigned i, unsigned seed0, const unsigned *found,
				  unsigned nfound, unsigned base)
{
	return seed0 ? seed0 + i : i < nfound ? found[i] : base + (i - nfound) * 7u;
}

#endif
