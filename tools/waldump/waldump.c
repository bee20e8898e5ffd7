/* SPDX-License-Identifier: MIT */
/*
 * waldump.c - print and verify an AuraWAL log: its segments, its records, and every
 * finding of recovery (damaged ranges, a torn tail).
 *
 * The log is opened with AURAWAL_RECOVER_INSPECT: read-only, no LOCK taken (so it
 * works while another process has the log open), every damaged range reported and read
 * past. Every record the iterator returns has a verified checksum, so a listed record
 * is "ok"; damaged bytes appear as findings, listed in place among the records (sorted
 * by location) and again at the end. Recovery at open and the iterator may both report
 * the same damaged range, so findings are kept once per (kind, segment, offset).
 *
 * The segment table is what the library read; segfiles.c adds every segment file in
 * the directory, read on its own, so that the files past damage are seen too.
 *
 * Exit status: 0 no corruption (a torn tail is the clean end of a log, and a segment
 * dropped after a rollover whose flush was never made holds nothing acknowledged);
 * 1 corruption found; 2 bad arguments, the log could not be opened or read, or stdout
 * could not be written.
 *
 * Must never: write to the log. Uses only the public header aurawal.h (and tools/common
 * for number parsing and its standard descriptors).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aurawal.h"
#include "cliparse.h"
#include "segfiles.h"
#include "toolio.h"

#define EXIT_CORRUPT 1
#define EXIT_ERROR   2
/* --hex prints at most this many bytes of a payload (a line per 32 of them). */
#define HEX_MAX 4096

struct finding {
	aurawal_report_kind_t kind;
	uint64_t segment, offset, length;
	char reason[120]; /* a copy: the report's text is valid only during the call */
	bool printed;	  /* already listed among the records */
};

struct dump {
	/* options */
	const char *dir;
	bool verify, records, segments, all;
	uint64_t only_segment; /* --segment N, 0 = all */
	size_t hex;	       /* --hex N: payload bytes to print per record, <= HEX_MAX */
	uint64_t hex_asked;    /* --hex N as given (above HEX_MAX: payloads cut say so) */
	/* findings, in the order reported */
	struct finding *f;
	size_t nf, cap;
	int err; /* a reporter allocation failure */
	/* what the walk saw */
	uint64_t nrecords, bytes, first_seq, last_seq, nsegments, bad_seq;
	uint64_t own[5];	/* --all: the log's own records, by aurawal_record_type_t */
	uint64_t last_data_seq; /* last_seq is of any record (the order check) */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: waldump [options] DIR\n"
		"Print and check the AuraWAL log in DIR: segments, records, damage.\n"
		"  --verify          print only the findings and a summary (no tables)\n"
		"  --records         list the records (default)\n"
		"  --no-records      do not list the records\n"
		"  --segments        list the segments (default): those the log read, then\n"
		"                    every segment file in DIR (files:) with its size, its\n"
		"                    header state and whether the log read it - after a bad\n"
		"                    header the log reads no further, the files still show\n"
		"  --no-segments     do not list the segments\n"
		"  --segment N       list only segment N and its records\n"
		"  --hex N           also print the first N payload bytes of each record\n"
		"                    (at most 4096: a payload cut there says so)\n"
		"  --all             also list the log's own records - SEAL (ends a segment),\n"
		"                    SYNC marks, VOID (an append refused for lack of space) -\n"
		"                    which take sequence numbers and bytes: with them every\n"
		"                    number and byte of the log is accounted for\n"
		"  -h, --help        this text\n"
		"Records are listed as segment:offset, sequence, payload length and checksum\n"
		"state; damaged ranges appear in place and in the findings at the end.\n"
		"The log is opened read-only (inspect mode): safe while another process has it\n"
		"open; every damaged range is reported and read past.\n"
		"Exit status: 0 no corruption (a torn tail is a clean end, not corruption, and\n"
		"               a segment dropped after an unflushed rollover held nothing\n"
		"               acknowledged),\n"
		"             1 corruption found,\n"
		"             2 bad arguments, the log cannot be opened or read, or the\n"
		"               output cannot be written.\n");
}

