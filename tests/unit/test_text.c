/*
 * test_text.c - the shared small helpers: text.c (hexval, copy_cut) and
 * wipe.c (wipe-then-free, NULL-safe).
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/text.h"
#include "util/wipe.h"
#include "t.h"

static void test_hexval(void)
{
	CHECK_INT(text_hexval('0'), 0);
	CHECK_INT(text_hexval('9'), 9);
	CHECK_INT(text_hexval('a'), 10);
	CHECK_INT(text_hexval('F'), 15);
	CHECK_INT(text_hexval('g'), -1);
	CHECK_INT(text_hexval('%'), -1);
	CHECK_INT(text_hexval(0), -1);
	CHECK_INT(text_hexval((char)0xc3), -1); /* a signed char above 0x7f */
	CHECK_INT(text_hexval(0xc3), -1);
}

static void test_copy_cut(void)
{
	char out[6];

	text_copy_cut(out, sizeof out, "abc");
	CHECK_STR(out, "abc");
	text_copy_cut(out, sizeof out, "abcdefgh");
	CHECK_STR(out, "abcde");
	text_copy_cut(out, sizeof out, NULL);
	CHECK_STR(out, "");
	text_copy_cut(out, 1, "abc");
	CHECK_STR(out, "");
}

static void test_wipe_null_safe(void)
{
	wipe_free(NULL, 10);
	wipe_free_str(NULL);
	wipe_slist_free(NULL);
	char *s = strdup("secret");
	CHECK(s != NULL);
	wipe_free_str(s);
	void *p = malloc(32);
	CHECK(p != NULL);
	wipe_free(p, 32);
	struct curl_slist *l = curl_slist_append(NULL, "Authorization: Basic Zm9vOmJhcg==");
	CHECK(l != NULL);
	wipe_slist_free(l); /* ASan and valgrind see any misuse */
}

int main(void)
{
	RUN(test_hexval);
	RUN(test_copy_cut);
	RUN(test_wipe_null_safe);
	return T_DONE();
}
