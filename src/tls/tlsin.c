/*
 * tlsin.c - inbound TLS with GnuTLS (see tlsin.h).
 *
 * The certificate callback picks, per handshake, the first certificate
 * whose names match the client's SNI, or the first one when nothing
 * matches or no name was sent. Private keys stay in this module.
 */
#include "tls/tlsin.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 and 1.3 only; GnuTLS's NORMAL cipher choice otherwise. */
#define TLSIN_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define TLSIN_MAX_CHAIN  8

struct tlsin_cert {
	gnutls_x509_crt_t crt[TLSIN_MAX_CHAIN]; /* for name matching */
	gnutls_pcert_st pcert[TLSIN_MAX_CHAIN];
	unsigned n;
	gnutls_privkey_t key;
};

static struct tlsin_cert certs[CONFIG_MAX_TLS_CERTS];
static size_t n_certs;
static char *client_ca_pem; /* handed to MHD as trust for client certificates */

/* "<what> <path>: <reason>" into err; returns -1. */
static int fail(char *err, size_t cap, const char *what, const char *path, const char *reason)
{
	snprintf(err, cap, "%s %s: %s", what, path, reason);
	return -1;
}

static int load_chain(struct tlsin_cert *c, const char *path, char *err, size_t cap)
{
	gnutls_datum_t d = {NULL, 0};
	unsigned n = TLSIN_MAX_CHAIN;
	int rc = gnutls_load_file(path, &d);
	if (rc < 0)
		return fail(err, cap, "tls_cert", path, gnutls_strerror(rc));
	rc = gnutls_x509_crt_list_import(c->crt, &n, &d, GNUTLS_X509_FMT_PEM, GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
	gnutls_free(d.data);
	if (rc <= 0)
		return fail(err, cap, "tls_cert", path, rc < 0 ? gnutls_strerror(rc) : "no certificate");
	c->n = (unsigned)rc;
	for (unsigned i = 0; i < c->n; i++) {
		rc = gnutls_pcert_import_x509(&c->pcert[i], c->crt[i], 0);
		if (rc < 0) {
			for (unsigned j = i; j < c->n; j++)
				gnutls_x509_crt_deinit(c->crt[j]);
			c->n = i; /* tlsin_free releases the first i of both arrays */
			return fail(err, cap, "tls_cert", path, gnutls_strerror(rc));
		}
	}
	return 0;
}

/* Does the private key belong to the leaf certificate? Compares key IDs. */
static bool key_matches(struct tlsin_cert *c)
{
	unsigned char a[64], b[64];
	size_t la = sizeof a, lb = sizeof b;
	gnutls_pubkey_t pk;
	bool ok = false;
	if (gnutls_pubkey_init(&pk) < 0)
		return false;
	if (gnutls_pubkey_import_privkey(pk, c->key, 0, 0) == 0 &&
	    gnutls_pubkey_get_key_id(pk, GNUTLS_KEYID_USE_SHA256, a, &la) == 0 &&
	    gnutls_pubkey_get_key_id(c->pcert[0].pubkey, GNUTLS_KEYID_USE_SHA256, b, &lb) == 0)
		ok = la == lb && memcmp(a, b, la) == 0;
	gnutls_pubkey_deinit(pk);
	return ok;
}

static int load_key(struct tlsin_cert *c, const char *path, char *err, size_t cap)
{
	gnutls_datum_t d = {NULL, 0};
	int rc = gnutls_load_file(path, &d);
	if (rc < 0)
		return fail(err, cap, "tls_key", path, gnutls_strerror(rc));
	rc = gnutls_privkey_init(&c->key);
	if (rc == 0)
		rc = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_memset(d.data, 0, d.size);
	gnutls_free(d.data);
	if (rc < 0)
		return fail(err, cap, "tls_key", path, gnutls_strerror(rc));
	if (!key_matches(c))
		return fail(err, cap, "tls_key", path, "the key does not belong to the certificate in tls_cert");
	return 0;
}

static int load_client_ca(const char *path, char *err, size_t cap)
{
	gnutls_datum_t d = {NULL, 0};
	int rc = gnutls_load_file(path, &d);
	if (rc < 0)
		return fail(err, cap, "tls_client_ca", path, gnutls_strerror(rc));
	client_ca_pem = malloc(d.size + 1);
	if (client_ca_pem) {
		memcpy(client_ca_pem, d.data, d.size);
		client_ca_pem[d.size] = '\0';
	}
	gnutls_free(d.data);
	return client_ca_pem ? 0 : fail(err, cap, "tls_client_ca", path, "out of memory");
}

int tlsin_load(const struct proxy_cfg *cfg, char *err, size_t errcap)
{
	tlsin_free();
	if (cfg->n_tls_cert != cfg->n_tls_key) {
		snprintf(err, errcap, "%zu tls_cert but %zu tls_key: each certificate needs its key, in the same order",
			 cfg->n_tls_cert, cfg->n_tls_key);
		return -1;
	}
	if (cfg->tls_client_ca && cfg->n_tls_cert == 0) {
		snprintf(err, errcap, "tls_client_ca needs tls_cert and tls_key");
		return -1;
	}
	for (size_t i = 0; i < cfg->n_tls_cert; i++) {
		n_certs = i + 1;
		if (load_chain(&certs[i], cfg->tls_cert[i], err, errcap) < 0 ||
		    load_key(&certs[i], cfg->tls_key[i], err, errcap) < 0)
			goto fail;
	}
	if (cfg->tls_client_ca && load_client_ca(cfg->tls_client_ca, err, errcap) < 0)
		goto fail;
	return 0;
fail:
	tlsin_free();
	return -1;
}

bool tlsin_enabled(void)
{
	return n_certs > 0;
}

unsigned tlsin_mhd_flags(void)
{
	return n_certs > 0 ? MHD_USE_TLS : 0;
}

/* gnutls_certificate_retrieve_function2: choose by SNI. */
static int on_certificate(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
			  const gnutls_pk_algorithm_t *algos, int n_algos, gnutls_pcert_st **pcert,
			  unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	char name[256];
	size_t len = sizeof name - 1;
	unsigned type = 0;
	size_t pick = 0;
	(void)req_ca_dn, (void)nreqs, (void)algos, (void)n_algos;
	if (n_certs == 0)
		return -1;
	if (gnutls_server_name_get(session, name, &len, &type, 0) == GNUTLS_E_SUCCESS && type == GNUTLS_NAME_DNS) {
		name[len] = '\0';
		for (size_t i = 0; i < n_certs; i++) {
			if (gnutls_x509_crt_check_hostname(certs[i].crt[0], name)) {
				pick = i;
				break;
			}
		}
	}
	*pcert = certs[pick].pcert;
	*pcert_length = certs[pick].n;
	*pkey = certs[pick].key;
	return 0;
}

size_t tlsin_mhd_options(struct MHD_OptionItem *ops, size_t cap)
{
	size_t n = 0;
	if (n_certs == 0 || cap < 3)
		return 0;
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLSIN_PRIORITIES};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)on_certificate};
	if (client_ca_pem) /* makes MHD ask the client for a certificate */
		ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, client_ca_pem};
	return n;
}

