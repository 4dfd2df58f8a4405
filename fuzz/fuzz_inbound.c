/*
 * fuzz_inbound.c - libFuzzer target for the inbound side as a whole: the
 * input is the raw byte stream a client sends, received by the real
 * libmicrohttpd daemon of a real worker (worker_init: the proxy's access
 * handler, URI, completion and connection callbacks, client discipline and
 * limits, exactly as the proxy runs it) over one end of a socketpair.
 *
 * Set up once (LLVMFuzzerInitialize): a configuration parsed by
 * config_load_stream from the text below, metrics, the token engine and one
 * worker without a listen socket (listen_fd -1: MHD_USE_NO_LISTEN_SOCKET).
 * Nothing touches the network: every upstream and the token endpoint are
 * 127.0.0.1 on a port this process holds bound but not listening, so a
 * connection attempt is refused at once. The token engine is started only
 * until each source has failed once (connection refused) and stopped
 * again; its first source is then given a token directly (token_int.h, as
 * a fetch would store it), so requests on the routes using it reach the
 * forwarding stage (relay.c, curl) and get a local 502, and requests on
 * the "failing" route get the 503 for an unreachable token endpoint.
 *
 * Per input: a new socketpair, MHD_add_connection, then worker_turn (one
 * turn of the worker loop) until the input is written and the worker is
 * quiet, the proxy closed the connection, or MAX_TURNS passed; the answer
 * is read and discarded. The client then closes its end and the worker
 * runs until MHD dropped the connection and every request is gone
 * (proxy_abort_all as a last resort, as a stopping worker does). A
 * connection or request still alive after that aborts: state must not leak
 * from one input into the next.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "config/config.h"
#include "util/log.h"
#include "ops/metrics.h"
#include "proxy/proxy.h"
#include "proxy/request.h"
#include "wstrust/sts.h"
#include "tls/tlsca.h"
#include "token/token.h"
#include "token/token_int.h"
#include "proxy/worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TURNS    64 /* worker loop turns per input while it makes progress */
#define QUIET_TURNS  2  /* turns without progress that end an input */
#define CLOSE_TURNS  16 /* turns after the client closed, before proxy_abort_all */
#define CURL_WAIT_MS 2  /* how long a turn may sleep while an upstream transfer runs */
/*
 * client_timeout of the configuration below. libmicrohttpd 1.0.10 can keep
 * a connection it has itself closed until that timeout: when the read
 * buffer is full of pipelined bytes that are not a request line, it closes
 * the connection while working out which events to wait for, and a
 * connection in that state waits for no event (docs/internals.md L-MHD-15).
 * So a connection may outlive its client by client_timeout, never longer.
 */
#define CLIENT_TIMEOUT_MS 1000

/* A JWT-shaped token (unsigned; nothing verifies it): claims for diagnoses. */
#define FAKE_TOKEN                                                                                                     \
	"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."                                                                         \
	"eyJhdWQiOiJodHRwczovL2NvbnRvc28uY3JtNC5keW5hbWljcy5jb20iLCJhcHBpZCI6IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAw" \
	"MDAwMDAwMSIsInRpZCI6ImNvbnRvc28ub25taWNyb3NvZnQuY29tIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2ln"

static struct config *cfg;
static struct token_engine *te;
static struct worker w;
static bool w_ready;
static int closed_port_fd = -1; /* bound, never listening: holds the port no one else can listen on */
static char tmpdir[64];
static char key_path[128], ids_path[128];
static bool echo; /* FUZZ_INBOUND_ECHO=1: the proxy's answers go to stderr (reading a reproducer) */

static void die(const char *what)
{
	fprintf(stderr, "fuzz_inbound: %s: %s\n", what, strerror(errno));
	abort();
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die(path);
}

/* A loopback port on which connect() is refused. */
static unsigned closed_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	closed_port_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (closed_port_fd < 0 || bind(closed_port_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(closed_port_fd, (struct sockaddr *)&sa, &sl) < 0)
		die("closed port");
	return ntohs(sa.sin_port);
}

