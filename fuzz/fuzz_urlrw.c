/*
 * fuzz_urlrw.c - libFuzzer target for urlrw.c, the streaming URL rewriter.
 *
 * The first byte picks the mode (bit 0), the input piece size (bits 1-3)
 * and the output buffer size (bits 4-7); the rest is the body. The body is
 * rewritten three ways: whole, in pieces of that size with that output
 * buffer, and one byte at a time into one byte of output. Traps when the
 * three differ (a match cut at a chunk boundary handled differently), when
 * more output is held than URLRW_PEND, or when rewriting `from` into
 * itself changes a body spelled in lower case without escapes. Also runs urlrw_value on the body.
 * Differential: the byte machine urlrw.c replaced (tests/unit/urlrw_ref.c)
 * must write the same bytes and count the same rewrites, cut the same way
 * (the JSON blocks read with AVX2 or without, by the body's length).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/urlrw.h"
#include "../tests/unit/urlrw_ref.c"

#define FROM "https://contoso.crm4.dynamics.com"
#define TO   "http://127.0.0.1:8080/dataverse"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

static uint64_t last_rewrites; /* of the last run() */
static bool base_blocks;       /* urlrw.c without AVX2 (bodies of odd length) */

/* Rewrite body[0..n) in pieces of `piece` into `ocap`-byte reads; the result
 * is malloc'd (*out_len bytes). */
static char *run(enum urlrw_mode mode, const char *to, const char *body, size_t n, size_t piece, size_t ocap,
		 size_t *out_len)
{
	static struct urlrw rw;
	size_t cap = n * (2 * URLRW_MAX) / 8 + 2 * URLRW_PEND, len = 0, at = 0, k;
	char *out = malloc(cap), chunk[256];
	check(out != NULL && ocap <= sizeof chunk);
	check(urlrw_init(&rw, mode, FROM, to) == 0);
	rw.avx2 = rw.avx2 && !base_blocks;
	while (at < n) {
		size_t end = at + piece < n ? at + piece : n;
		while (at < end) {
			size_t used = 0;
			k = urlrw_step(&rw, body + at, end - at, &used, chunk, ocap);
			check(k <= ocap && used <= end - at && rw.pend_len <= URLRW_PEND);
			check(len + k <= cap);
			memcpy(out + len, chunk, k);
			len += k;
			at += used;
		}
	}
	while ((k = urlrw_end(&rw, chunk, ocap)) > 0) {
		check(len + k <= cap);
		memcpy(out + len, chunk, k);
		len += k;
	}
	check(rw.pend_len == 0 && rw.carry_len == 0);
	*out_len = len;
	last_rewrites = rw.rewrites;
	return out;
}

/* The reference on the same cuts; its rewrite count in *rewrites. */
static char *run_ref(enum urlrw_mode mode, const char *body, size_t n, size_t piece, size_t ocap, size_t *out_len,
		     uint64_t *rewrites)
{
	static struct ref_urlrw rw;
	size_t cap = n * (2 * URLRW_MAX) / 8 + 2 * URLRW_PEND, len = 0, at = 0, k;
	char *out = malloc(cap), chunk[256];
	check(out != NULL && ocap <= sizeof chunk);
	check(ref_urlrw_init(&rw, mode, FROM, TO) == 0);
	while (at < n) {
		size_t end = at + piece < n ? at + piece : n;
		while (at < end) {
			size_t used = 0;
			k = ref_urlrw_step(&rw, body + at, end - at, &used, chunk, ocap);
			check(len + k <= cap);
			memcpy(out + len, chunk, k);
			len += k;
			at += used;
		}
	}
	while ((k = ref_urlrw_end(&rw, chunk, ocap)) > 0) {
		check(len + k <= cap);
		memcpy(out + len, chunk, k);
		len += k;
	}
	*out_len = len;
	*rewrites = rw.rewrites;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum urlrw_mode mode = data[0] & 1 ? URLRW_TEXT : URLRW_JSON;
	size_t piece = 1 + ((data[0] >> 1) & 7) * 37, ocap = 1 + (size_t)(data[0] >> 4) * 15;
	const char *body = (const char *)data + 1;
	base_blocks = size % 2 == 0;
	size_t n = size - 1, la, lb, lc, ld;
	char *a = run(mode, TO, body, n, n ? n : 1, 256, &la);
	char *b = run(mode, TO, body, n, piece, ocap, &lb);
	uint64_t rb = last_rewrites, rr;
	size_t lr;
	char *ref = run_ref(mode, body, n, piece, ocap, &lr, &rr);
	check(lr == lb && rr == rb && memcmp(ref, b, lb) == 0);
	free(ref);
	char *c = run(mode, TO, body, n, 1, 1, &lc);
	check(la == lb && la == lc && memcmp(a, b, la) == 0 && memcmp(a, c, la) == 0);
	/* from -> from leaves the body as it was, unless a match was spelled
	 * otherwise (upper case, a partly escaped solidus): it comes out as `to` */
	char *d = run(mode, FROM, body, n, piece, ocap, &ld);
	bool plain = !memchr(body, '\\', n);
	for (size_t i = 0; plain && i < n; i++)
		plain = !(body[i] >= 'A' && body[i] <= 'Z');
	check(!plain || (ld == n && memcmp(d, body, n) == 0));
	free(a);
	free(b);
	free(c);
	free(d);

	char *value = malloc(n + 1), out[1024];
	check(value != NULL);
	memcpy(value, body, n);
	value[n] = '\0';
	int r = urlrw_value(FROM, TO, value, out, sizeof out);
	check(r == -1 || strlen(out) < sizeof out);
	free(value);
	return 0;
}