int tlsin_check_client(struct MHD_Connection *conn, char *why, size_t cap)
{
	if (!client_ca_pem)
		return 0;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	unsigned status = 0;
	if (!ci || !ci->tls_session) {
		snprintf(why, cap, "no TLS session");
		return -1;
	}
	gnutls_session_t s = (gnutls_session_t)ci->tls_session;
	if (gnutls_certificate_get_peers(s, &(unsigned){0}) == NULL) {
		snprintf(why, cap, "no client certificate presented");
		return -1;
	}
	int rc = gnutls_certificate_verify_peers2(s, &status);
	if (rc < 0 || status != 0) {
		snprintf(why, cap, "client certificate not trusted (%s)",
			 rc < 0 ? gnutls_strerror(rc) : "verification failed");
		return -1;
	}
	return 0;
}

int tlsin_client_subject(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci;
	const gnutls_datum_t *peers;
	unsigned n = 0;
	gnutls_x509_crt_t crt = NULL;
	size_t len = cap;
	int rc = -1;

	if (!client_ca_pem || cap == 0 || !(ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION)) ||
	    !ci->tls_session)
		return -1;
	peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
	if (!peers || n == 0 || gnutls_x509_crt_init(&crt) < 0)
		return -1;
	if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0 &&
	    gnutls_x509_crt_get_dn(crt, out, &len) >= 0)
		rc = 0;
	gnutls_x509_crt_deinit(crt);
	if (rc < 0)
		out[0] = '\0';
	return rc;
}

void tlsin_free(void)
{
	for (size_t i = 0; i < n_certs; i++) {
		for (unsigned j = 0; j < certs[i].n; j++) {
			gnutls_pcert_deinit(&certs[i].pcert[j]);
			gnutls_x509_crt_deinit(certs[i].crt[j]);
		}
		if (certs[i].key)
			gnutls_privkey_deinit(certs[i].key);
		memset(&certs[i], 0, sizeof certs[i]);
	}
	n_certs = 0;
	free(client_ca_pem);
	client_ca_pem = NULL;
}
