/*
 * health.c - `s2s-proxy health`: the container's health check, in the binary.
 *
 * HEALTHCHECK runs it in exec form, so the runtime image needs neither a
 * shell (docker/healthcheck.sh used bash's /dev/tcp) nor an HTTP client.
 * One HTTP/1.0 request on a blocking socket whose send and receive timeouts
 * bound connect, write and read alike; only the status line is looked at.
 */
#include "ops/health.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HEALTH_DEFAULT_ADDR "127.0.0.1:9090"
#define HEALTH_TIMEOUT_S    5

/* Split "HOST:PORT" / "[V6]:PORT" into host and port; a wildcard host
 * becomes loopback (the listener is there too). 0 or -1. */
static int split_addr(const char *addr, char *host, size_t hostcap, char *port, size_t portcap)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hl;

	if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) >= portcap)
		return -1;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= hostcap)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	if (hl == 0 || strcmp(host, "0.0.0.0") == 0)
		strcpy(host, "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		strcpy(host, "::1");
	return 0;
}

/* A connected socket with both timeouts set, or -1 (reason on stderr). */
static int connect_to(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	struct timeval tv = {.tv_sec = HEALTH_TIMEOUT_S, .tv_usec = 0};
	int rc = getaddrinfo(host, port, &hints, &ai);
	int fd;

	if (rc != 0) {
		fprintf(stderr, "s2s-proxy health: %s:%s: %s\n", host, port, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* Linux bounds connect() by the send timeout. */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		fprintf(stderr, "s2s-proxy health: %s:%s: %s\n", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* Send the request, read up to the end of the status line: its status or -1. */
static int status_of(int fd, const char *host)
{
	char buf[256];
	size_t have = 0;
	int n = snprintf(buf, sizeof buf, "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n", host);

	if (n < 0 || (size_t)n >= sizeof buf || write(fd, buf, (size_t)n) != n)
		return -1;
	while (have < sizeof buf - 1 && !memchr(buf, '\n', have)) {
		ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	buf[have] = '\0';
	/* "HTTP/1.x NNN reason" */
	if (strncmp(buf, "HTTP/1.", 7) != 0 || have < 13 || buf[8] != ' ' || strspn(buf + 9, "0123456789") != 3)
		return -1;
	return atoi(buf + 9);
}

int health_main(int argc, char **argv)
{
	const char *addr = getenv("S2S_ADMIN_LISTEN");
	char host[64], port[8];
	int fd, status;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: s2s-proxy health [HOST:PORT]   (default $S2S_ADMIN_LISTEN or %s)\n",
			HEALTH_DEFAULT_ADDR);
		return 2;
	}
	if (argc == 2)
		addr = argv[1];
	else if (!addr || !*addr)
		addr = HEALTH_DEFAULT_ADDR;
	if (split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
		fprintf(stderr, "s2s-proxy health: %s: not HOST:PORT\n", addr);
		return 2;
	}
	fd = connect_to(host, port);
	if (fd < 0)
		return 1;
	status = status_of(fd, host);
	close(fd);
	if (status == 200)
		return 0;
	if (status < 0)
		fprintf(stderr, "s2s-proxy health: %s:%s: no HTTP answer\n", host, port);
	else
		fprintf(stderr, "s2s-proxy health: %s:%s: /healthz answered %d\n", host, port, status);
	return 1;
}
