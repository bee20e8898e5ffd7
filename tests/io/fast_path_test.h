/* SPDX-License-Identifier: MIT */
/*
 * fast_path_test.h - what the fast-path suites share (test_fast_path.c,
 * test_fast_path_sharing.c, test_reap_pass.c): engines with a fixed limit, locked or
 * single_thread; the check that no ring's sq_lock is left held; waiting for callbacks
 * with a deadline; chains of reads that callbacks resubmit.
 */
#ifndef AURA_FAST_PATH_TEST_H
#define AURA_FAST_PATH_TEST_H

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

#include "backend.h"
#include "latency_hist.h"
#include "test_util.h"

static inline auraio_engine_t *engine_with(unsigned rings, int qd, bool single)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.ring_count = (int) rings;
	o.queue_depth = qd;
	o.disable_adaptive = true;
	o.single_thread = single;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "auraio_create: %s", strerror(errno));
	return e;
}

static inline bool on_uring(const auraio_engine_t *e)
{
	return e->backend == AURAIO_BACKEND_IO_URING;
}

static inline const char *mode_name(bool single)
{
	return single ? "single_thread" : "locked";
}

/* No ring's sq_lock is held (a single_thread engine never touches it). */
static inline void assert_unlocked(auraio_engine_t *e, const char *where)
{
	for (unsigned i = 0; i < e->ring_count; i++)
		cr_assert_eq(atomic_load(&e->rings[i].sq_lock.v), 0,
			     "ring %u's sq_lock left held: %s", i, where);
}

static inline uint64_t hist_total(const struct ring *r)
{
	struct hist_snapshot s;

	hist_snapshot(&r->hist, &s);
	return s.total;
}

/* Handle completions until *flag is set (a deadline, not a sleep, ends a hang). */
static inline void wait_flag(auraio_engine_t *e, atomic_int *flag, int want)
{
	uint64_t deadline = test_now_ns() + 10ull * 1000000000ull;

	while (atomic_load(flag) < want) {
		cr_assert_geq(auraio_wait(e, 100), 0);
		cr_assert_lt(test_now_ns(), deadline, "completions never came (%d of %d)",
			     atomic_load(flag), want);
	}
}

static inline void count_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	(void) req;
	(void) res;
	atomic_fetch_add((atomic_int *) ud, 1);
}

/* A chain of reads of a pattern file, each resubmitted by the callback of the one
 * before (a callback's read into its own ring: the fast path's inline case). */
struct chain {
	auraio_engine_t *e;
	int fd;
	int left;
	off_t off;
	char buf[512];
	atomic_int *bad, *finished;
};

static inline void chain_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct chain *ch = ud;

	(void) req;
	if (res != 512 || !check_pattern(ch->buf, 512, (uint64_t) ch->off))
		atomic_fetch_add(ch->bad, 1);
	if (--ch->left == 0) {
		atomic_fetch_add(ch->finished, 1);
		return;
	}
	ch->off = (ch->off + 4096) % (64 * 4096);
	/* The suites size their rings so that no read is refused: EAGAIN too is a failure
	 * (retried here it would spin - a poll re-entered from a callback reaps nothing). */
	if (!auraio_read(ch->e, ch->fd, auraio_buf(ch->buf), 512, ch->off, chain_cb, ch)) {
		atomic_fetch_add(ch->bad, 1);
		atomic_fetch_add(ch->finished, 1);
	}
}

#endif
