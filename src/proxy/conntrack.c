/*
 * conntrack.c - connection bookkeeping: the header deadline, the
 * process-wide connection budget and lingering closes (see conntrack.h).
 */
#include "proxy/conntrack.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "util/log.h"
#include "tls/tlsin.h"
#include "util/clock.h"

#define SLOW_CHECK_EVERY_MS 250
/* How often every connection's TCP state is read for closes libmicrohttpd
 * made by itself and will not act on (conntrack_hurry_closed). */
#define CLOSED_CHECK_EVERY_MS 1000
/* A connection that never sent a byte counts as idle (may be closed to make
 * room) after this long: a client that has just connected may not have
 * sent its request yet, even on a loaded machine. One that was served is
 * idle at once between requests. */
#define SILENT_IDLE_MS 1000

/* Open client connections of the whole process, every worker's: the one
 * budget max_connections is checked against. */
static atomic_long open_conns;
/* Connections accepted past the budget on a worker that had no idle
 * connection to close: other workers close one of theirs for each
 * (conntrack_give_room), so idle connections anywhere make room. */
static atomic_long room_wanted;

struct conn_track {
	struct MHD_Connection *conn;
	long long since_ms;          /* accepted, or the previous request finished */
	bool in_request;             /* its header block is complete, the request not finished */
	bool busy;                   /* a request line arrived and the request is not finished */
	bool served;                 /* a request on it has completed */
	bool cut;                    /* shut by the proxy (timeout, eviction): nothing to linger for */
	bool over_limit;             /* accepted past max_connections: its request gets 503 */
	bool dirty;                  /* a request may have left unread input (conntrack_request_done) */
	bool hurried;                /* closed on this side: MHD was asked to look at it at once */
	LIST_ENTRY(conn_track) link; /* in worker.conns */
};

void conntrack_init(struct conntrack *ct, const struct proxy_cfg *cfg, int epfd, void (*ask_room)(void *arg),
		    void *ask_arg)
{
	memset(ct, 0, sizeof *ct);
	LIST_INIT(&ct->conns);
	ct->cfg = cfg;
	ct->ask_room = ask_room;
	ct->ask_arg = ask_arg;
	linger_init(&ct->linger, epfd);
}

void conntrack_close(struct conntrack *ct)
{
	if (ct)
		linger_close_all(&ct->linger);
}

static struct conn_track *track_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static int fd_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

static enum conn_input peek_fd(int fd)
{
	char probe;
	if (fd < 0)
		return CONN_INPUT_UNKNOWN;
	ssize_t n = recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return CONN_INPUT_DATA;
	if (n == 0)
		return CONN_INPUT_END;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? CONN_INPUT_NONE : CONN_INPUT_ERROR;
}

enum conn_input conntrack_peek(struct MHD_Connection *conn)
{
	return conn ? peek_fd(fd_of(conn)) : CONN_INPUT_UNKNOWN;
}

/* Is t waiting for a request with nothing sent: a kept-alive connection
 * between requests, or one silent for SILENT_IDLE_MS since it was
 * accepted? Bytes waiting unread mean a request is arriving: never idle.
 * One whose client has closed its side with no request in progress is
 * taken too, however young: nothing more can come on it, and until the
 * loop reads that end it still holds a slot of the budget (a client that
 * closes connections and opens new ones at once must not get 503s for
 * its own dead ones). */
static bool idle(const struct conn_track *t, long long now_ms)
{
	if (t->busy || t->cut)
		return false;
	enum conn_input in = conntrack_peek(t->conn);
	if (in == CONN_INPUT_END)
		return true; /* the client's end: closed */
	if (!t->served && now_ms - t->since_ms < SILENT_IDLE_MS)
		return false;
	return in == CONN_INPUT_NONE;
}

