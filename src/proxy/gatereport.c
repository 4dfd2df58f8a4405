/*
 * gatereport.c - /metrics and /readyz views of the gates (gatereport.h).
 */
#include "proxy/gatereport.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/gate.h"

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	while (!t->failed) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		int n = vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *np = realloc(t->p, cap);
		if (!np) {
			t->failed = true;
			return;
		}
		t->p = np;
		t->cap = cap;
	}
}

/* A series per gate: name, type, help, and how to read the value. */
struct series {
	const char *name, *type, *help;
	double (*value)(const struct gate_view *v);
};

static double v_throttled(const struct gate_view *v)
{
	return (double)v->throttled;
}
static double v_held(const struct gate_view *v)
{
	return (double)v->held;
}
static double v_held_s(const struct gate_view *v)
{
	return (double)v->held_ms / 1000.0;
}
static double v_retries(const struct gate_view *v)
{
	return (double)v->retries;
}
static double v_refused(const struct gate_view *v)
{
	return (double)v->refused;
}
static double v_queued(const struct gate_view *v)
{
	return v->queued;
}
static double v_inflight(const struct gate_view *v)
{
	return v->inflight;
}
static double v_closed(const struct gate_view *v)
{
	return v->closed ? 1 : 0;
}
static double v_reopen(const struct gate_view *v)
{
	return (double)v->reopen_in_ms / 1000.0;
}
static double v_burst(const struct gate_view *v)
{
	return (double)v->burst_remaining;
}
static double v_time(const struct gate_view *v)
{
	return (double)v->time_remaining;
}

static const struct series all_series[] = {
    {"s2s_throttled_total", "counter",
     "Throttle answers from the upstream (429, service protection fault, 503 with Retry-After), per identity.",
     v_throttled},
    {"s2s_throttle_held_total", "counter", "Requests that waited at their identity's gate.", v_held},
    {"s2s_throttle_held_seconds_total", "counter", "Seconds requests waited at their identity's gate.", v_held_s},
    {"s2s_throttle_retries_total", "counter", "Requests sent again after a throttle answer.", v_retries},
    {"s2s_throttle_refused_total", "counter",
     "Requests answered 503 throttled_upstream (wait budget spent or queue full).", v_refused},
    {"s2s_throttle_queue_depth", "gauge", "Requests waiting at the gate now.", v_queued},
    {"s2s_throttle_inflight", "gauge", "Requests of the identity in flight upstream.", v_inflight},
    {"s2s_throttle_gate_closed", "gauge", "1 while the upstream told this identity to wait.", v_closed},
    {"s2s_throttle_reopen_seconds", "gauge", "Seconds until a closed gate opens (0 when open).", v_reopen},
    {"s2s_ratelimit_burst_remaining", "gauge",
     "Last x-ms-ratelimit-burst-remaining-xrm-requests the upstream sent (-1: none yet).", v_burst},
    {"s2s_ratelimit_time_remaining", "gauge",
     "Last x-ms-ratelimit-time-remaining-xrm-requests the upstream sent, ms (-1: none yet).", v_time},
};

char *gatereport_metrics(long long now_ms, size_t *len)
{
	struct text t = {0};
	size_t n = gate_count();
	struct gate_view v;
	for (size_t s = 0; s < sizeof all_series / sizeof all_series[0]; s++) {
		const struct series *se = &all_series[s];
		put(&t, "# HELP %s %s\n# TYPE %s %s\n", se->name, se->help, se->name, se->type);
		for (size_t i = 0; i < n; i++)
			if (gate_view(i, now_ms, &v)) /* names are config names and host names: no quotes */
				put(&t, "%s{credential=\"%s\",upstream=\"%s\"} %.15g\n", se->name, v.credential, v.host,
				    se->value(&v));
	}
	if (t.failed) {
		free(t.p);
		return NULL;
	}
	*len = t.len;
	return t.p;
}

void gatereport_readyz(void *arr, long long now_ms)
{
	struct gate_view v;
	for (size_t i = 0; i < gate_count(); i++) {
		if (!gate_view(i, now_ms, &v) || !v.closed)
			continue;
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			return;
		}
		cJSON_AddStringToObject(o, "credential", v.credential);
		cJSON_AddStringToObject(o, "upstream", v.host);
		cJSON_AddNumberToObject(o, "reopen_in_ms", (double)v.reopen_in_ms);
		if (v.limit[0])
			cJSON_AddStringToObject(o, "limit", v.limit);
		cJSON_AddNumberToObject(o, "queued", v.queued);
	}
}
