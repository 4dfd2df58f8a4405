/*
 * token_sched.c - the pure arithmetic of the token engine (token.h): when a
 * token stops being handed out, when it is refreshed, how long to wait
 * after a failure. No state, no I/O, no clock: unit-tested directly.
 */
#include "token/token.h"

#define LIFETIME_MAX_S     315360000L /* ten years: keeps the ms arithmetic far from overflow */
#define RETRY_AFTER_MAX_MS 3600000LL  /* a server's Retry-After is honoured up to one hour */

struct token_times token_schedule(long long now_ms, long expires_in_s, long refresh_in_s, double jitter01)
{
	struct token_times t;
	long long life, margin, refresh, latest;

	if (expires_in_s > LIFETIME_MAX_S)
		expires_in_s = LIFETIME_MAX_S;
	if (refresh_in_s > LIFETIME_MAX_S)
		refresh_in_s = LIFETIME_MAX_S;
	life = expires_in_s > 0 ? expires_in_s * 1000LL : 0;
	margin = life / 10 < 300000 ? life / 10 : 300000;
	t.expires_at_ms = now_ms + life;
	t.usable_until_ms = t.expires_at_ms - margin;
	refresh = refresh_in_s > 0 ? refresh_in_s * 1000LL : life / 2;
	/* Leave at least one margin of retry time before the token goes unusable. */
	latest = life - 2 * margin;
	if (refresh > latest)
		refresh = latest;
	/* Up to a twentieth of the delay itself: a jitter drawn from the whole
	 * lifetime ate a short refresh_in entirely, and the refresh came at
	 * once after every fetch. */
	if (jitter01 > 0.0 && jitter01 <= 1.0 && refresh > 0)
		refresh -= (long long)(jitter01 * (double)refresh / 20.0);
	t.refresh_at_ms = now_ms + (refresh > 0 ? refresh : 0);
	return t;
}

long long token_backoff_ms(unsigned attempt, long long retry_after_ms, long long cap_ms, double rand01)
{
	long long base = 1000, delay;
	unsigned i;

	if (cap_ms < 0)
		cap_ms = 0;
	for (i = 1; i < attempt && base < cap_ms; i++)
		base *= 2;
	if (base > cap_ms)
		base = cap_ms;
	if (!(rand01 >= 0.0)) /* also NaN */
		rand01 = 0.0;
	if (rand01 > 1.0)
		rand01 = 1.0;
	delay = (long long)(rand01 * (double)base);
	if (delay >= base && base > 0)
		delay = base - 1;
	if (retry_after_ms > 0) {
		if (retry_after_ms > RETRY_AFTER_MAX_MS)
			retry_after_ms = RETRY_AFTER_MAX_MS;
		if (retry_after_ms > delay)
			delay = retry_after_ms;
	}
	return delay;
}

const char *token_failure_name(enum token_failure_kind kind)
{
	switch (kind) {
	case TF_NONE:
		return "none";
	case TF_UNREACHABLE:
		return "unreachable";
	case TF_THROTTLED:
		return "throttled";
	case TF_SERVER_ERROR:
		return "server_error";
	case TF_REJECTED:
		return "rejected";
	case TF_BAD_RESPONSE:
		return "bad_response";
	case TF_LOCAL:
		return "local";
	}
	return "unknown";
}
