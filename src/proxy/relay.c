/*
 * relay.c - the upstream transfer of a request, on libcurl.
 *
 * Bodies stream through two bounded rings (request.up, request.down).
 * Backpressure is pause/resume on both sides (internals.md section 2):
 * when a ring is full the producer stops (curl: CURL_WRITEFUNC_PAUSE; MHD:
 * leave upload bytes unconsumed and suspend), and the consumer undoes the
 * stop once there is room again. Every pause and suspension is bounded by
 * curl's timeouts or the client timeout, so nothing waits forever.
 */
#include "proxy/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"
#include "util/hblock.h"
#include "proxy/request.h"
#include "proxy/rewrite.h"
#include "tls/tlsca.h"
#include "tls/tlsin.h"
#include "proxy/worker.h"

#define URL_MAX (ROUTE_MAX_TARGET + 2048)
/* Unpause the download only once this much room exists: curl hands over up
 * to CURL_MAX_WRITE_SIZE at a time and re-delivers a paused chunk whole. */
#define DOWN_RESUME_ROOM CURL_MAX_WRITE_SIZE

/* ---- curl callbacks ---------------------------------------------------- */

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
	struct request *rq = ud;
	if (rq->bx) /* a bridged SOAP body, sent from memory */
		return rq->bx_ops->on_read(rq, buf, size * nitems);
	if (rq->replay.feed) { /* a replay after a 401: the kept copy, all there */
		size_t left = rq->replay.len - rq->replay.pos, k = size * nitems < left ? size * nitems : left;
		memcpy(buf, rq->replay.body + rq->replay.pos, k);
		rq->replay.pos += k;
		rq->us.body_sent += k;
		return k; /* 0 at the end: EOF */
	}
	size_t n = rbuf_read(&rq->cl.up, buf, size * nitems);
	if (n > 0) {
		rq->us.body_sent += n;
		request_resume(rq); /* MHD may be waiting for room to store more */
		return n;
	}
	if (rq->cl.up_eof)
		return 0;
	rq->us.pause_bits |= CURLPAUSE_SEND;
	return CURL_READFUNC_PAUSE;
}

/* A reused keep-alive connection died before the request went out: curl
 * retries on a new one and must rewind. Possible only while nothing has
 * left the ring yet. */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct request *rq = ud;
	if (rq->bx && origin == SEEK_SET && offset == 0)
		return rq->bx_ops->on_seek(rq);
	if (origin == SEEK_SET && offset == 0 && rq->us.body_sent == 0)
		return CURL_SEEKFUNC_OK;
	if (origin == SEEK_SET && offset == 0 && rq->replay.feed) { /* the kept copy can be rewound */
		rq->replay.pos = 0;
		rq->us.body_sent = 0;
		return CURL_SEEKFUNC_OK;
	}
	return CURL_SEEKFUNC_CANTSEEK;
}

/*
 * curl calls this each time it is about to send the request, and again when
 * it sends it anew on a fresh connection because a reused keep-alive one
 * died after taking it (lib/multi.c, Curl_retry_request: no option turns
 * that off). The upstream may have read and executed the first copy before
 * closing, so a method that is not idempotent (RFC 9110 9.2.2) is never
 * sent twice: the transfer fails and the client gets a 502 that says so
 * (nginx's proxy_next_upstream does not retry them either).
 */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	struct request *rq = ud;
	(void)primary_ip, (void)local_ip, (void)primary_port, (void)local_port;
	if (rq->us.attempts++ > 0 && !hdr_method_idempotent(rq->method)) {
		rq->us.resend_refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	struct request *rq = ud;
	size_t n = size * nmemb;
	if (rq->cl.gone)
		return 0; /* ends the transfer with CURLE_WRITE_ERROR */
	if (rq->bx)       /* collected whole, converted at the end */
		return rq->bx_ops->on_write(rq, data, n);
	if (rbuf_space(&rq->resp.down) < n) {
		rq->us.pause_bits |= CURLPAUSE_RECV;
		return CURL_WRITEFUNC_PAUSE; /* curl keeps the bytes and re-delivers them */
	}
	rbuf_write(&rq->resp.down, data, n);
	request_resume(rq); /* the client side looks again (no-op unless suspended) */
	return n;
}

