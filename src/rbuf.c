/*
 * rbuf.c - fixed-capacity byte ring buffer.
 *
 * The capacity never changes after rbuf_init: writes take what fits and
 * report it, which is how the streaming code applies backpressure (pause
 * the producer) instead of growing memory. Not thread-safe by itself; the
 * owner of a request serialises access.
 */
#include "rbuf.h"

#include <stdlib.h>
#include <string.h>

int rbuf_init(struct rbuf *rb, size_t cap)
{
	rb->head = 0;
	rb->len = 0;
	rb->data = cap > 0 ? malloc(cap) : NULL;
	rb->cap = rb->data != NULL ? cap : 0;
	return rb->data != NULL ? 0 : -1;
}

void rbuf_free(struct rbuf *rb)
{
	if (rb == NULL)
		return;
	free(rb->data);
	rb->data = NULL;
	rb->cap = 0;
	rb->head = 0;
	rb->len = 0;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

size_t rbuf_write(struct rbuf *rb, const void *src, size_t n)
{
	const char *s = src;
	size_t tail, first;

	n = min_size(n, rb->cap - rb->len);
	if (n == 0)
		return 0;
	/* head + len < 2 * cap, and cap <= SIZE_MAX / 2 for any malloc'd block. */
	tail = (rb->head + rb->len) % rb->cap;
	first = min_size(n, rb->cap - tail);
	memcpy(rb->data + tail, s, first);
	memcpy(rb->data, s + first, n - first);
	rb->len += n;
	return n;
}

size_t rbuf_read(struct rbuf *rb, void *dst, size_t n)
{
	char *d = dst;
	size_t first;

	n = min_size(n, rb->len);
	if (n == 0)
		return 0;
	first = min_size(n, rb->cap - rb->head);
	memcpy(d, rb->data + rb->head, first);
	memcpy(d + first, rb->data, n - first);
	rb->len -= n;
	/* Restart at 0 when empty so the next write is one contiguous copy. */
	rb->head = rb->len == 0 ? 0 : (rb->head + n) % rb->cap;
	return n;
}
