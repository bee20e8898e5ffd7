/* SPDX-License-Identifier: MIT */
/*
 * options.c - walbench's command line: parsing, validation and the usage text.
 * Parsing never opens files or allocates anything that must be freed.
 */
#include <errno.h>
#include <float.h>
#include <string.h>

#include "cliparse.h"
#include "walbench.h"

enum {
	OPT_DIR = 256,
	OPT_THREADS,
	OPT_RECORD_SIZE,
	OPT_DURABLE,
	OPT_NO_DURABLE,
	OPT_ASYNC,
	OPT_DURATION,
	OPT_COUNT,
	OPT_SEGMENT,
	OPT_BUFFER,
	OPT_SYNC_MODE,
	OPT_RECYCLE,
	OPT_JSON,
	OPT_KV,
	OPT_QUIET,
	OPT_KEEP,
	OPT_HELP,
};

/* The second name of each pair is an alias (the names iobench and fio users expect). */
static const struct option long_opts[] = {
	{ "dir", required_argument, NULL, OPT_DIR },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "appenders", required_argument, NULL, OPT_THREADS },
	{ "record-size", required_argument, NULL, OPT_RECORD_SIZE },
	{ "size", required_argument, NULL, OPT_RECORD_SIZE },
	{ "durable", no_argument, NULL, OPT_DURABLE },
	{ "no-durable", no_argument, NULL, OPT_NO_DURABLE },
	{ "async-depth", required_argument, NULL, OPT_ASYNC },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "runtime", required_argument, NULL, OPT_DURATION },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "segment-size", required_argument, NULL, OPT_SEGMENT },
	{ "buffer-size", required_argument, NULL, OPT_BUFFER },
	{ "sync-mode", required_argument, NULL, OPT_SYNC_MODE },
	{ "recycle", no_argument, NULL, OPT_RECYCLE },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "kv", no_argument, NULL, OPT_KV },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "keep", no_argument, NULL, OPT_KEEP },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: walbench [options]\n"
	    "Append records to one AuraWAL log from one or more threads; report the rate,\n"
	    "the latency of every append, and the log's group-commit counters.\n"
	    "  --threads N            appending threads, one shared log (default 1)\n"
	    "  --record-size BYTES    payload bytes per record, k/m suffix (default 128); at\n"
	    "                         most the segment size - 4200\n"
	    "  --durable              every append waits until durable (default)\n"
	    "  --no-durable           buffered appends; one aurawal_sync() at the end,\n"
	    "                         included in the reported rate\n"
	    "  --async-depth D        each thread keeps D appends in flight with\n"
	    "                         aurawal_append_async + aurawal_poll (default 0 = sync)\n"
	    "  --duration SECONDS     how long to append, fractions allowed (default 10,\n"
	    "                         or no limit when --count is given)\n"
	    "  --count N              stop after N >= 1 appends in total (k/m suffix: 2^10,\n"
	    "                         2^20)\n"
	    "  --segment-size BYTES   segment size of the new log (default: library's, 64m)\n"
	    "  --buffer-size BYTES    bytes a batch may gather, 64k..256m in 4k steps (default:\n"
	    "                         library's, 1m)\n"
	    "  --sync-mode MODE       dsync or fdatasync (default: library's, dsync)\n"
	    "  --recycle              release segments behind the active one as the log\n"
	    "                         rolls over, so their files are recycled (as a store\n"
	    "                         does after a checkpoint); default: the log only grows\n"
	    "  --dir DIR              make the log in DIR, which must not exist or be empty\n"
	    "                         (default: a new directory in /var/tmp); removed at the\n"
	    "                         end unless --keep\n"
	    "  --keep                 leave the log in place (inspect it with waldump)\n"
	    "  --json FILE            also write the results as JSON to FILE ('-' = stdout)\n"
	    "  --kv                   print one line of key=value results on stdout (the\n"
	    "                         human report then goes to stderr)\n"
	    "  --quiet                no progress lines\n"
	    "Aliases: --appenders = --threads, --size = --record-size, --runtime = --duration.\n"
	    "Exit status: 0 done, 1 the run failed or its report was lost, 2 bad\n"
	    "arguments (a --json FILE that cannot be written, checked first, included).\n");
}

/* Seconds, fractions allowed: > 0 (DBL_TRUE_MIN is the smallest double above 0) and
 * at most 1e7. 0 or -EINVAL. */
static int parse_seconds(const char *s, double *out)
{
	return cli_parse_double(s, DBL_TRUE_MIN, 1e7, out);
}

static int parse_sync_mode(const char *s, aurawal_sync_mode_t *out)
{
	if (strcmp(s, "fdatasync") == 0)
		*out = AURAWAL_SYNC_FDATASYNC;
	else if (strcmp(s, "dsync") == 0)
		*out = AURAWAL_SYNC_DSYNC;
	else
		return -EINVAL;
	return 0;
}

