/*
 * rewrite.c - transparent routes (rewrite.h): the URL mapping of a request,
 * its response headers and body, and the $batch request body.
 *
 * The body rewriter sits on the consumer side of the down ring: curl's
 * writes land in the ring unchanged (so backpressure works as for any
 * answer), and libmicrohttpd's reads take them out through urlrw, whose
 * output for one input byte is bounded (URLRW_PEND). Memory per request is
 * therefore the ring plus struct rewrite, whatever the body's size.
 */
#include "proxy/rewrite.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/multipart.h"
#include "http/urlrw.h"
#include "ops/metrics.h"
#include "proxy/request.h"
#include "tls/tlsin.h"

#define BATCH_TARGETS_MAX 4096 /* request lines per $batch rewritten (Dataverse takes 1000) */

/* One heap block, so that request.c frees it with free() and needs nothing
 * of this module's (request is below rewrite in proxy/, internals.md 1). */
struct rewrite {
	char from[URLRW_MAX]; /* upstream origin + base path */
	char to[URLRW_MAX];   /* the public base */
	bool body;            /* the answer's body goes through rw */
	bool negotiate;       /* the client sent Accept-Encoding: curl sends its own and decodes */
	bool decoded;         /* curl removed the answer's Content-Encoding */
	bool headers_done;    /* a header was rewritten */
	unsigned batch_rewrites;
	struct urlrw rw;
	size_t batch_len; /* the rewritten $batch request body (batch_rewrites > 0) */
	char batch[];
};

/* ---- the mapping ---------------------------------------------------------- */

/* A host[:port] as it may appear in a URL we write into answers. */
static bool host_port_ok(const char *s, size_t n)
{
	if (n == 0 || n >= 256)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && !strchr(".-:[]_", c))
			return false;
	}
	return true;
}

/* The first element of a header list value (X-Forwarded-Host: a, b), trimmed. */
static size_t first_element(const char *v, const char **at)
{
	while (*v == ' ' || *v == '\t')
		v++;
	size_t n = strcspn(v, ",");
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	*at = v;
	return n;
}

