/*
 * config_caller.c - [caller:NAME] sections and the routes' `callers` lists.
 *
 * A caller says how a client is recognised (inbound_key_file, basic_user +
 * basic_password_hash, tls_client_subject, allow_from: every key set must
 * match) and may name a credential used instead of the route's, for every
 * route (`credential`) or for one (`credential.ROUTE`). Each such
 * (credential, route audience) pair becomes a token source like a route's,
 * so the token engine fetches and caches it the same way. The built config
 * holds, per caller, a view of every route with the caller's credential and
 * token source, so the request path only swaps its route pointer.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "util/wipe.h"

void config_caller_free(struct caller_sec *cs)
{
	if (!cs)
		return;
	free(cs->c.name);
	wipe_free_str(cs->c.inbound_key);
	free(cs->c.basic_user);
	wipe_free_str(cs->c.basic_password_hash);
	free(cs->c.tls_client_subject);
	cidr_list_free(&cs->c.allow_from);
	free(cs->c.impersonate);
	free(cs->c.routes);
	free(cs->credential);
	for (size_t i = 0; i < cs->n_per_route; i++) {
		free(cs->per_route[i].route);
		free(cs->per_route[i].credential);
	}
	memset(cs, 0, sizeof *cs);
}

static bool good_name(const char *n)
{
	size_t len = strlen(n);
	return len && len <= 64 &&
	       strspn(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

void config_caller_route_key(struct load *ld, struct section *s, const char *route, const char *value, int line)
{
	struct caller_sec *cs = s->obj;
	char key[80];

	snprintf(key, sizeof key, "credential.%.64s", route);
	if (!good_name(route)) {
		config_sec_error(ld, line, s, key, "unknown key (credential.ROUTE names a [route:ROUTE])");
		return;
	}
	for (size_t i = 0; i < cs->n_per_route; i++)
		if (strcmp(cs->per_route[i].route, route) == 0) {
			config_sec_error(ld, line, s, key, "duplicate key (first set on line %d)",
					 cs->per_route[i].line);
			return;
		}
	if (!*value || !good_name(value)) {
		config_sec_error(ld, line, s, key, "must name a [credential:NAME]");
		return;
	}
	if (cs->n_per_route == CONFIG_MAX_ROUTES) {
		config_sec_error(ld, line, s, key, "too many credential.ROUTE keys");
		return;
	}
	cs->per_route[cs->n_per_route].route = strdup(route);
	cs->per_route[cs->n_per_route].credential = strdup(value);
	cs->per_route[cs->n_per_route].line = line;
	if (!cs->per_route[cs->n_per_route].route || !cs->per_route[cs->n_per_route].credential)
		config_sec_error(ld, line, s, key, "out of memory");
	cs->n_per_route++;
}

/* "a, b ,c" -> indices of [caller:a] ... into rs->r.callers. */
static void resolve_route_callers(struct load *ld, struct section *s)
{
	struct route_sec *rs = s->obj;
	int line = config_seen_line(s, "callers");

	if (!rs->callers)
		return;
	rs->r.callers = calloc(CONFIG_MAX_CALLERS, sizeof *rs->r.callers);
	if (!rs->r.callers) {
		config_sec_error(ld, line, s, "callers", "out of memory");
		return;
	}
	for (const char *e = rs->callers; *e;) {
		char one[72];
		size_t len = strcspn(e, ","), lead = strspn(e, " \t"), end = len;
		while (end > lead && isspace((unsigned char)e[end - 1]))
			end--;
		if (lead >= end || end - lead >= sizeof one) {
			config_sec_error(ld, line, s, "callers", "empty or over-long name in the list");
			return;
		}
		memcpy(one, e + lead, end - lead);
		one[end - lead] = '\0';
		const struct section *c = config_find_section(ld, SEC_CALLER, one);
		if (!c)
			config_sec_error(ld, line, s, "callers", "no [caller:%s] section", one);
		else if (rs->r.n_callers < CONFIG_MAX_CALLERS)
			rs->r.callers[rs->r.n_callers++] = c->index;
		e += len;
		if (*e == ',')
			e++;
	}
}

/* The route section with index `ri`. */
static struct section *route_at(struct load *ld, size_t ri)
{
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_ROUTE && ld->secs[i]->index == ri)
			return ld->secs[i];
	return NULL;
}

/* The credential section named `name` (marked used), or NULL (reported). */
static struct section *credential_named(struct load *ld, struct section *s, const char *key, int line, const char *name)
{
	struct section *c = config_find_section(ld, SEC_CREDENTIAL, name);
	if (!c)
		config_sec_error(ld, line, s, key, "no [credential:%s] section", name);
	else
		c->used = true;
	return c;
}

