"""test_soap_bridge.py - a soap_bridge route: SOAP 1.2 Organization service
requests (the shape WS-Trust era clients send) converted to the SOAP 1.1
dialect of Organization.svc/web, which the simulated Dataverse checks
(tests/sim/orgsvc.py), and the answers and faults converted back to
SOAP 1.2 with the RelatesTo the client expects. Malicious XML is refused
with a fault before anything goes upstream; an answer larger than
soap_max_response becomes a clear fault."""

import os
import re
import sys

from harness import (eq, DATAVERSE_URL, REPO, TENANT_ID, Proxy, Sim, Work, default_credentials,
                     default_routes, proxy_ini, raw)

sys.path.insert(0, os.path.join(REPO, "tests", "sim"))
from common import stable_guid  # noqa: E402

W = SIM = PX = None
S12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
CON = "http://schemas.microsoft.com/xrm/2011/Contracts"
SVC = "http://schemas.microsoft.com/xrm/2011/Contracts/Services"
ACT = SVC + "/IOrganizationService/"
ORG = "/XRMServices/2011/Organization.svc"
CT12 = "application/soap+xml; charset=UTF-8"


def routes():
    r = default_routes()
    r["org"] = {"match_path": "/XRMServices/", "upstream": DATAVERSE_URL, "audience": "dataverse",
                "credential": "contoso", "soap_bridge": "true"}
    r["orgbad"] = {"match_path": "/bad/", "strip_prefix": "true", "upstream": DATAVERSE_URL,
                   "audience": "dataverse", "credential": "wrong", "soap_bridge": "true"}
    return r


def credentials():
    c = default_credentials()
    c["wrong"] = {"tenant": TENANT_ID, "client_id": "99999999-aaaa-4bbb-8ccc-000000000099", "secret": "nope"}
    return c


def setup_module():
    global W, SIM, PX
    W = Work("test_soap_bridge")
    SIM = Sim(W).start()
    PX = Proxy(W, proxy_ini(SIM, routes=routes(), credentials=credentials(), extra_proxy={"soap_max_response": "4m",
                                                                                   "throttle_max_wait": "1s"})).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()



def envelope12(op, body, msgid, extra_headers=""):
    """A SOAP 1.2 request as OrganizationServiceProxy-era clients build it."""
    return ('<s:Envelope xmlns:s="%s" xmlns:a="%s" xmlns:u="http://docs.oasis-open.org/wss/2004/01/'
            'oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><a:Action s:mustUnderstand="1">%s%s</a:Action>'
            '<SdkClientVersion xmlns="%s">9.1</SdkClientVersion><UserType xmlns="%s">CrmUser</UserType>%s'
            '<a:MessageID>%s</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous'
            '</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">https://contoso.api.crm4.dynamics.com%s</a:To>'
            '<o:Security s:mustUnderstand="1" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-'
            'wssecurity-secext-1.0.xsd"><u:Timestamp u:Id="_0"><u:Created>2026-11-22T04:00:00Z</u:Created>'
            '<u:Expires>2026-11-22T04:05:00Z</u:Expires></u:Timestamp></o:Security></s:Header><s:Body>%s</s:Body>'
            '</s:Envelope>' % (S12, WSA, ACT, op, CON, CON, extra_headers, msgid, ORG, body)).encode()


def post(body, target=ORG, ct=CT12, headers=()):
    return PX.request("POST", target, [("Content-Type", ct), ("Host", "contoso.api.crm4.dynamics.com")]
                      + list(headers), body)


def header(r, name):
    for k, v in r.headers:
        if k.lower() == name.lower():
            return v
    return None


def head12(action, msgid):
    return ('<s:Envelope xmlns:s="%s"><s:Header xmlns:a="%s"><a:Action s:mustUnderstand="1">%s</a:Action>'
            '<a:RelatesTo>%s</a:RelatesTo></s:Header><s:Body>' % (S12, WSA, action, msgid))


def web_requests():
    return [r for r in SIM.requests() if r["target"].startswith(ORG + "/web")]


def up_header(rec, name):
    return [v for k, v in rec["headers"] if k.lower() == name.lower()]


