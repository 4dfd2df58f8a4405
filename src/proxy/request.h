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
#include <sys/queue.h>

#include "http/hdr.h"
#include "token/jwt.h"
#include "util/rbuf.h"
#include "proxy/caller.h"
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
struct request;
struct worker_gen;
struct throttle_rq;
struct rewrite;

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

/* Client side: the inbound request as libmicrohttpd delivers it. Written by
 * proxy.c (header examination, the body callback) and request.c (suspend
 * state); the bridge (bridge.c) sets has_body/body_len/bytes_in for the
 * body it builds itself. Read by relay.c (forwarded headers, the up ring)
 * and refusal.c (whether the body can be replayed). */
struct rq_client {
	struct hdr_framing framing;
	char conn_tokens[512]; /* the client's Connection header value(s), joined */
	bool conn_tokens_overflow;
	bool bad_header_name;
	bool bad_header_value;
	size_t header_bytes; /* the request's header block, as received */
	unsigned n_headers;  /* its header fields */
	bool has_body;
	int64_t body_len;    /* -1 = chunked */
	struct rbuf up;      /* request body: client -> upstream */
	bool up_eof;         /* the client's body is complete */
	bool start_deferred; /* the upstream request waits for the whole (small) body */
	uint64_t bytes_in;
	bool suspended; /* MHD connection suspended (request.c only) */
	bool gone;      /* MHD reported the connection closed */
	/* The client left while the request waited (a gate, a token, a
	 * password check) and nothing went upstream: the access handler
	 * closes the connection (request_client_left). */
	bool abandoned;
	long long left_check_ms; /* when the client socket is probed next */
};

/* Upstream side: the libcurl transfer. Written by relay.c (curl callbacks,
 * start and finish) and refusal.c (reset before a replay); the bridge
 * (bridge.c) advances body_sent for its own body. Read by proxy.c,
 * answer.c and bridge.c to decide and build the answer. */
struct rq_upstream {
	CURL *easy;
	bool in_multi;
	struct curl_slist *headers;
	unsigned pause_bits; /* CURLPAUSE_SEND / CURLPAUSE_RECV currently set */
	uint64_t body_sent;  /* request body bytes handed to curl */
	bool done;
	unsigned attempts;   /* times curl was about to send this request (its pre-request callback) */
	bool resend_refused; /* curl wanted to send a non-idempotent request a second time */
	CURLcode result;
	char curl_err[CURL_ERROR_SIZE];
};

/* Response: upstream -> client. Written by relay.c (header and body
 * callbacks), refusal.c (reset before a replay) and answer.c (the answer
 * queued: bytes_out, final_status); bridge.c sets bytes_out and
 * final_status for the answers it builds. Read by answer.c to build the MHD response and by proxy.c to
 * decide it and log the request. */
struct rq_response {
	long status; /* the upstream's status */
	bool headers_ready;
	bool in_body; /* final headers seen; later header lines are trailers */
	char *rh_buf; /* grows up to RESP_HEADERS_MAX */
	size_t rh_len;
	size_t rh_cap;
	struct resp_header *rh; /* index of rh_buf, grows up to RESP_HEADERS_COUNT; owned */
	unsigned rh_slots;
	unsigned n_rh;
	bool rh_overflow;
	int64_t length; /* upstream Content-Length, -1 unknown */
	struct rbuf down;
	uint64_t bytes_out;
	int final_status; /* what the client was answered */
};

/* Replay once after a 401 with a fresh token. Written by refusal.c (keeps
 * the body, decides and starts the replay); relay.c advances pos while the
 * replayed transfer reads body. Freed by request.c. */
struct rq_replay {
	char *body; /* owned copy of the request body, NULL when none is kept */
	size_t len; /* bytes kept */
	size_t cap; /* bytes allocated (geometric growth up to replay_max_body) */
	size_t pos; /* bytes handed to curl during the replay */
	bool skip;  /* body not kept: method not idempotent, or larger than replay_max_body */
	bool feed;  /* the replayed transfer reads body, not the up ring */
	bool done;  /* sent again once after a 401 with a fresh token */
};

