/* SPDX-License-Identifier: MIT */
/*
 * A bounded randomized on-disk corruption fuzz of the log. Each round writes a log with
 * a random segment size (several segments), records of random sizes (0 bytes to a few
 * blocks, some large), some durable appends and syncs, some releases (the oldest
 * segments, and middle ones: RELEASED), closes it cleanly and remembers every record
 * (location, sequence, content). Then it damages the closed log in ONE random way:
 * 1-8 bits flipped in a segment header, a record header, a payload, padding, the bytes
 * after the records, RELEASED or LOCK; a 512 B or 4 KiB block zeroed; a file truncated;
 * garbage appended; a middle segment deleted; segment files renamed. And checks:
 *   - waldump (--verify and --all, the built binary) never crashes and exits non-zero
 *     when the library detects the damage;
 *   - an inspecting open and a strict one (twice: the first may write) either fail with
 *     a documented error or succeed; after a success the iterator yields each record
 *     with its exact location, sequence and content - never one that was not written
 *     or was released - and either ends with every record or stops with an error; a
 *     record is never skipped (inspect mode: unless it reported corruption);
 *   - records lost without an error may only be those at or after the damage in the
 *     last segment holding records (a torn tail, the documented exception) - or those
 *     of the oldest segment when its file is renamed away, which is what
 *     aurawal_release_before() leaves: damage anywhere else is reported, by the open,
 *     the iterator or aurawal_read; damage to RELEASED fails a strict open;
 *   - aurawal_read (or aurawal_read_async) of each record returns its exact content or
 *     an error, and an error when the damage changed its bytes;
 *   - point-in-time recovery opens (or fails with a documented error) and keeps only
 *     records exactly as written.
 * Seeds are printed. WAL_CORRUPT_FUZZ_ROUNDS sets the number of rounds (default: as
 * many as fit in about 10 s, at most DEFAULT_ROUNDS), WAL_CORRUPT_FUZZ_SEED the base
 * seed; a round is replayed with WAL_CORRUPT_FUZZ_SEED=<its seed>
 * WAL_CORRUPT_FUZZ_ROUNDS=1. WAL_CORRUPT_FUZZ_DIR puts the logs elsewhere (a tmpfs
 * makes long runs faster), WAL_CORRUPT_FUZZ_VERBOSE prints each round's damage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "wal_format.h" /* align_up */
#include "wal_test.h"

#ifndef WALDUMP_PATH
#define WALDUMP_PATH ""
#endif

#define DEFAULT_SEED	  0xC0AA0751ull
#define DEFAULT_ROUNDS	  400
#define DEFAULT_BUDGET_NS (10ull * 1000000000ull)
#define MAX_RECS	  3000
#define MAX_FILES	  64
#define MIN(a, b)	  ((a) < (b) ? (a) : (b))
#define MAX(a, b)	  ((a) > (b) ? (a) : (b))

extern char **environ;

struct rec {
	aurawal_loc_t loc;
	uint64_t seq, id;
	bool gone;  /* its segment was released */
	bool fresh; /* appended after the damage */
	bool seen;  /* returned by the last iteration */
};

enum dmg_kind { D_FLIP, D_ZERO, D_TRUNC, D_APPEND, D_DELETE, D_RENAME, D_KINDS };

static const char *const dmg_names[D_KINDS] = { "flip",	  "zero",   "truncate",
						"append", "delete", "rename" };

struct round {
	uint64_t seed, rng;
	char *dir;
	aurawal_options_t o;
	struct rec recs[MAX_RECS];
	int nrecs;
	uint64_t next_id;
	uint64_t last_seg; /* the last segment holding records */
	/* the damage */
	enum dmg_kind kind;
	char what[256];
	uint64_t dseg;	      /* segment file damaged (0: another file, or none) */
	uint64_t dseg2;	      /* a second one (rename) */
	uint64_t oldest_gone; /* the oldest segment's file renamed away: as if released */
	uint64_t dlo, dhi;    /* bytes changed in dseg: [dlo, dhi) (whole file: 0, UINT64_MAX) */
	bool changed;	      /* some byte of a segment file changed */
	bool released;	      /* RELEASED was damaged: a strict open must fail */
	bool detected;	      /* the library reported the damage (an error) */
	char violation[512];
};

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t below(struct round *r, uint64_t n)
{
	return n ? rnd(&r->rng) % n : 0;
}

