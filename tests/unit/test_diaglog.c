/*
 * test_diaglog.c - diagnosis log lines: evidence and claims present, no
 * token, identical failures rate-limited per (route, code) with a count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag/diaglog.h"
#include "util/log.h"
#include "t.h"

static char out[65536];

/* Run fn with the log going to a temporary file; the lines land in out. */
static size_t capture(void (*fn)(void))
{
	FILE *f = tmpfile();
	size_t n = 0;
	if (!f)
		return 0;
	log_setup(LOG_INFO, LOG_FMT_JSON, fileno(f));
	fn();
	log_setup(LOG_INFO, LOG_FMT_JSON, 2);
	rewind(f);
	n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	fclose(f);
	return n;
}

static size_t count(const char *needle)
{
	size_t k = 0;
	for (const char *p = out; (p = strstr(p, needle)) != NULL; p++)
		k++;
	return k;
}

static const struct diagnosis d_secret = {502, "secret_invalid", "t", "r", false};
static const struct diagnosis d_user = {502, "dataverse_app_user_missing", "t", "r", false};

static void burst(void)
{
	struct token_failure f = {.kind = TF_REJECTED, .http_status = 401};
	snprintf(f.err.error, sizeof f.err.error, "invalid_client");
	f.err.codes[0] = 7000215;
	f.err.n_codes = 1;
	snprintf(f.err.trace_id, sizeof f.err.trace_id, "trace-1");
	diaglog_reset();
	for (int i = 0; i < 5; i++)
		diaglog_token(1000 + i, "dv", "req", &d_secret, &f, "a note");
	diaglog_token(1000, "bc", "req", &d_secret, &f, NULL); /* another route: its own line */
	diaglog_token(1000 + DIAGLOG_WINDOW_MS, "dv", "req", &d_secret, &f, NULL);
}

static void rate_limited_with_count(void)
{
	CHECK(capture(burst) > 0);
	CHECK_INT(count("\"event\":\"diagnosis\""), 3);
	CHECK_INT(count("\"route\":\"dv\""), 2);
	CHECK_INT(count("\"repeated\":4"), 1);
	CHECK_INT(count("\"aadsts\":\"AADSTS7000215\""), 3);
	CHECK_INT(count("\"trace_id\":\"trace-1\""), 3);
	CHECK_INT(count("\"note\":\"a note\""), 1);
}

static void upstream_line(void)
{
	struct upstream_evidence ev = {.status = 403};
	struct jwt_claims c = {.exp = 1700000000};
	snprintf(ev.error_code, sizeof ev.error_code, "0x80072560");
	snprintf(c.aud, sizeof c.aud, "https://contoso.crm4.dynamics.com");
	snprintf(c.tid, sizeof c.tid, "tid-1");
	snprintf(c.appid, sizeof c.appid, "app-1");
	diaglog_reset();
	diaglog_upstream(5, "dv", "req", &d_user, &ev, &c, "sha256:0011223344556677");
}

static void upstream_claims(void)
{
	CHECK(capture(upstream_line) > 0);
	CHECK_INT(count("\"diagnosis\":\"dataverse_app_user_missing\""), 1);
	CHECK_INT(count("\"upstream_status\":403"), 1);
	CHECK_INT(count("\"upstream_error\":\"0x80072560\""), 1);
	CHECK_INT(count("\"aud\":\"https://contoso.crm4.dynamics.com\""), 1);
	CHECK_INT(count("\"tid\":\"tid-1\""), 1);
	CHECK_INT(count("\"appid\":\"app-1\""), 1);
	CHECK_INT(count("\"exp\":1700000000"), 1);
	CHECK_INT(count("\"token_fingerprint\":\"sha256:0011223344556677\""), 1);
}

int main(void)
{
	RUN(rate_limited_with_count);
	RUN(upstream_claims);
	return T_DONE();
}
