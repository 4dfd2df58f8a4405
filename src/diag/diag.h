/*
 * diag.h - turning failures into diagnoses: a stable machine code, the
 * HTTP status the client gets, a title and a remediation that names the
 * portal page or setting to fix. Table-driven; branches on Entra's
 * error_codes, the upstream's status and error code, and the token's
 * claims, never on description text (the one exception is the Security
 * Service's 400, whose only distinguishing mark is its "Expected aud" text).
 */
#ifndef S2S_DIAG_H
#define S2S_DIAG_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "token/token.h"

struct diagnosis {
	int status;       /* answer to the client for token failures: 502 or 503 */
	const char *code; /* e.g. "secret_invalid"; static storage */
	const char *title;
	const char *remediation; /* may be NULL */
	bool retry_after;        /* add Retry-After (transient) */
};

/* What the route expects, for notes that compare it with the evidence. */
struct diag_context {
	const char *client_id; /* may be NULL */
	const char *tenant;    /* may be NULL */
	const char *audience;  /* resource URL, may be NULL */
	enum audience_kind kind;
};

/* Diagnose a token failure. Always fills *out. */
void diag_token_failure(const struct token_failure *f, struct diagnosis *out);

/*
 * A context-specific sentence for a token failure (swapped client ID and
 * tenant, secret ID sent instead of its value, F&O audience spelling).
 * Writes "" when there is nothing to add. out is cap bytes, terminated.
 */
void diag_token_note(const struct token_failure *f, const struct diag_context *ctx, char *out, size_t cap);

/* Evidence from an upstream's refusal (all fields "" when absent). */
struct upstream_evidence {
	long status;
	char error_code[64];   /* "0x80072560", "Authentication_InvalidCredentials", "invalid_client" */
	char message[512];     /* first line of the upstream's message */
	char challenge[512];   /* WWW-Authenticate as received, cut */
	char resource_id[256]; /* from the challenge */
	char token_aud[256];   /* the aud claim of the token that was sent */
	char privilege[64];    /* Dataverse 0x80040220: "prvReadaccount" */
	char entity[64];       /* Dataverse 0x80040220: "account" */
};

/*
 * Diagnose an upstream answer. body[0..len) may be cut short, empty or not
 * JSON; upstream_host, www_auth and token_aud may be NULL. Returns true and fills *out
 * (status unused) and *ev when the answer is an authentication or
 * authorisation failure with a catalogue code; false otherwise (ev is
 * still filled as far as the inputs allow).
 */
bool diag_upstream(enum audience_kind kind, const char *upstream_host, long status, const char *body, size_t len,
		   const char *www_auth, const char *token_aud, struct upstream_evidence *ev, struct diagnosis *out);

/* An upstream's throttling outlasted a request's wait (503, throttled_upstream). */
void diag_upstream_throttled(struct diagnosis *out);
/*
 * A Dataverse 403 to a request the proxy sent with CallerObjectId
 * (impersonation): unless diag_upstream found the application user itself
 * missing or blocked, the impersonated user lacks a licence, is disabled or
 * lacks a role (Dataverse intersects the app's privileges with the user's).
 * Decided on the status and the header sent, not on message text. Fills
 * *out and returns true, or false (not a 403, or the app's own fault).
 */
bool diag_impersonation(long status, const struct upstream_evidence *ev, struct diagnosis *out);

/* Statuses whose body diag_upstream wants to see (400, 401, 403). */
bool diag_upstream_status_wanted(long status);

#endif
