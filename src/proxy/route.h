/*
 * route.h - choosing the route for a request and building the upstream
 * URL. The upstream only ever comes from the matched route: never from the
 * client's Host header or an absolute-form target.
 */
#ifndef S2S_ROUTE_H
#define S2S_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* The longest request-target accepted: max_url_bytes is capped at it. */
#define ROUTE_MAX_TARGET CONFIG_MAX_URL_BYTES

enum route_verdict {
	ROUTE_OK = 0,
	ROUTE_NO_MATCH,       /* 404 */
	ROUTE_BAD_TARGET,     /* 400: not origin-form, bad escapes, NUL */
	ROUTE_FOREIGN_HOST,   /* 400: absolute-form for a host no route serves */
	ROUTE_PATH_TRAVERSAL, /* 400: dot segments (literal or encoded) */
	ROUTE_TOO_LONG,       /* 414 */
	ROUTE_BAD_HOST,       /* 400: Host is not host[:port] */
};

/* The parts of a request that choose its route. */
struct route_request {
	const char *target; /* raw request-target as received */
	const char *host;   /* Host header value, may be NULL */
};

struct route_match {
	const struct route_cfg *route;
	size_t index;
	char host[256];   /* effective host, lowercase, no port */
	size_t path_len;  /* length of the path part of target (before '?') */
	const char *path; /* points into the target (after any absolute-form authority) */
};

/*
 * Pick the route for `rq`: every match_* condition must hold; the longest
 * match_path wins, then file order. Validates the target first.
 */
enum route_verdict route_select(const struct config *cfg, const struct route_request *rq, struct route_match *m);

/* A short English reason for the verdict. */
const char *route_verdict_reason(enum route_verdict v);

/*
 * Write the upstream URL for a matched request into out (cap bytes):
 * upstream origin + base path + (prefix-stripped) path + query. Returns the
 * length, or -1 if it does not fit.
 */
long route_upstream_url(const struct route_match *m, char *out, size_t cap);

/* Does `path` (len bytes, no query) contain a "." or ".." segment once
 * percent-decoded, with '/' or '\' as separators? -1 for a bad escape or
 * an encoded NUL, 1 for traversal, 0 for clean. */
int route_path_traversal(const char *path, size_t len);

#endif
