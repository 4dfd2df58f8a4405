/*
 * test_hdr.c - hdr.c: the header policy table in both directions,
 * Connection-listed tokens, pass-through of the Dynamics 365 headers, name
 * and value grammar, and the exact verdict for every framing shape.
 */
#include <ctype.h>

#include "http/hdr.h"
#include "t.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const hop_by_hop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
};

/* Set by the proxy for the upstream hop: request direction only. */
static const char *const proxy_set[] = {
    "Host",
    "Authorization",
    "Proxy-Authorization",
    "Expect",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Forwarded",
};

static const char *const pass_through[] = {
    "OData-Version",
    "OData-MaxVersion",
    "OData-EntityId",
    "Prefer",
    "Preference-Applied",
    "MSCRM.SuppressDuplicateDetection",
    "MSCRM.BypassCustomPluginExecution",
    "MSCRM.SolutionUniqueName",
    "If-Match",
    "If-None-Match",
    "Cookie",
    "Set-Cookie",
    /* a rule's name as a prefix or with a byte more or less: only the
     * exact name is dropped (the table compares lengths first) */
    "Hosts",
    "Hos",
    "TEx",
    "T",
    "Connection2",
    "Content-Lengt",
    "X-Forwarded-For-Real",
    "x-ms-client-request-id",
    "x-ms-ratelimit-burst-remaining-xrm-requests",
    "x-ms-service-request-id",
    "Retry-After",
    "Content-Type",
    "Content-Encoding",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "User-Agent",
    "ETag",
    "Location",
    "WWW-Authenticate",
    "Date",
    "Cache-Control",
    "Request-Id",
    "traceparent",
    "Proxy-Authenticate", /* not in our drop table: the upstream never sends one to us */
    "Trailers",           /* near miss of Trailer */
    "Hostname",           /* near miss of Host */
    "X-Forwarded",        /* near miss of X-Forwarded-For */
    "Content-Lengths",
};

/* Same name in lower, upper and the given case. */
static void variants(const char *name, char lower[64], char upper[64])
{
	size_t i;

	for (i = 0; name[i] != '\0' && i < 63; i++) {
		lower[i] = (char)tolower((unsigned char)name[i]);
		upper[i] = (char)toupper((unsigned char)name[i]);
	}
	lower[i] = upper[i] = '\0';
}

static void test_hop_by_hop_dropped_both_directions(void)
{
	char lo[64], up[64];

	for (size_t i = 0; i < N(hop_by_hop); i++) {
		variants(hop_by_hop[i], lo, up);
		const char *forms[] = {hop_by_hop[i], lo, up};
		for (size_t k = 0; k < N(forms); k++) {
			if (hdr_request_forwardable(forms[k], NULL))
				T_FAIL("request forwards %s", forms[k]);
			if (hdr_response_forwardable(forms[k], NULL))
				T_FAIL("response forwards %s", forms[k]);
		}
	}
}

static void test_proxy_set_dropped_in_requests_only(void)
{
	char lo[64], up[64];

	for (size_t i = 0; i < N(proxy_set); i++) {
		variants(proxy_set[i], lo, up);
		const char *forms[] = {proxy_set[i], lo, up};
		for (size_t k = 0; k < N(forms); k++) {
			if (hdr_request_forwardable(forms[k], NULL))
				T_FAIL("request forwards %s", forms[k]);
			if (!hdr_response_forwardable(forms[k], NULL))
				T_FAIL("response drops %s", forms[k]);
		}
	}
}

static void test_content_length_dropped_both_directions(void)
{
	CHECK(!hdr_request_forwardable("Content-Length", NULL));
	CHECK(!hdr_request_forwardable("content-length", ""));
	CHECK(!hdr_response_forwardable("Content-Length", NULL));
	CHECK(!hdr_response_forwardable("CONTENT-LENGTH", "close"));
}

static void test_pass_through(void)
{
	char lo[64], up[64];

	for (size_t i = 0; i < N(pass_through); i++) {
		variants(pass_through[i], lo, up);
		const char *forms[] = {pass_through[i], lo, up};
		for (size_t k = 0; k < N(forms); k++) {
			if (!hdr_request_forwardable(forms[k], NULL))
				T_FAIL("request drops %s", forms[k]);
			if (!hdr_response_forwardable(forms[k], "close, keep-alive"))
				T_FAIL("response drops %s", forms[k]);
		}
	}
}

