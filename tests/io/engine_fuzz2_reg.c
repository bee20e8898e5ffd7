/* SPDX-License-Identifier: MIT */
/*
 * engine_fuzz2_reg.c - engine_fuzz2's registrations: threads (and callbacks) register,
 * replace and unregister files and buffers while I/O runs, and each call must return
 * what a model of the table predicts. Also the window around a submit with fixed
 * references, to judge whether the buffers were registered all through it.
 *
 * The model changes under r->reg_lock; the buffers' state (bufs_reg, buf_epoch) and the
 * fixed-reference counts are atomics read by submitters without it.
 */
#include "engine_fuzz2.h"

/* Begin/end a buffer (un)registration: the epoch is odd while one runs. */
static void buf_change(struct round *r)
{
	atomic_fetch_add(&r->buf_epoch, 1);
}

/* Register or unregister the buffers and check the result against the model. */
void toggle_buffers(struct round *r)
{
	struct iovec iov = { r->mem, r->memlen };
	bool was = atomic_load(&r->bufs_reg);
	long out0 = atomic_load(&r->fixed_outstanding);
	unsigned long g0 = atomic_load(&r->fixed_started);
	int rc;

	buf_change(r);
	rc = was ? auraio_unregister_buffers(r->e) : auraio_register_buffers(r->e, &iov, 1);
	if (rc == 0)
		atomic_store(&r->bufs_reg, !was);
	buf_change(r);
	if (!was && rc != 0)
		violation(r, "register_buffers with none registered", NULL, rc);
	else if (was && rc == -EBUSY && out0 == 0 && atomic_load(&r->fixed_started) == g0)
		violation(r, "unregister_buffers EBUSY with no fixed I/O in flight", NULL, rc);
	else if (was && rc != 0 && rc != -EBUSY)
		violation(r, "unregister_buffers", NULL, rc);
	atomic_fetch_add(&r->reg_changes, rc == 0);
}

static int slot_of(const struct round *r, int fd)
{
	for (int i = 0; i < NSLOTS; i++)
		if (r->slot_fd[i] == fd)
			return i;
	return -1;
}

/* A random fd for a slot: a data file, a decoy or -1. */
static int random_slot_fd(struct round *r, unsigned *seed)
{
	unsigned x = rand_r(seed) % (NFILES + NDECOY + 1);

	if (x < NFILES)
		return r->fds[x];
	if (x < NFILES + NDECOY)
		return r->decoys[x - NFILES];
	return -1;
}

void register_files(struct round *r, unsigned *seed)
{
	int fds[NSLOTS], rc;

	for (int i = 0; i < NSLOTS; i++)
		fds[i] = -1;
	for (int i = 0; i < NFILES + NDECOY; i++) /* each file in a random slot, or none */
		if (rand_r(seed) % 4 != 0) {
			int s = (int) (rand_r(seed) % NSLOTS);

			if (fds[s] == -1)
				fds[s] = i < NFILES ? r->fds[i] : r->decoys[i - NFILES];
		}
	rc = auraio_register_files(r->e, fds, NSLOTS);
	if (rc != (r->files_reg ? -EBUSY : 0))
		violation(r, "register_files", NULL, rc);
	if (rc == 0) {
		memcpy(r->slot_fd, fds, sizeof(fds));
		r->files_reg = true;
	}
}

static void update_file(struct round *r, unsigned *seed)
{
	int idx = (int) (rand_r(seed) % NSLOTS), fd = random_slot_fd(r, seed), want, rc;
	int other = fd >= 0 ? slot_of(r, fd) : -1;

	if (!r->files_reg)
		want = -ENOENT;
	else if (other >= 0 && other != idx)
		want = -EINVAL;
	else
		want = 0;
	rc = auraio_update_file(r->e, idx, fd);
	if (rc == -EAGAIN && want == 0 && r->enter_rule)
		return; /* the kernel refused the queued entries: nothing changed */
	if (rc != want)
		violation(r, "update_file did not do what the table predicts", NULL, rc);
	if (rc == 0)
		r->slot_fd[idx] = fd;
}

/* One random registration change (reg_lock held). */
void change_registration(struct round *r, unsigned *seed)
{
	unsigned x = rand_r(seed) % 8;
	int rc;

	if (x < 2) {
		toggle_buffers(r);
	} else if (x == 2 || !r->files_reg) {
		if (r->files_reg) {
			rc = auraio_unregister_files(r->e);
			if (rc != 0 && !(rc == -EAGAIN && r->enter_rule))
				violation(r, "unregister_files", NULL, rc);
			r->files_reg = rc != 0;
		} else {
			register_files(r, seed);
		}
		atomic_fetch_add(&r->reg_changes, 1);
	} else {
		update_file(r, seed);
		atomic_fetch_add(&r->reg_changes, 1);
	}
}

/* ---- fixed references ---- */

/* Count f as a fixed-reference request before its submit call. */
void fixed_begin(struct round *r, struct fop *f)
{
	if (!f->fixed)
		return;
	atomic_fetch_add(&r->fixed_outstanding, 1);
	atomic_fetch_add(&r->fixed_started, 1);
}

void fixwin_open(struct round *r, struct fixwin *fw)
{
	fw->ep0 = atomic_load(&r->buf_epoch);
	fw->reg0 = atomic_load(&r->bufs_reg);
}

/* 1: registered throughout the call, 0: unregistered throughout, -1: it changed. */
static int fixwin_close(struct round *r, const struct fixwin *fw)
{
	if (atomic_load(&r->buf_epoch) != fw->ep0 || (fw->ep0 & 1))
		return -1;
	return fw->reg0;
}

/* A submit accepted fixed references (`fixed`) or refused them with `err`: check it
 * against the buffers' state; returns the error to judge the refusal by. */
int judge_fixed(struct round *r, const struct fixwin *fw, bool fixed, bool accepted, int err,
		struct fop *f)
{
	int state = fixwin_close(r, fw);

	if (fixed && accepted && state == 0)
		violation(r, "a fixed reference accepted with no buffers registered", f, 0);
	if (fixed && !accepted && err == EINVAL && state != 1)
		return EAGAIN; /* the buffers went away: refusing it is right */
	return err;
}
