/*
 * main.c - command line, start-up and shutdown of s2s-proxy.
 *
 * Threads: main (signals and orchestration), the token engine thread, and
 * N workers. Signals are blocked in every thread and taken synchronously by
 * main with sigtimedwait(), so no handler ever runs inside library code.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "token/assertion.h"
#include "ops/admin.h"
#include "ops/check.h"
#include "config/config.h"
#include "config/envconf.h"
#include "ops/health.h"
#include "ops/inventory.h"
#include "util/log.h"
#include "reload.h"
#include "ops/metrics.h"
#include "tls/tlsca.h"
#include "tls/tlsin.h"
#include "token/token.h"
#include "proxy/conntrack.h"
#include "proxy/gatereport.h"
#include "util/verifier.h"
#include "proxy/worker.h"

#ifndef S2S_VERSION
#define S2S_VERSION "0.0.0"
#endif
#define MAX_WORKERS 16

static struct worker workers[MAX_WORKERS];
static int n_workers;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: s2s-proxy -c FILE         run the proxy\n"
		"       s2s-proxy -t -c FILE      check the configuration and exit (0 valid, 1 invalid)\n"
		"       s2s-proxy check [--json] -c FILE  get every route's token, probe its upstream, diagnose\n"
		"       s2s-proxy [-t]            without -c: $S2S_CONFIG (default " ENVCONF_DEFAULT_FILE "),\n"
		"                                 else a configuration from S2S_UPSTREAM and AZURE_* (containers)\n"
		"       s2s-proxy health [HOST:PORT]  GET /healthz on the admin listener: exit 0 on 200\n"
		"       s2s-proxy inventory -c FILE  which caller used which protocol, and when (inventory_file)\n"
		"       s2s-proxy --version | --help\n"
		"\n"
		"A reverse proxy that obtains Microsoft Entra ID client-credentials tokens and attaches\n"
		"them to requests for Dynamics 365 services. Signals: TERM/INT stop gracefully (a second\n"
		"one stops at once).\n");
}

/* Token engine -> every worker (called on the engine thread). */
static void on_token_change(void *arg)
{
	(void)arg;
	for (int i = 0; i < n_workers; i++)
		worker_token_changed(&workers[i]);
}

/* Verifier -> every worker (called on the verifier thread). */
static void on_verified(void *arg)
{
	(void)arg;
	for (int i = 0; i < n_workers; i++)
		worker_verify_done(&workers[i]);
}

/* Bind one listening socket with SO_REUSEPORT, so every worker can have its
 * own and the kernel spreads connections. Returns the fd or -1 (logged). */
static int listen_socket(const char *host, unsigned port, unsigned *bound_port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *ai = NULL;
	char portstr[8];
	int fd = -1, one = 1;
	snprintf(portstr, sizeof portstr, "%u", port);
	int rc = getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0) {
		log_msg(LOG_ERROR, "listen_failed", "listen %s:%u: %s", host, port, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
		goto fail;
	if (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		goto fail;
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 511) < 0)
		goto fail;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		goto fail;
	*bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						     : ((struct sockaddr_in *)&ss)->sin_port);
	freeaddrinfo(ai);
	return fd;
