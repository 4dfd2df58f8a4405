/*
 * test_envconf.c - unit tests of envconf.c: the INI text the container
 * environment describes (defaults, empty = unset, refused values), the file
 * chosen without -c, and the loaded configuration with its AZURE_* credential.
 */
#include <stdlib.h>
#include <string.h>

#include "config/envconf.h"
#include "t.h"

static const char *const vars[] = {"S2S_UPSTREAM",     "S2S_AUDIENCE",    "S2S_LISTEN",
				   "S2S_ADMIN_LISTEN", "S2S_LOG_FORMAT",  "S2S_CONFIG",
				   "AZURE_TENANT_ID",  "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

/* envconf_text() with its errors collected: returns the text, *errs the messages. */
static char *render(char **errs)
{
	size_t len = 0;
	FILE *f = open_memstream(errs, &len);
	char *text = envconf_text(f);
	if (f)
		fclose(f);
	return text;
}

static void test_defaults(void)
{
	char *errs = NULL;
	clear_env();
	setenv("S2S_UPSTREAM", "https://contoso.crm4.dynamics.com", 1);
	setenv("S2S_LOG_FORMAT", "", 1); /* empty counts as unset */
	char *text = render(&errs);
	CHECK_STR(text, "[proxy]\nlisten = 127.0.0.1:8080\nadmin_listen = 127.0.0.1:9090\nlog_format = json\n"
			"[route:default]\nupstream = https://contoso.crm4.dynamics.com\n");
	CHECK_STR(errs, "");
	free(text);
	free(errs);
}

static void test_every_variable(void)
{
	char *errs = NULL;
	clear_env();
	setenv("S2S_UPSTREAM", "https://api.businesscentral.dynamics.com", 1);
	setenv("S2S_AUDIENCE", "bc", 1);
	setenv("S2S_LISTEN", "0.0.0.0:8080", 1);
	setenv("S2S_ADMIN_LISTEN", "[::1]:9191", 1);
	setenv("S2S_LOG_FORMAT", "text", 1);
	char *text = render(&errs);
	CHECK_STR(text, "[proxy]\nlisten = 0.0.0.0:8080\nadmin_listen = [::1]:9191\nlog_format = text\n"
			"[route:default]\nupstream = https://api.businesscentral.dynamics.com\naudience = bc\n");
	free(text);
	free(errs);
}

static void test_refused(void)
{
	char *errs = NULL;
	clear_env();
	CHECK(!envconf_present());
	CHECK(render(&errs) == NULL);
	CHECK_STR(errs, "(environment):0: S2S_UPSTREAM is not set\n");
	free(errs);
	errs = NULL;
	/* a newline would start a section of its own; " ;" would cut the value */
	setenv("S2S_UPSTREAM", "https://x\n[credential:evil]", 1);
	setenv("S2S_LISTEN", "127.0.0.1:8080 ;comment", 1);
	CHECK(render(&errs) == NULL);
	CHECK_STR(errs, "(environment):0: S2S_LISTEN holds a space or a control character\n"
			"(environment):0: S2S_UPSTREAM holds a space or a control character\n");
	free(errs);
}

static void test_file_choice(void)
{
	clear_env();
	CHECK_STR(envconf_file(), "/etc/s2s-proxy/s2s-proxy.ini");
	setenv("S2S_CONFIG", "", 1);
	CHECK_STR(envconf_file(), "/etc/s2s-proxy/s2s-proxy.ini");
	setenv("S2S_CONFIG", "/srv/proxy.ini", 1);
	CHECK_STR(envconf_file(), "/srv/proxy.ini");
}

static void test_load(void)
{
	clear_env();
	setenv("S2S_UPSTREAM", "https://contoso.crm4.dynamics.com", 1);
	setenv("AZURE_TENANT_ID", "c0ffee00-1234-4abc-8def-0000000000aa", 1);
	setenv("AZURE_CLIENT_ID", "11111111-aaaa-4bbb-8ccc-000000000001", 1);
	setenv("AZURE_CLIENT_SECRET", "secret", 1);
	struct config *cfg = envconf_load(NULL);
	CHECK(cfg != NULL);
	CHECK_STR(cfg->path, ENVCONF_NAME);
	CHECK_INT(cfg->n_routes, 1);
	CHECK_INT(cfg->n_credentials, 1);
	CHECK_STR(cfg->routes[0].upstream.origin, "https://contoso.crm4.dynamics.com");
	CHECK_INT(cfg->proxy.listen_port, 8080);
	config_free(cfg);
	unsetenv("AZURE_CLIENT_SECRET"); /* no credential: the loader's own error */
	CHECK(envconf_load(NULL) == NULL);
}

int main(void)
{
	RUN(test_defaults);
	RUN(test_every_variable);
	RUN(test_refused);
	RUN(test_file_choice);
	RUN(test_load);
	clear_env();
	return T_DONE();
}
