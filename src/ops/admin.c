/*
 * admin.c - the admin listener: liveness, readiness and metrics.
 *
 *   GET /healthz  200 "ok": the process runs and answers (no dependency checked,
 *                 so an orchestrator never restarts the proxy over an Entra outage)
 *   GET /readyz   200 when every route's token is usable for at least
 *                 ADMIN_READY_MARGIN_MS more, else 503; the JSON body lists each
 *                 route's token state and the last failure's diagnosis
 *   GET /metrics  Prometheus text exposition (metrics.c)
 *
 * Nothing here sees a token: token_status_get() returns times and failures only.
 */
#include "ops/admin.h"

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "diag/diag.h"
#include "util/log.h"
#include "ops/metrics.h"

#define ADMIN_CONNECTIONS 64U /* connections of the admin listener */
#define ADMIN_PER_ADDRESS 8U  /* of those, from one client address */

static struct MHD_Daemon *daemon_;
static atomic_bool draining;
/* The configuration and token engine serving now. A reload swaps them; every
 * generation stays allocated until after admin_stop, so a snapshot taken
 * under the lock stays valid for the whole answer. */
static pthread_mutex_t cur_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct config *acfg;
static struct token_engine *ate;

static void current(const struct config **cfg, struct token_engine **te)
{
	if (pthread_mutex_lock(&cur_mu) != 0)
		abort(); /* a broken mutex: nothing sensible to answer with */
	*cfg = acfg;
	*te = ate;
	pthread_mutex_unlock(&cur_mu);
}

void admin_reconfigure(const struct config *cfg, struct token_engine *te)
{
	if (pthread_mutex_lock(&cur_mu) != 0)
		abort();
	acfg = cfg;
	ate = te;
	pthread_mutex_unlock(&cur_mu);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the token engine's clock: its times compare with it */
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- /readyz --------------------------------------------------------------- */

static const char *state_name(enum token_state s)
{
	return s == TOKEN_VALID ? "valid" : s == TOKEN_PENDING ? "pending" : "failed";
}

/* One route's entry; returns whether it is ready. */
static bool route_entry(cJSON *arr, const struct config *cfg, struct token_engine *te, const struct route_cfg *r,
			long long now)
{
	const struct token_source_cfg *ts = &cfg->token_sources[r->token_source];
	struct token_status st;
	struct diagnosis d = {0};
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddItemToArray(arr, o)) {
		cJSON_Delete(o);
		return false;
	}
	bool known = token_status_get(te, r->token_source, now, &st) == 0;
	bool ready = known && st.state == TOKEN_VALID && st.usable_until_ms - now >= ADMIN_READY_MARGIN_MS;
	cJSON_AddStringToObject(o, "route", r->name);
	cJSON_AddStringToObject(o, "credential", cfg->credentials[ts->credential].name);
	cJSON_AddStringToObject(o, "audience", ts->resource);
	cJSON_AddStringToObject(o, "token", known ? state_name(st.state) : "unknown");
	cJSON_AddBoolToObject(o, "ready", ready);
	if (known && st.expires_at_ms)
		cJSON_AddNumberToObject(o, "expires_in_s", (double)((st.expires_at_ms - now) / 1000));
	if (known && st.state == TOKEN_VALID && !ready)
		cJSON_AddStringToObject(o, "reason", "token about to expire and not yet refreshed");
	if (known && st.has_failure) {
		diag_token_failure(&st.fail, &d);
		cJSON_AddStringToObject(o, "diagnosis", d.code ? d.code : "unknown");
		cJSON_AddStringToObject(o, "error", token_failure_name(st.fail.kind));
		if (st.fail.http_status)
			cJSON_AddNumberToObject(o, "http_status", (double)st.fail.http_status);
		const char *detail = st.fail.detail[0] ? st.fail.detail : st.fail.err.description;
		if (detail && detail[0])
			cJSON_AddStringToObject(o, "detail", detail);
		if (d.remediation)
			cJSON_AddStringToObject(o, "remediation", d.remediation);
	}
	return ready;
}

static void (*gates_report)(void *arr, long long now_ms);

void admin_set_gates(void (*report)(void *arr, long long now_ms))
{
	gates_report = report;
}

