/*
 * metrics.h - counters for the admin listener's /metrics, in Prometheus
 * text exposition format.
 *
 * Every counter is a relaxed atomic in arrays sized once from the
 * configuration (per route, per token source), so the request path takes
 * no lock and allocates nothing. metrics_init runs before any thread starts
 * and metrics_free after every thread has stopped; until init (unit tests,
 * `-t`) every update is a no-op.
 */
#ifndef S2S_METRICS_H
#define S2S_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "token/token.h"

/* Allocate the counters for cfg (which must outlive them). 0 or -1 (logged). */
int metrics_init(const struct config *cfg);
/* After a reload: counters for the new configuration (which must outlive
 * them), counts carried over by route name and by (credential, audience).
 * Requests and token engines of the older configuration keep counting into
 * the new set. Main thread. 0 or -1 (logged; the old set stays). */
int metrics_reconfigure(const struct config *cfg);
/* NULL-safe, idempotent. */
void metrics_free(void);

/* A request entered (+1) or left (-1) the proxy. */
void metrics_inflight(int delta);

/*
 * A request finished: route may be NULL (no route matched), status is what
 * the client was answered (0 = none), upstream_ms the time the upstream
 * exchange took (-1 = the request never went upstream).
 */
void metrics_request_done(const struct route_cfg *route, const char *method, int status, uint64_t bytes_in,
			  uint64_t bytes_out, long long upstream_ms);

/* Service protection events of a route (proxy/throttle.c): a throttle answer
 * from its upstream, a request that waited at its gate (and for how long, ms),
 * a resend, a 503 throttled_upstream. */
enum metrics_throttle_event { MT_THROTTLED = 0, MT_HELD, MT_RETRIED, MT_REFUSED, MT_HELD_MS, MT_N };
void metrics_throttle(const struct route_cfg *route, enum metrics_throttle_event ev, unsigned long long n);
/* An answer of `route` had upstream URLs rewritten (rewrite.c). */
void metrics_rewritten(const struct route_cfg *route);
/* Basic password verifications (the verifier thread: ok, bad) and jobs refused with a full queue. */
enum metrics_verify { METRICS_VERIFY_OK, METRICS_VERIFY_BAD, METRICS_VERIFY_REFUSED, METRICS_VERIFY_N };
void metrics_caller_verification(enum metrics_verify r);

/* A token request of source `idx` of configuration `from` ended: f NULL =
 * success, else the failure; latency_ms -1 when no request was sent. */
void metrics_token_result(const struct config *from, size_t idx, const struct token_failure *f, long long latency_ms);

/* Credential `cred`'s certificate notAfter (unix s, 0 = none), published by
 * the token engine thread, which alone may read its keys. */
void metrics_cert_not_after(const struct config *from, size_t cred, long long not_after);

/* The exposition text (malloc'd, *len bytes, NUL-terminated), or NULL.
 * now_ms: the token engine's (monotonic) clock; wall_now_s: unix seconds, for
 * secret and certificate expiry dates. */
char *metrics_render(struct token_engine *te, long long now_ms, long long wall_now_s, size_t *len);

/* Series a higher layer adds to every render (the gates, proxy/gatereport.c):
 * malloc'd text or NULL. Set once before the admin listener starts. */
void metrics_set_extra(char *(*render)(long long now_ms, size_t *len));

/* Where s2s_client_connections comes from: the open client connections of
 * the whole process (proxy/conntrack.c), read at each render. Set once
 * before the admin listener starts; unset, the series is left out. */
void metrics_set_client_connections(long (*count)(void));

/* "read" (GET, HEAD, OPTIONS), "write" (POST, PUT, PATCH, DELETE) or "other". */
const char *metrics_method_class(const char *method);

#endif