static void headers_reset(struct request *rq)
{
	rq->resp.rh_len = 0;
	rq->resp.n_rh = 0;
	rq->resp.rh_overflow = false;
	rq->resp.length = -1;
}

/* Grow the header store to hold at least `need` bytes (doubling, capped). */
static bool headers_grow(struct request *rq, size_t need)
{
	size_t cap = rq->resp.rh_cap ? rq->resp.rh_cap : 2048;
	while (cap < need)
		cap *= 2;
	if (cap > RESP_HEADERS_MAX)
		cap = RESP_HEADERS_MAX;
	char *nb = realloc(rq->resp.rh_buf, cap);
	if (!nb)
		return false;
	rq->resp.rh_buf = nb;
	rq->resp.rh_cap = cap;
	return true;
}

/* Append "name\0value\0" to the header store; false if over the cap. */
static bool headers_add(struct request *rq, const char *name, size_t nl, const char *val, size_t vl)
{
	size_t need = rq->resp.rh_len + nl + vl + 2;
	if (rq->resp.n_rh >= RESP_HEADERS_COUNT || need > RESP_HEADERS_MAX)
		return false;
	if (need > rq->resp.rh_cap && !headers_grow(rq, need))
		return false;
	if (rq->resp.n_rh == rq->resp.rh_slots) { /* the index grows with the answer: most have about ten fields */
		unsigned slots = rq->resp.rh_slots ? rq->resp.rh_slots * 2 : 16;
		struct resp_header *grown = realloc(rq->resp.rh, slots * sizeof *grown);
		if (!grown)
			return false;
		rq->resp.rh = grown;
		rq->resp.rh_slots = slots;
	}
	char *b = rq->resp.rh_buf + rq->resp.rh_len;
	memcpy(b, name, nl);
	b[nl] = '\0';
	memcpy(b + nl + 1, val, vl);
	b[nl + 1 + vl] = '\0';
	rq->resp.rh[rq->resp.n_rh].name = (uint32_t)rq->resp.rh_len;
	rq->resp.rh[rq->resp.n_rh].value = (uint32_t)(rq->resp.rh_len + nl + 1);
	rq->resp.n_rh++;
	rq->resp.rh_len += nl + vl + 2;
	return true;
}

/* obs-fold (RFC 9112 5.2): a continuation line joins the previous value
 * with one space. Only the last stored header can be extended in place. */
static bool headers_fold(struct request *rq, const char *val, size_t vl)
{
	if (rq->resp.n_rh == 0 || rq->resp.rh_len + vl + 1 > RESP_HEADERS_MAX)
		return false;
	if (rq->resp.rh_len + vl + 1 > rq->resp.rh_cap && !headers_grow(rq, rq->resp.rh_len + vl + 1))
		return false;
	rq->resp.rh_buf[rq->resp.rh_len - 1] = ' ';
	memcpy(rq->resp.rh_buf + rq->resp.rh_len, val, vl);
	rq->resp.rh_buf[rq->resp.rh_len + vl] = '\0';
	rq->resp.rh_len += vl + 1;
	return true;
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
		(*n)--;
}

static void header_line(struct request *rq, const char *line, size_t n)
{
	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) { /* a new status line: 1xx or final */
		headers_reset(rq);
		const char *sp = memchr(line, ' ', n);
		rq->resp.status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return;
	}
	const char *v = line;
	size_t vl = n;
	trim(&v, &vl);
	if (vl == 0) { /* end of the header block */
		if (rq->resp.status >= 200) {
			rq->resp.headers_ready = true;
			rq->resp.in_body = true;
			request_resume(rq);
		}
		return;
	}
	if (line[0] == ' ' || line[0] == '\t') {
		if (!headers_fold(rq, v, vl))
			rq->resp.rh_overflow = true;
		return;
	}
	const char *colon = memchr(line, ':', n);
	if (!colon || colon == line || !hdr_name_ok(line, (size_t)(colon - line))) {
		rq->resp.rh_overflow = true; /* malformed: refuse the response rather than guess */
		return;
	}
	size_t nl = (size_t)(colon - line);
	v = colon + 1;
	vl = n - nl - 1;
	trim(&v, &vl);
	if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0 && vl > 0 && vl < 20)
		rq->resp.length = strtoll(v, NULL, 10);
	if (!headers_add(rq, line, nl, v, vl))
		rq->resp.rh_overflow = true;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
	struct request *rq = ud;
	size_t n = size * nitems;
	if (rq->resp.in_body)
		return n; /* trailers of a chunked response are not forwarded */
	header_line(rq, line, n);
	return n;
}

