/*
 * diag.c - the diagnosis catalogue: token failures (Entra's AADSTS codes,
 * then the failure kind) and upstream refusals (Dataverse, Business
 * Central, F&O, Security Service). The code strings are a contract with
 * operators and their tooling: never rename one.
 */
#include "diag/diag.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/challenge.h"
#include "token/oauth.h"
#include "util/text.h"

/* ---- token side ------------------------------------------------------------ */

#define MAX_ROW_CODES 6

struct code_row {
	long aadsts[MAX_ROW_CODES]; /* zero-terminated */
	int status;
	const char *code;
	const char *title;
	const char *remediation;
	bool retry_after;
};

#define APPREG "Microsoft Entra admin center > App registrations > your app"

static const struct code_row code_rows[] = {
    {{7000215, 50012},
     502,
     "secret_invalid",
     "Microsoft Entra ID rejected the client secret",
     APPREG " > Certificates & secrets: configure the secret Value, not the Secret ID, of a current secret "
	    "(create a new one if the Value was not saved).",
     false},
    {{7000222},
     502,
     "secret_expired",
     "The client secret has expired",
     APPREG " > Certificates & secrets: create a new client secret and configure its Value.",
     false},
    {{7000216, 7000218},
     502,
     "credential_missing",
     "The token request carried no client credential",
     "Configure client_secret, client_secret_file or client_secret_env for this credential (an empty secret "
     "file or unset environment variable sends none).",
     false},
    {{700016},
     502,
     "app_not_found",
     "The application is not known in this tenant",
     "Check client_id against " APPREG " > Overview > Application (client) ID and tenant against Directory "
     "(tenant) ID; for a multi-tenant app, have an administrator of this tenant consent to it.",
     false},
    {{7000229},
     502,
     "service_principal_missing",
     "The application has no service principal in this tenant",
     "Create the enterprise application: Microsoft Entra admin center > Enterprise applications (or grant admin "
     "consent once, or run New-MgServicePrincipal -AppId <client id>).",
     false},
    {{7000112},
     502,
     "app_disabled",
     "The application is disabled",
     "Microsoft Entra admin center > Enterprise applications > your app > Properties: set Enabled for users to "
     "sign-in to Yes.",
     false},
    {{700027},
     502,
     "assertion_invalid",
     "The client assertion (certificate) was not accepted",
     APPREG " > Certificates & secrets > Certificates: upload the certificate whose private key signs the "
	    "assertion; check the x5t thumbprint and that the certificate has not expired.",
     false},
    {{700024},
     502,
     "assertion_time",
     "The client assertion is outside its valid time range",
     "Fix the clock of the proxy host (NTP): clock skew makes nbf/exp of the assertion invalid.",
     false},
    {{90002},
     502,
     "tenant_not_found",
     "The tenant does not exist",
     "Check tenant against Microsoft Entra admin center > Overview > Tenant ID (a GUID or a verified domain) and "
     "the authority (national clouds have their own).",
     false},
    {{900023, 50059, 9001023},
     502,
     "tenant_invalid",
     "The tenant identifier is not valid",
     "Set tenant to the Directory (tenant) ID GUID or a verified domain name; /common and /organizations cannot "
     "issue client-credentials tokens.",
     false},
    {{500011, 50001, 500014, 650052},
     502,
     "resource_not_found",
     "The audience resource is not known in this tenant",
     "Check the route's audience: the exact environment URL (Power Platform admin center > Environments > your "
     "environment > Environment URL), not URL-encoded twice, and that the product is provisioned in this tenant.",
     false},
    {{70011, 1002012, 700022, 901002},
     502,
     "scope_invalid",
     "The scope or resource parameter is not valid",
     "The scope must be the resource URL followed by /.default (v2) or a bare resource (v1, token_version = 1); "
     "check the route's audience and token_version.",
     false},
    {{65001},
     502,
     "consent_required",
     "Admin consent has not been granted",
     APPREG " > API permissions: add the application permission of the API and Grant admin consent.",
     false},
    {{53003},
     502,
     "conditional_access",
     "A Conditional Access policy blocked the token",
     "Microsoft Entra admin center > Protection > Conditional Access: exclude this workload identity or allow "
     "the proxy's network location (check Sign-in logs > Service principal sign-ins).",
     false},
    {{70021, 700211, 700213, 7002137},
     502,
     "federation_mismatch",
     "The federated identity credential did not match",
     APPREG " > Certificates & secrets > Federated credentials: issuer, subject and audience must equal the "
	    "external token's iss, sub and aud exactly.",
     false},
    {{50196, 90055},
     503,
     "throttled",
     "Microsoft Entra ID is throttling token requests",
     "The proxy honours Retry-After; look for other clients of the same app registration hammering the token "
     "endpoint.",
     true},
};

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
     "The proxy honours Retry-After; look for other clients of the same app registration hammering the token "
     "endpoint.",
     true},
    {TF_REJECTED, 502, "credential_rejected", "Microsoft Entra ID rejected the credential",
     "Check the tenant, client ID and secret of this credential against the app registration.", false},
    {TF_BAD_RESPONSE, 502, "idp_bad_response", "Microsoft Entra ID answered without a usable token",
     "The authority URL may point at something other than a Microsoft Entra token endpoint.", true},
    {TF_LOCAL, 502, "credential_unavailable", "The credential could not be read",
     "Check that the secret file exists, is readable by the proxy's user and is not empty.", true},
};