/* Token sources of this caller: (its credential, each route's audience). */
static void caller_sources(struct load *ld, struct section *s)
{
	struct caller_sec *cs = s->obj;
	struct section *all = NULL;

	for (size_t r = 0; r < CONFIG_MAX_ROUTES; r++)
		cs->source[r] = SIZE_MAX;
	if (cs->credential)
		all = credential_named(ld, s, "credential", config_seen_line(s, "credential"), cs->credential);
	for (size_t r = 0; r < ld->n_routes; r++) {
		struct section *rsec = route_at(ld, r), *cred = all;
		char key[80];
		for (size_t k = 0; k < cs->n_per_route; k++)
			if (rsec && strcmp(cs->per_route[k].route, rsec->name) == 0) {
				snprintf(key, sizeof key, "credential.%s", rsec->name);
				cred = credential_named(ld, s, key, cs->per_route[k].line, cs->per_route[k].credential);
			}
		const struct route_sec *rs = rsec ? rsec->obj : NULL;
		if (!cred || !rs || ld->n_errors || rs->r.token_source >= ld->n_ts)
			continue;
		const struct token_source_cfg *rt = &ld->ts[rs->r.token_source];
		cs->source[r] = config_token_source(ld, cred, rt->scope, rt->resource);
		cs->cred[r] = cred->index;
	}
	for (size_t k = 0; k < cs->n_per_route; k++)
		if (!config_find_section(ld, SEC_ROUTE, cs->per_route[k].route)) {
			char key[80];
			snprintf(key, sizeof key, "credential.%s", cs->per_route[k].route);
			config_sec_error(ld, cs->per_route[k].line, s, key, "no [route:%s] section",
					 cs->per_route[k].route);
		}
}

static void check_caller(struct load *ld, struct section *s)
{
	struct caller_sec *cs = s->obj;
	const struct caller_cfg *c = &cs->c;

	if (!c->inbound_key && !c->basic_user && !c->basic_password_hash && !c->tls_client_subject && !c->allow_from.n)
		config_sec_error(ld, s->line, s, NULL,
				 "needs at least one of inbound_key_file, basic_user (with basic_password_hash), "
				 "tls_client_subject or allow_from");
	if (!c->basic_user != !c->basic_password_hash)
		config_sec_error(ld, s->line, s, NULL, "basic_user and basic_password_hash go together");
	if (c->tls_client_subject && !ld->proxy.tls_client_ca)
		config_sec_error(ld, config_seen_line(s, "tls_client_subject"), s, "tls_client_subject",
				 "needs [proxy] tls_client_ca (client certificates are asked for only then)");
	for (size_t i = 0; i < ld->n_secs; i++) {
		const struct section *o = ld->secs[i];
		const struct caller_sec *oc = o->obj;
		if (o == s)
			break;
		if (o->kind == SEC_CALLER && c->basic_user && oc->c.basic_user &&
		    strcmp(c->basic_user, oc->c.basic_user) == 0)
			config_sec_error(ld, config_seen_line(s, "basic_user"), s, "basic_user",
					 "same basic_user as [%s] on line %d", o->title, o->line);
	}
	caller_sources(ld, s);
}

void config_callers_validate(struct load *ld)
{
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_ROUTE)
			resolve_route_callers(ld, ld->secs[i]);
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_CALLER)
			check_caller(ld, ld->secs[i]);
}

int config_callers_build(struct load *ld, struct config *cfg)
{
	cfg->callers = calloc(ld->n_callers + 1, sizeof *cfg->callers);
	if (!cfg->callers)
		return -1;
	for (size_t i = 0; i < ld->n_secs; i++) {
		struct section *s = ld->secs[i];
		if (s->kind != SEC_CALLER)
			continue;
		struct caller_sec *cs = s->obj;
		struct caller_cfg *c = &cfg->callers[cfg->n_callers];
		*c = cs->c;
		memset(&cs->c, 0, sizeof cs->c);
		cfg->n_callers++;
		if (!(c->routes = calloc(cfg->n_routes + 1, sizeof *c->routes)))
			return -1;
		for (size_t r = 0; r < cfg->n_routes; r++) {
			c->routes[r] = cfg->routes[r];
			if (cs->source[r] != SIZE_MAX) {
				c->routes[r].token_source = cs->source[r];
				c->routes[r].credential = cs->cred[r];
			}
		}
	}
	return 0;
}

void config_callers_free(struct config *cfg)
{
	for (size_t i = 0; cfg->callers && i < cfg->n_callers; i++) {
		struct caller_cfg *c = &cfg->callers[i];
		free(c->name);
		wipe_free_str(c->inbound_key);
		free(c->basic_user);
		wipe_free_str(c->basic_password_hash);
		free(c->tls_client_subject);
		cidr_list_free(&c->allow_from);
		free(c->impersonate);
		free(c->routes); /* shallow views: their strings are the routes' */
	}
	free(cfg->callers);
	cfg->callers = NULL;
	cfg->n_callers = 0;
}
