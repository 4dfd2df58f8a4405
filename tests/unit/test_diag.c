/*
 * test_diag.c - the diagnosis catalogue: every AADSTS code maps to its
 * catalogue code, unknown codes fall back to the failure kind, notes, and
 * the upstream classifier on real and malformed bodies.
 */
#include <stdio.h>
#include <string.h>

#include "diag/diag.h"
#include "token/oauth.h"
#include "t.h"

static const struct {
	long aadsts;
	const char *code;
	int status;
} token_table[] = {
    {7000215, "secret_invalid", 502},
    {50012, "secret_invalid", 502},
    {7000222, "secret_expired", 502},
    {7000216, "credential_missing", 502},
    {7000218, "credential_missing", 502},
    {700016, "app_not_found", 502},
    {7000229, "service_principal_missing", 502},
    {7000112, "app_disabled", 502},
    {700027, "assertion_invalid", 502},
    {700024, "assertion_time", 502},
    {90002, "tenant_not_found", 502},
    {900023, "tenant_invalid", 502},
    {50059, "tenant_invalid", 502},
    {9001023, "tenant_invalid", 502},
    {500011, "resource_not_found", 502},
    {50001, "resource_not_found", 502},
    {500014, "resource_not_found", 502},
    {650052, "resource_not_found", 502},
    {70011, "scope_invalid", 502},
    {1002012, "scope_invalid", 502},
    {700022, "scope_invalid", 502},
    {901002, "scope_invalid", 502},
    {65001, "consent_required", 502},
    {53003, "conditional_access", 502},
    {70021, "federation_mismatch", 502},
    {700211, "federation_mismatch", 502},
    {700213, "federation_mismatch", 502},
    {7002137, "federation_mismatch", 502},
    {50196, "throttled", 503},
    {90055, "throttled", 503},
};

/* A rejection as the token engine records it, parsed from a real-shaped body. */
static void rejection(struct token_failure *f, long status, const char *body)
{
	memset(f, 0, sizeof *f);
	f->kind = status == 429 ? TF_THROTTLED : TF_REJECTED;
	f->http_status = status;
	oauth_parse_error(body, strlen(body), &f->err);
}

static void every_aadsts_code(void)
{
	for (size_t i = 0; i < sizeof token_table / sizeof token_table[0]; i++) {
		char body[512];
		struct token_failure f;
		struct diagnosis d;
		snprintf(body, sizeof body,
			 "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS%ld: x.\\r\\nTrace ID: "
			 "t\\r\\nCorrelation ID: c\",\"error_codes\":[%ld],\"trace_id\":\"t\"}",
			 token_table[i].aadsts, token_table[i].aadsts);
		rejection(&f, 400, body);
		diag_token_failure(&f, &d);
		if (strcmp(d.code, token_table[i].code) != 0 || d.status != token_table[i].status || !d.remediation)
			T_FAIL("AADSTS%ld: got %s/%d, want %s/%d", token_table[i].aadsts, d.code, d.status,
			       token_table[i].code, token_table[i].status);
	}
}

static void tolerant_bodies(void)
{
	struct token_failure f;
	struct diagnosis d;
	/* numbers as strings */
	rejection(&f, 401, "{\"error\":\"invalid_client\",\"error_codes\":[\"7000222\"]}");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "secret_expired");
	/* not JSON: the code is in the text */
	rejection(&f, 400, "\"error_description\";\"AADSTS700016: Application with identifier 'x' was not found");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "app_not_found");
	/* cut short */
	rejection(&f, 401, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid cli");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "secret_invalid");
	/* HTML, empty: the kind decides */
	rejection(&f, 400, "<html><body>Bad Request</body></html>");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "credential_rejected");
	rejection(&f, 400, "");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "credential_rejected");
	/* unknown code: falls back to the kind, the raw code stays in the evidence */
	rejection(&f, 400, "{\"error\":\"invalid_request\",\"error_codes\":[123456]}");
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "credential_rejected");
	CHECK_INT(f.err.codes[0], 123456);
}

