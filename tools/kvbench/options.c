/* SPDX-License-Identifier: MIT */
/*
 * options.c - kvbench's command line: parsing, validation and the usage text.
 * Parsing never opens files or allocates anything that must be freed.
 */
#include <errno.h>
#include <float.h>
#include <string.h>

#include "cliparse.h"
#include "kvbench.h"

enum {
	OPT_BENCHMARKS = 256,
	OPT_THREADS,
	OPT_NUM,
	OPT_READS,
	OPT_WRITES,
	OPT_KEY_SIZE,
	OPT_VALUE_SIZE,
	OPT_COMPRESSIBILITY,
	OPT_CACHE_SIZE,
	OPT_ASYNC,
	OPT_BATCH,
	OPT_DB,
	OPT_USE_EXISTING,
	OPT_DURATION,
	OPT_COMPRESS_MIN,
	OPT_SEGMENT,
	OPT_SEED,
	OPT_JSON,
	OPT_QUIET,
	OPT_HELP,
};

static const struct option long_opts[] = {
	{ "benchmarks", required_argument, NULL, OPT_BENCHMARKS },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "num", required_argument, NULL, OPT_NUM },
	{ "reads", required_argument, NULL, OPT_READS },
	{ "writes", required_argument, NULL, OPT_WRITES },
	{ "key-size", required_argument, NULL, OPT_KEY_SIZE },
	{ "value-size", required_argument, NULL, OPT_VALUE_SIZE },
	{ "compressibility", required_argument, NULL, OPT_COMPRESSIBILITY },
	{ "compression-ratio", required_argument, NULL, OPT_COMPRESSIBILITY },
	{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
	{ "async-depth", required_argument, NULL, OPT_ASYNC },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "db", required_argument, NULL, OPT_DB },
	{ "use-existing", no_argument, NULL, OPT_USE_EXISTING },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "compress-min", required_argument, NULL, OPT_COMPRESS_MIN },
	{ "segment-size", required_argument, NULL, OPT_SEGMENT },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "json", required_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static const struct workload workloads[] = {
	{ "fillseq", WL_FILLSEQ, false, true, "put keys 0..num-1 in key order" },
	{ "fillrandom", WL_FILLRANDOM, false, true,
	  "put keys 0..num-1, each once, in a random order" },
	{ "fillsync", WL_FILLSYNC, false, true,
	  "as fillrandom, durable puts (AURAKV_SYNC); --writes\n"
	  "                         default num/1000, as db_bench" },
	{ "overwrite", WL_OVERWRITE, true, true, "put random existing keys (with replacement)" },
	{ "readrandom", WL_READRANDOM, true, false,
	  "get random existing keys; --async-depth D keeps\n"
	  "                         D gets in flight per thread (aurakv_get_async)" },
	{ "readseq", WL_READSEQ, true, false,
	  "get existing keys in key order, each once (at most\n"
	  "                         --reads), --batch per aurakv_multi_get: warms the cache" },
	{ "readmissing", WL_READMISSING, true, false, "get random keys that do not exist" },
	{ "readwhilewriting", WL_READWHILEWRITING, true, false,
	  "readrandom in --threads readers while one more\n"
	  "                         thread overwrites random keys; the readers are reported" },
	{ "multiget", WL_MULTIGET, true, false,
	  "aurakv_multi_get of --batch random existing keys,\n"
	  "                         --async-depth reads in flight (0 = the library's 32)" },
};

const struct workload *workload_find(const char *name)
{
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (strcmp(workloads[i].name, name) == 0)
			return &workloads[i];
	return NULL;
}

uint64_t cfg_reads(const struct kv_config *c)
{
	return c->reads ? c->reads : c->num;
}

uint64_t cfg_writes(const struct kv_config *c, const struct workload *w)
{
	if (c->writes)
		return c->writes;
	if (w->kind == WL_FILLSYNC)
		return c->num / 1000 ? c->num / 1000 : 1;
	return c->num;
}

