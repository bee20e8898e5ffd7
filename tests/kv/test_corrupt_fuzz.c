/* SPDX-License-Identifier: MIT */
/*
 * A randomized on-disk corruption fuzz of the store. Each round builds a store with a
 * random small segment_size (many segments, the sealed ones with hint files), runs random
 * puts, deletes, overwrites, batches, compactions and reopens, closes it cleanly and
 * keeps a model of its contents (all acknowledged and, after the close, durable). Then
 * it damages the closed store's files in ONE random way: 1-8 bits flipped near a random
 * offset of a random file (segment, hint, RELEASED, LOCK, spare: any file present), a
 * 512-byte or 4 KiB block zeroed, a file truncated at a random length or extended with
 * garbage, a hint file deleted, two hint files swapped. It checks aurakv.h's promise:
 *   - aurakv_open fails with AURAKV_ECORRUPT or AURAKV_EFORMAT (reported), or succeeds;
 *   - if it succeeds, every key the model has reads its value or AURAKV_ECORRUPT, every
 *     deleted key AURAKV_ENOTFOUND or AURAKV_ECORRUPT - never another value, never a
 *     deleted key back - and so does a second open after a clean close;
 *   - damage to hint files, LOCK or spare segment files loses nothing (the store reads
 *     the segment instead): open succeeds and every key reads exactly;
 *   - aurakv_verify() reports (AURAKV_ECORRUPT) every damage that changed bytes of a
 *     record of the log or of a hint file, and whatever made open or a get say
 *     AURAKV_ECORRUPT; the aurakv CLI's verify exits 1 exactly when it does.
 * Seeds are printed with every failure: KV_CORRUPT_FUZZ_SEED=<seed> KV_CORRUPT_FUZZ_ROUNDS=1
 * replays one round (its operations and its damage; which segments GC collected in the
 * background may vary). KV_CORRUPT_FUZZ_ROUNDS raises the number of rounds (default
 * FUZZ_ROUNDS, ~10 s; KV_CORRUPT_FUZZ_VERBOSE=1 says what each round did).
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_fuzz.h"

#if defined(__SANITIZE_THREAD__) /* ~4x slower: under 60 s */
#define FUZZ_ROUNDS 14
#else
#define FUZZ_ROUNDS 24
#endif
#define FUZZ_KEYS  160
#define FUZZ_FILES 128
#define FUZZ_RECS  4096 /* records remembered per segment */

KV_DIR_SUITE(kv_corrupt_fuzz, 600);

/* ---- the round's random choices ---- */

static uint64_t rng_state;

static uint64_t below(uint64_t n)
{
	return kv_fuzz_below(&rng_state, n);
}

/* Where a failure happened: every assertion says it. */
static uint64_t cur_seed;
static char cur_damage[2048];

