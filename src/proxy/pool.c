/*
 * pool.c - per-worker free lists of ring buffers and curl easy handles.
 *
 * Why: a small GET used to allocate a 64 KiB response ring, a fresh easy
 * handle (curl's handle state plus its receive buffer) and, with a body, a
 * 64 KiB request ring, and free them all at the end. The allocator work,
 * the page faults of fresh memory and curl's per-handle setup were a
 * fifth of the CPU per request (docs/performance.md). curl_easy_reset
 * keeps a handle's buffers and caches but clears every option, so a
 * recycled handle behaves like a new one.
 */
#include "proxy/pool.h"

#include <stdlib.h>

int pool_ring_get(struct pool *p, struct rbuf *rb, size_t cap)
{
	if (cap == p->ring_bytes && p->n_rings > 0) {
		rb->data = p->rings[--p->n_rings];
		rb->cap = cap;
		rb->head = 0;
		rb->len = 0;
		p->reused++;
		return 0;
	}
	p->created++;
	return rbuf_init(rb, cap);
}

void pool_ring_put(struct pool *p, struct rbuf *rb)
{
	if (rb->data == NULL)
		return;
	if (rb->cap != p->ring_bytes) { /* a new buffer_size after a reload: start over at that size */
		while (p->n_rings > 0)
			rbuf_data_free(p->rings[--p->n_rings], p->ring_bytes);
		p->ring_bytes = rb->cap;
	}
	if (p->n_rings < POOL_MAX) {
		p->rings[p->n_rings++] = rb->data;
		rb->data = NULL;
	}
	rbuf_free(rb); /* frees what was not kept; clears rb */
}

CURL *pool_easy_get(struct pool *p)
{
	if (p->n_easies > 0) {
		p->reused++;
		return p->easies[--p->n_easies];
	}
	p->created++;
	return curl_easy_init();
}

void pool_easy_put(struct pool *p, CURL *h)
{
	if (h == NULL)
		return;
	if (p->n_easies >= POOL_MAX) {
		curl_easy_cleanup(h);
		return;
	}
	curl_easy_reset(h);
	p->easies[p->n_easies++] = h;
}

void pool_drain(struct pool *p)
{
	while (p->n_rings > 0)
		rbuf_data_free(p->rings[--p->n_rings], p->ring_bytes);
	while (p->n_easies > 0)
		curl_easy_cleanup(p->easies[--p->n_easies]);
}
