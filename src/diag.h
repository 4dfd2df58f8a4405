/*
 * diag.h - turning failures into diagnoses: a stable machine code, the
 * HTTP status the client gets, a title and a remediation. Table-driven;
 * branches on codes and kinds, never on description text.
 */
#ifndef S2S_DIAG_H
#define S2S_DIAG_H

#include "token.h"

struct diagnosis {
	int status;       /* answer to the client: 502 or 503 */
	const char *code; /* e.g. "idp_unavailable" */
	const char *title;
	const char *remediation; /* may be NULL */
	bool retry_after;        /* add Retry-After (transient) */
};

/* Diagnose a token failure. Always fills *out. */
void diag_token_failure(const struct token_failure *f, struct diagnosis *out);

#endif
