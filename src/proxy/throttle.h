/*
 * throttle.h - a request at its identity's gate (gate.h): admission before
 * it goes upstream, what a 429 (or a service protection fault, or a 503
 * with Retry-After) does to it and to the gate, and the wait in between.
 * Runs on the request's worker thread, like proxy.c; the only state it hangs
 * on a request is rq->thr, and on a worker its list of waiting requests.
 */
#ifndef S2S_THROTTLE_H
#define S2S_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>

struct request;
struct worker;
struct problem;
struct log_line;
struct throttle_rq;

enum throttle_step {
	THROTTLE_PASS = 0, /* not a throttle, or one the client gets unchanged */
	THROTTLE_HOLD,     /* a throttle's body is still arriving: wait for it */
	THROTTLE_RETRY,    /* rewound: start the request again (it waits at its gate) */
	THROTTLE_REFUSE,   /* the wait outlasts the request's budget: rq->local is the 503 */
};

/*
 * Before the request goes upstream (again). True: it may go (it holds a
 * slot at its gate, or has no gate). False: it waits at its gate (suspend;
 * throttle_poll starts it), or rq->local is set to the 503.
 */
bool throttle_admit(struct request *rq, long long now);

/* The upstream's final header block is in. */
enum throttle_step throttle_on_answer(struct request *rq, long long now);

/* A bridged exchange's answer is in whole (body[0..n), bridge.c): a service
 * protection fault closes the gate; the client gets the fault, converted. */
void throttle_bridged(struct request *rq, const char *body, size_t n, long long now);

/* The request ended (MHD's completion): leave the queue, free the slot. */
void throttle_request_done(struct request *rq);

/* Worker loop: start waiting requests that were granted a slot (go), answer
 * those whose wait is over, open gates whose time has come. */
void throttle_poll(struct worker *w, long long now, void (*go)(struct request *rq, long long now));

/* Earliest time throttle_poll has something to do (ms), 0 if none. */
long long throttle_next_deadline(const struct worker *w);

/* The request line's throttle_wait_ms and throttle_retries, when it waited
 * at its gate or was sent again (before throttle_request_done). */
void throttle_log(const struct request *rq, struct log_line *l);

/* The throttle's members of the problem+json answer (identity, limit, wait). */
void throttle_problem(const struct request *rq, struct problem *p);

#endif
