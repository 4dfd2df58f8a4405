/*
 * callerstat.h - /metrics counters by caller: requests by caller, route
 * and status class, and by protocol (inventory.h's names).
 *
 * Label values are bounded: callers and routes are configured names (at
 * most 64 bytes of [A-Za-z0-9_.-]), the anonymous caller is "-", and at
 * most CALLERSTAT_SERIES (caller, route, status) series exist; a request
 * past that counts in s2s_caller_series_dropped_total. Counting is a
 * relaxed atomic after a lock-free look-up; a new series takes a mutex once.
 */
#ifndef S2S_CALLERSTAT_H
#define S2S_CALLERSTAT_H

#include <stddef.h>

#define CALLERSTAT_SERIES 1024

/* A request finished. caller/route NULL = none; status what the client got (0 = none). Any thread. */
void callerstat_request(const char *caller, const char *route, int status, unsigned protos);

/* The exposition text (malloc'd, *len bytes, NUL-terminated), or NULL. */
char *callerstat_render(size_t *len);

#endif
