/*
 * urlrw_ref.c - the byte-at-a-time URL rewriter that src/http/urlrw.c
 * replaced, kept unchanged but for its names (ref_urlrw_*) as the reference
 * of the differential checks: test_urlrw.c and fuzz/fuzz_urlrw.c include
 * it and compare its output and rewrite count with urlrw.c's on the same
 * input, split and output buffer. Not part of the proxy.
 *
 * The original header comment:
 *
 * A small state machine, fed one byte at a time only where a byte can
 * change its state: runs of bytes that can neither end a string nor start a
 * candidate are found with memchr (the next quote or backslash in a JSON
 * string; the next byte that could open a URL after a delimiter in TEXT)
 * and copied with memcpy, and a candidate's matching bytes are taken into
 * the carry in one go. The
 * candidate (the bytes matched of `from` so far, as received) sits in
 * rw->carry until it is settled: replaced by `to` once a boundary byte
 * follows it, or written out unchanged at the first mismatch.
 */
#ifndef S2S_URLRW_REF_C
#define S2S_URLRW_REF_C

#include "http/urlrw.h"

#include <string.h>

/* struct urlrw as it was (urlrw.h), under its own name. */
struct ref_urlrw {
	enum urlrw_mode mode;
	char from[URLRW_MAX];
	size_t from_len;
	char to[URLRW_MAX];
	size_t to_len;
	unsigned st;
	unsigned depth;
	uint64_t objects;
	bool want_key;
	size_t matched;
	bool escaped;
	char carry[URLRW_CARRY];
	size_t carry_len;
	char pend[URLRW_PEND];
	size_t pend_len, pend_pos;
	uint64_t rewrites;
};

#include <string.h>

enum {
	S_OUT,   /* JSON: between tokens */
	S_IN,    /* JSON: inside a string; TEXT: scanning */
	S_ESC,   /* JSON: after a backslash inside a string */
	S_MATCH, /* a candidate: from[0..matched) seen */
	S_MESC,  /* a candidate, after a backslash */
	S_BOUND, /* the whole of `from` seen: the next byte decides */
};

#define DEPTH_BITS 64

/* Where the output goes: the caller's buffer, then rw->pend. */
struct sink {
	struct ref_urlrw *rw;
	char *out;
	size_t cap, len;
};

static void put(struct sink *o, char c)
{
	struct ref_urlrw *rw = o->rw;
	if (rw->pend_len == rw->pend_pos && o->len < o->cap)
		o->out[o->len++] = c;
	else if (rw->pend_len < URLRW_PEND) /* always: URLRW_PEND bounds one byte's output */
		rw->pend[rw->pend_len++] = c;
}

static void put_n(struct sink *o, const char *s, size_t n)
{
	if (o->rw->pend_len == o->rw->pend_pos && o->cap - o->len >= n) {
		memcpy(o->out + o->len, s, n);
		o->len += n;
		return;
	}
	for (size_t i = 0; i < n; i++)
		put(o, s[i]);
}

/* ASCII only, whatever the locale (and no call per byte). */
static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static void drain(struct ref_urlrw *rw, struct sink *o)
{
	size_t k = rw->pend_len - rw->pend_pos, room = o->cap - o->len;
	if (k > room)
		k = room;
	memcpy(o->out + o->len, rw->pend + rw->pend_pos, k);
	o->len += k;
	rw->pend_pos += k;
	if (rw->pend_pos == rw->pend_len)
		rw->pend_pos = rw->pend_len = 0;
}

static int ref_urlrw_init(struct ref_urlrw *rw, enum urlrw_mode mode, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	if (fl == 0 || fl >= URLRW_MAX || tl == 0 || tl >= URLRW_MAX)
		return -1;
	memset(rw, 0, offsetof(struct ref_urlrw, carry));
	rw->carry_len = rw->pend_len = rw->pend_pos = 0;
	rw->rewrites = 0;
	rw->mode = mode;
	memcpy(rw->from, from, fl + 1);
	memcpy(rw->to, to, tl + 1);
	rw->from_len = fl;
	rw->to_len = tl;
	rw->st = mode == URLRW_JSON ? S_OUT : S_MATCH; /* TEXT: a URL may open the input */
	return 0;
}