static const struct code_row *find_code(long aadsts)
{
	for (size_t i = 0; i < sizeof code_rows / sizeof code_rows[0]; i++)
		for (size_t j = 0; j < MAX_ROW_CODES && code_rows[i].aadsts[j]; j++)
			if (code_rows[i].aadsts[j] == aadsts)
				return &code_rows[i];
	return NULL;
}

static void fill(struct diagnosis *out, int status, const char *code, const char *title, const char *rem, bool retry)
{
	out->status = status;
	out->code = code;
	out->title = title;
	out->remediation = rem;
	out->retry_after = retry;
}

/* An AADSTS code is trusted only from an HTTP answer: transient kinds keep
 * their status (a throttling code on a 5xx is still "retry later"). */
void diag_token_failure(const struct token_failure *f, struct diagnosis *out)
{
	if (f->kind == TF_REJECTED || f->kind == TF_THROTTLED) {
		for (size_t i = 0; i < f->err.n_codes && i < OAUTH_MAX_CODES; i++) {
			const struct code_row *r = find_code(f->err.codes[i]);
			if (r) {
				fill(out, r->status, r->code, r->title, r->remediation, r->retry_after);
				return;
			}
		}
	}
	for (size_t i = 0; i < sizeof kind_rows / sizeof kind_rows[0]; i++) {
		const struct kind_row *k = &kind_rows[i];
		if (k->kind == f->kind) {
			fill(out, k->status, k->code, k->title, k->remediation, k->retry_after);
			return;
		}
	}
	fill(out, 502, "token_unavailable", "No token could be obtained", NULL, true);
}

static bool has_code(const struct token_failure *f, long c)
{
	for (size_t i = 0; i < f->err.n_codes && i < OAUTH_MAX_CODES; i++)
		if (f->err.codes[i] == c)
			return true;
	return false;
}

static bool looks_like_guid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	}
	return true;
}

/* F&O compares the audience byte for byte: no trailing slash, lower case. */
static bool fo_audience_suspicious(const char *aud)
{
	size_t n = aud ? strlen(aud) : 0;
	if (n == 0)
		return false;
	if (aud[n - 1] == '/')
		return true;
	for (size_t i = 0; i < n; i++)
		if (aud[i] >= 'A' && aud[i] <= 'Z')
			return true;
	return false;
}

void diag_token_note(const struct token_failure *f, const struct diag_context *ctx, char *out, size_t cap)
{
	if (cap == 0)
		return;
	out[0] = '\0';
	if (has_code(f, 700016) && looks_like_guid(ctx->client_id) && looks_like_guid(ctx->tenant) &&
	    strcasecmp(ctx->client_id, ctx->tenant) != 0)
		snprintf(out, cap,
			 "If client_id and tenant were swapped: client_id must be the Application (client) "
			 "ID, tenant the Directory (tenant) ID.");
	else if (has_code(f, 700016) && ctx->client_id && !looks_like_guid(ctx->client_id))
		snprintf(out, cap, "client_id is not a GUID: use the Application (client) ID, not the app's name.");
	else if (has_code(f, 7000215) || has_code(f, 50012))
		snprintf(out, cap,
			 "A secret's Value is shown only when it is created; a GUID-shaped secret is "
			 "usually the Secret ID.");
	else if (has_code(f, 65001) && ctx->kind == AUD_FO && fo_audience_suspicious(ctx->audience))
		snprintf(out, cap,
			 "For F&O the audience must be the environment URL in lower case without a "
			 "trailing slash (here: %s).",
			 ctx->audience);
	else if (has_code(f, 65001) && ctx->kind == AUD_FO)
		snprintf(out, cap, "For F&O check also that the audience is lower case without a trailing slash.");
}

/* ---- upstream side ----------------------------------------------------------- */

struct up_row {
	const char *code;
	const char *title;
	const char *remediation;
};

enum up_id {
	UP_DV_USER,
	UP_DV_BLOCKED,
	UP_DV_PRIV,
	UP_BC_CRED,
	UP_FO_APP,
	UP_SS_AUD,
	UP_AUD,
	UP_REJECTED,
	UP_DV_IMPERSONATION,
};

