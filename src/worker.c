/*
 * worker.c - the worker loop: libmicrohttpd in external epoll mode plus a
 * libcurl multi, one thread, no locks on the request path.
 *
 * The loop follows c-style-and-design.md B.3.2: curl_multi_poll() waits on
 * curl's sockets and MHD's epoll fd together; after curl ran, MHD runs
 * until no callback resumed a connection (mhd_dirty), because in external
 * mode a resumed connection makes progress only when MHD_run() is called
 * again. Anything that unpauses or adds a transfer sets curl_dirty so the
 * next poll does not sleep.
 */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "conntrack.h"
#include "relay.h"
#include "tlsin.h"

#define MHD_POOL_MIN       (32 * 1024) /* also the read buffer for request bodies */
#define MHD_RESPONSE_ROOM  (16 * 1024) /* the answer's header block, next to the largest request */
#define LOOP_MAX_SLEEP_MS  1000
#define TRIM_AFTER_IDLE_MS 2000
#define CONN_SLACK         16 /* connections accepted past the limit, to answer 503 */

long long worker_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
 * and then the answer's header block (B.7 #8). libmicrohttpd 0.9.75 zeroes
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
	/* Room above the share of max_connections, so connections beyond it are
	 * accepted and told 503 (conntrack) instead of being closed unanswered. */
	unsigned limit = conntrack_limit(w) + CONN_SLACK;
	w->mhd_pool_bytes = pool_bytes(w->cfg); /* fixed for the daemon's life, also across reloads */
	w->mhd = MHD_start_daemon(
	    MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | tlsin_mhd_flags(), 0, NULL, NULL,
	    proxy_on_request, w, MHD_OPTION_LISTEN_SOCKET, w->listen_fd, MHD_OPTION_CONNECTION_LIMIT, limit,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)w->cfg->proxy.client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    w->mhd_pool_bytes, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_URI_LOG_CALLBACK, proxy_on_uri, w,
	    MHD_OPTION_NOTIFY_COMPLETED, proxy_on_completed, w, MHD_OPTION_NOTIFY_CONNECTION, conntrack_on_notify, w,
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
	long n = (long)conntrack_limit(w);
	return n < 64 ? 64 : n > 512 ? 512 : n;
}

static int start_multi(struct worker *w)
{
	w->multi = curl_multi_init();
	if (!w->multi)
		return -1;
	/* HTTP/1.1 only: a paused stream on a multiplexed connection makes curl
	 * buffer it without bound (B.3.6). */
	if (curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING) != CURLM_OK ||
	    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, idle_pool(w)) != CURLM_OK)
		return -1;
	/* Per upstream host and per worker (each worker has its own connection
	 * cache); beyond the cap, requests queue inside curl. */
	long cap = w->cfg->proxy.upstream_max_connections;
	if (cap > 0 && curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap) != CURLM_OK)
		return -1;
	for (size_t i = 0; i < w->cfg->proxy.n_connect_to; i++) {
		struct curl_slist *n = curl_slist_append(w->connect_to, w->cfg->proxy.connect_to[i].entry);
		if (!n)
			return -1;
		w->connect_to = n;
	}
	return 0;
}

static int worker_count = 1;

void worker_set_count(int n)
{
	worker_count = n > 0 ? n : 1;
}

int worker_init(struct worker *w, int id, const struct config *cfg, struct token_engine *tokens, int listen_fd)
{
	memset(w, 0, sizeof *w);
	w->n_workers = worker_count;
	w->id = id;
	w->cfg = cfg;
	w->tokens = tokens;
	w->listen_fd = listen_fd;
	w->mhd_epfd = -1;
	atomic_init(&w->token_event, 0);
	atomic_init(&w->next_gen, NULL);
	atomic_init(&w->stop, 0);
	atomic_init(&w->finished, false);
	if (getrandom(&w->rng, sizeof w->rng, 0) != (ssize_t)sizeof w->rng)
		w->rng = (uint64_t)worker_now_ms() * 0x9E3779B97F4A7C15ull + (uint64_t)id;
	if (start_multi(w) < 0) {
		log_msg(LOG_ERROR, "worker_failed", "worker %d: cannot create the upstream client", id);
		goto fail;
	}
	if (start_mhd(w) < 0)
		goto fail;
	return 0;
fail:
	/* The caller keeps listen_fd on failure. */
	if (w->mhd) {
		MHD_quiesce_daemon(w->mhd);
		MHD_stop_daemon(w->mhd);
		w->mhd = NULL;
	}
	curl_slist_free_all(w->connect_to);
	w->connect_to = NULL;
	if (w->multi)
		curl_multi_cleanup(w->multi);
	w->multi = NULL;
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
	long long park = proxy_next_deadline(w);
	if (park > 0 && park - now < to)
		to = park - now;
	if (w->draining && w->drain_deadline_ms - now < to)
		to = w->drain_deadline_ms - now;
	return to < 0 ? 0 : (int)to;
}

