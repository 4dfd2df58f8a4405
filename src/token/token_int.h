/*
 * token_int.h - internals shared by the files of the token engine (token.c:
 * the engine thread and public API; token_log.c: its log lines;
 * token_carry.c: tokens carried over to a reloaded engine). Not for other
 * modules: they see token.h only.
 */
#ifndef S2S_TOKEN_INT_H
#define S2S_TOKEN_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "token/cred.h"
#include "util/log.h"
#include "token/token.h"

#define BODY_MAX            (64 * 1024) /* token response cap; more is a failure */
#define THROTTLE_DEFAULT_MS 5000LL      /* 429 / throttling code without Retry-After (MSAL) */
#define RETRY_AFTER_MAX_MS  3600000LL
#define MIN_REFETCH_MS      1000LL /* floor between a token and the next fetch: no tight loops */
#define POLL_MAX_MS         60000
#define BEARER_PREFIX       "Authorization: Bearer "

/* One token source. */
#define MI_GONE_RETRY_MS 70000LL /* IMDS 410 (upgrading) is retried this long */

struct tsrc {
	/* Immutable after token_engine_new(). */
	size_t idx;
	const struct token_source_cfg *cfg;
	const struct credential_cfg *cred;
	struct cred *cr; /* borrowed from the engine: one per credential */
	char host[256];  /* token endpoint host[:port], for logs */
	CURL *easy;      /* owned; configured once, reused for every request */

	/* Engine thread only. */
	bool in_flight;
	bool backing_off; /* next_due_ms is a retry after a failure */
	long long started_ms;
	long long next_due_ms;
	unsigned attempt;        /* consecutive transient failures */
	long long gone_since_ms; /* managed identity: first 410 of the current run of them */
	char *form;              /* owned, holds the secret: wiped after the transfer */
	size_t form_cap;
	struct curl_slist *headers; /* owned, may hold Basic: wiped after the transfer */
	char *body;                 /* owned, BODY_MAX bytes; may hold a token: wiped after use */
	size_t body_len;
	bool body_too_large;
	char errbuf[CURL_ERROR_SIZE];
	char req_id[40];    /* client-request-id sent */
	char ms_req_id[64]; /* x-ms-request-id received */

	/* Set by any thread, consumed by the engine. */
	atomic_bool refresh_wanted;

	/* Published: under mu. */
	pthread_mutex_t mu;
	char *hdr; /* owned "Authorization: Bearer <token>", NULL before the first token */
	size_t hdr_len;
	unsigned long gen;
	long long usable_until_ms;
	long long expires_at_ms;
	long long last_start_ms; /* rate limit of token_request_refresh */
	bool failed;             /* a failure happened since the last success */
	struct token_failure fail;
};

struct token_engine {
	const struct config *cfg; /* borrowed, outlives the engine */
	void (*notify)(void *);
	void *notify_arg;
	token_clock_fn clock;
	CURLM *multi;                  /* owned; NULL once stopped (token_engine_stop closes its connections) */
	pthread_mutex_t multi_mu;      /* a wake-up from another thread against that close */
	struct curl_slist *connect_to; /* owned, shared by every easy handle */
	struct tsrc *src;              /* owned, n entries */
	struct cred **creds;           /* owned, one per credential (NULL when no source uses it) */
	size_t n;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	atomic_ulong requests;
};

/* token_log.c: the token_request / token_acquired / token_failed lines. */
void token_log_source(struct log_line *l, const struct tsrc *s);
void token_log_acquired(const struct tsrc *s, const struct oauth_token *tok, const struct token_times *t, long long now,
			unsigned long gen);
void token_log_failed(const struct tsrc *s, const struct token_failure *f, long long retry_in_ms, bool serving);

#endif
