/*
 * test_problem.c - problem.c: exact RFC 9457 bodies for a full and a
 * minimal problem, parsed back with cJSON; omission of empty members; UTF-8
 * repair and caps on hostile strings.
 */
#include <cJSON.h>
#include <stdlib.h>

#include "diag/problem.h"
#include "t.h"

static struct token_failure full_failure(void)
{
	struct token_failure tf = {
	    .kind = TF_REJECTED,
	    .http_status = 401,
	    .err =
		{
		    .error = "invalid_client",
		    .codes = {7000215, 50012},
		    .n_codes = 2,
		    .trace_id = "0b1c2d3e-0000-4000-8000-00000000aaaa",
		    .correlation_id = "5f6e7d8c-0000-4000-8000-00000000bbbb",
		    .timestamp = "2026-11-22 03:11:00Z",
		    .error_uri = "https://login.microsoftonline.com/error?code=7000215",
		    .description = "AADSTS7000215: Invalid client secret provided.",
		    .body_was_json = true,
		},
	    .detail = "not rendered",
	    .retry_at_ms = 1700000000000LL,
	};
	return tf;
}

static const char full_json[] = "{\"type\":\"urn:s2s-proxy:problem:token_rejected\","
				"\"title\":\"Token request rejected\","
				"\"status\":502,"
				"\"detail\":\"Entra ID refused the client credentials for route crm\","
				"\"code\":\"token_rejected\","
				"\"diagnosis\":\"token_rejected\","
				"\"route\":\"crm\","
				"\"audience\":\"https://contoso.crm.dynamics.com\","
				"\"client_id\":\"11111111-2222-3333-4444-555555555555\","
				"\"remediation\":\"Create a new client secret and update client_secret_file\","
				"\"request_id\":\"r-42\","
				"\"aadsts\":\"AADSTS7000215\","
				"\"error\":\"invalid_client\","
				"\"error_codes\":[7000215,50012],"
				"\"error_description\":\"AADSTS7000215: Invalid client secret provided.\","
				"\"trace_id\":\"0b1c2d3e-0000-4000-8000-00000000aaaa\","
				"\"correlation_id\":\"5f6e7d8c-0000-4000-8000-00000000bbbb\","
				"\"error_uri\":\"https://login.microsoftonline.com/error?code=7000215\","
				"\"timestamp\":\"2026-11-22 03:11:00Z\","
				"\"upstream_status\":401}";

static const char *str_member(const cJSON *j, const char *key)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsString(m) ? m->valuestring : NULL;
}

static double num_member(const cJSON *j, const char *key)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, key);
	return cJSON_IsNumber(m) ? m->valuedouble : -1;
}

static void check_full_fields(const cJSON *j, const struct problem *p)
{
	const cJSON *codes = cJSON_GetObjectItemCaseSensitive(j, "error_codes");

	CHECK_STR(str_member(j, "type"), "urn:s2s-proxy:problem:token_rejected");
	CHECK_STR(str_member(j, "title"), p->title);
	CHECK_INT(num_member(j, "status"), p->status);
	CHECK_STR(str_member(j, "detail"), p->detail);
	CHECK_STR(str_member(j, "code"), p->code);
	CHECK_STR(str_member(j, "diagnosis"), p->code);
	CHECK_STR(str_member(j, "route"), p->route);
	CHECK_STR(str_member(j, "audience"), p->audience);
	CHECK_STR(str_member(j, "client_id"), p->client_id);
	CHECK_STR(str_member(j, "remediation"), p->remediation);
	CHECK_STR(str_member(j, "request_id"), p->request_id);
	CHECK_STR(str_member(j, "aadsts"), "AADSTS7000215");
	CHECK_STR(str_member(j, "error"), p->token_failure->err.error);
	CHECK_STR(str_member(j, "error_description"), p->token_failure->err.description);
	CHECK_STR(str_member(j, "trace_id"), p->token_failure->err.trace_id);
	CHECK_STR(str_member(j, "correlation_id"), p->token_failure->err.correlation_id);
	CHECK_STR(str_member(j, "error_uri"), p->token_failure->err.error_uri);
	CHECK_STR(str_member(j, "timestamp"), p->token_failure->err.timestamp);
	CHECK_INT(num_member(j, "upstream_status"), 401);
	CHECK(cJSON_IsArray(codes));
	CHECK_INT(cJSON_GetArraySize(codes), 2);
	CHECK_INT(cJSON_GetArrayItem(codes, 0)->valuedouble, 7000215);
	CHECK_INT(cJSON_GetArrayItem(codes, 1)->valuedouble, 50012);
	CHECK_INT(cJSON_GetArraySize(j), 20);
}

static void test_full_problem(void)
{
	struct token_failure tf = full_failure();
	struct problem p = {
	    .status = 502,
	    .code = "token_rejected",
	    .title = "Token request rejected",
	    .detail = "Entra ID refused the client credentials for route crm",
	    .route = "crm",
	    .audience = "https://contoso.crm.dynamics.com",
	    .client_id = "11111111-2222-3333-4444-555555555555",
	    .remediation = "Create a new client secret and update client_secret_file",
	    .request_id = "r-42",
	    .token_failure = &tf,
	};
	size_t len = 0;
	char *s = problem_render(&p, &len);
	cJSON *j;

	CHECK(s != NULL);
	CHECK_STR(s, full_json);
	CHECK_INT(len, strlen(full_json));
	j = cJSON_Parse(s);
	free(s);
	CHECK(j != NULL);
	check_full_fields(j, &p);
	cJSON_Delete(j);
}