static void violate(struct round *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violate(struct round *r, const char *fmt, ...)
{
	va_list ap;

	if (r->violation[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->violation, sizeof(r->violation), fmt, ap);
	va_end(ap);
}

static void quiet_reporter(const aurawal_report_t *rep, void *arg)
{
	(void) rep;
	(void) arg;
}

static char *path_of(const struct round *r, const char *name)
{
	char *p = NULL;

	cr_assert_geq(asprintf(&p, "%s/%s", r->dir, name), 0);
	return p;
}

static char *seg_path(const struct round *r, uint64_t n)
{
	char name[32];

	snprintf(name, sizeof(name), "%016llx.seg", (unsigned long long) n);
	return path_of(r, name);
}

/* ---- writing the log ---- */

static uint32_t record_size(struct round *r)
{
	uint64_t p = below(r, 100);

	if (p < 35)
		return (uint32_t) below(r, 65);
	if (p < 65)
		return (uint32_t) (65 + below(r, 1000));
	if (p < 92)
		return (uint32_t) (1000 + below(r, 3 * 4096 + 200));
	return (uint32_t) (20000 + below(r, 280000));
}

static void append_one(struct round *r, aurawal_t *log, unsigned flags)
{
	struct rec *x = &r->recs[r->nrecs];
	uint32_t len = record_size(r);
	uint8_t *p = malloc(len ? len : 1);
	struct iovec iov = { p, len };
	int rc;

	x->id = r->seed * 31 + r->next_id++;
	payload_fill(p, len, x->id);
	rc = aurawal_append(log, &iov, 1, flags, &x->loc, &x->seq);
	cr_assert_eq(rc, 0, "seed %#llx: append: %s", (unsigned long long) r->seed,
		     aurawal_strerror(rc));
	free(p);
	r->nrecs++;
}

/* The segments of the log, oldest first (at most MAX_FILES). */
static size_t segments(aurawal_t *log, aurawal_segment_info_t *v)
{
	size_t n = 0;

	cr_assert_eq(aurawal_list_segments(log, v, MAX_FILES, &n), 0);
	return n < MAX_FILES ? n : MAX_FILES;
}

static void mark_gone(struct round *r, aurawal_t *log)
{
	aurawal_segment_info_t v[MAX_FILES];
	size_t n = segments(log, v);

	for (int i = 0; i < r->nrecs; i++) {
		bool present = false;

		for (size_t k = 0; k < n; k++)
			present |= v[k].number == r->recs[i].loc.segment;
		r->recs[i].gone = !present;
	}
}

/* Release the oldest segment, or one in the middle (RELEASED). */
static void release_some(struct round *r, aurawal_t *log)
{
	aurawal_segment_info_t v[MAX_FILES];
	size_t n = segments(log, v);
	int rc;

	if (n < 3)
		return;
	if (below(r, 2)) {
		rc = aurawal_release_before(log, (aurawal_loc_t){ v[1].number, 0, 0 });
		cr_assert_geq(rc, 0, "release_before: %s", aurawal_strerror(rc));
	} else {
		rc = aurawal_release_segment(log, v[1 + below(r, n - 2)].number);
		cr_assert_eq(rc, 0, "release_segment: %s", aurawal_strerror(rc));
	}
	mark_gone(r, log);
}

static void write_log(struct round *r)
{
	uint64_t target = 3 + below(r, 4), first;
	aurawal_segment_info_t v[MAX_FILES];
	aurawal_t *log;
	size_t n;

	r->o = wal_opts(NULL);
	r->o.reporter = quiet_reporter;
	r->o.segment_size = (1u << 20) + below(r, 5) * (256u << 10);
	r->o.flush_on_rollover = below(r, 2);
	r->o.sync_mode = below(r, 2) ? AURAWAL_SYNC_DSYNC : AURAWAL_SYNC_FDATASYNC;
	r->o.recycle_segments = below(r, 2);
	r->o.flush_delay_us = below(r, 2) ? 0 : 1000;
	log = wal_open_ok(r->dir, &r->o);
	first = 1;
	for (;;) {
		uint64_t p = below(r, 1000);

		n = segments(log, v);
		if (v[n - 1].number >= first + target - 1 || r->nrecs >= MAX_RECS)
			break;
		if (p < 4)
			cr_assert_eq(aurawal_sync(log), 0);
		else if (p < 16)
			release_some(r, log);
		else
			append_one(r, log, below(r, 50) == 0 ? AURAWAL_DURABLE : 0);
	}
	n = segments(log, v);
	r->last_seg = v[n - 1].number;
	cr_assert_eq(aurawal_close(log), 0);
}

/* ---- the files of the closed log ---- */

struct files {
	uint64_t seg[MAX_FILES]; /* numbered segment files, sorted */
	int nseg;
	char *other[MAX_FILES]; /* RELEASED, LOCK, spares */
	int nother;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

static void list_files(const struct round *r, struct files *f)
{
	DIR *d = opendir(r->dir);
	struct dirent *e;

	cr_assert(d);
	memset(f, 0, sizeof(*f));
	while ((e = readdir(d))) {
		char *end;
		uint64_t n;

		if (e->d_name[0] == '.')
			continue;
		n = strtoull(e->d_name, &end, 16);
		if (strlen(e->d_name) == 20 && end == e->d_name + 16 && strcmp(end, ".seg") == 0) {
			if (f->nseg < MAX_FILES)
				f->seg[f->nseg++] = n;
		} else if (f->nother < MAX_FILES) {
			f->other[f->nother++] = strdup(e->d_name);
		}
	}
	closedir(d);
	qsort(f->seg, (size_t) f->nseg, sizeof(f->seg[0]), cmp_u64);
}

static void free_files(struct files *f)
{
	for (int i = 0; i < f->nother; i++)
		free(f->other[i]);
}

/* ---- damage ---- */

static uint64_t file_size(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return (uint64_t) st.st_size;
}

/* A record of segment n, chosen at random (NULL if it holds none). */
static const struct rec *rec_in(struct round *r, uint64_t n)
{
	int count = 0, pick;

	for (int i = 0; i < r->nrecs; i++)
		count += !r->recs[i].gone && r->recs[i].loc.segment == n;
	if (!count)
		return NULL;
	pick = (int) below(r, (uint64_t) count);
	for (int i = 0; i < r->nrecs; i++)
		if (!r->recs[i].gone && r->recs[i].loc.segment == n && pick-- == 0)
			return &r->recs[i];
	return NULL;
}

/* Where in segment n to damage: a region chosen at random, then an offset in it. */
static uint64_t pick_offset(struct round *r, uint64_t n, uint64_t size, const char **region)
{
	const struct rec *x = rec_in(r, n);
	uint64_t p = below(r, 7), end = 4096;

	for (int i = 0; i < r->nrecs; i++)
		if (r->recs[i].loc.segment == n)
			end =
			    MAX(end, r->recs[i].loc.offset + 32 + align_up(r->recs[i].loc.size, 8));
	if (p == 0 || !x) {
		*region = "segment header";
		return below(r, 2) ? below(r, 120) : below(r, 4096);
	}
	if (p == 1) {
		*region = "record header";
		return x->loc.offset + below(r, 32);
	}
	if (p == 2 && x->loc.size) {
		*region = "payload";
		return x->loc.offset + 32 + below(r, x->loc.size);
	}
	if (p == 3 && x->loc.size % 8) {
		*region = "padding";
		return x->loc.offset + 32 + x->loc.size + below(r, 8 - x->loc.size % 8);
	}
	if (p == 4) {
		*region = "after the records (block trailer, SEAL, tail)";
		return end - 40 +
		       below(r, MIN(align_up(end + 1, 4096) - end + 40, size - end + 40));
	}
	*region = "anywhere";
	return below(r, MIN(size, align_up(end, 4096) + 4096));
}

static void note_change(struct round *r, uint64_t seg, const uint8_t *old, const uint8_t *now,
			size_t len, uint64_t at)
{
	for (size_t i = 0; i < len; i++)
		if (old[i] != now[i]) {
			if (!r->changed) {
				r->dlo = at + i;
				r->dhi = at + i + 1;
			}
			r->dlo = MIN(r->dlo, at + i);
			r->dhi = MAX(r->dhi, at + i + 1);
			r->changed = true;
		}
	if (r->changed)
		r->dseg = seg;
}

/* Flip 1-8 bits (flip) or zero a block (zero) of file `name` (segment seg, or 0). */
static void damage_bytes(struct round *r, const char *name, uint64_t seg, bool zero)
{
	char *path = path_of(r, name);
	uint64_t size = file_size(path), at, len;
	const char *region = "anywhere";
	uint8_t old[4096], now[4096];
	int fd = open(path, O_RDWR);

	cr_assert_geq(fd, 0);
	if (size == 0) {
		close(fd);
		free(path);
		snprintf(r->what, sizeof(r->what), "%s: %s (empty: nothing)", dmg_names[r->kind],
			 name);
		return;
	}
	at = seg ? pick_offset(r, seg, size, &region) : below(r, size);
	if (!seg && below(r, 2)) { /* the end of the file: RELEASED's end line */
		at = size - 1 - below(r, MIN(size, 24));
		region = "near the end";
	}
	if (zero) {
		len = below(r, 2) ? 512 : 4096;
		at = align_down(MIN(at, size - 1), len);
	} else {
		len = MIN(8, size - MIN(at, size - 1));
	}
	at = MIN(at, size - 1);
	len = MIN(len, size - at);
	cr_assert_eq(pread(fd, old, len, (off_t) at), (ssize_t) len);
	memcpy(now, old, len);
	if (zero) {
		memset(now, 0, len);
	} else {
		int bits = 1 + (int) below(r, 8);

		for (int b = 0; b < bits; b++) {
			uint64_t bit = below(r, MIN(len, 2) * 8); /* near `at` */

			now[bit / 8] ^= (uint8_t) (1u << (bit % 8));
		}
	}
	cr_assert_eq(pwrite(fd, now, len, (off_t) at), (ssize_t) len);
	close(fd);
	r->released = strcmp(name, "RELEASED") == 0 && memcmp(old, now, len) != 0;
	if (seg)
		note_change(r, seg, old, now, len, at);
	snprintf(r->what, sizeof(r->what), "%s: %s at %llu (+%llu), %s", dmg_names[r->kind], name,
		 (unsigned long long) at, (unsigned long long) len, region);
	free(path);
}

static void damage_trunc(struct round *r, const char *name, uint64_t seg)
{
	char *path = path_of(r, name);
	uint64_t size = file_size(path), cut;
	const char *region = "anywhere";

	cut = seg ? pick_offset(r, seg, size, &region) : below(r, size + 1);
	if (below(r, 4) == 0)
		cut = align_down(cut, 4096);
	cut = MIN(cut, size);
	cr_assert_eq(truncate(path, (off_t) cut), 0);
	r->released = strcmp(name, "RELEASED") == 0 && cut < size;
	if (seg && cut < size) {
		r->dseg = seg;
		r->dlo = cut;
		r->dhi = UINT64_MAX;
		r->changed = true;
	}
	snprintf(r->what, sizeof(r->what), "truncate: %s to %llu of %llu, %s", name,
		 (unsigned long long) cut, (unsigned long long) size, region);
	free(path);
}

static void damage_append(struct round *r, const char *name)
{
	char *path = path_of(r, name);
	uint64_t n = 1 + below(r, 8192);
	uint8_t *g = malloc(n);
	int fd = open(path, O_WRONLY | O_APPEND);

	cr_assert_geq(fd, 0);
	for (uint64_t i = 0; i < n; i++)
		g[i] = (uint8_t) rnd(&r->rng);
	cr_assert_eq(write(fd, g, n), (ssize_t) n);
	r->released = strcmp(name, "RELEASED") == 0;
	close(fd);
	free(g);
	snprintf(r->what, sizeof(r->what), "append: %llu bytes of garbage to %s",
		 (unsigned long long) n, name);
	free(path);
}

static void damage_rename(struct round *r, const struct files *f)
{
	uint64_t a = f->seg[below(r, (uint64_t) f->nseg)], b;
	char *pa = seg_path(r, a), *pb, *tmp = path_of(r, "swap.tmp");

	if (f->nseg >= 2 && below(r, 2)) { /* swap two */
		do
			b = f->seg[below(r, (uint64_t) f->nseg)];
		while (b == a);
		pb = seg_path(r, b);
		cr_assert_eq(rename(pa, tmp), 0);
		cr_assert_eq(rename(pb, pa), 0);
		cr_assert_eq(rename(tmp, pb), 0);
		snprintf(r->what, sizeof(r->what), "rename: swapped segments %llu and %llu",
			 (unsigned long long) a, (unsigned long long) b);
	} else { /* to a number no file has */
		bool taken;

		do {
			b = 1 + below(r, f->seg[f->nseg - 1] + 3);
			taken = false;
			for (int i = 0; i < f->nseg; i++)
				taken |= f->seg[i] == b;
		} while (taken);
		pb = seg_path(r, b);
		cr_assert_eq(rename(pa, pb), 0);
		/* The oldest segment gone from its name is what aurawal_release_before() leaves
		 * (it records nothing): its records may be lost without a word. */
		if (a == f->seg[0])
			r->oldest_gone = a;
		snprintf(r->what, sizeof(r->what), "rename: segment %llu to %llu",
			 (unsigned long long) a, (unsigned long long) b);
	}
	r->dseg = a;
	r->dseg2 = b;
	r->dlo = 0;
	r->dhi = UINT64_MAX;
	r->changed = true;
	free(pa);
	free(pb);
	free(tmp);
}

static void damage(struct round *r)
{
	struct files f;
	uint64_t p;
	const char *name;
	uint64_t seg = 0;
	char segname[32];

	list_files(r, &f);
	cr_assert_geq(f.nseg, 1);
	r->kind = (enum dmg_kind) below(r, D_KINDS);
	if (r->kind == D_DELETE && f.nseg < 3)
		r->kind = D_FLIP;
	/* the file: a segment mostly, else RELEASED, LOCK or a spare */
	p = below(r, 10);
	if (p < 7 || f.nother == 0) {
		seg = f.seg[below(r, (uint64_t) f.nseg)];
		snprintf(segname, sizeof(segname), "%016llx.seg", (unsigned long long) seg);
		name = segname;
	} else {
		name = f.other[below(r, (uint64_t) f.nother)];
		for (int i = 0; i < f.nother && below(r, 3); i++) /* RELEASED most often */
			if (strcmp(f.other[i], "RELEASED") == 0)
				name = f.other[i];
	}
	switch (r->kind) {
	case D_FLIP:
	case D_ZERO:
		damage_bytes(r, name, seg, r->kind == D_ZERO);
		break;
	case D_TRUNC:
		damage_trunc(r, name, seg);
		break;
	case D_APPEND:
		damage_append(r, name);
		break;
	case D_DELETE: {
		char *path;

		seg = f.seg[1 + below(r, (uint64_t) f.nseg - 2)];
		path = seg_path(r, seg);
		cr_assert_eq(unlink(path), 0);
		free(path);
		r->dseg = seg;
		r->dlo = 0;
		r->dhi = UINT64_MAX;
		r->changed = true;
		snprintf(r->what, sizeof(r->what), "delete: segment %llu",
			 (unsigned long long) seg);
		break;
	}
	case D_RENAME:
		damage_rename(r, &f);
		break;
	default:
		break;
	}
	free_files(&f);
}

/* ---- checking ---- */

static uint64_t rec_end(const struct rec *x)
{
	return x->loc.offset + 32 + align_up(x->loc.size, 8);
}

/* Did the damage change bytes of record x? */
static bool hit(const struct round *r, const struct rec *x)
{
	if (x->fresh)
		return false;
	bool in = x->loc.segment == r->dseg || (r->dseg2 && x->loc.segment == r->dseg2);

	return r->changed && in && x->loc.offset < r->dhi && rec_end(x) > r->dlo;
}

/* May record x be lost without an error? Only at or after the damage in the last
 * segment holding records: a torn tail. */
static bool tail_loss_ok(const struct round *r, const struct rec *x)
{
	if (x->fresh)
		return false;
	if (x->loc.segment == r->oldest_gone)
		return true;
	if (!r->changed || x->loc.segment != r->last_seg)
		return false;
	if (r->dseg2 == r->last_seg)
		return true;
	return r->dseg == r->last_seg && rec_end(x) > r->dlo;
}

static const struct rec *find_rec(const struct round *r, aurawal_loc_t loc)
{
	for (int i = 0; i < r->nrecs; i++)
		if (r->recs[i].loc.segment == loc.segment && r->recs[i].loc.offset == loc.offset)
			return &r->recs[i];
	return NULL;
}

static bool documented_open_error(int rc)
{
	return rc == AURAWAL_ECORRUPT || rc == AURAWAL_EFORMAT;
}

/* Iterate over the whole log: what comes out must be what was written, nothing may be
 * skipped, and only a torn tail may be lost without an error. */
static bool check_iter(struct round *r, aurawal_t *log, const char *mode, const struct reports *rs)
{
	bool *seen = calloc((size_t) r->nrecs, sizeof(bool)), clean;
	const struct rec *last = NULL;
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	uint64_t seq;
	const void *p;
	size_t len;
	int rc = aurawal_iter_open(log, (aurawal_loc_t){ 0, 0, 0 }, &it);

	if (rc) {
		r->detected = true;
		free(seen);
		return false;
	}
	while ((rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1) {
		const struct rec *x = find_rec(r, loc);

		if (!x) {
			violate(r, "%s: the iterator returned a record never written at %llu:%u",
				mode, (unsigned long long) loc.segment, loc.offset);
			break;
		}
		if (x->gone)
			violate(r, "%s: a record of a released segment came back at %llu:%u", mode,
				(unsigned long long) loc.segment, loc.offset);
		if (seq != x->seq || len != x->loc.size || loc.size != x->loc.size ||
		    !payload_check(p, len, x->id))
			violate(r, "%s: the record at %llu:%u has wrong content", mode,
				(unsigned long long) loc.segment, loc.offset);
		if (last && x <= last)
			violate(r, "%s: the record at %llu:%u came out of order", mode,
				(unsigned long long) loc.segment, loc.offset);
		seen[x - r->recs] = true;
		last = x;
	}
	aurawal_iter_close(it);
	if (rc < 0 || rs->corruption)
		r->detected = true;
	/* inspect mode reports damage and reads past it */
	for (int i = 0; i < r->nrecs && rs->corruption; i++)
		seen[i] = true;
	if (rc < 0 && rc != AURAWAL_ECORRUPT && rc != -ENOENT)
		violate(r, "%s: iteration failed with an unexpected error: %s", mode,
			aurawal_strerror(rc));
	for (int i = 0; i < r->nrecs && !r->violation[0]; i++) {
		const struct rec *x = &r->recs[i];

		if (x->gone || seen[i])
			continue;
		if (last && x < last && x->loc.segment != r->oldest_gone) /* skipped */
			violate(r, "%s: record %llu:%u (seq %llu) was skipped", mode,
				(unsigned long long) x->loc.segment, x->loc.offset,
				(unsigned long long) x->seq);
		else if (rc == 0 && !tail_loss_ok(r, x))
			violate(r,
				"%s: record %llu:%u (seq %llu) was lost without an error (the "
				"iteration ended cleanly)",
				mode, (unsigned long long) x->loc.segment, x->loc.offset,
				(unsigned long long) x->seq);
	}
	clean = rc == 0 && !rs->corruption;
	for (int i = 0; i < r->nrecs; i++)
		r->recs[i].seen = seen[i];
	free(seen);
	return clean;
}

/* aurawal_read of every record: its content, or an error - an error if it was hit. */
struct async_read {
	int runs, status;
	size_t len;
	uint64_t seq;
};

static void read_done(void *arg, int status, size_t len, uint64_t seq)
{
	struct async_read *a = arg;

	a->runs++;
	a->status = status;
	a->len = len;
	a->seq = seq;
}

/* Read x synchronously, or asynchronously (every few records): the status, and into
 * *len, *seq the payload's size and sequence. */
static int read_rec(struct round *r, aurawal_t *log, const struct rec *x, uint8_t *buf, size_t *len,
		    uint64_t *seq)
{
	struct async_read a = { 0 };
	int rc;

	if (below(r, 4))
		return aurawal_read(log, x->loc, buf, 512u << 10, len, seq);
	rc = aurawal_read_async(log, x->loc, buf, 512u << 10, read_done, &a);
	if (rc)
		return rc;
	while (a.runs == 0)
		cr_assert_geq(aurawal_poll(log, -1), 0);
	cr_assert_eq(a.runs, 1);
	*len = a.len;
	*seq = a.seq;
	return a.status;
}

/* aurawal_read of every record: its content, or an error - an error if it was hit. */
static void check_reads(struct round *r, aurawal_t *log, const char *mode)
{
	uint8_t *buf = malloc(512u << 10);

	for (int i = 0; i < r->nrecs && !r->violation[0]; i++) {
		const struct rec *x = &r->recs[i];
		size_t len = 0;
		uint64_t seq = 0;
		int rc = read_rec(r, log, x, buf, &len, &seq);

		if (rc) {
			r->detected |= rc == AURAWAL_ECORRUPT;
			continue;
		}
		if (x->gone)
			violate(r, "%s: read of %llu:%u, in a released segment, succeeded", mode,
				(unsigned long long) x->loc.segment, x->loc.offset);
		else if (len != x->loc.size || seq != x->seq || !payload_check(buf, len, x->id))
			violate(r, "%s: read of %llu:%u returned wrong content", mode,
				(unsigned long long) x->loc.segment, x->loc.offset);
		else if (hit(r, x))
			violate(r, "%s: read of %llu:%u succeeded though the damage changed it",
				mode, (unsigned long long) x->loc.segment, x->loc.offset);
	}
	free(buf);
}

/*
 * The log a strict open recovered takes appends: the records lost at the damage (a torn
 * tail: allowed) are forgotten, new ones appended after it - where the lost ones were,
 * perhaps - and the log closed; every record must then be found by the next open.
 */
static void append_after(struct round *r, aurawal_t *log)
{
	int k = 0, n = 1 + (int) below(r, 5), rc;

	for (int i = 0; i < r->nrecs; i++)
		if (r->recs[i].gone || r->recs[i].seen)
			r->recs[k++] = r->recs[i];
	r->nrecs = k;
	for (int i = 0; i < n && r->nrecs < MAX_RECS; i++) {
		r->recs[r->nrecs] = (struct rec){ .fresh = true };
		append_one(r, log, below(r, 2) ? AURAWAL_DURABLE : 0);
	}
	rc = aurawal_close(log);
	if (rc)
		violate(r, "close after appending to the recovered log: %s", aurawal_strerror(rc));
}

static void check_open(struct round *r, aurawal_recovery_t mode, const char *name, bool append)
{
	aurawal_options_t o = r->o;
	struct reports rs = { 0 };
	aurawal_t *log = NULL;
	bool clean;
	int rc;

	o.reporter = record_report;
	o.reporter_arg = &rs;
	o.create_if_missing = false;
	o.recovery = mode;
	o.scan_sealed = below(r, 4) != 0;
	rc = aurawal_open(r->dir, &o, &log);
	if (r->released && mode == AURAWAL_RECOVER_STRICT && rc != AURAWAL_ECORRUPT)
		violate(r, "a damaged RELEASED file was not reported: open returned %s",
			aurawal_strerror(rc));
	if (rc) {
		r->detected |= rc == AURAWAL_ECORRUPT;
		if (!documented_open_error(rc))
			violate(r, "%s open failed with an undocumented error: %s", name,
				aurawal_strerror(rc));
		return;
	}
	clean = check_iter(r, log, name, &rs);
	check_reads(r, log, name);
	if (append && clean && !r->violation[0])
		append_after(r, log);
	else
		aurawal_close(log);
}

/* Point-in-time recovery cuts the log at the damage: it opens (or fails with a
 * documented error), and what it keeps is exactly what was written. */
static void check_pit(struct round *r)
{
	aurawal_options_t o = r->o;
	aurawal_t *log = NULL;
	aurawal_iter_t *it;
	aurawal_loc_t loc;
	const void *p;
	uint64_t seq;
	size_t len;
	int rc;

	o.create_if_missing = false;
	o.recovery = AURAWAL_RECOVER_POINT_IN_TIME;
	rc = aurawal_open(r->dir, &o, &log);
	if (rc) {
		if (!documented_open_error(rc))
			violate(r, "point-in-time open failed with an undocumented error: %s",
				aurawal_strerror(rc));
		return;
	}
	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0, 0, 0 }, &it), 0);
	while ((rc = aurawal_iter_next(it, &loc, &seq, &p, &len)) == 1) {
		const struct rec *x = find_rec(r, loc);

		if (!x || x->gone || seq != x->seq || len != x->loc.size ||
		    !payload_check(p, len, x->id)) {
			violate(r, "point-in-time: a wrong record at %llu:%u",
				(unsigned long long) loc.segment, loc.offset);
			break;
		}
	}
	aurawal_iter_close(it);
	if (rc < 0)
		violate(r, "point-in-time: iteration after the cut failed: %s",
			aurawal_strerror(rc));
	aurawal_close(log);
}

/* Run waldump [--verify] on the log: its exit status (>= 0), or -signal. */
static int run_waldump(const struct round *r, bool verify)
{
	char *argv[] = { (char *) WALDUMP_PATH, verify ? (char *) "--verify" : (char *) "--all",
			 r->dir, NULL };
	posix_spawn_file_actions_t fa;
	int status, rc;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, WALDUMP_PATH, &fa, NULL, argv, environ);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", WALDUMP_PATH, strerror(rc));
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

/* A fresh directory: under WAL_CORRUPT_FUZZ_DIR if set (a tmpfs makes long runs fast),
 * else the suites' usual place. */
static char *fuzz_dir(void)
{
	const char *parent = getenv("WAL_CORRUPT_FUZZ_DIR");
	char *t = NULL;

	if (!parent || !*parent)
		return temp_dir();
	cr_assert_geq(asprintf(&t, "%s/walcorrupt.XXXXXX", parent), 0);
	cr_assert_not_null(mkdtemp(t), "mkdtemp %s: %s", t, strerror(errno));
	return t;
}

static void run_round(uint64_t seed, long index)
{
	struct round *r = calloc(1, sizeof(*r));
	int verify = 0, full = 0;

	r->seed = seed;
	r->rng = seed * 0xD6E8FEB86659FD93ull; /* rounds' streams must not overlap */
	r->rng = rnd(&r->rng);
	r->dir = fuzz_dir();
	write_log(r);
	damage(r);
	if (WALDUMP_PATH[0]) {
		verify = run_waldump(r, true);
		full = run_waldump(r, false);
		if (verify < 0 || full < 0 || verify > 2 || full > 2)
			violate(r, "waldump crashed or exited oddly (--verify %d, --all %d)",
				verify, full);
	}
	check_open(r, AURAWAL_RECOVER_INSPECT, "inspect", false);
	check_open(r, AURAWAL_RECOVER_STRICT, "strict", true);
	/* a strict open that succeeded may have written (summaries, a dropped segment, the
	 * appends above): the next one must find the same */
	check_open(r, AURAWAL_RECOVER_STRICT, "strict, again", false);
	check_pit(r);
	if (WALDUMP_PATH[0] && r->detected && (verify == 0 || full == 0))
		violate(r, "waldump exited 0 (--verify %d, --all %d) on damage the library reports",
			verify, full);
	cr_assert(!r->violation[0], "round %ld seed %#llx (%d records, last segment %llu), %s: %s",
		  index, (unsigned long long) seed, r->nrecs, (unsigned long long) r->last_seg,
		  r->what, r->violation);
	if (getenv("WAL_CORRUPT_FUZZ_VERBOSE"))
		fprintf(stderr, "  %s: %s, waldump %d/%d\n", r->what,
			r->detected ? "detected" : "not detected", verify, full);
	rm_tree(r->dir);
	free(r->dir);
	free(r);
}

static long env_num(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 0) : dflt;
}

