/* SPDX-License-Identifier: MIT */
/*
 * wal_segment.c - segment files: the segment list, their headers, building a segment, and
 * the preparer thread that keeps the next segment ready. Finding them at open:
 * wal_seg_open.c; releasing and listing them: wal_release.c.
 *
 * A new segment is built off to the side - preallocated, written through with zeros
 * (or taken from a recycled spare), given its header - and only then renamed to its
 * numbered name. So a numbered segment file is always whole, and the append path never
 * waits for a file to be built unless the preparer fell behind. The preparer does not
 * flush: the header and the rename are owed (lazy_hdr, dir_gen) until the first durable
 * write into the segment pays for them (docs/wal_format.md, "Rollover without a flush").
 * A segment made at create or at open is flushed at once.
 *
 * Lock: log->mu protects the segment list, `ready`, the spares and the refs. File work
 * is done without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wal_internal.h"

#define ZERO_CHUNK	 (1u << 20)
#define PREPARE_RETRY_NS (200ull * 1000000ull)

char *wal_seg_path(const struct aurawal *log, uint64_t number)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%016" PRIx64 ".seg", log->dir, number) < 0)
		return NULL;
	return p;
}

/* Through the engine, as all the log's file I/O: fault injection reaches it. */
int sync_dir_fd(struct aurawal *log)
{
	return wal_fsync(log, log->dir_fd);
}

/* ---- the segment list (mu held) ---- */

struct wal_segment *wal_seg_new(uint64_t number, int fd, uint64_t size)
{
	struct wal_segment *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->number = number;
	s->fd = fd;
	s->size = size;
	s->data_end = s->written_end = s->durable_end = WAL_HEADER_BLOCK;
	return s;
}

void wal_seg_append(struct aurawal *log, struct wal_segment *s)
{
	s->next = NULL;
	if (log->segs_tail)
		log->segs_tail->next = s;
	else
		log->segs = s;
	log->segs_tail = s;
}

struct wal_segment *wal_seg_find(struct aurawal *log, uint64_t number)
{
	for (struct wal_segment *s = log->segs; s; s = s->next)
		if (s->number == number) {
			s->refs++;
			return s;
		}
	return NULL;
}

/* Dispose of a released segment's file: keep it as a spare, or delete it (unless its
 * name is gone already: unlink_segment). */
void wal_seg_dispose(struct aurawal *log, struct wal_segment *s)
{
	char *path = s->unnamed ? NULL : wal_seg_path(log, s->number), *spare = NULL;

	log->dir_gen += !s->unnamed; /* renamed or deleted: owed until a directory sync */

	if (s->fd >= 0)
		close(s->fd);
	if (path && log->opts.recycle_segments && s->size == log->segment_size &&
	    log->nspares < (int) log->opts.spare_segments &&
	    asprintf(&spare, "%s/spare-%016" PRIx64 ".seg", log->dir, s->number) >= 0 &&
	    rename(path, spare) == 0) {
		if (log->nspares == log->cap_spares) {
			int cap = log->cap_spares ? 2 * log->cap_spares : 4;
			char **v = realloc(log->spares, sizeof(*v) * (size_t) cap);

			if (v) {
				log->spares = v;
				log->cap_spares = cap;
			}
		}
		if (log->nspares < log->cap_spares) {
			log->spares[log->nspares++] = spare;
			spare = NULL;
		}
	} else if (path) {
		unlink(path);
	}
	if (spare) { /* no room to remember it: do not keep it either */
		unlink(spare);
		free(spare);
	}
	free(path);
	free(s);
}

void wal_seg_put(struct aurawal *log, struct wal_segment *s)
{
	if (--s->refs == 0 && s->released)
		wal_seg_dispose(log, s);
}

/* ---- headers ---- */

static int write_header(struct aurawal *log, int fd, uint64_t number, uint64_t first_seq, bool sync)
{
	struct wal_seg_header h = { log->segment_size, log->log_id, number, first_seq };
	int rc;

	wal_header_encode(log->scratch, &h);
	rc = wal_pwrite(log, fd, log->scratch, -1, WAL_HEADER_BLOCK, 0);
	if (rc >= 0 && rc != (int) WAL_HEADER_BLOCK)
		rc = -EIO;
	return rc < 0 ? rc : sync ? wal_fdatasync(log, fd) : 0;
}

