/*
 * t.h - the unit-test harness: a test is a function; each prints one line,
 * "ok <name>" or "FAIL <name>: <file>:<line>: <what>", that tests/run.sh
 * counts. A failed check ends its test function (return), not the binary.
 */
#ifndef S2S_T_H
#define S2S_T_H

#include <stdio.h>
#include <string.h>

static int t_failed_checks;
static int t_tests_failed;
static int t_tests_run;
static const char *t_current;

#define T_FAIL(...)                                                                                                    \
	do {                                                                                                           \
		printf("FAIL %s: %s:%d: ", t_current, __FILE__, __LINE__);                                             \
		printf(__VA_ARGS__);                                                                                   \
		printf("\n");                                                                                          \
		t_failed_checks++;                                                                                     \
		return;                                                                                                \
	} while (0)

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond))                                                                                           \
			T_FAIL("check failed: %s", #cond);                                                             \
	} while (0)

#define CHECK_INT(got, want)                                                                                           \
	do {                                                                                                           \
		long long t_g_ = (long long)(got), t_w_ = (long long)(want);                                           \
		if (t_g_ != t_w_)                                                                                      \
			T_FAIL("%s == %lld, want %lld", #got, t_g_, t_w_);                                             \
	} while (0)

#define CHECK_STR(got, want)                                                                                           \
	do {                                                                                                           \
		const char *t_g_ = (got), *t_w_ = (want);                                                              \
		if (t_g_ == NULL || t_w_ == NULL ? t_g_ != t_w_ : strcmp(t_g_, t_w_) != 0)                             \
			T_FAIL("%s == \"%s\", want \"%s\"", #got, t_g_ ? t_g_ : "(null)", t_w_ ? t_w_ : "(null)");     \
	} while (0)

#define RUN(fn)                                                                                                        \
	do {                                                                                                           \
		int t_before_ = t_failed_checks;                                                                       \
		t_current = #fn;                                                                                       \
		t_tests_run++;                                                                                         \
		fn();                                                                                                  \
		if (t_failed_checks == t_before_)                                                                      \
			printf("ok %s\n", #fn);                                                                        \
		else                                                                                                   \
			t_tests_failed++;                                                                              \
	} while (0)

#define T_DONE() (t_tests_failed ? 1 : 0)

#endif
