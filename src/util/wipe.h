/*
 * wipe.h - free memory that held a secret (a client secret, an access
 * token, Basic credentials, a password, a request body) after overwriting
 * it with explicit_bzero, which the compiler may not drop. All NULL-safe.
 */
#ifndef S2S_WIPE_H
#define S2S_WIPE_H

#include <stddef.h>

struct curl_slist;

/* Wipe the n bytes at p, then free p. */
void wipe_free(void *p, size_t n);
/* Wipe the string s up to its terminator, then free it. */
void wipe_free_str(char *s);
/* Wipe every line of a curl header list (one may carry credentials), then
 * free the list. */
void wipe_slist_free(struct curl_slist *l);

#endif