/* Fill s's summary with what the log knows of it now: data end, sequences, records. */
void wal_summary_of(const struct aurawal *log, const struct wal_segment *s, uint8_t kind,
		    struct wal_summary *sm)
{
	(void) log;
	*sm = (struct wal_summary){ kind,	 s->data_end, s->first_seq,
				    s->last_seq, s->nrecords, s->seal_next };
	if (kind != WAL_SUM_SEALED)
		sm->next = 0;
}

/*
 * Rewrite block 0 of segment s: its header, and summary `sm` (NULL = none) - one aligned
 * 4 KiB write (plus fdatasync if `sync`). The header bytes are the same as on disk, so a
 * torn write cannot hurt them (docs/wal_format.md, "Segment summary"). Caller: the
 * writer (a sealed segment nobody else writes), or open and close (no other thread).
 */
int wal_write_summary(struct aurawal *log, struct wal_segment *s, const struct wal_summary *sm,
		      bool sync)
{
	struct wal_seg_header h = { log->segment_size, log->log_id, s->number, 0 };
	int rc;

	wal_header_encode(log->summary_buf, &h);
	if (sm)
		wal_summary_encode(log->summary_buf, sm, wal_seed(log->log_id, s->number));
	rc = wal_pwrite(log, s->fd, log->summary_buf, -1, WAL_HEADER_BLOCK, 0);
	if (rc >= 0 && rc != (int) WAL_HEADER_BLOCK)
		rc = -EIO;
	if (rc >= 0 && sync)
		rc = wal_fdatasync(log, s->fd);
	return rc < 0 ? rc : 0;
}

/* Read fd's header block into buf (aligned, WAL_HEADER_BLOCK bytes) and decode it. */
int wal_seg_read_header(struct aurawal *log, int fd, uint8_t *buf, struct wal_seg_header *h)
{
	int rc = wal_pread(log, fd, buf, -1, WAL_HEADER_BLOCK, 0);

	if (rc < 0)
		return rc;
	if (rc < (int) WAL_HEADER_BLOCK)
		return AURAWAL_ECORRUPT;
	return wal_header_decode(buf, h);
}

/* ---- building a segment ---- */

/* Write zeros through [from, size) so later syncs flush data, not metadata. */
static int zero_fill(struct aurawal *log, int fd, uint64_t from, uint64_t size)
{
	uint8_t *z = wal_alloc(log, ZERO_CHUNK);
	int rc = 0;

	if (!z)
		return -ENOMEM;
	memset(z, 0, ZERO_CHUNK);
	for (uint64_t off = from; off < size && rc >= 0; off += ZERO_CHUNK) {
		size_t n = (size_t) (size - off < ZERO_CHUNK ? size - off : ZERO_CHUNK);

		rc = wal_pwrite(log, fd, z, -1, n, off);
		if (rc >= 0 && (size_t) rc != n)
			rc = -EIO;
	}
	wal_free(log, z);
	return rc < 0 ? rc : 0;
}

/* A whole, zeroed file of segment_size bytes at `path` (created exclusively). On an
 * error, *step names the step that failed. */
static int build_file(struct aurawal *log, const char *path, int *fdp, bool sync, const char **step)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0644), rc;

	*step = "creating its file";
	if (fd < 0)
		return -errno;
	*step = "allocating its space";
	rc = posix_fallocate(fd, 0, (off_t) log->segment_size);
	if (rc == 0)
		*step = "zero-filling it";
	rc = rc ? -rc : zero_fill(log, fd, 0, log->segment_size);
	if (rc == 0 && sync) {
		*step = "syncing it";
		rc = wal_fdatasync(log, fd);
	}
	if (rc) {
		close(fd);
		unlink(path);
		return rc;
	}
	*fdp = fd;
	return 0;
}

/* Segment `number`, ready to append to: header written and file renamed - and, if
 * `sync`, both durable. On an error, *step (if step is not NULL) names the step that
 * failed. */
