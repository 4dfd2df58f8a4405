/*
 * test_metrics.c - metrics counters and their exposition text, and the
 * configuration keys behind the operations features (admin_listen,
 * client_secret_expires, access_log).
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "ops/metrics.h"
#include "t.h"

static const char BASE[] = "[proxy]\n"
			   "listen = 127.0.0.1:0\n"
			   "%s"
			   "[credential:c.q]\n"
			   "tenant = contoso.onmicrosoft.com\n"
			   "client_id = 11111111-aaaa-4bbb-8ccc-000000000001\n"
			   "client_secret_env = T_METRICS_SECRET\n"
			   "%s"
			   "[route:a]\n"
			   "match_path = /a/\n"
			   "upstream = https://contoso.crm4.dynamics.com\n"
			   "%s"
			   "[route:b]\n"
			   "match_path = /b/\n"
			   "upstream = https://api.businesscentral.dynamics.com\n";

/* Load BASE with extra lines in [proxy], [credential] and [route:a]; errors into err. */
static struct config *load(const char *proxy, const char *cred, const char *route, char *err, size_t errcap)
{
	char text[2048];
	int n = snprintf(text, sizeof text, BASE, proxy, cred, route);
	FILE *in = n > 0 && (size_t)n < sizeof text ? fmemopen(text, (size_t)n, "r") : NULL;
	FILE *e = fmemopen(err, errcap, "w");
	struct config *cfg = NULL;
	memset(err, 0, errcap);
	if (in && e)
		cfg = config_load_stream(in, "t.ini", e);
	if (in)
		fclose(in);
	if (e)
		fclose(e);
	return cfg;
}

