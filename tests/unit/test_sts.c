/*
 * test_sts.c - the WS-Trust sign-in facade (sts.c): realm answer, RST2 and
 * ADFS sign-in against an identities file, the RST2 fault (internals.md
 * W-1), handles bound to a credential and expiring; and the bridge's
 * configuration keys.
 */
#include <crypt.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "util/log.h"
#include "wstrust/soap.h"
#include "wstrust/sts.h"
#include "t.h"

static char dir[] = "/tmp/test_sts.XXXXXX";
static char ids_path[256];
static const long long NOW = 1800000000;

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		exit(2);
}

static void make_identities(void)
{
	struct crypt_data cd;
	char text[1024];
	memset(&cd, 0, sizeof cd);
	const char *h = crypt_r("s3cret & more", "$6$unittestsalt$", &cd);
	if (!h || h[0] == '*')
		exit(2);
	snprintf(text, sizeof text,
		 "# comment\nAlice@Contoso.com:%s:contoso\nbroken line\nbob@contoso.com:%s:fabrikam\n", h, h);
	snprintf(ids_path, sizeof ids_path, "%s/identities", dir);
	write_file(ids_path, text);
}

static const char *rst(const char *user, const char *password)
{
	static char buf[4096];
	snprintf(buf, sizeof buf,
		 "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"" SOAP_NS_WSA "\"><s:Header><a:MessageID>urn:uuid:m"
		 "</a:MessageID><o:Security xmlns:o=\"" SOAP_NS_WSSE "\"><o:UsernameToken><o:Username>%s</o:Username>"
		 "<o:Password>%s</o:Password></o:UsernameToken></o:Security></s:Header><s:Body><t:RequestSecurityToken "
		 "xmlns:t=\"http://schemas.xmlsoap.org/ws/2005/02/trust\"/></s:Body></s:Envelope>",
		 user, password);
	return buf;
}

/* The handle: the EncryptedData's own CipherValue, the last one. */
static void handle_of(const char *body, char *out, size_t cap)
{
	const char *p = strstr(body, "</EncryptedKey>");
	p = p ? strstr(p, "<CipherValue>") : NULL;
	out[0] = '\0';
	if (p) {
		p += strlen("<CipherValue>");
		size_t n = strcspn(p, "<");
		if (n < cap) {
			memcpy(out, p, n);
			out[n] = '\0';
		}
	}
}

static void test_paths(void)
{
	CHECK(sts_is_path("/RST2.srf", 9));
	CHECK(sts_is_path("/rst2.SRF", 9));
	CHECK(sts_is_path("/GetUserRealm.srf", 17));
	CHECK(sts_is_path("/adfs/services/trust/13/usernamemixed", 37));
	CHECK(!sts_is_path("/RST2.srf/x", 11));
	CHECK(!sts_is_path("/api/data/v9.2/WhoAmI", 21));
}

