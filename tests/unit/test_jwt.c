/*
 * test_jwt.c - base64url decoding, claims of a token built here, and the
 * fingerprint (expected values computed independently with Python's
 * hashlib/base64).
 */
#include <stdlib.h>
#include <string.h>

#include "token/jwt.h"
#include "t.h"

#define HEADER "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define PAYLOAD                                                                                                        \
	"{\"aud\":\"https://org.crm4.dynamics.com\",\"iss\":\"https://sts.windows.net/"                                \
	"72f988bf-86f1-41af-91ab-2d7cd011db47/\",\"tid\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\",\"appid\":"          \
	"\"0ab1c2d3-4e5f-6789-abcd-ef0123456789\",\"oid\":\"9f8e7d6c-5b4a-3210-fedc-ba9876543210\",\"roles\":"         \
	"[\"user_impersonation\",\"Data.Read\"],\"exp\":1700003600,\"nbf\":1700000000,\"iat\":1700000000}"

/* Unpadded base64url, written independently of the decoder under test. */
static void b64url(const char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)(unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)(unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = a[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

static void make_jwt(const char *payload, char *out, size_t cap)
{
	char h[128], p[1024];

	b64url(HEADER, strlen(HEADER), h);
	b64url(payload, strlen(payload), p);
	snprintf(out, cap, "%s.%s.c2lnbmF0dXJl", h, p);
}

static void test_b64url_decode(void)
{
	unsigned char out[16];

	CHECK_INT(jwt_b64url_decode("TWFu", 4, out, sizeof(out)), 3);
	CHECK(memcmp(out, "Man", 3) == 0);
	CHECK_INT(jwt_b64url_decode("TWE", 3, out, sizeof(out)), 2);
	CHECK(memcmp(out, "Ma", 2) == 0);
	CHECK_INT(jwt_b64url_decode("TWE=", 4, out, sizeof(out)), 2);
	CHECK(memcmp(out, "Ma", 2) == 0);
	CHECK_INT(jwt_b64url_decode("TQ", 2, out, sizeof(out)), 1);
	CHECK_INT(out[0], 'M');
	CHECK_INT(jwt_b64url_decode("TQ==", 4, out, sizeof(out)), 1);
	CHECK_INT(out[0], 'M');
	CHECK_INT(jwt_b64url_decode("-_8", 3, out, sizeof(out)), 2);
	CHECK_INT(out[0], 0xfb);
	CHECK_INT(out[1], 0xff);
	CHECK_INT(jwt_b64url_decode("", 0, out, sizeof(out)), 0);
}

static void test_b64url_invalid(void)
{
	unsigned char out[16];

	CHECK_INT(jwt_b64url_decode("TQ=", 3, out, sizeof(out)), -1);    /* partial padding */
	CHECK_INT(jwt_b64url_decode("T", 1, out, sizeof(out)), -1);      /* impossible length */
	CHECK_INT(jwt_b64url_decode("TWFuT", 5, out, sizeof(out)), -1);  /* impossible length */
	CHECK_INT(jwt_b64url_decode("TW+u", 4, out, sizeof(out)), -1);   /* standard alphabet */
	CHECK_INT(jwt_b64url_decode("TW/u", 4, out, sizeof(out)), -1);   /* standard alphabet */
	CHECK_INT(jwt_b64url_decode("TW u", 4, out, sizeof(out)), -1);   /* space */
	CHECK_INT(jwt_b64url_decode("T=Fu", 4, out, sizeof(out)), -1);   /* '=' inside */
	CHECK_INT(jwt_b64url_decode("TQ===", 5, out, sizeof(out)), -1);  /* too much padding */
	CHECK_INT(jwt_b64url_decode("TWFu", 4, out, 2), -1);             /* does not fit */
	CHECK_INT(jwt_b64url_decode("TWFu\0", 5, out, sizeof(out)), -1); /* NUL inside len */
	CHECK_INT(jwt_b64url_decode(NULL, 0, out, sizeof(out)), -1);
}

static void test_claims(void)
{
	char tok[2048];
	struct jwt_claims c;

	make_jwt(PAYLOAD, tok, sizeof(tok));
	CHECK_INT(jwt_decode_claims(tok, strlen(tok), &c), 0);
	CHECK_STR(c.aud, "https://org.crm4.dynamics.com");
	CHECK_STR(c.iss, "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/");
	CHECK_STR(c.tid, "72f988bf-86f1-41af-91ab-2d7cd011db47");
	CHECK_STR(c.appid, "0ab1c2d3-4e5f-6789-abcd-ef0123456789");
	CHECK_STR(c.oid, "9f8e7d6c-5b4a-3210-fedc-ba9876543210");
	CHECK_STR(c.roles, "user_impersonation,Data.Read");
	CHECK_INT(c.exp, 1700003600);
	CHECK_INT(c.nbf, 1700000000);
	CHECK_INT(c.iat, 1700000000);
}

static void test_claims_v2_and_odd_shapes(void)
{
	char tok[2048];
	struct jwt_claims c;

	/* v2: azp instead of appid, aud as an array, single role string, times as strings */
	make_jwt("{\"aud\":[\"a\",\"b\"],\"azp\":\"client\",\"roles\":\"One\",\"exp\":\"1700003600\"}", tok,
		 sizeof(tok));
	CHECK_INT(jwt_decode_claims(tok, strlen(tok), &c), 0);
	CHECK_STR(c.aud, "a,b");
	CHECK_STR(c.appid, "client");
	CHECK_STR(c.roles, "One");
	CHECK_INT(c.exp, 1700003600);
	CHECK_INT(c.nbf, 0);
	CHECK_STR(c.tid, "");
	/* payload that is JSON but not an object */
	make_jwt("[1]", tok, sizeof(tok));
	CHECK_INT(jwt_decode_claims(tok, strlen(tok), &c), -1);
	CHECK_STR(c.aud, "");
}

static void test_not_a_jwt(void)
{
	struct jwt_claims c;

	memset(&c, 'x', sizeof(c));
	CHECK_INT(jwt_decode_claims("opaque-token", 12, &c), -1);
	CHECK_STR(c.aud, "");
	CHECK_INT(c.exp, 0);
	CHECK_INT(jwt_decode_claims("a.b", 3, &c), -1);
	CHECK_INT(jwt_decode_claims("a..c", 4, &c), -1);
	CHECK_INT(jwt_decode_claims("a.!!!!.c", 8, &c), -1);
	CHECK_INT(jwt_decode_claims("a.bm90IGpzb24.c", 15, &c), -1); /* "not json" */
	CHECK_INT(jwt_decode_claims(NULL, 0, &c), -1);
	/* the second dot lies beyond len: not seen */
	CHECK_INT(jwt_decode_claims("a.e30.c", 5, &c), -1);
	CHECK_INT(jwt_decode_claims("a.e30.c", 6, &c), 0); /* "{}" */
}

static void test_fingerprint(void)
{
	char fp[JWT_FINGERPRINT_LEN], tok[2048];

	jwt_fingerprint("abc", 3, fp);
	CHECK_STR(fp, "sha256:ba7816bf8f01cfea");
	make_jwt(PAYLOAD, tok, sizeof(tok));
	jwt_fingerprint(tok, strlen(tok), fp);
	CHECK_STR(fp, "sha256:14573a1f73360f23");
	CHECK_INT(strlen(fp), JWT_FINGERPRINT_LEN - 1);
}

int main(void)
{
	RUN(test_b64url_decode);
	RUN(test_b64url_invalid);
	RUN(test_claims);
	RUN(test_claims_v2_and_odd_shapes);
	RUN(test_not_a_jwt);
	RUN(test_fingerprint);
	return T_DONE();
}