fail:
	log_msg(LOG_ERROR, "listen_failed", "listen %s:%u: %s", host, port, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return -1;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int worker_count(const struct config *cfg)
{
	long n = cfg->proxy.workers;
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static int start_workers(const struct config *cfg, struct token_engine *te, unsigned *port)
{
	unsigned want = cfg->proxy.listen_port;
	int n = worker_count(cfg);
	worker_set_count(n);
	for (int i = 0; i < n; i++) {
		int fd = listen_socket(cfg->proxy.listen_host, want, port);
		if (fd < 0)
			return -1;
		want = *port; /* port 0: the first bind chose it, the others share it */
		if (worker_init(&workers[i], i, cfg, te, fd) < 0) {
			close(fd);
			return -1;
		}
		n_workers = i + 1;
	}
	for (int i = 0; i < n_workers; i++)
		if (worker_start(&workers[i]) < 0)
			return -1;
	return 0;
}

static void log_listening(const struct config *cfg, unsigned port)
{
	struct log_line l;
	log_begin(&l, LOG_INFO, "listening");
	log_str(&l, "address", cfg->proxy.listen_host);
	log_int(&l, "port", port);
	log_int(&l, "workers", n_workers);
	log_int(&l, "routes", (long long)cfg->n_routes);
	log_str(&l, "version", S2S_VERSION);
	log_end(&l);
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct route_cfg *r = &cfg->routes[i];
		const struct token_source_cfg *ts = &cfg->token_sources[r->token_source];
		log_begin(&l, LOG_INFO, "route");
		log_str(&l, "route", r->name);
		log_str(&l, "match_host", r->match_host);
		log_str(&l, "match_path", r->match_path);
		log_str(&l, "upstream", r->upstream.origin);
		log_str(&l, "audience", ts->resource);
		log_str(&l, "credential", cfg->credentials[ts->credential].name);
		log_end(&l);
	}
}

/* Wait for TERM/INT, then drain; a second signal or the deadline cuts. */
static void serve_until_signal(const struct config *cfg, const sigset_t *set, struct reload *rl)
{
	struct timespec second = {.tv_sec = 1, .tv_nsec = 0};
	int sig;
	for (;;) {
		sig = sigtimedwait(set, NULL, &second); /* each second: retire unused configurations */
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP)
			reload_apply(rl);
		reload_retire(rl);
	}
	log_msg(LOG_INFO, "shutdown", "signal %d: draining in-flight requests (up to %lds)", sig,
		cfg->proxy.shutdown_timeout_s);
	admin_set_draining();
	for (int i = 0; i < n_workers; i++)
		worker_request_stop(&workers[i], false);
	/* A second signal while draining stops at once. */
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
	for (;;) {
		int live = 0;
		for (int i = 0; i < n_workers; i++)
			live += !atomic_load(&workers[i].finished);
		if (!live)
			break;
		sig = sigtimedwait(set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			log_msg(LOG_WARN, "shutdown", "second signal: stopping now");
			for (int i = 0; i < n_workers; i++)
				worker_request_stop(&workers[i], true);
		}
	}
}

static int run(const struct config *cfg)
{
	int rc = 1;
	struct token_engine *te = NULL;
	struct reload *rl = NULL;
	unsigned port = 0;
	sigset_t set;
	char err[256];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread created below */
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	/* Per-request buffers (rings, curl and MHD blocks) are freed and
	 * allocated again at request rate: keep glibc from returning them to the
	 * kernel after every request (the benchmark measured page faults and
	 * madvise at a fifth of the CPU). Workers give memory back with
	 * malloc_trim() once idle instead. */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_msg(LOG_ERROR, "startup_failed", "libcurl initialisation failed");
		return 1;
	}
	tlsca_system_init();
	if (cfg->proxy.ca_file && tlsca_load(cfg->proxy.ca_file, err, sizeof err) < 0) {
		log_msg(LOG_ERROR, "startup_failed", "ca_file: %s", err);
		goto out;
	}
	if (tlsin_load(&cfg->proxy, err, sizeof err) < 0) {
		log_msg(LOG_ERROR, "startup_failed", "inbound TLS: %s", err);
		goto out;
	}
	static const struct token_observer to_metrics = {metrics_token_result, metrics_cert_not_after};
	token_set_observer(&to_metrics); /* before any engine starts, reloads' included */
	metrics_set_extra(gatereport_metrics);
	metrics_set_client_connections(conntrack_open);
	admin_set_gates(gatereport_readyz);
	te = token_engine_new(cfg, on_token_change, NULL);
	if (!te || metrics_init(cfg) < 0 || verifier_start(on_verified, NULL) < 0 ||
	    start_workers(cfg, te, &port) < 0 || token_engine_start(te) < 0 || admin_start(cfg, te) < 0 ||
	    inventory_start(cfg->proxy.inventory_file) < 0)
		goto out;
	log_listening(cfg, port);
	rl = reload_new(cfg, te, workers, n_workers, on_token_change);
	if (!rl)
		goto out;
	serve_until_signal(cfg, &set, rl);
	rc = 0;
