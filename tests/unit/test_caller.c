/* Unit tests for caller.c: Basic header parsing and caller recognition
 * against a configuration with [caller:NAME] sections. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/caller.h"
#include "util/verifier.h"
#include "util/clock.h"
#include "t.h"

#define HASH "$6$unitsalt0123$H0qMPchPhEF/iRSGlQGtMYgl3HYdsAIb6rxPDpAMti6U6szMHEoYii5RetPeVypZQlI4PqRRxlJkYMnYYGKRC1"

static const char ini[] =
    "[credential:a]\ntenant = contoso.onmicrosoft.com\n"
    "client_id = 11111111-aaaa-4bbb-8ccc-000000000001\nclient_secret = s\n"
    "[credential:b]\ntenant = contoso.onmicrosoft.com\n"
    "client_id = 22222222-aaaa-4bbb-8ccc-000000000002\nclient_secret = t\n"
    "[route:dv]\nmatch_path = /dv/\nupstream = https://contoso.crm4.dynamics.com\n"
    "credential = a\ncallers = pos, edi\n"
    "[route:open]\nmatch_path = /open/\nupstream = https://contoso.crm4.dynamics.com\ncredential = a\n"
    "[caller:pos]\nbasic_user = POS\nbasic_password_hash = " HASH "\nallow_from = 10.0.0.0/8\n"
    "[caller:edi]\ncredential = b\ninbound_key_file = /dev/null\n";

static struct config *load(void)
{
	char key[] = "/tmp/s2s-test-caller-key-XXXXXX";
	int fd = mkstemp(key);
	if (fd < 0 || write(fd, "edi-key-0123456789", 18) != 18)
		return NULL;
	close(fd);
	char text[4096];
	snprintf(text, sizeof text, "%.*s%s\n", (int)(strstr(ini, "/dev/null") - ini), ini, key);
	FILE *f = fmemopen(text, strlen(text), "r");
	struct config *cfg = f ? config_load_stream(f, "t.ini", stderr) : NULL;
	if (f)
		fclose(f);
	unlink(key);
	return cfg;
}

static int parse(const char *h, char *u, char *p)
{
	return caller_basic_parse(h, u, p);
}

static void test_basic_parse(void)
{
	char u[CALLER_BASIC_MAX], p[CALLER_BASIC_MAX];
	CHECK_INT(parse("Basic dXNlcjpwYXNz", u, p), 0); /* user:pass */
	CHECK_STR(u, "user");
	CHECK_STR(p, "pass");
	CHECK_INT(parse("basic   dXNlcjpwYXNz  ", u, p), 0); /* scheme case, spaces */
	CHECK_INT(parse("Basic dXNlcjo=", u, p), 0);         /* "user:" empty password */
	CHECK_STR(p, "");
	CHECK_INT(parse("Basic dTpwOnE=", u, p), 0); /* "u:p:q": the first ':' splits */
	CHECK_STR(p, "p:q");
}

static void test_basic_parse_refusals(void)
{
	char u[CALLER_BASIC_MAX], p[CALLER_BASIC_MAX], big[1200], hdr[1300];
	CHECK_INT(parse(NULL, u, p), -1);
	CHECK_INT(parse("Bearer dXNlcjpwYXNz", u, p), -1);
	CHECK_INT(parse("Basicx dXNlcjpwYXNz", u, p), -1);
	CHECK_INT(parse("Basic", u, p), -1);
	CHECK_INT(parse("Basic !!!!", u, p), -1);           /* bad base64 */
	CHECK_INT(parse("Basic dXNlcjpwYXN6", u, p), 0);    /* control: valid */
	CHECK_INT(parse("Basic dXNlcjpwYXNz=", u, p), -1);  /* bad padding */
	CHECK_INT(parse("Basic dXNlcjpwYXN", u, p), -1);    /* non-canonical tail bits */
	CHECK_INT(parse("Basic bm9jb2xvbg==", u, p), -1);   /* "nocolon" */
	CHECK_INT(parse("Basic OnBhc3M=", u, p), -1);       /* ":pass": empty user */
	CHECK_INT(parse("Basic dQBzOnA=", u, p), -1);       /* "u\0s:p": NUL */
	CHECK_INT(parse("Basic dTpwCnE=", u, p), -1);       /* "u:p\nq": control byte */
	CHECK_INT(parse("Basic dXNlcjpwYXNz x", u, p), -1); /* two tokens */
	memset(big, 'A', sizeof big - 1);                   /* base64 of 900 bytes of zeros-ish: too long */
	big[sizeof big - 1] = '\0';
	snprintf(hdr, sizeof hdr, "Basic %s", big);
	CHECK_INT(parse(hdr, u, p), -1);
	CHECK_STR(u, "");
	CHECK_STR(p, "");
}