/* ---- transfer setup ---------------------------------------------------- */

struct hdr_build {
	struct request *rq;
	struct hblock *b;
	bool accept, content_type; /* the client's went upstream */
};

static enum MHD_Result copy_client_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	struct hdr_build *hb = cls;
	struct request *rq = hb->rq;
	(void)kind;
	if (!value || !hdr_request_forwardable(name, rq->cl.conn_tokens))
		return MHD_YES;
	if (rq->bx && !rq->bx_ops->forward_header(name))
		return MHD_YES; /* the bridge sets these for the converted body */
	if (strcasecmp(name, rq->cfg->proxy.inbound_key_header) == 0)
		return MHD_YES; /* the caller's key for this proxy never goes upstream */
	if (rewrite_drop_request_header(rq, name))
		return MHD_YES;
	hblock_add_field(hb->b, name, value);
	hb->accept |= strcasecmp(name, "Accept") == 0;
	hb->content_type |= strcasecmp(name, "Content-Type") == 0;
	return hb->b->failed ? MHD_NO : MHD_YES;
}

/* Every upstream header line, in order; run twice by build_headers (the
 * same calls measure, then fill), so nothing here may change between the
 * passes. */
/* Is line a "name: value" header line of that name? */
static bool line_names(const char *line, const char *name)
{
	size_t n = strlen(name);
	return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static void emit_headers(struct request *rq, const char *auth_header, struct hblock *b)
{
	struct hdr_build hb = {.rq = rq, .b = b};
	MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, copy_client_header, &hb);
	hblock_add(b, auth_header);
	if (rq->caller.act_for[0] && rq->route->audience_kind == AUD_DATAVERSE)
		hblock_add_field(b, "CallerObjectId", rq->caller.act_for); /* caller.h */
	for (const char *const *l = rq->bx ? rq->bx_ops->header_lines(rq) : NULL; l && *l; l++) {
		hblock_add(b, *l);
		hb.accept |= line_names(*l, "Accept");
		hb.content_type |= line_names(*l, "Content-Type");
	}
	hblock_add_field(b, "X-Forwarded-For", rq->client_ip);
	hblock_add(b, tlsin_enabled() ? "X-Forwarded-Proto: https" : "X-Forwarded-Proto: http");
	if (rq->host[0])
		hblock_add_field(b, "X-Forwarded-Host", rq->host);
	static const char *const corr[REQUEST_N_CORR] = REQUEST_CORR_HEADERS;
	/* absent ones (or the client's named in its Connection header, so not
	 * forwarded): the proxy's id, so both logs join */
	for (unsigned i = 0; i < REQUEST_N_CORR; i++)
		if (rq->corr_generated & (1u << i))
			hblock_add_field(b, corr[i], rq->corr[i]);
		else if (hdr_list_contains(rq->cl.conn_tokens, corr[i]))
			hblock_add_field(b, corr[i], rq->request_id);
	hblock_add(b, "Expect:"); /* MHD answered 100-continue already (internals.md L-CURL-5) */
	/* none forwarded (none sent, or dropped: named in Connection, ...) */
	if (!hb.accept)
		hblock_add(b, "Accept:"); /* or curl invents Accept: star/star */
	if (!hb.content_type)
		hblock_add(b, "Content-Type:"); /* or curl invents a form type for an in-memory body */
}

/* The upstream header list in one block (util/hblock.h): free() it. NULL
 * when out of memory. */
static struct curl_slist *build_headers(struct request *rq, const char *auth_header)
{
	struct hblock b = {0};
	emit_headers(rq, auth_header, &b);
	if (hblock_alloc(&b) == 0)
		emit_headers(rq, auth_header, &b);
	if (rq->caller.act_for[0] && rq->route->audience_kind == AUD_DATAVERSE)
		rq->caller.impersonate = true;
	return hblock_take(&b);
}

