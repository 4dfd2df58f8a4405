/*
 * check.c - the `check` subcommand.
 *
 * Per token source (shared by routes like in the engine) one token request,
 * built by cred.c exactly as the engine builds it; per route one probe:
 *   Dataverse        GET <upstream>/api/data/v9.2/WhoAmI
 *   Business Central GET <upstream>/v2.0/<tenant>/production/api/v2.0/companies
 *                    (or <upstream path>/companies when the route has a path)
 *   F&O, other       GET <upstream>/data/$metadata, <upstream>/ for URLs
 * Probe bodies are read up to CHECK_BODY_MAX (diagnoses need only the head
 * of an error body; $metadata is large and is cut off there).
 *
 * Secrets: the token request material and the access token live only in
 * this file's buffers and are wiped after use; output shows claims and the
 * fingerprint only.
 */
#include "ops/check.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "http/challenge.h"
#include "config/config.h"
#include "token/cred.h"
#include "diag/diag.h"
#include "token/jwt.h"
#include "util/log.h"
#include "util/slist.h"
#include "util/wipe.h"
#include "token/mi.h"
#include "token/oauth.h"
#include "tls/tlsca.h"

#define CHECK_BODY_MAX (64 * 1024)
#define URL_CAP        4096

struct fetch {
	long status;
	char *body; /* CHECK_BODY_MAX + 1 bytes, owned */
	size_t len;
	bool cut; /* more body than CHECK_BODY_MAX: transfer stopped there */
	char www_auth[512];
	char burst[32], time_left[32]; /* Dataverse's x-ms-ratelimit-* budget headers, "" when absent */
	char err[CURL_ERROR_SIZE];
	CURLcode rc;
};

/* What a token source yielded; shared by its routes. */
struct src_result {
	bool done, ok;
	char *hdr; /* "Authorization: Bearer <token>", owned, wiped on free */
	struct jwt_claims claims;
	char fp[JWT_FINGERPRINT_LEN];
	struct token_failure fail;
};

/* One route's verdict, printed as text or JSON. */
struct verdict {
	const struct route_cfg *route;
	const struct src_result *tok;
	struct diagnosis d; /* d.code NULL = OK */
	char note[512];
	char probe_url[URL_CAP];
	long probe_status;
	char burst[32], time_left[32]; /* the probe's budget headers */
	struct upstream_evidence ev;
	bool have_ev;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct fetch *f = ud;
	size_t n = size * nmemb, room = CHECK_BODY_MAX - f->len;
	if (n > room) {
		memcpy(f->body + f->len, data, room);
		f->len += room;
		f->cut = true;
		return 0; /* stop: enough to diagnose */
	}
	memcpy(f->body + f->len, data, n);
	f->len += n;
	return n;
}

/* When line is the header `name` (with its colon), its trimmed value into out. */
static void head_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
	size_t s = strlen(name), e = n;
	if (n <= s || strncasecmp(line, name, s) != 0)
		return;
	while (s < e && (line[s] == ' ' || line[s] == '\t'))
		s++;
	while (e > s && (line[e - 1] == '\r' || line[e - 1] == '\n' || line[e - 1] == ' '))
		e--;
	snprintf(out, cap, "%.*s", (int)(e - s), line + s);
}

static size_t on_head(char *line, size_t size, size_t nmemb, void *ud)
{
	struct fetch *f = ud;
	size_t n = size * nmemb;
	if (n > 17 && strncasecmp(line, "WWW-Authenticate:", 17) == 0) {
		size_t s = 17, e = n;
		while (s < e && (line[s] == ' ' || line[s] == '\t'))
			s++;
		while (e > s && (line[e - 1] == '\r' || line[e - 1] == '\n' || line[e - 1] == ' '))
			e--;
		snprintf(f->www_auth, sizeof f->www_auth, "%.*s", (int)(e - s), line + s);
	}
	head_value(line, n, "x-ms-ratelimit-burst-remaining-xrm-requests:", f->burst, sizeof f->burst);
	head_value(line, n, "x-ms-ratelimit-time-remaining-xrm-requests:", f->time_left, sizeof f->time_left);
	if (n > 5 && strncmp(line, "HTTP/", 5) == 0)
		f->www_auth[0] = f->burst[0] = f->time_left[0] = '\0'; /* a new response (after 1xx) */
	return n;
}

/*
 * One blocking request. `post` is the form body (NULL: GET); `hl` the
 * request headers (borrowed). Returns 0 when an HTTP answer arrived.
 */
