/*
 * urlrw.h - a streaming rewriter of one URL prefix into another, for bodies
 * that pass through the proxy (rewrite.c): the upstream's absolute URLs
 * (https://org.crm4.dynamics.com/...) become the ones the client used.
 *
 * A push parser over any split of the input: a candidate match is held in
 * a small carry buffer, so a URL cut across any chunk boundary (even one
 * byte at a time) is rewritten the same as a whole one. Memory is the
 * struct, whatever the body's size.
 *
 * Two modes:
 *   URLRW_JSON  only a JSON string value (not an object key) that starts
 *               with `from` is rewritten; the lexer tracks strings, escapes
 *               and object/array nesting.
 *   URLRW_TEXT  `from` is rewritten at the start of the input and after a
 *               delimiter (quote, space, tab, ':', '<', '=', ',', LF): the
 *               header values and JSON bodies of a multipart ($batch) answer.
 * In both, `from` must be followed by a byte that cannot continue a host
 * or path segment ('/', '?', '#', '"', '>', ...), or the end, so
 * https://org.crm4.dynamics.com.example is left alone. Scheme and host
 * match case-insensitively (the path, too). A match written with
 * JSON's escaped solidus (https:\/\/host) is rewritten with `to`'s slashes
 * escaped the same way.
 */
#ifndef S2S_URLRW_H
#define S2S_URLRW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URLRW_MAX   512                               /* longest from or to, bytes */
#define URLRW_CARRY (2 * URLRW_MAX + 4)               /* a candidate, every '/' escaped */
#define URLRW_PEND  (URLRW_CARRY + 2 * URLRW_MAX + 8) /* output of one input byte at most */

enum urlrw_mode { URLRW_JSON = 0, URLRW_TEXT };

struct urlrw {
	enum urlrw_mode mode;
	char from[URLRW_MAX];
	size_t from_len;
	char to[URLRW_MAX];
	size_t to_len;
	unsigned st;      /* lexer state (urlrw.c) */
	unsigned depth;   /* JSON nesting */
	uint64_t objects; /* bit i: level i+1 is an object (the first 64 levels) */
	bool want_key;    /* the next JSON string is an object key */
	size_t matched;   /* bytes of `from` matched by the candidate */
	bool escaped;     /* the candidate used \/ */
	bool plain;       /* `from` has no quote or backslash: JSON candidates settle in place */
	bool avx2;        /* JSON blocks are read with AVX2 (the CPU has it; tests may clear it) */
	char carry[URLRW_CARRY];
	size_t carry_len;
	char pend[URLRW_PEND]; /* output that did not fit the caller's buffer */
	size_t pend_len, pend_pos;
	uint64_t rewrites; /* URLs rewritten so far */
};

/* Set up for a body. from and to: 1..URLRW_MAX-1 bytes, NUL-terminated.
 * Returns 0, or -1 when either does not fit. */
int urlrw_init(struct urlrw *rw, enum urlrw_mode mode, const char *from, const char *to);

/*
 * Rewrite in[0..n) into out (cap bytes). Input is taken only while its
 * output fits; what one byte produced beyond cap is held (at most
 * URLRW_PEND bytes) and comes first next time. Returns the bytes written;
 * *used is the input taken (call again with the rest).
 */
size_t urlrw_step(struct urlrw *rw, const char *in, size_t n, size_t *used, char *out, size_t cap);

/* The input is complete: write what is still held (a candidate cut by the
 * end is settled). Returns the bytes written; 0 once nothing is left. */
size_t urlrw_end(struct urlrw *rw, char *out, size_t cap);

/*
 * Rewrite a whole short value (a Location header) in TEXT mode into out
 * (cap bytes, NUL-terminated). Returns the number of URLs rewritten, or -1
 * when the result does not fit (out is then undefined).
 */
int urlrw_value(const char *from, const char *to, const char *value, char *out, size_t cap);

#endif
