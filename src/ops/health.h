/*
 * health.h - `s2s-proxy health`: the container's health check, in the binary.
 */
#ifndef S2S_HEALTH_H
#define S2S_HEALTH_H

/*
 * s2s-proxy health [HOST:PORT]
 * GET /healthz on the admin listener: HOST:PORT, else $S2S_ADMIN_LISTEN,
 * else 127.0.0.1:9090 (0.0.0.0 and :: are probed on loopback; [v6]:port
 * takes brackets). Exit 0 on a 200 answer, 1 otherwise (the reason on
 * stderr), 2 on a usage error. Every step is bounded by a 5 s timeout.
 * argv[0] is "health".
 */
int health_main(int argc, char **argv);

#endif