/* The least recently used idle connection, other than `except`. */
static struct conn_track *idle_victim(struct conntrack *ct, const struct conn_track *except)
{
	struct conn_track *best = NULL, *t;
	long long now = clock_now_ms();
	/* the list is newest first: on equal times the later one is older */
	LIST_FOREACH (t, &ct->conns, link)
		if (t != except && (!best || t->since_ms <= best->since_ms) && idle(t, now))
			best = t;
	return best;
}

/* Close an idle connection to make room: silently, as a server may close
 * an idle persistent connection at any time (RFC 9112 9.8); a 408 could be
 * read as the answer to the client's next request. */
static void evict(struct conn_track *t)
{
	int fd = fd_of(t->conn);
	t->cut = true;
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR); /* MHD sees the end and closes */
	struct log_line l;
	log_begin(&l, LOG_INFO, "connection_evicted");
	log_str(&l, "reason", "max_connections reached; idle connection closed to make room");
	log_end(&l);
}

static bool budget_exceeded(const struct conntrack *ct)
{
	return atomic_load(&open_conns) > (long)ct->cfg->max_connections;
}

static void track_start(struct conntrack *ct, struct MHD_Connection *conn, void **socket_context)
{
	struct conn_track *t = calloc(1, sizeof *t);
	if (!t)
		return; /* untracked: only MHD's own timeout applies to it */
	t->conn = conn;
	t->since_ms = clock_now_ms();
	t->dirty = true; /* until its first request completes cleanly */
	LIST_INSERT_HEAD(&ct->conns, t, link);
	ct->n_conns++;
	*socket_context = t;
	atomic_fetch_add(&open_conns, 1);
	if (budget_exceeded(ct)) {
		struct conn_track *v = idle_victim(ct, t);
		if (v) {
			evict(v); /* its close gives the slot back */
		} else {
			t->over_limit = true;
			if (!ct->draining && ct->ask_room) {
				atomic_fetch_add(&room_wanted, 1);
				ct->ask_room(ct->ask_arg);
			}
		}
	}
}

/* Does the closing connection need a lingering close? Not when the client
 * closed first (nothing more will come), when the proxy cut it, or during
 * shutdown; yes when input is waiting unread, or a request on it may have
 * left some (dirty). */
static bool wants_linger(const struct conntrack *ct, const struct conn_track *t, int fd)
{
	if (t->cut || ct->draining || fd < 0)
		return false;
	enum conn_input in = peek_fd(fd);
	return in == CONN_INPUT_DATA || (in == CONN_INPUT_NONE && t->dirty);
}

static void track_end(struct conntrack *ct, struct MHD_Connection *conn, struct conn_track *t, void **socket_context)
{
	int fd = fd_of(conn);
	if (wants_linger(ct, t, fd))
		linger_start(&ct->linger, fd, clock_now_ms());
	LIST_REMOVE(t, link);
	ct->n_conns--;
	atomic_fetch_sub(&open_conns, 1);
	free(t);
	*socket_context = NULL;
}

void conntrack_on_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe)
{
	struct conntrack *ct = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		track_start(ct, conn, socket_context);
	else if (*socket_context)
		track_end(ct, conn, *socket_context, socket_context);
}

void conntrack_request_line(struct MHD_Connection *conn)
{
	struct conn_track *t = track_of(conn);
	if (t) {
		t->busy = true;
		t->dirty = true;
	}
}

void conntrack_request_started(struct MHD_Connection *conn)
{
	struct conn_track *t = track_of(conn);
	if (t) {
		t->in_request = t->busy = true;
		t->dirty = true;
	}
}

void conntrack_request_done(struct MHD_Connection *conn, long long now_ms, bool clean)
{
	struct conn_track *t = conn ? track_of(conn) : NULL;
	if (t) {
		t->in_request = t->busy = false;
		t->served = true;
		t->since_ms = now_ms;
		t->dirty = !clean;
	}
}

