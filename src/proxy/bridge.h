/*
 * bridge.h - buffered exchanges for the WS-Trust migration bridge: the
 * sign-in facade (sts_facade, answered locally by sts.c) and soap_bridge
 * routes (SOAP 1.2 Organization.svc -> SOAP 1.1 Organization.svc/web via
 * soap.c). Unlike every other request these are not streamed: the envelope
 * is rewritten whole, so the request body is collected (capped), converted
 * and sent from memory, and the upstream answer is collected up to
 * [proxy] soap_max_response, converted and answered.
 *
 * proxy.c and relay.c call these hooks only for a request whose
 * rq->bx is set (by bridge_begin); all run on the worker's thread.
 */
#ifndef S2S_BRIDGE_H
#define S2S_BRIDGE_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

struct request;
struct bridge;

#define BRIDGE_STS_MAX_BODY (64 * 1024) /* sign-in requests are small */
#define BRIDGE_MAX_REQUEST  (16u << 20) /* SOAP request cap when [proxy] max_body_bytes sets none lower */

/* Before route selection: is this a sign-in facade path (sts_facade on)? */
bool bridge_sts_path(const struct request *rq);

/*
 * After classification: attach a bridge to a facade request (rq->route
 * NULL) or to a POST for Organization.svc on a soap_bridge route; leave
 * every other request alone. Returns 0 (rq->bx set or not), -1 when
 * out of memory.
 */
int bridge_begin(struct request *rq);

/* A piece of request body: collected, never more than the cap. */
enum MHD_Result bridge_body(struct request *rq, const char *data, size_t *size);

/*
 * The request is complete. A facade request is answered now; a SOAP
 * request is converted. Returns true exactly once, when the caller must
 * start the upstream exchange (token, then relay_start).
 */
bool bridge_request_done(struct request *rq);

/* Answer when the exchange is over (or a local answer is set), else
 * suspend. Local answers become SOAP 1.2 faults. */
enum MHD_Result bridge_advance(struct request *rq);

/* relay.c: the upstream URL (Organization.svc/web?SdkClientVersion=..). */
long bridge_upstream_url(const struct request *rq, char *out, size_t cap);
/* relay.c: does this client header go upstream? */
bool bridge_forward_header(const char *name);
/* relay.c: extra request header lines, NULL-terminated. */
const char *const *bridge_header_lines(const struct request *rq);
/* relay.c: curl read / seek / write callbacks' bodies. */
size_t bridge_on_read(struct request *rq, char *buf, size_t max);
int bridge_on_seek(struct request *rq);
size_t bridge_on_write(struct request *rq, const char *data, size_t n);

/* NULL-safe; from request_unref. */
void bridge_free(struct bridge *br);

#endif
