/*
 * linger.h - lingering close of client connections (nginx's
 * lingering_close): after the proxy answers and closes a connection whose
 * client may still be sending (a body over max_body_bytes, a header block
 * over max_header_bytes, a request refused mid-body), closing the socket
 * with unread input makes the kernel send a reset, and the client's TCP
 * stack may drop the answer it had not read yet. Instead the socket is
 * kept open (a dup of libmicrohttpd's descriptor), its write side shut,
 * and whatever arrives is read and discarded until the client closes, it
 * goes quiet, a time cap passes or a byte cap is reached.
 *
 * A leaf: it knows only the epoll set it registers its sockets in (each
 * worker has one struct lingerers, on the worker's thread only). Bounded:
 * at most LINGER_MAX sockets per worker linger at once; past that a close
 * is immediate.
 */
#ifndef S2S_LINGER_H
#define S2S_LINGER_H

#include <stdbool.h>
#include <stddef.h>

#define LINGER_MAX 256

struct linger_slot {
	int fd;
	long long until_ms;      /* the whole linger ends here (LINGER_TIME_MS) */
	long long idle_until_ms; /* ... or when nothing arrives until here */
	size_t discarded;        /* bytes read and thrown away */
};

struct lingerers {
	int epfd; /* the worker's epoll set: sockets are registered as EV_LINGER (evtag.h) */
	struct linger_slot slot[LINGER_MAX];
	unsigned n;
};

/* An empty table registering in epfd. */
void linger_init(struct lingerers *l, int epfd);
/* Take over a copy of the client socket `fd` that libmicrohttpd is about to
 * close. Returns false (nothing taken) when the table is full or the copy
 * cannot be made; the caller then lets the close happen as is. */
bool linger_start(struct lingerers *l, int fd, long long now_ms);
/* The lingering socket `fd` is readable (its epoll event). */
void linger_event(struct lingerers *l, int fd, long long now_ms);
/* Close the sockets whose time is up. Cheap when none lingers. */
void linger_sweep(struct lingerers *l, long long now_ms);
/* The earliest deadline, or 0 when none lingers. */
long long linger_next_deadline(const struct lingerers *l);
/* Close every lingering socket (worker stop). NULL-safe. */
void linger_close_all(struct lingerers *l);

#endif