static void kinds(void)
{
	struct token_failure f = {.kind = TF_UNREACHABLE};
	struct diagnosis d;
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "idp_unavailable");
	CHECK_INT(d.status, 503);
	CHECK(d.retry_after);
	f.kind = TF_SERVER_ERROR;
	f.err.codes[0] = 7000215; /* a code on a 5xx does not turn it into a rejection */
	f.err.n_codes = 1;
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "idp_unavailable");
	f.kind = TF_BAD_RESPONSE;
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "idp_bad_response");
	f.kind = TF_THROTTLED;
	f.err.n_codes = 0;
	diag_token_failure(&f, &d);
	CHECK_STR(d.code, "throttled");
}

static void notes(void)
{
	struct token_failure f;
	char note[256];
	struct diag_context ctx = {"c0ffee00-1234-4abc-8def-0000000000aa", "11111111-aaaa-4bbb-8ccc-000000000001",
				   "https://contoso.crm4.dynamics.com", AUD_DATAVERSE};
	rejection(&f, 400, "{\"error\":\"unauthorized_client\",\"error_codes\":[700016]}");
	diag_token_note(&f, &ctx, note, sizeof note);
	CHECK(strstr(note, "swapped") != NULL);
	ctx.client_id = "my-app";
	diag_token_note(&f, &ctx, note, sizeof note);
	CHECK(strstr(note, "not a GUID") != NULL);
	rejection(&f, 400, "{\"error\":\"invalid_grant\",\"error_codes\":[65001]}");
	ctx.kind = AUD_FO;
	ctx.audience = "https://Contoso.operations.dynamics.com/";
	diag_token_note(&f, &ctx, note, sizeof note);
	CHECK(strstr(note, "lower case without a trailing slash (here: https://Contoso.operations.dynamics.com/)"));
	ctx.kind = AUD_DATAVERSE;
	diag_token_note(&f, &ctx, note, sizeof note);
	CHECK_STR(note, "");
}

static const char *up(enum audience_kind kind, const char *host, long status, const char *body, const char *chal,
		      const char *aud, struct upstream_evidence *ev)
{
	struct diagnosis d;
	if (!diag_upstream(kind, host, status, body, body ? strlen(body) : 0, chal, aud, ev, &d))
		return "(none)";
	return d.code;
}

#define DV  "contoso.crm4.dynamics.com"
#define DVU "https://" DV
#define FO  "contoso.operations.dynamics.com"

