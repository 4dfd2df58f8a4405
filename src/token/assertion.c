/*
 * assertion.c - certificate credentials (assertion.h): loading the key and
 * certificate with OpenSSL, signing client assertions.
 *
 * The EVP_PKEY is the only copy of the private key in the process: PEM and
 * PKCS#12 bytes are read by OpenSSL BIOs straight from the files, and the
 * passphrase buffer is wiped as soon as the key is decoded.
 */
#include "token/assertion.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/log.h"

#define PASS_MAX   1024
#define X5C_MAX    8 /* certificates of the chain sent in x5c */
#define THUMB_SIZE 64

struct assertion_key {
	EVP_PKEY *pkey;         /* owned; never leaves this module */
	X509 *cert;             /* owned leaf */
	STACK_OF(X509) * chain; /* owned intermediates, may be NULL */
	enum assertion_alg alg;
	bool send_x5c;
	long long not_after;
	char x5t[THUMB_SIZE];      /* base64url SHA-1 of the DER certificate */
	char x5t_s256[THUMB_SIZE]; /* base64url SHA-256 */
};

long assertion_b64url(const unsigned char *in, size_t len, char *out, size_t cap)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i;

	if (out == NULL || cap == 0 || (len + 2) / 3 * 4 + 1 > cap)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = tbl[v >> 6 & 63];
		out[o++] = tbl[v & 63];
	}
	if (i < len) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		if (i + 1 < len)
			out[o++] = tbl[v >> 6 & 63];
	}
	out[o] = '\0';
	return (long)o;
}

/* The first OpenSSL error as text (never key material), queue cleared. */
static const char *ssl_err(char *buf, size_t cap)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, cap, "unknown error");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
	return buf;
}

