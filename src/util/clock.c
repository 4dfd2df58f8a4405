/*
 * clock.c - the monotonic clock of deadlines (see clock.h).
 */
#include "util/clock.h"

#include <time.h>

long long clock_now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
