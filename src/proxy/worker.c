/*
 * worker.c - the worker loop: libmicrohttpd in external epoll mode plus a
 * libcurl multi, one thread, no locks on the request path.
 *
 * One epoll set per worker holds MHD's epoll fd, an eventfd other threads
 * use to wake the worker, and curl's sockets, which curl hands over
 * through CURLMOPT_SOCKETFUNCTION; curl runs through
 * curl_multi_socket_action() for exactly the socket that is ready, or its
 * timer (CURLMOPT_TIMERFUNCTION). This replaced curl_multi_poll() and
 * curl_multi_perform(), which rebuild a pollfd array of every socket per
 * loop turn and poll every running transfer's socket again on each call:
 * O(transfers) syscalls per turn (docs/performance.md). MHD runs until no
 * callback resumed a connection (mhd_dirty), because in external mode a
 * resumed connection makes progress only when MHD_run() is called again.
 * Anything that unpauses or adds a transfer sets curl_dirty so the next
 * turn does not sleep.
 */
#include "proxy/worker.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/slist.h"
#include "proxy/proxy.h"
#include "proxy/conntrack.h"
#include "proxy/evtag.h"
#include "proxy/relay.h"
#include "proxy/request.h"
#include "tls/tlsin.h"

#define MHD_POOL_MIN (32 * 1024) /* also the read buffer for request bodies */
#define MHD_RESPONSE_ROOM                                                                                              \
	(4 * 1024) /* the answer's header block next to the largest request (nginx: proxy_buffer_size, 4 KiB) */
#define LOOP_MAX_SLEEP_MS  1000
#define TRIM_AFTER_IDLE_MS 2000
#define CONN_SLACK         64 /* connections accepted past the budget, to answer 503 */
#define LOOP_EVENTS        64
#define MHD_STEPS          8  /* MHD_run calls per loop turn while MHD has work (run_mhd) */
#define LOG_HOLD_MS        50 /* longest a busy loop keeps request lines unwritten */
/* libmicrohttpd 1.0's request parser discipline, -3 (lenient) .. 3. Level 1
 * is RFC 9112 to the letter: it refuses obs-fold, bare CR and LF, NUL,
 * empty or spaced field names, a second Host and a second Content-Length,
 * and skips one empty line before a request line (RFC 9112 2.2, which
 * some clients send after a body). Level 2 would also refuse the optional
 * whitespace RFC 9112 7.1.1 allows around chunk extensions, and stop
 * skipping that empty line; no smuggling shape needs it, since the proxy
 * re-frames every body it forwards (docs/security.md, "The front door"). */
#define CLIENT_DISCIPLINE 1

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct worker *w = cls;
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	struct log_line l;
	log_begin(&l, LOG_DEBUG, "http_server");
	log_int(&l, "worker", w->id);
	log_str(&l, "msg", msg);
	log_end(&l);
}

/*
 * MHD's per-connection pool holds the request (line, headers, their index)
 * and then the answer's header block (internals.md L-MHD-8). libmicrohttpd 0.9.75 zeroes
 * the whole pool for every request on a kept-alive connection, and every
 * page of it stays resident per connection, so it is sized to need:
 * max_header_bytes plus room for the answer's headers. proxy.c checks that
 * an upstream's header block fits before it queues it (worker->mhd_pool_bytes).
 */
static size_t pool_bytes(const struct config *cfg)
{
	size_t want = cfg->proxy.max_header_bytes + MHD_RESPONSE_ROOM;
	return want < MHD_POOL_MIN ? (size_t)MHD_POOL_MIN : want;
}

