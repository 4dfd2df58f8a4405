/*
 * gate.c - per-identity gates (see gate.h).
 *
 * The table is an array filled once per (credential, host) and never
 * shrunk: readers scan the first `n_gates` slots without a lock (a slot is
 * complete before the count that shows it is published). Each gate's state
 * sits behind its own mutex, held for a few list and counter operations,
 * never across a call that can block; wake functions write an eventfd.
 */
#include "proxy/gate.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct gate {
	char credential[64];
	char host[256];
	pthread_mutex_t mu;
	/* under mu */
	long long closed_until; /* monotonic ms; 0 = open */
	long long closed_since;
	char limit[24];
	unsigned inflight;
	unsigned slow_start;       /* allowance after a reopening, 0 = none */
	atomic_bool in_slow_start; /* slow_start != 0, readable without the mutex (gate_success's fast path) */
	unsigned queued;
	struct gate_ticket *head, *tail;
	bool open_unlogged; /* opened, not yet reported by gate_opened */
	long long open_was; /* how long it had been closed */
	/* counters: relaxed atomics, read by /metrics */
	atomic_ullong throttled, held, held_ms, retries, refused;
	atomic_llong burst_remaining, time_remaining;
};

static struct gate gates[GATE_MAX];
static atomic_size_t n_gates;
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static struct gate *find(const char *credential, const char *host, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(gates[i].credential, credential) == 0 && strcmp(gates[i].host, host) == 0)
			return &gates[i];
	return NULL;
}

