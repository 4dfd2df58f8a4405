/*
 * test_connto.c - connect_to entries per upstream: the matcher against
 * curl's HOST:PORT rules, the per-upstream lists (only entries that can
 * match, none -> NULL), the fallback to every entry, and a reload keeping
 * the old lists alive.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "config/config.h"
#include "config/config_syntax.h"
#include "proxy/connto.h"
#include "t.h"

static void test_matches(void)
{
	CHECK(
	    config_connect_to_matches("contoso.crm4.dynamics.com:443:10.0.0.1:443", "contoso.crm4.dynamics.com", 443));
	CHECK(
	    config_connect_to_matches("Contoso.CRM4.dynamics.com:443:10.0.0.1:443", "contoso.crm4.dynamics.com", 443));
	CHECK(
	    !config_connect_to_matches("contoso.crm4.dynamics.com:443:10.0.0.1:443", "contoso.crm.dynamics.com", 443));
	CHECK(!config_connect_to_matches("contoso.crm4.dynamics.com:443:10.0.0.1:443", "contoso.crm4.dynamics.com",
					 8443));
	CHECK(
	    !config_connect_to_matches("contoso.crm4.dynamics.co:443:10.0.0.1:443", "contoso.crm4.dynamics.com", 443));
	CHECK(config_connect_to_matches("::10.0.0.1:", "anything.example", 1));      /* any host, any port */
	CHECK(config_connect_to_matches(":443:10.0.0.1:", "anything.example", 443)); /* any host */
	CHECK(!config_connect_to_matches(":443:10.0.0.1:", "anything.example", 80));
	CHECK(config_connect_to_matches("h.example::10.0.0.1:", "h.example", 8080)); /* any port */
	CHECK(config_connect_to_matches("[::1]:443:[::2]:443", "::1", 443));
	CHECK(!config_connect_to_matches("[::1]:443:[::2]:443", "::2", 443));
	CHECK(config_connect_to_matches("h.example:99999:x:1", "h.example", 443)); /* unreadable port: curl decides */
}

static struct proxy_cfg cfg_of(const char **entries, size_t n)
{
	struct proxy_cfg p;
	memset(&p, 0, sizeof p);
	for (size_t i = 0; i < n; i++)
		p.connect_to[i].entry = (char *)entries[i];
	p.n_connect_to = n;
	return p;
}

static size_t count(const struct curl_slist *l)
{
	size_t n = 0;
	for (; l; l = l->next)
		n++;
	return n;
}

static void test_lists_per_upstream(void)
{
	const char *e[] = {"a.example:443:127.0.0.1:1001", "b.example:443:127.0.0.1:1002", ":8443:127.0.0.1:1003",
			   "login.microsoftonline.com:443:127.0.0.1:1004"};
	struct proxy_cfg p = cfg_of(e, 4);
	struct connto c;
	CHECK_INT(connto_init(&c, &p), 0);
	struct curl_slist *a = connto_for(&c, "a.example", 443);
	CHECK_INT(count(a), 1);
	CHECK_STR(a->data, e[0]);
	CHECK(connto_for(&c, "a.example", 443) == a);    /* remembered */
	CHECK(connto_for(&c, "c.example", 443) == NULL); /* none applies: no option at all */
	struct curl_slist *b8443 = connto_for(&c, "b.example", 8443);
	CHECK_INT(count(b8443), 1);
	CHECK_STR(b8443->data, e[2]);
	CHECK_INT(c.n, 3);
	connto_free(&c);
	connto_free(&c); /* idempotent */
}

static void test_no_entries_and_full_slots(void)
{
	struct proxy_cfg none = cfg_of(NULL, 0);
	struct connto c;
	CHECK_INT(connto_init(&c, &none), 0);
	CHECK(connto_for(&c, "a.example", 443) == NULL);
	connto_free(&c);

	const char *e[] = {"::127.0.0.1:1"};
	struct proxy_cfg p = cfg_of(e, 1);
	char host[32];
	CHECK_INT(connto_init(&c, &p), 0);
	for (int i = 0; i < CONNTO_SLOTS; i++) {
		snprintf(host, sizeof host, "h%d.example", i);
		CHECK_INT(count(connto_for(&c, host, 443)), 1);
	}
	CHECK(connto_for(&c, "one-more.example", 443) == c.all); /* out of slots: every entry */
	connto_free(&c);
}

static void test_reload_keeps_old_lists(void)
{
	const char *e1[] = {"a.example:443:127.0.0.1:1001"};
	const char *e2[] = {"a.example:443:127.0.0.1:2002"};
	struct proxy_cfg p1 = cfg_of(e1, 1), p2 = cfg_of(e2, 1);
	struct connto c;
	CHECK_INT(connto_init(&c, &p1), 0);
	struct curl_slist *before = connto_for(&c, "a.example", 443);
	CHECK_INT(connto_adopt(&c, &p1), 0); /* the same entries: nothing changes */
	CHECK(c.older == NULL && connto_for(&c, "a.example", 443) == before);
	CHECK_INT(connto_adopt(&c, &p2), 0);
	CHECK(c.older != NULL);
	CHECK_STR(before->data, e1[0]); /* still readable by a transfer that started before */
	CHECK_STR(connto_for(&c, "a.example", 443)->data, e2[0]);
	connto_free(&c); /* frees both generations (LSan checks) */
	CHECK(c.older == NULL && c.all == NULL);
}

int main(void)
{
	RUN(test_matches);
	RUN(test_lists_per_upstream);
	RUN(test_no_entries_and_full_slots);
	RUN(test_reload_keeps_old_lists);
	return T_DONE();
}