static int start_mhd(struct worker *w)
{
	struct MHD_OptionItem tls_ops[4];
	size_t n_tls = tlsin_mhd_options(tls_ops, 3);
	tls_ops[n_tls] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	/* max_connections is one budget for the process (conntrack.c), so each
	 * daemon may hold all of it, plus room for connections past it to be
	 * accepted and told 503 instead of waiting in the accept queue. */
	unsigned limit = (unsigned)w->cfg->proxy.max_connections + CONN_SLACK;
	w->mhd_pool_bytes = pool_bytes(w->cfg); /* fixed for the daemon's life, also across reloads */
	/* listen_fd < 0: no listen socket, connections come from MHD_add_connection (worker_turn) */
	unsigned no_listen = w->listen_fd < 0 ? MHD_USE_NO_LISTEN_SOCKET : 0;
	/* Every MHD call is made on this worker's thread (main.c only starts the
	 * daemon before the thread exists and stops it after the join), so the
	 * daemon needs no inter-thread channel: without NO_THREAD_SAFETY each
	 * MHD_resume_connection writes to an eventfd that MHD then reads back,
	 * two syscalls per request the loop does not need (it runs MHD itself
	 * after a resume: mhd_dirty). */
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_THREAD_SAFETY | MHD_USE_ERROR_LOG |
			 tlsin_mhd_flags() | no_listen;
	w->mhd = MHD_start_daemon(flags, 0, NULL, NULL, proxy_on_request, w, MHD_OPTION_LISTEN_SOCKET, w->listen_fd,
				  MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT,
				  (unsigned)w->cfg->proxy.client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				  w->mhd_pool_bytes, MHD_OPTION_CLIENT_DISCIPLINE_LVL, CLIENT_DISCIPLINE,
				  MHD_OPTION_URI_LOG_CALLBACK, proxy_on_uri, w, MHD_OPTION_NOTIFY_COMPLETED,
				  proxy_on_completed, w, MHD_OPTION_NOTIFY_CONNECTION, conntrack_on_notify, &w->ct,
				  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, w, MHD_OPTION_ARRAY, tls_ops, MHD_OPTION_END);
	if (!w->mhd) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot start the HTTP server", w->id);
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: no epoll fd from the HTTP server", w->id);
		return -1;
	}
	w->mhd_epfd = info->epoll_fd;
	return 0;
}

/* Idle upstream connections kept per worker: as many as its share of
 * client connections (each may need one at once), within 64..512. Fewer
 * makes busy workers open a new TLS connection for most requests. */
static long idle_pool(const struct worker *w)
{
	long workers = w->n_workers > 0 ? w->n_workers : 1;
	long n = w->cfg->proxy.max_connections / workers;
	return n < 64 ? 64 : n > 512 ? 512 : n;
}

/*
 * What the worker's epoll set holds for a curl socket, by fd. curl asks to
 * stop watching a kept-alive upstream connection after every request and
 * to watch it again for the next; a removal is therefore only noted
 * (SOCK_IDLE) and the next request's interest becomes one EPOLL_CTL_MOD
 * instead of a DEL and an ADD. An idle socket that becomes readable (the
 * upstream closed it) is removed for real when its event arrives, so it
 * cannot spin the loop. When curl closed the socket meanwhile, the kernel
 * dropped it from the set and MOD fails with ENOENT: then it is added.
 */
enum { SOCK_NONE = 0, SOCK_WANTED, SOCK_IDLE };
#define SOCK_FD_MAX (1 << 20)

static unsigned char *sock_state(struct worker *w, curl_socket_t s)
{
	if (s < 0 || s >= SOCK_FD_MAX)
		return NULL;
	if ((size_t)s >= w->sock_cap) {
		size_t cap = w->sock_cap ? w->sock_cap : 256;
		while (cap <= (size_t)s)
			cap *= 2;
		unsigned char *n = realloc(w->sock, cap);
		if (!n)
			return NULL;
		memset(n + w->sock_cap, SOCK_NONE, cap - w->sock_cap);
		w->sock = n;
		w->sock_cap = cap;
	}
	return &w->sock[s];
}

