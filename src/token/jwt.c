/*
 * jwt.c - reading the claims of an access token (never verifying it: the
 * proxy only forwards tokens, the resource validates them) and a short
 * SHA-256 fingerprint, so logs can say which token was used and for what
 * without containing it.
 */
#include "token/jwt.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "util/b64.h"

#define JWT_PAYLOAD_MAX (64 * 1024) /* longer payloads are not decoded */

/* RFC 4648 section 5 (util/b64.c); '+' and '/' (the standard alphabet) are rejected. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	return b64_decode(in, len, out, cap, B64_URL);
}

/* Copy a string claim (cleaned of control bytes) into dst. */
static void claim_str(const cJSON *it, char *dst, size_t cap)
{
	size_t i;

	if (!cJSON_IsString(it) || it->valuestring == NULL || cap == 0)
		return;
	for (i = 0; i + 1 < cap && it->valuestring[i] != '\0'; i++) {
		unsigned char c = (unsigned char)it->valuestring[i];

		dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	dst[i] = '\0';
}

/* A string, or an array of strings joined with ','; an entry that does not
 * fit is left out whole. */
static void claim_list(const cJSON *it, char *dst, size_t cap)
{
	const cJSON *e;
	size_t used = 0;

	if (cJSON_IsString(it)) {
		claim_str(it, dst, cap);
		return;
	}
	if (!cJSON_IsArray(it))
		return;
	cJSON_ArrayForEach(e, it)
	{
		char one[256] = "";
		size_t n;

		claim_str(e, one, sizeof(one));
		n = strlen(one);
		if (n == 0 || used + (used > 0) + n + 1 > cap)
			continue;
		if (used > 0)
			dst[used++] = ',';
		memcpy(dst + used, one, n + 1);
		used += n;
	}
}

static long long claim_time(const cJSON *it)
{
	if (cJSON_IsNumber(it) && isfinite(it->valuedouble) && it->valuedouble > 0 && it->valuedouble < 1e15)
		return (long long)it->valuedouble;
	if (cJSON_IsString(it) && it->valuestring != NULL) {
		char *end;
		long long v = strtoll(it->valuestring, &end, 10);

		if (end != it->valuestring && *end == '\0' && v > 0 && v < 1000000000000000LL)
			return v;
	}
	return 0;
}

static void claims_from(const cJSON *root, struct jwt_claims *out)
{
	const cJSON *appid = cJSON_GetObjectItemCaseSensitive(root, "appid");

	if (appid == NULL)
		appid = cJSON_GetObjectItemCaseSensitive(root, "azp");
	claim_list(cJSON_GetObjectItemCaseSensitive(root, "aud"), out->aud, sizeof(out->aud));
	claim_str(cJSON_GetObjectItemCaseSensitive(root, "iss"), out->iss, sizeof(out->iss));
	claim_str(cJSON_GetObjectItemCaseSensitive(root, "tid"), out->tid, sizeof(out->tid));
	claim_str(appid, out->appid, sizeof(out->appid));
	claim_str(cJSON_GetObjectItemCaseSensitive(root, "oid"), out->oid, sizeof(out->oid));
	claim_list(cJSON_GetObjectItemCaseSensitive(root, "roles"), out->roles, sizeof(out->roles));
	out->exp = claim_time(cJSON_GetObjectItemCaseSensitive(root, "exp"));
	out->nbf = claim_time(cJSON_GetObjectItemCaseSensitive(root, "nbf"));
	out->iat = claim_time(cJSON_GetObjectItemCaseSensitive(root, "iat"));
}

int jwt_decode_claims(const char *token, size_t len, struct jwt_claims *out)
{
	const char *dot1, *dot2;
	unsigned char *buf = NULL;
	cJSON *root = NULL;
	size_t plen;
	long n;
	int ret = -1;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof(*out));
	if (token == NULL || (dot1 = memchr(token, '.', len)) == NULL)
		goto done;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL)
		goto done;
	plen = (size_t)(dot2 - dot1 - 1);
	if (plen == 0 || plen > JWT_PAYLOAD_MAX)
		goto done;
	buf = malloc(plen + 1); /* decoded size <= 3/4 plen, plus the NUL cJSON wants */
	if (buf == NULL)
		goto done;
	n = jwt_b64url_decode(dot1 + 1, plen, buf, plen);
	if (n <= 0)
		goto done;
	buf[n] = '\0';
	root = cJSON_ParseWithLength((const char *)buf, (size_t)n);
	if (!cJSON_IsObject(root))
		goto done;
	claims_from(root, out);
	ret = 0;
done:
	cJSON_Delete(root);
	free(buf);
	return ret;
}

void jwt_fingerprint(const char *token, size_t len, char out[JWT_FINGERPRINT_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t i;

	memcpy(out, "sha256:", 7);
	if (token == NULL || EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8) {
		memcpy(out + 7, "unavailable", sizeof("unavailable"));
		return;
	}
	for (i = 0; i < 8; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[23] = '\0';
}