static void defaults(void *config)
{
	struct bench_config *cfg = config;

	memset(cfg, 0, sizeof(*cfg));
	cfg->threads = 1;
	cfg->record_size = 128;
	cfg->durable = true;
	cfg->duration = -1; /* not given: 10 s, or no limit with --count */
	{
		aurawal_options_t o;

		aurawal_options_init(&o);
		cfg->sync_mode = o.sync_mode; /* the library's default */
	}
}

/* A flag option; false if c is not one. */
static bool apply_flag(struct bench_config *cfg, int c)
{
	switch (c) {
	case OPT_DURABLE:
		cfg->durable = true;
		return true;
	case OPT_NO_DURABLE:
		cfg->durable = false;
		return true;
	case OPT_RECYCLE:
		cfg->recycle = true;
		return true;
	case OPT_QUIET:
		cfg->quiet = true;
		return true;
	case OPT_KEEP:
		cfg->keep = true;
		return true;
	case OPT_KV:
		cfg->kv = true;
		return true;
	default:
		return false;
	}
}

/* One option (flag or with an argument) into cfg (a struct bench_config). 0 or -EINVAL. */
static int apply_option(void *config, int c, const char *arg)
{
	struct bench_config *cfg = config;

	if (apply_flag(cfg, c))
		return 0;
	switch (c) {
	case OPT_DIR:
		cfg->dir = arg;
		return 0;
	case OPT_THREADS:
		return cli_parse_int(arg, 1, 1024, &cfg->threads);
	case OPT_RECORD_SIZE:
		return cli_parse_size(arg, &cfg->record_size);
	case OPT_ASYNC:
		return cli_parse_int(arg, 0, 65536, &cfg->async_depth);
	case OPT_DURATION:
		return parse_seconds(arg, &cfg->duration);
	case OPT_COUNT:
		/* 0 is the "not given" of cfg->count: refused, not taken as 10 s */
		return cli_parse_size(arg, &cfg->count) || cfg->count == 0 ? -EINVAL : 0;
	case OPT_SEGMENT:
		return cli_parse_size(arg, &cfg->segment_size);
	case OPT_BUFFER:
		return cli_parse_size(arg, &cfg->buffer_size);
	case OPT_SYNC_MODE:
		return parse_sync_mode(arg, &cfg->sync_mode);
	case OPT_JSON:
		cfg->json = arg;
		return 0;
	default:
		return -EINVAL;
	}
}

/* What a segment holds besides the largest record: its header block, the record's
 * header, a SYNC mark and a SEAL (aurawal.h, AURAWAL_MAX_RECORD). */
#define SEGMENT_OVERHEAD 4200

/* The segment size the log will have: --segment-size, or the library's default. */
static uint64_t segment_size(const struct bench_config *cfg)
{
	aurawal_options_t o;

	if (cfg->segment_size)
		return cfg->segment_size;
	aurawal_options_init(&o);
	return o.segment_size;
}

/* Cross-option checks, with the ranges aurawal.h documents. NULL when fine, else what
 * is wrong. */
static const char *validate(const struct bench_config *cfg)
{
	uint64_t seg = cfg->segment_size;

	if (cfg->record_size > AURAWAL_MAX_RECORD)
		return "--record-size must be at most 64m (AURAWAL_MAX_RECORD)";
	if (cfg->kv && cfg->json && strcmp(cfg->json, "-") == 0)
		return "--kv and --json - would both write to stdout";
	if (cfg->dir && strlen(cfg->dir) >= 200)
		return "--dir is too long";
	if (seg && (seg < (1u << 20) || seg > (4ull << 30) || seg % 4096))
		return "--segment-size must be a multiple of 4k in 1m..4g";
	if (cfg->buffer_size && (cfg->buffer_size < (64u << 10) ||
				 cfg->buffer_size > (256u << 20) || cfg->buffer_size % 4096))
		return "--buffer-size must be a multiple of 4k in 64k..256m";
	/* The default segment too: a record it cannot hold failed every append of the run
	 * (-EMSGSIZE), after the log was made. */
	if (cfg->record_size + SEGMENT_OVERHEAD > segment_size(cfg))
		return "--record-size does not fit in a segment (at most --segment-size, default "
		       "64m, minus 4200)";
	return NULL;
}

/* After the options: --duration's default depends on --count; then the checks. */
static const char *finish(void *config)
{
	struct bench_config *cfg = config;

	if (cfg->duration < 0)
		cfg->duration = cfg->count ? 0 : 10.0;
	return validate(cfg);
}

/* 0 = run, 1 = help printed (exit 0), -EINVAL = bad arguments (usage printed). */
int options_parse(struct bench_config *cfg, int argc, char **argv)
{
	static const struct cli_spec spec = {
		.prog = "walbench",
		.long_opts = long_opts,
		.help = OPT_HELP,
		.usage = usage,
		.defaults = defaults,
		.apply = apply_option,
		.finish = finish,
	};

	return cli_parse(&spec, cfg, argc, argv);
}
