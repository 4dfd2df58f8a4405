/*
 * b64.h - base64 decoding (RFC 4648): the standard alphabet for Basic
 * credentials, the URL-safe one for JWTs. One decoder, both alphabets.
 */
#ifndef S2S_B64_H
#define S2S_B64_H

#include <stddef.h>

#define B64_URL    1u /* "-_" instead of "+/" (RFC 4648 section 5); the other pair is refused */
#define B64_STRICT 2u /* refuse an empty input and non-zero bits left over (only one encoding decodes) */

/* Decode len chars of in into out (cap bytes). Padding is optional but, when
 * present, must complete the last quantum. Returns the decoded length, or
 * -1 for a character outside the alphabet, bad padding, a lone trailing
 * character, output over cap, or what B64_STRICT refuses. */
long b64_decode(const char *in, size_t len, unsigned char *out, size_t cap, unsigned flags);

#endif
