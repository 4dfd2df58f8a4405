/*
 * jwt.h - reading (never verifying) the claims of an access token, and its
 * fingerprint, so logs and diagnostics can say what a token is for without
 * ever containing it.
 */
#ifndef S2S_JWT_H
#define S2S_JWT_H

#include <stddef.h>

struct jwt_claims {
	char aud[256];
	char iss[256];
	char tid[64];
	char appid[64]; /* appid (v1) or azp (v2) */
	char oid[64];
	char roles[256]; /* comma-joined */
	long long exp;   /* 0 when absent */
	long long nbf;
	long long iat;
};

/* Decode the payload of a compact JWS without verifying it. Returns 0, or -1
 * when the token is not a JWT (claims then stay zeroed). */
int jwt_decode_claims(const char *token, size_t len, struct jwt_claims *out);

/* "sha256:" + first 16 hex digits of SHA-256(token): safe to log. out must
 * hold JWT_FINGERPRINT_LEN bytes. */
#define JWT_FINGERPRINT_LEN 24
void jwt_fingerprint(const char *token, size_t len, char out[JWT_FINGERPRINT_LEN]);

/* base64url decode (padding optional). Returns decoded length or -1. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif
