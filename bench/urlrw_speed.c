/*
 * urlrw_speed.c - build/bench-urlrw-speed (make bench-urlrw): how fast the
 * streaming URL rewriter (src/http/urlrw.c) runs on one core, in MB/s of
 * input. Not part of make test.
 *
 * Inputs: a 64 KiB Dataverse-like JSON page whose records carry absolute
 * URLs (JSON mode), and the same page as the body of a multipart part (TEXT
 * mode). Each is rewritten in 16 KiB input pieces into a 16 KiB output
 * buffer, as rewrite.c feeds it; the best of five rounds of 0.3 s of thread CPU time
 * per case (CPU, not wall time: the machine may be shared).
 */
#include "http/urlrw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FROM  "https://contoso.crm4.dynamics.com"
#define TO    "http://127.0.0.1:8080/dataverse"
#define PAGE  (64 * 1024)
#define PIECE (16 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU, not wall: the machine may be busy */
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A page of records until PAGE bytes; returns its length. buf holds PAGE+1. */
static size_t make_page(char *buf)
{
	size_t n = (size_t)snprintf(buf, PAGE,
				    "{\"@odata.context\":\"%s/api/data/v9.2/$metadata#accounts\",\"value\":[", FROM);
	for (unsigned i = 0;; i++) {
		char rec[768];
		int k =
		    snprintf(rec, sizeof rec,
			     "%s{\"@odata.etag\":\"W/\\\"%u\\\"\",\"@odata.id\":\"%s/api/data/v9.2/accounts(%08x-3ef0-"
			     "4a0a-bb7f-8335c2596e70)\",\"name\":\"Fourth Coffee %u\",\"revenue\":%u.25,"
			     "\"statecode\":0,\"websiteurl\":\"https://www.fourthcoffee.example/\",\"description\":"
			     "\"Coffee roaster and retailer; see the account page for contacts\","
			     "\"@odata.nextLink\":\"%s/api/data/v9.2/accounts?$skiptoken=%u\"}",
			     i ? "," : "", i, FROM, i, i, i * 1000, FROM, i);
		if (k < 0 || n + (size_t)k + 2 > PAGE)
			break;
		memcpy(buf + n, rec, (size_t)k);
		n += (size_t)k;
	}
	memcpy(buf + n, "]}", 2);
	return n + 2;
}

/* Rewrites page[0..n) once; returns the output size (checked by the caller). */
static size_t rewrite_once(struct urlrw *rw, enum urlrw_mode mode, const char *page, size_t n, char *out)
{
	size_t total = 0, at = 0, k;
	if (urlrw_init(rw, mode, FROM, TO) < 0)
		return 0;
	while (at < n) {
		size_t used = 0, end = at + PIECE < n ? at + PIECE : n;
		while (at < end) {
			total += urlrw_step(rw, page + at, end - at, &used, out, PIECE);
			at += used;
		}
	}
	while ((k = urlrw_end(rw, out, PIECE)) > 0)
		total += k;
	return total;
}

static int measure(const char *name, enum urlrw_mode mode, const char *page, size_t n)
{
	static struct urlrw rw;
	static char out[PIECE];
	size_t expect = rewrite_once(&rw, mode, page, n, out), rounds = 0;
	uint64_t rewrites = rw.rewrites;
	double best = 0;
	if (expect == 0)
		return -1;
	/* the best of 5 rounds of about 0.3 s: the machine may be shared */
	for (int round = 0; round < 5; round++) {
		double t0 = now(), t;
		rounds = 0;
		do {
			for (int i = 0; i < 16; i++, rounds++) {
				if (rewrite_once(&rw, mode, page, n, out) != expect)
					return -1;
			}
			t = now() - t0;
		} while (t < 0.3);
		double mbs = (double)n * (double)rounds / t / 1e6;
		best = mbs > best ? mbs : best;
	}
	printf("%-5s %zu bytes in, %zu out, %llu URLs per page: %.0f MB/s\n", name, n, expect,
	       (unsigned long long)rewrites, best);
	return 0;
}

int main(void)
{
	static char page[PAGE + 1], text[PAGE + 256];
	size_t n = make_page(page);
	int tn =
	    snprintf(text, sizeof text, "--batch\r\nContent-Type: application/json\r\nLocation: %s/x\r\n\r\n", FROM);
	if (tn < 0)
		return 1;
	memcpy(text + tn, page, n);
	if (measure("json", URLRW_JSON, page, n) < 0 || measure("text", URLRW_TEXT, text, (size_t)tn + n) < 0) {
		fprintf(stderr, "urlrw_speed: rewriting failed\n");
		return 1;
	}
	return 0;
}
