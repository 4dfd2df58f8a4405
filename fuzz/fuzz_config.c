/*
 * fuzz_config.c - libFuzzer target for config.c: the whole load (inih, our
 * line reader, the key table, value syntax, cross-checks, token source
 * derivation) from an in-memory file via config_load_stream + fmemopen.
 *
 * The low bit of the first byte decides whether the AZURE_* variables are
 * set, so both the env-filled [credential:default] and the file-only paths
 * run. Warnings are filtered out of the log, errors go to /dev/null. A
 * loaded config is checked for the invariants the rest of the proxy relies
 * on (indices in range, strings present, v1 sources without a scope); a
 * violation aborts. Leaks are caught by ASan's leak checker.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = fopen("/dev/null", "w");
	if (!devnull)
		abort();
	log_setup(LOG_ERROR, LOG_FMT_JSON, fileno(devnull));
	setenv("S2S_FUZZ_SECRET", "fuzz-secret", 1);
	return 0;
}

static void set_env(bool on)
{
	if (on) {
		setenv("AZURE_TENANT_ID", "contoso.onmicrosoft.com", 1);
		setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001", 1);
		setenv("AZURE_CLIENT_SECRET", "env-secret", 1);
		setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/", 1);
	} else {
		unsetenv("AZURE_TENANT_ID");
		unsetenv("AZURE_CLIENT_ID");
		unsetenv("AZURE_CLIENT_SECRET");
		unsetenv("AZURE_AUTHORITY_HOST");
	}
}

static void check(const struct config *cfg)
{
	if (cfg->n_routes == 0 || cfg->n_credentials == 0 || cfg->n_token_sources == 0 || !cfg->proxy.listen_host)
		abort();
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct route_cfg *r = &cfg->routes[i];
		if (r->credential >= cfg->n_credentials || r->token_source >= cfg->n_token_sources ||
		    cfg->token_sources[r->token_source].credential != r->credential || !r->match_path ||
		    r->match_path[0] != '/' || !r->upstream.origin || !r->upstream.path || !r->upstream.host)
			abort();
	}
	for (size_t i = 0; i < cfg->n_token_sources; i++) {
		const struct token_source_cfg *t = &cfg->token_sources[i];
		const struct credential_cfg *c;
		if (t->credential >= cfg->n_credentials || !t->resource || !t->token_endpoint)
			abort();
		c = &cfg->credentials[t->credential];
		if ((c->token_version == TOKEN_V1) != (t->scope == NULL) || !c->tenant || !c->client_id ||
		    !c->authority || c->secret_source == SECRET_NONE)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	FILE *in;

	if (size == 0)
		return 0;
	set_env(data[0] & 1);
	in = fmemopen((void *)(uintptr_t)data, size, "r");
	if (!in)
		return 0;
	cfg = config_load_stream(in, "fuzz.ini", devnull);
	fclose(in);
	if (cfg)
		check(cfg);
	config_free(cfg);
	return 0;
}
