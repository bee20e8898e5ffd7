/* SPDX-License-Identifier: MIT */
/*
 * wal_log.c - the log's lifecycle: options, the directory and its LOCK file, the
 * engine and its registered buffers, recovery at open, the background threads, close;
 * plus reports, stats and error text.
 *
 * Invariant after a successful open: every segment before `active` is sealed or
 * released, `active` holds the end of the log (its data_end), and next_seq is greater
 * than every sequence in the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wal_internal.h"

AURAWAL_API void aurawal_options_init(aurawal_options_t *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->segment_size = 64ull << 20;
	o->create_if_missing = true;
	o->recovery = AURAWAL_RECOVER_STRICT;
	o->buffer_size = 1u << 20;
	o->flush_delay_us = 1000;
	o->sync_mode = AURAWAL_SYNC_DSYNC;
	o->spare_segments = 1;
	o->recycle_segments = true;
	o->scan_sealed = true;
}

uint64_t wal_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

void wal_report(struct aurawal *log, aurawal_report_kind_t kind, uint64_t segment, uint64_t offset,
		uint64_t length, const char *reason)
{
	aurawal_report_t r = { kind, segment, offset, length, reason };

	if (log->opts.reporter) {
		log->opts.reporter(&r, log->opts.reporter_arg);
		return;
	}
	fprintf(stderr, "aurawal: %s: %s: segment %llu offset %llu (%llu bytes): %s\n", log->dir,
		kind == AURAWAL_REPORT_CORRUPTION  ? "corruption"
		: kind == AURAWAL_REPORT_TORN_TAIL ? "torn tail"
		: kind == AURAWAL_REPORT_DROPPED   ? "dropped"
		: kind == AURAWAL_REPORT_LOCKED	   ? "locked"
		: kind == AURAWAL_REPORT_FAILED	   ? "failed"
						   : "preparing a segment",
		(unsigned long long) segment, (unsigned long long) offset,
		(unsigned long long) length, reason);
}

static int check_options(const aurawal_options_t *o)
{
	if (o->segment_size < WAL_MIN_SEGMENT || o->segment_size > WAL_MAX_SEGMENT ||
	    o->segment_size % WAL_BLOCK)
		return -EINVAL;
	/* Whole blocks: a batch is written up to the block boundary after its data, from a
	 * buffer registered with exactly buffer_size bytes. */
	if (o->buffer_size < (64u << 10) || o->buffer_size > (256u << 20) ||
	    o->buffer_size % WAL_BLOCK)
		return -EINVAL;
	if (o->recovery < AURAWAL_RECOVER_STRICT || o->recovery > AURAWAL_RECOVER_INSPECT)
		return -EINVAL;
	if (o->sync_mode != AURAWAL_SYNC_FDATASYNC && o->sync_mode != AURAWAL_SYNC_DSYNC)
		return -EINVAL;
	if (o->flush_delay_us > 10000000u || o->spare_segments < 1 || o->spare_segments > 64)
		return -EINVAL;
	return 0;
}

