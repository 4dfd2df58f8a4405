/*
 * oauth.c - the client-credentials wire format of Microsoft Entra ID: form
 * bodies, client_secret_basic, and tolerant parsing of token and error
 * answers (internals.md W-4).
 *
 * Parsing never trusts the body: it is copied (capped) into a NUL-terminated
 * buffer for cJSON, and when that fails the raw bytes are scanned with
 * bounded searches for the few facts that matter (error value, AADSTS codes,
 * trace and correlation ids). Every copied string is cleaned: control bytes
 * become spaces, invalid UTF-8 becomes '?', and it is cut on a character
 * boundary, so logs and problem bodies can embed it safely.
 *
 * Buffers that may hold the access token or the secret are wiped before
 * they are freed.
 */
#include "token/oauth.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "token/jwt.h"
#include "util/text.h"
#include "util/utf8.h"
#include "util/wipe.h"

#define JSON_PARSE_MAX (1024 * 1024)      /* bodies larger than this are only scanned as text */
#define LIFETIME_MAX_S (366L * 86400)     /* longer lifetimes are clamped to this */
#define NUMBER_MAX     1000000000000000LL /* |n| above this is not a plausible field value */

/* ---- small string helpers ---------------------------------------------- */

/*
 * Copy at most n bytes of src into dst (cap bytes, always NUL-terminated):
 * control bytes become ' ', bytes that are not well-formed UTF-8 (utf8.h:
 * no overlong forms, surrogates or code points above U+10FFFF) '?', and the
 * result is cut on a character boundary.
 */
static void copy_clean(char *dst, size_t cap, const char *src, size_t n)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, o = 0, k;

	if (cap == 0)
		return;
	while (i < n && s[i] != '\0') {
		k = utf8_seq_len(s + i, n - i);
		if (k == 0) {
			if (o + 1 >= cap)
				break;
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + k >= cap)
			break;
		if (k == 1 && (s[i] < 0x20 || s[i] == 0x7f))
			dst[o] = ' ';
		else
			memcpy(dst + o, s + i, k);
		o += k;
		i += k;
	}
	dst[o] = '\0';
}

/* Bounded search for a NUL-free needle. */
static const char *find(const char *hay, size_t n, const char *needle)
{
	return memmem(hay, n, needle, strlen(needle));
}

