/*
 * token.c - the token engine (internals.md section 3, Threads and ownership).
 *
 * One thread, started by token_engine_start(), is the only code that talks
 * to the token endpoint. It owns a curl multi handle and one easy handle per
 * token source (kept for the engine's lifetime, so keep-alive to the IdP
 * survives between refreshes); sources fetch in parallel. Between transfers
 * the thread sleeps in curl_multi_poll() until the earliest due time of any
 * source; token_request_refresh() and shutdown wake it with
 * curl_multi_wakeup(), the only curl call made from another thread.
 *
 * Each source publishes its state under its own mutex: the header line
 * "Authorization: Bearer <token>", its generation, the instant after which
 * it must not be used, and the last failure since the last success. Workers
 * copy from there in token_lookup() and never wait for the IdP.
 *
 * Secrets: the proof of identity (cred.c: a client secret re-read from its
 * file, a freshly signed client assertion or a re-read federated token), the
 * form body and the Basic header exist only while a request is in flight and
 * are wiped afterwards; private keys stay in assertion.c; tokens are wiped
 * when replaced or freed. None of them is ever logged: token_acquired logs
 * decoded claims and a fingerprint.
 */
#include "token/token.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "token/cred.h"
#include "token/mi.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/slist.h"
#include "util/wipe.h"
#include "tls/tlsca.h"
#include "token/token_int.h"

#ifndef S2S_VERSION
#define S2S_VERSION "0.0.0"
#endif

/* The metrics' hooks (token_set_observer): set once before any engine runs. */
static const struct token_observer *observer;

void token_set_observer(const struct token_observer *obs)
{
	observer = obs;
}

/* ---- small helpers -------------------------------------------------------- */

/* The engine's clock is clock_now_ms (util/clock.h): every time it keeps
 * (refresh due, usable until, retry at) is a deadline, so it is monotonic:
 * a step of the system clock neither expires every token at once nor
 * postpones a refresh past the token's real end. Lifetimes arrive relative
 * (expires_in), or absolute (expires_on) and are then converted with
 * wall_s() at arrival. */

/* Wall-clock seconds: only for times shared with the outside (an
 * assertion's iat/exp, expires_on, certificate notAfter). */
static long long wall_s(void)
{
	return (long long)time(NULL);
}

