/*
 * test_urlrw.c - the streaming URL rewriter: JSON string values only (not
 * keys, not text in the middle of a string), escaped solidus, boundaries,
 * TEXT mode for multipart answers and header values, and the same output
 * for every way of cutting the input: one byte at a time, at every single
 * split point, and with a one-byte output buffer. The 64-byte blocks of
 * the JSON fast path: quotes, backslash runs and candidates at every offset
 * around a block's edge and a call's, nesting past 64 levels, long strings,
 * non-ASCII and NUL bytes; and a differential check against the byte
 * machine urlrw.c had before (urlrw_ref.c) on random JSON-ish bodies.
 */
#include <stdlib.h>
#include <string.h>

#include "http/urlrw.h"
#include "t.h"
#include "urlrw_ref.c"

#define FROM "https://contoso.crm4.dynamics.com"
#define TO   "http://127.0.0.1:8080/dataverse"

/* Run in[] through a fresh rewriter: input in pieces of `piece` bytes
 * (0 = whole), output into a buffer of `ocap` bytes at a time. */
static char *run(enum urlrw_mode mode, const char *in, size_t piece, size_t ocap, size_t split, uint64_t *n)
{
	static struct urlrw rw;
	size_t len = strlen(in), cap = len * 4 + 4096, out_len = 0, at = 0;
	char *out = malloc(cap), *chunk = malloc(ocap);
	if (!out || !chunk || urlrw_init(&rw, mode, FROM, TO) < 0) {
		free(out);
		free(chunk);
		return NULL;
	}
	while (at < len) {
		size_t end = piece ? at + piece : split && at < split ? split : len;
		if (end > len)
			end = len;
		while (at < end) {
			size_t used = 0, k = urlrw_step(&rw, in + at, end - at, &used, chunk, ocap);
			memcpy(out + out_len, chunk, k);
			out_len += k;
			at += used;
		}
	}
	size_t k;
	while ((k = urlrw_end(&rw, chunk, ocap)) > 0) {
		memcpy(out + out_len, chunk, k);
		out_len += k;
	}
	out[out_len] = '\0';
	free(chunk);
	if (n)
		*n = rw.rewrites;
	return out;
}

struct json_case {
	const char *in, *want;
};

