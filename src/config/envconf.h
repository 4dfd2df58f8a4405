/*
 * envconf.h - the configuration a container describes with its environment.
 */
#ifndef S2S_ENVCONF_H
#define S2S_ENVCONF_H

#include <stdbool.h>
#include <stdio.h>

#include "config/config.h"

/* The name of a configuration from the environment: its config.path and
 * the FILE part of its messages. Not a file: reload.c reloads it from here. */
#define ENVCONF_NAME "(environment)"
/* The file used without -c (the image's mount point) unless S2S_CONFIG names one. */
#define ENVCONF_DEFAULT_FILE "/etc/s2s-proxy/s2s-proxy.ini"

/* $S2S_CONFIG when set and not empty, else ENVCONF_DEFAULT_FILE. */
const char *envconf_file(void);

/* True when S2S_UPSTREAM is set and not empty. */
bool envconf_present(void);

/*
 * The INI text the environment describes (malloc'd, the caller frees it):
 *   [proxy]  listen       = $S2S_LISTEN        (default 127.0.0.1:8080)
 *            admin_listen = $S2S_ADMIN_LISTEN  (default 127.0.0.1:9090)
 *            log_format   = $S2S_LOG_FORMAT    (default json)
 *   [route:default] upstream = $S2S_UPSTREAM (required), audience = $S2S_AUDIENCE (if set)
 * An empty variable counts as unset. NULL, with one line per problem on
 * `errors` (may be NULL), when S2S_UPSTREAM is missing or a value holds a
 * space or a control character (it could end the line and add keys).
 */
char *envconf_text(FILE *errors);

/* envconf_text() parsed by config_load_stream() under ENVCONF_NAME; the
 * credential comes from AZURE_* as for any file without [credential:...]. */
struct config *envconf_load(FILE *errors);

#endif
