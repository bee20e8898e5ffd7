/* SPDX-License-Identifier: MIT */
/*
 * reportfmt.h - what the benchmark tools' reports (iobench, walbench, kvbench) print
 * alike: counts in a short human form, and JSON (escaped strings, booleans, and a
 * document written to a file or stdout with the tools' error messages).
 */
#ifndef AURA_TOOLS_REPORTFMT_H
#define AURA_TOOLS_REPORTFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* 41234 -> "41.2k", 2500000 -> "2.50M", 812 -> "812", like fio. Writes buf (len bytes)
 * and returns it. */
const char *human_count(double v, char *buf, size_t len);

/* s as a JSON string, quotes included: '"' and '\' escaped, control bytes as \u00XX,
 * everything else (UTF-8 included) as it is. */
void json_string(FILE *f, const char *s);
/* Decimals the user gave (seconds, ratios) are printed with "%.15g": as given, since a
 * decimal of up to 15 digits survives the trip through a double (%g kept 6: a
 * --duration of 1234567.5 became 1.23457e+06, and %.3f turned 0.0125 into 0.013). */

/* "true" or "false". */
const char *json_bool(bool v);

/* Prints the members of a JSON object ("  \"key\": value,\n" lines) to f, from two
 * arguments of the caller's (NULL if unused). */
typedef void json_members_fn(FILE *f, const void *a, const void *b);

/*
 * Write a JSON document, one object, to `path` ("-" = stdout, which is flushed, not
 * closed): "{", members(f, a, b), "}". Returns 0, or a negative errno (-EIO for a
 * failed write); on failure "PROG: PATH: ERR" (cannot open) or "PROG: writing PATH:
 * ERR" is printed on stderr, ERR from errstr, the tool's library's *_strerror.
 */
int json_write_object(const char *prog, const char *path, const char *(*errstr)(int),
		      json_members_fn *members, const void *a, const void *b);

#endif
