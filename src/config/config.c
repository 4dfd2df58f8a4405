/*
 * config.c - load the INI file into the immutable struct config (config.h).
 *
 * Parsing is table-driven: config_key_rows[] lists every key of every section kind
 * with its value parser, the field it fills, whether it is required and its
 * default (parsed by the same parser). inih splits "key = value" lines; our
 * reader (read_line) sits in front of it, counts lines so the handler knows
 * where it is, recognises section headers itself (inih does not report them,
 * so an empty section would be invisible) and turns what inih would silently
 * mangle into errors or harmless input:
 *   - a line longer than inih's buffer (INI_MAX_LINE = 200 in Debian's build,
 *     i.e. 198 characters) would be split in two: error "line too long";
 *   - an indented line would continue the previous value (multi-line values):
 *     we strip leading whitespace, so indentation is cosmetic and every line
 *     stands alone;
 *   - a NUL byte would cut the line: error.
 * inih strips inline comments: ';' preceded by whitespace ends the value
 * ("a ;b" is "a", "a;b" stays "a;b"); '#' is a comment only at line start.
 *
 * Every problem is reported as "FILE:LINE: message" and loading goes on, so
 * one run shows every error. After the file come the AZURE_* environment,
 * defaults and required keys, then cross-references, audiences and token
 * sources. Warnings go to the log.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_int.h"
#include "config/config_syntax.h"
#include "wstrust/xmlapi.h"
#include "util/log.h"
#include "util/wipe.h"

/* ---- messages ---- */

static int run_parser(struct load *ld, struct section *s, size_t row, const char *value, int line, char *msg, size_t n)
{
	struct pv pv = {.ld = ld, .sec = s, .row = &config_key_rows[row], .line = line};
	int rc;

	pv.field = (char *)s->obj + config_key_rows[row].off;
	rc = config_key_rows[row].parse(&pv, value);
	if (rc < 0)
		snprintf(msg, n, "%s", pv.msg);
	return rc;
}

/* Set `key` of section s from the file (label NULL) or the environment. */
static void set_key(struct load *ld, struct section *s, const char *key, const char *value, int line, const char *label)
{
	int i = config_find_row(s->kind, key);
	char msg[MSG_MAX];

	label = label ? label : key;
	if (s->kind == SEC_CALLER && strncmp(key, "credential.", 11) == 0) {
		config_caller_route_key(ld, s, key + 11, value, line);
		return;
	}
	if (!*key) {
		config_load_error(ld, line, "[%s] missing key name before '='", s->title);
		return;
	}
	if (i < 0) {
		config_sec_error(ld, line, s, label, "unknown key");
		return;
	}
	if (s->seen[i] && !config_key_rows[i].repeat) {
		config_sec_error(ld, line, s, label, "duplicate key (first set on line %d)", s->key_line[i]);
		return;
	}
	if (!s->seen[i])
		s->key_line[i] = line;
	s->seen[i] = true;
	if (!*value)
		config_sec_error(ld, line, s, label, "empty value (remove the line to get the default)");
	else if (run_parser(ld, s, (size_t)i, value, line, msg, sizeof msg) < 0)
		config_sec_error(ld, line, s, label, "%s", msg);
}

/* ---- sections ---- */

static void credential_cfg_free(struct credential_cfg *c)
{
	free(c->name);
	free(c->tenant);
	free(c->client_id);
	free(c->client_secret_file);
	free(c->client_secret_env);
	wipe_free_str(c->client_secret);
	free(c->authority);
	free(c->certificate_file);
	free(c->private_key_file);
	free(c->private_key_password_file);
	free(c->pfx_file);
	free(c->federated_token_file);
	free(c->managed_identity);
	free(c->managed_identity_endpoint);
	memset(c, 0, sizeof *c);
}

static void route_cfg_free(struct route_cfg *r)
{
	free(r->name);
	free(r->match_host);
	free(r->probe_path);
	free(r->public_url);
	free(r->match_path);
	free(r->callers);
	config_url_free(&r->upstream);
	cidr_list_free(&r->allow_from);
	wipe_free_str(r->inbound_key);
	memset(r, 0, sizeof *r);
}

