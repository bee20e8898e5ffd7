/* SPDX-License-Identifier: MIT */
/*
 * wal_release.h - the wal_release suite (tests/wal/test_release*.c: a fresh log directory
 * in `dir` per test) and what its files share: a closed log of five segments with the
 * first record of each, and whether a segment's file exists.
 */
#ifndef AURA_WAL_RELEASE_H
#define AURA_WAL_RELEASE_H

#include "wal_test.h"

WAL_DIR_SUITE(wal_release);

static uint64_t idx[5]; /* payload index of first[i] (seals use sequence numbers too) */

/* Fill segments 1..5 (closed log); first[i] is the first record of segment i+1. */
static inline void five_segments(aurawal_loc_t *first, uint64_t *seq)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 };
	uint64_t s;

	for (uint64_t i = 0; loc.segment < 6; i++) {
		s = append_i(log, i, 1000, 0, &loc);
		if (loc.segment <= 5 && first[loc.segment - 1].segment == 0) {
			first[loc.segment - 1] = loc;
			seq[loc.segment - 1] = s;
			idx[loc.segment - 1] = i;
		}
	}
	cr_assert_eq(aurawal_close(log), 0);
}

#endif
