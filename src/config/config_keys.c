/*
 * config_keys.c - what each configuration key accepts: the key table
 * (config_key_rows[], one row per key and section kind, with its value
 * parser, target field, required flag, default and limits) and the value
 * parsers it names, plus the audience presets and inference rules.
 *
 * To add a key: write or reuse a parser, add a row. config.c does the rest
 * (duplicates, empty values, defaults, required keys, messages).
 *
 * A parser gets the raw value (inih has trimmed it and cut a " ;" comment),
 * stores the result, and on failure returns -1 with a message in pv->msg
 * ("must be ...", no key, no final period): config.c adds FILE:LINE and the
 * [section] key prefix.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_int.h"
#include "config/config_syntax.h"
#include "http/hdr.h"
#include "util/log.h"

__attribute__((format(printf, 2, 3))) static int pv_fail(struct pv *pv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pv->msg, sizeof pv->msg, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- value parsers (table column "parse") ---- */

/* Replace *dst with a copy of s (lowercased if asked). */
static int set_str(struct pv *pv, char **dst, const char *s, bool lowercase)
{
	char *d = strdup(s);

	if (!d)
		return pv_fail(pv, "out of memory");
	if (lowercase)
		config_lower(d);
	free(*dst);
	*dst = d;
	return 0;
}

#define FIELD(pv, type) ((type *)(pv)->field)

static int p_str(struct pv *pv, const char *v)
{
	return set_str(pv, FIELD(pv, char *), v, false);
}

static int p_bool(struct pv *pv, const char *v)
{
	static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
			*FIELD(pv, bool) = strcasecmp(v, yes[i]) == 0;
			return 0;
		}
	}
	return pv_fail(pv, "must be true or false (also yes/no, on/off, 1/0)");
}

static int p_int(struct pv *pv, const char *v)
{
	unsigned long long n;

	if (config_parse_uint(v, strlen(v), (unsigned long long)pv->row->max, &n) < 0 ||
	    n < (unsigned long long)pv->row->min)
		return pv_fail(pv, "must be a number from %lld to %lld", pv->row->min, pv->row->max);
	*FIELD(pv, int) = (int)n;
	return 0;
}

static int p_enum(struct pv *pv, const char *v)
{
	const char *const *n = pv->row->names;
	char list[96] = "";

	_Static_assert(sizeof(enum token_version) == sizeof(int) && sizeof(enum auth_method) == sizeof(int) &&
			   sizeof(enum assertion_alg) == sizeof(int),
		       "enums are stored as int");
	for (int i = 0; n[i]; i++) {
		if (strcasecmp(v, n[i]) == 0) {
			memcpy(pv->field, &i, sizeof i);
			return 0;
		}
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", n[i]);
	}
	return pv_fail(pv, "must be one of: %s", list);
}

static int p_log_level(struct pv *pv, const char *v)
{
	return log_level_parse(v, FIELD(pv, enum log_level)) < 0 ? pv_fail(pv, "must be debug, info, warn or error")
								 : 0;
}

static int p_log_format(struct pv *pv, const char *v)
{
	return log_format_parse(v, FIELD(pv, enum log_format)) < 0 ? pv_fail(pv, "must be json or text") : 0;
}

static int duration_ms(struct pv *pv, const char *v, long long *ms)
{
	char lo[24], hi[24];

	if (config_parse_duration(v, ms) < 0)
		return pv_fail(pv, "must be a duration such as 500ms, 30s, 2m, 1h (a bare number is seconds)");
	if (*ms < pv->row->min || *ms > pv->row->max)
		return pv_fail(pv, "must be from %s to %s", config_fmt_duration(pv->row->min, lo, sizeof lo),
			       config_fmt_duration(pv->row->max, hi, sizeof hi));
	return 0;
}

static int p_duration_ms(struct pv *pv, const char *v)
{
	long long ms;

	if (duration_ms(pv, v, &ms) < 0)
		return -1;
	*FIELD(pv, long) = (long)ms;
	return 0;
}

static int p_duration_s(struct pv *pv, const char *v)
{
	long long ms;

	if (duration_ms(pv, v, &ms) < 0)
		return -1;
	if (ms % 1000)
		return pv_fail(pv, "must be a whole number of seconds");
	*FIELD(pv, long) = (long)(ms / 1000);
	return 0;
}