static const char *kind_name(aurawal_report_kind_t k)
{
	switch (k) {
	case AURAWAL_REPORT_CORRUPTION:
		return "corruption";
	case AURAWAL_REPORT_TORN_TAIL:
		return "torn tail";
	case AURAWAL_REPORT_DROPPED:
		return "dropped";
	case AURAWAL_REPORT_LOCKED:
		return "locked";
	case AURAWAL_REPORT_FAILED: /* a writer's reports: never in inspect mode */
		return "failed";
	case AURAWAL_REPORT_PREPARE:
		return "preparing a segment";
	}
	return "unknown";
}

/* A torn tail is information (the clean end), and so is a segment dropped in inspect
 * mode - only after a rollover whose flush was never made, nothing in it acknowledged
 * (docs/wal_format.md, "Recovery rule"); damage is reported as corruption. */
static bool is_corruption(aurawal_report_kind_t k)
{
	return k == AURAWAL_REPORT_CORRUPTION;
}

static bool loc_before(uint64_t seg_a, uint64_t off_a, uint64_t seg_b, uint64_t off_b)
{
	return seg_a < seg_b || (seg_a == seg_b && off_a < off_b);
}

/* The log's reporter: keep each distinct finding once. */
static void reporter(const aurawal_report_t *r, void *arg)
{
	struct dump *d = arg;
	struct finding *f;

	for (size_t i = 0; i < d->nf; i++)
		if (d->f[i].kind == r->kind && d->f[i].segment == r->segment &&
		    d->f[i].offset == r->offset)
			return;
	if (d->nf == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct finding *v = realloc(d->f, cap * sizeof(*v));

		if (!v) {
			d->err = -ENOMEM;
			return;
		}
		d->f = v;
		d->cap = cap;
	}
	f = &d->f[d->nf++];
	*f = (struct finding){ r->kind, r->segment, r->offset, r->length, "", false };
	snprintf(f->reason, sizeof(f->reason), "%s", r->reason ? r->reason : "");
}

static void print_finding_row(const struct finding *f)
{
	char where[48];

	snprintf(where, sizeof(where), "%llu:%llu", (unsigned long long) f->segment,
		 (unsigned long long) f->offset);
	printf("  %-20s %12s %10llu  %s: %s\n", where, "-", (unsigned long long) f->length,
	       is_corruption(f->kind) ? "CORRUPT" : kind_name(f->kind), f->reason);
}

/* List, among the records, the findings located before (seg, off) not listed yet. With
 * seg == UINT64_MAX: all that remain. Findings arrive in location order per source, but
 * recovery's come first: pick the smallest each time. */
static void flush_findings(struct dump *d, uint64_t seg, uint64_t off)
{
	for (;;) {
		struct finding *best = NULL;

		for (size_t i = 0; i < d->nf; i++) {
			struct finding *f = &d->f[i];

			if (f->printed || (d->only_segment && f->segment != d->only_segment))
				continue;
			if (!loc_before(f->segment, f->offset, seg, off) && seg != UINT64_MAX)
				continue;
			if (!best || loc_before(f->segment, f->offset, best->segment, best->offset))
				best = f;
		}
		if (!best)
			return;
		best->printed = true;
		print_finding_row(best);
	}
}

