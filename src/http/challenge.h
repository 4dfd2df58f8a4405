/*
 * challenge.h - parsing a WWW-Authenticate header (RFC 9110 11.6.1) for
 * its Bearer challenge. Lenient on purpose: Dataverse sends parameters
 * unquoted ("Bearer authorization_uri=https://..., resource_id=https://.../"),
 * others quote them, some add several challenges. Pure function; fuzzed.
 */
#ifndef S2S_CHALLENGE_H
#define S2S_CHALLENGE_H

#include <stdbool.h>
#include <stddef.h>

struct challenge {
	bool bearer; /* a Bearer challenge was found */
	char authorization_uri[256];
	char resource_id[256];
	char realm[128];
	char error[64];
	char error_description[256];
	char scope[256];
};

/*
 * Parse s[0..len) (need not be NUL-terminated). Fills *out with the first
 * Bearer challenge's parameters (values cut to fit, unknown ones ignored).
 * Returns 0 when a Bearer challenge was found, -1 otherwise.
 */
int challenge_parse(const char *s, size_t len, struct challenge *out);

/* Host part of an absolute URL, lowercased, into out ("" if none). */
void challenge_url_host(const char *url, char *out, size_t cap);

#endif
