/*
 * metrics.c - request, upstream and token counters, and their rendering in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * Writers are workers (requests) and the token engine thread (token
 * results); the reader is the admin listener's thread. Counters are relaxed
 * atomics: a scrape may see one request's status counted before its bytes,
 * which Prometheus tolerates, and nothing on the request path waits.
 */
#include "ops/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "diag/diag.h"
#include "ops/callerstat.h"
#include "util/log.h"

#ifndef S2S_VERSION
#define S2S_VERSION "0.0.0"
#endif

#define N_METHOD     3  /* read, write, other */
#define N_STATUS     6  /* none, 1xx .. 5xx */
#define N_BUCKETS    14 /* finite histogram bounds, +Inf is implicit */
#define RESULT_SLOTS 24 /* distinct token results remembered per source */
#define RENDER_MAX   (4u << 20)

static const char *const method_names[N_METHOD] = {"read", "write", "other"};
static const char *const status_names[N_STATUS] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
/* Seconds; Dataverse answers in tens of ms, batch and report calls in minutes. */
static const double bounds[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

struct hist {
	atomic_ullong bucket[N_BUCKETS + 1]; /* not cumulative; the last is above every bound */
	atomic_ullong count;
	atomic_ullong sum_us;
};

struct route_m {
	atomic_ullong requests[N_METHOD][N_STATUS];
	atomic_ullong bytes_in, bytes_out;
	atomic_ullong throttle[MT_N]; /* metrics_throttle */
	atomic_ullong rewritten;      /* answers whose upstream URLs were rewritten (rewrite.c) */
	struct hist upstream;
};

/* Token results: "ok" or a diagnosis code (static strings from diag.c).
 * Only the engine thread adds slots, so claiming one needs no CAS. */
struct result_slot {
	_Atomic(const char *) code;
	atomic_ullong n;
};

struct source_m {
	struct hist fetch;
	struct result_slot results[RESULT_SLOTS];
	atomic_ullong results_dropped;
};

struct metrics {
	const struct config *cfg;
	struct route_m *routes; /* n_routes + 1: the last counts requests no route matched */
	struct source_m *sources;
	atomic_llong *cert_not_after; /* per credential, unix s, 0 = no certificate */
	atomic_llong inflight;
};

/* The counters of the configuration serving now. A reload (SIGHUP) builds a
 * new set, carries the counts over and swaps the pointer; old sets stay
 * allocated until metrics_free (reloads are few and bounded), so a writer
 * that loaded the old pointer never touches freed memory. */
static _Atomic(struct metrics *) M;
#define MAX_SETS 256                   /* as many as reloads a process takes (reload.c MAX_GENS) */
static struct metrics *sets[MAX_SETS]; /* every set made, for metrics_free (main thread) */
static size_t n_sets;

static struct metrics *cur(void)
{
	return atomic_load_explicit(&M, memory_order_acquire);
}

static void set_free(struct metrics *m)
{
	if (!m)
		return;
	free(m->routes);
	free(m->sources);
	free(m->cert_not_after);
	free(m);
}

static struct metrics *set_new(const struct config *cfg)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->cfg = cfg;
	m->routes = calloc(cfg->n_routes + 1, sizeof *m->routes);
	m->sources = calloc(cfg->n_token_sources ? cfg->n_token_sources : 1, sizeof *m->sources);
	m->cert_not_after = calloc(cfg->n_credentials ? cfg->n_credentials : 1, sizeof *m->cert_not_after);
	if (!m->routes || !m->sources || !m->cert_not_after) {
		set_free(m);
		return NULL;
	}
	return m; /* zeroed memory is a valid initial state for these atomics */
}

static int publish(struct metrics *m)
{
	if (!m || n_sets == MAX_SETS) {
		set_free(m);
		log_msg(LOG_ERROR, "metrics_failed", "cannot allocate metrics for this configuration");
		return -1;
	}
	sets[n_sets++] = m;
	atomic_store_explicit(&M, m, memory_order_release);
	return 0;
}