struct gate *gate_get(const char *credential, const char *host)
{
	struct gate *g = find(credential, host, atomic_load_explicit(&n_gates, memory_order_acquire));
	if (g || strlen(credential) >= sizeof g->credential || strlen(host) >= sizeof g->host)
		return g;
	pthread_mutex_lock(&table_mu);
	size_t n = atomic_load_explicit(&n_gates, memory_order_relaxed);
	g = find(credential, host, n);
	if (!g && n < GATE_MAX && pthread_mutex_init(&gates[n].mu, NULL) == 0) {
		g = &gates[n];
		snprintf(g->credential, sizeof g->credential, "%s", credential);
		snprintf(g->host, sizeof g->host, "%s", host);
		atomic_init(&g->burst_remaining, -1);
		atomic_init(&g->time_remaining, -1);
		atomic_store_explicit(&n_gates, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&table_mu);
	return g;
}

/* ---- under g->mu ---- */

static void unlink_ticket(struct gate *g, struct gate_ticket *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		g->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		g->tail = t->prev;
	t->prev = t->next = NULL;
	t->queued = false;
	g->queued--;
}

static bool is_closed(const struct gate *g, long long now)
{
	return g->closed_until > now;
}

/* May one more go, for a request whose own cap is `cap`? */
static bool room(const struct gate *g, unsigned cap)
{
	unsigned eff = gate_effective_cap(cap, g->slow_start);
	return eff == 0 || g->inflight < eff;
}

/* Grant slots to the head of the queue while the gate is open and has room. */
static void grant(struct gate *g, long long now)
{
	while (g->head && !is_closed(g, now) && room(g, g->head->cap)) {
		struct gate_ticket *t = g->head;
		unlink_ticket(g, t);
		g->inflight++;
		atomic_fetch_add_explicit(&g->held_ms, (unsigned long long)(now - t->enqueued_ms),
					  memory_order_relaxed);
		atomic_store(&t->granted, true);
		t->wake(t->arg);
	}
}

/* The gate's time has come: open it (slow start from one request). Returns
 * how long it was closed, or -1 when it was not closed. */
static long long open_if_due(struct gate *g, long long now)
{
	if (g->closed_until == 0 || is_closed(g, now))
		return -1;
	long long was = now - g->closed_since;
	g->closed_until = 0;
	g->slow_start = 1;
	atomic_store_explicit(&g->in_slow_start, true, memory_order_relaxed);
	g->open_unlogged = true;
	g->open_was = was;
	return was;
}

/* ---- public ---- */

enum gate_verdict gate_enter(struct gate *g, struct gate_ticket *t, long long now, long long budget_ms,
			     unsigned queue_cap, long long *wait_ms)
{
	enum gate_verdict v;
	*wait_ms = 0;
	pthread_mutex_lock(&g->mu);
	open_if_due(g, now); /* whoever comes first after Retry-After opens it (gate_opened reports it) */
	if (is_closed(g, now) && g->closed_until - now > budget_ms) {
		*wait_ms = g->closed_until - now;
		v = GATE_TOO_LONG;
	} else if (!is_closed(g, now) && !g->head && room(g, t->cap)) {
		g->inflight++;
		v = GATE_GO;
	} else if (g->queued >= queue_cap) {
		*wait_ms = is_closed(g, now) ? g->closed_until - now : 0;
		v = GATE_FULL;
	} else {
		*wait_ms = is_closed(g, now) ? g->closed_until - now : 0;
		t->prev = g->tail;
		t->next = NULL;
		if (g->tail)
			g->tail->next = t;
		else
			g->head = t;
		g->tail = t;
		t->queued = true;
		t->enqueued_ms = now;
		atomic_store(&t->granted, false);
		g->queued++;
		v = GATE_WAIT;
	}
	pthread_mutex_unlock(&g->mu);
	if (v == GATE_WAIT)
		atomic_fetch_add_explicit(&g->held, 1, memory_order_relaxed);
	return v;
}

bool gate_cancel(struct gate *g, struct gate_ticket *t)
{
	pthread_mutex_lock(&g->mu);
	if (t->queued)
		unlink_ticket(g, t);
	pthread_mutex_unlock(&g->mu);
	return atomic_load(&t->granted);
}

void gate_release(struct gate *g, long long now)
{
	pthread_mutex_lock(&g->mu);
	if (g->inflight > 0)
		g->inflight--;
	grant(g, now);
	pthread_mutex_unlock(&g->mu);
}

bool gate_close(struct gate *g, long long now, long long wait_ms, const char *limit)
{
	bool closed_now;
	pthread_mutex_lock(&g->mu);
	open_if_due(g, now);
	closed_now = !is_closed(g, now);
	if (closed_now)
		g->closed_since = now;
	if (now + wait_ms > g->closed_until)
		g->closed_until = now + wait_ms;
	if (limit || closed_now)
		snprintf(g->limit, sizeof g->limit, "%s", limit ? limit : "");
	pthread_mutex_unlock(&g->mu);
	atomic_fetch_add_explicit(&g->throttled, 1, memory_order_relaxed);
	return closed_now;
}

long long gate_service(struct gate *g, long long now)
{
	pthread_mutex_lock(&g->mu);
	long long was = open_if_due(g, now);
	grant(g, now);
	pthread_mutex_unlock(&g->mu);
	return was;
}

void gate_success(struct gate *g, long long now)
{
	if (!atomic_load_explicit(&g->in_slow_start, memory_order_relaxed))
		return; /* the common case: no lock per answer */
	pthread_mutex_lock(&g->mu);
	if (g->slow_start) {
		g->slow_start = gate_slow_start_next(g->slow_start);
		atomic_store_explicit(&g->in_slow_start, g->slow_start != 0, memory_order_relaxed);
		grant(g, now);
	}
	pthread_mutex_unlock(&g->mu);
}

long long gate_opened(struct gate *g, unsigned *queued)
{
	long long was = -1;
	pthread_mutex_lock(&g->mu);
	if (g->open_unlogged) {
		was = g->open_was;
		g->open_unlogged = false;
		*queued = g->queued;
	}
	pthread_mutex_unlock(&g->mu);
	return was;
}

long long gate_reopen_at(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	long long t = g->closed_until;
	pthread_mutex_unlock(&g->mu);
	return t;
}

void gate_note(struct gate *g, unsigned throttled, unsigned held, long long held_ms, unsigned retries, unsigned refused)
{
	atomic_fetch_add_explicit(&g->throttled, throttled, memory_order_relaxed);
	atomic_fetch_add_explicit(&g->held, held, memory_order_relaxed);
	if (held_ms > 0)
		atomic_fetch_add_explicit(&g->held_ms, (unsigned long long)held_ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&g->retries, retries, memory_order_relaxed);
	atomic_fetch_add_explicit(&g->refused, refused, memory_order_relaxed);
}

void gate_ratelimit(struct gate *g, const char *burst_remaining, const char *time_remaining)
{
	long long b = burst_remaining ? gate_ratelimit_value(burst_remaining) : -1;
	long long t = time_remaining ? gate_ratelimit_value(time_remaining) : -1;
	if (b >= 0)
		atomic_store_explicit(&g->burst_remaining, b, memory_order_relaxed);
	if (t >= 0)
		atomic_store_explicit(&g->time_remaining, t, memory_order_relaxed);
}

size_t gate_count(void)
{
	return atomic_load_explicit(&n_gates, memory_order_acquire);
}

bool gate_view(size_t i, long long now, struct gate_view *out)
{
	if (i >= gate_count())
		return false;
	struct gate *g = &gates[i];
	memset(out, 0, sizeof *out);
	out->credential = g->credential;
	out->host = g->host;
	pthread_mutex_lock(&g->mu);
	out->closed = is_closed(g, now);
	out->reopen_in_ms = out->closed ? g->closed_until - now : 0;
	snprintf(out->limit, sizeof out->limit, "%s", g->limit);
	out->inflight = g->inflight;
	out->queued = g->queued;
	pthread_mutex_unlock(&g->mu);
	out->throttled = atomic_load_explicit(&g->throttled, memory_order_relaxed);
	out->held = atomic_load_explicit(&g->held, memory_order_relaxed);
	out->held_ms = atomic_load_explicit(&g->held_ms, memory_order_relaxed);
	out->retries = atomic_load_explicit(&g->retries, memory_order_relaxed);
	out->refused = atomic_load_explicit(&g->refused, memory_order_relaxed);
	out->burst_remaining = atomic_load_explicit(&g->burst_remaining, memory_order_relaxed);
	out->time_remaining = atomic_load_explicit(&g->time_remaining, memory_order_relaxed);
	return true;
}

/* ---- pure functions ---- */

#define WAIT_MAX_MS (366LL * 24 * 3600 * 1000) /* anything longer is nonsense: -1 */

long long gate_retry_after_ms(const char *value, long long wall_now_s)
{
	const char *p = value;
	if (!value)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (isdigit((unsigned char)*p)) {
		long long s = 0;
		for (; isdigit((unsigned char)*p); p++) {
			s = s * 10 + (*p - '0');
			if (s * 1000 > WAIT_MAX_MS)
				return -1;
		}
		while (*p == ' ' || *p == '\t')
			p++;
		return *p ? -1 : s * 1000;
	}
	/* IMF-fixdate, the form RFC 9110 5.6.7 says senders use, then the two
	 * obsolete forms recipients must accept (RFC 850, asctime) */
	static const char *const forms[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
					    "%a %b %e %H:%M:%S %Y"};
	struct tm tm;
	const char *end = NULL;
	for (size_t f = 0; f < sizeof forms / sizeof forms[0] && !end; f++) {
		memset(&tm, 0, sizeof tm);
		end = strptime(p, forms[f], &tm);
	}
	if (!end)
		return -1;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end)
		return -1;
	time_t at = timegm(&tm);
	if (at == (time_t)-1)
		return -1;
	long long d = (long long)at - wall_now_s;
	if (d * 1000 > WAIT_MAX_MS)
		return -1;
	return d <= 0 ? 0 : d * 1000;
}

