/*
 * answer.h - queue the client's answer with libmicrohttpd (from an MHD
 * access-handler call, on the worker's thread). The answer_* functions
 * that queue set rq->state to RQ_RESPONDED and rq->resp.final_status, and
 * return what the access handler returns: MHD_NO when no response could be
 * built (MHD then closes the connection).
 */
#ifndef S2S_ANSWER_H
#define S2S_ANSWER_H

#include <microhttpd.h>
#include <stdbool.h>

#include "proxy/request.h"

/* Add a header to a response being built; logs and returns false when MHD
 * refuses it (internals.md L-MHD-9). A NULL value adds nothing (true). */
bool answer_add_header(struct MHD_Response *r, const char *name, const char *value);
/* Connection: close, keeping the response's Date the only one (L-MHD-16). */
void answer_add_close(struct MHD_Response *r);

/* Queue r (built by the caller) with status, then drop the caller's
 * reference to r; the request is answered from here on. */
enum MHD_Result answer_queue(struct request *rq, int status, struct MHD_Response *r);

/* The local answer decided in rq->local, as problem+json. */
enum MHD_Result answer_local(struct request *rq);
/* The upstream's answer (its headers are in): forwarded, or translated to
 * problem+json when diagnosed and the route asks for it, or a local 502
 * when its header block cannot be forwarded. */
enum MHD_Result answer_upstream(struct request *rq);

#endif
