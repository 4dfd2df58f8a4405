/*
 * tlsca.c - the trust anchors of every libcurl handle, in one shared store.
 *
 * curl (OpenSSL backend) makes an SSL_CTX, and with it an X509_STORE, for
 * every new connection, and fills it from its CA settings: with the system
 * hash directory, each connection's first handshake reads and parses the
 * issuer it needs from disk and keeps it for the connection's life. Here
 * one X509_STORE is built before threads start: the system anchors (the
 * hash directory, looked up once per issuer and cached in the store, or
 * else the bundle file) plus the ca_file certificates. The
 * CURLOPT_SSL_CTX_FUNCTION callback makes it each connection's *verify*
 * store (SSL_CTX_set1_verify_cert_store): OpenSSL checks the server's
 * chain against it, and curl's own store, which curl goes on filling
 * later in the handshake, is never consulted, so curl never writes to the
 * shared one. OpenSSL locks an X509_STORE and its directory lookup
 * internally, so concurrent handshakes on several threads are safe.
 */
#include "tls/tlsca.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "util/log.h"

/* Certificates the last ca_file added to the store (which holds them). */
static size_t tlsca_n_certs;
/* Owned: the shared verify store (system anchors plus ca_file's); NULL
 * when there is none and curl's own settings apply. */
static X509_STORE *tlsca_store_p;
/*
 * What curl's own per-connection store is filled with. libcurl 7.x reads
 * CURLOPT_CAINFO = NULL as "no file"; libcurl 8.x reads it as "the default
 * bundle" and would parse all of it into every connection's store (0.9 MiB
 * a connection, bench/experiments/libcurl-8.21.md) only for it to go
 * unused. So on 8.x curl gets one certificate as CURLOPT_CAINFO_BLOB: an
 * anchor already in the shared store (no trust is added; the store is not
 * consulted anyway). Owned PEM bytes; len 0 = none.
 */
static struct curl_blob tlsca_blob = {.flags = CURL_BLOB_NOCOPY};
static bool tlsca_blob_wanted;

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

/* An empty store verifying as curl's own would: the trusted certificate
 * wins over one the server sends (TRUSTED_FIRST), and an intermediate
 * given as an anchor ends the chain (PARTIAL_CHAIN, curl's default since
 * 7.68). */
static X509_STORE *new_store(void)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
	X509_STORE *st = X509_STORE_new();

	tlsca_blob_wanted = vi != NULL && vi->version_num >= 0x080000;
	if (st != NULL && X509_STORE_set_flags(st, X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN) != 1) {
		X509_STORE_free(st);
		st = NULL;
	}
	return st;
}

/* tlsca_blob := the PEM of x (when there is none yet). Best effort: without
 * it curl 8 fills its own store from the bundle, slower but as safe. */
static void blob_from_x509(X509 *x)
{
	BIO *mem = BIO_new(BIO_s_mem());
	char *data;
	long len;

	if (tlsca_blob.len == 0 && mem != NULL && x != NULL && PEM_write_bio_X509(mem, x) == 1 &&
	    (len = BIO_get_mem_data(mem, &data)) > 0 && (tlsca_blob.data = malloc((size_t)len)) != NULL) {
		memcpy(tlsca_blob.data, data, (size_t)len);
		tlsca_blob.len = (size_t)len;
	}
	ERR_clear_error();
	BIO_free(mem);
}

/* The same from the first certificate of a PEM file. */
static void blob_from_file(const char *path)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

	blob_from_x509(x);
	X509_free(x);
	BIO_free(bio);
	ERR_clear_error();
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
	if (tlsca_store_p == NULL && (tlsca_store_p = new_store()) == NULL) {
		sk_X509_pop_free(certs, X509_free);
		if (err != NULL && errcap > 0)
			snprintf(err, errcap, "out of memory loading %s", pem_path);
		return -1;
	}
	for (int i = 0; i < sk_X509_num(certs); i++) {
		/* OpenSSL 3 accepts a certificate already present; older ones report it. */
		if (X509_STORE_add_cert(tlsca_store_p, sk_X509_value(certs, i)) != 1 &&
		    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
			set_err(err, errcap, "cannot trust the certificates of", pem_path);
			sk_X509_pop_free(certs, X509_free);
			return -1;
		}
		ERR_clear_error();
	}
	blob_from_x509(sk_X509_value(certs, 0));
	tlsca_n_certs = (size_t)sk_X509_num(certs);
	sk_X509_pop_free(certs, X509_free); /* the store keeps its own references */
	return 0;
}

