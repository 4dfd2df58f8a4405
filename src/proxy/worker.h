/*
 * worker.h - a worker thread: one libmicrohttpd daemon in external epoll
 * mode and one libcurl multi handle driven by a single loop, so every
 * callback of a request runs on one thread (internals.md section 3).
 * Workers share nothing on the request path; the token engine wakes them
 * through an eventfd in the worker's epoll set.
 */
#ifndef S2S_WORKER_H
#define S2S_WORKER_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config/config.h"
#include "util/clock.h"
#include "proxy/conntrack.h"
#include "token/jwt.h"
#include "proxy/connto.h"
#include "proxy/pool.h"
#include "token/token.h"

struct request;
/* A list of requests (<sys/queue.h>); the links are in struct request. */
LIST_HEAD(request_list, request);
struct conn_track;
struct throttle_rq;

/*
 * A configuration generation (SIGHUP reload): a config and the token engine
 * built for it. A worker serves new requests from its current generation;
 * every request keeps the generation it started with until it ends (refs
 * counts the workers and requests using it; main.c retires it at zero).
 */
struct worker_gen {
	const struct config *cfg;
	struct token_engine *tokens;
	atomic_long refs;
};

struct worker {
	int id;
	const struct config *cfg;
	struct token_engine *tokens;
	pthread_t thread;
	bool started;
	int listen_fd;
	struct MHD_Daemon *mhd;
	int mhd_epfd;
	int epfd;                   /* the worker's epoll set: MHD's epfd, wake_fd, curl's sockets */
	int wake_fd;                /* eventfd: other threads wake the loop (stop, tokens, reload) */
	long long curl_deadline_ms; /* curl's timer (CURLMOPT_TIMERFUNCTION), -1 none */
	long long log_flushed_ms;   /* when the loop last wrote its batched request lines */
	unsigned char *sock;        /* per fd: is a curl socket in epfd, and wanted (worker.c) */
	size_t sock_cap;
	size_t mhd_pool_bytes; /* MHD's memory per connection (worker.c pool_bytes) */
	CURLM *multi;
	CURLSH *tls_sessions;     /* the worker's TLS session cache, shared by its transfers (worker.c) */
	struct connto connect_to; /* connect_to entries per upstream (connto.c) */
	bool mhd_dirty;           /* a connection was resumed: run MHD before sleeping */
	bool curl_dirty;          /* a transfer was added or unpaused: run curl before sleeping */
	atomic_int token_event;
	atomic_int verify_event; /* the verifier thread checked a password (verifier.c) */
	atomic_int room_asked;   /* another worker is over max_connections with no idle connection (conntrack.c) */
	struct worker_gen *gen;  /* current; worker thread only (NULL: cfg/tokens as given) */
	_Atomic(struct worker_gen *) next_gen; /* handed over by worker_set_gen, adopted by the loop */
	atomic_int stop;                       /* 0 run, 1 drain, 2 stop now */
	atomic_bool finished;                  /* the loop has ended */
	bool draining;
	long long drain_deadline_ms;
	struct request_list parked;    /* waiting for a token (request.park_link) */
	struct throttle_rq *throttled; /* waiting at their identity's gate (throttle.c) */
	struct request_list all;       /* every live request (request.all_link) */
	unsigned inflight;
	struct conntrack ct;     /* client connections, the budget, lingering closes (conntrack.c) */
	int n_workers;           /* how many workers share max_connections */
	long long idle_since_ms; /* no request in flight since */
	/* Claims and fingerprint of recently sent tokens, by (engine, source,
	 * generation): decoding and hashing a token once, not per request. */
	struct claims_cache {
		const struct token_engine *engine;
		size_t source;
		unsigned long gen;
		struct tok_info *info; /* one reference; NULL = empty */
	} claims_cache[8];
	bool busy_since_trim; /* served requests since the last malloc_trim */
	struct pool pool;     /* recycled rings and easy handles (pool.c) */
	uint64_t rng;
	char token_hdr[TOKEN_HEADER_MAX]; /* scratch for token_lookup */
};

/*
 * Create worker `id` serving `listen_fd` (ownership passes to the worker
 * on success; on failure the caller still owns it). Returns 0 or -1 (logged).
 */
/* How many workers share max_connections; call before worker_init. */
void worker_set_count(int n);
int worker_init(struct worker *w, int id, const struct config *cfg, struct token_engine *tokens, int listen_fd);
int worker_start(struct worker *w);
/* Ask to stop: drain (in-flight requests finish until shutdown_timeout) or now. */
void worker_request_stop(struct worker *w, bool now);
/* Serve new requests from generation g from the next loop turn on (any
 * thread; takes a reference on g, drops the one on the previous). */
void worker_set_gen(struct worker *w, struct worker_gen *g);
/* Wake the worker because a token changed (any thread). */
void worker_token_changed(struct worker *w);
/* The verifier checked a password (called on the verifier thread): wakes the loop. */
void worker_verify_done(struct worker *w);
/* fuzz/fuzz_inbound.c: one turn of the worker loop on the calling thread,
 * for a worker not started (listen_fd < 0: no listen socket, connections
 * come from MHD_add_connection). Sleeps at most max_wait_ms. Returns
 * whether MHD had events, or -1. */
int worker_turn(struct worker *w, int max_wait_ms);
/* Join and free. NULL-safe, idempotent. */
void worker_join(struct worker *w);

#endif
