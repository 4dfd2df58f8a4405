/*
 * tlsin.h - inbound TLS: the proxy answering HTTPS, for instance as
 * contoso.crm4.dynamics.com when a hosts-file entry points that name at it.
 * libmicrohttpd's TLS is GnuTLS; several certificates are served by SNI
 * through its certificate callback. TLS 1.2 and 1.3 only. Optionally the
 * client must present a certificate issued by tls_client_ca.
 *
 * Lifetime: tlsin_load() once before the workers start (the loaded set is
 * immutable afterwards and shared by every worker), tlsin_free() after the
 * workers stopped.
 */
#ifndef S2S_TLSIN_H
#define S2S_TLSIN_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/*
 * Load the certificates and keys of cfg (tls_cert[i] pairs with tls_key[i])
 * and the client CA. Returns 0 (also when TLS is not configured), or -1
 * with a reason in err: unreadable or invalid files, a key that does not
 * belong to its certificate, unequal numbers of tls_cert and tls_key.
 */
int tlsin_load(const struct proxy_cfg *cfg, char *err, size_t errcap);

/* Is inbound TLS configured (after tlsin_load)? */
bool tlsin_enabled(void);

/* MHD_USE_TLS when enabled, else 0. */
unsigned tlsin_mhd_flags(void);

/*
 * Append the MHD options for TLS to ops (at most cap items, terminated by
 * the caller). Returns how many were written.
 */
size_t tlsin_mhd_options(struct MHD_OptionItem *ops, size_t cap);

/*
 * When tls_client_ca is set: did the client present a certificate that
 * verifies against it? Returns 0, or -1 with a short reason in why.
 */
int tlsin_check_client(struct MHD_Connection *conn, char *why, size_t cap);

/*
 * The subject DN of the client's certificate (RFC 4514 text as GnuTLS
 * writes it, e.g. "CN=pos-01,O=Contoso") into out; 0, or -1 when there is
 * none (no tls_client_ca, no certificate, or it does not fit). Call after
 * tlsin_check_client accepted the connection.
 */
int tlsin_client_subject(struct MHD_Connection *conn, char *out, size_t cap);

/* NULL-safe, idempotent. */
void tlsin_free(void);

#endif
