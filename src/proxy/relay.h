/*
 * relay.h - the upstream side of a proxied request: the libcurl easy
 * handle, its callbacks and the ring buffers between curl and MHD. All
 * functions run on the worker's thread.
 */
#ifndef S2S_RELAY_H
#define S2S_RELAY_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct worker;
struct request;

/*
 * Start the upstream transfer for rq with the given Authorization header
 * line. Returns 0 (the curl side now holds a reference), or -1 with
 * rq->local set to the answer to give.
 */
int relay_start(struct request *rq, const char *auth_header);
/* Capacity of a request's body rings under cfg (buffer_size, at least 32 KiB). */
size_t relay_ring_bytes(const struct config *cfg);
/* CURLMSG_DONE for `easy`. */
void relay_done(struct worker *w, CURL *easy, CURLcode result);
/* Stop the transfer (client gone, shutdown). NULL-safe on a request
 * without a transfer. */
void relay_abort(struct request *rq);
/* The client side consumed response bytes, or added request bytes: undo
 * pauses that no longer apply. */
void relay_unpause(struct request *rq);

#endif