/* Uniform in [0,1) from the OpenSSL CSPRNG; 0.5 if it fails (never fatal). */
static double rand01(void)
{
	uint64_t v;

	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		return 0.5;
	return (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

/* A random RFC 4122 version 4 UUID, lowercase. */
static void uuid_v4(char out[40])
{
	unsigned char b[16];
	size_t i;

	if (RAND_bytes(b, sizeof(b)) != 1) {
		long long t = clock_now_ms() ^ (wall_s() << 20);

		memset(b, 0, sizeof(b));
		memcpy(b, &t, sizeof(t));
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++)
		snprintf(out + 2 * i + (i >= 4) + (i >= 6) + (i >= 8) + (i >= 10), 3, "%02x", b[i]);
	out[8] = out[13] = out[18] = out[23] = '-';
	out[36] = '\0';
}

/* Host[:port] of an absolute URL, for logs. */
static void url_host(const char *url, char *out, size_t cap)
{
	const char *p = url ? strstr(url, "://") : NULL;
	size_t n;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += 3;
	n = strcspn(p, "/?#");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* ---- state changes (engine thread) ------------------------------------- */

static void notify(struct token_engine *te)
{
	if (te->notify != NULL)
		te->notify(te->notify_arg);
}

/* Publish a failure and schedule the next attempt retry_ms from now. */
static void record_failure(struct token_engine *te, struct tsrc *s, struct token_failure *f, long long now,
			   long long retry_ms)
{
	bool serving;

	f->retry_at_ms = now + retry_ms;
	s->next_due_ms = now + retry_ms;
	s->backing_off = true;
	/* Counted before it is published, as store_token does. */
	if (observer && observer->result)
		observer->result(te->cfg, s->idx, f, f->kind == TF_LOCAL ? -1 : now - s->started_ms);
	if (pthread_mutex_lock(&s->mu) != 0)
		abort(); /* a broken mutex would hand out stale tokens: do not limp on */
	s->failed = true;
	s->fail = *f;
	serving = s->hdr != NULL && now < s->usable_until_ms;
	pthread_mutex_unlock(&s->mu);
	token_log_failed(s, f, retry_ms, serving);
	notify(te);
}

/* A transient failure: exponential backoff with full jitter, Retry-After wins. */
static void fail_transient(struct token_engine *te, struct tsrc *s, struct token_failure *f, long long now,
			   long long retry_after_ms)
{
	long long delay;
	long long cap = te->cfg->proxy.token_retry_max_ms > 0 ? te->cfg->proxy.token_retry_max_ms : 30000;

	if (s->attempt < UINT_MAX)
		s->attempt++;
	delay = token_backoff_ms(s->attempt, retry_after_ms, cap, rand01());
	record_failure(te, s, f, now, delay);
}

static void fail_local(struct token_engine *te, struct tsrc *s, long long now, const char *why)
{
	struct token_failure f;

	memset(&f, 0, sizeof(f));
	f.kind = TF_LOCAL;
	snprintf(f.detail, sizeof(f.detail), "%s", why);
	fail_transient(te, s, &f, now, 0);
}

/* Publish a new token (taking over tok->access_token's bytes by copy). */
static void store_token(struct token_engine *te, struct tsrc *s, struct oauth_token *tok, long long now)
{
	size_t tlen = strlen(tok->access_token), hlen = sizeof(BEARER_PREFIX) - 1 + tlen;
	struct token_times t = token_schedule(s->started_ms, tok->expires_in, tok->refresh_in, rand01());
	char *hdr = malloc(hlen + 1), *old;
	size_t old_len;
	unsigned long gen;

	if (hdr == NULL) {
		fail_local(te, s, now, "out of memory storing a token");
		return;
	}
	memcpy(hdr, BEARER_PREFIX, sizeof(BEARER_PREFIX) - 1);
	memcpy(hdr + sizeof(BEARER_PREFIX) - 1, tok->access_token, tlen + 1);
	/* Count before publishing: whoever sees the token (readiness, a request) then
	 * also sees it in the metrics. */
	if (observer && observer->result)
		observer->result(te->cfg, s->idx, NULL, now - s->started_ms);
	if (observer && observer->cert_not_after)
		observer->cert_not_after(te->cfg, s->cfg->credential,
					 token_engine_cert_not_after(te, s->cfg->credential));
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	old = s->hdr;
	old_len = s->hdr_len;
	s->hdr = hdr;
	s->hdr_len = hlen;
	gen = ++s->gen;
	s->usable_until_ms = t.usable_until_ms;
	s->expires_at_ms = t.expires_at_ms;
	s->failed = false;
	memset(&s->fail, 0, sizeof(s->fail));
	pthread_mutex_unlock(&s->mu);
	wipe_free(old, old_len);
	s->attempt = 0;
	s->backing_off = false;
	s->next_due_ms = t.refresh_at_ms > now + MIN_REFETCH_MS ? t.refresh_at_ms : now + MIN_REFETCH_MS;
	atomic_store(&s->refresh_wanted, false); /* the new token answers any pending request */
	token_log_acquired(s, tok, &t, now, gen);
	notify(te);
}

/* ---- one request ----------------------------------------------------------- */

/* Request headers; the Basic line (if any) is wiped with the list later. */
static int build_headers(struct tsrc *s, const char *basic, bool get)
{
	char id_line[80];

	uuid_v4(s->req_id);
	snprintf(id_line, sizeof(id_line), "client-request-id: %s", s->req_id);
	if ((!get && !slist_add(&s->headers, "Content-Type: application/x-www-form-urlencoded")) ||
	    !slist_add(&s->headers, "Accept: application/json") || !slist_add(&s->headers, id_line) ||
	    !slist_add(&s->headers, "return-client-request-id: true") ||
	    !slist_add(&s->headers, "x-client-SKU: s2s-proxy") ||
	    !slist_add(&s->headers, "x-client-VER: " S2S_VERSION) || !slist_add(&s->headers, "Expect:"))
		return -1;
	if (basic != NULL && !slist_add(&s->headers, basic))
		return -1;
	return 0;
}

/* Drop everything a finished (or failed to start) request held. */
static void request_cleanup(struct tsrc *s)
{
	/* Both options point at memory freed below; reset them first. */
	if (curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, NULL) != CURLE_OK ||
	    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, NULL) != CURLE_OK ||
	    /* setting POSTFIELDS made it a POST: a managed identity request is a GET */
	    (s->cred->kind == CRED_MANAGED_IDENTITY && curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L) != CURLE_OK))
		log_msg(LOG_WARN, "token_internal", "cannot reset a token request handle");
	wipe_free(s->form, s->form_cap);
	s->form = NULL;
	s->form_cap = 0;
	wipe_slist_free(s->headers);
	s->headers = NULL;
	explicit_bzero(s->body, s->body_len);
	s->body_len = 0;
}

