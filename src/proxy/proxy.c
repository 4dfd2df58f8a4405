/*
 * proxy.c - the inbound side of a request, as libmicrohttpd sees it.
 *
 * MHD calls the access handler several times per request: once when the
 * headers are in (state RQ_NEW), once per chunk of body, and once more
 * with *upload_data_size == 0 when the request is complete. The first call
 * never suspends and (but for refusing a body) never answers, so a later
 * call with no data always means "request complete": suspending there
 * would make MHD call again from the header stage, and answering there
 * would make MHD close the connection afterwards. Whenever the proxy
 * cannot answer yet it suspends; whatever unblocks it resumes
 * (request_resume is a no-op for a connection that is not suspended), and
 * the handler looks again. The answer itself is built and queued by
 * answer.c.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/conntrack.h"
#include "diag/diag.h"
#include "diag/diaglog.h"
#include "proxy/refusal.h"
#include "proxy/answer.h"
#include "proxy/caller.h"
#include "proxy/bridge.h"
#include "util/log.h"
#include "util/text.h"
#include "ops/callerstat.h"
#include "ops/inventory.h"
#include "ops/metrics.h"
#include "diag/problem.h"
#include "proxy/relay.h"
#include "tls/tlsin.h"
#include "proxy/request.h"
#include "proxy/throttle.h"
#include "proxy/rewrite.h"
#include "util/verifier.h"
#include "proxy/worker.h"

#define DRAIN_MAX (8 * 1024 * 1024) /* body bytes read and discarded after a refusal */

/* ---- lists --------------------------------------------------------------- */

static void park_link(struct worker *w, struct request *rq)
{
	LIST_INSERT_HEAD(&w->parked, rq, park_link);
	rq->parked_linked = true;
}

static void park_unlink(struct worker *w, struct request *rq)
{
	(void)w;
	if (!rq->parked_linked)
		return;
	LIST_REMOVE(rq, park_link);
	rq->parked_linked = false;
}

static void all_link(struct worker *w, struct request *rq)
{
	LIST_INSERT_HEAD(&w->all, rq, all_link);
}

static void all_unlink(struct worker *w, struct request *rq)
{
	(void)w;
	LIST_REMOVE(rq, all_link);
}

/* ---- local answers -------------------------------------------------------- */

/* What the route expects, for diag_token_note. */
static struct diag_context route_context(const struct request *rq)
{
	const struct config *cfg = rq->cfg;
	const struct token_source_cfg *ts = &cfg->token_sources[rq->route->token_source];
	const struct credential_cfg *cr = &cfg->credentials[ts->credential];
	struct diag_context ctx = {cr->client_id, cr->tenant, ts->resource, rq->route->audience_kind};
	return ctx;
}

static void set_local_from_failure(struct request *rq, const struct token_failure *f, long long now)
{
	struct diagnosis d;
	struct diag_context ctx = route_context(rq);
	diag_token_failure(f, &d);
	request_set_local(rq, d.status, d.code, d.title, f->detail[0] ? f->detail : f->err.description);
	rq->local.has_failure = true;
	rq->local.failure = *f;
	diag_token_note(f, &ctx, rq->local.note, sizeof rq->local.note);
	diaglog_token(now, rq->route->name, rq->request_id, &d, f, rq->local.note);
	if (d.retry_after) {
		long long s = (f->retry_at_ms - now + 999) / 1000;
		rq->local.retry_after_s = s < 1 ? 1 : s;
	}
}

static void set_local_from_upstream(struct request *rq)
{
	char detail[384];
	const struct route_cfg *rt = rq->route;
	if (rq->resp.rh_overflow && rq->resp.headers_ready) {
		request_set_local(rq, 502, "upstream_bad_response", "Upstream response headers could not be forwarded",
				  "the upstream sent a malformed or oversized header block");
		return;
	}
	if (rq->us.resend_refused) {
		snprintf(detail, sizeof detail,
			 "%s closed a reused connection after taking the %s request, without answering; "
			 "it may have been executed, so it was not sent again",
			 rt->upstream.origin, rq->method);
		request_set_local(rq, 502, "upstream_closed_unanswered",
				  "The upstream closed the connection without answering", detail);
		return;
	}
	snprintf(detail, sizeof detail, "%s: %s", rt->upstream.origin,
		 rq->us.curl_err[0] ? rq->us.curl_err : curl_easy_strerror(rq->us.result));
	if (rq->us.result == CURLE_OPERATION_TIMEDOUT)
		request_set_local(rq, 504, "upstream_timeout", "The upstream did not answer in time", detail);
	else
		request_set_local(rq, 502, "upstream_unavailable", "The upstream could not be reached", detail);
}

static void start_with_token(struct request *rq, long long now);

/*
 * A 401 arrived before anything was sent to the client: when refusal.c
 * can rewind the request (see refusal_rewind), send it once more with the
 * next token. Returns true when the replay is under way.
 */