/* --opt's value s: a decimal >= min in *out, or -EINVAL (reported). */
static int parse_number(const char *opt, const char *s, uint64_t min, uint64_t *out)
{
	uint64_t v;

	/* Decimal only (base 0 read "010" as 8), a digit first (" -1" was 2^64 - 1). */
	if (cli_parse_u64(s, &v) || v < min) {
		fprintf(stderr, "waldump: bad value for --%s: '%s' (a whole number >= %llu)\n", opt,
			s, (unsigned long long) min);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

enum { OPT_NO_RECORDS = 256, OPT_NO_SEGMENTS, OPT_SEGMENT, OPT_HEX, OPT_ALL };

static int apply_option(struct dump *d, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 'v':
		d->verify = true;
		return 0;
	case 'r':
		d->records = true;
		return 0;
	case OPT_NO_RECORDS:
		d->records = false;
		return 0;
	case 's':
		d->segments = true;
		return 0;
	case OPT_NO_SEGMENTS:
		d->segments = false;
		return 0;
	case OPT_SEGMENT:
		return parse_number("segment", arg, 1, &d->only_segment);
	case OPT_ALL:
		d->all = true;
		return 0;
	case OPT_HEX:
		if (parse_number("hex", arg, 0, &v) != 0)
			return -EINVAL;
		d->hex_asked = v;
		d->hex = v > HEX_MAX ? HEX_MAX : (size_t) v;
		return 0;
	default:
		return -EINVAL;
	}
}

/* 0 = run, 1 = help printed, -EINVAL = bad arguments (reported). */
static int parse_args(struct dump *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "verify", no_argument, NULL, 'v' },
		{ "records", no_argument, NULL, 'r' },
		{ "no-records", no_argument, NULL, OPT_NO_RECORDS },
		{ "segments", no_argument, NULL, 's' },
		{ "no-segments", no_argument, NULL, OPT_NO_SEGMENTS },
		{ "segment", required_argument, NULL, OPT_SEGMENT },
		{ "hex", required_argument, NULL, OPT_HEX },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	d->records = d->segments = true;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?' || apply_option(d, c, optarg) != 0) {
			usage(stderr);
			return -EINVAL;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "waldump: %s\n",
			argc == optind ? "no log directory given"
				       : "more than one directory given");
		usage(stderr);
		return -EINVAL;
	}
	d->dir = argv[optind];
	if (d->verify)
		d->records = d->segments = false;
	return 0;
}

/* Open the log read-only; on failure say why in terms of the directory. */
static int open_log(struct dump *d, aurawal_t **log)
{
	aurawal_options_t o;
	struct stat st;
	int rc;

	if (stat(d->dir, &st) != 0) {
		rc = -errno;
		fprintf(stderr, "waldump: %s: %s\n", d->dir, aurawal_strerror(rc));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "waldump: %s: not a directory (give the log's directory)\n",
			d->dir);
		return -ENOTDIR;
	}
	aurawal_options_init(&o);
	o.create_if_missing = false;
	o.recovery = AURAWAL_RECOVER_INSPECT;
	o.reporter = reporter;
	o.reporter_arg = d;
	rc = aurawal_open(d->dir, &o, log);
	if (rc == -ENOENT)
		fprintf(stderr, "waldump: %s: not an AuraWAL log (no segment files)\n", d->dir);
	else if (rc == AURAWAL_ECORRUPT)
		fprintf(stderr, "waldump: %s: cannot be opened even for inspection: %s\n", d->dir,
			aurawal_strerror(rc));
	else if (rc)
		fprintf(stderr, "waldump: %s: %s\n", d->dir, aurawal_strerror(rc));
	return rc;
}

static void print_segment_table(const aurawal_segment_info_t *v, size_t n, uint64_t only)
{
	printf("segments:\n  %-10s %12s %12s %12s  %s\n", "segment", "first seq", "last seq",
	       "bytes", "state");
	for (size_t i = 0; i < n; i++) {
		if (only && v[i].number != only)
			continue;
		printf("  %-10llu %12llu %12llu %12llu  %s\n", (unsigned long long) v[i].number,
		       (unsigned long long) v[i].first_seq, (unsigned long long) v[i].last_seq,
		       (unsigned long long) v[i].bytes, v[i].sealed ? "sealed" : "open");
	}
}

