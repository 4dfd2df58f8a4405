/*
 * cidr.h - client address allow-lists: IPv4 and IPv6 networks in CIDR
 * notation ("10.0.0.0/8", "::1", "fd00::/8"); a bare address is a /32 or
 * /128. IPv4-mapped IPv6 clients (::ffff:a.b.c.d) match IPv4 networks.
 */
#ifndef S2S_CIDR_H
#define S2S_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct cidr {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network address, host bits cleared */
	unsigned prefix;        /* 0..32 or 0..128 */
};

struct cidr_list {
	struct cidr *v; /* owned */
	size_t n;
};

/* Parse one network. Returns 0, or -1 when s is not a network. */
int cidr_parse(const char *s, struct cidr *out);

/* Append a parsed network. 0, or -1 on allocation failure. */
int cidr_list_add(struct cidr_list *l, const struct cidr *c);

/* Is the address (AF_INET/AF_INET6 sockaddr) inside any network of l? */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

/* NULL-safe, idempotent. */
void cidr_list_free(struct cidr_list *l);

#endif
