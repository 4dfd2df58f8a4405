/*
 * callerstat.c - counters by caller, route, status class and protocol
 * (callerstat.h).
 */
#include "ops/callerstat.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/inventory.h"

#define NAME_MAX_BYTES 65

static const char *const status_names[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

/* One series; its names are written before `ready` is released, never after. */
struct series {
	char caller[NAME_MAX_BYTES], route[NAME_MAX_BYTES];
	unsigned status; /* index into status_names */
	atomic_bool ready;
	atomic_ullong n;
};

static struct series series[CALLERSTAT_SERIES];
static atomic_size_t n_series;
static pthread_mutex_t claim = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong by_proto[PROTO_COUNT];
static atomic_ullong dropped;

static struct series *find(size_t upto, const char *c, const char *r, unsigned st)
{
	for (size_t i = 0; i < upto; i++) {
		struct series *s = &series[i];
		if (atomic_load_explicit(&s->ready, memory_order_acquire) && s->status == st &&
		    strcmp(s->caller, c) == 0 && strcmp(s->route, r) == 0)
			return s;
	}
	return NULL;
}

void callerstat_request(const char *caller, const char *route, int status, unsigned protos)
{
	const char *c = caller && *caller ? caller : "-", *r = route ? route : "";
	unsigned st = status >= 100 && status < 600 ? (unsigned)(status / 100) : 0;
	for (int p = 0; p < PROTO_COUNT; p++)
		if (protos & (1u << p))
			atomic_fetch_add_explicit(&by_proto[p], 1, memory_order_relaxed);
	struct series *s = find(atomic_load_explicit(&n_series, memory_order_acquire), c, r, st);
	if (!s) {
		pthread_mutex_lock(&claim);
		size_t n = atomic_load_explicit(&n_series, memory_order_relaxed);
		s = find(n, c, r, st);
		if (!s && n < CALLERSTAT_SERIES) {
			s = &series[n];
			snprintf(s->caller, sizeof s->caller, "%s", c);
			snprintf(s->route, sizeof s->route, "%s", r);
			s->status = st;
			atomic_store_explicit(&s->ready, true, memory_order_release);
			atomic_store_explicit(&n_series, n + 1, memory_order_release);
		}
		pthread_mutex_unlock(&claim);
	}
	if (s)
		atomic_fetch_add_explicit(&s->n, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
}

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	if (b->failed)
		return;
	if (b->cap - b->len < 512) {
		size_t nc = b->cap ? b->cap * 2 : 8192;
		char *np = nc <= (4u << 20) ? realloc(b->p, nc) : NULL;
		if (!np) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->failed = true; /* lines are short: names are capped at 64 bytes */
	else
		b->len += (size_t)n;
}

char *callerstat_render(size_t *len)
{
	struct buf b = {0};
	put(&b, "# HELP s2s_caller_requests_total Requests answered, by caller ([caller:NAME], \"-\" for none), route "
		"and status class.\n# TYPE s2s_caller_requests_total counter\n");
	size_t n = atomic_load_explicit(&n_series, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		put(&b, "s2s_caller_requests_total{caller=\"%s\",route=\"%s\",status=\"%s\"} %llu\n", series[i].caller,
		    series[i].route, status_names[series[i].status],
		    atomic_load_explicit(&series[i].n, memory_order_relaxed));
	put(&b, "# HELP s2s_caller_series_dropped_total Requests not counted by caller: the series cap was "
		"reached.\n# TYPE s2s_caller_series_dropped_total counter\n");
	put(&b, "s2s_caller_series_dropped_total %llu\n", atomic_load_explicit(&dropped, memory_order_relaxed));
	put(&b, "# HELP s2s_protocol_requests_total Requests by protocol used (a request may use two, e.g. "
		"basic_in and odata_v4).\n# TYPE s2s_protocol_requests_total counter\n");
	for (int p = 0; p < PROTO_COUNT; p++)
		put(&b, "s2s_protocol_requests_total{protocol=\"%s\"} %llu\n", inventory_proto_names[p],
		    atomic_load_explicit(&by_proto[p], memory_order_relaxed));
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
