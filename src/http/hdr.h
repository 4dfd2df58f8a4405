/*
 * hdr.h - header policy (which headers cross the proxy in each direction) and
 * request framing checks. Policy is data: static tables in hdr.c, no strcmp
 * chains at call sites. Pure functions, unit-tested and fuzzed.
 */
#ifndef S2S_HDR_H
#define S2S_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Whether a client request header may be copied to the upstream request.
 * Drops hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Transfer-Encoding, Upgrade), headers the proxy sets itself
 * (Host, Authorization, Proxy-Authorization, Content-Length, Expect,
 * X-Forwarded-*, Forwarded), and every header named in `connection` (the
 * client's Connection header value(s) joined with ',', may be NULL).
 */
bool hdr_request_forwardable(const char *name, const char *connection);

/*
 * Whether an upstream response header may be copied to the client response.
 * Drops hop-by-hop headers, Content-Length and Transfer-Encoding (the server
 * side frames the body itself), and every header listed in `connection`.
 */
bool hdr_response_forwardable(const char *name, const char *connection);

/* True when a comma-separated token list contains `token` (case-insensitive,
 * optional whitespace around tokens). */
bool hdr_list_contains(const char *list, const char *token);

/* True when a header value can be forwarded safely (no CR, LF or NUL;
 * other control characters except HTAB also refused). */
bool hdr_value_ok(const char *value, size_t len);

/* True when `name` is a valid RFC 9110 token (field-name). */
bool hdr_name_ok(const char *name, size_t len);
/* Is c a token character (RFC 9110 5.6.2 tchar)? */
bool hdr_is_tchar(unsigned char c);

/* Request framing, accumulated header by header (RFC 9112 section 6). */
struct hdr_framing {
	unsigned n_content_length; /* Content-Length header lines seen */
	unsigned n_transfer_encoding;
	bool cl_invalid;     /* a value that is not a decimal number */
	bool cl_conflict;    /* two different values */
	bool te_not_chunked; /* any coding other than a single "chunked" */
	uint64_t content_length;
};

enum hdr_framing_verdict {
	FRAMING_OK = 0,
	FRAMING_TE_UNSUPPORTED, /* Transfer-Encoding other than exactly "chunked" */
	FRAMING_TE_AND_CL,      /* both present: smuggling shape */
	FRAMING_CL_CONFLICT,    /* several different Content-Length values */
	FRAMING_CL_INVALID,     /* not a number, or too large */
};

void hdr_framing_init(struct hdr_framing *f);
/* Feed every request header (name, value); other names are ignored. */
void hdr_framing_add(struct hdr_framing *f, const char *name, const char *value);
enum hdr_framing_verdict hdr_framing_check(const struct hdr_framing *f);
/* A short English reason for problem bodies and logs. */
const char *hdr_framing_reason(enum hdr_framing_verdict v);
/* After FRAMING_OK: does the request carry a body (chunked, or length > 0)? */
bool hdr_framing_has_body(const struct hdr_framing *f);
/* After FRAMING_OK: length for the upstream request, or -1 for chunked. */
int64_t hdr_framing_body_length(const struct hdr_framing *f);

/*
 * Method policy (a table in hdr.c). Forwarded: the methods the Dataverse,
 * Business Central and F&O APIs take (OData v4, the Organization service).
 * TUNNEL (CONNECT): this is not a tunnel. ECHO (TRACE, and IIS's TRACK): an
 * upstream that echoes them would hand the caller the bearer token the
 * proxy attached. UNKNOWN: anything else, including a known method in
 * another case ("get", "trace": RFC 9110 9.1 makes methods case-sensitive,
 * and not every server agrees).
 */
enum hdr_method_policy { HDR_METHOD_UNKNOWN = 0, HDR_METHOD_FORWARD, HDR_METHOD_TUNNEL, HDR_METHOD_ECHO };
enum hdr_method_policy hdr_method_policy(const char *method);
/* May a request with this method be sent again after its bytes went out
 * (RFC 9110 9.2.2: GET, HEAD, PUT, DELETE, OPTIONS)? Same table. */
bool hdr_method_idempotent(const char *method);
/* The forwarded methods as an Allow field value (RFC 9110 10.2.1). */
extern const char hdr_methods_allowed[];

#endif