/* The value of the sample line starting with `prefix` (name{labels}), or -1. */
static double sample(const char *text, const char *prefix)
{
	for (const char *p = text; p && *p;) {
		size_t len = strlen(prefix);
		if (strncmp(p, prefix, len) == 0 && p[len] == ' ')
			return strtod(p + len + 1, NULL);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static void test_keys_parse(void)
{
	char err[512];
	struct config *cfg = load("admin_listen = 127.0.0.1:0\n", "client_secret_expires = 2030-01-01\n",
				  "access_log = false\n", err, sizeof err);
	CHECK(cfg != NULL);
	CHECK_STR(cfg->proxy.admin_host, "127.0.0.1");
	CHECK_INT(cfg->proxy.admin_port, 0);
	CHECK_INT(cfg->credentials[0].secret_expires, 1893456000LL);
	CHECK_INT(cfg->routes[0].access_log, 0);
	CHECK_INT(cfg->routes[1].access_log, 1); /* default true */
	config_free(cfg);
	cfg = load("", "", "", err, sizeof err);
	CHECK(cfg != NULL);
	CHECK(cfg->proxy.admin_host == NULL); /* off when absent */
	CHECK_INT(cfg->credentials[0].secret_expires, 0);
	config_free(cfg);
}

static void test_keys_refused(void)
{
	static const char *const bad_dates[] = {"2030-02-30", "2031-02-29", "2030-1-01",  "30-01-01",
						"1969-12-31", "2030-00-10", "2030-01-32", "2030/01/01"};
	char err[512], line[64];
	for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
		snprintf(line, sizeof line, "client_secret_expires = %s\n", bad_dates[i]);
		struct config *cfg = load("", line, "", err, sizeof err);
		CHECK(cfg == NULL);
		CHECK(strstr(err, "client_secret_expires: must be a date YYYY-MM-DD") != NULL);
	}
	struct config *cfg = load("", "client_secret_expires = 2032-02-29\n", "", err, sizeof err);
	CHECK(cfg != NULL); /* a leap day */
	CHECK_INT(cfg->credentials[0].secret_expires, 1961625600LL);
	config_free(cfg);
	cfg = load("admin_listen = example.com:9090\n", "", "", err, sizeof err);
	CHECK(cfg == NULL);
	CHECK(strstr(err, "t.ini:3: [proxy] admin_listen: ") != NULL);
}

static void test_method_class(void)
{
	CHECK_STR(metrics_method_class("GET"), "read");
	CHECK_STR(metrics_method_class("HEAD"), "read");
	CHECK_STR(metrics_method_class("OPTIONS"), "read");
	CHECK_STR(metrics_method_class("POST"), "write");
	CHECK_STR(metrics_method_class("PATCH"), "write");
	CHECK_STR(metrics_method_class("DELETE"), "write");
	CHECK_STR(metrics_method_class("PUT"), "write");
	CHECK_STR(metrics_method_class("get"), "other");
	CHECK_STR(metrics_method_class("PROPFIND"), "other");
	CHECK_STR(metrics_method_class(""), "other");
}

static long three_connections(void)
{
	return 3;
}

static void test_counters_and_text(void)
{
	char err[512];
	size_t len = 0;
	struct config *cfg = load("", "client_secret_expires = 2030-01-01\n", "", err, sizeof err);
	CHECK(cfg != NULL);
	metrics_request_done(&cfg->routes[0], "GET", 200, 0, 10, 3); /* before init: ignored */
	CHECK(metrics_render(NULL, 0, 0, &len) == NULL);
	CHECK_INT(metrics_init(cfg), 0);
	metrics_inflight(1);
	metrics_inflight(1);
	metrics_inflight(-1);
	metrics_request_done(&cfg->routes[0], "GET", 200, 0, 100, 4);         /* le 0.005 */
	metrics_request_done(&cfg->routes[0], "GET", 204, 0, 0, 30);          /* le 0.05 */
	metrics_request_done(&cfg->routes[0], "PATCH", 503, 7, 50, -1);       /* never went upstream */
	metrics_request_done(&cfg->routes[1], "PROPFIND", 404, 0, 9, 500000); /* above every bound */
	metrics_request_done(NULL, "GET", 0, 0, 0, -1);                       /* unrouted, no answer */
	metrics_token_result(cfg, 0, NULL, 120);
	struct token_failure f = {.kind = TF_UNREACHABLE};
	metrics_token_result(cfg, 0, &f, 15000);
	metrics_token_result(cfg, 0, &f, -1);
	metrics_token_result(cfg, 99, NULL, 1); /* unknown source: ignored */
	metrics_cert_not_after(cfg, 0, 2000000000LL);
	char *text = metrics_render(NULL, 0, 1893456000LL - 86400, &len);
	CHECK(text != NULL);
	CHECK(strstr(text, "s2s_client_connections") == NULL); /* no source: left out */
	free(text);
	metrics_set_client_connections(three_connections);
	text = metrics_render(NULL, 0, 1893456000LL - 86400, &len);
	metrics_set_client_connections(NULL);
	CHECK(text != NULL);
	CHECK(strstr(text, "# TYPE s2s_client_connections gauge\n") != NULL);
	CHECK_INT(sample(text, "s2s_client_connections"), 3);
	CHECK_INT(strlen(text), len);
	CHECK(strstr(text, "# TYPE s2s_requests_total counter\n") != NULL);
	CHECK(strstr(text, "# TYPE s2s_upstream_duration_seconds histogram\n") != NULL);
	CHECK_INT(sample(text, "s2s_requests_in_flight"), 1);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"a\",method=\"read\",status=\"2xx\"}"), 2);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"a\",method=\"write\",status=\"5xx\"}"), 1);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"b\",method=\"other\",status=\"4xx\"}"), 1);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"\",method=\"read\",status=\"none\"}"), 1);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"a\",method=\"read\",status=\"4xx\"}"),
		  -1); /* zero: absent */
	CHECK_INT(sample(text, "s2s_request_bytes_total{route=\"a\"}"), 7);
	CHECK_INT(sample(text, "s2s_response_bytes_total{route=\"a\"}"), 150);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_bucket{route=\"a\",le=\"0.005\"}"), 1);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_bucket{route=\"a\",le=\"0.025\"}"), 1);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_bucket{route=\"a\",le=\"0.05\"}"), 2);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_count{route=\"a\"}"), 2);
	CHECK(sample(text, "s2s_upstream_duration_seconds_sum{route=\"a\"}") > 0.0339);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_bucket{route=\"b\",le=\"120\"}"), 0);
	CHECK_INT(sample(text, "s2s_upstream_duration_seconds_bucket{route=\"b\",le=\"+Inf\"}"), 1);

	const char *src = "{credential=\"c.q\",audience=\"https://contoso.crm4.dynamics.com\"";
	char key[256];
	snprintf(key, sizeof key, "s2s_token_requests_total%s,result=\"ok\"}", src);
	CHECK_INT(sample(text, key), 1);
	snprintf(key, sizeof key, "s2s_token_requests_total%s,result=\"idp_unavailable\"}", src);
	CHECK_INT(sample(text, key), 2);
	snprintf(key, sizeof key, "s2s_token_fetch_duration_seconds_count%s}", src);
	CHECK_INT(sample(text, key), 2); /* the local failure has no latency */
	snprintf(key, sizeof key, "s2s_token_valid%s}", src);
	CHECK_INT(sample(text, key), 0); /* no engine */
	CHECK_INT(sample(text, "s2s_credential_secret_expires_in_seconds{credential=\"c.q\"}"), 86400);
	CHECK_INT(sample(text, "s2s_credential_certificate_expires_in_seconds{credential=\"c.q\"}"),
		  2000000000LL - 1893456000LL + 86400);
	free(text);
	metrics_free();
	metrics_free();      /* idempotent */
	metrics_inflight(1); /* after free: ignored */
	config_free(cfg);
}

