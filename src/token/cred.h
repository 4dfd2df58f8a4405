/*
 * cred.h - what one token request sends to prove the client's identity,
 * for every credential kind: a client secret (from its file, re-read at
 * every request, or the config), a client assertion signed with the
 * credential's certificate (assertion.h), or a federated token read from its
 * file at every request (the kubelet rotates it).
 *
 * The engine owns one struct cred per credential; its material exists only
 * while a request is in flight and is wiped with cred_material_wipe().
 */
#ifndef S2S_CRED_H
#define S2S_CRED_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

struct cred;

/* The request body and optional Authorization line, both secret. */
struct cred_material {
	char *form; /* owned, form_cap bytes */
	size_t form_cap;
	long form_len;
	char *basic; /* owned "Authorization: Basic ..." or NULL */
	size_t basic_cap;
};

/* Prepare credential c (loads and checks the key of a certificate
 * credential). NULL with a reason in why. c must outlive the result. */
struct cred *cred_new(const struct credential_cfg *c, char *why, size_t whycap);

/* NULL-safe; wipes the key. */
void cred_free(struct cred *cr);

/*
 * Build the material of one request to `endpoint` for `target` (scope or
 * resource) at unix time now_s. 0, or -1 with a reason in why (nothing to
 * wipe then).
 */
int cred_material(struct cred *cr, const char *endpoint, const char *target, long long now_s, struct cred_material *m,
		  char *why, size_t whycap);

/* Wipe and free; NULL-safe, idempotent. */
void cred_material_wipe(struct cred_material *m);

/* Whether two credentials are configured identically (tokens of one are
 * good for the other). */
bool cred_same(const struct credential_cfg *a, const struct credential_cfg *b);

/* Certificate notAfter (unix seconds), 0 for other kinds. */
long long cred_cert_not_after(const struct cred *cr);

#endif
