/*
 * test_soap.c - SOAP 1.2 <-> 1.1 conversions, locally built faults, the
 * RST parser and the hardened parser's refusals. Recorded-shape inputs are
 * in tests/data/soap/ (run from the repository root, as tests/run.sh does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wstrust/soap.h"
#include "t.h"

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(1 << 20);
	*n = 0;
	if (f && buf)
		*n = fread(buf, 1, (1 << 20) - 1, f);
	if (f)
		fclose(f);
	if (buf) {
		while (*n && (buf[*n - 1] == '\n'))
			(*n)--;
		buf[*n] = '\0';
	}
	return buf;
}

static void test_request_whoami(void)
{
	size_t n, on;
	char *in = slurp("tests/data/soap/whoami_12.xml", &n), *out = NULL;
	struct soap_request_info info;
	CHECK(in && n > 0);
	CHECK_INT(soap_request_to_11(in, n, &out, &on, &info), SOAP_OK);
	CHECK_STR(info.action, "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/Execute");
	CHECK_STR(info.message_id, "urn:uuid:2f9d2f0b-6a1e-4b53-8e43-0d3b3c1c9a11");
	CHECK_STR(info.sdk_version, "9.1");
	CHECK_STR(info.handle, "HANDLE0123456789abcdef");
	CHECK_STR(
	    out, "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "
		 "xmlns:a=\"http://www.w3.org/2005/08/addressing\" "
		 "xmlns:u=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">"
		 "<s:Header><SdkClientVersion xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">9.1"
		 "</SdkClientVersion><UserType xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">CrmUser"
		 "</UserType><MSCRMCallerID xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">"
		 "5f0bd0b3-1c1f-4a7e-9a52-2a4c3bb7a1f2</MSCRMCallerID></s:Header><s:Body><Execute "
		 "xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts/Services\"><request "
		 "xmlns:b=\"http://schemas.microsoft.com/xrm/2011/Contracts\" "
		 "xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" "
		 "xmlns:c=\"http://schemas.microsoft.com/crm/2011/Contracts\" i:type=\"c:WhoAmIRequest\"><b:Parameters "
		 "xmlns:d=\"http://schemas.datacontract.org/2004/07/System.Collections.Generic\"/><b:RequestId "
		 "i:nil=\"true\"/><b:RequestName>WhoAmI</b:RequestName></request></Execute></s:Body></s:Envelope>");
	CHECK(!strstr(out, "Security") && !strstr(out, "HANDLE") && !strstr(out, "2003/05"));
	free(in);
	free(out);
}

static void test_request_mustunderstand(void)
{
	const char *in =
	    "<e:Envelope xmlns:e=\"" SOAP_NS_12 "\"><e:Header><X xmlns=\"urn:x\" e:mustUnderstand=\"true\" "
	    "e:role=\"urn:r\">v</X></e:Header><e:Body><Create xmlns=\"urn:c\"/></e:Body></e:Envelope>";
	char *out = NULL;
	size_t on;
	struct soap_request_info info;
	CHECK_INT(soap_request_to_11(in, strlen(in), &out, &on, &info), SOAP_OK);
	CHECK_STR(out,
		  "<e:Envelope xmlns:e=\"" SOAP_NS_11 "\"><e:Header><X xmlns=\"urn:x\" e:mustUnderstand=\"1\">v</X>"
		  "</e:Header><e:Body><Create xmlns=\"urn:c\"/></e:Body></e:Envelope>");
	CHECK_STR(info.action, "");
	free(out);
}

/* Prefixes used only inside QName values (i:type="a:QueryExpression")
 * are declared on the Envelope: they must stay in scope. */
