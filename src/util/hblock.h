/*
 * hblock.h - a libcurl header list laid out in one allocation.
 *
 * curl_slist_append allocates a node and a copy of the line for every
 * field: about twenty allocations (and as many frees) for each upstream
 * request. curl only reads a CURLOPT_HTTPHEADER list, so the list can be
 * our own memory: the caller runs its builder twice, once to measure
 * (lines and bytes) and once to fill, and the nodes and their text share
 * one block that a single free() releases.
 *
 *   struct hblock b = {0};
 *   build(&b);                   measuring: counts only
 *   if (hblock_alloc(&b) == 0)
 *       build(&b);               filling: the same calls, same order
 *   list = hblock_take(&b);      NULL if anything failed
 *   ... free(list) once curl no longer uses it.
 */
#ifndef S2S_HBLOCK_H
#define S2S_HBLOCK_H

#include <stdbool.h>
#include <stddef.h>

struct curl_slist;

struct hblock {
	struct curl_slist *nodes; /* NULL while measuring; then `want_n` nodes followed by the text */
	char *text;
	size_t len, want_len; /* bytes written (or measured) and, filling, the room */
	unsigned n, want_n;   /* lines likewise */
	bool failed;          /* out of memory, or the fill pass outgrew its measure */
};

/* One header line as curl takes it ("Name: value", "Name:" to remove one
 * curl would add, "Name;" to send it empty). */
void hblock_add(struct hblock *b, const char *line);
/* "name: value", or "name;" when value is empty (curl's spelling of an
 * empty field). */
void hblock_add_field(struct hblock *b, const char *name, const char *value);
/* End the measuring pass: allocate the block. 0, or -1 (b->failed). */
int hblock_alloc(struct hblock *b);
/* The finished list (owned by the caller: free() it), or NULL when the
 * builder failed or nothing was added; the block is then freed here. */
struct curl_slist *hblock_take(struct hblock *b);

#endif