/* Build the body and headers (the credential's proof is made in cred.c and
 * wiped with the request). */
static int prepare_request(struct tsrc *s, long long now, char *why, size_t whycap)
{
	struct cred_material m;
	const char *target = s->cred->token_version == TOKEN_V1 ? s->cfg->resource : s->cfg->scope;
	int ret = -1;

	if (s->cred->kind == CRED_MANAGED_IDENTITY) { /* a GET with headers only (mi.c) */
		if (build_headers(s, NULL, true) != 0 || mi_headers(s->cred, &s->headers, why, whycap) != 0 ||
		    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK) {
			if (why[0] == '\0')
				snprintf(why, whycap, "cannot build the token request (out of memory)");
			return -1;
		}
		return 0;
	}

	if (target == NULL) {
		snprintf(why, whycap, "token source has no %s",
			 s->cred->token_version == TOKEN_V1 ? "resource" : "scope");
		return -1;
	}
	(void)now;
	if (cred_material(s->cr, s->cfg->token_endpoint, target, wall_s(), &m, why, whycap) != 0)
		return -1;
	s->form = m.form; /* ownership moves to the source: wiped in request_cleanup */
	s->form_cap = m.form_cap;
	m.form = NULL;
	if (build_headers(s, m.basic, false) != 0) {
		snprintf(why, whycap, "cannot build the token request (out of memory)");
		goto done;
	}
	if (curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->form) != CURLE_OK ||
	    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, m.form_len) != CURLE_OK ||
	    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK) {
		snprintf(why, whycap, "cannot set up the token request");
		goto done;
	}
	ret = 0;
done:
	cred_material_wipe(&m);
	return ret;
}

static void start_fetch(struct token_engine *te, struct tsrc *s, long long now, const char *reason)
{
	char why[256] = "";
	CURLMcode mc;

	s->body_len = 0;
	s->body_too_large = false;
	s->errbuf[0] = '\0';
	s->ms_req_id[0] = '\0';
	s->req_id[0] = '\0';
	s->started_ms = now;
	if (prepare_request(s, now, why, sizeof(why)) != 0) {
		request_cleanup(s);
		fail_local(te, s, now, why);
		return;
	}
	mc = curl_multi_add_handle(te->multi, s->easy);
	if (mc != CURLM_OK) {
		request_cleanup(s);
		snprintf(why, sizeof(why), "curl_multi_add_handle: %s", curl_multi_strerror(mc));
		fail_local(te, s, now, why);
		return;
	}
	s->in_flight = true;
	atomic_fetch_add(&te->requests, 1);
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	s->last_start_ms = now;
	pthread_mutex_unlock(&s->mu);
	if (log_enabled(LOG_DEBUG)) {
		struct log_line l;

		log_begin(&l, LOG_DEBUG, "token_request");
		token_log_source(&l, s);
		log_str(&l, "reason", reason);
		log_int(&l, "attempt", s->attempt);
		log_end(&l);
	}
}

