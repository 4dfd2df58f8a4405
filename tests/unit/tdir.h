/*
 * tdir.h - a scratch directory for unit tests that make files (keys and
 * certificates with the openssl command line): t_dir_make once, t_path for
 * a file in it, t_sh to run a shell command inside it. Header-only and
 * static inline, so a test includes it without unused-function warnings.
 */
#ifndef S2S_TDIR_H
#define S2S_TDIR_H

#include <stdio.h>
#include <stdlib.h>

static char t_dir[64];
static char t_path_buf[8][256];

/* mkdtemp under /tmp with this name prefix; 0 or -1. */
static inline int t_dir_make(const char *prefix)
{
	snprintf(t_dir, sizeof t_dir, "/tmp/%s-XXXXXX", prefix);
	return mkdtemp(t_dir) != NULL ? 0 : -1;
}

/* "<dir>/<name>" in one of 8 rotating buffers (so up to 8 can be live at once). */
static inline const char *t_path(int slot, const char *name)
{
	snprintf(t_path_buf[slot & 7], sizeof t_path_buf[0], "%s/%s", t_dir, name);
	return t_path_buf[slot & 7];
}

/* Run cmd with the directory as its working directory; system()'s status. */
static inline int t_sh(const char *cmd)
{
	char line[2048];
	snprintf(line, sizeof line, "cd %s && %s", t_dir, cmd);
	return system(line);
}

#endif
