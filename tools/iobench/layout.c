/* SPDX-License-Identifier: MIT */
/*
 * layout.c - the benchmark file: open it, and with --size create or extend it.
 *
 * A block device is used as it is: its size is its capacity (BLKGETSIZE64; st_size is
 * 0), --size only bounds the region used (and may not exceed the device), and nothing
 * here writes to it: only a write workload (--rw randwrite, write) does. Only a regular
 * file, or a path that does not exist yet, is laid out.
 *
 * The file is extended by WRITING data, never with ftruncate or fallocate: reading a
 * hole or an unwritten extent returns zeros without touching the device, which would
 * make a read benchmark measure nothing but the kernel. Existing contents are never
 * rewritten. Errors are reported here (this file knows the context) and returned as
 * -errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iobench.h"

#define LAYOUT_CHUNK (1u << 20)

static int fail(const char *what, const char *path, int err)
{
	fprintf(stderr, "iobench: %s %s: %s\n", what, path, auraio_strerror(err));
	return err;
}

/* Data that is neither zeros nor trivially compressible. */
static void fill_pattern(uint64_t *p, size_t words, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
}

static void layout_progress(const struct bench *b, uint64_t done, uint64_t total, uint64_t *last_ns)
{
	uint64_t t = now_ns();

	if (b->cfg.quiet || t - *last_ns < 1000000000ull)
		return;
	*last_ns = t;
	fprintf(stderr, "iobench: laying out %s: %llu / %llu MiB\n", b->cfg.file,
		(unsigned long long) (done >> 20), (unsigned long long) (total >> 20));
}

/* Write [from, to) of fd with data, then make it durable and drop it from the cache. */
static int extend(struct bench *b, int fd, uint64_t from, uint64_t to)
{
	uint64_t *buf = malloc(LAYOUT_CHUNK);
	uint64_t last = now_ns(), off = from;
	int rc = 0;

	if (!buf)
		return fail("allocating for", b->cfg.file, -ENOMEM);
	while (off < to && rc == 0) {
		size_t n = (size_t) (to - off < LAYOUT_CHUNK ? to - off : LAYOUT_CHUNK);
		ssize_t w;

		fill_pattern(buf, LAYOUT_CHUNK / 8, off ^ b->cfg.seed);
		w = pwrite(fd, buf, n, (off_t) off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			rc = fail("writing", b->cfg.file, w < 0 ? -errno : -EIO);
		else
			off += (uint64_t) w;
		layout_progress(b, off - from, to - from, &last);
	}
	free(buf);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = fail("syncing", b->cfg.file, -errno);
	if (rc == 0)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return rc;
}

/* --size: make the file at least cfg.size bytes long, written. */
static int prepare(struct bench *b)
{
	struct stat st;
	int fd = open(b->cfg.file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	int rc = 0;

	if (fd < 0)
		return fail("creating", b->cfg.file, -errno);
	if (fstat(fd, &st) != 0)
		rc = fail("stat", b->cfg.file, -errno);
	else if ((uint64_t) st.st_size < b->cfg.size) {
		if (!b->cfg.quiet && b->cfg.size - (uint64_t) st.st_size >= (64u << 20))
			fprintf(stderr, "iobench: writing %s up to %llu MiB\n", b->cfg.file,
				(unsigned long long) (b->cfg.size >> 20));
		rc = extend(b, fd, (uint64_t) st.st_size, b->cfg.size);
	}
	close(fd);
	return rc;
}

static int open_flags(const struct bench_config *cfg)
{
	return (cfg->is_write ? O_RDWR : O_RDONLY) | (cfg->direct ? O_DIRECT : 0) | O_CLOEXEC;
}

/* What the opened file holds: a regular file's length, a block device's capacity. */
static int file_bytes(struct bench *b, const struct stat *st, uint64_t *bytes)
{
	*bytes = (uint64_t) st->st_size;
	if (S_ISBLK(st->st_mode) && ioctl(b->fd, BLKGETSIZE64, bytes) != 0)
		return fail("BLKGETSIZE64 of", b->cfg.file, -errno);
	return 0;
}

/* --size on a block device: the region used, never laid out; not beyond the device. */
static int device_size_check(const struct bench *b, uint64_t bytes)
{
	if (b->cfg.size <= bytes)
		return 0;
	fprintf(stderr,
		"iobench: %s is a block device of %llu bytes: --size %llu is larger (on a "
		"device --size only bounds the region used; nothing is laid out)\n",
		b->cfg.file, (unsigned long long) bytes, (unsigned long long) b->cfg.size);
	return -EINVAL;
}

/* A regular file, or nothing yet: --size may lay it out. */
static bool may_lay_out(const char *path)
{
	struct stat st;

	return stat(path, &st) != 0 ? errno == ENOENT : S_ISREG(st.st_mode);
}

int layout_open(struct bench *b)
{
	struct stat st;
	uint64_t region;
	int rc;

	if (b->cfg.size && may_lay_out(b->cfg.file) && (rc = prepare(b)) != 0)
		return rc;
	b->fd = open(b->cfg.file, open_flags(&b->cfg));
	if (b->fd < 0)
		return fail("opening", b->cfg.file, -errno);
	if (fstat(b->fd, &st) != 0)
		return fail("stat", b->cfg.file, -errno);
	if ((rc = file_bytes(b, &st, &region)) != 0)
		return rc;
	if (b->cfg.size && S_ISBLK(st.st_mode) && (rc = device_size_check(b, region)) != 0)
		return rc;
	if (b->cfg.size && b->cfg.size < region)
		region = b->cfg.size;
	b->nblocks = region / b->cfg.bs;
	if (b->nblocks == 0) {
		fprintf(stderr, "iobench: %s is smaller than one block (%llu bytes)\n", b->cfg.file,
			(unsigned long long) b->cfg.bs);
		return -EINVAL;
	}
	/* Holes read as zeros without I/O; say so rather than report fantasy numbers. */
	if (S_ISREG(st.st_mode) && (uint64_t) st.st_blocks * 512 < region - region / 64 &&
	    !b->cfg.is_write)
		fprintf(stderr,
			"iobench: warning: %s is sparse; reads of holes do not touch "
			"the device\n",
			b->cfg.file);
	return 0;
}