WHOAMI = ('<Execute xmlns="%s"><request i:type="c:WhoAmIRequest" xmlns:b="%s" '
          'xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://schemas.microsoft.com/crm/2011/'
          'Contracts"><b:Parameters xmlns:d="http://schemas.datacontract.org/2004/07/System.Collections.Generic"/>'
          '<b:RequestId i:nil="true"/><b:RequestName>WhoAmI</b:RequestName></request></Execute>' % (SVC, CON))


def mapped_libraries(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {os.path.basename(line.split()[-1]) for line in f if "/" in line}


def test_libxml2_loaded_only_when_a_ws_trust_feature_is_on():
    """libxml2 (with the ICU and libstdc++ it pulls in) is not linked: a proxy
    without soap_bridge or sts_facade never maps it or ICU; with either it is
    loaded at startup, so a missing library is a startup error."""
    plain = Proxy(W, proxy_ini(SIM), name="noxml").start()
    try:
        eq(plain.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200)
        libs = mapped_libraries(plain.pid)
        # libstdc++ is not checked: the ASan build's runtime maps it by itself
        eq(sorted(n for n in libs if n.startswith(("libxml2", "libicu"))), [])
        eq("libcurl.so.4.8.0" in libs, True)
    finally:
        plain.stop()
    libs = mapped_libraries(PX.pid)
    eq(any(n.startswith("libxml2.so.2") for n in libs), True)
    sts = Proxy(W, proxy_ini(SIM, extra_proxy={"sts_facade": "true"}), name="stsxml").start()
    try:
        eq(any(n.startswith("libxml2.so.2") for n in mapped_libraries(sts.pid)), True)
    finally:
        sts.stop()


def test_execute_whoami_converted_both_ways():
    n0 = len(web_requests())
    caller = '<MSCRMCallerID xmlns="%s">5f0bd0b3-1c1f-4a7e-9a52-2a4c3bb7a1f2</MSCRMCallerID>' % CON
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:11111111-2222-4333-8444-555555555555", caller))
    eq(r.status, 200, "status: " + r.text)
    eq(header(r, "Content-Type"), "application/soap+xml; charset=utf-8", "Content-Type")
    want = head12(ACT + "ExecuteResponse", "urn:uuid:11111111-2222-4333-8444-555555555555")
    assert r.text.startswith(want + '<ExecuteResponse xmlns="%s"' % SVC), r.text
    assert r.text.endswith("</ExecuteResponse></s:Body></s:Envelope>"), r.text
    recs = web_requests()
    eq(len(recs), n0 + 1, "one upstream request")
    up = recs[-1]
    appid = up["appid"]
    assert ('<b:key>UserId</b:key><b:value xmlns:c="http://schemas.microsoft.com/2003/10/Serialization/" '
            'i:type="c:guid">%s</b:value>' % stable_guid("user", "contoso.crm4.dynamics.com", appid)) in r.text
    eq(up["status"], 200, "sim status")
    eq(up["target"], ORG + "/web?SdkClientVersion=9.1", "upstream target")
    eq(up["aud"], DATAVERSE_URL, "token audience")
    eq(up_header(up, "Content-Type"), ["text/xml; charset=utf-8"], "upstream Content-Type")
    eq(up_header(up, "SOAPAction"), ['"%sExecute"' % ACT], "SOAPAction")
    eq(up["soap_headers"], [["{%s}SdkClientVersion" % CON, "9.1"], ["{%s}UserType" % CON, "CrmUser"],
                            ["{%s}MSCRMCallerID" % CON, "5f0bd0b3-1c1f-4a7e-9a52-2a4c3bb7a1f2"]], "header blocks")


def test_create_then_retrieve():
    create = ('<Create xmlns="%s"><entity xmlns:a="%s" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
              '<a:Attributes xmlns:b="http://schemas.datacontract.org/2004/07/System.Collections.Generic">'
              '<a:KeyValuePairOfstringanyType><b:key>name</b:key><b:value i:type="c:string" '
              'xmlns:c="http://www.w3.org/2001/XMLSchema">Bridged &amp; Co</b:value></a:KeyValuePairOfstringanyType>'
              '</a:Attributes><a:LogicalName>account</a:LogicalName></entity></Create>' % (SVC, CON))
    r = post(envelope12("Create", create, "urn:uuid:c1"))
    eq(r.status, 200, "create: " + r.text)
    m = re.fullmatch(re.escape(head12(ACT + "CreateResponse", "urn:uuid:c1")) + '<CreateResponse xmlns="%s" '
                     'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><CreateResult>([0-9a-f-]{36})'
                     '</CreateResult></CreateResponse></s:Body></s:Envelope>' % re.escape(SVC), r.text)
    assert m, r.text
    aid = m.group(1)
    retrieve = ('<Retrieve xmlns="%s"><entityName>account</entityName><id>%s</id><columnSet xmlns:a="%s" '
                'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><a:AllColumns>true</a:AllColumns>'
                '</columnSet></Retrieve>' % (SVC, aid, CON))
    r = post(envelope12("Retrieve", retrieve, "urn:uuid:r1"))
    eq(r.status, 200, "retrieve: " + r.text)
    assert r.text.startswith(head12(ACT + "RetrieveResponse", "urn:uuid:r1") + "<RetrieveResponse"), r.text
    # namespace declarations come first once re-serialised: the same XML
    assert ('<b:key>name</b:key><b:value xmlns:c="http://www.w3.org/2001/XMLSchema" i:type="c:string">'
            'Bridged &amp; Co</b:value>') in r.text, r.text
    assert "<a:Id>%s</a:Id>" % aid in r.text


def test_retrieve_unknown_gives_soap12_fault():
    missing = "00000000-0000-0000-0000-000000000001"
    retrieve = ('<Retrieve xmlns="%s"><entityName>account</entityName><id>%s</id><columnSet xmlns:a="%s">'
                '<a:AllColumns>true</a:AllColumns></columnSet></Retrieve>' % (SVC, missing, CON))
    r = post(envelope12("Retrieve", retrieve, "urn:uuid:f1"))
    eq(r.status, 500, "status")
    eq(header(r, "Content-Type"), "application/soap+xml; charset=utf-8", "Content-Type")
    msg = "account With Id = %s Does Not Exist" % missing
    want = re.escape(head12(ACT + "RetrieveOrganizationServiceFaultFault", "urn:uuid:f1")
                     + '<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang="en-US">'
                     + msg + '</s:Text></s:Reason><s:Detail><OrganizationServiceFault xmlns="%s" '
                     'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><ActivityId>' % CON) \
        + "[0-9a-f-]{36}" + re.escape(
            '</ActivityId><ErrorCode>-2147220969</ErrorCode><ErrorDetails xmlns:a="http://schemas.datacontract.org/'
            '2004/07/System.Collections.Generic"/><Message>' + msg + '</Message><Timestamp>') + "[0-9TZ:.-]+" \
        + re.escape('</Timestamp><ExceptionRetriable>false</ExceptionRetriable><ExceptionSource i:nil="true"/>'
                    '<InnerFault i:nil="true"/><OriginalException i:nil="true"/><TraceText i:nil="true"/>'
                    '</OrganizationServiceFault></s:Detail></s:Fault></s:Body></s:Envelope>')
    assert re.fullmatch(want, r.text), r.text


def test_retrieve_multiple_and_size_cap():
    def rm(count, msgid):
        q = ('<RetrieveMultiple xmlns="%s"><query i:type="a:QueryExpression" xmlns:a="%s" '
             'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><a:ColumnSet><a:AllColumns>true</a:AllColumns>'
             '</a:ColumnSet><a:EntityName>account</a:EntityName><a:PageInfo><a:Count>%d</a:Count>'
             '<a:PageNumber>1</a:PageNumber></a:PageInfo></query></RetrieveMultiple>' % (SVC, CON, count))
        return post(envelope12("RetrieveMultiple", q, msgid))
    r = rm(3, "urn:uuid:m1")
    eq(r.status, 200, "status: " + r.text)
    assert r.text.startswith(head12(ACT + "RetrieveMultipleResponse", "urn:uuid:m1")), r.text
    eq(r.text.count("<a:Entity>"), 3, "entities")
    assert "<a:MoreRecords>false</a:MoreRecords>" in r.text
    r = rm(3000, "urn:uuid:m3")  # a page of about 2.3 MB
    eq(r.status, 200, "large page status")
    eq(r.text.count("<a:Entity>"), 3000, "large page entities")
    assert r.text.endswith("</RetrieveMultipleResult></RetrieveMultipleResponse></s:Body></s:Envelope>")
    r = rm(8000, "urn:uuid:m2")  # about 6 MB, above soap_max_response = 4m
    eq(r.status, 502, "status")
    eq(r.text, '<s:Envelope xmlns:s="%s" xmlns:a="%s"><s:Header><a:Action s:mustUnderstand="1">'
       'http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>urn:uuid:m2</a:RelatesTo>'
       '</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text '
       'xml:lang="en-US">the response exceeds soap_max_response (4194304 bytes); ask for smaller pages</s:Text>'
       '</s:Reason></s:Fault></s:Body></s:Envelope>' % (S12, WSA), "fault")


def local_fault(reason, code="Sender"):
    return ('<s:Envelope xmlns:s="%s" xmlns:a="%s"><s:Header><a:Action s:mustUnderstand="1">'
            'http://www.w3.org/2005/08/addressing/soap/fault</a:Action></s:Header><s:Body><s:Fault><s:Code>'
            '<s:Value>s:%s</s:Value></s:Code><s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason></s:Fault>'
            '</s:Body></s:Envelope>' % (S12, WSA, code, reason))


def test_malicious_xml_refused_with_fault():
    n0 = len(web_requests())
    env = '<s:Envelope xmlns:s="%s"><s:Body>%%s</s:Body></s:Envelope>' % S12
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
        '<!ENTITY lol%d "%s">' % (i, ("&lol%d;" % (i - 1) if i > 1 else "&lol;") * 10) for i in range(1, 10))
        + ']>' + env % "&lol9;").encode()
    xxe = ('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + env % "&x;").encode()
    xxe_remote = ('<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">' + env % "").encode()
    deep = (env % ("<d>" * 5000 + "</d>" * 5000)).encode()
    huge_attr = (env % ('<x a="%s"/>' % ("A" * 200000))).encode()
    dtd = "document type declarations and entities are not accepted"
    limit = "the message exceeds a size, nesting or attribute limit"
    for name, body, reason in (("billion laughs", laughs, dtd), ("external entity", xxe, dtd),
                               ("external DTD", xxe_remote, dtd), ("deep nesting", deep, None),
                               ("huge attribute", huge_attr, limit)):
        r = post(body)
        eq(r.status, 400, name + " status")
        if reason:
            eq(r.text, local_fault(reason), name + " fault")
        else:  # libxml2 may stop it first (not well-formed past its own depth cap) or ours does
            assert r.text in (local_fault(limit), local_fault("the message is not well-formed XML")), r.text
        assert "root:" not in r.text
    eq(len(web_requests()), n0, "nothing went upstream")
    assert PX.alive(), "proxy died"
    r = post(b"this is not xml")
    eq((r.status, r.text), (400, local_fault("the message is not well-formed XML")), "junk")
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:after"))
    eq(r.status, 200, "still serving")


def test_soap11_for_web_passes_through():
    body = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><SdkClientVersion '
            'xmlns="%s">9.2</SdkClientVersion></s:Header><s:Body>%s</s:Body></s:Envelope>' % (CON, WHOAMI)).encode()
    r = post(body, ORG + "/web?SdkClientVersion=9.2", "text/xml; charset=utf-8",
             [("SOAPAction", ACT + "Execute")])
    eq(r.status, 200, "status: " + r.text)
    eq(header(r, "Content-Type"), "text/xml; charset=utf-8", "unchanged Content-Type")
    assert r.text.startswith('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                             '<ExecuteResponse'), r.text
    up = web_requests()[-1]
    eq(up["target"], ORG + "/web?SdkClientVersion=9.2", "target")
    eq(up["aud"], DATAVERSE_URL, "token")


def test_soap11_posted_to_bridge_refused():
    body = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>%s</s:Body></s:Envelope>'
            % WHOAMI).encode()
    r = post(body, ct="text/xml; charset=utf-8")
    eq((r.status, r.text), (400, local_fault("the message uses the other SOAP version")), "1.1 to the 1.2 path")


