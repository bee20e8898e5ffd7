/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for <criterion/criterion.h>, used ONLY by the ThreadSanitizer build.
 *
 * Why: Criterion 2.4's sandbox (BoxFort) maps an "inheritable arena" at random fixed
 * addresses; under TSan every candidate falls inside TSan's shadow reservations, so the
 * real runner aborts before running a test ("Could not initialize inheritable arena").
 * Everything else (the normal build, ASan+UBSan) uses real Criterion.
 *
 * It covers exactly what the suites use: Test/TestSuite with .init/.fini/.timeout,
 * cr_assert* (with optional printf-style messages), cr_skip_test, cr_log_*. Each test
 * runs in its own forked process, as under Criterion. runner.c has main().
 */
#ifndef AURA_TSAN_CRITERION_H
#define AURA_TSAN_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* In C++ every field has a default, so that `Test(s, n, .timeout = 20)` compiles under
 * -Wextra -Werror there too (C does not warn about fields a designated initializer
 * leaves out; C++ does, unless they have a default member initializer). */
#ifdef __cplusplus
#define TCR_DEFAULT = {}
#else
#define TCR_DEFAULT
#endif

struct criterion_test_extra_data {
	void (*init)(void) TCR_DEFAULT;
	void (*fini)(void) TCR_DEFAULT;
	double timeout TCR_DEFAULT;
	int disabled TCR_DEFAULT;
	const char *description TCR_DEFAULT;
};

struct tcr_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct criterion_test_extra_data *opts;
	struct tcr_test *next;
};

struct tcr_suite {
	const char *name;
	const struct criterion_test_extra_data *opts;
	struct tcr_suite *next;
};

void tcr_register_test(struct tcr_test *t);
void tcr_register_suite(struct tcr_suite *s);
void tcr_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
void tcr_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void tcr_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#define TCR_ID(suite, name, what) tcr_##suite##_##name##_##what

#define Test(suite, name, ...)                                                                     \
	static void TCR_ID(suite, name, fn)(void);                                                 \
	static const struct criterion_test_extra_data TCR_ID(suite, name, opts) = { __VA_ARGS__ }; \
	static struct tcr_test TCR_ID(suite, name, reg) = { #suite, #name,                         \
							    TCR_ID(suite, name, fn),               \
							    &TCR_ID(suite, name, opts), NULL };    \
	__attribute__((constructor)) static void TCR_ID(suite, name, ctor)(void)                   \
	{                                                                                          \
		tcr_register_test(&TCR_ID(suite, name, reg));                                      \
	}                                                                                          \
	static void TCR_ID(suite, name, fn)(void)

#define TestSuite(suite, ...)                                                                      \
	static const struct criterion_test_extra_data TCR_ID(suite, x, sopts) = { __VA_ARGS__ };   \
	static struct tcr_suite TCR_ID(suite, x, sreg) = { #suite, &TCR_ID(suite, x, sopts),       \
							   NULL };                                 \
	__attribute__((constructor)) static void TCR_ID(suite, x, sctor)(void)                     \
	{                                                                                          \
		tcr_register_suite(&TCR_ID(suite, x, sreg));                                       \
	}

/* The condition is evaluated exactly once; the message only on failure. The format is
 * prefixed with a space so that an absent message is still a non-empty format. */
#define tcr_check(cond, expr, ...)                                                                 \
	do {                                                                                       \
		if (!(cond))                                                                       \
			tcr_fail(__FILE__, __LINE__, expr, " " __VA_ARGS__);                       \
	} while (0)

#define cr_assert(c, ...)	   tcr_check((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)	   tcr_check(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)	   tcr_check((a) == (b), "(" #a ") == (" #b ")", __VA_ARGS__)
#define cr_assert_neq(a, b, ...)   tcr_check((a) != (b), "(" #a ") != (" #b ")", __VA_ARGS__)
#define cr_assert_lt(a, b, ...)	   tcr_check((a) < (b), "(" #a ") < (" #b ")", __VA_ARGS__)
#define cr_assert_leq(a, b, ...)   tcr_check((a) <= (b), "(" #a ") <= (" #b ")", __VA_ARGS__)
#define cr_assert_gt(a, b, ...)	   tcr_check((a) > (b), "(" #a ") > (" #b ")", __VA_ARGS__)
#define cr_assert_geq(a, b, ...)   tcr_check((a) >= (b), "(" #a ") >= (" #b ")", __VA_ARGS__)
#define cr_assert_null(p, ...)	   tcr_check((p) == NULL, "(" #p ") == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) tcr_check((p) != NULL, "(" #p ") != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                                \
	tcr_check(strcmp((a), (b)) == 0, "strcmp(" #a ", " #b ") == 0", __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                                               \
	tcr_check(strcmp((a), (b)) != 0, "strcmp(" #a ", " #b ") != 0", __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                                         \
	tcr_check(fabs((double) (a) - (double) (b)) <= (eps), "|" #a " - " #b "| <= " #eps,        \
		  __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...)                                                             \
	tcr_check(memcmp((a), (b), (n)) == 0, "memcmp(" #a ", " #b ", " #n ") == 0", __VA_ARGS__)
#define cr_assert_fail(...) tcr_fail(__FILE__, __LINE__, "cr_assert_fail", " " __VA_ARGS__)
#define cr_skip_test(...)   tcr_skip(" " __VA_ARGS__)
#define cr_log_info(...)    tcr_log("info", __VA_ARGS__)
#define cr_log_warn(...)    tcr_log("warn", __VA_ARGS__)
#define cr_log_error(...)   tcr_log("error", __VA_ARGS__)

#endif
