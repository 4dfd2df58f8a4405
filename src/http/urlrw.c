/*
 * urlrw.c - the streaming URL prefix rewriter (urlrw.h).
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
 *
 * JSON goes first through json_fast(), which reads 64-byte blocks as
 * bitmasks and settles a whole URL in place; it leaves to the byte machine
 * only what is rare (a candidate cut by the end of the input, the escaped
 * solidus, no room for `to`, a backslash outside strings). Both share the
 * lexer state in struct urlrw, so either can take over at any byte, and
 * they give the same output (tests/unit/urlrw_ref.c is the byte machine
 * alone, for the tests to compare with).
 */
#include "http/urlrw.h"

#include <string.h>

#if defined(__SSE2__) && !defined(URLRW_SCALAR)
#include <emmintrin.h>
#if defined(__x86_64__) && defined(__GNUC__)
/* AVX2 where the CPU has it (chosen at run time): half the instructions
 * per block, and three-operand forms with no register copies */
#define URLRW_AVX2 1
#include <immintrin.h>
#endif
#endif

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
	rw->plain = !memchr(from, '"', fl) && !memchr(from, '\\', fl);
#ifdef URLRW_AVX2
	rw->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("pclmul");
#else
	rw->avx2 = false;
#endif
	rw->st = mode == URLRW_JSON ? S_OUT : S_MATCH; /* TEXT: a URL may open the input */
	return 0;
}

/* TEXT: a byte after which a URL may start. */
static bool text_delim(unsigned char c)
{
	return c == '"' || c == ' ' || c == '\t' || c == ':' || c == '<' || c == '=' || c == ',' || c == '\n';
}

/* A byte that cannot continue the host, port or last path segment of
 * `from`: not alphanumeric, not one of ".-_:%@~", not >= 0x80. A bitmap of
 * the ASCII bytes that continue one (bit c of word c / 64), since this is
 * asked once per URL. */
static bool boundary(unsigned char c)
{
	static const uint64_t cont[2] = {
	    0x07ff602000000000u, /* '%' '-' '.' '0'-'9' ':' */
	    0x47fffffe87ffffffu, /* '@' 'A'-'Z' '_' 'a'-'z' '~' */
	};
	return c < 0x80 && !(cont[c >> 6] >> (c & 63) & 1);
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
static size_t text_run(const struct urlrw *rw, const char *in, size_t n)
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
static bool opens(const struct urlrw *rw, unsigned char c)
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
static size_t json_run_all(struct urlrw *rw, const char *in, size_t lim, char *out)
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

/*
 * JSON, the fast path: the input in blocks of 64 bytes, simdjson's "stage
 * 1". Each block is classified at once into bitmasks (bit i: byte i is a
 * quote, a backslash, a bracket, ',' or ':', or the first byte of `from`
 * in either case); the escaped bytes follow from the backslashes, the bytes
 * inside strings from a prefix XOR of the unescaped quotes. Only two kinds
 * of bit are then visited one by one: the brackets outside strings (for the
 * depth and which levels are objects) and the opening quotes followed by a
 * byte that may start a candidate. OData pages are dense with short
 * tokens, and the byte machine above paid a branch for each; here a block
 * without a candidate costs about 150 instructions, and the bytes between
 * two URLs are copied with one memcpy. The classification is SSE2 (the
 * x86-64 baseline; a scalar loop elsewhere), or AVX2 and a carry-less
 * multiply where the CPU has them: the block loop is compiled for both
 * (json_fast_with()) and urlrw_init() picks one.
 *
 * The lexer state between blocks is the byte machine's own (rw->st,
 * want_key, depth, objects), so either path can take over at any byte.
 * A string is a key when the last "event" before its opening quote (a
 * structural byte outside strings, or a closing quote) says so: '{' and
 * ',' inside an object make the next string a key, everything else a value,
 * exactly as json_structure() and scan() decide it byte by byte.
 */
#define BLOCK 64

/* For the helpers of the block loop, which is compiled twice (for the
 * baseline and for AVX2) and is worth nothing as calls. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

struct masks {
	uint64_t quote, bslash, brackets, seps, opener;
};

#if defined(__SSE2__) && !defined(URLRW_SCALAR)
/* The bytes of v equal to a, as 16 bits. */
static ALWAYS_INLINE uint64_t eq1(__m128i v, __m128i a)
{
	return (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, a));
}