static const struct sockaddr *peer(struct sockaddr_in *sa, const char *ip)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sa->sin_addr);
	return (const struct sockaddr *)sa;
}

static void test_recognise(void)
{
	struct config *cfg = load();
	const struct caller_cfg *c = NULL;
	const char *why = NULL;
	struct sockaddr_in sa;
	CHECK(cfg != NULL);
	CHECK_INT(cfg->n_callers, 2);
	const struct route_cfg *dv = &cfg->routes[0], *open = &cfg->routes[1];
	struct caller_input in = {.authorization = "Basic UE9TOmtleS0wMTIzNDU2Nzg5", .peer = peer(&sa, "10.1.2.3")};
	caller_cache_reset();
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_OK); /* POS:key-0123456789 */
	CHECK_STR(c->name, "pos");
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_OK); /* cached */
	in.peer = peer(&sa, "192.168.1.1");
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_UNAUTHORIZED); /* outside allow_from */
	in.peer = peer(&sa, "10.1.2.3");
	in.authorization = "Basic UE9TOmtleS0wMTIzNDU2Nzg4"; /* wrong key */
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_UNAUTHORIZED);
	CHECK(c == NULL);
	in.authorization = NULL;
	in.key = "edi-key-0123456789";
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_OK);
	CHECK_STR(c->name, "edi");
	in.key = "edi-key-012345678X";
	CHECK_INT(caller_recognise(cfg, dv, &in, &c, &why), CALLER_UNAUTHORIZED);
	CHECK_INT(caller_recognise(cfg, open, &in, &c, &why), CALLER_ANONYMOUS);
	CHECK(caller_route(cfg, NULL, dv) == dv);
	const struct route_cfg *v =
	    caller_route(cfg, &cfg->callers[1], dv); /* edi's view: its credential, its token source */
	CHECK_INT(v->credential, 1);
	CHECK(v->token_source != dv->token_source);
	CHECK_INT(cfg->n_token_sources, 2); /* a and b for the same audience; the open route shares a's */
	CHECK_STR(cfg->token_sources[v->token_source].resource, cfg->token_sources[dv->token_source].resource);
	config_free(cfg);
}

static void test_failure_budget(void)
{
	struct config *cfg = load();
	const struct caller_cfg *c = NULL;
	const char *why = NULL;
	struct sockaddr_in sa;
	char h[64];
	CHECK(cfg != NULL);
	caller_cache_reset();
	struct caller_input in = {.peer = peer(&sa, "10.1.2.3"), .now_ms = 1000};
	for (int i = 0; i < CALLER_FAIL_BURST + 3; i++) {
		snprintf(
		    h, sizeof h, "Basic UE9TOndyb25n%s",
		    (const char *[]){"MA==", "MQ==", "Mg==", "Mw==", "NA==", "NQ==", "Ng=="}[i]); /* "POS:wrong0".. */
		in.authorization = h;
		caller_recognise(cfg, &cfg->routes[0], &in, &c, &why);
	}
	CHECK(strstr(why, "too many") != NULL);
	in.authorization = "Basic UE9TOmtleS0wMTIzNDU2Nzg5";
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_UNAUTHORIZED); /* budget spent */
	in.now_ms += CALLER_FAIL_WINDOW_MS;
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_OK); /* next window */
	config_free(cfg);
}

/* "alpha" and "b15" share a slot of the failure table's hash (43 of 128):
 * alpha spending its budget leaves b15's whole. */
