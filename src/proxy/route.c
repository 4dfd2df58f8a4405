/*
 * route.c - route selection and upstream URL construction.
 *
 * The request-target is used as received (RFC 9112 3.2): origin-form
 * "/path?query" or absolute-form "http://host/path?query". Absolute-form
 * only selects among the configured routes (its authority stands in for the
 * Host header, RFC 9112 3.2.2); it never chooses where the request goes.
 */
#include "proxy/route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/text.h"

static const char *const verdict_reasons[] = {
    [ROUTE_OK] = "ok",
    [ROUTE_NO_MATCH] = "no route matches this host and path",
    [ROUTE_BAD_TARGET] = "the request-target is not a valid origin-form or absolute-form target",
    [ROUTE_FOREIGN_HOST] = "absolute-form target names a host this proxy does not serve",
    [ROUTE_PATH_TRAVERSAL] = "the path contains dot segments that could leave the route's prefix",
    [ROUTE_TOO_LONG] = "the request-target is too long",
    [ROUTE_BAD_HOST] = "the Host header is not a valid host[:port]",
};

const char *route_verdict_reason(enum route_verdict v)
{
	if ((size_t)v < sizeof verdict_reasons / sizeof verdict_reasons[0] && verdict_reasons[v])
		return verdict_reasons[v];
	return "unknown";
}

