/*
 * proxy.h - the inbound side of a proxied request: libmicrohttpd callbacks,
 * request validation, route and token selection, and the choice of the
 * answer (answer.c builds and queues it). All functions run on the
 * worker's thread.
 */
#ifndef S2S_PROXY_H
#define S2S_PROXY_H

#include <microhttpd.h>

struct worker;
struct request;

/* MHD_OPTION_URI_LOG_CALLBACK: creates the request (cls = worker). */
void *proxy_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
/* The MHD access handler (cls = worker). */
enum MHD_Result proxy_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload_data, size_t *upload_data_size,
				 void **con_cls);
/* MHD_OPTION_NOTIFY_COMPLETED (cls = worker). */
void proxy_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);

/* A token changed: start or fail the requests parked for one. */
void proxy_token_event(struct worker *w);
/* The verifier checked a password: go on with the requests that waited for one. */
void proxy_verify_event(struct worker *w);
/* Expire parked requests whose wait is over. */
void proxy_check_deadlines(struct worker *w, long long now_ms);
/* Earliest parked deadline (ms), 0 if none. */
long long proxy_next_deadline(const struct worker *w);
/* Shutdown: cut every live request so MHD can stop. */
void proxy_abort_all(struct worker *w);

#endif
