/*
 * answer.c - queuing the client's answer with libmicrohttpd: a local
 * problem+json answer (request.local), the upstream's answer with its
 * forwardable headers (streamed from the down ring, or whole from a buffer
 * when the transfer is complete), and a diagnosed upstream refusal
 * translated to problem+json. The inbound side (proxy.c) decides when to
 * answer; this module only builds and queues. Worker thread only.
 */
#include "proxy/answer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "diag/diag.h"
#include "diag/problem.h"
#include "http/hdr.h"
#include "proxy/refusal.h"
#include "proxy/relay.h"
#include "proxy/throttle.h"
#include "proxy/rewrite.h"
#include "proxy/worker.h"
#include "util/log.h"

/* Bytes MHD asks a streaming response for at a time (a buffer of this size
 * per streamed answer; complete small answers do not stream). 64 KiB makes
 * a large download take a quarter of the sends 16 KiB took: 1 GiB went
 * from ~600 to ~880 MiB/s in the benchmark. */
#define BODY_BLOCK (64 * 1024)

bool answer_add_header(struct MHD_Response *r, const char *name, const char *value)
{
	if (!value || MHD_add_response_header(r, name, value) == MHD_YES)
		return true;
	log_msg(LOG_WARN, "response_header_dropped", "cannot add response header %s", name);
	return false;
}

/* libmicrohttpd 1.0.10 forgets a Date header added before a Connection
 * header (add_response_header_connection assigns the response's automatic
 * flags instead of adding to them) and then writes a Date of its own: two
 * Date fields. Adding the Date again after it sets the flag again
 * (internals.md L-MHD-16). */
void answer_add_close(struct MHD_Response *r)
{
	char date[64];
	if (!answer_add_header(r, MHD_HTTP_HEADER_CONNECTION, "close"))
		return;
	const char *d = MHD_get_response_header(r, MHD_HTTP_HEADER_DATE);
	if (!d || strlen(d) >= sizeof date)
		return;
	memcpy(date, d, strlen(d) + 1);
	if (MHD_del_response_header(r, MHD_HTTP_HEADER_DATE, date) == MHD_YES)
		MHD_add_response_header(r, MHD_HTTP_HEADER_DATE, date);
}

enum MHD_Result answer_queue(struct request *rq, int status, struct MHD_Response *r)
{
	enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	rq->state = RQ_RESPONDED;
	rq->resp.final_status = status;
	return ret;
}

enum MHD_Result answer_local(struct request *rq)
{
	struct diagnosis d = {0};
	struct problem p = {
	    .status = rq->local.status,
	    .code = rq->local.code,
	    .title = rq->local.title,
	    .detail = rq->local.detail[0] ? rq->local.detail : NULL,
	    .request_id = rq->request_id,
	};
	if (rq->route) {
		const struct config *cfg = rq->cfg;
		const struct token_source_cfg *ts = &cfg->token_sources[rq->route->token_source];
		p.route = rq->route->name;
		p.audience = ts->resource;
		p.client_id = cfg->credentials[ts->credential].client_id;
	}
	throttle_problem(rq, &p); /* identity, limit and wait of a throttled_upstream */
	char remedy[1024];
	if (rq->local.has_failure) {
		p.token_failure = &rq->local.failure;
		diag_token_failure(&rq->local.failure, &d);
		p.remediation = d.remediation;
		if (d.remediation && rq->local.note[0]) {
			snprintf(remedy, sizeof remedy, "%s %s", d.remediation, rq->local.note);
			p.remediation = remedy;
		}
	}
	size_t len = 0;
	char *body = problem_render(&p, &len);
	struct MHD_Response *r = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
				      : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO; /* MHD closes the connection */
	}
	answer_add_header(r, "Content-Type", "application/problem+json");
	answer_add_header(r, "Cache-Control", "no-store");
	if (rq->local.retry_after_s > 0) {
		char ra[24];
		snprintf(ra, sizeof ra, "%ld", rq->local.retry_after_s);
		answer_add_header(r, "Retry-After", ra);
	}
	if (rq->local.status == 405) /* RFC 9110 15.5.6 */
		answer_add_header(r, "Allow", hdr_methods_allowed);
	if (rq->local.status == 401 && rq->caller.challenge) { /* RFC 7617; the realm has no '"' (config) */
		char ch[320];
		snprintf(ch, sizeof ch, "Basic realm=\"%s\", charset=\"UTF-8\"", rq->cfg->proxy.basic_realm);
		answer_add_header(r, "WWW-Authenticate", ch);
	}
	if (rq->local.close || rq->w->draining)
		answer_add_close(r);
	return answer_queue(rq, rq->local.status, r);
}