/* A reload: counts follow route and source names into the new set; requests
 * and token engines of the old configuration count into the new set. */
static void test_reconfigure(void)
{
	char err[512];
	size_t len = 0;
	struct config *old = load("", "", "", err, sizeof err);
	/* route b first, route a renamed to c: indexes move */
	struct config *neu = load("", "", "", err, sizeof err);
	CHECK(old != NULL && neu != NULL);
	free(neu->routes[0].name);
	neu->routes[0].name = strdup("c");
	CHECK(neu->routes[0].name != NULL);
	CHECK_INT(metrics_init(old), 0);
	metrics_request_done(&old->routes[0], "GET", 200, 1, 2, 5); /* a */
	metrics_request_done(&old->routes[1], "GET", 200, 1, 2, 5); /* b */
	metrics_request_done(&old->routes[1], "GET", 200, 1, 2, 5); /* b */
	metrics_token_result(old, 1, NULL, 10);                     /* the bc source */
	metrics_inflight(1);
	CHECK_INT(metrics_reconfigure(neu), 0);
	metrics_request_done(&old->routes[1], "POST", 201, 3, 4, 5); /* began before the reload */
	metrics_token_result(old, 1, NULL, 10);                      /* the old engine, still running */
	metrics_inflight(-1);
	char *text = metrics_render(NULL, 0, 0, &len);
	CHECK(text != NULL);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"b\",method=\"read\",status=\"2xx\"}"), 2);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"b\",method=\"write\",status=\"2xx\"}"), 1);
	CHECK_INT(sample(text, "s2s_requests_total{route=\"c\",method=\"read\",status=\"2xx\"}"), 0);
	CHECK(strstr(text, "route=\"a\"") == NULL);
	CHECK_INT(sample(text, "s2s_request_bytes_total{route=\"b\"}"), 5);
	CHECK_INT(sample(text, "s2s_token_requests_total{credential=\"c.q\",audience=\"https://"
			       "api.businesscentral.dynamics.com\",result=\"ok\"}"),
		  2);
	CHECK_INT(sample(text, "s2s_requests_in_flight"), 0);
	free(text);
	metrics_free();
	config_free(old);
	config_free(neu);
}

int main(void)
{
	setenv("T_METRICS_SECRET", "not-a-real-secret", 1);
	RUN(test_keys_parse);
	RUN(test_keys_refused);
	RUN(test_method_class);
	RUN(test_counters_and_text);
	RUN(test_reconfigure);
	return T_DONE();
}