static void test_request_qname_values(void)
{
	const char *in = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"http://schemas.microsoft.com/xrm/2011/"
			 "Contracts\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Header><w:Action "
			 "xmlns:w=\"" SOAP_NS_WSA "\">urn:act/RetrieveMultiple</w:Action><CallerObjectId "
			 "xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">0b3c</CallerObjectId></s:Header>"
			 "<s:Body><RetrieveMultiple xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts/Services\">"
			 "<query i:type=\"a:QueryExpression\"><a:PageInfo><a:Count>50</a:Count></a:PageInfo></query>"
			 "</RetrieveMultiple></s:Body></s:Envelope>";
	char *out = NULL;
	size_t on;
	struct soap_request_info info;
	CHECK_INT(soap_request_to_11(in, strlen(in), &out, &on, &info), SOAP_OK);
	CHECK_STR(info.action, "urn:act/RetrieveMultiple");
	CHECK_STR(out, "<s:Envelope xmlns:s=\"" SOAP_NS_11 "\" xmlns:a=\"http://schemas.microsoft.com/xrm/2011/"
		       "Contracts\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Header><CallerObjectId "
		       "xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\">0b3c</CallerObjectId></s:Header>"
		       "<s:Body><RetrieveMultiple xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts/Services\">"
		       "<query i:type=\"a:QueryExpression\"><a:PageInfo><a:Count>50</a:Count></a:PageInfo></query>"
		       "</RetrieveMultiple></s:Body></s:Envelope>");
	free(out);
}

static void test_request_refusals(void)
{
	char *out = NULL;
	size_t on;
	struct soap_request_info info;
	const char *v11 = "<s:Envelope xmlns:s=\"" SOAP_NS_11 "\"><s:Body/></s:Envelope>";
	CHECK_INT(soap_request_to_11(v11, strlen(v11), &out, &on, &info), SOAP_E_VERSION);
	const char *nobody = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Header/></s:Envelope>";
	CHECK_INT(soap_request_to_11(nobody, strlen(nobody), &out, &on, &info), SOAP_E_SHAPE);
	/* a second Header, one after the Body, a second Body: refused, never passed on */
	const char *two_hdr =
	    "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Header/><s:Header><o:Security xmlns:o=\"" SOAP_NS_WSSE
	    "\"/></s:Header><s:Body/></s:Envelope>";
	CHECK_INT(soap_request_to_11(two_hdr, strlen(two_hdr), &out, &on, &info), SOAP_E_SHAPE);
	const char *hdr_after = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Body/><s:Header/></s:Envelope>";
	CHECK_INT(soap_request_to_11(hdr_after, strlen(hdr_after), &out, &on, &info), SOAP_E_SHAPE);
	const char *two_body = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Body/><s:Body/></s:Envelope>";
	CHECK_INT(soap_request_to_11(two_body, strlen(two_body), &out, &on, &info), SOAP_E_SHAPE);
	CHECK_INT(soap_request_to_11("<a><b></a>", 10, &out, &on, &info), SOAP_E_PARSE);
	CHECK_INT(soap_request_to_11("", 0, &out, &on, &info), SOAP_E_PARSE);
	CHECK(out == NULL);
}

static void test_malicious(void)
{
	char *out = NULL;
	size_t on;
	struct soap_request_info info;
	const char *laughs =
	    "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol1 "
	    "\"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><s:Envelope xmlns:s=\"" SOAP_NS_12
	    "\"><s:Body>&lol1;</s:Body></s:Envelope>";
	CHECK_INT(soap_request_to_11(laughs, strlen(laughs), &out, &on, &info), SOAP_E_DTD);
	const char *xxe = "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><s:Envelope xmlns:s=\"" SOAP_NS_12
			  "\"><s:Body>&x;</s:Body></s:Envelope>";
	CHECK_INT(soap_request_to_11(xxe, strlen(xxe), &out, &on, &info), SOAP_E_DTD);
	const char *ext = "<!DOCTYPE r SYSTEM \"http://127.0.0.1:1/x.dtd\"><r/>";
	CHECK_INT(soap_request_to_11(ext, strlen(ext), &out, &on, &info), SOAP_E_DTD);
	const char *undeclared = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Body>&x;</s:Body></s:Envelope>";
	CHECK(soap_request_to_11(undeclared, strlen(undeclared), &out, &on, &info) < 0);

	char deep[4096] = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Body>";
	for (int i = 0; i < 100; i++)
		strcat(deep, "<d>");
	for (int i = 0; i < 100; i++)
		strcat(deep, "</d>");
	strcat(deep, "</s:Body></s:Envelope>");
	CHECK_INT(soap_request_to_11(deep, strlen(deep), &out, &on, &info), SOAP_E_LIMIT);

	size_t big = SOAP_MAX_ATTR + 100;
	char *huge = malloc(big + 200);
	CHECK(huge);
	int k = snprintf(huge, 200, "<s:Envelope xmlns:s=\"%s\"><s:Body><x a=\"", SOAP_NS_12);
	memset(huge + k, 'A', big);
	snprintf(huge + k + big, 100, "\"/></s:Body></s:Envelope>");
	int r = soap_request_to_11(huge, strlen(huge), &out, &on, &info);
	free(huge);
	CHECK_INT(r, SOAP_E_LIMIT);
	CHECK(out == NULL);
}