#define FZ(cond, fmt, ...)                                                                         \
	cr_assert(cond, "seed %llu (%s): " fmt, (unsigned long long) cur_seed, cur_damage,         \
		  ##__VA_ARGS__)

/* ---- values: write w of key k, self-describing (kv_test.h) ---- */

static size_t val_len(uint64_t k, uint64_t w)
{
	return kv_fuzz_value_len(k, w, 3, 4096, 90000);
}

static bool val_ok(const void *v, size_t len, uint64_t k, uint64_t w)
{
	return kv_fuzz_value_ok(v, len, k, w, val_len(k, w));
}

/* ---- the store and its model ---- */

struct fuzz {
	uint64_t val[FUZZ_KEYS]; /* the write a key holds; 0 = absent */
	bool written[FUZZ_KEYS]; /* ever written (a deleted key must stay deleted) */
	uint64_t next_w;
	aurakv_t *db;
	aurakv_options_t o;
	struct kv_reports rs;
};

static void reopen(struct fuzz *f)
{
	cr_assert_eq(aurakv_close(f->db), 0);
	f->db = kv_open_ok(dir, &f->o);
}

static void op_put(struct fuzz *f)
{
	uint64_t k = below(FUZZ_KEYS), w = f->next_w++;
	size_t len = val_len(k, w);
	uint8_t *v = malloc(len);
	char key[32];

	cr_assert_not_null(v);
	kv_value(v, len, k, w);
	FZ(aurakv_put(f->db, key, kv_key(key, k), v, len, below(32) ? 0 : AURAKV_SYNC) == 0, "put");
	free(v);
	f->val[k] = w;
	f->written[k] = true;
}

static void op_delete(struct fuzz *f)
{
	uint64_t k = below(FUZZ_KEYS);
	char key[32];

	FZ(aurakv_delete(f->db, key, kv_key(key, k), 0) == 0, "delete");
	f->val[k] = 0;
}

static void op_batch(struct fuzz *f)
{
	aurakv_batch_t *b = aurakv_batch_new();
	int n = 1 + (int) below(8);
	char key[32];

	cr_assert_not_null(b);
	for (int i = 0; i < n; i++) {
		uint64_t k = below(FUZZ_KEYS), w = f->next_w++;

		if (below(4) == 0) {
			cr_assert_eq(aurakv_batch_delete(b, key, kv_key(key, k)), 0);
			f->val[k] = 0;
			continue;
		}
		size_t len = val_len(k, w);
		uint8_t *v = malloc(len);

		cr_assert_not_null(v);
		kv_value(v, len, k, w);
		cr_assert_eq(aurakv_batch_put(b, key, kv_key(key, k), v, len), 0);
		free(v);
		f->val[k] = w;
		f->written[k] = true;
	}
	FZ(aurakv_write(f->db, b, below(16) ? 0 : AURAKV_SYNC) == 0, "batch");
	aurakv_batch_free(b);
}

static void op_compact(struct fuzz *f)
{
	FZ(aurakv_compact(f->db) == 0, "compact");
}

/* The operations' mix: a draw r below 100 runs the first whose upto exceeds it. */
static const struct {
	uint64_t upto;
	void (*run)(struct fuzz *f);
} mix[] = {
	{ 55, op_put }, { 75, op_delete }, { 95, op_batch }, { 98, op_compact }, { 100, reopen },
};

/* A store of a few segments, closed; the model in f. */
static void build(struct fuzz *f)
{
	int ops = 120 + (int) below(200);

	f->o = kv_opts(&f->rs);
	f->o.reporter = kv_fuzz_report;
	f->o.segment_size = KV_SMALL_SEGMENT + 4096 * below(64);
	f->o.background_gc = below(3) == 0;
	f->o.cache_size = below(2) ? 0 : 1u << 20;
	f->next_w = 1;
	f->db = kv_open_ok(dir, &f->o);
	for (int i = 0; i < ops; i++) {
		uint64_t r = below(100);

		int m = 0;

		while (r >= mix[m].upto)
			m++;
		mix[m].run(f);
	}
	/* Most sealed segments have their hint file: the background thread writes them, a
	 * reopen writes those of the segments it read, a compaction runs a hint pass first
	 * (and collects every segment with dead bytes). */
	if (below(3) == 0)
		FZ(aurakv_compact(f->db) == 0, "compact");
	else if (below(2))
		reopen(f);
	FZ(aurakv_close(f->db) == 0, "close");
	f->db = NULL;
}

/* ---- the files and where the log's records are ---- */

enum fkind { FK_SEGMENT, FK_HINT, FK_RELEASED, FK_LOCK, FK_SPARE, FK_OTHER };

struct ffile {
	char path[600];
	enum fkind kind;
	uint64_t size;
	uint32_t nrec; /* FK_SEGMENT: its valid records, [off, off + 32 + length) */
	uint32_t rec_off[FUZZ_RECS], rec_end[FUZZ_RECS];
};

static struct ffile *files;
static int nfiles;

static const char *kind_name(enum fkind k)
{
	static const char *const names[] = {
		"segment", "hint", "RELEASED", "LOCK", "spare", "other"
	};

	return names[k];
}

static enum fkind kind_of(const char *path)
{
	const char *base = strrchr(path, '/') + 1;
	size_t n = strlen(base);

	if (strncmp(base, "spare", 5) == 0)
		return FK_SPARE;
	if (n > 4 && strcmp(base + n - 4, ".seg") == 0)
		return FK_SEGMENT;
	if (n > 5 && strcmp(base + n - 5, ".hint") == 0)
		return FK_HINT;
	if (strcmp(base, "RELEASED") == 0)
		return FK_RELEASED;
	if (strcmp(base, "LOCK") == 0)
		return FK_LOCK;
	return FK_OTHER;
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The valid records of segment file `ff` (docs/wal_format.md: header, records from
 * 4096, each checked with its segment's seed), as the log would read them. */
static void find_records(struct ffile *ff)
{
	FILE *fp = fopen(ff->path, "rb");
	uint8_t *buf = malloc(ff->size ? ff->size : 1);
	uint64_t id, seg, seed, off = 4096;

	cr_assert_not_null(fp);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, ff->size, fp), ff->size);
	fclose(fp);
	ff->nrec = 0;
	if (ff->size < 4096 || memcmp(buf, "AURAWAL1", 8) != 0) {
		free(buf);
		return;
	}
	id = le(buf + 24, 8);
	seg = le(buf + 32, 8);
	seed = id ^ (seg * 0x9E3779B97F4A7C15ull);
	while (off + 32 <= ff->size && ff->nrec < FUZZ_RECS) {
		uint8_t h[32];
		uint64_t len = le(buf + off + 8, 4);

		if (memcmp(buf + off, "AWR1", 4) != 0 || off + 32 + len > ff->size)
			break;
		memcpy(h, buf + off, 24);
		for (int i = 0; i < 8; i++)
			h[24 + i] = (uint8_t) (XXH3_64bits(buf + off + 32, len) >> (8 * i));
		if (XXH3_64bits_withSeed(h, 32, seed) != le(buf + off + 24, 8))
			break;
		ff->rec_off[ff->nrec] = (uint32_t) off;
		ff->rec_end[ff->nrec++] = (uint32_t) (off + 32 + len);
		off += 32 + ((len + 7) & ~7ull);
	}
	free(buf);
}

static int collect_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void) ftw;
	if (flag != FTW_F || nfiles == FUZZ_FILES)
		return 0;
	snprintf(files[nfiles].path, sizeof(files[nfiles].path), "%s", path);
	files[nfiles].kind = kind_of(path);
	files[nfiles].size = (uint64_t) st->st_size;
	files[nfiles].nrec = 0;
	if (files[nfiles].kind == FK_SEGMENT)
		find_records(&files[nfiles]);
	nfiles++;
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct ffile *) a)->path, ((const struct ffile *) b)->path);
}

