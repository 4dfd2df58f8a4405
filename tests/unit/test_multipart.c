/*
 * test_multipart.c - the $batch body reader: boundaries from Content-Type,
 * request-targets of plain parts and of changesets (as dynamics-web-api and
 * the Dataverse docs write them), and malformed bodies refused whole.
 */
#include <string.h>

#include "http/multipart.h"
#include "t.h"

struct seen {
	char targets[8][128];
	int n;
	const char *body;
};

static void on_target(void *ud, size_t off, size_t len)
{
	struct seen *s = ud;
	if (s->n < 8 && len < sizeof s->targets[0]) {
		memcpy(s->targets[s->n], s->body + off, len);
		s->targets[s->n][len] = '\0';
	}
	s->n++;
}

static int walk(const char *body, const char *boundary, struct seen *s, const char **why)
{
	memset(s, 0, sizeof *s);
	s->body = body;
	return multipart_targets(body, strlen(body), boundary, on_target, s, why);
}

static void test_boundary(void)
{
	char b[MULTIPART_BOUNDARY_MAX + 1];
	CHECK_INT(multipart_boundary("multipart/mixed;boundary=batch_1", b), 7);
	CHECK_STR(b, "batch_1");
	CHECK_INT(multipart_boundary("Multipart/Mixed; charset=x; boundary=\"a b'c\"", b), 5);
	CHECK_STR(b, "a b'c");
	CHECK_INT(multipart_boundary("multipart/mixed; boundary = x ; y=z", b), 1);
	CHECK_INT(multipart_boundary("multipart/mixed", b), 0);
	CHECK_INT(multipart_boundary("application/json; boundary=x", b), 0);
	CHECK_INT(multipart_boundary("multipart/mixed; boundary=\"unterminated", b), 0);
	CHECK_INT(multipart_boundary("multipart/mixed; boundary=a\"b", b), 0);
	CHECK_INT(multipart_boundary(NULL, b), 0);
	CHECK_INT(multipart_boundary("multipart/mixed; boundary=01234567890123456789012345678901234567890123456789"
				     "012345678901234567890",
				     b),
		  0); /* 71 characters */
}

/* The shape dynamics-web-api sends: a leading CRLF, a GET, a changeset with
 * a Content-ID reference, no body after the last request. */
static const char dwa[] =
    "\r\n--dwa_batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    "\r\nGET http://127.0.0.1:8080/dataverse/api/data/v9.2/accounts?$select=name HTTP/1.1\r\n"
    "Accept: application/json\r\n"
    "\r\n--dwa_batch_1\r\nContent-Type: multipart/mixed;boundary=changeset_2\r\n"
    "\r\n--changeset_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    "Content-ID: 100001\r\n\r\nPOST http://127.0.0.1:8080/dataverse/api/data/v9.2/accounts HTTP/1.1\r\n"
    "Content-Type: application/json\r\n\r\n{\"name\":\"--dwa_batch_1 in a value\"}"
    "\r\n--changeset_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    "Content-ID: 100002\r\n\r\nPATCH $100001 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}"
    "\r\n--changeset_2--"
    "\r\n--dwa_batch_1\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1"
    "\r\n--dwa_batch_1--\r\n";

static void test_targets(void)
{
	struct seen s;
	const char *why = "unset";
	CHECK_INT(walk(dwa, "dwa_batch_1", &s, &why), 0);
	CHECK(why == NULL);
	CHECK_INT(s.n, 4);
	CHECK_STR(s.targets[0], "http://127.0.0.1:8080/dataverse/api/data/v9.2/accounts?$select=name");
	CHECK_STR(s.targets[1], "http://127.0.0.1:8080/dataverse/api/data/v9.2/accounts");
	CHECK_STR(s.targets[2], "$100001");
	CHECK_STR(s.targets[3], "accounts");
}

static void test_lf_only_and_preamble(void)
{
	struct seen s;
	const char *why;
	const char *body = "preamble text\n--b\nContent-Type: application/http\n\nDELETE /api/x(1) HTTP/1.1\n\n"
			   "--b--\nepilogue";
	CHECK_INT(walk(body, "b", &s, &why), 0);
	CHECK_INT(s.n, 1);
	CHECK_STR(s.targets[0], "/api/x(1)");
}

static void test_malformed(void)
{
	static const char *const bad[] = {
	    "",
	    "no delimiter at all",
	    "--b\r\nContent-Type: application/http\r\n\r\nGET /x HTTP/1.1\r\n", /* no close */
	    "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n",        /* not a request */
	    "--b\r\nContent-Type: application/http\r\n\r\nGET /x\r\n--b--\r\n", /* no version */
	    "--b\r\nContent-Type: application/http\r\n\r\nGET  HTTP/1.1\r\n--b--\r\n",
	    "--b\r\nContent-Type: application/http\r\nno colon\r\n\r\nGET /x HTTP/1.1\r\n--b--\r\n",
	    "--b\r\nContent-Type: application/http\r\n", /* header block cut */
	    "--b trailing\r\nContent-Type: application/http\r\n\r\nGET /x HTTP/1.1\r\n--b--\r\n",
	    "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: multipart/mixed; "
	    "boundary=d\r\n\r\n--d\r\nContent-Type: application/http\r\n\r\nGET /x "
	    "HTTP/1.1\r\n--d--\r\n--c--\r\n--b--\r\n",
	    "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: application/http\r\n\r\n"
	    "GET /x HTTP/1.1\r\n--b--\r\n", /* changeset never closed */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct seen s;
		const char *why = NULL;
		if (walk(bad[i], "b", &s, &why) != -1 || why == NULL)
			T_FAIL("case %zu accepted", i);
	}
	struct seen s;
	const char *why = NULL;
	CHECK_INT(walk(dwa, "", &s, &why), -1);
	CHECK_INT(walk(dwa, "x\"y", &s, &why), -1);
}

int main(void)
{
	RUN(test_boundary);
	RUN(test_targets);
	RUN(test_lf_only_and_preamble);
	RUN(test_malformed);
	return T_DONE();
}