static size_t skip_space(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

static void trim_right(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

/* ---- form encoding ---------------------------------------------------- */

static bool form_unreserved(unsigned char c)
{
	/* ASCII only, whatever the locale: RFC 3986 unreserved characters. */
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
	       c == '_' || c == '~';
}

/* Append the form encoding of s at out[*pos]; false if it does not fit. */
static bool append_enc(char *out, size_t cap, size_t *pos, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		size_t need = form_unreserved(*p) || *p == ' ' ? 1 : 3;

		if (*pos + need >= cap)
			return false;
		if (*p == ' ') {
			out[(*pos)++] = '+';
		} else if (need == 1) {
			out[(*pos)++] = (char)*p;
		} else {
			out[(*pos)++] = '%';
			out[(*pos)++] = hex[*p >> 4];
			out[(*pos)++] = hex[*p & 15];
		}
	}
	out[*pos] = '\0';
	return true;
}

static bool append_raw(char *out, size_t cap, size_t *pos, const char *s)
{
	size_t n = strlen(s);

	if (*pos + n >= cap)
		return false;
	memcpy(out + *pos, s, n + 1);
	*pos += n;
	return true;
}

long oauth_urlencode(char *out, size_t cap, const char *s)
{
	size_t pos = 0;

	if (out == NULL || cap == 0 || s == NULL)
		return -1;
	out[0] = '\0';
	if (!append_enc(out, cap, &pos, s)) {
		out[0] = '\0';
		return -1;
	}
	return (long)pos;
}

long oauth_form_body(char *out, size_t cap, enum token_version ver, enum auth_method method, const char *client_id,
		     const char *secret, const char *scope_or_resource)
{
	size_t pos = 0;
	bool ok;

	if (out == NULL || cap == 0 || client_id == NULL || scope_or_resource == NULL ||
	    (method == AUTH_POST && secret == NULL))
		return -1;
	out[0] = '\0';
	ok = append_raw(out, cap, &pos, "grant_type=client_credentials&client_id=") &&
	     append_enc(out, cap, &pos, client_id) &&
	     append_raw(out, cap, &pos, ver == TOKEN_V1 ? "&resource=" : "&scope=") &&
	     append_enc(out, cap, &pos, scope_or_resource);
	if (ok && method == AUTH_POST)
		ok = append_raw(out, cap, &pos, "&client_secret=") && append_enc(out, cap, &pos, secret);
	if (!ok) {
		explicit_bzero(out, cap);
		return -1;
	}
	return (long)pos;
}

long oauth_form_body_assertion(char *out, size_t cap, enum token_version ver, const char *client_id,
			       const char *assertion, const char *scope_or_resource)
{
	size_t pos = 0;
	bool ok;

	if (out == NULL || cap == 0 || client_id == NULL || scope_or_resource == NULL || assertion == NULL)
		return -1;
	out[0] = '\0';
	ok = append_raw(out, cap, &pos, "grant_type=client_credentials&client_id=") &&
	     append_enc(out, cap, &pos, client_id) &&
	     append_raw(out, cap, &pos, ver == TOKEN_V1 ? "&resource=" : "&scope=") &&
	     append_enc(out, cap, &pos, scope_or_resource) &&
	     append_raw(out, cap, &pos,
			"&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
			"&client_assertion=") &&
	     append_enc(out, cap, &pos, assertion);
	if (!ok) {
		explicit_bzero(out, cap);
		return -1;
	}
	return (long)pos;
}

long oauth_basic_auth(char *out, size_t cap, const char *client_id, const char *secret)
{
	size_t pcap, pos = 0, need;
	char *pair = NULL;
	long ret = -1;
	int n;

	if (out == NULL || cap == 0 || client_id == NULL || secret == NULL)
		return -1;
	out[0] = '\0';
	/* "id:secret" after encoding; holds the secret, wiped below. */
	pcap = 3 * (strlen(client_id) + strlen(secret)) + 2;
	pair = malloc(pcap);
	if (pair == NULL)
		goto done;
	if (!append_enc(pair, pcap, &pos, client_id) || !append_raw(pair, pcap, &pos, ":") ||
	    !append_enc(pair, pcap, &pos, secret))
		goto done;
	need = 6 + 4 * ((pos + 2) / 3) + 1;
	if (pos > INT32_MAX / 2 || need > cap)
		goto done;
	memcpy(out, "Basic ", 6);
	n = EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)pair, (int)pos);
	if (n < 0)
		goto done;
	ret = 6 + n;
done:
	wipe_free(pair, pcap);
	if (ret < 0)
		explicit_bzero(out, cap);
	return ret;
}

/* ---- error evidence from text ------------------------------------------ */

/*
 * Decode a JSON string body starting just after its opening quote, stopping
 * at the closing quote or at the end of the input (bodies cut short). The
 * result is cleaned into dst. Returns false if the string was unterminated.
 */
static bool text_unescape(const char *s, size_t n, char *dst, size_t cap)
{
	char tmp[1024];
	size_t i = 0, o = 0;
	bool closed = false;

	while (i < n && o + 4 < sizeof(tmp)) {
		char c = s[i++];

		if (c == '"') {
			closed = true;
			break;
		}
		if (c != '\\' || i >= n) {
			tmp[o++] = c;
			continue;
		}
		c = s[i++];
		switch (c) {
		case 'n':
		case 'r':
		case 't':
			tmp[o++] = c == 'n' ? '\n' : c == 'r' ? '\r' : ' ';
			break;
		case 'u':
			if (i + 4 <= n && text_hexval(s[i]) >= 0 && text_hexval(s[i + 1]) >= 0 &&
			    text_hexval(s[i + 2]) >= 0 && text_hexval(s[i + 3]) >= 0) {
				int v = text_hexval(s[i]) << 12 | text_hexval(s[i + 1]) << 8 |
					text_hexval(s[i + 2]) << 4 | text_hexval(s[i + 3]);

				tmp[o++] = v >= 0x20 && v < 0x7f ? (char)v : '?';
				i += 4;
			} else {
				tmp[o++] = '?';
			}
			break;
		default: /* \" \\ \/ and anything else: the character itself */
			tmp[o++] = c;
			break;
		}
	}
	copy_clean(dst, cap, tmp, o);
	return closed;
}

