/* SPDX-License-Identifier: MIT */
/*
 * Regression: with COOP_TASKRUN a reaper that only peeks at the CQ sees completions a
 * timer tick late (4 ms here: median latency pinned at one tick, IOPS halved). The
 * engine must enter the kernel when IORING_SQ_TASKRUN says completions are parked.
 */
#include <auraio.h>

#include "test_util.h"

#define DEPTH 64
#define OPS   20000

struct bench {
	auraio_engine_t *e;
	int fd;
	int issued, done;
	uint64_t lat[OPS];
	char buf[DEPTH][4096];
};

static void reissue_cb(auraio_request_t *req, ssize_t res, void *ud);

static void issue(struct bench *b, int slot)
{
	off_t off = (off_t) ((b->issued * 7919) % 256) * 4096;

	cr_assert_not_null(auraio_read(b->e, b->fd, auraio_buf(b->buf[slot]), 4096, off, reissue_cb,
				       (void *) ((uintptr_t) b | (uintptr_t) slot)),
			   "submit: %s", strerror(errno));
	b->issued++;
}

static void reissue_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct bench *b = (struct bench *) ((uintptr_t) ud & ~(uintptr_t) 63);
	int slot = (int) ((uintptr_t) ud & 63);

	cr_assert_eq(res, 4096);
	b->lat[b->done++] = auraio_request_latency_ns(req);
	if (b->issued < OPS)
		issue(b, slot);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

Test(coop_taskrun, page_cache_reads_complete_far_below_one_timer_tick)
{
	static struct bench b __attribute__((aligned(64)));
	auraio_options_t o;
	auraio_stats_t st;
	char warm[4096];

	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = DEPTH;
	b.e = auraio_create_with_options(&o);
	cr_assert_not_null(b.e);
	cr_assert_eq(auraio_get_stats(b.e, &st), 0);
	if (st.backend != AURAIO_BACKEND_IO_URING)
		cr_skip_test("io_uring backend not in use: %s", st.backend_reason);
	b.fd = temp_file(256 * 4096, 0);
	for (int i = 0; i < 256; i++) /* every page in the page cache */
		cr_assert_eq(pread(b.fd, warm, sizeof(warm), i * 4096), 4096);
	for (int i = 0; i < DEPTH; i++)
		issue(&b, i);
	while (b.done < OPS)
		cr_assert_geq(auraio_wait(b.e, 5000), 0);
	qsort(b.lat, OPS, sizeof(b.lat[0]), cmp_u64);
	/* A tick is 4 ms (HZ=250) or 1 ms (HZ=1000); the bug pins the median at one tick.
	 * 64 cached reads in flight complete in microseconds. */
	cr_assert_lt(b.lat[OPS / 2], 500 * 1000ull,
		     "median latency %llu ns: completions wait for a tick",
		     (unsigned long long) b.lat[OPS / 2]);
	cr_log_info("coop_taskrun=%d median %llu ns p99 %llu ns", st.coop_taskrun,
		    (unsigned long long) b.lat[OPS / 2],
		    (unsigned long long) b.lat[OPS * 99 / 100]);
	auraio_destroy(b.e);
	close(b.fd);
}
