/* SPDX-License-Identifier: MIT */
/*
 * Injected faults under the store's hint files and directory syncs: a hint file that
 * cannot be written is written later, a vanished hints directory fails each hint once,
 * a failed directory sync releasing the oldest segment forgets it all the same, and a
 * segment that starts with a VOID record keeps its hint across a reopen.
 */
#include <criterion/criterion.h>

#include "kv_db.h"
#include "kv_index_internal.h"
#include "fault_engine.h"
#include "kv_faults.h"
#include "kv_test.h"
#include "wal_internal_test.h"

/* Files in DIR/hints whose name ends with `suffix`. */
static int hint_files(const char *suffix)
{
	char path[4096];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/hints", dir);
	d = opendir(path);
	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name), sl = strlen(suffix);

		n += len > sl && strcmp(de->d_name + len - sl, suffix) == 0;
	}
	closedir(d);
	return n;
}

/* Sealed segments of the store, and how many of them have a hint file. */
static void sealed_hints(aurakv_t *db, size_t *sealed, size_t *hinted)
{
	aurakv_segment_stats_t s[64];
	size_t n = 0;

	cr_assert_eq(aurakv_get_segment_stats(db, s, 64, &n), 0);
	cr_assert_leq(n, 64);
	*sealed = *hinted = 0;
	for (size_t i = 0; i < n; i++) {
		*sealed += s[i].sealed;
		*hinted += s[i].sealed && s[i].has_hint;
	}
}

/* A hint file that cannot be written (here: DIR/hints replaced by a file, so creating
 * one fails with ENOTDIR) is not an error of the store: said once as information, no
 * file left behind, and written later - at the next aurakv_compact(), or 10 s after
 * the failure - once it can be. */
Test(kv_faults, a_hint_file_that_cannot_be_written_is_written_later)
{
	auraio_engine_t *e = test_faulty_engine();
	struct kv_reports rs = { 0 };
	aurakv_options_t o = kv_opts(&rs);
	aurakv_t *db;
	char hints[4096];
	size_t sealed, hinted;
	auraio_stats_t st;
	int fd;

	o.background_gc = false;
	o.engine = e;
	db = kv_open_ok(dir, &o);
	snprintf(hints, sizeof(hints), "%s/hints", dir);
	cr_assert_eq(rmdir(hints), 0, "%s: %s", hints, strerror(errno));
	fd = open(hints, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	for (uint64_t k = 0; k < NKEYS; k++)
		cr_assert_eq(put_w(db, k, 1, k % 1000 == 999 ? AURAKV_SYNC : 0), 0);
	cr_assert_eq(aurakv_compact(db), 0, "a pass of the background thread: hints fail");
	sealed_hints(db, &sealed, &hinted);
	cr_assert_geq(sealed, 2);
	cr_assert_eq(hinted, 0);
	cr_assert_gt(rs.info, 0, "the failure is said");
	cr_assert_eq(rs.corruption, 0, "%s", rs.last);
	cr_assert_eq(put_w(db, NKEYS + 1, 1, AURAKV_SYNC), 0, "the store works on");

	cr_assert_eq(unlink(hints), 0);
	cr_assert_eq(mkdir(hints, 0755), 0);
	/* The next hint's file is synced, renamed, and then the directory's sync fails: that
	 * hint fails too, and its renamed file goes. */
	log_idle(db);
	test_fault_error(e, AURAIO_FAULT_OP_FSYNC, 1, 1, EIO);
	cr_assert_eq(aurakv_compact(db), 0);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.faults_injected, 1);
	sealed_hints(db, &sealed, &hinted);
	cr_assert_lt(hinted, sealed);
	cr_assert_eq(hint_files(".hint"), (int) hinted, "only the hints that succeeded have files");
	cr_assert_eq(hint_files(".tmp"), 0);
	auraio_fault_clear(e);
	for (int pass = 0; pass < 16 && hinted < sealed; pass++) { /* 4 hints per pass */
		cr_assert_eq(aurakv_compact(db), 0);
		sealed_hints(db, &sealed, &hinted);
	}
	cr_assert_eq(hinted, sealed, "%zu of %zu sealed segments got their hint", hinted, sealed);
	cr_assert_eq(hint_files(".hint"), (int) sealed);
	cr_assert_eq(hint_files(".tmp"), 0);
	cr_assert_eq(aurakv_close(db), 0);
	auraio_destroy(e);
	expect_sample_after_reopen();
}

