/*
 * connto.c - the connect_to entries per upstream (see connto.h).
 */
#include "proxy/connto.h"

#include <stdlib.h>
#include <string.h>

#include "config/config_syntax.h"
#include "util/slist.h"

int connto_init(struct connto *c, const struct proxy_cfg *cfg)
{
	*c = (struct connto){0};
	for (size_t i = 0; i < cfg->n_connect_to; i++) {
		if (!slist_add(&c->all, cfg->connect_to[i].entry)) {
			connto_free(c);
			return -1;
		}
	}
	return 0;
}

/* The entries of c that can apply to host:port into *out (NULL when
 * none). false when out of memory (*out then NULL). */
static bool filtered(const struct connto *c, const char *host, unsigned port, struct curl_slist **out)
{
	*out = NULL;
	for (const struct curl_slist *e = c->all; e != NULL; e = e->next) {
		if (config_connect_to_matches(e->data, host, port) && !slist_add(out, e->data)) {
			curl_slist_free_all(*out);
			*out = NULL;
			return false;
		}
	}
	return true;
}

static bool same_entries(const struct connto *c, const struct proxy_cfg *cfg)
{
	const struct curl_slist *e = c->all;
	for (size_t i = 0; i < cfg->n_connect_to; i++, e = e->next)
		if (e == NULL || strcmp(e->data, cfg->connect_to[i].entry) != 0)
			return false;
	return e == NULL;
}

int connto_adopt(struct connto *c, const struct proxy_cfg *cfg)
{
	struct connto fresh, *old;

	if (same_entries(c, cfg))
		return 0;
	if ((old = malloc(sizeof *old)) == NULL)
		return -1;
	if (connto_init(&fresh, cfg) < 0) {
		free(old);
		return -1;
	}
	*old = *c;
	fresh.older = old;
	*c = fresh;
	return 0;
}

struct curl_slist *connto_for(struct connto *c, const char *host, unsigned port)
{
	struct curl_slist *list;
	char *copy;

	if (c->all == NULL)
		return NULL;
	for (unsigned i = 0; i < c->n; i++)
		if (c->slot[i].port == port && strcmp(c->slot[i].host, host) == 0)
			return c->slot[i].list;
	if (c->n == CONNTO_SLOTS || !filtered(c, host, port, &list))
		return c->all;
	if ((copy = strdup(host)) == NULL) {
		curl_slist_free_all(list);
		return c->all;
	}
	c->slot[c->n].host = copy;
	c->slot[c->n].port = port;
	c->slot[c->n].list = list;
	c->n++;
	return list;
}

void connto_free(struct connto *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->n; i++) {
		free(c->slot[i].host);
		curl_slist_free_all(c->slot[i].list);
	}
	curl_slist_free_all(c->all);
	if (c->older != NULL) {
		connto_free(c->older);
		free(c->older);
	}
	*c = (struct connto){0};
}