/* Bytes with an optional k or m suffix (1024-based). */
static int p_size(struct pv *pv, const char *v)
{
	unsigned long long n;

	if (config_parse_size(v, &n) < 0 || n < (unsigned long long)pv->row->min ||
	    n > (unsigned long long)pv->row->max)
		return pv_fail(pv, "must be a size from %lldk to %lldm (bytes, or with a k or m suffix)",
			       pv->row->min / 1024, pv->row->max / (1024 * 1024));
	*FIELD(pv, size_t) = (size_t)n;
	return 0;
}

/* A byte count stored as uint64_t; the row's min/max are bytes. */
static int p_size64(struct pv *pv, const char *v)
{
	unsigned long long n;

	if (config_parse_size(v, &n) < 0 || n < (unsigned long long)pv->row->min ||
	    n > (unsigned long long)pv->row->max)
		return pv_fail(pv, "must be a size in bytes (k or m suffix allowed), at least %lld", pv->row->min);
	*FIELD(pv, uint64_t) = n;
	return 0;
}

static int p_long(struct pv *pv, const char *v)
{
	unsigned long long n;

	if (config_parse_uint(v, strlen(v), (unsigned long long)pv->row->max, &n) < 0 ||
	    n < (unsigned long long)pv->row->min)
		return pv_fail(pv, "must be a number from %lld to %lld", pv->row->min, pv->row->max);
	*FIELD(pv, long) = (long)n;
	return 0;
}

/* max_concurrent: auto (-1: 52 on Dataverse routes, off elsewhere), off (0) or a number. */
static int p_concurrency(struct pv *pv, const char *v)
{
	if (strcmp(v, "auto") == 0) {
		*FIELD(pv, long) = -1;
		return 0;
	}
	if (strcmp(v, "off") == 0) {
		*FIELD(pv, long) = 0;
		return 0;
	}
	if (p_long(pv, v) < 0)
		return pv_fail(pv, "must be auto, off or a number from %lld to %lld", pv->row->min, pv->row->max);
	return 0;
}

static bool all_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!memchr(" \t\r\n", s[i], 4))
			return false;
	return true;
}

/*
 * A regular file we can read, opened without blocking (a FIFO must not hang
 * the load), whose first 4 KiB are not all whitespace (the token engine trims
 * trailing whitespace from a secret, so such a file would be an empty secret).
 */