static void proxy_cfg_free(struct proxy_cfg *p)
{
	free(p->listen_host);
	free(p->admin_host);
	free(p->ca_file);
	free(p->legacy_identities_file);
	free(p->basic_realm);
	free(p->inventory_file);
	cidr_list_free(&p->allow_from);
	cidr_list_free(&p->trusted_proxies);
	wipe_free_str(p->inbound_key);
	free(p->inbound_key_header);
	for (size_t i = 0; i < p->n_tls_cert; i++)
		free(p->tls_cert[i]);
	for (size_t i = 0; i < p->n_tls_key; i++)
		free(p->tls_key[i]);
	free(p->tls_client_ca);
	for (size_t i = 0; i < p->n_connect_to; i++)
		free(p->connect_to[i].entry);
	memset(p, 0, sizeof *p);
}

static void section_free(struct section *s)
{
	if (!s)
		return;
	if (s->kind == SEC_CREDENTIAL && s->obj) {
		credential_cfg_free(s->obj);
		free(s->obj);
	} else if (s->kind == SEC_ROUTE && s->obj) {
		struct route_sec *rs = s->obj;
		route_cfg_free(&rs->r);
		free(rs->credential);
		free(rs->audience_url);
		free(rs->scope);
		free(rs->callers);
		free(rs);
	} else if (s->kind == SEC_CALLER && s->obj) {
		config_caller_free(s->obj);
		free(s->obj);
	}
	free(s->title);
	free(s);
}

/* Append a credential, route or caller section; NULL (reported) on a limit or OOM. */
static struct section *new_section(struct load *ld, enum sec_kind kind, const char *title, int line)
{
	bool cred = kind == SEC_CREDENTIAL, caller = kind == SEC_CALLER;
	size_t *count = cred ? &ld->n_creds : caller ? &ld->n_callers : &ld->n_routes;
	size_t max = cred ? CONFIG_MAX_CREDENTIALS : caller ? CONFIG_MAX_CALLERS : CONFIG_MAX_ROUTES;
	size_t size = cred     ? sizeof(struct credential_cfg)
		      : caller ? sizeof(struct caller_sec)
			       : sizeof(struct route_sec);
	struct section *s = calloc(1, sizeof *s);
	char **name;

	if (*count == max) {
		config_load_error(ld, line, "[%s] too many %s sections (at most %zu)", title,
				  cred     ? "credential"
				  : caller ? "caller"
					   : "route",
				  max);
		free(s);
		return NULL;
	}
	if (!s || !(s->title = strdup(title)) || !(s->obj = calloc(1, size))) {
		config_oom(ld);
		section_free(s);
		return NULL;
	}
	s->kind = kind;
	s->name = strchr(s->title, ':') + 1;
	s->line = line;
	s->index = (*count)++;
	name = cred     ? &((struct credential_cfg *)s->obj)->name
	       : caller ? &((struct caller_sec *)s->obj)->c.name
			: &((struct route_sec *)s->obj)->r.name;
	if (!(*name = strdup(s->name)))
		config_oom(ld);
	if (cred)
		((struct credential_cfg *)s->obj)->line = line;
	else if (caller)
		((struct caller_sec *)s->obj)->c.line = line;
	else
		((struct route_sec *)s->obj)->r.line = line;
	ld->secs[ld->n_secs++] = s;
	return s;
}

/* Check "[title]" (already without brackets) and open the section. */
static void open_section(struct load *ld, const char *title)
{
	static const struct {
		const char *type;
		enum sec_kind kind;
		bool named; /* [type:NAME] */
	} kinds[] = {{"proxy", SEC_PROXY, false},
		     {"credential", SEC_CREDENTIAL, true},
		     {"route", SEC_ROUTE, true},
		     {"caller", SEC_CALLER, true}};
	const char *colon = strchr(title, ':'), *name = colon ? colon + 1 : "";
	size_t tlen = colon ? (size_t)(colon - title) : strlen(title), k;
	enum sec_kind kind;
	struct section *old;

	for (k = 0; k < ARRAY_LEN(kinds); k++)
		if (strlen(kinds[k].type) == tlen && strncmp(title, kinds[k].type, tlen) == 0 &&
		    kinds[k].named == (colon != NULL))
			break;
	if (k == ARRAY_LEN(kinds)) {
		config_load_error(
		    ld, ld->lineno,
		    "[%s] unknown section (expected [proxy], [credential:NAME], [route:NAME] or [caller:NAME])", title);
		return;
	}
	kind = kinds[k].kind;
	if (kind != SEC_PROXY &&
	    (!*name || strlen(name) > MAX_NAME ||
	     strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(name))) {
		config_load_error(ld, ld->lineno, "[%s] bad name: use 1 to %d letters, digits, '_', '.' or '-'", title,
				  MAX_NAME);
		return;
	}
	old = config_find_section(ld, kind, name);
	if (old && (kind != SEC_PROXY || old->line)) {
		config_load_error(ld, ld->lineno, "[%s] duplicate section (first on line %d)", title, old->line);
		return;
	}
	if (kind == SEC_PROXY)
		old->line = ld->lineno;
	ld->cur = kind == SEC_PROXY ? old : new_section(ld, kind, title, ld->lineno);
	ld->skip = ld->cur == NULL;
}

