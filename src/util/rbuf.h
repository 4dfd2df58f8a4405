/*
 * rbuf.h - a fixed-capacity byte ring buffer. One per direction per request;
 * the capacity is the per-request memory bound of the streaming design.
 */
#ifndef S2S_RBUF_H
#define S2S_RBUF_H

#include <stddef.h>

struct rbuf {
	char *data;
	size_t cap;
	size_t head; /* index of the first unread byte */
	size_t len;  /* bytes stored */
};

/* Allocate `cap` bytes. Returns 0, or -1 on allocation failure (rb left empty). */
int rbuf_init(struct rbuf *rb, size_t cap);
/* NULL-safe, idempotent. */
void rbuf_free(struct rbuf *rb);
/* Free ring memory taken out of an rbuf (pool.c keeps rings apart from
 * their rbuf): `cap` must be the capacity it was allocated with. NULL-safe. */
void rbuf_data_free(char *data, size_t cap);
/* Copy in at most `n` bytes; returns how many were stored. */
size_t rbuf_write(struct rbuf *rb, const void *src, size_t n);
/* Copy out at most `n` bytes; returns how many were read. */
size_t rbuf_read(struct rbuf *rb, void *dst, size_t n);
/* The first contiguous run of stored bytes: *at points at it, returns its
 * length (0 when empty). The bytes stay stored until rbuf_skip. */
size_t rbuf_peek(const struct rbuf *rb, const char **at);
/* Drop the first `n` stored bytes (at most rbuf_len). */
void rbuf_skip(struct rbuf *rb, size_t n);
static inline size_t rbuf_len(const struct rbuf *rb)
{
	return rb->len;
}
static inline size_t rbuf_space(const struct rbuf *rb)
{
	return rb->cap - rb->len;
}

#endif
