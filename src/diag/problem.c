/*
 * problem.c - RFC 9457 problem details, rendered with cJSON.
 *
 * Members in order: the standard ones (RFC 9457 section 3.1: type, title,
 * status, detail), then extension members (section 3.2): our stable code
 * (twice: "code", and "diagnosis" for the diagnosis catalogue), the route
 * and identity involved, the remediation hint, the request id, and the
 * evidence Microsoft Entra ID returned when a token request failed. Empty
 * and absent values are omitted rather than sent as "" or null.
 *
 * Strings may come from an identity provider's error body, so each is
 * capped and made valid UTF-8 (RFC 8259 section 8.1) before it is
 * serialised; cJSON escapes quotes and control characters itself.
 */
#include "diag/problem.h"
#include "util/utf8.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#define PROBLEM_TYPE_PREFIX "urn:s2s-proxy:problem:"
#define PROBLEM_STR_MAX     2048 /* bytes per member value, after repair */

/* Copy s[0..n) into out (PROBLEM_STR_MAX), each invalid byte replaced by
 * U+FFFD, cut at a character boundary when it does not fit. */
static void utf8_repair(const char *s, size_t n, char *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	while (n > 0) {
		size_t seq = utf8_seq_len(p, n);
		const char *src = seq ? (const char *)p : "\xEF\xBF\xBD";
		size_t w = seq ? seq : 3;
		if (w > PROBLEM_STR_MAX - 1 - o)
			break;
		memcpy(out + o, src, w);
		o += w;
		seq = seq ? seq : 1;
		p += seq;
		n -= seq;
	}
	out[o] = '\0';
}

/*
 * Add key: s when s is non-empty. `max` bounds the read so fixed-size
 * arrays (struct oauth_error) are safe even if unterminated. Returns false
 * only on allocation failure.
 */
static bool add_str(cJSON *o, const char *key, const char *s, size_t max)
{
	char buf[PROBLEM_STR_MAX];
	size_t n;

	if (s == NULL || (n = strnlen(s, max)) == 0)
		return true;
	utf8_repair(s, n, buf);
	return cJSON_AddStringToObject(o, key, buf) != NULL;
}

static bool add_num(cJSON *o, const char *key, double v)
{
	return cJSON_AddNumberToObject(o, key, v) != NULL;
}

static bool add_type(cJSON *o, const char *code)
{
	char type[PROBLEM_STR_MAX];

	/* RFC 9457 4.2.1: "about:blank" when there is no more specific type. */
	if (code == NULL || code[0] == '\0')
		return add_str(o, "type", "about:blank", sizeof "about:blank");
	snprintf(type, sizeof type, PROBLEM_TYPE_PREFIX "%s", code);
	return add_str(o, "type", type, sizeof type);
}

static bool add_error_codes(cJSON *o, const struct oauth_error *e)
{
	size_t n = e->n_codes < OAUTH_MAX_CODES ? e->n_codes : OAUTH_MAX_CODES;
	cJSON *arr;

	if (n == 0)
		return true;
	arr = cJSON_AddArrayToObject(o, "error_codes");
	if (arr == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		cJSON *num = cJSON_CreateNumber((double)e->codes[i]);
		if (num == NULL || !cJSON_AddItemToArray(arr, num)) {
			cJSON_Delete(num);
			return false;
		}
	}
	return true;
}

/* Entra's evidence, named as in its error body (error, error_codes, ...). */
static bool add_token_failure(cJSON *o, const struct token_failure *tf)
{
	const struct oauth_error *e = &tf->err;
	char aadsts[32];
	bool ok = true;

	if (e->n_codes > 0 && e->codes[0] > 0) {
		snprintf(aadsts, sizeof aadsts, "AADSTS%ld", e->codes[0]);
		ok = ok && add_str(o, "aadsts", aadsts, sizeof aadsts);
	}
	ok = ok && add_str(o, "error", e->error, sizeof e->error);
	ok = ok && add_error_codes(o, e);
	ok = ok && add_str(o, "error_description", e->description, sizeof e->description);
	ok = ok && add_str(o, "trace_id", e->trace_id, sizeof e->trace_id);
	ok = ok && add_str(o, "correlation_id", e->correlation_id, sizeof e->correlation_id);
	ok = ok && add_str(o, "error_uri", e->error_uri, sizeof e->error_uri);
	ok = ok && add_str(o, "timestamp", e->timestamp, sizeof e->timestamp);
	if (ok && tf->http_status > 0)
		ok = add_num(o, "upstream_status", (double)tf->http_status);
	return ok;
}

/* The original upstream error: as JSON when it parses, else as text. */
static bool add_upstream(cJSON *o, const struct problem *p)
{
	cJSON *orig = NULL;
	bool ok = true;

	if (p->upstream_status > 0)
		ok = add_num(o, "upstream_status", (double)p->upstream_status);
	if (!ok || p->upstream_body == NULL || p->upstream_body_len == 0)
		return ok;
	orig = cJSON_ParseWithLength(p->upstream_body, p->upstream_body_len);
	if (orig != NULL && (cJSON_IsObject(orig) || cJSON_IsArray(orig)))
		return cJSON_AddItemToObject(o, "upstream_error", orig) ? true : (cJSON_Delete(orig), false);
	cJSON_Delete(orig);
	return add_str(o, "upstream_body", p->upstream_body,
		       p->upstream_body_len < PROBLEM_STR_MAX ? p->upstream_body_len : PROBLEM_STR_MAX);
}

static bool add_members(cJSON *o, const struct problem *p)
{
	bool ok = add_type(o, p->code);

	ok = ok && add_str(o, "title", p->title, PROBLEM_STR_MAX);
	if (ok && p->status > 0)
		ok = add_num(o, "status", p->status);
	ok = ok && add_str(o, "detail", p->detail, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "code", p->code, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "diagnosis", p->code, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "route", p->route, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "audience", p->audience, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "client_id", p->client_id, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "remediation", p->remediation, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "request_id", p->request_id, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "identity", p->identity, PROBLEM_STR_MAX);
	ok = ok && add_str(o, "limit", p->limit, PROBLEM_STR_MAX);
	if (ok && p->wait_ms > 0)
		ok = add_num(o, "wait_s", (double)((p->wait_ms + 999) / 1000));
	if (ok && p->token_failure != NULL)
		ok = add_token_failure(o, p->token_failure);
	ok = ok && add_upstream(o, p);
	return ok;
}

char *problem_render(const struct problem *p, size_t *len)
{
	cJSON *o = cJSON_CreateObject();
	char *out = NULL;

	if (o != NULL && add_members(o, p))
		out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (len != NULL)
		*len = out != NULL ? strlen(out) : 0;
	return out;
}