static void usage_workloads(FILE *out)
{
	fprintf(out, "workloads (--benchmarks runs them in order on one store):\n");
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		fprintf(out, "  %-22s %s\n", workloads[i].name, workloads[i].help);
	fprintf(out,
		"  Workloads of existing keys need a filled store: unless every key 0..num-1 is\n"
		"  known to be there, they first write them all (fillseq, not timed).\n");
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: kvbench [options]   (a db_bench-like benchmark of AuraKV)\n"
	    "  --benchmarks LIST      comma-separated workloads (default fillrandom,readrandom)\n"
	    "  --threads N            threads per workload (default 1); --num, --reads and\n"
	    "                         --writes are totals, split among them\n"
	    "  --num N                keys (default 1000000; k/m/g = 10^3/10^6/10^9)\n"
	    "  --reads N              gets per read workload, >= 1 (default: num)\n"
	    "  --writes N             puts per fill/overwrite, >= 1 (default: num)\n"
	    "  --key-size B           key bytes, >= 8 (default 16): an 8-byte big-endian\n"
	    "                         index, then filler bytes\n"
	    "  --value-size B         value bytes (default 100)\n"
	    "  --compressibility R    fraction of every 100-byte piece of a value that is\n"
	    "                         random, the rest repeats it (default 0.5, db_bench's\n"
	    "                         --compression_ratio; 1 = incompressible)\n"
	    "  --cache-size BYTES     value cache (default 8m, db_bench's block cache; the\n"
	    "                         library's own default is 64m); 0 = no cache; k/m/g\n"
	    "  --async-depth D        readrandom: D gets in flight per thread via\n"
	    "                         aurakv_get_async + aurakv_poll (default 0 = aurakv_get)\n"
	    "  --batch N              keys per aurakv_multi_get (default 32)\n"
	    "  --db DIR               the store (kept at the end); default: a new temporary\n"
	    "                         directory under /var/tmp, removed at the end\n"
	    "  --use-existing         open the store in --db as it is (else DIR must not\n"
	    "                         exist or be empty)\n"
	    "  --duration S           stop each random workload after S > 0 seconds (default:\n"
	    "                         no cap; fillseq and readseq run to the end, as db_bench)\n"
	    "  --compress-min B       store option compress_min (default: the library's, 256)\n"
	    "  --segment-size BYTES   store option segment_size (default: the library's, 16m)\n"
	    "  --seed N               random seed (default 1: runs are repeatable)\n"
	    "  --json FILE            also write the results as JSON to FILE ('-' = stdout;\n"
	    "                         the human report then goes to stderr); each result's\n"
	    "                         lat_* figures are per its lat_unit: \"op\" (one put or\n"
	    "                         get) or \"batch\" (one aurakv_multi_get of --batch keys:\n"
	    "                         multiget, readseq)\n"
	    "  --quiet                no progress lines\n");
	usage_workloads(out);
	fprintf(out, "Exit status: 0 done, 1 the run failed, --db cannot be used, the report was\n"
		     "lost, or a read workload did not get back what this run wrote (a key not\n"
		     "found, a value of another size, or readmissing finding a value: the store\n"
		     "lost or invented data; every workload is still run and reported), 2 bad\n"
		     "arguments (a --json FILE that cannot be written, checked first, included).\n"
		     "With --use-existing, reads of keys this run did not write that do not match\n"
		     "only warn: the store may hold another run's keys.\n");
}