static const struct json_case json_cases[] = {
    {"{\"@odata.nextLink\":\"" FROM "/api/data/v9.2/accounts?$skiptoken=1\"}",
     "{\"@odata.nextLink\":\"" TO "/api/data/v9.2/accounts?$skiptoken=1\"}"},
    {"{\"a\":\"" FROM "\"}", "{\"a\":\"" TO "\"}"},
    {"{\"a\":\"HTTPS://Contoso.CRM4.dynamics.com/x\"}", "{\"a\":\"" TO "/x\"}"},
    {"{\"a\":\"" FROM "?q=1\",\"b\":\"" FROM "#f\"}", "{\"a\":\"" TO "?q=1\",\"b\":\"" TO "#f\"}"},
    /* keys, text inside a string, look-alike hosts and ports are left alone */
    {"{\"" FROM "\":\"" FROM "/k\"}", "{\"" FROM "\":\"" TO "/k\"}"},
    {"{\"t\":\"see " FROM "/x\"}", "{\"t\":\"see " FROM "/x\"}"},
    {"{\"o\":\"" FROM ".evil.example/x\",\"p\":\"" FROM ":8443/x\",\"q\":\"" FROM "x\"}",
     "{\"o\":\"" FROM ".evil.example/x\",\"p\":\"" FROM ":8443/x\",\"q\":\"" FROM "x\"}"},
    {"{\"s\":\"https://contoso.crm4.dynamics.co\"}", "{\"s\":\"https://contoso.crm4.dynamics.co\"}"},
    /* escaped solidus: the rewrite keeps the style */
    {"{\"u\":\"https:\\/\\/contoso.crm4.dynamics.com\\/api\"}",
     "{\"u\":\"http:\\/\\/127.0.0.1:8080\\/dataverse\\/api\"}"},
    {"{\"u\":\"https:\\/\\/contoso.crm4.dynamics.com\"}", "{\"u\":\"http:\\/\\/127.0.0.1:8080\\/dataverse\"}"},
    {"{\"u\":\"https:\\u002f\\/contoso\"}", "{\"u\":\"https:\\u002f\\/contoso\"}"},
    {"{\"u\":\"https:\\\"x\"}", "{\"u\":\"https:\\\"x\"}"},
    /* arrays, nesting, values after escaped quotes, keys inside arrays of objects */
    {"[\"" FROM "/1\",{\"" FROM "\":[\"" FROM "/2\"]},\"x\\\"\",\"" FROM "/3\"]",
     "[\"" TO "/1\",{\"" FROM "\":[\"" TO "/2\"]},\"x\\\"\",\"" TO "/3\"]"},
    {"{\"a\":1,\"b\":[true,null],\"c\":{\"d\":\"" FROM "/d\"},\"e\":\"" FROM "/e\"}",
     "{\"a\":1,\"b\":[true,null],\"c\":{\"d\":\"" TO "/d\"},\"e\":\"" TO "/e\"}"},
    {"\"" FROM "/top\"", "\"" TO "/top\""},
    /* not JSON, as before: a ':' after a key that is not a string still makes a value */
    {"{1:\"" FROM "\",\"a\",:\"" FROM "/2\"}", "{1:\"" TO "\",\"a\",:\"" TO "/2\"}"},
    {"[{\"a\":1,2:\"" FROM "\"},{:\"" FROM "\"}]", "[{\"a\":1,2:\"" TO "\"},{:\"" TO "\"}]"},
    /* a candidate cut by the end of the body (not JSON, but never lost) */
    {"{\"a\":\"https://contoso.cr", "{\"a\":\"https://contoso.cr"},
    {"{\"a\":\"https:\\", "{\"a\":\"https:\\"},
};

static void test_json_cases(void)
{
	for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
		char *got = run(URLRW_JSON, json_cases[i].in, 0, 65536, 0, NULL);
		CHECK(got != NULL);
		if (strcmp(got, json_cases[i].want) != 0) {
			T_FAIL("case %zu: got %s, want %s", i, got, json_cases[i].want);
		}
		free(got);
	}
}

/* Every case, fed one byte at a time, cut at each single split point, and
 * read through a one-byte output buffer, gives the same bytes. */
static void test_every_split(void)
{
	for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
		const char *in = json_cases[i].in, *want = json_cases[i].want;
		char *one = run(URLRW_JSON, in, 1, 65536, 0, NULL), *tiny = run(URLRW_JSON, in, 0, 1, 0, NULL);
		CHECK(one && tiny);
		CHECK_STR(one, want);
		CHECK_STR(tiny, want);
		free(one);
		free(tiny);
		for (size_t s = 1; s < strlen(in); s++) {
			char *got = run(URLRW_JSON, in, 0, 7, s, NULL);
			CHECK(got != NULL);
			if (strcmp(got, want) != 0) {
				T_FAIL("case %zu split %zu: got %s", i, s, got);
			}
			free(got);
		}
	}
}

