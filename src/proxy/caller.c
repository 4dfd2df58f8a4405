/*
 * caller.c - recognise the caller of a request ([caller:NAME] sections).
 *
 * Pure over its inputs but for the verification cache, the failure
 * budget and the keys of queued checks, which are process-wide (every
 * worker and the verifier thread share them) under one mutex held for
 * table look-ups only, never across crypt(3), which runs on the verifier
 * thread (util/verifier.c).
 */
#include "proxy/caller.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops/metrics.h"
#include "util/b64.h"
#include "util/cidr.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/verifier.h"
#include "util/wipe.h"

#define CACHE_SLOTS  512
#define OK_TTL_MS    (10 * 60 * 1000)
#define BAD_TTL_MS   (30 * 1000)
#define FAIL_BUCKETS 128

/* A remembered verification: the HMAC of (caller, hash, user, password). */
struct vslot {
	unsigned char mac[SHA256_DIGEST_LENGTH];
	long long until_ms; /* 0 = free */
	bool ok;
};

/* Failed crypts of one caller, by name, in the current window. */
struct fbucket {
	char name[65]; /* a caller's name (at most 64 bytes); "" = a free slot */
	long long window_start_ms;
	unsigned n;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static unsigned char hmac_key[32];
static bool hmac_key_ok;
static EVP_MAC *hmac; /* fetched once: thread-safe to make contexts from */
static struct vslot cache[CACHE_SLOTS];
static struct fbucket fails[FAIL_BUCKETS];
static struct fbucket fails_all; /* every caller's together */
/* Keys of the checks queued on the verifier: one job per key, however many
 * requests wait for it; verified() drops a key when its result is cached. */
static unsigned char inflight[VERIFIER_QUEUE_MAX][SHA256_DIGEST_LENGTH];
static size_t n_inflight;
_Static_assert(VERIFIER_KEY_LEN == SHA256_DIGEST_LENGTH, "the verifier's key is the cache's HMAC");

/* password_ok's answers (PW_QUEUE and PW_INLINE are its own steps). */
enum pw { PW_BAD, PW_OK, PW_PENDING, PW_BUSY, PW_QUEUE, PW_INLINE };

static void init_key(void)
{
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	hmac_key_ok = hmac && RAND_bytes(hmac_key, sizeof hmac_key) == 1;
}

/* ---- Basic ------------------------------------------------------------------- */

int caller_basic_parse(const char *header, char user[CALLER_BASIC_MAX], char pass[CALLER_BASIC_MAX])
{
	unsigned char buf[2 * CALLER_BASIC_MAX];
	long n;
	int rc = -1;

	user[0] = pass[0] = '\0';
	if (!header || strncasecmp(header, "Basic", 5) != 0 || (header[5] != ' ' && header[5] != '\t'))
		return -1;
	const char *t = header + 5 + strspn(header + 5, " \t");
	size_t tl = strcspn(t, " \t");
	if (t[tl + strspn(t + tl, " \t")] != '\0' || tl > 4 * sizeof buf / 3)
		return -1;
	n = b64_decode(t, tl, buf, sizeof buf, B64_STRICT);
	if (n < 0)
		goto done;
	const unsigned char *colon = memchr(buf, ':', (size_t)n);
	size_t ul = colon ? (size_t)(colon - buf) : 0, pl = colon ? (size_t)n - ul - 1 : 0;
	if (!colon || ul == 0 || ul >= CALLER_BASIC_MAX || pl >= CALLER_BASIC_MAX)
		goto done;
	for (long i = 0; i < n; i++)
		if (buf[i] < 0x20 || buf[i] == 0x7f)
			goto done; /* NUL would cut the value; control bytes are no user or key */
	memcpy(user, buf, ul);
	user[ul] = '\0';
	memcpy(pass, colon + 1, pl);
	pass[pl] = '\0';
	rc = 0;
done:
	explicit_bzero(buf, sizeof buf);
	return rc;
}

/* ---- verification --------------------------------------------------------------- */

static bool mac_of(const struct caller_cfg *c, const char *user, const char *pass,
		   unsigned char mac[SHA256_DIGEST_LENGTH])
{
	bool ok = false;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
			       OSSL_PARAM_END};
	size_t out = 0;