/* TEXT: a byte after which a URL may start. */
static bool text_delim(unsigned char c)
{
	return c == '"' || c == ' ' || c == '\t' || c == ':' || c == '<' || c == '=' || c == ',' || c == '\n';
}

/* A byte that cannot continue the host, port or last path segment of `from`. */
static bool boundary(unsigned char c)
{
	bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
	return !(alnum || c == '.' || c == '-' || c == '_' || c == ':' || c == '%' || c == '@' || c == '~' ||
		 c >= 0x80);
}

static void candidate_start(struct ref_urlrw *rw)
{
	rw->st = S_MATCH;
	rw->matched = 0;
	rw->escaped = false;
	rw->carry_len = 0;
}

/* JSON structure between tokens: which strings are keys. */
static void json_structure(struct ref_urlrw *rw, unsigned char c)
{
	switch (c) {
	case '{':
	case '[':
		if (rw->depth < DEPTH_BITS) {
			uint64_t bit = (uint64_t)1 << rw->depth;
			rw->objects = c == '{' ? rw->objects | bit : rw->objects & ~bit;
		}
		rw->depth++;
		rw->want_key = c == '{';
		break;
	case '}':
	case ']':
		if (rw->depth > 0)
			rw->depth--;
		rw->want_key = false;
		break;
	case ',':
		/* deeper than DEPTH_BITS: unknown, taken as a value (rewritten) */
		rw->want_key = rw->depth > 0 && rw->depth <= DEPTH_BITS && (rw->objects >> (rw->depth - 1) & 1);
		break;
	case ':':
		rw->want_key = false;
		break;
	default:
		break;
	}
}

/* A byte in S_IN (after a settled candidate, too). */
static void scan(struct ref_urlrw *rw, unsigned char c, struct sink *o)
{
	put(o, (char)c);
	if (rw->mode == URLRW_TEXT) {
		if (text_delim(c))
			candidate_start(rw);
		return;
	}
	if (c == '"') {
		rw->st = S_OUT;
		rw->want_key = false;
	} else if (c == '\\') {
		rw->st = S_ESC;
	}
}

/* The candidate failed: write it as received, go on with c as plain input. */
static void mismatch(struct ref_urlrw *rw, unsigned char c, struct sink *o)
{
	put_n(o, rw->carry, rw->carry_len);
	rw->carry_len = 0;
	rw->st = S_IN;
	scan(rw, c, o);
}

static void replace(struct ref_urlrw *rw, struct sink *o)
{
	if (!rw->escaped)
		put_n(o, rw->to, rw->to_len);
	for (size_t i = 0; rw->escaped && i < rw->to_len; i++) {
		if (rw->to[i] == '/')
			put(o, '\\');
		put(o, rw->to[i]);
	}
	rw->carry_len = 0;
	rw->rewrites++;
	rw->st = S_IN;
}

static void carry(struct ref_urlrw *rw, unsigned char c)
{
	if (rw->carry_len < URLRW_CARRY)
		rw->carry[rw->carry_len++] = (char)c;
}