/* Is seg[0..n) "." or ".."? */
static bool is_dot_segment(const char *seg, size_t n)
{
	return (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
}

int route_path_traversal(const char *path, size_t len)
{
	char seg[3]; /* only short segments can be dot segments */
	size_t seglen = 0;
	bool long_seg = false;

	for (size_t i = 0; i <= len; i++) {
		int c;
		if (i == len) {
			c = '/';
		} else if (path[i] == '%') {
			if (i + 2 >= len)
				return -1; /* '%' without two hex digits */
			int h = text_hexval((unsigned char)path[i + 1]), l = text_hexval((unsigned char)path[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			if (c == 0)
				return -1;
			i += 2;
		} else {
			c = (unsigned char)path[i];
		}
		if (c == '/' || c == '\\') {
			if (!long_seg && is_dot_segment(seg, seglen))
				return 1;
			seglen = 0;
			long_seg = false;
		} else if (seglen < sizeof seg) {
			seg[seglen++] = (char)c;
		} else {
			long_seg = true;
		}
	}
	return 0;
}

/* ":" port, port = 0..65535 in at most 5 digits, or nothing at all. */
static bool port_ok(const char *p, size_t n)
{
	if (n == 0)
		return true;
	if (p[0] != ':' || n < 2 || n > 6)
		return false;
	unsigned v = 0;
	for (size_t i = 1; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v <= 65535;
}

/* A host name or IPv4 address: letters, digits, '-', '.', '_'. RFC 3986's
 * reg-name also allows sub-delims and escapes, which no DNS name has; a
 * Host of "p, evil" or "user@p" is refused, not cut. */
static bool name_char(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

/* Copy the host part of a Host value or authority (RFC 9110 7.2: host
 * [":" port]; strip port and brackets, lowercase) into out. Returns false
 * if it is malformed, does not fit or is empty. */
static bool host_only(const char *s, size_t n, char *out, size_t cap)
{
	const char *h = s; /* the host, without brackets */
	size_t len = 0, after;
	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb)
			return false;
		h = s + 1;
		len = (size_t)(rb - h);
		for (size_t i = 0; i < len; i++)
			if (!isxdigit((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
				return false;
		after = (size_t)(rb - s) + 1;
	} else {
		while (len < n && name_char((unsigned char)s[len]))
			len++;
		after = len;
	}
	if (len == 0 || len >= cap || !port_ok(s + after, n - after))
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)h[i]);
	out[len] = '\0';
	if (len > 1 && out[len - 1] == '.') /* "host." names the same host */
		out[len - 1] = '\0';
	return true;
}

/* Does path[0..len) fall under prefix? "/a/" covers "/a/..." and "/a";
 * "/a" covers "/a", "/a/..." but not "/ab". */
static bool prefix_covers(const char *prefix, const char *path, size_t len)
{
	size_t pl = strlen(prefix);
	if (pl > 1 && prefix[pl - 1] == '/' && len == pl - 1 && memcmp(path, prefix, len) == 0)
		return true;
	if (len < pl || memcmp(path, prefix, pl) != 0)
		return false;
	return prefix[pl - 1] == '/' || len == pl || path[pl] == '/';
}

/* Split an absolute-form target into host and path; false if malformed. */
static bool split_absolute(const char *t, char *host, size_t cap, const char **path)
{
	size_t skip;
	if (strncasecmp(t, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(t, "https://", 8) == 0)
		skip = 8;
	else
		return false;
	const char *auth = t + skip;
	size_t alen = strcspn(auth, "/?#");
	if (memchr(auth, '@', alen)) /* userinfo is never acceptable */
		return false;
	if (!host_only(auth, alen, host, cap))
		return false;
	*path = auth[alen] == '/' ? auth + alen : NULL;
	return *path != NULL;
}

/* True when some route serves `host` (by match_host or its upstream host). */
static bool host_served(const struct config *cfg, const char *host)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct route_cfg *r = &cfg->routes[i];
		if ((r->match_host && strcmp(r->match_host, host) == 0) || strcmp(r->upstream.host, host) == 0)
			return true;
	}
	return false;
}

/*
 * A request-target is printable ASCII. Controls, space, DEL and bytes from
 * 0x80 are refused (every client percent-encodes them), and so are '\\'
 * (IIS reads it as '/', a way around prefix matching and dot-segment
 * checks) and '"', '<', '>'. RFC 3986 excludes '^', '`', '{', '|', '}' too,
 * but the WHATWG URL rules that Node (fetch, dynamics-web-api) and browsers
 * follow leave them unencoded in a query (and '|', '^' in a path), so an
 * OData filter like contains(name,'{x}') arrives with them raw: accepted.
 */
static bool target_chars_ok(const char *t)
{
	static const char excluded[] = "\\\"<>";
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p <= 0x20 || *p >= 0x7F || strchr(excluded, *p))
			return false;
	return true;
}

enum route_verdict route_select(const struct config *cfg, const struct route_request *rq, struct route_match *m)
{
	const char *t = rq->target;
	memset(m, 0, sizeof *m);
	if (!t || !*t)
		return ROUTE_BAD_TARGET;
	if (strlen(t) > ROUTE_MAX_TARGET)
		return ROUTE_TOO_LONG;
	if (t[0] == '/') {
		m->path = t;
		if (rq->host && !host_only(rq->host, strlen(rq->host), m->host, sizeof m->host))
			return ROUTE_BAD_HOST;
	} else {
		if (!split_absolute(t, m->host, sizeof m->host, &m->path))
			return ROUTE_BAD_TARGET;
		if (!host_served(cfg, m->host))
			return ROUTE_FOREIGN_HOST;
	}
	m->path_len = strcspn(m->path, "?#");
	if (m->path[m->path_len] == '#')
		return ROUTE_BAD_TARGET;
	int trav = route_path_traversal(m->path, m->path_len);
	if (trav < 0)
		return ROUTE_BAD_TARGET;
	if (trav > 0)
		return ROUTE_PATH_TRAVERSAL;
	if (!target_chars_ok(t))
		return ROUTE_BAD_TARGET;

	size_t best_len = 0;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct route_cfg *r = &cfg->routes[i];
		if (r->match_host && strcmp(r->match_host, m->host) != 0)
			continue;
		if (!prefix_covers(r->match_path, m->path, m->path_len))
			continue;
		size_t pl = strlen(r->match_path);
		if (!m->route || pl > best_len) {
			m->route = r;
			m->index = i;
			best_len = pl;
		}
	}
	return m->route ? ROUTE_OK : ROUTE_NO_MATCH;
}

long route_upstream_url(const struct route_match *m, char *out, size_t cap)
{
	const struct route_cfg *r = m->route;
	const char *rest = m->path;
	size_t rest_len = m->path_len;
	if (r->strip_prefix) {
		size_t pl = strlen(r->match_path);
		if (pl > 0 && r->match_path[pl - 1] == '/')
			pl--; /* keep the slash that starts the remainder */
		if (pl > rest_len)
			pl = rest_len;
		rest += pl;
		rest_len -= pl;
	}
	const char *query = m->path + m->path_len; /* "" or "?..." */
	const char *parts[] = {r->upstream.origin, r->upstream.path, rest_len == 0 ? "/" : "", rest, query};
	size_t lens[] = {strlen(parts[0]), strlen(parts[1]), strlen(parts[2]), rest_len, strlen(query)};
	size_t n = 0;
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		if (lens[i] >= cap - n)
			return -1; /* the NUL must fit too */
		memcpy(out + n, parts[i], lens[i]);
		n += lens[i];
	}
	out[n] = '\0';
	return (long)n;
}