/* The store's files, in name order (readdir's order varies: a seed must replay). */
static void collect_files(void)
{
	nfiles = 0;
	cr_assert_eq(nftw(dir, collect_one, 16, FTW_PHYS), 0);
	qsort(files, (size_t) nfiles, sizeof(*files), by_path);
}

static int pick_kind(enum fkind k)
{
	int idx[FUZZ_FILES], n = 0;

	for (int i = 0; i < nfiles; i++)
		if (files[i].kind == k)
			idx[n++] = i;
	return n ? idx[below((uint64_t) n)] : -1;
}

/* A segment with a hint file (open does not read it: a get meets its damage), or dflt. */
static int pick_hinted_segment(int dflt)
{
	int idx[FUZZ_FILES], n = 0;

	for (int i = 0; i < nfiles; i++) {
		const char *base = strrchr(files[i].path, '/') + 1;
		char hint[700];

		snprintf(hint, sizeof(hint), "%s/hints/%.16s.hint", dir, base);
		if (files[i].kind == FK_SEGMENT && access(hint, F_OK) == 0)
			idx[n++] = i;
	}
	return n ? idx[below((uint64_t) n)] : dflt;
}

/* Does [a, b) of file ff hold bytes of a record? */
static bool in_record(const struct ffile *ff, uint64_t a, uint64_t b)
{
	for (uint32_t i = 0; i < ff->nrec; i++)
		if (a < ff->rec_end[i] && ff->rec_off[i] < b)
			return true;
	return false;
}

/* ---- the damage ---- */

struct damage {
	int file;	   /* index in files, -1 for none */
	enum fkind kind;   /* of the file damaged (FK_HINT for a delete or swap) */
	bool changed;	   /* some byte differs from before */
	bool hits_record;  /* bytes of a valid log record changed or cut */
	bool hint_deleted; /* a hint file is gone: not damage verify can see */
};

static void read_at(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(pread(fd, buf, len, (off_t) off), (ssize_t) len);
	close(fd);
}