/* Classify an HTTP answer (or its absence) and act on it. */
static void handle_answer(struct token_engine *te, struct tsrc *s, CURLcode rc, long status, long long retry_after_ms,
			  long long now)
{
	struct token_failure f;
	struct oauth_token tok;
	enum oauth_result res;
	size_t i;

	memset(&f, 0, sizeof(f));
	f.http_status = status;
	if (rc != CURLE_OK) {
		f.kind = s->body_too_large ? TF_BAD_RESPONSE : TF_UNREACHABLE;
		if (s->body_too_large)
			snprintf(f.detail, sizeof(f.detail), "token response larger than %d bytes", BODY_MAX);
		else
			snprintf(f.detail, sizeof(f.detail), "%s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
		fail_transient(te, s, &f, now, 0);
		return;
	}
	res = oauth_parse_response(status, s->body, s->body_len, wall_s(), &tok, &f.err);
	/* IMDS's 404 and 410 mean "not yet", with an OAuth body or without */
	if ((res == OAUTH_REJECTED || res == OAUTH_BAD_RESPONSE) && s->cred->kind == CRED_MANAGED_IDENTITY &&
	    mi_retryable(status)) {
		/* 410: IMDS is upgrading, for up to 70 s; past that it is an answer. */
		if (status == 410 && !s->gone_since_ms)
			s->gone_since_ms = now;
		if (status != 410 || now - s->gone_since_ms <= MI_GONE_RETRY_MS)
			res = OAUTH_TRANSIENT;
	}
	if (status != 410)
		s->gone_since_ms = 0;
	switch (res) {
	case OAUTH_OK:
		store_token(te, s, &tok, now);
		oauth_token_clear(&tok);
		return;
	case OAUTH_TRANSIENT:
		f.kind = status == 429 ? TF_THROTTLED : TF_SERVER_ERROR;
		if (status == 429 && retry_after_ms <= 0)
			retry_after_ms = THROTTLE_DEFAULT_MS;
		break;
	case OAUTH_REJECTED:
		for (i = 0; i < f.err.n_codes; i++)
			if (f.err.codes[i] == 50196 || f.err.codes[i] == 90055)
				f.kind = TF_THROTTLED;
		if (f.kind == TF_THROTTLED) {
			if (retry_after_ms <= 0)
				retry_after_ms = THROTTLE_DEFAULT_MS;
			break;
		}
		f.kind = TF_REJECTED;
		snprintf(f.detail, sizeof(f.detail), "HTTP %ld from the token endpoint", status);
		record_failure(te, s, &f, now,
			       retry_after_ms > TOKEN_REJECT_CACHE_MS
				   ? (retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms : RETRY_AFTER_MAX_MS)
				   : TOKEN_REJECT_CACHE_MS);
		return;
	case OAUTH_BAD_RESPONSE:
		f.kind = TF_BAD_RESPONSE;
		break;
	}
	snprintf(f.detail, sizeof(f.detail), "HTTP %ld from the token endpoint", status);
	fail_transient(te, s, &f, now, retry_after_ms);
}

static void finish_fetch(struct token_engine *te, struct tsrc *s, CURLcode rc)
{
	long long now = te->clock(), retry_after_ms = 0;
	curl_off_t ra = 0;
	CURLMcode mc;
	long status = 0;

	if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
		status = 0;
	/* curl parses both forms of Retry-After (delta-seconds and HTTP-date). */
	if (curl_easy_getinfo(s->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		retry_after_ms = ra > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : (long long)ra * 1000;
	mc = curl_multi_remove_handle(te->multi, s->easy);
	if (mc != CURLM_OK)
		log_msg(LOG_WARN, "token_internal", "curl_multi_remove_handle: %s", curl_multi_strerror(mc));
	s->in_flight = false;
	/* The secret is not needed to judge the answer: wipe it first. */
	wipe_slist_free(s->headers);
	s->headers = NULL;
	wipe_free(s->form, s->form_cap);
	s->form = NULL;
	s->form_cap = 0;
	handle_answer(te, s, rc, status, retry_after_ms, now);
	request_cleanup(s);
}

/* CURLOPT_WRITEFUNCTION: collect the answer, at most BODY_MAX bytes. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct tsrc *s = arg;
	size_t len = size * n;

	if (len > BODY_MAX - s->body_len) {
		s->body_too_large = true;
		return 0; /* != len: curl fails the transfer with CURLE_WRITE_ERROR */
	}
	memcpy(s->body + s->body_len, p, len);
	s->body_len += len;
	return len;
}

/* CURLOPT_HEADERFUNCTION: keep x-ms-request-id for the failure log. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	static const char name[] = "x-ms-request-id:";
	struct tsrc *s = arg;
	size_t len = size * n, i = sizeof(name) - 1, o = 0;

	if (len < i || strncasecmp(p, name, i) != 0)
		return len;
	while (i < len && p[i] == ' ')
		i++;
	while (i < len && o + 1 < sizeof(s->ms_req_id) &&
	       (p[i] == '-' || (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'z') ||
		(p[i] >= 'A' && p[i] <= 'Z')))
		s->ms_req_id[o++] = p[i++];
	s->ms_req_id[o] = '\0';
	return len;
}

/* ---- the engine thread ------------------------------------------------------ */

static void start_due(struct token_engine *te, long long now)
{
	size_t i;

	for (i = 0; i < te->n; i++) {
		struct tsrc *s = &te->src[i];
		bool wanted = atomic_exchange(&s->refresh_wanted, false);

		if (s->in_flight)
			continue;
		if (now >= s->next_due_ms)
			start_fetch(te, s, now, s->backing_off ? "retry" : s->gen == 0 ? "initial" : "refresh");
		else if (wanted && !s->backing_off)
			start_fetch(te, s, now, "requested");
	}
}

static void reap(struct token_engine *te)
{
	struct CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(te->multi, &left)) != NULL) {
		struct tsrc *s = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s) != CURLE_OK || s == NULL)
			continue;
		finish_fetch(te, s, m->data.result);
	}
}

