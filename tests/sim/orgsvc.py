"""orgsvc.py - the Dataverse Organization service OAuth endpoint
(/XRMServices/2011/Organization.svc/web), as the simulated Dataverse serves
it once the bearer token was verified (upstreams.py).

It insists on the SOAP 1.1 shape Microsoft documents for this endpoint:
POST, Content-Type exactly "text/xml; charset=utf-8", a SOAPAction header
naming an IOrganizationService operation that matches the Body, an envelope
in http://schemas.xmlsoap.org/soap/envelope/, a SdkClientVersion query
parameter, and no WS-Addressing or WS-Security header blocks. A request
that breaks a rule gets HTTP 400 with a SOAP 1.1 fault whose faultstring
starts with "shape:" and names the rule, so tests can tell bridge mistakes
from service answers. Execute WhoAmI, Create, Retrieve and RetrieveMultiple
are answered with recorded-shape SOAP 1.1 bodies; a Retrieve of an unknown
id gets the OrganizationServiceFault Dataverse sends (HTTP 500), and a call
impersonating THROTTLED_CALLER the service protection fault (ErrorCode
-2147015902 with a Retry-After TimeSpan in ErrorDetails)."""

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from common import guid, iso_stamp, stable_guid

S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SVC = "http://schemas.microsoft.com/xrm/2011/Contracts/Services"
CON = "http://schemas.microsoft.com/xrm/2011/Contracts"
ACTION = "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/"
PATH = "/XRMServices/2011/Organization.svc/web"
OPS = ("Execute", "Create", "Retrieve", "RetrieveMultiple")

XI = "http://www.w3.org/2001/XMLSchema-instance"
ENV_OPEN = '<s:Envelope xmlns:s="%s"><s:Body>' % S11
ENV_CLOSE = "</s:Body></s:Envelope>"


def fault11(code, text, detail=""):
    return (ENV_OPEN + "<s:Fault><faultcode>%s</faultcode><faultstring xml:lang=\"en-US\">%s</faultstring>%s"
            "</s:Fault>" % (code, escape(text), detail) + ENV_CLOSE).encode()


THROTTLED_CALLER = "00000000-0000-0000-0000-000000000429"  # MSCRMCallerID that gets the throttling fault
RETRY_AFTER = ('<KeyValuePairOfstringanyType><a:key>Retry-After</a:key><a:value i:type="b:duration" '
               'xmlns:b="http://schemas.microsoft.com/2003/10/Serialization/">PT30S</a:value>'
               "</KeyValuePairOfstringanyType>")


def org_fault(code, message, details=""):
    detail = ('<detail><OrganizationServiceFault xmlns="%s" xmlns:i="%s"><ActivityId>%s</ActivityId>'
              "<ErrorCode>%d</ErrorCode>" % (CON, XI, guid(), code))
    detail += ('<ErrorDetails xmlns:a="http://schemas.datacontract.org/2004/07/System.Collections.Generic"%s'
               % ((">%s</ErrorDetails>" % details) if details else "/>"))
    detail += ("<Message>%s</Message><Timestamp>%s</Timestamp><ExceptionRetriable>false</ExceptionRetriable>"
               '<ExceptionSource i:nil="true"/><InnerFault i:nil="true"/><OriginalException i:nil="true"/>'
               '<TraceText i:nil="true"/></OrganizationServiceFault></detail>' % (escape(message), iso_stamp()))
    return fault11("s:Client", message, detail)


class ShapeError(Exception):
    pass


def check_shape(req):
    """-> (operation, Body child element) or raise ShapeError."""
    if req.method != "POST":
        raise ShapeError("method %s" % req.method)
    if req.header("content-type") != "text/xml; charset=utf-8":
        raise ShapeError("Content-Type %r" % req.header("content-type"))
    if not req.query.get("SdkClientVersion"):
        raise ShapeError("no SdkClientVersion query parameter")
    action = (req.header("soapaction") or "").strip('"')
    if not action.startswith(ACTION) or action[len(ACTION):] not in OPS:
        raise ShapeError("SOAPAction %r" % action)
    body = req.body.read_all(16 << 20)
    if b"<!DOCTYPE" in body:
        raise ShapeError("DOCTYPE")
    try:
        env = ET.fromstring(body)
    except ET.ParseError as e:
        raise ShapeError("XML: %s" % e)
    if env.tag != "{%s}Envelope" % S11:
        raise ShapeError("envelope %s" % env.tag)
    for el in env.iter():
        if el.tag.startswith("{%s}" % WSA) or el.tag.startswith("{%s}" % WSSE) or el.tag.startswith("{%s}" % S12):
            raise ShapeError("header block %s" % el.tag)
    hdr = env.find("{%s}Header" % S11)
    if hdr is not None:
        for h in hdr:
            if h.tag.split("}")[0].lstrip("{") != CON:
                raise ShapeError("header block %s" % h.tag)
    b = env.find("{%s}Body" % S11)
    op = action[len(ACTION):]
    if b is None or len(b) != 1 or b[0].tag != "{%s}%s" % (SVC, op):
        raise ShapeError("Body does not hold %s" % op)
    return op, b[0], hdr


def kv(key, typ, value, ns_decl=""):
    return ("<a:KeyValuePairOfstringanyType><b:key>%s</b:key><b:value i:type=\"%s\"%s>%s</b:value>"
            "</a:KeyValuePairOfstringanyType>" % (key, typ, ns_decl, value))


