/*
 * bridge.c - buffered SOAP and sign-in exchanges (see bridge.h).
 *
 * Life of a bridged SOAP request: bridge_begin (first call) -> bridge_body
 * collects -> bridge_request_done converts SOAP 1.2 to 1.1 and checks the
 * sign-in handle -> proxy.c gets a token and relay.c sends `out` from
 * memory with bridge_header_lines -> bridge_on_write collects the answer
 * (soap_max_response) -> bridge_advance converts SOAP 1.1 to 1.2 and
 * queues it. Any failure on the way is answered as a SOAP 1.2 fault,
 * since a legacy client parses nothing else.
 */
#include "proxy/bridge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/log.h"
#include "proxy/answer.h"
#include "proxy/request.h"
#include "proxy/throttle.h"
#include "wstrust/soap.h"
#include "wstrust/sts.h"
#include "token/token.h"
#include "proxy/worker.h"
#include "util/wipe.h"

_Static_assert(CONFIG_SOAP_RESPONSE_MAX <= SOAP_MAX_INPUT, "soap_max_response above what the XML parser takes");

#define ORG_SVC_PATH "/XRMServices/2011/Organization.svc"
#define SOAP12_CT    "application/soap+xml; charset=utf-8"

struct bridge {
	bool sts;     /* a facade request, no upstream */
	bool started; /* bridge_request_done returned true */
	bool too_large_in, too_large_out;
	char *in; /* the client's body, then released */
	size_t in_len, in_cap, in_max;
	char *out; /* the converted body sent upstream */
	size_t out_len, out_pos;
	char *resp; /* the upstream answer */
	size_t resp_len, resp_cap;
	struct soap_request_info info;
	char action_line[SOAP_ACTION_MAX + 16];
	const char *lines[3];
	/* the answer */
	int status;
	const char *ctype;
	char *body;
	size_t body_len;
};

/* Is the request's path, after strip_prefix (as route_upstream_url does), `path`? */
static bool path_is(const struct request *rq, const char *path)
{
	const char *p = rq->match.path;
	size_t n = rq->match.path_len;
	if (!p)
		return false;
	if (rq->route->strip_prefix) {
		size_t pl = strlen(rq->route->match_path);
		if (pl > 0 && rq->route->match_path[pl - 1] == '/')
			pl--; /* keep the slash that starts the remainder */
		pl = pl < n ? pl : n;
		p += pl;
		n -= pl;
	}
	return strlen(path) == n && strncasecmp(p, path, n) == 0;
}

bool bridge_sts_path(const struct request *rq)
{
	return rq->cfg->proxy.sts_facade && sts_is_path(rq->target, strcspn(rq->target, "?"));
}

/* The client's body may hold a password (sign-in): wiped, then freed. */
static void wipe_in(struct bridge *br)
{
	wipe_free(br->in, br->in_cap);
	br->in = NULL;
	br->in_len = br->in_cap = 0;
}

/* Past the cap: a local 413, so proxy.c drains a bounded amount and closes. */
static void refuse_too_large(struct request *rq)
{
	rq->bx->too_large_in = true;
	request_set_local(rq, 413, "body_too_large", "Request body too large", NULL);
	rq->local.close = true;
	wipe_in(rq->bx);
}

int bridge_begin(struct request *rq)
{
	bool sts = !rq->route && bridge_sts_path(rq);
	bool soap = rq->route && rq->route->soap_bridge && strcmp(rq->method, "POST") == 0 && path_is(rq, ORG_SVC_PATH);
	if (!sts && !soap)
		return 0;
	struct bridge *br = calloc(1, sizeof *br);
	if (!br)
		return -1;
	br->sts = sts;
	uint64_t cap = rq->cfg->proxy.max_body_bytes;
	if (rq->route && rq->route->max_body_bytes && (!cap || rq->route->max_body_bytes < cap))
		cap = rq->route->max_body_bytes;
	br->in_max = sts ? BRIDGE_STS_MAX_BODY : (cap && cap < BRIDGE_MAX_REQUEST ? (size_t)cap : BRIDGE_MAX_REQUEST);
	if (sts) { /* whole at once: a realloc would leave copies of the password behind */
		br->in = malloc(br->in_max + 1);
		if (!br->in) {
			free(br);
			return -1;
		}
		br->in_cap = br->in_max + 1;
	}
	static const struct bridge_ops ops = {bridge_upstream_url, bridge_forward_header, bridge_header_lines,
					      bridge_on_read,      bridge_on_seek,        bridge_on_write,
					      bridge_free};
	rq->bx = br;
	rq->bx_ops = &ops; /* relay.c calls these; request_unref frees through them */
	if (rq->cl.body_len >= 0 && (uint64_t)rq->cl.body_len > br->in_max)
		refuse_too_large(rq); /* known from Content-Length: refused before reading */
	return 0;
}