static void upstream_codes(void)
{
	struct upstream_evidence ev;
	CHECK_STR(
	    up(AUD_DATAVERSE, DV, 403,
	       "{\"error\":{\"code\":\"0x80072560\",\"message\":\"The user is not a member of the organization.\"}}",
	       NULL, DVU, &ev),
	    "dataverse_app_user_missing");
	CHECK_STR(ev.error_code, "0x80072560");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403, "{\"error\":{\"code\":\"0x80095ffc\",\"message\":\"x\"}}", NULL, DVU, &ev),
		  "dataverse_app_blocked");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403,
		     "{\"error\":{\"code\":\"0x80040220\",\"message\":\"Principal user (Id=1, type=8), is missing "
		     "prvReadaccount privilege (Id=2) on OTC=1 for entity 'account'. context.Caller=1\"}}",
		     NULL, DVU, &ev),
		  "dataverse_privilege_missing");
	CHECK_STR(ev.privilege, "prvReadaccount");
	CHECK_STR(ev.entity, "account");
	CHECK_STR(
	    up(AUD_BC, "api.businesscentral.dynamics.com", 401,
	       "{\"error\":{\"code\":\"Authentication_InvalidCredentials\",\"message\":\"The server has rejected the "
	       "client credentials.  CorrelationId:  x.\"}}",
	       NULL, "https://api.businesscentral.dynamics.com", &ev),
	    "bc_credentials_rejected");
	CHECK_STR(up(AUD_FO, FO, 401, "", NULL, "https://" FO, &ev), "fo_app_not_registered");
	CHECK_STR(up(AUD_URL, "securityservice.operations365.dynamics.com", 400,
		     "{\"error\":\"invalid_client\",\"error_description\":\"Expected aud "
		     "https://securityservice.operations365.dynamics.com but found https://" FO ".\"}",
		     NULL, "https://" FO, &ev),
		  "securityservice_audience");
	CHECK_STR(up(AUD_DATAVERSE, DV, 401, "",
		     "Bearer authorization_uri=https://login.microsoftonline.com/t/oauth2/authorize, "
		     "resource_id=https://contoso.crm4.dynamics.com/",
		     "https://contoso.crm.dynamics.com", &ev),
		  "audience_mismatch");
	CHECK_STR(ev.resource_id, "https://contoso.crm4.dynamics.com/");
	CHECK_STR(up(AUD_DATAVERSE, DV, 401, "", "Bearer resource_id=https://contoso.crm4.dynamics.com/", DVU, &ev),
		  "token_rejected");
	/* F&O: no challenge, but the token is for another environment */
	CHECK_STR(up(AUD_FO, FO, 401, "", NULL, "https://other.operations.dynamics.com", &ev), "audience_mismatch");
	/* Dataverse .api. host accepts the org's plain host */
	CHECK_STR(up(AUD_DATAVERSE, "contoso.api.crm4.dynamics.com", 401, "", NULL, DVU, &ev), "token_rejected");
	CHECK_STR(up(AUD_DATAVERSE, DV, 401, "", NULL, "https://fabrikam.crm4.dynamics.com", &ev), "audience_mismatch");
}

static void upstream_malformed(void)
{
	struct upstream_evidence ev;
	/* cut short, not JSON, HTML, empty */
	CHECK_STR(
	    up(AUD_DATAVERSE, DV, 403, "{\"error\":{\"code\":\"0x80072560\",\"message\":\"The user", NULL, DVU, &ev),
	    "dataverse_app_user_missing");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403, "error 0x80040220: privilege", NULL, DVU, &ev),
		  "dataverse_privilege_missing");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403, "0x800725601", NULL, DVU, &ev), "(none)"); /* 9 digits: not a code */
	CHECK_STR(up(AUD_FO, FO, 400, "Expected aud https://securityservice.operations365.dynamics.com but found x",
		     NULL, "https://" FO, &ev),
		  "securityservice_audience");
	CHECK_STR(up(AUD_BC, "api.businesscentral.dynamics.com", 401, "<html>401</html>", NULL,
		     "https://api.businesscentral.dynamics.com", &ev),
		  "token_rejected");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403, "", NULL, DVU, &ev), "(none)");
	CHECK_STR(up(AUD_DATAVERSE, DV, 403, NULL, NULL, NULL, &ev), "(none)");
	CHECK_STR(up(AUD_DATAVERSE, DV, 401, NULL, NULL, NULL, &ev), "token_rejected");
	/* never on other statuses */
	CHECK_STR(up(AUD_DATAVERSE, DV, 500, "{\"error\":{\"code\":\"0x80072560\"}}", NULL, DVU, &ev), "(none)");
	CHECK_STR(up(AUD_DATAVERSE, DV, 404, "", NULL, DVU, &ev), "(none)");
	CHECK(diag_upstream_status_wanted(401) && diag_upstream_status_wanted(403) && diag_upstream_status_wanted(400));
	CHECK(!diag_upstream_status_wanted(200) && !diag_upstream_status_wanted(429));
}

int main(void)
{
	RUN(every_aadsts_code);
	RUN(tolerant_bodies);
	RUN(kinds);
	RUN(notes);
	RUN(upstream_codes);
	RUN(upstream_malformed);
	return T_DONE();
}