/* Digits at s[*i..n) as a number (at most 9 digits); -1 when none. */
static long long digits(const char *s, size_t n, size_t *i, int max_digits)
{
	long long v = 0;
	int k = 0;
	while (*i < n && isdigit((unsigned char)s[*i]) && k < max_digits) {
		v = v * 10 + (s[*i] - '0');
		(*i)++;
		k++;
	}
	return k ? v : -1;
}

/* Fraction digits after a '.', as ms (the rest ignored). */
static long long fraction_ms(const char *s, size_t n, size_t *i)
{
	long long ms = 0, scale = 100;
	if (*i >= n || !isdigit((unsigned char)s[*i]))
		return -1;
	while (*i < n && isdigit((unsigned char)s[*i])) {
		ms += (s[*i] - '0') * scale;
		scale /= 10;
		(*i)++;
	}
	return ms;
}

/* xs:duration: P[nD][T[nH][nM][n[.f]S]] (no years or months: a wait is not that long). */
static long long xs_duration_ms(const char *s, size_t n)
{
	size_t i = 1; /* after 'P' */
	long long ms = 0;
	bool in_time = false, any = false;
	while (i < n) {
		if (s[i] == 'T' && !in_time) {
			in_time = true;
			i++;
			continue;
		}
		long long v = digits(s, n, &i, 9), frac = 0;
		if (v < 0)
			return -1;
		if (i < n && s[i] == '.' && in_time) {
			i++;
			frac = fraction_ms(s, n, &i);
			if (frac < 0 || i >= n || s[i] != 'S')
				return -1;
		}
		if (i >= n)
			return -1;
		char u = s[i++];
		if (!in_time && u == 'D')
			ms += v * 86400000LL;
		else if (in_time && u == 'H')
			ms += v * 3600000LL;
		else if (in_time && u == 'M')
			ms += v * 60000LL;
		else if (in_time && u == 'S')
			ms += v * 1000LL + frac;
		else
			return -1;
		any = true;
		if (ms > WAIT_MAX_MS)
			return -1;
	}
	return any ? ms : -1;
}