static const struct up_row up_rows[] = {
    [UP_DV_USER] = {"dataverse_app_user_missing", "Dataverse has no application user for this app",
		    "Power Platform admin center > Environments > your environment > Settings > Users + permissions > "
		    "Application users > New app user: add this app (client ID) and give it a security role."},
    [UP_DV_BLOCKED] = {"dataverse_app_blocked", "Dataverse API access is restricted for this app",
		       "Power Platform admin center: the environment or tenant restricts Dataverse API access by "
		       "application ID; allow this app (or lift the restriction) and check the application user is "
		       "enabled."},
    [UP_DV_PRIV] = {"dataverse_privilege_missing", "The application user lacks a privilege",
		    "Power Platform admin center > Environments > your environment > Settings > Security roles: add "
		    "the named privilege on the named table to a role of the application user."},
    [UP_BC_CRED] = {"bc_credentials_rejected", "Business Central rejected the app's token",
		    "Business Central > Microsoft Entra Applications card: add the client ID, set State = Enabled, "
		    "assign permission sets and Grant Consent (API.ReadWrite.All, admin consent); on-premises also set "
		    "ValidAudiences to the audience the token carries."},
    [UP_FO_APP] = {"fo_app_not_registered", "Finance and Operations does not know this app",
		   "In Finance and Operations: System administration > Setup > Microsoft Entra applications: add the "
		   "client ID and map it to a user with the needed roles."},
    [UP_SS_AUD] =
	{"securityservice_audience", "The Security Service audience is not accepted here",
	 "Cloud-hosted and on-premises F&O environments have no Security Service: request a token for the "
	 "environment's own URL (audience = fo) with the app registered under System administration > Setup > "
	 "Microsoft Entra applications, or on the environment add the securityservice audience to "
	 "web.config (aad.AADValidAudience / aad.ACSValidAudience keys) and restart it."},
    [UP_AUD] = {"audience_mismatch", "The token's audience is not the upstream's",
		"Set the route's audience to the upstream environment's own URL: the challenge names the resource "
		"the upstream expects."},
    [UP_DV_IMPERSONATION] =
	{"dataverse_impersonation_denied", "Dataverse refused to act for the impersonated user",
	 "The caller's impersonate (CallerObjectId) names a user Dataverse will not act for: in "
	 "Power Platform admin center > Environments > your environment > Settings > Users, check the "
	 "user exists in the environment, is enabled, has a licence (or an access mode that needs "
	 "none) and a security role with the privilege the request needs; the application user also "
	 "needs the Delegate role (prvActOnBehalfOfAnotherUser)."},
    [UP_REJECTED] = {"token_rejected", "The upstream rejected the token",
		     "Compare the token's aud and tid (in the log) with the environment, and check the app is "
		     "registered in the product (application user, Entra application card)."},
};

bool diag_upstream_status_wanted(long status)
{
	return status == 400 || status == 401 || status == 403;
}

