/*
 * tlsca.h - extra trust anchors for libcurl (OpenSSL backend): the
 * certificates of one PEM file are trusted IN ADDITION to the system store
 * (a private CA for a test IdP or an inspecting egress proxy), never instead
 * of it, and TLS verification is never switched off.
 *
 * Lifetime: tlsca_load() once before any thread starts, tlsca_apply() on
 * any handle from any thread afterwards (the loaded set is immutable), and
 * tlsca_free() after every handle using it is gone.
 */
#ifndef S2S_TLSCA_H
#define S2S_TLSCA_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

/*
 * Load every certificate of the PEM file at pem_path, replacing any set
 * loaded before. Returns 0, or -1 with a reason in err (errcap bytes, NUL-
 * terminated) when the file cannot be read, holds no certificate or
 * libcurl is not built with OpenSSL.
 */
int tlsca_load(const char *pem_path, char *err, size_t errcap);

/* Number of certificates currently loaded (0 = none: tlsca_apply is a no-op). */
size_t tlsca_count(void);

/*
 * Make h trust the loaded certificates on top of its default CA bundle, via
 * CURLOPT_SSL_CTX_FUNCTION. A no-op when nothing is loaded; a failure to set
 * the option is logged (the handle then trusts the system store only).
 */
void tlsca_apply(CURL *h);
/* Once before threads start: use the system CA directory (OpenSSL hash
 * links) rather than the bundle file when libcurl uses OpenSSL and the
 * directory has them. Returns whether it does. */
bool tlsca_system_init(void);

/* Forget the loaded certificates. NULL-safe, idempotent. */
void tlsca_free(void);

#endif
