/*
 * refusal.c - holding, diagnosing and rewinding upstream refusals (see
 * refusal.h). The held body stays in the down ring, unread: the response
 * queued afterwards streams it from there unchanged.
 */
#include "proxy/refusal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "diag/diag.h"
#include "diag/diaglog.h"
#include "proxy/relay.h"
#include "proxy/request.h"
#include "token/token.h"
#include "util/clock.h"
#include "proxy/worker.h"

/*
 * Bytes of a 400/401/403 body to collect before answering. Below
 * down.cap - CURL_MAX_WRITE_SIZE on_write never pauses, so collecting
 * cannot stall the transfer; past it (or REFUSAL_PEEK_MAX) we diagnose on
 * what we have.
 */
static size_t peek_limit(const struct request *rq)
{
	size_t cap = rq->down.cap > CURL_MAX_WRITE_SIZE ? rq->down.cap - CURL_MAX_WRITE_SIZE : 0;
	return cap < REFUSAL_PEEK_MAX ? cap : REFUSAL_PEEK_MAX;
}

bool refusal_holding(const struct request *rq)
{
	if (!diag_upstream_status_wanted(rq->up_status) || rq->is_head || rq->upstream_done)
		return false;
	if (rq->resp_length >= 0 && (int64_t)rbuf_len(&rq->down) >= rq->resp_length)
		return false;
	return rbuf_len(&rq->down) < peek_limit(rq);
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
	return rq->down.data ? ring_peek(&rq->down, out, cap) : 0;
}

const char *refusal_header(const struct request *rq, const char *name)
{
	for (unsigned i = 0; i < rq->n_rh; i++)
		if (strcasecmp(rq->rh_buf + rq->rh[i].name, name) == 0)
			return rq->rh_buf + rq->rh[i].value;
	return NULL;
}

void refusal_diagnose(struct request *rq)
{
	struct upstream_evidence ev;
	struct diagnosis d;
	char *body;
	size_t n = 0;

	if (!diag_upstream_status_wanted(rq->up_status) || !rq->route)
		return;
	body = malloc(REFUSAL_PEEK_MAX);
	if (body && rq->down.data)
		n = refusal_peek(rq, body, REFUSAL_PEEK_MAX);
	bool hit = diag_upstream(rq->route->audience_kind, rq->route->upstream.host, rq->up_status, body, n,
				 refusal_header(rq, "WWW-Authenticate"), rq->tok ? rq->tok->claims.aud : "", &ev, &d);
	free(body);
	if (!hit)
		return;
	rq->diagnosis = d.code;
	rq->diag_title = d.title;
	rq->diag_remediation = d.remediation;
	diaglog_upstream(clock_now_ms(), rq->route->name, rq->request_id, &d, &ev, rq->tok ? &rq->tok->claims : NULL,
			 rq->tok ? rq->tok->fp : NULL);
	if (rq->up_status == 401)
		token_reject(rq->tokens, rq->route->token_source, rq->tok_gen);
}

/* Growth is geometric; giving up (too large, out of memory) only means no replay. */
void refusal_keep_body(struct request *rq, const char *data, size_t n)
{
	size_t max = rq->cfg->proxy.replay_max_body, cap = rq->replay_body ? rq->replay_len : 0;
	if (rq->replay_skip || n == 0)
		return;
	/* a 429 was not executed, so any method may be resent after it (throttle.c) */
	bool resendable = hdr_method_idempotent(rq->method) || (rq->route && rq->route->throttle.retries > 0);
	if (!resendable || rq->replay_len + n > max) {
		rq->replay_skip = true;
		goto drop;
	}
	for (cap = cap < 4096 ? 4096 : cap; cap < rq->replay_len + n; cap *= 2)
		;
	char *nb = realloc(rq->replay_body, cap < max ? cap : max);
	if (!nb) {
		rq->replay_skip = true;
		goto drop;
	}
	rq->replay_body = nb;
	memcpy(rq->replay_body + rq->replay_len, data, n);
	rq->replay_len += n;
	return;
drop:
	if (rq->replay_body)
		explicit_bzero(rq->replay_body, rq->replay_len);
	free(rq->replay_body);
	rq->replay_body = NULL;
	rq->replay_len = 0;
}

bool refusal_body_held(const struct request *rq)
{
	/* a body only when all of it is kept (and so has fully arrived) */
	return !rq->has_body || (!rq->replay_skip && rq->up_eof && rq->replay_len == rq->bytes_in);
}

bool refusal_rewind(struct request *rq)
{
	if (rq->up_status != 401 || rq->replayed || !rq->route || rq->w->draining)
		return false;
	if (!refusal_body_held(rq) || (rq->has_body && !hdr_method_idempotent(rq->method)))
		return false;
	if (!token_reject(rq->tokens, rq->route->token_source, rq->tok_gen))
		return false;
	rq->replayed = true;
	refusal_reset(rq);
	return true;
}

void refusal_reset(struct request *rq)
{
	relay_abort(rq); /* drops the curl side's reference; the MHD side keeps rq */
	rq->upstream_done = false;
	rq->upstream_result = CURLE_OK;
	rq->curl_err[0] = '\0';
	rq->up_status = 0;
	rq->headers_ready = rq->in_body = false;
	rq->n_rh = 0;
	rq->rh_len = 0;
	rq->rh_overflow = false;
	rq->resp_length = -1;
	rq->pause_bits = 0;
	rq->down.head = rq->down.len = 0;
	rq->up.head = rq->up.len = 0;
	rq->up_sent = 0;
	rq->replay_pos = 0;
	rq->replay_feed = rq->has_body;
	rq->state = RQ_NEW;
}