static const char *header_in(const struct request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/* The public base this request was made under, into out; false if unknown. */
static bool public_base(const struct request *rq, char *out, size_t cap, bool *own_host)
{
	const struct route_cfg *r = rq->route;
	const char *scheme = tlsin_enabled() ? "https" : "http", *host = header_in(rq, "Host"), *v;
	size_t hl = host ? strlen(host) : 0;
	*own_host = false;
	if (r->public_url)
		return (size_t)snprintf(out, cap, "%s", r->public_url) < cap;
	if (rq->cfg->proxy.trusted_proxies.n &&
	    cidr_list_match(&rq->cfg->proxy.trusted_proxies, (const struct sockaddr *)&rq->client_sa)) {
		const char *xp = header_in(rq, "X-Forwarded-Proto"), *xh = header_in(rq, "X-Forwarded-Host");
		size_t n;
		if (xp && (n = first_element(xp, &v)) > 0)
			scheme = n == 5 && strncasecmp(v, "https", 5) == 0  ? "https"
				 : n == 4 && strncasecmp(v, "http", 4) == 0 ? "http"
									    : scheme;
		if (xh && (n = first_element(xh, &v)) > 0 && host_port_ok(v, n))
			host = v, hl = n;
	}
	if (!host || !host_port_ok(host, hl))
		return false;
	/* the service's own name (hosts-file redirect): the client's URLs are the upstream's already */
	size_t bare = hl;
	if (host[0] != '[' && memchr(host, ':', hl))
		bare = (size_t)((const char *)memchr(host, ':', hl) - host);
	*own_host = bare == strlen(r->upstream.host) && strncasecmp(host, r->upstream.host, bare) == 0;
	size_t pl = r->strip_prefix ? strlen(r->match_path) : 0;
	while (pl > 0 && r->match_path[pl - 1] == '/')
		pl--;
	if (strcspn(r->match_path, "\"\\<>'") < pl)
		return false; /* not something to write into JSON or a header */
	return (size_t)snprintf(out, cap, "%s://%.*s%.*s", scheme, (int)hl, host, (int)pl, r->match_path) < cap;
}

void rewrite_begin(struct request *rq)
{
	char to[URLRW_MAX], from[URLRW_MAX];
	bool own_host;
	const struct route_cfg *r = rq->route;
	if (rq->rw || !r || r->rewrite_urls != 0 || rq->bx)
		return;
	if ((size_t)snprintf(from, sizeof from, "%s%s", r->upstream.origin, r->upstream.path) >= sizeof from)
		return;
	if (!public_base(rq, to, sizeof to, &own_host) || own_host || strcasecmp(from, to) == 0)
		return;
	struct rewrite *rw = calloc(1, sizeof *rw);
	if (!rw)
		return; /* answered unrewritten: the request itself can still succeed */
	memcpy(rw->from, from, sizeof from);
	memcpy(rw->to, to, sizeof to);
	rw->negotiate = header_in(rq, "Accept-Encoding") != NULL;
	rq->rw = rw;
}

/* ---- request side ----------------------------------------------------------- */

bool rewrite_drop_request_header(const struct request *rq, const char *name)
{
	return rq->rw && rq->rw->negotiate && strcasecmp(name, "Accept-Encoding") == 0;
}

/* A client that asked for compression gets the upstream to compress for
 * the WAN hop; one that did not is forwarded as before (no Accept-Encoding). */
const char *rewrite_accept_encoding(const struct request *rq)
{
	return rq->rw && rq->rw->negotiate ? "" : NULL; /* "": every encoding this libcurl decodes */
}

static bool is_batch(const struct request *rq)
{
	const char *p = rq->match.path;
	size_t n = rq->match.path_len;
	return strcmp(rq->method, "POST") == 0 && ((n >= 7 && memcmp(p + n - 7, "/$batch", 7) == 0) ||
						   (n >= 9 && strncasecmp(p + n - 9, "/%24batch", 9) == 0));
}

struct spans {
	const char *body;
	const char *pub;
	size_t pub_len;
	size_t off[BATCH_TARGETS_MAX];
	size_t n;
	bool overflow;
};

/* A request-target naming the public base (then a boundary) is kept. */
static void on_target(void *ud, size_t off, size_t len)
{
	struct spans *s = ud;
	const char *t = s->body + off;
	if (len < s->pub_len || strncasecmp(t, s->pub, s->pub_len) != 0)
		return; /* relative, a $1 reference, or another host: untouched */
	if (len > s->pub_len && !strchr("/?#", t[s->pub_len]))
		return;
	if (s->n == BATCH_TARGETS_MAX) {
		s->overflow = true;
		return;
	}
	s->off[s->n++] = off;
}

static void log_batch(const struct request *rq, const char *why)
{
	struct log_line l;
	log_begin(&l, LOG_WARN, "batch_not_rewritten");
	log_str(&l, "request_id", rq->request_id);
	log_str(&l, "route", rq->route->name);
	log_str(&l, "reason", why);
	log_end(&l);
}

void rewrite_request_body(struct request *rq, const char **body, size_t *len)
{
	struct rewrite *rw = rq->rw;
	char boundary[MULTIPART_BOUNDARY_MAX + 1];
	const char *why = NULL;
	if (!rw || !is_batch(rq) || !multipart_boundary(header_in(rq, "Content-Type"), boundary))
		return;
	if (!body) {
		log_batch(rq, "the body is chunked or larger than buffer_size: forwarded as sent");
		return;
	}
	struct spans *s = calloc(1, sizeof *s);
	if (!s) {
		log_batch(rq, "out of memory: forwarded as sent");
		return;
	}
	s->body = *body;
	s->pub = rw->to;
	s->pub_len = strlen(rw->to);
	if (multipart_targets(*body, *len, boundary, on_target, s, &why) < 0 || s->overflow) {
		log_batch(rq, why ? why : "more request lines than the proxy rewrites: forwarded as sent");
		goto done;
	}
	if (s->n == 0)
		goto done;
	size_t fl = strlen(rw->from), grow = fl > s->pub_len ? fl - s->pub_len : 0, out_len = 0, at = 0;
	struct rewrite *big = realloc(rw, sizeof *rw + *len + s->n * grow + 1); /* the body joins the block */
	if (!big) {
		log_batch(rq, "out of memory: forwarded as sent");
		goto done;
	}
	rq->rw = rw = big;
	for (size_t i = 0; i < s->n; i++) { /* the body up to the target, the upstream base, skip the public one */
		memcpy(rw->batch + out_len, *body + at, s->off[i] - at);
		out_len += s->off[i] - at;
		memcpy(rw->batch + out_len, rw->from, fl);
		out_len += fl;
		at = s->off[i] + s->pub_len;
	}
	memcpy(rw->batch + out_len, *body + at, *len - at);
	out_len += *len - at;
	rw->batch_rewrites = (unsigned)s->n;
	rw->batch_len = out_len;
	*body = rw->batch;
	*len = out_len;
done:
	free(s);
}

/* ---- response side ------------------------------------------------------------ */

static bool decodable(const char *enc)
{
	static const char *const known[] = {"gzip", "x-gzip", "deflate", "br", "zstd"};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcasecmp(enc, known[i]) == 0)
			return true;
	return false;
}

