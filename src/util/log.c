/*
 * log.c - structured logging: one event per line, JSON (RFC 8259) or
 * logfmt-style text.
 *
 * Every line is assembled in the caller's struct log_line and handed to the
 * kernel with one write(2). LOG_LINE_MAX equals PIPE_BUF on Linux, so lines
 * written to a pipe are atomic and lines from concurrent threads never mix;
 * no lock is needed. The only globals are set by log_setup() before any
 * thread starts and only read afterwards.
 *
 * The buffer always keeps LOG_TAIL_RESERVE bytes free for the line ending and
 * the truncation marker, so a cut line is still one valid JSON object.
 */
#include "util/log.h"
#include "util/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Longest tail: ,"truncated":true}\n (19 bytes) or " truncated=true\n". */
#define LOG_TAIL_RESERVE 24
#define LOG_BODY_MAX     (LOG_LINE_MAX - LOG_TAIL_RESERVE)

static enum log_level log_min_level = LOG_INFO;
static enum log_format log_fmt = LOG_FMT_JSON;
static int log_fd = 2;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
static const char *const log_level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char log_hex[] = "0123456789abcdef";

void log_setup(enum log_level min_level, enum log_format format, int fd)
{
	log_min_level = min_level;
	log_fmt = format;
	log_fd = fd;
}

bool log_enabled(enum log_level level)
{
	return level >= log_min_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < sizeof log_level_names / sizeof log_level_names[0]; i++) {
		if (strcasecmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
	if (s == NULL)
		return -1;
	if (strcasecmp(s, "json") == 0)
		*out = LOG_FMT_JSON;
	else if (strcasecmp(s, "text") == 0)
		*out = LOG_FMT_TEXT;
	else
		return -1;
	return 0;
}

const char *log_level_name(enum log_level level)
{
	if ((unsigned)level > LOG_ERROR)
		return "unknown";
	return log_level_names[level];
}

/* ---- Appending. Every append is all-or-nothing against a limit. ---- */

static bool put_lim(struct log_line *l, const char *s, size_t n, size_t limit)
{
	if (l->len > limit || n > limit - l->len)
		return false;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return true;
}

static bool put(struct log_line *l, const char *s, size_t n)
{
	return put_lim(l, s, n, LOG_BODY_MAX);
}
static bool puts_(struct log_line *l, const char *s)
{
	return put(l, s, strlen(s));
}

/*
 * Escape one unit of s (a byte or a UTF-8 sequence) into out; returns the
 * bytes consumed from s and sets *out_len. Shared by both formats: control
 * characters and DEL as \n, \r, \t or \u00XX (so a log line can never be
 * split or drive a terminal), invalid UTF-8 bytes as \ufffd.
 */
static size_t escape_unit(const unsigned char *s, size_t n, char out[8], size_t *out_len)
{
	unsigned char c = s[0];
	size_t seq;

	*out_len = 2;
	out[0] = '\\';
	switch (c) {
	case '"':
		out[1] = '"';
		return 1;
	case '\\':
		out[1] = '\\';
		return 1;
	case '\n':
		out[1] = 'n';
		return 1;
	case '\r':
		out[1] = 'r';
		return 1;
	case '\t':
		out[1] = 't';
		return 1;
	default:
		break;
	}
	if (c < 0x20 || c == 0x7F) {
		memcpy(out, "\\u00", 4);
		out[4] = log_hex[c >> 4];
		out[5] = log_hex[c & 0xF];
		*out_len = 6;
		return 1;
	}
	seq = utf8_seq_len(s, n);
	if (seq == 0) {
		memcpy(out, "\\ufffd", 6);
		*out_len = 6;
		return 1;
	}
	memcpy(out, s, seq);
	*out_len = seq;
	return seq;
}

/*
 * Append s[0..n) escaped, leaving room for the closing quote. A value that
 * does not fit is cut at a unit boundary and the line marked truncated.
 */
static void put_escaped(struct log_line *l, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	char unit[8];
	size_t ulen;

	while (n > 0) {
		size_t run = 0; /* printable ASCII other than '"' and '\\': copied as they are */
		while (run < n && p[run] >= 0x20 && p[run] < 0x7F && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > 0) {
			size_t room = l->len < LOG_BODY_MAX - 1 ? LOG_BODY_MAX - 1 - l->len : 0;
			size_t k = run < room ? run : room;
			memcpy(l->buf + l->len, p, k);
			l->len += k;
			if (k < run) {
				l->truncated = true;
				return;
			}
			p += run;
			n -= run;
			continue;
		}
		size_t used = escape_unit(p, n, unit, &ulen);
		if (!put_lim(l, unit, ulen, LOG_BODY_MAX - 1)) {
			l->truncated = true;
			return;
		}
		p += used;
		n -= used;
	}
}

/* Text format: a value is quoted when it is empty or would be ambiguous. */
static bool text_needs_quotes(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	if (n == 0)
		return true;
	for (size_t i = 0; i < n;) {
		size_t seq = utf8_seq_len(p + i, n - i);
		if (seq == 0 || p[i] <= ' ' || p[i] == '"' || p[i] == '=' || p[i] == '\\' || p[i] == 0x7F)
			return true;
		i += seq;
	}
	return false;
}

/* Text-format keys and event names are identifiers from our code; anything
 * that could break the key=value grammar becomes '_'. */
static bool put_text_name(struct log_line *l, const char *s)
{
	size_t n = strlen(s);
	size_t start = l->len;

	if (!put(l, s, n))
		return false;
	for (size_t i = start; i < l->len; i++) {
		unsigned char c = (unsigned char)l->buf[i];
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7F)
			l->buf[i] = '_';
	}
	return true;
}

