/*
 * test_urlrw.c - the streaming URL rewriter: JSON string values only (not
 * keys, not text in the middle of a string), escaped solidus, boundaries,
 * TEXT mode for multipart answers and header values, and the same output
 * for every way of cutting the input: one byte at a time, at every single
 * split point, and with a one-byte output buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "http/urlrw.h"
#include "t.h"

#define FROM "https://contoso.crm4.dynamics.com"
#define TO   "http://127.0.0.1:8080/dataverse"

/* Run in[] through a fresh rewriter: input in pieces of `piece` bytes
 * (0 = whole), output into a buffer of `ocap` bytes at a time. */
static char *run(enum urlrw_mode mode, const char *in, size_t piece, size_t ocap, size_t split, uint64_t *n)
{
	static struct urlrw rw;
	size_t len = strlen(in), cap = len * 4 + 4096, out_len = 0, at = 0;
	char *out = malloc(cap), *chunk = malloc(ocap);
	if (!out || !chunk || urlrw_init(&rw, mode, FROM, TO) < 0) {
		free(out);
		free(chunk);
		return NULL;
	}
	while (at < len) {
		size_t end = piece ? at + piece : split && at < split ? split : len;
		if (end > len)
			end = len;
		while (at < end) {
			size_t used = 0, k = urlrw_step(&rw, in + at, end - at, &used, chunk, ocap);
			memcpy(out + out_len, chunk, k);
			out_len += k;
			at += used;
		}
	}
	size_t k;
	while ((k = urlrw_end(&rw, chunk, ocap)) > 0) {
		memcpy(out + out_len, chunk, k);
		out_len += k;
	}
	out[out_len] = '\0';
	free(chunk);
	if (n)
		*n = rw.rewrites;
	return out;
}

struct json_case {
	const char *in, *want;
};

static const struct json_case json_cases[] = {
    {"{\"@odata.nextLink\":\"" FROM "/api/data/v9.2/accounts?$skiptoken=1\"}",
     "{\"@odata.nextLink\":\"" TO "/api/data/v9.2/accounts?$skiptoken=1\"}"},
    {"{\"a\":\"" FROM "\"}", "{\"a\":\"" TO "\"}"},
    {"{\"a\":\"HTTPS://Contoso.CRM4.dynamics.com/x\"}", "{\"a\":\"" TO "/x\"}"},
    {"{\"a\":\"" FROM "?q=1\",\"b\":\"" FROM "#f\"}", "{\"a\":\"" TO "?q=1\",\"b\":\"" TO "#f\"}"},
    /* keys, text inside a string, look-alike hosts and ports are left alone */
    {"{\"" FROM "\":\"" FROM "/k\"}", "{\"" FROM "\":\"" TO "/k\"}"},
    {"{\"t\":\"see " FROM "/x\"}", "{\"t\":\"see " FROM "/x\"}"},
    {"{\"o\":\"" FROM ".evil.example/x\",\"p\":\"" FROM ":8443/x\",\"q\":\"" FROM "x\"}",
     "{\"o\":\"" FROM ".evil.example/x\",\"p\":\"" FROM ":8443/x\",\"q\":\"" FROM "x\"}"},
    {"{\"s\":\"https://contoso.crm4.dynamics.co\"}", "{\"s\":\"https://contoso.crm4.dynamics.co\"}"},
    /* escaped solidus: the rewrite keeps the style */
    {"{\"u\":\"https:\\/\\/contoso.crm4.dynamics.com\\/api\"}",
     "{\"u\":\"http:\\/\\/127.0.0.1:8080\\/dataverse\\/api\"}"},
    {"{\"u\":\"https:\\/\\/contoso.crm4.dynamics.com\"}", "{\"u\":\"http:\\/\\/127.0.0.1:8080\\/dataverse\"}"},
    {"{\"u\":\"https:\\u002f\\/contoso\"}", "{\"u\":\"https:\\u002f\\/contoso\"}"},
    {"{\"u\":\"https:\\\"x\"}", "{\"u\":\"https:\\\"x\"}"},
    /* arrays, nesting, values after escaped quotes, keys inside arrays of objects */
    {"[\"" FROM "/1\",{\"" FROM "\":[\"" FROM "/2\"]},\"x\\\"\",\"" FROM "/3\"]",
     "[\"" TO "/1\",{\"" FROM "\":[\"" TO "/2\"]},\"x\\\"\",\"" TO "/3\"]"},
    {"{\"a\":1,\"b\":[true,null],\"c\":{\"d\":\"" FROM "/d\"},\"e\":\"" FROM "/e\"}",
     "{\"a\":1,\"b\":[true,null],\"c\":{\"d\":\"" TO "/d\"},\"e\":\"" TO "/e\"}"},
    {"\"" FROM "/top\"", "\"" TO "/top\""},
    /* a candidate cut by the end of the body (not JSON, but never lost) */
    {"{\"a\":\"https://contoso.cr", "{\"a\":\"https://contoso.cr"},
    {"{\"a\":\"https:\\", "{\"a\":\"https:\\"},
};

