/*
 * test_challenge.c - WWW-Authenticate parsing: Dataverse's unquoted
 * parameters, quoted ones with escapes, several challenges, junk.
 */
#include "http/challenge.h"
#include "t.h"

static void dataverse_unquoted(void)
{
	struct challenge c;
	const char *s =
	    "Bearer authorization_uri=https://login.microsoftonline.com/c0ffee00-1234-4abc-8def-0000000000aa/"
	    "oauth2/authorize, resource_id=https://contoso.crm4.dynamics.com/";
	CHECK_INT(challenge_parse(s, strlen(s), &c), 0);
	CHECK(c.bearer);
	CHECK_STR(c.authorization_uri,
		  "https://login.microsoftonline.com/c0ffee00-1234-4abc-8def-0000000000aa/oauth2/authorize");
	CHECK_STR(c.resource_id, "https://contoso.crm4.dynamics.com/");
}

static void quoted_with_escapes(void)
{
	struct challenge c;
	const char *s = "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The token \\\"expired\\\", "
			"sorry\"";
	CHECK_INT(challenge_parse(s, strlen(s), &c), 0);
	CHECK_STR(c.realm, "api");
	CHECK_STR(c.error, "invalid_token");
	CHECK_STR(c.error_description, "The token \"expired\", sorry");
}

static void several_challenges(void)
{
	struct challenge c;
	const char *s = "Basic realm=\"x\", Negotiate, bearer  resource_id = https://a.example/ ,scope=\"a b\"";
	CHECK_INT(challenge_parse(s, strlen(s), &c), 0);
	CHECK_STR(c.realm, "");
	CHECK_STR(c.resource_id, "https://a.example/");
	CHECK_STR(c.scope, "a b");
}

static void no_bearer_and_junk(void)
{
	struct challenge c;
	CHECK_INT(challenge_parse("Basic realm=\"x\"", 15, &c), -1);
	CHECK(!c.bearer);
	CHECK_INT(challenge_parse("", 0, &c), -1);
	CHECK_INT(challenge_parse(NULL, 0, &c), -1);
	CHECK_INT(challenge_parse(",,, ==\"\\", 8, &c), -1);
	/* cut short inside a quoted value: keeps what it has */
	CHECK_INT(challenge_parse("Bearer error=\"invalid_to", 24, &c), 0);
	CHECK_STR(c.error, "invalid_to");
	/* length bound respected: the NUL-less tail is not read */
	CHECK_INT(challenge_parse("Bearer resource_id=https://a/XYZ", 29, &c), 0);
	CHECK_STR(c.resource_id, "https://a/");
}

static void long_values_cut(void)
{
	struct challenge c;
	char s[1200];
	memcpy(s, "Bearer resource_id=", 19);
	memset(s + 19, 'a', 1000);
	CHECK_INT(challenge_parse(s, 1019, &c), 0);
	CHECK_INT(strlen(c.resource_id), sizeof c.resource_id - 1);
}

static void url_host(void)
{
	char h[64];
	challenge_url_host("https://Contoso.CRM4.dynamics.com:443/x", h, sizeof h);
	CHECK_STR(h, "contoso.crm4.dynamics.com");
	challenge_url_host("https://user@host.example/", h, sizeof h);
	CHECK_STR(h, "host.example");
	challenge_url_host("host.only", h, sizeof h);
	CHECK_STR(h, "host.only");
	challenge_url_host(NULL, h, sizeof h);
	CHECK_STR(h, "");
}

int main(void)
{
	RUN(dataverse_unquoted);
	RUN(quoted_with_escapes);
	RUN(several_challenges);
	RUN(no_bearer_and_junk);
	RUN(long_values_cut);
	RUN(url_host);
	return T_DONE();
}