/* A line starting with '['. Keys up to the next good header are ignored when it is bad. */
static void section_line(struct load *ld, char *s)
{
	char *close = strchr(s, ']'), *t, *title;

	ld->cur = NULL;
	ld->skip = true;
	if (!close) {
		config_load_error(ld, ld->lineno, "section header without ']'");
		return;
	}
	t = close + 1 + strspn(close + 1, " \t");
	if (*t && *t != ';' && *t != '#') {
		config_load_error(ld, ld->lineno, "unexpected text after ']'");
		return;
	}
	*close = '\0';
	title = s + 1 + strspn(s + 1, " \t");
	for (t = close; t > title && isspace((unsigned char)t[-1]); t--)
		t[-1] = '\0';
	open_section(ld, title);
}

/* ---- inih glue ---- */

static void check_unhandled(struct load *ld)
{
	if (ld->expect_key && ld->handled != ld->expect_key)
		config_load_error(ld, ld->expect_key, "syntax error: expected 'key = value' or '[section]'");
	ld->expect_key = 0;
}

/*
 * Decide what inih sees of the physical line in buf (kept of len bytes).
 * Comments, blank and bad lines and section headers become "\n"; key lines
 * lose their indentation.
 */
static void classify_line(struct load *ld, char *buf, size_t len, size_t kept, bool nul, int num)
{
	char *s = buf + strspn(buf, " \t\f\v\r");

	ld->inline_comment = false;
	if (*s == ';' || *s == '#' || (*s == '\0' && !nul && len == kept)) {
		buf[0] = '\0';
	} else if (len > kept) {
		config_load_error(ld, ld->lineno, "line too long (%zu characters, at most %d)", len, num - 2);
		buf[0] = '\0';
	} else if (nul) {
		config_load_error(ld, ld->lineno, "line contains a NUL byte");
		buf[0] = '\0';
	} else if (*s == '[') {
		section_line(ld, s);
		buf[0] = '\0';
	} else {
		for (const char *p = s + 1; *p; p++)
			if (*p == ';' && isspace((unsigned char)p[-1]))
				ld->inline_comment = true;
		memmove(buf, s, strlen(s) + 1);
		ld->expect_key = ld->lineno;
	}
	len = strlen(buf); /* kept <= num - 2: room for "\n" and NUL */
	buf[len] = '\n';
	buf[len + 1] = '\0';
}

/* fgets-style reader for ini_parse_stream: one physical line per call. */
static char *read_line(char *buf, int num, void *stream)
{
	struct load *ld = stream;
	size_t cap = num > 2 ? (size_t)num - 2 : 0, len = 0, kept = 0;
	bool nul = false;
	int c = EOF;

	check_unhandled(ld);
	while ((c = getc(ld->in)) != EOF && c != '\n') {
		nul |= c == '\0';
		if (kept < cap)
			buf[kept++] = (char)c;
		len++;
	}
	if (c == EOF && len == 0) {
		if (ferror(ld->in))
			config_load_error(ld, ld->lineno, "read error");
		explicit_bzero(buf, (size_t)num); /* inih's line buffer held the secrets */
		return NULL;
	}
	ld->lineno++;
	if (len > 0 && len == kept && buf[kept - 1] == '\r')
		kept = --len;
	buf[kept] = '\0';
	if (ld->lineno == 1 && kept >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
		memmove(buf, buf + 3, kept - 2);
		kept -= 3;
		len -= 3;
	}
	classify_line(ld, buf, len, kept, nul, num);
	return buf;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct load *ld = user;

	(void)section;
	ld->handled = ld->lineno;
	if (ld->skip)
		return 1;
	if (!ld->cur)
		config_load_error(ld, ld->lineno, "%s: key outside of any section", name);
	else
		set_key(ld, ld->cur, name, value, ld->lineno, NULL);
	return 1;
}