static int fetch_run(const struct config *cfg, struct curl_slist *connect_to, const char *url, const char *post,
		     long post_len, struct curl_slist *hl, struct fetch *f)
{
	CURL *h = curl_easy_init();
	int ret = -1;

	f->rc = CURLE_FAILED_INIT;
	if (!h)
		return -1;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_head);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->proxy.token_timeout_ms > 0 ? cfg->proxy.token_timeout_ms : 30000L);
	if (connect_to)
		curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
	if (post) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, post_len);
	}
	tlsca_apply(h);
	f->rc = curl_easy_perform(h);
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f->status) != CURLE_OK)
		f->status = 0;
	if (f->rc == CURLE_OK || (f->rc == CURLE_WRITE_ERROR && f->cut))
		ret = f->status >= 100 ? 0 : -1;
	if (ret < 0 && !f->err[0])
		snprintf(f->err, sizeof f->err, "%s", curl_easy_strerror(f->rc));
	curl_easy_cleanup(h);
	return ret;
}

static void fetch_reset(struct fetch *f)
{
	char *body = f->body;
	if (body)
		explicit_bzero(body, f->len); /* may have held a token */
	memset(f, 0, sizeof *f);
	f->body = body;
}

static void local_fail(struct token_failure *tf, enum token_failure_kind kind, const char *why)
{
	memset(tf, 0, sizeof *tf);
	tf->kind = kind;
	snprintf(tf->detail, sizeof tf->detail, "%s", why);
}

/* Classify a token endpoint answer like the engine does (token.c). */
static void token_answer(struct src_result *sr, struct fetch *f)
{
	struct oauth_token tok = {0};
	enum oauth_result r =
	    oauth_parse_response(f->status, f->body, f->len, (long long)time(NULL), &tok, &sr->fail.err);
	sr->fail.http_status = f->status;
	if (r == OAUTH_OK) {
		size_t n = strlen(tok.access_token), cap = n + 32;
		sr->hdr = malloc(cap);
		if (sr->hdr) {
			snprintf(sr->hdr, cap, "Authorization: Bearer %s", tok.access_token);
			if (jwt_decode_claims(tok.access_token, n, &sr->claims) < 0)
				memset(&sr->claims, 0, sizeof sr->claims);
			jwt_fingerprint(tok.access_token, n, sr->fp);
			sr->ok = true;
		} else {
			local_fail(&sr->fail, TF_LOCAL, "out of memory");
		}
	} else if (r == OAUTH_REJECTED) {
		sr->fail.kind = TF_REJECTED;
	} else if (r == OAUTH_TRANSIENT) {
		sr->fail.kind = f->status == 429 ? TF_THROTTLED : TF_SERVER_ERROR;
	} else {
		sr->fail.kind = TF_BAD_RESPONSE;
	}
	oauth_token_clear(&tok);
}

/* A managed identity: a GET to IMDS / App Service built by mi.c. */
static void acquire_mi(const struct config *cfg, struct curl_slist *ct, const struct token_source_cfg *ts,
		       struct src_result *sr, struct fetch *f)
{
	const struct credential_cfg *c = &cfg->credentials[ts->credential];
	struct curl_slist *hl = NULL;
	char why[256] = "";
	char *url = mi_url(c, ts->resource);

	if (!url || mi_headers(c, &hl, why, sizeof why) != 0)
		local_fail(&sr->fail, TF_LOCAL, url ? why : "out of memory");
	else if (fetch_run(cfg, ct, url, NULL, 0, hl, f) < 0)
		local_fail(&sr->fail, TF_UNREACHABLE, f->err);
	else
		token_answer(sr, f);
	wipe_slist_free(hl);
	free(url);
	fetch_reset(f);
}

static void acquire(const struct config *cfg, struct curl_slist *ct, size_t si, struct src_result *sr, struct fetch *f)
{
	const struct token_source_cfg *ts = &cfg->token_sources[si];
	struct cred_material m = {0};
	struct curl_slist *hl = NULL;
	char why[256] = "";
	struct cred *cr;

	sr->done = true;
	fetch_reset(f);
	if (cfg->credentials[ts->credential].kind == CRED_MANAGED_IDENTITY) {
		acquire_mi(cfg, ct, ts, sr, f);
		return;
	}
	cr = cred_new(&cfg->credentials[ts->credential], why, sizeof why);
	if (!cr) {
		local_fail(&sr->fail, TF_LOCAL, why);
		return;
	}
	if (cred_material(cr, ts->token_endpoint, ts->scope ? ts->scope : ts->resource, (long long)time(NULL), &m, why,
			  sizeof why) < 0)
		local_fail(&sr->fail, TF_LOCAL, why);
	else if ((m.basic && !slist_add(&hl, m.basic)) ||
		 !slist_add(&hl, "Content-Type: application/x-www-form-urlencoded"))
		local_fail(&sr->fail, TF_LOCAL, "out of memory");
	else if (fetch_run(cfg, ct, ts->token_endpoint, m.form, m.form_len, hl, f) < 0)
		local_fail(&sr->fail, TF_UNREACHABLE, f->err);
	else
		token_answer(sr, f);
	wipe_slist_free(hl);
	cred_material_wipe(&m);
	cred_free(cr);
	fetch_reset(f);
}