/* curl tells which of its sockets to watch for what (called from inside
 * curl calls on this thread). */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct worker *w = userp;
	struct epoll_event ev = {.events = 0, .data.u64 = EV_DATA(s, EV_CURL)};
	unsigned char *st = sock_state(w, s);
	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		if (st && *st == SOCK_WANTED)
			*st = SOCK_IDLE;
		else if (!st)
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL); /* no bookkeeping: remove at once */
		return 0;
	}
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
	int rc = epoll_ctl(w->epfd, st && *st != SOCK_NONE ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
	if (rc < 0 && errno == ENOENT)
		rc = epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
	else if (rc < 0 && errno == EEXIST)
		rc = epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev);
	if (rc < 0) {
		log_msg(LOG_ERROR, "upstream_loop", "worker %d: epoll_ctl: %s", w->id, strerror(errno));
		return -1; /* the transfer on s fails */
	}
	if (st)
		*st = SOCK_WANTED;
	return 0;
}

static void curl_act(struct worker *w, curl_socket_t s, int flags);

/* An event on a curl socket: to curl when it wants it, else (idle) out of the set. */
static void curl_socket_event(struct worker *w, int fd, uint32_t events)
{
	unsigned char *st = sock_state(w, fd);
	if (st && *st != SOCK_WANTED) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
		*st = SOCK_NONE;
		return;
	}
	curl_act(w, fd,
		 ((events & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
		     ((events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0));
}

/* curl's next timeout: -1 none, 0 as soon as possible. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct worker *w = userp;
	(void)multi;
	w->curl_deadline_ms = timeout_ms < 0 ? -1 : clock_now_ms() + timeout_ms;
	return 0;
}

/* One TLS session cache per worker, shared by all its transfers. Without
 * it each pooled easy handle keeps its own few sessions, so when the
 * concurrency jumps (a burst opening many upstream connections at once)
 * every new connection pays a full handshake (certificate chain and
 * signature checks on both sides), and requests queue behind them on the
 * worker's thread: the tail of a cold burst. With it, the second and later
 * connections to a host resume. Only this worker's thread uses the share,
 * so it needs no lock callbacks. curl matches a session to host, port and
 * TLS settings, so a session never crosses routes with other trust. */
static int start_tls_sessions(struct worker *w)
{
	w->tls_sessions = curl_share_init();
	if (!w->tls_sessions)
		return -1;
	if (curl_share_setopt(w->tls_sessions, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
		curl_share_cleanup(w->tls_sessions);
		w->tls_sessions = NULL;
		return -1;
	}
	return 0;
}

/* After every easy handle that used the share is cleaned up (curl refuses
 * to free a share still in use). NULL-safe. */
static void stop_tls_sessions(struct worker *w)
{
	if (w->tls_sessions && curl_share_cleanup(w->tls_sessions) == CURLSHE_OK)
		w->tls_sessions = NULL;
}

static int start_multi(struct worker *w)
{
	w->multi = curl_multi_init();
	if (!w->multi)
		return -1;
	if (curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w) != CURLM_OK ||
	    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w) != CURLM_OK)
		return -1;
	/* HTTP/1.1 only: a paused stream on a multiplexed connection makes curl
	 * buffer it without bound (internals.md L-CURL-8). */
	if (curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING) != CURLM_OK ||
	    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, idle_pool(w)) != CURLM_OK)
		return -1;
	/* Per upstream host and per worker (each worker has its own connection
	 * cache); beyond the cap, requests queue inside curl. */
	long cap = w->cfg->proxy.upstream_max_connections;
	if (cap > 0 && curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap) != CURLM_OK)
		return -1;
	if (connto_init(&w->connect_to, &w->cfg->proxy) < 0)
		return -1;
	return start_tls_sessions(w);
}

static int worker_count = 1;

/* The running workers, by id, for worker_ask_room (written by main.c's
 * thread in worker_start and worker_join, read by every worker). */
#define REGISTRY_MAX 64
static _Atomic(struct worker *) registry[REGISTRY_MAX];

