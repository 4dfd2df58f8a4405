/*
 * envconf.c - the configuration a container describes with its environment.
 *
 * The image runs the binary itself as its entrypoint (the runtime image needs
 * no shell), so what docker/entrypoint.sh used to write into a file is done
 * here: the INI text is built in memory and read by the ordinary loader, so
 * every check and message of a file applies, and nothing is written to the
 * (read-only) root. The credential is not part of it: AZURE_* define the
 * credential "default" of any configuration without [credential:...]
 * (config.c), so a secret never passes through this text.
 */
#include "config/envconf.h"

#include <stdlib.h>
#include <string.h>

struct env_key {
	const char *var;  /* environment variable */
	const char *sect; /* section it goes to: "proxy" or "route:default" */
	const char *key;
	const char *dflt; /* NULL: the key is left out when the variable is unset */
	bool required;
};

/* In section order: the text has each section header once. */
static const struct env_key env_keys[] = {
    {"S2S_LISTEN", "proxy", "listen", "127.0.0.1:8080", false},
    {"S2S_ADMIN_LISTEN", "proxy", "admin_listen", "127.0.0.1:9090", false},
    {"S2S_LOG_FORMAT", "proxy", "log_format", "json", false},
    {"S2S_UPSTREAM", "route:default", "upstream", NULL, true},
    {"S2S_AUDIENCE", "route:default", "audience", NULL, false},
};

static const char *env_value(const char *var)
{
	const char *v = getenv(var);
	return v && *v ? v : NULL;
}

const char *envconf_file(void)
{
	const char *f = env_value("S2S_CONFIG");
	return f ? f : ENVCONF_DEFAULT_FILE;
}

bool envconf_present(void)
{
	return env_value("S2S_UPSTREAM") != NULL;
}

/* inih ends a value at a control character and strips " ;comment": a value
 * with either would not mean what the variable says. */
static bool plain(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v <= ' ' || *v == 0x7f)
			return false;
	return true;
}

/* Every problem of the variables on `errors`; returns their number. */
static int env_problems(FILE *errors)
{
	int n = 0;
	for (size_t i = 0; i < sizeof env_keys / sizeof env_keys[0]; i++) {
		const struct env_key *k = &env_keys[i];
		const char *v = env_value(k->var);
		const char *why = !v && k->required ? "is not set"
				  : v && !plain(v)  ? "holds a space or a control character"
						    : NULL;
		if (!why)
			continue;
		n++;
		if (errors)
			fprintf(errors, "%s:0: %s %s\n", ENVCONF_NAME, k->var, why);
	}
	return n;
}

char *envconf_text(FILE *errors)
{
	char *text = NULL;
	size_t len = 0;
	const char *sect = NULL;
	FILE *out;

	if (env_problems(errors) > 0)
		return NULL;
	out = open_memstream(&text, &len);
	if (!out) {
		if (errors)
			fprintf(errors, "%s:0: out of memory\n", ENVCONF_NAME);
		return NULL;
	}
	for (size_t i = 0; i < sizeof env_keys / sizeof env_keys[0]; i++) {
		const struct env_key *k = &env_keys[i];
		const char *v = env_value(k->var);
		if (!v)
			v = k->dflt;
		if (!sect || strcmp(sect, k->sect) != 0)
			fprintf(out, "[%s]\n", (sect = k->sect));
		if (v)
			fprintf(out, "%s = %s\n", k->key, v);
	}
	if (fclose(out) != 0) { /* the stream's buffer could not grow */
		free(text);
		if (errors)
			fprintf(errors, "%s:0: out of memory\n", ENVCONF_NAME);
		return NULL;
	}
	return text;
}

struct config *envconf_load(FILE *errors)
{
	char *text = envconf_text(errors);
	struct config *cfg = NULL;
	FILE *in;

	if (!text)
		return NULL;
	in = fmemopen(text, strlen(text), "r");
	if (in) {
		cfg = config_load_stream(in, ENVCONF_NAME, errors);
		fclose(in);
	} else if (errors) {
		fprintf(errors, "%s:0: out of memory\n", ENVCONF_NAME);
	}
	free(text);
	return cfg;
}