/* LOCK: one process owns a log. The holder writes its PID into the file. */
static int take_lock(struct aurawal *log)
{
	char pid[32] = "?";
	int n;

	log->lock_fd = openat(log->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (log->lock_fd < 0)
		return -errno;
	if (flock(log->lock_fd, LOCK_EX | LOCK_NB) == 0) {
		n = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
		if (ftruncate(log->lock_fd, 0) != 0 ||
		    pwrite(log->lock_fd, pid, (size_t) n, 0) != n)
			return -errno;
		return 0;
	}
	if (errno != EWOULDBLOCK)
		return -errno;
	n = (int) pread(log->lock_fd, pid, sizeof(pid) - 1, 0);
	pid[n > 0 ? n : 0] = '\0';
	pid[strcspn(pid, "\n")] = '\0';
	{
		char why[96];

		snprintf(why, sizeof(why), "the log is locked by process %s", pid);
		wal_report(log, AURAWAL_REPORT_LOCKED, 0, 0, 0, why);
	}
	return AURAWAL_ELOCKED;
}

static int open_dir(struct aurawal *log, bool create)
{
	if (create && mkdir(log->dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	log->dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return log->dir_fd < 0 ? -errno : 0;
}

static int make_engine(struct aurawal *log)
{
	auraio_options_t o;

	if (log->opts.engine) {
		log->engine = log->opts.engine;
		return 0;
	}
	auraio_options_init(&o);
	o.ring_count = 1;
	o.queue_depth = 128;
	o.disable_adaptive = true; /* the log's own I/O is sequential and small in number */
	log->engine = auraio_create_with_options(&o);
	if (!log->engine)
		return -errno;
	log->own_engine = true;
	return 0;
}

/* Bytes of buffers the log may register (pin): half of RLIMIT_MEMLOCK, leaving room
 * for another log or engine in the process; registering more would fail as a whole. */
static size_t pin_budget(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return 0;
	return rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : (size_t) rl.rlim_cur / 2;
}

/* Register the read buffers, then as many write buffers as the budget allows (the
 * lowest-numbered ones, which batch_new() uses first); the rest stay plain memory. */
static void register_buffers(struct aurawal *log)
{
	struct iovec iov[WAL_NBUFS_MAX + WAL_READ_BUFS];
	size_t budget = pin_budget(), used = 0;
	int n = 0;

	for (int i = 0; i < WAL_READ_BUFS && used + WAL_READ_BUF_SZ <= budget; i++) {
		log->reads.reg_index[i] = n;
		iov[n++] = (struct iovec){ log->reads.bufs[i], WAL_READ_BUF_SZ };
		used += WAL_READ_BUF_SZ;
	}
	for (int i = 0; i < log->nbufs && used + log->bufs[i].std_cap <= budget; i++) {
		log->bufs[i].std_reg = log->bufs[i].reg_index = n;
		iov[n++] = (struct iovec){ log->bufs[i].std_buf, log->bufs[i].std_cap };
		used += log->bufs[i].std_cap;
	}
	if (n && auraio_register_buffers(log->engine, iov, n) == 0)
		return;
	for (int i = 0; i < log->nbufs; i++)
		log->bufs[i].std_reg = log->bufs[i].reg_index = -1;
	for (int i = 0; i < WAL_READ_BUFS; i++)
		log->reads.reg_index[i] = -1;
}

/*
 * Write buffers and read buffers, registered with the engine when it is the log's own
 * (a borrowed engine keeps its own registrations: plain memory then). There are enough
 * write buffers for one write to take half of them while the other half fills
 * (wal_writer.c), within WAL_STAGING bytes, and at least WAL_NBUFS_MIN.
 */
static int make_buffers(struct aurawal *log)
{
	size_t fit = WAL_STAGING / log->opts.buffer_size;

	log->nbufs = (int) MIN(MAX(fit, (size_t) WAL_NBUFS_MIN), (size_t) WAL_NBUFS_MAX);
	log->big_budget =
	    MAX((size_t) WAL_STAGING, 2 * (size_t) log->nbufs * log->opts.buffer_size);
	for (int i = 0; i < log->nbufs; i++) {
		struct wal_batch *b = &log->bufs[i];

		b->std_cap = b->cap = log->opts.buffer_size;
		b->std_buf = b->buf = wal_alloc(log, b->cap);
		if (!b->buf)
			return -ENOMEM;
		b->std_reg = b->reg_index = -1;
	}
	for (int i = 0; i < WAL_READ_BUFS; i++) {
		log->reads.bufs[i] = wal_alloc(log, WAL_READ_BUF_SZ);
		if (!log->reads.bufs[i])
			return -ENOMEM;
		log->reads.reg_index[i] = -1;
	}
	log->reads.free_mask = (1u << WAL_READ_BUFS) - 1;
	log->scratch = wal_alloc(log, WAL_BLOCK);
	log->summary_buf = wal_alloc(log, WAL_BLOCK);
	if (!log->scratch || !log->summary_buf)
		return -ENOMEM;
	if (log->own_engine)
		register_buffers(log);
	return 0;
}

static void free_buffers(struct aurawal *log)
{
	if (log->own_engine)
		auraio_unregister_buffers(log->engine);
	for (int i = 0; i < log->nbufs; i++) {
		wal_free(log, log->bufs[i].std_buf);
		wal_free(log, log->bufs[i].big);
		free(log->bufs[i].voids);
	}
	for (int i = 0; i < WAL_READ_BUFS; i++)
		wal_free(log, log->reads.bufs[i]);
	wal_free(log, log->scratch);
	wal_free(log, log->summary_buf);
}

static int start_threads(struct aurawal *log)
{
	int rc;

	if (log->read_only)
		return 0;
	rc = -pthread_create(&log->writer, NULL, wal_writer_main, log);
	if (rc)
		return rc;
	rc = -pthread_create(&log->preparer, NULL, wal_preparer_main, log);
	if (rc) {
		pthread_mutex_lock(&log->mu);
		log->closing = true;
		pthread_cond_broadcast(&log->cv_writer);
		pthread_mutex_unlock(&log->mu);
		pthread_join(log->writer, NULL);
		return rc;
	}
	log->threads_started = true;
	return 0;
}

static void stop_threads(struct aurawal *log)
{
	if (!log->threads_started)
		return;
	pthread_mutex_lock(&log->mu);
	log->closing = true;
	pthread_cond_broadcast(&log->cv_writer);
	pthread_cond_broadcast(&log->cv_prepare);
	pthread_mutex_unlock(&log->mu);
	pthread_join(log->writer, NULL);
	pthread_join(log->preparer, NULL);
	log->threads_started = false;
}

static void log_free(struct aurawal *log)
{
	stop_threads(log);
	free(log->tail); /* set by wal_writer_init; a failed open gets here without a close */
	log->tail = NULL;
	wal_segments_close(log);
	if (log->engine) {
		free_buffers(log);
		if (log->own_engine)
			auraio_destroy(log->engine);
	}
	if (log->lock_fd >= 0)
		close(log->lock_fd); /* releases the flock */
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->rel_mu);
	pthread_cond_destroy(&log->cv_writer);
	pthread_cond_destroy(&log->cv_done);
	pthread_cond_destroy(&log->cv_prepare);
	pthread_cond_destroy(&log->cv_ready);
	free(log->released);
	free(log->dir);
	free(log);
}

static struct aurawal *log_alloc(const char *dir, const aurawal_options_t *opts)
{
	struct aurawal *log = calloc(1, sizeof(*log));

	if (!log)
		return NULL;
	if (opts)
		log->opts = *opts;
	else
		aurawal_options_init(&log->opts);
	log->dir = strdup(dir);
	log->dir_fd = log->lock_fd = -1;
	log->read_only = log->opts.recovery == AURAWAL_RECOVER_INSPECT;
	pthread_mutex_init(&log->mu, NULL);
	pthread_mutex_init(&log->rel_mu, NULL);
	pthread_cond_init(&log->cv_writer, NULL);
	pthread_cond_init(&log->cv_done, NULL);
	pthread_cond_init(&log->cv_prepare, NULL);
	pthread_cond_init(&log->cv_ready, NULL);
	if (!log->dir) {
		log_free(log);
		return NULL;
	}
	return log;
}

AURAWAL_API int aurawal_open(const char *dir, const aurawal_options_t *opts, aurawal_t **out)
{
	struct aurawal *log;
	int rc;

	if (!dir || !out || (opts && check_options(opts) != 0))
		return -EINVAL;
	*out = NULL;
	log = log_alloc(dir, opts);
	if (!log)
		return -ENOMEM;
	rc = open_dir(log, log->opts.create_if_missing && !log->read_only);
	/* Not to create: no log is a refusal, made before the LOCK file is (and before the
	 * leftovers of a log's preparations are cleaned up in what is no log). */
	if (rc == 0 && !(log->opts.create_if_missing && !log->read_only))
		rc = wal_log_present(log);
	if (rc == 0 && !log->read_only)
		rc = take_lock(log);
	if (rc == 0)
		rc = make_engine(log);
	if (rc == 0)
		rc = make_buffers(log);
	if (rc == 0)
		rc = wal_segments_open(log, log->opts.create_if_missing && !log->read_only);
	if (rc == 0)
		rc = wal_writer_init(log);
	if (rc == 0)
		rc = start_threads(log);
	if (rc) {
		log_free(log);
		return rc;
	}
	*out = log;
	return 0;
}

/* Close, after the writer stopped: reads still in flight complete (nobody else reaps the
 * engine now; parked ones are submitted again) and every callback ready runs - a read's
 * callback may start another read, hence the loop - before the buffers, files and engine
 * they use go away. */
static void finish_callbacks(struct aurawal *log)
{
	do {
		pthread_mutex_lock(&log->mu);
		while (log->pending_reads) {
			pthread_mutex_unlock(&log->mu);
			wal_resubmit_parked(log);
			auraio_wait(log->engine, 100);
			pthread_mutex_lock(&log->mu);
		}
		pthread_mutex_unlock(&log->mu);
	} while (wal_run_ready_cbs(log, true) > 0);
}

AURAWAL_API int aurawal_close(aurawal_t *log)
{
	int rc;

	if (!log)
		return 0;
	rc = log->read_only ? 0 : aurawal_sync(log);
	stop_threads(log); /* the writer drains what is left */
	if (rc == 0)	   /* what a callback appended meanwhile could not be written */
		rc = log->failed ? log->failed : log->enospc;
	if (rc == 0)
		rc = wal_flush_ready(log); /* a header no durable write has covered */
	if (rc == 0)
		rc = wal_sync_dir_if_dirty(log); /* renames no durable write has covered */
	if (rc == 0)
		wal_write_close_block(log); /* best effort: the next open reads less */
	finish_callbacks(log);		    /* then the last callbacks run */
	log_free(log);
	return rc == AURAWAL_ECLOSED ? 0 : rc;
}

/* The upper bound of the bucket holding quantile q; never above the exact maximum. */
static double lat_quantile(const uint64_t *b, uint64_t total, double q, uint64_t max)
{
	uint64_t seen = 0, rank = (uint64_t) (q * (double) total);

	for (unsigned i = 0; i < WAL_LAT_BUCKETS; i++) {
		seen += b[i];
		if (seen > rank)
			return (double) MIN(wal_lat_bucket_max(i), max);
	}
	return 0;
}

AURAWAL_API int aurawal_failed(aurawal_t *log)
{
	return log ? atomic_load_explicit(&log->failed_pub, memory_order_relaxed) : -EINVAL;
}

AURAWAL_API int aurawal_get_stats(aurawal_t *log, aurawal_stats_t *out)
{
	if (!log || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&log->mu);
	out->appends = log->st_appends;
	out->durable_appends = log->st_durable;
	out->bytes = log->st_bytes;
	out->writes = log->st_writes;
	out->syncs = log->st_syncs;
	out->records_per_sync =
	    log->st_syncs ? (double) log->st_synced_records / (double) log->st_syncs : 0;
	out->sync_p50_us = lat_quantile(log->st_sync_lat, log->st_syncs, 0.50, log->st_sync_max_us);
	out->sync_p99_us = lat_quantile(log->st_sync_lat, log->st_syncs, 0.99, log->st_sync_max_us);
	out->sync_max_us = (double) log->st_sync_max_us;
	for (struct wal_segment *s = log->segs; s; s = s->next)
		out->segments++;
	out->segment_size = log->segment_size;
	out->next_seq = log->next_seq;
	out->failed = log->failed;
	pthread_mutex_unlock(&log->mu);
	return 0;
}

AURAWAL_API const char *aurawal_strerror(int err)
{
	switch (err) {
	case AURAWAL_ECORRUPT:
		return "log corruption: a checksum or format check failed";
	case AURAWAL_ECLOSED:
		return "the log is closing";
	case AURAWAL_EFORMAT:
		return "not an AuraWAL log, or a format version this library cannot read";
	case AURAWAL_ELOCKED:
		return "another process has the log open";
	default:
		return auraio_strerror(err);
	}
}
