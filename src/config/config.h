/*
 * config.h - the proxy's configuration: parsed once from an INI file into an
 * immutable struct. Runtime code never sees INI strings; everything here is
 * validated and normalised (URLs split, audiences resolved, token sources
 * de-duplicated) before the proxy starts.
 */
#ifndef S2S_CONFIG_H
#define S2S_CONFIG_H

/* The largest soap_max_response: the bridge's XML parser takes no larger
 * document (wstrust/soap.h SOAP_MAX_INPUT; bridge.c checks the two agree). */
#define CONFIG_SOAP_RESPONSE_MAX (64u << 20)

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/cidr.h"
#include "util/log.h"

#define CONFIG_MAX_ROUTES      256
#define CONFIG_MAX_CREDENTIALS 64
#define CONFIG_MAX_CONNECT_TO  32
#define CONFIG_MAX_URL_BYTES   8192 /* the cap of max_url_bytes (route.h ROUTE_MAX_TARGET) */
#define CONFIG_MAX_TLS_CERTS   16
#define CONFIG_MAX_CALLERS     64

enum token_version { TOKEN_V2 = 0, TOKEN_V1 };
enum auth_method { AUTH_POST = 0, AUTH_BASIC };
enum secret_source { SECRET_NONE = 0, SECRET_FILE, SECRET_ENV, SECRET_INLINE };
/* How a credential proves itself to Entra (exactly one per credential). */
enum cred_kind {
	CRED_SECRET = 0,       /* client_secret_* */
	CRED_CERTIFICATE,      /* certificate_file + private_key_file, or pfx_file: signed client assertion */
	CRED_FEDERATED,        /* federated_token_file: its JWT is the client assertion */
	CRED_MANAGED_IDENTITY, /* managed_identity: Azure IMDS or App Service, no Entra request of ours */
};
enum assertion_alg { ASSERTION_PS256 = 0, ASSERTION_RS256 };
enum audience_kind {
	AUD_DATAVERSE = 0,
	AUD_BC,
	AUD_FO,
	AUD_SECURITYSERVICE,
	AUD_URL, /* an absolute URL given in the config */
};

/* A parsed absolute http(s) URL. All strings owned by the struct. */
struct url {
	char *scheme;  /* "https" (or "http" for loopback hosts only) */
	char *host;    /* lowercase; IPv6 without brackets */
	unsigned port; /* explicit or the scheme's default */
	char *origin;  /* scheme://host[:port], lowercase, port only if not default */
	char *path;    /* base path without trailing slash, "" when none */
};

struct credential_cfg {
	char *name;
	char *tenant;
	char *client_id;
	enum secret_source secret_source;
	char *client_secret_file; /* SECRET_FILE: re-read at every token request */
	char *client_secret_env;  /* SECRET_ENV: name of the variable */
	char *client_secret;      /* SECRET_INLINE or resolved from env at load; never logged */
	char *authority;          /* https://login.microsoftonline.com, no trailing slash */
	enum cred_kind kind;
	char *certificate_file;          /* PEM: leaf first, then the chain */
	char *private_key_file;          /* PEM; NULL = the key is in certificate_file */
	char *private_key_password_file; /* passphrase of the key or of pfx_file */
	char *pfx_file;                  /* PKCS#12 instead of the two PEM files */
	enum assertion_alg assertion_alg;
	bool send_x5c;
	char *federated_token_file;      /* re-read at every token request */
	char *managed_identity;          /* "system" or the client id of a user-assigned identity */
	char *managed_identity_endpoint; /* token URL: override, IDENTITY_ENDPOINT or IMDS (http allowed) */
	bool mi_app_service;             /* IDENTITY_ENDPOINT + IDENTITY_HEADER: App Service / Functions */
	enum token_version token_version;
	enum auth_method auth_method;
	long long secret_expires; /* client_secret_expires as unix seconds, 0 = unknown (metrics only) */
	int line;                 /* where the section starts, for messages */
};

/*
 * One token source: what the token engine fetches and caches. Several routes
 * share one source when (authority, tenant, client_id, resource or scope)
 * are equal.
 */