/* Open a field: `,"key":` or ` key=`. On failure the line is left as before. */
static bool field_open(struct log_line *l, const char *key, size_t min_value)
{
	size_t mark = l->len;
	bool ok;

	if (log_fmt == LOG_FMT_TEXT) {
		ok = put(l, " ", 1) && put_text_name(l, key) && put(l, "=", 1);
	} else {
		ok = put(l, ",\"", 2);
		if (ok) {
			put_escaped(l, key, strlen(key));
			ok = !l->truncated && put(l, "\":", 2);
		}
	}
	if (ok && LOG_BODY_MAX - l->len < min_value)
		ok = false;
	if (!ok) {
		l->len = mark;
		l->truncated = true;
	}
	return ok;
}

static bool field_usable(const struct log_line *l, const char *key)
{
	return l->enabled && !l->truncated && key != NULL;
}

/* ---- Lines ---- */

static void put_digits(char *out, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* RFC 3339 section 5.6 UTC timestamp with milliseconds: 24 bytes. */
static void log_timestamp(char out[24])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (gmtime_r(&ts.tv_sec, &tm) == NULL)
		memset(&tm, 0, sizeof tm);
	put_digits(out, (unsigned)(tm.tm_year + 1900) % 10000, 4);
	out[4] = '-';
	put_digits(out + 5, (unsigned)tm.tm_mon + 1, 2);
	out[7] = '-';
	put_digits(out + 8, (unsigned)tm.tm_mday, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)tm.tm_hour, 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)tm.tm_min, 2);
	out[16] = ':';
	put_digits(out + 17, (unsigned)tm.tm_sec, 2);
	out[19] = '.';
	put_digits(out + 20, (unsigned)(ts.tv_nsec / 1000000), 3);
	out[23] = 'Z';
}

void log_begin(struct log_line *l, enum log_level level, const char *event)
{
	char ts[24];

	l->len = 0;
	l->level = level;
	l->truncated = false;
	l->enabled = log_enabled(level);
	if (!l->enabled)
		return;
	if (event == NULL)
		event = "";
	log_timestamp(ts);
	if (log_fmt == LOG_FMT_TEXT) {
		put(l, ts, sizeof ts);
		put(l, " ", 1);
		puts_(l, (unsigned)level <= LOG_ERROR ? log_level_upper[level] : "UNKNOWN");
		put(l, " ", 1);
		if (!put_text_name(l, event))
			l->truncated = true;
		return;
	}
	put(l, "{\"ts\":\"", 7);
	put(l, ts, sizeof ts);
	put(l, "\",\"level\":\"", 11);
	puts_(l, log_level_name(level));
	put(l, "\",\"event\":\"", 11);
	put_escaped(l, event, strlen(event));
	put_lim(l, "\"", 1, LOG_BODY_MAX);
}

