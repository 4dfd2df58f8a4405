/*
 * throttle.c - requests at their identity's gate (see throttle.h, gate.h).
 *
 * A request takes a slot at its gate before it goes upstream and gives it
 * back when it ends (or is sent again). When the gate is closed, or the
 * identity has max_concurrent requests in flight, the request waits: it is
 * linked in its worker's list and its ticket in the gate's queue, and the
 * MHD connection stays suspended. Whichever thread frees a slot or opens
 * the gate grants the ticket and wakes the owning worker through its
 * eventfd; the worker's loop (throttle_poll) then starts the request, or
 * answers 503 once the request's wait budget is spent. Nothing here blocks.
 *
 * A 429 (or service protection fault, or 503 with Retry-After) closes the
 * gate for Retry-After (capped by throttle_max_wait). The upstream did not
 * execute it, so a request whose body is still held (refusal.c keeps bodies
 * up to replay_max_body) is rewound and waits at the gate again, up to
 * throttle_retries times; one whose body streamed past gets the 429 as is.
 */
#include "proxy/throttle.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "diag/diag.h"
#include "diag/problem.h"
#include "ops/metrics.h"
#include "proxy/gate.h"
#include "proxy/refusal.h"
#include "proxy/relay.h"
#include "proxy/request.h"
#include "proxy/worker.h"
#include "util/log.h"

#define RECHECK_MS 1000 /* a waiting request looks at its gate at least this often */

/* A request's throttle state (rq->thr), owned by the request, freed in
 * throttle_request_done. */
struct throttle_rq {
	struct request *rq;
	struct gate *gate;               /* NULL: ungated (no room in the gate table) */
	struct gate_ticket ticket;       /* in the gate's queue while waiting */
	struct throttle_rq *prev, *next; /* the worker's waiting list */
	bool waiting;                    /* ticket queued, linked in the worker's list */
	bool slot;                       /* holds a slot at the gate */
	bool succeeded;                  /* gate_success told for this request */
	unsigned retries;
	long long deadline_ms;   /* the request's wait budget ends (t_start + throttle_wait) */
	long long check_ms;      /* look at the gate again then (its reopening, or RECHECK_MS) */
	long long wait_ms;       /* how long the upstream asked to wait (for the 503) */
	long long wait_since_ms; /* when it began waiting at the gate */
	long long waited_ms;     /* at the gate in all, for the request line */
	const char *limit;       /* static, or NULL */
	char identity[320];      /* credential@host */
};

/* A ticket was granted (any thread, under the gate's mutex): make the owning
 * worker's loop run a turn, as other threads do, through its eventfd. */
