/*
 * soap.c - SOAP 1.2 <-> 1.1 envelope conversions for the WS-Trust bridge
 * (see soap.h), and the one hardened libxml2 parser every envelope and RST
 * goes through.
 *
 * Conversions edit the parsed tree in place: the envelope namespace
 * declaration is rewritten (so every prefix declared by the client stays
 * in scope, which matters because Organization service bodies carry
 * QName values such as i:type="a:Entity"), dropped header blocks are
 * unlinked, and a fault's children are renamed, never re-serialised by hand.
 */
#include "wstrust/soap.h"

#include "wstrust/xmlapi.h" /* libxml2, through the table loaded on first use */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/utf8.h"

#define WSA_FAULT_ACTION "http://www.w3.org/2005/08/addressing/soap/fault"
#define FAULT_FMT                                                                                                      \
	"<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"" SOAP_NS_WSA "\"><s:Header>"                                \
	"<a:Action s:mustUnderstand=\"1\">" WSA_FAULT_ACTION "</a:Action>%s</s:Header><s:Body>"                        \
	"<s:Fault><s:Code><s:Value>s:%s</s:Value>%s</s:Code><s:Reason><s:Text xml:lang=\"en-US\">"                     \
	"%s</s:Text></s:Reason>%s%s%s</s:Fault></s:Body></s:Envelope>"

/* ---- parsing ------------------------------------------------------------ */

/* libxml2 writes some errors (encoding ones) through its generic handler
 * whatever the parse options; they must not reach our JSON log. */
static void silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

/* SAX hook for "<!DOCTYPE": stop before the internal subset is read. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *ext_id, const xmlChar *sys_id)
{
	xmlParserCtxtPtr ctxt = ctx;
	(void)name;
	(void)ext_id;
	(void)sys_id;
	*(bool *)ctxt->_private = true;
	xmlStopParser(ctxt);
}

static bool ns_is(const xmlNode *n, const char *href)
{
	return n && n->ns && n->ns->href && strcmp((const char *)n->ns->href, href) == 0;
}

static bool named(const xmlNode *n, const char *href, const char *local)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, local) == 0 &&
	       (href ? ns_is(n, href) : true);
}

/* Depth, attribute length and node count caps (iterative walk). */
static int check_limits(xmlNode *root)
{
	size_t nodes = 0;
	int depth = 1;
	xmlNode *n = root;
	while (n) {
		if (++nodes > SOAP_MAX_NODES || depth > SOAP_MAX_DEPTH)
			return SOAP_E_LIMIT;
		if (n->type == XML_ENTITY_REF_NODE || n->type == XML_ENTITY_NODE || n->type == XML_DTD_NODE)
			return SOAP_E_DTD;
		if (n->type == XML_ELEMENT_NODE)
			for (xmlAttr *a = n->properties; a; a = a->next)
				for (xmlNode *t = a->children; t; t = t->next)
					if (t->content && strlen((const char *)t->content) > SOAP_MAX_ATTR)
						return SOAP_E_LIMIT;
		if (n->type == XML_ELEMENT_NODE && n->children) {
			n = n->children;
			depth++;
			continue;
		}
		while (n && n != root && !n->next) {
			n = n->parent;
			depth--;
		}
		if (!n || n == root)
			break;
		n = n->next;
	}
	return SOAP_OK;
}

