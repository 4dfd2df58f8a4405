/*
 * mi.h - managed identity token requests: Azure IMDS
 * (GET ...?api-version=2018-02-01&resource=R[&client_id=C], header
 * "Metadata: true") and App Service / Functions (IDENTITY_ENDPOINT,
 * api-version=2019-08-01, header X-IDENTITY-HEADER from IDENTITY_HEADER).
 * The answers use strings for numbers and expires_on; oauth.c parses them.
 */
#ifndef S2S_MI_H
#define S2S_MI_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "config/config.h"

/* The GET URL for `resource` (malloc'd; NULL when out of memory). */
char *mi_url(const struct credential_cfg *c, const char *resource);

/* Append the managed identity request headers to *list. The App Service
 * header is a secret: the caller wipes the list. 0, or -1 with why. */
int mi_headers(const struct credential_cfg *c, struct curl_slist **list, char *why, size_t whycap);

/* Statuses worth retrying with backoff although they are 4xx: IMDS answers
 * 404 while the identity is being assigned and 410 while it upgrades (for
 * up to 70 s). */
bool mi_retryable(long status);

#endif
