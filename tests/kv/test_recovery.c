/* SPDX-License-Identifier: MIT */
/*
 * Opening a store again: hint files used, and damaged or missing ones replaced by a
 * segment read; damaged records found by get and by verify; the lock file.
 */
#include <criterion/criterion.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_db.h"
#include "kv_test.h"
#include "wal_format.h"

#define N      10000
#define SPREAD 600

static char *dir;
static struct kv_reports reps;

static void setup(void)
{
	memset(&reps, 0, sizeof(reps));
	dir = kv_temp_dir();
}

static void teardown(void)
{
	kv_rm_tree(dir);
	free(dir);
}

TestSuite(kv_recovery, .init = setup, .fini = teardown, .timeout = 120);

/* N keys, write 1, over several 1 MiB segments; the store closed (hints written). */
static void fill(aurakv_options_t *o)
{
	aurakv_t *db = kv_open_ok(dir, o);
	uint8_t v[SPREAD + 16];
	char k[32];

	for (uint64_t i = 0; i < N; i++) {
		size_t len = kv_value_len(i, 1, SPREAD);

		kv_value(v, len, i, 1);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	cr_assert_eq(aurakv_compact(db), 0); /* the background pass has written the hints */
	cr_assert_eq(aurakv_close(db), 0);
}

static void check_all(aurakv_t *db)
{
	kv_check_keys(db, N, 1, 1, SPREAD);
}

/* The sealed segments and whether each has a hint. */
static size_t sealed_segments(aurakv_t *db, aurakv_segment_stats_t *out, size_t max)
{
	aurakv_segment_stats_t all[64];
	size_t n = 0, k = 0;

	cr_assert_eq(aurakv_get_segment_stats(db, all, 64, &n), 0);
	for (size_t i = 0; i < n && i < 64; i++)
		if (all[i].sealed && k < max)
			out[k++] = all[i];
	return k;
}

Test(kv_recovery, reopen_reads_hint_files_for_sealed_segments)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	aurakv_t *db;
	size_t n;

	fill(&o);
	db = kv_open_ok(dir, &o);
	n = sealed_segments(db, segs, 64);
	cr_assert_geq(n, 3, "the data spans several segments");
	for (size_t i = 0; i < n; i++)
		cr_assert(segs[i].has_hint, "segment %llu has a hint file",
			  (unsigned long long) segs[i].number);
	cr_assert_eq(reps.info, 0, "no hint was refused: %s", reps.last);
	check_all(db);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_verify(dir, &o, NULL), 0);
}

static void damage_then_reopen(bool remove_it, uint64_t where)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	aurakv_verify_result_t res;
	char path[600];
	aurakv_t *db;
	struct stat st;

	fill(&o);
	db = kv_open_ok(dir, &o);
	cr_assert_geq(sealed_segments(db, segs, 64), 2);
	cr_assert_eq(aurakv_close(db), 0);
	kv_hint_file(path, sizeof(path), dir, segs[1].number);
	cr_assert_eq(stat(path, &st), 0, "hint of segment %llu exists",
		     (unsigned long long) segs[1].number);
	if (remove_it) {
		cr_assert_eq(unlink(path), 0);
	} else {
		cr_assert_eq(aurakv_verify(dir, &o, &res), 0);
		kv_flip_byte(path,
			     where < (uint64_t) st.st_size ? where : (uint64_t) st.st_size - 1);
		cr_assert_eq(aurakv_verify(dir, &o, &res), AURAKV_ECORRUPT,
			     "verify finds the damaged hint");
		cr_assert_eq(res.bad_hints, 1);
		cr_assert_eq(res.corrupt, 0, "the log itself is intact");
	}
	reps.info = 0;
	db = kv_open_ok(dir, &o);
	if (!remove_it)
		cr_assert_geq(reps.info, 1, "the damaged hint is reported: %s", reps.last);
	check_all(db);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(stat(path, &st), 0, "the hint file was written again");
	cr_assert_eq(aurakv_verify(dir, &o, &res), 0, "and it is valid");
	cr_assert_geq(res.hints, 2);
}