/*
 * Find `"key" <ws> [:;] <ws> "value` in raw text (the ';' appears in a real
 * F&O body) and decode the value into dst. Unterminated values are accepted
 * only when `allow_cut`. Returns true when found.
 */
static bool text_field(const char *s, size_t n, const char *key, char *dst, size_t cap, bool allow_cut)
{
	char pat[48];
	size_t off = 0, plen;
	int k;

	k = snprintf(pat, sizeof(pat), "\"%s\"", key);
	if (k < 0 || (size_t)k >= sizeof(pat))
		return false;
	plen = (size_t)k;
	while (off < n) {
		const char *hit = find(s + off, n - off, pat);
		size_t i;

		if (hit == NULL)
			return false;
		i = skip_space(s, n, (size_t)(hit - s) + plen);
		off = (size_t)(hit - s) + plen;
		if (i >= n || (s[i] != ':' && s[i] != ';'))
			continue;
		i = skip_space(s, n, i + 1);
		if (i >= n || s[i] != '"')
			continue;
		if (text_unescape(s + i + 1, n - i - 1, dst, cap) || allow_cut)
			return true;
		dst[0] = '\0';
		return false;
	}
	return false;
}

/* After `label` (e.g. "Trace ID:"), copy an id made of hex digits and '-'. */
static void text_id(const char *s, size_t n, const char *label, char *dst, size_t cap)
{
	const char *hit;
	size_t i, start;

	if (dst[0] != '\0' || (hit = find(s, n, label)) == NULL)
		return;
	i = skip_space(s, n, (size_t)(hit - s) + strlen(label));
	start = i;
	while (i < n && i - start + 1 < cap && (text_hexval((unsigned char)s[i]) >= 0 || s[i] == '-'))
		i++;
	/* An id cut off by the end of a truncated body is not evidence. */
	if (i - start >= 8 && (i < n || i - start >= 36))
		copy_clean(dst, cap, s + start, i - start);
}

static void text_timestamp(const char *s, size_t n, char *dst, size_t cap)
{
	const char *hit;
	size_t i, start;

	if (dst[0] != '\0' || (hit = find(s, n, "Timestamp:")) == NULL)
		return;
	i = skip_space(s, n, (size_t)(hit - s) + strlen("Timestamp:"));
	start = i;
	while (i < n && i - start + 1 < cap && strchr("0123456789-: T.Z", s[i]) != NULL && s[i] != '\0')
		i++;
	while (i > start && s[i - 1] == ' ')
		i--;
	if (i > start)
		copy_clean(dst, cap, s + start, i - start);
}

static void add_code(struct oauth_error *e, long code)
{
	size_t i;

	for (i = 0; i < e->n_codes; i++)
		if (e->codes[i] == code)
			return;
	if (e->n_codes < OAUTH_MAX_CODES)
		e->codes[e->n_codes++] = code;
}

/* Every "AADSTS<digits>" in the text, in order, de-duplicated. */
static void text_codes(const char *s, size_t n, struct oauth_error *e)
{
	size_t off = 0;

	while (off < n && e->n_codes < OAUTH_MAX_CODES) {
		const char *hit = find(s + off, n - off, "AADSTS");
		size_t i, d;
		long v = 0;

		if (hit == NULL)
			return;
		i = (size_t)(hit - s) + 6;
		for (d = 0; i < n && d < 10 && isdigit((unsigned char)s[i]); d++, i++)
			v = v * 10 + (s[i] - '0');
		if (d > 0 && d < 10)
			add_code(e, v);
		off = i;
	}
}

