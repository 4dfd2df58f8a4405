/*
 * test_config.c - unit tests of config.c: exact error strings, derived token
 * sources for every audience and both token versions, the AZURE_* default
 * credential, durations, sizes, listen addresses, inih edge cases and the
 * shipped example file.
 *
 * Inputs are INI templates in which "@DIR@" becomes a scratch directory
 * holding a secret file and a CA file. Warnings are read back from the log.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "util/log.h"
#include "t.h"

static char dir[64];
static char errs[16384]; /* what the last load wrote to `errors` */
static int n_errs;       /* lines in errs */
static int log_fd = -1;

#define GUID1 "11111111-2222-3333-4444-555555555555"
#define GUID2 "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
#define CRED(name, guid)                                                                                               \
	"[credential:" name "]\ntenant = contoso.onmicrosoft.com\nclient_id = " guid                                   \
	"\nclient_secret_file = @DIR@/secret\n"
#define ROUTE(name, path, upstream) "[route:" name "]\nmatch_path = " path "\nupstream = " upstream "\n"

static void write_file(const char *name, const char *content)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fputs(content, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
}

/* Replace every @DIR@ in tmpl. */
static char *expand(const char *tmpl)
{
	size_t cap = strlen(tmpl) * 2 + 1024, n = 0;
	char *out = malloc(cap);

	if (!out)
		exit(2);
	for (const char *p = tmpl; *p;) {
		if (strncmp(p, "@DIR@", 5) == 0) {
			n += (size_t)snprintf(out + n, cap - n, "%s", dir);
			p += 5;
		} else {
			out[n++] = *p++;
		}
		if (n + 64 >= cap && !(out = realloc(out, cap *= 2)))
			exit(2);
	}
	out[n] = '\0';
	return out;
}

static struct config *load_n(const char *tmpl, size_t len)
{
	char *text, *buf = NULL;
	size_t blen = 0;
	FILE *in, *err = open_memstream(&buf, &blen);
	struct config *cfg;

	if (len == (size_t)-1) { /* a template */
		text = expand(tmpl);
		len = strlen(text);
	} else if ((text = malloc(len + 1))) { /* raw bytes, NULs included */
		memcpy(text, tmpl, len + 1);
	}
	in = text ? fmemopen(text, len, "r") : NULL;
	if (!in || !err)
		exit(2);
	cfg = config_load_stream(in, "t.ini", err);
	fclose(in);
	fclose(err);
	snprintf(errs, sizeof errs, "%s", buf);
	n_errs = 0;
	for (const char *p = errs; (p = strchr(p, '\n')); p++)
		n_errs++;
	free(buf);
	free(text);
	return cfg;
}

static struct config *load(const char *tmpl)
{
	return load_n(tmpl, (size_t)-1);
}