long long gate_timespan_ms(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s))
		s++, n--;
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n == 0 || n > 64 || s[0] == '-')
		return -1;
	if (s[0] == 'P')
		return xs_duration_ms(s, n);
	size_t i = 0;
	long long d = 0, h, m, sec, frac = 0;
	long long first = digits(s, n, &i, 8);
	if (first < 0 || i >= n)
		return -1;
	if (s[i] == '.') { /* d.hh:mm:ss */
		d = first;
		i++;
		h = digits(s, n, &i, 2);
	} else {
		h = first;
	}
	if (h < 0 || h > 23 || i >= n || s[i++] != ':')
		return -1;
	m = digits(s, n, &i, 2);
	if (m < 0 || m > 59 || i >= n || s[i++] != ':')
		return -1;
	sec = digits(s, n, &i, 2);
	if (sec < 0 || sec > 59)
		return -1;
	if (i < n && s[i] == '.') {
		i++;
		frac = fraction_ms(s, n, &i);
		if (frac < 0)
			return -1;
	}
	if (i != n)
		return -1;
	long long ms = ((d * 24 + h) * 60 + m) * 60000LL + sec * 1000 + frac;
	return ms > WAIT_MAX_MS ? -1 : ms;
}

/* memmem that tolerates a NULL body. */
static const char *find_in(const char *body, size_t n, const char *what)
{
	return body && n ? memmem(body, n, what, strlen(what)) : NULL;
}

long long gate_soap_retry_ms(const char *body, size_t n)
{
	const char *k = find_in(body, n, ">Retry-After<");
	if (!k)
		return -1;
	const char *end = body + n;
	/* the value element follows its key: <a:value ...>TEXT</a:value> */
	const char *v = find_in(k, (size_t)(end - k), "value");
	if (!v)
		return -1;
	const char *gt = memchr(v, '>', (size_t)(end - v));
	if (!gt || gt[-1] == '/')
		return -1;
	const char *lt = memchr(gt + 1, '<', (size_t)(end - gt - 1));
	if (!lt)
		return -1;
	return gate_timespan_ms(gt + 1, (size_t)(lt - gt - 1));
}

const char *gate_limit_named(const char *body, size_t n)
{
	static const struct {
		const char *mark, *limit;
	} marks[] = {
	    {"0x80072322", "requests"},
	    {"0x80072321", "execution_time"},
	    {"0x80072326", "concurrency"},
	    {"<ErrorCode>-2147015902<", "requests"},
	    {"<ErrorCode>-2147015903<", "execution_time"},
	    {"<ErrorCode>-2147015898<", "concurrency"},
	};
	for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
		if (find_in(body, n, marks[i].mark))
			return marks[i].limit;
	return NULL;
}

long long gate_ratelimit_value(const char *v)
{
	long long x = 0;
	int nd = 0;
	for (; *v == ' '; v++)
		;
	for (; *v && *v != '.'; v++) {
		if (*v == ',')
			continue;
		if (!isdigit((unsigned char)*v) || ++nd > 15)
			return -1;
		x = x * 10 + (*v - '0');
	}
	if (*v == '.')
		for (v++; *v; v++)
			if (!isdigit((unsigned char)*v))
				return -1;
	return nd ? x : -1;
}

unsigned gate_effective_cap(unsigned max_concurrent, unsigned slow_start)
{
	if (!max_concurrent)
		return slow_start;
	if (!slow_start)
		return max_concurrent;
	return slow_start < max_concurrent ? slow_start : max_concurrent;
}

unsigned gate_slow_start_next(unsigned slow_start)
{
	if (!slow_start)
		return 0;
	return slow_start * 2 >= GATE_SS_END ? 0 : slow_start * 2;
}
