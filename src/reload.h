/*
 * reload.h - SIGHUP: load the configuration file again and, when it is
 * valid, serve new requests from it while requests in flight finish on the
 * configuration they started with (worker.h: struct worker_gen).
 *
 * Main thread only. What a reload changes: routes, credentials (secrets,
 * certificates, federated token files, managed identities) and token
 * sources; tokens of unchanged sources are carried over. [proxy] settings
 * bound at start (listen, workers, TLS, admin) need a restart: a reload
 * that changes them says so in the log.
 */
#ifndef S2S_RELOAD_H
#define S2S_RELOAD_H

#include "config/config.h"
#include "token/token.h"
#include "proxy/worker.h"

struct reload;

/* Generation 0 is (cfg, te), owned by the caller; install it on the
 * workers (before they start). NULL on failure. */
struct reload *reload_new(const struct config *cfg, struct token_engine *te, struct worker *workers, int n_workers,
			  void (*notify)(void *));

/* SIGHUP: 0 when the new configuration serves, -1 when it was rejected
 * (its errors are logged and the current one keeps serving). */
int reload_apply(struct reload *rl);

/* Stop the token engines of generations no request uses any more. */
void reload_retire(struct reload *rl);

/* After the workers are joined: free every generation but the first. NULL-safe. */
void reload_free(struct reload *rl);

#endif
