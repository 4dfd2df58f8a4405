/*
 * text.h - small string helpers used in several layers (one copy each).
 */
#ifndef S2S_TEXT_H
#define S2S_TEXT_H

#include <stddef.h>

/* The value of hex digit c (either case), or -1 when c is not one. */
int text_hexval(int c);

/* Copy src into dst (cap bytes, cap >= 1), cut to cap - 1 bytes when
 * longer; always NUL-terminated. src NULL copies "". */
void text_copy_cut(char *dst, size_t cap, const char *src);

#endif