/* The segment table (if asked) and the checks of --segment. 0, -ENOENT or -errno. */
static int list_segments(struct dump *d, aurawal_t *log)
{
	aurawal_segment_info_t *v;
	size_t n = 0;
	bool found = false;
	int rc = aurawal_list_segments(log, NULL, 0, &n);

	if (rc)
		return rc;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	rc = aurawal_list_segments(log, v, n, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		found |= v[i].number == d->only_segment;
	d->nsegments = n;
	if (rc == 0 && d->only_segment && !found) {
		fprintf(stderr, "waldump: %s: no segment %llu (the log has %llu..%llu)\n", d->dir,
			(unsigned long long) d->only_segment,
			(unsigned long long) (n ? v[0].number : 0),
			(unsigned long long) (n ? v[n - 1].number : 0));
		rc = -ENOENT;
	}
	if (rc == 0 && d->segments) {
		print_segment_table(v, n, d->only_segment);
		rc = segfiles_print(d->dir, v, n, d->only_segment);
	}
	free(v);
	return rc;
}

/* The first --hex bytes of a payload; "..." if there are more, and where HEX_MAX cut
 * what was asked for, says so. */
static void print_hex(const struct dump *d, const void *payload, size_t len)
{
	const unsigned char *p = payload;
	size_t n = len < d->hex ? len : d->hex;

	if (!n)
		return;
	printf("    ");
	for (size_t i = 0; i < n; i++)
		printf("%02x%s", p[i], i + 1 < n && (i + 1) % 32 == 0 ? "\n    " : " ");
	printf("%s", n < len ? "..." : "");
	if (n < len && d->hex_asked > n)
		printf(" (%zu of %zu bytes shown: --hex prints at most %d)", n, len, HEX_MAX);
	printf("\n");
}

/* What a record of the log's own is, for its row (--all). */
static const char *own_kind(const aurawal_record_t *r, char *buf, size_t size)
{
	uint64_t next = 0;

	switch (r->type) {
	case AURAWAL_RECORD_SEAL:
		for (int i = 7; i >= 0; i--) /* little-endian on disk */
			next = next << 8 | ((const unsigned char *) r->payload)[i];
		snprintf(buf, size, "SEAL: the segment ends, segment %llu follows",
			 (unsigned long long) next);
		return buf;
	case AURAWAL_RECORD_SYNC:
		return "SYNC mark: everything before this segment was durable";
	case AURAWAL_RECORD_VOID:
		return "VOID: an append refused for lack of space";
	default:
		return "";
	}
}

/* One record the iterator returned (its checksum verified by the library). */
static void on_record(struct dump *d, const aurawal_record_t *r)
{
	/* Recovery treats a sequence that does not grow as damage (and reports it at this
	 * location); the iterator does not check order, so say so on the record too. */
	bool in_order = r->seq > d->last_seq, data = r->type == AURAWAL_RECORD_DATA;
	char where[48], kind[96];

	if (!in_order)
		d->bad_seq++;
	if (data && !d->first_seq)
		d->first_seq = r->seq;
	d->last_seq = in_order ? r->seq : d->last_seq;
	if (data) {
		if (in_order)
			d->last_data_seq = r->seq;
		d->nrecords++;
		d->bytes += r->len;
	} else {
		d->own[r->type]++;
	}
	if (!d->records)
		return;
	flush_findings(d, r->loc.segment, r->loc.offset);
	snprintf(where, sizeof(where), "%llu:%u", (unsigned long long) r->loc.segment,
		 r->loc.offset);
	printf("  %-20s %12llu %10zu  %s%s%s\n", where, (unsigned long long) r->seq, r->len,
	       in_order ? "ok" : "ok, but its sequence is not above the previous one",
	       data ? "" : "  ", data ? "" : own_kind(r, kind, sizeof(kind)));
	if (d->hex && data)
		print_hex(d, r->payload, r->len);
}

/* Every record the iterator returns (--all: the log's own too); damage comes through
 * the reporter. */
static int walk_records(struct dump *d, aurawal_t *log)
{
	aurawal_loc_t from = { d->only_segment, 0, 0 };
	aurawal_record_t r;
	aurawal_iter_t *it;
	int rc = aurawal_iter_open(log, from, &it);

	if (rc)
		return rc;
	if (d->records)
		printf("records:\n  %-20s %12s %10s  %s\n", "segment:offset", "seq", "length",
		       "checksum");
	for (;;) {
		if (d->all)
			rc = aurawal_iter_next_record(it, &r);
		else
			rc = aurawal_iter_next(it, &r.loc, &r.seq, &r.payload, &r.len);
		if (rc != 1)
			break;
		if (!d->all)
			r.type = AURAWAL_RECORD_DATA;
		if (d->only_segment && r.loc.segment != d->only_segment)
			break;
		on_record(d, &r);
	}
	aurawal_iter_close(it);
	if (rc >= 0 && d->records)
		flush_findings(d, UINT64_MAX, 0);
	return rc < 0 ? rc : 0;
}

/* List every finding; returns the number that are corruption (*torn: torn tails,
 * *dropped: segments dropped). */
static size_t print_findings(const struct dump *d, size_t *torn, size_t *dropped)
{
	size_t corrupt = 0;

	*torn = *dropped = 0;
	printf("findings:%s\n", d->nf ? "" : " none");
	for (size_t i = 0; i < d->nf; i++) {
		const struct finding *f = &d->f[i];
		bool is_torn = f->kind == AURAWAL_REPORT_TORN_TAIL;

		corrupt += is_corruption(f->kind);
		*torn += is_torn;
		*dropped += f->kind == AURAWAL_REPORT_DROPPED;
		printf("  %s at %llu:%llu, %llu bytes: %s%s\n", kind_name(f->kind),
		       (unsigned long long) f->segment, (unsigned long long) f->offset,
		       (unsigned long long) f->length, f->reason,
		       is_torn ? " (the clean end of the log)" : "");
	}
	return corrupt;
}

/* The findings and the summary line; returns the number of corruption findings. */
static size_t print_summary(const struct dump *d)
{
	size_t torn, dropped, corrupt = print_findings(d, &torn, &dropped);
	char own[160] = "", drop[64] = "";

	if (d->all)
		snprintf(own, sizeof(own),
			 ", and %llu of the log's own (%llu SEAL, %llu SYNC, %llu VOID)",
			 (unsigned long long) (d->own[AURAWAL_RECORD_SEAL] +
					       d->own[AURAWAL_RECORD_SYNC] +
					       d->own[AURAWAL_RECORD_VOID]),
			 (unsigned long long) d->own[AURAWAL_RECORD_SEAL],
			 (unsigned long long) d->own[AURAWAL_RECORD_SYNC],
			 (unsigned long long) d->own[AURAWAL_RECORD_VOID]);
	if (dropped)
		snprintf(drop, sizeof(drop), ", %zu segment(s) dropped (never acknowledged)",
			 dropped);
	printf("summary: %llu segment(s), %llu records (seq %llu..%llu), %llu payload bytes%s, "
	       "%zu corruption(s), %zu torn tail(s)%s%s\n",
	       (unsigned long long) d->nsegments, (unsigned long long) d->nrecords,
	       (unsigned long long) d->first_seq, (unsigned long long) d->last_data_seq,
	       (unsigned long long) d->bytes, own, corrupt, torn, drop,
	       d->only_segment ? " (records of the one segment asked for)" : "");
	return corrupt;
}

/* The open failed on damage it cannot read past (a bad header, a lost segment). */
static size_t print_open_failure(const struct dump *d)
{
	size_t torn, dropped, corrupt = print_findings(d, &torn, &dropped);

	printf("summary: the log cannot be opened, %zu corruption(s)\n", corrupt);
	return corrupt;
}

int main(int argc, char **argv)
{
	struct dump d = { 0 };
	aurawal_t *log = NULL;
	size_t corrupt;
	int rc;

	tool_hold_std_fds(EXIT_ERROR); /* else a closed stdout is a segment's fd */
	rc = parse_args(&d, argc, argv);

	if (rc)
		return rc > 0 ? 0 : EXIT_ERROR;
	rc = open_log(&d, &log);
	if (rc) {
		/* The open failed on damage (a bad header, a lost segment): show it. */
		if (rc == AURAWAL_ECORRUPT && d.segments)
			segfiles_print(d.dir, NULL, 0, d.only_segment);
		corrupt = rc == AURAWAL_ECORRUPT ? print_open_failure(&d) : 0;
		free(d.f);
		return corrupt ? EXIT_CORRUPT : EXIT_ERROR;
	}
	printf("log: %s\n", d.dir);
	rc = list_segments(&d, log);
	if (rc == 0)
		rc = walk_records(&d, log);
	if (rc && rc != -ENOENT)
		fprintf(stderr, "waldump: reading %s: %s\n", d.dir, aurawal_strerror(rc));
	/* -ENOENT: --segment named no segment (said above); nothing was examined. */
	corrupt = rc == -ENOENT ? 0 : print_summary(&d);
	if (d.err)
		fprintf(stderr, "waldump: %s: some findings were not kept\n",
			aurawal_strerror(d.err));
	aurawal_close(log);
	free(d.f);
	if (corrupt)
		return EXIT_CORRUPT;
	/* A listing lost on the way (a full disk, a closed stdout) is no clean result. */
	if (tool_flush_stdout("waldump", aurawal_strerror))
		return EXIT_ERROR;
	return rc || d.err ? EXIT_ERROR : 0;
}
