/*
 * sts.c - the WS-Trust sign-in facade (see sts.h and
 * docs/guide-legacy-wstrust.md).
 *
 * The identities file is re-read when its path, size or modification time
 * changes (so a SIGHUP reload or an edit takes effect at the next sign-in).
 * Issued handles live in a fixed table; a full table reuses the entry
 * closest to expiry. Answers follow the shapes legacy clients parse
 * (internals.md W-1, W-2, W-3); the tokens inside are opaque random
 * values that only this process can map back to an identity.
 */
#include "wstrust/sts.h"

#include <crypt.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "util/log.h"
#include "util/text.h"
#include "util/wipe.h"
#include "wstrust/soap.h"

#define MAX_IDENTITIES 4096
#define LINE_MAX_BYTES 1024
#define MAX_HANDLES    1024
#define HANDLE_LEN     64 /* hex of 32 random bytes */
#define REPLY_MAX      8192

#define NS_WSU   "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
#define NS_TRUST "http://schemas.xmlsoap.org/ws/2005/02/trust"
#define NS_PSF   "http://schemas.microsoft.com/Passport/SoapServices/SOAPFault"

struct identity {
	char *user; /* compared case-insensitively */
	char *hash; /* crypt(3) */
	char *cred; /* credential name */
	char *oid;  /* Entra object id to act for (CallerObjectId), NULL = none */
};