/* Parse `in` with every network, DTD and entity feature off. */
static int parse(const char *in, size_t n, xmlDocPtr *out)
{
	bool doctype = false;
	int ret = SOAP_E_PARSE;
	*out = NULL;
	if (n > SOAP_MAX_INPUT || n > (size_t)INT32_MAX)
		return SOAP_E_LIMIT;
	if (!xmlapi_load(NULL))
		return SOAP_E_UNAVAILABLE;
	xmlSetGenericErrorFunc(NULL, silent); /* per thread in libxml2 */
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return SOAP_E_NOMEM;
	ctxt->_private = &doctype;
	ctxt->sax->internalSubset = on_doctype;
	ctxt->sax->externalSubset = on_doctype;
	xmlDocPtr doc =
	    xmlCtxtReadMemory(ctxt, in, (int)n, NULL, NULL,
			      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (doctype || (doc && (doc->intSubset || doc->extSubset))) {
		ret = SOAP_E_DTD;
		goto done;
	}
	if (!doc || !ctxt->wellFormed || !xmlDocGetRootElement(doc))
		goto done;
	ret = check_limits(xmlDocGetRootElement(doc));
	if (ret == SOAP_OK) {
		*out = doc;
		doc = NULL;
	}
done:
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(ctxt);
	return ret;
}

/* ---- tree helpers --------------------------------------------------------- */

static xmlNode *child(xmlNode *parent, const char *href, const char *local)
{
	for (xmlNode *c = parent ? parent->children : NULL; c; c = c->next)
		if (named(c, href, local))
			return c;
	return NULL;
}

/* How copy_text treats the text content it copies. */
enum text_how {
	TEXT_TRIM = 1u, /* without leading and trailing spaces, tabs, CR, LF */
	TEXT_CUT = 2u,  /* an oversized value is cut (at a character), not dropped */
};

/* Copy the text content of `n` into out (cap bytes); "" when absent, and
 * when longer than out unless TEXT_CUT. */
static void copy_text(xmlNode *n, char *out, size_t cap, unsigned how)
{
	out[0] = '\0';
	if (!n)
		return;
	xmlChar *t = xmlNodeGetContent(n);
	if (!t)
		return;
	const char *s = (const char *)t;
	size_t len = strlen(s);
	while ((how & TEXT_TRIM) && len && strchr(" \t\r\n", s[len - 1]))
		len--;
	while ((how & TEXT_TRIM) && len && strchr(" \t\r\n", *s))
		s++, len--;
	if (len >= cap && (how & TEXT_CUT)) {
		len = cap - 1;
		while (len && ((unsigned char)s[len] & 0xC0) == 0x80)
			len--; /* not inside a UTF-8 sequence */
	} else if (len >= cap) {
		len = 0; /* an oversized value is as good as none */
	}
	memcpy(out, s, len);
	out[len] = '\0';
	explicit_bzero(t, strlen((const char *)t));
	xmlFree(t);
}

/* The trimmed text content of `n`; "" when absent or oversized. */
static void text_of(xmlNode *n, char *out, size_t cap)
{
	copy_text(n, out, cap, TEXT_TRIM);
}

/* Point every declaration of `from` in the tree at `to`. */
static int rewrite_ns(xmlNode *n, const char *from, const char *to)
{
	for (; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		for (xmlNs *ns = n->nsDef; ns; ns = ns->next) {
			if (!ns->href || strcmp((const char *)ns->href, from) != 0)
				continue;
			xmlChar *h = xmlStrdup((const xmlChar *)to);
			if (!h)
				return SOAP_E_NOMEM;
			xmlFree((xmlChar *)ns->href);
			ns->href = h;
		}
		if (rewrite_ns(n->children, from, to) < 0)
			return SOAP_E_NOMEM;
	}
	return SOAP_OK;
}

/* Envelope root, its Header (may be NULL) and Body, in namespace `ns`. */
static int envelope(xmlDocPtr doc, const char *ns, const char *other, xmlNode **hdr, xmlNode **body)
{
	xmlNode *root = xmlDocGetRootElement(doc);
	if (named(root, other, "Envelope"))
		return SOAP_E_VERSION;
	if (!named(root, ns, "Envelope"))
		return SOAP_E_SHAPE;
	/* one Body, after at most one Header: a second Header would pass on
	 * unconverted, its WS-Security block with it */
	unsigned headers = 0, bodies = 0;
	*hdr = *body = NULL;
	for (xmlNode *c = root->children; c; c = c->next) {
		if (named(c, ns, "Header") && !headers++ && !bodies)
			*hdr = c;
		else if (named(c, ns, "Body") && !bodies++)
			*body = c;
	}
	return *body && bodies == 1 && headers <= 1 && (!headers || *hdr) ? SOAP_OK : SOAP_E_SHAPE;
}

static int dump(xmlDocPtr doc, char **out, size_t *out_len)
{
	int ret = SOAP_E_NOMEM;
	xmlBufferPtr b = xmlBufferCreate();
	if (!b)
		return SOAP_E_NOMEM;
	if (xmlNodeDump(b, doc, xmlDocGetRootElement(doc), 0, 0) < 0)
		goto done;
	size_t len = (size_t)xmlBufferLength(b);
	*out = malloc(len + 1);
	if (!*out)
		goto done;
	memcpy(*out, xmlBufferContent(b), len);
	(*out)[len] = '\0';
	*out_len = len;
	ret = SOAP_OK;
done:
	xmlBufferFree(b);
	return ret;
}

/* ---- request: 1.2 -> 1.1 ---------------------------------------------------- */

/* The legacy token handle: Security/EncryptedData/CipherData/CipherValue. */
static void find_handle(xmlNode *sec, char *out, size_t cap)
{
	static const char xenc[] = "http://www.w3.org/2001/04/xmlenc#";
	out[0] = '\0';
	for (xmlNode *c = sec->children; c; c = c->next)
		if (named(c, xenc, "EncryptedData")) {
			text_of(child(child(c, xenc, "CipherData"), xenc, "CipherValue"), out, cap);
			return;
		}
}

/* Keep or drop each header block; 1.2-only attributes are removed. */
static void convert_request_header(xmlNode *hdr, struct soap_request_info *info)
{
	xmlNode *c = hdr->children, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (ns_is(c, SOAP_NS_WSA)) {
			if (named(c, NULL, "Action"))
				text_of(c, info->action, sizeof info->action);
			else if (named(c, NULL, "MessageID"))
				text_of(c, info->message_id, sizeof info->message_id);
		} else if (named(c, SOAP_NS_WSSE, "Security")) {
			find_handle(c, info->handle, sizeof info->handle);
		} else {
			if (named(c, NULL, "SdkClientVersion"))
				text_of(c, info->sdk_version, sizeof info->sdk_version);
			xmlUnsetNsProp(c, hdr->ns, (const xmlChar *)"role");
			xmlUnsetNsProp(c, hdr->ns, (const xmlChar *)"relay");
			xmlChar *mu = xmlGetNsProp(c, (const xmlChar *)"mustUnderstand", hdr->ns->href);
			if (mu) {
				bool yes = strcmp((const char *)mu, "true") == 0 || strcmp((const char *)mu, "1") == 0;
				xmlSetNsProp(c, hdr->ns, (const xmlChar *)"mustUnderstand",
					     (const xmlChar *)(yes ? "1" : "0"));
				xmlFree(mu);
			}
			continue;
		}
		xmlUnlinkNode(c);
		xmlFreeNode(c);
	}
}