	pthread_once(&once, init_key);
	if (!hmac_key_ok || !(ctx = EVP_MAC_CTX_new(hmac)) || EVP_MAC_init(ctx, hmac_key, sizeof hmac_key, params) != 1)
		goto done;
	const char *parts[] = {c->name, c->basic_password_hash, user, pass};
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (EVP_MAC_update(ctx, (const unsigned char *)parts[i], strlen(parts[i]) + 1) != 1)
			goto done;
	ok = EVP_MAC_final(ctx, mac, &out, SHA256_DIGEST_LENGTH) == 1 && out == SHA256_DIGEST_LENGTH;
done:
	EVP_MAC_CTX_free(ctx);
	return ok;
}

/* The slot of caller `name`'s failures (open addressing from a hash of the
 * name, compared whole: two callers never share a budget). A new name takes
 * the first free slot, or one whose window is over; with every slot held
 * by another caller's failures of this window it shares its home slot.
 * Under lock. */
static size_t fail_bucket(const char *name, long long now)
{
	unsigned h = 2166136261u; /* FNV-1a: spreads configured names, nothing secret */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	size_t home = h % FAIL_BUCKETS, spare = FAIL_BUCKETS;
	for (size_t i = 0; i < FAIL_BUCKETS; i++) {
		size_t k = (home + i) % FAIL_BUCKETS;
		struct fbucket *b = &fails[k];
		if (!b->name[0]) {
			spare = spare < FAIL_BUCKETS ? spare : k;
			break; /* the name is not further on */
		}
		if (strncmp(b->name, name, sizeof b->name) == 0)
			return k;
		if (spare == FAIL_BUCKETS && now - b->window_start_ms >= CALLER_FAIL_WINDOW_MS)
			spare = k;
	}
	if (spare == FAIL_BUCKETS)
		return home;
	struct fbucket *b = &fails[spare];
	snprintf(b->name, sizeof b->name, "%s", name);
	b->window_start_ms = now;
	b->n = 0;
	return spare;
}

/* Start a new failure window when the last one is over. Under lock. */
static void window(struct fbucket *b, long long now)
{
	if (now - b->window_start_ms >= CALLER_FAIL_WINDOW_MS) {
		b->window_start_ms = now;
		b->n = 0;
	}
}

/* The two slots a key may use (a 2-way set): a wrong password then never
 * pushes out a verified one that shares its first slot. */
static struct vslot *set_of(const unsigned char mac[SHA256_DIGEST_LENGTH])
{
	return &cache[((mac[0] | (unsigned)mac[1] << 8) % CACHE_SLOTS) & ~1u];
}

/* 1 known good, 0 known bad, -1 unknown. Under lock. */
static int cache_get(const unsigned char mac[SHA256_DIGEST_LENGTH], long long now)
{
	const struct vslot *set = set_of(mac);
	for (int i = 0; i < 2; i++)
		if (set[i].until_ms > now && CRYPTO_memcmp(set[i].mac, mac, SHA256_DIGEST_LENGTH) == 0)
			return set[i].ok ? 1 : 0;
	return -1;
}

/* Into the key's own slot, else a free or expired one, else a wrong
 * password's, else the first; a wrong password never replaces a live
 * verified one (it is then not remembered: its retry costs a check). */
static void cache_put(const unsigned char mac[SHA256_DIGEST_LENGTH], bool ok, long long now)
{
	struct vslot *set = set_of(mac), *s = NULL;
	for (int i = 0; i < 2 && !s; i++)
		if (set[i].until_ms > now && CRYPTO_memcmp(set[i].mac, mac, SHA256_DIGEST_LENGTH) == 0)
			s = &set[i];
	for (int i = 0; i < 2 && !s; i++)
		if (set[i].until_ms <= now)
			s = &set[i];
	for (int i = 0; i < 2 && !s; i++)
		if (!set[i].ok)
			s = &set[i];
	if (!s && !ok)
		return;
	if (!s)
		s = &set[0];
	memcpy(s->mac, mac, SHA256_DIGEST_LENGTH);
	s->ok = ok;
	s->until_ms = now + (ok ? OK_TTL_MS : BAD_TTL_MS);
}