static char *readyz_body(int *status)
{
	const struct config *cfg;
	struct token_engine *te;
	current(&cfg, &te);
	long long now = now_ms();
	bool all = !atomic_load(&draining);
	char *out = NULL;
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	if (!root || !arr || !cJSON_AddItemToObject(root, "routes", arr)) {
		cJSON_Delete(arr);
		goto done;
	}
	for (size_t i = 0; i < cfg->n_routes; i++)
		all &= route_entry(arr, cfg, te, &cfg->routes[i], now);
	cJSON_AddBoolToObject(root, "ready", all);
	cJSON *gates = gates_report ? cJSON_AddArrayToObject(root, "throttled") : NULL;
	if (gates) /* identities the upstream told to wait: not unready, but worth seeing */
		gates_report(gates, now);
	if (atomic_load(&draining))
		cJSON_AddStringToObject(root, "reason", "draining");
	out = cJSON_PrintUnformatted(root);
	*status = all ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
done:
	cJSON_Delete(root);
	return out;
}

/* ---- the handler --------------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *ctype, char *body, size_t len)
{
	/* body is malloc'd (cJSON and metrics_render allocate with the C allocator). */
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, "Content-Type", ctype) != MHD_YES ||
	    MHD_add_response_header(r, "Cache-Control", "no-store") != MHD_YES ||
	    (status == MHD_HTTP_METHOD_NOT_ALLOWED && MHD_add_response_header(r, "Allow", "GET, HEAD") != MHD_YES))
		log_msg(LOG_WARN, "response_header_dropped", "admin: cannot add a response header");
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *c, int status, const char *text)
{
	char *b = strdup(text);
	return b ? answer(c, status, "text/plain; charset=utf-8", b, strlen(b)) : MHD_NO;
}

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	static int seen; /* marker: the first call only registers the request */
	int status = MHD_HTTP_OK;
	size_t len = 0;
	char *body;
	(void)cls, (void)version, (void)upload;
	if (*con_cls == NULL) {
		*con_cls = &seen;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* a body is never wanted: discard it, answer 405 below */
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return answer_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/healthz") == 0)
		return answer_text(c, MHD_HTTP_OK, "ok\n");
	if (strcmp(url, "/readyz") == 0) {
		body = readyz_body(&status);
		return body ? answer(c, status, "application/json", body, strlen(body)) : MHD_NO;
	}
	if (strcmp(url, "/metrics") == 0) {
		const struct config *cfg;
		struct token_engine *te;
		current(&cfg, &te);
		body = metrics_render(te, now_ms(), (long long)time(NULL), &len);
		return body ? answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len) : MHD_NO;
	}
	return answer_text(c, MHD_HTTP_NOT_FOUND, "not found: the admin listener serves /healthz, /readyz, /metrics\n");
}

/* ---- start and stop ---------------------------------------------------------------- */

static void log_admin_listening(const char *host, unsigned port)
{
	struct log_line l;
	log_begin(&l, LOG_INFO, "admin_listening");
	log_str(&l, "address", host);
	log_int(&l, "port", port);
	log_str(&l, "paths", "/healthz /readyz /metrics");
	log_end(&l);
}

int admin_start(const struct config *cfg, struct token_engine *te)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *ai = NULL;
	char portstr[8];
	const char *host = cfg->proxy.admin_host;
	if (!host)
		return 0;
	admin_reconfigure(cfg, te);
	atomic_store(&draining, false);
	snprintf(portstr, sizeof portstr, "%u", cfg->proxy.admin_port);
	int rc = getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0) {
		log_msg(LOG_ERROR, "listen_failed", "admin_listen %s:%u: %s", host, cfg->proxy.admin_port,
			gai_strerror(rc));
		return -1;
	}
	/* AUTO picks epoll: under load the proxy holds more than FD_SETSIZE
	 * descriptors, and a select()-based listener would refuse the probes. */
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	/* ADMIN_PER_ADDRESS connections per client address: a client that
	 * opens many and trickles its headers (the idle timeout counts from
	 * the last byte) holds those only, never every slot, so the probes of
	 * an orchestrator and a scraper from their own addresses still get in. */
	daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_admin, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				   MHD_OPTION_CONNECTION_LIMIT, ADMIN_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				   ADMIN_PER_ADDRESS, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
				   MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!daemon_) {
		log_msg(LOG_ERROR, "listen_failed", "admin_listen %s:%u: cannot start the admin listener", host,
			cfg->proxy.admin_port);
		return -1;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	log_admin_listening(host, di ? di->port : cfg->proxy.admin_port);
	return 0;
}

void admin_set_draining(void)
{
	atomic_store(&draining, true);
}

void admin_stop(void)
{
	if (daemon_)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
