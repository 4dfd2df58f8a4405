/*
 * test_rbuf.c - rbuf.c: empty, full, wraparound, partial reads and writes,
 * teardown, and a long random run checked against a plain FIFO model.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/rbuf.h"
#include "t.h"

static void test_init_and_empty(void)
{
	struct rbuf rb;
	char out[4] = "xyz";

	CHECK_INT(rbuf_init(&rb, 8), 0);
	CHECK(rb.data != NULL);
	CHECK_INT(rb.cap, 8);
	CHECK_INT(rbuf_len(&rb), 0);
	CHECK_INT(rbuf_space(&rb), 8);
	CHECK_INT(rbuf_read(&rb, out, sizeof out), 0);
	CHECK_STR(out, "xyz"); /* untouched */
	CHECK_INT(rbuf_write(&rb, "abc", 0), 0);
	CHECK_INT(rbuf_len(&rb), 0);
	rbuf_free(&rb);
}

static void test_zero_capacity_refused(void)
{
	struct rbuf rb;

	CHECK_INT(rbuf_init(&rb, 0), -1);
	CHECK(rb.data == NULL);
	CHECK_INT(rbuf_len(&rb), 0);
	CHECK_INT(rbuf_space(&rb), 0);
	CHECK_INT(rbuf_write(&rb, "a", 1), 0);
	rbuf_free(&rb);
}

/* Under ASan, let malloc(SIZE_MAX) return NULL instead of aborting. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

static void test_allocation_failure_leaves_empty(void)
{
	struct rbuf rb;

	CHECK_INT(rbuf_init(&rb, SIZE_MAX), -1);
	CHECK(rb.data == NULL);
	CHECK_INT(rbuf_space(&rb), 0);
	CHECK_INT(rbuf_write(&rb, "a", 1), 0);
	rbuf_free(&rb);
}

static void test_full_and_partial_write(void)
{
	struct rbuf rb;
	char out[16] = {0};

	CHECK_INT(rbuf_init(&rb, 5), 0);
	CHECK_INT(rbuf_write(&rb, "abc", 3), 3);
	CHECK_INT(rbuf_write(&rb, "defgh", 5), 2); /* only "de" fits */
	CHECK_INT(rbuf_len(&rb), 5);
	CHECK_INT(rbuf_space(&rb), 0);
	CHECK_INT(rbuf_write(&rb, "z", 1), 0);
	CHECK_INT(rbuf_read(&rb, out, sizeof out), 5); /* partial read: asked for more */
	CHECK_STR(out, "abcde");
	CHECK_INT(rbuf_len(&rb), 0);
	CHECK_INT(rbuf_space(&rb), 5);
	rbuf_free(&rb);
}

static void test_wraparound(void)
{
	struct rbuf rb;
	char out[16] = {0};

	CHECK_INT(rbuf_init(&rb, 8), 0);
	CHECK_INT(rbuf_write(&rb, "012345", 6), 6);
	CHECK_INT(rbuf_read(&rb, out, 4), 4);
	CHECK(memcmp(out, "0123", 4) == 0);
	CHECK_INT(rb.head, 4);
	/* tail at 6: "abcdef" goes to 6,7 then 0..3 */
	CHECK_INT(rbuf_write(&rb, "abcdef", 6), 6);
	CHECK_INT(rbuf_len(&rb), 8);
	CHECK_INT(rbuf_write(&rb, "!", 1), 0);
	memset(out, 0, sizeof out);
	CHECK_INT(rbuf_read(&rb, out, 3), 3); /* within the first segment */
	CHECK_STR(out, "45a");
	memset(out, 0, sizeof out);
	CHECK_INT(rbuf_read(&rb, out, 4), 4); /* across the wrap */
	CHECK_STR(out, "bcde");
	CHECK_INT(rb.head, 3);
	CHECK_INT(rbuf_write(&rb, "XYZ", 3), 3);
	memset(out, 0, sizeof out);
	CHECK_INT(rbuf_read(&rb, out, 16), 4);
	CHECK_STR(out, "fXYZ");
	CHECK_INT(rb.head, 0); /* reset when empty */
	rbuf_free(&rb);
}

static void test_write_exactly_to_end(void)
{
	struct rbuf rb;
	char out[8] = {0};

	CHECK_INT(rbuf_init(&rb, 4), 0);
	CHECK_INT(rbuf_write(&rb, "ab", 2), 2);
	CHECK_INT(rbuf_read(&rb, out, 1), 1);
	CHECK_INT(rbuf_write(&rb, "cd", 2), 2); /* ends exactly at cap */
	CHECK_INT(rbuf_write(&rb, "ef", 2), 1); /* one byte at index 0 */
	CHECK_INT(rbuf_read(&rb, out, 8), 4);
	CHECK(memcmp(out, "bcde", 4) == 0);
	rbuf_free(&rb);
}

static void test_free_is_idempotent(void)
{
	struct rbuf rb;

	rbuf_free(NULL);
	CHECK_INT(rbuf_init(&rb, 16), 0);
	rbuf_write(&rb, "abc", 3);
	rbuf_free(&rb);
	CHECK(rb.data == NULL);
	CHECK_INT(rb.cap, 0);
	CHECK_INT(rbuf_len(&rb), 0);
	rbuf_free(&rb);
	CHECK_INT(rbuf_write(&rb, "a", 1), 0);
}

