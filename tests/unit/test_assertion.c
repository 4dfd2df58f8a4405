/*
 * test_assertion.c - certificate credentials: key/certificate loading and
 * matching, exact header and claims of a signed client assertion, and its
 * PS256 / RS256 signature verified by the openssl command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "token/assertion.h"
#include "token/jwt.h"
#include "token/oauth.h"
#include "t.h"
#include "tdir.h"

/* Key pair, self-signed certificate, a second key; with the openssl CLI. */
static int make_files(void)
{
	if (t_dir_make("s2s-assertion") < 0)
		return -1;
	return t_sh(
	    "openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 20 "
	    "-subj /CN=s2s-test >/dev/null 2>&1 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	    "-out other.pem >/dev/null 2>&1 && openssl pkey -in key.pem -pubout -out pub.pem 2>/dev/null && "
	    "openssl pkcs12 -export -inkey key.pem -in cert.pem -passout pass:pfxpass -out c.pfx 2>/dev/null && "
	    "printf 'pfxpass\\n' > pass.txt");
}

static struct credential_cfg cred(const char *cert, const char *key, enum assertion_alg alg)
{
	struct credential_cfg c;

	memset(&c, 0, sizeof c);
	c.name = (char *)"t";
	c.kind = CRED_CERTIFICATE;
	c.certificate_file = (char *)cert;
	c.private_key_file = (char *)key;
	c.assertion_alg = alg;
	return c;
}

static void b64url_decode_str(const char *s, size_t n, char *out, size_t cap)
{
	long k = jwt_b64url_decode(s, n, (unsigned char *)out, cap - 1);
	out[k < 0 ? 0 : k] = '\0';
}

/* openssl dgst -verify over "header.payload" with the signature part. */
static int openssl_verify(const char *jws, enum assertion_alg alg)
{
	const char *dot = strrchr(jws, '.');
	unsigned char sig[512];
	long n = jwt_b64url_decode(dot + 1, strlen(dot + 1), sig, sizeof sig);
	FILE *f = fopen(t_path(5, "input.txt"), "w"), *g = fopen(t_path(6, "sig.bin"), "w");
	char cmd[1024];

	if (f == NULL || g == NULL || n <= 0)
		return -1;
	fwrite(jws, 1, (size_t)(dot - jws), f);
	fwrite(sig, 1, (size_t)n, g);
	fclose(f);
	fclose(g);
	snprintf(cmd, sizeof cmd,
		 "openssl dgst -sha256 %s -verify %s/pub.pem -signature %s/sig.bin %s/input.txt >/dev/null 2>&1",
		 alg == ASSERTION_PS256 ? "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" : "", t_dir, t_dir,
		 t_dir);
	return system(cmd);
}

static void test_ps256_signed_and_verified(void)
{
	struct credential_cfg c = cred(t_path(0, "cert.pem"), t_path(1, "key.pem"), ASSERTION_PS256);
	char why[512] = "", out[ASSERTION_MAX], part[2048], want[512];
	struct assertion_key *k = assertion_key_load(&c, why, sizeof why);
	const char *d1, *d2;
	long n;

	CHECK(k != NULL);
	n = assertion_sign(k, "11111111-2222-3333-4444-555555555555",
			   "https://login.microsoftonline.com/t/oauth2/v2.0/token", 1700000000, "jti-1", out,
			   sizeof out);
	CHECK(n > 0 && (size_t)n == strlen(out));
	d1 = strchr(out, '.');
	d2 = strrchr(out, '.');
	CHECK(d1 != NULL && d2 != d1);
	b64url_decode_str(out, (size_t)(d1 - out), part, sizeof part);
	snprintf(want, sizeof want, "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"%s\"}", assertion_thumbprint(k));
	CHECK_STR(part, want);
	CHECK_INT(strlen(assertion_thumbprint(k)), 43);
	b64url_decode_str(d1 + 1, (size_t)(d2 - d1 - 1), part, sizeof part);
	CHECK_STR(part,
		  "{\"aud\":\"https://login.microsoftonline.com/t/oauth2/v2.0/token\",\"iss\":\"11111111-2222-3333-"
		  "4444-555555555555\",\"sub\":\"11111111-2222-3333-4444-555555555555\",\"jti\":\"jti-1\",\"nbf\":"
		  "1700000000,\"iat\":1700000000,\"exp\":1700000600}");
	CHECK_INT(openssl_verify(out, ASSERTION_PS256), 0);
	out[d2 - out + 5] ^= 1; /* one flipped signature bit must fail */
	CHECK(openssl_verify(out, ASSERTION_PS256) != 0);
	assertion_key_free(k);
}