Test(kv_recovery, a_damaged_hint_header_is_ignored_and_rewritten)
{
	damage_then_reopen(false, 20);
}

Test(kv_recovery, a_damaged_hint_block_mid_file_is_ignored_and_rewritten)
{
	damage_then_reopen(false, 4096 * 2 + 100);
}

Test(kv_recovery, a_damaged_fence_block_is_found_by_verify)
{
	damage_then_reopen(false, UINT64_MAX); /* the last byte: the last fence's checksum */
}

Test(kv_recovery, a_missing_hint_file_means_reading_the_segment)
{
	damage_then_reopen(true, 0);
}

/* Segment `seg`'s hint header field at `field` (HH_*, 8 bytes) moved by `delta`, its
 * checksum made valid again: a header that checks out but disagrees with its segment. */
static void hint_header_moved(uint64_t seg, unsigned field, int64_t delta)
{
	uint8_t h[KV_HINT_BLOCK];
	char path[600];
	int fd;

	kv_hint_file(path, sizeof(path), dir, seg);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(pread(fd, h, sizeof(h), 0), (ssize_t) sizeof(h));
	kv_put_le64(h + field, kv_get_le64(h + field) + (uint64_t) delta);
	kv_put_le64(h + HH_CHECKSUM, XXH3_64bits_withSeed(h, HH_CHECKSUM, seg));
	cr_assert_eq(pwrite(fd, h, sizeof(h), 0), (ssize_t) sizeof(h));
	close(fd);
}

/* A filled, closed store that verifies clean (its counts in *clean); returns the number
 * of sealed segment `k` (0 = the oldest), which has a hint file. */
static uint64_t clean_store_hinted_segment(aurakv_options_t *o, int k,
					   aurakv_verify_result_t *clean)
{
	aurakv_segment_stats_t segs[64];
	aurakv_t *db;

	fill(o);
	db = kv_open_ok(dir, o);
	cr_assert_geq(sealed_segments(db, segs, 64), 2);
	cr_assert(segs[k].has_hint);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_verify(dir, o, clean), 0);
	return segs[k].number;
}

/* A hint whose header's total (log bytes of the segment: open's space accounting) or
 * max_version (open's next version) disagrees with its segment, the entries all
 * matching: verify compared only the entries, and passed it while open trusts the
 * header. It is a bad hint file. */
static void hint_header_disagrees(unsigned field, int64_t delta)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_verify_result_t res;

	hint_header_moved(clean_store_hinted_segment(&o, 1, &res), field, delta);
	reps.corruption = 0;
	cr_assert_eq(aurakv_verify(dir, &o, &res), AURAKV_ECORRUPT, "verify passed the hint");
	cr_assert_eq(res.bad_hints, 1);
	cr_assert_eq(res.corrupt, 0, "the log itself is intact");
	cr_assert_eq(reps.corruption, 1, "said once: %s", reps.last);
}

Test(kv_recovery, verify_finds_a_hint_whose_header_total_disagrees_with_its_segment)
{
	hint_header_disagrees(HH_TOTAL, 4096);
}

Test(kv_recovery, verify_finds_a_hint_whose_header_max_version_disagrees_with_its_segment)
{
	hint_header_disagrees(HH_MAX_VERSION, -1);
}

/* A hint file that cannot be opened as one (here: a directory in its place) is a bad
 * hint file to verify - open reads the segment instead - not an error that stops the
 * check (verify returned -EISDIR and checked nothing after it). */
Test(kv_recovery, verify_reports_a_hint_that_is_a_directory_as_a_bad_hint_and_goes_on)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_verify_result_t res, clean;
	char path[600];
	aurakv_t *db;

	kv_hint_file(path, sizeof(path), dir, clean_store_hinted_segment(&o, 0, &clean));
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(mkdir(path, 0755), 0);
	reps.corruption = 0;
	cr_assert_eq(aurakv_verify(dir, &o, &res), AURAKV_ECORRUPT);
	cr_assert_eq(res.bad_hints, 1);
	cr_assert_eq(res.corrupt, 0, "the log itself is intact");
	cr_assert_eq(res.records, clean.records, "every record was still checked");
	cr_assert_eq(reps.corruption, 1, "said once: %s", reps.last);
	db = kv_open_ok(dir, &o); /* open reads the segment instead */
	cr_assert_eq(aurakv_close(db), 0);
}

