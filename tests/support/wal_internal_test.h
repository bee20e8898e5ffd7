/* SPDX-License-Identifier: MIT */
/* wal_internal_test.h - for suites that look inside a log (wal_internal.h): waiting
 * until its background preparer is idle, its active segment's file and the room left
 * in it, its directory. */
#ifndef AURA_WAL_INTERNAL_TEST_H
#define AURA_WAL_INTERNAL_TEST_H

#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>

#include "wal_internal.h"

/* Wait until the preparer has made the next segment ready: it then writes nothing until
 * the active segment fills, so a fault injected for any file hits the I/O under test
 * and not a background write of the preparer. */
static inline void wal_preparer_idle(aurawal_t *log)
{
	pthread_mutex_lock(&log->mu);
	while (!log->ready && !log->space_err)
		pthread_cond_wait(&log->cv_ready, &log->mu);
	cr_assert_not_null(log->ready, "no ready segment: %s", aurawal_strerror(log->space_err));
	pthread_mutex_unlock(&log->mu);
}

/* The file descriptor of the log's active segment: a fault rule for it hits the writes
 * of what is appended now (into this segment), not those of the preparer when the
 * appends fill it and it rolls over. */
static inline int wal_active_fd(aurawal_t *log)
{
	int fd;

	pthread_mutex_lock(&log->mu);
	fd = log->active->fd;
	pthread_mutex_unlock(&log->mu);
	return fd;
}

/* Bytes left in the log's active segment (records, then its SEAL, must fit). */
static inline uint64_t wal_room_left(aurawal_t *log)
{
	uint64_t r;

	pthread_mutex_lock(&log->mu);
	r = log->active->size - log->active->data_end;
	pthread_mutex_unlock(&log->mu);
	return r;
}

/* The file descriptor of the log's directory: a fault rule for it hits the directory
 * syncs alone. */
static inline int wal_dir_fd(aurawal_t *log)
{
	return log->dir_fd;
}

/* A thread polling `log` with aurawal_poll_until() until a callback sets `*flag`. */
struct wal_flag_poll {
	aurawal_t *log;
	atomic_int *flag;
};

static inline bool wal_flag_is_set(void *flag)
{
	return atomic_load((atomic_int *) flag) != 0;
}

static inline void *wal_poll_until_flag(void *arg)
{
	struct wal_flag_poll *f = arg;

	while (!atomic_load(f->flag))
		cr_assert_geq(aurawal_poll_until(f->log, -1, wal_flag_is_set, f->flag), 0);
	return NULL;
}

/* Wait until a poll_until sleeps in `log` (the poller has no other way to say so). */
static inline void wal_until_waiter_asleep(aurawal_t *log)
{
	for (;;) {
		bool asleep;

		pthread_mutex_lock(&log->mu);
		asleep = log->until_waiters > 0;
		pthread_mutex_unlock(&log->mu);
		if (asleep)
			return;
		sched_yield();
	}
}

#endif
