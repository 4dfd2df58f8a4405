/*
 * multipart.h - a reader of OData $batch request bodies (multipart/mixed,
 * RFC 2046 5.1; OData 4.0 Part 1 11.7): finds the request-target of every
 * application/http part, nested changesets included, so that rewrite.c can
 * map the public URLs a client wrote into them. A pure parser over a
 * complete body in memory: it allocates nothing and changes nothing.
 */
#ifndef S2S_MULTIPART_H
#define S2S_MULTIPART_H

#include <stddef.h>

#define MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 5.1.1 */
#define MULTIPART_DEPTH        2  /* a batch, and changesets inside it */

/* Called for each request-target, in body order: body[off..off+len). */
typedef void (*multipart_target_fn)(void *ud, size_t off, size_t len);

/*
 * The boundary of a "multipart/mixed; boundary=..." Content-Type value
 * (quoted or not) into out (MULTIPART_BOUNDARY_MAX + 1 bytes). Returns
 * its length, or 0 when the type is another or the boundary is missing or
 * not RFC 2046's.
 */
size_t multipart_boundary(const char *ctype, char *out);

/*
 * Walk body[0..len) split by `boundary`: every part must be application/http
 * holding "METHOD SP target SP HTTP/1.x" first, or a multipart/mixed
 * changeset of such parts (one level). Returns 0 when the whole body is
 * well-formed, else -1 with *why set to a static reason; cb may have been
 * called for parts before the fault, so callers act only on 0.
 */
int multipart_targets(const char *body, size_t len, const char *boundary, multipart_target_fn cb, void *ud,
		      const char **why);

#endif
