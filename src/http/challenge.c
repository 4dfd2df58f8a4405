/*
 * challenge.c - lenient WWW-Authenticate parsing.
 *
 * Grammar (RFC 9110 11.6.1): challenge = auth-scheme [ 1*SP ( token68 /
 * #auth-param ) ], auth-param = token "=" ( token / quoted-string ). We
 * also accept what real servers send: unquoted values holding ':' and '/'
 * (Dataverse), spaces around '=', empty elements. A new challenge starts
 * where a bare token is followed by a space and not by '='.
 */
#include "http/challenge.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "http/hdr.h"

struct cursor {
	const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static size_t take_token(struct cursor *c, const char **start)
{
	*start = c->p;
	while (c->p < c->end && hdr_is_tchar((unsigned char)*c->p))
		c->p++;
	return (size_t)(c->p - *start);
}

/* Copy a value (quoted-string with escapes, or bare up to ',') into out. */
static void take_value(struct cursor *c, char *out, size_t cap)
{
	size_t o = 0;
	if (c->p < c->end && *c->p == '"') {
		c->p++;
		while (c->p < c->end && *c->p != '"') {
			if (*c->p == '\\' && c->p + 1 < c->end)
				c->p++;
			if (out && o + 1 < cap)
				out[o++] = *c->p;
			c->p++;
		}
		if (c->p < c->end)
			c->p++; /* closing quote */
	} else {
		const char *s = c->p;
		while (c->p < c->end && *c->p != ',')
			c->p++;
		const char *e = c->p;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		for (; s < e; s++)
			if (out && o + 1 < cap)
				out[o++] = *s;
	}
	if (out && cap > 0)
		out[o] = '\0';
}

static char *param_slot(struct challenge *ch, const char *name, size_t n, size_t *cap)
{
#define SLOT(key, field)                                                                                               \
	if (n == sizeof key - 1 && strncasecmp(name, key, n) == 0) {                                                   \
		*cap = sizeof ch->field;                                                                               \
		return ch->field;                                                                                      \
	}
	SLOT("authorization_uri", authorization_uri)
	SLOT("authorization", authorization_uri) /* older Entra spelling */
	SLOT("resource_id", resource_id)
	SLOT("realm", realm)
	SLOT("error", error)
	SLOT("error_description", error_description)
	SLOT("scope", scope)
#undef SLOT
	*cap = 0;
	return NULL;
}

/* Parse the parameters after a scheme until the next challenge or end. */
static void take_params(struct cursor *c, struct challenge *ch, bool keep)
{
	for (;;) {
		skip_ws(c);
		while (c->p < c->end && (*c->p == ',' || *c->p == ' ' || *c->p == '\t'))
			c->p++;
		if (c->p >= c->end)
			return;
		struct cursor save = *c;
		const char *name;
		size_t n = take_token(c, &name);
		skip_ws(c);
		if (n == 0 || c->p >= c->end || *c->p != '=') {
			if (n == 0) { /* junk byte: skip it */
				c->p++;
				continue;
			}
			*c = save; /* a bare token: the next challenge's scheme (or token68 junk) */
			return;
		}
		c->p++; /* '=' */
		while (c->p < c->end && *c->p == '=')
			c->p++; /* token68 padding */
		skip_ws(c);
		size_t cap = 0;
		char *slot = keep ? param_slot(ch, name, n, &cap) : NULL;
		take_value(c, slot, cap);
	}
}

int challenge_parse(const char *s, size_t len, struct challenge *out)
{
	struct cursor c = {s, s ? s + len : s};
	memset(out, 0, sizeof *out);
	if (!s)
		return -1;
	while (c.p < c.end) {
		while (c.p < c.end && (*c.p == ',' || *c.p == ' ' || *c.p == '\t'))
			c.p++;
		const char *scheme;
		size_t n = take_token(&c, &scheme);
		if (n == 0) {
			if (c.p < c.end)
				c.p++;
			continue;
		}
		bool bearer = !out->bearer && n == 6 && strncasecmp(scheme, "Bearer", 6) == 0;
		if (bearer)
			out->bearer = true;
		take_params(&c, out, bearer);
	}
	return out->bearer ? 0 : -1;
}

void challenge_url_host(const char *url, char *out, size_t cap)
{
	size_t o = 0;
	if (cap == 0)
		return;
	out[0] = '\0';
	if (!url)
		return;
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	const char *at = NULL;
	for (const char *q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++)
		if (*q == '@')
			at = q;
	if (at)
		p = at + 1;
	for (; *p && *p != '/' && *p != ':' && *p != '?' && *p != '#' && o + 1 < cap; p++)
		out[o++] = (char)tolower((unsigned char)*p);
	out[o] = '\0';
}