static bool replay_after_401(struct request *rq)
{
	if (!refusal_rewind(rq))
		return false;
	log_msg(LOG_INFO, "request_replayed", "request %s: upstream 401, token dropped, sending again", rq->request_id);
	start_with_token(rq, clock_now_ms()); /* parks until the fresh token is there */
	return true;
}

/* Answer now if possible, else suspend until something changes. */
static enum MHD_Result advance(struct request *rq)
{
	if (rq->state == RQ_RESPONDED)
		return MHD_YES;
	if (rq->bx) /* WS-Trust bridge: a buffered exchange (bridge.c) */
		return bridge_advance(rq);
	if (!rq->local.set && rq->state == RQ_FORWARDING) {
		switch (rq->resp.headers_ready && !rq->resp.rh_overflow ? throttle_on_answer(rq, clock_now_ms())
									: THROTTLE_PASS) {
		case THROTTLE_HOLD:
			request_suspend(rq); /* on_write / relay_done resume */
			return MHD_YES;
		case THROTTLE_RETRY: /* waits at its gate, then goes again */
			start_with_token(rq, clock_now_ms());
			return advance(rq);
		case THROTTLE_REFUSE:
			return answer_local(rq);
		case THROTTLE_PASS:
			break;
		}
		if (rq->resp.headers_ready && !rq->resp.rh_overflow && replay_after_401(rq))
			return advance(rq); /* parked or forwarding again, or a local answer */
		if (rq->resp.headers_ready && !rq->resp.rh_overflow && refusal_holding(rq)) {
			request_suspend(rq); /* on_write / relay_done resume */
			return MHD_YES;
		}
		if (rq->resp.headers_ready && !rq->resp.rh_overflow)
			return answer_upstream(rq);
		if (rq->us.done || rq->resp.rh_overflow)
			set_local_from_upstream(rq);
	}
	if (rq->local.set)
		return answer_local(rq);
	request_suspend(rq);
	return MHD_YES;
}

/* ---- starting a request ------------------------------------------------------ */

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	struct request *rq = cls;
	(void)kind;
	if (!value)
		value = "";
	rq->cl.header_bytes += strlen(name) + strlen(value) + 4; /* "name: value\r\n" */
	rq->cl.n_headers++;
	if (!hdr_name_ok(name, strlen(name)))
		rq->cl.bad_header_name = true; /* RFC 9112 5.1: answer 400 */
	if (!hdr_value_ok(value, strlen(value)))
		rq->cl.bad_header_value = true; /* a control byte: libmicrohttpd lets some through */
	hdr_framing_add(&rq->cl.framing, name, value);
	if (strcasecmp(name, "Connection") == 0) {
		size_t have = strlen(rq->cl.conn_tokens), add = strlen(value);
		if (have + add + 2 > sizeof rq->cl.conn_tokens) {
			rq->cl.conn_tokens_overflow = true;
		} else {
			if (have)
				rq->cl.conn_tokens[have++] = ',';
			memcpy(rq->cl.conn_tokens + have, value, add + 1);
		}
	}
	static const char *const corr[REQUEST_N_CORR] = REQUEST_CORR_HEADERS;
	for (unsigned i = 0; i < REQUEST_N_CORR; i++)
		if (strcasecmp(name, corr[i]) == 0 && *value) {
			text_copy_cut(rq->corr[i], sizeof rq->corr[i], value);
			rq->corr_generated &= ~(1u << i);
		}
	return MHD_YES;
}

static void client_address(struct request *rq)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(rq->client_ip, sizeof rq->client_ip, "unknown");
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	memcpy(&rq->client_sa, sa,
	       sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, rq->client_ip,
			  sizeof rq->client_ip);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, rq->client_ip,
			  sizeof rq->client_ip);
}

static const int route_status[] = {
    [ROUTE_OK] = 200,           [ROUTE_NO_MATCH] = 404,       [ROUTE_BAD_TARGET] = 400,
    [ROUTE_FOREIGN_HOST] = 400, [ROUTE_PATH_TRAVERSAL] = 400, [ROUTE_TOO_LONG] = 414,
    [ROUTE_BAD_HOST] = 400,
};
static const char *const route_code[] = {
    [ROUTE_OK] = "ok",
    [ROUTE_NO_MATCH] = "no_route",
    [ROUTE_BAD_TARGET] = "bad_target",
    [ROUTE_FOREIGN_HOST] = "foreign_host",
    [ROUTE_PATH_TRAVERSAL] = "path_traversal",
    [ROUTE_TOO_LONG] = "uri_too_long",
    [ROUTE_BAD_HOST] = "bad_host",
};

/* Equal keys? Compares SHA-256 digests in constant time, so neither the
 * key's bytes nor its length leak through timing. */
static bool key_equal(const char *got, const char *want)
{
	unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)got, strlen(got), a);
	SHA256((const unsigned char *)want, strlen(want), b);
	return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