/* The bytes of v equal to a or b, as 16 bits. */
static ALWAYS_INLINE uint64_t eq2(__m128i v, __m128i a, __m128i b)
{
	return (uint64_t)(unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, b)));
}

/* The masks of p[0..64) (all readable), 16 bytes at a time, written out:
 * a loop over the four costs more than the compares. f and fu: from[0] in
 * lower and upper case. Inlined, as the function is called through a
 * pointer (json_fast_with()) that is a constant only once inlined. */
static ALWAYS_INLINE void classify(const char *p, unsigned char f, unsigned char fu, struct masks *m)
{
	const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), lb = _mm_set1_epi8('{'),
		      rb = _mm_set1_epi8('}'), cm = _mm_set1_epi8(','), cl = _mm_set1_epi8(':'),
		      x20 = _mm_set1_epi8(0x20), fl = _mm_set1_epi8((char)f), fh = _mm_set1_epi8((char)fu);
	const __m128i *v = (const __m128i *)(const void *)p;
	__m128i v0 = _mm_loadu_si128(v), v1 = _mm_loadu_si128(v + 1), v2 = _mm_loadu_si128(v + 2),
		v3 = _mm_loadu_si128(v + 3);
	m->quote = eq1(v0, q) | eq1(v1, q) << 16 | eq1(v2, q) << 32 | eq1(v3, q) << 48;
	m->bslash = eq1(v0, bs) | eq1(v1, bs) << 16 | eq1(v2, bs) << 32 | eq1(v3, bs) << 48;
	m->seps = eq2(v0, cm, cl) | eq2(v1, cm, cl) << 16 | eq2(v2, cm, cl) << 32 | eq2(v3, cm, cl) << 48;
	m->opener = eq2(v0, fl, fh) | eq2(v1, fl, fh) << 16 | eq2(v2, fl, fh) << 32 | eq2(v3, fl, fh) << 48;
	/* '[' and ']' are '{' and '}' with bit 5 clear: one compare each on c | 0x20 */
	v0 = _mm_or_si128(v0, x20);
	v1 = _mm_or_si128(v1, x20);
	v2 = _mm_or_si128(v2, x20);
	v3 = _mm_or_si128(v3, x20);
	m->brackets = eq2(v0, lb, rb) | eq2(v1, lb, rb) << 16 | eq2(v2, lb, rb) << 32 | eq2(v3, lb, rb) << 48;
}

#ifdef URLRW_AVX2
#define AVX2        __attribute__((target("avx2,bmi,pclmul")))
#define INLINE_AVX2 inline __attribute__((always_inline, target("avx2,bmi,pclmul")))

static INLINE_AVX2 uint64_t eq1_256(__m256i v, __m256i a)
{
	return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, a));
}

static INLINE_AVX2 uint64_t eq2_256(__m256i v, __m256i a, __m256i b)
{
	return (uint64_t)(uint32_t)_mm256_movemask_epi8(
	    _mm256_or_si256(_mm256_cmpeq_epi8(v, a), _mm256_cmpeq_epi8(v, b)));
}

/* prefix_xor() as one carry-less multiply by all ones. */
AVX2 static uint64_t prefix_xor_clmul(uint64_t x)
{
	__m128i r = _mm_clmulepi64_si128(_mm_set_epi64x(0, (long long)x), _mm_set1_epi8((char)0xff), 0);
	return (uint64_t)_mm_cvtsi128_si64(r);
}