static void test_connection_listed_tokens_dropped(void)
{
	CHECK(!hdr_request_forwardable("X-Foo", "close, X-Foo"));
	CHECK(!hdr_request_forwardable("x-foo", "close, X-Foo"));
	CHECK(!hdr_response_forwardable("X-FOO", "close, X-Foo"));
	CHECK(hdr_request_forwardable("X-Foo-Bar", "close, X-Foo"));
	CHECK(hdr_request_forwardable("X-Fo", "close, X-Foo"));
	/* several Connection headers joined with ',' */
	CHECK(!hdr_request_forwardable("X-A", "keep-alive, X-A,X-B"));
	CHECK(!hdr_request_forwardable("X-B", "keep-alive, X-A,X-B"));
	CHECK(!hdr_response_forwardable("X-B", "keep-alive, X-A,X-B"));
	CHECK(!hdr_request_forwardable("X-C", "close,X-A , \tX-C\t,"));
	CHECK(hdr_request_forwardable("X-D", "close,X-A , \tX-C\t,"));
	/* a listed end-to-end header is dropped too (RFC 9110 7.6.1) */
	CHECK(!hdr_request_forwardable("Prefer", "Prefer"));
	CHECK(!hdr_response_forwardable("Set-Cookie", "set-cookie"));
	CHECK(hdr_request_forwardable("Prefer", ""));
	CHECK(hdr_request_forwardable("Prefer", ",,,"));
}

static void test_invalid_names_never_forwarded(void)
{
	static const char *const bad[] = {"",           "Host ", " Host", "X Foo", "X-Foo:", "X\r\nFoo", "X\tFoo",
					  "X-\xc3\xa9", "(x)",   "a/b",   "a@b",   "{x}",    "\"q\""};

	CHECK(!hdr_request_forwardable(NULL, NULL));
	CHECK(!hdr_response_forwardable(NULL, "x"));
	for (size_t i = 0; i < N(bad); i++) {
		if (hdr_request_forwardable(bad[i], NULL) || hdr_response_forwardable(bad[i], NULL))
			T_FAIL("forwards invalid name \"%s\"", bad[i]);
	}
}

static void test_list_contains(void)
{
	CHECK(hdr_list_contains("close", "close"));
	CHECK(hdr_list_contains("Close", "CLOSE"));
	CHECK(hdr_list_contains(" close ", "close"));
	CHECK(hdr_list_contains("\tkeep-alive,\tclose\t", "close"));
	CHECK(hdr_list_contains("a,b,c", "a"));
	CHECK(hdr_list_contains("a,b,c", "b"));
	CHECK(hdr_list_contains("a,b,c", "c"));
	CHECK(hdr_list_contains(",,c,,", "c"));
	CHECK(hdr_list_contains("gzip, chunked", "chunked"));
	CHECK(!hdr_list_contains("closed", "close"));
	CHECK(!hdr_list_contains("enclose", "close"));
	CHECK(!hdr_list_contains("clo se", "close"));
	CHECK(!hdr_list_contains("close;x", "close"));
	CHECK(!hdr_list_contains("", "close"));
	CHECK(!hdr_list_contains(",", "close"));
	CHECK(!hdr_list_contains(NULL, "close"));
	CHECK(!hdr_list_contains("close", NULL));
	CHECK(!hdr_list_contains("close", ""));
	CHECK(!hdr_list_contains("a,,b", ""));
}