static void log_denied(const struct request *rq, const char *reason)
{
	struct log_line l;
	log_begin(&l, LOG_WARN, "access_denied");
	log_str(&l, "request_id", rq->request_id);
	log_str(&l, "client", rq->client_ip);
	log_str(&l, "route", rq->route ? rq->route->name : NULL);
	log_str(&l, "reason", reason);
	log_end(&l);
}

/* allow_from ([proxy], then the route's) and the inbound key. Returns false
 * with rq->local set to a 403 when the caller may not use the route. */
static bool admitted(struct request *rq)
{
	const struct proxy_cfg *pc = &rq->cfg->proxy;
	const struct route_cfg *r = rq->route;
	const struct sockaddr *sa = (const struct sockaddr *)&rq->client_sa;
	const char *code = NULL, *why = NULL;

	if ((pc->allow_from.n && !cidr_list_match(&pc->allow_from, sa)) ||
	    (r && r->allow_from.n && !cidr_list_match(&r->allow_from, sa))) {
		code = "client_not_allowed";
		why = "the client address is not in allow_from";
	} else if (r && !r->n_callers && (r->inbound_key || pc->inbound_key)) { /* else callers decide */
		const char *got = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, pc->inbound_key_header);
		if (!got) {
			code = "inbound_key_missing";
			why = "the request carries no inbound key header";
		} else if (!key_equal(got, r->inbound_key ? r->inbound_key : pc->inbound_key)) {
			code = "inbound_key_invalid";
			why = "the inbound key does not match";
		}
	}
	if (!code)
		return true;
	request_set_local(rq, 403, code, "Forbidden", why);
	log_denied(rq, code);
	return false;
}

static void log_limit(const struct request *rq, const char *limit, long long value)
{
	struct log_line l;
	log_begin(&l, LOG_WARN, "limit_exceeded");
	log_str(&l, "request_id", rq->request_id);
	log_str(&l, "client", rq->client_ip);
	log_str(&l, "route", rq->route ? rq->route->name : NULL);
	log_str(&l, "limit", limit);
	log_int(&l, "value", value);
	log_end(&l);
}

/* What recognition decided: go on, refused (rq->local set), or wait for
 * the verifier thread (caller.c queued the password check). */
enum recog { RECOG_REFUSED, RECOG_GO, RECOG_PENDING };

/* [caller:NAME] (caller.c): who sent the request; it then uses the
 * caller's view of the route (credential, token source). Runs again, for
 * a cache hit, when the verifier is done with the request's password. */
static enum recog recognise_caller(struct request *rq)
{
	char subject[256];
	const char *why = NULL, *imp[] = {"CallerObjectId", "MSCRMCallerID"};
	const struct route_cfg *r = rq->route;
	rq->caller.protos |= 1u << (r->soap_bridge                                             ? PROTO_SOAP_BRIDGE
				    : r->audience_kind == AUD_BC || r->audience_kind == AUD_FO ? PROTO_ODATA_V4
											       : PROTO_WEB_API);
	if (!rq->cfg->n_callers)
		return RECOG_GO;
	struct caller_input in = {
	    .authorization = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
	    .key = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, rq->cfg->proxy.inbound_key_header),
	    .tls_subject = tlsin_client_subject(rq->conn, subject, sizeof subject) == 0 ? subject : NULL,
	    .peer = (const struct sockaddr *)&rq->client_sa,
	    .now_ms = clock_now_ms(),
	};
	enum caller_verdict v = caller_recognise(rq->cfg, r, &in, &rq->caller.c, &why);
	if (v == CALLER_PENDING)
		return RECOG_PENDING;
	if (v == CALLER_BUSY) {
		request_set_local(rq, 503, "overloaded", "Too many passwords to check", why);
		rq->local.retry_after_s = 1;
		log_limit(rq, "caller_verifications", VERIFIER_QUEUE_MAX);
		return RECOG_REFUSED;
	}
	if (v == CALLER_OK && rq->caller.c->basic_user)
		rq->caller.protos |= 1u << PROTO_BASIC_IN;
	for (size_t i = 0; v == CALLER_OK && i < 2; i++)
		if (MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, imp[i])) {
			/* refused, not stripped: dropped, the write would silently run as someone else */
			request_set_local(rq, 403, "impersonation_refused", "Forbidden",
					  "a caller may not choose whom it acts for (CallerObjectId, MSCRMCallerID): "
					  "the proxy sets CallerObjectId from the caller's impersonate key");
			log_denied(rq, "impersonation_refused");
			return RECOG_REFUSED;
		}
	if (v == CALLER_OK && rq->caller.c->impersonate)
		snprintf(rq->caller.act_for, sizeof rq->caller.act_for, "%s", rq->caller.c->impersonate);
	if (v == CALLER_OK)
		rq->route = caller_route(rq->cfg, rq->caller.c, r);
	if (v == CALLER_OK || v == CALLER_ANONYMOUS)
		return RECOG_GO;
	rq->caller.challenge = v == CALLER_UNAUTHORIZED;
	request_set_local(rq, rq->caller.challenge ? 401 : 403,
			  rq->caller.challenge ? "caller_unauthorized" : "caller_forbidden",
			  rq->caller.challenge ? "Unauthorized" : "Forbidden", why);
	log_denied(rq, rq->local.code);
	return RECOG_REFUSED;
}

