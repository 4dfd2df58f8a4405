/*
 * diag.c - the diagnosis catalogue. Today it maps token failure kinds; the
 * full AADSTS and upstream catalogue extends the same table.
 */
#include "diag.h"

#include <stddef.h>

struct kind_row {
	enum token_failure_kind kind;
	int status;
	const char *code;
	const char *title;
	const char *remediation;
	bool retry_after;
};

static const struct kind_row kind_rows[] = {
    {TF_UNREACHABLE, 503, "idp_unavailable", "Microsoft Entra ID is unreachable",
     "Check network access from the proxy to the authority host (DNS, firewall, outbound proxy) and its TLS trust.",
     true},
    {TF_SERVER_ERROR, 503, "idp_unavailable", "Microsoft Entra ID answered with a server error",
     "Transient on Microsoft's side; the proxy retries with backoff.", true},
    {TF_THROTTLED, 503, "throttled", "Microsoft Entra ID is throttling token requests",
     "The proxy honours Retry-After; check for other clients of the same app registration hammering the token "
     "endpoint.",
     true},
    {TF_REJECTED, 502, "credential_rejected", "Microsoft Entra ID rejected the credential",
     "Check the tenant, client ID and secret of this credential against the app registration.", false},
    {TF_BAD_RESPONSE, 502, "idp_bad_response", "Microsoft Entra ID answered without a usable token",
     "The authority URL may point at something other than a Microsoft Entra token endpoint.", true},
    {TF_LOCAL, 502, "credential_unavailable", "The credential could not be read",
     "Check that the secret file exists, is readable by the proxy's user and is not empty.", true},
};

void diag_token_failure(const struct token_failure *f, struct diagnosis *out)
{
	for (size_t i = 0; i < sizeof kind_rows / sizeof kind_rows[0]; i++) {
		if (kind_rows[i].kind == f->kind) {
			out->status = kind_rows[i].status;
			out->code = kind_rows[i].code;
			out->title = kind_rows[i].title;
			out->remediation = kind_rows[i].remediation;
			out->retry_after = kind_rows[i].retry_after;
			return;
		}
	}
	out->status = 502;
	out->code = "token_unavailable";
	out->title = "No token could be obtained";
	out->remediation = NULL;
	out->retry_after = true;
}
