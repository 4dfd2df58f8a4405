/*
 * diaglog.h - one structured log line per diagnosed failure ("diagnosis"
 * event): code, remediation, evidence and the token's claims and
 * fingerprint (never the token). Identical failures (same route and code)
 * are logged at most once per DIAGLOG_WINDOW_MS; the next line that gets
 * through carries "repeated": how many were held back. Thread-safe.
 */
#ifndef S2S_DIAGLOG_H
#define S2S_DIAGLOG_H

#include "diag/diag.h"
#include "token/jwt.h"
#include "token/token.h"

#define DIAGLOG_WINDOW_MS 60000LL

/* A token failure answered to a client. note may be NULL. */
void diaglog_token(long long now_ms, const char *route, const char *request_id, const struct diagnosis *d,
		   const struct token_failure *f, const char *note);

/* An upstream refusal. claims and fp may be NULL. */
void diaglog_upstream(long long now_ms, const char *route, const char *request_id, const struct diagnosis *d,
		      const struct upstream_evidence *ev, const struct jwt_claims *claims, const char *fp);

/* Forget all rate-limit state (tests). */
void diaglog_reset(void);

#endif
