/* SPDX-License-Identifier: MIT */
/*
 * wal_corrupt_damage.h - the first half of each round of the log's corruption fuzz
 * (tests/wal/test_corrupt_fuzz.c, its only user): the round's state and model of every
 * record written, writing a closed log of several segments with releases, listing its
 * files, and damaging it in ONE random way, recording where (dseg, [dlo, dhi)) so the
 * checks know what may be lost. The round's random choices all come from r->rng.
 */
#ifndef AURA_WAL_CORRUPT_DAMAGE_H
#define AURA_WAL_CORRUPT_DAMAGE_H

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>

#include "wal_format.h" /* align_up */
#include "wal_test.h"

#define MAX_RECS  3000
#define MAX_FILES 64
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

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

#endif
