/*
 * test_oauth.c - form bodies, Basic auth, and parsing of real Entra bodies
 * (internals.md W-4; the fixtures F2..F13 below are answers Microsoft
 * documents or was seen sending) plus the broken ones.
 * Bodies are copied into exactly-sized heap buffers without a NUL, so the
 * sanitizer build catches any read past len.
 */
#include <stdlib.h>
#include <string.h>

#include "token/jwt.h"
#include "token/oauth.h"
#include "t.h"

#define ID         "11111111-2222-3333-4444-555555555555"
#define SECRET     "a+b/c=d&e f~g_h.i-j"
#define SECRET_ENC "a%2Bb%2Fc%3Dd%26e+f~g_h.i-j"
#define RES        "https://org.crm4.dynamics.com"
#define RES_ENC    "https%3A%2F%2Forg.crm4.dynamics.com"
#define SCOPE      RES "/.default"
#define SCOPE_ENC  RES_ENC "%2F.default"

static struct oauth_token tok;
static struct oauth_error err;

/* Parse body (no NUL, exact-size allocation) as an answer with `status`. */
static enum oauth_result parse(long status, const char *body, size_t len, long long now)
{
	char *copy = malloc(len ? len : 1);
	enum oauth_result r;

	if (copy == NULL)
		abort();
	memcpy(copy, body, len);
	oauth_token_clear(&tok);
	r = oauth_parse_response(status, copy, len, now, &tok, &err);
	free(copy);
	return r;
}

static enum oauth_result parse_s(long status, const char *body)
{
	return parse(status, body, strlen(body), 1700000000);
}

static enum oauth_result parse_at(long status, const char *body, long long now)
{
	return parse(status, body, strlen(body), now);
}

static void test_urlencode(void)
{
	char out[64];

	CHECK_INT(oauth_urlencode(out, sizeof(out), SECRET), strlen(SECRET_ENC));
	CHECK_STR(out, SECRET_ENC);
	CHECK_INT(oauth_urlencode(out, sizeof(out), ""), 0);
	CHECK_STR(out, "");
	CHECK_INT(oauth_urlencode(out, sizeof(out), "\xc3\xa9\x01"), 9);
	CHECK_STR(out, "%C3%A9%01");
	/* "a+" needs 4 bytes plus the NUL */
	CHECK_INT(oauth_urlencode(out, 4, "a+"), -1);
	CHECK_INT(oauth_urlencode(out, 5, "a+"), 4);
	CHECK_STR(out, "a%2B");
}

static void test_form_bodies(void)
{
	char out[512];

	CHECK_INT(
	    oauth_form_body(out, sizeof(out), TOKEN_V2, AUTH_POST, ID, SECRET, SCOPE),
	    strlen("grant_type=client_credentials&client_id=" ID "&scope=" SCOPE_ENC "&client_secret=" SECRET_ENC));
	CHECK_STR(out, "grant_type=client_credentials&client_id=" ID "&scope=" SCOPE_ENC "&client_secret=" SECRET_ENC);
	CHECK_INT(oauth_form_body(out, sizeof(out), TOKEN_V2, AUTH_BASIC, ID, SECRET, SCOPE),
		  strlen("grant_type=client_credentials&client_id=" ID "&scope=" SCOPE_ENC));
	CHECK_STR(out, "grant_type=client_credentials&client_id=" ID "&scope=" SCOPE_ENC);
	CHECK(oauth_form_body(out, sizeof(out), TOKEN_V1, AUTH_POST, ID, SECRET, RES) > 0);
	CHECK_STR(out, "grant_type=client_credentials&client_id=" ID "&resource=" RES_ENC "&client_secret=" SECRET_ENC);
	CHECK(oauth_form_body(out, sizeof(out), TOKEN_V1, AUTH_BASIC, ID, SECRET, RES) > 0);
	CHECK_STR(out, "grant_type=client_credentials&client_id=" ID "&resource=" RES_ENC);
	/* basic with no secret at all is fine; post without one is not */
	CHECK(oauth_form_body(out, sizeof(out), TOKEN_V1, AUTH_BASIC, ID, NULL, RES) > 0);
	CHECK_INT(oauth_form_body(out, sizeof(out), TOKEN_V2, AUTH_POST, ID, NULL, SCOPE), -1);
	/* too small: -1 and nothing of the secret left behind */
	CHECK_INT(oauth_form_body(out, 150, TOKEN_V2, AUTH_POST, ID, SECRET, SCOPE), -1);
	CHECK(memmem(out, 150, "a%2B", 4) == NULL);
}