/* Split LIST in place into cfg->benchmarks; unknown names are an error (named). */
static int parse_benchmarks(struct kv_config *cfg, const char *list)
{
	char *save = NULL, *name;

	if (strlen(list) >= sizeof(cfg->list))
		return -EINVAL;
	strcpy(cfg->list, list);
	cfg->nbenchmarks = 0;
	for (name = strtok_r(cfg->list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		if (!workload_find(name)) {
			fprintf(stderr, "kvbench: unknown workload '%s'\n", name);
			return -EINVAL;
		}
		if (cfg->nbenchmarks == KVB_MAX_BENCHMARKS)
			return -EINVAL;
		cfg->benchmarks[cfg->nbenchmarks++] = name;
	}
	return cfg->nbenchmarks ? 0 : -EINVAL;
}

static void defaults(void *config)
{
	struct kv_config *cfg = config;

	memset(cfg, 0, sizeof(*cfg));
	cfg->threads = 1;
	cfg->num = 1000000;
	cfg->key_size = 16;
	cfg->value_size = 100;
	cfg->compressibility = 0.5;
	cfg->cache_size = 8u << 20;
	cfg->batch = 32;
	cfg->compress_min = -1;
	cfg->seed = 1;
	parse_benchmarks(cfg, "fillrandom,readrandom");
}

/* An option with a bounded integer argument; false if c is not one. */
static bool apply_int(struct kv_config *cfg, int c, const char *arg, int *rc)
{
	long v = 0;

	switch (c) {
	case OPT_THREADS:
		*rc = cli_parse_long(arg, 1, 1024, &v);
		cfg->threads = (int) v;
		return true;
	case OPT_KEY_SIZE:
		*rc = cli_parse_long(arg, KVB_MIN_KEY, AURAKV_MAX_KEY, &v);
		cfg->key_size = (unsigned) v;
		return true;
	case OPT_VALUE_SIZE:
		*rc = cli_parse_long(arg, 0, AURAKV_MAX_VALUE, &v);
		cfg->value_size = (unsigned) v;
		return true;
	case OPT_ASYNC:
		*rc = cli_parse_long(arg, 0, 4096, &v);
		cfg->async_depth = (int) v;
		return true;
	case OPT_BATCH:
		*rc = cli_parse_long(arg, 1, 65536, &v);
		cfg->batch = (unsigned) v;
		return true;
	case OPT_COMPRESS_MIN:
		*rc = cli_parse_long(arg, 0, AURAKV_MAX_VALUE, &cfg->compress_min);
		return true;
	default:
		return false;
	}
}

/* One option (flag or with an argument) into cfg (a struct kv_config). 0 or -EINVAL. */
static int apply_option(void *config, int c, const char *arg)
{
	struct kv_config *cfg = config;
	int rc = -EINVAL;

	if (apply_int(cfg, c, arg, &rc))
		return rc;
	switch (c) {
	case OPT_BENCHMARKS:
		return parse_benchmarks(cfg, arg);
	case OPT_NUM:
		return cli_parse_count(arg, &cfg->num);
	/* 0 is the "not given" of reads, writes and duration: refused, not taken as the
	 * default */
	case OPT_READS:
		return cli_parse_count(arg, &cfg->reads) || cfg->reads == 0 ? -EINVAL : 0;
	case OPT_WRITES:
		return cli_parse_count(arg, &cfg->writes) || cfg->writes == 0 ? -EINVAL : 0;
	case OPT_COMPRESSIBILITY:
		return cli_parse_double(arg, 0.01, 1.0, &cfg->compressibility);
	case OPT_CACHE_SIZE:
		return cli_parse_size(arg, &cfg->cache_size);
	case OPT_SEGMENT:
		return cli_parse_size(arg, &cfg->segment_size);
	case OPT_DURATION:
		return cli_parse_double(arg, DBL_TRUE_MIN, 1e7, &cfg->duration);
	case OPT_SEED:
		return cli_parse_count(arg, &cfg->seed);
	case OPT_DB:
		cfg->db = arg;
		return 0;
	case OPT_USE_EXISTING:
		cfg->use_existing = true;
		return 0;
	case OPT_JSON:
		cfg->json = arg;
		return 0;
	case OPT_QUIET:
		cfg->quiet = true;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Cross-option checks, with the ranges aurakv.h documents. NULL when fine. */
static const char *validate(void *config)
{
	const struct kv_config *cfg = config;
	uint64_t seg = cfg->segment_size;

	if (cfg->num == 0 || cfg->num >= (1ull << 62))
		return "--num must be in 1 .. 2^62";
	if (cfg->use_existing && !cfg->db)
		return "--use-existing needs --db DIR";
	if (seg && (seg < (1u << 20) || seg > (4ull << 30) || seg % 4096))
		return "--segment-size must be a multiple of 4k in 1m..4g";
	if (cfg->cache_size > SIZE_MAX)
		return "--cache-size is too large";
	return NULL;
}

/* 0 = run, 1 = help printed (exit 0), -EINVAL = bad arguments (usage printed). */
int options_parse(struct kv_config *cfg, int argc, char **argv)
{
	static const struct cli_spec spec = {
		.prog = "kvbench",
		.long_opts = long_opts,
		.help = OPT_HELP,
		.usage = usage,
		.defaults = defaults,
		.apply = apply_option,
		.finish = validate,
	};

	return cli_parse(&spec, cfg, argc, argv);
}
