/*
 * mi.c - managed identity token requests (mi.h).
 */
#include "token/mi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token/oauth.h"
#include "util/slist.h"

#define MI_URL_MAX    2048
#define MI_HEADER_MAX 512

char *mi_url(const struct credential_cfg *c, const char *resource)
{
	char enc_res[768], enc_id[128] = "";
	bool user = c->managed_identity != NULL && strcmp(c->managed_identity, "system") != 0;
	char *out = malloc(MI_URL_MAX);
	int n;

	if (out == NULL || c->managed_identity_endpoint == NULL || resource == NULL ||
	    oauth_urlencode(enc_res, sizeof enc_res, resource) < 0 ||
	    (user && oauth_urlencode(enc_id, sizeof enc_id, c->managed_identity) < 0)) {
		free(out);
		return NULL;
	}
	n = snprintf(out, MI_URL_MAX, "%s?api-version=%s&resource=%s%s%s", c->managed_identity_endpoint,
		     c->mi_app_service ? "2019-08-01" : "2018-02-01", enc_res, user ? "&client_id=" : "", enc_id);
	if (n < 0 || n >= MI_URL_MAX) {
		free(out);
		return NULL;
	}
	return out;
}

int mi_headers(const struct credential_cfg *c, struct curl_slist **list, char *why, size_t whycap)
{
	char line[MI_HEADER_MAX];
	const char *h;
	bool added;
	int k;

	if (!c->mi_app_service) {
		if (!slist_add(list, "Metadata: true"))
			goto nomem;
		return 0;
	}
	/* Read at every request: the platform may rotate it. */
	h = getenv("IDENTITY_HEADER");
	if (h == NULL || *h == '\0' || strpbrk(h, "\r\n") != NULL) {
		snprintf(why, whycap, "IDENTITY_HEADER is not set (App Service managed identity)");
		return -1;
	}
	k = snprintf(line, sizeof line, "X-IDENTITY-HEADER: %s", h);
	if (k < 0 || (size_t)k >= sizeof line) {
		explicit_bzero(line, sizeof line);
		snprintf(why, whycap, "IDENTITY_HEADER is longer than %d bytes", MI_HEADER_MAX - 32);
		return -1;
	}
	added = slist_add(list, line);
	explicit_bzero(line, sizeof line);
	if (!added)
		goto nomem;
	return 0;
nomem:
	snprintf(why, whycap, "cannot build the token request (out of memory)");
	return -1;
}

bool mi_retryable(long status)
{
	return status == 404 || status == 410;
}