out:
	admin_stop();    /* before the engine and metrics it reads */
	verifier_stop(); /* before the workers it wakes; a request still waiting is cut with the rest */
	for (int i = 0; i < n_workers; i++)
		worker_request_stop(&workers[i], true);
	for (int i = 0; i < n_workers; i++)
		worker_join(&workers[i]);
	n_workers = 0;
	inventory_stop(); /* after the workers: their last notes are written */
	reload_free(rl);  /* later configurations; the first is the caller's */
	token_engine_free(te);
	metrics_free();
	tlsca_free();
	tlsin_free();
	curl_global_cleanup();
	log_msg(LOG_INFO, "stopped", "s2s-proxy stopped");
	return rc;
}

/* -t: each certificate problem on stderr, as FILE:LINE: message. */
static void print_problem(void *arg, const char *line)
{
	fprintf(arg, "%s\n", line);
}

/* The libraries actually in use (run-time versions, not the headers'):
 * what a security report or a bug report needs to know. */
static void print_version(void)
{
	const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
	printf("s2s-proxy %s\n", S2S_VERSION);
	printf("libmicrohttpd %s (inbound HTTP, built from third_party/)\n", MHD_get_version());
	printf("libcurl %s (%s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS");
	printf("GnuTLS %s (inbound TLS)\n", gnutls_check_version(NULL));
	printf("OpenSSL %s\n", OpenSSL_version_num() ? OpenSSL_version(OPENSSL_VERSION_STRING) : "?");
}

/* -c FILE; without it, as the container image starts the binary: the file at
 * $S2S_CONFIG (or the default path) when it exists, else the configuration
 * the environment describes (envconf.c). 0 loaded, 1 invalid, 2 none given. */
static int load_config(const char *path, struct config **cfg)
{
	if (!path) {
		const char *file = envconf_file();
		bool exists = access(file, F_OK) == 0;
		if (!exists && !envconf_present()) {
			fprintf(stderr, "s2s-proxy: no -c FILE, no configuration at %s and S2S_UPSTREAM is not set\n",
				file);
			return 2;
		}
		path = exists ? file : NULL;
	}
	*cfg = path ? config_load(path, stderr) : envconf_load(stderr);
	return *cfg ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"test", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool test_only = false;
	int opt;
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check_main(argc - 1, argv + 1); /* subcommand: its own options */
	if (argc > 1 && strcmp(argv[1], "health") == 0)
		return health_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "inventory") == 0)
		return inventory_main(argc - 1, argv + 1);
	while ((opt = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test_only = true;
			break;
		case 'V':
			print_version();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int lrc = load_config(path, &cfg);
	if (lrc == 2)
		usage(stderr);
	if (lrc != 0)
		return lrc;
	path = cfg->path;
	if (test_only && assertion_check_all(cfg, (long long)time(NULL), print_problem, stderr) != 0) {
		config_free(cfg);
		return 1;
	}
	if (test_only) {
		char err[256];
		if (tlsin_load(&cfg->proxy, err, sizeof err) < 0) {
			fprintf(stderr, "%s:0: [proxy] inbound TLS: %s\n", path, err);
			config_free(cfg);
			return 1;
		}
		tlsin_free();
		printf("%s: configuration ok (%zu routes, %zu credentials)\n", path, cfg->n_routes, cfg->n_credentials);
		config_free(cfg);
		return 0;
	}
	log_setup(cfg->proxy.log_level, cfg->proxy.log_format, 2);
	int rc = run(cfg);
	config_free(cfg);
	return rc;
}
