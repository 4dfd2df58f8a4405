/*
 * conntrack.h - per-worker bookkeeping of client connections, for two
 * limits libmicrohttpd does not enforce itself:
 *   - a total deadline for reading a request's headers (client_timeout),
 *     so a client that trickles bytes (slowloris) is cut with 408 instead
 *     of holding a connection as long as it keeps sending something;
 *   - max_connections answered with 503 instead of a silent close.
 * Runs on the worker's thread only.
 */
#ifndef S2S_CONNTRACK_H
#define S2S_CONNTRACK_H

#include <microhttpd.h>
#include <stdbool.h>

struct worker;

/* MHD_OPTION_NOTIFY_CONNECTION callback (cls = worker). */
void conntrack_on_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe);
/* A request's headers are complete (first access-handler call). */
void conntrack_request_started(struct MHD_Connection *conn);
/* A request finished; the connection waits for the next one from now on. */
void conntrack_request_done(struct MHD_Connection *conn, long long now_ms);
/* Cut connections that spent longer than client_timeout without a complete
 * request header. Call from the worker loop (cheap when nothing is due). */
void conntrack_cut_slow(struct worker *w, long long now_ms);
/* Over the per-worker share of max_connections? */
bool conntrack_over_limit(const struct worker *w);
/* The per-worker share of max_connections. */
unsigned conntrack_limit(const struct worker *w);

#endif