static void feed(struct ref_urlrw *rw, unsigned char c, struct sink *o)
{
	switch (rw->st) {
	case S_OUT:
		put(o, (char)c);
		if (c == '"') {
			if (rw->want_key)
				rw->st = S_IN;
			else
				candidate_start(rw);
		} else {
			json_structure(rw, c);
		}
		break;
	case S_IN:
		scan(rw, c, o);
		break;
	case S_ESC:
		put(o, (char)c);
		rw->st = S_IN;
		break;
	case S_MATCH:
		if (c == '\\') {
			carry(rw, c);
			rw->st = S_MESC;
		} else if (lower(c) == lower((unsigned char)rw->from[rw->matched])) {
			carry(rw, c);
			if (++rw->matched == rw->from_len)
				rw->st = S_BOUND;
		} else {
			mismatch(rw, c, o);
		}
		break;
	case S_MESC:
		if (c == '/' && rw->from[rw->matched] == '/') {
			carry(rw, c);
			rw->escaped = true;
			rw->st = ++rw->matched == rw->from_len ? S_BOUND : S_MATCH;
		} else if (rw->mode == URLRW_JSON) { /* the carry ends in the escape's backslash */
			put_n(o, rw->carry, rw->carry_len);
			rw->carry_len = 0;
			put(o, (char)c);
			rw->st = S_IN;
		} else {
			mismatch(rw, c, o);
		}
		break;
	case S_BOUND:
		if (boundary(c)) {
			replace(rw, o);
			scan(rw, c, o);
		} else {
			mismatch(rw, c, o);
		}
		break;
	default:
		break;
	}
}

/* In S_MATCH, the bytes that go on matching `from` plainly (no escape, not
 * its end): taken into the carry in one go. */
static size_t match_run(struct ref_urlrw *rw, const char *in, size_t n)
{
	size_t i = 0, m = rw->matched, rest = rw->from_len - 1 - m;
	/* most URLs are spelled as configured: compare the whole rest at once */
	if (rest > 0 && n >= rest && memcmp(in, rw->from + m, rest) == 0 && !memchr(in, '\\', rest)) {
		i = rest;
		m += rest;
	}
	while (i < n && m + 1 < rw->from_len && in[i] != '\\' &&
	       lower((unsigned char)in[i]) == lower((unsigned char)rw->from[m])) {
		i++;
		m++;
	}
	if (i > 0 && rw->carry_len + i <= URLRW_CARRY) {
		memcpy(rw->carry + rw->carry_len, in, i);
		rw->carry_len += i;
		rw->matched = m;
		return i;
	}
	return 0;
}

/* The first of the bytes a, b and c in p[0..n), or NULL. memchr scans in
 * words (or vectors), so a long run costs little; each later search stops
 * where the earlier one found its byte. */
static const char *first_of(const char *p, size_t n, char a, char b, char c)
{
	const char *r = memchr(p, a, n), *q;
	size_t lim = r ? (size_t)(r - p) : n;
	if (b != a && (q = memchr(p, b, lim)) != NULL) {
		r = q;
		lim = (size_t)(q - p);
	}
	if (c != a && c != b && (q = memchr(p, c, lim)) != NULL)
		r = q;
	return r;
}

/* Whether the 8 bytes in w hold the byte c: the classic zero-byte test on
 * w ^ c..c, exact about whether (not where). */
static bool has_byte(uint64_t w, unsigned char c)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	uint64_t x = w ^ (ones * c);
	return ((x - ones) & ~x & highs) != 0;
}

/* JSON, in S_IN: the bytes before the next quote or backslash, which are
 * copied without a state change. Eight bytes at a time (strings are mostly
 * too short for a memchr call to pay), then byte by byte to the stop. */
static size_t json_run(const char *in, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, in + i, 8);
		if (has_byte(w, '"') || has_byte(w, '\\'))
			break;
	}
	while (i < n && in[i] != '"' && in[i] != '\\')
		i++;
	return i;
}

/*
 * TEXT, in S_IN: the bytes that may be copied as scan() would write them,
 * up to the first byte that could open a candidate: one that matches
 * from[0] (or is a backslash, an escaped solidus) right after a delimiter.
 * In S_IN the byte before in[0] is never a delimiter (scan() starts a
 * candidate after one), so in[0] never opens one and the run is at least
 * one byte. The caller sets the state the run's last byte leaves.
 */
static size_t text_run(const struct ref_urlrw *rw, const char *in, size_t n)
{
	unsigned char f = lower((unsigned char)rw->from[0]);
	char a = (char)f, b = (char)(f >= 'a' && f <= 'z' ? f - 32 : f);
	size_t at = 1;
	while (at < n) {
		const char *p = first_of(in + at, n - at, a, b, '\\');
		if (!p)
			break;
		size_t j = (size_t)(p - in);
		if (text_delim((unsigned char)in[j - 1]))
			return j;
		at = j + 1;
	}
	return n;
}