/* ---- streaming the upstream response --------------------------------------- */

static ssize_t on_body_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct request *rq = cls;
	(void)pos;
	size_t n = rewrite_read(rq, buf, max);
	if (n == 0) {
		relay_unpause(rq); /* may deliver synchronously into the ring */
		n = rewrite_read(rq, buf, max);
	}
	if (n == 0 && rq->us.done && rq->us.result == CURLE_OK)
		n = rewrite_end(rq, buf, max); /* what the rewriter held back */
	if (n > 0) {
		rq->resp.bytes_out += n;
		relay_unpause(rq);
		return (ssize_t)n;
	}
	if (rq->us.done)
		return rq->us.result == CURLE_OK ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
	request_suspend(rq); /* on_write or relay_done resumes (never return 0 unsuspended: internals.md L-MHD-4) */
	return 0;
}

static void on_body_free(void *cls)
{
	request_unref(cls);
}

static bool status_has_body(long status)
{
	return status != 204 && status != 304 && !(status >= 100 && status < 200);
}

/*
 * translate_upstream_errors = problem: answer the diagnosed refusal with
 * problem+json (the upstream's status kept, its error embedded). The
 * upstream transfer stops here; WWW-Authenticate is kept for clients that
 * act on it.
 */
static enum MHD_Result queue_translated(struct request *rq)
{
	const struct config *cfg = rq->cfg;
	const struct token_source_cfg *ts = &cfg->token_sources[rq->route->token_source];
	struct problem p = {
	    .status = (int)rq->resp.status,
	    .code = rq->diag.code,
	    .title = rq->diag.title,
	    .remediation = rq->diag.remediation,
	    .route = rq->route->name,
	    .audience = ts->resource,
	    .client_id = cfg->credentials[ts->credential].client_id,
	    .request_id = rq->request_id,
	    .upstream_status = rq->resp.status,
	};
	char *orig = malloc(REFUSAL_PEEK_MAX), *body;
	size_t len = 0;

	if (orig && rq->resp.down.data)
		p.upstream_body_len = refusal_peek(rq, orig, REFUSAL_PEEK_MAX);
	p.upstream_body = orig;
	body = problem_render(&p, &len);
	free(orig);
	const char *www = request_upstream_header(rq, "WWW-Authenticate");
	char keep[1024];
	snprintf(keep, sizeof keep, "%s", www ? www : ""); /* rh_buf stays valid, but copy before abort anyway */
	relay_abort(rq);
	struct MHD_Response *r = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r) {
		free(body);
		return MHD_NO;
	}
	answer_add_header(r, "Content-Type", "application/problem+json");
	answer_add_header(r, "Cache-Control", "no-store");
	answer_add_header(r, "S2S-Proxy-Diagnosis", rq->diag.code);
	if (keep[0] && hdr_value_ok(keep, strlen(keep)))
		answer_add_header(r, "WWW-Authenticate", keep);
	if (rq->w->draining)
		answer_add_close(r);
	return answer_queue(rq, (int)rq->resp.status, r);
}

/* The answer is body[0..len), a malloc'd buffer MHD takes over (freed here
 * when no response can be made); the ring is no longer needed. */
static struct MHD_Response *buffer_response(struct request *rq, char *body, size_t len)
{
	/* MUST_FREE: MHD owns body once the response exists */
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);

	if (!r) {
		free(body);
		return NULL;
	}
	rq->resp.bytes_out = len;
	pool_ring_put(&rq->w->pool, &rq->resp.down);
	return r;
}

/*
 * The upstream transfer is complete, so the whole body sits in the down
 * ring (curl cannot finish while a write is paused). A response from a
 * buffer lets libmicrohttpd send the header block and the body in one
 * send(2) where a content reader costs two; on loopback each send also
 * runs the receiver's softirq, so this is most of the cost of a small
 * answer. The ring goes back to the worker's pool at once.
 */
static struct MHD_Response *whole_body_response(struct request *rq)
{
	size_t len = rbuf_len(&rq->resp.down);
	char *copy = malloc(len + 1); /* + 1: never malloc(0) */

	if (!copy)
		return NULL;
	rbuf_read(&rq->resp.down, copy, len);
	return buffer_response(rq, copy, len);
}

/*
 * The same for an answer whose body is rewritten: the whole body is in the
 * ring, so it is rewritten now into one buffer and goes out with a
 * Content-Length in one send, instead of chunked from the content reader
 * (a send per block and chunk framing: a fifth of a rewriting route's CPU
 * on a 64 KiB page). Only when the rewrite's worst case fits
 * WHOLE_REWRITE_MAX; larger answers stream. *streams says which: NULL
 * with *streams false is a failure.
 */
