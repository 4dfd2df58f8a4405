/*
 * test_gate.c - gate.c: Retry-After (delta-seconds, HTTP-date), the
 * Organization service's TimeSpan (hh:mm:ss, d.hh:mm:ss, xs:duration), the
 * limit an answer names, x-ms-ratelimit values, the pacing arithmetic, and
 * a gate's queue: FIFO order, closing and reopening, max_concurrent, the
 * slow start after a reopening, cancelling, budgets and the queue bound.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/gate.h"
#include "t.h"

#define NOW_S 1767225600LL /* Thu, 01 Jan 2026 00:00:00 GMT */

static void test_retry_after(void)
{
	CHECK_INT(gate_retry_after_ms("30", NOW_S), 30000);
	CHECK_INT(gate_retry_after_ms(" 0 ", NOW_S), 0);
	CHECK_INT(gate_retry_after_ms("Thu, 01 Jan 2026 00:00:42 GMT", NOW_S), 42000);
	CHECK_INT(gate_retry_after_ms("Wed, 31 Dec 2025 23:59:00 GMT", NOW_S), 0);        /* in the past */
	CHECK_INT(gate_retry_after_ms("Thursday, 01-Jan-26 00:01:00 GMT", NOW_S), 60000); /* RFC 850 */
	CHECK_INT(gate_retry_after_ms("Thu Jan  1 00:00:05 2026", NOW_S), 5000);          /* asctime */
	CHECK_INT(gate_retry_after_ms("", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms(NULL, NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("-5", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("5s", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("1.5", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("99999999999999999999", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("Thu, 01 Jan 2026 00:00:42 GMT junk", NOW_S), -1);
	CHECK_INT(gate_retry_after_ms("Thu, 01 Jan 3026 00:00:42 GMT", NOW_S), -1); /* nonsense: a year */
}

static void test_timespan(void)
{
	const char *s;
#define TS(str) (s = (str), gate_timespan_ms(s, strlen(s)))
	CHECK_INT(TS("00:00:30"), 30000);
	CHECK_INT(TS("00:05:00"), 300000);
	CHECK_INT(TS("1.02:03:04"), ((26LL * 60 + 3) * 60 + 4) * 1000);
	CHECK_INT(TS("00:00:01.5000000"), 1500);
	CHECK_INT(TS(" 00:00:02 "), 2000);
	CHECK_INT(TS("PT30S"), 30000);
	CHECK_INT(TS("PT5M"), 300000);
	CHECK_INT(TS("P1DT1H"), 90000000);
	CHECK_INT(TS("PT0.25S"), 250);
	CHECK_INT(TS("-00:00:05"), -1);
	CHECK_INT(TS("00:60:00"), -1);
	CHECK_INT(TS("24:00:00"), -1);
	CHECK_INT(TS("00:00"), -1);
	CHECK_INT(TS("P"), -1);
	CHECK_INT(TS("PT"), -1);
	CHECK_INT(TS("P1H"), -1); /* hours belong after T */
	CHECK_INT(TS("PT1.5M"), -1);
	CHECK_INT(TS("abc"), -1);
	CHECK_INT(TS(""), -1);
#undef TS
}

static void test_soap_fault(void)
{
	static const char fault[] =
	    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><s:Fault><detail>"
	    "<OrganizationServiceFault><ErrorCode>-2147015903</ErrorCode><ErrorDetails><KeyValuePairOfstringanyType>"
	    "<a:key>Retry-After</a:key><a:value i:type=\"b:TimeSpan\">00:01:10</a:value>"
	    "</KeyValuePairOfstringanyType></ErrorDetails></OrganizationServiceFault></detail></s:Fault></s:Body>"
	    "</s:Envelope>";
	static const char dur[] = "<ErrorCode>-2147015902</ErrorCode><a:key>Retry-After</a:key>"
				  "<a:value i:type=\"b:duration\">PT30S</a:value>";
	CHECK_INT(gate_soap_retry_ms(fault, sizeof fault - 1), 70000);
	CHECK_STR(gate_limit_named(fault, sizeof fault - 1), "execution_time");
	CHECK_INT(gate_soap_retry_ms(dur, sizeof dur - 1), 30000);
	CHECK_STR(gate_limit_named(dur, sizeof dur - 1), "requests");
	CHECK_INT(gate_soap_retry_ms(fault, 120), -1); /* cut before the value */
	CHECK_INT(gate_soap_retry_ms("<a:key>Retry-After</a:key><a:value/>", 36), -1);
	CHECK_INT(gate_soap_retry_ms(NULL, 0), -1);
	CHECK(gate_limit_named(NULL, 0) == NULL);
	CHECK_STR(gate_limit_named("{\"error\":{\"code\":\"0x80072326\"}}", 31), "concurrency");
	CHECK_STR(gate_limit_named("{\"error\":{\"code\":\"0x80072322\"}}", 31), "requests");
	CHECK(gate_limit_named("{\"error\":{\"code\":\"0x80040220\"}}", 31) == NULL);
}

static void test_ratelimit_value(void)
{
	CHECK_INT(gate_ratelimit_value("5999"), 5999);
	CHECK_INT(gate_ratelimit_value("1,200,000.00"), 1200000);
	CHECK_INT(gate_ratelimit_value("0.00"), 0);
	CHECK_INT(gate_ratelimit_value(""), -1);
	CHECK_INT(gate_ratelimit_value("12a"), -1);
	CHECK_INT(gate_ratelimit_value("1.2.3"), -1);
	CHECK_INT(gate_ratelimit_value("9999999999999999999"), -1);
}

static void test_pacing(void)
{
	CHECK_INT(gate_effective_cap(0, 0), 0);
	CHECK_INT(gate_effective_cap(52, 0), 52);
	CHECK_INT(gate_effective_cap(0, 4), 4);
	CHECK_INT(gate_effective_cap(52, 4), 4);
	CHECK_INT(gate_effective_cap(3, 16), 3);
	unsigned ss = 1, steps = 0;
	while (ss) {
		ss = gate_slow_start_next(ss);
		steps++;
	}
	CHECK_INT(steps, 6); /* 1 2 4 8 16 32, then over */
	CHECK_INT(gate_slow_start_next(0), 0);
}

static int woken;
static void on_wake(void *arg)
{
	(void)arg;
	woken++;
}

static void ticket(struct gate_ticket *t, unsigned cap)
{
	memset(t, 0, sizeof *t);
	t->wake = on_wake;
	t->cap = cap;
}

static void test_queue_order_and_cap(void)
{
	struct gate *g = gate_get("cred-a", "org.crm4.dynamics.com");
	struct gate_ticket t[4];
	long long w;
	CHECK(g != NULL);
	CHECK(gate_get("cred-a", "org.crm4.dynamics.com") == g);
	CHECK(gate_get("cred-b", "org.crm4.dynamics.com") != g);
	for (int i = 0; i < 4; i++)
		ticket(&t[i], 2);
	woken = 0;
	CHECK_INT(gate_enter(g, &t[0], 1000, 5000, 10, &w), GATE_GO);
	CHECK_INT(gate_enter(g, &t[1], 1000, 5000, 10, &w), GATE_GO);
	CHECK_INT(gate_enter(g, &t[2], 1000, 5000, 10, &w), GATE_WAIT); /* max_concurrent 2 */
	CHECK_INT(gate_enter(g, &t[3], 1000, 5000, 1, &w), GATE_FULL);  /* a queue of one */
	CHECK_INT(gate_enter(g, &t[3], 1000, 5000, 10, &w), GATE_WAIT);
	gate_release(g, 1100);
	CHECK(atomic_load(&t[2].granted)); /* first in, first out */
	CHECK(!atomic_load(&t[3].granted));
	CHECK_INT(woken, 1);
	CHECK(!gate_cancel(g, &t[3])); /* leaves the queue, nothing held */
	gate_release(g, 1200);
	gate_release(g, 1200);
	struct gate_view v;
	for (size_t i = 0; i < gate_count(); i++)
		if (gate_view(i, 1200, &v) && strcmp(v.credential, "cred-a") == 0) {
			CHECK_INT(v.inflight, 0);
			CHECK_INT(v.queued, 0);
			CHECK_INT(v.held, 2);
		}
}

static void test_close_reopen_and_slow_start(void)
{
	struct gate *g = gate_get("cred-c", "api.businesscentral.dynamics.com");
	struct gate_ticket t[8];
	long long w;
	unsigned queued = 0;
	for (int i = 0; i < 8; i++)
		ticket(&t[i], 0);
	CHECK(gate_close(g, 1000, 2000, "requests"));
	CHECK(!gate_close(g, 1500, 1000, NULL)); /* already closed: no second log line, no shorter wait */
	CHECK_INT(gate_reopen_at(g), 3000);
	CHECK_INT(gate_enter(g, &t[0], 1600, 1000, 10, &w), GATE_TOO_LONG);
	CHECK_INT(w, 1400);
	for (int i = 0; i < 8; i++)
		CHECK_INT(gate_enter(g, &t[i], 1600, 5000, 10, &w), GATE_WAIT);
	CHECK_INT(gate_service(g, 2999), -1);
	CHECK(!atomic_load(&t[0].granted));
	CHECK_INT(gate_service(g, 3000), 2000); /* open after 2 s closed */
	CHECK_INT(gate_opened(g, &queued), 2000);
	CHECK_INT(queued, 7);
	CHECK_INT(gate_opened(g, &queued), -1); /* reported once */
	CHECK(atomic_load(&t[0].granted));      /* the slow start lets one go ... */
	CHECK(!atomic_load(&t[1].granted));
	gate_success(g, 3100); /* ... then two */
	CHECK(atomic_load(&t[1].granted));
	CHECK(!atomic_load(&t[2].granted));
	gate_success(g, 3100); /* then four */
	CHECK(atomic_load(&t[3].granted));
	CHECK(!atomic_load(&t[4].granted));
	CHECK(gate_cancel(g, &t[3])); /* granted already: the caller holds a slot */
	for (int i = 0; i < 4; i++)
		gate_release(g, 3200);
	for (int i = 4; i < 8; i++)
		CHECK(atomic_load(&t[i].granted));
	for (int i = 4; i < 8; i++)
		gate_release(g, 3300);
}

int main(void)
{
	RUN(test_retry_after);
	RUN(test_timespan);
	RUN(test_soap_fault);
	RUN(test_ratelimit_value);
	RUN(test_pacing);
	RUN(test_queue_order_and_cap);
	RUN(test_close_reopen_and_slow_start);
	return T_DONE();
}