int soap_request_to_11(const char *in, size_t n, char **out, size_t *out_len, struct soap_request_info *info)
{
	xmlDocPtr doc;
	xmlNode *hdr = NULL, *body = NULL;
	memset(info, 0, sizeof *info);
	*out = NULL;
	*out_len = 0;
	int ret = parse(in, n, &doc);
	if (ret != SOAP_OK)
		return ret;
	ret = envelope(doc, SOAP_NS_12, SOAP_NS_11, &hdr, &body);
	if (ret != SOAP_OK)
		goto done;
	if (hdr)
		convert_request_header(hdr, info);
	ret = rewrite_ns(xmlDocGetRootElement(doc), SOAP_NS_12, SOAP_NS_11);
	if (ret == SOAP_OK)
		ret = dump(doc, out, out_len);
done:
	xmlFreeDoc(doc);
	return ret;
}

/* ---- response: 1.1 -> 1.2 ----------------------------------------------------- */

/*
 * "s:Client" -> "<prefix>:Sender" etc. SOAP 1.2 5.4.6 allows only its own
 * codes in Code/Value: a code from another namespace (WCF's
 * "a:DeserializationFailed") becomes Sender or Receiver, and the caller
 * keeps it as the Subcode (*foreign set).
 */
static void fault_value(const char *code11, bool in_env, const xmlNs *env, char *out, size_t cap, bool *foreign)
{
	static const char *const sender[] = {"DeserializationFailed", "InvalidSecurity",        "FailedAuthentication",
					     "ActionNotSupported",    "DestinationUnreachable", "InvalidMessage"};
	const char *local = strchr(code11, ':') ? strchr(code11, ':') + 1 : code11;
	const char *v = "Receiver";
	*foreign = !in_env;
	if (in_env && strcmp(local, "Client") == 0)
		v = "Sender";
	else if (in_env && (strcmp(local, "VersionMismatch") == 0 || strcmp(local, "MustUnderstand") == 0))
		v = local;
	for (size_t i = 0; !in_env && i < sizeof sender / sizeof sender[0]; i++)
		if (strcmp(local, sender[i]) == 0)
			v = "Sender";
	if (env->prefix)
		snprintf(out, cap, "%s:%s", (const char *)env->prefix, v);
	else
		snprintf(out, cap, "%s", v);
}

/* The namespace of faultcode's QName prefix (copied: fc is freed next). */
static xmlChar *code_ns(xmlNode *fc, const char *code)
{
	char prefix[64];
	const char *colon = strchr(code, ':');
	if (!fc || !colon || (size_t)(colon - code) >= sizeof prefix)
		return NULL;
	memcpy(prefix, code, (size_t)(colon - code));
	prefix[colon - code] = '\0';
	xmlNs *ns = xmlSearchNs(fc->doc, fc, (const xmlChar *)prefix);
	return ns && ns->href ? xmlStrdup(ns->href) : NULL;
}

