/*
 * test_log.c - log.c: exact bytes of JSON and text lines (timestamp checked
 * by pattern, then replaced by "TS"), escaping, truncation, filtering, and
 * that concurrent lines never interleave.
 */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "t.h"

static int cap_rd = -1, cap_wr = -1;
static char out[2 * LOG_LINE_MAX];

/* Route the log into a non-blocking pipe. */
static void capture(enum log_level min, enum log_format fmt)
{
	int p[2];

	if (cap_rd < 0) {
		if (pipe(p) != 0)
			abort();
		cap_rd = p[0];
		cap_wr = p[1];
		fcntl(cap_rd, F_SETFL, O_NONBLOCK);
	}
	log_setup(min, fmt, cap_wr);
}

/* Everything written since the last call, NUL-terminated. */
static const char *captured(void)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(cap_rd, out + n, sizeof out - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = '\0';
	return out;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Check "DDDD-DD-DDTDD:DD:DD.DDDZ" at s + off and replace it by "TS". */
static bool norm_ts(char *s, size_t off)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	char *ts = s + off;

	if (strlen(s) < off + 24)
		return false;
	for (size_t i = 0; i < 24; i++) {
		if (pat[i] == 'd' ? !is_digit(ts[i]) : ts[i] != pat[i])
			return false;
	}
	ts[0] = 'T';
	ts[1] = 'S';
	memmove(ts + 2, ts + 24, strlen(ts + 24) + 1);
	return true;
}

static char *json_line(void)
{
	char *s = (char *)captured();
	return norm_ts(s, 7) ? s : NULL;
}

static void test_json_fields_in_order(void)
{
	struct log_line l;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	log_begin(&l, LOG_INFO, "token_acquired");
	log_str(&l, "route", "crm");
	log_int(&l, "n", -5);
	log_bool(&l, "ok", true);
	log_bool(&l, "bad", false);
	log_dbl(&l, "ms", 1.5);
	log_strn(&l, "cut", "abcdef", 3);
	log_str(&l, "absent", NULL);
	log_str(&l, NULL, "no key");
	log_end(&l);
	CHECK_STR(json_line(),
		  "{\"ts\":\"TS\",\"level\":\"info\",\"event\":\"token_acquired\",\"route\":\"crm\",\"n\":-5,"
		  "\"ok\":true,\"bad\":false,\"ms\":1.5,\"cut\":\"abc\"}\n");
	log_end(&l); /* a second end writes nothing */
	CHECK_STR(captured(), "");
}

static void test_json_timestamp_is_now_utc(void)
{
	char before[32], after[32], *line;
	struct tm tm;
	time_t t;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	t = time(NULL);
	strftime(before, sizeof before, "%Y-%m-%dT%H:%M", gmtime_r(&t, &tm));
	log_msg(LOG_INFO, "tick", "x");
	t = time(NULL);
	strftime(after, sizeof after, "%Y-%m-%dT%H:%M", gmtime_r(&t, &tm));
	line = (char *)captured();
	if (strcmp(before, after) == 0) /* not across a minute boundary */
		CHECK(strncmp(line + 7, before, strlen(before)) == 0);
	CHECK(norm_ts(line, 7));
}

static void test_json_levels_and_limits(void)
{
	struct log_line l;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	log_begin(&l, LOG_ERROR, "e");
	log_int(&l, "min", (long long)(-9223372036854775807LL - 1));
	log_int(&l, "max", 9223372036854775807LL);
	log_int(&l, "zero", 0);
	log_int(&l, "ten", -10);
	log_end(&l);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"error\",\"event\":\"e\",\"min\":-9223372036854775808,"
			       "\"max\":9223372036854775807,\"zero\":0,\"ten\":-10}\n");
	log_begin(&l, LOG_WARN, "w");
	log_dbl(&l, "nan", NAN);
	log_dbl(&l, "inf", INFINITY);
	log_dbl(&l, "third", 1.0 / 3.0);
	log_end(&l);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"warn\",\"event\":\"w\",\"nan\":null,\"inf\":null,"
			       "\"third\":0.333333333333333}\n");
	log_begin(&l, LOG_DEBUG, "d");
	log_end(&l);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"debug\",\"event\":\"d\"}\n");
}