/* ---- after the file ---- */

static bool has_secret(const struct section *s)
{
	return config_seen(s, "client_secret_file") || config_seen(s, "client_secret_env") ||
	       config_seen(s, "client_secret") || config_seen(s, "certificate_file") || config_seen(s, "pfx_file") ||
	       config_seen(s, "federated_token_file");
}

/*
 * The Azure Identity variables fill [credential:default]: all of tenant, id
 * and secret create it; with a [credential:default] in the file each fills a
 * key the file lacks.
 */
static void apply_env(struct load *ld)
{
	static const struct {
		const char *var, *key, *label;
		bool needed; /* to create the section */
	} env[] = {
	    {"AZURE_TENANT_ID", "tenant", "tenant (AZURE_TENANT_ID)", true},
	    {"AZURE_CLIENT_ID", "client_id", "client_id (AZURE_CLIENT_ID)", true},
	    {"AZURE_AUTHORITY_HOST", "authority", "authority (AZURE_AUTHORITY_HOST)", false},
	    {"AZURE_CLIENT_SECRET", "client_secret_env", "client_secret_env (AZURE_CLIENT_SECRET)", true},
	    /* the AKS workload identity webhook convention */
	    {"AZURE_FEDERATED_TOKEN_FILE", "federated_token_file", "federated_token_file (AZURE_FEDERATED_TOKEN_FILE)",
	     true},
	};
	struct section *s = config_find_section(ld, SEC_CREDENTIAL, "default");

	if (!s) {
		bool proof = false; /* a secret or a federated token */
		for (size_t i = 0; i < ARRAY_LEN(env); i++) {
			bool set = getenv(env[i].var) && *getenv(env[i].var);
			if (i >= 3)
				proof |= set;
			else if (env[i].needed && !set)
				return;
		}
		if (!proof)
			return;
		if (!(s = new_section(ld, SEC_CREDENTIAL, "credential:default", 0)))
			return;
	}
	for (size_t i = 0; i < ARRAY_LEN(env); i++) {
		const char *v = getenv(env[i].var);
		bool is_secret = i >= 3; /* the proof of identity: one kind only */
		if (!v || !*v || (is_secret ? has_secret(s) : config_seen(s, env[i].key)))
			continue;
		set_key(ld, s, env[i].key, strcmp(env[i].key, "client_secret_env") == 0 ? env[i].var : v, s->line,
			env[i].label);
	}
}

/* A managed identity has neither tenant nor client_id of its own. */
static bool mi_needs_no(const struct section *s, const char *key)
{
	return s->kind == SEC_CREDENTIAL && config_seen(s, "managed_identity") &&
	       (strcmp(key, "tenant") == 0 || strcmp(key, "client_id") == 0);
}

/* Defaults and required keys. */
static void finish_section(struct load *ld, struct section *s)
{
	char msg[MSG_MAX];

	for (size_t i = 0; i < config_n_key_rows; i++) {
		if (config_key_rows[i].kind != s->kind || s->seen[i])
			continue;
		if (config_key_rows[i].required && !mi_needs_no(s, config_key_rows[i].key))
			config_sec_error(ld, s->line, s, config_key_rows[i].key, "required key missing");
		else if (config_key_rows[i].def &&
			 run_parser(ld, s, i, config_key_rows[i].def, s->line, msg, sizeof msg) < 0)
			config_sec_error(ld, s->line, s, config_key_rows[i].key, "default: %s", msg);
	}
}

