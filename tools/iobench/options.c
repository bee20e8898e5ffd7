/* SPDX-License-Identifier: MIT */
/*
 * options.c - iobench's command line: parsing, validation and the usage text.
 * Parsing never opens files or allocates anything that must be freed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cliparse.h"
#include "iobench.h"

enum {
	OPT_RW = 256,
	OPT_BS,
	OPT_QD,
	OPT_ADAPTIVE,
	OPT_DIRECT,
	OPT_REG_FILES,
	OPT_REG_BUFS,
	OPT_SQPOLL,
	OPT_DEFER,
	OPT_THREADS,
	OPT_RINGS,
	OPT_RUNTIME,
	OPT_IOS,
	OPT_RAMP,
	OPT_FILE,
	OPT_SIZE,
	OPT_JSON,
	OPT_TRACE,
	OPT_MAXP99,
	OPT_ENGINE,
	OPT_SEED,
	OPT_QUIET,
	OPT_SINGLE,
	OPT_BATCH,
	OPT_HELP,
};

static const struct option long_opts[] = {
	{ "rw", required_argument, NULL, OPT_RW },
	{ "bs", required_argument, NULL, OPT_BS },
	{ "qd", required_argument, NULL, OPT_QD },
	{ "iodepth", required_argument, NULL, OPT_QD },
	{ "adaptive", no_argument, NULL, OPT_ADAPTIVE },
	{ "direct", no_argument, NULL, OPT_DIRECT },
	{ "registered-files", no_argument, NULL, OPT_REG_FILES },
	{ "registered-buffers", no_argument, NULL, OPT_REG_BUFS },
	{ "sqpoll", no_argument, NULL, OPT_SQPOLL },
	{ "defer-taskrun", no_argument, NULL, OPT_DEFER },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "rings", required_argument, NULL, OPT_RINGS },
	{ "runtime", required_argument, NULL, OPT_RUNTIME },
	{ "ios", required_argument, NULL, OPT_IOS },
	{ "ramp", required_argument, NULL, OPT_RAMP },
	{ "file", required_argument, NULL, OPT_FILE },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "trace", required_argument, NULL, OPT_TRACE },
	{ "max-p99-ms", required_argument, NULL, OPT_MAXP99 },
	{ "engine", required_argument, NULL, OPT_ENGINE },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "single-thread", no_argument, NULL, OPT_SINGLE },
	{ "batch", no_argument, NULL, OPT_BATCH },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

void options_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: iobench --file PATH [options]\n"
	    "  --rw MODE              randread (default), randwrite, read, write\n"
	    "  --bs N                 block size in bytes, k/m/g suffix (default 4k)\n"
	    "  --qd N                 I/Os in flight per thread (default 32)\n"
	    "  --adaptive             let the engine's adaptive in-flight limit decide\n"
	    "                         (submit until EAGAIN; --qd is the engine queue depth)\n"
	    "  --direct               open the file with O_DIRECT\n"
	    "  --registered-files     register the file with the ring(s)\n"
	    "  --registered-buffers   register the I/O buffers with the ring(s)\n"
	    "  --sqpoll               kernel submission polling thread\n"
	    "  --defer-taskrun        liburing engine: SINGLE_ISSUER + DEFER_TASKRUN (as fio)\n"
	    "  --threads N            submitting threads (default 1)\n"
	    "  --rings N              engine rings (default 0 = engine default)\n"
	    "  --single-thread        engine single_thread mode: no locks, one ring; only with\n"
	    "                         --threads 1 and --engine auraio\n"
	    "  --batch                engine: resubmit each wait's completions with one\n"
	    "                         auraio_submit_batch() call instead of one call per I/O\n"
	    "  --runtime SECONDS      measured time, fractions allowed (default 10)\n"
	    "  --ios N                run exactly N I/Os (N >= 1) instead of --runtime, split\n"
	    "                         over the threads (k/m suffix as --bs); for instruction\n"
	    "                         counts\n"
	    "  --ramp SECONDS         warm-up excluded from the results (default 0)\n"
	    "  --file PATH            file or block device to use (existing contents are used\n"
	    "                         as is; a device is written only by --rw randwrite/write)\n"
	    "  --size N               create or extend the file to N bytes by writing data; on\n"
	    "                         a block device: use its first N bytes (nothing written)\n"
	    "  --json FILE            also write the results as JSON to FILE ('-' = stdout;\n"
	    "                         the human report then goes to stderr, as with --trace -)\n"
	    "  --trace FILE           every 100 ms: time,iops,p99,limit,batch,phase as CSV\n"
	    "                         ('-' = stdout)\n"
	    "  --max-p99-ms X         --adaptive: the P99 guard in ms (engine default 10)\n"
	    "  --engine NAME          auraio (default) or liburing (hand-written baseline)\n"
	    "  --seed N               random seed (default 1)\n"
	    "  --quiet                no progress lines\n"
	    "Exit status: 0 done, 1 the run failed or its report was lost, 2 bad\n"
	    "arguments (a --json or --trace FILE that cannot be written, checked first,\n"
	    "included).\n");
}

static int parse_rw(const char *s, struct bench_config *cfg)
{
	static const struct {
		const char *name;
		bool is_write, random;
	} modes[] = {
		{ "randread", false, true },
		{ "randwrite", true, true },
		{ "read", false, false },
		{ "write", true, false },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(s, modes[i].name) == 0) {
			cfg->is_write = modes[i].is_write;
			cfg->random = modes[i].random;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_engine(const char *s, enum bench_engine *out)
{
	if (strcmp(s, "auraio") == 0)
		*out = ENGINE_AURAIO;
	else if (strcmp(s, "liburing") == 0)
		*out = ENGINE_LIBURING;
	else
		return -EINVAL;
	return 0;
}

static void defaults(void *config)
{
	struct bench_config *cfg = config;

	memset(cfg, 0, sizeof(*cfg));
	cfg->random = true;
	cfg->bs = 4096;
	cfg->qd = 32;
	cfg->threads = 1;
	cfg->runtime = 10.0;
	cfg->engine = ENGINE_AURAIO;
	cfg->seed = 1;
}

/* A flag option; false if c is not one. */
static bool apply_flag(struct bench_config *cfg, int c)
{
	bool *flag;

	switch (c) {
	case OPT_ADAPTIVE:
		flag = &cfg->adaptive;
		break;
	case OPT_DIRECT:
		flag = &cfg->direct;
		break;
	case OPT_REG_FILES:
		flag = &cfg->reg_files;
		break;
	case OPT_REG_BUFS:
		flag = &cfg->reg_bufs;
		break;
	case OPT_SQPOLL:
		flag = &cfg->sqpoll;
		break;
	case OPT_DEFER:
		flag = &cfg->defer_taskrun;
		break;
	case OPT_QUIET:
		flag = &cfg->quiet;
		break;
	case OPT_SINGLE:
		flag = &cfg->single_thread;
		break;
	case OPT_BATCH:
		flag = &cfg->batch;
		break;
	default:
		return false;
	}
	*flag = true;
	return true;
}