/* Ids, timestamp and codes mentioned in free text; only fills what is empty. */
static void text_evidence(const char *s, size_t n, struct oauth_error *e)
{
	text_id(s, n, "Trace ID:", e->trace_id, sizeof(e->trace_id));
	text_id(s, n, "Correlation ID:", e->correlation_id, sizeof(e->correlation_id));
	text_id(s, n, "CorrelationId:", e->correlation_id, sizeof(e->correlation_id));
	text_timestamp(s, n, e->timestamp, sizeof(e->timestamp));
	if (e->n_codes == 0)
		text_codes(s, n, e);
}

/*
 * Keep the first line of a description, without the trace lines that older
 * answers put after "\r\n" and newer ones append on the same line.
 */
static void set_description(struct oauth_error *e, const char *s, size_t n)
{
	size_t cut = n;
	const char *p;

	p = memchr(s, '\r', cut);
	if (p != NULL)
		cut = (size_t)(p - s);
	p = memchr(s, '\n', cut);
	if (p != NULL)
		cut = (size_t)(p - s);
	p = find(s, cut, " Trace ID:");
	if (p != NULL)
		cut = (size_t)(p - s);
	copy_clean(e->description, sizeof(e->description), s, cut);
	trim_right(e->description);
}

/* The <title> of an HTML error page, as a description of last resort. */
static void html_title(const char *s, size_t n, struct oauth_error *e)
{
	const char *open = find(s, n, "<title>"), *close;
	size_t start;

	if (open == NULL)
		open = find(s, n, "<TITLE>");
	if (open == NULL)
		return;
	start = (size_t)(open - s) + 7;
	close = memchr(s + start, '<', n - start);
	copy_clean(e->description, sizeof(e->description), s + start, (close ? (size_t)(close - s) : n) - start);
	trim_right(e->description);
}

static void parse_text(const char *s, size_t n, struct oauth_error *e)
{
	char desc[2048];

	if (e->error[0] == '\0')
		text_field(s, n, "error", e->error, sizeof(e->error), false);
	if (e->description[0] == '\0' && text_field(s, n, "error_description", desc, sizeof(desc), true))
		set_description(e, desc, strlen(desc));
	text_field(s, n, "trace_id", e->trace_id, sizeof(e->trace_id), false);
	text_field(s, n, "correlation_id", e->correlation_id, sizeof(e->correlation_id), false);
	text_field(s, n, "timestamp", e->timestamp, sizeof(e->timestamp), false);
	text_field(s, n, "error_uri", e->error_uri, sizeof(e->error_uri), false);
	text_evidence(s, n, e);
	if (e->description[0] == '\0')
		html_title(s, n, e);
}

/* ---- error evidence from JSON ------------------------------------------ */

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) && it->valuestring != NULL ? it->valuestring : NULL;
}

static void json_copy(const cJSON *obj, const char *key, char *dst, size_t cap)
{
	const char *v = json_str(obj, key);

	if (v != NULL)
		copy_clean(dst, cap, v, strlen(v));
}

/*
 * A number or a string holding a decimal integer ("3599", " 3599 "); the
 * value must lie within +-NUMBER_MAX. Returns false when absent or invalid.
 */
static bool json_num(const cJSON *it, long long *out)
{
	if (cJSON_IsNumber(it)) {
		double d = it->valuedouble;

		if (!isfinite(d) || d > (double)NUMBER_MAX || d < -(double)NUMBER_MAX)
			return false;
		*out = (long long)d;
		return true;
	}
	if (cJSON_IsString(it) && it->valuestring != NULL) {
		const char *p = it->valuestring;
		char *end;
		long long v;

		while (*p == ' ')
			p++;
		if (!isdigit((unsigned char)*p) && *p != '-')
			return false;
		errno = 0;
		v = strtoll(p, &end, 10);
		while (*end == ' ')
			end++;
		if (errno != 0 || end == p || *end != '\0' || v > NUMBER_MAX || v < -NUMBER_MAX)
			return false;
		*out = v;
		return true;
	}
	return false;
}

