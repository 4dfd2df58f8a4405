/*
 * config_load.c - the loading state the section modules share (config_int.h):
 * errors that name file:line, finding sections and keys already seen, and the
 * token sources routes and callers add. config.c and config_caller.c call
 * down into it, so neither includes the other's functions.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"

void config_load_error(struct load *ld, int line, const char *fmt, ...)
{
	va_list ap;

	ld->n_errors++;
	if (!ld->errors)
		return;
	fprintf(ld->errors, "%s:%d: ", ld->file, line);
	va_start(ap, fmt);
	vfprintf(ld->errors, fmt, ap);
	va_end(ap);
	fputc('\n', ld->errors);
}

void config_warn_at(struct load *ld, const char *event, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_msg(LOG_WARN, event, "%s:%d: %s", ld->file, line, msg);
}

void config_oom(struct load *ld)
{
	if (!ld->oom)
		config_load_error(ld, 0, "out of memory");
	ld->oom = true;
}

/* "FILE:LINE: [title] key: msg", or "FILE:LINE: [title] msg" without key. */
void config_sec_error(struct load *ld, int line, const struct section *s, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	config_load_error(ld, line, "[%s] %s%s%s", s->title, key ? key : "", key ? ": " : "", msg);
}

int config_find_row(enum sec_kind kind, const char *key)
{
	for (size_t i = 0; i < config_n_key_rows; i++)
		if (config_key_rows[i].kind == kind && strcmp(config_key_rows[i].key, key) == 0)
			return (int)i;
	return -1;
}

struct section *config_find_section(struct load *ld, enum sec_kind kind, const char *name)
{
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == kind && strcmp(ld->secs[i]->name, name) == 0)
			return ld->secs[i];
	return NULL;
}

bool config_seen(const struct section *s, const char *key)
{
	int i = config_find_row(s->kind, key);

	return i >= 0 && s->seen[i];
}

int config_seen_line(const struct section *s, const char *key)
{
	int i = config_find_row(s->kind, key);

	return i >= 0 && s->seen[i] ? s->key_line[i] : 0;
}

void config_token_source_free(struct token_source_cfg *t)
{
	free(t->resource);
	free(t->scope);
	free(t->token_endpoint);
	memset(t, 0, sizeof *t);
}

size_t config_token_source(struct load *ld, const struct section *cs, const char *scope, const char *resource)
{
	const struct credential_cfg *c = cs->obj;
	bool v2 = c->token_version == TOKEN_V2;
	struct token_source_cfg t = {.credential = cs->index, .resource = strdup(resource)};
	size_t i;

	if (!t.resource)
		goto nomem;
	if (v2 && scope)
		t.scope = strdup(scope);
	else if (v2 && asprintf(&t.scope, "%s" DEFAULT_SUFFIX, resource) < 0)
		t.scope = NULL;
	if (v2 && !t.scope)
		goto nomem;
	for (i = 0; i < ld->n_ts; i++)
		if (ld->ts[i].credential == cs->index &&
		    strcmp(v2 ? ld->ts[i].scope : ld->ts[i].resource, v2 ? t.scope : t.resource) == 0)
			break;
	if (i == ld->n_ts && i == MAX_SOURCES) {
		config_token_source_free(&t);
		config_load_error(ld, cs->line, "[%s] too many token sources (at most %d)", cs->title, MAX_SOURCES);
		return SIZE_MAX;
	}
	if (i == ld->n_ts) {
		if (c->kind == CRED_MANAGED_IDENTITY)
			t.token_endpoint = strdup(c->managed_identity_endpoint);
		else if (asprintf(&t.token_endpoint, "%s/%s/oauth2/%stoken", c->authority, c->tenant,
				  v2 ? "v2.0/" : "") < 0)
			t.token_endpoint = NULL;
		if (!t.token_endpoint)
			goto nomem;
		ld->ts[ld->n_ts++] = t;
	} else {
		config_token_source_free(&t);
	}
	return i;
nomem:
	config_token_source_free(&t);
	config_oom(ld);
	return SIZE_MAX;
}
