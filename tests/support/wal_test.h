/* SPDX-License-Identifier: MIT */
/* wal_test.h - helpers for the WAL suites: temporary log directories, deterministic
 * payloads, and a reporter that records what recovery said. */
#ifndef AURA_WAL_TEST_H
#define AURA_WAL_TEST_H

#include <aurawal.h>
#include <sys/stat.h>

#include "fault_engine.h"
#include "test_util.h"

#define SMALL_SEGMENT (1u << 20) /* the smallest segment: rollovers come quickly */

/* A fresh, empty directory for a log (removed with rm_tree). */
static inline char *temp_dir(void)
{
	return test_temp_dir("auralog");
}

static inline void rm_tree(const char *dir)
{
	test_rm_tree(dir);
}

/*
 * A suite in which every test gets a fresh temporary directory in `dir`, removed after
 * the test: WAL_DIR_SUITE(wal_basic);
 */
#define WAL_DIR_SUITE(name)                                                                        \
	static char *dir;                                                                          \
	static void dir_setup(void)                                                                \
	{                                                                                          \
		dir = temp_dir();                                                                  \
	}                                                                                          \
	static void dir_teardown(void)                                                             \
	{                                                                                          \
		rm_tree(dir);                                                                      \
		free(dir);                                                                         \
	}                                                                                          \
	TestSuite(name, .init = dir_setup, .fini = dir_teardown)

/* The path of segment n's file in the log directory `dir`. */
static inline void wal_seg_file(char *buf, size_t size, const char *dir, uint64_t n)
{
	snprintf(buf, size, "%s/%016llx.seg", dir, (unsigned long long) n);
}

/* Does segment n's file exist in the log directory `dir`? */
static inline bool wal_seg_file_exists(const char *dir, uint64_t n)
{
	char path[512];

	wal_seg_file(path, sizeof(path), dir, n);
	return access(path, F_OK) == 0;
}

/* Payload i: `len` bytes derived from i, so any record can be checked on its own. */
static inline void payload_fill(uint8_t *p, size_t len, uint64_t i)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;

	for (size_t k = 0; k < len; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[k] = (uint8_t) x;
	}
}

static inline int payload_check(const uint8_t *p, size_t len, uint64_t i)
{
	uint8_t *want = malloc(len ? len : 1);
	int ok;

	payload_fill(want, len, i);
	ok = memcmp(want, p, len) == 0;
	free(want);
	return ok;
}

struct reports {
	int n, corruption, torn, dropped, locked, failed, prepare;
	aurawal_report_t last;
	uint64_t first_corrupt_offset;
	char reason[128];
};

static inline void record_report(const aurawal_report_t *r, void *arg)
{
	struct reports *rs = arg;

	rs->n++;
	if (r->kind == AURAWAL_REPORT_CORRUPTION && rs->corruption++ == 0)
		rs->first_corrupt_offset = r->offset;
	rs->torn += r->kind == AURAWAL_REPORT_TORN_TAIL;
	rs->dropped += r->kind == AURAWAL_REPORT_DROPPED;
	rs->locked += r->kind == AURAWAL_REPORT_LOCKED;
	rs->failed += r->kind == AURAWAL_REPORT_FAILED;
	rs->prepare += r->kind == AURAWAL_REPORT_PREPARE;
	rs->last = *r;
	snprintf(rs->reason, sizeof(rs->reason), "%s", r->reason);
}

static inline aurawal_options_t wal_opts(struct reports *rs)
{
	aurawal_options_t o;

	aurawal_options_init(&o);
	o.segment_size = SMALL_SEGMENT;
	o.buffer_size = 256u << 10;
	if (rs) {
		o.reporter = record_report;
		o.reporter_arg = rs;
	}
	return o;
}

static inline aurawal_t *wal_open_ok(const char *dir, const aurawal_options_t *o)
{
	aurawal_t *log = NULL;
	int rc = aurawal_open(dir, o, &log);

	cr_assert_eq(rc, 0, "aurawal_open(%s): %s", dir, aurawal_strerror(rc));
	return log;
}

