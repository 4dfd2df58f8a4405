/*
 * request.h - one proxied request, shared by the inbound side (proxy.c,
 * libmicrohttpd callbacks) and the upstream side (relay.c, libcurl
 * callbacks). Both run on the owning worker's thread only, so there are no
 * locks; lifetime is a plain reference count:
 *   - the MHD side holds one from the URI callback to NOTIFY_COMPLETED,
 *   - the curl side holds one while the easy handle is in the multi,
 *   - a queued streaming response holds one until MHD frees it.
 * Whoever drops the last reference frees (request_unref); nothing frees a
 * request from inside its own callback.
 */
#ifndef S2S_REQUEST_H
#define S2S_REQUEST_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "http/hdr.h"
#include "token/jwt.h"
#include "util/rbuf.h"
#include "proxy/route.h"
#include "token/token.h"

#define REQUEST_MAGIC      0x52455131u /* "REQ1" */
#define RESP_HEADERS_MAX   (64 * 1024) /* upstream response header block cap */
#define RESP_HEADERS_COUNT 256

/* Correlation ids Dynamics services log on their side, and the log field each goes to. */
#define REQUEST_N_CORR 3
#define REQUEST_CORR_HEADERS                                                                                           \
	{                                                                                                              \
		"x-ms-client-request-id", "x-ms-correlation-request-id", "request-id"                                  \
	}
#define REQUEST_CORR_FIELDS                                                                                            \
	{                                                                                                              \
		"client_request_id", "correlation_request_id", "ms_request_id"                                         \
	}

struct worker;
struct bridge;
struct worker_gen;
struct throttle_rq;

enum rq_state {
	RQ_NEW = 0,    /* URI seen, headers not yet examined */
	RQ_PARKED,     /* waiting for a first token */
	RQ_FORWARDING, /* upstream transfer running */
	RQ_RESPONDED,  /* a response is queued with MHD */
};

/* A local answer decided before (or instead of) the upstream's. */
struct local_answer {
	bool set;
	int status;
	const char *code;
	const char *title;
	char detail[384];
	long retry_after_s; /* 0 = no Retry-After header */
	bool close;         /* add Connection: close */
	bool has_failure;
	struct token_failure failure;
	char note[256]; /* diag_token_note: context-specific hint, "" if none */
};

/* What a diagnosis needs of a token that was sent: its claims and
 * fingerprint, never the token. Decoded once per token and worker, shared
 * by the worker's claims cache and every request that sent it; the count
 * is touched on that worker's thread only. */
struct tok_info {
	unsigned refs;
	struct jwt_claims claims;
	char fp[JWT_FINGERPRINT_LEN];
};

/* Drop one reference; frees at zero. NULL-safe. */
void tok_info_unref(struct tok_info *ti);

struct resp_header {
	uint32_t name; /* offsets into request.rh_buf */
	uint32_t value;
};

struct request {
	unsigned magic;
	int refs;
	struct worker *w;
	struct MHD_Connection *conn;
	enum rq_state state;
	char *target; /* raw request-target, owned */
	char method[16];
	bool is_head;
	char request_id[40];
	/* Dynamics correlation headers (REQUEST_CORR_HEADERS order): the client's
	 * value (cut for logs; forwarded untouched), or request_id when absent
	 * (corr_generated bit set: relay.c adds the header upstream). */
	char corr[REQUEST_N_CORR][80];
	unsigned corr_generated;
	char client_ip[64];
	struct sockaddr_storage client_sa;
	char host[256]; /* effective host (for X-Forwarded-Host and logs) */
	long long t_start_ms;
	long long t_parked_ms; /* time spent waiting for a token */
	long long park_deadline_ms;

	/* The configuration generation the request started with (SIGHUP may
	 * install a newer one meanwhile): cfg and tokens are used for its whole
	 * life; gen (NULL-safe) holds a reference on them. */
	const struct config *cfg;
	struct token_engine *tokens;
	struct worker_gen *gen;
	const struct route_cfg *route;
	struct route_match match;

