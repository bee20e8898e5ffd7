/* SPDX-License-Identifier: MIT */
/*
 * engine_fuzz2.h - the parts of the engine_fuzz2 suite (test_engine_fuzz2.c, which says
 * what the fuzz does and checks) and what they share: its round, the registration model
 * (engine_fuzz2_reg.c) and the continuations callbacks submit (engine_fuzz2_cont.c).
 */
#ifndef AURA_ENGINE_FUZZ2_H
#define AURA_ENGINE_FUZZ2_H

#define MAXFOPS 32 /* per worker */

#include "engine_fuzz.h"

#define NDECOY 2 /* registered at times, never named by I/O */
#define NSLOTS 6

struct round {
	auraio_engine_t *e;
	unsigned seed;
	int fds[NFILES], decoys[NDECOY];
	size_t dio_align;
	uint32_t expect[NFILES][NBLOCKS]; /* version on disk, or UNKNOWN */
	atomic_uint next_version;
	bool single, destroying;
	bool enter_rule; /* an ENTER fault rule is armed: the kernel refuses entries */
	int nthreads, qd;
	atomic_bool stop;
	atomic_int bad;
	char why[320];
	uint8_t *mem; /* MAXTHR * MAXFOPS blocks; the registered buffer when registered */
	size_t memlen;
	/* the model of the registrations; changed under reg_lock */
	pthread_mutex_t reg_lock;
	bool files_reg;
	int slot_fd[NSLOTS];
	atomic_bool bufs_reg;
	atomic_uint buf_epoch;	       /* odd while a buffer (un)registration runs */
	atomic_long fixed_outstanding; /* fixed-reference requests not yet delivered */
	atomic_ulong fixed_started;    /* fixed-reference submits begun */
	atomic_long reg_changes, conts_run;
};

/* ---- engine_fuzz2_reg.c: the registrations and their model ---- */

/* Register or unregister the buffers and check the result against the model. */
void toggle_buffers(struct round *r);
/* Register the files: each data file and decoy in a random slot, or none. */
void register_files(struct round *r, unsigned *seed);
/* One random registration change (reg_lock held). */
void change_registration(struct round *r, unsigned *seed);

/* Whether buffers were registered around a submit call with fixed references in it. */
struct fixwin {
	unsigned ep0;
	bool reg0;
};

/* Count f as a fixed-reference request before its submit call. */
void fixed_begin(struct round *r, struct fop *f);
void fixwin_open(struct round *r, struct fixwin *fw);
/* A submit accepted fixed references (`fixed`) or refused them with `err`: check it
 * against the buffers' state; returns the error to judge the refusal by. */
int judge_fixed(struct round *r, const struct fixwin *fw, bool fixed, bool accepted, int err,
		struct fop *f);

/* ---- engine_fuzz2_cont.c: continuations ---- */

/* Reserve a continuation for parent p, submitted by p's callback; depth-limited. */
void reserve_cont(struct worker *w, struct fop *p, int depth);
/* The callback of every callback request. */
void fop_cb(auraio_request_t *req, ssize_t res, void *ud);

/* ---- test_engine_fuzz2.c ---- */

/* Fill f (file and block set) as `opcode` and its op; a write gets a new version. */
void make_op(struct worker *w, struct fop *f, auraio_opcode_t opcode, auraio_op_t *op,
	     bool may_fix);

#endif
