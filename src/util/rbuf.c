/*
 * rbuf.c - fixed-capacity byte ring buffer.
 *
 * The capacity never changes after rbuf_init: writes take what fits and
 * report it, which is how the streaming code applies backpressure (pause
 * the producer) instead of growing memory. Not thread-safe by itself; the
 * owner of a request serialises access.
 */
#include "util/rbuf.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/*
 * Rings of RBUF_MAP_MIN bytes and more are mapped pages of their own, not
 * heap blocks: a ring that holds a small answer then keeps one resident
 * page, where a heap block also dirties the page of the allocator's header
 * after it (docs/performance.md: memory per connection). Under ASan they
 * stay on the heap, so its redzones still guard them.
 */
#define RBUF_MAP_MIN (16 * 1024)
#if defined(__SANITIZE_ADDRESS__)
#define RBUF_MAP 0
#else
#define RBUF_MAP 1
#endif

static size_t map_len(size_t cap)
{
	size_t page = 4096; /* rounding to a multiple of any larger page size is not needed by mmap */
	return (cap + page - 1) / page * page;
}

static bool mapped(size_t cap)
{
	return RBUF_MAP && cap >= RBUF_MAP_MIN;
}

static char *ring_alloc(size_t cap)
{
	if (cap == 0 || cap > SIZE_MAX / 2)
		return NULL;
	if (!mapped(cap))
		return malloc(cap);
	void *p = mmap(NULL, map_len(cap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void rbuf_data_free(char *data, size_t cap)
{
	if (data == NULL)
		return;
	if (mapped(cap))
		munmap(data, map_len(cap));
	else
		free(data);
}

int rbuf_init(struct rbuf *rb, size_t cap)
{
	rb->head = 0;
	rb->len = 0;
	rb->data = ring_alloc(cap);
	rb->cap = rb->data != NULL ? cap : 0;
	return rb->data != NULL ? 0 : -1;
}

void rbuf_free(struct rbuf *rb)
{
	if (rb == NULL)
		return;
	rbuf_data_free(rb->data, rb->cap);
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

size_t rbuf_peek(const struct rbuf *rb, const char **at)
{
	*at = rb->len ? rb->data + rb->head : NULL;
	return min_size(rb->len, rb->cap - rb->head);
}

void rbuf_skip(struct rbuf *rb, size_t n)
{
	n = min_size(n, rb->len);
	if (n == 0)
		return;
	rb->len -= n;
	rb->head = rb->len == 0 ? 0 : (rb->head + n) % rb->cap;
}