def test_sign_in_paths_routed_when_facade_off():
    # without sts_facade the WS-Trust paths are ordinary requests: no route here
    r = PX.request("POST", "/RST2.srf", [("Content-Type", CT12), ("Host", "login.microsoftonline.com")], b"<x/>")
    eq(r.status, 404, "status")
    eq(header(r, "Content-Type"), "application/problem+json", "Content-Type")


def test_action_and_version_cannot_inject():
    n0 = len(web_requests())
    reason = "the request has no usable WS-Addressing Action or SdkClientVersion"
    bad_action = envelope12("Execute\r\nX-Injected: 1", WHOAMI, "urn:uuid:i1")
    r = post(bad_action)
    eq((r.status, r.text), (400, local_fault(reason).replace("</a:Action>", "</a:Action><a:RelatesTo>urn:uuid:i1"
                                                             "</a:RelatesTo>", 1)), "action with CRLF")
    bad_version = envelope12("Execute", WHOAMI, "urn:uuid:i2").replace(b">9.1<", b">9.1&amp;x=1<")
    r = post(bad_version)
    eq(r.status, 400, "SdkClientVersion with '&'")
    no_action = envelope12("Execute", WHOAMI, "urn:uuid:i3").replace(
        b'<a:Action s:mustUnderstand="1">http://schemas.microsoft.com/xrm/2011/Contracts/Services/'
        b'IOrganizationService/Execute</a:Action>', b"")
    r = post(no_action)
    eq(r.status, 400, "no Action")
    eq(len(web_requests()), n0, "nothing went upstream")