struct token_source_cfg {
	size_t credential;    /* index into config.credentials */
	char *resource;       /* audience resource, e.g. https://org.crm4.dynamics.com */
	char *scope;          /* v2 scope, e.g. <resource>/.default (NULL for v1) */
	char *token_endpoint; /* full URL: authority/tenant/oauth2[/v2.0]/token */
};

/* Service protection (gate.c, throttle.c): per route, [proxy] gives the defaults. */
struct throttle_cfg {
	long queue;          /* throttle_queue: requests waiting at one gate at most */
	long wait_ms;        /* throttle_wait: how long a request may wait in all */
	long max_wait_ms;    /* throttle_max_wait: cap of an upstream's Retry-After */
	long retries;        /* throttle_retries: resends of a request answered 429 */
	long max_concurrent; /* in flight per identity; 0 = off; -1 (auto) = 52 on Dataverse routes, else off */
};

struct route_cfg {
	char *name;
	char *match_host; /* lowercase, no port; NULL = any host */
	char *match_path; /* path prefix beginning with '/'; "/" = all */
	bool strip_prefix;
	struct url upstream;
	size_t credential; /* index into config.credentials */
	enum audience_kind audience_kind;
	size_t token_source; /* index into config.token_sources */
	long connect_timeout_ms;
	long idle_timeout_ms;          /* upstream silent this long -> 504 / cut */
	long total_timeout_ms;         /* 0 = no cap on the whole exchange */
	struct cidr_list allow_from;   /* empty = no route-level restriction */
	char *inbound_key;             /* route-level key (from inbound_key_file), NULL = the global one */
	uint64_t max_body_bytes;       /* 0 = the [proxy] value */
	bool access_log;               /* write the per-request "request" log line */
	bool soap_bridge;              /* SOAP 1.2 Organization.svc -> 1.1 Organization.svc/web (bridge.c) */
	int translate_upstream_errors; /* 0 = off: upstream 400/401/403 bodies pass unchanged; 1 = problem+json */
	char *probe_path;              /* `check` probe path on the upstream, NULL = the product's default */
	struct throttle_cfg throttle;  /* the route's, or [proxy]'s when the route does not set a key */
	int rewrite_urls;              /* 0 = auto: upstream URLs in answers become the client's (rewrite.c); 1 = off */
	char *public_url;              /* scheme://host[:port][/path] clients use, NULL = derived per request */
	size_t *callers;               /* callers = NAME, ...: indices into config.callers (owned) */
	size_t n_callers;              /* 0 = the route is open to every client, as without callers */
	int line;
};

/*
 * [caller:NAME]: how one client of the proxy is recognised, and what it
 * uses instead of the route's defaults. Every recognition key set must
 * match (caller.c). Secrets (inbound_key, the hash) are never logged.
 */
struct caller_cfg {
	char *name;
	char *inbound_key;         /* from inbound_key_file, sent in [proxy] inbound_key_header */
	char *basic_user;          /* Authorization: Basic user name (compared exactly) */
	char *basic_password_hash; /* crypt(3) hash of the password (or BC web service access key) */
	char *tls_client_subject;  /* the client certificate's subject DN, as GnuTLS writes it */
	struct cidr_list allow_from;
	char *impersonate; /* Entra object id sent as CallerObjectId on Dataverse routes, NULL = none */
	/* routes[i]: config.routes[i] as this caller uses it; a shallow copy
	 * whose credential and token_source are the caller's when it names a
	 * credential for that route. Strings are the route's (not owned). */
	struct route_cfg *routes;
	int line;
};

/* curl-style "HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT" override. */
struct connect_to_cfg {
	char *entry; /* kept verbatim for CURLOPT_CONNECT_TO */
};