TestSuite(wal_corrupt_fuzz, .timeout = 600);

Test(wal_corrupt_fuzz, random_damage_is_reported_never_read_as_data)
{
	bool fixed = getenv("WAL_CORRUPT_FUZZ_ROUNDS") != NULL;
	long rounds = env_num("WAL_CORRUPT_FUZZ_ROUNDS", DEFAULT_ROUNDS);
	const char *sv = getenv("WAL_CORRUPT_FUZZ_SEED");
	uint64_t base = sv && *sv ? strtoull(sv, NULL, 0) : DEFAULT_SEED;
	uint64_t start = test_now_ns();
	long i;

	cr_log_info("wal_corrupt_fuzz: base seed %#llx, %s%ld rounds, waldump %s",
		    (unsigned long long) base, fixed ? "" : "at most ", rounds,
		    WALDUMP_PATH[0] ? WALDUMP_PATH : "(not built)");
	for (i = 0; i < rounds; i++) {
		if (!fixed && test_now_ns() - start > DEFAULT_BUDGET_NS)
			break;
		if (getenv("WAL_CORRUPT_FUZZ_VERBOSE"))
			fprintf(stderr, "round %ld seed %#llx\n", i,
				(unsigned long long) (base + (uint64_t) i * 0x9E3779B97F4A7C15ull));
		run_round(base + (uint64_t) i * 0x9E3779B97F4A7C15ull, i);
	}
	cr_log_info("wal_corrupt_fuzz: %ld rounds", i);
}