int metrics_init(const struct config *cfg)
{
	return publish(set_new(cfg));
}

void metrics_free(void)
{
	atomic_store(&M, NULL);
	for (size_t i = 0; i < n_sets; i++)
		set_free(sets[i]);
	n_sets = 0;
}

void metrics_inflight(int delta)
{
	struct metrics *m = cur();
	if (m)
		atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}

const char *metrics_method_class(const char *method)
{
	static const char *const reads[] = {"GET", "HEAD", "OPTIONS"}, *const writes[] = {"POST", "PUT", "PATCH",
											  "DELETE"};
	for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
		if (strcmp(method, reads[i]) == 0)
			return method_names[0];
	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
		if (strcmp(method, writes[i]) == 0)
			return method_names[1];
	return method_names[2];
}

static void observe(struct hist *h, long long ms)
{
	double s = (double)ms / 1000.0;
	size_t b = 0;
	while (b < N_BUCKETS && s > bounds[b])
		b++;
	atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)ms * 1000, memory_order_relaxed);
}

/* Index of route in cfg (n_routes for none). A request that began under an
 * earlier configuration is matched by name: rare, only around a reload. */
static size_t route_index(const struct config *cfg, const struct route_cfg *route)
{
	uintptr_t p = (uintptr_t)route, base = (uintptr_t)cfg->routes;
	if (!route)
		return cfg->n_routes;
	if (p >= base && p < base + cfg->n_routes * sizeof *route)
		return (size_t)(p - base) / sizeof *route;
	for (size_t i = 0; i < cfg->n_routes; i++)
		if (strcmp(cfg->routes[i].name, route->name) == 0)
			return i;
	return cfg->n_routes;
}

/* Index in m's configuration of token source idx of `from` (another
 * generation's configuration, or the same): same credential name and resource. */
static size_t source_index(const struct config *mine, const struct config *from, size_t idx)
{
	if (from == mine || idx >= from->n_token_sources)
		return idx;
	const struct token_source_cfg *ts = &from->token_sources[idx];
	const char *cred = from->credentials[ts->credential].name;
	for (size_t i = 0; i < mine->n_token_sources; i++) {
		const struct token_source_cfg *t = &mine->token_sources[i];
		if (strcmp(t->resource, ts->resource) == 0 && strcmp(mine->credentials[t->credential].name, cred) == 0)
			return i;
	}
	return SIZE_MAX;
}

void metrics_request_done(const struct route_cfg *route, const char *method, int status, uint64_t bytes_in,
			  uint64_t bytes_out, long long upstream_ms)
{
	struct metrics *m = cur();
	if (!m)
		return;
	size_t r = route_index(m->cfg, route);
	const char *mc = metrics_method_class(method);
	size_t mi = mc == method_names[0] ? 0 : mc == method_names[1] ? 1 : 2;
	size_t si = status >= 100 && status < 600 ? (size_t)(status / 100) : 0;
	struct route_m *rm = &m->routes[r];
	atomic_fetch_add_explicit(&rm->requests[mi][si], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&rm->bytes_in, bytes_in, memory_order_relaxed);
	atomic_fetch_add_explicit(&rm->bytes_out, bytes_out, memory_order_relaxed);
	if (upstream_ms >= 0)
		observe(&rm->upstream, upstream_ms);
}

void metrics_throttle(const struct route_cfg *route, enum metrics_throttle_event ev, unsigned long long n)
{
	struct metrics *m = cur();
	if (!m || ev >= MT_N)
		return;
	atomic_fetch_add_explicit(&m->routes[route_index(m->cfg, route)].throttle[ev], n, memory_order_relaxed);
}

void metrics_rewritten(const struct route_cfg *route)
{
	struct metrics *m = cur();
	if (m && route)
		atomic_fetch_add_explicit(&m->routes[route_index(m->cfg, route)].rewritten, 1, memory_order_relaxed);
}

/* Process-wide, not per configuration: a reload keeps the counts. */
static atomic_ullong verifications[METRICS_VERIFY_N];

