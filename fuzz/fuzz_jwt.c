/*
 * fuzz_jwt.c - libFuzzer target for jwt.c: claims decoding of arbitrary
 * tokens, base64url decoding and the fingerprint. The input is handed over
 * in an exactly sized buffer without a NUL. Traps when claims are not
 * NUL-terminated, when a failed decode leaves claims set, or when the
 * decoder reports more bytes than fit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, size_t cap)
{
	if (strnlen(s, cap) == cap)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwt_claims c;
	char fp[JWT_FINGERPRINT_LEN];
	unsigned char out[256];
	char *tok = malloc(size ? size : 1);
	long n;

	if (tok == NULL)
		return 0;
	memcpy(tok, data, size);
	if (jwt_decode_claims(tok, size, &c) == 0) {
		check_str(c.aud, sizeof(c.aud));
		check_str(c.iss, sizeof(c.iss));
		check_str(c.tid, sizeof(c.tid));
		check_str(c.appid, sizeof(c.appid));
		check_str(c.oid, sizeof(c.oid));
		check_str(c.roles, sizeof(c.roles));
	} else if (c.aud[0] || c.roles[0] || c.exp || c.iat) {
		abort();
	}
	n = jwt_b64url_decode(tok, size, out, sizeof(out));
	if (n > (long)sizeof(out) || n < -1 || (n >= 0 && (size_t)n > size))
		abort();
	jwt_fingerprint(tok, size, fp);
	if (strlen(fp) != JWT_FINGERPRINT_LEN - 1 && strcmp(fp, "sha256:unavailable") != 0)
		abort();
	free(tok);
	return 0;
}
