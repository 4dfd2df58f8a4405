/* Unit tests for route.c: selection, traversal checks, upstream URLs. */
#include <stdlib.h>

#include "proxy/route.h"
#include "t.h"

static struct route_cfg routes[4];
static struct config cfg;

static void setup(void)
{
	static char *o1 = "https://contoso.crm4.dynamics.com", *o2 = "https://api.businesscentral.dynamics.com";
	routes[0] = (struct route_cfg){
	    .name = "dv",
	    .match_host = NULL,
	    .match_path = "/dataverse/",
	    .strip_prefix = true,
	    .upstream = {.scheme = "https", .host = "contoso.crm4.dynamics.com", .origin = o1, .path = ""}};
	routes[1] = (struct route_cfg){
	    .name = "dv-api",
	    .match_path = "/dataverse/api/",
	    .strip_prefix = false,
	    .upstream = {.scheme = "https", .host = "contoso.crm4.dynamics.com", .origin = o1, .path = "/base"}};
	routes[2] = (struct route_cfg){
	    .name = "bc",
	    .match_host = "bc.local",
	    .match_path = "/",
	    .upstream = {.scheme = "https", .host = "api.businesscentral.dynamics.com", .origin = o2, .path = ""}};
	routes[3] = (struct route_cfg){
	    .name = "exact",
	    .match_path = "/x",
	    .strip_prefix = true,
	    .upstream = {.scheme = "https", .host = "contoso.crm4.dynamics.com", .origin = o1, .path = ""}};
	cfg.routes = routes;
	cfg.n_routes = 4;
}

static const char *pick(const char *target, const char *host, enum route_verdict *v)
{
	static struct route_match m;
	struct route_request rq = {.target = target, .host = host};
	*v = route_select(&cfg, &rq, &m);
	return m.route ? m.route->name : NULL;
}

static const char *url_for(const char *target, const char *host)
{
	static char buf[512];
	struct route_match m;
	struct route_request rq = {.target = target, .host = host};
	if (route_select(&cfg, &rq, &m) != ROUTE_OK || route_upstream_url(&m, buf, sizeof buf) < 0)
		return NULL;
	return buf;
}

static void test_longest_prefix_wins(void)
{
	enum route_verdict v;
	CHECK_STR(pick("/dataverse/api/data/v9.2/WhoAmI", "proxy", &v), "dv-api");
	CHECK_STR(pick("/dataverse/other", "proxy", &v), "dv");
	CHECK_STR(pick("/dataverse", "proxy", &v), "dv");
	CHECK_INT(v, ROUTE_OK);
}

static void test_host_condition(void)
{
	enum route_verdict v;
	CHECK_STR(pick("/v2.0/x", "BC.local:8080", &v), "bc");
	CHECK(pick("/v2.0/x", "other", &v) == NULL);
	CHECK_INT(v, ROUTE_NO_MATCH);
}

static void test_segment_boundary(void)
{
	enum route_verdict v;
	CHECK_STR(pick("/x", "h", &v), "exact");
	CHECK_STR(pick("/x/y", "h", &v), "exact");
	CHECK(pick("/xy", "h", &v) == NULL);
}

static void test_upstream_url(void)
{
	CHECK_STR(url_for("/dataverse/api2?$top=1", "h"), "https://contoso.crm4.dynamics.com/api2?$top=1");
	CHECK_STR(url_for("/dataverse/api/data/v9.2/WhoAmI", "h"),
		  "https://contoso.crm4.dynamics.com/base/dataverse/api/data/v9.2/WhoAmI");
	CHECK_STR(url_for("/dataverse", "h"), "https://contoso.crm4.dynamics.com/");
	CHECK_STR(url_for("/x?a=b", "h"), "https://contoso.crm4.dynamics.com/?a=b");
	CHECK_STR(url_for("/dataverse/a%20b%2Fc", "h"), "https://contoso.crm4.dynamics.com/a%20b%2Fc");
}

/* The URL and its NUL fit exactly, or the answer is -1 with nothing
 * written past cap. */
static void test_upstream_url_cap(void)
{
	const char *want = "https://contoso.crm4.dynamics.com/api2?$top=1";
	size_t len = strlen(want);
	char buf[128];
	struct route_match m;
	struct route_request rq = {.target = "/dataverse/api2?$top=1", .host = "h"};
	CHECK_INT(route_select(&cfg, &rq, &m), ROUTE_OK);
	for (size_t cap = 0; cap <= len + 1; cap++) {
		memset(buf, '#', sizeof buf);
		long got = route_upstream_url(&m, buf, cap);
		if (cap == len + 1 ? got != (long)len || strcmp(buf, want) != 0 : got != -1)
			T_FAIL("cap %zu: got %ld", cap, got);
		for (size_t i = cap; i < sizeof buf; i++)
			if (buf[i] != '#')
				T_FAIL("cap %zu: byte %zu written", cap, i);
	}
}

