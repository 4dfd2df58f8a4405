/*
 * caller.h - who sent a request: the [caller:NAME] sections matched
 * against the request's Authorization: Basic, inbound key header, TLS
 * client certificate subject and peer address.
 *
 * caller_basic_parse and caller_recognise are pure but for the cache of
 * password verifications (below); caller_admit applies them to a request.
 *
 * crypt(3) is slow on purpose, so it never runs on a worker thread: on a
 * cache miss caller_recognise queues the check on the verifier thread
 * (verifier.h; one job per distinct key, however many requests wait for
 * it) and answers CALLER_PENDING; the request waits parked and asks
 * again when the verifier wakes the workers. Bounded: a verified (caller, user, password) is remembered for 10
 * minutes under an HMAC-SHA-256 with a random per-process key (never the
 * password itself); a wrong one for 30 s (a client retrying it costs no
 * second crypt); and each caller gets at most CALLER_FAIL_BURST queued
 * checks not proven good per CALLER_FAIL_WINDOW_MS (all callers together
 * CALLER_FAIL_GLOBAL), after which further new passwords are refused
 * without a check until the window ends. Secrets are
 * compared in constant time and never logged.
 */
#ifndef S2S_CALLER_H
#define S2S_CALLER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "ops/inventory.h"

#define CALLER_BASIC_MAX       256 /* user and password, each, bytes with the NUL */
#define CALLER_FAIL_BURST      4
#define CALLER_FAIL_GLOBAL     16 /* failed crypts per window for all callers together */
#define CALLER_FAIL_WINDOW_MS  10000
#define CALLER_ANONYMOUS_LABEL "-" /* the caller label of a request no caller matched */

/* Per request (struct request's one caller field). Worker thread only. */
struct rq_caller {
	const struct caller_cfg *c; /* NULL: no caller matched (an open route) */
	unsigned protos;            /* 1u << enum inventory_proto */
	bool challenge;             /* a 401 answer carries the Basic challenge */
	bool verifying;             /* parked until the verifier checked its password (proxy.c) */
	char act_for[40];           /* Entra object id to send as CallerObjectId, "" = none (proxy.c, bridge.c) */
	bool impersonate;           /* CallerObjectId was added upstream */
};

enum caller_verdict {
	CALLER_OK = 0,    /* *out is the caller */
	CALLER_ANONYMOUS, /* none matched; the route is open */
	CALLER_UNAUTHORIZED /* 401: the route admits a Basic caller; none matched */,
	CALLER_FORBIDDEN, /* 403: none matched */
	CALLER_PENDING,   /* a password is being verified (verifier.c): ask again once it is */
	CALLER_BUSY,      /* 503: the verifier's queue is full */
};

/* What caller_recognise looks at; any pointer may be NULL. */
struct caller_input {
	const char *authorization; /* the client's Authorization header */
	const char *key;           /* the [proxy] inbound_key_header's value */
	const char *tls_subject;   /* the client certificate's subject DN */
	const struct sockaddr *peer;
	long long now_ms; /* monotonic, for the caches */
};

/*
 * Parse "Basic <base64(user:password)>" (scheme case-insensitive). 0 with
 * both written (NUL-terminated), or -1: another scheme, bad base64, no
 * ':', an empty user, a NUL or control byte, or a part of
 * CALLER_BASIC_MAX bytes or more. Wipes its own copies.
 */
int caller_basic_parse(const char *header, char user[CALLER_BASIC_MAX], char pass[CALLER_BASIC_MAX]);

/*
 * The caller of a request to `route` (one of cfg->routes): among the
 * route's callers (every caller when it has none), the first whose every
 * recognition key matches. *why gets a static reason for a refusal.
 */
enum caller_verdict caller_recognise(const struct config *cfg, const struct route_cfg *route,
				     const struct caller_input *in, const struct caller_cfg **out, const char **why);

/* The route as caller c uses it (its credential and token source). */
const struct route_cfg *caller_route(const struct config *cfg, const struct caller_cfg *c,
				     const struct route_cfg *route);

/* Forget every cached verification (tests; a reload need not: the hash is in the key). */
void caller_cache_reset(void);

#endif