static void json_codes(const cJSON *obj, struct oauth_error *e)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "error_codes"), *it;
	long long v;

	if (!cJSON_IsArray(arr))
		return;
	cJSON_ArrayForEach(it, arr)
	{
		if (json_num(it, &v) && v >= 0)
			add_code(e, (long)v);
	}
}

static void parse_json_error(const cJSON *root, struct oauth_error *e)
{
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
	const char *desc = json_str(root, "error_description");

	e->body_was_json = true;
	if (cJSON_IsObject(error)) {
		/* Dataverse / Business Central shape: {"error":{"code":..,"message":..}} */
		json_copy(error, "code", e->error, sizeof(e->error));
		desc = json_str(error, "message");
	} else {
		json_copy(root, "error", e->error, sizeof(e->error));
	}
	json_codes(root, e);
	json_copy(root, "trace_id", e->trace_id, sizeof(e->trace_id));
	json_copy(root, "correlation_id", e->correlation_id, sizeof(e->correlation_id));
	json_copy(root, "timestamp", e->timestamp, sizeof(e->timestamp));
	json_copy(root, "error_uri", e->error_uri, sizeof(e->error_uri));
	if (desc != NULL) {
		set_description(e, desc, strlen(desc));
		text_evidence(desc, strlen(desc), e);
	}
}

/*
 * Parse body[0..len) as JSON. Returns the tree or NULL. The NUL-terminated
 * copy cJSON needs is wiped (it may hold a token) and freed here.
 */
static cJSON *parse_json(const char *body, size_t len)
{
	cJSON *root;
	char *copy;

	if (body == NULL || len == 0 || len > JSON_PARSE_MAX)
		return NULL;
	copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, body, len);
	copy[len] = '\0';
	root = cJSON_ParseWithLength(copy, len);
	wipe_free(copy, len + 1);
	return root;
}

static void error_from(const cJSON *root, const char *body, size_t len, struct oauth_error *err)
{
	memset(err, 0, sizeof(*err));
	if (body == NULL || len == 0)
		return;
	if (cJSON_IsObject(root))
		parse_json_error(root, err);
	if (!err->body_was_json || (err->error[0] == '\0' && err->description[0] == '\0'))
		parse_text(body, len, err);
}

void oauth_parse_error(const char *body, size_t len, struct oauth_error *err)
{
	cJSON *root;

	if (err == NULL)
		return;
	root = parse_json(body, len);
	error_from(root, body, len, err);
	cJSON_Delete(root);
}

/* ---- token responses ---------------------------------------------------- */

/* Wipe the strings of a parsed token response before cJSON frees them. */
static void json_wipe(cJSON *it)
{
	for (; it != NULL; it = it->next) {
		if (it->valuestring != NULL)
			explicit_bzero(it->valuestring, strlen(it->valuestring));
		json_wipe(it->child);
	}
}

static long clamp_lifetime(long long v)
{
	if (v <= 0)
		return 0;
	return v > LIFETIME_MAX_S ? LIFETIME_MAX_S : (long)v;
}

/* expires_in, else expires_on - now, else the JWT exp claim - now; 0 if none. */
static long token_lifetime(const cJSON *root, const char *at, long long now)
{
	struct jwt_claims claims;
	long long v;

	if (json_num(cJSON_GetObjectItemCaseSensitive(root, "expires_in"), &v) && v > 0)
		return clamp_lifetime(v);
	if (json_num(cJSON_GetObjectItemCaseSensitive(root, "expires_on"), &v) && v - now > 0)
		return clamp_lifetime(v - now);
	if (jwt_decode_claims(at, strlen(at), &claims) == 0 && claims.exp - now > 0)
		return clamp_lifetime(claims.exp - now);
	return 0;
}