/* Passphrase file (trailing newline trimmed) into buf; 0 or -1. */
static int read_pass(const char *path, char *buf, size_t cap, char *why, size_t whycap)
{
	FILE *f = fopen(path, "re");
	size_t n;

	buf[0] = '\0';
	if (f == NULL) {
		snprintf(why, whycap, "cannot open private_key_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

static int load_pem(struct assertion_key *k, const struct credential_cfg *c, char *pass, char *why, size_t whycap)
{
	const char *kf = c->private_key_file ? c->private_key_file : c->certificate_file;
	char eb[256];
	BIO *b = BIO_new_file(c->certificate_file, "r");
	X509 *x;

	if (b == NULL || (k->cert = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		snprintf(why, whycap, "certificate_file %s: no PEM certificate (%s)", c->certificate_file,
			 ssl_err(eb, sizeof eb));
		BIO_free(b);
		return -1;
	}
	/* The rest of the file is the chain, for x5c. */
	while (k->chain != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (sk_X509_push(k->chain, x) <= 0)
			X509_free(x);
	ERR_clear_error(); /* the end of the file reads as an error */
	BIO_free(b);
	b = BIO_new_file(kf, "r");
	if (b == NULL || (k->pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, pass)) == NULL) {
		snprintf(why, whycap, "%s %s: cannot read the private key (%s)",
			 c->private_key_file ? "private_key_file" : "certificate_file", kf, ssl_err(eb, sizeof eb));
		BIO_free(b);
		return -1;
	}
	BIO_free(b);
	return 0;
}

static int load_pfx(struct assertion_key *k, const struct credential_cfg *c, char *pass, char *why, size_t whycap)
{
	char eb[256];
	BIO *b = BIO_new_file(c->pfx_file, "rb");
	PKCS12 *p12 = b ? d2i_PKCS12_bio(b, NULL) : NULL;
	STACK_OF(X509) *ca = NULL;
	int ret = -1;

	if (p12 == NULL) {
		snprintf(why, whycap, "pfx_file %s: not a PKCS#12 file (%s)", c->pfx_file, ssl_err(eb, sizeof eb));
		goto done;
	}
	if (PKCS12_parse(p12, pass ? pass : "", &k->pkey, &k->cert, &ca) != 1 || k->pkey == NULL || k->cert == NULL) {
		snprintf(why, whycap, "pfx_file %s: cannot decode (wrong password?) (%s)", c->pfx_file,
			 ssl_err(eb, sizeof eb));
		goto done;
	}
	if (ca != NULL) {
		sk_X509_pop_free(k->chain, X509_free);
		k->chain = ca;
		ca = NULL;
	}
	ret = 0;
done:
	sk_X509_pop_free(ca, X509_free);
	PKCS12_free(p12);
	BIO_free(b);
	return ret;
}

static int thumbprint(X509 *cert, const EVP_MD *md, char *out, size_t cap)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned n = 0;

	if (X509_digest(cert, md, d, &n) != 1)
		return -1;
	return assertion_b64url(d, n, out, cap) < 0 ? -1 : 0;
}

/* Match, key type, thumbprints, expiry. */
static int finish_key(struct assertion_key *k, const struct credential_cfg *c, char *why, size_t whycap)
{
	const char *what = c->pfx_file ? c->pfx_file : c->certificate_file;
	struct tm tm;

	if (X509_check_private_key(k->cert, k->pkey) != 1) {
		ERR_clear_error();
		snprintf(why, whycap, "the private key does not match the certificate in %s", what);
		return -1;
	}
	if (!EVP_PKEY_is_a(k->pkey, "RSA")) {
		snprintf(why, whycap, "%s: Entra client assertions need an RSA key (%s given)", what,
			 EVP_PKEY_get0_type_name(k->pkey));
		return -1;
	}
	if (thumbprint(k->cert, EVP_sha1(), k->x5t, sizeof k->x5t) < 0 ||
	    thumbprint(k->cert, EVP_sha256(), k->x5t_s256, sizeof k->x5t_s256) < 0 ||
	    ASN1_TIME_to_tm(X509_get0_notAfter(k->cert), &tm) != 1) {
		ERR_clear_error();
		snprintf(why, whycap, "%s: cannot read the certificate", what);
		return -1;
	}
	k->not_after = (long long)timegm(&tm);
	return 0;
}

struct assertion_key *assertion_key_load(const struct credential_cfg *c, char *why, size_t whycap)
{
	char pass[PASS_MAX];
	struct assertion_key *k = NULL;
	int rc;

	pass[0] = '\0';
	if (c == NULL || (c->certificate_file == NULL && c->pfx_file == NULL)) {
		snprintf(why, whycap, "no certificate_file or pfx_file");
		return NULL;
	}
	if (c->private_key_password_file && read_pass(c->private_key_password_file, pass, sizeof pass, why, whycap))
		goto fail;
	k = calloc(1, sizeof *k);
	if (k == NULL || (k->chain = sk_X509_new_null()) == NULL) {
		snprintf(why, whycap, "out of memory");
		goto fail;
	}
	k->alg = c->assertion_alg;
	k->send_x5c = c->send_x5c;
	rc = c->pfx_file ? load_pfx(k, c, pass, why, whycap)
			 : load_pem(k, c, c->private_key_password_file ? pass : NULL, why, whycap);
	explicit_bzero(pass, sizeof pass);
	if (rc != 0 || finish_key(k, c, why, whycap) != 0)
		goto fail;
	return k;
fail:
	explicit_bzero(pass, sizeof pass);
	assertion_key_free(k);
	return NULL;
}

void assertion_key_free(struct assertion_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey); /* OpenSSL clears RSA private components on free */
	X509_free(k->cert);
	sk_X509_pop_free(k->chain, X509_free);
	free(k);
}

long long assertion_not_after(const struct assertion_key *k)
{
	return k ? k->not_after : 0;
}

const char *assertion_thumbprint(const struct assertion_key *k)
{
	return k ? k->x5t_s256 : "";
}

/* Standard base64 of one certificate's DER, added to arr (x5c uses it). */
static bool add_x5c(cJSON *arr, X509 *x)
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	char *b64;
	bool ok = false;

	if (n <= 0)
		return false;
	b64 = malloc(((size_t)n + 2) / 3 * 4 + 1);
	if (b64 != NULL && EVP_EncodeBlock((unsigned char *)b64, der, n) > 0)
		ok = cJSON_AddItemToArray(arr, cJSON_CreateString(b64));
	free(b64);
	OPENSSL_free(der);
	return ok;
}

static char *header_json(const struct assertion_key *k)
{
	cJSON *h = cJSON_CreateObject(), *arr;
	char *out = NULL;
	bool ok = h != NULL;

	ok = ok && cJSON_AddStringToObject(h, "alg", k->alg == ASSERTION_RS256 ? "RS256" : "PS256");
	ok = ok && cJSON_AddStringToObject(h, "typ", "JWT");
	if (k->alg == ASSERTION_RS256)
		ok = ok && cJSON_AddStringToObject(h, "x5t", k->x5t);
	else
		ok = ok && cJSON_AddStringToObject(h, "x5t#S256", k->x5t_s256);
	if (ok && k->send_x5c) {
		ok = (arr = cJSON_AddArrayToObject(h, "x5c")) != NULL && add_x5c(arr, k->cert);
		for (int i = 0; ok && i < sk_X509_num(k->chain) && i < X5C_MAX; i++)
			ok = add_x5c(arr, sk_X509_value(k->chain, i));
	}
	if (ok)
		out = cJSON_PrintUnformatted(h);
	cJSON_Delete(h);
	return out;
}

static void random_jti(char out[40])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof b) != 1)
		memset(b, 0, sizeof b); /* only fails without entropy; Entra then rejects the replay */
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (size_t i = 0; i < 16; i++)
		snprintf(out + 2 * i + (i >= 4) + (i >= 6) + (i >= 8) + (i >= 10), 3, "%02x", b[i]);
	out[8] = out[13] = out[18] = out[23] = '-';
	out[36] = '\0';
}