static struct config *load_config(unsigned port)
{
	char text[4096];
	int n = snprintf(text, sizeof text,
			 "[proxy]\n"
			 "listen = 127.0.0.1:0\n"
			 "workers = 1\n"
			 "log_level = debug\n"
			 "client_timeout = 1s\n" /* CLIENT_TIMEOUT_MS */
			 "token_wait_timeout = 1ms\n"
			 "token_timeout = 1s\n"
			 "token_retry_max = 1h\n"
			 "shutdown_timeout = 0s\n"
			 "max_header_bytes = 8k\n"
			 "max_url_bytes = 1024\n"
			 "max_body_bytes = 256k\n"
			 "buffer_size = 16k\n"
			 "connect_to = login.microsoftonline.com:443:127.0.0.1:%u\n"
			 "connect_to = contoso.crm4.dynamics.com:443:127.0.0.1:%u\n"
			 "sts_facade = true\n"
			 "legacy_identities_file = %s\n"
			 "\n"
			 "[credential:a]\n"
			 "tenant = contoso.onmicrosoft.com\n"
			 "client_id = 00000000-0000-0000-0000-000000000001\n"
			 "client_secret_env = S2S_FUZZ_SECRET\n"
			 "\n"
			 "[route:dv]\n"
			 "match_host = contoso.crm4.dynamics.com\n"
			 "upstream = https://contoso.crm4.dynamics.com\n"
			 "soap_bridge = true\n"
			 "translate_upstream_errors = problem\n"
			 "connect_timeout = 200ms\n"
			 "timeout = 1s\n"
			 "\n"
			 "[route:keyed]\n"
			 "match_path = /keyed/\n"
			 "strip_prefix = true\n"
			 "upstream = http://127.0.0.1:%u/base\n"
			 "audience = https://contoso.crm4.dynamics.com\n"
			 "inbound_key_file = %s\n"
			 "allow_from = 127.0.0.0/8\n"
			 "max_body_bytes = 4k\n"
			 "connect_timeout = 200ms\n"
			 "\n"
			 "[route:failing]\n"
			 "match_path = /\n"
			 "upstream = http://127.0.0.1:%u\n"
			 "audience = https://failing.example.com\n"
			 "connect_timeout = 200ms\n",
			 port, port, ids_path, port, key_path, port);
	if (n < 0 || (size_t)n >= sizeof text)
		abort();
	FILE *in = fmemopen(text, (size_t)n, "r");
	if (!in)
		die("fmemopen");
	struct config *c = config_load_stream(in, "fuzz_inbound.ini", stderr);
	fclose(in);
	if (!c)
		abort(); /* the configuration above is wrong */
	return c;
}

/* Give source idx a token, as the engine stores a fetched one. */
static void seed_token(size_t idx)
{
	static const char hdr[] = BEARER_PREFIX FAKE_TOKEN;
	struct tsrc *s = &te->src[idx];
	pthread_mutex_lock(&s->mu);
	free(s->hdr);
	s->hdr = strdup(hdr);
	if (!s->hdr)
		abort();
	s->hdr_len = strlen(hdr);
	s->gen++;
	s->usable_until_ms = clock_now_ms() + 10LL * 365 * 86400 * 1000;
	s->expires_at_ms = s->usable_until_ms;
	pthread_mutex_unlock(&s->mu);
}

/* Start the engine until every source has failed once (connection refused
 * on the closed port), then stop it: nothing changes after that. */
static void fail_tokens(void)
{
	if (token_engine_start(te) < 0)
		abort();
	for (int i = 0; i < 1000; i++) {
		size_t failed = 0;
		for (size_t k = 0; k < cfg->n_token_sources; k++) {
			struct token_status st;
			if (token_status_get(te, k, clock_now_ms(), &st) == 0 && st.has_failure)
				failed++;
		}
		if (failed == cfg->n_token_sources)
			break;
		usleep(10 * 1000);
	}
	token_engine_stop(te);
}