/* A token goes into a header line: printable ASCII without spaces only. */
static bool token_chars_ok(const char *t)
{
	size_t n = 0;

	for (; t[n] != '\0'; n++)
		if ((unsigned char)t[n] <= 0x20 || (unsigned char)t[n] >= 0x7f)
			return false;
	return n > 0 && n <= OAUTH_TOKEN_MAX;
}

/*
 * Fill tok from a 2xx JSON body. Returns NULL on success, else a short
 * reason (stored as the description of the BAD_RESPONSE evidence).
 */
static const char *token_from(const cJSON *root, long long now, struct oauth_token *tok)
{
	const char *at = json_str(root, "access_token"), *type = json_str(root, "token_type");
	long long v;
	long life;

	if (!cJSON_IsObject(root))
		return "token response is not a JSON object";
	if (at == NULL)
		return "token response has no access_token";
	if (!token_chars_ok(at))
		return "access_token is empty, too long or has invalid characters";
	if (type != NULL && strcasecmp(type, "Bearer") != 0)
		return "token_type is not Bearer";
	life = token_lifetime(root, at, now);
	if (life <= 0)
		return "token response has no usable expires_in, expires_on or exp";
	tok->access_token = strdup(at);
	if (tok->access_token == NULL)
		return "out of memory";
	tok->expires_in = life;
	if (json_num(cJSON_GetObjectItemCaseSensitive(root, "ext_expires_in"), &v))
		tok->ext_expires_in = clamp_lifetime(v);
	if (json_num(cJSON_GetObjectItemCaseSensitive(root, "refresh_in"), &v))
		tok->refresh_in = clamp_lifetime(v);
	memcpy(tok->token_type, "Bearer", sizeof("Bearer"));
	return NULL;
}

enum oauth_result oauth_parse_response(long http_status, const char *body, size_t len, long long now,
				       struct oauth_token *tok, struct oauth_error *err)
{
	enum oauth_result res;
	const char *why = NULL;
	cJSON *root;

	if (tok == NULL || err == NULL)
		return OAUTH_BAD_RESPONSE;
	memset(tok, 0, sizeof(*tok));
	memset(err, 0, sizeof(*err));
	root = parse_json(body, len);
	if (http_status >= 200 && http_status <= 299) {
		why = root != NULL ? token_from(root, now, tok) : "token response is not JSON";
		res = why == NULL ? OAUTH_OK : OAUTH_BAD_RESPONSE;
	} else if (http_status == 429 || (http_status >= 500 && http_status <= 599)) {
		res = OAUTH_TRANSIENT;
	} else if (http_status >= 400 && http_status <= 499) {
		res = OAUTH_REJECTED; /* unless the answer is not OAuth's (below) */
	} else {
		res = OAUTH_BAD_RESPONSE;
	}
	if (res != OAUTH_OK) {
		oauth_token_clear(tok);
		error_from(root, body, len, err);
		/* A token endpoint refuses with 400 or 401 (RFC 6749 5.2), even when
		 * its body is cut short. Another 4xx is a refusal only when it says
		 * so in OAuth's terms (an error value, AADSTS codes); without them it
		 * came from something else at that URL (a 404 page, a 405). */
		if (res == OAUTH_REJECTED && http_status != 400 && http_status != 401 && err->error[0] == '\0' &&
		    err->n_codes == 0)
			res = OAUTH_BAD_RESPONSE;
		if (why != NULL && err->description[0] == '\0')
			copy_clean(err->description, sizeof(err->description), why, strlen(why));
	}
	if (root != NULL)
		json_wipe(root);
	cJSON_Delete(root);
	return res;
}

void oauth_token_clear(struct oauth_token *tok)
{
	if (tok == NULL)
		return;
	wipe_free_str(tok->access_token);
	memset(tok, 0, sizeof(*tok));
}