/* Code/Subcode/Value for a foreign faultcode, under a prefix of its own. */
static int add_subcode(xmlNode *cn, const xmlNs *env, const xmlChar *href, const char *code)
{
	const char *local = strchr(code, ':') ? strchr(code, ':') + 1 : code;
	char qname[160];
	xmlNode *sub = xmlNewChild(cn, (xmlNs *)env, (const xmlChar *)"Subcode", NULL);
	if (!sub)
		return SOAP_E_NOMEM;
	/* never the envelope's own prefix: Value's name must keep resolving to it */
	const char *p = env->prefix && strcmp((const char *)env->prefix, "c") == 0 ? "d" : "c";
	snprintf(qname, sizeof qname, "%s%s%s", href ? p : "", href ? ":" : "", local);
	xmlNode *v = xmlNewTextChild(sub, (xmlNs *)env, (const xmlChar *)"Value", (const xmlChar *)qname);
	if (!v || (href && !xmlNewNs(v, href, (const xmlChar *)p)))
		return SOAP_E_NOMEM;
	return SOAP_OK;
}

/* Rebuild a 1.1 Fault's children as 1.2 Code/Reason/Detail. */
static int convert_fault(xmlNode *fault)
{
	char code[128], value[160], reason[8192];
	xmlNs *env = fault->ns;
	xmlNode *fc = child(fault, NULL, "faultcode"), *fs = child(fault, NULL, "faultstring");
	xmlNode *detail = child(fault, NULL, "detail");
	text_of(fc, code, sizeof code);
	copy_text(fs, reason, sizeof reason, TEXT_TRIM | TEXT_CUT); /* a long message cut, not lost */
	xmlChar *href = code_ns(fc, code);
	bool foreign;
	fault_value(code, href ? strcmp((const char *)href, SOAP_NS_12) == 0 : !strchr(code, ':'), env, value,
		    sizeof value, &foreign);
	xmlChar *lang = fs ? xmlNodeGetLang(fs) : NULL;
	if (detail)
		xmlUnlinkNode(detail);
	for (xmlNode *c = fault->children, *next; c; c = next) {
		next = c->next;
		xmlUnlinkNode(c);
		xmlFreeNode(c);
	}
	int ret = SOAP_E_NOMEM;
	xmlNode *cn = xmlNewChild(fault, env, (const xmlChar *)"Code", NULL);
	xmlNode *rn = xmlNewChild(fault, env, (const xmlChar *)"Reason", NULL);
	if (!cn || !rn || !xmlNewTextChild(cn, env, (const xmlChar *)"Value", (const xmlChar *)value))
		goto done;
	if (foreign && code[0] && add_subcode(cn, env, href, code) != SOAP_OK)
		goto done;
	xmlNode *tn = xmlNewTextChild(rn, env, (const xmlChar *)"Text", (const xmlChar *)reason);
	if (!tn)
		goto done;
	xmlNodeSetLang(tn, lang ? lang : (const xmlChar *)"en-US");
	if (detail) {
		xmlNodeSetName(detail, (const xmlChar *)"Detail");
		xmlSetNs(detail, env);
		if (!xmlAddChild(fault, detail))
			goto done;
		detail = NULL;
	}
	ret = SOAP_OK;
done:
	xmlFreeNode(detail);
	xmlFree(lang);
	xmlFree(href);
	return ret;
}

static bool has_org_fault(xmlNode *fault)
{
	xmlNode *d = child(fault, NULL, "Detail");
	for (xmlNode *c = d ? d->children : NULL; c; c = c->next)
		if (named(c, NULL, "OrganizationServiceFault"))
			return true;
	return false;
}