static bool method_wants_body(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/*
 * Is the whole request body in the up ring, contiguous from its start?
 * (proxy.c takes a body with a Content-Length that fits the ring whole
 * before the transfer starts.) Then curl sends it from memory
 * (CURLOPT_POSTFIELDS): below 64 KiB in the same send(2) as the header
 * block, with no read callback and no upload buffer. The ring is not
 * touched again until the transfer has ended.
 */
static bool body_in_memory(const struct request *rq)
{
	return rq->cl.has_body && !rq->bx && !rq->replay.feed && !rq->is_head && rq->cl.up_eof &&
	       rq->cl.body_len >= 0 && rq->cl.up.head == 0 && (int64_t)rq->cl.up.len == rq->cl.body_len;
}

#define SETOPT(h, opt, val)                                                                                            \
	do {                                                                                                           \
		if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK)                                                   \
			goto fail;                                                                                     \
	} while (0)

static int setup_easy(struct request *rq, CURL *h, const char *url)
{
	const struct route_cfg *r = rq->route;
	bool plain = strcmp(r->upstream.scheme, "http") == 0;
	SETOPT(h, CURLOPT_URL, url);
	SETOPT(h, CURLOPT_PRIVATE, rq);
	SETOPT(h, CURLOPT_PATH_AS_IS, 1L);
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, plain ? "http" : "https");
	SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SETOPT(h, CURLOPT_HTTPHEADER, rq->us.headers);
	SETOPT(h, CURLOPT_ERRORBUFFER, rq->us.curl_err);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_write);
	SETOPT(h, CURLOPT_WRITEDATA, rq);
	SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(h, CURLOPT_HEADERDATA, rq);
	SETOPT(h, CURLOPT_PREREQFUNCTION, on_prereq);
	SETOPT(h, CURLOPT_PREREQDATA, rq);
	SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
	if (r->idle_timeout_ms > 0) {
		SETOPT(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		SETOPT(h, CURLOPT_LOW_SPEED_TIME, (r->idle_timeout_ms + 999) / 1000);
	}
	SETOPT(h, CURLOPT_TIMEOUT_MS, r->total_timeout_ms);
	SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(h, CURLOPT_MAXAGE_CONN, 50L); /* below common server keep-alive timeouts */
	struct curl_slist *connect_to = connto_for(&rq->w->connect_to, r->upstream.host, r->upstream.port);
	if (connect_to)
		SETOPT(h, CURLOPT_CONNECT_TO, connect_to);
	if (!plain && rq->w->tls_sessions)
		SETOPT(h, CURLOPT_SHARE, rq->w->tls_sessions);
	tlsca_apply(h);
	if (rewrite_accept_encoding(rq))
		SETOPT(h, CURLOPT_ACCEPT_ENCODING, rewrite_accept_encoding(rq));
	if (rq->is_head) {
		SETOPT(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "GET") != 0) {
		SETOPT(h, CURLOPT_CUSTOMREQUEST, rq->method);
	}
	if (body_in_memory(rq)) {
		const char *body = rq->cl.up.data;
		size_t len = rq->cl.up.len;
		rewrite_request_body(rq, &body, &len); /* a $batch naming the public URL */
		SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		SETOPT(h, CURLOPT_POSTFIELDS, len ? body : "");
		SETOPT(h, CURLOPT_CUSTOMREQUEST, rq->method); /* POSTFIELDS implies POST */
		rq->us.body_sent = rq->cl.up.len;
	} else if (rq->cl.has_body || method_wants_body(rq->method)) {
		/* UPLOAD streams from on_read; the custom method keeps the verb. */
		rewrite_request_body(rq, NULL, NULL);
		SETOPT(h, CURLOPT_UPLOAD, 1L);
		SETOPT(h, CURLOPT_CUSTOMREQUEST, rq->method);
		SETOPT(h, CURLOPT_READFUNCTION, on_read);
		SETOPT(h, CURLOPT_READDATA, rq);
		SETOPT(h, CURLOPT_SEEKFUNCTION, on_seek);
		SETOPT(h, CURLOPT_SEEKDATA, rq);
		SETOPT(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(rq->cl.has_body ? rq->cl.body_len : 0));
	}
	return 0;
fail:
	return -1;
}