	/* request body: client -> upstream */
	struct hdr_framing framing;
	char conn_tokens[512]; /* the client's Connection header value(s), joined */
	bool conn_tokens_overflow;
	bool bad_header_name;
	bool bad_header_value;
	size_t header_bytes; /* the request's header block, as received */
	unsigned n_headers;  /* its header fields */
	bool client_sent_accept;
	bool client_sent_content_type;
	bool has_body;
	int64_t body_len; /* -1 = chunked */
	struct rbuf up;
	bool up_eof;         /* the client's body is complete */
	bool start_deferred; /* the upstream request waits for the whole (small) body */
	uint64_t up_sent;    /* bytes handed to curl */
	uint64_t bytes_in;

	/* upstream transfer */
	CURL *easy;
	bool in_multi;
	struct curl_slist *up_headers;
	unsigned pause_bits; /* CURLPAUSE_SEND / CURLPAUSE_RECV currently set */
	bool upstream_done;
	unsigned up_attempts; /* times curl was about to send this request (its pre-request callback) */
	bool resend_refused;  /* curl wanted to send a non-idempotent request a second time */
	CURLcode upstream_result;
	char curl_err[CURL_ERROR_SIZE];

	/* response: upstream -> client */
	long up_status;
	bool headers_ready;
	bool in_body; /* final headers seen; later header lines are trailers */
	char *rh_buf; /* grows up to RESP_HEADERS_MAX */
	size_t rh_len;
	size_t rh_cap;
	struct resp_header *rh; /* index of rh_buf, grows up to RESP_HEADERS_COUNT; owned */
	unsigned rh_slots;
	unsigned n_rh;
	bool rh_overflow;
	int64_t resp_length; /* upstream Content-Length, -1 unknown */
	struct rbuf down;
	uint64_t bytes_out;
	int final_status; /* what the client was answered */

	struct local_answer local;

	/* diagnosis (diag.c): the token sent upstream, as claims and fingerprint
	 * only (never the token), and the catalogue code of an upstream refusal */
	struct tok_info *tok; /* a reference, NULL when none was recorded */
	unsigned long tok_gen;
	const char *diagnosis; /* static string, NULL when none */
	char *replay_body;     /* owned copy of the request body for a replay, NULL when none is kept */
	size_t replay_len;     /* bytes kept */
	size_t replay_pos;     /* bytes handed to curl during the replay */
	bool replay_skip;      /* body not kept: method not idempotent, or larger than replay_max_body */
	bool replay_feed;      /* the replayed transfer reads replay_body, not the up ring */
	bool replayed;         /* sent again once after a 401 with a fresh token */
	const char *diag_title, *diag_remediation; /* with diagnosis, static strings */

	/* The WS-Trust bridge's exchange (bridge.c): a buffered exchange; NULL =
	 * streamed. bridge.c sets both; request_unref frees it through bx_free,
	 * so this module needs nothing of the bridge's. */
	struct bridge *bx;
	void (*bx_free)(struct bridge *br);

	/* Its place at its identity's gate (throttle.c), NULL until admitted. */
	struct throttle_rq *thr;

	/* MHD side */
	bool mhd_suspended;
	bool client_gone;

	/* worker lists */
	struct request *park_prev, *park_next;
	struct request *all_prev, *all_next;
	bool parked_linked;
};

struct request *request_new(struct worker *w, const char *target);
void request_ref(struct request *rq);
/* Drop one reference; frees at zero. */
void request_unref(struct request *rq);

/* Decide the local answer (status, catalogue code, title, detail cut to
 * fit; NULL detail = none). code and title must be static strings. */
void request_set_local(struct request *rq, int status, const char *code, const char *title, const char *detail);

/* Resume the MHD connection if (and only if) it is suspended. */
void request_resume(struct request *rq);
/* Suspend the MHD connection (from an MHD callback only). */
void request_suspend(struct request *rq);

#endif
