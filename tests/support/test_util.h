/* SPDX-License-Identifier: MIT */
/*
 * test_util.h - helpers shared by the Criterion suites: temporary files with a known
 * byte pattern, pipes whose reads stay in flight until the test writes, waiting for a
 * counter with a deadline (a deadline, never a sleep, decides when to give up).
 */
#ifndef AURA_TEST_UTIL_H
#define AURA_TEST_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auraio.h"

/* Temporary files live on a real file system (O_DIRECT does not work on tmpfs). */
#ifndef TEST_TMPDIR
#define TEST_TMPDIR "/var/tmp"
#endif

static inline uint8_t pattern_byte(uint64_t offset)
{
	return (uint8_t) ((offset * 2654435761u) >> 13);
}

static inline void fill_pattern(void *buf, size_t len, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		((uint8_t *) buf)[i] = pattern_byte(offset + i);
}

static inline int check_pattern(const void *buf, size_t len, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		if (((const uint8_t *) buf)[i] != pattern_byte(offset + i))
			return 0;
	return 1;
}

/* A file of `size` bytes filled with the pattern; unlinked at once (fd keeps it).
 * flags: extra open flags such as O_DIRECT. */
static inline int temp_file(size_t size, int flags)
{
	char path[] = TEST_TMPDIR "/auratest.XXXXXX";
	int fd = mkstemp(path);
	char buf[65536];

	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	for (size_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		fill_pattern(buf, n, off);
		cr_assert_eq(pwrite(fd, buf, n, (off_t) off), (ssize_t) n);
	}
	cr_assert_eq(fsync(fd), 0);
	if (flags) {
		int fd2 = open(path, O_RDWR | flags);

		cr_assert(fd2 >= 0, "reopen %s: %s", path, strerror(errno));
		close(fd);
		fd = fd2;
	}
	unlink(path);
	return fd;
}

/* A fresh, empty directory TEST_TMPDIR/<prefix>.XXXXXX (free() it; remove with
 * test_rm_tree). */
static inline char *test_temp_dir(const char *prefix)
{
	char tmpl[256];
	char *d;

	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", TEST_TMPDIR, prefix);
	d = mkdtemp(tmpl);
	cr_assert_not_null(d, "mkdtemp: %s", strerror(errno));
	return strdup(d);
}

static inline int test_rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void) st;
	(void) flag;
	(void) f;
	return remove(path);
}

/* Remove dir and everything below it (errors ignored: a test's cleanup). */
static inline void test_rm_tree(const char *dir)
{
	nftw(dir, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The number in environment variable `name` (decimal, 0x hex or 0 octal), or dflt when it
 * is unset or empty: how the randomized suites take their seeds and round counts. */
static inline uint64_t test_env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static inline uint64_t test_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* Whether thread tid of this process is asleep (state S in /proc). */
static inline bool thread_sleeping(pid_t tid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int) tid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the state follows the command name */
	return p && p[1] == ' ' && p[2] == 'S';
}

/* The system call thread tid of this process is blocked in (its number), -1 while it
 * runs, -2 if the kernel does not say (no /proc/PID/syscall). State S alone does not say
 * where a thread sleeps: one on its way to a wait may block for a moment on a lock, in
 * the allocator or in the sanitizer's runtime. */
static inline long thread_syscall(pid_t tid)
{
	char path[64], buf[64];
	FILE *f;
	size_t n;
	long nr;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int) tid);
	f = fopen(path, "r");
	if (!f)
		return -2;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return sscanf(buf, "%ld", &nr) == 1 ? nr : -1; /* "running" when it runs */
}

/* A completion recorder for callbacks: counts calls, keeps the last result. */
struct recorder {
	atomic_int calls;
	atomic_long last;
};

struct auraio_request;

/* An engine of `rings` rings (0: one per core) of queue_depth `qd` whose in-flight limit
 * stays at qd (the adaptive controller off). NULL and errno if refused. */
static inline auraio_engine_t *test_fixed_engine(unsigned rings, int qd)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.ring_count = rings;
	o.queue_depth = qd;
	o.disable_adaptive = true;
	return auraio_create_with_options(&o);
}

static inline void record_cb(struct auraio_request *req, ssize_t result, void *ud)
{
	struct recorder *rec = ud;

	(void) req;
	atomic_store(&rec->last, (long) result);
	atomic_fetch_add(&rec->calls, 1);
}

#endif