/* A decimal >= 0 (seconds, or --max-p99-ms's milliseconds). 0 or -EINVAL. */
static int parse_nonneg(const char *s, double *out)
{
	return cli_parse_double(s, 0.0, 1e7, out);
}

/* One option (flag or with an argument) into cfg (a struct bench_config). 0 or -EINVAL. */
static int apply_option(void *config, int c, const char *arg)
{
	struct bench_config *cfg = config;

	if (apply_flag(cfg, c))
		return 0;
	switch (c) {
	case OPT_RW:
		return parse_rw(arg, cfg);
	case OPT_BS:
		return cli_parse_size(arg, &cfg->bs);
	case OPT_QD:
		return cli_parse_int(arg, 1, 4096, &cfg->qd);
	case OPT_THREADS:
		return cli_parse_int(arg, 1, 256, &cfg->threads);
	case OPT_RINGS:
		return cli_parse_int(arg, 0, 256, &cfg->rings);
	case OPT_RUNTIME:
		return parse_nonneg(arg, &cfg->runtime);
	case OPT_RAMP:
		return parse_nonneg(arg, &cfg->ramp);
	case OPT_IOS:
		/* 0 is the "not given" of cfg->ios: refused, not taken as --runtime */
		return cli_parse_size(arg, &cfg->ios) || cfg->ios == 0 ? -EINVAL : 0;
	case OPT_FILE:
		cfg->file = arg;
		return 0;
	case OPT_SIZE:
		return cli_parse_size(arg, &cfg->size);
	case OPT_JSON:
		cfg->json = arg;
		return 0;
	case OPT_TRACE:
		cfg->trace = arg;
		return 0;
	case OPT_MAXP99:
		return parse_nonneg(arg, &cfg->max_p99_ms); /* a positive decimal */
	case OPT_ENGINE:
		return parse_engine(arg, &cfg->engine);
	case OPT_SEED:
		/* Decimal, a digit first (cliparse.h): strtoull's base 0 took " -1" as
		 * 2^64 - 1 and "010" as 8. */
		return cli_parse_u64(arg, &cfg->seed);
	default:
		return -EINVAL;
	}
}