static int watch(struct worker *w, int fd, enum ev_tag tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_DATA(fd, tag)};
	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* After curl_multi_cleanup: curl removes its sockets from the set. */
static void close_events(struct worker *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	w->epfd = w->wake_fd = -1;
	free(w->sock);
	w->sock = NULL;
	w->sock_cap = 0;
}

/* Any thread: make the worker's epoll_wait return. */
static void wake(struct worker *w)
{
	uint64_t one = 1;
	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, "worker_wake", "worker %d: %s", w->id, strerror(errno));
}

void worker_set_count(int n)
{
	worker_count = n > 0 ? n : 1;
}

static void ask_room(void *arg);

int worker_init(struct worker *w, int id, const struct config *cfg, struct token_engine *tokens, int listen_fd)
{
	memset(w, 0, sizeof *w);
	LIST_INIT(&w->parked);
	LIST_INIT(&w->all);
	w->n_workers = worker_count;
	w->id = id;
	w->cfg = cfg;
	w->tokens = tokens;
	w->listen_fd = listen_fd;
	w->mhd_epfd = -1;
	w->curl_deadline_ms = -1;
	w->epfd = w->wake_fd = -1;
	atomic_init(&w->token_event, 0);
	atomic_init(&w->verify_event, 0);
	atomic_init(&w->room_asked, 0);
	atomic_init(&w->next_gen, NULL);
	atomic_init(&w->stop, 0);
	atomic_init(&w->finished, false);
	if (getrandom(&w->rng, sizeof w->rng, 0) != (ssize_t)sizeof w->rng)
		w->rng = (uint64_t)clock_now_ms() * 0x9E3779B97F4A7C15ull + (uint64_t)id;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->epfd < 0 || w->wake_fd < 0 || watch(w, w->wake_fd, EV_WAKE) < 0) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot create its event set: %s", id, strerror(errno));
		goto fail;
	}
	conntrack_init(&w->ct, &cfg->proxy, w->epfd, ask_room, w);
	if (start_multi(w) < 0) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot create the upstream client", id);
		goto fail;
	}
	if (start_mhd(w) < 0)
		goto fail;
	if (watch(w, w->mhd_epfd, EV_MHD) < 0) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot watch the HTTP server: %s", id, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	/* The caller keeps listen_fd on failure. */
	if (w->mhd) {
		MHD_quiesce_daemon(w->mhd);
		MHD_stop_daemon(w->mhd);
		w->mhd = NULL;
	}
	connto_free(&w->connect_to);
	if (w->multi)
		curl_multi_cleanup(w->multi);
	w->multi = NULL;
	stop_tls_sessions(w);
	close_events(w);
	return -1;
}

/* Milliseconds the loop may sleep. */
static int loop_timeout(struct worker *w, long long now)
{
	if (w->mhd_dirty || w->curl_dirty)
		return 0;
	long long to = LOOP_MAX_SLEEP_MS;
	MHD_UNSIGNED_LONG_LONG mto;
	if (MHD_get_timeout(w->mhd, &mto) == MHD_YES && (long long)mto < to)
		to = (long long)mto;
	if (w->curl_deadline_ms >= 0 && w->curl_deadline_ms - now < to)
		to = w->curl_deadline_ms - now;
	long long park = proxy_next_deadline(w);
	if (park > 0 && park - now < to)
		to = park - now;
	if (w->draining && w->drain_deadline_ms - now < to)
		to = w->drain_deadline_ms - now;
	long long linger = linger_next_deadline(&w->ct.linger);
	if (linger > 0 && linger - now < to)
		to = linger - now;
	return to < 0 ? 0 : (int)to;
}

static void curl_act(struct worker *w, curl_socket_t s, int flags)
{
	int running = 0;
	CURLMcode mc = curl_multi_socket_action(w->multi, s, flags, &running);
	if (mc != CURLM_OK)
		log_msg(LOG_ERROR, "upstream_loop", "curl_multi_socket_action: %s", curl_multi_strerror(mc));
}