static void wake_worker(void *arg)
{
	const struct worker *w = arg;
	uint64_t one = 1;
	if (w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_msg(LOG_WARN, "worker_wake", "worker %d: %s", w->id, strerror(errno));
}

static void list_link(struct worker *w, struct throttle_rq *t)
{
	t->prev = NULL;
	t->next = w->throttled;
	if (w->throttled)
		w->throttled->prev = t;
	w->throttled = t;
	t->waiting = true;
}

static void list_unlink(struct worker *w, struct throttle_rq *t)
{
	if (!t->waiting)
		return;
	long long waited = clock_now_ms() - t->wait_since_ms;
	t->waited_ms += waited;
	metrics_throttle(t->rq->route, MT_HELD_MS, (unsigned long long)waited);
	if (t->prev)
		t->prev->next = t->next;
	else
		w->throttled = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->waiting = false;
}

static const char *credential_name(const struct request *rq)
{
	return rq->cfg->credentials[rq->route->credential].name;
}

static struct throttle_rq *state_of(struct request *rq)
{
	if (rq->thr)
		return rq->thr;
	struct throttle_rq *t = calloc(1, sizeof *t);
	if (!t)
		return NULL; /* the request goes ungated */
	t->rq = rq;
	t->gate = gate_get(credential_name(rq), rq->route->upstream.host);
	t->deadline_ms = rq->t_start_ms + rq->route->throttle.wait_ms;
	t->ticket.wake = wake_worker;
	t->ticket.arg = rq->w;
	snprintf(t->identity, sizeof t->identity, "%s@%s", credential_name(rq), rq->route->upstream.host);
	rq->thr = t;
	return t;
}

static void log_gate(const struct request *rq, const struct throttle_rq *t, bool closed, long long ms, unsigned queued)
{
	struct log_line l;
	log_begin(&l, LOG_WARN, "throttled");
	log_str(&l, "state", closed ? "closed" : "open");
	log_str(&l, "identity", t->identity);
	log_str(&l, "route", rq->route->name);
	if (closed) {
		log_int(&l, "upstream_status", rq->resp.status);
		log_int(&l, "retry_after_ms", ms);
		log_str(&l, "limit", t->limit);
		log_str(&l, "request_id", rq->request_id);
	} else {
		log_int(&l, "closed_ms", ms);
		log_int(&l, "queued", queued);
	}
	log_end(&l);
}

/* The gate reopened through a call of ours: its one "open" line. */
static void report_open(const struct request *rq, const struct throttle_rq *t)
{
	unsigned queued = 0;
	long long was = gate_opened(t->gate, &queued);
	if (was >= 0)
		log_gate(rq, t, false, was, queued);
}

/* The 503 the client gets when the wait outlasts its budget. */
static void refuse(struct request *rq, struct throttle_rq *t, long long wait_ms, const char *why)
{
	char detail[384];
	struct diagnosis d;
	diag_upstream_throttled(&d);
	if (wait_ms > 0)
		t->wait_ms = wait_ms;
	snprintf(detail, sizeof detail, "%s throttles %s%s%s; %s", rq->route->upstream.host, t->identity,
		 t->limit ? ": limit " : "", t->limit ? t->limit : "", why);
	request_set_local(rq, d.status, d.code, d.title, detail);
	rq->local.retry_after_s = t->wait_ms > 0 ? (long)((t->wait_ms + 999) / 1000) : 1;
	if (t->gate)
		gate_note(t->gate, 0, 0, 0, 0, 1);
	metrics_throttle(rq->route, MT_REFUSED, 1);
}

static void give_back(struct throttle_rq *t, long long now)
{
	if (!t->slot)
		return;
	t->slot = false;
	gate_release(t->gate, now);
}

bool throttle_admit(struct request *rq, long long now)
{
	if (!rq->route)
		return true; /* the sign-in facade: nothing goes upstream */
	struct throttle_rq *t = state_of(rq);
	if (!t || !t->gate || t->slot)
		return true;
	if (t->waiting)
		return false;
	long long wait = 0, budget = t->deadline_ms - now;
	t->ticket.cap = (unsigned)rq->route->throttle.max_concurrent;
	enum gate_verdict v =
	    gate_enter(t->gate, &t->ticket, now, budget > 0 ? budget : 0, (unsigned)rq->route->throttle.queue, &wait);
	report_open(rq, t);
	switch (v) {
	case GATE_GO:
		t->slot = true;
		return true;
	case GATE_WAIT:
		metrics_throttle(rq->route, MT_HELD, 1);
		t->wait_since_ms = now;
		t->check_ms = now + (wait > 0 ? wait : RECHECK_MS);
		list_link(rq->w, t);
		return false;
	case GATE_FULL:
		refuse(rq, t, wait, "the queue of requests waiting for it is full (throttle_queue)");
		return false;
	case GATE_TOO_LONG:
		refuse(rq, t, wait, "the request may not wait that long (throttle_wait)");
		return false;
	}
	return true;
}

/* A throttle answer's body (kept in the down ring): collect it before deciding. */
static bool body_pending(const struct request *rq)
{
	size_t have = rbuf_len(&rq->resp.down);
	size_t cap = rq->resp.down.cap > CURL_MAX_WRITE_SIZE ? rq->resp.down.cap - CURL_MAX_WRITE_SIZE : 0;
	if (rq->is_head || rq->us.done || (rq->resp.length >= 0 && (int64_t)have >= rq->resp.length))
		return false;
	return have < cap && have < REFUSAL_PEEK_MAX;
}

static bool is_throttle_status(const struct request *rq)
{
	const char *ct;
	switch (rq->resp.status) {
	case 429:
		return true;
	case 503:
		return request_upstream_header(rq, "Retry-After") != NULL;
	case 500: /* the Organization service's fault; which one, the body says */
		ct = request_upstream_header(rq, "Content-Type");
		return rq->route->audience_kind == AUD_DATAVERSE && ct && strstr(ct, "xml");
	default:
		return false;
	}
}

/* How long the upstream asked to wait (ms, capped), and the limit it named,
 * from its headers and body[0..n). */
static long long asked_wait(struct request *rq, struct throttle_rq *t, const char *body, size_t n, bool *is_throttle)
{
	t->limit = gate_limit_named(body, n);
	long long ms = gate_retry_after_ms(request_upstream_header(rq, "Retry-After"), (long long)time(NULL));
	if (ms < 0)
		ms = gate_soap_retry_ms(body, n);
	*is_throttle = rq->resp.status != 500 || t->limit;
	if (ms < 0)
		ms = GATE_DEFAULT_WAIT;
	return ms < rq->route->throttle.max_wait_ms ? ms : rq->route->throttle.max_wait_ms;
}

/* The answer was not a throttle: a slow start after a reopening grows. */
static void answered(struct throttle_rq *t, long long now)
{
	if (!t->succeeded) {
		t->succeeded = true;
		gate_success(t->gate, now);
	}
}

/* A throttle answer: close the gate (its one log line when this closed it). */
static void close_gate(struct request *rq, struct throttle_rq *t, long long wait, long long now)
{
	t->wait_ms = wait;
	metrics_throttle(rq->route, MT_THROTTLED, 1);
	if (gate_close(t->gate, now, wait, t->limit))
		log_gate(rq, t, true, wait, 0);
	else
		report_open(rq, t);
}

enum throttle_step throttle_on_answer(struct request *rq, long long now)
{
	struct throttle_rq *t = rq->thr;
	if (!t || !t->gate)
		return THROTTLE_PASS;
	gate_ratelimit(t->gate, request_upstream_header(rq, "x-ms-ratelimit-burst-remaining-xrm-requests"),
		       request_upstream_header(rq, "x-ms-ratelimit-time-remaining-xrm-requests"));
	if (!is_throttle_status(rq)) {
		answered(t, now);
		return THROTTLE_PASS;
	}
	if (body_pending(rq))
		return THROTTLE_HOLD;
	bool throttle = false;
	size_t n = 0;
	char *body = malloc(REFUSAL_PEEK_MAX);
	if (body)
		n = refusal_peek(rq, body, REFUSAL_PEEK_MAX);
	long long wait = asked_wait(rq, t, body, n, &throttle);
	free(body);
	if (!throttle) {
		answered(t, now); /* a 500 fault of another kind */
		return THROTTLE_PASS;
	}
	close_gate(rq, t, wait, now);
	if (t->retries >= (unsigned)rq->route->throttle.retries || !refusal_body_held(rq) || rq->w->draining)
		return THROTTLE_PASS; /* the client gets the upstream's answer */
	if (now + wait > t->deadline_ms) {
		relay_abort(rq);
		give_back(t, now);
		refuse(rq, t, wait, "it asked to wait longer than the request may (throttle_wait)");
		return THROTTLE_REFUSE;
	}
	t->retries++;
	gate_note(t->gate, 0, 0, 0, 1, 0);
	metrics_throttle(rq->route, MT_RETRIED, 1);
	refusal_reset(rq);
	give_back(t, now);
	return THROTTLE_RETRY;
}

void throttle_bridged(struct request *rq, const char *body, size_t n, long long now)
{
	struct throttle_rq *t = rq->thr;
	if (!t || !t->gate || !rq->resp.headers_ready)
		return;
	gate_ratelimit(t->gate, request_upstream_header(rq, "x-ms-ratelimit-burst-remaining-xrm-requests"),
		       request_upstream_header(rq, "x-ms-ratelimit-time-remaining-xrm-requests"));
	bool throttle = false;
	long long wait = is_throttle_status(rq) ? asked_wait(rq, t, body, n, &throttle) : 0;
	if (throttle)
		close_gate(rq, t, wait, now);
	else
		answered(t, now);
}

void throttle_request_done(struct request *rq)
{
	struct throttle_rq *t = rq->thr;
	if (!t)
		return;
	long long now = clock_now_ms();
	if (t->waiting) {
		list_unlink(rq->w, t);
		if (gate_cancel(t->gate, &t->ticket))
			t->slot = true; /* granted meanwhile: give it back below */
	}
	give_back(t, now);
	rq->thr = NULL;
	free(t);
}

void throttle_poll(struct worker *w, long long now, void (*go)(struct request *rq, long long now))
{
	struct throttle_rq *t = w->throttled, *next;
	for (; t; t = next) {
		next = t->next;
		if (request_client_left(t->rq, now)) { /* waited at its gate: never sent (this time) */
			list_unlink(w, t);
			if (gate_cancel(t->gate, &t->ticket))
				t->slot = true; /* granted meanwhile: throttle_request_done gives it back */
			request_abandon(t->rq);
			continue;
		}
		if (!atomic_load(&t->ticket.granted) && now >= t->check_ms && now < t->deadline_ms) {
			gate_service(t->gate, now); /* may grant this very ticket */
			report_open(t->rq, t);
			long long at = gate_reopen_at(t->gate);
			t->check_ms = at > now ? at : now + RECHECK_MS;
		}
		if (atomic_load(&t->ticket.granted)) {
			list_unlink(w, t);
			t->slot = true;
			go(t->rq, now);
		} else if (now >= t->deadline_ms) {
			list_unlink(w, t);
			if (gate_cancel(t->gate, &t->ticket)) {
				t->slot = true;
				go(t->rq, now);
				continue;
			}
			long long at = gate_reopen_at(t->gate);
			refuse(t->rq, t, at > now ? at - now : 0,
			       "the request waited as long as it may (throttle_wait)");
			request_resume(t->rq);
		}
	}
}

long long throttle_next_deadline(const struct worker *w)
{
	long long best = 0;
	for (const struct throttle_rq *t = w->throttled; t; t = t->next) {
		long long d = t->check_ms < t->deadline_ms ? t->check_ms : t->deadline_ms;
		long long probe = request_left_check_due(t->rq);
		d = probe < d ? probe : d;
		if (!best || d < best)
			best = d;
	}
	return best;
}

void throttle_log(const struct request *rq, struct log_line *l)
{
	const struct throttle_rq *t = rq->thr;
	if (!t || (!t->waiting && !t->waited_ms && !t->retries))
		return;
	log_int(l, "throttle_wait_ms", t->waited_ms + (t->waiting ? clock_now_ms() - t->wait_since_ms : 0));
	if (t->retries)
		log_int(l, "throttle_retries", t->retries);
}

void throttle_problem(const struct request *rq, struct problem *p)
{
	const struct throttle_rq *t = rq->thr;
	if (!t || !rq->local.code || strcmp(rq->local.code, "throttled_upstream") != 0)
		return;
	p->identity = t->identity;
	p->limit = t->limit;
	p->wait_ms = t->wait_ms;
}