bool rewrite_response_begin(struct request *rq)
{
	struct rewrite *rw = rq->rw;
	if (!rw)
		return false;
	const char *enc = request_upstream_header(rq, "Content-Encoding");
	const char *ctype = request_upstream_header(rq, "Content-Type");
	rw->decoded = rw->negotiate && enc && decodable(enc); /* curl asked for it and decodes it */
	if (enc && !rw->decoded && strcasecmp(enc, "identity") != 0)
		return false; /* an encoding curl left alone: the body cannot be read */
	rw->body = false;
	bool rewritable = false;
	if (ctype && rq->resp.status != 204 && rq->resp.status != 304) {
		bool json = strncasecmp(ctype, "application/json", 16) == 0 && strchr(";, \t", ctype[16]);
		char b[MULTIPART_BOUNDARY_MAX + 1];
		rewritable = json || multipart_boundary(ctype, b);
		if (rewritable && !rq->is_head)
			rw->body = urlrw_init(&rw->rw, json ? URLRW_JSON : URLRW_TEXT, rw->from, rw->to) == 0;
	}
	/* a HEAD gets no Content-Length either: the GET's would be the rewritten one's */
	return rewritable || rw->decoded;
}

static bool is_url_header(const char *name)
{
	return strcasecmp(name, "Location") == 0 || strcasecmp(name, "Content-Location") == 0 ||
	       strcasecmp(name, "OData-EntityId") == 0 || strcasecmp(name, "Link") == 0;
}

const char *rewrite_header(struct request *rq, const char *name, const char *value, char *buf, size_t cap)
{
	struct rewrite *rw = rq->rw;
	if (!rw)
		return value;
	if (rw->decoded && strcasecmp(name, "Content-Encoding") == 0)
		return NULL;
	if (!is_url_header(name) || urlrw_value(rw->from, rw->to, value, buf, cap) <= 0)
		return value;
	rw->headers_done = true;
	return buf;
}

size_t rewrite_read(struct request *rq, char *buf, size_t max)
{
	struct rewrite *rw = rq->rw;
	if (!rw || !rw->body)
		return rbuf_read(&rq->resp.down, buf, max);
	size_t out = 0;
	while (out < max) {
		const char *at;
		size_t n = rbuf_peek(&rq->resp.down, &at), used = 0;
		size_t k = urlrw_step(&rw->rw, at, n, &used, buf + out, max - out);
		rbuf_skip(&rq->resp.down, used);
		out += k;
		if (k == 0 && used == 0)
			break;
	}
	return out;
}

size_t rewrite_end(struct request *rq, char *buf, size_t max)
{
	struct rewrite *rw = rq->rw;
	return rw && rw->body ? urlrw_end(&rw->rw, buf, max) : 0;
}

size_t rewrite_bound(const struct request *rq, size_t len)
{
	const struct rewrite *rw = rq->rw;
	if (!rw || !rw->body)
		return len;
	/* from_len >= 1 and to_len < URLRW_MAX (urlrw_init): no overflow for
	 * a ring-sized len */
	return len + (len / rw->rw.from_len + 1) * (2 * rw->rw.to_len + 2);
}

size_t rewrite_whole(struct request *rq, char *buf, size_t cap)
{
	size_t out = 0, k;
	while (out < cap && (k = rewrite_read(rq, buf + out, cap - out)) > 0)
		out += k;
	while (out < cap && (k = rewrite_end(rq, buf + out, cap - out)) > 0)
		out += k;
	return out;
}

const char *rewrite_what(const struct request *rq)
{
	const struct rewrite *rw = rq->rw;
	bool body = rw && rw->body && rw->rw.rewrites > 0;
	if (!rw)
		return NULL;
	return body && rw->headers_done ? "headers,body" : body ? "body" : rw->headers_done ? "headers" : NULL;
}

void rewrite_count(const struct request *rq)
{
	if (rewrite_what(rq))
		metrics_rewritten(rq->route);
}

void rewrite_log(const struct request *rq, struct log_line *l)
{
	if (!rq->rw)
		return;
	if (rq->rw->batch_rewrites)
		log_int(l, "batch_urls_rewritten", rq->rw->batch_rewrites);
	log_str(l, "rewritten", rewrite_what(rq)); /* NULL: left out */
}