static void test_json_escaping(void)
{
	struct log_line l;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	log_begin(&l, LOG_INFO, "ev\"x");
	log_str(&l, "k\"ey", "a\"b\\c\nd\re\tf\001g\177h\037");
	log_strn(&l, "nul", "a\0b", 3);
	log_str(&l, "utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	log_end(&l);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"info\",\"event\":\"ev\\\"x\","
			       "\"k\\\"ey\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007fh\\u001f\","
			       "\"nul\":\"a\\u0000b\",\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}\n");
}

static void test_json_invalid_utf8_replaced(void)
{
	struct log_line l;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	log_begin(&l, LOG_INFO, "u");
	log_str(&l, "lone", "a\xff");
	log_str(&l, "cont", "\x80z");
	log_str(&l, "overlong", "\xc0\xaf");
	log_str(&l, "surrogate", "\xed\xa0\x80");
	log_str(&l, "too_big", "\xf4\x90\x80\x80");
	log_str(&l, "cut", "x\xe2\x82");
	log_end(&l);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"info\",\"event\":\"u\",\"lone\":\"a\\ufffd\","
			       "\"cont\":\"\\ufffdz\",\"overlong\":\"\\ufffd\\ufffd\","
			       "\"surrogate\":\"\\ufffd\\ufffd\\ufffd\","
			       "\"too_big\":\"\\ufffd\\ufffd\\ufffd\\ufffd\",\"cut\":\"x\\ufffd\\ufffd\"}\n");
}

static void test_text_format(void)
{
	struct log_line l;
	char *s;

	capture(LOG_DEBUG, LOG_FMT_TEXT);
	log_begin(&l, LOG_INFO, "token_acquired");
	log_str(&l, "route", "crm");
	log_int(&l, "n", 42);
	log_bool(&l, "ok", true);
	log_dbl(&l, "ms", 0.25);
	log_str(&l, "sp", "has space");
	log_str(&l, "eq", "a=b");
	log_str(&l, "q", "say \"hi\"");
	log_str(&l, "empty", "");
	log_str(&l, "ctl", "a\nb\x01");
	log_str(&l, "bs", "c:\\x");
	log_str(&l, "bad", "\xff");
	log_str(&l, "bad key", "v");
	log_str(&l, "utf8", "caf\xc3\xa9");
	log_end(&l);
	s = (char *)captured();
	CHECK(norm_ts(s, 0));
	CHECK_STR(s, "TS INFO token_acquired route=crm n=42 ok=true ms=0.25 sp=\"has space\" eq=\"a=b\" "
		     "q=\"say \\\"hi\\\"\" empty=\"\" ctl=\"a\\nb\\u0001\" bs=\"c:\\\\x\" bad=\"\\ufffd\" "
		     "bad_key=v utf8=caf\xc3\xa9\n");
	log_msg(LOG_ERROR, "boom", "%d files", 3);
	s = (char *)captured();
	CHECK(norm_ts(s, 0));
	CHECK_STR(s, "TS ERROR boom msg=\"3 files\"\n");
	log_begin(&l, LOG_WARN, "w");
	log_dbl(&l, "nan", NAN);
	log_end(&l);
	s = (char *)captured();
	CHECK(norm_ts(s, 0));
	CHECK_STR(s, "TS WARN w nan=nan\n");
}