#define WHOLE_REWRITE_MAX (1024 * 1024)

static struct MHD_Response *whole_rewritten_response(struct request *rq, bool *streams)
{
	size_t cap = rewrite_bound(rq, rbuf_len(&rq->resp.down));
	char *out;

	*streams = cap > WHOLE_REWRITE_MAX;
	if (*streams || !(out = malloc(cap + 1)))
		return NULL;
	return buffer_response(rq, out, rewrite_whole(rq, out, cap));
}

/*
 * Does the upstream's header block, as it will be forwarded, fit in what
 * MHD's connection pool has left next to this request? When it does not,
 * libmicrohttpd closes the connection without an answer, so the proxy
 * answers 502 itself. The request side is estimated from above: its bytes
 * plus MHD's index entry per field.
 */
#define MHD_HEADER_ENTRY  64  /* MHD's per-field index entry, rounded up */
#define MHD_RESPONSE_BASE 512 /* status line, Date, framing, Connection */

static bool fits_mhd_pool(const struct request *rq, const char *conn_hdr)
{
	size_t need =
	    MHD_RESPONSE_BASE + rq->cl.header_bytes + strlen(rq->target) + (size_t)rq->cl.n_headers * MHD_HEADER_ENTRY;
	for (unsigned i = 0; i < rq->resp.n_rh; i++) {
		const char *name = rq->resp.rh_buf + rq->resp.rh[i].name,
			   *value = rq->resp.rh_buf + rq->resp.rh[i].value;
		if (hdr_response_forwardable(name, conn_hdr))
			need += strlen(name) + strlen(value) + 4;
	}
	return need <= rq->w->mhd_pool_bytes;
}

static const char *connection_header(const struct request *rq)
{
	const char *conn_hdr = NULL;
	for (unsigned i = 0; i < rq->resp.n_rh; i++)
		if (strcasecmp(rq->resp.rh_buf + rq->resp.rh[i].name, "Connection") == 0)
			conn_hdr = rq->resp.rh_buf + rq->resp.rh[i].value;
	return conn_hdr;
}

enum MHD_Result answer_upstream(struct request *rq)
{
	struct MHD_Response *r;
	const char *conn_hdr = connection_header(rq);
	refusal_diagnose(rq);
	if (rq->diag.code && rq->route->translate_upstream_errors)
		return queue_translated(rq);
	if (!fits_mhd_pool(rq, conn_hdr)) {
		relay_abort(rq);
		request_set_local(
		    rq, 502, "upstream_bad_response", "Upstream response headers could not be forwarded",
		    "the upstream's header block is larger than the proxy forwards (max_header_bytes sets the room)");
		return answer_local(rq);
	}
	bool body = status_has_body(rq->resp.status) && !rq->is_head;
	bool changed = rewrite_response_begin(rq); /* then the length is unknown until the end */
	bool whole = body && rq->us.done && rq->us.result == CURLE_OK, streams = true;
	if (whole && !changed) {
		r = whole_body_response(rq);
	} else if (whole && ((r = whole_rewritten_response(rq, &streams)) != NULL || !streams)) {
		/* rewritten at once (r NULL: out of memory, below) */
	} else if (body || rq->is_head) {
		uint64_t size = rq->resp.length >= 0 && !changed ? (uint64_t)rq->resp.length : MHD_SIZE_UNKNOWN;
		r = MHD_create_response_from_callback(size, BODY_BLOCK, on_body_read, rq, on_body_free);
		if (r)
			request_ref(rq); /* the response's reference, dropped in on_body_free */
	} else {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!r)
		return MHD_NO;
	for (unsigned i = 0; i < rq->resp.n_rh; i++) {
		const char *name = rq->resp.rh_buf + rq->resp.rh[i].name,
			   *value = rq->resp.rh_buf + rq->resp.rh[i].value;
		char mapped[4096];
		if (!hdr_response_forwardable(name, conn_hdr))
			continue;
		if (!(value = rewrite_header(rq, name, value, mapped, sizeof mapped)))
			continue; /* Content-Encoding of a body curl decoded */
		if (!*value || !hdr_value_ok(value, strlen(value)))
			continue; /* MHD cannot send empty values (internals.md L-MHD-9) */
		answer_add_header(r, name, value);
	}
	if (rq->diag.code)
		answer_add_header(r, "S2S-Proxy-Diagnosis", rq->diag.code);
	if (rq->w->draining)
		answer_add_close(r);
	return answer_queue(rq, (int)rq->resp.status, r);
}
