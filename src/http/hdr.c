/*
 * hdr.c - which header fields cross the proxy, and request framing checks.
 *
 * The policy is the table hdr_rules[] (the idea of nginx's
 * ngx_http_proxy_headers[] / hide_headers[]): a field is dropped in a
 * direction when its row says so, or when the message's Connection field
 * lists it (RFC 9110 section 7.6.1). Call sites never compare names
 * themselves; ad-hoc strcasecmp chains are how tinyproxy got
 * CVE-2023-49606.
 *
 * Framing follows RFC 9112 section 6: the proxy accepts a request body
 * framed by exactly one "Transfer-Encoding: chunked" or by exactly one
 * valid Content-Length, and refuses every ambiguous shape, because a
 * downstream server that frames the message differently is the request
 * smuggling attack.
 */
#include "http/hdr.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

enum {
	HDR_DROP_REQ = 1u << 0,  /* never copied client -> upstream */
	HDR_DROP_RESP = 1u << 1, /* never copied upstream -> client */
};

struct hdr_rule {
	const char *name; /* lowercase */
	size_t len;       /* strlen(name): most fields are ruled out by length alone */
	unsigned drop;
};

/* clang-format off */
#define RULE(name, drop) {name, sizeof name - 1, drop}
/* clang-format on */

#define HOP (HDR_DROP_REQ | HDR_DROP_RESP)

static const struct hdr_rule hdr_rules[] = {
    /* Hop-by-hop (RFC 9110 7.6.1; Keep-Alive and Proxy-Connection are its
     * legacy examples; RFC 9110 10.1.4 TE; RFC 9110 6.6.2 Trailer: we
     * forward no trailers; RFC 9112 6.1 Transfer-Encoding; RFC 9110 7.8
     * Upgrade: we do not tunnel). */
    RULE("connection", HOP),
    RULE("keep-alive", HOP),
    RULE("proxy-connection", HOP),
    RULE("te", HOP),
    RULE("trailer", HOP),
    RULE("transfer-encoding", HOP),
    RULE("upgrade", HOP),
    /* Set by the proxy or by libcurl for the upstream hop: the client's
     * copy would be wrong or (Authorization) must never reach Dynamics. */
    RULE("host", HDR_DROP_REQ),
    RULE("authorization", HDR_DROP_REQ),
    RULE("proxy-authorization", HDR_DROP_REQ), /* RFC 9110 11.7.2: consumed by the proxy */
    RULE("expect", HDR_DROP_REQ),              /* we answer 100-continue ourselves, if at all */
    RULE("x-forwarded-for", HDR_DROP_REQ),
    RULE("x-forwarded-proto", HDR_DROP_REQ),
    RULE("x-forwarded-host", HDR_DROP_REQ),
    RULE("x-forwarded-port", HDR_DROP_REQ),   /* a client could forge them; the */
    RULE("x-forwarded-prefix", HDR_DROP_REQ), /* proxy sets -For, -Proto, -Host */
    RULE("x-real-ip", HDR_DROP_REQ),
    RULE("forwarded", HDR_DROP_REQ), /* RFC 7239: a client could forge it */
    /* Each side frames its own body (RFC 9112 6.2, 6.3). */
    RULE("content-length", HDR_DROP_REQ | HDR_DROP_RESP),
};

#undef HOP
#undef RULE

/* RFC 9110 section 5.6.2: tchar other than DIGIT and ALPHA. */
static const char hdr_tchar_specials[] = "!#$%&'*+-.^_`|~";

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

bool hdr_is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && memchr(hdr_tchar_specials, c, sizeof hdr_tchar_specials - 1) != NULL;
}

bool hdr_name_ok(const char *name, size_t len)
{
	if (name == NULL || len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!hdr_is_tchar((unsigned char)name[i]))
			return false;
	}
	return true;
}

/*
 * RFC 9110 section 5.5: field-value = *field-content, built from VCHAR,
 * obs-text (0x80-0xFF), SP and HTAB. CR, LF and NUL would let a value
 * inject header lines upstream; other CTLs and DEL are refused too.
 */