static void test_level_filter(void)
{
	struct log_line l;

	capture(LOG_WARN, LOG_FMT_JSON);
	CHECK(!log_enabled(LOG_DEBUG));
	CHECK(!log_enabled(LOG_INFO));
	CHECK(log_enabled(LOG_WARN));
	CHECK(log_enabled(LOG_ERROR));
	log_begin(&l, LOG_INFO, "quiet");
	CHECK(!l.enabled);
	log_str(&l, "k", "v");
	log_end(&l);
	log_msg(LOG_DEBUG, "quiet", "x");
	CHECK_STR(captured(), "");
	log_msg(LOG_WARN, "loud", "n=%d \"q\"", 5);
	CHECK_STR(json_line(), "{\"ts\":\"TS\",\"level\":\"warn\",\"event\":\"loud\",\"msg\":\"n=5 \\\"q\\\"\"}\n");
}

/* A cut line is still valid JSON, ends with the marker, and fits. */
static cJSON *parse_truncated(const char *s)
{
	size_t n = strlen(s);
	static const char tail[] = ",\"truncated\":true}\n";

	if (n > LOG_LINE_MAX || n < sizeof tail || strcmp(s + n - (sizeof tail - 1), tail) != 0)
		return NULL;
	return cJSON_Parse(s);
}

static bool truncated_ok(const char *s)
{
	cJSON *j = parse_truncated(s);

	cJSON_Delete(j);
	return j != NULL;
}

static void test_json_truncation(void)
{
	static char big[3 * LOG_LINE_MAX];
	struct log_line l;
	cJSON *j;
	const char *v;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	memset(big, 'a', 5000);
	big[5000] = '\0';
	log_begin(&l, LOG_INFO, "big");
	log_str(&l, "first", "1");
	log_str(&l, "v", big);
	log_int(&l, "after", 1);
	log_end(&l);
	j = parse_truncated(captured());
	CHECK(j != NULL);
	CHECK_STR(cJSON_GetObjectItem(j, "first")->valuestring, "1");
	v = cJSON_GetObjectItem(j, "v")->valuestring;
	CHECK(strlen(v) > 3900 && strspn(v, "a") == strlen(v));
	CHECK(cJSON_GetObjectItem(j, "after") == NULL);
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
	cJSON_Delete(j);
	CHECK_INT(strlen(out), LOG_LINE_MAX - 24 + 19); /* body limit + tail */
}

/* Cutting never splits an escape sequence or a UTF-8 character. */
static void test_json_truncation_unit_boundaries(void)
{
	static char big[3 * LOG_LINE_MAX];
	struct log_line l;
	cJSON *j;
	const char *v;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	for (int shift = 0; shift < 6; shift++) {
		memset(big, 0, sizeof big);
		for (size_t i = 0; i + 3 < 3 * LOG_LINE_MAX - 1; i += 3)
			memcpy(big + i, i % 2 ? "\xe2\x82\xac" : "\001\002\003", 3);
		log_begin(&l, LOG_INFO, "big");
		log_strn(&l, "pad", "xxxxxx", (size_t)shift);
		log_str(&l, "v", big);
		log_end(&l);
		j = parse_truncated(captured());
		CHECK(j != NULL);
		v = cJSON_GetObjectItem(j, "v")->valuestring;
		CHECK(v != NULL && strlen(v) > 1000);
		cJSON_Delete(j);
	}
}

static void test_key_too_long_drops_field(void)
{
	static char key[LOG_LINE_MAX + 10];
	struct log_line l;
	cJSON *j;

	capture(LOG_DEBUG, LOG_FMT_JSON);
	memset(key, 'k', sizeof key - 1);
	log_begin(&l, LOG_INFO, "k");
	log_str(&l, "a", "b");
	log_str(&l, key, "v");
	log_end(&l);
	j = parse_truncated(captured());
	CHECK(j != NULL);
	CHECK_STR(cJSON_GetObjectItem(j, "a")->valuestring, "b");
	CHECK_INT(cJSON_GetArraySize(j), 5); /* ts level event a truncated */
	cJSON_Delete(j);
}

