/*
 * refusal.h - what the proxy does with an upstream's 400/401/403 before
 * answering the client: hold it until its (small) body is in, diagnose it
 * (diag.c) and log it, drop a rejected token, and keep what a replay after
 * a 401 needs (a copy of an idempotent request's body). Runs on the
 * request's worker thread, like proxy.c and relay.c.
 */
#ifndef S2S_REFUSAL_H
#define S2S_REFUSAL_H

#include <stdbool.h>
#include <stddef.h>

struct request;

#define REFUSAL_PEEK_MAX (64 * 1024) /* body bytes examined for a diagnosis */

/* True while a 400/401/403 body is still arriving and should be waited for. */
bool refusal_holding(const struct request *rq);

/* Copy the unread response body (up to cap) without consuming it. */
size_t refusal_peek(const struct request *rq, char *out, size_t cap);

/* Diagnose a 400/401/403 (sets rq->diag.code etc.), log it and, after a
 * 401, drop the rejected token. A no-op for other statuses. */
void refusal_diagnose(struct request *rq);

/* Keep a copy of request body bytes for a replay (up to replay_max_body;
 * past that nothing is kept): idempotent methods, and any method on a
 * route that resends after a 429 (throttle_retries). */
void refusal_keep_body(struct request *rq, const char *data, size_t n);

/*
 * After a 401: when the request may be replayed (not replayed yet, no body
 * or a body kept whole, the token could be dropped), stop the transfer and
 * reset the response state so the request can start again. Returns true
 * when it did.
 */
bool refusal_rewind(struct request *rq);

/* Could the request be sent again as it was: no body, or all of it kept? */
bool refusal_body_held(const struct request *rq);

/* Stop the transfer and reset the response state so the request can start
 * again (state RQ_NEW; a kept body is fed from the copy). */
void refusal_reset(struct request *rq);

#endif