static void test_json_cases(void)
{
	for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
		char *got = run(URLRW_JSON, json_cases[i].in, 0, 65536, 0, NULL);
		CHECK(got != NULL);
		if (strcmp(got, json_cases[i].want) != 0) {
			T_FAIL("case %zu: got %s, want %s", i, got, json_cases[i].want);
		}
		free(got);
	}
}

/* Every case, fed one byte at a time, cut at each single split point, and
 * read through a one-byte output buffer, gives the same bytes. */
static void test_every_split(void)
{
	for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
		const char *in = json_cases[i].in, *want = json_cases[i].want;
		char *one = run(URLRW_JSON, in, 1, 65536, 0, NULL), *tiny = run(URLRW_JSON, in, 0, 1, 0, NULL);
		CHECK(one && tiny);
		CHECK_STR(one, want);
		CHECK_STR(tiny, want);
		free(one);
		free(tiny);
		for (size_t s = 1; s < strlen(in); s++) {
			char *got = run(URLRW_JSON, in, 0, 7, s, NULL);
			CHECK(got != NULL);
			if (strcmp(got, want) != 0) {
				T_FAIL("case %zu split %zu: got %s", i, s, got);
			}
			free(got);
		}
	}
}

static void test_text_mode(void)
{
	const char *in = "--batchresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n"
			 "Location: " FROM "/api/data/v9.2/accounts(1)\r\nOData-EntityId:" FROM
			 "/api/data/v9.2/accounts(1)\r\nLink: <" FROM "/p2>; rel=\"next\"\r\n\r\n"
			 "{\"@odata.id\":\"" FROM "/a(1)\",\"x\":\"" FROM ".evil/\"}\r\n--batchresponse_1--\r\n";
	const char *want = "--batchresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n"
			   "Location: " TO "/api/data/v9.2/accounts(1)\r\nOData-EntityId:" TO
			   "/api/data/v9.2/accounts(1)\r\nLink: <" TO "/p2>; rel=\"next\"\r\n\r\n"
			   "{\"@odata.id\":\"" TO "/a(1)\",\"x\":\"" FROM ".evil/\"}\r\n--batchresponse_1--\r\n";
	uint64_t n = 0;
	char *got = run(URLRW_TEXT, in, 0, 65536, 0, &n);
	CHECK_STR(got, want);
	CHECK_INT(n, 4);
	free(got);
	for (size_t s = 1; s < strlen(in); s++) {
		got = run(URLRW_TEXT, in, 1 + s % 3, 1 + s % 5, 0, NULL);
		CHECK(got != NULL);
		if (strcmp(got, want) != 0) {
			T_FAIL("piece %zu: got %s", 1 + s % 3, got);
		}
		free(got);
	}
}

static void test_values(void)
{
	char out[256];
	CHECK_INT(urlrw_value(FROM, TO, FROM "/api/data/v9.2/accounts(1)", out, sizeof out), 1);
	CHECK_STR(out, TO "/api/data/v9.2/accounts(1)");
	CHECK_INT(urlrw_value(FROM, TO, FROM, out, sizeof out), 1);
	CHECK_STR(out, TO);
	CHECK_INT(
	    urlrw_value(FROM, TO, "<" FROM "/a>; rel=\"next\", <https://x.example/b>; rel=\"x\"", out, sizeof out), 1);
	CHECK_STR(out, "<" TO "/a>; rel=\"next\", <https://x.example/b>; rel=\"x\"");
	CHECK_INT(urlrw_value(FROM, TO, "https://login.microsoftonline.com/x", out, sizeof out), 0);
	CHECK_STR(out, "https://login.microsoftonline.com/x");
	CHECK_INT(urlrw_value(FROM, TO, FROM "x", out, sizeof out), 0);
	CHECK_INT(urlrw_value(FROM, TO, FROM "/a", out, 20), -1); /* does not fit */
	CHECK_INT(urlrw_value("", TO, "x", out, sizeof out), -1);
}

/* A long body with a URL every few bytes: output length and count add up. */
static void test_long_body(void)
{
	size_t reps = 5000;
	const char *rec = "{\"@odata.id\":\"" FROM "/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000000)\"},";
	char *in = malloc(strlen(rec) * reps + 3);
	CHECK(in != NULL);
	char *p = in;
	*p++ = '[';
	for (size_t i = 0; i < reps; i++, p += strlen(rec))
		memcpy(p, rec, strlen(rec));
	p[-1] = ']';
	*p = '\0';
	uint64_t n = 0;
	char *got = run(URLRW_JSON, in, 4093, 4096, 0, &n);
	CHECK(got != NULL);
	CHECK_INT(n, reps);
	CHECK_INT(strlen(got), strlen(in) + reps * (strlen(TO) - strlen(FROM)));
	CHECK(strstr(got, FROM) == NULL);
	free(got);
	free(in);
}

int main(void)
{
	RUN(test_json_cases);
	RUN(test_every_split);
	RUN(test_text_mode);
	RUN(test_values);
	RUN(test_long_body);
	return T_DONE();
}