/* The request body cap: the route's when it sets a lower one. 0 = none. */
static uint64_t body_cap(const struct request *rq)
{
	uint64_t p = rq->cfg->proxy.max_body_bytes, r = rq->route ? rq->route->max_body_bytes : 0;
	if (r && (!p || r < p))
		return r;
	return p;
}

/* Validate framing and pick the route. Returns false with rq->local set. */
static bool classify(struct request *rq, const char *method)
{
	if (strlen(method) >= sizeof rq->method) {
		request_set_local(rq, 501, "method_not_supported", "Method not supported", NULL);
		return false;
	}
	text_copy_cut(rq->method, sizeof rq->method, method);
	rq->is_head = strcmp(method, "HEAD") == 0;
	if (!hdr_name_ok(method, strlen(method))) { /* RFC 9110 9.1: method = token (the library allows more) */
		request_set_local(rq, 400, "bad_request", "Invalid method", "the method is not an RFC 9110 token");
		rq->local.close = true;
		return false;
	}
	enum hdr_method_policy mp = hdr_method_policy(method);
	if (mp == HDR_METHOD_UNKNOWN) {
		request_set_local(rq, 501, "method_not_supported", "Method not supported",
				  "the proxy forwards GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS (methods are "
				  "case-sensitive)");
		rq->local.close = rq->cl.has_body;
		return false;
	}
	if (!admitted(rq)) /* [proxy] allow_from, before anything else is looked at */
		return false;
	char why[160];
	if (tlsin_check_client(rq->conn, why, sizeof why) < 0) {
		request_set_local(rq, 403, "client_certificate_required", "Forbidden", why);
		rq->local.close = true;
		log_denied(rq, "client_certificate_required");
		return false;
	}
	if (mp == HDR_METHOD_TUNNEL) {
		request_set_local(rq, 405, "connect_refused", "CONNECT is not supported",
				  "this is a reverse proxy, not a tunnel");
		rq->local.close = true;
		return false;
	}
	if (mp == HDR_METHOD_ECHO) {
		request_set_local(rq, 405, "method_refused", "TRACE and TRACK are not forwarded",
				  "the echoed request would contain the access token the proxy adds");
		rq->local.close = true;
		return false;
	}
	hdr_framing_init(&rq->cl.framing);
	MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, scan_header, rq);
	enum hdr_framing_verdict fv = hdr_framing_check(&rq->cl.framing);
	if (fv != FRAMING_OK) {
		request_set_local(rq, 400, "bad_framing", "Request framing refused", hdr_framing_reason(fv));
		rq->local.close = true; /* the body boundary is unknowable: never reuse (RFC 9112 6.3) */
		return false;
	}
	if (rq->cl.header_bytes > rq->cfg->proxy.max_header_bytes) {
		request_set_local(rq, 431, "headers_too_large", "Request header fields too large", NULL);
		rq->local.close = true;
		log_limit(rq, "max_header_bytes", (long long)rq->cl.header_bytes);
		return false;
	}
	if ((long)strlen(rq->target) > rq->cfg->proxy.max_url_bytes) {
		request_set_local(rq, 414, "uri_too_long", "Request-target too long", NULL);
		rq->local.close = true;
		log_limit(rq, "max_url_bytes", (long long)strlen(rq->target));
		return false;
	}
	if (rq->cl.bad_header_name) {
		request_set_local(rq, 400, "bad_request", "Invalid header field name", NULL);
		rq->local.close = true;
		return false;
	}
	if (rq->cl.bad_header_value) {
		request_set_local(rq, 400, "bad_request", "Invalid header field value",
				  "a header value holds a control character (RFC 9110 5.5)");
		rq->local.close = true;
		return false;
	}
	if (rq->cl.conn_tokens_overflow) {
		request_set_local(rq, 400, "bad_request", "Connection header too long", NULL);
		rq->local.close = true;
		return false;
	}
	rq->cl.has_body = hdr_framing_has_body(&rq->cl.framing);
	rq->cl.body_len = hdr_framing_body_length(&rq->cl.framing);
	if (bridge_sts_path(rq)) { /* the sign-in facade answers whatever the Host */
		rq->caller.protos |= 1u << PROTO_STS_FACADE;
		return true;
	}

	struct route_request rr = {
	    .target = rq->target,
	    .host = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Host"),
	};
	enum route_verdict v =
	    strlen(rq->target) > ROUTE_MAX_TARGET ? ROUTE_TOO_LONG : route_select(rq->cfg, &rr, &rq->match);
	text_copy_cut(rq->host, sizeof rq->host, rq->match.host);
	if (v != ROUTE_OK) {
		request_set_local(rq, route_status[v], route_code[v], route_verdict_reason(v), NULL);
		rq->local.close = rq->cl.has_body;
		return false;
	}
	rq->route = rq->match.route;
	return admitted(rq); /* the caller next: recognised() */
}

