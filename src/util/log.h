/*
 * log.h - structured logging to stderr, as JSON lines or text.
 *
 * A line is built field by field in a fixed buffer on the caller's stack and
 * written with a single write(2), so lines from different threads never
 * interleave. Values are escaped; a line that would exceed LOG_LINE_MAX is
 * cut and marked "truncated". Never pass a secret or an access token: log
 * claims and fingerprints (see jwt.h) instead.
 */
#ifndef S2S_LOG_H
#define S2S_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_LINE_MAX 4096

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FMT_JSON = 0, LOG_FMT_TEXT };

struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
	enum log_level level;
	bool enabled; /* false: level filtered out, every call is a no-op */
	bool truncated;
};

/* Set level, format and output fd (default: info, json, 2). Call before threads start. */
void log_setup(enum log_level min_level, enum log_format format, int fd);
bool log_enabled(enum log_level level);

/* Parse "debug|info|warn|error" / "json|text"; return -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level level);

/* Start a line: timestamp, level and event name ("token_acquired"). */
void log_begin(struct log_line *l, enum log_level level, const char *event);
/* Add fields. A NULL string value omits the field. */
void log_str(struct log_line *l, const char *key, const char *value);
void log_strn(struct log_line *l, const char *key, const char *value, size_t n);
void log_int(struct log_line *l, const char *key, long long value);
void log_bool(struct log_line *l, const char *key, bool value);
void log_dbl(struct log_line *l, const char *key, double value);
/* Finish the line and write it. */
void log_end(struct log_line *l);

/*
 * Batching, for threads that log at request rate (the workers): from
 * log_batch_begin on, this thread's lines are collected in a per-thread
 * buffer of LOG_LINE_MAX bytes and written by log_flush (or when the next
 * line does not fit). A batch never exceeds PIPE_BUF, so it is still one
 * atomic write and lines of different threads never mix. Call log_flush
 * before the thread sleeps and before it exits.
 */
void log_batch_begin(void);
void log_flush(void);

/* One-shot: an event with a printf-formatted "msg" field. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