static void test_text_mode(void)
{
	const char *in = "--batchresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n"
			 "Location: " FROM "/api/data/v9.2/accounts(1)\r\nOData-EntityId:" FROM
			 "/api/data/v9.2/accounts(1)\r\nLink: <" FROM "/p2>; rel=\"next\"\r\n\r\n"
			 "{\"@odata.id\":\"" FROM "/a(1)\",\"x\":\"" FROM ".evil/\"}\r\n--batchresponse_1--\r\n";
	const char *want = "--batchresponse_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n"
			   "Location: " TO "/api/data/v9.2/accounts(1)\r\nOData-EntityId:" TO
			   "/api/data/v9.2/accounts(1)\r\nLink: <" TO "/p2>; rel=\"next\"\r\n\r\n"
			   "{\"@odata.id\":\"" TO "/a(1)\",\"x\":\"" FROM ".evil/\"}\r\n--batchresponse_1--\r\n";
	uint64_t n = 0;
	char *got = run(URLRW_TEXT, in, 0, 65536, 0, &n);
	CHECK_STR(got, want);
	CHECK_INT(n, 4);
	free(got);
	for (size_t s = 1; s < strlen(in); s++) {
		got = run(URLRW_TEXT, in, 1 + s % 3, 1 + s % 5, 0, NULL);
		CHECK(got != NULL);
		if (strcmp(got, want) != 0) {
			T_FAIL("piece %zu: got %s", 1 + s % 3, got);
		}
		free(got);
	}
}

static void test_values(void)
{
	char out[256];
	CHECK_INT(urlrw_value(FROM, TO, FROM "/api/data/v9.2/accounts(1)", out, sizeof out), 1);
	CHECK_STR(out, TO "/api/data/v9.2/accounts(1)");
	CHECK_INT(urlrw_value(FROM, TO, FROM, out, sizeof out), 1);
	CHECK_STR(out, TO);
	CHECK_INT(
	    urlrw_value(FROM, TO, "<" FROM "/a>; rel=\"next\", <https://x.example/b>; rel=\"x\"", out, sizeof out), 1);
	CHECK_STR(out, "<" TO "/a>; rel=\"next\", <https://x.example/b>; rel=\"x\"");
	CHECK_INT(urlrw_value(FROM, TO, "https://login.microsoftonline.com/x", out, sizeof out), 0);
	CHECK_STR(out, "https://login.microsoftonline.com/x");
	CHECK_INT(urlrw_value(FROM, TO, FROM "x", out, sizeof out), 0);
	CHECK_INT(urlrw_value(FROM, TO, FROM "/a", out, 20), -1); /* does not fit */
	CHECK_INT(urlrw_value("", TO, "x", out, sizeof out), -1);
}

/* A long body with a URL every few bytes: output length and count add up. */
static void test_long_body(void)
{
	size_t reps = 5000;
	const char *rec = "{\"@odata.id\":\"" FROM "/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000000)\"},";
	char *in = malloc(strlen(rec) * reps + 3);
	CHECK(in != NULL);
	char *p = in;
	*p++ = '[';
	for (size_t i = 0; i < reps; i++, p += strlen(rec))
		memcpy(p, rec, strlen(rec));
	p[-1] = ']';
	*p = '\0';
	uint64_t n = 0;
	char *got = run(URLRW_JSON, in, 4093, 4096, 0, &n);
	CHECK(got != NULL);
	CHECK_INT(n, reps);
	CHECK_INT(strlen(got), strlen(in) + reps * (strlen(TO) - strlen(FROM)));
	CHECK(strstr(got, FROM) == NULL);
	free(got);
	free(in);
}

/* How a body is cut: a first piece of `split` bytes (0: none), then pieces
 * of 1..maxpiece bytes drawn from `seed` (maxpiece 0: the whole rest); the
 * output is read `ocap` bytes at a time. base: urlrw.c reads JSON blocks
 * without AVX2 even where the CPU has it. */
struct cut {
	size_t split, maxpiece;
	uint64_t seed;
	size_t ocap;
	bool base;
};

/* xorshift64: a fixed sequence, the same cases on every run. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t piece_end(const struct cut *c, uint64_t *s, size_t at, size_t n)
{
	size_t piece = at == 0 && c->split ? c->split : c->maxpiece ? 1 + next_rand(s) % c->maxpiece : n - at;
	return piece < n - at ? at + piece : n;
}

/* urlrw.c on in[0..n) cut as c, into out (cap bytes). Returns the length
 * written, SIZE_MAX when it does not fit or from/to do not. */
