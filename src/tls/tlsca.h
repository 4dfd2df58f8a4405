/*
 * tlsca.h - the trust anchors of every libcurl handle (OpenSSL backend):
 * the system's, plus the certificates of one PEM file (a private CA for a
 * test IdP or an inspecting egress proxy) IN ADDITION, never instead, in
 * one X509_STORE shared by every connection of every thread. TLS
 * verification is never switched off.
 *
 * Lifetime: tlsca_system_init() and tlsca_load() once before any thread
 * starts, tlsca_apply() on any handle from any thread afterwards (the
 * store is only read by OpenSSL, under its own lock), and tlsca_free()
 * after every handle using it is gone.
 */
#ifndef S2S_TLSCA_H
#define S2S_TLSCA_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <openssl/x509.h>

/*
 * Build the shared store from the system anchors libcurl was built with:
 * its CA directory when it holds OpenSSL hash links (nothing read until a
 * handshake needs an issuer), else its bundle file (parsed now, once).
 * Returns whether there is a store; false (curl's own CA settings apply)
 * when libcurl does not use OpenSSL or neither source is usable.
 */
bool tlsca_system_init(void);
/* The same from a given directory and bundle (either may be NULL); for
 * tlsca_system_init and the tests. */
bool tlsca_system_init_from(const char *capath, const char *bundle);

/*
 * Trust every certificate of the PEM file at pem_path too (added to the
 * shared store, made here if tlsca_system_init made none). Returns 0, or
 * -1 with a reason in err (errcap bytes, NUL-terminated) when the file
 * cannot be read, holds no certificate or libcurl is not built with
 * OpenSSL.
 */
int tlsca_load(const char *pem_path, char *err, size_t errcap);

/* Number of certificates loaded from ca_file (0 = none). */
size_t tlsca_count(void);

/*
 * Make h verify servers against the shared store (via
 * CURLOPT_SSL_CTX_FUNCTION). A no-op when there is no store; a failure to
 * set the option is logged (the handle then trusts curl's defaults only).
 */
void tlsca_apply(CURL *h);

/* The shared store (owned here), or NULL; for the tests. */
X509_STORE *tlsca_store(void);
/* The one certificate (PEM) given to curl's own per-connection store on
 * libcurl 8.x, where CURLOPT_CAINFO = NULL would mean the whole bundle;
 * NULL when there is none. For the tests. */
const struct curl_blob *tlsca_own_store_blob(void);

/* Forget the store and the loaded certificates. NULL-safe, idempotent. */
void tlsca_free(void);

#endif