/* Random partial writes and reads against a linear FIFO model. */
static void test_random_against_model(void)
{
	enum { CAP = 37, TOTAL = 200000 };
	static unsigned char model[TOTAL];
	unsigned char in[64], out[64];
	size_t produced = 0, consumed = 0;
	uint32_t seed = 12345;
	struct rbuf rb;

	CHECK_INT(rbuf_init(&rb, CAP), 0);
	while (consumed < TOTAL) {
		seed = seed * 1664525u + 1013904223u;
		size_t n = (seed >> 8) % sizeof in;
		if ((seed >> 20) & 1) {
			n = n < TOTAL - produced ? n : TOTAL - produced;
			for (size_t i = 0; i < n; i++)
				in[i] = model[produced + i] = (unsigned char)((produced + i) * 7 + (seed >> 24));
			size_t w = rbuf_write(&rb, in, n);
			if (w != (n < CAP - (produced - consumed) ? n : CAP - (produced - consumed)))
				T_FAIL("write %zu of %zu at len %zu", w, n, produced - consumed);
			produced += w;
		} else {
			size_t r = rbuf_read(&rb, out, n);
			if (r != (n < produced - consumed ? n : produced - consumed))
				T_FAIL("read %zu of %zu", r, n);
			if (memcmp(out, model + consumed, r) != 0)
				T_FAIL("bytes differ at %zu", consumed);
			consumed += r;
		}
		CHECK_INT(rbuf_len(&rb), produced - consumed);
		CHECK_INT(rbuf_space(&rb), CAP - (produced - consumed));
		CHECK(rb.head < CAP);
	}
	rbuf_free(&rb);
}

/* A ring of 16 KiB and more is mapped pages of its own (rbuf.c): the same
 * FIFO behaviour across the wrap, a capacity that is not a page multiple,
 * and the memory handed back through rbuf_data_free as pool.c does. */
static void test_large_ring_wraps_and_frees(void)
{
	enum { CAP = 64 * 1024 + 100 };
	static char in[2 * CAP], out[CAP];
	struct rbuf rb;

	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (char)(i * 7 + 3);
	CHECK_INT(rbuf_init(&rb, CAP), 0);
	CHECK_INT(rb.cap, CAP);
	CHECK_INT(rbuf_write(&rb, in, 60000), 60000);
	CHECK_INT(rbuf_read(&rb, out, 50000), 50000);
	CHECK(memcmp(out, in, 50000) == 0);
	CHECK_INT(rbuf_write(&rb, in + 60000, CAP - 10000), CAP - 10000); /* wraps: fills it exactly */
	CHECK_INT(rbuf_space(&rb), 0);
	CHECK_INT(rbuf_read(&rb, out, sizeof out), CAP);
	CHECK(memcmp(out, in + 50000, 10000) == 0);
	CHECK(memcmp(out + 10000, in + 60000, CAP - 10000) == 0);
	char *data = rb.data;
	rb.data = NULL; /* taken out, as the pool keeps rings */
	rbuf_free(&rb);
	rbuf_data_free(data, CAP);
	rbuf_data_free(NULL, CAP);
}

/* peek shows the first contiguous run, skip drops from the front; a wrap
 * shows as two runs. */
static void test_peek_and_skip(void)
{
	struct rbuf rb;
	const char *at;
	char out[8];
	CHECK(rbuf_init(&rb, 8) == 0);
	CHECK_INT(rbuf_peek(&rb, &at), 0);
	CHECK(at == NULL);
	rbuf_write(&rb, "abcdef", 6);
	rbuf_skip(&rb, 4);
	rbuf_write(&rb, "ghijk", 5); /* "ef" + "ghijk", wrapping after "efgh" */
	CHECK_INT(rbuf_peek(&rb, &at), 4);
	CHECK(memcmp(at, "efgh", 4) == 0);
	rbuf_skip(&rb, 4);
	CHECK_INT(rbuf_peek(&rb, &at), 3);
	CHECK(memcmp(at, "ijk", 3) == 0);
	rbuf_skip(&rb, 100); /* capped at what is stored */
	CHECK_INT(rbuf_len(&rb), 0);
	rbuf_write(&rb, "xy", 2); /* empty again: restarts at 0 */
	CHECK_INT(rbuf_peek(&rb, &at), 2);
	CHECK_INT(rbuf_read(&rb, out, sizeof out), 2);
	rbuf_free(&rb);
}

int main(void)
{
	RUN(test_init_and_empty);
	RUN(test_zero_capacity_refused);
	RUN(test_allocation_failure_leaves_empty);
	RUN(test_full_and_partial_write);
	RUN(test_wraparound);
	RUN(test_write_exactly_to_end);
	RUN(test_free_is_idempotent);
	RUN(test_random_against_model);
	RUN(test_large_ring_wraps_and_frees);
	RUN(test_peek_and_skip);
	return T_DONE();
}