/* classify(), 32 bytes at a time. */
static INLINE_AVX2 void classify_avx2(const char *p, unsigned char f, unsigned char fu, struct masks *m)
{
	const __m256i q = _mm256_set1_epi8('"'), bs = _mm256_set1_epi8('\\'), lb = _mm256_set1_epi8('{'),
		      rb = _mm256_set1_epi8('}'), cm = _mm256_set1_epi8(','), cl = _mm256_set1_epi8(':'),
		      x20 = _mm256_set1_epi8(0x20), fl = _mm256_set1_epi8((char)f), fh = _mm256_set1_epi8((char)fu);
	const __m256i *v = (const __m256i *)(const void *)p;
	__m256i v0 = _mm256_loadu_si256(v), v1 = _mm256_loadu_si256(v + 1);
	m->quote = eq1_256(v0, q) | eq1_256(v1, q) << 32;
	m->bslash = eq1_256(v0, bs) | eq1_256(v1, bs) << 32;
	m->seps = eq2_256(v0, cm, cl) | eq2_256(v1, cm, cl) << 32;
	m->opener = eq2_256(v0, fl, fh) | eq2_256(v1, fl, fh) << 32;
	m->brackets = eq2_256(_mm256_or_si256(v0, x20), lb, rb) | eq2_256(_mm256_or_si256(v1, x20), lb, rb) << 32;
}
#endif
#else
/* The masks of p[0..64), a byte at a time (what the vector form computes). */
static void classify(const char *p, unsigned char f, unsigned char fu, struct masks *m)
{
	*m = (struct masks){0};
	for (unsigned i = 0; i < BLOCK; i++) {
		unsigned char c = (unsigned char)p[i];
		uint64_t bit = (uint64_t)1 << i;
		m->quote |= c == '"' ? bit : 0;
		m->bslash |= c == '\\' ? bit : 0;
		m->brackets |= c == '{' || c == '}' || c == '[' || c == ']' ? bit : 0;
		m->seps |= c == ',' || c == ':' ? bit : 0;
		m->opener |= c == f || c == fu ? bit : 0;
	}
}
#endif

/* Bit i: the XOR of bits 0..i of x (1 from an opening quote on, 0 from its
 * closing quote on). */
static uint64_t prefix_xor(uint64_t x)
{
	x ^= x << 1;
	x ^= x << 2;
	x ^= x << 4;
	x ^= x << 8;
	x ^= x << 16;
	return x ^ x << 32;
}

/* The bytes escaped by the backslashes bs of a block of len bytes (first:
 * byte 0 is escaped by the block before). A backslash not itself escaped
 * escapes the next byte; *next says whether that is the next block's
 * first. One step per escape: they are rare in OData, and a loop is plainly
 * right where the carry-propagating form of simdjson is subtle. */
static uint64_t escapes(uint64_t bs, bool first, size_t len, bool *next)
{
	uint64_t esc = first ? 1 : 0;
	bs &= ~esc;
	*next = false;
	while (bs) {
		unsigned b = (unsigned)__builtin_ctzll(bs);
		if (b + 1 == len) {
			*next = true;
			break;
		}
		uint64_t e = (uint64_t)1 << (b + 1);
		esc |= e;
		bs &= ~(e | e >> 1);
	}
	return esc;
}

/* A bracket outside strings: the depth and the object bits, as json_structure(). */
static ALWAYS_INLINE void bracket(struct urlrw *rw, unsigned char c)
{
	if (c == '{' || c == '[') {
		if (rw->depth < DEPTH_BITS) {
			uint64_t bit = (uint64_t)1 << rw->depth;
			rw->objects = c == '{' ? rw->objects | bit : rw->objects & ~bit;
		}
		rw->depth++;
	} else if (rw->depth > 0) {
		rw->depth--;
	}
}

/* want_key after the event byte c, with no bracket since (json_structure()).
 * Without branches: which event ends a block is anybody's guess. */
