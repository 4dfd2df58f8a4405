/*
 * clock.h - the clock of every deadline and duration (parked requests,
 * client and drain timeouts, curl's timers, lingering closes, and the token
 * engine's times, which token_lookup compares with it): CLOCK_MONOTONIC in
 * ms, so a step of the system clock neither expires nor stretches them.
 * Wall time is read only where a time comes from outside (token expires_on,
 * assertion iat/exp, expiry dates) and in logs.
 */
#ifndef S2S_CLOCK_H
#define S2S_CLOCK_H

long long clock_now_ms(void);

#endif