def entity_xml(rec):
    attrs = kv("accountid", "c:guid", rec["accountid"],
               ' xmlns:c="http://schemas.microsoft.com/2003/10/Serialization/"')
    attrs += kv("name", "c:string", escape(rec.get("name", "")), ' xmlns:c="http://www.w3.org/2001/XMLSchema"')
    return ('<a:Entity><a:Attributes xmlns:b="http://schemas.datacontract.org/2004/07/System.Collections.Generic">'
            "%s</a:Attributes><a:EntityState i:nil=\"true\"/><a:FormattedValues xmlns:b=\"http://schemas."
            "datacontract.org/2004/07/System.Collections.Generic\"/><a:Id>%s</a:Id><a:KeyAttributes "
            "xmlns:c=\"http://schemas.microsoft.com/xrm/7.1/Contracts\"/><a:LogicalName>account</a:LogicalName>"
            "<a:RelatedEntities xmlns:b=\"http://schemas.datacontract.org/2004/07/System.Collections.Generic\"/>"
            "<a:RowVersion i:nil=\"true\"/></a:Entity>" % (attrs, rec["accountid"]))


def _text(el, path):
    f = el.find(path)
    return (f.text or "") if f is not None else ""


def answer(up, req, claims):
    """Serve one /web request (token already verified)."""
    try:
        op, el, hdr = check_shape(req)
    except ShapeError as e:
        return req.send(400, [("Content-Type", "text/xml; charset=utf-8")], fault11("s:Client", "shape: %s" % e))
    req.soap_headers = [[h.tag, h.text or ""] for h in hdr] if hdr is not None else []
    caller = _text(hdr, "{%s}MSCRMCallerID" % CON) if hdr is not None else ""
    if caller == THROTTLED_CALLER:  # service protection limit, as the Organization service reports it
        return req.send(500, [("Content-Type", "text/xml; charset=utf-8")], org_fault(
            -2147015902, "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            RETRY_AFTER))
    appid = claims.get("appid") or claims.get("azp")
    hs = [("Content-Type", "text/xml; charset=utf-8"), ("x-ms-service-request-id", guid()), ("REQ_ID", guid())]
    open_ = '<%sResponse xmlns="%s" xmlns:i="%s">' % (op, SVC, XI)
    close = "</%sResponse>" % op
    if op == "Execute":
        name = _text(el, "{%s}request/{%s}RequestName" % (SVC, CON))
        if name != "WhoAmI":
            return req.send(500, hs, org_fault(-2147220970, "The request %s is not supported here" % name))
        ser = ' xmlns:c="http://schemas.microsoft.com/2003/10/Serialization/"'
        res = (kv("UserId", "c:guid", stable_guid("user", req.host, appid), ser)
               + kv("BusinessUnitId", "c:guid", stable_guid("bu", req.host), ser)
               + kv("OrganizationId", "c:guid", stable_guid("org", req.host), ser))
        body = ('<ExecuteResult xmlns:a="%s"><a:ResponseName>WhoAmI</a:ResponseName><a:Results xmlns:b="http://'
                'schemas.datacontract.org/2004/07/System.Collections.Generic">%s</a:Results></ExecuteResult>'
                % (CON, res))
    elif op == "Create":
        name = ""
        for pair in el.iter("{%s}KeyValuePairOfstringanyType" % CON):
            k = pair.find("{http://schemas.datacontract.org/2004/07/System.Collections.Generic}key")
            v = pair.find("{http://schemas.datacontract.org/2004/07/System.Collections.Generic}value")
            if k is not None and k.text == "name" and v is not None:
                name = v.text or ""
        aid = guid()
        with up.lock:
            up._accounts(req.host)[aid] = {"accountid": aid, "name": name, "createdon": iso_stamp()}
        body = "<CreateResult>%s</CreateResult>" % aid
    elif op == "Retrieve":
        rid = _text(el, "{%s}id" % SVC).lower()
        with up.lock:
            rec = up._accounts(req.host).get(rid)
        if rec is None:
            return req.send(500, hs, org_fault(-2147220969, "account With Id = %s Does Not Exist" % rid))
        body = '<RetrieveResult xmlns:a="%s">%s</RetrieveResult>' % (CON, entity_xml(rec)[len("<a:Entity>"):-len(
            "</a:Entity>")])
    else:
        count = int(_text(el, ".//{%s}Count" % CON) or "0")
        with up.lock:
            recs = list(up._accounts(req.host).values())
        rows = [recs[i % len(recs)] for i in range(count)] if count else recs
        body = ('<RetrieveMultipleResult xmlns:a="%s"><a:Entities>%s</a:Entities><a:EntityName>account'
                "</a:EntityName><a:MinActiveRowVersion>-1</a:MinActiveRowVersion><a:MoreRecords>false"
                "</a:MoreRecords><a:PagingCookie i:nil=\"true\"/><a:TotalRecordCount>-1</a:TotalRecordCount>"
                "<a:TotalRecordCountLimitExceeded>false</a:TotalRecordCountLimitExceeded></RetrieveMultipleResult>"
                % (CON, "".join(entity_xml(r) for r in rows)))
    return req.send(200, hs, (ENV_OPEN + open_ + body + close + ENV_CLOSE).encode())