/* Append to a buffer growing up to max; false when it would pass max. */
static bool append(char **buf, size_t *len, size_t *cap, size_t max, const char *data, size_t n)
{
	if (n > max - *len)
		return false;
	if (*len + n + 1 > *cap) {
		size_t want = *cap ? *cap : 16384;
		while (want < *len + n + 1)
			want *= 2;
		if (want > max + 1)
			want = max + 1;
		char *p = realloc(*buf, want);
		if (!p)
			return false;
		*buf = p;
		*cap = want;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

enum MHD_Result bridge_body(struct request *rq, const char *data, size_t *size)
{
	struct bridge *br = rq->bx;
	rq->cl.bytes_in += *size;
	if (!br->too_large_in && !append(&br->in, &br->in_len, &br->in_cap, br->in_max, data, *size))
		refuse_too_large(rq);
	*size = 0;
	return MHD_YES;
}

/* ---- answers -------------------------------------------------------------- */

static void set_answer(struct bridge *br, int status, const char *ctype, char *body, size_t len)
{
	free(br->body);
	br->status = status;
	br->ctype = ctype;
	br->body = body;
	br->body_len = len;
}

static void set_fault(struct request *rq, int status, const char *code, const char *subcode_ns, const char *subcode,
		      const char *reason)
{
	struct bridge *br = rq->bx;
	size_t len = 0;
	char *f = soap_fault_12(code, subcode_ns, subcode, reason, NULL, br->info.message_id, &len);
	set_answer(br, f ? status : 500, SOAP12_CT, f, len);
	log_msg(LOG_WARN, "soap_bridge_fault", "request %s: %s", rq->request_id, reason);
}

static void sts_request_done(struct request *rq)
{
	struct bridge *br = rq->bx;
	struct sts_reply rep;
	const char *q = strchr(rq->target, '?');
	if (br->too_large_in) {
		set_fault(rq, 413, "Sender", NULL, NULL, "the sign-in request is too large");
		return;
	}
	if (sts_answer(rq->cfg->proxy.legacy_identities_file, rq->target, strcspn(rq->target, "?"), q ? q + 1 : NULL,
		       br->in ? br->in : "", br->in_len, (long long)time(NULL), &rep) < 0) {
		set_fault(rq, 500, "Receiver", NULL, NULL, "out of memory");
		return;
	}
	set_answer(br, rep.status, rep.content_type, rep.body, rep.len);
	wipe_in(br); /* it held a password */
}

/* Values that go into a header (the action) or the query (the SDK
 * version): visible ASCII without the characters in `bad`; the action must
 * be there. */
static bool token_chars(const char *s, const char *bad)
{
	if (s[0] == '\0')
		return bad[0] != '"'; /* only the action is required */
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || strchr(bad, *s))
			return false;
	return true;
}

/* The sign-in handle must be live and bound to the route's credential; the
 * identity's object id, if any, is who the request acts for (relay.c). */
static bool handle_ok(struct request *rq)
{
	char cred[STS_CRED_MAX], oid[STS_OID_MAX];
	const struct config *cfg = rq->cfg;
	if (!cfg->proxy.sts_facade)
		return true; /* no facade: the route's access control alone decides */
	if (!sts_handle_identity(rq->bx->info.handle, (long long)time(NULL), cred, sizeof cred, oid))
		return false;
	if (oid[0]) /* the signed-in user, over a [caller:NAME] impersonate */
		snprintf(rq->caller.act_for, sizeof rq->caller.act_for, "%s", oid);
	const struct token_source_cfg *ts = &cfg->token_sources[rq->route->token_source];
	return strcmp(cfg->credentials[ts->credential].name, cred) == 0;
}

bool bridge_request_done(struct request *rq)
{
	struct bridge *br = rq->bx;
	if (br->started || br->body || rq->local.set)
		return false;
	if (br->sts) {
		sts_request_done(rq);
		return false;
	}
	if (br->too_large_in) {
		set_fault(rq, 413, "Sender", NULL, NULL, "the request is larger than the proxy accepts");
		return false;
	}
	int r = soap_request_to_11(br->in ? br->in : "", br->in_len, &br->out, &br->out_len, &br->info);
	wipe_in(br);
	if (r != SOAP_OK) {
		bool ours = soap_err_internal(r);
		set_fault(rq, ours ? 500 : 400, ours ? "Receiver" : "Sender", NULL, NULL, soap_strerror(r));
		return false;
	}
	if (!token_chars(br->info.action, "\"\\") || !token_chars(br->info.sdk_version, "&#%+?/ ")) {
		set_fault(rq, 400, "Sender", NULL, NULL,
			  "the request has no usable WS-Addressing Action or SdkClientVersion");
		return false;
	}
	if (!handle_ok(rq)) {
		set_fault(rq, 500, "Sender", SOAP_NS_WSSE, "a:InvalidSecurity",
			  "An error occurred when verifying security for the message.");
		return false;
	}
	snprintf(br->action_line, sizeof br->action_line, "SOAPAction: \"%s\"", br->info.action);
	br->lines[0] = "Content-Type: text/xml; charset=utf-8";
	br->lines[1] = br->action_line;
	rq->cl.has_body = true;
	rq->cl.body_len = (int64_t)br->out_len;
	br->started = true;
	return true;
}

/* The upstream exchange is over: convert its answer. */
static void soap_response_done(struct request *rq)
{
	struct bridge *br = rq->bx;
	char reason[512];
	bool fault = false;
	if (br->too_large_out) {
		snprintf(reason, sizeof reason,
			 "the response exceeds soap_max_response (%zu bytes); ask for smaller pages",
			 rq->cfg->proxy.soap_max_response);
		set_fault(rq, 502, "Receiver", NULL, NULL, reason);
		return;
	}
	if (rq->us.result != CURLE_OK || !rq->resp.headers_ready) {
		snprintf(reason, sizeof reason, "the upstream could not be reached: %s",
			 rq->us.curl_err[0] ? rq->us.curl_err : curl_easy_strerror(rq->us.result));
		set_fault(rq, rq->us.result == CURLE_OPERATION_TIMEDOUT ? 504 : 502, "Receiver", NULL, NULL, reason);
		return;
	}
	char *out = NULL;
	size_t len = 0;
	int r = soap_response_to_12(br->resp ? br->resp : "", br->resp_len, br->info.action, br->info.message_id, &out,
				    &len, &fault);
	if (rq->resp.status == 401) /* the token was refused: the next request gets a fresh one */
		token_reject(rq->tokens, rq->route->token_source, rq->diag.tok_gen);
	if (r != SOAP_OK) {
		snprintf(reason, sizeof reason, "the upstream answered HTTP %ld without a SOAP 1.1 envelope (%s)",
			 rq->resp.status, soap_strerror(r));
		set_fault(rq, rq->resp.status == 401 || rq->resp.status == 403 ? (int)rq->resp.status : 502,
			  rq->resp.status == 401 || rq->resp.status == 403 ? "Sender" : "Receiver", NULL, NULL, reason);
		return;
	}
	set_answer(br, (int)rq->resp.status, SOAP12_CT, out, len);
}

static enum MHD_Result queue_answer(struct request *rq)
{
	struct bridge *br = rq->bx;
	struct MHD_Response *r = MHD_create_response_from_buffer(br->body_len, br->body, MHD_RESPMEM_MUST_FREE);
	if (!r)
		return MHD_NO;
	br->body = NULL; /* the response owns it now */
	answer_add_header(r, "Content-Type", br->ctype);
	answer_add_header(r, "Cache-Control", "no-store");
	if (!br->sts && rq->resp.headers_ready) {
		answer_add_header(r, "Retry-After", request_upstream_header(rq, "Retry-After"));
		answer_add_header(r, "x-ms-service-request-id", request_upstream_header(rq, "x-ms-service-request-id"));
	}
	if (rq->local.close || br->too_large_in || rq->w->draining)
		answer_add_close(r);
	rq->resp.bytes_out = br->body_len;
	return answer_queue(rq, br->status, r);
}

enum MHD_Result bridge_advance(struct request *rq)
{
	struct bridge *br = rq->bx;
	if (!br->body && rq->local.set) {
		char reason[512];
		snprintf(reason, sizeof reason, "%s%s%s", rq->local.title ? rq->local.title : "error",
			 rq->local.detail[0] ? ": " : "", rq->local.detail);
		set_fault(rq, rq->local.status, rq->local.status < 500 ? "Sender" : "Receiver", NULL, NULL, reason);
	}
	if (!br->body && br->started && rq->state == RQ_FORWARDING && rq->us.done) {
		throttle_bridged(rq, br->resp, br->resp_len, clock_now_ms()); /* a protection fault closes the gate */
		soap_response_done(rq);
	}
	if (br->body)
		return queue_answer(rq);
	request_suspend(rq); /* token, upstream or deadline events resume */
	return MHD_YES;
}

/* ---- relay.c hooks ----------------------------------------------------------- */

long bridge_upstream_url(const struct request *rq, char *out, size_t cap)
{
	char base[ROUTE_MAX_TARGET + 2048];
	const struct bridge *br = rq->bx;
	if (route_upstream_url(&rq->match, base, sizeof base) < 0)
		return -1;
	size_t q = strcspn(base, "?");
	bool has_query = base[q] == '?';
	bool has_ver = has_query && strstr(base + q, "SdkClientVersion=");
	const char *ver = br->info.sdk_version[0] ? br->info.sdk_version : "9.2";
	int n;
	if (has_ver)
		n = snprintf(out, cap, "%.*s/web%s", (int)q, base, base + q);
	else
		n = snprintf(out, cap, "%.*s/web%s%sSdkClientVersion=%s", (int)q, base, base + q, has_query ? "&" : "?",
			     ver);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

bool bridge_forward_header(const char *name)
{
	/* Accept-Encoding too: a compressed answer could not be converted */
	static const char *const dropped[] = {"Content-Type", "SOAPAction", "Content-Length", "Accept-Encoding"};
	for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
		if (strcasecmp(name, dropped[i]) == 0)
			return false;
	return true;
}

const char *const *bridge_header_lines(const struct request *rq)
{
	return rq->bx && rq->bx->started ? rq->bx->lines : NULL;
}

size_t bridge_on_read(struct request *rq, char *buf, size_t max)
{
	struct bridge *br = rq->bx;
	size_t n = br->out_len - br->out_pos < max ? br->out_len - br->out_pos : max;
	memcpy(buf, br->out + br->out_pos, n);
	br->out_pos += n;
	rq->us.body_sent += n;
	return n;
}

int bridge_on_seek(struct request *rq)
{
	rq->bx->out_pos = 0;
	rq->us.body_sent = 0;
	return CURL_SEEKFUNC_OK;
}

size_t bridge_on_write(struct request *rq, const char *data, size_t n)
{
	struct bridge *br = rq->bx;
	if (rq->cl.gone)
		return 0;
	if (!append(&br->resp, &br->resp_len, &br->resp_cap, rq->cfg->proxy.soap_max_response, data, n)) {
		br->too_large_out = true;
		return 0; /* ends the transfer with CURLE_WRITE_ERROR */
	}
	return n;
}

void bridge_free(struct bridge *br)
{
	if (!br)
		return;
	wipe_in(br);
	free(br->out);
	free(br->resp);
	free(br->body);
	explicit_bzero(&br->info, sizeof br->info);
	free(br);
}