/* Header with wsa:Action and wsa:RelatesTo, first child of the Envelope. */
static int add_addressing(xmlNode *root, xmlNode *hdr, const char *action, const char *relates_to)
{
	if (!hdr) {
		hdr = xmlNewDocNode(root->doc, root->ns, (const xmlChar *)"Header", NULL);
		if (!hdr)
			return SOAP_E_NOMEM;
		if (!(root->children ? xmlAddPrevSibling(root->children, hdr) : xmlAddChild(root, hdr))) {
			xmlFreeNode(hdr);
			return SOAP_E_NOMEM;
		}
	}
	xmlNs *wsa = xmlNewNs(hdr, (const xmlChar *)SOAP_NS_WSA, (const xmlChar *)"a");
	if (!wsa)
		return SOAP_E_NOMEM;
	xmlNode *first = hdr->children;
	xmlNode *an = xmlNewDocNode(root->doc, wsa, (const xmlChar *)"Action", NULL);
	if (!an)
		return SOAP_E_NOMEM;
	xmlNodeAddContent(an, (const xmlChar *)action);
	xmlSetNsProp(an, root->ns, (const xmlChar *)"mustUnderstand", (const xmlChar *)"1");
	if (!(first ? xmlAddPrevSibling(first, an) : xmlAddChild(hdr, an))) {
		xmlFreeNode(an);
		return SOAP_E_NOMEM;
	}
	if (relates_to && *relates_to &&
	    !xmlNewTextChild(hdr, wsa, (const xmlChar *)"RelatesTo", (const xmlChar *)relates_to))
		return SOAP_E_NOMEM;
	return SOAP_OK;
}

int soap_response_to_12(const char *in, size_t n, const char *req_action, const char *relates_to, char **out,
			size_t *out_len, bool *is_fault)
{
	xmlDocPtr doc;
	xmlNode *hdr = NULL, *body = NULL;
	char action[SOAP_ACTION_MAX + 64];
	*out = NULL;
	*out_len = 0;
	*is_fault = false;
	int ret = parse(in, n, &doc);
	if (ret != SOAP_OK)
		return ret;
	ret = envelope(doc, SOAP_NS_11, SOAP_NS_12, &hdr, &body);
	if (ret != SOAP_OK)
		goto done;
	ret = rewrite_ns(xmlDocGetRootElement(doc), SOAP_NS_11, SOAP_NS_12);
	xmlNode *fault = child(body, SOAP_NS_12, "Fault");
	if (ret == SOAP_OK && fault) {
		*is_fault = true;
		ret = convert_fault(fault);
	}
	if (ret != SOAP_OK)
		goto done;
	const char *ra = req_action ? req_action : "";
	if (*is_fault && has_org_fault(fault) && *ra)
		snprintf(action, sizeof action, "%sOrganizationServiceFaultFault", ra);
	else if (*is_fault)
		snprintf(action, sizeof action, "%s", WSA_FAULT_ACTION);
	else
		snprintf(action, sizeof action, "%sResponse", ra);
	ret = add_addressing(xmlDocGetRootElement(doc), hdr, action, relates_to);
	if (ret == SOAP_OK)
		ret = dump(doc, out, out_len);
done:
	xmlFreeDoc(doc);
	return ret;
}

/* ---- locally built faults --------------------------------------------------------- */

bool soap_escape(char *out, size_t cap, const char *s)
{
	size_t len = strlen(out), left = strlen(s);
	while (left) {
		const unsigned char c = (unsigned char)*s;
		size_t seq = utf8_seq_len((const unsigned char *)s, left);
		const char *e = c == '<'   ? "&lt;"
				: c == '>' ? "&gt;"
				: c == '&' ? "&amp;"
				: c == '"' ? "&quot;"
				/* XML 1.0 has no C0 control but tab, LF, CR; bad UTF-8 is no text */
				: seq == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r') ? "?"
												: NULL;
		size_t in = seq ? seq : 1, k = e ? strlen(e) : in;
		if (len + k + 1 > cap)
			return false;
		memcpy(out + len, e ? e : s, k);
		len += k;
		out[len] = '\0';
		s += in;
		left -= in;
	}
	return true;
}

char *soap_fault_12(const char *code, const char *subcode_ns, const char *subcode, const char *reason,
		    const char *detail_xml, const char *relates_to, size_t *out_len)
{
	char rel[SOAP_MSGID_MAX * 6 + 64] = "", sub[SOAP_ACTION_MAX * 2] = "", txt[2048] = "";
	if (relates_to && *relates_to) {
		snprintf(rel, sizeof rel, "<a:RelatesTo>");
		if (!soap_escape(rel, sizeof rel, relates_to))
			rel[0] = '\0';
		else
			snprintf(rel + strlen(rel), sizeof rel - strlen(rel), "</a:RelatesTo>");
	}
	const char *colon = subcode ? strchr(subcode, ':') : NULL;
	if (colon && subcode_ns)
		snprintf(sub, sizeof sub, "<s:Subcode><s:Value xmlns:%.*s=\"%s\">%s</s:Value></s:Subcode>",
			 (int)(colon - subcode), subcode, subcode_ns, subcode);
	soap_escape(txt, sizeof txt, reason ? reason : "");
	const char *d = detail_xml ? detail_xml : "";
	int n = snprintf(NULL, 0, FAULT_FMT, rel, code, sub, txt, *d ? "<s:Detail>" : "", d, *d ? "</s:Detail>" : "");
	if (n < 0)
		return NULL;
	char *out = malloc((size_t)n + 1);
	if (!out)
		return NULL;
	snprintf(out, (size_t)n + 1, FAULT_FMT, rel, code, sub, txt, *d ? "<s:Detail>" : "", d,
		 *d ? "</s:Detail>" : "");
	*out_len = (size_t)n;
	return out;
}