/* Exactly one way to prove the identity; sets c->kind. */
static void check_proof(struct load *ld, struct section *s)
{
	static const struct {
		const char *key;
		enum cred_kind kind;
	} keys[] = {{"client_secret_file", CRED_SECRET},
		    {"client_secret_env", CRED_SECRET},
		    {"client_secret", CRED_SECRET},
		    {"certificate_file", CRED_CERTIFICATE},
		    {"pfx_file", CRED_CERTIFICATE},
		    {"federated_token_file", CRED_FEDERATED},
		    {"managed_identity", CRED_MANAGED_IDENTITY}};
	struct credential_cfg *c = s->obj;
	int n = 0, first = 0, last = 0;

	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		int line = config_seen_line(s, keys[i].key);
		if (!config_seen(s, keys[i].key))
			continue;
		c->kind = keys[i].kind;
		if (n++ == 0 || line < first)
			first = line;
		last = line > last ? line : last;
	}
	if (n == 0)
		config_sec_error(ld, s->line, s, NULL,
				 "needs one of client_secret_file, client_secret_env, client_secret, certificate_file, "
				 "pfx_file, federated_token_file or managed_identity");
	else if (n > 1)
		config_sec_error(
		    ld, last, s, NULL,
		    "only one of client_secret_file, client_secret_env, client_secret, certificate_file, pfx_file, "
		    "federated_token_file and managed_identity may be set (also line %d)",
		    first);
	if (c->kind != CRED_CERTIFICATE &&
	    (config_seen(s, "private_key_file") || config_seen(s, "private_key_password_file") ||
	     config_seen(s, "send_x5c") || config_seen(s, "assertion_alg")))
		config_sec_error(ld, s->line, s, NULL,
				 "private_key_file, private_key_password_file, send_x5c and assertion_alg need "
				 "certificate_file or pfx_file");
	if (c->kind != CRED_MANAGED_IDENTITY && config_seen(s, "managed_identity_endpoint"))
		config_sec_error(ld, config_seen_line(s, "managed_identity_endpoint"), s, "managed_identity_endpoint",
				 "needs managed_identity");
	if (config_seen(s, "pfx_file") && config_seen(s, "private_key_file"))
		config_sec_error(ld, config_seen_line(s, "private_key_file"), s, "private_key_file",
				 "not with pfx_file (the key is inside the PKCS#12 file)");
	if (c->kind != CRED_SECRET && c->auth_method == AUTH_BASIC && config_seen(s, "auth_method"))
		config_sec_error(ld, config_seen_line(s, "auth_method"), s, "auth_method",
				 "basic needs a client secret");
}

/*
 * Where a managed identity's tokens come from: managed_identity_endpoint,
 * else App Service / Functions (IDENTITY_ENDPOINT with IDENTITY_HEADER),
 * else the Azure Instance Metadata Service.
 */
static void check_managed_identity(struct load *ld, struct section *s)
{
	static const char imds[] = "http://169.254.169.254/metadata/identity/oauth2/token";
	struct credential_cfg *c = s->obj;
	const char *ep = getenv("IDENTITY_ENDPOINT"), *hdr = getenv("IDENTITY_HEADER");

	c->mi_app_service = ep && *ep && hdr && *hdr;
	/* tenant and client_id, if any (AZURE_* variables), are not used. */
	if (!c->managed_identity_endpoint && !(c->managed_identity_endpoint = strdup(c->mi_app_service ? ep : imds)))
		config_oom(ld);
}

static void check_credential(struct load *ld, struct section *s)
{
	struct credential_cfg *c = s->obj;

	check_proof(ld, s);
	if (c->kind == CRED_MANAGED_IDENTITY)
		check_managed_identity(ld, s);
	for (size_t i = 0; i < ld->n_secs && c->tenant && c->client_id && c->authority; i++) {
		struct section *o = ld->secs[i];
		struct credential_cfg *oc = o->obj;
		if (o == s)
			break;
		if (o->kind == SEC_CREDENTIAL && oc->tenant && oc->client_id && oc->authority &&
		    strcmp(oc->tenant, c->tenant) == 0 && strcmp(oc->client_id, c->client_id) == 0 &&
		    strcmp(oc->authority, c->authority) == 0)
			config_sec_error(ld, s->line, s, NULL,
					 "same authority, tenant and client_id as [%s] on line %d", o->title, o->line);
	}
}

static struct section *route_credential(struct load *ld, struct section *s)
{
	struct route_sec *rs = s->obj;
	struct section *only = NULL;

	if (rs->credential) {
		struct section *c = config_find_section(ld, SEC_CREDENTIAL, rs->credential);
		if (!c)
			config_sec_error(ld, config_seen_line(s, "credential"), s, "credential",
					 "no [credential:%s] section", rs->credential);
		return c;
	}
	if (config_seen(s, "credential"))
		return NULL;
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_CREDENTIAL)
			only = ld->secs[i];
	if (ld->n_creds == 1)
		return only;
	if (ld->n_creds == 0)
		config_sec_error(
		    ld, s->line, s, "credential",
		    "required key missing: no [credential:NAME] section and no AZURE_TENANT_ID, AZURE_CLIENT_ID "
		    "and AZURE_CLIENT_SECRET in the environment");
	else
		config_sec_error(ld, s->line, s, "credential", "required key missing (there are %zu credentials)",
				 ld->n_creds);
	return NULL;
}

