/*
 * gatereport.h - what operators see of the gates (gate.h): Prometheus
 * series for /metrics and the closed gates for /readyz. main.c hands these
 * to the admin listener (ops/ sits below proxy/ and cannot call them). Any
 * thread; reads the gates' counters and a copy of each one's state.
 */
#ifndef S2S_GATEREPORT_H
#define S2S_GATEREPORT_H

#include <stddef.h>

/* Exposition text of every gate (malloc'd, *len bytes), or NULL. */
char *gatereport_metrics(long long now_ms, size_t *len);

/* Append one object per closed gate to the cJSON array `arr`. */
void gatereport_readyz(void *arr, long long now_ms);

#endif