/* In flight: the key of each verification queued (one job per key). Under lock. */
static bool inflight_has(const unsigned char mac[SHA256_DIGEST_LENGTH])
{
	for (size_t i = 0; i < n_inflight; i++)
		if (CRYPTO_memcmp(inflight[i], mac, SHA256_DIGEST_LENGTH) == 0)
			return true;
	return false;
}

static void inflight_drop(const unsigned char mac[SHA256_DIGEST_LENGTH])
{
	for (size_t i = 0; i < n_inflight; i++)
		if (CRYPTO_memcmp(inflight[i], mac, SHA256_DIGEST_LENGTH) == 0) {
			memcpy(inflight[i], inflight[--n_inflight], SHA256_DIGEST_LENGTH);
			explicit_bzero(inflight[n_inflight], SHA256_DIGEST_LENGTH);
			return;
		}
}

/* The verifier thread's answer for a job password_ok queued (tag: the
 * caller's failure bucket). The job had reserved a failure in both
 * budgets: a good password gives it back (to the current window, which
 * may be a later one: at most one failure too few is counted). */
static void verified(const unsigned char key[VERIFIER_KEY_LEN], unsigned tag, bool ok)
{
	long long now = clock_now_ms();
	pthread_mutex_lock(&lock);
	cache_put(key, ok, now);
	inflight_drop(key);
	struct fbucket *fb = &fails[tag % FAIL_BUCKETS];
	if (ok && fb->n)
		fb->n--;
	if (ok && fails_all.n)
		fails_all.n--;
	pthread_mutex_unlock(&lock);
	metrics_caller_verification(ok ? METRICS_VERIFY_OK : METRICS_VERIFY_BAD);
}

/*
 * Does (user, pass) sign in as c? PW_OK or PW_BAD from the cache (or,
 * with no verifier thread, from an inline crypt); else a job is queued
 * (or already is) and PW_PENDING, or PW_BUSY when the queue is full.
 * Budgets as caller.h says: a queued job counts as a failure until it
 * proves good.
 */
static enum pw password_ok(const struct caller_cfg *c, const char *user, const char *pass, long long now,
			   const char **why)
{
	unsigned char mac[SHA256_DIGEST_LENGTH];
	enum pw r = PW_BAD;
	int known;

	*why = "the Basic password does not match";
	if (!mac_of(c, user, pass, mac))
		return PW_BAD;
	bool async = verifier_running();
	pthread_mutex_lock(&lock);
	size_t bucket = fail_bucket(c->name, now);
	known = cache_get(mac, now);
	struct fbucket *fb = &fails[bucket];
	window(fb, now);
	window(&fails_all, now);
	bool budget = fb->n < CALLER_FAIL_BURST && fails_all.n < CALLER_FAIL_GLOBAL;
	if (known >= 0) {
		r = known == 1 ? PW_OK : PW_BAD;
	} else if (async && inflight_has(mac)) {
		r = PW_PENDING; /* another request queued this very check: wait for it */
	} else if (!budget) {
		*why = "too many wrong Basic passwords for this caller: try again in a few seconds";
	} else if (async && n_inflight < VERIFIER_QUEUE_MAX) {
		memcpy(inflight[n_inflight++], mac, SHA256_DIGEST_LENGTH);
		fb->n++; /* reserved: verified() gives it back when the password is good */
		fails_all.n++;
		r = PW_QUEUE;
	} else {
		r = async ? PW_BUSY : PW_INLINE;
	}
	pthread_mutex_unlock(&lock);
	if (r == PW_QUEUE) {
		r = PW_PENDING;
		if (verifier_submit(pass, c->basic_password_hash, mac, (unsigned)bucket, verified) < 0) {
			pthread_mutex_lock(&lock);
			inflight_drop(mac);
			fb->n -= fb->n > 0;
			fails_all.n -= fails_all.n > 0;
			pthread_mutex_unlock(&lock);
			r = PW_BUSY;
		}
	} else if (r == PW_INLINE) { /* no verifier thread: unit tests and fuzzing, never the daemon */
		bool ok = verifier_crypt_ok(pass, c->basic_password_hash);
		pthread_mutex_lock(&lock);
		cache_put(mac, ok, now);
		fb->n += !ok;
		fails_all.n += !ok;
		pthread_mutex_unlock(&lock);
		r = ok ? PW_OK : PW_BAD;
	}
	if (r == PW_BUSY) {
		*why = "too many Basic passwords are waiting to be checked: try again in a second";
		metrics_caller_verification(METRICS_VERIFY_REFUSED);
	}
	explicit_bzero(mac, sizeof mac);
	return r;
}