static void cleanup(void)
{
	if (w_ready)
		worker_join(&w);
	token_engine_free(te);
	metrics_free();
	sts_reset();
	config_free(cfg);
	tlsca_free();
	curl_global_cleanup();
	if (closed_port_fd >= 0)
		close(closed_port_fd);
	unlink(key_path);
	unlink(ids_path);
	rmdir(tmpdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		die("/dev/null");
	setenv("S2S_FUZZ_SECRET", "fuzz-secret", 1);
	echo = getenv("FUZZ_INBOUND_ECHO") && strcmp(getenv("FUZZ_INBOUND_ECHO"), "1") == 0;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/fuzz_inbound.XXXXXX");
	if (!mkdtemp(tmpdir))
		die("mkdtemp");
	snprintf(key_path, sizeof key_path, "%s/inbound.key", tmpdir);
	snprintf(ids_path, sizeof ids_path, "%s/identities", tmpdir);
	write_file(key_path, "fuzz-inbound-key-0123456789\n");
	/* password "secret", MD5-crypt: a known user costs little per sign-in */
	write_file(ids_path, "user@contoso.com:$1$fuzzsalt$ld45C3N68bCQn5ZIlNntP/:a\n");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		abort();
	tlsca_system_init();
	unsigned port = closed_port();
	cfg = load_config(port);
	log_setup(LOG_DEBUG, LOG_FMT_JSON, devnull); /* every log line is built, none is kept */
	if (metrics_init(cfg) < 0)
		abort();
	te = token_engine_new(cfg, NULL, NULL);
	if (!te)
		abort();
	fail_tokens();
	seed_token(cfg->routes[0].token_source); /* dv and keyed share it */
	worker_set_count(1);
	if (worker_init(&w, 0, cfg, te, -1) < 0)
		abort();
	w_ready = true;
	atexit(cleanup);
	return 0;
}

/* Is an upstream transfer still running (curl may need a moment)? */
static bool upstream_busy(void)
{
	const struct request *rq;
	LIST_FOREACH (rq, &w.all, all_link)
		if (rq->us.in_multi && !rq->us.done)
			return true;
	return false;
}

/* Read and discard what the proxy sent. Returns bytes read; *eof once it closed. */
static size_t drain(int fd, bool *eof)
{
	char buf[16384];
	size_t total = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			total += (size_t)n;
			if (echo)
				fwrite(buf, 1, (size_t)n, stderr);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			*eof = true;
		if (n == 0 || errno != EINTR)
			return total;
	}
}

static unsigned mhd_connections(void)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(w.mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info ? info->num_connections : 0;
}

static bool worker_idle(void)
{
	return mhd_connections() == 0 && w.ct.n_conns == 0 && LIST_EMPTY(&w.all) && LIST_EMPTY(&w.parked) &&
	       w.inflight == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(50000)};
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	/* MHD owns sv[1] from here, also when it refuses it */
	if (MHD_add_connection(w.mhd, sv[1], (const struct sockaddr *)&peer, sizeof peer) != MHD_YES)
		abort();
	size_t off = 0;
	bool eof = false;
	int quiet = 0;
	for (int turn = 0; turn < MAX_TURNS && !eof && quiet < QUIET_TURNS; turn++) {
		if (off < size) {
			ssize_t n = send(sv[0], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				break; /* the proxy closed the connection */
		}
		bool busy = upstream_busy();
		int ready = worker_turn(&w, busy ? CURL_WAIT_MS : 0);
		if (ready < 0)
			abort();
		size_t got = drain(sv[0], &eof);
		bool progress = ready > 0 || got > 0 || off < size || w.mhd_dirty || w.curl_dirty || busy;
		quiet = progress ? 0 : quiet + 1;
	}
	/* The client goes away; the worker must let go of everything. */
	close(sv[0]);
	long long deadline_ms = -1;
	for (int turn = 0; !worker_idle(); turn++) {
		if (turn == CLOSE_TURNS)
			proxy_abort_all(&w); /* requests stuck waiting: cut, as a stopping worker does */
		if (turn == 2 * CLOSE_TURNS && deadline_ms < 0 && w.inflight == 0 && LIST_EMPTY(&w.all))
			deadline_ms = clock_now_ms() + CLIENT_TIMEOUT_MS + 1000; /* only MHD's connection is left */
		if (deadline_ms >= 0 && clock_now_ms() < deadline_ms) {
			if (worker_turn(&w, 20) < 0)
				abort();
			continue;
		}
		if (turn >= 2 * CLOSE_TURNS) {
			fprintf(stderr,
				"fuzz_inbound: the worker still holds the connection after the client left "
				"(MHD connections %u, tracked %u, requests in flight %u)\n",
				mhd_connections(), w.ct.n_conns, w.inflight);
			abort();
		}
		if (worker_turn(&w, upstream_busy() ? CURL_WAIT_MS : 0) < 0)
			abort();
	}
	return 0;
}