/* Who sent the request, and what depends on it (the caller's view of the
 * route, then its body cap): a step of its own after classify, because a
 * password check may have to wait for the verifier thread. */
static enum recog recognised(struct request *rq)
{
	if (!rq->route) /* the sign-in facade (bridge_sts_path) has no route */
		return RECOG_GO;
	enum recog g = recognise_caller(rq);
	if (g != RECOG_GO)
		return g;
	uint64_t cap = body_cap(rq);
	if (cap && rq->cl.body_len >= 0 && (uint64_t)rq->cl.body_len > cap) {
		request_set_local(rq, 413, "body_too_large", "Request body too large", NULL);
		log_limit(rq, "max_body_bytes", rq->cl.body_len);
		return RECOG_REFUSED;
	}
	return RECOG_GO;
}

/* Claims and fingerprint of the token about to be sent, for diagnoses.
 * Decoded once per token (generation) and worker, then copied. */
static void remember_token(struct request *rq, const char *hdr)
{
	static const char prefix[] = "Authorization: Bearer ";
	struct worker *w = rq->w;
	size_t src = rq->route->token_source;
	struct claims_cache *c = &w->claims_cache[src % (sizeof w->claims_cache / sizeof w->claims_cache[0])];

	if (!c->info || c->engine != rq->tokens || c->source != src || c->gen != rq->diag.tok_gen) {
		if (strncmp(hdr, prefix, sizeof prefix - 1) != 0)
			return;
		struct tok_info *ti = calloc(1, sizeof *ti);
		if (!ti)
			return; /* a diagnosis then goes without claims */
		const char *tok = hdr + sizeof prefix - 1;
		size_t n = strlen(tok);
		if (jwt_decode_claims(tok, n, &ti->claims) < 0)
			memset(&ti->claims, 0, sizeof ti->claims);
		jwt_fingerprint(tok, n, ti->fp);
		ti->refs = 1; /* the cache's */
		tok_info_unref(c->info);
		c->info = ti;
		c->engine = rq->tokens;
		c->source = src;
		c->gen = rq->diag.tok_gen;
	}
	tok_info_unref(rq->diag.tok); /* a replay sends a newer token */
	rq->diag.tok = c->info;
	rq->diag.tok->refs++;
}

static void start_with_token(struct request *rq, long long now)
{
	struct worker *w = rq->w;
	struct token_failure fail;
	enum token_state st = token_lookup(rq->tokens, rq->route->token_source, now, w->token_hdr, sizeof w->token_hdr,
					   &rq->diag.tok_gen, &fail);
	if (st == TOKEN_VALID && !throttle_admit(rq, now)) {
		/* waits at its identity's gate (throttle_poll starts it again), or refused */
		explicit_bzero(w->token_hdr, strnlen(w->token_hdr, sizeof w->token_hdr));
		if (rq->state == RQ_PARKED) { /* no longer waiting for a token */
			park_unlink(w, rq);
			rq->t_parked_ms = now - rq->park_deadline_ms + rq->cfg->proxy.token_wait_ms;
			rq->state = RQ_NEW;
		}
	} else if (st == TOKEN_VALID) {
		remember_token(rq, w->token_hdr);
		if (rq->state == RQ_PARKED)
			rq->t_parked_ms = now - rq->park_deadline_ms + rq->cfg->proxy.token_wait_ms;
		rq->state = RQ_FORWARDING;
		if (relay_start(rq, w->token_hdr) < 0)
			rq->local.set = true;
		explicit_bzero(w->token_hdr, strnlen(w->token_hdr, sizeof w->token_hdr));
	} else if (st == TOKEN_PENDING) {
		if (rq->state != RQ_PARKED) {
			rq->state = RQ_PARKED;
			rq->park_deadline_ms = now + rq->cfg->proxy.token_wait_ms;
			park_link(w, rq);
		}
	} else {
		set_local_from_failure(rq, &fail, now);
	}
}

/*
 * Set up the body's way in, then (start, and the body need not come whole
 * first) look for the token. A request waiting for the verifier sets up
 * the same, so its body flows into its ring meanwhile; verify_done starts it.
 */
static void begin(struct request *rq, long long now, bool start)
{
	if (bridge_begin(rq) < 0)
		request_set_local(rq, 503, "overloaded", "Out of memory", NULL);
	else if (rq->bx)
		rq->cl.up_eof = !rq->cl.has_body; /* bridged: token once the body is in (bridge_request_done) */
	else if (rq->cl.has_body && pool_ring_get(&rq->w->pool, &rq->cl.up, relay_ring_bytes(rq->cfg)) < 0)
		request_set_local(rq, 503, "overloaded", "Out of memory", NULL);
	else if (rq->cl.has_body && rq->cl.body_len >= 0 && (uint64_t)rq->cl.body_len <= rq->cl.up.cap)
		rq->cl.start_deferred = true; /* whole body first: see proxy_on_request */
	else if (start)
		start_with_token(rq, now);
}

