/* SPDX-License-Identifier: MIT */
/*
 * What opening a store of many segments holds while it merges one run per segment: no
 * file descriptor per hint file, read buffers that are a share of a budget and never
 * larger than their file, and hint files kept when they cannot be read for a reason
 * that says nothing about them (no fd left, an I/O error): only damage deletes one.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "kv_db.h"
#include "fault_engine.h"
#include "kv_test.h"

#define SPREAD 600
#define MANY   40000 /* ~15 segments of 1 MiB */
#define FEW    12000 /* ~5 */

KV_DIR_SUITE(kv_open_limits, 120);

static size_t spread = SPREAD; /* of the values' lengths */
static uint64_t segment_size = KV_SMALL_SEGMENT;

/* Keys 0..n-1, write 1, over segments of segment_size; every sealed one's hint written;
 * closed. */
static void fill(uint64_t n)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db;
	uint8_t v[SPREAD + 16];
	char k[32];

	o.segment_size = segment_size;
	db = kv_open_ok(dir, &o);
	for (uint64_t i = 0; i < n; i++) {
		size_t len = kv_value_len(i, 1, spread);

		kv_value(v, len, i, 1);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	cr_assert_eq(aurakv_compact(db), 0); /* runs a hint pass first */
	cr_assert_eq(aurakv_close(db), 0);
}

/* Every key there (the index counts n), and every 61st with its value. */
static void check_all(aurakv_t *db, uint64_t n)
{
	aurakv_stats_t st;

	cr_assert_eq(aurakv_get_stats(db, &st), 0);
	cr_assert_eq(st.keys, n, "%llu keys", (unsigned long long) st.keys);
	kv_check_keys(db, n, 61, 1, spread);
}

/* The sealed segments' numbers (every one has a hint file after fill()). */
static size_t sealed(aurakv_t *db, uint64_t *out, size_t max)
{
	aurakv_segment_stats_t all[256];
	size_t n = 0, k = 0;

	cr_assert_eq(aurakv_get_segment_stats(db, all, 256, &n), 0);
	cr_assert_leq(n, 256);
	for (size_t i = 0; i < n; i++)
		if (all[i].sealed && k < max) {
			cr_assert(all[i].has_hint, "segment %llu has its hint",
				  (unsigned long long) all[i].number);
			out[k++] = all[i].number;
		}
	return k;
}

/* Size of segment seg's hint file, -1 if there is none. */
static off_t hint_size(uint64_t seg)
{
	char path[600];
	struct stat st;

	kv_hint_file(path, sizeof(path), dir, seg);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and d's own */
}

static aurakv_options_t quiet_opts(struct kv_reports *rs)
{
	aurakv_options_t o = kv_opts(rs);

	o.background_gc = false; /* nothing but the open opens files */
	return o;
}

/* Before: each hint reader held its file open for the whole merge, so a store of N
 * segments needed ~2N fds to open; beyond the limit hint opens failed with EMFILE, and
 * the hint files were deleted for it. */
Test(kv_open_limits, a_store_of_many_segments_opens_with_a_few_fds_more_than_its_log_holds)
{
	struct kv_reports rs = { 0 };
	aurakv_options_t o = quiet_opts(&rs);
	struct rlimit old, low;
	uint64_t segs[256];
	size_t n;
	aurakv_t *db;
	int held;

	fill(MANY);
	db = kv_open_ok(dir, &o);
	held = open_fds(); /* the log's segments, the engine, the lock... */
	n = sealed(db, segs, 256);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_geq(n, 12, "many sealed segments (%zu)", n);

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t) held + 8; /* well below one more per hint file */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	rs.info = 0;
	db = NULL;
	int rc = aurakv_open(dir, &o, &db);
	if (rc == 0) {
		check_all(db, MANY);
		cr_assert_eq(sealed(db, segs, 256), n);
		cr_assert_eq(aurakv_close(db), 0);
	}
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_eq(rc, 0, "open under %d fds: %s", held + 8, aurakv_strerror(rc));
	cr_assert_eq(rs.info, 0, "every hint file was read: %s", rs.last);
	for (size_t i = 0; i < n; i++)
		cr_assert_gt(hint_size(segs[i]), 0, "segment %llu's hint file is there",
			     (unsigned long long) segs[i]);
}

/* Heap in use (the main arena and mmapped chunks: open runs in this thread). */
static size_t heap_bytes(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd;
}

struct heap_probe {
	size_t at[2];
	int n;
};

static void probe_report(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	struct heap_probe *p = arg;

	(void) kind;
	(void) msg;
	if (p->n < 2)
		p->at[p->n] = heap_bytes();
	p->n++;
}

/* Before: every reader held a 1 MiB buffer and a 64 KiB one for the previous key from
 * its open to the merge's end, whatever its file's size. Measured in the open itself:
 * the hints of the first and of the last sealed segment are damaged, so the open reports
 * on each, and between the two reports it opened the readers of all the others. */