static int check_file(struct pv *pv, const char *path)
{
	char buf[4096];
	struct stat st;
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), rc = 0;

	if (fd < 0)
		return pv_fail(pv, "cannot read %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0)
		rc = pv_fail(pv, "cannot read %s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = pv_fail(pv, "%s is not a regular file", path);
	else if ((n = read(fd, buf, sizeof buf)) < 0)
		rc = pv_fail(pv, "cannot read %s: %s", path, strerror(errno));
	else if (all_blank(buf, (size_t)n))
		rc = pv_fail(pv, "%s is empty", path);
	explicit_bzero(buf, sizeof buf);
	close(fd);
	return rc;
}

static int p_file(struct pv *pv, const char *v)
{
	return check_file(pv, v) < 0 ? -1 : p_str(pv, v);
}

/* allow_from: comma-separated networks; the key may repeat (lists add up). */
static int p_allow_from(struct pv *pv, const char *v)
{
	struct cidr_list *l = FIELD(pv, struct cidr_list);

	for (const char *e = v; *e;) {
		char one[64];
		size_t len = strcspn(e, ","), lead = strspn(e, " \t"), end = len;
		while (end > lead && isspace((unsigned char)e[end - 1]))
			end--;
		if (lead >= end || end - lead >= sizeof one)
			return pv_fail(pv, "'%.*s' is not an address or network (CIDR)", (int)len, e);
		memcpy(one, e + lead, end - lead);
		one[end - lead] = '\0';
		struct cidr c;
		if (cidr_parse(one, &c) < 0)
			return pv_fail(pv, "'%s' is not an address or network (CIDR, e.g. 10.0.0.0/8 or fd00::/8)",
				       one);
		if (cidr_list_add(l, &c) < 0)
			return pv_fail(pv, "out of memory");
		e += len;
		if (*e == ',')
			e++;
	}
	return 0;
}

/* inbound_key_file: the key is read now (it is compared on every request);
 * surrounding whitespace is not part of it. Never logged. */
static int p_key_file(struct pv *pv, const char *v)
{
	char buf[512];
	ssize_t n = -1;
	int fd = open(v, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), rc = 0;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		rc = pv_fail(pv, "cannot read %s: %s", v, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = pv_fail(pv, "%s is not a regular file", v);
	else if ((n = read(fd, buf, sizeof buf - 1)) < 0)
		rc = pv_fail(pv, "cannot read %s: %s", v, strerror(errno));
	else if ((size_t)n == sizeof buf - 1)
		rc = pv_fail(pv, "%s: the key is longer than %zu bytes", v, sizeof buf - 2);
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		size_t a = 0, b = (size_t)n;
		while (a < b && isspace((unsigned char)buf[a]))
			a++;
		while (b > a && isspace((unsigned char)buf[b - 1]))
			b--;
		if (b - a < 16)
			rc = pv_fail(pv, "%s: the key must be at least 16 characters", v);
		else if (!hdr_value_ok(buf + a, b - a))
			rc = pv_fail(pv, "%s: the key must be printable (it travels in a header)", v);
		else {
			buf[b] = '\0';
			rc = set_str(pv, FIELD(pv, char *), buf + a, false);
		}
	}
	explicit_bzero(buf, sizeof buf);
	return rc;
}

/* tls_cert / tls_key: readable files, the key repeats and the values pair up
 * by position (checked when TLS is set up). */
static int p_tls_file(struct pv *pv, const char *v)
{
	struct proxy_cfg *p = pv->sec->obj;
	bool is_key = strcmp(pv->row->key, "tls_key") == 0;
	char **slot = is_key ? p->tls_key : p->tls_cert;
	size_t *n = is_key ? &p->n_tls_key : &p->n_tls_cert;

	if (*n == CONFIG_MAX_TLS_CERTS)
		return pv_fail(pv, "at most %d", CONFIG_MAX_TLS_CERTS);
	if (check_file(pv, v) < 0)
		return -1;
	if (!(slot[*n] = strdup(v)))
		return pv_fail(pv, "out of memory");
	(*n)++;
	return 0;
}

static int p_header_name(struct pv *pv, const char *v)
{
	if (!hdr_name_ok(v, strlen(v)))
		return pv_fail(pv, "'%s' is not a valid header name", v);
	return p_str(pv, v);
}

static int p_listen(struct pv *pv, const char *v)
{
	struct proxy_cfg *p = pv->sec->obj;
	char host[64];

	if (config_parse_listen(v, host, sizeof host, &p->listen_port, pv->msg, sizeof pv->msg) < 0 ||
	    set_str(pv, &p->listen_host, host, false) < 0)
		return -1;
	if (!config_is_loopback(host))
		config_warn_at(
		    pv->ld, "config_listen_exposed", pv->line,
		    "listen = %s is not a loopback address: every client that can reach it can use the configured "
		    "credentials",
		    v);
	return 0;
}

/* The admin listener serves health and metrics, never credentials, but its
 * readiness body names routes and failures: a non-loopback address is
 * allowed (container probes need it) and warned about. */
static int p_admin_listen(struct pv *pv, const char *v)
{
	struct proxy_cfg *p = pv->sec->obj;
	char host[64];

	if (config_parse_listen(v, host, sizeof host, &p->admin_port, pv->msg, sizeof pv->msg) < 0 ||
	    set_str(pv, &p->admin_host, host, false) < 0)
		return -1;
	if (!config_is_loopback(host))
		config_warn_at(pv->ld, "config_admin_exposed", pv->line,
			       "admin_listen = %s is not a loopback address: health and metrics are visible to every "
			       "client that can reach it",
			       v);
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

/* client_secret_expires: YYYY-MM-DD as the portal shows it (the secret ends
 * at the start of that day, UTC); only used for the expiry metric. */
static int p_date(struct pv *pv, const char *v)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned long long y, m, d;

	if (strlen(v) != 10 || v[4] != '-' || v[7] != '-' || config_parse_uint(v, 4, 9999, &y) < 0 ||
	    config_parse_uint(v + 5, 2, 12, &m) < 0 || config_parse_uint(v + 8, 2, 31, &d) < 0 || y < 1970 || m < 1 ||
	    d < 1 || d > mdays[m - 1] || (m == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))))
		return pv_fail(pv, "must be a date YYYY-MM-DD");
	*FIELD(pv, long long) = days_from_civil((long long)y, (unsigned)m, (unsigned)d) * 86400;
	return 0;
}