/* Wait on the worker's parked list, as for a first token, until the
 * verifier wakes the workers (proxy_verify_event) or the deadline. */
static void park_for_verifier(struct request *rq, long long now)
{
	struct log_line l;
	log_begin(&l, LOG_INFO, "caller_check_wait"); /* which request waits; never what it sent */
	log_str(&l, "request_id", rq->request_id);
	log_str(&l, "client", rq->client_ip);
	log_str(&l, "route", rq->route->name);
	log_end(&l);
	rq->caller.verifying = true;
	rq->state = RQ_PARKED;
	rq->park_deadline_ms = now + rq->cfg->proxy.token_wait_ms;
	park_link(rq->w, rq);
}

static enum MHD_Result first_call(struct request *rq, const char *method)
{
	long long now = clock_now_ms();
	client_address(rq);
	conntrack_request_started(rq->conn);
	if (conntrack_over_limit(&rq->w->ct, rq->conn)) {
		request_set_local(rq, 503, "overloaded", "Too many connections", "max_connections reached");
		rq->local.retry_after_s = 1;
		rq->local.close = true;
		log_limit(rq, "max_connections", conntrack_open());
	} else if (classify(rq, method)) {
		enum recog g = recognised(rq);
		if (g == RECOG_PENDING)
			park_for_verifier(rq, now);
		if (g != RECOG_REFUSED)
			begin(rq, now, g == RECOG_GO);
		if (rq->local.set && rq->caller.verifying) { /* out of memory: no longer waits */
			park_unlink(rq->w, rq);
			rq->caller.verifying = false;
			rq->state = RQ_NEW;
		}
	}
	if (rq->local.set && (rq->cl.has_body || rq->local.close)) {
		/* Refuse now, body unread (or its framing unknowable), and close: the
		 * rest of the stream must not be taken for a next request. */
		rq->local.close = true;
		return answer_local(rq);
	}
	/* Neither answer nor suspend here: MHD treats a response queued before
	 * the request is complete as "early" and closes the connection after
	 * it, and a body must keep flowing. The final call (*upload_data_size
	 * == 0 once the request is complete) answers. */
	return MHD_YES;
}

/* A piece of request body. */
static enum MHD_Result body_call(struct request *rq, const char *data, size_t *size)
{
	if (rq->local.set || rq->us.done || rq->state == RQ_RESPONDED) {
		rq->cl.bytes_in += *size; /* the answer is decided: drain and discard */
		*size = 0;
		/* Draining lets the client read the answer (closing on unread data
		 * would reset the connection and lose it), but not forever. */
		if (rq->local.set && rq->state != RQ_RESPONDED && rq->cl.bytes_in - rq->us.body_sent > DRAIN_MAX)
			return answer_local(rq);
		return MHD_YES;
	}
	if (rq->bx)
		return bridge_body(rq, data, size);
	uint64_t cap = body_cap(rq);
	if (cap && !rq->local.set && rq->cl.bytes_in + *size > cap) { /* a chunked body outgrew the cap */
		relay_abort(rq);
		request_set_local(rq, 413, "body_too_large", "Request body too large", NULL);
		rq->local.close = true;
		log_limit(rq, "max_body_bytes", (long long)(rq->cl.bytes_in + *size));
	}
	size_t n = rbuf_write(&rq->cl.up, data, *size);
	refusal_keep_body(rq, data, n);
	rq->cl.bytes_in += n;
	*size -= n;
	relay_unpause(rq);
	if (*size > 0)
		request_suspend(rq); /* on_read resumes once curl took bytes (backpressure) */
	return MHD_YES;
}

enum MHD_Result proxy_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct request *rq = *con_cls;
	(void)cls;
	(void)url;
	(void)version;
	if (!rq || rq->magic != REQUEST_MAGIC)
		return MHD_NO;
	if (!rq->conn) {
		rq->conn = conn;
		return first_call(rq, method);
	}
	if (rq->cl.abandoned)
		return MHD_NO; /* its client left while it waited: close, nothing was sent upstream */
	if (*upload_data_size > 0)
		return body_call(rq, upload_data, upload_data_size);
	if (rq->cl.has_body && !rq->cl.up_eof) {
		rq->cl.up_eof = true; /* the final call: the body is complete */
		relay_unpause(rq);
	}
	/* A body that fits the ring is taken whole before the upstream request
	 * starts (as nginx's request buffering does): curl then sends it in one
	 * go instead of pausing and resuming per piece MHD delivers, each of
	 * which cost a loop turn and epoll changes. Larger and chunked bodies
	 * stream. */
	if (rq->cl.start_deferred && !rq->local.set && !rq->caller.verifying) {
		rq->cl.start_deferred = false;
		start_with_token(rq, clock_now_ms());
	}
	if (rq->bx && !rq->caller.verifying && bridge_request_done(rq))
		start_with_token(rq, clock_now_ms());
	return advance(rq);
}