/* curl's timers: added or unpaused transfers (curl_dirty, or a timeout of
 * 0), connect and transfer timeouts. The deadline is re-read from curl
 * afterwards, because curl reports a timer only when it changes. */
static void run_curl_timers(struct worker *w)
{
	long ms = -1;
	if (!w->curl_dirty && (w->curl_deadline_ms < 0 || w->curl_deadline_ms > clock_now_ms()))
		return;
	w->curl_dirty = false;
	curl_act(w, CURL_SOCKET_TIMEOUT, 0);
	if (curl_multi_timeout(w->multi, &ms) == CURLM_OK)
		w->curl_deadline_ms = ms < 0 ? -1 : clock_now_ms() + ms;
}

/* Finished transfers. */
static void collect_curl(struct worker *w)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(w->multi, &left))) {
		if (msg->msg == CURLMSG_DONE)
			relay_done(w, msg->easy_handle, msg->data.result);
	}
}

/* curl's due timers, then its finished transfers. */
static void run_curl(struct worker *w)
{
	run_curl_timers(w);
	collect_curl(w);
}

static bool mhd_timer_due(struct worker *w)
{
	MHD_UNSIGNED_LONG_LONG ms;
	return MHD_get_timeout(w->mhd, &ms) == MHD_YES && ms == 0;
}

/*
 * MHD moves each connection one step per MHD_run (one read, one send, the
 * reset between kept-alive requests) and shows more to do as a zero
 * timeout. Taking up to MHD_STEPS of those steps here, instead of one per
 * loop turn, saves the loop's own epoll_wait on each: two per small
 * request, one per read of a request body. curl's sockets wait meanwhile
 * for at most MHD_STEPS MHD_run calls.
 */
static void run_mhd(struct worker *w)
{
	int resumed_rounds = 0, steps = 0;
	for (;;) {
		w->mhd_dirty = false;
		if (MHD_run(w->mhd) != MHD_YES)
			log_msg(LOG_WARN, "http_server", "worker %d: MHD_run failed", w->id);
		if (w->mhd_dirty && ++resumed_rounds < 64)
			continue; /* a connection resumed from inside MHD_run */
		if (++steps < MHD_STEPS && mhd_timer_due(w))
			continue;
		break;
	}
}