/* Does dir hold OpenSSL hash links ("1a2b3c4d.0"), as update-ca-certificates
 * makes? The first one found is named in first[cap]. */
static bool has_hash_links(const char *dir, char *first, size_t cap)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	if (d == NULL)
		return false;
	while (!found && (e = readdir(d)) != NULL)
		found = strlen(e->d_name) == 10 && strspn(e->d_name, "0123456789abcdef") == 8 &&
			strcmp(e->d_name + 8, ".0") == 0 && (size_t)snprintf(first, cap, "%s/%s", dir, e->d_name) < cap;
	closedir(d);
	return found;
}

bool tlsca_system_init_from(const char *capath, const char *bundle)
{
	char first[4096];
	bool use_capath;

	tlsca_free();
	use_capath = capath != NULL && has_hash_links(capath, first, sizeof first);
	if (!use_capath && (bundle == NULL || access(bundle, R_OK) != 0))
		return false; /* nothing of the system's to share: curl's defaults apply */
	tlsca_store_p = new_store();
	if (tlsca_store_p == NULL)
		return false;
	/* The directory: nothing read now, each issuer on its first use. The
	 * bundle: parsed once, here, instead of on every connection. */
	if (use_capath ? X509_STORE_load_locations(tlsca_store_p, NULL, capath) != 1
		       : X509_STORE_load_locations(tlsca_store_p, bundle, NULL) != 1) {
		ERR_clear_error();
		tlsca_free();
		return false;
	}
	blob_from_file(use_capath ? first : bundle); /* one certificate's PEM: made on 7.x too, for the tests */
	return true;
}

bool tlsca_system_init(void)
{
	const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

	if (vi == NULL || vi->age < CURLVERSION_SEVENTH || vi->ssl_version == NULL ||
	    strncmp(vi->ssl_version, "OpenSSL", 7) != 0) {
		tlsca_free();
		return false;
	}
	return tlsca_system_init_from(vi->capath, vi->cainfo);
}

size_t tlsca_count(void)
{
	return tlsca_n_certs;
}

/* CURLOPT_SSL_CTX_FUNCTION: the connection verifies against the shared
 * store (its own reference; the connection's SSL takes another). */
static CURLcode on_ssl_ctx(CURL *h, void *sslctx, void *arg)
{
	(void)h;
	(void)arg;
	if (SSL_CTX_set1_verify_cert_store((SSL_CTX *)sslctx, tlsca_store_p) != 1) {
		ERR_clear_error();
		return CURLE_SSL_CERTPROBLEM;
	}
	return CURLE_OK;
}

void tlsca_apply(CURL *h)
{
	CURLcode rc;

	if (h == NULL || tlsca_store_p == NULL)
		return;
	/* curl's own store is not used for verifying: keep it (nearly) empty
	 * rather than parse the ~140 anchors of the bundle into it for every
	 * connection (tlsca_blob above). */
	rc = tlsca_blob_wanted && tlsca_blob.len > 0 ? curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &tlsca_blob)
						     : curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
	if (rc != CURLE_OK)
		log_msg(LOG_WARN, "tlsca_apply_failed", "cannot keep a handle's own CA store small: %s",
			curl_easy_strerror(rc));
	rc = curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, NULL);
	if (rc != CURLE_OK)
		log_msg(LOG_ERROR, "tlsca_apply_failed", "cannot give a handle the shared trust store: %s",
			curl_easy_strerror(rc));
}

X509_STORE *tlsca_store(void)
{
	return tlsca_store_p;
}

const struct curl_blob *tlsca_own_store_blob(void)
{
	return tlsca_blob.len > 0 ? &tlsca_blob : NULL;
}

void tlsca_free(void)
{
	tlsca_n_certs = 0;
	X509_STORE_free(tlsca_store_p); /* connections still open hold their own references */
	tlsca_store_p = NULL;
	free(tlsca_blob.data);
	tlsca_blob.data = NULL;
	tlsca_blob.len = 0;
	tlsca_blob_wanted = false;
}
