/*
 * test_cred.c - the proof of identity of a token request: exact form bodies
 * for a client secret file (re-read after rotation) and a federated token
 * file, managed identity URLs and headers, and credential identity for
 * reload carry-over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "token/cred.h"
#include "token/mi.h"
#include "t.h"

static char dir[64];

static const char *write_tmp(const char *name, const char *content)
{
	static char path[4][128];
	static int n;
	char *p = path[n++ % 4];
	FILE *f;

	snprintf(p, 128, "%s/%s", dir, name);
	f = fopen(p, "w");
	if (f != NULL) {
		fputs(content, f);
		fclose(f);
	}
	return p;
}

static struct credential_cfg base(void)
{
	struct credential_cfg c;

	memset(&c, 0, sizeof c);
	c.name = (char *)"c";
	c.client_id = (char *)"cid";
	return c;
}

static void test_secret_file_reread(void)
{
	struct credential_cfg c = base();
	struct cred_material m;
	char why[256] = "";
	struct cred *cr;

	c.secret_source = SECRET_FILE;
	c.client_secret_file = (char *)write_tmp("secret", "first+secret\n");
	cr = cred_new(&c, why, sizeof why);
	CHECK(cr != NULL);
	CHECK_INT(cred_material(cr, "https://x/t", "https://r/.default", 1, &m, why, sizeof why), 0);
	CHECK_STR(m.form, "grant_type=client_credentials&client_id=cid&scope=https%3A%2F%2Fr%2F.default"
			  "&client_secret=first%2Bsecret");
	CHECK_INT(m.form_len, (long)strlen(m.form));
	CHECK(m.basic == NULL);
	cred_material_wipe(&m);
	write_tmp("secret", "second");
	CHECK_INT(cred_material(cr, "https://x/t", "https://r/.default", 1, &m, why, sizeof why), 0);
	CHECK(strstr(m.form, "&client_secret=second") != NULL);
	cred_material_wipe(&m);
	CHECK(m.form == NULL);
	write_tmp("secret", "\n");
	CHECK_INT(cred_material(cr, "https://x/t", "https://r/.default", 1, &m, why, sizeof why), -1);
	CHECK(strstr(why, "is empty") != NULL);
	CHECK(m.form == NULL);
	cred_free(cr);
}

static void test_federated_file(void)
{
	struct credential_cfg c = base();
	struct cred_material m;
	char why[256] = "";
	struct cred *cr;

	c.kind = CRED_FEDERATED;
	c.token_version = TOKEN_V1;
	c.federated_token_file = (char *)write_tmp("fed", "aaa.bbb.ccc\n");
	cr = cred_new(&c, why, sizeof why);
	CHECK(cr != NULL);
	CHECK_INT(cred_material(cr, "https://x/t", "https://r", 1, &m, why, sizeof why), 0);
	CHECK_STR(m.form, "grant_type=client_credentials&client_id=cid&resource=https%3A%2F%2Fr"
			  "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
			  "&client_assertion=aaa.bbb.ccc");
	cred_material_wipe(&m);
	cred_free(cr);
	cred_free(NULL);
}

static void test_managed_identity_urls_and_headers(void)
{
	struct credential_cfg c = base();
	struct curl_slist *l = NULL;
	char why[256] = "", *u;

	c.kind = CRED_MANAGED_IDENTITY;
	c.managed_identity = (char *)"system";
	c.managed_identity_endpoint = (char *)"http://169.254.169.254/metadata/identity/oauth2/token";
	u = mi_url(&c, "https://org.crm4.dynamics.com");
	CHECK_STR(u, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"
		     "&resource=https%3A%2F%2Forg.crm4.dynamics.com");
	free(u);
	CHECK_INT(mi_headers(&c, &l, why, sizeof why), 0);
	CHECK_STR(l->data, "Metadata: true");
	curl_slist_free_all(l);
	l = NULL;
	c.managed_identity = (char *)"88888888-aaaa-4bbb-8ccc-000000000008";
	c.mi_app_service = true;
	c.managed_identity_endpoint = (char *)"http://127.0.0.1:4/msi/token";
	u = mi_url(&c, "https://r");
	CHECK_STR(u, "http://127.0.0.1:4/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fr"
		     "&client_id=88888888-aaaa-4bbb-8ccc-000000000008");
	free(u);
	unsetenv("IDENTITY_HEADER");
	CHECK_INT(mi_headers(&c, &l, why, sizeof why), -1);
	CHECK(l == NULL);
	setenv("IDENTITY_HEADER", "abc", 1);
	CHECK_INT(mi_headers(&c, &l, why, sizeof why), 0);
	CHECK_STR(l->data, "X-IDENTITY-HEADER: abc");
	curl_slist_free_all(l);
	CHECK(mi_retryable(404) && mi_retryable(410) && !mi_retryable(400) && !mi_retryable(401));
}

static void test_cred_same(void)
{
	struct credential_cfg a = base(), b = base();

	a.client_secret_file = (char *)"/s";
	b.client_secret_file = (char *)"/s";
	CHECK(cred_same(&a, &b));
	b.client_secret_file = (char *)"/t";
	CHECK(!cred_same(&a, &b));
	b.client_secret_file = (char *)"/s";
	b.send_x5c = true;
	CHECK(!cred_same(&a, &b));
	b.send_x5c = false;
	b.tenant = (char *)"t";
	CHECK(!cred_same(&a, &b));
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/s2s-cred-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_secret_file_reread);
	RUN(test_federated_file);
	RUN(test_managed_identity_urls_and_headers);
	RUN(test_cred_same);
	unlink(write_tmp("secret", ""));
	unlink(write_tmp("fed", ""));
	rmdir(dir);
	return T_DONE();
}
