/*
 * b64.c - base64 decoding (see b64.h).
 */
#include "util/b64.h"

static int b64_value(unsigned char c, unsigned flags)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == ((flags & B64_URL) ? '-' : '+'))
		return 62;
	if (c == ((flags & B64_URL) ? '_' : '/'))
		return 63;
	return -1;
}

long b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, unsigned flags)
{
	size_t data = len, o = 0, pad = 0;
	unsigned acc = 0, bits = 0;

	if (in == NULL || (out == NULL && cap > 0))
		return -1;
	while (data > 0 && in[data - 1] == '=' && pad < 2) {
		data--;
		pad++;
	}
	if ((pad > 0 && len % 4 != 0) || data % 4 == 1 || (data == 0 && (flags & B64_STRICT)))
		return -1;
	if (data / 4 * 3 + (data % 4 ? data % 4 - 1 : 0) > cap)
		return -1;
	for (size_t i = 0; i < data; i++) {
		int v = b64_value((unsigned char)in[i], flags);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if ((flags & B64_STRICT) && acc != 0)
		return -1; /* leftover bits must be zero: one encoding per value */
	return (long)o;
}
