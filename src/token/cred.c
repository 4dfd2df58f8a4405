/*
 * cred.c - the proof of identity of one token request (cred.h).
 *
 * Files (client_secret_file, federated_token_file) are read at every
 * request, so a rotated file is used by the next request without a signal;
 * the bytes live in a buffer that is wiped before return. The private key
 * of a certificate credential stays inside assertion.c; its files are
 * stat()ed before each signature and loaded again when they changed.
 */
#include "token/cred.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "token/assertion.h"
#include "util/log.h"
#include "token/oauth.h"
#include "util/wipe.h"

#define SECRET_MAX    4096  /* client_secret_file cap */
#define FEDERATED_MAX 16384 /* federated_token_file cap (a JWT) */
#define BASIC_PREFIX  "Authorization: "

/* Identity of a file's content as far as stat tells: a change means reload. */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct cred {
	const struct credential_cfg *c; /* borrowed */
	struct assertion_key *key;      /* owned; CRED_CERTIFICATE only */
	struct file_id files[3];        /* certificate or pfx, key, password, as loaded */
};

static void file_id_of(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof *id);
	if (path != NULL && stat(path, &st) == 0) {
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		id->size = st.st_size;
		id->mtime = st.st_mtim;
	}
}

/* The key's files now; true when any differs from what was loaded. */
static bool key_files_changed(struct cred *cr, struct file_id now[3])
{
	const struct credential_cfg *c = cr->c;

	file_id_of(c->pfx_file ? c->pfx_file : c->certificate_file, &now[0]);
	file_id_of(c->private_key_file, &now[1]);
	file_id_of(c->private_key_password_file, &now[2]);
	return memcmp(now, cr->files, sizeof cr->files) != 0;
}

/*
 * Certificate rotation without a signal: when the files changed since the
 * key was loaded, load them again. A half-written or mismatched set keeps
 * the old key (the next request tries again), so a rotation done in several
 * steps never breaks token requests.
 */
static void reload_key(struct cred *cr)
{
	struct file_id now[3];
	struct assertion_key *k;
	char why[512] = "";

	if (!key_files_changed(cr, now))
		return;
	k = assertion_key_load(cr->c, why, sizeof why);
	if (k == NULL) {
		log_msg(LOG_WARN, "certificate_reload_failed", "[credential:%s] keeping the previous key: %s",
			cr->c->name, why);
		return;
	}
	assertion_key_free(cr->key);
	cr->key = k;
	memcpy(cr->files, now, sizeof cr->files);
	log_msg(LOG_INFO, "certificate_reloaded", "[credential:%s] thumbprint x5t#S256 %s", cr->c->name,
		assertion_thumbprint(k));
}

struct cred *cred_new(const struct credential_cfg *c, char *why, size_t whycap)
{
	struct cred *cr = calloc(1, sizeof *cr);

	if (cr == NULL) {
		snprintf(why, whycap, "out of memory");
		return NULL;
	}
	cr->c = c;
	if (c->kind != CRED_CERTIFICATE)
		return cr;
	key_files_changed(cr, cr->files); /* records the files before loading them */
	if ((cr->key = assertion_key_load(c, why, whycap)) == NULL) {
		free(cr);
		return NULL;
	}
	return cr;
}

void cred_free(struct cred *cr)
{
	if (cr == NULL)
		return;
	assertion_key_free(cr->key);
	free(cr);
}

