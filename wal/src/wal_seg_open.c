/* SPDX-License-Identifier: MIT */
/*
 * wal_seg_open.c - finding the segment files at open: listing the directory, checking
 * each header against the log (lost spares are deleted; stray, misnamed or damaged ones
 * are reported), finishing interrupted releases, gaps RELEASED does not explain, and
 * creating a new log; and closing the files again.
 *
 * Runs before the log's threads start, or after they stopped (wal_segments_close): no
 * lock is taken. Must never delete a file that may hold this log's records - only
 * recycled spares whose header names a later segment, segments RELEASED names, and
 * those a point-in-time cut drops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wal_internal.h"

static int parse_name(const char *name, uint64_t *number)
{
	char *end;

	if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
		return -1;
	errno = 0;
	*number = strtoull(name, &end, 16);
	return (errno || end != name + 16 || *number == 0) ? -1 : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

int wal_log_present(struct aurawal *log)
{
	DIR *d = opendir(log->dir);
	struct dirent *e;
	uint64_t num;
	int rc = -ENOENT;

	if (!d)
		return -errno;
	while (rc == -ENOENT && (e = readdir(d)))
		if (parse_name(e->d_name, &num) == 0)
			rc = 0;
	closedir(d);
	return rc;
}

/* The numbered segments in the directory, sorted; spares remembered. */
static int list_dir(struct aurawal *log, uint64_t **numbers, size_t *count)
{
	DIR *d = opendir(log->dir);
	size_t n = 0, cap = 0;
	uint64_t *v = NULL, num;
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "spare-", 6) == 0) {
			char *p = NULL;

			/* A leftover of an interrupted preparation or release - or, seen by an
			 * inspector (read-only, perhaps while the log is live), a spare its
			 * owner is about to use: never touch anything then. */
			if (!log->read_only && asprintf(&p, "%s/%s", log->dir, e->d_name) >= 0)
				unlink(p);
			free(p);
			continue;
		}
		if (parse_name(e->d_name, &num) != 0)
			continue;
		if (n == cap) {
			uint64_t *w = realloc(v, sizeof(*v) * (cap = cap ? 2 * cap : 16));

			if (!w) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = w;
		}
		v[n++] = num;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*numbers = v;
	*count = n;
	return 0;
}

/* Does the file named segment `number` hold an intact header of that segment of log
 * `log_id`? (A copy of a spare's file left under its old name: the spare rule below.) */
