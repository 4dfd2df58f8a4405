/*
 * slist.c - libcurl header lists (see slist.h).
 */
#include "util/slist.h"

#include <curl/curl.h>

bool slist_add(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);
	if (n == NULL)
		return false;
	*l = n;
	return true;
}