static size_t drive_new(enum urlrw_mode mode, const char *from, const char *in, size_t n, const struct cut *c,
			char *out, size_t cap, uint64_t *rewrites)
{
	static struct urlrw rw;
	char chunk[4096];
	size_t len = 0, at = 0, k;
	uint64_t s = c->seed | 1;
	if (urlrw_init(&rw, mode, from, TO) < 0 || c->ocap > sizeof chunk)
		return SIZE_MAX;
	rw.avx2 = rw.avx2 && !c->base;
	while (at < n) {
		size_t end = piece_end(c, &s, at, n);
		while (at < end) {
			size_t used = 0;
			k = urlrw_step(&rw, in + at, end - at, &used, chunk, c->ocap);
			if (len + k > cap || used > end - at || k > c->ocap)
				return SIZE_MAX;
			memcpy(out + len, chunk, k);
			len += k;
			at += used;
		}
	}
	while ((k = urlrw_end(&rw, chunk, c->ocap)) > 0) {
		if (len + k > cap)
			return SIZE_MAX;
		memcpy(out + len, chunk, k);
		len += k;
	}
	*rewrites = rw.rewrites;
	return len;
}

/* The same with the reference (urlrw_ref.c). */
static size_t drive_ref(enum urlrw_mode mode, const char *from, const char *in, size_t n, const struct cut *c,
			char *out, size_t cap, uint64_t *rewrites)
{
	static struct ref_urlrw rw;
	char chunk[4096];
	size_t len = 0, at = 0, k;
	uint64_t s = c->seed | 1;
	if (ref_urlrw_init(&rw, mode, from, TO) < 0 || c->ocap > sizeof chunk)
		return SIZE_MAX;
	while (at < n) {
		size_t end = piece_end(c, &s, at, n);
		while (at < end) {
			size_t used = 0;
			k = ref_urlrw_step(&rw, in + at, end - at, &used, chunk, c->ocap);
			if (len + k > cap)
				return SIZE_MAX;
			memcpy(out + len, chunk, k);
			len += k;
			at += used;
		}
	}
	while ((k = ref_urlrw_end(&rw, chunk, c->ocap)) > 0) {
		if (len + k > cap)
			return SIZE_MAX;
		memcpy(out + len, chunk, k);
		len += k;
	}
	*rewrites = rw.rewrites;
	return len;
}

/* Whether urlrw.c and the reference write the same bytes and count the same
 * rewrites for in[0..n) cut as c; the count is left in *rewrites. */
static bool agree(enum urlrw_mode mode, const char *from, const char *in, size_t n, const struct cut *c,
		  uint64_t *rewrites)
{
	size_t cap = n * 2 * sizeof TO + URLRW_PEND, la, lb; /* a byte of `from`: at most `to`, escaped */
	char *a = malloc(cap), *b = malloc(cap);
	uint64_t ra = 0, rb = 0;
	bool ok = a && b;
	if (ok) {
		la = drive_new(mode, from, in, n, c, a, cap, &ra);
		lb = drive_ref(mode, from, in, n, c, b, cap, &rb);
		ok = la != SIZE_MAX && la == lb && ra == rb && memcmp(a, b, la) == 0;
	}
	if (rewrites)
		*rewrites = ra;
	free(a);
	free(b);
	return ok;
}

/* Whether in[0..n) comes out the same from both, whole, in one-byte pieces
 * into a one-byte buffer, and cut once at every point of [lo, hi). */