static void test_rs256_x5t_x5c_and_random_jti(void)
{
	struct credential_cfg c = cred(t_path(0, "cert.pem"), t_path(1, "key.pem"), ASSERTION_RS256);
	char why[512] = "", a[ASSERTION_MAX], b[ASSERTION_MAX], part[4096];
	struct assertion_key *k;

	c.send_x5c = true;
	k = assertion_key_load(&c, why, sizeof why);
	CHECK(k != NULL);
	CHECK(assertion_sign(k, "c", "https://x/token", 1700000000, NULL, a, sizeof a) > 0);
	CHECK(assertion_sign(k, "c", "https://x/token", 1700000000, NULL, b, sizeof b) > 0);
	CHECK(strcmp(a, b) != 0); /* a fresh jti each time */
	b64url_decode_str(a, (size_t)(strchr(a, '.') - a), part, sizeof part);
	CHECK(strncmp(part, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"", 34) == 0);
	CHECK(strstr(part, "\"x5c\":[\"MII") != NULL);
	CHECK(strstr(part, "x5t#S256") == NULL);
	CHECK_INT(openssl_verify(a, ASSERTION_RS256), 0);
	CHECK(assertion_sign(k, "c", "https://x/token", 1700000000, NULL, a, 100) < 0);
	assertion_key_free(k);
}

static void test_mismatch_pfx_and_expiry(void)
{
	struct credential_cfg c = cred(t_path(0, "cert.pem"), t_path(1, "other.pem"), ASSERTION_PS256);
	char why[512] = "";
	struct assertion_key *k = assertion_key_load(&c, why, sizeof why);
	long long now = 1700000000;

	CHECK(k == NULL);
	CHECK(strstr(why, "does not match the certificate") != NULL);
	c = cred(NULL, NULL, ASSERTION_PS256);
	c.pfx_file = (char *)t_path(2, "c.pfx");
	k = assertion_key_load(&c, why, sizeof why);
	CHECK(k == NULL); /* no password */
	c.private_key_password_file = (char *)t_path(3, "pass.txt");
	k = assertion_key_load(&c, why, sizeof why);
	CHECK(k != NULL);
	now = assertion_not_after(k);
	CHECK(now > 1700000000);
	assertion_key_free(k);
	CHECK_INT(assertion_check(&c, now - 86400, why, sizeof why), 0);
	CHECK_INT(assertion_check(&c, now + 86400 * 3, why, sizeof why), -1);
	CHECK(strstr(why, "expired 3 days ago") != NULL);
	assertion_key_free(NULL);
}

static void test_form_body_assertion(void)
{
	char out[512];
	long n = oauth_form_body_assertion(out, sizeof out, TOKEN_V2, "cid", "a.b.c", "https://x/.default");

	CHECK_STR(out, "grant_type=client_credentials&client_id=cid&scope=https%3A%2F%2Fx%2F.default"
		       "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
		       "&client_assertion=a.b.c");
	CHECK_INT(n, (long)strlen(out));
	CHECK_INT(oauth_form_body_assertion(out, 20, TOKEN_V1, "cid", "a.b.c", "https://x"), -1);
}

int main(void)
{
	if (make_files() != 0) {
		printf("FAIL setup: cannot make test keys with openssl\n");
		return 1;
	}
	RUN(test_ps256_signed_and_verified);
	RUN(test_rs256_x5t_x5c_and_random_jti);
	RUN(test_mismatch_pfx_and_expiry);
	RUN(test_form_body_assertion);
	t_sh("rm -f key.pem cert.pem other.pem pub.pem c.pfx pass.txt input.txt sig.bin");
	rmdir(t_dir);
	return T_DONE();
}
