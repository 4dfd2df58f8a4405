/*
 * conntrack.h - bookkeeping of client connections, for what libmicrohttpd
 * does not do itself:
 *   - a total deadline for reading a request's headers (client_timeout),
 *     so a client that trickles bytes (slowloris) is cut with 408 instead
 *     of holding a connection as long as it keeps sending something;
 *   - max_connections as ONE budget for the whole process (not a share per
 *     worker): past it the least recently used idle connection is closed
 *     to make room, and when every connection is busy the new one is
 *     answered 503 with Connection: close instead of waiting unaccepted;
 *   - a lingering close (linger.h) when a closing connection may still
 *     have unread input, so the client can read the answer.
 * Each worker holds one struct conntrack and uses it on its own thread;
 * only the process-wide count is shared (atomic). A leaf below the worker:
 * what it needs of it (the configuration, drain, the epoll set, waking the
 * other workers) is handed to it, not looked up.
 */
#ifndef S2S_CONNTRACK_H
#define S2S_CONNTRACK_H

#include <microhttpd.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "config/config.h"
#include "proxy/linger.h"

struct conn_track;

struct conntrack {
	LIST_HEAD(conn_list, conn_track) conns; /* every client connection of this worker */
	unsigned n_conns;
	long long next_slow_check_ms;
	long long next_closed_check_ms;
	const struct proxy_cfg *cfg; /* max_connections, client_timeout: the worker's current generation */
	bool draining;               /* the worker stops: no lingering, no asking for room */
	struct lingerers linger;     /* closed connections still read and discarded */
	/* Wake the other workers to close an idle connection each (worker.c). */
	void (*ask_room)(void *arg);
	void *ask_arg;
};

/* An empty tracker; lingering sockets go into epoll set epfd. */
void conntrack_init(struct conntrack *ct, const struct proxy_cfg *cfg, int epfd, void (*ask_room)(void *arg),
		    void *ask_arg);
/* Close every lingering socket (worker stop). NULL-safe. */
void conntrack_close(struct conntrack *ct);

/* MHD_OPTION_NOTIFY_CONNECTION callback (cls = struct conntrack). */
void conntrack_on_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe);
/* A request line arrived (URI callback): the connection is busy, never
 * closed to make room, until the request is done. */
void conntrack_request_line(struct MHD_Connection *conn);
/* A request's headers are complete (first access-handler call). */
void conntrack_request_started(struct MHD_Connection *conn);
/* A request finished; the connection waits for the next one from now on.
 * clean: the request was read whole and answered without closing. */
void conntrack_request_done(struct MHD_Connection *conn, long long now_ms, bool clean);
/* Cut connections that spent longer than client_timeout without a complete
 * request header. Call from the worker loop (cheap when nothing is due). */
void conntrack_cut_slow(struct conntrack *ct, long long now_ms);
/* Connections libmicrohttpd closed by itself but leaves for its timeout
 * sweep (internals.md L-MHD-15), and any other connection whose TCP state
 * says it is closed on this side: ask MHD to clean them up at its next
 * run. Returns true when MHD must run for that. Call from the worker loop
 * (checks once a second, one getsockopt per connection). Plain TCP only:
 * over TLS libmicrohttpd's close sends a TLS alert, not a FIN, and such a
 * connection still waits for client_timeout. */
bool conntrack_hurry_closed(struct conntrack *ct, long long now_ms);
/* Must the request on conn be refused with 503 (accepted past
 * max_connections, and no idle connection can be closed for it now)? */
bool conntrack_over_limit(struct conntrack *ct, struct MHD_Connection *conn);
/* Another worker asked for room (ask_room): close one idle connection
 * here if the budget is still exceeded. */
void conntrack_give_room(struct conntrack *ct);
/* What a client socket holds unread, peeked without taking it. */
enum conn_input {
	CONN_INPUT_NONE = 0, /* nothing yet: the client is there, silent */
	CONN_INPUT_DATA,     /* bytes wait (a request arriving, pipelined) */
	CONN_INPUT_END,      /* the client closed its sending side (or the whole connection) */
	CONN_INPUT_ERROR,    /* reset, or another error: the client is gone */
	CONN_INPUT_UNKNOWN,  /* no socket to look at */
};
/* Peek conn's socket. Any thread that owns conn (its worker's). */
enum conn_input conntrack_peek(struct MHD_Connection *conn);
/* Client connections open in the whole process. */
long conntrack_open(void);

#endif