static bool agree_cuts(const char *in, size_t n, size_t lo, size_t hi, uint64_t *rewrites)
{
	for (int base = 0; base < 2; base++) {
		struct cut whole = {0, 0, 0, 4096, base}, bytes = {0, 1, 0, 1, base};
		if (!agree(URLRW_JSON, FROM, in, n, &whole, rewrites) || !agree(URLRW_JSON, FROM, in, n, &bytes, NULL))
			return false;
		for (size_t s = lo; s < hi && s < n; s++) {
			struct cut at = {s, 0, 0, 4096, base}, small = {s, 0, 0, 5, base};
			if (s > 0 && (!agree(URLRW_JSON, FROM, in, n, &at, NULL) ||
				      !agree(URLRW_JSON, FROM, in, n, &small, NULL)))
				return false;
		}
	}
	return true;
}

/* A quote, escaped quote or escaped backslash at every offset around the
 * first and second 64-byte block edges, with a URL value after it. */
static void test_block_edges(void)
{
	static const char *marks[] = {"\\\"", "\\\\", "\\\\\\\"", "\"", "\\/"};
	char in[512];
	for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++) {
		for (size_t off = 50; off < 140; off++) {
			int n = snprintf(in, sizeof in, "{\"k\":\"%.*s%s\",\"v\":\"" FROM "/x\"}", (int)off - 6,
					 "........................................................................."
					 "..........................................................................",
					 marks[m]);
			uint64_t r = 0;
			CHECK(n > 0 && (size_t)n < sizeof in);
			if (!agree_cuts(in, (size_t)n, off - 3, off + 6, &r))
				T_FAIL("mark %zu at %zu: %s", m, off, in);
			/* a bare quote ends "k" early and the rest is no longer the same JSON */
			if (m != 3)
				CHECK_INT(r, 1);
		}
	}
}

/* A backslash outside strings (not JSON; the byte machine ignores it) at
 * every offset around block edges, after the '{' that makes a key. */
static void test_stray_backslash(void)
{
	char in[512];
	for (size_t off = 0; off < 140; off++) {
		int n = snprintf(in, sizeof in, "[%*s{\\\"" FROM "\":\"" FROM "\"},\\\"" FROM "\"]", (int)off, "");
		uint64_t r = 0;
		CHECK(n > 0 && (size_t)n < sizeof in);
		if (!agree_cuts(in, (size_t)n, off, off + 4, &r))
			T_FAIL("at %zu: %s", off, in);
		CHECK_INT(r, 2);
	}
}

/* Runs of 1..9 backslashes ending at every offset around a block edge,
 * cut at every point of the run (a run across blocks and calls). */
static void test_backslash_runs(void)
{
	char in[512];
	for (int run = 1; run <= 9; run++) {
		for (size_t off = 54; off < 74; off++) {
			size_t n = 0;
			n += (size_t)snprintf(in, sizeof in, "{\"k\":\"");
			while (n < off - (size_t)run)
				in[n++] = 'a';
			for (int b = 0; b < run; b++)
				in[n++] = '\\';
			if (run % 2) /* an odd run escapes the quote that follows */
				in[n++] = '"';
			n += (size_t)snprintf(in + n, sizeof in - n, "\",\"v\":\"" FROM "\"}");
			uint64_t r = 0;
			if (!agree_cuts(in, n, off - (size_t)run - 1, off + 2, &r))
				T_FAIL("run %d ending at %zu: %s", run, off, in);
			CHECK_INT(r, 1);
		}
	}
}

/* A URL value starting at every offset around a block edge, in the three
 * spellings, cut at every point of it; checked against the expected text. */