static bool key_after(const struct urlrw *rw, unsigned char c)
{
	unsigned d = rw->depth - 1; /* UINT_MAX at depth 0 */
	bool object = d < DEPTH_BITS && (rw->objects >> (d & (DEPTH_BITS - 1)) & 1);
	return (c == '{') | ((c == ',') & object);
}

/*
 * The candidate whose first byte is in[at] (just after a value's opening
 * quote), settled where it lies: 1 when `from` (any case) follows with a
 * boundary byte after it, 0 when it cannot match (the byte machine would
 * have copied it unchanged, its lexer state the same as for any string
 * body: `from` has no quote or backslash), -1 when the rest must go the
 * byte-wise way (a backslash, or the input ends first).
 */
static int settle(const struct urlrw *rw, const char *in, size_t n, size_t at)
{
	size_t fl = rw->from_len, j = 0;
	if (!rw->plain)
		return -1;
	if (n - at > fl) { /* the whole of `from` and the byte after it are here */
		/* most URLs are spelled as configured: skip what is equal as
		 * spelled, eight bytes at a time (`from`'s bytes: no backslash) */
		uint64_t a, b;
		for (; j + 8 <= fl; j += 8) {
			memcpy(&a, in + at + j, 8);
			memcpy(&b, rw->from + j, 8);
			if (a != b)
				break;
		}
		if (j + 8 > fl && fl >= 8) { /* the last eight bytes, overlapping: all equal? */
			memcpy(&a, in + at + fl - 8, 8);
			memcpy(&b, rw->from + fl - 8, 8);
			if (a == b)
				j = fl;
		}
		for (; j < fl; j++) {
			if (in[at + j] == '\\')
				return -1;
			if (lower((unsigned char)in[at + j]) != lower((unsigned char)rw->from[j]))
				return 0;
		}
		return boundary((unsigned char)in[at + fl]);
	}
	for (; j < fl; j++) {
		if (at + j == n || in[at + j] == '\\')
			return -1;
		if (lower((unsigned char)in[at + j]) != lower((unsigned char)rw->from[j]))
			return 0;
	}
	return -1; /* all of `from`, and the input ends: the byte after it decides */
}

/* Where json_fast() is: in[s..i) is taken and still to be copied to out + o
 * (room bytes in all). */
struct cursor {
	const char *in;
	size_t n, i, s;
	char *out;
	size_t room, o;
	unsigned char f, fu; /* from[0] in lower and upper case */
	unsigned char ev;    /* the last event of the last block, 0: rw->want_key is up to date */
};

static ALWAYS_INLINE void flush(struct cursor *c)
{
	memcpy(c->out + c->o, c->in + c->s, c->i - c->s);
	c->o += c->i - c->s;
	c->s = c->i;
}

/* rw->want_key after c->ev. It is worked out only where it is needed (a
 * candidate, the end of json_fast()), not at the end of every block; the
 * depth it depends on (for a ',') has not changed since, as a bracket
 * would be a later event. */
static ALWAYS_INLINE bool want_key(struct urlrw *rw, struct cursor *c)
{
	if (c->ev) {
		rw->want_key = key_after(rw, c->ev);
		c->ev = 0;
	}
	return rw->want_key;
}

/* `from` is at in[i], a URL (settle() said 1): `to` instead, if it fits. */
static ALWAYS_INLINE bool rewrite_here(struct urlrw *rw, struct cursor *c)
{
	if (c->room - c->o - (c->i - c->s) < rw->to_len)
		return false;
	flush(c);
	memcpy(c->out + c->o, rw->to, rw->to_len);
	c->o += rw->to_len;
	c->i += rw->from_len;
	c->s = c->i;
	rw->rewrites++;
	rw->st = S_IN;
	rw->want_key = false;
	c->ev = 0;
	return true;
}

enum { BLK_DONE, BLK_STOP, BLK_BYTES };

typedef void classify_fn(const char *p, unsigned char f, unsigned char fu, struct masks *m);

