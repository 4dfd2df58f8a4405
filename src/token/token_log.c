/*
 * token_log.c - the token engine's log lines. They carry decoded claims and
 * a fingerprint of a token, Entra's error evidence and the source's
 * identity; never a token, secret or assertion.
 */
#include <stdio.h>
#include <string.h>

#include "token/jwt.h"
#include "token/token_int.h"

static const char *nz(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : NULL;
}

void token_log_source(struct log_line *l, const struct tsrc *s)
{
	log_int(l, "source", (long long)s->idx);
	log_str(l, "credential", s->cred->name);
	log_str(l, "token_host", nz(s->host));
	log_str(l, "tenant", s->cred->tenant);
	log_str(l, "client_id", s->cred->client_id);
	log_str(l, "resource", s->cfg->resource);
	log_str(l, "client_request_id", nz(s->req_id));
}

void token_log_acquired(const struct tsrc *s, const struct oauth_token *tok, const struct token_times *t, long long now,
			unsigned long gen)
{
	struct jwt_claims c;
	char fp[JWT_FINGERPRINT_LEN];
	struct log_line l;

	if (!log_enabled(LOG_INFO))
		return;
	if (jwt_decode_claims(tok->access_token, strlen(tok->access_token), &c) != 0)
		memset(&c, 0, sizeof(c));
	jwt_fingerprint(tok->access_token, strlen(tok->access_token), fp);
	log_begin(&l, LOG_INFO, "token_acquired");
	token_log_source(&l, s);
	log_str(&l, "aud", nz(c.aud));
	log_str(&l, "tid", nz(c.tid));
	log_str(&l, "appid", nz(c.appid));
	log_str(&l, "roles", nz(c.roles));
	if (c.exp > 0)
		log_int(&l, "exp", c.exp);
	log_str(&l, "fingerprint", fp);
	log_int(&l, "expires_in", tok->expires_in);
	log_int(&l, "refresh_in_s", (t->refresh_at_ms - now) / 1000);
	log_int(&l, "usable_for_s", (t->usable_until_ms - now) / 1000);
	log_int(&l, "gen", (long long)gen);
	log_int(&l, "duration_ms", now - s->started_ms);
	log_end(&l);
}

static void codes_text(const struct oauth_error *e, char *out, size_t cap)
{
	size_t i, used = 0;

	out[0] = '\0';
	for (i = 0; i < e->n_codes && used < cap; i++) {
		int k = snprintf(out + used, cap - used, "%s%ld", i ? "," : "", e->codes[i]);

		if (k < 0 || (size_t)k >= cap - used)
			break;
		used += (size_t)k;
	}
}

void token_log_failed(const struct tsrc *s, const struct token_failure *f, long long retry_in_ms, bool serving)
{
	enum log_level lvl = f->kind == TF_REJECTED || f->kind == TF_LOCAL ? LOG_ERROR : LOG_WARN;
	char codes[OAUTH_MAX_CODES * 12];
	struct log_line l;

	if (!log_enabled(lvl))
		return;
	codes_text(&f->err, codes, sizeof(codes));
	log_begin(&l, lvl, "token_failed");
	token_log_source(&l, s);
	log_str(&l, "kind", token_failure_name(f->kind));
	if (f->http_status != 0)
		log_int(&l, "http_status", f->http_status);
	log_str(&l, "error", nz(f->err.error));
	log_str(&l, "error_codes", nz(codes));
	log_str(&l, "trace_id", nz(f->err.trace_id));
	log_str(&l, "correlation_id", nz(f->err.correlation_id));
	log_str(&l, "ms_request_id", nz(s->ms_req_id));
	log_str(&l, "description", nz(f->err.description));
	log_str(&l, "detail", nz(f->detail));
	log_int(&l, "retry_in_ms", retry_in_ms);
	log_int(&l, "attempt", s->attempt);
	log_bool(&l, "serving_previous_token", serving);
	log_end(&l);
}