/*
 * DIR/hints removed under an open store: writing a hint file fails with ENOENT, which
 * the hint pass took for "the segment was released meanwhile" - the segment was left
 * without a mark, not said, and every loop of the background thread (each 100 ms) read
 * every such sealed segment again to fail again: unbounded background I/O. It is a
 * hint that could not be written: marked failed (tried again only after 10 s, or by
 * aurakv_compact()), said once as information, and written once the directory is back.
 */
Test(kv_faults, a_vanished_hints_directory_fails_each_hint_once_instead_of_rereading_forever)
{
	struct kv_reports rs = { 0 };
	aurakv_options_t o = kv_opts(&rs);
	aurakv_segment_stats_t segs[64];
	size_t n = 0, sealed, hinted;
	char hints[4096];
	aurakv_t *db;

	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	snprintf(hints, sizeof(hints), "%s/hints", dir);
	cr_assert_eq(rmdir(hints), 0, "%s: %s", hints, strerror(errno));
	for (uint64_t k = 0; k < NKEYS; k++)
		cr_assert_eq(put_w(db, k, 1, 0), 0);
	cr_assert_eq(aurakv_compact(db), 0, "a pass of the background thread: hints fail");
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	sealed_hints(db, &sealed, &hinted);
	cr_assert_geq(sealed, 2);
	cr_assert_eq(hinted, 0);
	for (size_t i = 0; i < n && i < 64; i++) {
		struct kv_seg *s = kv_seg_get(db->db, segs[i].number, false);

		if (segs[i].sealed && i < 4) /* the first pass tries 4 */
			cr_assert_eq(atomic_load(&s->hint), KV_HINT_FAILED,
				     "segment %llu: not marked failed: read again each loop",
				     (unsigned long long) segs[i].number);
	}
	cr_assert_gt(rs.info, 0, "the failure is said");
	cr_assert_eq(rs.corruption, 0, "%s", rs.last);

	cr_assert_eq(mkdir(hints, 0755), 0);
	for (int pass = 0; pass < 16 && hinted < sealed; pass++) { /* 4 hints per pass */
		cr_assert_eq(aurakv_compact(db), 0);
		sealed_hints(db, &sealed, &hinted);
	}
	cr_assert_eq(hinted, sealed, "%zu of %zu sealed segments got their hint", hinted, sealed);
	cr_assert_eq(hint_files(".hint"), (int) sealed);
	cr_assert_eq(aurakv_close(db), 0);
	expect_sample_after_reopen();
}