/* What a block holds, as bits (bit i: byte i), its state carried in. */
struct block {
	uint64_t in_str; /* inside a string after this byte (an opening quote: 1, a closing one: 0) */
	uint64_t open;   /* opening quotes */
	uint64_t brk;    /* brackets outside strings */
	uint64_t events; /* brackets, ',' and ':' outside strings, closing quotes */
	uint64_t cand;   /* opening quotes followed by from[0] (any case) or a backslash */
	bool next_esc;   /* the byte after the block is escaped */
};

/* The bits of p[0..len) from the state in rw; false when a backslash lies
 * outside strings, where only the byte machine's reading (it ignores the
 * backslash) is right. */
static ALWAYS_INLINE bool block_bits(const struct urlrw *rw, const struct cursor *c, const char *p, size_t len,
				     classify_fn *classify_block, struct block *k)
{
	uint64_t valid = len < BLOCK ? ((uint64_t)1 << len) - 1 : ~(uint64_t)0;
	struct masks m;
	classify_block(p, c->f, c->fu, &m);
	uint64_t bs = m.bslash & valid, quote = m.quote & valid & ~escapes(bs, rw->st == S_ESC, len, &k->next_esc);
#ifdef URLRW_AVX2
	k->in_str = classify_block == classify_avx2 ? prefix_xor_clmul(quote) : prefix_xor(quote);
#else
	k->in_str = prefix_xor(quote);
#endif
	k->in_str ^= rw->st == S_OUT ? 0 : ~(uint64_t)0;
	if (bs & ~k->in_str)
		return false;
	k->open = quote & k->in_str;
	k->brk = m.brackets & valid & ~k->in_str;
	k->events = k->brk | (m.seps & valid & ~k->in_str) | (quote & ~k->in_str);
	k->cand = k->open & (((m.opener & valid) | bs) >> 1); /* the quote at len-1 is left to rw->st */
	return true;
}

/* The state after the whole block p[0..len). */
static ALWAYS_INLINE void block_end(struct urlrw *rw, struct cursor *c, const char *p, size_t len,
				    const struct block *k)
{
	uint64_t last = (uint64_t)1 << (len - 1);
	if (k->events)
		c->ev = (unsigned char)p[63 - __builtin_clzll(k->events)];
	if (!(k->in_str & last))
		rw->st = S_OUT;
	else if ((k->open & last) && !want_key(rw, c))
		candidate_start(rw);
	else
		rw->st = (k->open & last) || !k->next_esc ? S_IN : S_ESC;
}

/*
 * One block in[i..i+len) (len <= BLOCK, and no more than fits the room
 * 1:1), from the state in rw (S_OUT, S_IN or S_ESC). BLK_DONE: the block
 * is taken (c->i past it, or past a URL that ends beyond it). BLK_STOP: a
 * value's candidate is left to the byte machine, c->i after its opening
 * quote, in S_MATCH. BLK_BYTES: nothing taken (block_bits() said no).
 */
