/* SPDX-License-Identifier: MIT */
/*
 * cliparse.h - the command-line parsing the benchmark tools (iobench, walbench,
 * kvbench) share: numbers with k/m/g/t suffixes, bounded integers and decimals, and the
 * getopt_long loop with its messages, so that every tool rejects a bad argument in the
 * same words:
 *
 *   TOOL: bad value for --NAME: 'ARG'      (an option's apply function refused ARG)
 *   TOOL: unexpected argument 'ARG'        (a word that is not an option)
 *   TOOL: WHY                              (a cross-option check failed)
 *
 * each followed by the tool's usage text on stderr. --help and -h print the usage on
 * stdout.
 *
 * Every number parser returns 0 or -EINVAL and writes *out only on success. Sizes and
 * counts start with a digit: no blank, no sign. Nothing
 * here allocates, opens files or keeps state of its own (getopt's globals aside).
 */
#ifndef AURA_TOOLS_CLIPARSE_H
#define AURA_TOOLS_CLIPARSE_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

/* Bytes: "4096", "4k", "2g" (binary multiples, k = 2^10 ... t = 2^40, either case),
 * optionally followed by "b", "B", "i", "ib" or "iB" ("4kib"). */
int cli_parse_size(const char *s, uint64_t *out);
/* A count: "1000", "4k", "2m" (decimal multiples, k = 10^3 ... t = 10^12); no byte
 * suffix. */
int cli_parse_count(const char *s, uint64_t *out);
/* A plain decimal: digits only, no suffix. */
int cli_parse_u64(const char *s, uint64_t *out);
/* A base-10 integer in [min, max]. */
int cli_parse_long(const char *s, long min, long max, long *out);
int cli_parse_int(const char *s, int min, int max, int *out);
/* A finite decimal in [min, max] (strtod syntax). */
int cli_parse_double(const char *s, double min, double max, double *out);

/* A tool's command line, for cli_parse. `cfg` is the tool's configuration struct. */
struct cli_spec {
	const char *prog;		/* the messages' prefix: "iobench" */
	const struct option *long_opts; /* getopt_long's table, ends with a NULL name */
	int help;			/* the `val` of --help in long_opts */
	void (*usage)(FILE *out);
	/* Set every field of cfg to its default, before the first option. */
	void (*defaults)(void *cfg);
	/* Apply option c (a `val` of long_opts) with its argument (NULL for a flag) to
	 * cfg: 0, or -EINVAL for a bad value. */
	int (*apply)(void *cfg, int c, const char *arg);
	/* After the last option: complete cfg (defaults that depend on other options) and
	 * check it. NULL when fine, else what is wrong. */
	const char *(*finish)(void *cfg);
};

/*
 * Fill cfg from argv: defaults, every option in order (getopt_long), then finish.
 * Returns 0 to run, 1 when the help was printed on stdout (exit 0), -EINVAL for a bad
 * option, value, extra argument or combination (the message and the usage are on
 * stderr).
 */
int cli_parse(const struct cli_spec *spec, void *cfg, int argc, char **argv);

#endif
