/* SPDX-License-Identifier: MIT */
/*
 * segfiles.c - every segment file in a log's directory, as it is on disk: its name,
 * size and header state, and whether the log read it. The library lists only the
 * segments it could read; after a bad header (a file truncated to 0, a damaged block 0)
 * it stops there, so without this table the later files would not be seen at all.
 *
 * A header is checked as docs/wal_format.md ("Segment header") specifies: magic
 * AURAWAL1, version 1, the XXH3-64 of bytes 0..47 (seed 0) at 48, the segment number of
 * the file name, block size 4096, and a segment size not below the file's. The layout
 * is read here from that document, not from wal/src (tools use public headers only).
 *
 * Must never: write to the log's files (opened O_RDONLY).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "segfiles.h"

#define HDR_BYTES 56 /* magic .. checksum: what the header check reads */
#define BLOCK	  4096u

struct segfile {
	char name[40];
	uint64_t number;
	bool spare; /* spare-<hex>.seg: preallocated, not in use */
};

static uint64_t le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* "<16 hex digits>.seg" or "spare-<16 hex digits>.seg": fill *f, else false. */
static bool parse_name(const char *name, struct segfile *f)
{
	const char *hex = strncmp(name, "spare-", 6) == 0 ? name + 6 : name;

	if (strlen(hex) != 20 || strcmp(hex + 16, ".seg") != 0)
		return false;
	for (int i = 0; i < 16; i++)
		if (!strchr("0123456789abcdef", hex[i]))
			return false;
	memcpy(f->name, name, strlen(name) + 1); /* at most 26 bytes: checked above */
	f->number = strtoull(hex, NULL, 16);
	f->spare = hex != name;
	return true;
}

/* The header of a file of `bytes` bytes read into h (got bytes of it): its state. */
static void header_state(const unsigned char *h, ssize_t got, uint64_t bytes, uint64_t number,
			 char *out, size_t size)
{
	uint64_t segsize = got >= HDR_BYTES ? le(h + 16, 8) : 0; /* read only what was read */

	if (bytes == 0)
		snprintf(out, size, "none: the file is empty");
	else if (got < HDR_BYTES)
		snprintf(out, size, "none: shorter than a header (%llu bytes)",
			 (unsigned long long) bytes);
	else if (memcmp(h, "AURAWAL1", 8) != 0)
		snprintf(out, size, "bad: no AURAWAL1 magic");
	else if (le(h + 8, 4) != 1)
		snprintf(out, size, "bad: version %llu, not 1", (unsigned long long) le(h + 8, 4));
	else if (XXH3_64bits(h, 48) != le(h + 48, 8))
		snprintf(out, size, "bad: checksum mismatch");
	else if (le(h + 32, 8) != number)
		snprintf(out, size, "bad: segment number %llu, not the file name's",
			 (unsigned long long) le(h + 32, 8));
	else if (le(h + 12, 4) != BLOCK || segsize % BLOCK || bytes > segsize)
		snprintf(out, size, "bad: block size %llu, segment size %llu",
			 (unsigned long long) le(h + 12, 4), (unsigned long long) segsize);
	else if (bytes < segsize)
		snprintf(out, size, "ok, but the file is cut short of its %llu bytes",
			 (unsigned long long) segsize);
	else
		snprintf(out, size, "ok");
}

static bool in_log(const aurawal_segment_info_t *v, size_t n, uint64_t number)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].number == number)
			return true;
	return false;
}

static void print_row(const char *dir, const struct segfile *f, const aurawal_segment_info_t *v,
		      size_t n)
{
	unsigned char h[HDR_BYTES];
	char path[4096], state[96];
	struct stat st;
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, f->name);
	/* O_NONBLOCK: a FIFO under a segment's name must not hang the dump */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		printf("  %-24s %12s  %s\n", f->name, "-", aurawal_strerror(-errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	got = pread(fd, h, sizeof(h), 0);
	if (got < 0)
		snprintf(state, sizeof(state), "unreadable: %s", aurawal_strerror(-errno));
	else
		header_state(h, got, (uint64_t) st.st_size, f->number, state, sizeof(state));
	close(fd);
	printf("  %-24s %12llu  %s, %s\n", f->name, (unsigned long long) st.st_size, state,
	       f->spare			 ? "a spare, not in use (readers ignore it)"
	       : in_log(v, n, f->number) ? "in the log"
					 : "not read by the log");
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct segfile *) a)->name, ((const struct segfile *) b)->name);
}

/* The segment files of dir, sorted by name, into *out (*count of them). 0 or -errno. */
static int collect(const char *dir, uint64_t only, struct segfile **out, size_t *count)
{
	DIR *d = opendir(dir);
	struct segfile *v = NULL, f;
	size_t n = 0, cap = 0;
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (!parse_name(e->d_name, &f) || (only && (f.spare || f.number != only)))
			continue;
		if (n == cap) {
			struct segfile *w = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));

			if (!w) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = w;
		}
		v[n++] = f;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), by_name);
	*out = v;
	*count = n;
	return 0;
}

int segfiles_print(const char *dir, const aurawal_segment_info_t *v, size_t n, uint64_t only)
{
	struct segfile *files = NULL;
	size_t nfiles = 0;
	int rc = collect(dir, only, &files, &nfiles);

	if (rc) {
		fprintf(stderr, "waldump: listing %s: %s\n", dir, aurawal_strerror(rc));
		return rc;
	}
	printf("files:\n  %-24s %12s  %s\n", "name", "bytes",
	       "header, and whether the log read it");
	for (size_t i = 0; i < nfiles; i++)
		print_row(dir, &files[i], v, n);
	free(files);
	return 0;
}