Test(kv_recovery, a_damaged_record_is_a_corruption_error_and_verify_reports_it)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_verify_result_t res;
	struct kv_ref ref;
	char path[600], k[32];
	size_t klen = kv_key(k, 10);
	aurakv_t *db;
	void *v;
	size_t len;

	fill(&o);
	o.cache_size = 0; /* every get reads the device */
	db = kv_open_ok(dir, &o);
	cr_assert_eq(kv_index_get(db->db->ix, k, klen, &ref), 0);
	kv_segment_path(path, sizeof(path), dir, ref.segment);
	/* A byte in the middle of the value (after the 32-byte record header). */
	kv_flip_byte(path, ref.offset + 32 + ref.size - 5);
	cr_assert_eq(aurakv_get(db, k, klen, &v, &len), AURAKV_ECORRUPT);
	cr_assert_geq(reps.corruption, 1, "the damage is reported");
	cr_assert(strstr(reps.last, "segment"), "the report names where: %s", reps.last);
	kv_key(k, 11);
	cr_assert_eq(aurakv_get(db, k, klen, &v, &len), 0, "other keys still read");
	aurakv_free(v);
	cr_assert_eq(aurakv_close(db), 0);
	reps.corruption = 0;
	cr_assert_eq(aurakv_verify(dir, &o, &res), AURAKV_ECORRUPT);
	cr_assert_geq(res.corrupt, 1);
	cr_assert_geq(reps.corruption, 1);
	cr_assert_gt(res.records, N / 2, "verify read the log: %llu records",
		     (unsigned long long) res.records);
}

Test(kv_recovery, verify_of_an_intact_store_finds_nothing)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_verify_result_t res;

	fill(&o);
	cr_assert_eq(aurakv_verify(dir, &o, &res), 0);
	cr_assert_geq(res.records, N);
	cr_assert_geq(res.segments, 3);
	cr_assert_geq(res.hints, 2);
	cr_assert_eq(res.corrupt + res.bad_hints, 0);
	cr_assert_eq(reps.corruption, 0);
}

Test(kv_recovery, verify_refuses_a_store_open_elsewhere_and_a_missing_one)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_t *db = kv_open_ok(dir, &o);
	char missing[600];

	cr_assert_eq(aurakv_verify(dir, &o, NULL), AURAKV_ELOCKED);
	cr_assert_eq(aurakv_close(db), 0);
	snprintf(missing, sizeof(missing), "%s/none", dir);
	cr_assert_eq(aurakv_verify(missing, &o, NULL), -ENOENT);
	cr_assert_eq(aurakv_verify(NULL, &o, NULL), -EINVAL);
}

Test(kv_recovery, verify_of_a_directory_that_is_not_a_store_is_enoent_and_changes_nothing)
{
	aurakv_options_t o = kv_opts(&reps);
	char lock[600];
	DIR *d;
	struct dirent *e;
	int entries = 0;

	cr_assert_eq(aurakv_verify(dir, &o, NULL), -ENOENT);
	snprintf(lock, sizeof(lock), "%s/LOCK", dir);
	cr_assert_neq(access(lock, F_OK), 0, "verify created %s", lock);
	cr_assert_not_null(d = opendir(dir));
	while ((e = readdir(d)))
		entries += e->d_name[0] != '.';
	closedir(d);
	cr_assert_eq(entries, 0, "the directory is left as it was: empty");
}

Test(kv_recovery, stale_hint_files_are_swept_at_open)
{
	aurakv_options_t o = kv_opts(&reps);
	char stale[600], tmp[600];
	aurakv_t *db;
	FILE *f;

	fill(&o);
	kv_hint_file(stale, sizeof(stale), dir, 9999);
	snprintf(tmp, sizeof(tmp), "%s/hints/%016llx.tmp", dir, 3ull);
	cr_assert_not_null(f = fopen(stale, "w"));
	fclose(f);
	cr_assert_not_null(f = fopen(tmp, "w"));
	fclose(f);
	db = kv_open_ok(dir, &o);
	cr_assert_neq(access(stale, F_OK), 0, "a hint of a segment not in the log is deleted");
	cr_assert_neq(access(tmp, F_OK), 0, "a half-written hint is deleted");
	check_all(db);
	cr_assert_eq(aurakv_close(db), 0);
}