static inline uint64_t append_i(aurawal_t *log, uint64_t i, size_t len, unsigned flags,
				aurawal_loc_t *loc)
{
	uint8_t *p = malloc(len ? len : 1);
	struct iovec iov = { p, len };
	uint64_t seq = 0;
	int rc;

	payload_fill(p, len, i);
	rc = aurawal_append(log, &iov, 1, flags, loc, &seq);
	cr_assert_eq(rc, 0, "append %llu: %s", (unsigned long long) i, aurawal_strerror(rc));
	free(p);
	return seq;
}

static inline void read_check(aurawal_t *log, aurawal_loc_t loc, uint64_t i, uint64_t seq)
{
	uint8_t *p = malloc(loc.size ? loc.size : 1);
	size_t len = 12345;
	uint64_t s = 0;
	int rc = aurawal_read(log, loc, p, loc.size, &len, &s);

	cr_assert_eq(rc, 0, "read %llu: %s", (unsigned long long) i, aurawal_strerror(rc));
	cr_assert_eq(len, loc.size);
	cr_assert_eq(s, seq);
	cr_assert(payload_check(p, len, i), "record %llu has the wrong payload",
		  (unsigned long long) i);
	free(p);
}

/* What wal_walk_all() saw: records of each type (index = aurawal_record_type_t). */
struct wal_walk {
	uint64_t n[5];
	uint64_t first_seq, last_seq;
};

/*
 * Walk every record of the log with aurawal_iter_next_record, checking that together
 * they account for the whole log: sequence numbers go up by exactly one from record to
 * record (the log's own records take theirs too), each record starts where the previous
 * one ended (the first of a segment right after its header block), a SEAL ends its
 * segment and names the segment that follows, and the DATA records are exactly those
 * aurawal_iter_next returns, in order.
 */
static inline struct wal_walk wal_walk_all(aurawal_t *log)
{
	struct wal_walk w = { { 0 }, 0, 0 };
	aurawal_iter_t *all, *data;
	aurawal_record_t r;
	aurawal_loc_t dloc, prev = { 0, 0, 0 };
	uint64_t dseq, next_seg = 0;
	int rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &all), 0);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &data), 0);
	while ((rc = aurawal_iter_next_record(all, &r)) == 1) {
		cr_assert(r.type >= AURAWAL_RECORD_DATA && r.type <= AURAWAL_RECORD_VOID);
		cr_assert_eq(r.len, r.loc.size);
		if (w.last_seq)
			cr_assert_eq(r.seq, w.last_seq + 1, "seq %llu after %llu",
				     (unsigned long long) r.seq, (unsigned long long) w.last_seq);
		else
			w.first_seq = r.seq;
		if (r.loc.segment == prev.segment) {
			cr_assert_eq(r.loc.offset, prev.offset + 32 + ((prev.size + 7) & ~7u),
				     "record at %llu:%u does not follow the previous one",
				     (unsigned long long) r.loc.segment, r.loc.offset);
		} else {
			cr_assert_eq(r.loc.offset, 4096, "segment %llu starts at %u",
				     (unsigned long long) r.loc.segment, r.loc.offset);
			if (next_seg)
				cr_assert_eq(r.loc.segment, next_seg, "the SEAL named %llu",
					     (unsigned long long) next_seg);
			next_seg = 0;
		}
		cr_assert_eq(next_seg, 0, "a record after the SEAL of segment %llu",
			     (unsigned long long) r.loc.segment);
		if (r.type == AURAWAL_RECORD_SEAL) {
			cr_assert_eq(r.len, 8);
			memcpy(&next_seg, r.payload, 8);
			cr_assert_gt(next_seg, r.loc.segment);
		}
		if (r.type == AURAWAL_RECORD_DATA) {
			cr_assert_eq(aurawal_iter_next(data, &dloc, &dseq, NULL, NULL), 1);
			cr_assert(dloc.segment == r.loc.segment && dloc.offset == r.loc.offset &&
				  dseq == r.seq);
		}
		w.n[r.type]++;
		w.last_seq = r.seq;
		prev = r.loc;
	}
	cr_assert_eq(rc, 0, "%s", aurawal_strerror(rc));
	cr_assert_eq(aurawal_iter_next(data, NULL, NULL, NULL, NULL), 0);
	aurawal_iter_close(all);
	aurawal_iter_close(data);
	return w;
}

#endif
