/*
 * fuzz_hdr.c - libFuzzer target for hdr.c.
 *
 * The input is a header block: lines split on '\n' (a trailing '\r' is
 * removed), each "name: value" split at the first ':'; a line without one
 * is a name with an empty value. Every field goes through the name/value
 * checks, both forwarding decisions and the framing accumulator, the way
 * the server feeds a request. Besides "never crash", it traps when a
 * policy invariant breaks: a hop-by-hop or invalid name forwarded, a
 * Connection-listed name forwarded, or a FRAMING_OK verdict on a shape
 * that must be refused.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/hdr.h"

#define FUZZ_MAX_FIELDS 512
#define FUZZ_CONN_MAX   8192

struct field {
	char *name;
	const char *value;     /* OWS-trimmed, as a server stores it */
	size_t name_len;       /* raw length: embedded NULs included */
	const char *raw_value; /* untrimmed bytes after ':' */
	size_t value_len;      /* raw length: embedded NULs included */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const always_dropped[] = {"connection", "keep-alive",        "proxy-connection", "te",
					     "trailer",    "transfer-encoding", "upgrade",          "content-length"};

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static char *trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Split buf (NUL-terminated, modified in place) into fields. */
static size_t split_fields(char *buf, size_t size, struct field *f)
{
	size_t n = 0;
	char *p = buf, *end = buf + size;

	while (p < end && n < FUZZ_MAX_FIELDS) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *line_end = nl != NULL ? nl : end;
		size_t line_len = (size_t)(line_end - p);
		char *colon = memchr(p, ':', line_len);

		*line_end = '\0';
		if (line_end > p && line_end[-1] == '\r')
			line_end[-1] = '\0';
		f[n].name = p;
		f[n].value = f[n].raw_value = "";
		f[n].name_len = line_len;
		f[n].value_len = 0;
		if (colon != NULL) {
			*colon = '\0';
			f[n].name_len = (size_t)(colon - p);
			f[n].raw_value = colon + 1;
			f[n].value_len = (size_t)(line_end - colon - 1);
			f[n].value = trim(colon + 1);
		}
		n++;
		p = line_end + 1;
	}
	return n;
}

/* All Connection values joined with ',', as the server does. */
static void join_connection(const struct field *f, size_t n, char *out)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t vl = strlen(f[i].value);
		if (strcasecmp(f[i].name, "connection") != 0 || len + vl + 2 > FUZZ_CONN_MAX)
			continue;
		if (len > 0)
			out[len++] = ',';
		memcpy(out + len, f[i].value, vl);
		len += vl;
		out[len] = '\0';
	}
}

static void check_field(const struct field *fl, const char *conn)
{
	const char *name = fl->name;
	int req = hdr_request_forwardable(name, conn);
	int resp = hdr_response_forwardable(name, conn);
	int name_ok = hdr_name_ok(name, strlen(name));

	(void)hdr_name_ok(name, fl->name_len);
	(void)hdr_value_ok(fl->value, strlen(fl->value));
	(void)hdr_value_ok(fl->raw_value, fl->value_len);
	(void)hdr_list_contains(fl->value, "chunked");
	(void)hdr_list_contains(conn, fl->value);
	if (!name_ok)
		check(!req && !resp);
	if (hdr_list_contains(conn, name))
		check(!req && !resp);
	for (size_t i = 0; i < sizeof always_dropped / sizeof always_dropped[0]; i++) {
		if (strcasecmp(name, always_dropped[i]) == 0)
			check(!req && !resp);
	}
	if (strcasecmp(name, "authorization") == 0 || strcasecmp(name, "host") == 0)
		check(!req);
}

static void check_framing(const struct field *f, size_t n)
{
	struct hdr_framing fr;
	enum hdr_framing_verdict v;
	unsigned n_cl = 0, n_te = 0;

	hdr_framing_init(&fr);
	for (size_t i = 0; i < n; i++) {
		hdr_framing_add(&fr, f[i].name, f[i].value);
		n_cl += strcasecmp(f[i].name, "content-length") == 0;
		n_te += strcasecmp(f[i].name, "transfer-encoding") == 0;
	}
	v = hdr_framing_check(&fr);
	check(hdr_framing_reason(v) != NULL);
	if (v != FRAMING_OK)
		return;
	/* OK means at most one framing field, used once. */
	check(n_cl + n_te <= 1);
	check(hdr_framing_body_length(&fr) == (n_te ? -1 : (int64_t)fr.content_length));
	check(fr.content_length <= (UINT64_C(1) << 62));
	check(hdr_framing_has_body(&fr) == (n_te == 1 || fr.content_length > 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct field fields[FUZZ_MAX_FIELDS];
	static char conn[FUZZ_CONN_MAX];
	char *buf = malloc(size + 1);
	size_t n;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	n = split_fields(buf, size, fields);
	join_connection(fields, n, conn);
	(void)hdr_list_contains(conn, "close");
	for (size_t i = 0; i < n; i++)
		check_field(&fields[i], conn);
	check_framing(fields, n);
	/* The raw input as one value and one name, NULs included. */
	(void)hdr_value_ok((const char *)data, size);
	(void)hdr_name_ok((const char *)data, size);
	free(buf);
	return 0;
}