static void test_text_truncation_and_long_msg(void)
{
	static char big[2 * LOG_LINE_MAX];
	struct log_line l;
	const char *s;
	size_t n;

	capture(LOG_DEBUG, LOG_FMT_TEXT);
	memset(big, 'b', sizeof big - 1);
	log_begin(&l, LOG_INFO, "big");
	log_str(&l, "v", big);
	log_end(&l);
	s = captured();
	n = strlen(s);
	CHECK(n <= LOG_LINE_MAX);
	CHECK_STR(s + n - 16, " truncated=true\n");
	capture(LOG_DEBUG, LOG_FMT_JSON);
	log_msg(LOG_INFO, "m", "%s", big);
	CHECK(truncated_ok(captured()));
	/* a message that fits exactly in the format buffer but not in the line */
	log_msg(LOG_INFO, "m", "%.*s", LOG_LINE_MAX - 1, big);
	CHECK(truncated_ok(captured()));
}

static void test_parse_names(void)
{
	enum log_level lv = LOG_INFO;
	enum log_format f = LOG_FMT_JSON;

	CHECK_INT(log_level_parse("debug", &lv), 0);
	CHECK_INT(lv, LOG_DEBUG);
	CHECK_INT(log_level_parse("WARN", &lv), 0);
	CHECK_INT(lv, LOG_WARN);
	CHECK_INT(log_level_parse("error", &lv), 0);
	CHECK_INT(lv, LOG_ERROR);
	CHECK_INT(log_level_parse("info", &lv), 0);
	CHECK_INT(lv, LOG_INFO);
	CHECK_INT(log_level_parse("verbose", &lv), -1);
	CHECK_INT(log_level_parse("", &lv), -1);
	CHECK_INT(log_level_parse(NULL, &lv), -1);
	CHECK_INT(lv, LOG_INFO);
	CHECK_INT(log_format_parse("text", &f), 0);
	CHECK_INT(f, LOG_FMT_TEXT);
	CHECK_INT(log_format_parse("JSON", &f), 0);
	CHECK_INT(f, LOG_FMT_JSON);
	CHECK_INT(log_format_parse("xml", &f), -1);
	CHECK_INT(log_format_parse(NULL, &f), -1);
	CHECK_STR(log_level_name(LOG_DEBUG), "debug");
	CHECK_STR(log_level_name(LOG_INFO), "info");
	CHECK_STR(log_level_name(LOG_WARN), "warn");
	CHECK_STR(log_level_name(LOG_ERROR), "error");
	CHECK_STR(log_level_name((enum log_level)42), "unknown");
}

static void test_bad_fd_is_harmless(void)
{
	log_setup(LOG_DEBUG, LOG_FMT_JSON, -1);
	log_msg(LOG_ERROR, "nowhere", "x");
	CHECK(1);
}

#define N_THREADS 8
#define N_LINES   300

static void *writer(void *arg)
{
	char filler[1500];
	long id = (long)arg;

	memset(filler, 'a' + (char)id, sizeof filler - 1);
	filler[sizeof filler - 1] = '\0';
	for (int i = 0; i < N_LINES; i++) {
		struct log_line l;
		log_begin(&l, LOG_INFO, "t");
		log_int(&l, "id", id);
		log_int(&l, "i", i);
		log_str(&l, "fill", filler);
		log_end(&l);
	}
	return NULL;
}

static bool check_thread_line(const char *line, int *counts)
{
	cJSON *j = cJSON_Parse(line);
	const cJSON *id = cJSON_GetObjectItem(j, "id"), *fill = cJSON_GetObjectItem(j, "fill");
	bool ok = cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < N_THREADS && cJSON_IsString(fill);
	char want[2] = {(char)('a' + (ok ? id->valueint : 0)), '\0'};

	ok = ok && strlen(fill->valuestring) == 1499 && strspn(fill->valuestring, want) == 1499;
	if (ok)
		counts[id->valueint]++;
	cJSON_Delete(j);
	return ok;
}

