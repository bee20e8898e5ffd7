/* SPDX-License-Identifier: MIT */
/*
 * runner.c - main() of the TSan-only Criterion stand-in (see criterion/criterion.h).
 * Runs every registered test (or those matching --filter SUITE::NAME with '*' globs) in a
 * forked child: suite init, test init, test, test fini, suite fini. A child that fails
 * an assertion exits 1, a skipped one exits 77, a TSan report (halt_on_error=1) or a
 * crash ends it abnormally; any of those but a skip fails the run.
 */
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define SKIP_CODE	77
#define DEFAULT_TIMEOUT 600

static struct tcr_test *tests, **tests_tail = &tests;
static struct tcr_suite *suites;

void tcr_register_test(struct tcr_test *t)
{
	*tests_tail = t; /* keep source order */
	tests_tail = &t->next;
}

void tcr_register_suite(struct tcr_suite *s)
{
	s->next = suites;
	suites = s;
}

void tcr_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
	if (fmt && *fmt) {
		fprintf(stderr, "[----]   ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, "\n");
	}
	fflush(stderr);
	exit(1);
}

void tcr_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[SKIP] ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fflush(stderr);
	exit(SKIP_CODE);
}

void tcr_log(const char *level, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%s] ", level);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

static const struct criterion_test_extra_data *suite_opts(const char *name)
{
	for (struct tcr_suite *s = suites; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s->opts;
	return NULL;
}

static void run_child(const struct tcr_test *t)
{
	const struct criterion_test_extra_data *so = suite_opts(t->suite);
	double timeout = t->opts->timeout > 0 ? t->opts->timeout : DEFAULT_TIMEOUT;

	alarm((unsigned) timeout + 1);
	if (so && so->init)
		so->init();
	if (t->opts->init)
		t->opts->init();
	t->fn();
	if (t->opts->fini)
		t->opts->fini();
	if (so && so->fini)
		so->fini();
	exit(0);
}

/* 0 pass, 1 fail, 2 skip */
static int run_one(const struct tcr_test *t)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	if (pid == 0)
		run_child(t);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_CODE)
		return 2;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		fprintf(stderr, "[----] killed by signal %d\n", WTERMSIG(st));
	else
		fprintf(stderr, "[----] exit status %d\n", WEXITSTATUS(st));
	return 1;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	int counts[3] = { 0 };

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
			filter = argv[++i];
	for (struct tcr_test *t = tests; t; t = t->next) {
		char full[512];
		int r;

		snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
		if (t->opts->disabled || (filter && fnmatch(filter, full, 0) != 0))
			continue;
		r = run_one(t);
		counts[r]++;
		fprintf(stderr, "[%s] %s\n", r == 0 ? "PASS" : r == 1 ? "FAIL" : "SKIP", full);
	}
	fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
		counts[0] + counts[1] + counts[2], counts[0], counts[1], counts[2]);
	return counts[1] ? 1 : 0;
}