static void test_fault_to_12(void)
{
	size_t n, on;
	bool fault;
	char *in = slurp("tests/data/soap/fault_11.xml", &n), *out = NULL;
	CHECK(in);
	CHECK_INT(soap_response_to_12(in, n,
				      "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/"
				      "Retrieve",
				      "urn:uuid:1", &out, &on, &fault),
		  SOAP_OK);
	CHECK(fault);
	CHECK_STR(out,
		  "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Header "
		  "xmlns:a=\"http://www.w3.org/2005/08/addressing\"><a:Action s:mustUnderstand=\"1\">"
		  "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/"
		  "RetrieveOrganizationServiceFaultFault</a:Action><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header>"
		  "<s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">"
		  "account With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist</s:Text></s:Reason>"
		  "<s:Detail><OrganizationServiceFault xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts\" "
		  "xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><ActivityId>"
		  "8d1c2a7e-0f6f-4a3c-9b7e-1f2e3d4c5b6a</ActivityId><ErrorCode>-2147220969</ErrorCode><ErrorDetails "
		  "xmlns:a=\"http://schemas.datacontract.org/2004/07/System.Collections.Generic\"/><Message>account "
		  "With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist</Message><Timestamp>"
		  "2026-11-22T04:00:01.0000000Z</Timestamp><ExceptionRetriable>false</ExceptionRetriable>"
		  "<ExceptionSource i:nil=\"true\"/><InnerFault i:nil=\"true\"/><OriginalException i:nil=\"true\"/>"
		  "<TraceText i:nil=\"true\"/></OrganizationServiceFault></s:Detail></s:Fault></s:Body></s:Envelope>");
	free(in);
	free(out);
}

static void test_response_to_12(void)
{
	const char *in = "<s:Envelope xmlns:s=\"" SOAP_NS_11 "\"><s:Body><CreateResponse "
			 "xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts/Services\"><CreateResult>"
			 "1d7c4f0a-0000-0000-0000-000000000042</CreateResult></CreateResponse></s:Body></s:Envelope>";
	char *out = NULL;
	size_t on;
	bool fault = true;
	CHECK_INT(soap_response_to_12(in, strlen(in), "urn:act/Create", "urn:uuid:9", &out, &on, &fault), SOAP_OK);
	CHECK(!fault);
	CHECK_STR(out, "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Header xmlns:a=\"" SOAP_NS_WSA
		       "\"><a:Action s:mustUnderstand=\"1\">urn:act/CreateResponse</a:Action><a:RelatesTo>urn:uuid:9"
		       "</a:RelatesTo></s:Header><s:Body><CreateResponse "
		       "xmlns=\"http://schemas.microsoft.com/xrm/2011/Contracts/Services\"><CreateResult>"
		       "1d7c4f0a-0000-0000-0000-000000000042</CreateResult></CreateResponse></s:Body></s:Envelope>");
	free(out);
	const char *srv = "<s:Envelope xmlns:s=\"" SOAP_NS_11 "\"><s:Body><s:Fault><faultcode>s:Server</faultcode>"
			  "<faultstring>boom</faultstring></s:Fault></s:Body></s:Envelope>";
	CHECK_INT(soap_response_to_12(srv, strlen(srv), "urn:act/Execute", "", &out, &on, &fault), SOAP_OK);
	CHECK(fault);
	CHECK_STR(out, "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Header xmlns:a=\"" SOAP_NS_WSA
		       "\"><a:Action s:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault</a:Action>"
		       "</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text "
		       "xml:lang=\"en-US\">boom</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>");
	free(out);
	const char *v12 = "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\"><s:Body/></s:Envelope>";
	CHECK_INT(soap_response_to_12(v12, strlen(v12), "", "", &out, &on, &fault), SOAP_E_VERSION);
}