size_t relay_ring_bytes(const struct config *cfg)
{
	size_t cap = cfg->proxy.buffer_bytes;
	/* Two curl writes at least, or a paused download could never resume;
	 * both rings use this size so one pool serves them. */
	return cap < 2 * DOWN_RESUME_ROOM ? 2 * DOWN_RESUME_ROOM : cap;
}

int relay_start(struct request *rq, const char *auth_header)
{
	char url[URL_MAX];
	if ((rq->bx ? rq->bx_ops->upstream_url(rq, url, sizeof url) : route_upstream_url(&rq->match, url, sizeof url)) <
	    0) {
		request_set_local(rq, 414, "uri_too_long", "Request-target too long",
				  "the upstream URL would exceed the limit");
		return -1;
	}
	if (!rq->resp.down.data && pool_ring_get(&rq->w->pool, &rq->resp.down, relay_ring_bytes(rq->cfg)) < 0)
		goto oom;
	headers_reset(rq);
	rewrite_begin(rq);
	rq->us.attempts = 0;
	rq->us.resend_refused = false;
	rq->us.headers = build_headers(rq, auth_header);
	if (!rq->us.headers)
		goto oom;
	rq->us.easy = pool_easy_get(&rq->w->pool);
	if (!rq->us.easy || setup_easy(rq, rq->us.easy, url) < 0)
		goto oom;
	if (curl_multi_add_handle(rq->w->multi, rq->us.easy) != CURLM_OK)
		goto oom;
	rq->us.in_multi = true;
	request_ref(rq); /* the curl side's reference, dropped in relay_done/relay_abort */
	rq->w->curl_dirty = true;
	return 0;
oom:
	pool_easy_put(&rq->w->pool, rq->us.easy);
	rq->us.easy = NULL;
	free(rq->us.headers); /* one block (build_headers) */
	rq->us.headers = NULL;
	request_set_local(rq, 500, "internal_error", "Internal error", "out of memory starting the upstream request");
	return -1;
}

/* Detach the easy handle from the multi and free it; drops the curl ref. */
static void release_easy(struct request *rq)
{
	if (rq->us.in_multi) {
		curl_multi_remove_handle(rq->w->multi, rq->us.easy);
		rq->us.in_multi = false;
	}
	pool_easy_put(&rq->w->pool, rq->us.easy); /* reset there: nothing of this request survives */
	rq->us.easy = NULL;
	free(rq->us.headers); /* one block (build_headers) */
	rq->us.headers = NULL;
	request_unref(rq);
}

void relay_done(struct worker *w, CURL *easy, CURLcode result)
{
	struct request *rq = NULL;
	(void)w;
	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&rq) != CURLE_OK || !rq || rq->magic != REQUEST_MAGIC)
		return;
	rq->us.done = true;
	rq->us.result = result;
	if (result == CURLE_OK && !rq->resp.headers_ready)
		rq->us.result = CURLE_WEIRD_SERVER_REPLY;
	release_easy(rq); /* rq stays alive: the MHD side still holds a reference */
	request_resume(rq);
}

void relay_abort(struct request *rq)
{
	if (!rq || !rq->us.in_multi)
		return;
	rq->us.done = true;
	if (rq->us.result == CURLE_OK)
		rq->us.result = CURLE_ABORTED_BY_CALLBACK;
	release_easy(rq);
}

void relay_unpause(struct request *rq)
{
	if (!rq->us.in_multi || !rq->us.pause_bits)
		return;
	unsigned bits = rq->us.pause_bits;
	if ((bits & CURLPAUSE_SEND) && (rbuf_len(&rq->cl.up) > 0 || rq->cl.up_eof))
		bits &= ~(unsigned)CURLPAUSE_SEND;
	if ((bits & CURLPAUSE_RECV) && rbuf_space(&rq->resp.down) >= DOWN_RESUME_ROOM)
		bits &= ~(unsigned)CURLPAUSE_RECV;
	if (bits == rq->us.pause_bits)
		return;
	/* Set the state first: unpausing receive re-enters on_write at once. */
	rq->us.pause_bits = bits;
	curl_easy_pause(rq->us.easy, (int)bits);
	rq->w->curl_dirty = true;
}