/* ---- MHD bookkeeping ------------------------------------------------------------ */

/* A version-4 UUID (RFC 9562 section 5.4) from the worker's xorshift
 * state, in hex without printf: one is made for every request. */
static void new_request_id(struct worker *w, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a, b;
	char id[37];
	w->rng ^= w->rng << 13, w->rng ^= w->rng >> 7, w->rng ^= w->rng << 17;
	a = w->rng;
	w->rng ^= w->rng << 13, w->rng ^= w->rng >> 7, w->rng ^= w->rng << 17;
	b = w->rng;
	a = (a & ~0xf000ull) | 0x4000ull;                 /* version 4 */
	b = (b & ~(0xc000ull << 48)) | (0x8000ull << 48); /* variant 10 */
	for (int i = 0, k = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			id[i] = '-';
			continue;
		}
		uint64_t word = k < 16 ? a : b;
		id[i] = hex[(word >> (60 - 4 * (k % 16))) & 0xf];
		k++;
	}
	id[36] = '\0';
	if (cap > 0) {
		size_t n = cap - 1 < 36 ? cap - 1 : 36;
		memcpy(out, id, n);
		out[n] = '\0';
	}
}

void *proxy_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct worker *w = cls;
	struct request *rq = request_new(w, uri ? uri : "");
	/* A request line is in: the connection is busy from now on, even before
	 * its headers are complete (never closed to make room, conntrack.c). */
	conntrack_request_line(conn);
	if (!rq)
		return NULL; /* the access handler answers MHD_NO: connection closed */
	rq->t_start_ms = clock_now_ms();
	new_request_id(w, rq->request_id, sizeof rq->request_id);
	for (unsigned i = 0; i < REQUEST_N_CORR; i++) /* until scan_header finds the client's own */
		text_copy_cut(rq->corr[i], sizeof rq->corr[i], rq->request_id);
	rq->corr_generated = (1u << REQUEST_N_CORR) - 1;
	all_link(w, rq);
	w->inflight++;
	metrics_inflight(1);
	return rq;
}

static void log_request(struct request *rq, enum MHD_RequestTerminationCode toe)
{
	struct log_line l;
	long long now = clock_now_ms();
	static const char *const corr_field[REQUEST_N_CORR] = REQUEST_CORR_FIELDS;
	metrics_request_done(rq->route, rq->method, rq->resp.final_status, rq->cl.bytes_in, rq->resp.bytes_out,
			     rq->resp.status || rq->us.done ? now - rq->t_start_ms - rq->t_parked_ms : -1);
	rewrite_count(rq);
	const char *caller = rq->caller.c ? rq->caller.c->name : CALLER_ANONYMOUS_LABEL;
	callerstat_request(caller, rq->route ? rq->route->name : NULL, rq->resp.final_status, rq->caller.protos);
	if (!rq->local.set || rq->caller.c) /* a refused stranger uses nothing */
		inventory_note(caller, rq->caller.protos, (long long)time(NULL));
	if (rq->route && !rq->route->access_log)
		return;
	log_begin(&l, LOG_INFO, "request");
	log_str(&l, "request_id", rq->request_id);
	for (unsigned i = 0; i < REQUEST_N_CORR; i++)
		log_str(&l, corr_field[i], rq->corr[i]);
	log_str(&l, "client", rq->client_ip);
	log_str(&l, "method", rq->method);
	log_strn(&l, "path", rq->target, strcspn(rq->target, "?")); /* the query may carry data: not logged */
	log_str(&l, "route", rq->route ? rq->route->name : NULL);
	log_str(&l, "caller", caller);
	log_int(&l, "status", rq->resp.final_status);
	if (rq->resp.status)
		log_int(&l, "upstream_status", rq->resp.status);
	if (rq->local.set && rq->local.code)
		log_str(&l, "error", rq->local.code);
	log_str(&l, "diagnosis", rq->diag.code);
	log_int(&l, "duration_ms", now - rq->t_start_ms);
	log_int(&l, "token_wait_ms", rq->t_parked_ms);
	throttle_log(rq, &l); /* throttle_wait_ms, throttle_retries: when the request waited at its gate */
	log_int(&l, "bytes_in", (long long)rq->cl.bytes_in);
	log_int(&l, "bytes_out", (long long)rq->resp.bytes_out);
	rewrite_log(rq, &l);
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_str(&l, "termination",
			toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED   ? "client_timeout"
			: toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT    ? "client_abort"
			: toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "shutdown"
									: "error");
	if (rq->us.done && rq->us.result != CURLE_OK && rq->resp.headers_ready)
		log_str(&l, "upstream_error", rq->us.curl_err[0] ? rq->us.curl_err : curl_easy_strerror(rq->us.result));
	log_end(&l);
}