/* Bytes of the hint files in DIR/hints. */
static int64_t hint_files_bytes(void)
{
	char path[4096];
	struct dirent *de;
	struct stat st;
	int64_t sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/hints", dir);
	cr_assert_not_null(d = opendir(path), "%s: %s", path, strerror(errno));
	while ((de = readdir(d))) {
		snprintf(path, sizeof(path), "%s/hints/%s", dir, de->d_name);
		if (de->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			sum += st.st_size;
	}
	closedir(d);
	return sum;
}

/*
 * GC releases the oldest segment and the log's directory sync after the file's removal
 * fails (-EIO): the segment is out of the log all the same, its removal owed to the
 * next sync (aurawal_release_segment). GC stopped at the error and kept what the
 * segment took - its accounting slot, its hint file, whose bytes it went on counting as
 * the store's space - until the next open. The collection still fails with -EIO, but
 * the segment is forgotten as after any release; the owed sync is paid by the next one
 * and nothing is lost.
 */
Test(kv_faults, a_failed_directory_sync_releasing_the_oldest_segment_forgets_it_all_the_same)
{
	auraio_engine_t *e = test_faulty_engine();
	struct kv_reports rs = { 0 };
	aurakv_options_t o = kv_opts(&rs);
	auraio_fault_t f = {
		.ops = AURAIO_FAULT_OP_FSYNC, .count = 1, .kind = AURAIO_FAULT_ERROR, .error = EIO
	};
	size_t sealed, hinted;
	auraio_stats_t st;
	char hint[600];
	uint64_t first;
	aurakv_t *db;

	o.engine = e;
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	for (uint64_t k = 0; k < NKEYS; k++)
		cr_assert_eq(put_w(db, k, 1, 0), 0);
	sealed_hints(db, &sealed, &hinted);
	for (int pass = 0; pass < 16 && hinted < sealed; pass++) { /* nothing dead: hints */
		cr_assert_eq(aurakv_compact(db), 0);
		sealed_hints(db, &sealed, &hinted);
	}
	cr_assert_eq(hinted, sealed);
	first = first_segment(db);
	kv_hint_file(hint, sizeof(hint), dir, first);
	cr_assert_eq(access(hint, F_OK), 0, "%s", hint);
	for (uint64_t k = 0; k < NKEYS; k++) /* the oldest segment: all dead */
		cr_assert_eq(put_w(db, k, 2, 0), 0);
	log_idle(db);
	cr_assert_eq(aurakv_sync(db), 0); /* no directory sync owed: the release's is next */
	f.fd = wal_dir_fd(db->db->wal);
	cr_assert_eq(auraio_fault_set(e, &f), 0);
	cr_assert_eq(aurakv_compact(db), -EIO);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.faults_injected, 1);
	auraio_fault_clear(e);
	cr_assert_neq(first_segment(db), first, "out of the log");
	cr_assert_neq(access(hint, F_OK), 0, "its hint file was left behind");
	cr_assert_null(kv_seg_get(db->db, first, false), "its accounting was kept");
	cr_assert_eq(atomic_load(&db->db->hint_bytes), hint_files_bytes(),
		     "GC counts the hint files there are");
	cr_assert_eq(rs.corruption, 0, "%s", rs.last);
	cr_assert_eq(aurakv_sync(db), 0, "the owed directory sync is paid");
	cr_assert_eq(aurakv_compact(db), 0);
	for (uint64_t k = 0; k < NKEYS; k += 7)
		expect(db, k, 2);
	cr_assert_eq(aurakv_close(db), 0);
	auraio_destroy(e);
	o = kv_opts(NULL);
	db = kv_open_ok(dir, &o);
	for (uint64_t k = 0; k < NKEYS; k++)
		expect(db, k, 2);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Reports that a hint file was refused at open. */
static void count_unusable(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	int *n = arg;

	(void) kind;
	if (strstr(msg, "unusable"))
		(*n)++;
}

/* The first record of the store's first segment is a put refused for lack of space: a
 * VOID record (docs/wal_format.md) holds its place and its sequence number. The
 * segment's hint names the segment's first sequence number as the log does, VOID
 * included, so the next open takes it instead of reading the segment (it refused the
 * hint, whose first sequence skipped the VOID, at every open and wrote it again). */
Test(kv_faults, a_segment_that_starts_with_a_void_record_keeps_its_hint_across_a_reopen)
{
	auraio_engine_t *e = test_faulty_engine();
	aurakv_segment_stats_t segs[64];
	aurakv_options_t o = kv_opts(NULL);
	aurawal_iter_t *it;
	aurawal_record_t rec;
	int unusable = 0;
	size_t n = 0;
	aurakv_t *db;

	o.engine = e;
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	log_idle(db);
	test_fault_error(e, AURAIO_FAULT_OP_WRITE, 0, 0, ENOSPC);
	cr_assert_eq(put_w(db, NKEYS, 1, AURAKV_SYNC), -ENOSPC);
	auraio_fault_clear(e);
	for (uint64_t k = 0; k < 6000; k++) /* more than a 1 MiB segment */
		cr_assert_eq(put_w(db, k, 1, 0), 0);
	cr_assert_eq(aurakv_compact(db), 0, "a background pass: the hints are written");
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	cr_assert_geq(n, 2);
	cr_assert(segs[0].sealed && segs[0].has_hint);
	cr_assert_eq(
	    aurawal_iter_open(db->db->wal, (aurawal_loc_t){ .segment = segs[0].number }, &it), 0);
	cr_assert_eq(aurawal_iter_next_record(it, &rec), 1);
	cr_assert_eq(rec.type, AURAWAL_RECORD_VOID, "the segment starts with the refused put");
	aurawal_iter_close(it);
	cr_assert_eq(aurakv_close(db), 0);
	auraio_destroy(e);

	o = kv_opts(NULL);
	o.reporter = count_unusable;
	o.reporter_arg = &unusable;
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(unusable, 0, "no hint file was refused at open");
	cr_assert_eq(aurakv_get_segment_stats(db, segs, 64, &n), 0);
	cr_assert(segs[0].has_hint);
	for (uint64_t k = 0; k < 6000; k += 7)
		expect(db, k, 1);
	expect(db, NKEYS, 0);
	cr_assert_eq(aurakv_close(db), 0);
}
