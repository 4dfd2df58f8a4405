/*
 * diaglog.c - rate-limited diagnosis log lines.
 *
 * The rate-limit table is small and fixed: a failing route answers every
 * request with the same diagnosis, so a handful of (route, code) keys is
 * the working set. When the table is full the least recently logged slot
 * is reused (its held-back count is lost, which only makes the log say
 * less, never wrong).
 */
#include "diag/diaglog.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

#define SLOTS   64
#define KEY_MAX 160

struct slot {
	char key[KEY_MAX];
	long long last_ms;
	unsigned long held;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[SLOTS];

/*
 * Decide whether to log now. Returns true with *held = lines held back
 * since the last one, or false (the line is counted and dropped).
 */
static bool admit(long long now, const char *route, const char *code, unsigned long *held)
{
	char key[KEY_MAX];
	struct slot *s = NULL, *oldest = &slots[0];
	bool ok;

	snprintf(key, sizeof key, "%s\n%s", route ? route : "", code ? code : "");
	if (pthread_mutex_lock(&mu) != 0)
		return true; /* never lose a diagnosis to a lock error */
	for (size_t i = 0; i < SLOTS && !s; i++) {
		if (strcmp(slots[i].key, key) == 0)
			s = &slots[i];
		else if (slots[i].last_ms < oldest->last_ms)
			oldest = &slots[i];
	}
	if (!s) {
		s = oldest;
		snprintf(s->key, sizeof s->key, "%s", key);
		s->last_ms = 0;
		s->held = 0;
	}
	ok = s->last_ms == 0 || now - s->last_ms >= DIAGLOG_WINDOW_MS;
	if (ok) {
		*held = s->held;
		s->held = 0;
		s->last_ms = now;
	} else {
		s->held++;
	}
	pthread_mutex_unlock(&mu);
	return ok;
}

void diaglog_reset(void)
{
	if (pthread_mutex_lock(&mu) != 0)
		return;
	memset(slots, 0, sizeof slots);
	pthread_mutex_unlock(&mu);
}

static void head(struct log_line *l, const char *route, const char *request_id, const struct diagnosis *d,
		 unsigned long held)
{
	log_begin(l, LOG_WARN, "diagnosis");
	log_str(l, "diagnosis", d->code);
	log_str(l, "route", route);
	log_str(l, "request_id", request_id);
	log_str(l, "title", d->title);
	log_str(l, "remediation", d->remediation);
	if (held > 0)
		log_int(l, "repeated", (long long)held);
}

void diaglog_token(long long now_ms, const char *route, const char *request_id, const struct diagnosis *d,
		   const struct token_failure *f, const char *note)
{
	struct log_line l;
	unsigned long held = 0;
	char aadsts[24];

	if (!admit(now_ms, route, d->code, &held))
		return;
	head(&l, route, request_id, d, held);
	if (note && note[0])
		log_str(&l, "note", note);
	log_str(&l, "failure", token_failure_name(f->kind));
	if (f->http_status > 0)
		log_int(&l, "idp_status", f->http_status);
	if (f->err.n_codes > 0) {
		snprintf(aadsts, sizeof aadsts, "AADSTS%ld", f->err.codes[0]);
		log_str(&l, "aadsts", aadsts);
	}
	log_strn(&l, "error", f->err.error, strnlen(f->err.error, sizeof f->err.error));
	log_strn(&l, "trace_id", f->err.trace_id, strnlen(f->err.trace_id, sizeof f->err.trace_id));
	log_strn(&l, "correlation_id", f->err.correlation_id,
		 strnlen(f->err.correlation_id, sizeof f->err.correlation_id));
	log_strn(&l, "error_uri", f->err.error_uri, strnlen(f->err.error_uri, sizeof f->err.error_uri));
	if (f->detail[0])
		log_strn(&l, "detail", f->detail, strnlen(f->detail, sizeof f->detail));
	log_end(&l);
}

void diaglog_upstream(long long now_ms, const char *route, const char *request_id, const struct diagnosis *d,
		      const struct upstream_evidence *ev, const struct jwt_claims *claims, const char *fp)
{
	struct log_line l;
	unsigned long held = 0;

	if (!admit(now_ms, route, d->code, &held))
		return;
	head(&l, route, request_id, d, held);
	log_int(&l, "upstream_status", ev->status);
	if (ev->error_code[0])
		log_str(&l, "upstream_error", ev->error_code);
	if (ev->message[0])
		log_str(&l, "upstream_message", ev->message);
	if (ev->challenge[0])
		log_str(&l, "challenge", ev->challenge);
	if (ev->privilege[0])
		log_str(&l, "privilege", ev->privilege);
	if (ev->entity[0])
		log_str(&l, "entity", ev->entity);
	if (claims) {
		log_str(&l, "aud", claims->aud[0] ? claims->aud : NULL);
		log_str(&l, "tid", claims->tid[0] ? claims->tid : NULL);
		log_str(&l, "appid", claims->appid[0] ? claims->appid : NULL);
		log_str(&l, "roles", claims->roles[0] ? claims->roles : NULL);
		if (claims->exp)
			log_int(&l, "exp", claims->exp);
	}
	if (fp && fp[0])
		log_str(&l, "token_fingerprint", fp);
	log_end(&l);
}