/* Milliseconds until the earliest due time of an idle source, capped. */
static int poll_timeout(const struct token_engine *te, long long now)
{
	long long best = POLL_MAX_MS;
	size_t i;

	for (i = 0; i < te->n; i++) {
		const struct tsrc *s = &te->src[i];

		if (!s->in_flight && s->next_due_ms - now < best)
			best = s->next_due_ms - now;
	}
	return best < 0 ? 0 : (int)best;
}

static void *engine_main(void *arg)
{
	struct token_engine *te = arg;
	int running;
	CURLMcode mc;

	log_msg(LOG_DEBUG, "token_engine_started", "%zu token source(s)", te->n);
	while (!atomic_load(&te->stop)) {
		start_due(te, te->clock());
		mc = curl_multi_perform(te->multi, &running);
		if (mc != CURLM_OK)
			log_msg(LOG_ERROR, "token_internal", "curl_multi_perform: %s", curl_multi_strerror(mc));
		reap(te);
		if (atomic_load(&te->stop))
			break;
		mc = curl_multi_poll(te->multi, NULL, 0, poll_timeout(te, te->clock()), NULL);
		if (mc != CURLM_OK) {
			struct timespec ts = {0, 100 * 1000000L}; /* do not spin on a broken poll */

			log_msg(LOG_ERROR, "token_internal", "curl_multi_poll: %s", curl_multi_strerror(mc));
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* ---- construction and public API ------------------------------------------- */

static int setup_easy(struct token_engine *te, struct tsrc *s)
{
	long total = te->cfg->proxy.token_timeout_ms > 0 ? te->cfg->proxy.token_timeout_ms : 10000;
	CURLcode rc = CURLE_OK;
	CURL *h = curl_easy_init();

	if (h == NULL)
		return -1;
	s->easy = h;
#define SET(opt, val)                                                                                                  \
	do {                                                                                                           \
		if (rc == CURLE_OK)                                                                                    \
			rc = curl_easy_setopt(h, opt, val);                                                            \
	} while (0)
	if (s->cred->kind == CRED_MANAGED_IDENTITY) {
		char *url = mi_url(s->cred, s->cfg->resource); /* curl copies it */

		SET(CURLOPT_URL, url);
		SET(CURLOPT_PROTOCOLS_STR, "http,https"); /* IMDS is plain http to a link-local address */
		SET(CURLOPT_HTTPGET, 1L);
		if (url == NULL)
			rc = CURLE_OUT_OF_MEMORY;
		free(url);
	} else {
		SET(CURLOPT_URL, s->cfg->token_endpoint);
		SET(CURLOPT_PROTOCOLS_STR, "https");
		SET(CURLOPT_POST, 1L);
	}
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_TIMEOUT_MS, total);
	SET(CURLOPT_CONNECTTIMEOUT_MS, total < 5000 ? total : 5000L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_USERAGENT, "s2s-proxy/" S2S_VERSION);
	SET(CURLOPT_ERRORBUFFER, s->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, s);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, s);
	SET(CURLOPT_PRIVATE, s);
	if (te->connect_to != NULL)
		SET(CURLOPT_CONNECT_TO, te->connect_to);
#undef SET
	if (rc != CURLE_OK) {
		log_msg(LOG_ERROR, "token_engine_failed", "token source %zu: %s", s->idx, curl_easy_strerror(rc));
		return -1;
	}
	tlsca_apply(h);
	return 0;
}

/* Take s's transfer out of the multi, if one is running. */
static void detach(struct token_engine *te, struct tsrc *s)
{
	if (s->easy != NULL && s->in_flight && te->multi != NULL &&
	    curl_multi_remove_handle(te->multi, s->easy) != CURLM_OK)
		log_msg(LOG_WARN, "token_internal", "curl_multi_remove_handle failed at shutdown");
	s->in_flight = false;
}

static void source_free(struct token_engine *te, struct tsrc *s)
{
	if (s->easy != NULL) {
		detach(te, s);
		request_cleanup(s);
		curl_easy_cleanup(s->easy);
		s->easy = NULL;
	}
	wipe_free(s->body, BODY_MAX);
	s->body = NULL;
	wipe_free(s->hdr, s->hdr_len);
	s->hdr = NULL;
	pthread_mutex_destroy(&s->mu);
}

/* Load credential i once (its key, for a certificate); warn about expiry. */
static int cred_for(struct token_engine *te, size_t i)
{
	const struct credential_cfg *c = &te->cfg->credentials[i];
	long long now = wall_s(), na;
	char why[512] = "";

	if (te->creds[i] != NULL)
		return 0;
	te->creds[i] = cred_new(c, why, sizeof why);
	if (te->creds[i] == NULL) {
		log_msg(LOG_ERROR, "token_engine_failed", "[credential:%s] %s", c->name, why);
		return -1;
	}
	na = cred_cert_not_after(te->creds[i]);
	if (na != 0 && na <= now)
		log_msg(LOG_ERROR, "certificate_expired", "[credential:%s] the certificate expired %lld days ago",
			c->name, (now - na) / 86400);
	else if (na != 0 && na - now < 30LL * 86400)
		log_msg(LOG_WARN, "certificate_expiring", "[credential:%s] the certificate expires in %lld days",
			c->name, (na - now) / 86400);
	return 0;
}

static int source_init(struct token_engine *te, struct tsrc *s, size_t idx)
{
	const struct config *cfg = te->cfg;

	s->idx = idx;
	s->cfg = &cfg->token_sources[idx];
	if (s->cfg->credential >= cfg->n_credentials || s->cfg->token_endpoint == NULL) {
		log_msg(LOG_ERROR, "token_engine_failed", "token source %zu: bad credential index or endpoint", idx);
		return -1;
	}
	s->cred = &cfg->credentials[s->cfg->credential];
	if (s->cred->client_id == NULL && s->cred->kind != CRED_MANAGED_IDENTITY) {
		log_msg(LOG_ERROR, "token_engine_failed", "credential %s has no client_id", s->cred->name);
		return -1;
	}
	if (cred_for(te, s->cfg->credential) != 0)
		return -1;
	s->cr = te->creds[s->cfg->credential];
	url_host(s->cfg->token_endpoint, s->host, sizeof(s->host));
	atomic_init(&s->refresh_wanted, false);
	if (pthread_mutex_init(&s->mu, NULL) != 0)
		return -1;
	s->body = malloc(BODY_MAX);
	if (s->body == NULL)
		return -1;
	s->next_due_ms = 0; /* every source is fetched as soon as the thread starts */
	return setup_easy(te, s);
}

struct token_engine *token_engine_new(const struct config *cfg, void (*notify_fn)(void *), void *arg)
{
	struct token_engine *te;
	size_t i;

	if (cfg == NULL)
		return NULL;
	te = calloc(1, sizeof(*te));
	if (te == NULL)
		goto fail;
	te->cfg = cfg;
	te->notify = notify_fn;
	te->notify_arg = arg;
	te->clock = clock_now_ms;
	atomic_init(&te->stop, false);
	atomic_init(&te->requests, 0);
	if (pthread_mutex_init(&te->multi_mu, NULL) != 0) {
		free(te);
		te = NULL;
		goto fail;
	}
	te->multi = curl_multi_init();
	if (te->multi == NULL)
		goto fail;
	for (i = 0; i < cfg->proxy.n_connect_to && i < CONFIG_MAX_CONNECT_TO; i++)
		if (!slist_add(&te->connect_to, cfg->proxy.connect_to[i].entry))
			goto fail;
	te->src = calloc(cfg->n_token_sources ? cfg->n_token_sources : 1, sizeof(*te->src));
	te->creds = calloc(cfg->n_credentials ? cfg->n_credentials : 1, sizeof(*te->creds));
	if (te->src == NULL || te->creds == NULL)
		goto fail;
	for (i = 0; i < cfg->n_token_sources; i++) {
		te->n = i + 1; /* source_free must see a half-built source too */
		if (source_init(te, &te->src[i], i) != 0)
			goto fail;
	}
	return te;
fail:
	log_msg(LOG_ERROR, "token_engine_failed", "cannot create the token engine");
	token_engine_free(te);
	return NULL;
}

void token_engine_set_clock(struct token_engine *te, token_clock_fn clock)
{
	if (te != NULL && clock != NULL && !te->started)
		te->clock = clock;
}

int token_engine_start(struct token_engine *te)
{
	sigset_t all, old;
	int rc;

	if (te == NULL || te->started)
		return -1;
	/* The engine thread takes no signals: block them all while it is created. */
	sigfillset(&all);
	if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
		return -1;
	rc = pthread_create(&te->thread, NULL, engine_main, te);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		char eb[128];

		log_msg(LOG_ERROR, "token_engine_failed", "pthread_create: %s", strerror_r(rc, eb, sizeof(eb)));
		return -1;
	}
	te->started = true;
	return 0;
}

