/*
 * fuzz_diag.c - libFuzzer target for the diagnosis of upstream refusals
 * and token failures: the error-body parsers (oauth_parse_error plus the
 * raw fallbacks of diag.c) and the challenge parser behind them.
 *
 * Input: byte 0 picks status and product, then the body; a NUL byte in
 * the body (if any) splits off a WWW-Authenticate value. Buffers are
 * exactly sized. Traps when a diagnosis has no code, title or
 * remediation, a code appears for a status outside 400/401/403, or an
 * evidence string is not terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diag/diag.h"
#include "token/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = {400, 401, 403, 200, 404, 429, 500};
static const enum audience_kind kinds[] = {AUD_DATAVERSE, AUD_BC, AUD_FO, AUD_SECURITYSERVICE, AUD_URL};

static void terminated(const char *s, size_t cap)
{
	if (strnlen(s, cap) == cap)
		abort();
}

static void check_ev(const struct upstream_evidence *ev)
{
	terminated(ev->error_code, sizeof ev->error_code);
	terminated(ev->message, sizeof ev->message);
	terminated(ev->challenge, sizeof ev->challenge);
	terminated(ev->resource_id, sizeof ev->resource_id);
	terminated(ev->privilege, sizeof ev->privilege);
	terminated(ev->entity, sizeof ev->entity);
}

static void token_side(const char *body, size_t len)
{
	struct token_failure f;
	struct diagnosis d;
	char note[128];
	struct diag_context ctx = {"11111111-aaaa-4bbb-8ccc-000000000001", "c0ffee00-1234-4abc-8def-0000000000aa",
				   "https://Contoso.operations.dynamics.com/", AUD_FO};

	memset(&f, 0, sizeof f);
	f.kind = TF_REJECTED;
	oauth_parse_error(body, len, &f.err);
	diag_token_failure(&f, &d);
	if (!d.code || !d.title || (d.status != 502 && d.status != 503))
		abort();
	diag_token_note(&f, &ctx, note, sizeof note);
	terminated(note, sizeof note);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct upstream_evidence ev;
	struct diagnosis d;
	char *body, *chal = NULL;
	size_t blen;

	if (size == 0)
		return 0;
	long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
	enum audience_kind kind = kinds[(data[0] >> 3) % (sizeof kinds / sizeof kinds[0])];
	blen = size - 1;
	body = malloc(blen ? blen : 1);
	if (!body)
		return 0;
	memcpy(body, data + 1, blen);
	const char *nul = blen ? memchr(body, '\0', blen) : NULL;
	if (nul) {
		size_t clen = blen - (size_t)(nul - body) - 1;
		chal = malloc(clen + 1);
		if (chal) {
			memcpy(chal, nul + 1, clen);
			chal[clen] = '\0';
		}
		blen = (size_t)(nul - body);
	}
	bool hit = diag_upstream(kind, "contoso.crm4.dynamics.com", status, body, blen, chal,
				 "https://contoso.crm.dynamics.com", &ev, &d);
	if (hit && (!d.code || !d.title || !d.remediation || !diag_upstream_status_wanted(status)))
		abort();
	check_ev(&ev);
	token_side(body, blen);
	free(chal);
	free(body);
	return 0;
}