bool hdr_value_ok(const char *value, size_t len)
{
	if (value == NULL)
		return len == 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return false;
	}
	return true;
}

/* Case-insensitive comparison of s[0..n) with the NUL-terminated word. */
static bool span_equals(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* RFC 9110 section 5.6.1: list elements separated by ',' with OWS; empty
 * elements are allowed and ignored. */
bool hdr_list_contains(const char *list, const char *token)
{
	if (list == NULL || token == NULL || token[0] == '\0')
		return false;
	for (const char *p = list;;) {
		const char *end = strchr(p, ',');
		const char *stop = end != NULL ? end : p + strlen(p);
		const char *b = p, *e = stop;

		while (b < e && is_ows(*b))
			b++;
		while (e > b && is_ows(e[-1]))
			e--;
		if (span_equals(b, (size_t)(e - b), token))
			return true;
		if (end == NULL)
			return false;
		p = end + 1;
	}
}

static unsigned hdr_rule_drop(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof hdr_rules / sizeof hdr_rules[0]; i++) {
		if (hdr_rules[i].len == len && strncasecmp(name, hdr_rules[i].name, len) == 0)
			return hdr_rules[i].drop;
	}
	return 0;
}

/* A field we cannot name safely is never forwarded (RFC 9112 5.1 makes a
 * name with whitespace or other non-token bytes a 400 at the server). */
static bool hdr_forwardable(const char *name, const char *connection, unsigned dir)
{
	size_t len = name != NULL ? strlen(name) : 0;
	if (!hdr_name_ok(name, len))
		return false;
	if (hdr_rule_drop(name, len) & dir)
		return false;
	return !hdr_list_contains(connection, name);
}

bool hdr_request_forwardable(const char *name, const char *connection)
{
	return hdr_forwardable(name, connection, HDR_DROP_REQ);
}

bool hdr_response_forwardable(const char *name, const char *connection)
{
	return hdr_forwardable(name, connection, HDR_DROP_RESP);
}

/* ---- Framing (RFC 9112 section 6) ---- */

/* Largest Content-Length accepted: far above any real body, far below
 * overflow in the signed 64-bit lengths libcurl and we compute with. */
#define HDR_CL_MAX (UINT64_C(1) << 62)

void hdr_framing_init(struct hdr_framing *f)
{
	memset(f, 0, sizeof *f);
}

/* Trim OWS (RFC 9110 5.5: not part of the field value). */
static void trim_ows(const char **b, const char **e)
{
	while (*b < *e && is_ows(**b))
		(*b)++;
	while (*e > *b && is_ows((*e)[-1]))
		(*e)--;
}

/*
 * RFC 9110 8.6: Content-Length = 1*DIGIT. A comma list ("5, 5") is not
 * accepted even when the members agree: a strict parser, not a lenient one,
 * is what keeps front and back end in agreement.
 */
