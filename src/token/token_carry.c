/*
 * token_carry.c - a reloaded configuration's engine starts with the tokens
 * of the running engine whose sources did not change (token.h:
 * token_engine_adopt), so a SIGHUP costs no token requests.
 */
#include <stdlib.h>
#include <string.h>

#include "token/token_int.h"

/* Same endpoint, audience and credential: a token of o is good for d. */
static bool same_source(const struct tsrc *d, const struct tsrc *o)
{
	const struct token_source_cfg *a = d->cfg, *b = o->cfg;

	return strcmp(a->token_endpoint, b->token_endpoint) == 0 && strcmp(a->resource, b->resource) == 0 &&
	       (a->scope == NULL) == (b->scope == NULL) && (a->scope == NULL || strcmp(a->scope, b->scope) == 0) &&
	       cred_same(d->cred, o->cred);
}

/* Copy o's current token into d (d's engine not started yet). */
static bool carry_token(struct tsrc *d, struct tsrc *o, long long now)
{
	bool ok = false;

	if (pthread_mutex_lock(&o->mu) != 0)
		abort();
	if (o->hdr != NULL && now < o->usable_until_ms && (d->hdr = malloc(o->hdr_len + 1)) != NULL) {
		memcpy(d->hdr, o->hdr, o->hdr_len + 1);
		d->hdr_len = o->hdr_len;
		d->gen = o->gen;
		d->usable_until_ms = o->usable_until_ms;
		/* the old engine's schedule is its own: refresh half way to the end */
		d->next_due_ms = now + (o->usable_until_ms - now) / 2;
		ok = true;
	}
	pthread_mutex_unlock(&o->mu);
	return ok;
}

size_t token_engine_adopt(struct token_engine *te, struct token_engine *old)
{
	long long now;
	size_t kept = 0;

	if (te == NULL || old == NULL || te->started)
		return 0;
	now = te->clock();
	for (size_t i = 0; i < te->n; i++)
		for (size_t j = 0; j < old->n; j++)
			if (same_source(&te->src[i], &old->src[j])) {
				kept += carry_token(&te->src[i], &old->src[j], now);
				break;
			}
	return kept;
}