void caller_cache_reset(void)
{
	pthread_mutex_lock(&lock);
	memset(cache, 0, sizeof cache);
	memset(fails, 0, sizeof fails);
	memset(&fails_all, 0, sizeof fails_all);
	/* inflight stays: its jobs are still queued, and verified() drops each */
	pthread_mutex_unlock(&lock);
}

/* ---- recognition ---------------------------------------------------------------- */

static bool key_equal(const char *got, const char *want)
{
	unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)got, strlen(got), a);
	SHA256((const unsigned char *)want, strlen(want), b);
	return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

/* Every recognition key c sets matches (the password last: it is the costly one). */
static enum pw matches(const struct caller_cfg *c, const struct caller_input *in, const char *user, const char *pass,
		       bool basic, const char **why)
{
	if (c->allow_from.n && (!in->peer || !cidr_list_match(&c->allow_from, in->peer)))
		return PW_BAD;
	if (c->tls_client_subject && (!in->tls_subject || strcmp(c->tls_client_subject, in->tls_subject) != 0))
		return PW_BAD;
	if (c->inbound_key && (!in->key || !key_equal(in->key, c->inbound_key)))
		return PW_BAD;
	if (!c->basic_user)
		return PW_OK;
	if (!basic || strcmp(user, c->basic_user) != 0)
		return PW_BAD;
	return password_ok(c, user, pass, in->now_ms, why);
}

enum caller_verdict caller_recognise(const struct config *cfg, const struct route_cfg *route,
				     const struct caller_input *in, const struct caller_cfg **out, const char **why)
{
	char user[CALLER_BASIC_MAX], pass[CALLER_BASIC_MAX];
	bool basic = caller_basic_parse(in->authorization, user, pass) == 0, wants_basic = false;
	size_t n = route && route->n_callers ? route->n_callers : cfg->n_callers;
	enum caller_verdict v;

	*out = NULL;
	*why = in->authorization && !basic && strncasecmp(in->authorization, "Basic", 5) == 0
		   ? "the Authorization: Basic header is malformed"
		   : "no caller of this route matches the request";
	for (size_t i = 0; i < n; i++) {
		const struct caller_cfg *c = &cfg->callers[route && route->n_callers ? route->callers[i] : i];
		wants_basic |= c->basic_user != NULL;
		enum pw m = matches(c, in, user, pass, basic, why);
		if (m == PW_OK)
			*out = c;
		if (m != PW_BAD) { /* a later caller is not looked at before this one's answer */
			v = m == PW_OK ? CALLER_OK : m == PW_PENDING ? CALLER_PENDING : CALLER_BUSY;
			goto done;
		}
	}
	if (!route || !route->n_callers)
		v = CALLER_ANONYMOUS;
	else
		v = wants_basic ? CALLER_UNAUTHORIZED : CALLER_FORBIDDEN;
done:
	explicit_bzero(user, sizeof user);
	explicit_bzero(pass, sizeof pass);
	return v;
}

const struct route_cfg *caller_route(const struct config *cfg, const struct caller_cfg *c,
				     const struct route_cfg *route)
{
	uintptr_t p = (uintptr_t)route, base = (uintptr_t)cfg->routes;
	if (!c || !route || !c->routes || p < base || p >= base + cfg->n_routes * sizeof *route)
		return route;
	return &c->routes[(p - base) / sizeof *route];
}
