/*
 * config_syntax.c - the syntax of single configuration values (see
 * config_syntax.h). Everything here is strict on purpose: a value either
 * has exactly the documented shape or is rejected with a message, never
 * "mostly" accepted (no strtol prefixes, no resolver lookups).
 */
#include "config/config_syntax.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -1;
}

void config_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

bool config_has_ctl_or_space(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return true;
	return false;
}

int config_parse_uint(const char *s, size_t len, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > max)
			return -1;
	}
	*out = v;
	return 0;
}

int config_parse_port(const char *s, size_t len, bool allow_zero, unsigned *port)
{
	unsigned long long v;

	if (config_parse_uint(s, len, 65535, &v) < 0 || (v == 0 && !allow_zero))
		return -1;
	*port = (unsigned)v;
	return 0;
}

bool config_is_guid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(s) != sizeof shape - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

bool config_is_host_name(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? s[i] : '.';
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-' || s[i - label] == '-')
				return false;
			label = 0;
		} else if (!(isalnum((unsigned char)c) || c == '-' || c == '_') || ++label > 63) {
			return false;
		}
	}
	return true;
}

bool config_is_loopback(const char *host)
{
	static const unsigned char v6_loopback[16] = {[15] = 1};
	unsigned char a[16];

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	return inet_pton(AF_INET6, host, a) == 1 && memcmp(a, v6_loopback, sizeof a) == 0;
}

bool config_glob_match(const char *g, const char *s)
{
	if (*g == '\0')
		return *s == '\0';
	if (*g == '*' || *g == '#') {
		for (const char *p = s; *p; p++) {
			if (*g == '#' && !isdigit((unsigned char)*p))
				return false;
			if (config_glob_match(g + 1, p + 1))
				return true;
		}
		return false;
	}
	return *g == *s && config_glob_match(g + 1, s + 1);
}

/* ---- URLs ---- */

void config_url_free(struct url *u)
{
	free(u->scheme);
	free(u->host);
	free(u->origin);
	free(u->path);
	memset(u, 0, sizeof *u);
}

/* host[:port] or [v6][:port], a[0..len). */
static int url_host_port(const char *a, size_t len, struct url *u, char *err, size_t n)
{
	const char *h = a, *colon;
	size_t hlen;
	unsigned char bin[16];

	if (len > 0 && a[0] == '[') {
		const char *close = memchr(a, ']', len);
		if (!close)
			return fail(err, n, "missing ']' after the IPv6 address");
		h = a + 1;
		hlen = (size_t)(close - h);
		colon = close + 1 < a + len ? close + 1 : NULL;
		if (colon && *colon != ':')
			return fail(err, n, "unexpected text after ']'");
	} else {
		colon = memchr(a, ':', len);
		hlen = colon ? (size_t)(colon - a) : len;
	}
	if (hlen == 0)
		return fail(err, n, "no host");
	if (colon && config_parse_port(colon + 1, len - (size_t)(colon + 1 - a), false, &u->port) < 0)
		return fail(err, n, "bad port (1-65535)");
	if (!(u->host = strndup(h, hlen)))
		return fail(err, n, "out of memory");
	config_lower(u->host);
	if (h != a ? inet_pton(AF_INET6, u->host, bin) != 1 : !config_is_host_name(h, hlen))
		return fail(err, n, "bad host name '%s'", u->host);
	return 0;
}

static int url_split(const char *s, struct url *u, char *err, size_t n)
{
	const char *sep = strstr(s, "://"), *auth, *path;
	size_t alen, plen;
	unsigned dflt;
	bool v6;
	int rc;

	if (!sep || ((sep - s != 5 || strncasecmp(s, "https", 5)) && (sep - s != 4 || strncasecmp(s, "http", 4))))
		return fail(err, n, "must be an https:// URL");
	if (config_has_ctl_or_space(s))
		return fail(err, n, "must not contain spaces or control characters");
	auth = sep + 3;
	alen = strcspn(auth, "/?#");
	path = auth + alen;
	if (memchr(auth, '@', alen))
		return fail(err, n, "must not contain user info (user@)");
	if (strpbrk(path, "?#"))
		return fail(err, n, "must not have a query or fragment");
	if (!(u->scheme = strndup(s, (size_t)(sep - s))))
		return fail(err, n, "out of memory");
	config_lower(u->scheme);
	u->port = dflt = strcmp(u->scheme, "https") == 0 ? 443 : 80;
	if (url_host_port(auth, alen, u, err, n) < 0)
		return -1;
	for (plen = strlen(path); plen > 0 && path[plen - 1] == '/'; plen--)
		;
	if (!(u->path = strndup(path, plen)))
		return fail(err, n, "out of memory");
	v6 = strchr(u->host, ':') != NULL;
	if (u->port == dflt)
		rc = asprintf(&u->origin, "%s://%s%s%s", u->scheme, v6 ? "[" : "", u->host, v6 ? "]" : "");
	else
		rc = asprintf(&u->origin, "%s://%s%s%s:%u", u->scheme, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
	if (rc < 0) {
		u->origin = NULL;
		return fail(err, n, "out of memory");
	}
	return 0;
}

int config_url_parse(const char *s, struct url *u, char *err, size_t n)
{
	config_url_free(u);
	if (url_split(s, u, err, n) == 0)
		return 0;
	config_url_free(u);
	return -1;
}

/* ---- numbers with units ---- */

int config_parse_duration(const char *s, long long *ms)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000}, {"h", 3600000}};
	size_t digits = strspn(s, "0123456789");
	unsigned long long v;

	if (config_parse_uint(s, digits, 1000000000ULL, &v) < 0)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s + digits, units[i].unit) == 0) {
			*ms = (long long)v * units[i].ms;
			return 0;
		}
	}
	return -1;
}

