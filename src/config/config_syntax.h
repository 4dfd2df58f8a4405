/*
 * config_syntax.h - value syntax of the configuration: URLs, host names,
 * GUIDs, durations, sizes, listen addresses, curl connect-to entries.
 *
 * Part of the config module (config.c is the only user): pure functions, no
 * I/O, no logging, thread-safe. Functions returning int give 0 on success or
 * -1 with a message in err (lowercase, no final period) when they take one.
 */
#ifndef S2S_CONFIG_SYNTAX_H
#define S2S_CONFIG_SYNTAX_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

void config_lower(char *s);
/* Any byte <= ' ' or >= 0x7f (controls, spaces, non-ASCII). */
bool config_has_ctl_or_space(const char *s);

/* s[0..len) as decimal digits only (no sign, no spaces), at most max. */
int config_parse_uint(const char *s, size_t len, unsigned long long max, unsigned long long *out);
/* 1-65535, or 0-65535 with allow_zero. */
int config_parse_port(const char *s, size_t len, bool allow_zero, unsigned *port);

/* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits of either case. */
bool config_is_guid(const char *s);
/* Host name or dotted IPv4: labels of 1-63 letters, digits, '-', '_' (no '-' at either end), <= 253 total. */
bool config_is_host_name(const char *s, size_t len);
/* localhost, 127.0.0.0/8 or ::1. */
bool config_is_loopback(const char *host);
/* '*' matches one or more characters, '#' one or more digits, anything else itself. */
bool config_glob_match(const char *glob, const char *s);

/*
 * Parse an absolute http:// or https:// URL into u (freed first, left empty
 * on failure): scheme and host lowercased, default port filled in, origin
 * built, path without trailing slashes. Rejects userinfo, a query, a
 * fragment, spaces and control characters. The caller decides whether http
 * is acceptable.
 */
int config_url_parse(const char *s, struct url *u, char *err, size_t n);
void config_url_free(struct url *u); /* NULL fields are fine; leaves u zeroed */

/* "500ms", "30s", "2m", "1h", or a bare number of seconds; into ms. -1 if malformed. */
int config_parse_duration(const char *s, long long *ms);
/* The shortest exact spelling: 3600000 -> "1h", 1500 -> "1500ms". */
const char *config_fmt_duration(long long ms, char *buf, size_t n);
/* Bytes with an optional k or m suffix (either case, 1024-based). -1 if malformed. */
int config_parse_size(const char *s, unsigned long long *bytes);

/*
 * "PORT" (on 127.0.0.1), "ADDRESS:PORT" or "[IPV6]:PORT"; port 0 allowed.
 * Only numeric addresses and "localhost" (-> 127.0.0.1) are accepted.
 * host receives the address without brackets.
 */
int config_parse_listen(const char *s, char *host, size_t hostlen, unsigned *port, char *err, size_t n);

/* curl's HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT; empty parts allowed, hosts may be [IPv6]. */
bool config_connect_to_valid(const char *entry);
/* Can the entry apply to an upstream at host (lowercase, IPv6 without
 * brackets) and port? Its HOST and PORT match, or are empty. An entry it
 * cannot read counts as matching (curl has the last word). */
bool config_connect_to_matches(const char *entry, const char *host, unsigned port);

#endif
