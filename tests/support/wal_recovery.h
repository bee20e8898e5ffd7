/* SPDX-License-Identifier: MIT */
/*
 * wal_recovery.h - the wal_recovery suite (tests/wal/test_recovery*.c: a fresh log
 * directory in `dir` per test) and what its files share: a closed log of NREC records
 * (make_log: their locations in locs, sequence numbers in seqs), its first segment's
 * file, counting and checking the records a log yields, and opening in a recovery mode.
 */
#ifndef AURA_WAL_RECOVERY_H
#define AURA_WAL_RECOVERY_H

#include "wal_test.h"

WAL_DIR_SUITE(wal_recovery);

#define NREC 50
#define RLEN 200

static aurawal_loc_t locs[NREC];
static uint64_t seqs[NREC];

/* A closed log of NREC records; removes the (empty) ready segment so the log is seg 1. */
static inline void make_log(void)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	char path[512];

	for (int i = 0; i < NREC; i++)
		seqs[i] = append_i(log, (uint64_t) i, RLEN, AURAWAL_DURABLE, &locs[i]);
	cr_assert_eq(aurawal_close(log), 0);
	snprintf(path, sizeof(path), "%s/0000000000000002.seg", dir);
	unlink(path); /* the ready segment holds nothing */
}

static inline int seg_fd(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/0000000000000001.seg", dir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	return fd;
}

/* Records a log yields, oldest first: their payload indices must be 0, 1, 2, ...
 * (records after the first `check` are not checked: unacknowledged ones may exist) */
static inline int count_records_upto(aurawal_t *log, const int *skip, int check)
{
	aurawal_iter_t *it;
	const void *p;
	size_t len;
	int n = 0, idx = 0, rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, &p, &len)) == 1) {
		if (skip && idx == *skip)
			idx++;
		if (idx < check)
			cr_assert(payload_check(p, len, (uint64_t) idx), "record %d wrong", idx);
		idx++;
		n++;
	}
	cr_assert_eq(rc, 0, "iteration: %s", aurawal_strerror(rc));
	aurawal_iter_close(it);
	return n;
}

static inline int count_records(aurawal_t *log, const int *skip)
{
	return count_records_upto(log, skip, INT32_MAX);
}

static inline aurawal_t *open_mode(aurawal_recovery_t mode, struct reports *rs, int *rc)
{
	aurawal_options_t o = wal_opts(rs);
	aurawal_t *log = NULL;

	o.recovery = mode;
	*rc = aurawal_open(dir, &o, &log);
	return log;
}

#endif