static void test_traversal_refused(void)
{
	enum route_verdict v;
	const char *bad[] = {"/dataverse/../etc",      "/dataverse/%2e%2e/x", "/dataverse/.%2E/x",
			     "/dataverse/..%2f..%2fx", "/dataverse/a/..",     "/dataverse/..\\x",
			     "/dataverse/%2E%2e%5cx",  "/dataverse/./x"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		pick(bad[i], "h", &v);
		if (v != ROUTE_PATH_TRAVERSAL)
			T_FAIL("%s: verdict %d", bad[i], v);
	}
	CHECK_INT(route_path_traversal("/a/...b/.c/..d", 14), 0);
	CHECK_INT(route_path_traversal("/a%zz", 5), -1);
	CHECK_INT(route_path_traversal("/a%0", 4), -1);
	CHECK_INT(route_path_traversal("/a%00b", 6), -1);
}

static void test_absolute_form(void)
{
	enum route_verdict v;
	CHECK_STR(pick("http://contoso.crm4.dynamics.com/dataverse/x", "evil.example", &v), "dv");
	CHECK(pick("http://evil.example/dataverse/x", "contoso.crm4.dynamics.com", &v) == NULL);
	CHECK_INT(v, ROUTE_FOREIGN_HOST);
	CHECK(pick("http://user@contoso.crm4.dynamics.com/dataverse/x", NULL, &v) == NULL);
	CHECK_INT(v, ROUTE_BAD_TARGET);
	CHECK(pick("contoso.crm4.dynamics.com:443", NULL, &v) == NULL);
	CHECK_INT(v, ROUTE_BAD_TARGET);
	CHECK(pick("*", NULL, &v) == NULL);
	CHECK_INT(v, ROUTE_BAD_TARGET);
	CHECK(pick("/dataverse/x#frag", NULL, &v) == NULL);
	CHECK_INT(v, ROUTE_BAD_TARGET);
}

static void test_too_long(void)
{
	char *t = malloc(ROUTE_MAX_TARGET + 10);
	memset(t, 'a', ROUTE_MAX_TARGET + 9);
	t[0] = '/';
	t[ROUTE_MAX_TARGET + 9] = '\0';
	enum route_verdict v;
	pick(t, "h", &v);
	free(t);
	CHECK_INT(v, ROUTE_TOO_LONG);
}

/* Bytes RFC 3986 does not allow in a request-target are refused, in the
 * path and in the query; their percent-encoded forms pass. */
static void test_target_bytes(void)
{
	enum route_verdict v;
	const char *bad[] = {"/dataverse/a b",  "/dataverse/a\tb",    "/dataverse/a\x7f", "/dataverse/caf\xc3\xa9",
			     "/dataverse/a\\b", "/dataverse/a?x=<s>", "/dataverse/a\"b",  "/dataverse/a\x01"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		pick(bad[i], "h", &v);
		if (v != ROUTE_BAD_TARGET)
			T_FAIL("%s: verdict %d", bad[i], v);
	}
	const char *good[] = {"/dataverse/api/data/v9.2/accounts?$filter=name%20eq%20'a'&$top=5",
			      "/dataverse/accounts(00000000-0000-0000-0000-000000000001)?$select=name,@x",
			      "/dataverse/caf%C3%A9;v=1!*+[]~",
			      /* what Node's URL rules leave raw (WHATWG query and path sets) */
			      "/dataverse/accounts?$filter=contains(name,%27{x}%27)&a=A|B^C`d",
			      "/dataverse/accounts(accountnumber='A|B^C')"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		pick(good[i], "h", &v);
		if (v != ROUTE_OK)
			T_FAIL("%s: verdict %d", good[i], v);
	}
}

int main(void)
{
	setup();
	RUN(test_longest_prefix_wins);
	RUN(test_host_condition);
	RUN(test_segment_boundary);
	RUN(test_upstream_url);
	RUN(test_upstream_url_cap);
	RUN(test_traversal_refused);
	RUN(test_absolute_form);
	RUN(test_too_long);
	RUN(test_target_bytes);
	return T_DONE();
}