static void test_foreign_faultcode(void)
{
	const char *in =
	    "<c:Envelope xmlns:c=\"" SOAP_NS_11 "\"><c:Body><c:Fault><faultcode "
	    "xmlns:a=\"http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher\">"
	    "a:DeserializationFailed</faultcode><faultstring xml:lang=\"en-US\">The formatter threw an "
	    "exception</faultstring></c:Fault></c:Body></c:Envelope>";
	char *out = NULL;
	size_t on;
	bool fault;
	CHECK_INT(soap_response_to_12(in, strlen(in), "urn:act/Execute", "urn:uuid:2", &out, &on, &fault), SOAP_OK);
	CHECK(fault);
	/* the envelope already uses prefix c: the subcode's namespace gets d */
	CHECK_STR(out, "<c:Envelope xmlns:c=\"" SOAP_NS_12 "\"><c:Header xmlns:a=\"" SOAP_NS_WSA
		       "\"><a:Action c:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault</a:Action>"
		       "<a:RelatesTo>urn:uuid:2</a:RelatesTo></c:Header><c:Body><c:Fault><c:Code><c:Value>c:Sender"
		       "</c:Value><c:Subcode><c:Value xmlns:d=\"http://schemas.microsoft.com/net/2005/12/"
		       "windowscommunicationfoundation/dispatcher\">d:DeserializationFailed</c:Value></c:Subcode>"
		       "</c:Code><c:Reason><c:Text xml:lang=\"en-US\">The formatter threw an exception</c:Text>"
		       "</c:Reason></c:Fault></c:Body></c:Envelope>");
	free(out);
}

static void test_local_fault(void)
{
	size_t n;
	char *f = soap_fault_12("Sender", "http://schemas.xmlsoap.org/ws/2005/02/trust", "wst:FailedAuthentication",
				"Authentication <Failure>", NULL, "urn:uuid:7", &n);
	CHECK(f);
	CHECK_STR(f, "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"" SOAP_NS_WSA
		     "\"><s:Header><a:Action s:mustUnderstand=\"1\">http://www.w3.org/2005/08/addressing/soap/fault"
		     "</a:Action><a:RelatesTo>urn:uuid:7</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>"
		     "s:Sender</s:Value><s:Subcode><s:Value xmlns:wst=\"http://schemas.xmlsoap.org/ws/2005/02/trust\">"
		     "wst:FailedAuthentication</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en-US\">"
		     "Authentication &lt;Failure&gt;</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>");
	CHECK_INT(n, strlen(f));
	free(f);
}

/* A faultstring longer than the Reason buffer is cut at a character, not dropped. */
static void test_long_fault_reason(void)
{
	size_t n = 9000, on;
	bool fault;
	char *msg = malloc(n + 1), *in = malloc(n + 512), *out = NULL;
	CHECK(msg && in);
	memset(msg, 'Y', n);
	memcpy(msg + 8190, "\xc3\xa9", 2); /* an e-acute across the 8191-byte cut */
	msg[n] = '\0';
	snprintf(in, n + 512,
		 "<s:Envelope xmlns:s=\"" SOAP_NS_11 "\"><s:Body><s:Fault><faultcode>s:Client</faultcode>"
		 "<faultstring>%s</faultstring></s:Fault></s:Body></s:Envelope>",
		 msg);
	CHECK_INT(soap_response_to_12(in, strlen(in), "urn:a", "urn:uuid:1", &out, &on, &fault), SOAP_OK);
	CHECK(fault);
	const char *t = out ? strstr(out, "<s:Text xml:lang=\"en-US\">") : NULL;
	CHECK(t != NULL);
	if (t) {
		t += strlen("<s:Text xml:lang=\"en-US\">");
		CHECK_INT(strcspn(t, "<"), 8190); /* the whole e-acute would not fit: cut before it */
	}
	free(msg);
	free(in);
	free(out);
}

