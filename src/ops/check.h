/*
 * check.h - `s2s-proxy check [--json] -c FILE`: for every route, acquire
 * its token, show the token's claims, compare aud/tid with the route, call
 * a harmless probe on the upstream and print one verdict per route (OK or
 * a diagnosis from diag.h with its remediation). Blocking libcurl: a CLI
 * command, run before (or instead of) the proxy, never inside it.
 */
#ifndef S2S_CHECK_H
#define S2S_CHECK_H

/* argv[0] is "check". Returns the exit status: 0 all routes pass, 1 some
 * route fails, 2 usage or configuration error. */
int check_main(int argc, char **argv);

#endif
