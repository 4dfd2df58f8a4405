/*
 * reload.c - SIGHUP configuration reload (reload.h).
 *
 * Ownership: generation 0's config and engine belong to main.c; every later
 * generation's config, engine and struct belong to this module and live
 * until reload_free (their engines are stopped as soon as no request uses
 * them: the admin listener may still read an old engine, so memory is kept).
 */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/admin.h"
#include "token/assertion.h"
#include "config/envconf.h"
#include "util/log.h"
#include "ops/metrics.h"

#define MAX_GENS 256 /* reloads remembered; more are refused (restart instead) */

struct gen_slot {
	struct worker_gen *g;
	struct config *cfg_owned; /* NULL for generation 0 */
	bool stopped;
};

struct reload {
	struct worker *workers;
	int n_workers;
	void (*notify)(void *);
	struct gen_slot gens[MAX_GENS];
	size_t n_gens; /* gens[n_gens - 1] is current */
};

static struct worker_gen *gen_new(const struct config *cfg, struct token_engine *te)
{
	struct worker_gen *g = calloc(1, sizeof *g);

	if (g != NULL) {
		g->cfg = cfg;
		g->tokens = te;
		atomic_init(&g->refs, 0);
	}
	return g;
}

static void install(struct reload *rl, struct worker_gen *g)
{
	for (int i = 0; i < rl->n_workers; i++)
		worker_set_gen(&rl->workers[i], g);
}

struct reload *reload_new(const struct config *cfg, struct token_engine *te, struct worker *workers, int n_workers,
			  void (*notify)(void *))
{
	struct reload *rl = calloc(1, sizeof *rl);

	if (rl == NULL || (rl->gens[0].g = gen_new(cfg, te)) == NULL) {
		free(rl);
		return NULL;
	}
	rl->workers = workers;
	rl->n_workers = n_workers;
	rl->notify = notify;
	rl->n_gens = 1;
	install(rl, rl->gens[0].g);
	return rl;
}

/* Log every line of the loader's errors. */
static void log_errors(const char *text)
{
	while (text != NULL && *text) {
		size_t n = strcspn(text, "\n");

		if (n > 0)
			log_msg(LOG_ERROR, "reload_failed", "%.*s", (int)n, text);
		text += n + (text[n] == '\n');
	}
}

static struct config *load(const char *path)
{
	char *errs = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&errs, &len);
	struct config *cfg;

	if (f == NULL) {
		log_msg(LOG_ERROR, "reload_failed", "cannot collect configuration errors");
		return NULL;
	}
	/* A configuration from the environment is read from it again. */
	cfg = strcmp(path, ENVCONF_NAME) == 0 ? envconf_load(f) : config_load(path, f);
	fclose(f);
	log_errors(errs);
	free(errs);
	return cfg;
}

/* A certificate of the new configuration that cannot be used rejects it. */
static void log_problem(void *arg, const char *line)
{
	(void)arg;
	log_msg(LOG_ERROR, "reload_failed", "%s", line);
}

static void warn_restart_only(const struct config *old, const struct config *cfg)
{
	const struct proxy_cfg *a = &old->proxy, *b = &cfg->proxy;

	if (a->listen_port != b->listen_port || strcmp(a->listen_host, b->listen_host) != 0 ||
	    a->workers != b->workers || (a->ca_file == NULL) != (b->ca_file == NULL) ||
	    (a->ca_file && strcmp(a->ca_file, b->ca_file) != 0))
		log_msg(LOG_WARN, "reload_partial",
			"listen, workers and ca_file changes take effect at the next restart only");
}

int reload_apply(struct reload *rl)
{
	struct worker_gen *cur = rl->gens[rl->n_gens - 1].g, *g = NULL;
	struct token_engine *te = NULL;
	struct config *cfg;
	size_t kept;

	if (rl->n_gens == MAX_GENS) {
		log_msg(LOG_ERROR, "reload_failed", "%d reloads since the start: restart the proxy", MAX_GENS - 1);
		return -1;
	}
	cfg = load(cur->cfg->path);
	if (cfg == NULL || assertion_check_all(cfg, (long long)time(NULL), log_problem, NULL) != 0)
		goto fail;
	te = token_engine_new(cfg, rl->notify, NULL);
	if (te == NULL || (g = gen_new(cfg, te)) == NULL)
		goto fail;
	kept = token_engine_adopt(te, cur->tokens);
	if (token_engine_start(te) != 0)
		goto fail;
	warn_restart_only(cur->cfg, cfg);
	rl->gens[rl->n_gens].g = g;
	rl->gens[rl->n_gens].cfg_owned = cfg;
	rl->n_gens++;
	install(rl, g);
	metrics_reconfigure(cfg); /* /metrics and /readyz follow the configuration serving now */
	admin_reconfigure(cfg, te);
	log_msg(LOG_INFO, "config_reloaded", "%s: %zu routes, %zu credentials, %zu of %zu tokens kept", cfg->path,
		cfg->n_routes, cfg->n_credentials, kept, cfg->n_token_sources);
	return 0;
fail:
	free(g);
	token_engine_free(te);
	config_free(cfg);
	log_msg(LOG_ERROR, "reload_failed", "configuration not reloaded: the previous one keeps serving");
	return -1;
}

void reload_retire(struct reload *rl)
{
	for (size_t i = 0; rl != NULL && i + 1 < rl->n_gens; i++) {
		struct gen_slot *s = &rl->gens[i];

		if (s->stopped || atomic_load(&s->g->refs) != 0)
			continue;
		token_engine_stop(s->g->tokens);
		s->stopped = true;
		log_msg(LOG_INFO, "config_retired", "generation %zu: no request uses it any more", i);
	}
}

void reload_free(struct reload *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < rl->n_gens; i++) {
		if (i > 0) {
			token_engine_free(rl->gens[i].g->tokens);
			config_free(rl->gens[i].cfg_owned);
		}
		free(rl->gens[i].g);
	}
	free(rl);
}
