/*
 * bench/floor.c - what the two libraries s2s-proxy is built on cost per
 * request by themselves, with nothing of s2s-proxy in between: the least
 * any proxy made of libmicrohttpd (inbound) and libcurl (upstream) spends
 * per request. bench/run.py runs it as the "floor" target of part 1, next
 * to nginx's proxy_pass and s2s-proxy.
 *
 *   bench-floor proxy PORT UPSTREAM THREADS
 *
 * One thread per worker, each with one epoll set holding its libmicrohttpd
 * daemon's epoll fd (external epoll mode, SO_REUSEPORT on PORT) and
 * libcurl's sockets (curl_multi_socket_action), as s2s-proxy's workers
 * drive them: every request is suspended while its upstream transfer runs;
 * the client's method and path go to UPSTREAM with the headers s2s-proxy
 * adds (a bearer token, X-Forwarded-*); a request body up to 64 KiB is
 * received whole, then sent from memory; the upstream's status and small
 * body are handed back. Nothing else: no routing, header copying, token
 * handling, limits or log. Runs until SIGTERM or SIGINT.
 *
 * Benchmark code: it exits on the first failed setup call.
 */
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_PENDING 4096 /* pooled easy handles and body buffers per thread */
#define MAX_EVENTS  256

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-floor: %s\n", what);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------ libcurl on an epoll set */

#define FD_CAP 65536

/* curl's sockets in a thread's epoll set, driven as s2s-proxy's workers do:
 * a socket curl stops watching (an idle keep-alive connection) stays in the
 * set, so the next request on that connection costs no epoll_ctl when its
 * interest is the same. */
struct curl_loop {
	CURLM *multi;
	CURLSH *tls_sessions; /* one TLS session cache for the thread's transfers, as s2s-proxy's workers */
	int ep;
	double deadline;         /* when curl wants its timers run (now_s() clock), < 0: never */
	uint8_t in_set[FD_CAP];  /* epoll events + 1 for fds in the set, 0 = not in it */
	bool curl_wants[FD_CAP]; /* false: curl removed it */
};

