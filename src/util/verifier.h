/*
 * verifier.h - the thread that runs crypt(3) for password checks (the
 * Basic callers of proxy/caller.c), so no worker thread has to: crypt is
 * slow on purpose (yescrypt takes tens of milliseconds), and a worker
 * running it stalls all its connections.
 *
 * One process-wide thread with a bounded queue (VERIFIER_QUEUE_MAX jobs;
 * a full queue refuses, it never blocks the submitter). A job holds its
 * own copies of the password and the hash, so it outlives any
 * configuration a reload drops; the password copy is wiped after use.
 * When a job is done the verifier calls its done function (on the
 * verifier thread: caller.c stores the result in its cache) and then the
 * notify function given to verifier_start (main.c: it raises each
 * worker's verify flag and writes its eventfd). It never calls into a
 * worker loop. In util/ (it depends on nothing above util) so that any
 * layer's password check can use it.
 */
#ifndef S2S_VERIFIER_H
#define S2S_VERIFIER_H

#include <stdbool.h>

#define VERIFIER_QUEUE_MAX 256
#define VERIFIER_KEY_LEN   32

/* Runs on the verifier thread: key and tag as submitted, ok = the password matches. */
typedef void (*verifier_done_fn)(const unsigned char key[VERIFIER_KEY_LEN], unsigned tag, bool ok);

/* Start the thread (once per process; again after verifier_stop). 0 or -1 (logged). */
int verifier_start(void (*notify)(void *arg), void *arg);
/* Stop and join the thread; queued jobs are dropped (wiped). NULL-safe: a no-op when not started. */
void verifier_stop(void);
/* Is the thread running? (Without it, caller.c verifies inline: unit tests and fuzzing only.) */
bool verifier_running(void);
/*
 * Queue crypt(pass, hash) == hash. 0 queued; -1 the queue is full, the
 * thread is not running, or out of memory. Copies pass and hash.
 */
int verifier_submit(const char *pass, const char *hash, const unsigned char key[VERIFIER_KEY_LEN], unsigned tag,
		    verifier_done_fn done);
/* crypt_r and a constant-time compare with the hash (the verifier's job; caller.c's inline fallback). */
bool verifier_crypt_ok(const char *pass, const char *hash);

#endif
