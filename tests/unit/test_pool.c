/*
 * test_pool.c - pool.c: rings come back as the same memory, empty; a ring
 * of another size is not reused and a new size restarts the pool; the pool
 * holds at most POOL_MAX; easy handles come back reset (nothing of the
 * previous request survives); drain frees everything (LSan checks).
 */
#include <curl/curl.h>
#include <stdlib.h>

#include "proxy/pool.h"
#include "t.h"

static void test_ring_reused_empty(void)
{
	struct pool p = {0};
	struct rbuf a, b;

	CHECK_INT(pool_ring_get(&p, &a, 4096), 0);
	char *mem = a.data;
	CHECK_INT(rbuf_write(&a, "abc", 3), 3);
	pool_ring_put(&p, &a);
	CHECK(a.data == NULL);
	CHECK_INT(a.cap, 0);
	CHECK_INT(p.n_rings, 1);
	CHECK_INT(pool_ring_get(&p, &b, 4096), 0);
	CHECK(b.data == mem);
	CHECK_INT(rbuf_len(&b), 0);
	CHECK_INT(b.head, 0);
	CHECK_INT(rbuf_space(&b), 4096);
	CHECK_INT(p.reused, 1);
	CHECK_INT(p.created, 1);
	pool_ring_put(&p, &b);
	pool_ring_put(&p, &b); /* empty: a no-op */
	CHECK_INT(p.n_rings, 1);
	pool_drain(&p);
	CHECK_INT(p.n_rings, 0);
}

static void test_ring_other_size(void)
{
	struct pool p = {0};
	struct rbuf a, b, c;

	CHECK_INT(pool_ring_get(&p, &a, 4096), 0);
	pool_ring_put(&p, &a);
	CHECK_INT(pool_ring_get(&p, &b, 8192), 0); /* not the pooled 4096 */
	CHECK_INT(b.cap, 8192);
	CHECK_INT(p.n_rings, 1);
	pool_ring_put(&p, &b); /* a new size: the 4096 ring is freed, 8192 kept */
	CHECK_INT(p.n_rings, 1);
	CHECK_INT(p.ring_bytes, 8192);
	CHECK_INT(pool_ring_get(&p, &c, 8192), 0);
	CHECK_INT(p.n_rings, 0);
	pool_ring_put(&p, &c);
	pool_drain(&p);
}

static void test_ring_pool_capped(void)
{
	static struct pool p;
	static struct rbuf r[POOL_MAX + 3];

	for (int i = 0; i < POOL_MAX + 3; i++)
		CHECK_INT(pool_ring_get(&p, &r[i], 64), 0);
	for (int i = 0; i < POOL_MAX + 3; i++)
		pool_ring_put(&p, &r[i]);
	CHECK_INT(p.n_rings, POOL_MAX);
	for (int i = 0; i < POOL_MAX + 3; i++)
		CHECK(r[i].data == NULL);
	pool_drain(&p);
}

static void test_easy_reused_and_reset(void)
{
	struct pool p = {0};
	CURL *h = pool_easy_get(&p), *again;
	char *priv = NULL;

	CHECK(h != NULL);
	CHECK_INT(curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)&p), CURLE_OK);
	pool_easy_put(&p, h);
	CHECK_INT(p.n_easies, 1);
	again = pool_easy_get(&p);
	CHECK(again == h);
	CHECK_INT(curl_easy_getinfo(again, CURLINFO_PRIVATE, &priv), CURLE_OK);
	CHECK(priv == NULL); /* reset: the old request's pointer is gone */
	pool_easy_put(&p, NULL);
	CHECK_INT(p.n_easies, 0);
	pool_easy_put(&p, again);
	pool_drain(&p);
	CHECK_INT(p.n_easies, 0);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	RUN(test_ring_reused_empty);
	RUN(test_ring_other_size);
	RUN(test_ring_pool_capped);
	RUN(test_easy_reused_and_reset);
	curl_global_cleanup();
	return T_DONE();
}