const char *config_fmt_duration(long long ms, char *buf, size_t n)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, n, "%lldh", ms / 3600000);
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, n, "%lldm", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, n, "%llds", ms / 1000);
	else
		snprintf(buf, n, "%lldms", ms);
	return buf;
}

int config_parse_size(const char *s, unsigned long long *bytes)
{
	size_t digits = strspn(s, "0123456789");
	unsigned long long v, mult = 1;

	if (strcasecmp(s + digits, "k") == 0)
		mult = 1024;
	else if (strcasecmp(s + digits, "m") == 0)
		mult = 1024 * 1024;
	else if (s[digits])
		return -1;
	if (config_parse_uint(s, digits, 1ULL << 40, &v) < 0)
		return -1;
	*bytes = v * mult;
	return 0;
}

/* ---- addresses ---- */

int config_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port, char *err, size_t n)
{
	const char *p = s, *colon = strrchr(s, ':');
	char addr[64] = "127.0.0.1";
	unsigned char bin[16];
	int af = AF_INET;

	if (s[strspn(s, "0123456789")] != '\0') {
		if (!colon)
			return fail(err, n, "must be ADDRESS:PORT, [IPV6]:PORT or PORT");
		if (s[0] == '[') {
			if (colon == s || colon[-1] != ']')
				return fail(err, n, "must be [IPV6]:PORT");
			af = AF_INET6;
			snprintf(addr, sizeof addr, "%.*s", (int)(colon - s - 2), s + 1);
		} else if (strchr(s, ':') != colon) {
			return fail(err, n, "an IPv6 address needs brackets: [IPV6]:PORT");
		} else if (strncasecmp(s, "localhost:", 10) != 0) {
			snprintf(addr, sizeof addr, "%.*s", (int)(colon - s), s);
		}
		p = colon + 1;
	}
	if (inet_pton(af, addr, bin) != 1)
		return fail(err, n, "'%s' is not a numeric IPv%d address (names other than localhost are not resolved)",
			    addr, af == AF_INET ? 4 : 6);
	if (config_parse_port(p, strlen(p), true, port) < 0)
		return fail(err, n, "bad port '%s' (0-65535, 0 = any free port)", p);
	if (strlen(addr) >= hostlen)
		return fail(err, n, "address too long");
	memcpy(host, addr, strlen(addr) + 1);
	return 0;
}

/* One connect-to host field: empty, [IPv6] or a host name; advances *s. */
static bool ct_host(const char **s)
{
	const char *h = *s;
	size_t len;
	char buf[64];
	unsigned char bin[16];

	if (*h == '[') {
		len = strcspn(h, "]");
		if (h[len] != ']' || len - 1 >= sizeof buf)
			return false;
		snprintf(buf, sizeof buf, "%.*s", (int)len - 1, h + 1);
		*s = h + len + 1;
		return inet_pton(AF_INET6, buf, bin) == 1;
	}
	len = strcspn(h, ":");
	*s = h + len;
	return len == 0 || config_is_host_name(h, len);
}

static bool ct_port(const char **s)
{
	size_t len = strcspn(*s, ":");
	unsigned port;
	bool ok = len == 0 || config_parse_port(*s, len, false, &port) == 0;

	*s += len;
	return ok;
}

bool config_connect_to_valid(const char *e)
{
	return ct_host(&e) && *e++ == ':' && ct_port(&e) && *e++ == ':' && ct_host(&e) && *e++ == ':' && ct_port(&e) &&
	       *e == '\0';
}

/* The entry's first HOST:PORT against an upstream's host (lowercase, IPv6
 * without brackets) and port: as curl matches it, case-insensitively. */
bool config_connect_to_matches(const char *e, const char *host, unsigned port)
{
	const char *h = e;
	size_t hl;
	unsigned want;

	if (*e == '[') {
		h = e + 1;
		hl = strcspn(h, "]");
		e = h + hl + (h[hl] == ']');
	} else {
		hl = strcspn(e, ":");
		e += hl;
	}
	if (hl > 0 && (strlen(host) != hl || strncasecmp(h, host, hl) != 0))
		return false;
	if (*e++ != ':')
		return true; /* not an entry config_connect_to_valid lets in: let curl decide */
	size_t pl = strcspn(e, ":");
	return pl == 0 || config_parse_port(e, pl, false, &want) != 0 || want == port;
}
