/*
 * multipart.c - the $batch body reader (multipart.h).
 *
 * Lines end in CRLF; a bare LF is accepted too (some hand-written batches
 * use it), the same way on every line. A delimiter is "--" boundary at the
 * start of the body or of a line, followed by optional blanks and the end
 * of the line, or by "--" for the last one. Anything before the first
 * delimiter (preamble) and after the last (epilogue) is ignored, as RFC
 * 2046 says.
 */
#include "http/multipart.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "http/hdr.h"

struct walk {
	const char *body; /* the whole body: offsets are reported into it */
	multipart_target_fn cb;
	void *ud;
	const char *why;
};

static int fail(struct walk *w, const char *why)
{
	if (!w->why)
		w->why = why;
	return -1;
}

/* RFC 2046 bchars, and the boundary not ending in a space. */
static bool boundary_ok(const char *b, size_t n)
{
	static const char extra[] = "'()+_,-./:=? ";
	if (n == 0 || n > MULTIPART_BOUNDARY_MAX || b[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		if (!alnum && !memchr(extra, c, sizeof extra - 1))
			return false;
	}
	return true;
}

size_t multipart_boundary(const char *ctype, char *out)
{
	static const char mixed[] = "multipart/mixed";
	const char *p;
	size_t n;
	out[0] = '\0';
	if (!ctype || strncasecmp(ctype, mixed, sizeof mixed - 1) != 0)
		return 0;
	for (p = ctype + sizeof mixed - 1; (p = strchr(p, ';')) != NULL;) {
		p++;
		p += strspn(p, " \t");
		if (strncasecmp(p, "boundary", 8) != 0)
			continue;
		p += 8;
		p += strspn(p, " \t");
		if (*p++ != '=')
			return 0;
		p += strspn(p, " \t");
		if (*p == '"') {
			const char *e = strchr(++p, '"');
			if (!e)
				return 0;
			n = (size_t)(e - p);
		} else {
			n = strcspn(p, "; \t");
		}
		if (!boundary_ok(p, n))
			return 0;
		memcpy(out, p, n);
		out[n] = '\0';
		return n;
	}
	return 0;
}

/* The end of the line starting at p (before CRLF or LF), or NULL. */
static const char *line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	if (!lf)
		return NULL;
	return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

static const char *after_eol(const char *eol)
{
	return *eol == '\r' ? eol + 2 : eol + 1;
}

/* The next delimiter line at or after p: at the start of `from` only if
 * `at_start`, else after a LF. Returns its "--" or NULL. */
static const char *find_delim(const char *p, const char *end, const char *b, size_t bl, bool at_start)
{
	for (const char *q = p; q + 2 + bl <= end;) {
		bool line_start = q == p ? at_start : q[-1] == '\n';
		if (line_start && q[0] == '-' && q[1] == '-' && memcmp(q + 2, b, bl) == 0)
			return q;
		const char *lf = memchr(q, '\n', (size_t)(end - q));
		if (!lf)
			return NULL;
		q = lf + 1;
	}
	return NULL;
}

/* "METHOD SP target SP HTTP/1.x" at the start of an application/http body. */
static int request_line(struct walk *w, const char *p, const char *end)
{
	const char *eol = line_end(p, end), *sp1, *sp2;
	if (!eol) /* a request without headers: the part ends with its line */
		eol = end;
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || !hdr_name_ok(p, (size_t)(sp1 - p)))
		return fail(w, "a part's request line has no method");
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1 || eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return fail(w, "a part's request line is not METHOD target HTTP/1.x");
	for (const char *t = sp1 + 1; t < sp2; t++)
		if ((unsigned char)*t <= 0x20 || *t == 0x7f)
			return fail(w, "a part's request-target holds a control byte");
	w->cb(w->ud, (size_t)(sp1 + 1 - w->body), (size_t)(sp2 - sp1 - 1));
	return 0;
}

static int walk_body(struct walk *w, const char *p, const char *end, const char *b, size_t bl, int depth);

/* One part: its MIME header block, then an HTTP request or a changeset. */
static int part(struct walk *w, const char *p, const char *end, int depth)
{
	char ctype[256] = "", inner[MULTIPART_BOUNDARY_MAX + 1];
	for (;;) {
		const char *eol = line_end(p, end);
		if (!eol)
			return fail(w, "a part's header block has no end");
		if (eol == p) {
			p = after_eol(eol);
			break;
		}
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || !hdr_name_ok(p, (size_t)(colon - p)))
			return fail(w, "a malformed part header");
		if ((size_t)(colon - p) == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			const char *v = colon + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			if ((size_t)(eol - v) >= sizeof ctype)
				return fail(w, "a part's Content-Type is too long");
			memcpy(ctype, v, (size_t)(eol - v));
			ctype[eol - v] = '\0';
		}
		p = after_eol(eol);
	}
	if (strncasecmp(ctype, "application/http", 16) == 0)
		return request_line(w, p, end);
	size_t il = multipart_boundary(ctype, inner);
	if (il == 0)
		return fail(w, "a part is neither application/http nor a multipart/mixed changeset");
	if (depth + 1 >= MULTIPART_DEPTH)
		return fail(w, "changesets nested too deep");
	return walk_body(w, p, end, inner, il, depth + 1);
}

static int walk_body(struct walk *w, const char *p, const char *end, const char *b, size_t bl, int depth)
{
	const char *d = find_delim(p, end, b, bl, true);
	if (!d)
		return fail(w, "no boundary delimiter");
	for (;;) {
		const char *q = d + 2 + bl;
		if (end - q >= 2 && q[0] == '-' && q[1] == '-')
			return 0;                            /* the close delimiter: the rest is epilogue */
		while (q < end && (*q == ' ' || *q == '\t')) /* transport padding */
			q++;
		const char *eol = line_end(q, end);
		if (!eol || eol != q)
			return fail(w, "a boundary delimiter line with text after it");
		const char *start = after_eol(eol), *next = find_delim(start, end, b, bl, true);
		if (!next)
			return fail(w, "no closing boundary delimiter");
		/* the line break before a delimiter belongs to it (RFC 2046 5.1.1) */
		const char *stop = next;
		if (stop > start && stop[-1] == '\n')
			stop--;
		if (stop > start && stop[-1] == '\r')
			stop--;
		if (part(w, start, stop, depth) < 0)
			return -1;
		d = next;
	}
}

int multipart_targets(const char *body, size_t len, const char *boundary, multipart_target_fn cb, void *ud,
		      const char **why)
{
	struct walk w = {body, cb, ud, NULL};
	size_t bl = boundary ? strlen(boundary) : 0;
	int rc = body && boundary_ok(boundary, bl) ? walk_body(&w, body, body + len, boundary, bl, 0)
						   : fail(&w, "no usable boundary");
	*why = w.why;
	return rc;
}
