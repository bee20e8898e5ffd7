/* SPDX-License-Identifier: MIT */
/*
 * wal_release.c - releasing segments (recycled as spares or deleted) and the RELEASED
 * record of segments released out of order (docs/wal_format.md), and listing segments.
 *
 * Lock: log->mu protects the segment list and RELEASED's in-memory copy; rel_mu
 * serialises releases. File work is done without mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "wal_internal.h"

/* ---- release and listing ---- */

/* mu held: forget RELEASED entries below the oldest remaining segment. */
static void released_prune(struct aurawal *log)
{
	uint64_t oldest = log->segs ? log->segs->number : UINT64_MAX;
	size_t k = 0;

	for (size_t i = 0; i < log->nreleased; i++)
		if (log->released[i] > oldest)
			log->released[k++] = log->released[i];
	log->nreleased = k;
}

/*
 * mu held: take s out of the list and dispose of its file. A reader still using it
 * (an iterator, a read, a flush that holds a reference) keeps its descriptor until it
 * is done, but the name goes now: the release is acknowledged (and its directory synced)
 * when the caller returns, and a file left under its name until some later put - after
 * that sync, or never if the process dies first - would be found again at open, in
 * front of the log or, after later releases of segments then seen as the oldest (which
 * RELEASED does not list), before a gap nothing explains: corruption. Such a file is
 * deleted, not recycled: its reader still reads it.
 */
static void unlink_segment(struct aurawal *log, struct wal_segment *s)
{
	struct wal_segment **pp = &log->segs, *prev = NULL;
	char *path;

	while (*pp != s) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	*pp = s->next;
	if (log->segs_tail == s)
		log->segs_tail = prev;
	s->released = true;
	if (s->refs == 0) {
		wal_seg_dispose(log, s);
		return;
	}
	path = wal_seg_path(log, s->number);
	if (path && unlink(path) == 0) {
		s->unnamed = true;
		log->dir_gen++; /* owed until a directory sync, as wal_seg_dispose's */
	}
	free(path);
}

/*
 * mu held (and rel_mu, so s stays in the list): wait until segment s is settled - its
 * last batch (the SEAL, and non-durable records before it) written and synced, its seal
 * block written - so that closing its file cannot race with the writer's I/O on it (nor
 * let the fd number be reused under that I/O), and the release never outruns data the
 * writer still owes. The writer always writes a sealed batch promptly, so this only
 * waits for I/O in progress; it gives up on a failed log or a lack of space.
 */
static int wait_settled(struct aurawal *log, struct wal_segment *s)
{
	while (!wal_seg_settled(s)) {
		if (log->failed)
			return log->failed;
		if (log->enospc)
			return -ENOSPC;
		if (log->closing)
			return AURAWAL_ECLOSED;
		pthread_cond_wait(&log->cv_done, &log->mu);
	}
	return 0;
}

/* Sync the directory; on success it holds every change counted up to `gen`. mu not held. */
static int sync_dir_upto(struct aurawal *log, uint64_t gen)
{
	int rc = sync_dir_fd(log);

	if (rc == 0) {
		pthread_mutex_lock(&log->mu);
		log->dir_synced = MAX(log->dir_synced, gen);
		pthread_mutex_unlock(&log->mu);
	}
	return rc;
}

int wal_release_segments(struct aurawal *log, uint64_t below)
{
	int released = 0, rc = 0;
	uint64_t gen;

	pthread_mutex_lock(&log->rel_mu);
	pthread_mutex_lock(&log->mu);
	while (log->segs && log->segs->number < below && log->segs != log->active) {
		struct wal_segment *s = log->segs;

		rc = wait_settled(log, s);
		if (rc)
			break;
		if (s != log->segs)
			continue; /* cannot happen (rel_mu): look again */
		unlink_segment(log, s);
		released++;
	}
	released_prune(log);
	gen = log->dir_gen;
	pthread_mutex_unlock(&log->mu);
	pthread_mutex_unlock(&log->rel_mu);
	/* No directory sync (unless flush_on_rollover): the renames are owed (wal_seg_dispose)
	 * and paid before the next durable write. A release lost in a crash leaves old,
	 * whole segments in front of the log, which the next open reads again. With
	 * flush_on_rollover the debt is paid now - and if that sync fails, it stays owed
	 * (dir_synced does not move): the next durable write, sync or close pays it, and
	 * fails the log if it fails. The segments are released all the same: they are out
	 * of the log, and the call says how many (aurawal.h). */
	if (released && log->opts.flush_on_rollover)
		(void) sync_dir_upto(log, gen);
	return released ? released : rc;
}

/* ---- RELEASED (docs/wal_format.md) ---- */

#define RELEASED_MAX (1u << 20)

/* RELEASED's last line, "end " and 16 hex digits and a newline: its length. */
#define RELEASED_END_LINE 21

