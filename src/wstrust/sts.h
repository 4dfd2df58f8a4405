/*
 * sts.h - the WS-Trust sign-in facade for legacy Organization service
 * clients (sts_facade = true): GetUserRealm.srf, RST2.srf and the ADFS
 * usernamemixed endpoint, answered locally whatever the Host. Users and
 * passwords are checked against legacy_identities_file (crypt(3) hashes);
 * a successful sign-in issues an opaque handle bound to the identity, with
 * an expiry, that the SOAP bridge accepts from that client. Passwords are
 * never forwarded, logged or kept. Thread-safe (one mutex).
 */
#ifndef S2S_STS_H
#define S2S_STS_H

#include <stdbool.h>
#include <stddef.h>

#define STS_HANDLE_TTL_S 3600 /* lifetime of an issued handle */
#define STS_CRED_MAX     128
#define STS_OID_MAX      40 /* an Entra object id (GUID) and its NUL */

/* A locally built answer; body is malloc'd (caller frees). */
struct sts_reply {
	int status;
	const char *content_type; /* static string */
	char *body;
	size_t len;
};

/* Is `path` (len bytes, no query) one of the facade's endpoints? */
bool sts_is_path(const char *path, size_t len);

/*
 * Answer a facade request: `path` as for sts_is_path, `query` the raw query
 * (may be NULL), `body` the request body. `identities` is the identities
 * file path (NULL: every sign-in fails). `now` is the Unix time. Returns 0
 * with *out filled, -1 on allocation failure.
 */
int sts_answer(const char *identities, const char *path, size_t len, const char *query, const char *body, size_t n,
	       long long now, struct sts_reply *out);

/*
 * Is `handle` a live RST2 handle? On true writes the identity's credential
 * name to cred (cap bytes).
 */
bool sts_handle_valid(const char *handle, long long now, char *cred, size_t cap);

/*
 * Same, and the object id of the identity's user ("" when its line in the
 * identities file has none): the SOAP bridge sends it as CallerObjectId,
 * so records the legacy client creates keep their real owner.
 */
bool sts_handle_identity(const char *handle, long long now, char *cred, size_t cap, char oid[STS_OID_MAX]);

/* Forget every handle (tests, shutdown). */
void sts_reset(void);

#endif