/* Wake the engine's thread, from any thread; nothing once it has stopped. */
static void wake_engine(struct token_engine *te, const char *when)
{
	if (pthread_mutex_lock(&te->multi_mu) != 0)
		abort();
	if (te->multi != NULL && curl_multi_wakeup(te->multi) != CURLM_OK)
		log_msg(LOG_WARN, "token_internal", "curl_multi_wakeup failed%s", when);
	pthread_mutex_unlock(&te->multi_mu);
}

void token_engine_stop(struct token_engine *te)
{
	if (te == NULL || !te->started)
		return;
	atomic_store(&te->stop, true);
	wake_engine(te, " at shutdown");
	pthread_join(te->thread, NULL);
	te->started = false;
	/* A retired generation's engine is kept (its tokens may still be read)
	 * but needs no network: close its kept connections and wake-up pair
	 * now, not at exit (every reload used to keep them). */
	if (pthread_mutex_lock(&te->multi_mu) != 0)
		abort();
	for (size_t i = 0; i < te->n; i++)
		detach(te, &te->src[i]);
	curl_multi_cleanup(te->multi);
	te->multi = NULL;
	pthread_mutex_unlock(&te->multi_mu);
}

void token_engine_free(struct token_engine *te)
{
	size_t i;

	if (te == NULL)
		return;
	token_engine_stop(te);
	for (i = 0; i < te->n; i++)
		source_free(te, &te->src[i]);
	free(te->src);
	for (i = 0; te->creds != NULL && i < te->cfg->n_credentials; i++)
		cred_free(te->creds[i]);
	free(te->creds);
	curl_slist_free_all(te->connect_to);
	if (te->multi != NULL)
		curl_multi_cleanup(te->multi);
	pthread_mutex_destroy(&te->multi_mu);
	free(te);
}

