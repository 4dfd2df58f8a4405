/*
 * test_token_sched.c - the engine's pure arithmetic: when a token stops
 * being handed out, when it is refreshed, and the retry backoff.
 */
#include <math.h>

#include "t.h"
#include "token/token.h"

#define NOW 1700000000000LL

static void test_schedule_3599(void)
{
	struct token_times t = token_schedule(NOW, 3599, 0, 0);

	/* margin min(300 s, 359.9 s) = 300 s; refresh at half the lifetime */
	CHECK_INT(t.expires_at_ms, NOW + 3599000);
	CHECK_INT(t.usable_until_ms, NOW + 3299000);
	CHECK_INT(t.refresh_at_ms, NOW + 1799500);
	t = token_schedule(NOW, 3599, 0, 0.5); /* a 40th of the delay */
	CHECK_INT(t.refresh_at_ms, NOW + 1799500 - 44987);
	CHECK_INT(t.usable_until_ms, NOW + 3299000);
}

static void test_schedule_86399_refresh_in(void)
{
	struct token_times t = token_schedule(NOW, 86399, 43199, 1.0);

	CHECK_INT(t.expires_at_ms, NOW + 86399000);
	CHECK_INT(t.usable_until_ms, NOW + 86099000);
	CHECK_INT(t.refresh_at_ms, NOW + 43199000 - 2159950); /* at most a 20th earlier */
	/* without refresh_in: half */
	t = token_schedule(NOW, 86399, 0, 0);
	CHECK_INT(t.refresh_at_ms, NOW + 43199500);
}

static void test_schedule_20s(void)
{
	struct token_times t = token_schedule(NOW, 20, 0, 0);

	/* margin 10 % = 2 s; refresh at 10 s */
	CHECK_INT(t.expires_at_ms, NOW + 20000);
	CHECK_INT(t.usable_until_ms, NOW + 18000);
	CHECK_INT(t.refresh_at_ms, NOW + 10000);
	t = token_schedule(NOW, 20, 0, 0.2);
	CHECK_INT(t.refresh_at_ms, NOW + 9900);
}

/* A short refresh_in on a long token: the jitter comes out of the refresh
 * delay, never out of the lifetime (it used to cancel refresh_in = 30 s
 * entirely, and the token was fetched again every second). */
static void test_schedule_short_refresh_in(void)
{
	struct token_times t = token_schedule(NOW, 3599, 30, 1.0);

	CHECK_INT(t.refresh_at_ms, NOW + 30000 - 1500);
	t = token_schedule(NOW, 3599, 30, 0.0);
	CHECK_INT(t.refresh_at_ms, NOW + 30000);
	t = token_schedule(NOW, 3599, 30, 7.0); /* out of range: no jitter */
	CHECK_INT(t.refresh_at_ms, NOW + 30000);
}

static void test_schedule_600s(void)
{
	struct token_times t = token_schedule(NOW, 600, 0, 0);

	CHECK_INT(t.expires_at_ms, NOW + 600000);
	CHECK_INT(t.usable_until_ms, NOW + 540000);
	CHECK_INT(t.refresh_at_ms, NOW + 300000);
}

static void test_schedule_refresh_in_too_late(void)
{
	/* test_oauth.c's F12 fixture, varied: refresh_in == expires_in. Refresh one margin before usable_until. */
	struct token_times t = token_schedule(NOW, 9999, 9999, 0);

	CHECK_INT(t.usable_until_ms, NOW + 9699000);
	CHECK_INT(t.refresh_at_ms, NOW + 9399000);
	t = token_schedule(NOW, 9999, 9999, 0.1);
	CHECK_INT(t.refresh_at_ms, NOW + 9399000 - 46995);
	CHECK(t.refresh_at_ms < t.usable_until_ms);
}

