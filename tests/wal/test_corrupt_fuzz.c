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
 * Writing and damaging the log: tests/support/wal_corrupt_damage.h; checking: here.
 */
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "wal_format.h" /* align_up */
#include "wal_corrupt_damage.h"
#include "wal_test.h"

#ifndef WALDUMP_PATH
#define WALDUMP_PATH ""
#endif

#define DEFAULT_SEED	  0xC0AA0751ull
#define DEFAULT_ROUNDS	  400
#define DEFAULT_BUDGET_NS (10ull * 1000000000ull)

extern char **environ;

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