/* Whether c can be the first byte of a candidate: from[0] in either case,
 * or the backslash of an escaped solidus. */
static bool opens(const struct ref_urlrw *rw, unsigned char c)
{
	return c == '\\' || lower(c) == lower((unsigned char)rw->from[0]);
}

/*
 * JSON: the states that copy their byte unchanged (S_OUT, S_IN, S_ESC) in
 * one loop, with the state in hand and the output written in place (one
 * byte out per byte in; lim is at most the room left). Returns the bytes
 * taken; stops at a candidate whose first byte could match (or a later
 * state), which feed() and match_run() take from there.
 */
static size_t json_run_all(struct ref_urlrw *rw, const char *in, size_t lim, char *out)
{
	size_t i = 0;
	while (i < lim) {
		unsigned char c = (unsigned char)in[i];
		switch (rw->st) {
		case S_IN: {
			size_t k = json_run(in + i, lim - i);
			memcpy(out + i, in + i, k);
			i += k;
			if (i == lim)
				return i;
			c = (unsigned char)in[i];
			out[i++] = (char)c;
			rw->st = c == '"' ? S_OUT : S_ESC; /* the run stops at a quote or a backslash */
			if (c == '"')
				rw->want_key = false;
			break;
		}
		case S_ESC:
			out[i++] = (char)c;
			rw->st = S_IN;
			break;
		case S_OUT:
			out[i++] = (char)c;
			if (c != '"')
				json_structure(rw, c);
			else if (rw->want_key)
				rw->st = S_IN;
			else
				candidate_start(rw);
			break;
		case S_MATCH:
			if (rw->matched > 0 || opens(rw, c))
				return i;
			rw->st = S_IN; /* failed on its first byte: the carry is empty */
			break;
		default:
			return i;
		}
	}
	return i;
}

static size_t ref_urlrw_step(struct ref_urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t cap)
{
	struct sink o = {rw, out, cap, 0};
	size_t i = 0;
	drain(rw, &o);
	while (i < n && rw->pend_len == 0 && o.len < o.cap) {
		size_t k, room = o.cap - o.len;
		if (rw->mode == URLRW_JSON) {
			k = json_run_all(rw, in + i, n - i < room ? n - i : room, o.out + o.len);
			o.len += k;
			i += k;
			if (k > 0)
				continue;
		} else {
			/* a candidate failing on its first byte: S_IN does the same with it */
			if (rw->st == S_MATCH && rw->matched == 0 && !opens(rw, (unsigned char)in[i]))
				rw->st = S_IN;
			if (rw->st != S_IN)
				goto bytewise;
			k = text_run(rw, in + i, n - i);
			k = k < room ? k : room;
			memcpy(o.out + o.len, in + i, k);
			o.len += k;
			i += k;
			/* scan() would have started a candidate after a delimiter */
			if (text_delim((unsigned char)in[i - 1]))
				candidate_start(rw);
			continue;
		}
	bytewise:
		if (rw->st == S_MATCH) {
			k = match_run(rw, in + i, n - i);
			i += k;
			if (k > 0)
				continue;
		}
		feed(rw, (unsigned char)in[i++], &o);
	}
	*used = i;
	return o.len;
}

static size_t ref_urlrw_end(struct ref_urlrw *rw, char *out, size_t cap)
{
	struct sink o = {rw, out, cap, 0};
	drain(rw, &o);
	if (rw->st == S_BOUND) { /* the end is a boundary too: "Location: https://host" */
		replace(rw, &o);
	} else if (rw->st == S_MATCH || rw->st == S_MESC) {
		put_n(&o, rw->carry, rw->carry_len);
		rw->carry_len = 0;
		rw->st = S_IN;
	}
	return o.len;
}

#endif
