/* SPDX-License-Identifier: MIT */
/*
 * cliparse.c - the benchmark tools' shared command-line parsing (cliparse.h): the
 * number parsers and the getopt_long loop. A parser never writes *out on failure, so a
 * tool's defaults survive a rejected value.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cliparse.h"

/* The decimal digits s starts with: *v, and *end after them. 0 or -EINVAL. A digit
 * first: strtoull skips blanks and takes a sign, so " -1" would wrap to 2^64 - 1. */
static int parse_digits(const char *s, unsigned long long *v, char **end)
{
	if (!isdigit((unsigned char) s[0]))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno ? -EINVAL : 0;
}

/* A number with an optional k/m/g/t multiplier of `base` (1000 or 1024); byte suffixes
 * only for binary sizes. 0 or -EINVAL. */
static int parse_scaled(const char *s, unsigned base, bool byte_suffix, uint64_t *out)
{
	static const char units[] = "kmgt";
	const char *unit;
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (parse_digits(s, &v, &end))
		return -EINVAL;
	if (*end && (unit = strchr(units, tolower((unsigned char) *end))) != NULL) {
		for (long i = 0; i <= unit - units; i++)
			mult *= base;
		end++;
	}
	if (byte_suffix && (*end == 'i' || *end == 'b' || *end == 'B'))
		end += (end[0] == 'i' && (end[1] == 'b' || end[1] == 'B')) ? 2 : 1;
	if (*end != '\0' || v > UINT64_MAX / mult)
		return -EINVAL;
	*out = (uint64_t) v * mult;
	return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
	return parse_scaled(s, 1024, true, out);
}

int cli_parse_count(const char *s, uint64_t *out)
{
	return parse_scaled(s, 1000, false, out);
}

int cli_parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (parse_digits(s, &v, &end) || *end != '\0')
		return -EINVAL;
	*out = (uint64_t) v;
	return 0;
}

int cli_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_parse_int(const char *s, int min, int max, int *out)
{
	long v;

	if (cli_parse_long(s, min, max, &v) != 0)
		return -EINVAL;
	*out = (int) v;
	return 0;
}

int cli_parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The long name of option c, for messages. */
static const char *option_name(const struct option *o, int c)
{
	for (; o->name; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

/* The options of argv, applied in order. 0, 1 (help printed) or -EINVAL (explained). */
static int apply_all(const struct cli_spec *spec, void *cfg, int argc, char **argv)
{
	int c;

	while ((c = getopt_long(argc, argv, "h", spec->long_opts, NULL)) != -1) {
		if (c == spec->help || c == 'h') {
			spec->usage(stdout);
			return 1;
		}
		if (c == '?' || spec->apply(cfg, c, optarg) != 0) {
			/* getopt_long has already explained an unknown option ('?') */
			if (c != '?')
				fprintf(stderr, "%s: bad value for --%s: '%s'\n", spec->prog,
					option_name(spec->long_opts, c), optarg ? optarg : "");
			spec->usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", spec->prog, argv[optind]);
		spec->usage(stderr);
		return -EINVAL;
	}
	return 0;
}

int cli_parse(const struct cli_spec *spec, void *cfg, int argc, char **argv)
{
	const char *why;
	int rc;

	spec->defaults(cfg);
	rc = apply_all(spec, cfg, argc, argv);
	if (rc != 0)
		return rc;
	if ((why = spec->finish(cfg)) != NULL) {
		fprintf(stderr, "%s: %s\n", spec->prog, why);
		spec->usage(stderr);
		return -EINVAL;
	}
	return 0;
}
