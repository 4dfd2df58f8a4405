/*
 * fuzz_caller.c - libFuzzer target for caller recognition: the input is an
 * Authorization header value (cut at its first NUL, as a header is), given
 * to caller_basic_parse and to caller_recognise against a configuration
 * with a Basic caller and an address caller. Traps when a parsed user or
 * password is unterminated, holds a control byte, when the user is empty or
 * holds ':', or when re-encoding "user:password" does not parse back to
 * the same values.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "proxy/caller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ini[] =
    "[credential:a]\ntenant = contoso.onmicrosoft.com\nclient_id = 11111111-aaaa-4bbb-8ccc-000000000001\n"
    "client_secret = s\n[route:dv]\nmatch_path = /\nupstream = https://contoso.crm4.dynamics.com\n"
    "callers = pos, lan\n[caller:pos]\nbasic_user = POS\nbasic_password_hash = "
    "$6$unitsalt0123$H0qMPchPhEF/iRSGlQGtMYgl3HYdsAIb6rxPDpAMti6U6szMHEoYii5RetPeVypZQlI4PqRRxlJkYMnYYGKRC1\n"
    "[caller:lan]\nallow_from = 10.0.0.0/8\n";

static struct config *cfg;

static void clean(const char *s)
{
	size_t n = strnlen(s, CALLER_BASIC_MAX);
	if (n == CALLER_BASIC_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static void round_trip(const char *user, const char *pass)
{
	unsigned char raw[2 * CALLER_BASIC_MAX + 2];
	char hdr[6 + 4 * sizeof raw / 3 + 8], u[CALLER_BASIC_MAX], p[CALLER_BASIC_MAX];
	int n = snprintf((char *)raw, sizeof raw, "%s:%s", user, pass);
	memcpy(hdr, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)hdr + 6, raw, n);
	if (caller_basic_parse(hdr, u, p) != 0 || strcmp(u, user) != 0 || strcmp(p, pass) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char user[CALLER_BASIC_MAX], pass[CALLER_BASIC_MAX];
	char *in = malloc(size + 1);
	if (!in)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	if (!cfg) {
		FILE *f = fmemopen((void *)ini, sizeof ini - 1, "r");
		cfg = f ? config_load_stream(f, "fuzz.ini", NULL) : NULL;
		if (f)
			fclose(f);
		if (!cfg)
			abort();
	}
	if (caller_basic_parse(in, user, pass) == 0) {
		clean(user);
		clean(pass);
		if (!user[0] || strchr(user, ':'))
			abort();
		round_trip(user, pass);
	}
	const struct caller_cfg *c = NULL;
	const char *why = NULL;
	struct caller_input ci = {.authorization = in, .key = in, .now_ms = 1};
	enum caller_verdict v = caller_recognise(cfg, &cfg->routes[0], &ci, &c, &why);
	if ((v == CALLER_OK) != (c != NULL) || !why || v == CALLER_ANONYMOUS)
		abort();
	free(in);
	return 0;
}