static void test_realm(void)
{
	struct sts_reply r;
	const char *form = "login=bob%40fabrikam.com&xml=1";
	CHECK_INT(sts_answer(ids_path, "/GetUserRealm.srf", 17, NULL, form, strlen(form), NOW, &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, "text/xml; charset=utf-8");
	CHECK_STR(r.body,
		  "<?xml version=\"1.0\" encoding=\"utf-8\"?><RealmInfo Success=\"true\"><State>4</State>"
		  "<UserState>1</UserState><Login>bob@fabrikam.com</Login><NameSpaceType>Managed</NameSpaceType>"
		  "<DomainName>fabrikam.com</DomainName><IsFederatedNS>false</IsFederatedNS>"
		  "<FederationBrandName>fabrikam.com</FederationBrandName><CloudInstanceName>microsoftonline.com"
		  "</CloudInstanceName><CloudInstanceIssuerUri>urn:federation:MicrosoftOnline"
		  "</CloudInstanceIssuerUri></RealmInfo>");
	CHECK_INT(r.len, strlen(r.body));
	free(r.body);
	CHECK_INT(sts_answer(ids_path, "/GetUserRealm.srf", 17, "login=%3Cx%3E", "", 0, NOW, &r), 0);
	CHECK(strstr(r.body, "<Login>&lt;x&gt;</Login>") != NULL);
	free(r.body);
}

static void test_rst2_sign_in_and_handle(void)
{
	struct sts_reply r;
	char handle[128], cred[STS_CRED_MAX];
	const char *b = rst("alice@contoso.com", "s3cret &amp; more"); /* user names compare case-insensitively */
	CHECK_INT(sts_answer(ids_path, "/RST2.srf", 9, NULL, b, strlen(b), NOW, &r), 0);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, "application/soap+xml; charset=utf-8");
	CHECK(strstr(r.body, "<wst:Lifetime><wsu:Created>2027-01-15T08:00:00Z</wsu:Created><wsu:Expires>"
			     "2027-01-15T09:00:00Z</wsu:Expires></wst:Lifetime>") != NULL);
	CHECK(strstr(r.body, "<wsa:RelatesTo>urn:uuid:m</wsa:RelatesTo>") != NULL);
	CHECK(strstr(r.body, "<wst:BinarySecret>") && strstr(r.body, "<wsse:KeyIdentifier "));
	CHECK(!strstr(r.body, "s3cret"));
	handle_of(r.body, handle, sizeof handle);
	free(r.body);
	CHECK_INT(strlen(handle), 64);
	CHECK(sts_handle_valid(handle, NOW + 10, cred, sizeof cred));
	CHECK_STR(cred, "contoso");
	CHECK(!sts_handle_valid(handle, NOW + STS_HANDLE_TTL_S, cred, sizeof cred)); /* expired */
	handle[0] = handle[0] == 'a' ? 'b' : 'a';
	CHECK(!sts_handle_valid(handle, NOW + 10, cred, sizeof cred));
	CHECK(!sts_handle_valid("", NOW, cred, sizeof cred));
	CHECK(!sts_handle_valid(NULL, NOW, cred, sizeof cred));
}

static void test_rst2_wrong_password(void)
{
	struct sts_reply r;
	const char *b = rst("alice@contoso.com", "s3cret");
	CHECK_INT(sts_answer(ids_path, "/RST2.srf", 9, NULL, b, strlen(b), NOW, &r), 0);
	CHECK_INT(r.status, 400);
	CHECK(strstr(r.body, "<s:Value xmlns:wst=\"http://schemas.xmlsoap.org/ws/2005/02/trust\">"
			     "wst:FailedAuthentication</s:Value>") != NULL);
	CHECK(strstr(r.body, "<psf:value>0x80048821</psf:value>") != NULL);
	CHECK(strstr(r.body, "<a:RelatesTo>urn:uuid:m</a:RelatesTo>") != NULL);
	free(r.body);
	b = rst("nobody@contoso.com", "s3cret &amp; more");
	CHECK_INT(sts_answer(ids_path, "/RST2.srf", 9, NULL, b, strlen(b), NOW, &r), 0);
	CHECK_INT(r.status, 400);
	free(r.body);
	b = rst("alice@contoso.com", "s3cret &amp; more");
	CHECK_INT(sts_answer(NULL, "/RST2.srf", 9, NULL, b, strlen(b), NOW, &r), 0); /* no identities file */
	CHECK_INT(r.status, 400);
	free(r.body);
	CHECK_INT(sts_answer(ids_path, "/RST2.srf", 9, NULL, "<x", 2, NOW, &r), 0);
	CHECK_INT(r.status, 400);
	CHECK(strstr(r.body, "wst:InvalidRequest") && strstr(r.body, "not well-formed"));
	free(r.body);
}