/* A sealed segment is read at open when it has no usable hint; damage in it fails the
 * open (strict recovery, as if the log were scanned) - and must be said, not only
 * returned: the caller has no other way to learn which segment, nor where. */
Test(kv_recovery, a_damaged_segment_read_at_open_fails_it_and_is_reported)
{
	aurakv_options_t o = kv_opts(&reps);
	struct kv_ref ref;
	char path[600], k[32], where[64];
	aurakv_t *db;

	fill(&o);
	db = kv_open_ok(dir, &o);
	cr_assert_eq(kv_index_get(db->db->ix, k, kv_key(k, 10), &ref), 0);
	cr_assert_eq(aurakv_close(db), 0);
	kv_segment_path(path, sizeof(path), dir, ref.segment);
	kv_flip_byte(path, ref.offset + 32 + ref.size - 5);
	kv_hint_file(path, sizeof(path), dir, ref.segment);
	cr_assert_eq(unlink(path), 0, "the segment has no hint: open reads it");
	reps.corruption = 0;
	db = NULL;
	cr_assert_eq(aurakv_open(dir, &o, &db), AURAKV_ECORRUPT);
	cr_assert_null(db);
	cr_assert_geq(reps.corruption, 1, "the damage is reported");
	snprintf(where, sizeof(where), "segment %llu offset %u", (unsigned long long) ref.segment,
		 ref.offset);
	cr_assert(strstr(reps.last, where), "the report names the damaged record (%s): %s", where,
		  reps.last);
}

/* The background thread reads a sealed segment to write its hint: damage it finds there
 * is corruption, and said as such (information is dropped by the default reporter). */
Test(kv_recovery, a_damaged_segment_found_writing_its_hint_is_reported_as_corruption)
{
	aurakv_options_t o = kv_opts(&reps);
	struct kv_ref ref;
	char path[600], k[32], where[64];
	aurakv_t *db;

	o.write_hints = false; /* sealed segments without hints, until the flag is set below */
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	for (uint64_t i = 0; i < N; i++) {
		uint8_t v[SPREAD + 16];
		size_t len = kv_value_len(i, 1, SPREAD);

		kv_value(v, len, i, 1);
		cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
	}
	cr_assert_eq(aurakv_sync(db), 0);
	cr_assert_eq(kv_index_get(db->db->ix, k, kv_key(k, 10), &ref), 0);
	kv_segment_path(path, sizeof(path), dir, ref.segment);
	kv_flip_byte(path, ref.offset + 32 + ref.size - 5);
	/* Set under bg.lock, which the background thread takes before each pass that
	 * reads it (compact signals the next one). */
	pthread_mutex_lock(&db->db->bg.lock);
	db->db->opts.write_hints = true;
	pthread_mutex_unlock(&db->db->bg.lock);
	cr_assert_eq(aurakv_compact(db), 0);
	cr_assert_geq(reps.corruption, 1, "the damage is reported as corruption: %s", reps.last);
	snprintf(where, sizeof(where), "segment %llu offset %u", (unsigned long long) ref.segment,
		 ref.offset);
	cr_assert(strstr(reps.last, where), "the report names the damaged record (%s): %s", where,
		  reps.last);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Open deletes only the files it names itself (N.tmp, N.hint of a segment gone): a file
 * someone else put in hints/ is not the store's to delete. */
Test(kv_recovery, foreign_files_in_the_hints_directory_are_left_alone)
{
	static const char *const names[] = { "cafe.txt", "1.bak", "0000000000009999.hint.bak",
					     "abc.tmp", "0000000000009999.hintx" };
	aurakv_options_t o = kv_opts(&reps);
	char path[600];
	aurakv_t *db;
	FILE *f;

	fill(&o);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/hints/%s", dir, names[i]);
		cr_assert_not_null(f = fopen(path, "w"));
		fclose(f);
	}
	db = kv_open_ok(dir, &o);
	check_all(db);
	cr_assert_eq(aurakv_close(db), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/hints/%s", dir, names[i]);
		cr_assert_eq(access(path, F_OK), 0, "%s is still there", names[i]);
	}
}

