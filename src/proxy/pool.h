/*
 * pool.h - per-worker recycling of the two things every proxied request
 * used to allocate and free: the body ring buffers and the curl easy
 * handle. A worker's pool is touched by that worker's thread only, so it
 * has no lock. Pooled memory stays warm (no page faults, no allocator
 * work, and a ring that is written from its start keeps only the pages it
 * used resident); pool_drain gives everything back once the worker is idle.
 */
#ifndef S2S_POOL_H
#define S2S_POOL_H

#include <curl/curl.h>
#include <stddef.h>

#include "util/rbuf.h"

#define POOL_MAX 256 /* per kind and worker: the in-flight peak of a busy worker */

struct pool {
	size_t ring_bytes; /* capacity of the pooled rings (buffer_size; may change on reload) */
	char *rings[POOL_MAX];
	unsigned n_rings;
	CURL *easies[POOL_MAX];
	unsigned n_easies;
	unsigned long reused, created; /* counters, for tests and benchmarks */
};

/* Give rb a ring of `cap` bytes, from the pool when it has one of that
 * size. Returns 0, or -1 on allocation failure (rb left empty). */
int pool_ring_get(struct pool *p, struct rbuf *rb, size_t cap);
/* Take rb's memory back (or free it when the pool is full or the size
 * differs); rb is left empty. NULL-safe for an empty rb. */
void pool_ring_put(struct pool *p, struct rbuf *rb);
/* A reset easy handle (pooled, or new); NULL on allocation failure. */
CURL *pool_easy_get(struct pool *p);
/* Take back a handle that is no longer in any multi (reset here, so no
 * option or callback pointer of the old request survives). NULL-safe. */
void pool_easy_put(struct pool *p, CURL *h);
/* Free everything pooled. */
void pool_drain(struct pool *p);

#endif