void log_strn(struct log_line *l, const char *key, const char *value, size_t n)
{
	bool quote;

	if (!field_usable(l, key) || value == NULL)
		return;
	quote = log_fmt == LOG_FMT_JSON || text_needs_quotes(value, n);
	if (!field_open(l, key, quote ? 2 : 1))
		return;
	if (quote)
		put(l, "\"", 1);
	put_escaped(l, value, n);
	if (quote)
		put_lim(l, "\"", 1, LOG_BODY_MAX); /* room was kept by put_escaped */
}

void log_str(struct log_line *l, const char *key, const char *value)
{
	if (value != NULL)
		log_strn(l, key, value, strlen(value));
}

/* A bare (unquoted, unescaped) value such as a number or a literal. */
static void put_raw_field(struct log_line *l, const char *key, const char *value)
{
	size_t n = strlen(value);

	if (!field_usable(l, key) || !field_open(l, key, n))
		return;
	put(l, value, n);
}

/* Decimal digits of value, NUL-terminated, at the end of num[24]; returns
 * the first byte. snprintf's format parsing was most of a request line's
 * cost in a profile (several numbers per request). */
static const char *decimal(long long value, char num[24])
{
	/* through unsigned: -LLONG_MIN does not fit a long long */
	unsigned long long mag = value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;
	char *p = num + 23;

	*p = '\0';
	do {
		*--p = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag != 0);
	if (value < 0)
		*--p = '-';
	return p;
}

void log_int(struct log_line *l, const char *key, long long value)
{
	char num[24];

	put_raw_field(l, key, decimal(value, num));
}

void log_bool(struct log_line *l, const char *key, bool value)
{
	put_raw_field(l, key, value ? "true" : "false");
}

void log_dbl(struct log_line *l, const char *key, double value)
{
	char num[40];

	/* JSON has no NaN or Infinity (RFC 8259 section 6). */
	if (log_fmt == LOG_FMT_JSON && !isfinite(value)) {
		put_raw_field(l, key, "null");
		return;
	}
	snprintf(num, sizeof num, "%.15g", value);
	put_raw_field(l, key, num);
}

static void log_write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(log_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere left to report a logging failure */
		p += w;
		n -= (size_t)w;
	}
}

/* The calling thread's batch (log_batch_begin); off on other threads. */
static _Thread_local struct {
	char buf[LOG_LINE_MAX];
	size_t len;
	bool on;
} log_batch;

void log_batch_begin(void)
{
	log_batch.on = true;
	log_batch.len = 0;
}

void log_flush(void)
{
	if (log_batch.len == 0)
		return;
	log_write_all(log_batch.buf, log_batch.len);
	log_batch.len = 0;
}

void log_end(struct log_line *l)
{
	const char *tail;

	if (!l->enabled)
		return;
	if (log_fmt == LOG_FMT_TEXT)
		tail = l->truncated ? " truncated=true\n" : "\n";
	else
		tail = l->truncated ? ",\"truncated\":true}\n" : "}\n";
	/* The reserve guarantees the tail fits. */
	put_lim(l, tail, strlen(tail), LOG_LINE_MAX);
	l->enabled = false; /* a second log_end is a no-op */
	if (!log_batch.on) {
		log_write_all(l->buf, l->len);
		return;
	}
	if (l->len > sizeof log_batch.buf - log_batch.len)
		log_flush();
	memcpy(log_batch.buf + log_batch.len, l->buf, l->len); /* l->len <= LOG_LINE_MAX: fits an empty batch */
	log_batch.len += l->len;
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	struct log_line l;
	char msg[LOG_LINE_MAX];
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	log_begin(&l, level, event);
	log_strn(&l, "msg", msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
	if ((size_t)n >= sizeof msg)
		l.truncated = true;
	log_end(&l);
}