/* A hint whose every checksum holds can still be wrong (written by a faulty version, or
 * put there by hand): an entry naming bytes outside its segment is as damaged as a
 * failed checksum, and the segment is read instead. */
Test(kv_recovery, a_hint_entry_outside_its_segment_makes_open_read_the_segment)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	struct kv_seg_summary sum;
	char k[32];
	size_t klen;
	uint64_t key;
	aurakv_t *db;
	void *v;
	size_t len;
	int rc;

	fill(&o);
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	cr_assert_geq(sealed_segments(db, segs, 64), 2);
	cr_assert_eq(kv_seg_summarize(db->db->wal, segs[1].number, &sum), 0);
	cr_assert_geq(sum.n, 2);
	klen = sum.entries[1].klen;
	memcpy(k, sum.entries[1].key, klen);
	sum.entries[1].ref.offset = (uint32_t) db->db->seg_bytes; /* past the segment's end */
	cr_assert_eq(kv_hint_write(db->db, &sum, segs[1].number), 0);
	kv_seg_summary_free(&sum);
	cr_assert_eq(aurakv_close(db), 0);
	reps.info = 0;
	db = kv_open_ok(dir, &o);
	cr_assert_geq(reps.info, 1, "the hint is refused, and said: %s", reps.last);
	rc = aurakv_get(db, k, klen, &v, &len);
	cr_assert_eq(rc, 0, "%.*s: %s", (int) klen, k, aurakv_strerror(rc));
	cr_assert_eq(sscanf(k, "k%08llu", (unsigned long long *) &key), 1);
	cr_assert(kv_value_is(v, len, key, 1, SPREAD));
	aurakv_free(v);
	check_all(db);
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_verify(dir, &o, NULL), 0, "the hint was written again, right");
}

/* An index entry the log refuses as no record's place (here from a hint whose checksums
 * hold but whose offset is inside the segment's header block) is corruption at get:
 * reported, never a bare -EINVAL the caller would take for its own mistake. */
Test(kv_recovery, a_get_of_a_location_the_log_refuses_is_reported_corruption)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	struct kv_seg_summary sum;
	char k[32];
	size_t klen;
	aurakv_t *db;
	void *v;
	size_t len;

	fill(&o);
	o.background_gc = false;
	o.cache_size = 0;
	db = kv_open_ok(dir, &o);
	cr_assert_geq(sealed_segments(db, segs, 64), 2);
	cr_assert_eq(kv_seg_summarize(db->db->wal, segs[1].number, &sum), 0);
	klen = sum.entries[1].klen;
	memcpy(k, sum.entries[1].key, klen);
	sum.entries[1].ref.offset = 8;
	cr_assert_eq(kv_hint_write(db->db, &sum, segs[1].number), 0);
	kv_seg_summary_free(&sum);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	reps.corruption = 0;
	cr_assert_eq(aurakv_get(db, k, klen, &v, &len), AURAKV_ECORRUPT);
	cr_assert_geq(reps.corruption, 1, "and reported");
	cr_assert_eq(aurakv_close(db), 0);
	cr_assert_eq(aurakv_verify(dir, &o, NULL), AURAKV_ECORRUPT, "verify finds the hint wrong");
}

/* A hint cut short at a crash-like length (empty, inside the header, inside the data):
 * the file size disagrees with the header, so the segment is read instead. */
Test(kv_recovery, a_truncated_or_empty_hint_means_reading_the_segment)
{
	static const off_t cuts[] = { 0, 4095, 4096 + 100 };
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	char path[600];
	aurakv_t *db;

	fill(&o);
	db = kv_open_ok(dir, &o);
	cr_assert_geq(sealed_segments(db, segs, 64), 2);
	cr_assert_eq(aurakv_close(db), 0);
	kv_hint_file(path, sizeof(path), dir, segs[1].number);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		cr_assert_eq(truncate(path, cuts[i]), 0);
		reps.info = 0;
		db = kv_open_ok(dir, &o);
		cr_assert_geq(reps.info, 1, "cut at %lld: reported", (long long) cuts[i]);
		check_all(db);
		cr_assert_eq(aurakv_close(db), 0); /* and the hint was written again */
	}
}