static bool str_eq(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

bool cred_same(const struct credential_cfg *a, const struct credential_cfg *b)
{
	return a->kind == b->kind && a->secret_source == b->secret_source && a->token_version == b->token_version &&
	       a->auth_method == b->auth_method && a->assertion_alg == b->assertion_alg && a->send_x5c == b->send_x5c &&
	       a->mi_app_service == b->mi_app_service && str_eq(a->tenant, b->tenant) &&
	       str_eq(a->client_id, b->client_id) && str_eq(a->authority, b->authority) &&
	       str_eq(a->client_secret_file, b->client_secret_file) &&
	       str_eq(a->client_secret_env, b->client_secret_env) && str_eq(a->client_secret, b->client_secret) &&
	       str_eq(a->certificate_file, b->certificate_file) && str_eq(a->private_key_file, b->private_key_file) &&
	       str_eq(a->private_key_password_file, b->private_key_password_file) && str_eq(a->pfx_file, b->pfx_file) &&
	       str_eq(a->federated_token_file, b->federated_token_file) &&
	       str_eq(a->managed_identity, b->managed_identity) &&
	       str_eq(a->managed_identity_endpoint, b->managed_identity_endpoint);
}

long long cred_cert_not_after(const struct cred *cr)
{
	return cr != NULL ? assertion_not_after(cr->key) : 0;
}

/* Read a small file into buf (cap > max), trailing whitespace trimmed. 0, or
 * -1 with a reason naming the key and file in why. */
static int read_small_file(const char *key, const char *path, size_t max, char *buf, size_t cap, char *why,
			   size_t whycap)
{
	char eb[128]; /* GNU strerror_r: thread-safe, returns the text */
	size_t len = 0;
	struct stat st;
	int fd, ret = -1;
	ssize_t r;

	/* O_NONBLOCK: a FIFO put there by mistake must not block the engine. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(why, whycap, "cannot open %s %s: %s", key, path, strerror_r(errno, eb, sizeof(eb)));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whycap, "%s %s is not a readable regular file", key, path);
		goto done;
	}
	while (len < cap - 1) {
		r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whycap, "cannot read %s %s: %s", key, path, strerror_r(errno, eb, sizeof(eb)));
			goto done;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > max) {
		snprintf(why, whycap, "%s %s is longer than %zu bytes", key, path, max);
		goto done;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (len == 0) {
		snprintf(why, whycap, "%s %s is empty", key, path);
		goto done;
	}
	ret = 0;
done:
	close(fd);
	return ret;
}

/* The secret for this request: from buf (file) or the config. */
static const char *get_secret(const struct credential_cfg *c, char *buf, size_t cap, char *why, size_t whycap)
{
	switch (c->secret_source) {
	case SECRET_FILE:
		return read_small_file("client_secret_file", c->client_secret_file, SECRET_MAX, buf, cap, why,
				       whycap) == 0
			   ? buf
			   : NULL;
	case SECRET_ENV:
	case SECRET_INLINE:
		if (c->client_secret != NULL && c->client_secret[0] != '\0')
			return c->client_secret;
		if (c->client_secret_env != NULL)
			snprintf(why, whycap, "credential %s has an empty client secret (environment variable %s)",
				 c->name, c->client_secret_env);
		else
			snprintf(why, whycap, "credential %s has an empty client secret", c->name);
		return NULL;
	case SECRET_NONE:
		break;
	}
	snprintf(why, whycap, "credential %s has no client secret configured", c->name);
	return NULL;
}

static int secret_material(const struct credential_cfg *c, const char *target, struct cred_material *m, char *why,
			   size_t whycap)
{
	char buf[SECRET_MAX + 2];
	const char *secret = get_secret(c, buf, sizeof buf, why, whycap);
	int ret = -1;

	if (secret == NULL)
		goto done;
	m->form_cap = 3 * (strlen(c->client_id) + strlen(secret) + strlen(target)) + 96;
	if ((m->form = malloc(m->form_cap)) == NULL)
		goto nomem;
	m->form_len =
	    oauth_form_body(m->form, m->form_cap, c->token_version, c->auth_method, c->client_id, secret, target);
	if (m->form_len < 0)
		goto nomem;
	if (c->auth_method == AUTH_BASIC) {
		/* prefix + base64 of at most 3 * (id + secret) + 1 encoded bytes + NUL */
		m->basic_cap = sizeof(BASIC_PREFIX) + 8 + 4 * (3 * (strlen(c->client_id) + strlen(secret)) + 3) / 3;
		if ((m->basic = malloc(m->basic_cap)) == NULL)
			goto nomem;
		memcpy(m->basic, BASIC_PREFIX, sizeof(BASIC_PREFIX) - 1);
		if (oauth_basic_auth(m->basic + sizeof(BASIC_PREFIX) - 1, m->basic_cap - sizeof(BASIC_PREFIX) + 1,
				     c->client_id, secret) < 0)
			goto nomem;
	}
	ret = 0;
	goto done;
nomem:
	snprintf(why, whycap, "cannot build the token request (out of memory)");
done:
	explicit_bzero(buf, sizeof buf);
	return ret;
}

/* Form body around an assertion (signed here or read from a file). */
static int assertion_form(const struct credential_cfg *c, const char *assertion, const char *target,
			  struct cred_material *m, char *why, size_t whycap)
{
	m->form_cap = 3 * (strlen(c->client_id) + strlen(assertion) + strlen(target)) + 200;
	if ((m->form = malloc(m->form_cap)) == NULL ||
	    (m->form_len = oauth_form_body_assertion(m->form, m->form_cap, c->token_version, c->client_id, assertion,
						     target)) < 0) {
		snprintf(why, whycap, "cannot build the token request (out of memory)");
		return -1;
	}
	return 0;
}

int cred_material(struct cred *cr, const char *endpoint, const char *target, long long now_s, struct cred_material *m,
		  char *why, size_t whycap)
{
	const struct credential_cfg *c;
	char *buf = NULL;
	int ret = -1;

	memset(m, 0, sizeof *m);
	if (cr == NULL || endpoint == NULL || target == NULL) {
		snprintf(why, whycap, "token source has no credential or target");
		return -1;
	}
	c = cr->c;
	switch (c->kind) {
	case CRED_SECRET:
		ret = secret_material(c, target, m, why, whycap);
		break;
	case CRED_CERTIFICATE:
		reload_key(cr);
		if ((buf = malloc(ASSERTION_MAX)) == NULL)
			break;
		if (assertion_sign(cr->key, c->client_id, endpoint, now_s, NULL, buf, ASSERTION_MAX) < 0)
			snprintf(why, whycap, "cannot sign a client assertion for credential %s", c->name);
		else
			ret = assertion_form(c, buf, target, m, why, whycap);
		explicit_bzero(buf, ASSERTION_MAX);
		break;
	case CRED_FEDERATED:
		if ((buf = malloc(FEDERATED_MAX + 2)) == NULL)
			break;
		if (read_small_file("federated_token_file", c->federated_token_file, FEDERATED_MAX, buf,
				    FEDERATED_MAX + 2, why, whycap) == 0)
			ret = assertion_form(c, buf, target, m, why, whycap);
		explicit_bzero(buf, FEDERATED_MAX + 2);
		break;
	case CRED_MANAGED_IDENTITY: /* no body: mi.c builds a GET */
		snprintf(why, whycap, "credential %s is a managed identity: no client credentials request", c->name);
		break;
	}
	if (ret != 0 && why[0] == '\0')
		snprintf(why, whycap, "cannot build the token request (out of memory)");
	if (ret != 0)
		cred_material_wipe(m);
	free(buf);
	return ret;
}

void cred_material_wipe(struct cred_material *m)
{
	if (m == NULL)
		return;
	wipe_free(m->form, m->form_cap);
	wipe_free(m->basic, m->basic_cap);
	memset(m, 0, sizeof *m);
}
