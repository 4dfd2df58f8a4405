/*
 * assertion.h - certificate credentials: the private key and certificate of
 * a credential, and private_key_jwt client assertions signed with them
 * (RFC 7523; Entra's "certificate credentials").
 *
 * Ownership: the private key is loaded once into a struct assertion_key and
 * never leaves this module (internals.md L-TLS-3); callers see only the
 * signed assertion, public thumbprints and the certificate's expiry. Nothing
 * here logs key material.
 *
 * Thread-safety: a loaded key may be used from one thread at a time.
 */
#ifndef S2S_ASSERTION_H
#define S2S_ASSERTION_H

#include <stddef.h>

#include "config/config.h"

#define ASSERTION_MAX      16384          /* longest assertion produced (x5c chains included) */
#define ASSERTION_LIFETIME 600            /* exp - iat, seconds (Entra accepts at most 10 minutes) */
#define ASSERTION_WARN_S   (30LL * 86400) /* warn when the certificate expires within this */

struct assertion_key;

/*
 * Load the certificate (certificate_file, or pfx_file) and private key of
 * credential c, and check that they belong together and that the key is RSA.
 * Returns NULL with a reason (naming files, never key bytes) in why.
 */
struct assertion_key *assertion_key_load(const struct credential_cfg *c, char *why, size_t whycap);

/* Wipe and free. NULL-safe. */
void assertion_key_free(struct assertion_key *k);

/*
 * Sign a client assertion for client_id to the token endpoint `aud` at unix
 * time now_s into out (cap bytes, NUL-terminated): header alg PS256 with
 * x5t#S256, or RS256 with x5t; x5c when the credential asks for it. Claims
 * aud, iss = sub = client_id, jti (random when jti is NULL), nbf = iat =
 * now_s, exp = now_s + ASSERTION_LIFETIME. Returns the length or -1.
 */
long assertion_sign(const struct assertion_key *k, const char *client_id, const char *aud, long long now_s,
		    const char *jti, char *out, size_t cap);

/* The certificate's notAfter (unix seconds). */
long long assertion_not_after(const struct assertion_key *k);

/* base64url SHA-256 thumbprint of the certificate (public): for logs. */
const char *assertion_thumbprint(const struct assertion_key *k);

/*
 * For `s2s-proxy -t` and start-up: load, match, and judge expiry at now_s.
 * 0 when usable (a warning for expiry within ASSERTION_WARN_S goes to the
 * log), -1 with the reason in why.
 */
int assertion_check(const struct credential_cfg *c, long long now_s, char *why, size_t whycap);

/*
 * assertion_check for every certificate credential of cfg at now_s. Each
 * problem is handed to report(arg, line) as "FILE:LINE: [credential:NAME]
 * reason". Returns 0 when all are usable, else -1.
 */
int assertion_check_all(const struct config *cfg, long long now_s, void (*report)(void *arg, const char *line),
			void *arg);

/* base64url without padding of len bytes into out; -1 if it does not fit. */
long assertion_b64url(const unsigned char *in, size_t len, char *out, size_t cap);

#endif