static void test_form_exact_fit(void)
{
	char out[64];
	const char *want = "grant_type=client_credentials&client_id=a&scope=b";
	size_t n = strlen(want);

	CHECK_INT(oauth_form_body(out, n + 1, TOKEN_V2, AUTH_BASIC, "a", "x", "b"), n);
	CHECK_STR(out, want);
	CHECK_INT(oauth_form_body(out, n, TOKEN_V2, AUTH_BASIC, "a", "x", "b"), -1);
}

static void test_basic_auth(void)
{
	char out[128];

	/* RFC 6749 2.3.1 example credentials */
	CHECK_INT(oauth_basic_auth(out, sizeof(out), "s6BhdRkqt3", "gX1fBat3bV"), 34);
	CHECK_STR(out, "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW");
	/* id and secret are form-encoded before base64: "my+id:p%2Bs%2Fw%3D%26" */
	CHECK(oauth_basic_auth(out, sizeof(out), "my id", "p+s/w=&") > 0);
	CHECK_STR(out, "Basic bXkraWQ6cCUyQnMlMkZ3JTNEJTI2");
	CHECK_INT(oauth_basic_auth(out, 20, "s6BhdRkqt3", "gX1fBat3bV"), -1);
	CHECK_INT(oauth_basic_auth(out, 35, "s6BhdRkqt3", "gX1fBat3bV"), 34);
	CHECK_INT(oauth_basic_auth(out, 34, "s6BhdRkqt3", "gX1fBat3bV"), -1);
}

#define F2                                                                                                             \
	"{\"error\":\"invalid_scope\",\"error_description\":\"AADSTS70011: The provided value for the input "          \
	"parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.\\r\\nTrace ID: "   \
	"255d1aef-8c98-452f-ac51-23d051240864\\r\\nCorrelation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\\r\\n"         \
	"Timestamp: 2016-01-09 02:02:12Z\",\"error_codes\":[70011],\"timestamp\":\"YYYY-MM-DD HH:MM:SSZ\","            \
	"\"trace_id\":\"255d1aef-8c98-452f-ac51-23d051240864\",\"correlation_id\":"                                    \
	"\"fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\"}"

static void test_f2_invalid_scope(void)
{
	CHECK_INT(parse_s(400, F2), OAUTH_REJECTED);
	CHECK(err.body_was_json);
	CHECK_STR(err.error, "invalid_scope");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 70011);
	CHECK_STR(err.trace_id, "255d1aef-8c98-452f-ac51-23d051240864");
	CHECK_STR(err.correlation_id, "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7");
	CHECK_STR(err.timestamp, "YYYY-MM-DD HH:MM:SSZ");
	CHECK_STR(err.error_uri, "");
	CHECK_STR(err.description, "AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
				   "The scope https://foo.microsoft.com/.default is not valid.");
	CHECK(tok.access_token == NULL);
}

#define F4                                                                                                             \
	"{\"error\":\"invalid_request\",\"error_description\":\"AADSTS900023: Specified tenant identifier "            \
	"'f837e147-205f-4bdf-9cfe-d07587a9ae3c' is neither a valid DNS name, nor a valid external domain.\\r\\n"       \
	"Trace ID: 75814be0-6217-44f9-896d-44a2063ffcd9\\r\\nCorrelation ID: ee2dfe4b-f230-42e0-b571-f44387acfccb"     \
	"\\r\\nTimestamp: 2022-04-16 10:51:29Z\"}"

static void test_f4_ids_from_description(void)
{
	CHECK_INT(parse_s(400, F4), OAUTH_REJECTED);
	CHECK(err.body_was_json);
	CHECK_STR(err.error, "invalid_request");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 900023);
	CHECK_STR(err.trace_id, "75814be0-6217-44f9-896d-44a2063ffcd9");
	CHECK_STR(err.correlation_id, "ee2dfe4b-f230-42e0-b571-f44387acfccb");
	CHECK_STR(err.timestamp, "2022-04-16 10:51:29Z");
	CHECK_STR(err.description, "AADSTS900023: Specified tenant identifier 'f837e147-205f-4bdf-9cfe-d07587a9ae3c' "
				   "is neither a valid DNS name, nor a valid external domain.");
}

