/*
 * linger.c - lingering close of client connections (see linger.h).
 *
 * Ownership: a slot owns its descriptor, a dup(2) of libmicrohttpd's; MHD
 * closes its own copy right after the notification that hands the socket
 * here, and the connection itself only ends when the slot closes its copy.
 */
#include "proxy/linger.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/evtag.h"

#define LINGER_TIME_MS   10000              /* longest a socket lingers (nginx lingering_time: 30 s) */
#define LINGER_IDLE_MS   2000               /* ... or until the client is quiet this long (lingering_timeout: 5 s) */
#define LINGER_MAX_BYTES (16 * 1024 * 1024) /* ... or has sent this much more */
#define LINGER_READ      (16 * 1024)

static void finish(struct lingerers *l, unsigned i)
{
	/* close(2) also takes the descriptor out of the epoll set */
	close(l->slot[i].fd);
	l->slot[i] = l->slot[--l->n];
}

void linger_init(struct lingerers *l, int epfd)
{
	l->epfd = epfd;
	l->n = 0;
}

bool linger_start(struct lingerers *l, int fd, long long now_ms)
{
	if (fd < 0 || l->n >= LINGER_MAX)
		return false;
	int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (copy < 0)
		return false;
	/* libmicrohttpd has sent its answer and (plain HTTP) shut its write
	 * side; shutting it here too covers TLS, where it only sent close_notify:
	 * the client sees the end of the answer now, not when we stop reading. */
	shutdown(copy, SHUT_WR);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = EV_DATA(copy, EV_LINGER)};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, copy, &ev) < 0) {
		close(copy);
		return false;
	}
	l->slot[l->n++] = (struct linger_slot){
	    .fd = copy, .until_ms = now_ms + LINGER_TIME_MS, .idle_until_ms = now_ms + LINGER_IDLE_MS};
	return true;
}

void linger_event(struct lingerers *l, int fd, long long now_ms)
{
	char scratch[LINGER_READ];
	unsigned i = 0;
	while (i < l->n && l->slot[i].fd != fd)
		i++;
	if (i == l->n) /* not ours any more: drop the stale registration */
		return;
	struct linger_slot *s = &l->slot[i];
	for (int reads = 0; reads < 8; reads++) { /* bounded per event: the loop has other work */
		ssize_t n = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			finish(l, i); /* the client closed (or reset): done */
			return;
		}
		if (n < 0)
			break;
		s->discarded += (size_t)n;
		if (s->discarded > LINGER_MAX_BYTES) {
			finish(l, i);
			return;
		}
	}
	s->idle_until_ms = now_ms + LINGER_IDLE_MS;
}

void linger_sweep(struct lingerers *l, long long now_ms)
{
	for (unsigned i = 0; i < l->n;) {
		if (now_ms >= l->slot[i].until_ms || now_ms >= l->slot[i].idle_until_ms)
			finish(l, i); /* slot i now holds the former last one: look at it again */
		else
			i++;
	}
}

long long linger_next_deadline(const struct lingerers *l)
{
	long long best = 0;
	for (unsigned i = 0; i < l->n; i++) {
		long long d =
		    l->slot[i].idle_until_ms < l->slot[i].until_ms ? l->slot[i].idle_until_ms : l->slot[i].until_ms;
		if (!best || d < best)
			best = d;
	}
	return best;
}

void linger_close_all(struct lingerers *l)
{
	while (l && l->n > 0)
		finish(l, 0);
}