/* One write(2) per line: concurrent lines in an O_APPEND file stay whole. */
static void test_threads_do_not_interleave(void)
{
	char path[] = "/tmp/test_log_XXXXXX";
	int fd = mkstemp(path), counts[N_THREADS] = {0};
	pthread_t th[N_THREADS];
	FILE *f;
	static char line[2 * LOG_LINE_MAX];
	int bad = 0;

	CHECK(fd >= 0);
	close(fd);
	fd = open(path, O_WRONLY | O_APPEND);
	log_setup(LOG_DEBUG, LOG_FMT_JSON, fd);
	for (long i = 0; i < N_THREADS; i++)
		pthread_create(&th[i], NULL, writer, (void *)i);
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	close(fd);
	f = fopen(path, "r");
	unlink(path);
	CHECK(f != NULL);
	while (fgets(line, sizeof line, f) != NULL)
		bad += !check_thread_line(line, counts);
	fclose(f);
	CHECK_INT(bad, 0);
	for (int i = 0; i < N_THREADS; i++)
		CHECK_INT(counts[i], N_LINES);
}

/* Batching (worker threads): nothing reaches the fd before log_flush or
 * before the next line would overflow the batch; lines stay whole. */
static int count_newlines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void *batch_thread(void *arg)
{
	char msg[901];
	int *newlines = arg;
	const char *s;

	memset(msg, 'm', sizeof msg - 1);
	msg[sizeof msg - 1] = '\0';
	log_batch_begin();
	log_msg(LOG_INFO, "one", "a");
	log_msg(LOG_INFO, "two", "b");
	newlines[0] = (int)strlen(captured()); /* 0: held back */
	log_flush();
	newlines[1] = count_newlines(captured());
	for (int i = 0; i < 5; i++) /* about 970 bytes each: the fifth does not fit */
		log_msg(LOG_INFO, "big", "%s", msg);
	s = captured();
	newlines[2] = count_newlines(s);
	newlines[3] = *s && s[strlen(s) - 1] == '\n'; /* whole lines only */
	log_flush();
	newlines[4] = count_newlines(captured());
	log_flush(); /* empty: writes nothing */
	newlines[5] = (int)strlen(captured());
	return NULL;
}

static void test_batch_holds_lines_until_flush(void)
{
	pthread_t t;
	int got[6] = {-1, -1, -1, -1, -1, -1};

	capture(LOG_DEBUG, LOG_FMT_JSON);
	captured();
	CHECK_INT(pthread_create(&t, NULL, batch_thread, got), 0);
	pthread_join(t, NULL);
	CHECK_INT(got[0], 0);
	CHECK_INT(got[1], 2);
	CHECK_INT(got[2], 4);
	CHECK_INT(got[3], 1);
	CHECK_INT(got[4], 1);
	CHECK_INT(got[5], 0);
	log_msg(LOG_INFO, "main", "not batched"); /* other threads write at once */
	CHECK(strstr(captured(), "\"event\":\"main\"") != NULL);
}

int main(void)
{
	RUN(test_json_fields_in_order);
	RUN(test_json_timestamp_is_now_utc);
	RUN(test_json_levels_and_limits);
	RUN(test_json_escaping);
	RUN(test_json_invalid_utf8_replaced);
	RUN(test_text_format);
	RUN(test_level_filter);
	RUN(test_json_truncation);
	RUN(test_json_truncation_unit_boundaries);
	RUN(test_key_too_long_drops_field);
	RUN(test_text_truncation_and_long_msg);
	RUN(test_parse_names);
	RUN(test_bad_fd_is_harmless);
	RUN(test_threads_do_not_interleave);
	RUN(test_batch_holds_lines_until_flush);
	log_setup(LOG_INFO, LOG_FMT_JSON, 2);
	return T_DONE();
}
