/*
 * conntrack.c - connection bookkeeping for the header deadline and the
 * connection limit (see conntrack.h).
 */
#include "conntrack.h"

#include <stdlib.h>
#include <sys/socket.h>

#include "log.h"
#include "tlsin.h"
#include "worker.h"

#define SLOW_CHECK_EVERY_MS 250

struct conn_track {
	struct MHD_Connection *conn;
	long long since_ms; /* accepted, or the previous request finished */
	bool in_request;
	bool cut;
	struct conn_track *prev, *next;
};

static struct conn_track *track_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

void conntrack_on_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe)
{
	struct worker *w = cls;
	struct conn_track *t = *socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		t = calloc(1, sizeof *t);
		if (!t)
			return; /* untracked: only MHD's own timeout applies to it */
		t->conn = conn;
		t->since_ms = worker_now_ms();
		t->next = w->conns;
		if (w->conns)
			w->conns->prev = t;
		w->conns = t;
		w->n_conns++;
		*socket_context = t;
	} else if (t) {
		if (t->prev)
			t->prev->next = t->next;
		else
			w->conns = t->next;
		if (t->next)
			t->next->prev = t->prev;
		w->n_conns--;
		free(t);
		*socket_context = NULL;
	}
}

void conntrack_request_started(struct MHD_Connection *conn)
{
	struct conn_track *t = track_of(conn);
	if (t)
		t->in_request = true;
}

void conntrack_request_done(struct MHD_Connection *conn, long long now_ms)
{
	struct conn_track *t = conn ? track_of(conn) : NULL;
	if (t) {
		t->in_request = false;
		t->since_ms = now_ms;
	}
}

/* Answer 408 where that is possible (plain HTTP: TLS records cannot be
 * faked from outside), then shut the socket; MHD sees the end and closes. */
static void cut(struct conn_track *t, long long waited_ms)
{
	static const char answer[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(t->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	t->cut = true;
	if (!ci)
		return;
	if (!tlsin_enabled() && send(ci->connect_fd, answer, sizeof answer - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* best effort: the client may already be gone */
	}
	shutdown(ci->connect_fd, SHUT_RDWR);
	struct log_line l;
	log_begin(&l, LOG_WARN, "limit_exceeded");
	log_str(&l, "limit", "client_timeout");
	log_int(&l, "value", waited_ms);
	log_end(&l);
}

void conntrack_cut_slow(struct worker *w, long long now_ms)
{
	if (now_ms < w->next_slow_check_ms)
		return;
	w->next_slow_check_ms = now_ms + SLOW_CHECK_EVERY_MS;
	long long limit = w->cfg->proxy.client_timeout_s * 1000;
	for (struct conn_track *t = w->conns; t; t = t->next)
		if (!t->in_request && !t->cut && now_ms - t->since_ms > limit)
			cut(t, now_ms - t->since_ms);
}

unsigned conntrack_limit(const struct worker *w)
{
	long workers = w->n_workers > 0 ? w->n_workers : 1;
	long per = w->cfg->proxy.max_connections / workers;
	return per < 1 ? 1 : (unsigned)per;
}

bool conntrack_over_limit(const struct worker *w)
{
	return w->n_conns > conntrack_limit(w);
}
