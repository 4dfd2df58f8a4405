/*
 * fuzz_challenge.c - libFuzzer target for the WWW-Authenticate parser.
 * The input is the header value, in an exactly sized buffer without a NUL
 * so ASan traps any read past len. Traps when a parameter is not
 * terminated within its field or a found challenge is not reported.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/challenge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *s, size_t cap)
{
	if (strnlen(s, cap) == cap)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct challenge c;
	char host[64];
	char *in = malloc(size ? size : 1);

	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	int r = challenge_parse(in, size, &c);
	if ((r == 0) != c.bearer)
		abort();
	terminated(c.authorization_uri, sizeof c.authorization_uri);
	terminated(c.resource_id, sizeof c.resource_id);
	terminated(c.realm, sizeof c.realm);
	terminated(c.error, sizeof c.error);
	terminated(c.error_description, sizeof c.error_description);
	terminated(c.scope, sizeof c.scope);
	challenge_url_host(c.resource_id, host, sizeof host);
	terminated(host, sizeof host);
	free(in);
	return 0;
}