static void run_curl(struct worker *w)
{
	int running = 0;
	w->curl_dirty = false;
	CURLMcode mc = curl_multi_perform(w->multi, &running);
	if (mc != CURLM_OK)
		log_msg(LOG_ERROR, "upstream_loop", "curl_multi_perform: %s", curl_multi_strerror(mc));
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(w->multi, &left))) {
		if (msg->msg == CURLMSG_DONE)
			relay_done(w, msg->easy_handle, msg->data.result);
	}
}

static void run_mhd(struct worker *w)
{
	int rounds = 0;
	do {
		w->mhd_dirty = false;
		if (MHD_run(w->mhd) != MHD_YES)
			log_msg(LOG_WARN, "http_server", "worker %d: MHD_run failed", w->id);
	} while (w->mhd_dirty && ++rounds < 64);
}

static void begin_drain(struct worker *w, long long now)
{
	if (w->draining)
		return;
	w->draining = true;
	w->drain_deadline_ms = now + w->cfg->proxy.shutdown_timeout_s * 1000;
	/* Stop accepting; MHD hands the listen socket back to us. */
	MHD_socket fd = MHD_quiesce_daemon(w->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	w->listen_fd = -1;
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
		malloc_trim(0);
		w->busy_since_trim = false;
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
	w->tokens = g->tokens;
}

/* Has curl's own timer (timeouts, retries, an added or unpaused transfer) expired? */
static bool curl_timer_due(struct worker *w)
{
	long ms = -1;
	return curl_multi_timeout(w->multi, &ms) == CURLM_OK && ms == 0;
}

static bool mhd_timer_due(struct worker *w)
{
	MHD_UNSIGNED_LONG_LONG ms;
	return MHD_get_timeout(w->mhd, &ms) == MHD_YES && ms == 0;
}

/*
 * Each side runs only when it has work: curl_multi_perform polls the
 * socket of every running transfer and MHD_run calls epoll_wait, so a
 * side run for nothing costs syscalls per request. When a flag already
 * says what to run, the poll is skipped too (it could not sleep anyway),
 * but never twice in a row, so ready sockets of the other side are
 * always seen within one loop turn.
 */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	bool skipped_poll = false;
	log_batch_begin(); /* request lines go out once per loop turn, not one write each */
	for (;;) {
		adopt_gen(w);
		long long now = worker_now_ms();
		int stop = atomic_load(&w->stop);
		if (stop && !w->draining)
			begin_drain(w, now);
		if (w->draining && (w->inflight == 0 || stop == 2 || now >= w->drain_deadline_ms))
			break;
		bool curl_due = w->curl_dirty, mhd_due = w->mhd_dirty;
		log_flush(); /* before a possible sleep: lines are never held back */
		if (skipped_poll || !(curl_due || mhd_due)) {
			struct curl_waitfd extra = {.fd = w->mhd_epfd, .events = CURL_WAIT_POLLIN, .revents = 0};
			int nfds = 0;
			CURLMcode mc = curl_multi_poll(w->multi, &extra, 1, loop_timeout(w, now), &nfds);
			if (mc != CURLM_OK) {
				log_msg(LOG_ERROR, "upstream_loop", "curl_multi_poll: %s", curl_multi_strerror(mc));
				break;
			}
			mhd_due = mhd_due || extra.revents != 0;
			curl_due = curl_due || nfds > (extra.revents != 0); /* nfds never counts the wakeup */
			skipped_poll = false;
		} else {
			skipped_poll = true;
		}
		if (curl_due || curl_timer_due(w))
			run_curl(w);
		if (atomic_exchange(&w->token_event, 0))
			proxy_token_event(w);
		proxy_check_deadlines(w, worker_now_ms());
		conntrack_cut_slow(w, worker_now_ms());
		trim_when_idle(w, worker_now_ms());
		if (mhd_due || w->mhd_dirty || w->draining || mhd_timer_due(w))
			run_mhd(w);
	}
	/* Whatever is still in flight is cut: clients see a truncated answer or
	 * a 503, never a hang (MHD must not be stopped with suspended
	 * connections, B.7 #6). */
	proxy_abort_all(w);
	run_curl(w);
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
	return 0;
}

void worker_request_stop(struct worker *w, bool now)
{
	atomic_store(&w->stop, now ? 2 : 1);
	if (w->multi)
		curl_multi_wakeup(w->multi);
}

void worker_set_gen(struct worker *w, struct worker_gen *g)
{
	struct worker_gen *old;

	atomic_fetch_add(&g->refs, 1);
	old = atomic_exchange(&w->next_gen, g);
	if (old != NULL) /* never adopted: superseded by g */
		atomic_fetch_sub(&old->refs, 1);
	if (w->multi)
		curl_multi_wakeup(w->multi);
}

void worker_token_changed(struct worker *w)
{
	atomic_store(&w->token_event, 1);
	if (w->multi)
		curl_multi_wakeup(w->multi);
}

void worker_join(struct worker *w)
{
	if (!w)
		return;
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
	if (w->all)
		log_msg(LOG_WARN, "worker_leak", "worker %d: requests still live at stop", w->id);
	if (w->multi) {
		curl_multi_cleanup(w->multi);
		w->multi = NULL;
	}
	pool_drain(&w->pool); /* after the multi: pooled handles are in none */
	curl_slist_free_all(w->connect_to);
	w->connect_to = NULL;
	if (w->listen_fd >= 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
}