static bool is_fo_host(const char *host)
{
	for (size_t i = 0; i < config_n_audience_rules; i++)
		if (config_audience_rules[i].kind == AUD_FO && config_glob_match(config_audience_rules[i].glob, host))
			return true;
	return false;
}

/* F&O compares aud byte for byte with its lowercase URL without a trailing slash. */
static void warn_fo_audience(struct load *ld, struct section *s)
{
	struct route_sec *rs = s->obj;
	struct url u = {0};
	char msg[MSG_MAX];
	bool fo, upper = false;

	if (config_url_parse(rs->audience_url, &u, msg, sizeof msg) < 0)
		return;
	fo = is_fo_host(u.host) || (rs->r.upstream.host && is_fo_host(rs->r.upstream.host));
	config_url_free(&u);
	for (const char *p = rs->audience_url; *p; p++)
		upper |= isupper((unsigned char)*p) != 0;
	if (fo && (upper || rs->audience_url[strlen(rs->audience_url) - 1] == '/'))
		config_warn_at(
		    ld, "config_fo_audience", config_seen_line(s, "audience"),
		    "[%s] audience %s: Finance and Operations rejects a token whose aud has a trailing slash or "
		    "uppercase letters (AADSTS65001 / 401); write the environment URL in lowercase without '/' at "
		    "the end",
		    s->title, rs->audience_url);
}

/* The token resource of a route (malloc'd); NULL if unknown (reported unless caused by an earlier error). */
static char *route_resource(struct load *ld, struct section *s)
{
	struct route_sec *rs = s->obj;
	const struct url *up = &rs->r.upstream;
	size_t i;

	if (config_seen(s, "audience") && !rs->audience_ok)
		return NULL;
	if (!config_seen(s, "audience")) {
		if (!up->host)
			return NULL;
		for (i = 0; i < config_n_audience_rules && !config_glob_match(config_audience_rules[i].glob, up->host);
		     i++)
			;
		if (i == config_n_audience_rules && rs->scope) {
			rs->r.audience_kind = AUD_URL;
			return strndup(rs->scope, strlen(rs->scope) - strlen(DEFAULT_SUFFIX));
		}
		if (i == config_n_audience_rules) {
			config_sec_error(
			    ld, s->line, s, "audience",
			    "required key missing: cannot infer it from upstream host %s (set dataverse, bc, fo, "
			    "securityservice or an https:// URL)",
			    up->host);
			return NULL;
		}
		rs->r.audience_kind = config_audience_rules[i].kind;
	}
	if (rs->r.audience_kind == AUD_URL) {
		warn_fo_audience(ld, s);
		return strdup(rs->audience_url);
	}
	for (i = 0; config_audiences[i].kind != rs->r.audience_kind; i++)
		;
	if (config_audiences[i].resource)
		return strdup(config_audiences[i].resource);
	return up->origin ? strdup(up->origin) : NULL;
}

/* The route's token source, for (credential, scope or resource); takes resource. */
static void add_token_source(struct load *ld, struct section *s, const struct section *cs, char *resource)
{
	struct route_sec *rs = s->obj;
	rs->r.token_source = config_token_source(ld, cs, rs->scope, resource);
	free(resource);
}

/* Service protection keys the route leaves out come from [proxy]; auto
 * concurrency is Dataverse's documented 52 per user on Dataverse routes. */
static void route_throttle(struct load *ld, struct section *s)
{
	struct throttle_cfg *t = &((struct route_sec *)s->obj)->r.throttle;
	const struct throttle_cfg *d = &ld->proxy.throttle;
	if (!config_seen(s, "throttle_queue"))
		t->queue = d->queue;
	if (!config_seen(s, "throttle_wait"))
		t->wait_ms = d->wait_ms;
	if (!config_seen(s, "throttle_max_wait"))
		t->max_wait_ms = d->max_wait_ms;
	if (!config_seen(s, "throttle_retries"))
		t->retries = d->retries;
	if (!config_seen(s, "max_concurrent"))
		t->max_concurrent = d->max_concurrent;
	if (t->max_concurrent < 0)
		t->max_concurrent = ((struct route_sec *)s->obj)->r.audience_kind == AUD_DATAVERSE ? 52 : 0;
}

