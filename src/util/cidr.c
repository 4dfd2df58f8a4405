/*
 * cidr.c - client address allow-lists (see cidr.h).
 */
#include "util/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int cidr_parse(const char *s, struct cidr *out)
{
	char buf[64];
	size_t n = strlen(s);
	memset(out, 0, sizeof *out);
	if (n == 0 || n >= sizeof buf)
		return -1;
	memcpy(buf, s, n + 1);
	char *slash = strchr(buf, '/');
	long prefix = -1;
	if (slash) {
		*slash = '\0';
		const char *p = slash + 1;
		if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 3)
			return -1;
		prefix = strtol(p, NULL, 10);
	}
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		if (prefix > 32)
			return -1;
		out->prefix = prefix < 0 ? 32 : (unsigned)prefix;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		if (prefix > 128)
			return -1;
		out->prefix = prefix < 0 ? 128 : (unsigned)prefix;
	} else {
		return -1;
	}
	/* Clear host bits so "10.1.2.3/8" means 10.0.0.0/8. */
	size_t len = out->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < len; i++) {
		unsigned bits = out->prefix > i * 8 ? out->prefix - (unsigned)i * 8 : 0;
		if (bits < 8)
			out->addr[i] &= (unsigned char)(0xff00u >> bits);
	}
	return 0;
}

int cidr_list_add(struct cidr_list *l, const struct cidr *c)
{
	struct cidr *v = realloc(l->v, (l->n + 1) * sizeof *v);
	if (!v)
		return -1;
	v[l->n++] = *c;
	l->v = v;
	return 0;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *net, unsigned prefix)
{
	size_t whole = prefix / 8;
	unsigned rest = prefix % 8;
	if (memcmp(a, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff00u >> rest);
	return (a[whole] & mask) == net[whole];
}

bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	unsigned char a4[4], a6[16];
	bool have4 = false, have6 = false;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		memcpy(a4, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		have4 = true;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(a6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		have6 = true;
		if (memcmp(a6, mapped, sizeof mapped) == 0) {
			memcpy(a4, a6 + 12, 4);
			have4 = true;
		}
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct cidr *c = &l->v[i];
		if ((c->family == AF_INET && have4 && prefix_equal(a4, c->addr, c->prefix)) ||
		    (c->family == AF_INET6 && have6 && prefix_equal(a6, c->addr, c->prefix)))
			return true;
	}
	return false;
}

void cidr_list_free(struct cidr_list *l)
{
	if (!l)
		return;
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