/* What a locally built answer echoes: XML-escaped, and a byte XML cannot
 * carry (a control character, invalid UTF-8) replaced. */
static void test_escape(void)
{
	char out[64] = "";
	CHECK(soap_escape(out, sizeof out,
			  "a\x01"
			  "b<\"&>\t\xff\xc3\xa9\xed\xa0\x80"));
	CHECK_STR(out, "a?b&lt;&quot;&amp;&gt;\t?\xc3\xa9???");
	char small[8] = "";
	CHECK(!soap_escape(small, sizeof small, "<<"));
}

static void test_rst(void)
{
	const char *rst =
	    "<s:Envelope xmlns:s=\"" SOAP_NS_12 "\" xmlns:a=\"" SOAP_NS_WSA "\" xmlns:u=\"urn:u\"><s:Header>"
	    "<a:Action s:mustUnderstand=\"1\">http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue</a:Action>"
	    "<a:MessageID>urn:uuid:m1</a:MessageID><o:Security xmlns:o=\"" SOAP_NS_WSSE "\"><o:UsernameToken "
	    "u:Id=\"user\"><o:Username>alice@contoso.com</o:Username><o:Password>p&amp;ss w0rd</o:Password>"
	    "</o:UsernameToken></o:Security></s:Header><s:Body><t:RequestSecurityToken "
	    "xmlns:t=\"http://schemas.xmlsoap.org/ws/2005/02/trust\"><wsp:AppliesTo "
	    "xmlns:wsp=\"http://schemas.xmlsoap.org/ws/2004/09/policy\"><a:EndpointReference><a:Address>"
	    "urn:crmemea:dynamics.com</a:Address></a:EndpointReference></wsp:AppliesTo></t:RequestSecurityToken>"
	    "</s:Body></s:Envelope>";
	struct soap_rst_info info;
	CHECK_INT(soap_parse_rst(rst, strlen(rst), &info), SOAP_OK);
	CHECK_STR(info.username, "alice@contoso.com");
	CHECK_STR(info.password, "p&ss w0rd");
	CHECK_STR(info.applies_to, "urn:crmemea:dynamics.com");
	CHECK_STR(info.message_id, "urn:uuid:m1");
	CHECK_STR(info.action, "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue");
	CHECK_STR(info.assertion_id, "");
	/* the password byte for byte: spaces around it are part of it */
	static const char pw_pre[] = "<o:Password>p&amp;ss w0rd</o:Password>";
	const char *at = strstr(rst, pw_pre);
	CHECK(at != NULL);
	if (at) {
		char spaced[2048];
		snprintf(spaced, sizeof spaced, "%.*s<o:Password> pw1\n\t</o:Password>%s", (int)(at - rst), rst,
			 at + strlen(pw_pre));
		CHECK_INT(soap_parse_rst(spaced, strlen(spaced), &info), SOAP_OK);
		CHECK_STR(info.password, " pw1\n\t");
		CHECK_STR(info.username, "alice@contoso.com");
	}
}

int main(void)
{
	RUN(test_request_whoami);
	RUN(test_request_mustunderstand);
	RUN(test_request_qname_values);
	RUN(test_request_refusals);
	RUN(test_malicious);
	RUN(test_fault_to_12);
	RUN(test_response_to_12);
	RUN(test_foreign_faultcode);
	RUN(test_local_fault);
	RUN(test_long_fault_reason);
	RUN(test_escape);
	RUN(test_rst);
	return T_DONE();
}
