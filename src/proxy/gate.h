/*
 * gate.h - one gate per identity the upstream throttles: (credential name,
 * upstream host). Dynamics enforces its service protection limits per user
 * (the proxy's application user) and answers 429 with Retry-After past
 * them; sending more while told to wait extends the penalty. A gate closes
 * on such an answer until Retry-After has passed; while it is closed
 * nothing is sent for that identity, and requests wait in its bounded FIFO
 * queue. It also counts the identity's requests in flight upstream, for
 * max_concurrent and for the slow start after it reopens.
 *
 * Gates are process-wide (any worker thread; a mutex per gate) and keyed by
 * names, not by a configuration generation, so a SIGHUP reload keeps them.
 * They are never freed before exit. Queued tickets belong to the requests of
 * worker threads: the gate only links them, marks them granted and calls
 * their wake function; the owning worker does everything else.
 *
 * The parsing and pacing functions at the end are pure (unit-tested, fuzzed).
 */
#ifndef S2S_GATE_H
#define S2S_GATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define GATE_MAX          512  /* gates per process (credentials x upstream hosts) */
#define GATE_SS_END       64   /* slow start ends once it would allow this many in flight */
#define GATE_DEFAULT_WAIT 5000 /* ms, a 429 without a usable Retry-After */

struct gate;

/* A request's place in a gate's queue; owned by the request (its worker). */
struct gate_ticket {
	struct gate_ticket *prev, *next; /* the gate's queue, under its mutex */
	void (*wake)(void *arg);         /* called (under the gate's mutex) once granted: must not block */
	void *arg;
	unsigned cap;          /* the request's max_concurrent, 0 = none */
	bool queued;           /* under the gate's mutex */
	atomic_bool granted;   /* set by whichever thread granted it a slot */
	long long enqueued_ms; /* when it started waiting */
};

enum gate_verdict {
	GATE_GO = 0,  /* a slot is held: send now (gate_release when done) */
	GATE_WAIT,    /* queued: the ticket is granted later, or cancelled */
	GATE_FULL,    /* the queue is full */
	GATE_TOO_LONG /* closed for longer than the request may wait */
};

/* What /metrics and /readyz show of a gate (a copy taken under its mutex). */
struct gate_view {
	const char *credential, *host; /* the gate's own, valid until exit */
	bool closed;
	long long reopen_in_ms; /* closed: until it opens */
	char limit[24];         /* the limit the service named, "" when it did not */
	unsigned inflight, queued;
	unsigned long long throttled, held, held_ms, retries, refused;
	long long burst_remaining, time_remaining; /* x-ms-ratelimit-*: last seen, -1 none */
};

/* The gate of (credential, host), created on first use; NULL when
 * GATE_MAX gates exist or memory is short (the request then goes ungated). */
struct gate *gate_get(const char *credential, const char *host);

/* Ask for a slot at time now. budget_ms: how much longer the request may
 * wait; queue_cap: the queue's bound for this request. *wait_ms gets how
 * long the gate stays closed (GATE_TOO_LONG, GATE_WAIT), else 0. */
enum gate_verdict gate_enter(struct gate *g, struct gate_ticket *t, long long now, long long budget_ms,
			     unsigned queue_cap, long long *wait_ms);
/* Leave the queue (deadline passed, client gone). Returns true when the
 * ticket had been granted meanwhile: the caller then holds a slot. */
bool gate_cancel(struct gate *g, struct gate_ticket *t);
/* A slot is free again (the request ended or will be sent again). */
void gate_release(struct gate *g, long long now);
/* The upstream said wait wait_ms (capped by the caller). Returns true when
 * this closed an open gate (the caller logs it). limit may be NULL. */
bool gate_close(struct gate *g, long long now, long long wait_ms, const char *limit);
/* Open a gate whose time has come and grant what may go. Returns the ms the
 * gate was closed when this call opened it, else -1. */
long long gate_service(struct gate *g, long long now);
/* Once per reopening, whichever call opened it: how long the gate was
 * closed (and *queued, who waits), else -1. For the one log line. */
long long gate_opened(struct gate *g, unsigned *queued);
/* An answer that was not a throttle: the slow start after a reopening grows. */
void gate_success(struct gate *g, long long now);
/* When the gate opens (monotonic ms), 0 when open. */
long long gate_reopen_at(struct gate *g);
/* Count events and remember the x-ms-ratelimit-* values (NULL: absent). */
void gate_note(struct gate *g, unsigned throttled, unsigned held, long long held_ms, unsigned retries,
	       unsigned refused);
void gate_ratelimit(struct gate *g, const char *burst_remaining, const char *time_remaining);

/* Every gate: count, then views by index. */
size_t gate_count(void);
bool gate_view(size_t i, long long now, struct gate_view *out);

/* ---- pure functions ---- */

/* Retry-After (RFC 9110 10.2.3): delta-seconds or an HTTP-date, as ms from
 * wall_now_s (a date in the past is 0). -1 when unusable. */
long long gate_retry_after_ms(const char *value, long long wall_now_s);
/* A .NET TimeSpan "[-][d.]hh:mm:ss[.fffffff]" or an xs:duration "PnDTnHnMn.nS"
 * (how WCF serializes one) as ms; -1 when it is neither or negative. */
long long gate_timespan_ms(const char *s, size_t n);
/* The Organization service's fault: the Retry-After TimeSpan in its
 * ErrorDetails as ms (-1 none). */
long long gate_soap_retry_ms(const char *body, size_t n);
/* The limit an answer names: the Web API's error code (0x80072322 ...) or the
 * fault's ErrorCode (-2147015902 ...) -> "requests", "execution_time",
 * "concurrency"; NULL when it names none. */
const char *gate_limit_named(const char *body, size_t n);
/* x-ms-ratelimit-* value ("1,200,000.00") as a whole number; -1 when unusable. */
long long gate_ratelimit_value(const char *v);
/* How many may be in flight: the smaller of max_concurrent and the slow
 * start's allowance (0 = no bound from it); 0 = unbounded. */
unsigned gate_effective_cap(unsigned max_concurrent, unsigned slow_start);
/* The slow start's next allowance after a success: doubles, 0 (over) at GATE_SS_END. */
unsigned gate_slow_start_next(unsigned slow_start);

#endif