/* ---- WS-Trust RST ---------------------------------------------------------------- */

/* Overwrite the text under `n` (a password) before the tree is freed;
 * strings shared in the parser's dictionary cannot be written. */
static void wipe_text(xmlDocPtr doc, xmlNode *n)
{
	for (xmlNode *t = n ? n->children : NULL; t; t = t->next)
		if (t->type == XML_TEXT_NODE && t->content && !(doc->dict && xmlDictOwns(doc->dict, t->content)) &&
		    t->content != (xmlChar *)&t->properties)
			explicit_bzero(t->content, strlen((const char *)t->content));
}

static xmlNode *find_local(xmlNode *n, const char *local, int depth)
{
	for (; n && depth < SOAP_MAX_DEPTH; n = n->next) {
		if (named(n, NULL, local))
			return n;
		xmlNode *f = find_local(n->children, local, depth + 1);
		if (f)
			return f;
	}
	return NULL;
}

int soap_parse_rst(const char *in, size_t n, struct soap_rst_info *info)
{
	xmlDocPtr doc;
	xmlNode *hdr = NULL, *body = NULL;
	memset(info, 0, sizeof *info);
	int ret = parse(in, n, &doc);
	if (ret != SOAP_OK)
		return ret;
	ret = envelope(doc, SOAP_NS_12, SOAP_NS_11, &hdr, &body);
	if (ret != SOAP_OK)
		goto done;
	text_of(child(hdr, SOAP_NS_WSA, "Action"), info->action, sizeof info->action);
	text_of(child(hdr, SOAP_NS_WSA, "MessageID"), info->message_id, sizeof info->message_id);
	xmlNode *sec = child(hdr, SOAP_NS_WSSE, "Security");
	xmlNode *ut = child(sec, SOAP_NS_WSSE, "UsernameToken");
	text_of(child(ut, SOAP_NS_WSSE, "Username"), info->username, sizeof info->username);
	xmlNode *pw = child(ut, SOAP_NS_WSSE, "Password");
	copy_text(pw, info->password, sizeof info->password, 0); /* byte for byte: spaces may be part of it */
	wipe_text(doc, pw);
	xmlNode *as = sec ? find_local(sec->children, "Assertion", 0) : NULL;
	if (as) {
		xmlChar *id = xmlGetProp(as, (const xmlChar *)"ID");
		if (!id)
			id = xmlGetProp(as, (const xmlChar *)"AssertionID");
		if (id && strlen((const char *)id) < sizeof info->assertion_id)
			memcpy(info->assertion_id, id, strlen((const char *)id) + 1);
		xmlFree(id);
	}
	xmlNode *addr = find_local(body->children, "Address", 0);
	text_of(addr, info->applies_to, sizeof info->applies_to);
	if (!find_local(body->children, "RequestSecurityToken", 0))
		ret = SOAP_E_SHAPE;
done:
	xmlFreeDoc(doc);
	return ret;
}

bool soap_err_internal(int err)
{
	return err == SOAP_E_NOMEM || err == SOAP_E_UNAVAILABLE;
}

const char *soap_strerror(int err)
{
	switch (err) {
	case SOAP_OK:
		return "ok";
	case SOAP_E_PARSE:
		return "the message is not well-formed XML";
	case SOAP_E_DTD:
		return "document type declarations and entities are not accepted";
	case SOAP_E_LIMIT:
		return "the message exceeds a size, nesting or attribute limit";
	case SOAP_E_SHAPE:
		return "the message is not the expected SOAP envelope";
	case SOAP_E_VERSION:
		return "the message uses the other SOAP version";
	case SOAP_E_UNAVAILABLE:
		return "the XML library (libxml2) cannot be loaded";
	default:
		return "out of memory";
	}
}