/* Copy the word of text after `marker` (letters, digits, _) into out. */
static void word_after(const char *text, const char *marker, char *out, size_t cap)
{
	const char *p = strstr(text, marker);
	size_t o = 0;
	if (p) {
		p += strlen(marker);
		while ((*p == ' ' || *p == '\'') && *p)
			p++;
		for (; *p &&
		       (strchr("_-.", *p) || (*p >= '0' && *p <= '9') || ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'));
		     p++)
			if (o + 1 < cap)
				out[o++] = *p;
	}
	out[o] = '\0';
}

/* "... is missing prvReadaccount privilege (...) ... for entity 'account'" */
static void privilege_evidence(struct upstream_evidence *ev)
{
	word_after(ev->message, "missing ", ev->privilege, sizeof ev->privilege);
	word_after(ev->message, "entity", ev->entity, sizeof ev->entity);
}

static bool hosts_differ(const char *a_url, const char *b_host)
{
	char a[256];
	challenge_url_host(a_url, a, sizeof a);
	return a[0] && b_host && b_host[0] && strcasecmp(a, b_host) != 0;
}

/* Bodies cut short or not JSON: the first "0x" + 8 hex digits is a
 * Dataverse error code (they are unique to it), the first line the message. */
static void raw_evidence(const char *body, size_t len, struct upstream_evidence *ev)
{
	for (size_t i = 0; !ev->error_code[0] && i + 10 <= len; i++) {
		size_t k = 2;
		if (body[i] != '0' || (body[i + 1] | 0x20) != 'x')
			continue;
		while (k < 10 && strchr("0123456789abcdefABCDEF", body[i + k]) && body[i + k])
			k++;
		if (k == 10 && (i + 10 == len || !strchr("0123456789abcdefABCDEF", body[i + 10]) || !body[i + 10]))
			snprintf(ev->error_code, sizeof ev->error_code, "%.10s", body + i);
	}
	if (!ev->message[0] && len > 0 && body[0] != '<') {
		size_t n = 0;
		while (n < len && n + 1 < sizeof ev->message && body[n] != '\r' && body[n] != '\n' && body[n])
			n++;
		memcpy(ev->message, body, n);
		ev->message[n] = '\0';
	}
}

static void gather(struct upstream_evidence *ev, long status, const char *body, size_t len, const char *www_auth,
		   const char *token_aud)
{
	struct oauth_error err;
	struct challenge ch;

	memset(ev, 0, sizeof *ev);
	ev->status = status;
	oauth_parse_error(body, len, &err);
	text_copy_cut(ev->error_code, sizeof ev->error_code, err.error);
	text_copy_cut(ev->message, sizeof ev->message, err.description);
	text_copy_cut(ev->token_aud, sizeof ev->token_aud, token_aud);
	if (body)
		raw_evidence(body, len, ev);
	if (www_auth) {
		text_copy_cut(ev->challenge, sizeof ev->challenge, www_auth);
		if (challenge_parse(www_auth, strlen(www_auth), &ch) == 0)
			text_copy_cut(ev->resource_id, sizeof ev->resource_id, ch.resource_id);
	}
}

static int classify_401(enum audience_kind kind, const char *upstream_host, const struct upstream_evidence *ev)
{
	char aud_host[256];
	challenge_url_host(ev->token_aud, aud_host, sizeof aud_host);
	if (ev->resource_id[0] && aud_host[0] && hosts_differ(ev->resource_id, aud_host))
		return UP_AUD;
	if (kind == AUD_BC && strcmp(ev->error_code, "Authentication_InvalidCredentials") == 0)
		return UP_BC_CRED;
	if (kind == AUD_FO || kind == AUD_SECURITYSERVICE) {
		if (aud_host[0] && upstream_host && hosts_differ(ev->token_aud, upstream_host) &&
		    strcasecmp(aud_host, "securityservice.operations365.dynamics.com") != 0)
			return UP_AUD;
		return UP_FO_APP;
	}
	if (kind == AUD_DATAVERSE && aud_host[0] && upstream_host && !ev->resource_id[0]) {
		/* Dataverse's .api. host accepts the org's plain host too */
		const char *api = strstr(upstream_host, ".api.");
		char plain[256];
		snprintf(plain, sizeof plain, "%.*s%s", api ? (int)(api - upstream_host) : 0, upstream_host,
			 api ? api + 4 : "");
		if (hosts_differ(ev->token_aud, upstream_host) &&
		    hosts_differ(ev->token_aud, api ? plain : upstream_host))
			return UP_AUD;
	}
	return UP_REJECTED;
}

bool diag_impersonation(long status, const struct upstream_evidence *ev, struct diagnosis *out)
{
	if (status != 403 || strcasecmp(ev->error_code, "0x80072560") == 0 ||
	    strcasecmp(ev->error_code, "0x80095ffc") == 0)
		return false;
	const struct up_row *r = &up_rows[UP_DV_IMPERSONATION];
	fill(out, 502, r->code, r->title, r->remediation, false);
	return true;
}

bool diag_upstream(enum audience_kind kind, const char *upstream_host, long status, const char *body, size_t len,
		   const char *www_auth, const char *token_aud, struct upstream_evidence *ev, struct diagnosis *out)
{
	int id = -1;

	gather(ev, status, body, len, www_auth, token_aud);
	if (status == 403 && strcasecmp(ev->error_code, "0x80072560") == 0)
		id = UP_DV_USER;
	else if (status == 403 && strcasecmp(ev->error_code, "0x80095ffc") == 0)
		id = UP_DV_BLOCKED;
	else if (status == 403 && strcasecmp(ev->error_code, "0x80040220") == 0)
		id = UP_DV_PRIV;
	else if (status == 400 && strstr(ev->message, "Expected aud") != NULL)
		id = UP_SS_AUD;
	else if (status == 401)
		id = classify_401(kind, upstream_host, ev);
	if (id == UP_DV_PRIV)
		privilege_evidence(ev);
	if (id < 0)
		return false;
	fill(out, 502, up_rows[id].code, up_rows[id].title, up_rows[id].remediation, false);
	return true;
}

/* The upstream's service protection limits (throttle.c): the proxy held the
 * request as long as the route allows, and the gate stays closed longer. */
void diag_upstream_throttled(struct diagnosis *out)
{
	fill(out, 503, "throttled_upstream", "The upstream is throttling this identity",
	     "The service's protection limits apply per user: every client behind this credential shares one "
	     "budget. Spread the load over time, give heavy jobs their own credential (application user), or raise "
	     "throttle_wait so requests wait longer instead of failing.",
	     true);
}