#define F6_DESC                                                                                                        \
	"AADSTS7002137: No matching federated identity record found for presented assertion subject "                  \
	"'/eid1/c/pub/t/v4j5cvGGr0GRqy180BHbRw/a/9ExAW52n_ky4ZiS_jhpJIQ/7e307b14-2a27-4f66-ada8-ec6400eb4977'. "       \
	"Please make sure the federated identity credential Subject is "                                               \
	"'/eid1/c/pub/t/{tenantId}/a/9ExAW52n_ky4ZiS_jhpJIQ/7e307b14-2a27-4f66-ada8-ec6400eb4977'."
#define F6                                                                                                             \
	"{\"error\":\"invalid_client\",\"error_description\":\"" F6_DESC                                               \
	" Trace ID: 007fc931-d337-4638-8760-8f5c9c231e00 Correlation ID: bc6ac312-88fd-4b97-8d37-6566985045b9 "        \
	"Timestamp: 2025-07-07 10:30:48Z\",\"error_codes\":[7002137],\"timestamp\":\"2025-07-07 10:30:48Z\","          \
	"\"trace_id\":\"007fc931-d337-4638-8760-8f5c9c231e00\"}"

static void test_f6_single_line_trace(void)
{
	CHECK_INT(parse_s(401, F6), OAUTH_REJECTED);
	CHECK_STR(err.error, "invalid_client");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 7002137);
	CHECK_STR(err.trace_id, "007fc931-d337-4638-8760-8f5c9c231e00");
	CHECK_STR(err.correlation_id, "bc6ac312-88fd-4b97-8d37-6566985045b9");
	CHECK_STR(err.timestamp, "2025-07-07 10:30:48Z");
	CHECK_STR(err.description, F6_DESC);
}

#define F9_DESC                                                                                                        \
	"AADSTS700024: Client assertion is not within its valid time range. Current time: "                            \
	"2024-12-07T12:09:18.3149355Z, assertion valid from 1970-01-01T00:00:00.0000000Z, expiry time of assertion "   \
	"2024-12-07T11:14:18.0000000Z....."

static void test_f9_f10_abridged(void)
{
	CHECK_INT(parse_s(401, "{\"error\":\"invalid_client\",\"error_description\":\"" F9_DESC "\"}"), OAUTH_REJECTED);
	CHECK_STR(err.error, "invalid_client");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 700024);
	CHECK_STR(err.description, F9_DESC);
	CHECK_STR(err.trace_id, "");
	CHECK_STR(err.correlation_id, "");
	CHECK_STR(err.timestamp, "");

	CHECK_INT(parse_s(400, "{\"error\":\"unauthorized_client\",\"error_description\":\"AADSTS7000112: Application "
			       "'8b0c024c-7823-3774-2da8-a8d8b7ed331a'(worklytics-azuread-connector) is disabled.\"}"),
		  OAUTH_REJECTED);
	CHECK_STR(err.error, "unauthorized_client");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 7000112);
	CHECK_STR(err.description, "AADSTS7000112: Application '8b0c024c-7823-3774-2da8-a8d8b7ed331a'"
				   "(worklytics-azuread-connector) is disabled.");
}

#define F11                                                                                                            \
	"{\"error\":\"invalid_request\",\"error_description\":\"AADSTS900144: The request body must contain the "      \
	"following parameter: 'grant_type'.\\r\\nTrace ID: a95260ff-63b6-405f-880b-738bfda33b00\\r\\nCorrelation "     \
	"ID: d606ab93-59c7-4d7d-ac45-643074e23a75\\r\\nTimestamp: 2023-02-24 02:29:25Z\",\"error_codes\":[900144],"    \
	"\"timestamp\":\"2023-02-24 02:29:25Z\",\"trace_id\":\"a95260ff-63b6-405f-880b-738bfda33b00\","                \
	"\"correlation_id\":\"d606ab93-59c7-4d7d-ac45-643074e23a75\",\"error_uri\":"                                   \
	"\"https://login.microsoftonline.com/error?code=900144\"}"