static void test_adfs_then_rst2(void)
{
	struct sts_reply r;
	char req[4096], id[80], handle[128], cred[STS_CRED_MAX];
	const char *b = rst("bob@contoso.com", "s3cret &amp; more");
	CHECK_INT(sts_answer(ids_path, "/adfs/services/trust/13/usernamemixed", 37, NULL, b, strlen(b), NOW, &r), 0);
	CHECK_INT(r.status, 200);
	const char *p = strstr(r.body, "<Assertion ID=\"_");
	CHECK(p != NULL);
	CHECK(strstr(r.body, "<NameID>bob@contoso.com</NameID>") != NULL);
	snprintf(id, sizeof id, "%.65s", p + strlen("<Assertion ID=\""));
	free(r.body);
	snprintf(req, sizeof req,
		 "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Header><o:Security xmlns:o=\"" SOAP_NS_WSSE "\"><Assertion "
		 "ID=\"%s\" xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\"/></o:Security></s:Header><s:Body>"
		 "<t:RequestSecurityToken xmlns:t=\"urn:t\"/></s:Body></s:Envelope>",
		 id);
	CHECK_INT(sts_answer(ids_path, "/RST2.srf", 9, NULL, req, strlen(req), NOW, &r), 0);
	CHECK_INT(r.status, 200);
	handle_of(r.body, handle, sizeof handle);
	free(r.body);
	CHECK(sts_handle_valid(handle, NOW, cred, sizeof cred));
	CHECK_STR(cred, "fabrikam");
	CHECK(!sts_handle_valid(id + 1, NOW, cred, sizeof cred)); /* an assertion id is no RST2 handle */
	b = rst("bob@contoso.com", "wrong");
	CHECK_INT(sts_answer(ids_path, "/adfs/services/trust/13/usernamemixed", 37, NULL, b, strlen(b), NOW, &r), 0);
	CHECK_INT(r.status, 500);
	CHECK(strstr(r.body, "ID3242: The security token could not be authenticated or authorized.") != NULL);
	free(r.body);
}

static void test_config_keys(void)
{
	char text[2048], secret[300], errbuf[1024] = "";
	snprintf(secret, sizeof secret, "%s/secret", dir);
	write_file(secret, "x\n");
	snprintf(text, sizeof text,
		 "[proxy]\nsts_facade = true\nlegacy_identities_file = %s\nsoap_max_response = 1m\n"
		 "[credential:c]\ntenant = contoso.onmicrosoft.com\nclient_id = 11111111-2222-3333-4444-555555555555\n"
		 "client_secret_file = %s\n[route:org]\nmatch_path = /XRMServices/\n"
		 "upstream = https://contoso.crm4.dynamics.com\nsoap_bridge = true\n"
		 "[route:api]\nmatch_path = /\nupstream = https://contoso.crm4.dynamics.com\n",
		 ids_path, secret);
	FILE *in = fmemopen(text, strlen(text), "r"), *err = fmemopen(errbuf, sizeof errbuf, "w");
	struct config *cfg = config_load_stream(in, "t.ini", err);
	fclose(in);
	fclose(err);
	CHECK_STR(errbuf, "");
	CHECK(cfg != NULL);
	CHECK(cfg->proxy.sts_facade);
	CHECK_STR(cfg->proxy.legacy_identities_file, ids_path);
	CHECK_INT(cfg->proxy.soap_max_response, 1 << 20);
	CHECK_INT(cfg->n_routes, 2);
	CHECK(cfg->routes[0].soap_bridge);
	CHECK(!cfg->routes[1].soap_bridge);
	config_free(cfg);

	const char *bad = "[proxy]\nsoap_max_response = 1k\n";
	memset(errbuf, 0, sizeof errbuf);
	in = fmemopen((void *)bad, strlen(bad), "r");
	err = fmemopen(errbuf, sizeof errbuf, "w");
	cfg = config_load_stream(in, "t.ini", err);
	fclose(in);
	fclose(err);
	CHECK(cfg == NULL);
	CHECK(strstr(errbuf, "t.ini:2: [proxy] soap_max_response: must be a size from 4k to 64m") != NULL);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 2;
	int fd = open("/dev/null", O_WRONLY);
	log_setup(LOG_ERROR, LOG_FMT_JSON, fd);
	make_identities();
	RUN(test_paths);
	RUN(test_realm);
	RUN(test_rst2_sign_in_and_handle);
	RUN(test_rst2_wrong_password);
	RUN(test_adfs_then_rst2);
	RUN(test_config_keys);
	sts_reset();
	char p[300];
	snprintf(p, sizeof p, "%s/secret", dir);
	unlink(p);
	unlink(ids_path);
	rmdir(dir);
	close(fd);
	return T_DONE();
}