/* Cross-option checks. NULL when fine, else what is wrong. */
static const char *validate(void *config)
{
	const struct bench_config *cfg = config;

	if (!cfg->file)
		return "--file is required";
	if (cfg->bs == 0 || cfg->bs > (1u << 30))
		return "--bs must be in 1..1g";
	if (cfg->direct && cfg->bs % 512)
		return "--direct needs --bs a multiple of 512";
	if (cfg->runtime <= 0)
		return "--runtime must be > 0";
	if (cfg->ios && (cfg->ramp > 0 || cfg->trace))
		return "--ios cannot be combined with --ramp or --trace";
	if (cfg->ios && cfg->ios < (uint64_t) cfg->threads)
		return "--ios must be at least --threads";
	if ((uint64_t) cfg->qd * (uint64_t) cfg->threads > 4096 && !cfg->adaptive &&
	    cfg->engine == ENGINE_AURAIO)
		return "--qd x --threads must be <= 4096 (the engine's largest queue)";
	if (cfg->defer_taskrun && cfg->engine != ENGINE_LIBURING)
		return "--defer-taskrun applies to --engine liburing only";
	if (cfg->batch && cfg->engine != ENGINE_AURAIO)
		return "--batch applies to --engine auraio only";
	/* One thread at a time may use a single_thread engine (auraio.h): with more, the
	 * run raced on the lock-free rings and hung. */
	if (cfg->single_thread && cfg->engine != ENGINE_AURAIO)
		return "--single-thread applies to --engine auraio only";
	if (cfg->single_thread && cfg->threads != 1)
		return "--single-thread needs --threads 1";
	if (cfg->size && cfg->size < cfg->bs)
		return "--size must be at least --bs";
	if (cfg->trace && cfg->json && !strcmp(cfg->trace, "-") && !strcmp(cfg->json, "-"))
		return "--trace - and --json - would both write to stdout";
	return NULL;
}

/* 0 = run, 1 = help printed (exit 0), -EINVAL = bad arguments (usage printed). */
int options_parse(struct bench_config *cfg, int argc, char **argv)
{
	static const struct cli_spec spec = {
		.prog = "iobench",
		.long_opts = long_opts,
		.help = OPT_HELP,
		.usage = options_usage,
		.defaults = defaults,
		.apply = apply_option,
		.finish = validate,
	};

	return cli_parse(&spec, cfg, argc, argv);
}
