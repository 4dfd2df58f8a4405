/*
 * test_hblock.c - hblock.c: a header list built in one block reads like
 * the curl_slist_append list it replaces (same lines, same order, curl's
 * empty-field spelling), and a fill pass that differs from its measure is
 * refused rather than written past the block.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/hblock.h"
#include "t.h"

static void build(struct hblock *b, const char *host)
{
	hblock_add(b, "Authorization: Bearer x.y.z");
	hblock_add_field(b, "X-Forwarded-Host", host);
	hblock_add_field(b, "Prefer", "");
	hblock_add(b, "Expect:");
}

/* The lines of list joined by '|'. */
static const char *joined(const struct curl_slist *list, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = '\0';
	for (const struct curl_slist *l = list; l; l = l->next) {
		size_t len = strlen(l->data);
		if (n + len + 2 > cap)
			return "(too long)";
		memcpy(out + n, l->data, len);
		n += len;
		out[n++] = '|';
		out[n] = '\0';
	}
	return out;
}

static void test_two_passes_make_one_list(void)
{
	struct hblock b = {0};
	char buf[256];

	build(&b, "proxy.example");
	CHECK_INT(b.n, 4);
	CHECK_INT(hblock_alloc(&b), 0);
	build(&b, "proxy.example");
	struct curl_slist *list = hblock_take(&b);
	CHECK(list != NULL);
	CHECK_STR(joined(list, buf, sizeof buf),
		  "Authorization: Bearer x.y.z|X-Forwarded-Host: proxy.example|Prefer;|Expect:|");
	/* nodes and text are one block: the lines lie inside it, after the nodes */
	CHECK((char *)list->data > (char *)list && (char *)list->data < (char *)list + 4 * sizeof *list + 128);
	free(list);
	CHECK(b.nodes == NULL && b.n == 0 && !b.failed); /* the builder is reset */
}

static void test_fill_longer_than_measure_is_refused(void)
{
	struct hblock b = {0};

	build(&b, "a");
	CHECK_INT(hblock_alloc(&b), 0);
	build(&b, "a-longer-host"); /* would write past the measured text */
	CHECK(b.failed);
	CHECK(hblock_take(&b) == NULL); /* and the block is freed (LSan checks) */

	b = (struct hblock){0};
	build(&b, "a");
	CHECK_INT(hblock_alloc(&b), 0);
	build(&b, "a");
	hblock_add(&b, "One-More: line"); /* more lines than measured */
	CHECK(b.failed);
	CHECK(hblock_take(&b) == NULL);
}

static void test_fill_shorter_than_measure_is_refused(void)
{
	struct hblock b = {0};

	build(&b, "a");
	CHECK_INT(hblock_alloc(&b), 0);
	hblock_add(&b, "Authorization: Bearer x.y.z"); /* stops early: a list missing lines */
	CHECK(hblock_take(&b) == NULL);
}

static void test_empty_builder(void)
{
	struct hblock b = {0};

	CHECK_INT(hblock_alloc(&b), 0);
	CHECK(hblock_take(&b) == NULL);
	CHECK_INT(hblock_alloc(&b), 0);
	CHECK(hblock_alloc(&b) == 0 && b.nodes == NULL);
}

int main(void)
{
	RUN(test_two_passes_make_one_list);
	RUN(test_fill_longer_than_measure_is_refused);
	RUN(test_fill_shorter_than_measure_is_refused);
	RUN(test_empty_builder);
	return T_DONE();
}