static void begin_drain(struct worker *w, long long now)
{
	if (w->draining)
		return;
	w->draining = true;
	w->ct.draining = true;
	w->drain_deadline_ms = now + w->cfg->proxy.shutdown_timeout_s * 1000;
	/* Stop accepting; MHD hands the listen socket back to us. */
	MHD_socket fd = MHD_quiesce_daemon(w->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	w->listen_fd = -1;
}

/* glibc's malloc_trim. Not under AddressSanitizer: its allocator replaces
 * malloc, so there is nothing of ours to trim, and glibc's own allocator
 * is then set up lazily by whichever thread first needs it (dlopen, name
 * lookups); malloc_trim racing that set-up crashed in mtrim. */
static void give_back_memory(void)
{
#if !defined(__SANITIZE_ADDRESS__)
	malloc_trim(0);
#endif
}

/* After a burst (large bodies, many connections) glibc keeps the freed
 * memory in its arenas; give it back once the worker has been idle a while,
 * so the proxy's footprint returns to its baseline. */
static void trim_when_idle(struct worker *w, long long now)
{
	if (w->inflight > 0) {
		w->busy_since_trim = true;
		w->idle_since_ms = now;
		return;
	}
	if (w->busy_since_trim && now - w->idle_since_ms >= TRIM_AFTER_IDLE_MS) {
		pool_drain(&w->pool);
		give_back_memory();
		w->busy_since_trim = false;
		log_msg(LOG_DEBUG, "memory_returned", "worker %d idle, freed memory given back", w->id);
	}
}

/* Take a generation handed over by worker_set_gen: new requests use it. */
static void adopt_gen(struct worker *w)
{
	struct worker_gen *g = atomic_exchange(&w->next_gen, NULL);

	if (g == NULL)
		return;
	if (w->gen != NULL)
		atomic_fetch_sub(&w->gen->refs, 1);
	w->gen = g;
	w->cfg = g->cfg;
	w->ct.cfg = &g->cfg->proxy;
	w->tokens = g->tokens;
	if (connto_adopt(&w->connect_to, &g->cfg->proxy) < 0)
		log_msg(LOG_ERROR, "reload_partial", "worker %d: out of memory: connect_to keeps its old entries",
			w->id);
}

/* Wait for events (or until a timer is due) and hand curl its ready
 * sockets. Returns whether MHD has something to do, or -1 on failure. */
static int wait_events(struct worker *w, int timeout_ms)
{
	struct epoll_event evs[LOOP_EVENTS];
	int mhd_ready = 0;
	int n = epoll_wait(w->epfd, evs, LOOP_EVENTS, timeout_ms);
	if (n < 0 && errno != EINTR) {
		log_msg(LOG_ERROR, "upstream_loop", "worker %d: epoll_wait: %s", w->id, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int fd = EV_FD(evs[i].data.u64);
		uint64_t drained;
		switch (EV_TAG(evs[i].data.u64)) {
		case EV_MHD:
			mhd_ready = 1;
			break;
		case EV_WAKE: /* the reason (stop, token, generation) is in atomics */
			if (read(w->wake_fd, &drained, sizeof drained) < 0 && errno != EAGAIN)
				log_msg(LOG_WARN, "worker_wake", "worker %d: %s", w->id, strerror(errno));
			break;
		case EV_CURL:
			curl_socket_event(w, fd, evs[i].events);
			break;
		case EV_LINGER:
			linger_event(&w->ct.linger, fd, clock_now_ms());
			break;
		}
	}
	return mhd_ready;
}

/* One turn of the loop after its sleep decision: wait up to timeout_ms,
 * then every side that has work. Returns whether MHD had events, or -1. */
static int loop_turn(struct worker *w, int timeout_ms)
{
	int mhd_ready = wait_events(w, timeout_ms);
	if (mhd_ready < 0)
		return -1;
	run_curl(w);
	if (atomic_exchange(&w->token_event, 0))
		proxy_token_event(w);
	if (atomic_exchange(&w->verify_event, 0))
		proxy_verify_event(w);
	proxy_check_deadlines(w, clock_now_ms());
	conntrack_cut_slow(&w->ct, clock_now_ms());
	if (conntrack_hurry_closed(&w->ct, clock_now_ms()))
		w->mhd_dirty = true;
	if (atomic_exchange(&w->room_asked, 0))
		conntrack_give_room(&w->ct);
	linger_sweep(&w->ct.linger, clock_now_ms());
	trim_when_idle(w, clock_now_ms());
	if (mhd_ready || w->mhd_dirty || w->draining || mhd_timer_due(w))
		run_mhd(w);
	if (w->curl_dirty) { /* requests MHD just started go out in this turn */
		run_curl(w);
		if (w->mhd_dirty) /* an upstream answered at once: so does the client */
			run_mhd(w);
	}
	return mhd_ready;
}

/* MHD_run calls epoll_wait and walks MHD's lists, so it runs only when
 * something is pending for it. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	log_batch_begin(); /* request lines go out once per loop turn, not one write each */
	for (;;) {
		adopt_gen(w);
		long long now = clock_now_ms();
		int stop = atomic_load(&w->stop);
		if (stop && !w->draining)
			begin_drain(w, now);
		if (w->draining && (w->inflight == 0 || stop == 2 || now >= w->drain_deadline_ms))
			break;
		int timeout_ms = loop_timeout(w, now);
		/* Lines go out before a sleep, and at least every LOG_HOLD_MS while
		 * the loop is busy (or when PIPE_BUF fills): a busy turn does not
		 * pay a write(2), and a response is not held behind its log line. */
		if (timeout_ms != 0 || now - w->log_flushed_ms >= LOG_HOLD_MS) {
			log_flush();
			w->log_flushed_ms = now;
		}
		if (loop_turn(w, timeout_ms) < 0)
			break;
	}
	/* Whatever is still in flight is cut: clients see a truncated answer or
	 * a 503, never a hang (MHD must not be stopped with suspended
	 * connections: internals.md L-MHD-7). */
	proxy_abort_all(w);
	collect_curl(w);
	run_mhd(w);
	log_flush();
	atomic_store(&w->finished, true);
	return NULL;
}

int worker_start(struct worker *w)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot start thread: %s", w->id, strerror(errno));
		return -1;
	}
	w->started = true;
	if (w->id >= 0 && w->id < REGISTRY_MAX)
		atomic_store(&registry[w->id], w);
	return 0;
}