/* Is [p, p + n) a decimal number, as released_write writes one? */
static bool decimal_line(const char *p, size_t n)
{
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/*
 * RELEASED is exactly what released_write writes - lines of decimal numbers, then the
 * end line, then nothing - so every byte of it is checked: the checksum covers the
 * numbers, and the end line and what follows it (nothing) are checked as text.
 */
static int released_parse(struct aurawal *log, char *text, size_t len)
{
	const char *end_line = text + len - RELEASED_END_LINE;
	uint64_t sum = 0;

	if (len < RELEASED_END_LINE || (end_line > text && end_line[-1] != '\n') ||
	    strncmp(end_line, "end ", 4) != 0 || end_line[RELEASED_END_LINE - 1] != '\n')
		return AURAWAL_ECORRUPT;
	for (int i = 4; i < RELEASED_END_LINE - 1; i++) {
		char c = end_line[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return AURAWAL_ECORRUPT;
		sum = sum << 4 | (uint64_t) (c <= '9' ? c - '0' : c - 'a' + 10);
	}
	if (sum != XXH3_64bits(text, (size_t) (end_line - text)))
		return AURAWAL_ECORRUPT;
	for (const char *p = text; p < end_line;) {
		const char *nl = memchr(p, '\n', (size_t) (end_line - p));
		uint64_t *v;

		if (!nl || !decimal_line(p, (size_t) (nl - p)))
			return AURAWAL_ECORRUPT;
		v = realloc(log->released, sizeof(*v) * (log->nreleased + 1));
		if (!v)
			return -ENOMEM;
		log->released = v;
		log->released[log->nreleased++] = strtoull(p, NULL, 10);
		p = nl + 1;
	}
	return 0;
}

/* Load RELEASED (open). A RELEASED.tmp left by a crash in released_write is never
 * needed - RELEASED is replaced only by the rename of a complete, synced one - and is
 * deleted, unless only inspecting. */
int wal_released_load(struct aurawal *log)
{
	char *path = NULL, *text = NULL;
	int fd, rc;
	struct stat st;

	if (!log->read_only) {
		if (asprintf(&path, "%s/RELEASED.tmp", log->dir) < 0)
			return -ENOMEM;
		if (unlink(path) != 0 && errno != ENOENT) {
			rc = -errno;
			free(path);
			return rc;
		}
		free(path);
	}
	if (asprintf(&path, "%s/RELEASED", log->dir) < 0)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (st.st_size > RELEASED_MAX)
		rc = AURAWAL_ECORRUPT;
	else if (!(text = malloc((size_t) st.st_size + 1)))
		rc = -ENOMEM;
	else
		rc = wal_pread(log, fd, text, -1, (size_t) st.st_size, 0);
	close(fd);
	if (rc >= 0) {
		text[rc] = '\0';
		rc = released_parse(log, text, (size_t) rc);
	}
	free(text);
	if (rc == AURAWAL_ECORRUPT) {
		wal_report(log, AURAWAL_REPORT_CORRUPTION, 0, 0, 0, "the RELEASED file is damaged");
		/* Inspect mode reads on without it: the gaps it explained show as missing
		 * segments (check_gap), the segments it listed as present ones. */
		if (log->read_only) {
			log->nreleased = 0;
			rc = 0;
		}
	}
	return rc < 0 ? rc : 0;
}

/* Write RELEASED with `set` (n numbers) atomically. rel_mu held, mu not held. *renamed
 * (may be NULL): the new file took RELEASED's name - so on an error, it failed the
 * directory sync after the rename, and the new record stands but may not be durable. */
static int released_write(struct aurawal *log, const uint64_t *set, size_t n, bool *renamed)
{
	size_t cap = 32 * (n + 1) + 64, len = 0;
	char *text = malloc(cap), *tmp = NULL, *final = NULL;
	int fd = -1, rc = -ENOMEM;

	if (!text || asprintf(&tmp, "%s/RELEASED.tmp", log->dir) < 0 ||
	    asprintf(&final, "%s/RELEASED", log->dir) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		len += (size_t) snprintf(text + len, cap - len, "%" PRIu64 "\n", set[i]);
	len += (size_t) snprintf(text + len, cap - len, "end %016" PRIx64 "\n",
				 XXH3_64bits(text, len));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	rc = fd < 0 ? -errno : wal_pwrite(log, fd, text, -1, len, 0);
	if (rc >= 0)
		rc = rc == (int) len ? wal_fdatasync(log, fd) : -EIO;
	if (rc == 0 && rename(tmp, final) != 0)
		rc = -errno;
	if (rc == 0 && renamed)
		*renamed = true;
	if (rc == 0)
		rc = sync_dir_fd(log);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	free(tmp);
	free(final);
	return rc;
}

/*
 * Record `set` (the current record plus a segment being released) in RELEASED; rel_mu
 * held. If the directory sync after the rename fails, the new record - naming a segment
 * the failed release keeps - is in place, and the next open would delete that segment:
 * the current one (log->released, which rel_mu keeps still) is put back. Should that
 * fail too, the next successful RELEASED replaces it (aurawal.h says what is left).
 */
static int released_persist(struct aurawal *log, const uint64_t *set, size_t n)
{
	bool renamed = false;
	int rc = released_write(log, set, n, &renamed);

	if (rc && renamed)
		(void) released_write(log, log->released, log->nreleased, NULL);
	return rc;
}

/* Open, no threads yet: segments after `number` were dropped and their numbers will be
 * used again - so RELEASED must not name any of them (the next open would delete the new
 * segment as released). */
int wal_released_forget_above(struct aurawal *log, uint64_t number)
{
	size_t k = 0;

	for (size_t i = 0; i < log->nreleased; i++)
		if (log->released[i] <= number)
			log->released[k++] = log->released[i];
	if (k == log->nreleased)
		return 0;
	log->nreleased = k;
	return log->read_only ? 0 : released_write(log, log->released, k, NULL);
}

/* mu held: find segment `number` (*sp) and wait until it may go. *setp: when it is not
 * the oldest, RELEASED with it added (*n entries; the gap is recorded first), else NULL. */
static int release_find(struct aurawal *log, uint64_t number, struct wal_segment **sp,
			uint64_t **setp, size_t *n)
{
	struct wal_segment *s;
	uint64_t *set = NULL;
	int rc;

	for (s = log->segs; s && s->number != number; s = s->next)
		;
	if (!s)
		rc = -ENOENT;
	else if (s == log->active)
		rc = -EBUSY;
	else
		rc = wait_settled(log, s);
	if (rc == 0 && s != log->segs && !(set = malloc(sizeof(*set) * (log->nreleased + 1))))
		rc = -ENOMEM;
	if (set) { /* not the oldest: record the gap first */
		if (log->nreleased)
			memcpy(set, log->released, sizeof(*set) * log->nreleased);
		set[log->nreleased] = number;
		*n = log->nreleased + 1;
	}
	*sp = s;
	*setp = set;
	return rc;
}

/* mu held, the release done on disk: install the new RELEASED (set, n entries; NULL when
 * the oldest went, which needs none) and take segment s out of the log. */
static void release_unlink(struct aurawal *log, struct wal_segment *s, uint64_t *set, size_t n)
{
	if (set) {
		free(log->released);
		log->released = set;
		log->nreleased = n;
	}
	unlink_segment(log, s);
	released_prune(log);
}

AURAWAL_API int aurawal_release_segment(aurawal_t *log, uint64_t number)
{
	struct wal_segment *s;
	uint64_t *set, gen;
	size_t n = 0;
	bool dirty, recorded = false;
	int rc;

	if (!log)
		return -EINVAL;
	if (log->read_only)
		return -EROFS;
	pthread_mutex_lock(&log->rel_mu);
	pthread_mutex_lock(&log->mu);
	rc = release_find(log, number, &s, &set, &n);
	gen = log->dir_gen;
	dirty = gen != log->dir_synced;
	pthread_mutex_unlock(&log->mu);
	/* The new RELEASED no longer names segments below the oldest (released_prune), and
	 * never named those released as the oldest; removals of them that no sync covered
	 * yet (aurawal_release_before without flush_on_rollover) must be durable before it
	 * is: nothing orders a rename after earlier unlinks in the same directory, and a
	 * crash could otherwise keep such a segment in front of a gap RELEASED no longer
	 * explains. */
	if (rc == 0 && set && dirty)
		rc = sync_dir_upto(log, gen);
	if (rc == 0 && set)
		rc = released_persist(log, set, n);
	pthread_mutex_lock(&log->mu);
	if (rc == 0) {
		release_unlink(log, s, set, n);
		recorded = set != NULL;
		set = NULL; /* log->released now, if any */
		gen = log->dir_gen;
	}
	pthread_mutex_unlock(&log->mu);
	free(set);
	/* The segment is out of the log now, whatever this sync does. If it fails the
	 * removal stays owed (dir_synced does not move: the next durable write, sync or
	 * close pays it, or fails the log). A segment RELEASED names is released durably
	 * all the same - the next open deletes its file if a crash kept it: 0. The oldest
	 * (not named: released_prune) may be found again in front of the log until then:
	 * the error says so (aurawal.h). */
	if (rc == 0 && (rc = sync_dir_upto(log, gen)) != 0 && recorded)
		rc = 0;
	pthread_mutex_unlock(&log->rel_mu);
	return rc;
}

AURAWAL_API int aurawal_release_before(aurawal_t *log, aurawal_loc_t loc)
{
	if (!log)
		return -EINVAL;
	if (log->read_only)
		return -EROFS;
	return wal_release_segments(log, loc.segment);
}

AURAWAL_API int aurawal_list_segments(aurawal_t *log, aurawal_segment_info_t *out, size_t max,
				      size_t *count)
{
	size_t n = 0;

	if (!log || (!out && max))
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	for (struct wal_segment *s = log->segs; s; s = s->next, n++) {
		if (n >= max)
			continue;
		out[n] = (aurawal_segment_info_t){ s->number, s->first_seq, s->last_seq,
						   s->data_end - WAL_HEADER_BLOCK, s->sealed };
	}
	pthread_mutex_unlock(&log->mu);
	if (count)
		*count = n;
	return 0;
}
