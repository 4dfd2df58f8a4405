/*
 * verifier.c - the crypt(3) thread (see verifier.h).
 *
 * The queue is a singly linked FIFO under one mutex; the thread sleeps on
 * a condition variable while it is empty. The mutex is never held across
 * crypt or the callbacks.
 */
#include "util/verifier.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/wipe.h"

struct job {
	struct job *next;
	char *pass; /* owned, wiped when freed */
	char *hash; /* owned */
	unsigned char key[VERIFIER_KEY_LEN];
	unsigned tag;
	verifier_done_fn done;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_t thread;
static bool running, stopping;
static struct job *head, **tail = &head;
static unsigned queued;
static void (*notify_fn)(void *);
static void *notify_arg;

static void job_free(struct job *j)
{
	if (!j)
		return;
	wipe_free_str(j->pass);
	free(j->hash);
	explicit_bzero(j->key, sizeof j->key);
	free(j);
}

bool verifier_crypt_ok(const char *pass, const char *hash)
{
	struct crypt_data *cd = calloc(1, sizeof *cd);
	bool ok = false;
	if (!cd)
		return false;
	const char *got = crypt_r(pass, hash, cd);
	size_t hl = strlen(hash);
	ok = got && got[0] != '*' && strlen(got) == hl && CRYPTO_memcmp(got, hash, hl) == 0;
	wipe_free(cd, sizeof *cd);
	return ok;
}

/* Next job, or NULL when stopping. */
static struct job *take(void)
{
	struct job *j = NULL;
	pthread_mutex_lock(&lock);
	while (!head && !stopping)
		pthread_cond_wait(&cond, &lock);
	if (!stopping) {
		j = head;
		head = j->next;
		if (!head)
			tail = &head;
		queued--;
	}
	pthread_mutex_unlock(&lock);
	return j;
}

static void *run(void *arg)
{
	struct job *j;
	(void)arg;
	while ((j = take()) != NULL) {
		bool ok = verifier_crypt_ok(j->pass, j->hash);
		explicit_bzero(j->pass, strlen(j->pass)); /* done with it before anything else runs */
		j->done(j->key, j->tag, ok);
		if (notify_fn)
			notify_fn(notify_arg);
		job_free(j);
	}
	return NULL;
}

int verifier_start(void (*notify)(void *arg), void *arg)
{
	int rc = -1;
	pthread_mutex_lock(&lock);
	if (running) {
		log_msg(LOG_ERROR, "startup_failed", "the password verifier is already running");
		goto out;
	}
	notify_fn = notify;
	notify_arg = arg;
	stopping = false;
	if (pthread_create(&thread, NULL, run, NULL) != 0) {
		log_msg(LOG_ERROR, "startup_failed", "cannot start the password verifier thread");
		goto out;
	}
	running = true;
	rc = 0;
out:
	pthread_mutex_unlock(&lock);
	return rc;
}

void verifier_stop(void)
{
	struct job *j;
	pthread_mutex_lock(&lock);
	if (!running) {
		pthread_mutex_unlock(&lock);
		return;
	}
	stopping = true;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL); /* a crypt under way finishes first */
	pthread_mutex_lock(&lock);
	while ((j = head) != NULL) {
		head = j->next;
		job_free(j);
	}
	tail = &head;
	queued = 0;
	running = false;
	notify_fn = NULL;
	pthread_mutex_unlock(&lock);
}

bool verifier_running(void)
{
	pthread_mutex_lock(&lock);
	bool r = running && !stopping;
	pthread_mutex_unlock(&lock);
	return r;
}

int verifier_submit(const char *pass, const char *hash, const unsigned char key[VERIFIER_KEY_LEN], unsigned tag,
		    verifier_done_fn done)
{
	int rc = -1;
	struct job *j = calloc(1, sizeof *j);
	if (!j || !(j->pass = strdup(pass)) || !(j->hash = strdup(hash)))
		goto out;
	memcpy(j->key, key, VERIFIER_KEY_LEN);
	j->tag = tag;
	j->done = done;
	pthread_mutex_lock(&lock);
	if (running && !stopping && queued < VERIFIER_QUEUE_MAX) {
		*tail = j;
		tail = &j->next;
		queued++;
		j = NULL; /* the queue's now */
		rc = 0;
		pthread_cond_signal(&cond);
	}
	pthread_mutex_unlock(&lock);
out:
	job_free(j);
	return rc;
}
