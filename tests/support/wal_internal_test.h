/* SPDX-License-Identifier: MIT */
/* wal_internal_test.h - for suites that look inside a log (wal_internal.h): waiting
 * until its background preparer is idle, its active segment's file and the room left
 * in it, its directory. */
#ifndef AURA_WAL_INTERNAL_TEST_H
#define AURA_WAL_INTERNAL_TEST_H

#include <criterion/criterion.h>

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

#endif