static void set_interest(struct curl_loop *l, int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	int op = l->in_set[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(l->ep, op, fd, &ev) < 0) {
		/* curl closed and reused the fd number meanwhile: the kernel dropped it */
		if (errno != ENOENT || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			die("epoll_ctl");
	}
	l->in_set[fd] = (uint8_t)(events + 1);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *cls, void *sockp)
{
	struct curl_loop *l = cls;
	(void)e, (void)sockp;
	if (fd < 0 || fd >= FD_CAP)
		die("socket number out of range");
	if (what == CURL_POLL_REMOVE) {
		l->curl_wants[fd] = false;
		return 0;
	}
	l->curl_wants[fd] = true;
	uint32_t want = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
	if (l->in_set[fd] != (uint8_t)(want + 1))
		set_interest(l, fd, want);
	return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *cls)
{
	struct curl_loop *l = cls;
	(void)m;
	l->deadline = timeout_ms < 0 ? -1.0 : now_s() + (double)timeout_ms / 1000.0;
	return 0;
}

static void curl_loop_init(struct curl_loop *l, int ep, long max_connects)
{
	l->ep = ep;
	l->deadline = -1.0;
	l->multi = curl_multi_init();
	if (!l->multi || curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l) != CURLM_OK ||
	    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, max_connects) != CURLM_OK)
		die("curl_multi_init");
	l->tls_sessions = curl_share_init();
	if (!l->tls_sessions ||
	    curl_share_setopt(l->tls_sessions, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
		die("curl_share_init");
}

static int curl_loop_wait_ms(const struct curl_loop *l)
{
	if (l->deadline < 0)
		return 100;
	double left_ms = (l->deadline - now_s()) * 1000.0;
	return left_ms <= 0 ? 0 : left_ms >= 100 ? 100 : (int)left_ms + 1;
}

static void curl_loop_event(struct curl_loop *l, const struct epoll_event *ev)
{
	int fd = ev->data.fd, running;
	if (!l->curl_wants[fd]) { /* an idle connection closed by the upstream */
		epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
		l->in_set[fd] = 0;
		return;
	}
	int flags = (ev->events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
		    (ev->events & EPOLLOUT ? CURL_CSELECT_OUT : 0) | (ev->events & EPOLLERR ? CURL_CSELECT_ERR : 0);
	curl_multi_socket_action(l->multi, fd, flags, &running);
}

static void curl_loop_timers(struct curl_loop *l)
{
	int running;
	if (l->deadline >= 0 && now_s() >= l->deadline) {
		l->deadline = -1.0; /* curl sets the next one from inside the call */
		curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/* What s2s-proxy adds upstream: a bearer token (BENCH_FLOOR_TOKEN, so the
 * upstream sees what it sees from s2s-proxy; else one of a real token's size:
 * Entra access tokens run 1.2-2 KiB) and the X-Forwarded-* fields; no
 * Expect: 100-continue (the body is already here). */
static struct curl_slist *proxy_headers(void)
{
	static char bearer[22 + 4096 + 1] = "Authorization: Bearer ";
	const char *token = getenv("BENCH_FLOOR_TOKEN");
	if (token && strlen(token) <= 4096)
		memcpy(bearer + 22, token, strlen(token) + 1);
	else
		memset(bearer + 22, 'x', 1500);
	struct curl_slist *h = NULL;
	const char *fields[] = {
	    bearer,   "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http", "X-Forwarded-Host: 127.0.0.1", "Accept:",
	    "Expect:"};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (!(h = curl_slist_append(h, fields[i])))
			die("out of memory");
	return h;
}

/* ----------------------------------------------------------------- proxy */

#define BODY_CAP     8192        /* the thin proxy answers small bodies only */
#define REQ_BODY_CAP (64u << 10) /* and request bodies up to 64 KiB, whole */
#define URL_CAP      1024

/* The thinnest proxy the two libraries allow: both halves above in one loop
 * per thread, the upstream's status and body handed back, nothing else (no
 * routing, header copying, token handling or log). */
struct thin {
	pthread_t thread;
	uint16_t port;
	const char *upstream; /* scheme://host:port, the path is the client's */
	const char *cafile;   /* BENCH_FLOOR_CAFILE: the anchor of an https upstream, or NULL */
	struct curl_slist *headers;
	struct MHD_Daemon *daemon;
	int mhd_fd;
	struct curl_loop loop;
	CURL *spare[MAX_PENDING]; /* easy handles kept for the next request */
	size_t n_spare;
	char *bufs[MAX_PENDING]; /* request body buffers, likewise */
	size_t n_bufs;
};

struct xfer {
	struct MHD_Connection *conn;
	CURL *easy;
	bool started, in_multi, done, too_big;
	long status;
	char *req; /* the request body, sent from memory as s2s-proxy sends small bodies */
	size_t req_len;
	size_t len;
	char body[BODY_CAP];
};

static size_t collect_body(char *p, size_t size, size_t count, void *cls)
{
	struct xfer *x = cls;
	size_t n = size * count; /* size is 1 */
	if (n > BODY_CAP - x->len)
		return 0; /* too large for the thin proxy: the transfer fails, the client gets a 502 */
	memcpy(x->body + x->len, p, n);
	x->len += n;
	return n;
}

/* A request body is taken whole into a pooled 64 KiB buffer (s2s-proxy's
 * buffer_size), then sent from memory as s2s-proxy sends small bodies. */
static void keep_body(struct thin *t, struct xfer *x, const char *p, size_t n)
{
	if (x->too_big || n > REQ_BODY_CAP - x->req_len) {
		x->too_big = true;
		return;
	}
	if (!x->req && !(x->req = t->n_bufs ? t->bufs[--t->n_bufs] : malloc(REQ_BODY_CAP))) {
		x->too_big = true;
		return;
	}
	memcpy(x->req + x->req_len, p, n);
	x->req_len += n;
}

static int thin_start(struct thin *t, struct xfer *x, const char *url)
{
	char full[URL_CAP];
	int n = snprintf(full, sizeof full, "%s%s", t->upstream, url);
	if (n < 0 || (size_t)n >= sizeof full)
		return -1;
	x->easy = t->n_spare ? t->spare[--t->n_spare] : curl_easy_init();
	if (!x->easy || curl_easy_setopt(x->easy, CURLOPT_URL, full) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, t->headers) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, collect_body) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(x->easy, CURLOPT_SHARE, t->loop.tls_sessions) != CURLE_OK ||
	    (t->cafile && curl_easy_setopt(x->easy, CURLOPT_CAINFO, t->cafile) != CURLE_OK))
		return -1;
	CURLcode rc = x->req ? curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req_len)
			     : curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
	if (rc == CURLE_OK && x->req)
		rc = curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->req);
	if (rc != CURLE_OK || x->too_big || curl_multi_add_handle(t->loop.multi, x->easy) != CURLM_OK)
		return -1;
	x->in_multi = true;
	return 0;
}

static enum MHD_Result thin_answer(struct MHD_Connection *c, struct xfer *x)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(x->len, x->body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	enum MHD_Result ok = MHD_add_response_header(r, "Content-Type", "application/json");
	if (ok == MHD_YES)
		ok = MHD_queue_response(c, x->done && x->status > 0 ? (unsigned)x->status : MHD_HTTP_BAD_GATEWAY, r);
	MHD_destroy_response(r);
	return ok;
}

