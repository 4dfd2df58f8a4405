/* Unit tests for cidr.c: parsing, host-bit clearing, v4/v6/mapped matching. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "util/cidr.h"
#include "t.h"

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, s, &v4->sin_addr) == 1)
		v4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &v6->sin6_addr) == 1)
		v6->sin6_family = AF_INET6;
	return ss;
}

static bool allowed(const char *const *nets, size_t n, const char *client)
{
	struct cidr_list l = {0};
	for (size_t i = 0; i < n; i++) {
		struct cidr c;
		if (cidr_parse(nets[i], &c) == 0)
			cidr_list_add(&l, &c);
	}
	struct sockaddr_storage ss = addr(client);
	bool ok = cidr_list_match(&l, (struct sockaddr *)&ss);
	cidr_list_free(&l);
	return ok;
}

static void test_parse(void)
{
	struct cidr c;
	CHECK_INT(cidr_parse("10.1.2.3/8", &c), 0);
	CHECK_INT(c.family, AF_INET);
	CHECK_INT(c.prefix, 8);
	CHECK_INT(c.addr[0], 10);
	CHECK_INT(c.addr[1], 0); /* host bits cleared */
	CHECK_INT(cidr_parse("127.0.0.1", &c), 0);
	CHECK_INT(c.prefix, 32);
	CHECK_INT(cidr_parse("fd00::1/8", &c), 0);
	CHECK_INT(c.family, AF_INET6);
	CHECK_INT(c.addr[1], 0);
	CHECK_INT(cidr_parse("::1", &c), 0);
	CHECK_INT(c.prefix, 128);
	const char *bad[] = {"",
			     "10.0.0.0/33",
			     "::/129",
			     "10.0.0.0/",
			     "10.0.0/8",
			     "host.example",
			     "10.0.0.0/-1",
			     "10.0.0.0/8x",
			     "1.2.3.4/0008"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cidr_parse(bad[i], &c) == 0)
			T_FAIL("accepted %s", bad[i]);
}

static void test_match(void)
{
	const char *nets[] = {"10.0.0.0/8", "192.168.1.0/25", "fd00::/8", "127.0.0.1"};
	CHECK(allowed(nets, 4, "10.200.3.4"));
	CHECK(allowed(nets, 4, "192.168.1.127"));
	CHECK(!allowed(nets, 4, "192.168.1.128"));
	CHECK(allowed(nets, 4, "fd12:3456::1"));
	CHECK(!allowed(nets, 4, "fe80::1"));
	CHECK(allowed(nets, 4, "127.0.0.1"));
	CHECK(!allowed(nets, 4, "127.0.0.2"));
	CHECK(allowed(nets, 4, "::ffff:10.1.1.1")); /* IPv4-mapped */
	CHECK(!allowed(nets, 4, "::ffff:11.1.1.1"));
	const char *all[] = {"0.0.0.0/0"};
	CHECK(allowed(all, 1, "8.8.8.8"));
	CHECK(!allowed(all, 1, "2001:db8::1"));
	CHECK(!allowed(nets, 0, "10.0.0.1"));
}

int main(void)
{
	RUN(test_parse);
	RUN(test_match);
	return T_DONE();
}