static bool parse_content_length(const char *value, uint64_t *out)
{
	const char *b = value, *e = value + strlen(value);
	uint64_t v = 0;

	trim_ows(&b, &e);
	if (b == e)
		return false;
	for (; b < e; b++) {
		if (*b < '0' || *b > '9')
			return false;
		unsigned d = (unsigned)(*b - '0');
		if (v > (HDR_CL_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static void framing_content_length(struct hdr_framing *f, const char *value)
{
	uint64_t v;

	if (f->n_content_length < UINT_MAX)
		f->n_content_length++;
	if (!parse_content_length(value, &v)) {
		f->cl_invalid = true;
		return;
	}
	if (f->n_content_length == 1)
		f->content_length = v;
	else if (v != f->content_length)
		f->cl_conflict = true;
}

/* RFC 9112 6.1: only "chunked", once, is understood. Codings before it
 * ("gzip, chunked") would have to be decoded to be re-framed; a repeated
 * "chunked" is forbidden outright (RFC 9112 7). */
static void framing_transfer_encoding(struct hdr_framing *f, const char *value)
{
	const char *b = value, *e = value + strlen(value);

	if (f->n_transfer_encoding < UINT_MAX)
		f->n_transfer_encoding++;
	trim_ows(&b, &e);
	if (!span_equals(b, (size_t)(e - b), "chunked"))
		f->te_not_chunked = true;
}

void hdr_framing_add(struct hdr_framing *f, const char *name, const char *value)
{
	if (name == NULL)
		return;
	if (value == NULL)
		value = "";
	if (strcasecmp(name, "content-length") == 0)
		framing_content_length(f, value);
	else if (strcasecmp(name, "transfer-encoding") == 0)
		framing_transfer_encoding(f, value);
}

/*
 * Order of verdicts: both framings first (RFC 9112 6.3 item 3: the classic
 * smuggling shape, whatever the codings), then an unusable coding, then
 * Content-Length faults. Any repeat of Content-Length is refused, equal
 * values included: RFC 9110 8.6 lets a recipient tolerate "5" twice, but
 * the refusal costs honest clients nothing and removes a smuggling shape.
 */
enum hdr_framing_verdict hdr_framing_check(const struct hdr_framing *f)
{
	if (f->n_transfer_encoding > 0 && f->n_content_length > 0)
		return FRAMING_TE_AND_CL;
	if (f->n_transfer_encoding > 1 || f->te_not_chunked)
		return FRAMING_TE_UNSUPPORTED;
	if (f->cl_invalid)
		return FRAMING_CL_INVALID;
	if (f->n_content_length > 1 || f->cl_conflict)
		return FRAMING_CL_CONFLICT;
	return FRAMING_OK;
}

const char *hdr_framing_reason(enum hdr_framing_verdict v)
{
	switch (v) {
	case FRAMING_OK:
		return "request framing is valid";
	case FRAMING_TE_UNSUPPORTED:
		return "Transfer-Encoding other than a single \"chunked\" is not supported";
	case FRAMING_TE_AND_CL:
		return "Transfer-Encoding and Content-Length must not both be present";
	case FRAMING_CL_CONFLICT:
		return "Content-Length must appear only once";
	case FRAMING_CL_INVALID:
		return "Content-Length is not a decimal number within range";
	}
	return "unknown framing verdict";
}

bool hdr_framing_has_body(const struct hdr_framing *f)
{
	return f->n_transfer_encoding > 0 || (f->n_content_length > 0 && f->content_length > 0);
}

int64_t hdr_framing_body_length(const struct hdr_framing *f)
{
	if (f->n_transfer_encoding > 0)
		return -1;
	return f->n_content_length > 0 ? (int64_t)f->content_length : 0;
}

/* ---- Methods ---- */

/* idempotent: RFC 9110 9.2.2 (GET, HEAD, PUT, DELETE, OPTIONS; TRACE too,
 * but it is never forwarded). */
static const struct {
	const char *name;
	enum hdr_method_policy policy;
	bool idempotent;
} hdr_methods[] = {
    {"GET", HDR_METHOD_FORWARD, true},     {"HEAD", HDR_METHOD_FORWARD, true},    {"POST", HDR_METHOD_FORWARD, false},
    {"PUT", HDR_METHOD_FORWARD, true},     {"PATCH", HDR_METHOD_FORWARD, false},  {"DELETE", HDR_METHOD_FORWARD, true},
    {"OPTIONS", HDR_METHOD_FORWARD, true}, {"CONNECT", HDR_METHOD_TUNNEL, false}, {"TRACE", HDR_METHOD_ECHO, true},
    {"TRACK", HDR_METHOD_ECHO, false},
};

/* The Allow field of a 405: the forwarded rows above, in order (a unit test
 * holds the two together). */
const char hdr_methods_allowed[] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

static int method_row(const char *method)
{
	for (size_t i = 0; method && i < sizeof hdr_methods / sizeof hdr_methods[0]; i++)
		if (strcmp(method, hdr_methods[i].name) == 0)
			return (int)i;
	return -1;
}

enum hdr_method_policy hdr_method_policy(const char *method)
{
	int i = method_row(method);
	return i < 0 ? HDR_METHOD_UNKNOWN : hdr_methods[i].policy;
}

bool hdr_method_idempotent(const char *method)
{
	int i = method_row(method);
	return i >= 0 && hdr_methods[i].idempotent;
}
