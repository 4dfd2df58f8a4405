/*
 * problem.h - RFC 9457 application/problem+json bodies, the only shape of
 * error the proxy itself answers with. The `diagnosis` fields are the seam
 * where the diagnosis catalogue plugs in.
 */
#ifndef S2S_PROBLEM_H
#define S2S_PROBLEM_H

#include <stddef.h>

#include "token/token.h"

struct problem {
	int status;
	const char *code;                          /* stable machine code, e.g. "no_route", "idp_unavailable" */
	const char *title;                         /* short, constant English text */
	const char *detail;                        /* may be NULL */
	const char *route;                         /* may be NULL */
	const char *audience;                      /* may be NULL */
	const char *client_id;                     /* may be NULL */
	const char *remediation;                   /* may be NULL */
	const char *request_id;                    /* may be NULL */
	const struct token_failure *token_failure; /* Entra evidence, may be NULL */
	long upstream_status;                      /* a translated upstream error: its status, 0 = none */
	const char *upstream_body;                 /* its body (embedded as JSON when it is JSON), may be NULL */
	size_t upstream_body_len;
	/* throttled_upstream (throttle.c): the identity the upstream throttles
	 * (credential@host), the limit it named and how long it asked to wait */
	const char *identity; /* may be NULL */
	const char *limit;    /* may be NULL */
	long long wait_ms;    /* 0 = none */
};

/*
 * Render as JSON. Returns a malloc'd NUL-terminated string (caller frees),
 * length in *len, or NULL on allocation failure.
 */
char *problem_render(const struct problem *p, size_t *len);

#endif
