/*
 * fuzz_multipart.c - libFuzzer target for multipart.c, the $batch reader.
 *
 * The input's first line is a Content-Type value; the rest is the body,
 * handed over in an exactly sized buffer without a NUL. Traps when a
 * reported request-target lies outside the body, is empty, holds a space
 * or a control byte, or comes before the previous one; when a malformed
 * verdict has no reason; or when a boundary is longer than RFC 2046 allows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

struct ctx {
	const char *body;
	size_t len, last_end;
};

static void on_target(void *ud, size_t off, size_t len)
{
	struct ctx *c = ud;
	check(len > 0 && off >= c->last_end && off + len <= c->len);
	for (size_t i = 0; i < len; i++)
		check((unsigned char)c->body[off + i] > 0x20 && c->body[off + i] != 0x7f);
	c->last_end = off + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t cl = nl ? (size_t)(nl - data) : size;
	char *ctype = malloc(cl + 1), boundary[MULTIPART_BOUNDARY_MAX + 1];
	check(ctype != NULL);
	memcpy(ctype, data, cl);
	ctype[cl] = '\0';
	size_t bl = multipart_boundary(ctype, boundary);
	check(bl <= MULTIPART_BOUNDARY_MAX && strlen(boundary) == bl);
	size_t len = nl ? size - cl - 1 : 0;
	char *body = malloc(len ? len : 1);
	check(body != NULL);
	memcpy(body, nl ? nl + 1 : data, len);
	struct ctx c = {body, len, 0};
	const char *why = NULL;
	int rc = multipart_targets(body, len, bl ? boundary : "b", on_target, &c, &why);
	check(rc == 0 ? why == NULL : rc == -1 && why != NULL);
	free(body);
	free(ctype);
	return 0;
}