static bool names_itself(struct aurawal *log, uint64_t number, uint64_t log_id)
{
	char *path = wal_seg_path(log, number);
	int fd = path ? open(path, O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
	/* Not into log->scratch: the caller's header block is still there (its summary). */
	uint8_t *blk = fd >= 0 ? wal_alloc(log, WAL_HEADER_BLOCK) : NULL;
	struct wal_seg_header h;
	bool ok = false;

	if (blk && wal_seg_read_header(log, fd, blk, &h) == 0)
		ok = h.number == number && h.log_id == log_id;
	if (blk)
		wal_free(log, blk);
	if (fd >= 0)
		close(fd);
	free(path);
	return ok;
}

/*
 * A file named `number` whose intact header names a higher segment: a recycled spare
 * whose renames (release, then ready) were lost in a crash - or a segment file renamed
 * by hand or swapped with another. A lost rename leaves no file of the number its header
 * names nor any above it (the log had not gone past that segment durably), unless that
 * file is a copy of this one (it names itself). Anything else is a misnamed segment:
 * deleting it would drop its records without a word (docs/wal_format.md, "Recovery
 * rule"), so it is a bad header. `max`: the highest segment number in the directory.
 */
static bool is_lost_spare(struct aurawal *log, const struct wal_seg_header *h, uint64_t max)
{
	return h->number > max || names_itself(log, h->number, h->log_id);
}

/* The segment numbers found in the directory, sorted. */
struct seg_names {
	const uint64_t *v;
	size_t n;
};

static bool has_name(const struct seg_names *names, uint64_t number)
{
	return bsearch(&number, names->v, names->n, sizeof(*names->v), cmp_u64) != NULL;
}

/*
 * An intact header of this log naming another segment than the file's name, and no
 * crash leftover: a higher number that is no lost spare (above), or a lower one whose
 * own file exists - a crash leaves a lower number only in a recycled file whose new
 * header was lost, and that number was released, its file being this one. A segment
 * file renamed or swapped, then: taken for a break, its records would be dropped.
 */
static bool misnamed(const struct wal_seg_header *h, uint64_t number, const struct seg_names *names)
{
	return h->number > number || has_name(names, h->number);
}

/*
 * An intact header of segment `number` that names another log (or size), or another
 * segment of this log (misnamed): reported. True if refused - unless only inspecting
 * (read-only), where the segment is kept.
 */
static bool check_stray(struct aurawal *log, const struct wal_seg_header *h, uint64_t number,
			const struct seg_names *names)
{
	/* An intact header of another log (or size) is no torn rollover of this one - no
	 * crash writes one: a stray file, here or before it (the first segment found names
	 * the log). Recovery would take it for the end of the log and drop what follows,
	 * this log's own segments perhaps: refuse, unless only inspecting. */
	if (h->log_id != log->log_id || h->segment_size != log->segment_size) {
		wal_report(log, AURAWAL_REPORT_CORRUPTION, number, 0, WAL_HEADER_BLOCK,
			   "an intact header of another log than the first segment's (a stray "
			   "segment file?)");
		return !log->read_only;
	}
	if (h->number != number && misnamed(h, number, names)) {
		wal_report(log, AURAWAL_REPORT_CORRUPTION, number, 0, WAL_HEADER_BLOCK,
			   "an intact header of another segment of the log (a segment file "
			   "renamed?)");
		return !log->read_only;
	}
	return false;
}

/* Put the opened segment `number` (fd, file_size bytes) at the end of the list; h is its
 * header, NULL if that is bad (bad_hdr). 0, or -ENOMEM (fd closed). */
static int add_segment(struct aurawal *log, uint64_t number, int fd, const struct wal_seg_header *h,
		       uint64_t file_size)
{
	struct wal_segment *s =
	    wal_seg_new(number, fd, MIN(file_size, h ? h->segment_size : log->segment_size));

	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->bad_hdr = !h;
	/* block 0 is still in scratch: its summary, if any */
	if (h)
		wal_summary_decode(log->scratch, number, wal_seed(log->log_id, number),
				   h->segment_size, file_size, &s->sum);
	wal_seg_append(log, s);
	return 0;
}

/*
 * Open segment `number`, check its header against the log. 0 = opened; 1 = skipped, a
 * recycled spare whose header names a later segment (docs/wal_format.md, "Recovery
 * rule"; deleted unless read-only); < 0 = error. A bad header of any segment but the
 * first is not an error here: the segment is kept with bad_hdr, and recovery decides
 * whether it is a break after a crash or corruption. `names`: the segment numbers in the
 * directory.
 */
static int open_segment(struct aurawal *log, uint64_t number, bool first,
			const struct seg_names *names)
{
	char *path = wal_seg_path(log, number);
	struct wal_seg_header h;
	struct stat st;
	bool bad;
	int fd, rc;

	if (!path)
		return -ENOMEM;
	fd = open(path, (log->read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		free(path);
		return -errno;
	}
	rc = fstat(fd, &st) == 0 ? wal_seg_read_header(log, fd, log->scratch, &h) : -errno;
	if (rc == 0 && h.number > number &&
	    (first || (h.log_id == log->log_id && h.segment_size == log->segment_size)) &&
	    is_lost_spare(log, &h, names->v[names->n - 1])) {
		close(fd);
		if (!log->read_only)
			unlink(path);
		free(path);
		return 1;
	}
	free(path);
	if (rc == 0 && first) {
		log->log_id = h.log_id;
		log->segment_size = h.segment_size;
	}
	if (rc == AURAWAL_EFORMAT && memcmp(log->scratch, WAL_MAGIC, 8) != 0)
		rc = AURAWAL_ECORRUPT; /* not even the magic: garbage, not a newer version */
	bad =
	    rc == AURAWAL_ECORRUPT || (rc == 0 && (h.log_id != log->log_id || h.number != number ||
						   h.segment_size != log->segment_size));
	if (rc < 0 && rc != AURAWAL_ECORRUPT) { /* I/O error, or a version we cannot read */
		if (rc == AURAWAL_EFORMAT)
			wal_report(log, AURAWAL_REPORT_CORRUPTION, number, 0, WAL_HEADER_BLOCK,
				   "not a segment of a supported version");
		close(fd);
		return rc;
	}
	if (bad && first) {
		wal_report(log, AURAWAL_REPORT_CORRUPTION, number, 0, WAL_HEADER_BLOCK,
			   "bad segment header");
		close(fd);
		return AURAWAL_ECORRUPT;
	}
	if (rc == 0 && check_stray(log, &h, number, names)) {
		close(fd);
		return AURAWAL_ECORRUPT;
	}
	return add_segment(log, number, fd, bad ? NULL : &h, (uint64_t) st.st_size);
}

/* Open: make segment `number` anew, flushed, at the end of the list (a sealed last
 * segment whose successor's rename was lost in a crash). */
int wal_seg_remake(struct aurawal *log, uint64_t number, struct wal_segment **out)
{
	struct wal_segment *s;
	int fd, rc = wal_seg_make_ready(log, number, NULL, &fd, true, NULL);

	if (rc)
		return rc;
	s = wal_seg_new(number, fd, log->segment_size);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	wal_seg_append(log, s);
	log->next_number = MAX(log->next_number, number + 1);
	*out = s;
	return 0;
}

/*
 * fsync the directory holding the log's directory: the log's own entry - made by this
 * open's mkdir, by a failed open's before it, or by the caller - is durable only then,
 * and with it everything later acknowledged. Done when the log is created, before its
 * first segment: an open that fails here leaves no segment, so its retry creates the
 * log again and syncs again.
 */
static int sync_parent_dir(struct aurawal *log)
{
	char *parent = strdup(log->dir), *slash;
	size_t len = parent ? strlen(parent) : 0;
	int fd, rc;

	if (!parent)
		return -ENOMEM;
	while (len > 1 && parent[len - 1] == '/') /* "a/log/" is "a/log" */
		parent[--len] = '\0';
	slash = strrchr(parent, '/');
	if (slash)
		slash[slash == parent] = '\0'; /* "/log": the parent is "/" */
	fd = open(slash ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(parent);
	if (fd < 0)
		return -errno;
	rc = wal_fsync(log, fd);
	close(fd);
	return rc;
}

/* A brand-new log: a random id and segment 1. */
static int create_log(struct aurawal *log)
{
	struct wal_segment *s;
	int fd, rc;

	if (getrandom(&log->log_id, sizeof(log->log_id), 0) != sizeof(log->log_id))
		return -errno;
	log->segment_size = log->opts.segment_size;
	rc = sync_parent_dir(log);
	if (rc == 0)
		rc = wal_seg_make_ready(log, 1, NULL, &fd, true, NULL);
	if (rc)
		return rc;
	s = wal_seg_new(1, fd, log->segment_size);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	wal_seg_append(log, s);
	log->next_number = 2;
	log->created = true;
	return 0;
}

static bool released_has(const struct aurawal *log, uint64_t n)
{
	for (size_t i = 0; i < log->nreleased; i++)
		if (log->released[i] == n)
			return true;
	return false;
}

/* A segment listed in RELEASED but still present: its release was interrupted. */
static void finish_release(struct aurawal *log, uint64_t n)
{
	char *path = wal_seg_path(log, n);

	if (path && !log->read_only)
		unlink(path);
	free(path);
}

/*
 * Every number between two present segments must have been released on purpose; a
 * missing one is a lost file: damage followed by valid records (docs/wal_format.md).
 * 0 = no gap, or inspect mode (reported: read past it); 1 = point-in-time recovery cuts
 * the log before it (reported as dropped); AURAWAL_ECORRUPT (strict).
 */
static int check_gap(struct aurawal *log, uint64_t prev, uint64_t next)
{
	bool pit = log->opts.recovery == AURAWAL_RECOVER_POINT_IN_TIME;

	for (uint64_t m = prev + 1; m < next; m++) {
		if (released_has(log, m))
			continue;
		wal_report(log, pit ? AURAWAL_REPORT_DROPPED : AURAWAL_REPORT_CORRUPTION, m, 0, 0,
			   "a segment is missing between two others (not in RELEASED)");
		if (log->opts.recovery == AURAWAL_RECOVER_INSPECT)
			return 0;
		return pit ? 1 : AURAWAL_ECORRUPT;
	}
	return 0;
}

/* Point-in-time recovery cut the log before a gap: the segment files after it are
 * dropped (reported) and deleted, and their numbers given out again. */
static int drop_files(struct aurawal *log, const uint64_t *nums, size_t n, uint64_t last)
{
	for (size_t i = 0; i < n; i++) {
		char *path = wal_seg_path(log, nums[i]);

		if (!path)
			return -ENOMEM;
		wal_report(log, AURAWAL_REPORT_DROPPED, nums[i], 0, 0,
			   "after a missing segment (point-in-time recovery)");
		if (unlink(path) != 0 && errno != ENOENT) {
			free(path);
			return -errno;
		}
		free(path);
	}
	return wal_released_forget_above(log, last);
}

int wal_segments_open(struct aurawal *log, bool create)
{
	uint64_t *nums = NULL, prev = 0;
	size_t n = 0, opened = 0;
	bool cut = false;
	int rc = list_dir(log, &nums, &n);
	struct seg_names names = { nums, n };

	if (rc == 0)
		rc = wal_released_load(log);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (released_has(log, nums[i])) {
			finish_release(log, nums[i]);
			continue;
		}
		if (opened && (rc = check_gap(log, prev, nums[i])) != 0) {
			if (rc == 1) { /* cut: the log ends in prev */
				rc = drop_files(log, nums + i, n - i, prev);
				cut = true;
			}
			break;
		}
		rc = open_segment(log, nums[i], opened == 0, &names);
		if (rc == 1) { /* a recycled spare left under an old name */
			rc = 0;
			continue;
		}
		prev = nums[i];
		opened++;
	}
	if (rc == 0 && opened == 0)
		n = 0;
	if (rc == 0 && n > 0)
		log->next_number = cut ? prev + 1 : MAX(prev, nums[n - 1]) + 1;
	free(nums);
	if (rc == 0 && n == 0)
		rc = create ? create_log(log) : -ENOENT;
	return rc;
}

void wal_segments_close(struct aurawal *log)
{
	struct wal_segment *s = log->segs;

	while (s) {
		struct wal_segment *next = s->next;

		if (s->fd >= 0)
			close(s->fd);
		free(s);
		s = next;
	}
	log->segs = log->segs_tail = NULL;
	if (log->ready) {
		close(log->ready->fd);
		free(log->ready);
		log->ready = NULL;
	}
	for (int i = 0; i < log->nspares; i++)
		free(log->spares[i]);
	free(log->spares);
	log->spares = NULL;
	log->nspares = 0;
}