static void test_failure_budget_per_caller(void)
{
	static const char two[] = "[credential:a]\ntenant = contoso.onmicrosoft.com\n"
				  "client_id = 11111111-aaaa-4bbb-8ccc-000000000001\nclient_secret = s\n"
				  "[route:dv]\nmatch_path = /dv/\nupstream = https://contoso.crm4.dynamics.com\n"
				  "credential = a\ncallers = alpha, b15\n"
				  "[caller:alpha]\nbasic_user = A\nbasic_password_hash = " HASH "\n"
				  "[caller:b15]\nbasic_user = B\nbasic_password_hash = " HASH "\n";
	FILE *f = fmemopen((void *)two, strlen(two), "r");
	struct config *cfg = f ? config_load_stream(f, "t.ini", stderr) : NULL;
	if (f)
		fclose(f);
	CHECK(cfg != NULL);
	if (!cfg)
		return;
	const struct caller_cfg *c = NULL;
	const char *why = NULL;
	caller_cache_reset();
	struct caller_input in = {.now_ms = 1000};
	char h[64];
	for (int i = 0; i < CALLER_FAIL_BURST + 1; i++) { /* "A:wrong0".. "A:wrong4" */
		snprintf(h, sizeof h, "Basic QTp3cm9uZz%s", (const char *[]){"A=", "E=", "I=", "M=", "Q="}[i]);
		in.authorization = h;
		CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_UNAUTHORIZED);
	}
	CHECK(strstr(why, "too many") != NULL);              /* alpha's budget is spent */
	in.authorization = "Basic QjprZXktMDEyMzQ1Njc4OQ=="; /* "B:key-0123456789" */
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_OK);
	CHECK(c == &cfg->callers[1]);
	config_free(cfg);
}

static atomic_int notified;

static void on_verified(void *arg)
{
	(void)arg;
	atomic_fetch_add(&notified, 1);
}

/* Wait (up to 10 s) for the verifier to have finished n jobs. */
static bool wait_notified(int n)
{
	for (int i = 0; i < 10000 && atomic_load(&notified) < n; i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	return atomic_load(&notified) >= n;
}

/* With the verifier running the check is queued once, the callers wait
 * (CALLER_PENDING), and the result comes from the cache. */
static void test_verifier_thread(void)
{
	struct config *cfg = load();
	const struct caller_cfg *c = NULL;
	const char *why = NULL;
	struct sockaddr_in sa;
	CHECK(cfg != NULL);
	caller_cache_reset();
	verifier_stop(); /* not started: a no-op */
	atomic_store(&notified, 0);
	CHECK_INT(verifier_start(on_verified, NULL), 0);
	struct caller_input in = {.authorization = "Basic UE9TOmtleS0wMTIzNDU2Nzg5", .peer = peer(&sa, "10.1.2.3")};
	in.now_ms = clock_now_ms();
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_PENDING);
	CHECK(c == NULL);
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_PENDING); /* the same job */
	CHECK(wait_notified(1));
	in.now_ms = clock_now_ms();
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_OK);
	CHECK_STR(c->name, "pos");
	in.authorization = "Basic UE9TOmtleS0wMTIzNDU2Nzg4"; /* wrong key */
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_PENDING);
	CHECK(wait_notified(2));
	in.now_ms = clock_now_ms();
	CHECK_INT(caller_recognise(cfg, &cfg->routes[0], &in, &c, &why), CALLER_UNAUTHORIZED);
	CHECK_INT(atomic_load(&notified), 2); /* one check per distinct password */
	verifier_stop();
	CHECK(!verifier_running());
	unsigned char key[VERIFIER_KEY_LEN] = {0};
	CHECK_INT(verifier_submit("p", HASH, key, 0, NULL), -1); /* stopped: refused */
	verifier_stop();
	config_free(cfg);
}

int main(void)
{
	RUN(test_basic_parse);
	RUN(test_basic_parse_refusals);
	RUN(test_recognise);
	RUN(test_failure_budget);
	RUN(test_failure_budget_per_caller);
	RUN(test_verifier_thread);
	return T_DONE();
}