struct proxy_cfg {
	char *listen_host; /* numeric address to bind; default 127.0.0.1 */
	unsigned listen_port;
	char *ca_file; /* extra trust anchors, NULL = system store only */
	enum log_level log_level;
	enum log_format log_format;
	int workers;                          /* 0 = number of CPUs (max 16) */
	int max_connections;                  /* inbound, across all workers */
	long client_timeout_s;                /* idle/slow inbound connections are closed */
	long token_wait_ms;                   /* how long a request may wait for a first token */
	long token_timeout_ms;                /* one token request, end to end */
	long token_retry_max_ms;              /* cap of the retry backoff for transient failures */
	long token_refresh_min_ms;            /* an upstream 401 forces a new token at most this often */
	long shutdown_timeout_s;              /* in-flight requests get this long after SIGTERM */
	size_t buffer_bytes;                  /* per direction, per request */
	size_t replay_max_body;               /* bodies kept to be replayed after a 401; 0 = never */
	struct cidr_list allow_from;          /* clients allowed; empty = anyone who reaches the listener */
	char *inbound_key;                    /* from inbound_key_file: callers must present it; never logged */
	char *inbound_key_header;             /* where callers send it (default S2S-Proxy-Key) */
	size_t max_header_bytes;              /* request header block; over it: 431 */
	long max_url_bytes;                   /* request-target; over it: 414 */
	uint64_t max_body_bytes;              /* request body, 0 = no cap; over it: 413 (routes may lower it) */
	long upstream_max_connections;        /* per upstream host and worker, 0 = no cap (requests queue) */
	char *tls_cert[CONFIG_MAX_TLS_CERTS]; /* inbound TLS: PEM chains, chosen by SNI, the first by default */
	size_t n_tls_cert;
	char *tls_key[CONFIG_MAX_TLS_CERTS]; /* tls_key[i] belongs to tls_cert[i] */
	size_t n_tls_key;
	char *tls_client_ca; /* clients must present a certificate issued by this CA */
	char *admin_host;    /* admin listener (health, metrics); NULL = off */
	unsigned admin_port;
	struct connect_to_cfg connect_to[CONFIG_MAX_CONNECT_TO];
	size_t n_connect_to;
	bool sts_facade;                  /* answer WS-Trust sign-in paths locally (sts.c) */
	char *legacy_identities_file;     /* user:crypt-hash:credential lines for the facade */
	size_t soap_max_response;         /* bridged SOAP answers are collected up to this (CONFIG_SOAP_RESPONSE_MAX) */
	struct throttle_cfg throttle;     /* defaults of the routes' */
	struct cidr_list trusted_proxies; /* front ends whose X-Forwarded-Proto/-Host name the public URL */
	char *basic_realm;                /* realm of the Basic challenge a caller route answers with */
	char *inventory_file;             /* usage inventory state (ops/inventory.c), NULL = none */
};

struct config {
	char *path;
	struct proxy_cfg proxy;
	struct credential_cfg *credentials;
	size_t n_credentials;
	struct route_cfg *routes;
	size_t n_routes;
	struct token_source_cfg *token_sources;
	size_t n_token_sources;
	struct caller_cfg *callers;
	size_t n_callers;
};

/*
 * Parse and validate `path`. On success returns a config the caller owns
 * (free with config_free) and writes nothing to `errors`. On failure returns
 * NULL after writing every problem found to `errors`, one per line, as
 * "FILE:LINE: message" (line 0 for problems not tied to a line), for a key
 * "t.ini:7: [route:x] upstream: must be an https:// URL", for a section
 * "t.ini:5: [route:x] duplicate section (first on line 2)"; a missing
 * required key is reported on its section header's line. Warnings
 * (such as an inline client_secret) go to the log, not to `errors`.
 * Reads the AZURE_* environment variables for the credential "default".
 */
struct config *config_load(const char *path, FILE *errors);

/*
 * Same as config_load, reading from an open stream (not closed here); `name`
 * is the FILE part of messages and becomes config.path. For tests and the
 * fuzzer (fmemopen).
 */
struct config *config_load_stream(FILE *in, const char *name, FILE *errors);

/* NULL-safe. Wipes secrets before freeing. */
void config_free(struct config *cfg);

/* Human names for enums, for logs and problem bodies. */
const char *config_audience_name(enum audience_kind kind);

#endif