static void test_candidate_edges(void)
{
	static const char *spell[][2] = {
	    {FROM, TO},
	    {"HTTPS://Contoso.CRM4.dynamics.com", TO},
	    {"https:\\/\\/contoso.crm4.dynamics.com", "http:\\/\\/127.0.0.1:8080\\/dataverse"},
	};
	char in[512], want[512];
	for (size_t v = 0; v < 3; v++) {
		for (size_t off = 52; off < 136; off++) {
			const char *dots =
			    "................................................................................"
			    "................................................................................";
			int n = snprintf(in, sizeof in, "{\"k\":\"%.*s\",\"v\":\"%s/x\",\"w\":[\"%s\"]}", (int)off - 14,
					 dots, spell[v][0], spell[v][0]);
			int w = snprintf(want, sizeof want, "{\"k\":\"%.*s\",\"v\":\"%s/x\",\"w\":[\"%s\"]}",
					 (int)off - 14, dots, spell[v][1], spell[v][1]);
			uint64_t r = 0;
			CHECK(n > 0 && w > 0);
			if (!agree_cuts(in, (size_t)n, off - 2, off + strlen(spell[v][0]) + 2, &r))
				T_FAIL("spelling %zu at %zu: %s", v, off, in);
			CHECK_INT(r, 2);
			char *got = run(URLRW_JSON, in, 0, 65536, off + 5, NULL);
			CHECK_STR(got, want);
			free(got);
		}
	}
}

/* Past 64 levels the rewriter does not know whether a level is an object:
 * a string after ',' there is taken as a value (rewritten), as before. */
static void test_deep_nesting(void)
{
	static const size_t depths[] = {1, 63, 64, 65, 70, 200};
	char in[1024];
	for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
		size_t n = 0, levels = depths[d] - 1;
		for (size_t i = 0; i < levels; i++)
			in[n++] = i % 2 ? '{' : '[';
		/* an object at depth levels+1: "a" is a key (after '{'), FROM after ',' too up to 64 */
		n += (size_t)snprintf(in + n, sizeof in - n, "{\"a\":\"x\",\"" FROM "\":\"" FROM "/v\"}");
		for (size_t i = levels; i-- > 0;)
			in[n++] = i % 2 ? '}' : ']';
		uint64_t r = 0;
		if (!agree_cuts(in, n, levels, levels + 90, &r))
			T_FAIL("depth %zu", depths[d]);
		CHECK_INT(r, depths[d] > 64 ? 2 : 1);
	}
	/* back from deep arrays to the top object: its keys are keys again */
	size_t n = 0;
	n += (size_t)snprintf(in, sizeof in, "{\"o\":");
	for (size_t i = 0; i < 100; i++)
		in[n++] = '[';
	for (size_t i = 0; i < 100; i++)
		in[n++] = ']';
	n += (size_t)snprintf(in + n, sizeof in - n, ",\"" FROM "\":\"" FROM "\"}");
	uint64_t r = 0;
	CHECK(agree_cuts(in, n, 0, n, &r));
	CHECK_INT(r, 1);
}

/* Strings over many blocks: a long key with escapes, a long value after
 * the URL, a long value that is not a URL. */
static void test_long_strings(void)
{
	size_t cap = 40000, n = 0;
	char *in = malloc(cap);
	CHECK(in != NULL);
	in[n++] = '{';
	in[n++] = '"';
	for (size_t i = 0; i < 9000; i++)
		in[n++] = i % 97 == 0 ? '\\' : i % 97 == 1 ? '"' : (char)('a' + i % 26);
	n += (size_t)snprintf(in + n, cap - n, "\":\"" FROM "/");
	for (size_t i = 0; i < 9000; i++)
		in[n++] = i % 101 == 0 ? '\\' : i % 101 == 1 ? '\\' : (char)('0' + i % 10);
	n += (size_t)snprintf(in + n, cap - n, "\",\"b\":\"");
	for (size_t i = 0; i < 9000; i++)
		in[n++] = i % 89 == 0 ? '{' : i % 89 == 1 ? ',' : 'h';
	n += (size_t)snprintf(in + n, cap - n, "\",\"c\":\"" FROM "\"}");
	uint64_t r = 0;
	CHECK(agree_cuts(in, n, 9000, 9010, &r));
	CHECK_INT(r, 2);
	for (uint64_t seed = 1; seed < 40; seed++) {
		struct cut c = {0, 1 + seed * 37, seed, 1 + (size_t)seed * 13, seed % 2};
		CHECK(agree(URLRW_JSON, FROM, in, n, &c, NULL));
	}
	free(in);
}