def test_token_failure_answered_as_fault():
    n0 = len(web_requests())
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:t1"), target="/bad" + ORG)
    assert r.status in (401, 502, 503), (r.status, r.text)
    eq(header(r, "Content-Type"), "application/soap+xml; charset=utf-8", "Content-Type")
    m = re.fullmatch(re.escape('<s:Envelope xmlns:s="%s" xmlns:a="%s"><s:Header><a:Action s:mustUnderstand="1">'
                               'http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>urn:uuid:t1'
                               '</a:RelatesTo></s:Header><s:Body><s:Fault><s:Code><s:Value>' % (S12, WSA))
                     + "s:(Sender|Receiver)</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">([^<]+)"
                     "</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>", r.text)
    assert m, r.text
    eq(m.group(2), "The application is not known in this tenant: HTTP 400 from the token endpoint", "reason")
    eq((r.status, m.group(1)), (502, "Receiver"), "status and code")
    eq(len(web_requests()), n0, "nothing went upstream")


def test_throttling_fault_keeps_retry_after():
    caller = '<MSCRMCallerID xmlns="%s">00000000-0000-0000-0000-000000000429</MSCRMCallerID>' % CON
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:q1", caller))
    eq(r.status, 500, "status")
    assert r.text.startswith(head12(ACT + "ExecuteOrganizationServiceFaultFault", "urn:uuid:q1")
                             + "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text "
                             'xml:lang="en-US">Number of requests exceeded the limit of 6000 over time window of '
                             "300 seconds.</s:Text></s:Reason><s:Detail><OrganizationServiceFault"), r.text
    assert ("<ErrorCode>-2147015902</ErrorCode><ErrorDetails xmlns:a=\"http://schemas.datacontract.org/2004/07/"
            "System.Collections.Generic\"><KeyValuePairOfstringanyType><a:key>Retry-After</a:key><a:value "
            "xmlns:b=\"http://schemas.microsoft.com/2003/10/Serialization/\" i:type=\"b:duration\">PT30S</a:value>"
            "</KeyValuePairOfstringanyType></ErrorDetails>") in r.text, r.text


def test_query_kept_on_web_url():
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:q2"), target=ORG + "?SdkClientVersion=9.0")
    eq(r.status, 200, "status: " + r.text)
    eq(web_requests()[-1]["target"], ORG + "/web?SdkClientVersion=9.0", "the client's version wins")
    r = post(envelope12("Execute", WHOAMI, "urn:uuid:q3"), target=ORG + "?x=1")
    eq(r.status, 200, "status: " + r.text)
    eq(web_requests()[-1]["target"], ORG + "/web?x=1&SdkClientVersion=9.1", "version from the header block")


def test_oversized_request_refused():
    n0 = len(web_requests())
    head = ("POST %s HTTP/1.1\r\nHost: contoso.api.crm4.dynamics.com\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (ORG, CT12, 17 << 20)).encode()
    out = raw(PX.port, head + b"<s:Envelope", timeout=5)  # above the bridge's 16 MiB cap: refused unread
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    assert b"\r\nConnection: close\r\n" in out, out[:400]
    eq(len(web_requests()), n0, "nothing went upstream")
