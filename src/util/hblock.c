/*
 * hblock.c - a libcurl header list in one allocation (see hblock.h).
 */
#include "util/hblock.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

/* Append the line a[0..al) b[0..bl) c[0..cl) (NUL added). */
static void put(struct hblock *h, const char *a, size_t al, const char *b, size_t bl, const char *c, size_t cl)
{
	size_t need = al + bl + cl + 1;
	if (h->failed)
		return;
	if (h->nodes == NULL) { /* measuring */
		h->n++;
		h->len += need;
		return;
	}
	if (h->n >= h->want_n || need > h->want_len - h->len) {
		h->failed = true; /* the fill pass must repeat the measuring one */
		return;
	}
	char *p = h->text + h->len;
	memcpy(p, a, al);
	memcpy(p + al, b, bl);
	memcpy(p + al + bl, c, cl);
	p[al + bl + cl] = '\0';
	struct curl_slist *node = &h->nodes[h->n];
	node->data = p;
	node->next = NULL;
	if (h->n > 0)
		h->nodes[h->n - 1].next = node;
	h->n++;
	h->len += need;
}

void hblock_add(struct hblock *b, const char *line)
{
	put(b, line, strlen(line), "", 0, "", 0);
}

void hblock_add_field(struct hblock *b, const char *name, const char *value)
{
	size_t vl = strlen(value);
	if (vl)
		put(b, name, strlen(name), ": ", 2, value, vl);
	else
		put(b, name, strlen(name), ";", 1, "", 0);
}

int hblock_alloc(struct hblock *b)
{
	if (b->failed || b->nodes != NULL)
		return -1;
	if (b->n == 0)
		return 0; /* nothing to hold: hblock_take answers NULL */
	size_t nodes = (size_t)b->n * sizeof(struct curl_slist);
	b->nodes = malloc(nodes + b->len);
	if (b->nodes == NULL) {
		b->failed = true;
		return -1;
	}
	b->text = (char *)b->nodes + nodes;
	b->want_n = b->n;
	b->want_len = b->len;
	b->n = 0;
	b->len = 0;
	return 0;
}

struct curl_slist *hblock_take(struct hblock *b)
{
	struct curl_slist *list = b->nodes;
	if (b->failed || list == NULL || b->n != b->want_n) {
		free(list);
		list = NULL;
	}
	*b = (struct hblock){0};
	return list;
}
