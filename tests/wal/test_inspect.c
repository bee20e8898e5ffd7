/* SPDX-License-Identifier: MIT */
/*
 * Inspect mode (AURAWAL_RECOVER_INSPECT, what waldump uses on a possibly live log) is
 * read-only: opening, iterating and closing must leave every file of the directory as
 * it was - spares included, which a live owner is about to use.
 */
#include <dirent.h>
#include <xxhash.h>

#include "wal_test.h"

WAL_DIR_SUITE(wal_inspect);

/* One line per file: name, size, modification time, inode, and a hash of its bytes. */
static char *snapshot(void)
{
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap), **names = NULL;
	size_t n = 0;
	struct dirent *e;
	DIR *d = opendir(dir);

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			names = realloc(names, sizeof(*names) * (n + 1));
			names[n++] = strdup(e->d_name);
		}
	closedir(d);
	for (size_t i = 0; i < n; i++) /* readdir order is not stable: sort by name */
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(names[j], names[i]) < 0) {
				char *t = names[i];

				names[i] = names[j];
				names[j] = t;
			}
	for (size_t i = 0; i < n; i++) {
		char path[512];
		struct stat st;
		uint8_t *bytes;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
		bytes = malloc((size_t) st.st_size + 1);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0);
		cr_assert_eq(pread(fd, bytes, (size_t) st.st_size, 0), st.st_size);
		close(fd);
		len += (size_t) snprintf(
		    out + len, cap - len, "%s %lld %lld.%09ld %llu %016llx\n", names[i],
		    (long long) st.st_size, (long long) st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		    (unsigned long long) st.st_ino,
		    (unsigned long long) XXH3_64bits(bytes, (size_t) st.st_size));
		free(bytes);
		free(names[i]);
	}
	free(names);
	return out;
}

/* The directory is byte for byte what `before` (a snapshot()) says; frees it. */
static void assert_unchanged(char *before)
{
	char *after = snapshot();

	cr_assert_str_eq(after, before,
			 "inspect mode changed the directory:\nbefore:\n%s\nafter:\n%s", before,
			 after);
	free(before);
	free(after);
}

static void make_file(const char *name, size_t size)
{
	char path[512];
	uint8_t *b = calloc(1, size);
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, b, size), (ssize_t) size);
	close(fd);
	free(b);
}

Test(wal_inspect, opening_in_inspect_mode_leaves_the_directory_untouched)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 };
	aurawal_iter_t *it;
	char *before;
	int n = 0, rc;

	for (uint64_t i = 0; loc.segment < 4; i++)
		append_i(log, i, 3000, 0, &loc);
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_geq(aurawal_release_before(log, loc), 1); /* may leave a recycled spare */
	cr_assert_eq(aurawal_close(log), 0);
	/* spares as an owner leaves them: a recycled one, one being built */
	make_file("spare-00000000000000aa.seg", SMALL_SEGMENT);
	make_file("spare-new-00000000000000ab.seg", 4096);
	before = snapshot();

	o.recovery = AURAWAL_RECOVER_INSPECT;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, NULL, NULL, NULL, NULL)) == 1)
		n++;
	cr_assert_eq(rc, 0);
	cr_assert_gt(n, 0);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_close(log), 0);

	assert_unchanged(before);
}

static void append_cb_never(void *arg, int status, aurawal_loc_t loc, uint64_t seq)
{
	(void) arg;
	(void) status;
	(void) loc;
	(void) seq;
	cr_assert_fail("an append refused by inspect mode ran its callback");
}

Test(wal_inspect, every_mutating_call_is_refused_with_erofs_and_writes_nothing)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_loc_t loc = { 0 }, first;
	char c = 'x', *before;
	struct iovec one = { &c, 1 };
	aurawal_segment_info_t segs[8];
	size_t n = 0;

	append_i(log, 0, 100, AURAWAL_DURABLE, &first);
	for (uint64_t i = 1; loc.segment < 3; i++)
		append_i(log, i, 3000, 0, &loc);
	cr_assert_eq(aurawal_close(log), 0);
	before = snapshot();

	o.recovery = AURAWAL_RECOVER_INSPECT;
	log = wal_open_ok(dir, &o);
	cr_assert_eq(aurawal_append(log, &one, 1, 0, NULL, NULL), -EROFS);
	cr_assert_eq(aurawal_append(log, &one, 1, AURAWAL_DURABLE, NULL, NULL), -EROFS);
	cr_assert_eq(aurawal_append(log, NULL, 0, 0, NULL, NULL), -EROFS);
	cr_assert_eq(aurawal_append_async(log, &one, 1, 0, append_cb_never, NULL), -EROFS);
	cr_assert_eq(aurawal_release_before(log, loc), -EROFS);
	cr_assert_eq(aurawal_release_segment(log, 1), -EROFS);
	/* nothing was appended through this handle: nothing to write or make durable */
	cr_assert_eq(aurawal_sync(log), 0);
	cr_assert_eq(aurawal_flush(log), 0);
	cr_assert_eq(aurawal_poll(log, 0), 0);
	cr_assert_eq(aurawal_list_segments(log, segs, 8, &n), 0);
	cr_assert_eq(n, 3);
	read_check(log, first, 0, 1);
	cr_assert_eq(aurawal_close(log), 0);

	assert_unchanged(before);
}
