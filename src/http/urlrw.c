/*
 * urlrw.c - the streaming URL prefix rewriter (urlrw.h).
 *
 * One byte at a time through a small state machine; runs of bytes that can
 * neither end a string nor start a candidate are copied in bulk. The
 * candidate (the bytes matched of `from` so far, as received) sits in
 * rw->carry until it is settled: replaced by `to` once a boundary byte
 * follows it, or written out unchanged at the first mismatch.
 */
#include "http/urlrw.h"

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
	struct urlrw *rw;
	char *out;
	size_t cap, len;
};

static void put(struct sink *o, char c)
{
	struct urlrw *rw = o->rw;
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

static void drain(struct urlrw *rw, struct sink *o)
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

int urlrw_init(struct urlrw *rw, enum urlrw_mode mode, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	if (fl == 0 || fl >= URLRW_MAX || tl == 0 || tl >= URLRW_MAX)
		return -1;
	memset(rw, 0, offsetof(struct urlrw, carry));
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

static void candidate_start(struct urlrw *rw)
{
	rw->st = S_MATCH;
	rw->matched = 0;
	rw->escaped = false;
	rw->carry_len = 0;
}

/* JSON structure between tokens: which strings are keys. */
static void json_structure(struct urlrw *rw, unsigned char c)
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
static void scan(struct urlrw *rw, unsigned char c, struct sink *o)
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
static void mismatch(struct urlrw *rw, unsigned char c, struct sink *o)
{
	put_n(o, rw->carry, rw->carry_len);
	rw->carry_len = 0;
	rw->st = S_IN;
	scan(rw, c, o);
}

static void replace(struct urlrw *rw, struct sink *o)
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

static void carry(struct urlrw *rw, unsigned char c)
{
	if (rw->carry_len < URLRW_CARRY)
		rw->carry[rw->carry_len++] = (char)c;
}

static void feed(struct urlrw *rw, unsigned char c, struct sink *o)
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
static size_t match_run(struct urlrw *rw, const char *in, size_t n)
{
	size_t i = 0, m = rw->matched;
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

/* Bytes that, in S_IN, are copied without a state change. */
static size_t plain_run(const struct urlrw *rw, const char *in, size_t n)
{
	size_t i = 0;
	if (rw->mode == URLRW_JSON) {
		while (i < n && in[i] != '"' && in[i] != '\\')
			i++;
	} else {
		while (i < n && !text_delim((unsigned char)in[i]))
			i++;
	}
	return i;
}

size_t urlrw_step(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t cap)
{
	struct sink o = {rw, out, cap, 0};
	size_t i = 0;
	drain(rw, &o);
	while (i < n && rw->pend_len == 0 && o.len < o.cap) {
		if (rw->st == S_IN) {
			size_t k = plain_run(rw, in + i, n - i);
			if (k > o.cap - o.len)
				k = o.cap - o.len;
			if (k > 0) {
				memcpy(o.out + o.len, in + i, k);
				o.len += k;
				i += k;
				continue;
			}
		} else if (rw->st == S_MATCH) {
			size_t k = match_run(rw, in + i, n - i);
			i += k;
			if (k > 0)
				continue;
		}
		feed(rw, (unsigned char)in[i++], &o);
	}
	*used = i;
	return o.len;
}

size_t urlrw_end(struct urlrw *rw, char *out, size_t cap)
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

int urlrw_value(const char *from, const char *to, const char *value, char *out, size_t cap)
{
	struct urlrw rw;
	size_t n = strlen(value), used = 0, len = 0;
	if (cap == 0 || urlrw_init(&rw, URLRW_TEXT, from, to) < 0)
		return -1;
	while (used < n) {
		size_t u = 0;
		len += urlrw_step(&rw, value + used, n - used, &u, out + len, cap - 1 - len);
		used += u;
		if (len == cap - 1 && (used < n || rw.pend_len))
			return -1;
	}
	size_t k;
	while ((k = urlrw_end(&rw, out + len, cap - 1 - len)) > 0)
		len += k;
	if (rw.pend_len || rw.carry_len)
		return -1;
	out[len] = '\0';
	return (int)rw.rewrites;
}
