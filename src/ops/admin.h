/*
 * admin.h - the admin listener: /healthz, /readyz and /metrics on their own
 * address (admin_listen in [proxy]), so probe paths never collide with
 * proxied paths. A separate libmicrohttpd daemon with its own polling
 * thread: the traffic is tiny and must not share the workers' loops.
 */
#ifndef S2S_ADMIN_H
#define S2S_ADMIN_H

#include "config/config.h"
#include "token/token.h"

/* Seconds before a token stops being usable within which /readyz says "not ready". */
#define ADMIN_READY_MARGIN_MS 30000LL

/*
 * Start the listener when cfg->proxy.admin_host is set (else do nothing)
 * and log an "admin_listening" event with the bound port. cfg and te must
 * outlive admin_stop(). Call after signals are blocked. 0 or -1 (logged).
 */
int admin_start(const struct config *cfg, struct token_engine *te);
/* After a reload: answer from this configuration and token engine (both
 * must stay allocated until admin_stop). Any thread. */
void admin_reconfigure(const struct config *cfg, struct token_engine *te);
/* From now on /readyz answers 503 "draining" (shutdown has begun). Any thread. */
void admin_set_draining(void);
/* /readyz lists closed gates through this (proxy/gatereport.c; arr is a
 * cJSON array). Set once before admin_start. */
void admin_set_gates(void (*report)(void *arr, long long now_ms));
/* Stop the listener. NULL-safe, idempotent. */
void admin_stop(void);

#endif