Test(kv_open_limits, a_hint_reader_holds_no_more_memory_than_its_file_needs)
{
	struct heap_probe probe = { 0 };
	aurakv_options_t o = quiet_opts(NULL);
	uint64_t segs[256], files = 0;
	char path[600];
	size_t n, between, grew;
	aurakv_t *db;

	fill(MANY);
	db = kv_open_ok(dir, &o);
	n = sealed(db, segs, 256);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_geq(n, 12);
	for (size_t i = 1; i + 1 < n; i++)
		files += (uint64_t) hint_size(segs[i]);
	between = n - 2;
	kv_hint_file(path, sizeof(path), dir, segs[0]);
	kv_flip_byte(path, 100);
	kv_hint_file(path, sizeof(path), dir, segs[n - 1]);
	kv_flip_byte(path, 100);

	o.reporter = probe_report;
	o.reporter_arg = &probe;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(probe.n, 2, "the two damaged hints were reported");
	check_all(db, MANY);
	cr_assert_eq(aurakv_close(db), 0);
	/* The readers between the reports, and the first segment's summary (~150 KB); the
	 * margin also covers what the log's own threads may allocate meanwhile (the
	 * preparer's 1 MiB of zeros for a new segment). Before: 13.6 MB for 1 MB of files. */
	grew = probe.at[1] > probe.at[0] ? probe.at[1] - probe.at[0] : 0; /* a free meanwhile */
	cr_log_info("%zu readers of %llu bytes of hint files: %zu bytes of heap", between,
		    (unsigned long long) files, grew);
	cr_assert_lt(grew, files + (4u << 20),
		     "%zu readers of %llu bytes of hint files held %zu bytes", between,
		     (unsigned long long) files, grew);
}

Test(kv_open_limits, a_hint_readers_buffer_is_its_share_of_64_mib_within_64_kib_and_1_mib)
{
	cr_assert_eq(kv_hint_chunk(0), 1u << 20);
	cr_assert_eq(kv_hint_chunk(1), 1u << 20);
	cr_assert_eq(kv_hint_chunk(64), 1u << 20, "few segments read as before");
	cr_assert_eq(kv_hint_chunk(128), 512u << 10);
	cr_assert_eq(kv_hint_chunk(1000), 64u << 10);
	cr_assert_eq(kv_hint_chunk(65536), 64u << 10, "a floor: one read per 64 KiB");
	for (size_t runs = 1; runs <= 4096; runs++) {
		size_t c = kv_hint_chunk(runs);

		cr_assert_eq(c % 4096, 0, "%zu runs: %zu", runs, c);
		cr_assert_leq(c, kv_hint_chunk(runs - 1));
		cr_assert(runs * c <= (64u << 20) || c == (64u << 10), "%zu runs: %zu", runs, c);
	}
}

/* Every read of an open fails in turn (with no hint writing, a deleted hint file would
 * stay deleted): each open fails with -EIO or has every key, and every hint file is still
 * there. Returns how many opens said they read a segment instead of a hint they kept,
 * having found that out `when` (in the merge: "instead"; opening the hint: "now"). */
static int each_read_fails_and_no_hint_is_lost(uint64_t nkeys, const char *when)
{
	uint64_t segs[256];
	off_t sizes[256];
	int kept = 0;
	size_t n;
	aurakv_t *db;

	fill(nkeys);
	{
		aurakv_options_t o = quiet_opts(NULL);

		db = kv_open_ok(dir, &o);
		n = sealed(db, segs, 256);
		cr_assert_eq(aurakv_close(db), 0);
	}
	cr_assert_geq(n, 2);
	for (size_t i = 0; i < n; i++)
		sizes[i] = hint_size(segs[i]);
	for (uint64_t k = 0;; k++) {
		auraio_engine_t *e = test_faulty_engine();
		struct kv_reports rs = { 0 };
		aurakv_options_t o = quiet_opts(&rs);
		auraio_stats_t st;
		int rc;

		o.engine = e;
		o.write_hints = false;
		test_fault_error(e, AURAIO_FAULT_OP_READ, k, 1, EIO);
		db = NULL;
		rc = aurakv_open(dir, &o, &db);
		cr_assert_eq(auraio_get_stats(e, &st), 0);
		cr_assert(rc == 0 || rc == -EIO, "read %llu failed: open says %s",
			  (unsigned long long) k, aurakv_strerror(rc));
		cr_assert_eq(rs.corruption, 0, "read %llu: %s", (unsigned long long) k, rs.last);
		if (rc == 0) {
			auraio_fault_clear(e);
			check_all(db, nkeys);
			cr_assert_eq(aurakv_close(db), 0);
			kept += rs.info > 0 && strstr(rs.last, "kept") && strstr(rs.last, when);
		}
		auraio_destroy(e);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq(hint_size(segs[i]), sizes[i],
				     "read %llu failed: segment %llu's hint file is intact",
				     (unsigned long long) k, (unsigned long long) segs[i]);
		if (st.faults_injected == 0)
			break;
	}
	return kept;
}

/* Before: an I/O error on a hint file's first read deleted the file (as did EMFILE,
 * ENFILE, EACCES...): only damage means the file is bad. */
Test(kv_open_limits, a_hint_file_that_cannot_be_read_is_kept_and_its_segment_read)
{
	cr_assert_gt(each_read_fails_and_no_hint_is_lost(FEW, "now"), 0,
		     "some open read a segment instead of its hint, and said so");
}

/* Before: an I/O error reading a hint file half-way through the merge failed the open.
 * Hint files of more than one read (1 MiB): 4 MiB segments of 16-byte values. */
Test(kv_open_limits, a_hint_file_that_fails_half_way_is_kept_and_its_segment_read)
{
	segment_size = 4u << 20;
	spread = 1;
	cr_assert_gt(each_read_fails_and_no_hint_is_lost(140000, "instead"), 0,
		     "some open read a segment instead of its hint, half-way, and said so");
}