static void check_route(struct load *ld, struct section *s)
{
	struct route_sec *rs = s->obj;
	struct section *cs = route_credential(ld, s);
	const struct credential_cfg *c = cs ? cs->obj : NULL;
	char *resource;

	if (cs) {
		cs->used = true;
		rs->r.credential = cs->index;
	}
	if (rs->scope && c && c->token_version == TOKEN_V1)
		config_sec_error(ld, config_seen_line(s, "scope"), s, "scope",
				 "only for token_version = v2 ([%s] uses v1, which sends the audience as 'resource')",
				 cs->title);
	resource = route_resource(ld, s);
	/* the Organization service is Dataverse's: Business Central, F&O and
	 * the securityservice have none to bridge to */
	if (rs->r.soap_bridge && rs->r.audience_kind != AUD_DATAVERSE && rs->r.audience_kind != AUD_URL && resource)
		config_sec_error(ld, config_seen_line(s, "soap_bridge"), s, "soap_bridge",
				 "only for a Dataverse route (the Organization service); this route's audience is %s",
				 resource);
	route_throttle(ld, s);
	if (!resource || !c || ((!c->tenant || !c->authority) && c->kind != CRED_MANAGED_IDENTITY) || ld->n_errors) {
		free(resource);
		if (ld->n_errors == 0)
			config_oom(
			    ld); /* every other way here reported an error: never build a route without a source */
		return;
	}
	add_token_source(ld, s, cs, resource);
}

static void check_duplicate_routes(struct load *ld)
{
	for (size_t i = 0; i < ld->n_secs; i++) {
		const struct route_sec *a = ld->secs[i]->obj;
		if (ld->secs[i]->kind != SEC_ROUTE || !a->r.match_path)
			continue;
		for (size_t j = i + 1; j < ld->n_secs; j++) {
			const struct route_sec *b = ld->secs[j]->obj;
			if (ld->secs[j]->kind != SEC_ROUTE || !b->r.match_path ||
			    strcmp(a->r.match_path, b->r.match_path) != 0 ||
			    (a->r.match_host && b->r.match_host ? strcmp(a->r.match_host, b->r.match_host) != 0
								: a->r.match_host != b->r.match_host))
				continue;
			config_sec_error(ld, ld->secs[j]->line, ld->secs[j], NULL,
					 "same match_host and match_path as [%s] on line %d", ld->secs[i]->title,
					 ld->secs[i]->line);
		}
	}
}

/* The WS-Trust features parse XML with libxml2, which is loaded only when
 * one of them is on (xmlapi.h): a missing library is a startup error, not a
 * fault on the first legacy sign-in. */
static void check_xml(struct load *ld)
{
	const char *why = NULL;
	for (size_t i = 0; i < ld->n_secs; i++) {
		const struct section *s = ld->secs[i];
		bool wants = s->kind == SEC_ROUTE ? ((const struct route_sec *)s->obj)->r.soap_bridge
						  : s->kind == SEC_PROXY && ld->proxy.sts_facade;
		const char *key = s->kind == SEC_ROUTE ? "soap_bridge" : "sts_facade";
		if (wants && !xmlapi_load(&why))
			config_sec_error(ld, config_seen_line(s, key), s, key, "needs libxml2: %s", why);
	}
}

static void validate(struct load *ld)
{
	apply_env(ld);
	for (size_t i = 0; i < ld->n_secs; i++)
		finish_section(ld, ld->secs[i]);
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_CREDENTIAL)
			check_credential(ld, ld->secs[i]);
	check_duplicate_routes(ld);
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_ROUTE)
			check_route(ld, ld->secs[i]);
	if (ld->n_routes == 0)
		config_load_error(ld, 0, "no [route:...] section");
	config_callers_validate(ld);
	check_xml(ld);
	for (size_t i = 0; i < ld->n_secs; i++)
		if (ld->secs[i]->kind == SEC_CREDENTIAL && !ld->secs[i]->used && ld->n_routes)
			config_warn_at(ld, "config_credential_unused", ld->secs[i]->line,
				       "[%s] is not used by any route", ld->secs[i]->title);
}

/* Move everything into a new config; NULL on OOM. */
static struct config *build(struct load *ld)
{
	struct config *cfg = calloc(1, sizeof *cfg);
	size_t nc = 0, nr = 0;

