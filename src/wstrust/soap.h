/*
 * soap.h - SOAP envelope conversions for the WS-Trust migration bridge
 * (docs/guide-legacy-wstrust.md): SOAP 1.2 Organization service requests to
 * the SOAP 1.1 dialect of Organization.svc/web, and SOAP 1.1 answers and
 * faults back to SOAP 1.2. Pure functions on memory buffers, on libxml2.
 *
 * Every document goes through one hardened parser: no network, no DTD
 * loading, no entity substitution, and any DOCTYPE is refused outright
 * (which also refuses billion-laughs and external entities); nesting depth,
 * attribute length, node count and input size are capped. Thread-safe.
 */
#ifndef S2S_SOAP_H
#define S2S_SOAP_H

#include <stdbool.h>
#include <stddef.h>

#define SOAP_NS_11   "http://schemas.xmlsoap.org/soap/envelope/"
#define SOAP_NS_12   "http://www.w3.org/2003/05/soap-envelope"
#define SOAP_NS_WSA  "http://www.w3.org/2005/08/addressing"
#define SOAP_NS_WSSE "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"

#define SOAP_MAX_INPUT    (64u << 20) /* no document above this is parsed */
#define SOAP_MAX_DEPTH    64          /* element nesting */
#define SOAP_MAX_ATTR     4096        /* bytes of one attribute value */
#define SOAP_MAX_NODES    2000000     /* elements + text nodes */
#define SOAP_HANDLE_MAX   128         /* legacy token handle, as text */
#define SOAP_ACTION_MAX   512
#define SOAP_MSGID_MAX    256
#define SOAP_SDKVER_MAX   32
#define SOAP_USER_MAX     256
#define SOAP_PASSWORD_MAX 256

enum soap_err {
	SOAP_OK = 0,
	SOAP_E_PARSE = -1, /* not well-formed XML */
	SOAP_E_DTD = -2,   /* a DOCTYPE (DTD, entities) */
	SOAP_E_LIMIT = -3, /* size, depth, attribute or node cap */
	SOAP_E_SHAPE = -4, /* well-formed but not the expected envelope */
	SOAP_E_NOMEM = -5,
	SOAP_E_VERSION = -6,     /* the other SOAP version than expected */
	SOAP_E_UNAVAILABLE = -7, /* libxml2 cannot be loaded (xmlapi.h) */
};

/* What the bridge needs from a client's SOAP 1.2 request. */
struct soap_request_info {
	char action[SOAP_ACTION_MAX];      /* wsa:Action, "" if absent */
	char message_id[SOAP_MSGID_MAX];   /* wsa:MessageID, "" if absent */
	char sdk_version[SOAP_SDKVER_MAX]; /* SdkClientVersion header, "" if absent */
	char handle[SOAP_HANDLE_MAX];      /* Security/EncryptedData/CipherData/CipherValue, "" if absent */
};

/* Credentials of a WS-Trust RST (UsernameToken) or the id of a SAML
 * Assertion presented instead. The caller wipes password. */
struct soap_rst_info {
	char action[SOAP_ACTION_MAX];
	char message_id[SOAP_MSGID_MAX];
	char applies_to[SOAP_ACTION_MAX];
	char username[SOAP_USER_MAX];
	char password[SOAP_PASSWORD_MAX];
	char assertion_id[SOAP_HANDLE_MAX];
};

/*
 * SOAP 1.2 request -> SOAP 1.1 request for Organization.svc/web: the
 * envelope namespace becomes SOAP 1.1, WS-Addressing and WS-Security header
 * blocks are removed, every other header block (SdkClientVersion, UserType,
 * MSCRMCallerID, CallerObjectId, ...) and the Body are kept as they are.
 * On SOAP_OK *out (malloc'd, caller frees) holds the new envelope. Returns
 * SOAP_E_VERSION for a SOAP 1.1 input, another soap_err otherwise.
 */
int soap_request_to_11(const char *in, size_t n, char **out, size_t *out_len, struct soap_request_info *info);

/*
 * SOAP 1.1 response or fault -> SOAP 1.2: the envelope namespace becomes
 * SOAP 1.2; a Fault's faultcode/faultstring/detail become Code/Value
 * (Client -> Sender, Server -> Receiver), Reason/Text and Detail with its
 * content untouched; a Header gains wsa:Action (the request's action +
 * "Response", or the fault action) and wsa:RelatesTo = relates_to (when
 * non-empty). *is_fault tells which it was. Ownership as above.
 */
int soap_response_to_12(const char *in, size_t n, const char *req_action, const char *relates_to, char **out,
			size_t *out_len, bool *is_fault);

/*
 * A SOAP 1.2 fault built here: Code/Value `code` ("Sender"/"Receiver") with
 * an optional Subcode (a QName in `subcode_ns`), Reason/Text `reason`,
 * optional `detail_xml` (trusted, well-formed markup placed in Detail), and
 * wsa:RelatesTo when relates_to is non-empty. NULL on allocation failure.
 */
char *soap_fault_12(const char *code, const char *subcode_ns, const char *subcode, const char *reason,
		    const char *detail_xml, const char *relates_to, size_t *out_len);

/* Parse a WS-Trust RST (SOAP 1.2). On SOAP_OK `info` is filled. */
int soap_parse_rst(const char *in, size_t n, struct soap_rst_info *info);

/* Append `s` to out (cap bytes, NUL-terminated) with XML escaping; a byte
 * XML cannot carry (a control character, invalid UTF-8) becomes '?'. False
 * when it did not fit. */
bool soap_escape(char *out, size_t cap, const char *s);

const char *soap_strerror(int err);
/* Did the proxy fail (out of memory, no libxml2) rather than the message? */
bool soap_err_internal(int err);

#endif