/* Hints carry tombstones and each segment's newest record: after a reopen from hints, a
 * key deleted in a later segment stays deleted and an overwritten one has its newest
 * value. */
Test(kv_recovery, deletes_and_overwrites_in_later_segments_survive_a_reopen_from_hints)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_segment_stats_t segs[64];
	size_t n;
	uint8_t v[SPREAD + 16];
	aurakv_t *db;
	char k[32];

	o.background_gc = false; /* every segment stays: the tombstones too */
	db = kv_open_ok(dir, &o);
	for (uint64_t w = 1; w <= 2; w++)
		for (uint64_t i = 0; i < N / 2; i++) {
			size_t len = kv_value_len(i, w, SPREAD);

			kv_value(v, len, i, w);
			if (w == 2 &&
			    i % 2 == 0) /* pass 2: even keys deleted, odd ones rewritten */
				cr_assert_eq(aurakv_delete(db, k, kv_key(k, i), 0), 0);
			else
				cr_assert_eq(aurakv_put(db, k, kv_key(k, i), v, len, 0), 0);
		}
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o); /* writes the hints the background thread had not */
	cr_assert_eq(aurakv_close(db), 0);
	reps.info = 0;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(reps.info, 0, "every sealed segment came from its hint: %s", reps.last);
	cr_assert_geq(n = sealed_segments(db, segs, 64), 2, "puts and deletes span segments");
	for (size_t i = 0; i < n; i++)
		cr_assert(segs[i].has_hint);
	for (uint64_t i = 0; i < N / 2; i++) {
		void *val = NULL;
		size_t len = 0;
		int rc = aurakv_get(db, k, kv_key(k, i), &val, &len);

		if (i % 2 == 0) {
			cr_assert_eq(rc, AURAKV_ENOTFOUND, "key %llu stays deleted",
				     (unsigned long long) i);
			continue;
		}
		cr_assert_eq(rc, 0);
		cr_assert(kv_value_is(val, len, i, 2, SPREAD), "key %llu has its newest value",
			  (unsigned long long) i);
		aurakv_free(val);
	}
	cr_assert_eq(aurakv_close(db), 0);
}

struct async_result {
	int calls, status;
};

static void on_async(void *arg, int status, const void *val, size_t vlen)
{
	struct async_result *r = arg;

	(void) val;
	(void) vlen;
	r->calls++;
	r->status = status;
}

/* An index entry naming a segment the log does not have (here one that never existed:
 * the same answer, -ENOENT, as a segment GC released) is looked up again a bounded
 * number of times, then it is corruption - for the asynchronous get as for the
 * synchronous one, and reported by both (the async get gave its callback -ENOENT). */
Test(kv_recovery, a_get_whose_segment_stays_gone_is_corruption_sync_and_async)
{
	aurakv_options_t o = kv_opts(&reps);
	struct async_result ar = { 0, 1 };
	struct kv_ref ref, gone;
	aurakv_t *db;
	void *v;
	size_t len;

	o.background_gc = false;
	o.cache_size = 0; /* every get reads the log */
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "key", 3, "value", 5, 0), 0);
	cr_assert_eq(kv_index_get(db->db->ix, "key", 3, &ref), 0);
	gone = ref;
	gone.segment = 60000; /* never in this log */
	cr_assert_eq(kv_index_cas(db->db->ix, "key", 3, &ref, &gone), 1);
	cr_assert_eq(aurakv_get(db, "key", 3, &v, &len), AURAKV_ECORRUPT);
	cr_assert_eq(reps.corruption, 1, "reported: %s", reps.last);
	/* The read is refused before any I/O: the callback runs inside the call. */
	cr_assert_eq(aurakv_get_async(db, "key", 3, on_async, &ar), 0);
	cr_assert_eq(ar.calls, 1);
	cr_assert_eq(ar.status, AURAKV_ECORRUPT, "async: %s", aurakv_strerror(ar.status));
	cr_assert_eq(reps.corruption, 2, "reported: %s", reps.last);
	cr_assert_eq(kv_index_cas(db->db->ix, "key", 3, &gone, &ref), 1);
	cr_assert_eq(aurakv_close(db), 0);
}