static void test_name_ok(void)
{
	static const char tchar_specials[] = "!#$%&'*+-.^_`|~";
	char c[1];

	CHECK(hdr_name_ok("Content-Type", 12));
	CHECK(hdr_name_ok("MSCRM.SuppressDuplicateDetection", 32));
	CHECK(hdr_name_ok(tchar_specials, sizeof tchar_specials - 1));
	CHECK(hdr_name_ok("X-Foo: bar", 5)); /* only len bytes are looked at */
	CHECK(!hdr_name_ok("X-Foo: bar", 6));
	CHECK(!hdr_name_ok("", 0));
	CHECK(!hdr_name_ok(NULL, 0));
	CHECK(!hdr_name_ok("a\0b", 3));
	/* exactly the tchar set of RFC 9110 5.6.2 */
	for (int i = 0; i < 256; i++) {
		bool want = (i >= '0' && i <= '9') || (i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z') ||
			    (i != 0 && strchr(tchar_specials, i) != NULL);
		c[0] = (char)i;
		if (hdr_name_ok(c, 1) != want)
			T_FAIL("byte 0x%02x: name_ok %d", i, !want);
	}
}

static void test_value_ok(void)
{
	char c[1];

	CHECK(hdr_value_ok("", 0));
	CHECK(hdr_value_ok(NULL, 0));
	CHECK(!hdr_value_ok(NULL, 1));
	CHECK(hdr_value_ok("odata.include-annotations=\"*\"", 29));
	CHECK(hdr_value_ok("W/\"12345\"", 9));
	CHECK(hdr_value_ok("a\tb c", 5));
	CHECK(hdr_value_ok("caf\xc3\xa9", 5)); /* obs-text */
	CHECK(!hdr_value_ok("a\r\nX-Evil: 1", 12));
	CHECK(!hdr_value_ok("a\nb", 3));
	CHECK(!hdr_value_ok("a\rb", 3));
	CHECK(!hdr_value_ok("a\0b", 3));
	CHECK(hdr_value_ok("ab\r\n", 2)); /* only len bytes are looked at */
	for (int i = 0; i < 256; i++) {
		bool want = i == '\t' || (i >= 0x20 && i != 0x7F);
		c[0] = (char)i;
		if (hdr_value_ok(c, 1) != want)
			T_FAIL("byte 0x%02x: value_ok %d", i, !want);
	}
}

/* ---- Framing: every shape and its exact verdict ---- */

struct framing_case {
	const char *h[4][2]; /* name, value; NULL name ends */
	enum hdr_framing_verdict verdict;
	bool has_body;    /* checked when FRAMING_OK */
	int64_t body_len; /* checked when FRAMING_OK */
};

static const struct framing_case framing_cases[] = {
    {{{NULL}}, FRAMING_OK, false, 0},
    {{{"Content-Type", "application/json"}, {"TE", "trailers"}}, FRAMING_OK, false, 0},
    {{{"Content-Length", "0"}}, FRAMING_OK, false, 0},
    {{{"Content-Length", "5"}}, FRAMING_OK, true, 5},
    {{{"content-length", " 5\t"}}, FRAMING_OK, true, 5},
    {{{"CONTENT-LENGTH", "0005"}}, FRAMING_OK, true, 5},
    {{{"Content-Length", "4611686018427387904"}}, FRAMING_OK, true, INT64_C(4611686018427387904)},
    {{{"Content-Length", "000000000000000000000000000004611686018427387904"}},
     FRAMING_OK,
     true,
     INT64_C(4611686018427387904)},
    {{{"Transfer-Encoding", "chunked"}}, FRAMING_OK, true, -1},
    {{{"transfer-encoding", "Chunked"}}, FRAMING_OK, true, -1},
    {{{"Transfer-Encoding", " \tCHUNKED "}}, FRAMING_OK, true, -1},
    /* Content-Length not 1*DIGIT, or above 2^62 */
    {{{"Content-Length", "4611686018427387905"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "18446744073709551616"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "99999999999999999999999999"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", ""}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "  "}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", NULL}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "-1"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "+5"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "0x10"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "1e3"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "5 5"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "5,5"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "5, 5"}}, FRAMING_CL_INVALID, false, 0}, /* pinned: no comma lists, even equal */
    {{{"Content-Length", "5\r\n"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "\xd9\xa5"}}, FRAMING_CL_INVALID, false, 0}, /* Arabic-Indic five */
    /* repeated Content-Length */
    {{{"Content-Length", "5"}, {"Content-Length", "6"}}, FRAMING_CL_CONFLICT, false, 0},
    {{{"Content-Length", "5"}, {"Content-Length", "5"}}, FRAMING_CL_CONFLICT, false, 0}, /* pinned: any repeat */
    {{{"Content-Length", "0"}, {"content-length", "0"}}, FRAMING_CL_CONFLICT, false, 0},
    {{{"Content-Length", "5"}, {"Content-Length", "x"}}, FRAMING_CL_INVALID, false, 0},
    {{{"Content-Length", "x"}, {"Content-Length", "5"}}, FRAMING_CL_INVALID, false, 0},
    /* Transfer-Encoding other than a single chunked */
    {{{"Transfer-Encoding", "gzip, chunked"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked, chunked"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked, gzip"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "identity"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "gzip"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", ""}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", NULL}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked;q=1"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked,"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "xchunked"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked\r\n"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    {{{"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}, FRAMING_TE_UNSUPPORTED, false, 0},
    /* both framings: the classic smuggling shape, whatever the values */
    {{{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}, FRAMING_TE_AND_CL, false, 0},
    {{{"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}, FRAMING_TE_AND_CL, false, 0},
    {{{"Content-Length", "0"}, {"transfer-encoding", "chunked"}}, FRAMING_TE_AND_CL, false, 0},
    {{{"Transfer-Encoding", "gzip"}, {"Content-Length", "5"}}, FRAMING_TE_AND_CL, false, 0},
    {{{"Transfer-Encoding", "chunked"}, {"Content-Length", "abc"}}, FRAMING_TE_AND_CL, false, 0},
    {{{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}, {"Content-Length", "6"}}, FRAMING_TE_AND_CL, false, 0},
    /* Names that are not exactly the framing fields are not framing. The
     * caller refuses invalid names (hdr_name_ok) and they are never
     * forwarded, see test_invalid_names_never_forwarded. */
    {{{"Content-Length ", "5"}, {"Transfer-Encoding ", "gzip"}}, FRAMING_OK, false, 0},
    {{{"Content-Length", "5"}, {"Content-Lengths", "6"}}, FRAMING_OK, true, 5},
};

static void test_framing_verdicts(void)
{
	for (size_t i = 0; i < N(framing_cases); i++) {
		const struct framing_case *c = &framing_cases[i];
		struct hdr_framing f;
		enum hdr_framing_verdict v;

		hdr_framing_init(&f);
		for (size_t k = 0; k < N(c->h) && c->h[k][0] != NULL; k++)
			hdr_framing_add(&f, c->h[k][0], c->h[k][1]);
		v = hdr_framing_check(&f);
		if (v != c->verdict)
			T_FAIL("case %zu (%s: %s): verdict %d, want %d", i, c->h[0][0] ? c->h[0][0] : "-",
			       c->h[0][1] ? c->h[0][1] : "(null)", v, c->verdict);
		if (v != FRAMING_OK)
			continue;
		if (hdr_framing_has_body(&f) != c->has_body)
			T_FAIL("case %zu: has_body %d", i, !c->has_body);
		if (hdr_framing_body_length(&f) != c->body_len)
			T_FAIL("case %zu: body_length %lld, want %lld", i, (long long)hdr_framing_body_length(&f),
			       (long long)c->body_len);
	}
}

static void test_framing_counters(void)
{
	struct hdr_framing f;

	hdr_framing_init(&f);
	hdr_framing_add(&f, "Content-Length", "5");
	hdr_framing_add(&f, "Content-Length", "5");
	CHECK_INT(f.n_content_length, 2);
	CHECK(!f.cl_conflict); /* equal values: refused by count, not flagged as different */
	CHECK_INT(f.content_length, 5);
	hdr_framing_add(&f, "Content-Length", "7");
	CHECK(f.cl_conflict);
	hdr_framing_add(&f, NULL, "5");
	hdr_framing_add(&f, "Transfer-Encoding", "chunked");
	CHECK_INT(f.n_transfer_encoding, 1);
	CHECK(!f.te_not_chunked);
	CHECK_INT(f.n_content_length, 3);
}

static void test_framing_reasons(void)
{
	static const enum hdr_framing_verdict all[] = {FRAMING_OK, FRAMING_TE_UNSUPPORTED, FRAMING_TE_AND_CL,
						       FRAMING_CL_CONFLICT, FRAMING_CL_INVALID};

	for (size_t i = 0; i < N(all); i++) {
		const char *r = hdr_framing_reason(all[i]);
		CHECK(r != NULL && r[0] != '\0');
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(r, hdr_framing_reason(all[k])) != 0);
	}
	CHECK_STR(hdr_framing_reason(FRAMING_TE_AND_CL),
		  "Transfer-Encoding and Content-Length must not both be present");
	CHECK(hdr_framing_reason((enum hdr_framing_verdict)99) != NULL);
}

static void test_method_policy(void)
{
	const char *fwd[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
	char allow[128] = "";
	for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) {
		CHECK_INT(hdr_method_policy(fwd[i]), HDR_METHOD_FORWARD);
		snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", i ? ", " : "", fwd[i]);
	}
	CHECK_STR(hdr_methods_allowed, allow);
	CHECK_INT(hdr_method_policy("CONNECT"), HDR_METHOD_TUNNEL);
	CHECK_INT(hdr_method_policy("TRACE"), HDR_METHOD_ECHO);
	CHECK_INT(hdr_method_policy("TRACK"), HDR_METHOD_ECHO);
	const char *unknown[] = {"get", "trace", "Get", "FOO", "MERGE", "PROPFIND", "", "GET ", "GETX"};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
		CHECK_INT(hdr_method_policy(unknown[i]), HDR_METHOD_UNKNOWN);
	CHECK_INT(hdr_method_policy(NULL), HDR_METHOD_UNKNOWN);
	const char *idem[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}, *not_idem[] = {"POST", "PATCH", "get", "FOO"};
	for (size_t i = 0; i < sizeof idem / sizeof idem[0]; i++)
		CHECK(hdr_method_idempotent(idem[i]));
	for (size_t i = 0; i < sizeof not_idem / sizeof not_idem[0]; i++)
		CHECK(!hdr_method_idempotent(not_idem[i]));
}

int main(void)
{
	RUN(test_hop_by_hop_dropped_both_directions);
	RUN(test_proxy_set_dropped_in_requests_only);
	RUN(test_content_length_dropped_both_directions);
	RUN(test_pass_through);
	RUN(test_connection_listed_tokens_dropped);
	RUN(test_invalid_names_never_forwarded);
	RUN(test_list_contains);
	RUN(test_name_ok);
	RUN(test_value_ok);
	RUN(test_framing_verdicts);
	RUN(test_framing_counters);
	RUN(test_framing_reasons);
	RUN(test_method_policy);
	return T_DONE();
}