	if (!cfg || !(cfg->path = strdup(ld->file)) ||
	    !(cfg->credentials = calloc(ld->n_creds + 1, sizeof(*cfg->credentials))) ||
	    !(cfg->routes = calloc(ld->n_routes + 1, sizeof(*cfg->routes))) ||
	    !(cfg->token_sources = calloc(ld->n_ts + 1, sizeof(*cfg->token_sources)))) {
		config_free(cfg);
		config_oom(ld);
		return NULL;
	}
	cfg->proxy = ld->proxy;
	memset(&ld->proxy, 0, sizeof ld->proxy);
	for (size_t i = 0; i < ld->n_secs; i++) {
		struct section *s = ld->secs[i];
		if (s->kind == SEC_CREDENTIAL) {
			cfg->credentials[nc++] = *(struct credential_cfg *)s->obj;
			memset(s->obj, 0, sizeof(struct credential_cfg));
		} else if (s->kind == SEC_ROUTE) {
			struct route_sec *rs = s->obj;
			cfg->routes[nr++] = rs->r;
			memset(&rs->r, 0, sizeof rs->r);
		}
	}
	cfg->n_credentials = nc;
	cfg->n_routes = nr;
	memcpy(cfg->token_sources, ld->ts, ld->n_ts * sizeof ld->ts[0]);
	cfg->n_token_sources = ld->n_ts;
	ld->n_ts = 0;
	if (config_callers_build(ld, cfg) < 0) {
		config_free(cfg);
		config_oom(ld);
		return NULL;
	}
	return cfg;
}

static void load_cleanup(struct load *ld)
{
	for (size_t i = 0; i < ld->n_secs; i++)
		section_free(ld->secs[i]);
	for (size_t i = 0; i < ld->n_ts; i++)
		config_token_source_free(&ld->ts[i]);
	proxy_cfg_free(&ld->proxy);
}

/* World-readable file with a secret in it: say so. */
static void warn_file_mode(struct load *ld)
{
	struct stat st;
	int fd = fileno(ld->in);

	if (ld->inline_secret && fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
		config_warn_at(ld, "config_world_readable", 0,
			       "the file holds an inline client_secret and is readable by every user (chmod 600 it)");
}

/* ---- public ---- */

struct config *config_load_stream(FILE *in, const char *name, FILE *errors)
{
	struct load *ld = calloc(1, sizeof *ld);
	struct section *proxy = calloc(1, sizeof *proxy);
	struct config *cfg = NULL;
	int rc;

	if (!ld || !proxy || !(proxy->title = strdup("proxy"))) {
		if (errors)
			fprintf(errors, "%s:0: out of memory\n", name ? name : "config");
		goto done;
	}
	ld->file = name ? name : "config";
	ld->in = in;
	ld->errors = errors;
	proxy->kind = SEC_PROXY;
	proxy->name = "";
	proxy->obj = &ld->proxy;
	ld->secs[ld->n_secs++] = proxy;
	proxy = NULL;
	rc = ini_parse_stream(read_line, ld, on_key, ld);
	check_unhandled(ld);
	if (rc < 0)
		config_oom(ld);
	else if (rc > 0 && ld->n_errors == 0)
		config_load_error(ld, rc, "syntax error");
	validate(ld);
	warn_file_mode(ld);
	if (ld->n_errors == 0)
		cfg = build(ld);
	load_cleanup(ld);
done:
	if (proxy)
		free(proxy->title);
	free(proxy);
	free(ld);
	return cfg;
}

struct config *config_load(const char *path, FILE *errors)
{
	char iobuf[BUFSIZ]; /* ours, so the file text (an inline secret) can be wiped */
	FILE *in = fopen(path, "re");
	struct config *cfg;

	if (!in) {
		if (errors)
			fprintf(errors, "%s:0: cannot open: %s\n", path, strerror(errno));
		return NULL;
	}
	setvbuf(in, iobuf, _IOFBF, sizeof iobuf);
	cfg = config_load_stream(in, path, errors);
	fclose(in);
	explicit_bzero(iobuf, sizeof iobuf);
	return cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; cfg->credentials && i < cfg->n_credentials; i++)
		credential_cfg_free(&cfg->credentials[i]);
	for (size_t i = 0; cfg->routes && i < cfg->n_routes; i++)
		route_cfg_free(&cfg->routes[i]);
	for (size_t i = 0; cfg->token_sources && i < cfg->n_token_sources; i++)
		config_token_source_free(&cfg->token_sources[i]);
	config_callers_free(cfg);
	proxy_cfg_free(&cfg->proxy);
	free(cfg->credentials);
	free(cfg->routes);
	free(cfg->token_sources);
	free(cfg->path);
	free(cfg);
}