static void test_minimal_problem(void)
{
	struct problem p = {.status = 404, .code = "no_route", .title = "No route for this host"};
	size_t len = 0;
	char *s = problem_render(&p, &len);
	cJSON *j;

	CHECK_STR(s, "{\"type\":\"urn:s2s-proxy:problem:no_route\",\"title\":\"No route for this host\","
		     "\"status\":404,\"code\":\"no_route\",\"diagnosis\":\"no_route\"}");
	CHECK_INT(len, strlen(s));
	j = cJSON_Parse(s);
	free(s);
	CHECK(j != NULL);
	CHECK_STR(str_member(j, "code"), "no_route");
	CHECK_INT(num_member(j, "status"), 404);
	CHECK_INT(cJSON_GetArraySize(j), 5);
	cJSON_Delete(j);
}

/* "" counts as absent; a failure without evidence adds nothing. */
static void test_empty_members_omitted(void)
{
	struct token_failure tf = {.kind = TF_UNREACHABLE, .detail = "Could not resolve host"};
	struct problem p = {
	    .status = 503,
	    .code = "idp_unavailable",
	    .title = "Identity provider unavailable",
	    .detail = "",
	    .route = "",
	    .token_failure = &tf,
	};
	char *s = problem_render(&p, NULL);

	CHECK_STR(s, "{\"type\":\"urn:s2s-proxy:problem:idp_unavailable\",\"title\":\"Identity provider "
		     "unavailable\",\"status\":503,\"code\":\"idp_unavailable\",\"diagnosis\":\"idp_unavailable\"}");
	free(s);
}

static void test_no_code_is_about_blank(void)
{
	struct problem p = {.status = 500, .title = "Internal error"};
	char *s = problem_render(&p, NULL);

	CHECK_STR(s, "{\"type\":\"about:blank\",\"title\":\"Internal error\",\"status\":500}");
	free(s);
}

/* Codes but no text; a zero first code gives no "aadsts". */
static void test_codes_without_text(void)
{
	struct token_failure tf = {
	    .kind = TF_THROTTLED, .http_status = 429, .err = {.codes = {0, 50196}, .n_codes = 2}};
	struct problem p = {.status = 503, .code = "c", .title = "t", .token_failure = &tf};
	char *s = problem_render(&p, NULL);

	CHECK_STR(s, "{\"type\":\"urn:s2s-proxy:problem:c\",\"title\":\"t\",\"status\":503,\"code\":\"c\","
		     "\"diagnosis\":\"c\",\"error_codes\":[0,50196],\"upstream_status\":429}");
	free(s);
}

/* Quotes, controls and bad UTF-8 from an identity provider's body. */
static void test_hostile_strings(void)
{
	struct token_failure tf = {.err = {.description = "a\"b\\c\r\nd\x01 \xff\xc3\xa9 \xed\xa0\x80"}};
	struct problem p = {.status = 502, .code = "x", .title = "t", .token_failure = &tf};
	char *s = problem_render(&p, NULL);
	cJSON *j;

	CHECK(s != NULL);
	CHECK(strstr(s, "\"error_description\":\"a\\\"b\\\\c\\r\\nd\\u0001 \xef\xbf\xbd\xc3\xa9 "
			"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"") != NULL);
	j = cJSON_Parse(s);
	free(s);
	CHECK(j != NULL);
	CHECK_STR(str_member(j, "error_description"),
		  "a\"b\\c\r\nd\x01 \xef\xbf\xbd\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	cJSON_Delete(j);
}

/* Every member is capped; an unterminated fixed array is read only to its size. */
static void test_caps(void)
{
	static char big[10000];
	struct token_failure tf;
	struct problem p = {.status = 502, .code = "x", .title = "t", .detail = big, .token_failure = &tf};
	const char *d;
	char *s;
	cJSON *j;

	memset(big, 'd', sizeof big - 1);
	memset(&tf, 'e', sizeof tf);
	tf.err.n_codes = 0;
	tf.http_status = 0;
	s = problem_render(&p, NULL);
	CHECK(s != NULL);
	j = cJSON_Parse(s);
	free(s);
	CHECK(j != NULL);
	d = str_member(j, "detail");
	CHECK(d != NULL && strlen(d) == 2047);
	d = str_member(j, "error");
	CHECK(d != NULL && strlen(d) == sizeof tf.err.error);
	d = str_member(j, "error_description");
	CHECK(d != NULL && strlen(d) == sizeof tf.err.description);
	cJSON_Delete(j);
}

static void test_error_codes_capped(void)
{
	struct token_failure tf = {.err = {.codes = {1, 2, 3, 4, 5, 6, 7, 8}, .n_codes = 1000}};
	struct problem p = {.status = 502, .code = "x", .title = "t", .token_failure = &tf};
	char *s = problem_render(&p, NULL);

	CHECK(s != NULL && strstr(s, "\"aadsts\":\"AADSTS1\",\"error_codes\":[1,2,3,4,5,6,7,8]}") != NULL);
	free(s);
}

int main(void)
{
	RUN(test_full_problem);
	RUN(test_minimal_problem);
	RUN(test_empty_members_omitted);
	RUN(test_no_code_is_about_blank);
	RUN(test_codes_without_text);
	RUN(test_hostile_strings);
	RUN(test_caps);
	RUN(test_error_codes_capped);
	return T_DONE();
}