static ALWAYS_INLINE int json_block(struct urlrw *rw, struct cursor *c, size_t len, classify_fn *classify_block)
{
	size_t base = c->i;
	char pad[BLOCK];
	const char *p = c->in + base;
	struct block k;
	if (len < BLOCK) { /* the tail: classified from a zero-padded copy, never read past the input */
		memset(pad, 0, sizeof pad);
		memcpy(pad, p, len);
		p = pad;
	}
	if (!block_bits(rw, c, p, len, classify_block, &k))
		return BLK_BYTES;
	/* only brackets (the depth) and candidates are visited, in order */
	for (uint64_t walk = k.brk | k.cand; walk;) {
		unsigned b = (unsigned)__builtin_ctzll(walk);
		walk &= walk - 1;
		if (k.brk >> b & 1) {
			bracket(rw, (unsigned char)p[b]);
			continue;
		}
		uint64_t before = k.events & (((uint64_t)1 << b) - 1);
		if (before ? key_after(rw, (unsigned char)p[63 - __builtin_clzll(before)]) : want_key(rw, c))
			continue; /* a key */
		int r = settle(rw, c->in, c->n, base + b + 1);
		if (r == 0)
			continue;
		c->i = base + b + 1;
		if (r < 0 || !rewrite_here(rw, c)) {
			rw->want_key = false;
			c->ev = 0;
			candidate_start(rw);
			return BLK_STOP;
		}
		/* the URL ends past the block, or the rest of it no longer fits
		 * the room (`to` may be the longer): stop after the URL, in a string */
		if (c->i >= base + len || c->room - c->o < base + len - c->i)
			return BLK_DONE;
		/* `from` has no quote or backslash: the bits hold past the URL,
		 * and none of walk lies inside it (a string) */
	}
	c->i = base + len;
	block_end(rw, c, p, len, &k);
	return BLK_DONE;
}

/*
 * JSON: rewrite in[0..n) into out (room bytes) with json_block() while the
 * state is one it takes. Returns the bytes written, *used the input taken;
 * stops where the byte machine must go on (a candidate to carry, or no
 * room for `to`).
 */
static ALWAYS_INLINE size_t json_fast_with(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out,
					   size_t room, classify_fn *classify_block)
{
	unsigned char f = lower((unsigned char)rw->from[0]);
	struct cursor c = {in, n, 0, 0, out, room, 0, f, f >= 'a' && f <= 'z' ? (unsigned char)(f - 32) : f, 0};
	while (c.i < n) {
		if (rw->st == S_MATCH) { /* a value's opening quote ended the last block */
			if (rw->matched > 0)
				break;
			int r = opens(rw, (unsigned char)in[c.i]) ? settle(rw, in, n, c.i) : 0;
			if (r < 0 || (r > 0 && !rewrite_here(rw, &c)))
				break;
			rw->st = S_IN; /* not a URL: copied as any string body */
			continue;
		}
		if (rw->st != S_OUT && rw->st != S_IN && rw->st != S_ESC)
			break;
		size_t len = c.room - c.o - (c.i - c.s);
		len = len < n - c.i ? len : n - c.i;
		len = len < BLOCK ? len : BLOCK;
		if (len == 0)
			break;
		/* a whole block, the usual case, with its length a constant */
		int r =
		    len == BLOCK ? json_block(rw, &c, BLOCK, classify_block) : json_block(rw, &c, len, classify_block);
		if (r == BLK_STOP)
			break;
		if (r == BLK_BYTES) { /* this block byte by byte */
			flush(&c);
			want_key(rw, &c);
			size_t k = json_run_all(rw, in + c.i, len, out + c.o);
			c.o += k;
			c.i += k;
			c.s = c.i;
		}
	}
	flush(&c);
	want_key(rw, &c);
	*used = c.i;
	return c.o;
}

/* json_fast_with() compiled for the CPU's best classify(). */
static size_t json_fast_base(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t room)
{
	return json_fast_with(rw, in, n, used, out, room, classify);
}

#ifdef URLRW_AVX2
AVX2 static size_t json_fast_avx2(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t room)
{
	return json_fast_with(rw, in, n, used, out, room, classify_avx2);
}
#endif

static size_t json_fast(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t room)
{
#ifdef URLRW_AVX2
	if (rw->avx2)
		return json_fast_avx2(rw, in, n, used, out, room);
#endif
	return json_fast_base(rw, in, n, used, out, room);
}

size_t urlrw_step(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t cap)
{
	struct sink o = {rw, out, cap, 0};
	size_t i = 0;
	drain(rw, &o);
	while (i < n && rw->pend_len == 0 && o.len < o.cap) {
		size_t k, room = o.cap - o.len;
		if (rw->mode == URLRW_JSON) {
			o.len += json_fast(rw, in + i, n - i, &k, o.out + o.len, room);
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
