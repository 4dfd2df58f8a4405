/*
 * inventory.h - which caller still uses which protocol, and when it was
 * last seen: a small table kept in memory, written to inventory_file and
 * read back at start, so it survives restarts. `s2s-proxy inventory -c
 * FILE` prints it.
 *
 * Workers note requests (a mutex around a table update, no I/O); a thread
 * of this module writes the file (tmp + rename, so a reader never sees half
 * of it) at most once a second while something changed, and once more at
 * stop. The table holds at most INVENTORY_MAX_CALLERS callers (the least
 * recently seen is dropped for a new one), so the file stays under
 * INVENTORY_MAX_BYTES.
 */
#ifndef S2S_INVENTORY_H
#define S2S_INVENTORY_H

#include <stdio.h>

#define INVENTORY_MAX_CALLERS 128
#define INVENTORY_MAX_BYTES   (64 * 1024)
#define INVENTORY_NAME_MAX    65 /* caller names are at most 64 bytes */

/* Protocols a request used (bits 1u << value), for metrics and the inventory. */
enum inventory_proto {
	PROTO_WEB_API = 0, /* Dataverse Web API and other routes */
	PROTO_SOAP_BRIDGE, /* Organization.svc SOAP 1.2 bridged */
	PROTO_STS_FACADE,  /* the WS-Trust sign-in facade */
	PROTO_BASIC_IN,    /* the caller signed in with Authorization: Basic */
	PROTO_ODATA_V4,    /* Business Central and F&O OData */
	PROTO_COUNT,
};
extern const char *const inventory_proto_names[PROTO_COUNT];

/* Load path's state (a missing file is an empty one) and start the writer.
 * NULL path: the inventory is off (0). 0 or -1 (logged). Main thread. */
int inventory_start(const char *path);
/* A request of `caller` (NULL: no caller matched) used `protos` at wall_s. Any thread. */
void inventory_note(const char *caller, unsigned protos, long long wall_s);
/* Write what changed and stop the writer. NULL-safe, idempotent. Main thread. */
void inventory_stop(void);

/* `s2s-proxy inventory [-c FILE]`: print the table. Exit status. */
int inventory_main(int argc, char **argv);

#endif