/* Zero `len` bytes of the file at `path` from `off`. */
static void zero_range(const char *path, uint64_t off, size_t len)
{
	uint8_t *z = calloc(1, len);
	int fd = open(path, O_RDWR);

	cr_assert_not_null(z);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(pwrite(fd, z, len, (off_t) off), (ssize_t) len);
	fsync(fd);
	close(fd);
	free(z);
}

/* Segment `seg` as a crash leaves it when its last write never reached the disk: no
 * summary in its header block, and nothing after its first record (the SEAL or SYNC
 * mark written after it is gone). docs/wal_format.md, "Segment summary", "Records". */
static void keep_only_first_record(uint64_t seg)
{
	char path[600];
	uint8_t hdr[WAL_REC_HEADER];
	uint64_t end;
	int fd;

	kv_segment_path(path, sizeof(path), dir, seg);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), WAL_HEADER_BLOCK), (ssize_t) sizeof(hdr));
	close(fd);
	end = WAL_HEADER_BLOCK + wal_rec_size(get_le32(hdr + RH_LENGTH));
	zero_range(path, SM_MARKER, SM_END - SM_MARKER);
	zero_range(path, end, 2 * WAL_BLOCK);
}

/* A crash after a rollover whose flush was never made: the segment before it lost its
 * SEAL, the one after it holds nothing acknowledged as durable. Open drops the later
 * one, as information (docs/wal_format.md, "Recovery rule": AURAWAL_REPORT_DROPPED);
 * the store passed the drop on as AURAKV_REPORT_CORRUPTION (to stderr by default), and
 * aurakv_verify() counted it and returned AURAKV_ECORRUPT for a store that opens with
 * everything acknowledged intact. */
Test(kv_recovery, a_segment_dropped_after_an_unflushed_rollover_is_information_not_corruption)
{
	aurakv_options_t o = kv_opts(&reps);
	aurakv_verify_result_t res;
	size_t len = 600000, vlen;
	uint8_t *v = malloc(len);
	void *got = NULL;
	char seg3[600];
	aurakv_t *db;

	cr_assert_not_null(v);
	o.background_gc = false;
	o.write_hints = false;
	kv_value(v, len, 1, 1);
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "a", 1, v, len, 0), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "b", 1, v, len, 0), 0); /* rolls over: segment 2 */
	cr_assert_eq(aurakv_close(db), 0);
	keep_only_first_record(1);
	keep_only_first_record(2);
	kv_segment_path(seg3, sizeof(seg3), dir, 3); /* prepared after the rollover */
	cr_assert(unlink(seg3) == 0 || errno == ENOENT);

	cr_assert_eq(aurakv_verify(dir, &o, &res), 0, "verify: %s", reps.last);
	cr_assert_eq(res.corrupt, 0);
	cr_assert_eq(reps.corruption, 0, "%s", reps.last);
	db = kv_open_ok(dir, &o);
	cr_assert_eq(reps.corruption, 0, "%s", reps.last);
	cr_assert(strstr(reps.last, "rollover"), "the drop is said, as information: %s", reps.last);
	cr_assert_eq(aurakv_get(db, "a", 1, &got, &vlen), 0, "the durable put is there");
	cr_assert(vlen == len && memcmp(got, v, len) == 0);
	aurakv_free(got);
	cr_assert_eq(aurakv_get(db, "b", 1, &got, &vlen), AURAKV_ENOTFOUND);
	cr_assert_eq(aurakv_close(db), 0);
	free(v);
}

/* A store closed cleanly, its last write an overwrite of "key" in the active segment:
 * where that record is (read before the close). */
static struct kv_ref closed_with_an_overwrite_last(aurakv_options_t *o)
{
	struct kv_ref ref;
	aurakv_t *db;