static int p_connect_to(struct pv *pv, const char *v)
{
	struct proxy_cfg *p = pv->sec->obj;

	for (const char *e = v; *e;) {
		size_t len = strcspn(e, ","), lead = strspn(e, " \t");
		char *entry;
		if (lead > len)
			lead = len;
		while (len > lead && isspace((unsigned char)e[len - 1]))
			len--;
		if (!(entry = strndup(e + lead, len - lead)))
			return pv_fail(pv, "out of memory");
		len = strcspn(e, ",");
		if (!*entry || !config_connect_to_valid(entry)) {
			pv_fail(pv, "'%s' is not HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT", entry);
			free(entry);
			return -1;
		}
		if (p->n_connect_to == CONFIG_MAX_CONNECT_TO) {
			free(entry);
			return pv_fail(pv, "too many entries (at most %d)", CONFIG_MAX_CONNECT_TO);
		}
		p->connect_to[p->n_connect_to++].entry = entry;
		e += len + (e[len] == ',');
	}
	return 0;
}

static int p_tenant(struct pv *pv, const char *v)
{
	static const char *const multi[] = {"common", "organizations", "consumers"};

	for (size_t i = 0; i < ARRAY_LEN(multi); i++)
		if (strcasecmp(v, multi[i]) == 0)
			return pv_fail(pv,
				       "'%s' is not allowed: client credentials need a tenant-specific authority "
				       "(AADSTS9001023); use the tenant GUID or a verified domain",
				       v);
	if (!config_is_guid(v) && (!strchr(v, '.') || !config_is_host_name(v, strlen(v))))
		return pv_fail(pv, "must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com");
	return set_str(pv, FIELD(pv, char *), v, true);
}