/* Everything logged since the last call. */
static const char *logged(void)
{
	static char buf[16384];
	ssize_t n = pread(log_fd, buf, sizeof buf - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	if (ftruncate(log_fd, 0) != 0)
		exit(2);
	lseek(log_fd, 0, SEEK_SET);
	return buf;
}

static void clear_env(void)
{
	unsetenv("AZURE_TENANT_ID");
	unsetenv("AZURE_CLIENT_ID");
	unsetenv("AZURE_CLIENT_SECRET");
	unsetenv("AZURE_AUTHORITY_HOST");
	unsetenv("AZURE_FEDERATED_TOKEN_FILE");
	logged();
}

/* ---- success paths ---- */

static void test_minimal_defaults(void)
{
	clear_env();
	struct config *cfg = load(CRED("a", GUID1) ROUTE("dv", "/", "https://Contoso.CRM4.dynamics.com/"));
	CHECK_STR(errs, "");
	CHECK(cfg != NULL);
	CHECK_STR(cfg->path, "t.ini");
	CHECK_STR(cfg->proxy.listen_host, "127.0.0.1");
	CHECK_INT(cfg->proxy.listen_port, 8080);
	CHECK(cfg->proxy.ca_file == NULL);
	CHECK_INT(cfg->proxy.log_level, LOG_INFO);
	CHECK_INT(cfg->proxy.log_format, LOG_FMT_JSON);
	CHECK_INT(cfg->proxy.workers, 0);
	CHECK_INT(cfg->proxy.max_connections, 1024);
	CHECK_INT(cfg->proxy.client_timeout_s, 60);
	CHECK_INT(cfg->proxy.token_wait_ms, 15000);
	CHECK_INT(cfg->proxy.token_timeout_ms, 15000);
	CHECK_INT(cfg->proxy.token_retry_max_ms, 30000);
	CHECK_INT(cfg->proxy.shutdown_timeout_s, 30);
	CHECK_INT(cfg->proxy.buffer_bytes, 65536);
	CHECK_INT(cfg->proxy.n_connect_to, 0);

	CHECK_INT(cfg->n_credentials, 1);
	const struct credential_cfg *c = &cfg->credentials[0];
	CHECK_STR(c->name, "a");
	CHECK_STR(c->tenant, "contoso.onmicrosoft.com");
	CHECK_STR(c->client_id, GUID1);
	CHECK_INT(c->secret_source, SECRET_FILE);
	CHECK(strstr(c->client_secret_file, "/secret") != NULL);
	CHECK(c->client_secret == NULL);
	CHECK_STR(c->authority, "https://login.microsoftonline.com");
	CHECK_INT(c->token_version, TOKEN_V2);
	CHECK_INT(c->auth_method, AUTH_POST);
	CHECK_INT(c->line, 1);

	CHECK_INT(cfg->n_routes, 1);
	const struct route_cfg *r = &cfg->routes[0];
	CHECK_STR(r->name, "dv");
	CHECK(r->match_host == NULL);
	CHECK_STR(r->match_path, "/");
	CHECK(!r->strip_prefix);
	CHECK_STR(r->upstream.scheme, "https");
	CHECK_STR(r->upstream.host, "contoso.crm4.dynamics.com");
	CHECK_INT(r->upstream.port, 443);
	CHECK_STR(r->upstream.origin, "https://contoso.crm4.dynamics.com");
	CHECK_STR(r->upstream.path, "");
	CHECK_INT(r->credential, 0);
	CHECK_INT(r->audience_kind, AUD_DATAVERSE);
	CHECK_INT(r->connect_timeout_ms, 10000);
	CHECK_INT(r->idle_timeout_ms, 120000);
	CHECK_INT(r->total_timeout_ms, 0);
	CHECK_INT(r->line, 5);

	CHECK_INT(cfg->n_token_sources, 1);
	CHECK_INT(r->token_source, 0);
	CHECK_INT(cfg->token_sources[0].credential, 0);
	CHECK_STR(cfg->token_sources[0].resource, "https://contoso.crm4.dynamics.com");
	CHECK_STR(cfg->token_sources[0].scope, "https://contoso.crm4.dynamics.com/.default");
	CHECK_STR(cfg->token_sources[0].token_endpoint,
		  "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
	CHECK_STR(logged(), "");
	config_free(cfg);
}

static void test_all_keys(void)
{
	clear_env();
	struct config *cfg = load("[proxy]\n"
				  "listen = 9000\n"
				  "ca_file = @DIR@/ca.pem\n"
				  "log_level = debug\n"
				  "log_format = text\n"
				  "workers = 4\n"
				  "max_connections = 10\n"
				  "client_timeout = 2m\n"
				  "token_wait_timeout = 500ms\n"
				  "token_timeout = 20\n"
				  "token_retry_max = 1h\n"
				  "shutdown_timeout = 0\n"
				  "buffer_size = 1m\n"
				  "connect_to = a.example:443:127.0.0.1:8443\n" CRED(
				      "a", GUID1) "authority = "
						  "https://LOGIN.microsoftonline.us/\n"
						  "token_version = v1\n"
						  "auth_method = basic\n"
						  "[route:x]\n"
						  "match_host = API.Example.COM\n"
						  "match_path = /x/\n"
						  "strip_prefix = yes\n"
						  "upstream = https://a.example:8443/base/path/\n"
						  "credential = a\n"
						  "audience = https://a.example\n"
						  "connect_timeout = 250ms\n"
						  "idle_timeout = 30s\n"
						  "timeout = 5m\n");
	CHECK_STR(errs, "");
	CHECK_INT(cfg->proxy.listen_port, 9000);
	CHECK_STR(cfg->proxy.listen_host, "127.0.0.1");
	CHECK(strstr(cfg->proxy.ca_file, "/ca.pem") != NULL);
	CHECK_INT(cfg->proxy.log_level, LOG_DEBUG);
	CHECK_INT(cfg->proxy.log_format, LOG_FMT_TEXT);
	CHECK_INT(cfg->proxy.workers, 4);
	CHECK_INT(cfg->proxy.max_connections, 10);
	CHECK_INT(cfg->proxy.client_timeout_s, 120);
	CHECK_INT(cfg->proxy.token_wait_ms, 500);
	CHECK_INT(cfg->proxy.token_timeout_ms, 20000);
	CHECK_INT(cfg->proxy.token_retry_max_ms, 3600000);
	CHECK_INT(cfg->proxy.shutdown_timeout_s, 0);
	CHECK_INT(cfg->proxy.buffer_bytes, 1048576);
	CHECK_INT(cfg->proxy.n_connect_to, 1);
	CHECK_STR(cfg->proxy.connect_to[0].entry, "a.example:443:127.0.0.1:8443");
	CHECK_STR(cfg->credentials[0].authority, "https://login.microsoftonline.us");
	CHECK_INT(cfg->credentials[0].token_version, TOKEN_V1);
	CHECK_INT(cfg->credentials[0].auth_method, AUTH_BASIC);
	const struct route_cfg *r = &cfg->routes[0];
	CHECK_STR(r->match_host, "api.example.com");
	CHECK_STR(r->match_path, "/x/");
	CHECK(r->strip_prefix);
	CHECK_STR(r->upstream.origin, "https://a.example:8443");
	CHECK_INT(r->upstream.port, 8443);
	CHECK_STR(r->upstream.path, "/base/path");
	CHECK_INT(r->audience_kind, AUD_URL);
	CHECK_INT(r->connect_timeout_ms, 250);
	CHECK_INT(r->idle_timeout_ms, 30000);
	CHECK_INT(r->total_timeout_ms, 300000);
	CHECK_STR(cfg->token_sources[0].resource, "https://a.example");
	CHECK(cfg->token_sources[0].scope == NULL);
	CHECK_STR(cfg->token_sources[0].token_endpoint,
		  "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/token");
	config_free(cfg);
}

/* The same four routes and a URL audience, with a v2 or a v1 credential. */
static const char audience_routes[] =
    "[route:dv]\nmatch_path = /dv/\nupstream = https://org.crm4.dynamics.com/api/data\n"
    "[route:bc]\nmatch_path = /bc/\nupstream = https://api.businesscentral.dynamics.com\n"
    "[route:fo]\nmatch_path = /fo/\nupstream = https://Env.Operations.Dynamics.com/\n"
    "[route:ss]\nmatch_path = /ss/\n"
    "upstream = https://securityservice.operations365.dynamics.com\n"
    "[route:url]\nmatch_path = /u/\nupstream = https://x.example\n"
    "audience = https://x.example/\n";

static void check_audiences(const char *version, bool v2)
{
	char tmpl[2048];
	static const char *const resources[] = {
	    "https://org.crm4.dynamics.com", "https://api.businesscentral.dynamics.com",
	    "https://env.operations.dynamics.com", "https://securityservice.operations365.dynamics.com",
	    "https://x.example/"};
	static const char *const scopes[] = {
	    "https://org.crm4.dynamics.com/.default", "https://api.businesscentral.dynamics.com/.default",
	    "https://env.operations.dynamics.com/.default",
	    "https://securityservice.operations365.dynamics.com/.default", "https://x.example//.default"};
	static const enum audience_kind kinds[] = {AUD_DATAVERSE, AUD_BC, AUD_FO, AUD_SECURITYSERVICE, AUD_URL};

	clear_env();
	snprintf(tmpl, sizeof tmpl, CRED("a", GUID1) "token_version = %s\n%s", version, audience_routes);
	struct config *cfg = load(tmpl);
	CHECK_STR(errs, "");
	CHECK_INT(cfg->n_routes, 5);
	CHECK_INT(cfg->n_token_sources, 5);
	for (size_t i = 0; i < 5; i++) {
		const struct token_source_cfg *t = &cfg->token_sources[cfg->routes[i].token_source];
		CHECK_INT(cfg->routes[i].audience_kind, kinds[i]);
		CHECK_INT(cfg->routes[i].token_source, i);
		CHECK_STR(t->resource, resources[i]);
		CHECK_STR(t->scope, v2 ? scopes[i] : NULL);
		CHECK_STR(t->token_endpoint,
			  v2 ? "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
			     : "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token");
	}
	config_free(cfg);
}

static void test_audiences_v2(void)
{
	check_audiences("v2", true);
}

static void test_audiences_v1(void)
{
	check_audiences("v1", false);
}

static void test_audience_presets_explicit(void)
{
	clear_env();
	struct config *cfg =
	    load(CRED("a", GUID1) ROUTE("p", "/p/", "https://proxy.example/org") "audience = dataverse\n" ROUTE(
		"q", "/q/",
		"https://other.example:444") "audience = fo\n" ROUTE("b", "/b/",
								     "https://bc.example") "audience = bc\n");
	CHECK_STR(errs, "");
	CHECK_STR(cfg->token_sources[0].resource, "https://proxy.example");
	CHECK_STR(cfg->token_sources[1].resource, "https://other.example:444");
	CHECK_STR(cfg->token_sources[2].resource, "https://api.businesscentral.dynamics.com");
	config_free(cfg);
}

static void test_audience_inference(void)
{
	static const struct {
		const char *host;
		enum audience_kind kind;
	} cases[] = {
	    {"org.crm.dynamics.com", AUD_DATAVERSE},
	    {"org.crm11.dynamics.com", AUD_DATAVERSE},
	    {"api.businesscentral.dynamics.com", AUD_BC},
	    {"env.operations.dynamics.com", AUD_FO},
	    {"env.sandbox.operations.dynamics.com", AUD_FO},
	    {"env.operations.eu.dynamics.com", AUD_FO},
	    {"securityservice.operations365.dynamics.com", AUD_SECURITYSERVICE},
	};
	char tmpl[1024];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		clear_env();
		snprintf(tmpl, sizeof tmpl, CRED("a", GUID1) ROUTE("r", "/", "https://%s"), cases[i].host);
		struct config *cfg = load(tmpl);
		CHECK_STR(errs, "");
		CHECK_INT(cfg->routes[0].audience_kind, cases[i].kind);
		config_free(cfg);
	}
	for (const char *const *h = (const char *const[]){"crm4.dynamics.com", "org.crmx.dynamics.com",
							  "org.operations.dynamics.com.evil.example", NULL};
	     *h; h++) {
		snprintf(tmpl, sizeof tmpl, CRED("a", GUID1) ROUTE("r", "/", "https://%s"), *h);
		CHECK(load(tmpl) == NULL);
		char want[512];
		snprintf(want, sizeof want,
			 "t.ini:5: [route:r] audience: required key missing: cannot infer it from upstream host %s "
			 "(set dataverse, bc, fo, securityservice or an https:// URL)\n",
			 *h);
		CHECK_STR(errs, want);
	}
}

static void test_scope_override_and_sharing(void)
{
	clear_env();
	struct config *cfg = load(
	    CRED("a", GUID1) CRED("b", GUID2)
		ROUTE("r1", "/1/", "https://org.crm.dynamics.com") "credential = a\n" ROUTE("r2", "/2/", "https://org.crm.dynamics.com/other") "credential = a\n" ROUTE(
		    "r3", "/3/", "https://org.crm.dynamics.com") "credential = b\n" ROUTE("r4", "/4/",
											  "https://"
											  "org.crm.dynamics."
											  "com") "credential "
												 "= a\n"
												 "scope = "
												 "https://"
												 "org.crm."
												 "dynamics."
												 "com//"
												 ".default"
												 "\n" ROUTE("r5", "/5/",
													    "https:/"
													    "/custom"
													    ".exampl"
													    "e") "cr"
														 "ed"
														 "en"
														 "ti"
														 "al"
														 " ="
														 " a"
														 "\n"
														 "sc"
														 "op"
														 "e "
														 "= "
														 "ap"
														 "i:"
														 "//"
														 "cu"
														 "st"
														 "om"
														 "/."
														 "de"
														 "fa"
														 "ul"
														 "t"
														 "\n");
	CHECK_STR(errs, "");
	CHECK_INT(cfg->n_token_sources, 4);
	CHECK_INT(cfg->routes[0].token_source, 0);
	CHECK_INT(cfg->routes[1].token_source, 0); /* same credential and scope: shared */
	CHECK_INT(cfg->routes[2].token_source, 1); /* other credential */
	CHECK_INT(cfg->routes[2].credential, 1);
	CHECK_INT(cfg->routes[3].token_source, 2);
	CHECK_STR(cfg->token_sources[2].scope, "https://org.crm.dynamics.com//.default");
	CHECK_STR(cfg->token_sources[2].resource, "https://org.crm.dynamics.com");
	CHECK_STR(cfg->token_sources[3].scope, "api://custom/.default");
	CHECK_STR(cfg->token_sources[3].resource, "api://custom");
	CHECK_INT(cfg->routes[4].audience_kind, AUD_URL);
	config_free(cfg);
}

/* ---- environment ---- */

static void test_env_only_default(void)
{
	clear_env();
	setenv("AZURE_TENANT_ID", "AAAAAAAA-0000-0000-0000-000000000001", 1);
	setenv("AZURE_CLIENT_ID", GUID2, 1);
	setenv("AZURE_CLIENT_SECRET", "s3cr3t", 1);
	setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/", 1);
	struct config *cfg = load(ROUTE("r", "/", "https://org.crm9.dynamics.com"));
	CHECK_STR(errs, "");
	CHECK_INT(cfg->n_credentials, 1);
	const struct credential_cfg *c = &cfg->credentials[0];
	CHECK_STR(c->name, "default");
	CHECK_STR(c->tenant, "aaaaaaaa-0000-0000-0000-000000000001");
	CHECK_STR(c->client_id, GUID2);
	CHECK_INT(c->secret_source, SECRET_ENV);
	CHECK_STR(c->client_secret_env, "AZURE_CLIENT_SECRET");
	CHECK_STR(c->client_secret, "s3cr3t");
	CHECK_STR(c->authority, "https://login.microsoftonline.us");
	CHECK_INT(c->line, 0);
	CHECK_STR(cfg->token_sources[0].token_endpoint,
		  "https://login.microsoftonline.us/aaaaaaaa-0000-0000-0000-000000000001/oauth2/v2.0/token");
	config_free(cfg);
	clear_env();
}

static void test_env_fills_file_default(void)
{
	clear_env();
	setenv("AZURE_TENANT_ID", "fabrikam.onmicrosoft.com", 1);
	setenv("AZURE_CLIENT_ID", GUID2, 1);
	setenv("AZURE_CLIENT_SECRET", "s3cr3t", 1);
	struct config *cfg =
	    load("[credential:default]\ntenant = contoso.onmicrosoft.com\n"
		 "client_secret_file = @DIR@/secret\n" ROUTE("r", "/", "https://org.crm.dynamics.com"));
	CHECK_STR(errs, "");
	const struct credential_cfg *c = &cfg->credentials[0];
	CHECK_STR(c->tenant, "contoso.onmicrosoft.com"); /* the file wins */
	CHECK_STR(c->client_id, GUID2);                  /* the environment fills the gap */
	CHECK_INT(c->secret_source, SECRET_FILE);
	CHECK(c->client_secret == NULL);
	config_free(cfg);

	/* A bad environment value names its variable. */
	setenv("AZURE_CLIENT_ID", "not-a-guid", 1);
	CHECK(load("[credential:default]\ntenant = contoso.onmicrosoft.com\n" ROUTE(
		  "r", "/", "https://org.crm.dynamics.com")) == NULL);
	CHECK_STR(errs, "t.ini:1: [credential:default] client_id (AZURE_CLIENT_ID): must be a GUID "
			"(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)\n");
	clear_env();
}

static void test_certificate_and_federated_keys(void)
{
	clear_env();
	struct config *cfg = load(
	    "[credential:c]\ntenant = contoso.com\nclient_id = " GUID1
	    "\ncertificate_file = @DIR@/secret\nprivate_key_file = @DIR@/secret\n"
	    "assertion_alg = rs256\nsend_x5c = yes\n"
	    "[credential:f]\ntenant = contoso.com\nclient_id = " GUID2 "\nfederated_token_file = @DIR@/secret\n" ROUTE(
		"x", "/",
		"https://org.crm.dynamics.com") "credential = c\n" ROUTE("y", "/y/",
									 "https://org.crm.dynamics.com") "credential = "
													 "f\n");
	CHECK_STR(errs, "");
	CHECK(cfg != NULL);
	CHECK_INT(cfg->credentials[0].kind, CRED_CERTIFICATE);
	CHECK_INT(cfg->credentials[0].assertion_alg, ASSERTION_RS256);
	CHECK(cfg->credentials[0].send_x5c);
	CHECK(cfg->credentials[0].pfx_file == NULL && cfg->credentials[0].private_key_password_file == NULL);
	CHECK_INT(cfg->credentials[1].kind, CRED_FEDERATED);
	CHECK_INT(cfg->credentials[1].assertion_alg, ASSERTION_PS256);
	CHECK(strstr(cfg->credentials[1].federated_token_file, "/secret") != NULL);
	config_free(cfg);
}

static void test_managed_identity(void)
{
	clear_env();
	unsetenv("IDENTITY_ENDPOINT");
	unsetenv("IDENTITY_HEADER");
	struct config *cfg = load(
	    "[credential:m]\nmanaged_identity = SYSTEM\n[credential:u]\nmanaged_identity = " GUID2
	    "\nmanaged_identity_endpoint = http://127.0.0.1:9/t\n" ROUTE(
		"x", "/",
		"https://org.crm.dynamics.com") "credential = m\n" ROUTE("y", "/y/",
									 "https://org.crm.dynamics.com") "credential = "
													 "u\n");
	CHECK_STR(errs, "");
	CHECK(cfg != NULL);
	CHECK_INT(cfg->credentials[0].kind, CRED_MANAGED_IDENTITY);
	CHECK_STR(cfg->credentials[0].managed_identity, "system");
	CHECK_STR(cfg->credentials[0].managed_identity_endpoint,
		  "http://169.254.169.254/metadata/identity/oauth2/token");
	CHECK(!cfg->credentials[0].mi_app_service);
	CHECK_STR(cfg->token_sources[0].token_endpoint, "http://169.254.169.254/metadata/identity/oauth2/token");
	CHECK_STR(cfg->credentials[1].managed_identity, GUID2);
	CHECK_STR(cfg->token_sources[1].token_endpoint, "http://127.0.0.1:9/t");
	CHECK_STR(cfg->token_sources[1].resource, "https://org.crm.dynamics.com");
	config_free(cfg);
	setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:41000/msi/token", 1);
	setenv("IDENTITY_HEADER", "h", 1);
	cfg = load("[credential:m]\nmanaged_identity = system\n" ROUTE("x", "/", "https://org.crm.dynamics.com"));
	unsetenv("IDENTITY_ENDPOINT");
	unsetenv("IDENTITY_HEADER");
	CHECK(cfg != NULL);
	CHECK(cfg->credentials[0].mi_app_service);
	CHECK_STR(cfg->token_sources[0].token_endpoint, "http://127.0.0.1:41000/msi/token");
	config_free(cfg);
}

static void test_env_federated_default(void)
{
	clear_env();
	setenv("AZURE_TENANT_ID", "contoso.onmicrosoft.com", 1);
	setenv("AZURE_CLIENT_ID", GUID2, 1);
	char *f = expand("@DIR@/secret");
	setenv("AZURE_FEDERATED_TOKEN_FILE", f, 1);
	struct config *cfg = load(ROUTE("x", "/", "https://org.crm.dynamics.com"));
	clear_env();
	CHECK_STR(errs, "");
	CHECK(cfg != NULL);
	CHECK_STR(cfg->credentials[0].name, "default");
	CHECK_INT(cfg->credentials[0].kind, CRED_FEDERATED);
	CHECK_STR(cfg->credentials[0].federated_token_file, f);
	CHECK(cfg->credentials[0].client_secret_env == NULL);
	config_free(cfg);
	free(f);
}

static void test_env_partial_is_ignored(void)
{
	clear_env();
	/* Workload identity sets these two without a secret: no "default" credential appears. */
	setenv("AZURE_TENANT_ID", "contoso.onmicrosoft.com", 1);
	setenv("AZURE_CLIENT_ID", GUID2, 1);
	struct config *cfg = load(CRED("a", GUID1) ROUTE("r", "/", "https://org.crm.dynamics.com"));
	CHECK_STR(errs, "");
	CHECK_INT(cfg->n_credentials, 1);
	config_free(cfg);
	clear_env();
	CHECK(load(ROUTE("r", "/", "https://org.crm.dynamics.com")) == NULL);
	CHECK_STR(errs, "t.ini:1: [route:r] credential: required key missing: no [credential:NAME] section and no "
			"AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET in the environment\n");
}

/* ---- errors ---- */

static void test_error_strings(void)
{
	static const struct {
		const char *ini, *want;
	} cases[] = {
	    {CRED("a", GUID1) ROUTE("x", "/", "http://org.crm.dynamics.com"),
	     "t.ini:7: [route:x] upstream: http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost); "
	     "use https://\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://u:p@org.crm.dynamics.com"),
	     "t.ini:7: [route:x] upstream: must not contain user info (user@)\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com/?a=1"),
	     "t.ini:7: [route:x] upstream: must not have a query or fragment\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "ftp://org.crm.dynamics.com"),
	     "t.ini:7: [route:x] upstream: must be an https:// URL\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com:0"),
	     "t.ini:7: [route:x] upstream: bad port (1-65535)\n"},
	    {CRED("a", GUID1) ROUTE("x", "dv/", "https://org.crm.dynamics.com"),
	     "t.ini:6: [route:x] match_path: must be a path starting with '/' (no spaces, '?' or '#')\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "match_host = a.example:8080\n",
	     "t.ini:8: [route:x] match_host: must be a host name without a port\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "strip_prefix = maybe\n",
	     "t.ini:8: [route:x] strip_prefix: must be true or false (also yes/no, on/off, 1/0)\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "audience = crm\n",
	     "t.ini:8: [route:x] audience: must be dataverse, bc, fo, securityservice or an https:// URL\n"},
	    {CRED("a", GUID1) ROUTE(
		 "x", "/", "https://org.crm.dynamics.com") "scope = https://org.crm.dynamics.com/user_impersonation\n",
	     "t.ini:8: [route:x] scope: must be one RESOURCE/.default: client credentials take no other scope "
	     "(AADSTS1002012)\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "upsteam = https://x\n",
	     "t.ini:8: [route:x] upsteam: unknown key\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "upstream = https://y.crm.dynamics.com\n",
	     "t.ini:8: [route:x] upstream: duplicate key (first set on line 7)\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "credential = nope\n",
	     "t.ini:8: [route:x] credential: no [credential:nope] section\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "timeout =\n",
	     "t.ini:8: [route:x] timeout: empty value (remove the line to get the default)\n"},
	    {CRED("a", GUID1) "[route:x]\nmatch_path = /\n", "t.ini:5: [route:x] upstream: required key missing\n"},
	    {"[credential:a]\nclient_secret_file = @DIR@/secret\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:1: [credential:a] tenant: required key missing\nt.ini:1: [credential:a] client_id: required key "
	     "missing\n"},
	    {"[credential:a]\ntenant = common\nclient_id = " GUID1
	     "\nclient_secret_file = @DIR@/secret\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [credential:a] tenant: 'common' is not allowed: client credentials need a tenant-specific "
	     "authority (AADSTS9001023); use the tenant GUID or a verified domain\n"},
	    {"[credential:a]\ntenant = contoso\nclient_id = " GUID1
	     "\nclient_secret_file = @DIR@/secret\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [credential:a] tenant: must be a tenant GUID or a verified domain such as "
	     "contoso.onmicrosoft.com\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = 1234\nclient_secret_file = @DIR@/secret\n" ROUTE(
		 "x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:3: [credential:a] client_id: must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)\n"},
	    {CRED("a", GUID1) "authority = https://login.microsoftonline.com/contoso\n" ROUTE(
		 "x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] authority: must be https://HOST[:PORT] without a path (the tenant is added "
	     "from 'tenant')\n"},
	    {CRED("a", GUID1) "token_version = v3\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] token_version: must be one of: v2, v1\n"},
	    {CRED("a", GUID1) "auth_method = jwt\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] auth_method: must be one of: post, basic\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
	     "\nclient_secret_file = @DIR@/nope\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:4: [credential:a] client_secret_file: cannot read @DIR@/nope: No such file or directory\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
	     "\nclient_secret_file = @DIR@/empty\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:4: [credential:a] client_secret_file: @DIR@/empty is empty\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
	     "\nclient_secret_file = @DIR@\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:4: [credential:a] client_secret_file: @DIR@ is not a regular file\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
	     "\nclient_secret_env = S2S_TEST_UNSET\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:4: [credential:a] client_secret_env: environment variable S2S_TEST_UNSET is not set or empty\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
	     "\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:1: [credential:a] needs one of client_secret_file, client_secret_env, client_secret, "
	     "certificate_file, pfx_file, federated_token_file or managed_identity\n"},
	    {CRED("a", GUID1) "client_secret = abc\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] only one of client_secret_file, client_secret_env, client_secret, "
	     "certificate_file, pfx_file, federated_token_file and managed_identity may be set (also line 4)\n"},
	    {CRED("a", GUID1) "federated_token_file = @DIR@/secret\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] only one of client_secret_file, client_secret_env, client_secret, "
	     "certificate_file, pfx_file, federated_token_file and managed_identity may be set (also line 4)\n"},
	    {CRED("a", GUID1) "send_x5c = true\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:1: [credential:a] private_key_file, private_key_password_file, send_x5c and assertion_alg need "
	     "certificate_file or pfx_file\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1 "\npfx_file = @DIR@/secret\nprivate_key_file = "
	     "@DIR@/secret\nassertion_alg = ES256\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:6: [credential:a] assertion_alg: must be one of: PS256, RS256\n"
	     "t.ini:5: [credential:a] private_key_file: not with pfx_file (the key is inside the PKCS#12 file)\n"},
	    {"[credential:a]\ntenant = contoso.com\nclient_id = " GUID1 "\ncertificate_file = @DIR@/secret\n"
	     "auth_method = basic\n" ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:5: [credential:a] auth_method: basic needs a client secret\n"},
	    {CRED("a", GUID1) "token_version = v1\n" ROUTE(
		 "x", "/", "https://org.crm.dynamics.com") "scope = https://org.crm.dynamics.com/.default\n",
	     "t.ini:9: [route:x] scope: only for token_version = v2 ([credential:a] uses v1, which sends the audience "
	     "as 'resource')\n"},
	    {CRED("a", GUID1) CRED("b", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "credential = a\n",
	     "t.ini:5: [credential:b] same authority, tenant and client_id as [credential:a] on line 1\n"},
	    {CRED("a", GUID1) CRED("b", GUID2) ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:9: [route:x] credential: required key missing (there are 2 credentials)\n"},
	    {CRED("a", GUID1), "t.ini:0: no [route:...] section\n"},
	    {"[proxy]\nlisten = example.com:80\n" CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [proxy] listen: 'example.com' is not a numeric IPv4 address (names other than localhost are not "
	     "resolved)\n"},
	    {"[proxy]\nca_file = @DIR@/missing.pem\n" CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [proxy] ca_file: cannot read @DIR@/missing.pem: No such file or directory\n"},
	    {"[proxy]\nlog_level = verbose\n" CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [proxy] log_level: must be debug, info, warn or error\n"},
	    {"[proxy]\nworkers = 65\n" CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [proxy] workers: must be a number from 0 to 64\n"},
	};
	char want[1024];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		clear_env();
		char *w = expand(cases[i].want);
		snprintf(want, sizeof want, "%s", w);
		free(w);
		struct config *cfg = load(cases[i].ini);
		if (cfg || strcmp(errs, want) != 0)
			T_FAIL("case %zu: got \"%s\", want \"%s\"", i, errs, want);
	}
}

static void test_sections(void)
{
	clear_env();
	CHECK(load("[proxy]\n[foo]\nx = 1\n[proxy]\nlisten = 1\n" CRED("a", GUID1) CRED("a", GUID2) ROUTE(
		  "x", "/", "https://org.crm.dynamics.com") "[route:bad name]\n[route:]\n[proxy:x]\n") == NULL);
	CHECK_STR(
	    errs,
	    "t.ini:2: [foo] unknown section (expected [proxy], [credential:NAME], [route:NAME] or [caller:NAME])\n"
	    "t.ini:4: [proxy] duplicate section (first on line 1)\n"
	    "t.ini:10: [credential:a] duplicate section (first on line 6)\n"
	    "t.ini:17: [route:bad name] bad name: use 1 to 64 letters, digits, '_', '.' or '-'\n"
	    "t.ini:18: [route:] bad name: use 1 to 64 letters, digits, '_', '.' or '-'\n"
	    "t.ini:19: [proxy:x] unknown section (expected [proxy], [credential:NAME], [route:NAME] or "
	    "[caller:NAME])\n");
}

static void test_duplicate_routes(void)
{
	clear_env();
	CHECK(load(CRED("a", GUID1) ROUTE("x", "/p/", "https://org.crm.dynamics.com")
		       ROUTE("y", "/q/", "https://org.crm.dynamics.com") "match_host = a.example\n" ROUTE(
			   "z", "/p/", "https://org2.crm.dynamics.com")
			   ROUTE("w", "/q/", "https://org.crm.dynamics.com") "match_host = A.example\n") == NULL);
	CHECK_STR(errs, "t.ini:12: [route:z] same match_host and match_path as [route:x] on line 5\n"
			"t.ini:15: [route:w] same match_host and match_path as [route:y] on line 8\n");
}

/* Independent mistakes all show up in one run, each once. */
static void test_all_errors_in_one_pass(void)
{
	clear_env();
	CHECK(load("stray = 1\n"
		   "[proxy]\n"
		   "listen = ::1:80\n"
		   "buffer_size = 1k\n"
		   "client_timeout = 1500ms\n"
		   "no equals sign here\n"
		   "[credential:a]\n"
		   "tenant = organizations\n"
		   "client_id = x\n"
		   "[route:r1]\n"
		   "upstream = https://example.com\n"
		   "credential = b\n"
		   "[route:r2]\n"
		   "match_path = /\n"
		   "upstream = http://1.2.3.4\n"
		   "idle_timeout = 0\n") == NULL);
	CHECK_INT(n_errs, 13);
	CHECK_STR(errs,
		  "t.ini:1: stray: key outside of any section\n"
		  "t.ini:3: [proxy] listen: an IPv6 address needs brackets: [IPV6]:PORT\n"
		  "t.ini:4: [proxy] buffer_size: must be a size from 4k to 16m (bytes, or with a k or m suffix)\n"
		  "t.ini:5: [proxy] client_timeout: must be a whole number of seconds\n"
		  "t.ini:6: syntax error: expected 'key = value' or '[section]'\n"
		  "t.ini:8: [credential:a] tenant: 'organizations' is not allowed: client credentials need a "
		  "tenant-specific authority (AADSTS9001023); use the tenant GUID or a verified domain\n"
		  "t.ini:9: [credential:a] client_id: must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)\n"
		  "t.ini:15: [route:r2] upstream: http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, "
		  "localhost); use https://\n"
		  "t.ini:16: [route:r2] idle_timeout: must be from 1s to 24h\n"
		  "t.ini:7: [credential:a] needs one of client_secret_file, client_secret_env, client_secret, "
		  "certificate_file, pfx_file, federated_token_file or managed_identity\n"
		  "t.ini:13: [route:r2] same match_host and match_path as [route:r1] on line 10\n"
		  "t.ini:12: [route:r1] credential: no [credential:b] section\n"
		  "t.ini:10: [route:r1] audience: required key missing: cannot infer it from upstream host example.com "
		  "(set dataverse, bc, fo, securityservice or an https:// URL)\n");
}

static void test_durations_and_sizes(void)
{
	static const struct {
		const char *value;
		long ms; /* -1: rejected */
	} durations[] = {{"500ms", 500}, {"30s", 30000}, {"2m", 120000}, {"1h", 3600000}, {"7", 7000},
			 {"0", 0},       {"1.5s", -1},   {"-1", -1},     {"10 s", -1},    {"s", -1},
			 {"1d", -1},     {"25h", -1},    {"+5", -1},     {"0x10", -1}};
	static const struct {
		const char *value;
		long bytes;
	} sizes[] = {{"4096", 4096}, {"4k", 4096}, {"64K", 65536}, {"16m", 16777216}, {"2M", 2097152},
		     {"4095", -1},   {"17m", -1},  {"1g", -1},     {"4 k", -1},       {"k", -1}};
	char tmpl[512];

	clear_env();
	for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
		snprintf(tmpl, sizeof tmpl,
			 CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com") "timeout = %s\n",
			 durations[i].value);
		struct config *cfg = load(tmpl);
		if (durations[i].ms < 0) {
			if (cfg || n_errs != 1)
				T_FAIL("duration '%s' accepted", durations[i].value);
			continue;
		}
		if (!cfg)
			T_FAIL("duration '%s': %s", durations[i].value, errs);
		CHECK_INT(cfg->routes[0].total_timeout_ms, durations[i].ms);
		config_free(cfg);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		snprintf(tmpl, sizeof tmpl,
			 "[proxy]\nbuffer_size = %s\n" CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com"),
			 sizes[i].value);
		struct config *cfg = load(tmpl);
		if (sizes[i].bytes < 0) {
			if (cfg || n_errs != 1)
				T_FAIL("size '%s' accepted", sizes[i].value);
			continue;
		}
		if (!cfg)
			T_FAIL("size '%s': %s", sizes[i].value, errs);
		CHECK_INT(cfg->proxy.buffer_bytes, sizes[i].bytes);
		config_free(cfg);
	}
	/* soap_max_response: up to what the bridge's XML parser takes */
	static const char *const soap[] = {"64m", "65m"};
	for (size_t i = 0; i < 2; i++) {
		snprintf(tmpl, sizeof tmpl,
			 "[proxy]\nsoap_max_response = %s\n" CRED("a", GUID1)
			     ROUTE("r", "/", "https://o.crm.dynamics.com"),
			 soap[i]);
		struct config *sc = load(tmpl);
		CHECK(i == 0 ? sc != NULL && sc->proxy.soap_max_response == 64u << 20 : sc == NULL && n_errs == 1);
		config_free(sc);
	}
	/* whole seconds only in second fields */
	struct config *cfg =
	    load("[proxy]\nshutdown_timeout = 2000ms\n" CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com"));
	CHECK_STR(errs, "");
	CHECK_INT(cfg->proxy.shutdown_timeout_s, 2);
	config_free(cfg);
}

static void test_listen_variants(void)
{
	static const struct {
		const char *value, *host;
		long port; /* -1: rejected */
		bool warns;
	} cases[] = {
	    {"8080", "127.0.0.1", 8080, false},
	    {"0", "127.0.0.1", 0, false},
	    {"localhost:9000", "127.0.0.1", 9000, false},
	    {"127.0.0.2:1", "127.0.0.2", 1, false},
	    {"[::1]:8443", "::1", 8443, false},
	    {"0.0.0.0:80", "0.0.0.0", 80, true},
	    {"[::]:80", "::", 80, true},
	    {"10.1.2.3:8080", "10.1.2.3", 8080, true},
	    {"::1:80", NULL, -1, false},
	    {"example.com:80", NULL, -1, false},
	    {"127.0.0.1:65536", NULL, -1, false},
	    {"127.0.0.1", NULL, -1, false},
	    {"[::1]", NULL, -1, false},
	    {"[127.0.0.1]:80", NULL, -1, false},
	    {"127.0.0.1:", NULL, -1, false},
	};
	char tmpl[512];

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		clear_env();
		snprintf(tmpl, sizeof tmpl,
			 "[proxy]\nlisten = %s\n" CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com"),
			 cases[i].value);
		struct config *cfg = load(tmpl);
		const char *log = logged();
		if (cases[i].port < 0) {
			if (cfg || n_errs != 1 ||
			    strncmp(errs, "t.ini:2: [proxy] listen: ", strlen("t.ini:2: [proxy] listen: ")) != 0)
				T_FAIL("listen '%s': errors \"%s\"", cases[i].value, errs);
			continue;
		}
		if (!cfg)
			T_FAIL("listen '%s': %s", cases[i].value, errs);
		CHECK_STR(cfg->proxy.listen_host, cases[i].host);
		CHECK_INT(cfg->proxy.listen_port, cases[i].port);
		if (cases[i].warns != (strstr(log, "t.ini:2: listen = ") && strstr(log, "is not a loopback address")))
			T_FAIL("listen '%s': log \"%s\"", cases[i].value, log);
		config_free(cfg);
	}
}

static void test_connect_to(void)
{
	clear_env();
	struct config *cfg =
	    load("[proxy]\n"
		 "connect_to = login.microsoftonline.com:443:127.0.0.1:9443 , ::[::1]:8443\n"
		 "connect_to = :443:sim.local:\n" CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com"));
	CHECK_STR(errs, "");
	CHECK_INT(cfg->proxy.n_connect_to, 3);
	CHECK_STR(cfg->proxy.connect_to[0].entry, "login.microsoftonline.com:443:127.0.0.1:9443");
	CHECK_STR(cfg->proxy.connect_to[1].entry, "::[::1]:8443");
	CHECK_STR(cfg->proxy.connect_to[2].entry, ":443:sim.local:");
	config_free(cfg);
	for (const char *const *v = (const char *const[]){"a:443:b", "a:443:b:1:2", "a:x:b:1", "a:443:[zz]:1",
							  "a b:443:c:1", "a:443:b:1,,c:1:d:2", NULL};
	     *v; v++) {
		char tmpl[512];
		snprintf(tmpl, sizeof tmpl,
			 "[proxy]\nconnect_to = %s\n" CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com"),
			 *v);
		CHECK(load(tmpl) == NULL);
		CHECK_INT(n_errs, 1);
		CHECK(strncmp(errs, "t.ini:2: [proxy] connect_to: '", strlen("t.ini:2: [proxy] connect_to: '")) == 0);
		CHECK(strstr(errs, "' is not HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT\n") != NULL);
	}
}

static void test_secret_sources(void)
{
	clear_env();
	setenv("S2S_TEST_SECRET", "from-env", 1);
	struct config *cfg =
	    load("[credential:e]\ntenant = contoso.com\nclient_id = " GUID1 "\nclient_secret_env = S2S_TEST_SECRET\n"
		 "[credential:i]\ntenant = contoso.com\nclient_id = " GUID2
		 "\nclient_secret = p@ss;word ; trailing comment\n" ROUTE(
		     "r", "/",
		     "https://o.crm.dynamics.com") "credential = e\n" ROUTE("s", "/s/",
									    "https://o.crm.dynamics.com") "credential "
													  "= i\n");
	const char *log = logged();
	CHECK_STR(errs, "");
	CHECK_INT(cfg->credentials[0].secret_source, SECRET_ENV);
	CHECK_STR(cfg->credentials[0].client_secret_env, "S2S_TEST_SECRET");
	CHECK_STR(cfg->credentials[0].client_secret, "from-env");
	CHECK_INT(cfg->credentials[1].secret_source, SECRET_INLINE);
	CHECK_STR(cfg->credentials[1].client_secret, "p@ss;word"); /* " ;" starts an inline comment */
	CHECK(strstr(log, "t.ini:8: [credential:i] client_secret is written in the configuration file") != NULL);
	CHECK(strstr(log, "' ;' on that line started a comment") != NULL);
	CHECK(strstr(log, "p@ss") == NULL);
	config_free(cfg);
	unsetenv("S2S_TEST_SECRET");
}

static void test_unused_credential_and_fo_warnings(void)
{
	clear_env();
	struct config *cfg = load(CRED("a", GUID1) CRED("b", GUID2) ROUTE(
	    "fo", "/",
	    "https://env.operations.dynamics.com") "credential = a\naudience = https://Env.operations.dynamics.com/\n");
	const char *log = logged();
	CHECK_STR(errs, "");
	CHECK(strstr(log, "t.ini:5: [credential:b] is not used by any route") != NULL);
	CHECK(strstr(log, "t.ini:13: [route:fo] audience https://Env.operations.dynamics.com/: Finance and "
			  "Operations rejects") != NULL);
	/* the audience is used as written: the user asked for it */
	CHECK_STR(cfg->token_sources[0].resource, "https://Env.operations.dynamics.com/");
	config_free(cfg);
}

static void test_loopback_http_upstream(void)
{
	clear_env();
	struct config *cfg =
	    load(CRED("a", GUID1)
		     ROUTE("l", "/", "http://127.0.0.1:8081/base/") "audience = https://org.crm.dynamics.com\n" ROUTE(
			 "m", "/m/",
			 "http://[::1]") "audience = dataverse\n" ROUTE("n", "/n/",
									"HTTP://LocalHost:80") "audience = fo\n");
	CHECK_STR(errs, "");
	CHECK_STR(cfg->routes[0].upstream.scheme, "http");
	CHECK_STR(cfg->routes[0].upstream.origin, "http://127.0.0.1:8081");
	CHECK_STR(cfg->routes[0].upstream.path, "/base");
	CHECK_STR(cfg->routes[1].upstream.host, "::1");
	CHECK_STR(cfg->routes[1].upstream.origin, "http://[::1]");
	CHECK_INT(cfg->routes[1].upstream.port, 80);
	CHECK_STR(cfg->routes[2].upstream.origin, "http://localhost");
	CHECK_STR(cfg->token_sources[1].resource, "http://[::1]");
	config_free(cfg);
}

/* rewrite_urls, public_url (normalised: lowercase origin, no trailing
 * slash) and trusted_proxies; their refusals. */
static void test_rewrite_keys(void)
{
	clear_env();
	struct config *cfg = load(
	    "[proxy]\ntrusted_proxies = 10.0.0.0/8, fd00::/8\ntrusted_proxies = 192.0.2.1\n" CRED("a", GUID1)
		ROUTE("d", "/d/", "https://org.crm.dynamics.com")
		    ROUTE("o", "/o/", "https://org.crm.dynamics.com") "rewrite_urls = off\n" ROUTE(
			"p", "/p/", "https://org.crm.dynamics.com") "public_url = HTTPS://Api.Example.com:443/CRM/\n");
	CHECK_STR(errs, "");
	CHECK_INT(cfg->proxy.trusted_proxies.n, 3);
	CHECK_INT(cfg->routes[0].rewrite_urls, 0);
	CHECK(cfg->routes[0].public_url == NULL);
	CHECK_INT(cfg->routes[1].rewrite_urls, 1);
	CHECK_STR(cfg->routes[2].public_url, "https://api.example.com/CRM");
	config_free(cfg);
	static const struct {
		const char *ini, *want;
	} bad[] = {
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "rewrite_urls = on\n",
	     "t.ini:8: [route:x] rewrite_urls: must be one of: auto, off\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "public_url = api.example.com\n",
	     "t.ini:8: [route:x] public_url: must be an https:// URL\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "public_url = https://a.example/x?y=1\n",
	     "t.ini:8: [route:x] public_url: must not have a query or fragment\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://org.crm.dynamics.com") "public_url = https://a.example/x\"y\n",
	     "t.ini:8: [route:x] public_url: must be an http:// or https:// URL with a plain path\n"},
	    {CRED("a", GUID1) ROUTE("x", "/", "https://api.businesscentral.dynamics.com") "soap_bridge = true\n",
	     "t.ini:8: [route:x] soap_bridge: only for a Dataverse route (the Organization service); this route's "
	     "audience is https://api.businesscentral.dynamics.com\n"},
	    {"[proxy]\ntrusted_proxies = lb.internal\n" CRED("a", GUID1)
		 ROUTE("x", "/", "https://org.crm.dynamics.com"),
	     "t.ini:2: [proxy] trusted_proxies: 'lb.internal' is not an address or network (CIDR, e.g. 10.0.0.0/8 or "
	     "fd00::/8)\n"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cfg = load(bad[i].ini);
		CHECK(cfg == NULL);
		CHECK_STR(errs, bad[i].want);
	}
}

/* ---- inih edge cases ---- */

static void test_ini_lexing(void)
{
	clear_env();
	/* BOM, CRLF, indentation (no continuation lines), '#' and ';' comments, "key: value". */
	struct config *cfg = load("\xEF\xBB\xBF; comment\r\n"
				  "[credential:a]   ; comment after a header\r\n"
				  "    tenant = contoso.onmicrosoft.com\r\n"
				  "    client_id: " GUID1 "\r\n"
				  "# hash comment\n"
				  "\tclient_secret_file = @DIR@/secret ; inline comment\n"
				  "[ route:r ]\n"
				  "  upstream = https://o.crm.dynamics.com#frag-is-not-a-comment\n");
	CHECK(cfg == NULL);
	CHECK_STR(errs, "t.ini:8: [route:r] upstream: must not have a query or fragment\n");
	cfg = load("[credential:a]\n  tenant = contoso.com\n  client_id = " GUID1
		   "\n  client_secret_file = @DIR@/secret\n"
		   "[route:r]\n  upstream = https://o.crm.dynamics.com\n");
	CHECK_STR(errs, "");
	CHECK_STR(cfg->credentials[0].tenant, "contoso.com");
	CHECK_STR(cfg->credentials[0].client_id, GUID1);
	config_free(cfg);
}

static void test_ini_bad_lines(void)
{
	char tmpl[1024], longval[300];

	clear_env();
	memset(longval, 'x', 250);
	longval[250] = '\0';
	snprintf(tmpl, sizeof tmpl,
		 CRED("a", GUID1) ROUTE("r", "/", "https://o.crm.dynamics.com") "match_host = %s\n"
										"= value\n"
										"; %s\n"
										"[route:s\n"
										"upstream = https://ignored\n"
										"[route:t] trailing\n",
		 longval, longval);
	CHECK(load(tmpl) == NULL);
	CHECK_STR(errs, "t.ini:8: line too long (263 characters, at most 198)\n"
			"t.ini:9: [route:r] missing key name before '='\n"
			"t.ini:11: section header without ']'\n"
			"t.ini:13: unexpected text after ']'\n");
}

static void test_ini_nul_byte(void)
{
	static const char text[] = "[proxy]\nlisten = 80\0\n[route:r]\n";

	clear_env();
	CHECK(load_n(text, sizeof text - 1) == NULL);
	CHECK_STR(errs, "t.ini:2: line contains a NUL byte\n"
			"t.ini:3: [route:r] upstream: required key missing\n"
			"t.ini:3: [route:r] credential: required key missing: no [credential:NAME] section and no "
			"AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET in the environment\n");
}

static void test_limits(void)
{
	size_t cap = 300 * 80;
	char *tmpl = malloc(cap);
	size_t n = 0;

	clear_env();
	n += (size_t)snprintf(tmpl + n, cap - n, CRED("a", GUID1));
	for (int i = 0; i < CONFIG_MAX_ROUTES + 1; i++)
		n += (size_t)snprintf(tmpl + n, cap - n,
				      "[route:r%d]\nmatch_path = /%d/\nupstream = https://o.crm.dynamics.com\n", i, i);
	CHECK(load(tmpl) == NULL);
	CHECK_INT(n_errs, 1);
	CHECK_STR(errs, "t.ini:773: [route:r256] too many route sections (at most 256)\n");
	free(tmpl);
}

/* Service protection keys: [proxy] defaults, route overrides, auto concurrency. */
static void test_throttle_keys(void)
{
	clear_env();
	struct config *cfg = load(CRED("a", GUID1) ROUTE("dv", "/dv/", "https://o.crm4.dynamics.com")
				      ROUTE("bc", "/bc/", "https://api.businesscentral.dynamics.com"));
	CHECK(cfg != NULL);
	const struct throttle_cfg *t = &cfg->routes[0].throttle;
	CHECK_INT(t->queue, 1000);
	CHECK_INT(t->wait_ms, 60000);
	CHECK_INT(t->max_wait_ms, 300000);
	CHECK_INT(t->retries, 3);
	CHECK_INT(t->max_concurrent, 52);                     /* auto on a Dataverse route */
	CHECK_INT(cfg->routes[1].throttle.max_concurrent, 0); /* auto elsewhere: off */
	config_free(cfg);

	cfg =
	    load("[proxy]\nthrottle_queue = 10\nthrottle_wait = 5s\nthrottle_max_wait = 30s\nthrottle_retries = 0\n"
		 "max_concurrent = 8\n" CRED("a", GUID1) ROUTE("dv", "/dv/", "https://o.crm4.dynamics.com")
		     ROUTE("bc", "/bc/",
			   "https://api.businesscentral.dynamics.com") "throttle_wait = 0\n"
								       "max_concurrent = off\nthrottle_retries = 5\n");
	CHECK_STR(errs, "");
	CHECK(cfg != NULL);
	t = &cfg->routes[0].throttle;
	CHECK_INT(t->queue, 10);
	CHECK_INT(t->wait_ms, 5000);
	CHECK_INT(t->max_wait_ms, 30000);
	CHECK_INT(t->retries, 0);
	CHECK_INT(t->max_concurrent, 8);
	t = &cfg->routes[1].throttle;
	CHECK_INT(t->queue, 10);
	CHECK_INT(t->wait_ms, 0);
	CHECK_INT(t->retries, 5);
	CHECK_INT(t->max_concurrent, 0);
	config_free(cfg);

	CHECK(load(CRED("a", GUID1)
		       ROUTE("dv", "/dv/", "https://o.crm4.dynamics.com") "max_concurrent = many\n"
									  "throttle_max_wait = 0\n") == NULL);
	CHECK_STR(errs, "t.ini:8: [route:dv] max_concurrent: must be auto, off or a number from 1 to 100000\n"
			"t.ini:9: [route:dv] throttle_max_wait: must be from 1s to 1h\n");
}

/* ---- files ---- */

static void test_config_load_file(void)
{
	char path[128], *buf = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&buf, &len);

	clear_env();
	snprintf(path, sizeof path, "%s/missing.ini", dir);
	CHECK(config_load(path, err) == NULL);
	fflush(err);
	CHECK(strstr(buf, "/missing.ini:0: cannot open: No such file or directory\n") != NULL);
	fclose(err);
	free(buf);
	CHECK(config_load(path, NULL) == NULL);

	/* A world-readable file with an inline secret gets a warning. */
	char *text = expand("[credential:a]\ntenant = contoso.com\nclient_id = " GUID1
			    "\nclient_secret = x\n" ROUTE("r", "/", "https://o.crm.dynamics.com"));
	write_file("world.ini", text);
	free(text);
	snprintf(path, sizeof path, "%s/world.ini", dir);
	chmod(path, 0644);
	struct config *cfg = config_load(path, stderr);
	CHECK(cfg != NULL);
	CHECK(strstr(logged(), "world.ini:0: the file holds an inline client_secret and is readable by every user") !=
	      NULL);
	config_free(cfg);
}

/* The shipped example loads once its /run/secrets paths point at real files. */
static void test_example_file(void)
{
	FILE *f = fopen("config/s2s-proxy.ini", "r");
	char *text = NULL, *out;
	size_t len = 0, n = 0;

	clear_env();
	if (!f)
		T_FAIL("config/s2s-proxy.ini not found (run from the repository root)");
	text = calloc(1, 65536);
	len = fread(text, 1, 65535, f);
	fclose(f);
	out = calloc(1, 2 * len + 1024);
	for (const char *p = text; *p;) {
		if (strncmp(p, "/run/secrets/", 13) == 0) {
			memcpy(out + n, "@DIR@/secret", 12);
			n += 12;
			p += strcspn(p, " \t\n");
		} else {
			out[n++] = *p++;
		}
	}
	struct config *cfg = load(out);
	free(text);
	free(out);
	CHECK_STR(errs, "");
	CHECK_INT(cfg->n_routes, 3);
	CHECK_INT(cfg->routes[0].audience_kind, AUD_DATAVERSE);
	CHECK_INT(cfg->routes[1].audience_kind, AUD_BC);
	CHECK_INT(cfg->routes[2].audience_kind, AUD_FO);
	CHECK_STR(cfg->token_sources[cfg->routes[1].token_source].scope,
		  "https://api.businesscentral.dynamics.com/.default");
	CHECK(cfg->proxy.listen_host && strcmp(cfg->proxy.listen_host, "127.0.0.1") == 0);
	config_free(cfg);
}

static void test_misc(void)
{
	config_free(NULL);
	CHECK_STR(config_audience_name(AUD_DATAVERSE), "dataverse");
	CHECK_STR(config_audience_name(AUD_BC), "bc");
	CHECK_STR(config_audience_name(AUD_FO), "fo");
	CHECK_STR(config_audience_name(AUD_SECURITYSERVICE), "securityservice");
	CHECK_STR(config_audience_name(AUD_URL), "url");
	CHECK_STR(config_audience_name((enum audience_kind)99), "unknown");
}

int main(void)
{
	char logpath[96];

	snprintf(dir, sizeof dir, "/tmp/test_config.XXXXXX");
	if (!mkdtemp(dir))
		return 2;
	write_file("secret", "s3cr3t\n");
	write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
	write_file("empty", " \n");
	snprintf(logpath, sizeof logpath, "%s/log", dir);
	log_fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (log_fd < 0)
		return 2;
	log_setup(LOG_DEBUG, LOG_FMT_TEXT, log_fd);

	RUN(test_minimal_defaults);
	RUN(test_all_keys);
	RUN(test_audiences_v2);
	RUN(test_audiences_v1);
	RUN(test_audience_presets_explicit);
	RUN(test_audience_inference);
	RUN(test_scope_override_and_sharing);
	RUN(test_env_only_default);
	RUN(test_env_fills_file_default);
	RUN(test_env_partial_is_ignored);
	RUN(test_certificate_and_federated_keys);
	RUN(test_env_federated_default);
	RUN(test_managed_identity);
	RUN(test_error_strings);
	RUN(test_sections);
	RUN(test_duplicate_routes);
	RUN(test_all_errors_in_one_pass);
	RUN(test_durations_and_sizes);
	RUN(test_listen_variants);
	RUN(test_connect_to);
	RUN(test_secret_sources);
	RUN(test_unused_credential_and_fo_warnings);
	RUN(test_loopback_http_upstream);
	RUN(test_rewrite_keys);
	RUN(test_ini_lexing);
	RUN(test_ini_bad_lines);
	RUN(test_ini_nul_byte);
	RUN(test_limits);
	RUN(test_throttle_keys);
	RUN(test_config_load_file);
	RUN(test_example_file);
	RUN(test_misc);

	close(log_fd);
	for (const char *f = "secret\0ca.pem\0empty\0log\0world.ini\0"; *f; f += strlen(f) + 1) {
		char p[128];
		snprintf(p, sizeof p, "%s/%s", dir, f);
		unlink(p);
	}
	rmdir(dir);
	return T_DONE();
}
