/*
 * config_int.h - internals shared by the files of the config module
 * (config.c: loading; config_keys.c: the key table and value parsers;
 * config_syntax.c: value syntax). Not for other modules.
 */
#ifndef S2S_CONFIG_INT_H
#define S2S_CONFIG_INT_H

#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

#define ARRAY_LEN(a)   (sizeof(a) / sizeof((a)[0]))
#define MAX_SECTIONS   (1 + CONFIG_MAX_CREDENTIALS + CONFIG_MAX_ROUTES + CONFIG_MAX_CALLERS)
#define MAX_SOURCES    (2 * CONFIG_MAX_ROUTES) /* token sources: the routes', then the callers' */
#define MAX_NAME       64
#define DEFAULT_SUFFIX "/.default"
#define MSG_MAX        320
#define KEY_ROWS_MAX   128 /* rows in config_key_rows[] at most */

enum sec_kind { SEC_PROXY = 0, SEC_CREDENTIAL, SEC_ROUTE, SEC_CALLER };

struct section {
	enum sec_kind kind;
	char *title;                /* "route:dataverse"; messages print it in brackets */
	const char *name;           /* the part after ':' ("" for proxy) */
	int line;                   /* of the header; 0 = not in the file */
	size_t index;               /* among the sections of its kind, file order */
	bool seen[KEY_ROWS_MAX];    /* key_rows[i] was set (even if its value was bad) */
	int key_line[KEY_ROWS_MAX]; /* where key_rows[i] was first set */
	bool used;                  /* credential: some route refers to it */
	void *obj;                  /* struct proxy_cfg, credential_cfg, route_sec or caller_sec */
};

/* A route while loading: the public part plus what is resolved later. */
struct route_sec {
	struct route_cfg r;
	char *credential;   /* name, resolved into r.credential */
	char *audience_url; /* AUD_URL only, verbatim */
	char *scope;        /* explicit v2 scope */
	bool audience_ok;   /* audience key parsed */
	char *callers;      /* callers = NAME, ...: verbatim, resolved into r.callers */
};

/* A caller while loading (config_caller.c). */
struct caller_sec {
	struct caller_cfg c;
	char *credential; /* credential = NAME: for every route */
	struct {
		char *route, *credential;
		int line;
	} per_route[CONFIG_MAX_ROUTES]; /* credential.ROUTE = NAME */
	size_t n_per_route;
	size_t source[CONFIG_MAX_ROUTES]; /* resolved: token source per route, SIZE_MAX = the route's */
	size_t cred[CONFIG_MAX_ROUTES];
};

struct load {
	const char *file;
	FILE *in, *errors;
	int lineno;
	int expect_key; /* line handed to inih as "key = value" */
	int handled;    /* last line the handler was called for */
	bool skip;      /* keys of a bad section header are ignored */
	bool inline_comment;
	bool oom;
	bool inline_secret;
	size_t n_errors;
	struct section *cur;
	struct proxy_cfg proxy;
	struct section *secs[MAX_SECTIONS]; /* secs[0] is [proxy], even if absent */
	size_t n_secs, n_creds, n_routes, n_callers;
	struct token_source_cfg ts[MAX_SOURCES];
	size_t n_ts;
};

/* What a value parser gets. */
struct pv {
	struct load *ld;
	struct section *sec;
	const struct key_row *row;
	void *field; /* sec->obj + row->off */
	int line;
	char msg[MSG_MAX];
};

/* Parse v into pv->field (or pv->sec->obj); 0, or -1 with pv->msg set. */
typedef int (*value_parser)(struct pv *pv, const char *v);

struct key_row {
	enum sec_kind kind;
	const char *key;
	value_parser parse;
	size_t off;
	bool required;
	bool repeat; /* may appear several times */
	const char *def;
	long long min, max;       /* numbers; durations in ms */
	const char *const *names; /* enum spellings, index = value */
};

/* A preset audience: its name in the file and its token resource. */
struct audience_def {
	const char *name;
	enum audience_kind kind;
	const char *resource; /* NULL: the upstream's origin */
};

/* Upstream host pattern (config_glob_match) -> audience, when a route does not say. */
struct audience_rule {
	const char *glob;
	enum audience_kind kind;
};

/* config_keys.c */
extern const struct key_row config_key_rows[];
extern const size_t config_n_key_rows;
extern const struct audience_def config_audiences[]; /* the last is "url" (AUD_URL) */
extern const size_t config_n_audiences;
extern const struct audience_rule config_audience_rules[];
extern const size_t config_n_audience_rules;

/* config.c, for config_caller.c */
/* config_load.c: errors naming file:line (counted; printed when ld->errors is set). */
void config_load_error(struct load *ld, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Out of memory, reported once per load. */
void config_oom(struct load *ld);
/* The key table row of key in sections of this kind, -1 if none. */
int config_find_row(enum sec_kind kind, const char *key);
/* Was key set in s? */
bool config_seen(const struct section *s, const char *key);
/* Free a token source's strings and zero it. NULL members are fine. */
void config_token_source_free(struct token_source_cfg *t);
struct section *config_find_section(struct load *ld, enum sec_kind kind, const char *name);
int config_seen_line(const struct section *s, const char *key);
void config_sec_error(struct load *ld, int line, const struct section *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Share or add the token source for (credential section cs, resource;
 * scope NULL = resource/.default); returns its index or SIZE_MAX (reported). */
size_t config_token_source(struct load *ld, const struct section *cs, const char *scope, const char *resource);

/* config_caller.c */
void config_caller_free(struct caller_sec *cs);
/* "credential.ROUTE = NAME" in a [caller:NAME] section (key is what follows "credential."). */
void config_caller_route_key(struct load *ld, struct section *s, const char *route, const char *value, int line);
/* After the routes: route callers lists, caller checks, the callers' token sources. */
void config_callers_validate(struct load *ld);
/* Into cfg (routes already moved): callers and their route views; -1 on OOM. */
int config_callers_build(struct load *ld, struct config *cfg);
void config_callers_free(struct config *cfg);

/* config.c: log a warning "FILE:LINE: message" under event. */
void config_warn_at(struct load *ld, const char *event, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
