/*
 * utf8.h - UTF-8 validation shared by the log writer and the problem+json
 * renderer, which both replace invalid bytes rather than pass them on.
 */
#ifndef S2S_UTF8_H
#define S2S_UTF8_H

#include <stddef.h>

/*
 * Length of the well-formed UTF-8 sequence at s (n bytes available): 1..4,
 * or 0 when the bytes there are not one (RFC 3629 section 4: no overlong
 * forms, no surrogates, nothing above U+10FFFF). n must be at least 1.
 */
size_t utf8_seq_len(const unsigned char *s, size_t n);

#endif
