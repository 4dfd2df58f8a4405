/*
 * fuzz_gate.c - libFuzzer target for gate.c's parsers: Retry-After
 * (delta-seconds, HTTP-date), the TimeSpan / xs:duration of a service
 * protection fault, the fault's Retry-After and limit, x-ms-ratelimit
 * values. Bodies go in an exactly sized buffer without a NUL, so ASan traps
 * any read past len; header values (which the proxy holds NUL-terminated)
 * in a copy with one. Traps when a wait is negative (other than -1) or
 * longer than a year.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/gate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define YEAR_MS (366LL * 24 * 3600 * 1000)

static void sane(long long ms)
{
	if (ms < -1 || ms > YEAR_MS)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = malloc(size ? size : 1), *str = malloc(size + 1);
	if (!body || !str)
		goto done;
	memcpy(body, data, size);
	memcpy(str, data, size);
	str[size] = '\0';
	sane(gate_timespan_ms(body, size));
	sane(gate_soap_retry_ms(body, size));
	const char *limit = gate_limit_named(body, size);
	if (limit && strcmp(limit, "requests") && strcmp(limit, "execution_time") && strcmp(limit, "concurrency"))
		abort();
	sane(gate_retry_after_ms(str, 1767225600LL));
	if (gate_ratelimit_value(str) < -1)
		abort();
done:
	free(body);
	free(str);
	return 0;
}
