/*
 * connto.h - the connect_to entries that can apply to one upstream.
 *
 * curl walks every CURLOPT_CONNECT_TO entry on every transfer and, for
 * each, formats the transfer's host name through its printf (byte by byte,
 * growing a buffer) to compare it. With a dozen entries that was a dozen
 * formatted strings per request. A worker keeps, per upstream host and
 * port, the list of entries that can match it (often none, and then the
 * option is not set at all); curl still does the final matching, so the
 * result is the same as handing it every entry. Worker thread only.
 */
#ifndef S2S_CONNTO_H
#define S2S_CONNTO_H

#include <curl/curl.h>

#include "config/config.h"

#define CONNTO_SLOTS 16 /* upstreams remembered per worker; others get every entry */

struct connto {
	struct curl_slist *all; /* every entry (copies), owned; NULL when there are none */
	struct connto *older;   /* owned: the lists before a reload, which transfers may still use */
	struct {
		char *host;
		unsigned port;
		struct curl_slist *list; /* owned; NULL: no entry applies */
	} slot[CONNTO_SLOTS];
	unsigned n;
};

/* Every entry of cfg (copied). 0, or -1 when out of memory (c then holds
 * nothing). */
int connto_init(struct connto *c, const struct proxy_cfg *cfg);
/* A reload: when cfg's entries differ from c's, c takes them, and the old
 * lists stay alive (in c->older) until connto_free, since transfers that
 * started with them may read them again (a retry reconnects). 0, or -1
 * when out of memory (c unchanged). */
int connto_adopt(struct connto *c, const struct proxy_cfg *cfg);
/* The entries that can apply to host:port, or NULL when none can. Out of
 * memory or out of slots: every entry (correct, only slower). */
struct curl_slist *connto_for(struct connto *c, const char *host, unsigned port);
/* Free c and every older generation. NULL-safe, idempotent. */
void connto_free(struct connto *c);

#endif