static void write_at(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY);

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(pwrite(fd, buf, len, (off_t) off), (ssize_t) len);
	close(fd);
}

/* An offset in file ff: for a segment with records, mostly inside one of them (often
 * its last: the end of the log), sometimes in its header block. */
static uint64_t pick_offset(const struct ffile *ff)
{
	uint64_t how = below(8);

	if (ff->nrec && how < 5) {
		uint32_t r = how == 0 ? ff->nrec - 1 : (uint32_t) below(ff->nrec);

		return ff->rec_off[r] + below(ff->rec_end[r] - ff->rec_off[r]);
	}
	if (ff->kind == FK_SEGMENT && how == 5)
		return below(ff->size < 4096 ? ff->size : 4096);
	return below(ff->size);
}

static void flip_bits(struct damage *d, const struct ffile *ff)
{
	uint64_t off = pick_offset(ff);
	size_t n = ff->size - off < 8 ? (size_t) (ff->size - off) : 8;
	uint8_t before[8], after[8];
	int bits = 1 + (int) below(8);

	read_at(ff->path, before, n, off);
	memcpy(after, before, n);
	for (int i = 0; i < bits; i++)
		after[below(n)] ^= (uint8_t) (1u << below(8));
	if (memcmp(before, after, n) == 0) /* flips that undid each other */
		after[0] ^= 1;
	write_at(ff->path, after, n, off);
	d->changed = true;
	for (size_t i = 0; i < n; i++) /* the bytes flipped, not the window */
		d->hits_record |= before[i] != after[i] && in_record(ff, off + i, off + i + 1);
	snprintf(cur_damage, sizeof(cur_damage), "%d bits flipped in %s %s at %llu", bits,
		 kind_name(ff->kind), ff->path, (unsigned long long) off);
}

static void zero_block(struct damage *d, const struct ffile *ff)
{
	uint64_t bs = below(2) ? 512 : 4096, off = pick_offset(ff) / bs * bs;
	size_t n = ff->size - off < bs ? (size_t) (ff->size - off) : (size_t) bs;
	uint8_t buf[4096], zero[4096] = { 0 };

	read_at(ff->path, buf, n, off);
	for (size_t i = 0; i < n; i++)
		if (buf[i]) {
			d->changed = true;
			d->hits_record |= in_record(ff, off + i, off + i + 1);
		}
	write_at(ff->path, zero, n, off);
	snprintf(cur_damage, sizeof(cur_damage), "%llu bytes zeroed in %s at %llu",
		 (unsigned long long) n, ff->path, (unsigned long long) off);
}

static void truncate_file(struct damage *d, const struct ffile *ff)
{
	uint64_t len = ff->nrec && below(2) ? pick_offset(ff) : below(ff->size);

	cr_assert_eq(truncate(ff->path, (off_t) len), 0);
	d->changed = true;
	d->hits_record = in_record(ff, len, ff->size);
	snprintf(cur_damage, sizeof(cur_damage), "%s truncated from %llu to %llu bytes", ff->path,
		 (unsigned long long) ff->size, (unsigned long long) len);
}

static void extend_file(struct damage *d, const struct ffile *ff)
{
	size_t n = 1 + (size_t) below(8192);
	uint8_t buf[8192];

	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t) kv_fuzz_rnd(&rng_state);
	write_at(ff->path, buf, n, ff->size);
	d->changed = true;
	snprintf(cur_damage, sizeof(cur_damage), "%s extended by %zu bytes of garbage", ff->path,
		 n);
}