/* Answer 408 where that is possible (plain HTTP: TLS records cannot be
 * faked from outside), then shut the socket; MHD sees the end and closes.
 * A kept-alive connection idle since its last answer is closed silently,
 * as an idle persistent connection may be (RFC 9112 9.8): a 408 sent as
 * the client reuses it would be read as the answer to its new request,
 * where a close makes it retry on a new connection. */
static void cut(struct conn_track *t, long long waited_ms)
{
	static const char answer[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
	int fd = fd_of(t->conn);
	t->cut = true;
	if (fd < 0)
		return;
	bool idle_kept_alive = t->served && !t->busy;
	if (!tlsin_enabled() && !idle_kept_alive &&
	    send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* best effort: the client may already be gone */
	}
	shutdown(fd, SHUT_RDWR);
	struct log_line l; /* an idle connection's end is routine, a stalled request's is not */
	log_begin(&l, idle_kept_alive ? LOG_DEBUG : LOG_WARN,
		  idle_kept_alive ? "connection_idle_closed" : "limit_exceeded");
	log_str(&l, "limit", "client_timeout");
	log_int(&l, "value", waited_ms);
	log_end(&l);
}

void conntrack_cut_slow(struct conntrack *ct, long long now_ms)
{
	if (now_ms < ct->next_slow_check_ms)
		return;
	ct->next_slow_check_ms = now_ms + SLOW_CHECK_EVERY_MS;
	long long limit = ct->cfg->client_timeout_s * 1000;
	struct conn_track *t;
	LIST_FOREACH (t, &ct->conns, link)
		if (!t->in_request && !t->cut && now_ms - t->since_ms > limit)
			cut(t, now_ms - t->since_ms);
}

/* Has this side of the connection stopped: a FIN sent (libmicrohttpd's
 * close, or the proxy's cut), or the connection reset? Read from the TCP
 * state; false when it cannot be read. */
static bool closed_here(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || len < sizeof ti.tcpi_state)
		return false;
	return ti.tcpi_state != TCP_ESTABLISHED && ti.tcpi_state != TCP_CLOSE_WAIT && ti.tcpi_state != TCP_SYN_RECV;
}

/* Give t a one-second timeout of its own: MHD visits every connection with
 * a timeout other than the daemon's on each run, and cleans one it has
 * closed at once. A suspended connection holds no timeout (MHD ignores the
 * option then): it is tried again at the next check. */
static bool hurry(struct conn_track *t)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(t->conn, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
	if (!ci || ci->suspended)
		return false;
	if (MHD_set_connection_option(t->conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u) != MHD_YES)
		return false;
	t->hurried = true;
	return true;
}

bool conntrack_hurry_closed(struct conntrack *ct, long long now_ms)
{
	if (now_ms < ct->next_closed_check_ms)
		return false;
	ct->next_closed_check_ms = now_ms + CLOSED_CHECK_EVERY_MS;
	bool any = false;
	struct conn_track *t;
	LIST_FOREACH (t, &ct->conns, link)
		if (!t->hurried && closed_here(fd_of(t->conn)) && hurry(t))
			any = true;
	return any;
}

void conntrack_give_room(struct conntrack *ct)
{
	long want = atomic_load(&room_wanted);
	if (want <= 0)
		return;
	if (!budget_exceeded(ct)) { /* room was made meanwhile: nothing is owed */
		atomic_store(&room_wanted, 0);
		return;
	}
	struct conn_track *v = idle_victim(ct, NULL);
	if (v && atomic_compare_exchange_strong(&room_wanted, &want, want - 1))
		evict(v);
}

bool conntrack_over_limit(struct conntrack *ct, struct MHD_Connection *conn)
{
	struct conn_track *t = track_of(conn);
	if (!t || !t->over_limit)
		return false;
	if (!budget_exceeded(ct)) {
		t->over_limit = false; /* room was made since it was accepted */
		return false;
	}
	struct conn_track *v = idle_victim(ct, t);
	if (!v)
		return true;
	evict(v);
	t->over_limit = false;
	return false;
}

long conntrack_open(void)
{
	return atomic_load(&open_conns);
}
