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
#define MAX_SECTIONS   (1 + CONFIG_MAX_CREDENTIALS + CONFIG_MAX_ROUTES)
#define MAX_NAME       64
#define DEFAULT_SUFFIX "/.default"
#define MSG_MAX        320
#define KEY_ROWS_MAX   128 /* rows in config_key_rows[] at most */

enum sec_kind { SEC_PROXY = 0, SEC_CREDENTIAL, SEC_ROUTE };

struct section {
	enum sec_kind kind;
	char *title;                /* "route:dataverse"; messages print it in brackets */
	const char *name;           /* the part after ':' ("" for proxy) */
	int line;                   /* of the header; 0 = not in the file */
	size_t index;               /* among the sections of its kind, file order */
	bool seen[KEY_ROWS_MAX];    /* key_rows[i] was set (even if its value was bad) */
	int key_line[KEY_ROWS_MAX]; /* where key_rows[i] was first set */
	bool used;                  /* credential: some route refers to it */
	void *obj;                  /* struct proxy_cfg, credential_cfg or route_sec */
};

/* A route while loading: the public part plus what is resolved later. */
struct route_sec {
	struct route_cfg r;
	char *credential;   /* name, resolved into r.credential */
	char *audience_url; /* AUD_URL only, verbatim */
	char *scope;        /* explicit v2 scope */
	bool audience_ok;   /* audience key parsed */
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
	size_t n_secs, n_creds, n_routes;
	struct token_source_cfg ts[CONFIG_MAX_ROUTES];
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

/* config.c: log a warning "FILE:LINE: message" under event. */
void config_warn_at(struct load *ld, const char *event, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