/* UTF-8, NUL and 0xff bytes in keys and values, before and after a URL: a
 * byte >= 0x80 continues a host (no rewrite), a NUL ends it (rewrite). */
static void test_binary_bytes(void)
{
	static const char in[] = "{\"k\\u00e9\xc3\xa9\":\"\xf0\x9f\x98\x80 \x00\xff\",\"" FROM "\x00\":\"" FROM
				 "\x00\",\"b\":\"" FROM "\xc3\xa9\",\"c\":[\"\x00" FROM "\",\"" FROM "/\xff\"]}";
	uint64_t r = 0;
	CHECK(agree_cuts(in, sizeof in - 1, 0, sizeof in - 1, &r));
	CHECK_INT(r, 2);
	/* every byte after a URL, in a value and a key: a boundary or not, as before */
	for (unsigned c = 0; c < 256; c++) {
		char body[128];
		int n = snprintf(body, sizeof body, "{\"a\":\"" FROM "%c\",\"" FROM "%c\":1}", (char)c, (char)c);
		struct cut whole = {0, 0, 0, 4096, false};
		CHECK(n > 0 && agree(URLRW_JSON, FROM, body, (size_t)n, &whole, NULL));
	}
}

/* Append s[0..n) to the body being made (capped). */
struct body {
	char buf[3072];
	size_t len;
	uint64_t s;
	const char *from;
};

static void put_s(struct body *b, const char *s, size_t n)
{
	if (b->len + n <= sizeof b->buf) {
		memcpy(b->buf + b->len, s, n);
		b->len += n;
	}
}

/* The body of a string: plain text, escapes, odd bytes, and `from` in its
 * spellings (whole, cut short, escaped, upper case, followed by a byte
 * that ends it or not). */
static void gen_string_body(struct body *b)
{
	static const char *bits[] = {
	    "abc", " ", "\\\"", "\\\\", "\\/", "\\n", "\\u00e9", "\xc3\xa9",     "{",       "[",
	    ",",   ":", "/api", "?q=1", "h",   "H",   "https:",  "https:\\/\\/", "\\\\\\\\"};
	static const char *after[] = {"", "/", "?", "#", ".evil", "x", ":8443", "\\\"", "\\/", "\\\\"};
	size_t parts = next_rand(&b->s) % 4;
	for (size_t i = 0; i < parts; i++) {
		uint64_t r = next_rand(&b->s);
		switch (r % 8) {
		case 0:
		case 1: {
			size_t fl = strlen(b->from), keep = r % 3 == 0 ? (size_t)(r >> 8) % fl : fl;
			put_s(b, b->from, keep);
			const char *a = after[(r >> 16) % (sizeof after / sizeof after[0])];
			put_s(b, a, strlen(a));
			break;
		}
		case 2:
			put_s(b, "HTTPS://CONTOSO.crm4.dynamics.com", 33);
			break;
		case 3:
			put_s(b, "https:\\/\\/contoso.crm4.dynamics.com\\/x", 39);
			break;
		case 4:
			put_s(b, "\0\xff", 2);
			break;
		default: {
			const char *s = bits[r % (sizeof bits / sizeof bits[0])];
			put_s(b, s, strlen(s));
			break;
		}
		}
	}
}

static void gen_value(struct body *b, unsigned depth);

/* An object or array of a few members, sometimes nested deep. */
static void gen_container(struct body *b, unsigned depth)
{
	bool obj = next_rand(&b->s) % 2;
	size_t members = next_rand(&b->s) % 7;
	put_s(b, obj ? "{" : "[", 1);
	for (size_t i = 0; i < members; i++) {
		if (i && next_rand(&b->s) % 4)
			put_s(b, ",", 1);
		else if (i)
			put_s(b, " , ", 3);
		if (obj && next_rand(&b->s) % 16 == 0) {
			put_s(b, "1:", 2); /* a key that is not a string */
		} else if (obj) {
			put_s(b, "\"", 1);
			gen_string_body(b);
			put_s(b, "\":", 2);
		}
		gen_value(b, depth + 1);
	}
	put_s(b, obj ? "}" : "]", 1);
}