void worker_request_stop(struct worker *w, bool now)
{
	atomic_store(&w->stop, now ? 2 : 1);
	wake(w);
}

void worker_set_gen(struct worker *w, struct worker_gen *g)
{
	struct worker_gen *old;

	atomic_fetch_add(&g->refs, 1);
	old = atomic_exchange(&w->next_gen, g);
	if (old != NULL) /* never adopted: superseded by g */
		atomic_fetch_sub(&old->refs, 1);
	wake(w);
}

/* conntrack's ask_room hook: every other running worker closes one idle
 * connection, if it has one, because `self` is over max_connections
 * without one. */
static void ask_room(void *arg)
{
	struct worker *self = arg;
	for (int i = 0; i < REGISTRY_MAX; i++) {
		struct worker *w = atomic_load(&registry[i]);
		if (w && w != self && !atomic_load(&w->finished)) {
			atomic_store(&w->room_asked, 1);
			wake(w);
		}
	}
}

void worker_token_changed(struct worker *w)
{
	atomic_store(&w->token_event, 1);
	wake(w);
}

void worker_verify_done(struct worker *w)
{
	atomic_store(&w->verify_event, 1);
	wake(w);
}

void worker_join(struct worker *w)
{
	if (!w)
		return;
	if (w->id >= 0 && w->id < REGISTRY_MAX && atomic_load(&registry[w->id]) == w)
		atomic_store(&registry[w->id], NULL);
	if (w->started) {
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	if (w->mhd) {
		if (!w->draining) {
			MHD_socket fd = MHD_quiesce_daemon(w->mhd);
			if (fd != MHD_INVALID_SOCKET)
				close(fd);
			w->listen_fd = -1;
		}
		MHD_stop_daemon(w->mhd);
		w->mhd = NULL;
	}
	if (!LIST_EMPTY(&w->all))
		log_msg(LOG_WARN, "worker_leak", "worker %d: requests still live at stop", w->id);
	if (w->multi) {
		curl_multi_cleanup(w->multi);
		w->multi = NULL;
	}
	pool_drain(&w->pool); /* after the multi: pooled handles are in none */
	stop_tls_sessions(w); /* after the handles that used it */
	conntrack_close(&w->ct);
	close_events(w);
	for (size_t i = 0; i < sizeof w->claims_cache / sizeof w->claims_cache[0]; i++) {
		tok_info_unref(w->claims_cache[i].info); /* requests still alive keep their own reference */
		w->claims_cache[i].info = NULL;
	}
	connto_free(&w->connect_to);
	if (w->listen_fd >= 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
}

/*
 * For fuzz/fuzz_inbound.c, which drives a worker itself instead of starting
 * its thread: one turn of worker_main's loop on the calling thread, sleeping
 * at most max_wait_ms. Left out is what a driven worker does not have:
 * configuration generations, stop and drain, batched log lines.
 */
int worker_turn(struct worker *w, int max_wait_ms)
{
	int timeout_ms = loop_timeout(w, clock_now_ms());
	return loop_turn(w, timeout_ms < max_wait_ms ? timeout_ms : max_wait_ms);
}