	o->background_gc = false;
	db = kv_open_ok(dir, o);
	cr_assert_eq(aurakv_put(db, "key", 3, "old value", 9, 0), 0);
	cr_assert_eq(aurakv_put(db, "other", 5, "x", 1, 0), 0);
	cr_assert_eq(aurakv_put(db, "key", 3, "new value", 9, 0), 0);
	cr_assert_eq(kv_index_get(db->db->ix, "key", 3, &ref), 0);
	cr_assert_eq(aurakv_close(db), 0);
	return ref;
}

/* After a clean close, the close block in the last segment's header says where its
 * records end: every one of them was durable. A record before that end that is cut off
 * (the file truncated) or fails its checksum is damage, not a torn tail of a crash: open
 * took it for one, dropped it as information and served the key's previous value. */
static void last_record_damaged(bool truncate_it)
{
	aurakv_options_t o = kv_opts(&reps);
	struct kv_ref ref = closed_with_an_overwrite_last(&o);
	aurakv_verify_result_t res;
	char path[600];
	aurakv_t *db = NULL;
	void *v = NULL;
	size_t len;
	int rc;

	kv_segment_path(path, sizeof(path), dir, ref.segment);
	if (truncate_it)
		cr_assert_eq(truncate(path, (off_t) ref.offset + 40), 0);
	else
		kv_flip_byte(path, ref.offset + 32 + ref.size - 2); /* in "new value" */
	cr_assert_eq(aurakv_verify(dir, &o, &res), AURAKV_ECORRUPT, "verify: %s", reps.last);
	cr_assert_geq(res.corrupt, 1);
	reps.corruption = 0;
	rc = aurakv_open(dir, &o, &db);
	if (rc == 0) {
		rc = aurakv_get(db, "key", 3, &v, &len);
		cr_assert(rc != 0 || len != 9 || memcmp(v, "old value", 9) != 0,
			  "the overwritten value came back: %s", reps.last);
		aurakv_free(v);
		aurakv_close(db);
	}
	cr_assert_eq(rc, AURAKV_ECORRUPT, "%s", aurakv_strerror(rc));
	cr_assert_geq(reps.corruption, 1, "reported");
}

Test(kv_recovery, a_truncated_last_segment_of_a_closed_store_is_corruption_not_a_torn_tail)
{
	last_record_damaged(true);
}

Test(kv_recovery, a_damaged_last_record_of_a_closed_store_is_corruption_not_a_torn_tail)
{
	last_record_damaged(false);
}

/* The last segment holding records of a closed store cut inside its header block: its
 * close block went with the header. The log took it for a segment whose rollover a crash
 * never flushed and dropped it with its records, as information: the put was lost without
 * a word. A crash never leaves a segment file short: it is corruption. */
Test(kv_recovery, a_last_segment_cut_inside_its_header_is_corruption_not_a_lost_rollover)
{
	aurakv_options_t o = kv_opts(&reps);
	struct kv_ref ref;
	char path[600];
	aurakv_t *db = NULL;
	void *v = NULL;
	size_t len;
	int rc;

	fill(&o);
	o.background_gc = false;
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_put(db, "key", 3, "new value", 9, 0), 0);
	cr_assert_eq(kv_index_get(db->db->ix, "key", 3, &ref), 0);
	cr_assert_gt(ref.segment, 1, "not the first segment (whose bad header fails anyway)");
	cr_assert_eq(aurakv_close(db), 0);
	kv_segment_path(path, sizeof(path), dir, ref.segment);
	cr_assert_eq(truncate(path, 100), 0);
	cr_assert_eq(aurakv_verify(dir, &o, NULL), AURAKV_ECORRUPT, "verify: %s", reps.last);
	reps.corruption = 0;
	db = NULL;
	rc = aurakv_open(dir, &o, &db);
	if (rc == 0) {
		rc = aurakv_get(db, "key", 3, &v, &len);
		aurakv_free(v);
		aurakv_close(db);
	}
	cr_assert_eq(rc, AURAKV_ECORRUPT, "%s: %s", aurakv_strerror(rc), reps.last);
	cr_assert_geq(reps.corruption, 1, "reported");
}
