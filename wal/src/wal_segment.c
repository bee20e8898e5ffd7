/* SPDX-License-Identifier: MIT */
/*
 * wal_segment.c - segment files: finding them at open, their headers, the preparer
 * thread that keeps the next segment ready. Releasing and listing them: wal_release.c.
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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
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

static struct wal_segment *seg_new(uint64_t number, int fd, uint64_t size)
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

static void seg_append(struct aurawal *log, struct wal_segment *s)
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
static int read_header(struct aurawal *log, int fd, uint8_t *buf, struct wal_seg_header *h)
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
static int make_ready(struct aurawal *log, uint64_t number, const char *spare, int *fdp, bool sync,
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
	rc = make_ready(log, number, spare, &fd, log->opts.flush_on_rollover, &step);
	if (rc && spare) { /* the spare was no good: forget it, build a fresh one */
		unlink(spare);
		rc = make_ready(log, number, NULL, &fd, log->opts.flush_on_rollover, &step);
	}
	pthread_mutex_lock(&log->mu);
	free(spare);
	s = rc == 0 ? seg_new(number, fd, log->segment_size) : NULL;
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

/* ---- opening ---- */

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

	if (blk && read_header(log, fd, blk, &h) == 0)
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
	    seg_new(number, fd, MIN(file_size, h ? h->segment_size : log->segment_size));

	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->bad_hdr = !h;
	/* block 0 is still in scratch: its summary, if any */
	if (h)
		wal_summary_decode(log->scratch, number, wal_seed(log->log_id, number),
				   h->segment_size, file_size, &s->sum);
	seg_append(log, s);
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
	rc = fstat(fd, &st) == 0 ? read_header(log, fd, log->scratch, &h) : -errno;
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
	int fd, rc = make_ready(log, number, NULL, &fd, true, NULL);

	if (rc)
		return rc;
	s = seg_new(number, fd, log->segment_size);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	seg_append(log, s);
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
		rc = make_ready(log, 1, NULL, &fd, true, NULL);
	if (rc)
		return rc;
	s = seg_new(1, fd, log->segment_size);
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	seg_append(log, s);
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