static void test_f11_full(void)
{
	CHECK_INT(parse_s(400, F11), OAUTH_REJECTED);
	CHECK_STR(err.error, "invalid_request");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 900144);
	CHECK_STR(err.trace_id, "a95260ff-63b6-405f-880b-738bfda33b00");
	CHECK_STR(err.correlation_id, "d606ab93-59c7-4d7d-ac45-643074e23a75");
	CHECK_STR(err.timestamp, "2023-02-24 02:29:25Z");
	CHECK_STR(err.error_uri, "https://login.microsoftonline.com/error?code=900144");
	CHECK_STR(err.description,
		  "AADSTS900144: The request body must contain the following parameter: 'grant_type'.");
}

static void test_f12_success(void)
{
	CHECK_INT(parse_s(200, "{\"token_type\":\"Bearer\",\"expires_in\":86399,\"ext_expires_in\":86399,"
			       "\"access_token\":\"access_token\"}"),
		  OAUTH_OK);
	CHECK_STR(tok.access_token, "access_token");
	CHECK_INT(tok.expires_in, 86399);
	CHECK_INT(tok.ext_expires_in, 86399);
	CHECK_INT(tok.refresh_in, 0);
	CHECK_STR(tok.token_type, "Bearer");
	CHECK_STR(err.error, "");

	CHECK_INT(parse_s(200, "{\"token_type\":\"Bearer\",\"expires_in\":9999,\"ext_expires_in\":9999,"
			       "\"refresh_in\":9999,\"access_token\":\"t\"}"),
		  OAUTH_OK);
	CHECK_STR(tok.access_token, "t");
	CHECK_INT(tok.expires_in, 9999);
	CHECK_INT(tok.ext_expires_in, 9999);
	CHECK_INT(tok.refresh_in, 9999);
	oauth_token_clear(&tok);
	CHECK(tok.access_token == NULL);
	oauth_token_clear(&tok); /* idempotent */
	oauth_token_clear(NULL);
}

#define F13                                                                                                            \
	"{\"access_token\":\"eyJ0eXAi...\",\"refresh_token\":\"\",\"expires_in\":\"3599\",\"expires_on\":"             \
	"\"1506484173\",\"not_before\":\"1506480273\",\"resource\":\"https://management.azure.com/\","                 \
	"\"token_type\":\"Bearer\"}"

static void test_f13_strings(void)
{
	CHECK_INT(parse_s(200, F13), OAUTH_OK);
	CHECK_STR(tok.access_token, "eyJ0eXAi...");
	CHECK_INT(tok.expires_in, 3599);
	CHECK_INT(tok.ext_expires_in, 0);
	CHECK_INT(tok.refresh_in, 0);
	/* v1 without expires_in: expires_on - now */
	CHECK_INT(parse_at(200, "{\"access_token\":\"x\",\"expires_on\":\"1506484173\",\"token_type\":\"Bearer\"}",
			   1506480574),
		  OAUTH_OK);
	CHECK_INT(tok.expires_in, 3599);
	/* strings everywhere, with spaces */
	CHECK_INT(parse_s(200, "{\"access_token\":\"x\",\"expires_in\":\" 600 \",\"ext_expires_in\":\"1200\","
			       "\"refresh_in\":\"300\"}"),
		  OAUTH_OK);
	CHECK_INT(tok.expires_in, 600);
	CHECK_INT(tok.ext_expires_in, 1200);
	CHECK_INT(tok.refresh_in, 300);
	/* lower-case bearer (security service) is accepted and normalised */
	CHECK_INT(parse_s(200, "{\"access_token\":\"x\",\"expires_in\":600,\"token_type\":\"bearer\"}"), OAUTH_OK);
	CHECK_STR(tok.token_type, "Bearer");
}

