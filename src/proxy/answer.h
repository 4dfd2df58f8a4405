/*
 * answer.h - queue the client's answer with libmicrohttpd (from an MHD
 * access-handler call, on the worker's thread). Both set rq->state to
 * RQ_RESPONDED and rq->resp.final_status, and return what the access
 * handler returns: MHD_NO when no response could be built (MHD then closes
 * the connection).
 */
#ifndef S2S_ANSWER_H
#define S2S_ANSWER_H

#include <microhttpd.h>

#include "proxy/request.h"

/* The local answer decided in rq->local, as problem+json. */
enum MHD_Result answer_local(struct request *rq);
/* The upstream's answer (its headers are in): forwarded, or translated to
 * problem+json when diagnosed and the route asks for it, or a local 502
 * when its header block cannot be forwarded. */
enum MHD_Result answer_upstream(struct request *rq);

#endif
