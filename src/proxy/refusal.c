/*
 * refusal.c - holding, diagnosing and rewinding upstream refusals (see
 * refusal.h). The held body stays in the down ring, unread: the response
 * queued afterwards streams it from there unchanged.
 */
#include "proxy/refusal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag/diag.h"
#include "diag/diaglog.h"
#include "proxy/relay.h"
#include "proxy/request.h"
#include "token/token.h"
#include "util/clock.h"
#include "proxy/worker.h"
#include "util/wipe.h"

/*
 * Bytes of a 400/401/403 body to collect before answering. Below
 * down.cap - CURL_MAX_WRITE_SIZE on_write never pauses, so collecting
 * cannot stall the transfer; past it (or REFUSAL_PEEK_MAX) we diagnose on
 * what we have.
 */
static size_t peek_limit(const struct request *rq)
{
	size_t cap = rq->resp.down.cap > CURL_MAX_WRITE_SIZE ? rq->resp.down.cap - CURL_MAX_WRITE_SIZE : 0;
	return cap < REFUSAL_PEEK_MAX ? cap : REFUSAL_PEEK_MAX;
}

bool refusal_holding(const struct request *rq)
{
	if (!diag_upstream_status_wanted(rq->resp.status) || rq->is_head || rq->us.done)
		return false;
	if (rq->resp.length >= 0 && (int64_t)rbuf_len(&rq->resp.down) >= rq->resp.length)
		return false;
	return rbuf_len(&rq->resp.down) < peek_limit(rq);
}

static size_t ring_peek(const struct rbuf *rb, char *out, size_t cap)
{
	size_t n = rb->len < cap ? rb->len : cap;
	for (size_t i = 0; i < n;) {
		size_t pos = (rb->head + i) % rb->cap;
		size_t chunk = rb->cap - pos < n - i ? rb->cap - pos : n - i;
		memcpy(out + i, rb->data + pos, chunk);
		i += chunk;
	}
	return n;
}

size_t refusal_peek(const struct request *rq, char *out, size_t cap)
{
	return rq->resp.down.data ? ring_peek(&rq->resp.down, out, cap) : 0;
}

void refusal_diagnose(struct request *rq)
{
	struct upstream_evidence ev;
	struct diagnosis d;
	char *body;
	size_t n = 0;

	if (!diag_upstream_status_wanted(rq->resp.status) || !rq->route)
		return;
	body = malloc(REFUSAL_PEEK_MAX);
	if (body && rq->resp.down.data)
		n = refusal_peek(rq, body, REFUSAL_PEEK_MAX);
	bool hit = diag_upstream(rq->route->audience_kind, rq->route->upstream.host, rq->resp.status, body, n,
				 request_upstream_header(rq, "WWW-Authenticate"),
				 rq->diag.tok ? rq->diag.tok->claims.aud : "", &ev, &d);
	if (rq->caller.impersonate && diag_impersonation(rq->resp.status, &ev, &d)) /* caller.h */
		hit = true;
	free(body);
	if (!hit)
		return;
	rq->diag.code = d.code;
	rq->diag.title = d.title;
	rq->diag.remediation = d.remediation;
	diaglog_upstream(clock_now_ms(), rq->route->name, rq->request_id, &d, &ev,
			 rq->diag.tok ? &rq->diag.tok->claims : NULL, rq->diag.tok ? rq->diag.tok->fp : NULL);
	if (rq->resp.status == 401)
		token_reject(rq->tokens, rq->route->token_source, rq->diag.tok_gen);
}

/* Growth is geometric; giving up (too large, out of memory) only means no replay. */
void refusal_keep_body(struct request *rq, const char *data, size_t n)
{
	size_t max = rq->cfg->proxy.replay_max_body, cap = rq->replay.cap;
	if (rq->replay.skip || n == 0)
		return;
	/* a 429 was not executed, so any method may be resent after it (throttle.c) */
	bool resendable = hdr_method_idempotent(rq->method) || (rq->route && rq->route->throttle.retries > 0);
	if (!resendable || rq->replay.len + n > max) {
		rq->replay.skip = true;
		goto drop;
	}
	if (rq->replay.len + n > cap) { /* grow by doubling: a realloc per chunk would copy O(n^2) */
		for (cap = cap < 4096 ? 4096 : cap; cap < rq->replay.len + n; cap *= 2)
			;
		cap = cap < max ? cap : max;
		char *nb = realloc(rq->replay.body, cap);
		if (!nb) {
			rq->replay.skip = true;
			goto drop;
		}
		rq->replay.body = nb;
		rq->replay.cap = cap;
	}
	memcpy(rq->replay.body + rq->replay.len, data, n);
	rq->replay.len += n;
	return;
drop:
	wipe_free(rq->replay.body, rq->replay.len);
	rq->replay.body = NULL;
	rq->replay.len = rq->replay.cap = 0;
}

bool refusal_body_held(const struct request *rq)
{
	/* a body only when all of it is kept (and so has fully arrived) */
	return !rq->cl.has_body || (!rq->replay.skip && rq->cl.up_eof && rq->replay.len == rq->cl.bytes_in);
}

bool refusal_rewind(struct request *rq)
{
	if (rq->resp.status != 401 || rq->replay.done || !rq->route || rq->w->draining)
		return false;
	if (!refusal_body_held(rq) || (rq->cl.has_body && !hdr_method_idempotent(rq->method)))
		return false;
	if (!token_reject(rq->tokens, rq->route->token_source, rq->diag.tok_gen))
		return false;
	rq->replay.done = true;
	refusal_reset(rq);
	return true;
}

void refusal_reset(struct request *rq)
{
	relay_abort(rq); /* drops the curl side's reference; the MHD side keeps rq */
	rq->us.done = false;
	rq->us.result = CURLE_OK;
	rq->us.curl_err[0] = '\0';
	rq->resp.status = 0;
	rq->resp.headers_ready = rq->resp.in_body = false;
	rq->resp.n_rh = 0;
	rq->resp.rh_len = 0;
	rq->resp.rh_overflow = false;
	rq->resp.length = -1;
	rq->us.pause_bits = 0;
	rq->resp.down.head = rq->resp.down.len = 0;
	rq->cl.up.head = rq->cl.up.len = 0;
	rq->us.body_sent = 0;
	rq->replay.pos = 0;
	rq->replay.feed = rq->cl.has_body;
	rq->state = RQ_NEW;
}