static int p_guid(struct pv *pv, const char *v)
{
	if (!config_is_guid(v))
		return pv_fail(pv, "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
	return set_str(pv, FIELD(pv, char *), v, true);
}

static int p_secret_file(struct pv *pv, const char *v)
{
	struct credential_cfg *c = pv->sec->obj;

	if (check_file(pv, v) < 0 || set_str(pv, &c->client_secret_file, v, false) < 0)
		return -1;
	c->secret_source = SECRET_FILE;
	return 0;
}

static int p_secret_env(struct pv *pv, const char *v)
{
	struct credential_cfg *c = pv->sec->obj;
	const char *val;

	if (strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(v) ||
	    isdigit((unsigned char)v[0]))
		return pv_fail(pv, "'%s' is not an environment variable name", v);
	val = getenv(v);
	if (!val || !*val)
		return pv_fail(pv, "environment variable %s is not set or empty", v);
	if (set_str(pv, &c->client_secret_env, v, false) < 0 || set_str(pv, &c->client_secret, val, false) < 0)
		return -1;
	c->secret_source = SECRET_ENV;
	return 0;
}

static int p_secret_inline(struct pv *pv, const char *v)
{
	struct credential_cfg *c = pv->sec->obj;

	if (set_str(pv, &c->client_secret, v, false) < 0)
		return -1;
	c->secret_source = SECRET_INLINE;
	pv->ld->inline_secret = true;
	config_warn_at(pv->ld, "config_inline_secret", pv->line,
		       "[%s] client_secret is written in the configuration file; prefer client_secret_file or "
		       "client_secret_env%s",
		       pv->sec->title,
		       pv->ld->inline_comment
			   ? " (note: ' ;' on that line started a comment, which is not part of the value)"
			   : "");
	return 0;
}

/* "system", or the client id of a user-assigned identity. */
static int p_managed_identity(struct pv *pv, const char *v)
{
	if (strcasecmp(v, "system") == 0)
		return set_str(pv, FIELD(pv, char *), "system", false);
	if (!config_is_guid(v))
		return pv_fail(pv, "must be 'system' or the client id (GUID) of a user-assigned identity");
	return set_str(pv, FIELD(pv, char *), v, true);
}

/* The managed identity token URL: plain http is what IMDS speaks (a
 * link-local address, never leaving the host), so http is allowed here only. */
static int p_mi_endpoint(struct pv *pv, const char *v)
{
	size_t n = strlen(v);

	if ((strncasecmp(v, "http://", 7) != 0 && strncasecmp(v, "https://", 8) != 0) || n > 512 ||
	    strcspn(v, " \t\"'<>\\^`{|}?#") != n)
		return pv_fail(pv, "must be an http:// or https:// URL without query");
	return set_str(pv, FIELD(pv, char *), v, false);
}

static int p_authority(struct pv *pv, const char *v)
{
	struct url u = {0};
	int rc = config_url_parse(v, &u, pv->msg, sizeof pv->msg);

	if (rc == 0 && (strcmp(u.scheme, "https") != 0 || u.path[0]))
		rc = pv_fail(pv, "must be https://HOST[:PORT] without a path (the tenant is added from 'tenant')");
	if (rc == 0)
		rc = set_str(pv, FIELD(pv, char *), u.origin, false);
	config_url_free(&u);
	return rc;
}

static int p_match_host(struct pv *pv, const char *v)
{
	if (strchr(v, ':'))
		return pv_fail(pv, "must be a host name without a port");
	if (!config_is_host_name(v, strlen(v)))
		return pv_fail(pv, "'%s' is not a host name", v);
	return set_str(pv, FIELD(pv, char *), v, true);
}

static int p_match_path(struct pv *pv, const char *v)
{
	if (v[0] != '/' || config_has_ctl_or_space(v) || strpbrk(v, "?#"))
		return pv_fail(pv, "must be a path starting with '/' (no spaces, '?' or '#')");
	return p_str(pv, v);
}

/* public_url: what clients use to reach the route (a front end before the
 * proxy), stored as origin + path without a trailing slash. */
static int p_public_url(struct pv *pv, const char *v)
{
	struct url u = {0};
	char *s = NULL;
	int rc = config_url_parse(v, &u, pv->msg, sizeof pv->msg);

	if (rc == 0 && strcspn(u.path, "\"'<>\\^`{|}%") != strlen(u.path))
		rc = pv_fail(pv, "must be an http:// or https:// URL with a plain path");
	if (rc == 0 && asprintf(&s, "%s%s", u.origin, u.path) < 0)
		rc = pv_fail(pv, "out of memory");
	if (rc == 0) {
		free(*FIELD(pv, char *));
		*FIELD(pv, char *) = s;
	}
	config_url_free(&u);
	return rc;
}

static int p_upstream(struct pv *pv, const char *v)
{
	struct url *u = pv->field;

	if (config_url_parse(v, u, pv->msg, sizeof pv->msg) < 0)
		return -1;
	if (strcmp(u->scheme, "http") == 0 && !config_is_loopback(u->host)) {
		config_url_free(u);
		return pv_fail(
		    pv, "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost); use https://");
	}
	return 0;
}

/* audience = NAME presets; "url" stands for an https:// URL given instead. */
const struct audience_def config_audiences[] = {
    {"dataverse", AUD_DATAVERSE, NULL},
    {"bc", AUD_BC, "https://api.businesscentral.dynamics.com"},
    {"fo", AUD_FO, NULL},
    {"securityservice", AUD_SECURITYSERVICE, "https://securityservice.operations365.dynamics.com"},
    {"url", AUD_URL, NULL},
};
const size_t config_n_audiences = ARRAY_LEN(config_audiences);

/* Upstream host -> audience for routes without an audience key; first match wins. */
const struct audience_rule config_audience_rules[] = {
    {"*.crm.dynamics.com", AUD_DATAVERSE},        {"*.crm#.dynamics.com", AUD_DATAVERSE},
    {"api.businesscentral.dynamics.com", AUD_BC}, {"*.operations.dynamics.com", AUD_FO},
    {"*.operations.*.dynamics.com", AUD_FO},      {"securityservice.operations365.dynamics.com", AUD_SECURITYSERVICE},
};
const size_t config_n_audience_rules = ARRAY_LEN(config_audience_rules);

static int p_audience(struct pv *pv, const char *v)
{
	struct route_sec *rs = pv->sec->obj;
	struct url u = {0};
	int rc;

	for (size_t i = 0; i + 1 < config_n_audiences; i++) {
		if (strcasecmp(v, config_audiences[i].name) == 0) {
			rs->r.audience_kind = config_audiences[i].kind;
			rs->audience_ok = true;
			return 0;
		}
	}
	rc = config_url_parse(v, &u, pv->msg, sizeof pv->msg);
	if (rc == 0 && strcmp(u.scheme, "https") != 0)
		rc = -1;
	config_url_free(&u);
	if (rc < 0)
		return pv_fail(pv, "must be dataverse, bc, fo, securityservice or an https:// URL");
	if (set_str(pv, &rs->audience_url, v, false) < 0)
		return -1;
	rs->r.audience_kind = AUD_URL;
	rs->audience_ok = true;
	return 0;
}

/* basic_user: what a client sends before the ':' of Basic credentials. */
static int p_basic_user(struct pv *pv, const char *v)
{
	if (strchr(v, ':') || strlen(v) > 255 || !hdr_value_ok(v, strlen(v)))
		return pv_fail(pv, "must be 1 to 255 printable characters without ':'");
	return p_str(pv, v);
}

/* basic_realm: goes between quotes in WWW-Authenticate. */
static int p_realm(struct pv *pv, const char *v)
{
	if (strpbrk(v, "\"\\"))
		return pv_fail(pv, "must not contain '\"' or '\\'");
	return p_basic_user(pv, v);
}

/* tls_client_subject: a distinguished name, compared as text. */
static int p_subject(struct pv *pv, const char *v)
{
	if (strlen(v) > 255 || !hdr_value_ok(v, strlen(v)))
		return pv_fail(pv, "must be 1 to 255 printable characters (the subject DN, e.g. CN=pos-01,O=Contoso)");
	return p_str(pv, v);
}

/* basic_password_hash: a crypt(3) hash ("$id$..."), never a password. */
static int p_crypt_hash(struct pv *pv, const char *v)
{
	size_t n = strlen(v);
	if (v[0] != '$' || n < 13 || n > 255 ||
	    strspn(v, "$./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=,-") != n)
		return pv_fail(pv, "must be a crypt(3) hash such as $y$... or $6$... (mkpasswd), not a password");
	return p_str(pv, v);
}

static int p_scope(struct pv *pv, const char *v)
{
	size_t len = strlen(v), sl = strlen(DEFAULT_SUFFIX);

	if (config_has_ctl_or_space(v) || len <= sl || strcmp(v + len - sl, DEFAULT_SUFFIX) != 0)
		return pv_fail(pv,
			       "must be one RESOURCE/.default: client credentials take no other scope (AADSTS1002012)");
	return p_str(pv, v);
}

/* ---- the table ---- */

#define SECS(s)            ((s)*1000LL)
#define MINUTES(m)         ((m)*60000LL)
#define HOURS(h)           ((h)*3600000LL)
#define PROXY(key, field)  SEC_PROXY, key, .off = offsetof(struct proxy_cfg, field)
#define CRED(key, field)   SEC_CREDENTIAL, key, .off = offsetof(struct credential_cfg, field)
#define ROUTE(key, field)  SEC_ROUTE, key, .off = offsetof(struct route_sec, field)
#define CALLER(key, field) SEC_CALLER, key, .off = offsetof(struct caller_sec, field)

static const char *const token_versions[] = {"v2", "v1", NULL};
static const char *const auth_methods[] = {"post", "basic", NULL};
static const char *const assertion_algs[] = {"PS256", "RS256", NULL};
static const char *const translate_modes[] = {"off", "problem", NULL};
static const char *const rewrite_modes[] = {"auto", "off", NULL};

const struct key_row config_key_rows[] = {
    {PROXY("listen", listen_host), .parse = p_listen, .def = "127.0.0.1:8080"},
    {PROXY("ca_file", ca_file), .parse = p_file},
    {PROXY("log_level", log_level), .parse = p_log_level, .def = "info"},
    {PROXY("log_format", log_format), .parse = p_log_format, .def = "json"},
    {PROXY("workers", workers), .parse = p_int, .def = "0", .min = 0, .max = 64},
    {PROXY("max_connections", max_connections), .parse = p_int, .def = "1024", .min = 1, .max = 1000000},
    {PROXY("client_timeout", client_timeout_s), .parse = p_duration_s, .def = "60s", .min = SECS(1), .max = HOURS(24)},
    {PROXY("token_wait_timeout", token_wait_ms), .parse = p_duration_ms, .def = "15s", .min = 1, .max = MINUTES(10)},
    {PROXY("token_timeout", token_timeout_ms), .parse = p_duration_ms, .def = "15s", .min = SECS(1),
     .max = MINUTES(10)},
    {PROXY("token_retry_max", token_retry_max_ms), .parse = p_duration_ms, .def = "30s", .min = SECS(1),
     .max = HOURS(1)},
    {PROXY("token_refresh_min_interval", token_refresh_min_ms), .parse = p_duration_ms, .def = "30s", .min = SECS(1),
     .max = HOURS(1)},
    {PROXY("shutdown_timeout", shutdown_timeout_s), .parse = p_duration_s, .def = "30s", .min = 0, .max = HOURS(1)},
    {PROXY("buffer_size", buffer_bytes), .parse = p_size, .def = "64k", .min = 4096, .max = 16 << 20},
    {PROXY("replay_max_body", replay_max_body), .parse = p_size, .def = "1m", .min = 0, .max = 64 << 20},
    {PROXY("connect_to", connect_to), .parse = p_connect_to, .repeat = true},
    {PROXY("allow_from", allow_from), .parse = p_allow_from, .repeat = true},
    {PROXY("inbound_key_file", inbound_key), .parse = p_key_file},
    {PROXY("inbound_key_header", inbound_key_header), .parse = p_header_name, .def = "S2S-Proxy-Key"},
    {PROXY("tls_cert", tls_cert), .parse = p_tls_file, .repeat = true},
    {PROXY("tls_key", tls_key), .parse = p_tls_file, .repeat = true},
    {PROXY("tls_client_ca", tls_client_ca), .parse = p_file},
    {PROXY("max_header_bytes", max_header_bytes), .parse = p_size, .def = "32k", .min = 1024, .max = 1 << 20},
    {PROXY("max_url_bytes", max_url_bytes), .parse = p_long, .def = "8192", .min = 256, .max = CONFIG_MAX_URL_BYTES},
    {PROXY("max_body_bytes", max_body_bytes), .parse = p_size64, .def = "0", .min = 0, .max = INT64_MAX},
    {PROXY("upstream_max_connections", upstream_max_connections), .parse = p_long, .def = "0", .min = 0, .max = 100000},
    {PROXY("admin_listen", admin_host), .parse = p_admin_listen},
    {PROXY("sts_facade", sts_facade), .parse = p_bool, .def = "false"},
    {PROXY("legacy_identities_file", legacy_identities_file), .parse = p_file},
    {PROXY("soap_max_response", soap_max_response), .parse = p_size, .def = "16m", .min = 4096,
     .max = CONFIG_SOAP_RESPONSE_MAX},
    {PROXY("throttle_queue", throttle.queue), .parse = p_long, .def = "1000", .min = 0, .max = 1000000},
    {PROXY("throttle_wait", throttle.wait_ms), .parse = p_duration_ms, .def = "60s", .min = 0, .max = HOURS(1)},
    {PROXY("throttle_max_wait", throttle.max_wait_ms), .parse = p_duration_ms, .def = "5m", .min = SECS(1),
     .max = HOURS(1)},
    {PROXY("throttle_retries", throttle.retries), .parse = p_long, .def = "3", .min = 0, .max = 100},
    {PROXY("max_concurrent", throttle.max_concurrent), .parse = p_concurrency, .def = "auto", .min = 1, .max = 100000},
    {PROXY("trusted_proxies", trusted_proxies), .parse = p_allow_from, .repeat = true},
    {PROXY("basic_realm", basic_realm), .parse = p_realm, .def = "s2s-proxy"},
    {PROXY("inventory_file", inventory_file), .parse = p_str},

    {CRED("tenant", tenant), .parse = p_tenant, .required = true},
    {CRED("client_id", client_id), .parse = p_guid, .required = true},
    {CRED("client_secret_file", client_secret_file), .parse = p_secret_file},
    {CRED("client_secret_env", client_secret_env), .parse = p_secret_env},
    {CRED("client_secret", client_secret), .parse = p_secret_inline},
    {CRED("authority", authority), .parse = p_authority, .def = "https://login.microsoftonline.com"},
    {CRED("token_version", token_version), .parse = p_enum, .def = "v2", .names = token_versions},
    {CRED("auth_method", auth_method), .parse = p_enum, .def = "post", .names = auth_methods},
    {CRED("client_secret_expires", secret_expires), .parse = p_date},
    {CRED("certificate_file", certificate_file), .parse = p_file},
    {CRED("private_key_file", private_key_file), .parse = p_file},
    {CRED("private_key_password_file", private_key_password_file), .parse = p_file},
    {CRED("pfx_file", pfx_file), .parse = p_file},
    {CRED("assertion_alg", assertion_alg), .parse = p_enum, .def = "PS256", .names = assertion_algs},
    {CRED("send_x5c", send_x5c), .parse = p_bool, .def = "false"},
    {CRED("federated_token_file", federated_token_file), .parse = p_file},
    {CRED("managed_identity", managed_identity), .parse = p_managed_identity},
    {CRED("managed_identity_endpoint", managed_identity_endpoint), .parse = p_mi_endpoint},

    {ROUTE("match_host", r.match_host), .parse = p_match_host},
    {ROUTE("match_path", r.match_path), .parse = p_match_path, .def = "/"},
    {ROUTE("strip_prefix", r.strip_prefix), .parse = p_bool, .def = "false"},
    {ROUTE("upstream", r.upstream), .parse = p_upstream, .required = true},
    {ROUTE("credential", credential), .parse = p_str},
    {ROUTE("audience", audience_url), .parse = p_audience},
    {ROUTE("scope", scope), .parse = p_scope},
    {ROUTE("connect_timeout", r.connect_timeout_ms), .parse = p_duration_ms, .def = "10s", .min = 1,
     .max = MINUTES(10)},
    {ROUTE("idle_timeout", r.idle_timeout_ms), .parse = p_duration_ms, .def = "120s", .min = SECS(1), .max = HOURS(24)},
    {ROUTE("allow_from", r.allow_from), .parse = p_allow_from, .repeat = true},
    {ROUTE("inbound_key_file", r.inbound_key), .parse = p_key_file},
    {ROUTE("max_body_bytes", r.max_body_bytes), .parse = p_size64, .def = "0", .min = 0, .max = INT64_MAX},
    {ROUTE("timeout", r.total_timeout_ms), .parse = p_duration_ms, .def = "0", .min = 0, .max = HOURS(24)},
    {ROUTE("access_log", r.access_log), .parse = p_bool, .def = "true"},
    {ROUTE("soap_bridge", r.soap_bridge), .parse = p_bool, .def = "false"},
    {ROUTE("translate_upstream_errors", r.translate_upstream_errors), .parse = p_enum, .def = "off",
     .names = translate_modes},
    {ROUTE("probe_path", r.probe_path), .parse = p_match_path},
    /* no defaults: an unset key takes [proxy]'s value (config.c, route_throttle) */
    {ROUTE("throttle_queue", r.throttle.queue), .parse = p_long, .min = 0, .max = 1000000},
    {ROUTE("throttle_wait", r.throttle.wait_ms), .parse = p_duration_ms, .min = 0, .max = HOURS(1)},
    {ROUTE("throttle_max_wait", r.throttle.max_wait_ms), .parse = p_duration_ms, .min = SECS(1), .max = HOURS(1)},
    {ROUTE("throttle_retries", r.throttle.retries), .parse = p_long, .min = 0, .max = 100},
    {ROUTE("max_concurrent", r.throttle.max_concurrent), .parse = p_concurrency, .min = 1, .max = 100000},
    {ROUTE("rewrite_urls", r.rewrite_urls), .parse = p_enum, .def = "auto", .names = rewrite_modes},
    {ROUTE("public_url", r.public_url), .parse = p_public_url},
    {ROUTE("callers", callers), .parse = p_str},

    {CALLER("inbound_key_file", c.inbound_key), .parse = p_key_file},
    {CALLER("basic_user", c.basic_user), .parse = p_basic_user},
    {CALLER("basic_password_hash", c.basic_password_hash), .parse = p_crypt_hash},
    {CALLER("tls_client_subject", c.tls_client_subject), .parse = p_subject},
    {CALLER("allow_from", c.allow_from), .parse = p_allow_from, .repeat = true},
    {CALLER("credential", credential), .parse = p_str},
    {CALLER("impersonate", c.impersonate), .parse = p_guid},
};
const size_t config_n_key_rows = ARRAY_LEN(config_key_rows);
_Static_assert(ARRAY_LEN(config_key_rows) <= KEY_ROWS_MAX, "section.seen has one slot per row");

const char *config_audience_name(enum audience_kind kind)
{
	for (size_t i = 0; i < config_n_audiences; i++)
		if (config_audiences[i].kind == kind)
			return config_audiences[i].name;
	return "unknown";
}
