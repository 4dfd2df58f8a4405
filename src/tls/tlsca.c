/*
 * tlsca.c - additional trust anchors for libcurl handles.
 *
 * curl sets up the SSL_CTX of a new connection (default CA bundle loaded
 * into its X509_STORE) and then calls CURLOPT_SSL_CTX_FUNCTION; we add our
 * certificates to that same store, so both the system anchors and ours are
 * trusted. The certificate set is built once before threads start and only
 * read afterwards; X509_STORE_add_cert takes its own reference (atomic in
 * OpenSSL), so concurrent callbacks from several threads are safe.
 */
#include "tls/tlsca.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "util/log.h"

/* Owned: every certificate read from the file. NULL when none loaded. */
static STACK_OF(X509) * tlsca_certs;
/* Set by tlsca_system_init before threads start: trust the system store
 * through its hash directory instead of the bundle file. */
static bool tlsca_use_capath;

static void set_err(char *err, size_t errcap, const char *what, const char *path)
{
	char ossl[160] = "";
	unsigned long e = ERR_peek_last_error();

	if (e != 0)
		ERR_error_string_n(e, ossl, sizeof(ossl));
	ERR_clear_error();
	if (err != NULL && errcap > 0)
		snprintf(err, errcap, "%s %s%s%s", what, path, ossl[0] ? ": " : "", ossl);
}

/* The certificates of one PEM file; NULL (and err set) when there are none. */
static STACK_OF(X509) * read_pem(const char *path, char *err, size_t errcap)
{
	STACK_OF(X509) *certs = NULL;
	BIO *bio = NULL;
	X509 *x;

	ERR_clear_error();
	bio = BIO_new_file(path, "r");
	if (bio == NULL) {
		set_err(err, errcap, "cannot open ca_file", path);
		goto fail;
	}
	certs = sk_X509_new_null();
	if (certs == NULL) {
		set_err(err, errcap, "out of memory reading", path);
		goto fail;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_push(certs, x) <= 0) {
			X509_free(x);
			set_err(err, errcap, "out of memory reading", path);
			goto fail;
		}
	}
	/* The loop ends with "no start line" at EOF; anything else is damage. */
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		set_err(err, errcap, "cannot parse ca_file", path);
		goto fail;
	}
	ERR_clear_error();
	if (sk_X509_num(certs) == 0) {
		set_err(err, errcap, "no PEM certificate in ca_file", path);
		goto fail;
	}
	BIO_free(bio);
	return certs;
fail:
	sk_X509_pop_free(certs, X509_free);
	BIO_free(bio);
	return NULL;
}

int tlsca_load(const char *pem_path, char *err, size_t errcap)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	STACK_OF(X509) * certs;

	if (err != NULL && errcap > 0)
		err[0] = '\0';
	if (pem_path == NULL) {
		if (err != NULL && errcap > 0)
			snprintf(err, errcap, "no ca_file given");
		return -1;
	}
	if (vi == NULL || vi->ssl_version == NULL || strncmp(vi->ssl_version, "OpenSSL", 7) != 0) {
		if (err != NULL && errcap > 0)
			snprintf(err, errcap, "ca_file %s needs libcurl with OpenSSL, this one uses %s", pem_path,
				 vi && vi->ssl_version ? vi->ssl_version : "no TLS");
		return -1;
	}
	certs = read_pem(pem_path, err, errcap);
	if (certs == NULL)
		return -1;
	tlsca_free();
	tlsca_certs = certs;
	return 0;
}

/* Does dir hold OpenSSL hash links ("1a2b3c4d.0"), as update-ca-certificates makes? */
static bool has_hash_links(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	if (d == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL)
		found = strlen(e->d_name) == 10 && strspn(e->d_name, "0123456789abcdef") == 8 &&
			strcmp(e->d_name + 8, ".0") == 0;
	closedir(d);
	return found;
}

bool tlsca_system_init(void)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

	tlsca_use_capath = vi != NULL && vi->age >= CURLVERSION_SEVENTH && vi->ssl_version != NULL &&
			   strncmp(vi->ssl_version, "OpenSSL", 7) == 0 && vi->capath != NULL &&
			   has_hash_links(vi->capath);
	return tlsca_use_capath;
}

size_t tlsca_count(void)
{
	return tlsca_certs != NULL ? (size_t)sk_X509_num(tlsca_certs) : 0;
}

/* CURLOPT_SSL_CTX_FUNCTION: add our anchors to the store curl filled. */
static CURLcode on_ssl_ctx(CURL *h, void *sslctx, void *arg)
{
	X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *)sslctx);
	int i;

	(void)h;
	(void)arg;
	if (store == NULL)
		return CURLE_SSL_CERTPROBLEM;
	for (i = 0; i < sk_X509_num(tlsca_certs); i++) {
		/* OpenSSL 3 accepts a certificate already present; older ones report it. */
		if (X509_STORE_add_cert(store, sk_X509_value(tlsca_certs, i)) != 1 &&
		    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
			ERR_clear_error();
			return CURLE_SSL_CERTPROBLEM;
		}
		ERR_clear_error();
	}
	return CURLE_OK;
}

void tlsca_apply(CURL *h)
{
	CURLcode rc;

	if (h == NULL)
		return;
	/* Without the bundle, OpenSSL looks up the one issuer a handshake needs
	 * in the hash directory (curl's built-in CAPATH stays set), instead of
	 * parsing all ~140 anchors of the bundle on a handle's first handshake:
	 * 25-45 ms on the token engine's first request and, on each worker's
	 * event loop, on its first upstream connection. */
	if (tlsca_use_capath && curl_easy_setopt(h, CURLOPT_CAINFO, NULL) != CURLE_OK)
		log_msg(LOG_WARN, "tlsca_apply_failed", "cannot switch a handle to the CA directory");
	if (tlsca_certs == NULL)
		return;
	rc = curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, NULL);
	if (rc != CURLE_OK)
		log_msg(LOG_ERROR, "tlsca_apply_failed", "cannot add ca_file anchors to a handle: %s",
			curl_easy_strerror(rc));
}

void tlsca_free(void)
{
	sk_X509_pop_free(tlsca_certs, X509_free);
	tlsca_certs = NULL;
}
