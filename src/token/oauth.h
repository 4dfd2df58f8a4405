/*
 * oauth.h - the OAuth 2.0 client-credentials wire format of Microsoft Entra
 * ID: building the token request body and parsing token and error responses.
 * Pure functions (no I/O, no globals): unit-tested and fuzzed.
 *
 * Parsing is tolerant because real bodies are messy: numbers may arrive as
 * strings ("3599"), descriptions carry "\r\n" trace lines, some bodies are
 * not JSON at all (HTML error pages, `"error_description";"..."`), some are
 * empty or cut short. Decisions branch on codes, never on description text.
 */
#ifndef S2S_OAUTH_H
#define S2S_OAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define OAUTH_TOKEN_MAX 16384 /* longest access token accepted */
#define OAUTH_MAX_CODES 8

/* A successful token response. access_token is heap memory owned by the
 * struct; oauth_token_clear() wipes and frees it. */
struct oauth_token {
	char *access_token;
	long expires_in;     /* seconds; from expires_in, else expires_on - now */
	long ext_expires_in; /* 0 when absent */
	long refresh_in;     /* 0 when absent */
	char token_type[16]; /* "Bearer" */
};

/* Evidence from an error response (all fields optional, "" / 0 when absent). */
struct oauth_error {
	char error[64];              /* OAuth error value: invalid_client, ... */
	long codes[OAUTH_MAX_CODES]; /* error_codes, else AADSTS numbers found in the text */
	size_t n_codes;
	char trace_id[64];
	char correlation_id[64];
	char timestamp[40];
	char error_uri[256];
	char description[512]; /* first line only, trace/correlation lines removed */
	bool body_was_json;
};

enum oauth_result {
	OAUTH_OK = 0,
	OAUTH_REJECTED, /* 400, 401, or another 4xx (not 429) with an OAuth error: the credential or request is wrong */
	OAUTH_TRANSIENT,    /* 429 or 5xx: try again later */
	OAUTH_BAD_RESPONSE, /* 2xx without a usable token, a 4xx that is no OAuth error, or an unexpected status */
};

/*
 * Classify and parse a token endpoint answer. `now` (unix seconds) turns
 * expires_on into a lifetime. On OAUTH_OK fills `tok` (caller must
 * oauth_token_clear it); otherwise fills `err` as far as the body allows.
 * Never reads past body[len]; body need not be NUL-terminated.
 */
enum oauth_result oauth_parse_response(long http_status, const char *body, size_t len, long long now,
				       struct oauth_token *tok, struct oauth_error *err);

/* Only the error evidence from any body (used for upstream bodies too). */
void oauth_parse_error(const char *body, size_t len, struct oauth_error *err);

/* Wipe the token bytes and free them. NULL-safe, idempotent. */
void oauth_token_clear(struct oauth_token *tok);

/*
 * Build the form body of a client-credentials request into `out` (cap
 * bytes, NUL-terminated). Includes client_secret only for AUTH_POST.
 * v2: grant_type, client_id, scope; v1: grant_type, client_id, resource.
 * Returns the length, or -1 if it does not fit. The result contains the
 * secret: wipe `out` after use.
 */
long oauth_form_body(char *out, size_t cap, enum token_version ver, enum auth_method method, const char *client_id,
		     const char *secret, const char *scope_or_resource);

/*
 * Same for a client assertion (RFC 7523: certificate or federated token):
 * grant_type, client_id, scope or resource, client_assertion_type,
 * client_assertion. Returns the length or -1. Wipe `out` after use.
 */
long oauth_form_body_assertion(char *out, size_t cap, enum token_version ver, const char *client_id,
			       const char *assertion, const char *scope_or_resource);

/*
 * Build "Basic base64(urlencode(id):urlencode(secret))" (RFC 6749 2.3.1)
 * into out. Returns the length or -1 if it does not fit. Wipe after use.
 */
long oauth_basic_auth(char *out, size_t cap, const char *client_id, const char *secret);

/* application/x-www-form-urlencoded encoding of s into out; -1 if too long. */
long oauth_urlencode(char *out, size_t cap, const char *s);

#endif