static char *payload_json(const char *client_id, const char *aud, long long now_s, const char *jti)
{
	cJSON *p = cJSON_CreateObject();
	char *out = NULL;
	bool ok = p != NULL;

	ok = ok && cJSON_AddStringToObject(p, "aud", aud) && cJSON_AddStringToObject(p, "iss", client_id) &&
	     cJSON_AddStringToObject(p, "sub", client_id) && cJSON_AddStringToObject(p, "jti", jti) &&
	     cJSON_AddNumberToObject(p, "nbf", (double)now_s) && cJSON_AddNumberToObject(p, "iat", (double)now_s) &&
	     cJSON_AddNumberToObject(p, "exp", (double)(now_s + ASSERTION_LIFETIME));
	if (ok)
		out = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	return out;
}

/* Sign out[0..len) and append ".signature"; returns the new length or -1. */
static long sign_append(const struct assertion_key *k, char *out, size_t cap, size_t len)
{
	unsigned char sig[1024];
	size_t slen = sizeof sig;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	long n, ret = -1;

	if (md == NULL || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, k->pkey) != 1)
		goto done;
	if (k->alg == ASSERTION_PS256 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
					  EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto done;
	if (EVP_DigestSign(md, sig, &slen, (const unsigned char *)out, len) != 1 || len + 1 >= cap)
		goto done;
	out[len] = '.';
	n = assertion_b64url(sig, slen, out + len + 1, cap - len - 1);
	if (n >= 0)
		ret = (long)len + 1 + n;
done:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	return ret;
}

long assertion_sign(const struct assertion_key *k, const char *client_id, const char *aud, long long now_s,
		    const char *jti, char *out, size_t cap)
{
	char id[40], *h = NULL, *p = NULL;
	long n, m, ret = -1;

	if (k == NULL || client_id == NULL || aud == NULL || out == NULL || cap == 0)
		return -1;
	if (jti == NULL) {
		random_jti(id);
		jti = id;
	}
	h = header_json(k);
	p = payload_json(client_id, aud, now_s, jti);
	if (h == NULL || p == NULL)
		goto done;
	n = assertion_b64url((const unsigned char *)h, strlen(h), out, cap);
	if (n < 0 || (size_t)n + 1 >= cap)
		goto done;
	out[n] = '.';
	m = assertion_b64url((const unsigned char *)p, strlen(p), out + n + 1, cap - (size_t)n - 1);
	if (m < 0)
		goto done;
	ret = sign_append(k, out, cap, (size_t)(n + 1 + m));
done:
	if (ret < 0)
		out[0] = '\0';
	cJSON_free(h);
	cJSON_free(p);
	return ret;
}

int assertion_check(const struct credential_cfg *c, long long now_s, char *why, size_t whycap)
{
	struct assertion_key *k = assertion_key_load(c, why, whycap);
	const char *what = c->pfx_file ? c->pfx_file : c->certificate_file;
	int ret = -1;

	if (k == NULL)
		return -1;
	if (k->not_after <= now_s) {
		snprintf(why, whycap, "the certificate in %s expired %lld days ago", what,
			 (now_s - k->not_after) / 86400);
		goto done;
	}
	if (k->not_after - now_s < ASSERTION_WARN_S)
		log_msg(LOG_WARN, "certificate_expiring", "[credential:%s] the certificate in %s expires in %lld days",
			c->name, what, (k->not_after - now_s) / 86400);
	ret = 0;
done:
	assertion_key_free(k);
	return ret;
}

int assertion_check_all(const struct config *cfg, long long now_s, void (*report)(void *arg, const char *line),
			void *arg)
{
	int ret = 0;

	for (size_t i = 0; i < cfg->n_credentials; i++) {
		const struct credential_cfg *c = &cfg->credentials[i];
		char why[512] = "", line[768];

		if (c->kind != CRED_CERTIFICATE || assertion_check(c, now_s, why, sizeof why) == 0)
			continue;
		snprintf(line, sizeof line, "%s:%d: [credential:%s] %s", cfg->path, c->line, c->name, why);
		report(arg, line);
		ret = -1;
	}
	return ret;
}