void proxy_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct worker *w = cls;
	struct request *rq = *con_cls;
	(void)conn;
	if (!rq || rq->magic != REQUEST_MAGIC)
		return;
	*con_cls = NULL;
	rq->cl.gone = true;
	park_unlink(w, rq);
	relay_abort(rq); /* client gone mid-transfer: stop the upstream side too */
	log_request(rq, toe);
	throttle_request_done(rq); /* leaves its gate's queue, frees its slot */
	/* clean: answered whole with the connection kept; a refusal that closes
	 * it may leave body bytes unread, and then the close lingers */
	conntrack_request_done(rq->conn, clock_now_ms(),
			       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !(rq->local.set && rq->local.close) &&
				   (!rq->cl.has_body || rq->cl.up_eof));
	all_unlink(w, rq);
	w->inflight--;
	metrics_inflight(-1);
	request_unref(rq); /* the MHD side's reference */
}

/* ---- token events and deadlines ---------------------------------------------------- */

void proxy_token_event(struct worker *w)
{
	long long now = clock_now_ms();
	struct request *rq = LIST_FIRST(&w->parked), *next;
	for (; rq; rq = next) {
		next = LIST_NEXT(rq, park_link);
		if (rq->caller.verifying)
			continue; /* waits for the verifier, not a token */
		start_with_token(rq, now);
		if (rq->state != RQ_PARKED || rq->local.set) {
			park_unlink(w, rq);
			request_resume(rq);
		}
	}
}

/* The verifier may have checked rq's password: recognise it again (a
 * cache hit now) and go on, or stay parked while its check is queued. */
static void verify_done(struct request *rq, long long now)
{
	enum recog g = rq->local.set ? RECOG_REFUSED : recognised(rq);
	if (g == RECOG_PENDING)
		return;
	park_unlink(rq->w, rq);
	rq->caller.verifying = false;
	rq->state = RQ_NEW;
	rq->t_parked_ms = now - rq->park_deadline_ms + rq->cfg->proxy.token_wait_ms;
	if (g == RECOG_GO && !rq->bx && !rq->cl.start_deferred) /* else the final call starts it */
		start_with_token(rq, now);
	request_resume(rq);
}

void proxy_verify_event(struct worker *w)
{
	long long now = clock_now_ms();
	struct request *rq = LIST_FIRST(&w->parked), *next;
	for (; rq; rq = next) {
		next = LIST_NEXT(rq, park_link);
		if (rq->caller.verifying)
			verify_done(rq, now);
	}
}

/* A request its gate let through: on its way (or to its answer). */
static void throttle_go(struct request *rq, long long now)
{
	start_with_token(rq, now);
	request_resume(rq);
}

void proxy_check_deadlines(struct worker *w, long long now_ms)
{
	struct request *rq = LIST_FIRST(&w->parked), *next;
	throttle_poll(w, now_ms, throttle_go);
	for (; rq; rq = next) {
		next = LIST_NEXT(rq, park_link);
		if (rq->park_deadline_ms > now_ms && request_client_left(rq, now_ms)) {
			park_unlink(w, rq); /* waited for a token or a password check: never sent */
			rq->caller.verifying = false;
			request_abandon(rq);
			continue;
		}
		if (rq->park_deadline_ms > now_ms)
			continue;
		park_unlink(w, rq);
		rq->t_parked_ms = rq->cfg->proxy.token_wait_ms;
		if (rq->caller.verifying) {
			rq->caller.verifying = false;
			rq->state = RQ_NEW;
			request_set_local(rq, 503, "caller_verify_timeout", "The password was not checked in time",
					  "the Basic password is still being checked");
		} else {
			request_set_local(rq, 503, "token_wait_timeout", "No token from Microsoft Entra ID in time",
					  "the first token for this route is still being requested");
		}
		rq->local.retry_after_s = 1;
		request_resume(rq);
	}
}

long long proxy_next_deadline(const struct worker *w)
{
	long long best = throttle_next_deadline(w);
	const struct request *rq;
	LIST_FOREACH (rq, &w->parked, park_link) {
		long long probe = request_left_check_due(rq);
		long long d = rq->park_deadline_ms < probe ? rq->park_deadline_ms : probe;
		if (!best || d < best)
			best = d;
	}
	return best;
}

void proxy_abort_all(struct worker *w)
{
	struct request *rq;
	LIST_FOREACH (rq, &w->all, all_link) {
		park_unlink(w, rq);
		relay_abort(rq);
		if (rq->state != RQ_RESPONDED && !rq->local.set) {
			request_set_local(rq, 503, "shutting_down", "The proxy is shutting down", NULL);
			rq->local.close = true;
		}
		request_resume(rq);
	}
}
