/* SPDX-License-Identifier: MIT */
/*
 * io_concurrency.h - what the engine's concurrency tests share: submitting threads
 * check each read in its callback (data, and delivered exactly once), one thread polls
 * until told to stop (run_with_poller), and a submitter waits until its reads are
 * delivered before it frees them.
 */
#ifndef AURA_IO_CONCURRENCY_H
#define AURA_IO_CONCURRENCY_H

#include <auraio.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "test_util.h"

struct shared {
	auraio_engine_t *e;
	int fd;
	atomic_int completed;
	atomic_int bad;
	atomic_bool stop;
};

/* One 512-byte read of the pattern file, checked by check_cb. */
struct op {
	struct shared *s;
	off_t off;
	char buf[512];
	atomic_int delivered;
};

static inline void check_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct op *op = ud;

	(void) req;
	if (res != 512 || !check_pattern(op->buf, 512, (uint64_t) op->off))
		atomic_fetch_add(&op->s->bad, 1);
	if (atomic_fetch_add(&op->delivered, 1) != 0)
		atomic_fetch_add(&op->s->bad, 1); /* delivered twice */
	atomic_fetch_add(&op->s->completed, 1);
}

/* ops must outlive their callbacks: wait until the poller has delivered them. */
static inline void wait_delivered(struct op *ops, int n)
{
	for (int i = 0; i < n; i++)
		while (atomic_load(&ops[i].delivered) == 0)
			sched_yield();
}

/* pthread body: handle completions until s->stop. */
static inline void *poller(void *arg)
{
	struct shared *s = arg;

	while (!atomic_load(&s->stop))
		cr_assert_geq(auraio_wait(s->e, 50), 0);
	return NULL;
}

/* Run n threads of `body` (arg: s) with one poller, until all of them have returned. */
static inline void run_with_poller(struct shared *s, int n, void *(*body)(void *) )
{
	pthread_t t[64], pol;

	cr_assert_leq(n, 64);
	cr_assert_eq(pthread_create(&pol, NULL, poller, s), 0);
	for (int i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, body, s), 0);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	atomic_store(&s->stop, true);
	pthread_join(pol, NULL);
}

#endif