static void b64url(const char *in, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t n = strlen(in), i, o = 0;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = a[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

static void test_lifetime_fallbacks(void)
{
	char body[512], p[128], jwt[256];

	/* neither expires_in nor expires_on: the JWT exp claim */
	b64url("{\"exp\":1700001234}", p);
	snprintf(jwt, sizeof(jwt), "eyJhbGciOiJub25lIn0.%s.sig", p);
	snprintf(body, sizeof(body), "{\"access_token\":\"%s\",\"token_type\":\"Bearer\"}", jwt);
	CHECK_INT(parse_s(200, body), OAUTH_OK);
	CHECK_INT(tok.expires_in, 1234);
	CHECK_STR(tok.access_token, jwt);
	/* nothing usable: bad response with a reason */
	CHECK_INT(parse_s(200, "{\"access_token\":\"opaque\",\"token_type\":\"Bearer\"}"), OAUTH_BAD_RESPONSE);
	CHECK(tok.access_token == NULL);
	CHECK_STR(err.description, "token response has no usable expires_in, expires_on or exp");
	/* an expired expires_on and a past exp do not count */
	CHECK_INT(parse_s(200, "{\"access_token\":\"x\",\"expires_on\":1600000000}"), OAUTH_BAD_RESPONSE);
	/* garbage expires_in falls back to expires_on */
	CHECK_INT(parse_s(200, "{\"access_token\":\"x\",\"expires_in\":\"12a\",\"expires_on\":1700000100}"), OAUTH_OK);
	CHECK_INT(tok.expires_in, 100);
}

static void test_unusable_2xx(void)
{
	CHECK_INT(parse_s(200, "{\"token_type\":\"Bearer\",\"expires_in\":3599}"), OAUTH_BAD_RESPONSE);
	CHECK_STR(err.description, "token response has no access_token");
	CHECK_INT(parse_s(200, "{\"access_token\":\"\",\"expires_in\":3599}"), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(200, "{\"access_token\":\"a b\",\"expires_in\":3599}"), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(200, "{\"access_token\":\"a\\r\\nX: y\",\"expires_in\":3599}"), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(200, "{\"access_token\":\"a\",\"expires_in\":3599,\"token_type\":\"pop\"}"),
		  OAUTH_BAD_RESPONSE);
	CHECK_STR(err.description, "token_type is not Bearer");
	CHECK_INT(parse_s(200, "[1,2]"), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(204, ""), OAUTH_BAD_RESPONSE);
	CHECK_STR(err.description, "token response is not JSON");
	/* an error body with 200 keeps its evidence */
	CHECK_INT(parse_s(200, F2), OAUTH_BAD_RESPONSE);
	CHECK_STR(err.error, "invalid_scope");
}

static void test_classification(void)
{
	static const char ok[] = "{\"access_token\":\"x\",\"expires_in\":60}";

	CHECK_INT(parse_s(200, ok), OAUTH_OK);
	CHECK_INT(parse_s(201, ok), OAUTH_OK);
	CHECK_INT(parse_s(302, ok), OAUTH_BAD_RESPONSE);
	CHECK(tok.access_token == NULL);
	CHECK_INT(parse_s(100, ok), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(0, ok), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(600, ok), OAUTH_BAD_RESPONSE);
	CHECK_INT(parse_s(400, F11), OAUTH_REJECTED);
	CHECK_INT(parse_s(401, F6), OAUTH_REJECTED);
	/* 400 and 401 are OAuth's refusals even with nothing readable; another
	 * 4xx only with an OAuth error in it */
	static const struct {
		long status;
		const char *body;
		enum oauth_result want;
	} four[] = {
	    {401, "", OAUTH_REJECTED},
	    {400, "<html></html>", OAUTH_REJECTED},
	    {404, "", OAUTH_BAD_RESPONSE},
	    {405, "Method Not Allowed", OAUTH_BAD_RESPONSE},
	    {404, "{\"error\":\"not_found\"}", OAUTH_REJECTED},
	    {403, "<html><body>AADSTS53003: Access has been blocked by Conditional Access.</body></html>",
	     OAUTH_REJECTED},
	    {404, "<html><head><title>404 - File or directory not found.</title></head></html>", OAUTH_BAD_RESPONSE},
	};
	for (size_t i = 0; i < sizeof four / sizeof four[0]; i++)
		CHECK_INT(parse_s(four[i].status, four[i].body), four[i].want);
	CHECK_STR(err.description, "404 - File or directory not found."); /* the last one's */
	CHECK_INT(parse_s(403, four[5].body), OAUTH_REJECTED);
	CHECK_INT(err.codes[0], 53003);
	CHECK_INT(parse_s(429, ""), OAUTH_TRANSIENT);
	CHECK_INT(parse_s(500, F2), OAUTH_TRANSIENT);
	CHECK_STR(err.error, "invalid_scope");
	CHECK_INT(parse_s(503, ""), OAUTH_TRANSIENT);
	CHECK_INT(parse_s(599, ""), OAUTH_TRANSIENT);
}

static void test_codes_as_strings(void)
{
	CHECK_INT(parse_s(401, "{\"error\":\"invalid_client\",\"error_codes\":[\"7000215\",50012,\"7000215\",\"x\"]}"),
		  OAUTH_REJECTED);
	CHECK_INT(err.n_codes, 2);
	CHECK_INT(err.codes[0], 7000215);
	CHECK_INT(err.codes[1], 50012);
	/* more codes than fit */
	CHECK_INT(parse_s(400, "{\"error\":\"e\",\"error_codes\":[1,2,3,4,5,6,7,8,9,10]}"), OAUTH_REJECTED);
	CHECK_INT(err.n_codes, OAUTH_MAX_CODES);
	CHECK_INT(err.codes[7], 8);
}

#define FO_DESC "Expected aud https://securityservice.operations365.dynamics.com but found."

static void test_fo_semicolon_body(void)
{
	CHECK_INT(parse_s(400, "{\"error\":\"invalid_client\",\"error_description\";\"" FO_DESC "\"}"), OAUTH_REJECTED);
	CHECK(!err.body_was_json);
	CHECK_STR(err.error, "invalid_client");
	CHECK_STR(err.description, FO_DESC);
	CHECK_INT(err.n_codes, 0);
}

static void test_html_body(void)
{
	CHECK_INT(parse_s(503, "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
			       "<body><h1>Service Unavailable</h1></body></html>"),
		  OAUTH_TRANSIENT);
	CHECK(!err.body_was_json);
	CHECK_STR(err.error, "");
	CHECK_STR(err.description, "503 Service Unavailable");
	CHECK_INT(err.n_codes, 0);
	/* AADSTS codes and ids in an HTML page are still found */
	CHECK_INT(parse_s(400, "<html><body>AADSTS50059: No tenant-identifying information. Trace ID: "
			       "0b8bd1c4-fa27-4a0d-8b62-2e1c5f5fa100 Correlation ID: "
			       "6c5d3f43-0cfb-4b1e-9e7e-8d76a36e4f47</body></html>"),
		  OAUTH_REJECTED);
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 50059);
	CHECK_STR(err.trace_id, "0b8bd1c4-fa27-4a0d-8b62-2e1c5f5fa100");
	CHECK_STR(err.correlation_id, "6c5d3f43-0cfb-4b1e-9e7e-8d76a36e4f47");
}

static void test_empty_body(void)
{
	CHECK_INT(parse(500, "", 0, 1700000000), OAUTH_TRANSIENT);
	CHECK(!err.body_was_json);
	CHECK_STR(err.error, "");
	CHECK_STR(err.description, "");
	CHECK_INT(err.n_codes, 0);
	CHECK_INT(oauth_parse_response(401, NULL, 0, 0, &tok, &err), OAUTH_REJECTED);
	CHECK_STR(err.error, "");
	oauth_parse_error(NULL, 5, &err);
	CHECK_STR(err.error, "");
}

static void test_truncated(void)
{
	/* F11 cut in the middle of its trace id */
	CHECK_INT(parse(400, F11, 165, 1700000000), OAUTH_REJECTED);
	CHECK(!err.body_was_json);
	CHECK_STR(err.error, "invalid_request");
	CHECK_STR(err.description,
		  "AADSTS900144: The request body must contain the following parameter: 'grant_type'.");
	CHECK_INT(err.n_codes, 1);
	CHECK_INT(err.codes[0], 900144);
	CHECK_STR(err.trace_id, ""); /* "a95260ff-63b6-405f-88" is not an id */
	/* cut inside the error value: nothing half-read */
	CHECK_INT(parse(401, "{\"error\":\"invalid_cli", 20, 1700000000), OAUTH_REJECTED);
	CHECK_STR(err.error, "");
	/* a token response cut short */
	CHECK_INT(parse_s(200, "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ0"),
		  OAUTH_BAD_RESPONSE);
	CHECK(tok.access_token == NULL);
	/* len shorter than the string: the part after len is never seen */
	CHECK_INT(parse(400, "{\"error\":\"a\"}AADSTS123", 13, 1700000000), OAUTH_REJECTED);
	CHECK_STR(err.error, "a");
	CHECK_INT(err.n_codes, 0);
}

static void test_dataverse_shape(void)
{
	static const char dv[] = "{\"error\":{\"code\":\"0x80072560\",\"message\":\"The user is not a member of "
				 "the organization.\"}}";
	static const char bc[] = "{\"error\":{\"code\":\"Authentication_InvalidCredentials\",\"message\":\"The "
				 "server has rejected the client credentials.  CorrelationId: "
				 "2b5a5c3c-8a8a-4a8e-9b5e-0f7d3f0e6d11.\"}}";

	oauth_parse_error(dv, strlen(dv), &err);
	CHECK(err.body_was_json);
	CHECK_STR(err.error, "0x80072560");
	CHECK_STR(err.description, "The user is not a member of the organization.");
	oauth_parse_error(bc, strlen(bc), &err);
	CHECK_STR(err.error, "Authentication_InvalidCredentials");
	CHECK_STR(err.correlation_id, "2b5a5c3c-8a8a-4a8e-9b5e-0f7d3f0e6d11");
}

static void test_cleaning(void)
{
	/* control bytes become spaces, invalid UTF-8 '?', valid UTF-8 stays */
	CHECK_INT(parse_s(400, "{\"error\":\"e\\u0001x\",\"error_description\":\"caf\xc3\xa9 \xff!\"}"),
		  OAUTH_REJECTED);
	CHECK_STR(err.error, "e x");
	CHECK_STR(err.description, "caf\xc3\xa9 ?!");
	/* a very long error value is cut to fit */
	{
		char body[400];

		memset(body, 'A', sizeof(body));
		memcpy(body, "{\"error\":\"", 10);
		memcpy(body + sizeof(body) - 2, "\"}", 2);
		CHECK_INT(parse(400, body, sizeof(body), 0), OAUTH_REJECTED);
		CHECK_INT(strlen(err.error), sizeof(err.error) - 1);
	}
}

/* Text copied out of an answer goes into logs and problem bodies: only
 * well-formed UTF-8 (RFC 3629) is kept; an overlong form, a surrogate and a
 * code point above U+10FFFF become '?' byte for byte, as in utf8.c. */
static void test_cleaning_strict_utf8(void)
{
	CHECK_INT(parse_s(400, "{\"error\":\"e\",\"error_description\":"
			       "\"a\xe0\x80\xaf"
			       "b \xed\xa0\x80 \xf4\x90\x80\x80 \xf0\x9f\x98\x80\"}"),
		  OAUTH_REJECTED);
	CHECK_STR(err.description, "a???b ??? ???? \xf0\x9f\x98\x80");
	/* the same in a body that is not JSON (the bounded text scan) */
	CHECK_INT(parse_s(503, "<html><head><title>x\xed\xbf\xbfy \xc0\xafz</title></head></html>"), OAUTH_TRANSIENT);
	CHECK_STR(err.description, "x???y ??z");
}

int main(void)
{
	RUN(test_urlencode);
	RUN(test_form_bodies);
	RUN(test_form_exact_fit);
	RUN(test_basic_auth);
	RUN(test_f2_invalid_scope);
	RUN(test_f4_ids_from_description);
	RUN(test_f6_single_line_trace);
	RUN(test_f9_f10_abridged);
	RUN(test_f11_full);
	RUN(test_f12_success);
	RUN(test_f13_strings);
	RUN(test_lifetime_fallbacks);
	RUN(test_unusable_2xx);
	RUN(test_classification);
	RUN(test_codes_as_strings);
	RUN(test_fo_semicolon_body);
	RUN(test_html_body);
	RUN(test_empty_body);
	RUN(test_truncated);
	RUN(test_dataverse_shape);
	RUN(test_cleaning);
	RUN(test_cleaning_strict_utf8);
	oauth_token_clear(&tok);
	return T_DONE();
}
