/*
 * rewrite.h - transparent routes: the upstream's absolute URLs in answers
 * (Location, OData-EntityId, @odata.nextLink, ...) become the URL the
 * client used, and the client's public URLs in a $batch request body
 * become the upstream's, so a client that follows a link stays on the
 * proxy (and gets the token) instead of calling the service without one.
 *
 * The mapping, per request: upstream origin + base path  <->  public base,
 * where the public base is the route's public_url, or the scheme and Host
 * the request came with (X-Forwarded-Proto/-Host from trusted_proxies),
 * plus match_path when strip_prefix is on. rewrite_urls = auto rewrites
 * whenever the two differ, and never when the client reached the proxy
 * under the upstream's own host name (a hosts-file redirect).
 *
 * When the client of a rewriting request accepts compression, the proxy
 * asks the upstream for any encoding curl decodes instead and answers the
 * client identity (docs/architecture.md: why).
 *
 * All calls are NULL-safe in the sense that a request without rewriting
 * (rq->rw == NULL) passes through every hook unchanged.
 */
#ifndef S2S_REWRITE_H
#define S2S_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/log.h"

struct request;
struct rewrite;

/* The upstream request is about to start: decide whether this request is
 * rewritten and set rq->rw (one heap block the request owns and frees with
 * free(); rewrite.c may move it). Idempotent. */
void rewrite_begin(struct request *rq);

/* Should the client's request header `name` stay away from the upstream?
 * (Accept-Encoding on a rewriting request: curl negotiates instead.) */
bool rewrite_drop_request_header(const struct request *rq, const char *name);

/* What to set as CURLOPT_ACCEPT_ENCODING, NULL = leave it unset. */
const char *rewrite_accept_encoding(const struct request *rq);

/*
 * A $batch request body held whole in memory: when its parts name the
 * public base, *body and *len are replaced by a rewritten copy owned by
 * rq->rw. body NULL: the body streams and cannot be rewritten (logged
 * when it is a $batch).
 */
void rewrite_request_body(struct request *rq, const char **body, size_t *len);

/* The upstream's final header block is in: decide about the body. Returns
 * true when its bytes change (rewritten or decoded): the upstream's
 * Content-Length no longer holds. An answer whose body is already complete
 * is rewritten at once and sent with its new length (answer.c); one still
 * arriving goes out chunked. */
bool rewrite_response_begin(struct request *rq);

/* A response header about to be forwarded: the value to send (value,
 * or buf holding the rewritten one), or NULL to leave the header out. */
const char *rewrite_header(struct request *rq, const char *name, const char *value, char *buf, size_t cap);

/* Read the body from the down ring into buf, rewritten when it is to be. */
size_t rewrite_read(struct request *rq, char *buf, size_t max);

/* The upstream body ended: what the rewriter still holds (0 when none). */
size_t rewrite_end(struct request *rq, char *buf, size_t max);

/* The most bytes that rewriting len bytes of the body can produce: each
 * URL rewritten takes at least `from`'s length of input and writes at
 * most twice `to`'s (every '/' escaped). len itself when the body is not
 * rewritten. */
size_t rewrite_bound(const struct request *rq, size_t len);

/* The upstream body is complete in the down ring: rewrite all of it into
 * buf (cap >= rewrite_bound of the ring's length), the held bytes too.
 * Returns the bytes written. */
size_t rewrite_whole(struct request *rq, char *buf, size_t cap);

/* What was rewritten: "headers", "body", "headers,body", or NULL. */
const char *rewrite_what(const struct request *rq);
/* The request is over: count a rewritten answer in the metrics (once). */
void rewrite_count(const struct request *rq);
/* The request log's "rewritten" (rewrite_what) and "batch_urls_rewritten" fields. */
void rewrite_log(const struct request *rq, struct log_line *l);

#endif