void metrics_caller_verification(enum metrics_verify r)
{
	if (r < METRICS_VERIFY_N)
		atomic_fetch_add_explicit(&verifications[r], 1, memory_order_relaxed);
}

void metrics_token_result(const struct config *from, size_t idx, const struct token_failure *f, long long latency_ms)
{
	struct metrics *m = cur();
	struct diagnosis d = {0};
	if (!m || (idx = source_index(m->cfg, from, idx)) >= m->cfg->n_token_sources)
		return;
	struct source_m *s = &m->sources[idx];
	const char *code = "ok";
	if (f) {
		diag_token_failure(f, &d);
		code = d.code ? d.code : token_failure_name(f->kind);
	}
	if (latency_ms >= 0)
		observe(&s->fetch, latency_ms);
	for (size_t i = 0; i < RESULT_SLOTS; i++) {
		const char *have = atomic_load_explicit(&s->results[i].code, memory_order_acquire);
		/* Claim a free slot; around a reload two engine threads may race for it. */
		if (!have && atomic_compare_exchange_strong_explicit(&s->results[i].code, &have, code,
								     memory_order_acq_rel, memory_order_acquire))
			have = code;
		if (strcmp(have, code) != 0)
			continue;
		atomic_fetch_add_explicit(&s->results[i].n, 1, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&s->results_dropped, 1, memory_order_relaxed);
}

void metrics_cert_not_after(const struct config *from, size_t cred, long long not_after)
{
	struct metrics *m = cur();
	if (!m || cred >= from->n_credentials)
		return;
	for (size_t i = 0; i < m->cfg->n_credentials; i++) /* by name: `from` may be an older configuration */
		if (strcmp(m->cfg->credentials[i].name, from->credentials[cred].name) == 0)
			atomic_store_explicit(&m->cert_not_after[i], not_after, memory_order_relaxed);
}

/* ---- reload: carry the counts over ---------------------------------------- */

static void copy_ull(atomic_ullong *d, const atomic_ullong *s)
{
	atomic_store_explicit(d, atomic_load_explicit(s, memory_order_relaxed), memory_order_relaxed);
}

static void copy_hist(struct hist *d, const struct hist *s)
{
	for (size_t b = 0; b <= N_BUCKETS; b++)
		copy_ull(&d->bucket[b], &s->bucket[b]);
	copy_ull(&d->count, &s->count);
	copy_ull(&d->sum_us, &s->sum_us);
}

static void copy_route(struct route_m *d, const struct route_m *s)
{
	for (size_t mi = 0; mi < N_METHOD; mi++)
		for (size_t si = 0; si < N_STATUS; si++)
			copy_ull(&d->requests[mi][si], &s->requests[mi][si]);
	copy_ull(&d->bytes_in, &s->bytes_in);
	copy_ull(&d->bytes_out, &s->bytes_out);
	for (size_t e = 0; e < MT_N; e++)
		copy_ull(&d->throttle[e], &s->throttle[e]);
	copy_ull(&d->rewritten, &s->rewritten);
	copy_hist(&d->upstream, &s->upstream);
}

static void copy_source(struct source_m *d, const struct source_m *s)
{
	copy_hist(&d->fetch, &s->fetch);
	for (size_t k = 0; k < RESULT_SLOTS; k++) {
		atomic_store(&d->results[k].code, atomic_load(&s->results[k].code));
		copy_ull(&d->results[k].n, &s->results[k].n);
	}
	copy_ull(&d->results_dropped, &s->results_dropped);
}

static void carry_over(struct metrics *m, const struct metrics *old)
{
	const struct config *cfg = m->cfg, *oc = old->cfg;
	for (size_t r = 0; r < cfg->n_routes; r++) /* routes by name; new routes start at zero */
		for (size_t o = 0; o < oc->n_routes; o++)
			if (strcmp(cfg->routes[r].name, oc->routes[o].name) == 0)
				copy_route(&m->routes[r], &old->routes[o]);
	copy_route(&m->routes[cfg->n_routes], &old->routes[oc->n_routes]);
	for (size_t i = 0; i < cfg->n_token_sources; i++) {
		size_t o = source_index(oc, cfg, i);
		if (o < oc->n_token_sources)
			copy_source(&m->sources[i], &old->sources[o]);
	}
	for (size_t c = 0; c < cfg->n_credentials; c++)
		for (size_t o = 0; o < oc->n_credentials; o++)
			if (strcmp(cfg->credentials[c].name, oc->credentials[o].name) == 0)
				atomic_store(&m->cert_not_after[c], atomic_load(&old->cert_not_after[o]));
	atomic_store(&m->inflight, atomic_load(&old->inflight));
}

int metrics_reconfigure(const struct config *cfg)
{
	struct metrics *old = cur(), *m = set_new(cfg);
	if (m && old)
		carry_over(m, old); /* updates landing in `old` during the copy are lost: a few counts at most */
	return publish(m);
}

/* ---- rendering ------------------------------------------------------------ */

struct sb {
	char *p;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		if (b->failed)
			return;
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if (b->p && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 16384;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *np = cap <= RENDER_MAX ? realloc(b->p, cap) : NULL;
		if (!np) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
}

/* A label value with \, " and newline escaped (exposition format rules), cut at 255 bytes. */
static const char *esc(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	for (; s && *s && o + 3 < cap; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			out[o++] = '\\';
			out[o++] = *s == '\n' ? 'n' : *s;
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
	return out;
}

static void head(struct sb *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(struct sb *b, const char *name, const char *labels, const struct hist *h)
{
	unsigned long long cum = 0;
	for (size_t i = 0; i <= N_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		if (i < N_BUCKETS)
			put(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bounds[i], cum);
		else
			put(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, cum);
	}
	/* count from the buckets, so count == the +Inf bucket even mid-update */
	put(b, "%s_sum{%s} %.6f\n", name, labels, (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
	put(b, "%s_count{%s} %llu\n", name, labels, cum);
}

static void render_requests(struct sb *b, const struct metrics *m)
{
	char rl[300];
	head(b, "s2s_requests_total", "counter", "Requests answered, by route, method class and status class.");
	for (size_t r = 0; r <= m->cfg->n_routes; r++) {
		const char *name = r < m->cfg->n_routes ? m->cfg->routes[r].name : "";
		esc(name, rl, sizeof rl);
		for (size_t mi = 0; mi < N_METHOD; mi++)
			for (size_t si = 0; si < N_STATUS; si++) {
				unsigned long long n =
				    atomic_load_explicit(&m->routes[r].requests[mi][si], memory_order_relaxed);
				if (n || (r < m->cfg->n_routes && si == 2 && mi == 0)) /* keep one series per route */
					put(b, "s2s_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
					    rl, method_names[mi], status_names[si], n);
			}
	}
	static const char *const dir_name[2] = {"s2s_request_bytes_total", "s2s_response_bytes_total"};
	static const char *const dir_help[2] = {"Request body bytes received from clients, by route.",
						"Response body bytes sent to clients, by route."};
	for (int d = 0; d < 2; d++) {
		head(b, dir_name[d], "counter", dir_help[d]);
		for (size_t r = 0; r <= m->cfg->n_routes; r++) {
			const atomic_ullong *c = d == 0 ? &m->routes[r].bytes_in : &m->routes[r].bytes_out;
			esc(r < m->cfg->n_routes ? m->cfg->routes[r].name : "", rl, sizeof rl);
			put(b, "%s{route=\"%s\"} %llu\n", dir_name[d], rl,
			    atomic_load_explicit(c, memory_order_relaxed));
		}
	}
	head(b, "s2s_rewritten_responses_total", "counter",
	     "Answers whose upstream URLs were rewritten to the client's (headers or body), by route.");
	for (size_t r = 0; r < m->cfg->n_routes; r++)
		put(b, "s2s_rewritten_responses_total{route=\"%s\"} %llu\n", esc(m->cfg->routes[r].name, rl, sizeof rl),
		    atomic_load_explicit(&m->routes[r].rewritten, memory_order_relaxed));
	head(b, "s2s_upstream_duration_seconds", "histogram",
	     "Time from the upstream request's start to the end of its response, by route.");
	for (size_t r = 0; r < m->cfg->n_routes; r++) {
		char labels[300];
		snprintf(labels, sizeof labels, "route=\"%s\"", esc(m->cfg->routes[r].name, rl, sizeof rl));
		render_hist(b, "s2s_upstream_duration_seconds", labels, &m->routes[r].upstream);
	}
	head(b, "s2s_requests_in_flight", "gauge", "Requests being served now.");
	put(b, "s2s_requests_in_flight %lld\n", atomic_load_explicit(&m->inflight, memory_order_relaxed));
	static const char *const vr[METRICS_VERIFY_N] = {"ok", "bad", "refused"};
	head(b, "s2s_caller_verifications_total", "counter",
	     "Basic password checks (crypt) by the verifier thread: ok, bad; refused: the queue was full.");
	for (size_t i = 0; i < METRICS_VERIFY_N; i++)
		put(b, "s2s_caller_verifications_total{result=\"%s\"} %llu\n", vr[i],
		    atomic_load_explicit(&verifications[i], memory_order_relaxed));
}

/* credential="..",audience=".." of token source i. */
static void source_labels(const struct metrics *m, size_t i, char *out, size_t cap)
{
	const struct token_source_cfg *ts = &m->cfg->token_sources[i];
	char c[300], a[300];
	snprintf(out, cap, "credential=\"%s\",audience=\"%s\"",
		 esc(m->cfg->credentials[ts->credential].name, c, sizeof c), esc(ts->resource, a, sizeof a));
}

static void render_token_counts(struct sb *b, const struct metrics *m)
{
	char labels[700];
	head(b, "s2s_token_requests_total", "counter",
	     "Token requests to Microsoft Entra ID, by credential, audience and result (ok or a diagnosis code).");
	for (size_t i = 0; i < m->cfg->n_token_sources; i++) {
		const struct source_m *s = &m->sources[i];
		source_labels(m, i, labels, sizeof labels);
		for (size_t k = 0; k < RESULT_SLOTS; k++) {
			const char *code = atomic_load_explicit(&s->results[k].code, memory_order_acquire);
			if (!code)
				break;
			put(b, "s2s_token_requests_total{%s,result=\"%s\"} %llu\n", labels, code,
			    atomic_load_explicit(&s->results[k].n, memory_order_relaxed));
		}
	}
	head(b, "s2s_token_fetch_duration_seconds", "histogram",
	     "Duration of token requests, by credential and audience.");
	for (size_t i = 0; i < m->cfg->n_token_sources; i++) {
		source_labels(m, i, labels, sizeof labels);
		render_hist(b, "s2s_token_fetch_duration_seconds", labels, &m->sources[i].fetch);
	}
}

static void render_token_state(struct sb *b, const struct metrics *m, struct token_engine *te, long long now_ms,
			       long long wall_now_s)
{
	char labels[700];
	struct token_status st;
	head(b, "s2s_token_valid", "gauge", "1 when the token source holds a usable token, else 0.");
	for (size_t i = 0; i < m->cfg->n_token_sources; i++) {
		source_labels(m, i, labels, sizeof labels);
		bool ok = token_status_get(te, i, now_ms, &st) == 0 && st.state == TOKEN_VALID;
		put(b, "s2s_token_valid{%s} %d\n", labels, ok ? 1 : 0);
	}
	head(b, "s2s_token_expires_in_seconds", "gauge",
	     "Seconds until the current token expires (negative once expired); absent before the first token.");
	for (size_t i = 0; i < m->cfg->n_token_sources; i++) {
		if (token_status_get(te, i, now_ms, &st) < 0 || !st.expires_at_ms)
			continue;
		source_labels(m, i, labels, sizeof labels);
		put(b, "s2s_token_expires_in_seconds{%s} %.3f\n", labels, (double)(st.expires_at_ms - now_ms) / 1000.0);
	}
	head(b, "s2s_credential_secret_expires_in_seconds", "gauge",
	     "Seconds until the client secret expires, for credentials with client_secret_expires.");
	for (size_t i = 0; i < m->cfg->n_credentials; i++) {
		const struct credential_cfg *c = &m->cfg->credentials[i];
		char n[300];
		if (c->secret_expires)
			put(b, "s2s_credential_secret_expires_in_seconds{credential=\"%s\"} %lld\n",
			    esc(c->name, n, sizeof n), c->secret_expires - wall_now_s);
	}
}

static void render_cert_expiry(struct sb *b, const struct metrics *m, long long wall_now_s)
{
	char n[300];
	head(b, "s2s_credential_certificate_expires_in_seconds", "gauge",
	     "Seconds until the credential's certificate expires (notAfter), once its key has been used.");
	for (size_t i = 0; i < m->cfg->n_credentials; i++) {
		long long na = atomic_load_explicit(&m->cert_not_after[i], memory_order_relaxed);
		if (na)
			put(b, "s2s_credential_certificate_expires_in_seconds{credential=\"%s\"} %lld\n",
			    esc(m->cfg->credentials[i].name, n, sizeof n), na - wall_now_s);
	}
}

static void render_throttle(struct sb *b, const struct metrics *m)
{
	static const char *const ev_names[MT_HELD_MS] = {"throttled", "held", "retried", "refused"};
	char rl[300];
	head(b, "s2s_route_throttle_total", "counter",
	     "Service protection events by route: throttle answers, requests held at the gate, resends, 503s.");
	for (size_t r = 0; r < m->cfg->n_routes; r++) {
		esc(m->cfg->routes[r].name, rl, sizeof rl);
		for (size_t e = 0; e < MT_HELD_MS; e++)
			put(b, "s2s_route_throttle_total{route=\"%s\",event=\"%s\"} %llu\n", rl, ev_names[e],
			    atomic_load_explicit(&m->routes[r].throttle[e], memory_order_relaxed));
	}
	head(b, "s2s_route_throttle_held_seconds_total", "counter", "Seconds requests waited at their gate, by route.");
	for (size_t r = 0; r < m->cfg->n_routes; r++) {
		esc(m->cfg->routes[r].name, rl, sizeof rl);
		put(b, "s2s_route_throttle_held_seconds_total{route=\"%s\"} %.3f\n", rl,
		    (double)atomic_load_explicit(&m->routes[r].throttle[MT_HELD_MS], memory_order_relaxed) / 1000.0);
	}
}

static char *(*extra_render)(long long now_ms, size_t *len);
static long (*client_connections)(void);

void metrics_set_client_connections(long (*count)(void))
{
	client_connections = count;
}

void metrics_set_extra(char *(*render)(long long now_ms, size_t *len))
{
	extra_render = render;
}

char *metrics_render(struct token_engine *te, long long now_ms, long long wall_now_s, size_t *len)
{
	struct metrics *m = cur();
	struct sb b = {0};
	if (!m)
		return NULL;
	head(&b, "s2s_proxy_info", "gauge", "Constant 1, labelled with the version.");
	put(&b, "s2s_proxy_info{version=\"%s\"} 1\n", S2S_VERSION);
	render_requests(&b, m);
	render_token_counts(&b, m);
	render_token_state(&b, m, te, now_ms, wall_now_s);
	render_cert_expiry(&b, m, wall_now_s);
	render_throttle(&b, m);
	if (client_connections) {
		head(&b, "s2s_client_connections", "gauge",
		     "Client connections open now, every worker's (max_connections is their budget).");
		put(&b, "s2s_client_connections %ld\n", client_connections());
	}
	size_t xn = 0;
	char *x = extra_render ? extra_render(now_ms, &xn) : NULL;
	if (x)
		put(&b, "%.*s", (int)xn, x);
	free(x);
	size_t cl = 0;
	char *callers = callerstat_render(&cl); /* by caller and protocol */
	if (callers)
		put(&b, "%s", callers);
	free(callers);
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
