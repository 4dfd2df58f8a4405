/*
 * slist.h - appending to a libcurl header list without losing it when
 * memory runs out (curl_slist_append returns NULL and leaves the list
 * alone, so assigning its result directly would leak the list).
 */
#ifndef S2S_SLIST_H
#define S2S_SLIST_H

#include <stdbool.h>

struct curl_slist;

/* Append a copy of line to *l. false when out of memory (*l unchanged). */
bool slist_add(struct curl_slist **l, const char *line);

#endif