/* The probe URL of a route (see the file comment). */
static void probe_url(const struct config *cfg, const struct route_cfg *r, char *out, size_t cap)
{
	const struct url *u = &r->upstream;
	const char *tenant = cfg->credentials[r->credential].tenant;
	if (!tenant)
		tenant = "common"; /* managed identity: no tenant configured; BC resolves it from the token */
	if (r->probe_path) {
		snprintf(out, cap, "%s%s%s", u->origin, u->path, r->probe_path);
		return;
	}
	switch (r->audience_kind) {
	case AUD_DATAVERSE:
		snprintf(out, cap, "%s%s/api/data/v9.2/WhoAmI", u->origin, u->path);
		break;
	case AUD_BC:
		if (u->path[0])
			snprintf(out, cap, "%s%s/companies", u->origin, u->path);
		else
			snprintf(out, cap, "%s/v2.0/%s/production/api/v2.0/companies", u->origin, tenant);
		break;
	case AUD_FO:
	case AUD_SECURITYSERVICE:
		snprintf(out, cap, "%s%s/data/$metadata", u->origin, u->path);
		break;
	default:
		snprintf(out, cap, "%s%s/", u->origin, u->path);
		break;
	}
}

static bool same_url(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	while (la && a[la - 1] == '/')
		la--;
	while (lb && b[lb - 1] == '/')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* aud/tid against the route: a sentence for the verdict, "" when they match. */
static void compare_claims(const struct config *cfg, const struct route_cfg *r, const struct jwt_claims *c, char *out,
			   size_t cap)
{
	const struct token_source_cfg *ts = &cfg->token_sources[r->token_source];
	const char *tenant = cfg->credentials[ts->credential].tenant;
	char aud_host[256];
	size_t o = 0;

	out[0] = '\0';
	challenge_url_host(c->aud, aud_host, sizeof aud_host);
	if (c->aud[0] && !same_url(c->aud, ts->resource))
		o += (size_t)snprintf(out, cap, "token aud %s is not the route's audience %s. ", c->aud, ts->resource);
	if (o < cap && c->aud[0] && r->audience_kind != AUD_SECURITYSERVICE && aud_host[0] &&
	    strcasecmp(aud_host, r->upstream.host) != 0 && !strstr(r->upstream.host, ".api."))
		o += (size_t)snprintf(out + o, cap - o, "token aud host %s differs from the upstream host %s. ",
				      aud_host, r->upstream.host);
	if (o < cap && c->tid[0] && tenant && strlen(tenant) == 36 && strcasecmp(c->tid, tenant) != 0)
		snprintf(out + o, cap - o, "token tid %s is not the configured tenant %s. ", c->tid, tenant);
}

static void probe(const struct config *cfg, struct curl_slist *ct, const struct src_result *sr, struct verdict *v,
		  struct fetch *f)
{
	const struct route_cfg *r = v->route;
	probe_url(cfg, r, v->probe_url, sizeof v->probe_url);
	fetch_reset(f);
	struct curl_slist *hl = NULL;
	int got = -1;
	if (slist_add(&hl, sr->hdr) && slist_add(&hl, "Accept: application/json"))
		got = fetch_run(cfg, ct, v->probe_url, NULL, 0, hl, f);
	else
		snprintf(f->err, sizeof f->err, "out of memory");
	wipe_slist_free(hl);
	if (got < 0) {
		static const struct diagnosis unreachable = {502, "upstream_unavailable",
							     "The upstream could not be reached",
							     "Check DNS, firewall and TLS trust from this host to the "
							     "upstream (and connect_to entries).",
							     false};
		v->d = unreachable;
		snprintf(v->note, sizeof v->note, "%s", f->err);
		return;
	}
	v->probe_status = f->status;
	memcpy(v->burst, f->burst, sizeof v->burst);
	memcpy(v->time_left, f->time_left, sizeof v->time_left);
	if (f->status >= 200 && f->status < 300)
		return;
	v->have_ev = true;
	if (diag_upstream(r->audience_kind, r->upstream.host, f->status, f->body, f->len,
			  f->www_auth[0] ? f->www_auth : NULL, sr->claims.aud, &v->ev, &v->d))
		return;
	static const struct diagnosis other = {502, "probe_failed", "The probe did not succeed",
					       "See the upstream status and message.", false};
	v->d = other;
}

static void check_route(const struct config *cfg, struct curl_slist *ct, struct src_result *srcs, size_t i,
			struct verdict *v, struct fetch *f)
{
	const struct route_cfg *r = &cfg->routes[i];
	struct src_result *sr = &srcs[r->token_source];
	const struct token_source_cfg *ts = &cfg->token_sources[r->token_source];
	const struct credential_cfg *cr = &cfg->credentials[ts->credential];

	memset(v, 0, sizeof *v);
	v->route = r;
	v->tok = sr;
	if (!sr->done)
		acquire(cfg, ct, r->token_source, sr, f);
	if (!sr->ok) {
		struct diag_context ctx = {cr->client_id, cr->tenant, ts->resource, r->audience_kind};
		diag_token_failure(&sr->fail, &v->d);
		diag_token_note(&sr->fail, &ctx, v->note, sizeof v->note);
		return;
	}
	char cmp[400];
	compare_claims(cfg, r, &sr->claims, cmp, sizeof cmp);
	probe(cfg, ct, sr, v, f);
	if (cmp[0]) {
		size_t n = strlen(v->note);
		snprintf(v->note + n, sizeof v->note - n, "%s%s", n ? " " : "", cmp);
	}
}

/* ---- output ----------------------------------------------------------------- */

static void print_text(FILE *out, const struct verdict *v)
{
	const struct src_result *sr = v->tok;
	const struct oauth_error *e = &sr->fail.err;
	const char *name = v->route->name;

	if (sr->ok)
		fprintf(out, "route %s: token aud=%s tid=%s appid=%s roles=%s exp=%lld fingerprint=%s\n", name,
			sr->claims.aud, sr->claims.tid, sr->claims.appid, sr->claims.roles[0] ? sr->claims.roles : "-",
			sr->claims.exp, sr->fp);
	if (v->burst[0] || v->time_left[0]) /* Dataverse's service protection budget, as the probe saw it */
		fprintf(out, "route %s: budget burst-remaining=%s time-remaining=%s\n", name,
			v->burst[0] ? v->burst : "-", v->time_left[0] ? v->time_left : "-");
	if (!v->d.code) {
		fprintf(out, "OK   %s: GET %s -> %ld%s%s\n", name, v->probe_url, v->probe_status,
			v->note[0] ? "; " : "", v->note);
		return;
	}
	fprintf(out, "FAIL %s: %s: %s.", name, v->d.code, v->d.title);
	if (!sr->ok && e->n_codes > 0)
		fprintf(out, " [AADSTS%ld error=%s trace_id=%s correlation_id=%s]", e->codes[0], e->error, e->trace_id,
			e->correlation_id);
	else if (!sr->ok && sr->fail.detail[0])
		fprintf(out, " [%s]", sr->fail.detail);
	if (v->have_ev)
		fprintf(out, " [GET %s -> %ld%s%s%s%s]", v->probe_url, v->ev.status, v->ev.error_code[0] ? " " : "",
			v->ev.error_code, v->ev.message[0] ? ": " : "", v->ev.message);
	if (v->d.remediation)
		fprintf(out, " Fix: %s", v->d.remediation);
	if (v->note[0])
		fprintf(out, " Note: %s", v->note);
	fputc('\n', out);
}

static void jstr(cJSON *o, const char *k, const char *v)
{
	if (v && v[0])
		cJSON_AddStringToObject(o, k, v);
}

static cJSON *verdict_json(const struct verdict *v)
{
	const struct src_result *sr = v->tok;
	const struct oauth_error *e = &sr->fail.err;
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	jstr(o, "route", v->route->name);
	jstr(o, "verdict", v->d.code ? "fail" : "ok");
	jstr(o, "diagnosis", v->d.code);
	jstr(o, "title", v->d.title);
	jstr(o, "remediation", v->d.remediation);
	jstr(o, "note", v->note);
	if (sr->ok) {
		cJSON *c = cJSON_AddObjectToObject(o, "claims");
		if (c) {
			jstr(c, "aud", sr->claims.aud);
			jstr(c, "tid", sr->claims.tid);
			jstr(c, "appid", sr->claims.appid);
			jstr(c, "roles", sr->claims.roles);
			cJSON_AddNumberToObject(c, "exp", (double)sr->claims.exp);
		}
		jstr(o, "token_fingerprint", sr->fp);
	} else {
		if (e->n_codes > 0)
			cJSON_AddNumberToObject(o, "aadsts", (double)e->codes[0]);
		jstr(o, "error", e->error);
		jstr(o, "trace_id", e->trace_id);
		jstr(o, "correlation_id", e->correlation_id);
		jstr(o, "error_uri", e->error_uri);
		jstr(o, "detail", sr->fail.detail);
		if (sr->fail.http_status)
			cJSON_AddNumberToObject(o, "idp_status", (double)sr->fail.http_status);
	}
	jstr(o, "probe_url", v->probe_url);
	if (v->probe_status)
		cJSON_AddNumberToObject(o, "probe_status", (double)v->probe_status);
	jstr(o, "ratelimit_burst_remaining", v->burst);
	jstr(o, "ratelimit_time_remaining", v->time_left);
	if (v->have_ev) {
		jstr(o, "upstream_error", v->ev.error_code);
		jstr(o, "upstream_message", v->ev.message);
		jstr(o, "challenge", v->ev.challenge);
	}
	return o;
}

/* ---- command ------------------------------------------------------------------ */

static struct curl_slist *connect_list(const struct config *cfg)
{
	struct curl_slist *l = NULL;
	for (size_t i = 0; i < cfg->proxy.n_connect_to; i++) {
		if (!slist_add(&l, cfg->proxy.connect_to[i].entry)) {
			curl_slist_free_all(l);
			return NULL;
		}
	}
	return l;
}

static void free_sources(struct src_result *srcs, size_t n)
{
	for (size_t i = 0; srcs && i < n; i++)
		wipe_free_str(srcs[i].hdr);
	free(srcs);
}

/* Check every route; print as we go (text) or at the end (JSON). */
static int run_checks(const struct config *cfg, bool json)
{
	struct src_result *srcs = calloc(cfg->n_token_sources ? cfg->n_token_sources : 1, sizeof *srcs);
	struct fetch f = {.body = malloc(CHECK_BODY_MAX + 1)};
	struct curl_slist *ct = connect_list(cfg);
	cJSON *arr = json ? cJSON_CreateArray() : NULL;
	struct verdict v;
	int failed = 0, rc = 2;

	if (!srcs || !f.body || (cfg->proxy.n_connect_to && !ct) || (json && !arr))
		goto done;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		check_route(cfg, ct, srcs, i, &v, &f);
		failed += v.d.code != NULL;
		if (!json)
			print_text(stdout, &v);
		else if (!cJSON_AddItemToArray(arr, verdict_json(&v)))
			goto done;
	}
	if (json) {
		cJSON *root = cJSON_CreateObject();
		char *s = NULL;
		if (root && cJSON_AddBoolToObject(root, "ok", failed == 0) &&
		    cJSON_AddItemToObject(root, "routes", arr)) {
			arr = NULL; /* owned by root now */
			s = cJSON_PrintUnformatted(root);
		}
		if (s)
			printf("%s\n", s);
		free(s);
		cJSON_Delete(root);
		if (!s)
			goto done;
	} else {
		printf("%zu of %zu routes OK\n", cfg->n_routes - (size_t)failed, cfg->n_routes);
	}
	rc = failed ? 1 : 0;
done:
	if (rc == 2)
		fprintf(stderr, "s2s-proxy check: out of memory\n");
	cJSON_Delete(arr);
	curl_slist_free_all(ct);
	fetch_reset(&f);
	free(f.body);
	free_sources(srcs, cfg->n_token_sources);
	return rc;
}

int check_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool json = false;
	int opt, rc;
	char err[256];

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:j", longopts, NULL)) != -1) {
		if (opt == 'c') {
			path = optarg;
		} else if (opt == 'j') {
			json = true;
		} else {
			path = NULL; /* unknown option: usage */
			break;
		}
	}
	if (!path || optind != argc) {
		fprintf(stderr, "usage: s2s-proxy check [--json] -c FILE\n");
		return 2;
	}
	log_setup(LOG_ERROR, LOG_FMT_TEXT, 2); /* the verdicts are the output */
	struct config *cfg = config_load(path, stderr);
	if (!cfg)
		return 2;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		config_free(cfg);
		return 2;
	}
	rc = 2;
	tlsca_system_init();
	if (cfg->proxy.ca_file && tlsca_load(cfg->proxy.ca_file, err, sizeof err) < 0)
		fprintf(stderr, "%s: ca_file: %s\n", path, err);
	else
		rc = run_checks(cfg, json);
	tlsca_free();
	curl_global_cleanup();
	config_free(cfg);
	return rc;
}