/* Diagnosis (diag.c's catalogue): the token sent upstream, as claims and
 * fingerprint only (never the token), and the catalogue entry of an
 * upstream refusal. tok and tok_gen are written by proxy.c when the token
 * is injected (refusal.c after a replay); code, title and remediation by
 * refusal.c. Read by proxy.c (the log line) and answer.c (the answer's
 * S2S-Proxy-Diagnosis header and problem+json). */
struct rq_diag {
	struct tok_info *tok; /* a reference, NULL when none was recorded */
	unsigned long tok_gen;
	const char *code;                /* static string, NULL when none */
	const char *title, *remediation; /* with code, static strings */
};

/* What the transfer (relay.c) and the request's end (request.c) ask of a
 * buffered exchange; bridge.c provides it with rq->bx. */
struct bridge_ops {
	long (*upstream_url)(const struct request *rq, char *out, size_t cap); /* Organization.svc/web?.. */
	bool (*forward_header)(const char *name);                              /* client header goes upstream? */
	const char *const *(*header_lines)(const struct request *rq);          /* extra lines, NULL-terminated */
	size_t (*on_read)(struct request *rq, char *buf, size_t max);          /* curl's read callback */
	int (*on_seek)(struct request *rq);                                    /* curl's seek to 0 */
	size_t (*on_write)(struct request *rq, const char *data, size_t n);    /* curl's write callback */
	void (*free)(struct bridge *br);                                       /* NULL-safe */
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

	struct rq_client cl;
	struct rq_upstream us;
	struct rq_response resp;
	/* The local answer (request_set_local: proxy.c, relay.c, bridge.c). */
	struct local_answer local;
	struct rq_replay replay;
	struct rq_diag diag;
	/* Who sent it (proxy.c recognises, relay.c impersonates, the log line and metrics report). */
	struct rq_caller caller;

	/* The WS-Trust bridge's exchange (bridge.c): a buffered exchange; NULL =
	 * streamed. bridge.c sets both; relay.c drives the transfer and
	 * request_unref frees the exchange through bx_ops, so neither includes
	 * the bridge (it sits above them: internals.md, module map). */
	struct bridge *bx;
	const struct bridge_ops *bx_ops;

	/* Its place at its identity's gate (throttle.c), NULL until admitted. */
	struct throttle_rq *thr;
	/* Transparent routes (rewrite.c): NULL = the answer passes unrewritten.
	 * Owned: one heap block, freed with free(). */
	struct rewrite *rw;

	/* The worker's lists (proxy.c only): parked while waiting for a token,
	 * and every live request. */
	LIST_ENTRY(request) park_link;
	LIST_ENTRY(request) all_link;
	bool parked_linked;
};

struct request *request_new(struct worker *w, const char *target);
void request_ref(struct request *rq);
/* Drop one reference; frees at zero. */
void request_unref(struct request *rq);

/* Decide the local answer (status, catalogue code, title, detail cut to
 * fit; NULL detail = none). code and title must be static strings. */
void request_set_local(struct request *rq, int status, const char *code, const char *title, const char *detail);

/* Value of the upstream response header `name` (first of that name, any
 * case), or NULL. Points into rq->resp.rh_buf. */
const char *request_upstream_header(const struct request *rq, const char *name);

/* Has the client left while rq waited, suspended, before anything went
 * upstream? libmicrohttpd does not watch a suspended connection, so its
 * socket is probed, at most every REQUEST_LEFT_CHECK_MS. A reset means
 * gone. An end of stream cannot tell a close from a half-close (a client
 * that shut its sending side and still reads its answers), so it counts
 * for a request that is not idempotent only: a POST its client has given
 * up on (and may send again) must not run later; a read is still sent and
 * answered. Bytes waiting (a pipelined request) mean still there. Over
 * inbound TLS only a reset shows. */
#define REQUEST_LEFT_CHECK_MS 250
bool request_client_left(struct request *rq, long long now_ms);
/* When request_client_left next probes rq (for the loop's sleep). */
long long request_left_check_due(const struct request *rq);
/* rq's client left while it waited: mark it, resume it, and the access
 * handler closes the connection without an answer (nothing went upstream). */
void request_abandon(struct request *rq);

/* Resume the MHD connection if (and only if) it is suspended. */
void request_resume(struct request *rq);
/* Suspend the MHD connection (from an MHD callback only). */
void request_suspend(struct request *rq);

#endif