static void local_failure(struct token_failure *fail, const char *why)
{
	if (fail == NULL)
		return;
	memset(fail, 0, sizeof(*fail));
	fail->kind = TF_LOCAL;
	snprintf(fail->detail, sizeof(fail->detail), "%s", why);
}

enum token_state token_lookup(struct token_engine *te, size_t idx, long long now_ms, char *hdr, size_t cap,
			      unsigned long *gen, struct token_failure *fail)
{
	enum token_state st = TOKEN_PENDING;
	struct tsrc *s;

	if (te == NULL || idx >= te->n) {
		local_failure(fail, "no such token source");
		return TOKEN_FAILED;
	}
	s = &te->src[idx];
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	if (s->hdr != NULL && now_ms < s->usable_until_ms) {
		if (hdr != NULL && s->hdr_len < cap) {
			memcpy(hdr, s->hdr, s->hdr_len + 1);
			if (gen != NULL)
				*gen = s->gen;
			st = TOKEN_VALID;
		} else {
			local_failure(fail, "token header buffer too small");
			st = TOKEN_FAILED;
		}
	} else if (s->failed) {
		if (fail != NULL)
			*fail = s->fail;
		st = TOKEN_FAILED;
	}
	pthread_mutex_unlock(&s->mu);
	return st;
}