static enum MHD_Result thin_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				    const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
	struct thin *t = cls;
	struct xfer *x = *req_cls;
	(void)method, (void)version;
	if (!x) {
		if (!(x = calloc(1, sizeof *x)))
			return MHD_NO;
		x->conn = c;
		*req_cls = x;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		keep_body(t, x, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (x->started)
		return thin_answer(c, x); /* resumed: the upstream has answered */
	x->started = true;
	if (thin_start(t, x, url) < 0)
		return thin_answer(c, x);
	MHD_suspend_connection(c);
	return MHD_YES;
}

static void thin_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode why)
{
	struct thin *t = cls;
	struct xfer *x = *req_cls;
	(void)c, (void)why;
	if (!x)
		return;
	if (x->in_multi)
		curl_multi_remove_handle(t->loop.multi, x->easy);
	if (x->easy && t->n_spare < MAX_PENDING)
		t->spare[t->n_spare++] = x->easy;
	else if (x->easy)
		curl_easy_cleanup(x->easy);
	if (x->req && t->n_bufs < MAX_PENDING)
		t->bufs[t->n_bufs++] = x->req;
	else
		free(x->req);
	free(x);
	*req_cls = NULL;
}

/* Finished transfers: hand each back to its (suspended) connection. */
static bool thin_collect(struct thin *t)
{
	bool resumed = false;
	int left;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(t->loop.multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (msg->data.result == CURLE_OK)
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
		x->done = true;
		curl_multi_remove_handle(t->loop.multi, x->easy);
		x->in_multi = false;
		MHD_resume_connection(x->conn);
		resumed = true;
	}
	return resumed;
}

/* MHD shows work its epoll fd does not signal (buffered input, a resumed
 * connection, the reset between kept-alive requests) as a zero timeout. */
static bool mhd_due(struct MHD_Daemon *d)
{
	MHD_UNSIGNED_LONG_LONG ms;
	return MHD_get_timeout(d, &ms) == MHD_YES && ms == 0;
}

/* MHD moves a connection one step per MHD_run: take up to 8 steps at once,
 * as s2s-proxy's run_mhd does. */
static void run_mhd(struct MHD_Daemon *d)
{
	for (int steps = 0; steps < 8; steps++) {
		MHD_run(d);
		if (!mhd_due(d))
			break;
	}
}

static void *thin_main(void *arg)
{
	struct thin *t = arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	curl_loop_init(&t->loop, ep, 512);
	t->daemon = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, t->port, NULL, NULL, thin_request, t,
				     MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_CONNECTION_LIMIT, 4096u,
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(40 * 1024), /* s2s-proxy's default */
				     MHD_OPTION_NOTIFY_COMPLETED, thin_completed, t, MHD_OPTION_END);
	if (!t->daemon)
		die("cannot start libmicrohttpd (port in use?)");
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(t->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info)
		die("no epoll fd from libmicrohttpd");
	t->mhd_fd = info->epoll_fd;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = t->mhd_fd};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, t->mhd_fd, &ev) < 0)
		die("epoll_ctl");
	struct epoll_event evs[MAX_EVENTS];
	while (!stop_requested) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, mhd_due(t->daemon) ? 0 : curl_loop_wait_ms(&t->loop));
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		bool mhd_ready = false;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == t->mhd_fd)
				mhd_ready = true;
			else
				curl_loop_event(&t->loop, &evs[i]);
		}
		curl_loop_timers(&t->loop);
		if (thin_collect(t) || mhd_ready || mhd_due(t->daemon))
			run_mhd(t->daemon); /* answers, and new requests start their transfers */
		curl_loop_timers(&t->loop); /* sends what MHD just started */
		if (thin_collect(t))
			run_mhd(t->daemon);
	}
	MHD_stop_daemon(t->daemon);
	while (t->n_spare > 0)
		curl_easy_cleanup(t->spare[--t->n_spare]);
	while (t->n_bufs > 0)
		free(t->bufs[--t->n_bufs]);
	curl_multi_cleanup(t->loop.multi);
	curl_share_cleanup(t->loop.tls_sessions); /* after every handle that used it */
	close(ep);
	return NULL;
}

static int proxy(int argc, char **argv)
{
	if (argc != 5)
		return 1;
	int port = atoi(argv[2]), threads = atoi(argv[4]);
	if (port <= 0 || port > 65535 || threads < 1 || threads > MAX_THREADS)
		return 1;
	struct curl_slist *h = proxy_headers();
	struct thin *ts = calloc((size_t)threads, sizeof *ts);
	if (!ts)
		die("out of memory");
	for (int i = 0; i < threads; i++) {
		ts[i].port = (uint16_t)port;
		ts[i].upstream = argv[3];
		ts[i].cafile = getenv("BENCH_FLOOR_CAFILE");
		ts[i].headers = h;
		if (pthread_create(&ts[i].thread, NULL, thin_main, &ts[i]) != 0)
			die("pthread_create");
	}
	for (int i = 0; i < threads; i++)
		pthread_join(ts[i].thread, NULL);
	free(ts);
	curl_slist_free_all(h);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 1;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init");
	if (argc >= 2 && strcmp(argv[1], "proxy") == 0)
		rc = proxy(argc, argv);
	if (rc == 1)
		fprintf(stderr, "usage: bench-floor proxy PORT UPSTREAM THREADS\n");
	curl_global_cleanup();
	return rc;
}
