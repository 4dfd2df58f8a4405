/*
 * fuzz_oauth.c - libFuzzer target for the token and error response parsers
 * of oauth.c.
 *
 * The first input byte picks the HTTP status (from a table of the
 * interesting classes), the rest is the body, handed over in an exactly
 * sized buffer without a NUL so ASan traps any read past len. Besides
 * "never crash", it traps when an invariant breaks: a result that does not
 * match the status class, an OK without a usable token, evidence strings
 * that are not NUL-terminated or hold control bytes, too many codes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = {200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 502, 503, 504, 0, 99, 600};

static void check_str(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap), i;

	if (n == cap)
		abort(); /* not terminated */
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static void check_err(const struct oauth_error *e)
{
	if (e->n_codes > OAUTH_MAX_CODES)
		abort();
	check_str(e->error, sizeof(e->error));
	check_str(e->trace_id, sizeof(e->trace_id));
	check_str(e->correlation_id, sizeof(e->correlation_id));
	check_str(e->timestamp, sizeof(e->timestamp));
	check_str(e->error_uri, sizeof(e->error_uri));
	check_str(e->description, sizeof(e->description));
}

static void check_result(long status, enum oauth_result r, const struct oauth_token *tok, const struct oauth_error *err)
{
	/* 400 and 401 are OAuth's refusals; another 4xx only with an OAuth error in it */
	bool oauth_4xx = status == 400 || status == 401 || err->error[0] != '\0' || err->n_codes > 0;
	bool ok2xx = status >= 200 && status <= 299;

	if (r == OAUTH_OK) {
		size_t n;

		if (!ok2xx || tok->access_token == NULL || tok->expires_in <= 0)
			abort();
		n = strlen(tok->access_token);
		if (n == 0 || n > OAUTH_TOKEN_MAX || strcmp(tok->token_type, "Bearer") != 0)
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)tok->access_token[i] <= 0x20 || (unsigned char)tok->access_token[i] >= 0x7f)
				abort();
		if (tok->refresh_in < 0 || tok->ext_expires_in < 0)
			abort();
		return;
	}
	if (tok->access_token != NULL)
		abort();
	if (r == OAUTH_TRANSIENT && !(status == 429 || (status >= 500 && status <= 599)))
		abort();
	if (r == OAUTH_REJECTED && !(status >= 400 && status <= 499 && status != 429 && oauth_4xx))
		abort();
	if (r == OAUTH_BAD_RESPONSE && ((status >= 400 && status <= 499 && status != 429 && oauth_4xx) ||
					(status >= 500 && status <= 599) || status == 429))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oauth_token tok;
	struct oauth_error err;
	enum oauth_result r;
	long status;
	char *body;

	if (size == 0)
		return 0;
	status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
	body = malloc(size - 1 ? size - 1 : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data + 1, size - 1);
	r = oauth_parse_response(status, body, size - 1, 1700000000, &tok, &err);
	check_result(status, r, &tok, &err);
	check_err(&err);
	oauth_token_clear(&tok);
	oauth_parse_error(body, size - 1, &err);
	check_err(&err);
	free(body);
	return 0;
}
