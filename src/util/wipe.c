/*
 * wipe.c - wipe-then-free of secrets (see wipe.h).
 */
#include "util/wipe.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

void wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

void wipe_free_str(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void wipe_slist_free(struct curl_slist *l)
{
	for (struct curl_slist *it = l; it != NULL; it = it->next)
		if (it->data != NULL)
			explicit_bzero(it->data, strlen(it->data));
	curl_slist_free_all(l);
}