struct handle {
	char id[HANDLE_LEN + 1]; /* "" = free */
	char cred[STS_CRED_MAX];
	char oid[STS_OID_MAX]; /* "" = no impersonation */
	bool adfs;             /* carried by a SAML assertion, exchanged at RST2 */
	long long expires;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct identity ids[MAX_IDENTITIES];
static size_t n_ids;
static char *ids_path;
static struct stat ids_stat;
static struct handle handles[MAX_HANDLES];

/* A fixed hash checked for unknown users, so both cases cost one crypt. */
static const char dummy_hash[] =
    "$6$s2sproxydummy0$v.8q2KdNcN7wQq2cCfppGrOtHIpKYL7d0y3uN/YqVWEY7RWg7C.RYFCpy1KC0Niaa92pBRusvoUV7vI2em0Wg0";

/* ---- identities ------------------------------------------------------------ */

static void ids_clear(void)
{
	for (size_t i = 0; i < n_ids; i++) {
		free(ids[i].user);
		wipe_free_str(ids[i].hash);
		free(ids[i].cred);
		free(ids[i].oid);
	}
	memset(ids, 0, sizeof ids);
	n_ids = 0;
	free(ids_path);
	ids_path = NULL;
}

static bool is_guid(const char *s)
{
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	return s[36] == '\0';
}

/* "user@domain:hash:credential[:object-id]"; the hash has no ':' in any
 * crypt scheme. The object id makes the bridge act for that user. */
static int parse_line(char *line, struct identity *out)
{
	line[strcspn(line, "\r\n")] = '\0';
	if (!line[0] || line[0] == '#')
		return 1;
	char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *c3 = c2 ? strchr(c2 + 1, ':') : NULL;
	if (!c1 || !c2 || c1 == line || c2 == c1 + 1 || !c2[1] || c3 == c2 + 1 || (c3 && !is_guid(c3 + 1)))
		return -1;
	*c1 = *c2 = '\0';
	if (c3)
		*c3 = '\0';
	out->user = strdup(line);
	out->hash = strdup(c1 + 1);
	out->cred = strdup(c2 + 1);
	out->oid = c3 ? strdup(c3 + 1) : NULL;
	return out->user && out->hash && out->cred && (!c3 || out->oid) ? 0 : -1;
}

/* Reload the file when it changed. Called with lock held. */
static void ids_refresh(const char *path)
{
	struct stat st;
	if (!path || stat(path, &st) < 0) {
		if (!path || ids_path)
			log_msg(LOG_WARN, "sts_identities_unreadable", "%s%s: every legacy sign-in fails",
				path ? "cannot stat legacy_identities_file "
				     : "sts_facade without legacy_identities_file",
				path ? path : "");
		ids_clear();
		return;
	}
	if (ids_path && strcmp(ids_path, path) == 0 && st.st_mtim.tv_sec == ids_stat.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ids_stat.st_mtim.tv_nsec && st.st_size == ids_stat.st_size)
		return;
	ids_clear();
	FILE *f = fopen(path, "re");
	if (!f) {
		log_msg(LOG_ERROR, "sts_identities_unreadable", "cannot read legacy_identities_file %s", path);
		return;
	}
	char line[LINE_MAX_BYTES];
	unsigned lineno = 0;
	while (n_ids < MAX_IDENTITIES && fgets(line, sizeof line, f)) {
		lineno++;
		int r = parse_line(line, &ids[n_ids]);
		if (r == 0)
			n_ids++;
		else if (r < 0)
			log_msg(LOG_WARN, "sts_identity_ignored",
				"%s:%u: not user:hash:credential[:object-id], ignored", path, lineno);
		explicit_bzero(line, sizeof line);
	}
	fclose(f);
	ids_path = strdup(path);
	ids_stat = st;
}

/* Check user/password; on success copy the credential name and object id
 * (oid: STS_OID_MAX bytes, "" for none). The hash is copied out so
 * crypt(3), which is slow on purpose, runs without the lock. */
static bool check_password(const char *path, const char *user, const char *password, char *cred, size_t cap, char *oid)
{
	char hash[256], name[STS_CRED_MAX] = "", id[STS_OID_MAX] = "";
	bool known = false, ok = false;
	struct crypt_data *cd = calloc(1, sizeof *cd);
	if (!cd)
		return false;
	pthread_mutex_lock(&lock);
	ids_refresh(path);
	for (size_t i = 0; i < n_ids && !known; i++)
		if (strcasecmp(ids[i].user, user) == 0)
			known = snprintf(hash, sizeof hash, "%s", ids[i].hash) < (int)sizeof hash &&
				snprintf(name, sizeof name, "%s", ids[i].cred) < (int)sizeof name &&
				snprintf(id, sizeof id, "%s", ids[i].oid ? ids[i].oid : "") < (int)sizeof id;
	pthread_mutex_unlock(&lock);
	if (!known)
		snprintf(hash, sizeof hash, "%s", dummy_hash); /* unknown users cost one crypt too */
	const char *got = crypt_r(password, hash, cd);
	if (known && got && got[0] != '*' && strlen(got) == strlen(hash) && CRYPTO_memcmp(got, hash, strlen(hash)) == 0)
		ok = snprintf(cred, cap, "%s", name) < (int)cap && snprintf(oid, STS_OID_MAX, "%s", id) < STS_OID_MAX;
	explicit_bzero(hash, sizeof hash);
	wipe_free(cd, sizeof *cd);
	return ok;
}

/* ---- handles ------------------------------------------------------------------ */

static bool random_hex(char out[HANDLE_LEN + 1])
{
	unsigned char b[HANDLE_LEN / 2];
	if (RAND_bytes(b, sizeof b) != 1)
		return false;
	for (size_t i = 0; i < sizeof b; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	explicit_bzero(b, sizeof b);
	return true;
}

static bool issue_handle(const char *cred, const char *oid, bool adfs, long long now, char out[HANDLE_LEN + 1])
{
	if (!random_hex(out))
		return false;
	pthread_mutex_lock(&lock);
	struct handle *slot = &handles[0];
	for (size_t i = 0; i < MAX_HANDLES; i++) {
		struct handle *h = &handles[i];
		if (!h->id[0] || h->expires <= now) {
			slot = h;
			break;
		}
		if (h->expires < slot->expires)
			slot = h;
	}
	memcpy(slot->id, out, HANDLE_LEN + 1);
	snprintf(slot->cred, sizeof slot->cred, "%s", cred);
	snprintf(slot->oid, sizeof slot->oid, "%s", oid);
	slot->adfs = adfs;
	slot->expires = now + STS_HANDLE_TTL_S;
	pthread_mutex_unlock(&lock);
	return true;
}

static bool lookup_handle(const char *id, bool adfs, long long now, char *cred, size_t cap, char *oid)
{
	bool ok = false;
	if (strlen(id) != HANDLE_LEN)
		return false;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < MAX_HANDLES && !ok; i++) {
		const struct handle *h = &handles[i];
		if (h->id[0] && h->adfs == adfs && h->expires > now && CRYPTO_memcmp(h->id, id, HANDLE_LEN) == 0)
			ok = snprintf(cred, cap, "%s", h->cred) < (int)cap &&
			     snprintf(oid, STS_OID_MAX, "%s", h->oid) < STS_OID_MAX;
	}
	pthread_mutex_unlock(&lock);
	return ok;
}

bool sts_handle_valid(const char *handle, long long now, char *cred, size_t cap)
{
	char oid[STS_OID_MAX];
	return sts_handle_identity(handle, now, cred, cap, oid);
}

bool sts_handle_identity(const char *handle, long long now, char *cred, size_t cap, char oid[STS_OID_MAX])
{
	return handle && lookup_handle(handle, false, now, cred, cap, oid);
}

void sts_reset(void)
{
	pthread_mutex_lock(&lock);
	memset(handles, 0, sizeof handles);
	ids_clear();
	pthread_mutex_unlock(&lock);
}

/* ---- paths ------------------------------------------------------------------------ */

enum sts_kind { STS_NONE = 0, STS_REALM, STS_RST2, STS_ADFS };

static enum sts_kind kind_of(const char *path, size_t len)
{
	static const struct {
		const char *path;
		enum sts_kind kind;
	} paths[] = {
	    {"/GetUserRealm.srf", STS_REALM},
	    {"/RST2.srf", STS_RST2},
	    {"/adfs/services/trust/13/usernamemixed", STS_ADFS},
	};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (strlen(paths[i].path) == len && strncasecmp(paths[i].path, path, len) == 0)
			return paths[i].kind;
	return STS_NONE;
}

bool sts_is_path(const char *path, size_t len)
{
	return kind_of(path, len) != STS_NONE;
}

/* ---- answers ---------------------------------------------------------------------- */

static void iso_time(long long t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

__attribute__((format(printf, 4, 5))) static int reply(struct sts_reply *out, int status, const char *ctype,
						       const char *fmt, ...)
{
	va_list ap;
	out->body = malloc(REPLY_MAX);
	if (!out->body)
		return -1;
	va_start(ap, fmt);
	int n = vsnprintf(out->body, REPLY_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= REPLY_MAX) {
		free(out->body);
		out->body = NULL;
		return -1;
	}
	out->status = status;
	out->content_type = ctype;
	out->len = (size_t)n;
	return 0;
}

/* The URL-decoded value of `key` in a form / query string; "" if absent. */
static void form_value(const char *src, size_t n, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key), o = 0;
	out[0] = '\0';
	for (size_t i = 0; src && i < n;) {
		size_t end = i;
		while (end < n && src[end] != '&')
			end++;
		if (end - i > kl && memcmp(src + i, key, kl) == 0 && src[i + kl] == '=') {
			for (size_t j = i + kl + 1; j < end && o + 1 < cap; j++) {
				int hi, lo;
				if (src[j] == '%' && j + 2 < end && (hi = text_hexval(src[j + 1])) >= 0 &&
				    (lo = text_hexval(src[j + 2])) >= 0) {
					out[o++] = (char)(hi * 16 + lo);
					j += 2;
				} else {
					out[o++] = src[j] == '+' ? ' ' : src[j];
				}
			}
			out[o] = '\0';
			return;
		}
		i = end + 1;
	}
}

static int realm_reply(const char *query, const char *body, size_t n, struct sts_reply *out)
{
	char login[SOAP_USER_MAX], esc[SOAP_USER_MAX * 6] = "", domain[SOAP_USER_MAX * 6] = "";
	form_value(body, n, "login", login, sizeof login);
	if (!login[0] && query)
		form_value(query, strlen(query), "login", login, sizeof login);
	soap_escape(esc, sizeof esc, login);
	const char *at = strchr(login, '@');
	soap_escape(domain, sizeof domain, at ? at + 1 : "");
	return reply(out, 200, "text/xml; charset=utf-8",
		     "<?xml version=\"1.0\" encoding=\"utf-8\"?><RealmInfo Success=\"true\"><State>4</State>"
		     "<UserState>1</UserState><Login>%s</Login><NameSpaceType>Managed</NameSpaceType>"
		     "<DomainName>%s</DomainName><IsFederatedNS>false</IsFederatedNS>"
		     "<FederationBrandName>%s</FederationBrandName><CloudInstanceName>microsoftonline.com"
		     "</CloudInstanceName><CloudInstanceIssuerUri>urn:federation:MicrosoftOnline"
		     "</CloudInstanceIssuerUri></RealmInfo>",
		     esc, domain, domain);
}

/* internals.md W-1 (RST2, HTTP 400) or W-2 (ADFS, HTTP 500). */
static int auth_fault(bool adfs, const char *relates_to, struct sts_reply *out)
{
	size_t len;
	char *f;
	if (adfs)
		f = soap_fault_12(
		    "Sender", "http://docs.oasis-open.org/ws-sx/ws-trust/200512", "a:FailedAuthentication",
		    "ID3242: The security token could not be authenticated or authorized.", NULL, relates_to, &len);
	else
		f = soap_fault_12("Sender", NS_TRUST, "wst:FailedAuthentication", "Authentication Failure",
				  "<psf:error xmlns:psf=\"" NS_PSF "\"><psf:value>0x80048821</psf:value>"
				  "<psf:internalerror><psf:code>0x80048821</psf:code><psf:text>AADSTS50126: Error "
				  "validating credentials due to invalid username or password.</psf:text>"
				  "</psf:internalerror></psf:error>",
				  relates_to, &len);
	if (!f)
		return -1;
	out->status = adfs ? 500 : 400;
	out->content_type = "application/soap+xml; charset=utf-8";
	out->body = f;
	out->len = len;
	return 0;
}

static int bad_request_fault(const char *why, struct sts_reply *out)
{
	size_t len;
	char *f = soap_fault_12("Sender", NS_TRUST, "wst:InvalidRequest", why, NULL, NULL, &len);
	if (!f)
		return -1;
	out->status = 400;
	out->content_type = "application/soap+xml; charset=utf-8";
	out->body = f;
	out->len = len;
	return 0;
}

/* A Feb 2005 RSTR carrying the handle as the EncryptedData's CipherValue. */
static int rst2_reply(const struct soap_rst_info *rst, const char *handle, long long now, struct sts_reply *out)
{
	char created[32], expires[32], rel[SOAP_MSGID_MAX * 6] = "", applies[SOAP_ACTION_MAX * 6] = "";
	char k1[HANDLE_LEN + 1], k2[HANDLE_LEN + 1], k3[HANDLE_LEN + 1];
	iso_time(now, created);
	iso_time(now + STS_HANDLE_TTL_S, expires);
	soap_escape(rel, sizeof rel, rst->message_id);
	soap_escape(applies, sizeof applies, rst->applies_to[0] ? rst->applies_to : "urn:crmna:dynamics.com");
	if (!random_hex(k1) || !random_hex(k2) || !random_hex(k3))
		return -1; /* three decoys, expired at once: the client never decrypts them */
	return reply(
	    out, 200, "application/soap+xml; charset=utf-8",
	    "<S:Envelope xmlns:S=\"" SOAP_NS_12 "\" xmlns:wsse=\"" SOAP_NS_WSSE "\" xmlns:wsu=\"" NS_WSU
	    "\" xmlns:wsa=\"" SOAP_NS_WSA "\" xmlns:wst=\"" NS_TRUST "\"><S:Header><wsa:Action S:mustUnderstand=\"1\">"
	    "http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue</wsa:Action><wsa:RelatesTo>%s</wsa:RelatesTo>"
	    "<wsse:Security S:mustUnderstand=\"1\"><wsu:Timestamp wsu:Id=\"TS\"><wsu:Created>%s</wsu:Created>"
	    "<wsu:Expires>%s</wsu:Expires></wsu:Timestamp></wsse:Security></S:Header><S:Body>"
	    "<wst:RequestSecurityTokenResponse><wst:TokenType>urn:oasis:names:tc:SAML:1.0</wst:TokenType>"
	    "<wsp:AppliesTo xmlns:wsp=\"http://schemas.xmlsoap.org/ws/2004/09/policy\"><wsa:EndpointReference>"
	    "<wsa:Address>%s</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:Lifetime>"
	    "<wsu:Created>%s</wsu:Created><wsu:Expires>%s</wsu:Expires></wst:Lifetime><wst:RequestedSecurityToken>"
	    "<EncryptedData xmlns=\"http://www.w3.org/2001/04/xmlenc#\" Id=\"Assertion0\" "
	    "Type=\"http://www.w3.org/2001/04/xmlenc#Element\"><EncryptionMethod "
	    "Algorithm=\"http://www.w3.org/2001/04/xmlenc#tripledes-cbc\"/><ds:KeyInfo "
	    "xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><EncryptedKey><EncryptionMethod "
	    "Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\"/><ds:KeyInfo Id=\"keyinfo\">"
	    "<wsse:SecurityTokenReference><wsse:KeyIdentifier EncodingType=\"http://docs.oasis-open.org/wss/2004/01/"
	    "oasis-200401-wss-soap-message-security-1.0#Base64Binary\" ValueType=\"http://docs.oasis-open.org/wss/"
	    "2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier\">%s</wsse:KeyIdentifier>"
	    "</wsse:SecurityTokenReference></ds:KeyInfo><CipherData><CipherValue>%s</CipherValue></CipherData>"
	    "</EncryptedKey></ds:KeyInfo><CipherData><CipherValue>%s</CipherValue></CipherData></EncryptedData>"
	    "</wst:RequestedSecurityToken><wst:RequestedProofToken><wst:BinarySecret>%s</wst:BinarySecret>"
	    "</wst:RequestedProofToken></wst:RequestSecurityTokenResponse></S:Body></S:Envelope>",
	    rel, created, expires, applies, created, expires, k1, k2, handle, k3);
}

/* A WS-Trust 1.3 RSTR with a SAML 2.0 Assertion whose ID carries the handle. */
static int adfs_reply(const struct soap_rst_info *rst, const char *user, const char *handle, long long now,
		      struct sts_reply *out)
{
	char created[32], expires[32], rel[SOAP_MSGID_MAX * 6] = "", name[SOAP_USER_MAX * 6] = "";
	iso_time(now, created);
	iso_time(now + STS_HANDLE_TTL_S, expires);
	soap_escape(rel, sizeof rel, rst->message_id);
	soap_escape(name, sizeof name, user);
	return reply(
	    out, 200, "application/soap+xml; charset=utf-8",
	    "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"" SOAP_NS_WSA "\" xmlns:u=\"" NS_WSU "\"><s:Header>"
	    "<a:Action s:mustUnderstand=\"1\">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal"
	    "</a:Action><a:RelatesTo>%s</a:RelatesTo><o:Security s:mustUnderstand=\"1\" xmlns:o=\"" SOAP_NS_WSSE
	    "\"><u:Timestamp u:Id=\"_0\"><u:Created>%s</u:Created><u:Expires>%s</u:Expires></u:Timestamp>"
	    "</o:Security></s:Header><s:Body><trust:RequestSecurityTokenResponseCollection "
	    "xmlns:trust=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\"><trust:RequestSecurityTokenResponse>"
	    "<trust:Lifetime><u:Created>%s</u:Created><u:Expires>%s</u:Expires></trust:Lifetime><wsp:AppliesTo "
	    "xmlns:wsp=\"http://schemas.xmlsoap.org/ws/2004/09/policy\"><a:EndpointReference><a:Address>"
	    "urn:federation:MicrosoftOnline</a:Address></a:EndpointReference></wsp:AppliesTo>"
	    "<trust:RequestedSecurityToken><Assertion ID=\"_%s\" IssueInstant=\"%s\" Version=\"2.0\" "
	    "xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\"><Issuer>s2s-proxy</Issuer><Subject><NameID>%s</NameID>"
	    "<SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\"/></Subject><Conditions "
	    "NotBefore=\"%s\" NotOnOrAfter=\"%s\"><AudienceRestriction><Audience>urn:federation:MicrosoftOnline"
	    "</Audience></AudienceRestriction></Conditions></Assertion></trust:RequestedSecurityToken>"
	    "<trust:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</trust:TokenType><trust:RequestType>"
	    "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</trust:RequestType><trust:KeyType>"
	    "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</trust:KeyType>"
	    "</trust:RequestSecurityTokenResponse></trust:RequestSecurityTokenResponseCollection></s:Body>"
	    "</s:Envelope>",
	    rel, created, expires, created, expires, handle, created, name, created, expires);
}

/* Sign in from the RST's UsernameToken, or (RST2 only) an ADFS assertion. */
static bool sign_in(const char *identities, const struct soap_rst_info *rst, bool adfs, long long now, char *cred,
		    size_t cap, char *oid)
{
	if (!adfs && rst->assertion_id[0] == '_')
		return lookup_handle(rst->assertion_id + 1, true, now, cred, cap, oid);
	if (!rst->username[0])
		return false;
	return check_password(identities, rst->username, rst->password, cred, cap, oid);
}

static int trust_answer(const char *identities, bool adfs, const char *body, size_t n, long long now,
			struct sts_reply *out)
{
	struct soap_rst_info rst;
	char cred[STS_CRED_MAX], handle[HANDLE_LEN + 1], oid[STS_OID_MAX] = "";
	int ret = -1;
	int pr = soap_parse_rst(body ? body : "", n, &rst);
	if (soap_err_internal(pr))
		goto done;
	if (pr != SOAP_OK) {
		ret = bad_request_fault(soap_strerror(pr), out);
		goto done;
	}
	if (!sign_in(identities, &rst, adfs, now, cred, sizeof cred, oid)) {
		log_msg(LOG_WARN, "sts_sign_in_failed", "legacy sign-in refused (%s)",
			rst.username[0] || rst.assertion_id[0] ? "wrong user, password or assertion"
							       : "no credentials");
		ret = auth_fault(adfs, rst.message_id, out);
		goto done;
	}
	if (!issue_handle(cred, oid, adfs, now, handle))
		goto done;
	ret = adfs ? adfs_reply(&rst, rst.username, handle, now, out) : rst2_reply(&rst, handle, now, out);
	log_msg(LOG_INFO, "sts_sign_in", "legacy sign-in for credential %s", cred);
done:
	explicit_bzero(&rst, sizeof rst);
	explicit_bzero(handle, sizeof handle);
	return ret;
}

int sts_answer(const char *identities, const char *path, size_t len, const char *query, const char *body, size_t n,
	       long long now, struct sts_reply *out)
{
	memset(out, 0, sizeof *out);
	switch (kind_of(path, len)) {
	case STS_REALM:
		return realm_reply(query, body, n, out);
	case STS_RST2:
		return trust_answer(identities, false, body, n, now, out);
	case STS_ADFS:
		return trust_answer(identities, true, body, n, now, out);
	default:
		return reply(out, 404, "text/plain; charset=utf-8", "not found\n");
	}
}