static void test_schedule_edges(void)
{
	struct token_times t = token_schedule(NOW, 0, 0, 0);

	CHECK_INT(t.expires_at_ms, NOW);
	CHECK_INT(t.usable_until_ms, NOW);
	CHECK_INT(t.refresh_at_ms, NOW);
	/* jitter out of 0..1 (too large, negative, NaN) is ignored */
	t = token_schedule(NOW, 20, 0, 50000);
	CHECK_INT(t.refresh_at_ms, NOW + 10000);
	t = token_schedule(NOW, 20, 0, -5);
	CHECK_INT(t.refresh_at_ms, NOW + 10000);
	t = token_schedule(NOW, 20, 0, NAN);
	CHECK_INT(t.refresh_at_ms, NOW + 10000);
	/* one second: margin 100 ms */
	t = token_schedule(NOW, 1, 0, 0);
	CHECK_INT(t.usable_until_ms, NOW + 900);
	CHECK_INT(t.refresh_at_ms, NOW + 500);
	/* absurd lifetimes do not overflow */
	t = token_schedule(NOW, 0x7fffffffL, 0x7fffffffL, 0);
	CHECK(t.expires_at_ms > NOW);
	CHECK(t.refresh_at_ms < t.usable_until_ms);
	CHECK(t.usable_until_ms < t.expires_at_ms);
}

static void test_backoff_sequence(void)
{
	/* rand01 = 0.5: half of 1, 2, 4, 8, 16 s, then the 30 s cap */
	CHECK_INT(token_backoff_ms(1, 0, 30000, 0.5), 500);
	CHECK_INT(token_backoff_ms(2, 0, 30000, 0.5), 1000);
	CHECK_INT(token_backoff_ms(3, 0, 30000, 0.5), 2000);
	CHECK_INT(token_backoff_ms(4, 0, 30000, 0.5), 4000);
	CHECK_INT(token_backoff_ms(5, 0, 30000, 0.5), 8000);
	CHECK_INT(token_backoff_ms(6, 0, 30000, 0.5), 15000);
	CHECK_INT(token_backoff_ms(7, 0, 30000, 0.5), 15000);
	CHECK_INT(token_backoff_ms(4000000000u, 0, 30000, 0.5), 15000);
	/* full jitter: 0 .. just under the bound */
	CHECK_INT(token_backoff_ms(1, 0, 30000, 0.0), 0);
	CHECK_INT(token_backoff_ms(1, 0, 30000, 0.999), 999);
	CHECK_INT(token_backoff_ms(10, 0, 30000, 0.999), 29970);
	CHECK_INT(token_backoff_ms(10, 0, 30000, 1.0), 29999);
	/* attempt 0 behaves like 1; a cap below 1 s caps the first retry too */
	CHECK_INT(token_backoff_ms(0, 0, 30000, 0.5), 500);
	CHECK_INT(token_backoff_ms(3, 0, 600, 0.5), 300);
	CHECK_INT(token_backoff_ms(3, 0, 0, 0.5), 0);
	CHECK_INT(token_backoff_ms(3, 0, -5, 0.5), 0);
}

static void test_backoff_retry_after(void)
{
	/* Retry-After wins when larger, even beyond the cap ... */
	CHECK_INT(token_backoff_ms(1, 120000, 30000, 0.5), 120000);
	CHECK_INT(token_backoff_ms(1, 2000, 30000, 0.5), 2000);
	/* ... not when smaller ... */
	CHECK_INT(token_backoff_ms(6, 100, 30000, 0.5), 15000);
	/* ... and never beyond one hour */
	CHECK_INT(token_backoff_ms(1, 7200000, 30000, 0.5), 3600000);
	CHECK_INT(token_backoff_ms(1, -1, 30000, 0.5), 500);
}

static void test_failure_names(void)
{
	CHECK_STR(token_failure_name(TF_NONE), "none");
	CHECK_STR(token_failure_name(TF_UNREACHABLE), "unreachable");
	CHECK_STR(token_failure_name(TF_THROTTLED), "throttled");
	CHECK_STR(token_failure_name(TF_SERVER_ERROR), "server_error");
	CHECK_STR(token_failure_name(TF_REJECTED), "rejected");
	CHECK_STR(token_failure_name(TF_BAD_RESPONSE), "bad_response");
	CHECK_STR(token_failure_name(TF_LOCAL), "local");
	CHECK_STR(token_failure_name((enum token_failure_kind)99), "unknown");
}

int main(void)
{
	RUN(test_schedule_3599);
	RUN(test_schedule_86399_refresh_in);
	RUN(test_schedule_20s);
	RUN(test_schedule_short_refresh_in);
	RUN(test_schedule_600s);
	RUN(test_schedule_refresh_in_too_late);
	RUN(test_schedule_edges);
	RUN(test_backoff_sequence);
	RUN(test_backoff_retry_after);
	RUN(test_failure_names);
	return T_DONE();
}
