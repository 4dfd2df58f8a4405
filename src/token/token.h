/*
 * token.h - the token engine: one cache entry per token source (config.h),
 * filled and refreshed ahead of need by a dedicated thread that is the only
 * code talking to the token endpoint. Workers only read the cache: a request
 * never waits for a refresh while a valid token exists, never gets an expired
 * one, and any number of requests needing a missing token cause one fetch
 * (single flight by construction: one thread, one fetch per source).
 *
 * Thread-safety: token_lookup() may be called from any thread; everything
 * else from the thread that created the engine.
 */
#ifndef S2S_TOKEN_H
#define S2S_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "token/oauth.h"

/* Room for "Authorization: Bearer <token>". */
#define TOKEN_HEADER_MAX (OAUTH_TOKEN_MAX + 32)

struct token_engine;

enum token_state {
	TOKEN_VALID = 0, /* a usable token was copied out */
	TOKEN_PENDING,   /* no usable token yet; a fetch is under way and has not failed */
	TOKEN_FAILED,    /* no usable token and the last attempt failed: see token_failure */
};

enum token_failure_kind {
	TF_NONE = 0,
	TF_UNREACHABLE,  /* connect error, TLS error, timeout: transient */
	TF_THROTTLED,    /* 429 (or AADSTS50196/90055): transient */
	TF_SERVER_ERROR, /* 5xx: transient */
	TF_REJECTED,     /* 4xx OAuth error: credential/config problem, cached 60 s */
	TF_BAD_RESPONSE, /* 2xx without a usable token */
	TF_LOCAL,        /* secret file unreadable, etc. */
};

struct token_failure {
	enum token_failure_kind kind;
	long http_status;       /* 0 when no HTTP answer */
	struct oauth_error err; /* evidence from the body */
	char detail[256];       /* curl error text or local reason */
	long long retry_at_ms;  /* when the engine will try again (unix ms) */
};

/* Clock used by the engine: unix time in milliseconds. Tests inject one. */
typedef long long (*token_clock_fn)(void);

/*
 * Create the engine for cfg->token_sources (cfg must outlive the engine).
 * `notify(arg)` is called from the engine thread whenever any source's
 * state changes (new token, failure, recovery); workers use it to wake up.
 * Returns NULL on failure (logged).
 */
struct token_engine *token_engine_new(const struct config *cfg, void (*notify)(void *), void *arg);

/* What every engine reports as it works, for the metrics: main.c registers
 * metrics.c's functions here once, before any engine starts, so the engine
 * calls up through these and never includes the metrics module. A NULL
 * observer (or member) reports nothing (unit tests, the fuzz harness). */
struct token_observer {
	/* a fetch for source idx of `from` ended: f NULL on success; latency -1 for a local failure */
	void (*result)(const struct config *from, size_t idx, const struct token_failure *f, long long latency_ms);
	/* credential cred's certificate notAfter (unix s), once its key was used */
	void (*cert_not_after)(const struct config *from, size_t cred, long long not_after);
};
void token_set_observer(const struct token_observer *obs);

/* Replace the engine clock (default: CLOCK_MONOTONIC in ms). Call before
 * token_engine_start. For tests. */
void token_engine_set_clock(struct token_engine *te, token_clock_fn clock);

/* Start the engine thread; every source is fetched at once. 0 or -1. */
int token_engine_start(struct token_engine *te);

/* Stop the thread; lookups keep answering from the cache. NULL-safe. */
void token_engine_stop(struct token_engine *te);

/*
 * Before starting te (SIGHUP reload): copy every still usable token of
 * `old` whose source is identical (token endpoint, resource, scope and the
 * credential's settings) into te. Returns how many were kept.
 */
size_t token_engine_adopt(struct token_engine *te, struct token_engine *old);

/* Stop the thread and free everything (wiping tokens). NULL-safe. */
void token_engine_free(struct token_engine *te);

/*
 * Look up source `idx` at time now_ms. On TOKEN_VALID writes the complete
 * header line "Authorization: Bearer <token>" into hdr (cap bytes, NUL-
 * terminated) and, if gen is non-NULL, the token's generation number (it
 * changes whenever a new token is stored). On TOKEN_FAILED fills *fail when
 * non-NULL. The caller must wipe hdr when done with it.
 */
enum token_state token_lookup(struct token_engine *te, size_t idx, long long now_ms, char *hdr, size_t cap,
			      unsigned long *gen, struct token_failure *fail);

/* Ask for an early refresh of source idx (after an upstream 401); rate-limited. */
void token_request_refresh(struct token_engine *te, size_t idx);

/*
 * An upstream answered 401 to the token of generation `gen` of source idx:
 * when token_request_refresh's rate limit allows a refresh now, drop that
 * token (token_lookup no longer hands it out; requests wait for the next
 * one) and refresh. Otherwise keep it: a token fetched moments ago would
 * only be fetched again unchanged. Returns true when a request that used
 * `gen` may wait for another token: it was dropped now, or it is no longer
 * handed out (dropped by an earlier 401 of the same burst, replaced, or
 * expired); false when it is still the one handed out.
 */
bool token_reject(struct token_engine *te, size_t idx, unsigned long gen);

/* Stable lowercase name of a failure kind ("unreachable", "rejected", ...), for logs and problem bodies. */
const char *token_failure_name(enum token_failure_kind kind);

/* Read-only view of a source for health checks and metrics: times and the
 * last failure, never token bytes. */
struct token_status {
	enum token_state state;    /* as token_lookup would answer at now_ms */
	long long usable_until_ms; /* 0 before the first token */
	long long expires_at_ms;   /* the token's own expiry, 0 before the first token */
	bool has_failure;          /* fail holds the last failure since the last success */
	struct token_failure fail;
};
/* Fill *out for source idx at now_ms. 0, or -1 for an unknown source. Any thread. */
int token_status_get(struct token_engine *te, size_t idx, long long now_ms, struct token_status *out);

/* notAfter (unix seconds) of credential `credential`'s certificate, 0 when
 * it has none: for expiry metrics. */
long long token_engine_cert_not_after(const struct token_engine *te, size_t credential);

/* Total token requests sent (all sources), for tests and metrics. */
unsigned long token_engine_requests(const struct token_engine *te);

/* ---- Schedule arithmetic, exposed for unit tests (pure functions). ---- */

struct token_times {
	long long usable_until_ms; /* never handed out at or after this instant */
	long long refresh_at_ms;   /* background refresh starts here */
	long long expires_at_ms;
};

/*
 * Times for a token received at now_ms with the given lifetime (s) and
 * optional refresh_in (s, 0 = absent). The margin before expiry is
 * min(300 s, lifetime / 10); refresh happens at refresh_in, else at half
 * the lifetime, made earlier by jitter01 (0..1, the caller's randomness)
 * times a twentieth of that delay, and always before usable_until.
 */
struct token_times token_schedule(long long now_ms, long expires_in_s, long refresh_in_s, double jitter01);

/*
 * Delay before retry number `attempt` (1-based) of a transient failure:
 * exponential from 1 s with full jitter (`rand01` in [0,1)), capped at
 * cap_ms; a server Retry-After (ms, 0 = none) wins when larger (capped at
 * one hour).
 */
long long token_backoff_ms(unsigned attempt, long long retry_after_ms, long long cap_ms, double rand01);

/* How long a rejection (4xx) is remembered before trying again. */
#define TOKEN_REJECT_CACHE_MS 60000LL

#endif