static void gen_value(struct body *b, unsigned depth)
{
	static const char *atoms[] = {"1", "-2.5e3", "true", "false", "null", " 0 "};
	uint64_t r = next_rand(&b->s);
	/* now and then a chain of brackets past 64 levels */
	unsigned limit = r % 97 == 0 ? 80 : 6;
	if (depth < limit && r % 3 == 0) {
		gen_container(b, depth);
	} else if (r % 3 == 1) {
		const char *a = atoms[(r >> 8) % (sizeof atoms / sizeof atoms[0])];
		put_s(b, a, strlen(a));
	} else {
		put_s(b, "\"", 1);
		gen_string_body(b);
		put_s(b, "\"", 1);
	}
	/* stray bytes: backslashes and quotes outside strings, cut tokens */
	if (r % 41 == 0) {
		static const char stray[] = "\\\"{}[],:h\x00";
		put_s(b, &stray[(r >> 20) % (sizeof stray - 1)], 1);
	}
}

/* Thousands of random JSON-ish bodies, cut and read in random ways: urlrw.c
 * and the byte machine it replaced write the same bytes and count the same
 * rewrites, in both modes and for origins that take either path. */
static void test_differential(void)
{
	static const char *froms[] = {FROM,  "HTTPS://Contoso.CRM4.dynamics.com", "h", "https://a\"b", "https:\\/x",
				      "/api"};
	static const size_t pieces[] = {0, 1, 2, 3, 7, 63, 64, 65, 200, 1000};
	static const size_t ocaps[] = {1, 2, 3, 7, 64, 100, 4096};
	static struct body b;
	size_t cases = 0, rewrites = 0;
	for (uint64_t seed = 1; seed <= 6000; seed++) {
		b.len = 0;
		b.s = seed * 0x9e3779b97f4a7c15u;
		b.from = seed % 4 ? FROM : froms[seed % (sizeof froms / sizeof froms[0])];
		gen_container(&b, 0);
		if (seed % 5 == 0)
			gen_value(&b, 0); /* two documents, or a document and junk */
		struct cut c = {next_rand(&b.s) % 3 == 0 ? next_rand(&b.s) % (b.len + 1) : 0,
				pieces[next_rand(&b.s) % (sizeof pieces / sizeof pieces[0])], seed,
				ocaps[next_rand(&b.s) % (sizeof ocaps / sizeof ocaps[0])], seed % 2};
		enum urlrw_mode mode = seed % 10 == 0 ? URLRW_TEXT : URLRW_JSON;
		uint64_t r = 0;
		if (!agree(mode, b.from, b.buf, b.len, &c, &r))
			T_FAIL("seed %llu (from %s, mode %d, piece %zu, ocap %zu, base %d): %.*s",
			       (unsigned long long)seed, b.from, (int)mode, c.maxpiece, c.ocap, (int)c.base, (int)b.len,
			       b.buf);
		cases++;
		rewrites += (size_t)r;
	}
	/* the bodies do exercise the rewriting, not only the copying */
	CHECK(cases == 6000 && rewrites > 3000);
}

int main(void)
{
	RUN(test_json_cases);
	RUN(test_every_split);
	RUN(test_text_mode);
	RUN(test_values);
	RUN(test_long_body);
	RUN(test_block_edges);
	RUN(test_backslash_runs);
	RUN(test_stray_backslash);
	RUN(test_candidate_edges);
	RUN(test_deep_nesting);
	RUN(test_long_strings);
	RUN(test_binary_bytes);
	RUN(test_differential);
	return T_DONE();
}