static void swap_hints(struct damage *d)
{
	int a = pick_kind(FK_HINT), b = pick_kind(FK_HINT);
	char tmp[700];

	if (a == b) {
		d->file = -1;
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.swap", files[a].path);
	cr_assert_eq(rename(files[a].path, tmp), 0);
	cr_assert_eq(rename(files[b].path, files[a].path), 0);
	cr_assert_eq(rename(tmp, files[b].path), 0);
	d->file = a;
	d->kind = FK_HINT;
	d->changed = true;
	snprintf(cur_damage, sizeof(cur_damage), "hint files %s and %s swapped", files[a].path,
		 files[b].path);
}

/* One random damage; d->file -1 if the one chosen found nothing to damage. */
static void damage(struct damage *d)
{
	uint64_t how = below(100);
	const struct ffile *ff;

	memset(d, 0, sizeof(*d));
	d->file = (int) below((uint64_t) nfiles); /* any file; but mostly the log's and hints */
	if (below(10) == 0 && pick_kind(FK_RELEASED) >= 0) /* GC's record of segments released */
		d->file = pick_kind(FK_RELEASED);
	else if (below(4) < 3) {
		int pick = pick_kind(below(3) ? FK_SEGMENT : FK_HINT);

		d->file = pick >= 0 ? pick : d->file;
		if (pick >= 0 && files[pick].kind == FK_SEGMENT && below(2))
			d->file = pick_hinted_segment(d->file);
	}
	if (how >= 90) {
		if (how >= 95) {
			swap_hints(d);
			return;
		}
		if ((d->file = pick_kind(FK_HINT)) < 0)
			return;
		cr_assert_eq(unlink(files[d->file].path), 0);
		d->kind = FK_HINT;
		d->hint_deleted = true;
		snprintf(cur_damage, sizeof(cur_damage), "%s deleted", files[d->file].path);
		return;
	}
	ff = &files[d->file];
	d->kind = ff->kind;
	if (ff->size == 0 && how < 75) {
		d->file = -1;
		return;
	}
	if (how < 40)
		flip_bits(d, ff);
	else if (how < 60)
		zero_block(d, ff);
	else if (how < 75)
		truncate_file(d, ff);
	else
		extend_file(d, ff);
}

/* KV_CORRUPT_FUZZ_VERBOSE: the segments, their records and summary kinds. */
static void list_segments(void)
{
	for (int i = 0; i < nfiles; i++) {
		uint8_t h[72] = { 0 };

		if (files[i].kind != FK_SEGMENT || files[i].size < sizeof(h))
			continue;
		read_at(files[i].path, h, sizeof(h), 0);
		fprintf(stderr, "  %s: %u records, summary kind %d\n",
			strrchr(files[i].path, '/') + 1, files[i].nrec,
			memcmp(h + 64, "AWS1", 4) == 0 ? h[68] : 0);
	}
}

/* ---- checks ---- */

/* Was the damage where nothing the store needs is: open must succeed, lose nothing. */
static bool harmless(const struct damage *d)
{
	return d->kind == FK_HINT || d->kind == FK_LOCK || d->kind == FK_SPARE ||
	       d->kind == FK_OTHER;
}

/* Every key of the model read from a store open: exact, or AURAKV_ECORRUPT if `lenient`.
 * exact[k] says which read exactly; *corrupt counts the others. */
static void check_keys(struct fuzz *f, bool lenient, bool *exact, int *corrupt)
{
	for (uint64_t k = 0; k < FUZZ_KEYS; k++) {
		char key[32];
		void *v = NULL;
		size_t len = 0;
		int rc = aurakv_get(f->db, key, kv_key(key, k), &v, &len);

		exact[k] = false;
		if (rc == AURAKV_ECORRUPT) {
			FZ(lenient, "key %llu: corrupt, but the damage was harmless",
			   (unsigned long long) k);
			(*corrupt)++;
			continue;
		}
		if (f->val[k] == 0) {
			FZ(rc == AURAKV_ENOTFOUND, "key %llu (%s): %s, want not found",
			   (unsigned long long) k, f->written[k] ? "deleted" : "never written",
			   rc == 0 ? "a value" : aurakv_strerror(rc));
		} else {
			FZ(rc == 0, "key %llu: %s, want write %llu", (unsigned long long) k,
			   aurakv_strerror(rc), (unsigned long long) f->val[k]);
			FZ(val_ok(v, len, k, f->val[k]),
			   "key %llu: a value of write %llu (%zu bytes), want write %llu",
			   (unsigned long long) k, (unsigned long long) kv_value_write(v, len, k),
			   len, (unsigned long long) f->val[k]);
		}
		aurakv_free(v);
		exact[k] = true;
	}
}

/* aurakv foreach: every key visited is live in the model with its value. */
static int visit(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct fuzz *f = arg;
	unsigned long long k;
	char buf[32];

	FZ(klen == 9 && sscanf(memcpy(buf, key, 9), "k%08llu", &k) == 1 && k < FUZZ_KEYS,
	   "foreach: a key never written (%zu bytes)", klen);
	FZ(f->val[k] != 0, "foreach: key %llu is deleted", k);
	FZ(val_ok(val, vlen, k, f->val[k]), "foreach: key %llu: a wrong value", k);
	return 0;
}

#ifdef KV_CLI
/* The aurakv CLI's verify on the store: its exit status. */
static int cli_verify(void)
{
	char cmd[1400];
	int st;

	snprintf(cmd, sizeof(cmd), "'%s' --dir '%s' verify --quiet >/dev/null 2>&1", KV_CLI, dir);
	st = system(cmd);
	cr_assert(WIFEXITED(st), "%s: status %d", cmd, st);
	return WEXITSTATUS(st);
}
#endif

/* Open the damaged store and check it (and again after a compaction if `compact`);
 * returns whether it opened. */
static bool check_open(struct fuzz *f, const struct damage *d, bool lenient, bool compact,
		       int *corrupt, bool *exact)
{
	int rc, frc;

	f->db = NULL;
	memset(&f->rs, 0, sizeof(f->rs));
	rc = aurakv_open(dir, &f->o, &f->db);
	if (rc) {
		FZ(rc == AURAKV_ECORRUPT || rc == AURAKV_EFORMAT, "open: %s", aurakv_strerror(rc));
		FZ(!harmless(d), "open failed (%s) for harmless damage", aurakv_strerror(rc));
		FZ(f->rs.corruption > 0, "open: %s, but nothing reported", aurakv_strerror(rc));
		if (getenv("KV_CORRUPT_FUZZ_VERBOSE"))
			fprintf(stderr, "kv_corrupt_fuzz:   open: %s: %s\n", aurakv_strerror(rc),
				f->rs.last);
		return false;
	}
	check_keys(f, lenient, exact, corrupt);
	frc = aurakv_foreach(f->db, NULL, 0, visit, f);
	FZ(frc == 0 || (lenient && frc == AURAKV_ECORRUPT), "foreach: %s", aurakv_strerror(frc));
	if (*corrupt || frc)
		FZ(f->rs.corruption > 0, "a get said corrupt, nothing reported");
	if (compact) { /* GC over the damage: it must keep what it cannot copy, not spread it */
		bool again[FUZZ_KEYS];
		int more = 0, crc = aurakv_compact(f->db);

		FZ(crc == 0 || (lenient && crc == AURAKV_ECORRUPT), "compact: %s",
		   aurakv_strerror(crc));
		check_keys(f, lenient, again, &more);
		for (int k = 0; k < FUZZ_KEYS; k++)
			FZ(!exact[k] || again[k], "key %d read right, then corrupt after GC", k);
	}
	FZ(aurakv_close(f->db) == 0, "close");
	f->db = NULL;
	return true;
}

/* aurakv_verify (and, in one round of four, the CLI's) on the damaged store: it reports
 * what it must. Its result. */
static int verify_damaged(struct fuzz *f, const struct damage *d)
{
	aurakv_verify_result_t res;
	int vrc;

	memset(&f->rs, 0, sizeof(f->rs));
	vrc = aurakv_verify(dir, &f->o, &res);
	FZ(vrc == 0 || vrc == AURAKV_ECORRUPT || vrc == AURAKV_EFORMAT, "verify: %s",
	   aurakv_strerror(vrc));
	if (d->hits_record)
		FZ(vrc == AURAKV_ECORRUPT, "verify: %s for damage in a record",
		   aurakv_strerror(vrc));
	if (d->kind == FK_HINT && !d->hint_deleted && d->changed)
		FZ(vrc == AURAKV_ECORRUPT && res.bad_hints > 0, "verify: %s, %llu bad hints",
		   aurakv_strerror(vrc), (unsigned long long) res.bad_hints);
	if (vrc)
		FZ(f->rs.corruption > 0, "verify: %s, nothing reported", aurakv_strerror(vrc));
#ifdef KV_CLI
	if (below(4) == 0) {
		int want = vrc == 0 ? 0 : vrc == AURAKV_ECORRUPT ? 1 : 2, st = cli_verify();

		FZ(st == want, "aurakv verify exited %d; aurakv_verify: %s", st,
		   aurakv_strerror(vrc));
	}
#endif
	return vrc;
}

/* What the rounds met, to show the fuzz is not vacuous. */
struct totals {
	uint64_t rounds, hit_record, verify_found, open_failed, keys_corrupt, harmless;
};

static void one_round(uint64_t seed, struct totals *t)
{
	struct fuzz *f = calloc(1, sizeof(*f));
	aurakv_verify_result_t res;
	bool exact1[FUZZ_KEYS], exact2[FUZZ_KEYS];
	int corrupt1 = 0, corrupt2 = 0, vrc, vrc2;
	struct damage d;
	bool lenient;

	cr_assert_not_null(f);
	cur_seed = seed;
	rng_state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	snprintf(cur_damage, sizeof(cur_damage), "building");
	kv_rm_tree(dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	build(f);
	collect_files();
	if (getenv("KV_CORRUPT_FUZZ_VERBOSE"))
		list_segments();
	do
		damage(&d);
	while (d.file < 0);
	lenient = !harmless(&d);
	t->rounds++;
	t->hit_record += d.hits_record;
	t->harmless += !lenient;

	vrc = verify_damaged(f, &d);
	t->verify_found += vrc != 0;
	if (getenv("KV_CORRUPT_FUZZ_VERBOSE"))
		fprintf(stderr, "kv_corrupt_fuzz: seed %llu: %s: record %d, verify %s\n",
			(unsigned long long) seed, cur_damage, d.hits_record, aurakv_strerror(vrc));
	if (!check_open(f, &d, lenient, below(2), &corrupt1, exact1)) {
		FZ(vrc != 0, "open failed, verify found nothing");
		t->open_failed++;
		free(f);
		return;
	}
	if (corrupt1)
		FZ(vrc != 0, "%d keys corrupt, verify found nothing", corrupt1);
	t->keys_corrupt += (uint64_t) corrupt1;
	/* Again: what the first open repaired or wrote must not make anything worse. */
	FZ(check_open(f, &d, lenient, false, &corrupt2, exact2), "the second open failed");
	for (int k = 0; k < FUZZ_KEYS; k++)
		FZ(!exact1[k] || exact2[k], "key %d read right, then corrupt after a reopen", k);
	if (harmless(&d)) {
		vrc2 = aurakv_verify(dir, &f->o, &res);
		FZ(vrc2 == 0, "verify after reopening: %s (%llu bad hints, %llu corrupt): %s",
		   aurakv_strerror(vrc2), (unsigned long long) res.bad_hints,
		   (unsigned long long) res.corrupt, f->rs.last);
	}
	free(f);
}

Test(kv_corrupt_fuzz, random_damage_to_a_closed_store_is_found_never_served)
{
	uint64_t seed0 = test_env_u64("KV_CORRUPT_FUZZ_SEED", 1);
	uint64_t rounds = test_env_u64("KV_CORRUPT_FUZZ_ROUNDS", FUZZ_ROUNDS);
	struct totals t = { 0 };

	files = calloc(FUZZ_FILES, sizeof(*files));
	cr_assert_not_null(files);
	fprintf(stderr,
		"kv_corrupt_fuzz: seeds %llu .. %llu (KV_CORRUPT_FUZZ_SEED, "
		"KV_CORRUPT_FUZZ_ROUNDS)\n",
		(unsigned long long) seed0, (unsigned long long) (seed0 + rounds - 1));
	for (uint64_t i = 0; i < rounds; i++)
		one_round(seed0 + i, &t);
	free(files);
	fprintf(stderr,
		"kv_corrupt_fuzz: %llu rounds: %llu damaged a log record, %llu only what the "
		"store can rebuild; verify found %llu, open refused %llu, %llu gets said corrupt; "
		"nothing wrong was served\n",
		(unsigned long long) t.rounds, (unsigned long long) t.hit_record,
		(unsigned long long) t.harmless, (unsigned long long) t.verify_found,
		(unsigned long long) t.open_failed, (unsigned long long) t.keys_corrupt);
	/* Not vacuous: records were hit, and damage was found, refused and served as such. */
	cr_assert(rounds < 20 || (t.hit_record && t.harmless && t.open_failed + t.keys_corrupt),
		  "the damage never mattered");
}