void token_request_refresh(struct token_engine *te, size_t idx)
{
	long long now;
	struct tsrc *s;
	bool wake = false;

	if (te == NULL || idx >= te->n)
		return;
	s = &te->src[idx];
	now = te->clock();
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	/* Not while failing (backoff and the rejection cache stand), at most
	 * one request per token_refresh_min_interval, counted from the last fetch. */
	if (s->hdr != NULL && !s->failed && now - s->last_start_ms >= te->cfg->proxy.token_refresh_min_ms) {
		s->last_start_ms = now;
		wake = true;
	}
	pthread_mutex_unlock(&s->mu);
	if (!wake)
		return;
	atomic_store(&s->refresh_wanted, true);
	wake_engine(te, "");
	log_msg(LOG_INFO, "token_refresh_requested", "early refresh of token source %zu", idx);
}

int token_status_get(struct token_engine *te, size_t idx, long long now_ms, struct token_status *out)
{
	struct tsrc *s;

	memset(out, 0, sizeof(*out));
	if (te == NULL || idx >= te->n)
		return -1;
	s = &te->src[idx];
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	out->state = s->hdr != NULL && now_ms < s->usable_until_ms ? TOKEN_VALID
		     : s->failed                                   ? TOKEN_FAILED
								   : TOKEN_PENDING;
	if (s->hdr != NULL) {
		out->usable_until_ms = s->usable_until_ms;
		out->expires_at_ms = s->expires_at_ms;
	}
	out->has_failure = s->failed;
	if (s->failed)
		out->fail = s->fail;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

long long token_engine_cert_not_after(const struct token_engine *te, size_t credential)
{
	if (te == NULL || te->creds == NULL || credential >= te->cfg->n_credentials)
		return 0;
	return cred_cert_not_after(te->creds[credential]);
}

bool token_reject(struct token_engine *te, size_t idx, unsigned long gen)
{
	long long now;
	struct tsrc *s;
	bool drop = false, gone;

	if (te == NULL || idx >= te->n)
		return false;
	s = &te->src[idx];
	now = te->clock();
	if (pthread_mutex_lock(&s->mu) != 0)
		abort();
	/* No longer handed out: a newer token came meanwhile, or this one was
	 * dropped already (another request's 401 of the same burst) or ran out. */
	gone = s->gen != gen || s->hdr == NULL || now >= s->usable_until_ms;
	/* Same rate limit as token_request_refresh; only the generation that
	 * was rejected, never a newer one fetched meanwhile. */
	if (!gone && !s->failed && now - s->last_start_ms >= te->cfg->proxy.token_refresh_min_ms) {
		s->last_start_ms = now;
		s->usable_until_ms = now;
		drop = true;
	}
	pthread_mutex_unlock(&s->mu);
	if (!drop)
		return gone;
	atomic_store(&s->refresh_wanted, true);
	wake_engine(te, "");
	log_msg(LOG_INFO, "token_dropped", "token of source %zu rejected upstream: dropped, refreshing", idx);
	return true;
}

unsigned long token_engine_requests(const struct token_engine *te)
{
	return te != NULL ? atomic_load(&te->requests) : 0;
}