int wal_seg_make_ready(struct aurawal *log, uint64_t number, const char *spare, int *fdp, bool sync,
		       const char **step)
{
	char *final = wal_seg_path(log, number), *tmp = NULL;
	const char *unused;
	int fd = -1, rc;

	if (!step)
		step = &unused;
	*step = "allocating memory";
	if (!final)
		return -ENOMEM;
	if (spare) { /* a recycled segment: its stale records fail their new seed */
		*step = "opening a spare segment";
		fd = open(spare, O_RDWR | O_DIRECT | O_CLOEXEC);
		rc = fd < 0 ? -errno : 0;
	} else {
		rc = asprintf(&tmp, "%s/spare-new-%016" PRIx64 ".seg", log->dir, number) < 0
			 ? -ENOMEM
			 : build_file(log, tmp, &fd, sync, step);
	}
	if (rc == 0) {
		*step = "writing its header";
		rc = write_header(log, fd, number, 0, sync);
	}
	if (rc == 0) {
		*step = "renaming it";
		if (rename(spare ? spare : tmp, final) != 0)
			rc = -errno;
	}
	if (rc == 0 && sync) {
		*step = "syncing the directory";
		rc = sync_dir_fd(log);
	}
	if (rc && fd >= 0) {
		close(fd);
		fd = -1;
	}
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	free(final);
	*fdp = fd;
	return rc;
}

/*
 * One preparation: the next ready segment. Called with mu held; drops it for I/O (and to
 * tell the reporter of a failure whose error differs from the last one's: a retry that
 * fails the same way is not news).
 */
static void prepare_once(struct aurawal *log)
{
	uint64_t number = log->next_number;
	char *spare = log->nspares ? log->spares[--log->nspares] : NULL;
	const char *step = "allocating memory";
	struct wal_segment *s;
	int fd = -1, rc, was = log->space_err;

	pthread_mutex_unlock(&log->mu);
	rc = wal_seg_make_ready(log, number, spare, &fd, log->opts.flush_on_rollover, &step);
	if (rc && spare) { /* the spare was no good: forget it, build a fresh one */
		unlink(spare);
		rc = wal_seg_make_ready(log, number, NULL, &fd, log->opts.flush_on_rollover, &step);
	}
	pthread_mutex_lock(&log->mu);
	free(spare);
	s = rc == 0 ? wal_seg_new(number, fd, log->segment_size) : NULL;
	if (!s) {
		if (fd >= 0)
			close(fd);
		log->space_err = rc ? rc : -ENOMEM;
	} else {
		log->space_err = 0;
		log->next_number++;
		if (!log->opts.flush_on_rollover) { /* owed: see the top of this file */
			s->lazy_hdr = s->unmarked = true;
			log->dir_gen++;
		}
		log->ready = s;
	}
	log->prepare_attempts++;
	pthread_cond_broadcast(&log->cv_ready);
	if (log->space_err && log->space_err != was) {
		char why[160];

		snprintf(why, sizeof(why), "preparing the next segment failed (%s): %s",
			 rc ? step : "allocating memory", aurawal_strerror(log->space_err));
		pthread_mutex_unlock(&log->mu);
		wal_report(log, AURAWAL_REPORT_PREPARE, number, 0, 0, why);
		pthread_mutex_lock(&log->mu);
	}
}

void *wal_preparer_main(void *arg)
{
	struct aurawal *log = arg;

	pthread_mutex_lock(&log->mu);
	while (!log->closing) {
		if (!log->ready && !log->failed) {
			prepare_once(log);
			/* retry later: space may be freed (not when close came meanwhile) */
			if (log->space_err && !log->closing) {
				struct timespec ts;
				uint64_t t;

				clock_gettime(CLOCK_REALTIME, &ts);
				t = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec +
				    PREPARE_RETRY_NS;
				ts.tv_sec = (time_t) (t / 1000000000ull);
				ts.tv_nsec = (long) (t % 1000000000ull);
				pthread_cond_timedwait(&log->cv_prepare, &log->mu, &ts);
			}
			continue;
		}
		pthread_cond_wait(&log->cv_prepare, &log->mu);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}
