"""legacy_wstrust.py - a WS-Trust era Organization service client, sending
byte for byte the shapes AlexaCRM/php-crm-toolkit sends in its Office 365
mode (docs: ../shared/reference/microsoft-auth.md 4.2): GetUserRealm.srf,
the Feb 2005 RST to RST2.srf with a UsernameToken (or, for federated
users, the ADFS usernamemixed WS-Trust 1.3 RST first), then SOAP 1.2
Organization.svc calls carrying the RSTR's EncryptedData verbatim in
o:Security. It talks HTTPS to the address given, with SNI and Host set to
the Microsoft host names, as a client whose hosts file points there."""

import datetime
import http.client
import re
import socket
import ssl
import urllib.parse
import uuid

S12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
PASSWORD_TEXT = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
                 "#PasswordText")
LOGIN = "login.microsoftonline.com"


def _stamp(delta=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Client:
    def __init__(self, port, cafile):
        self.port = port
        self.cafile = cafile

    def post(self, host, target, ctype, body, extra=()):
        ctx = ssl.create_default_context(cafile=self.cafile)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.sock = ctx.wrap_socket(raw, server_hostname=host)
        try:
            c.putrequest("POST", target, skip_host=True, skip_accept_encoding=True)
            for k, v in [("Host", host), ("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(extra):
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode("utf-8")
        finally:
            c.close()

    # step 1 -------------------------------------------------------------------
    def user_realm(self, user):
        body = ("login=%s&xml=1" % urllib.parse.quote(user)).encode()
        return self.post(LOGIN, "/GetUserRealm.srf", "application/x-www-form-urlencoded", body)

    # step 2 (federated users) ---------------------------------------------------
    def adfs_rst(self, adfs_host, user, password):
        url = "https://%s/adfs/services/trust/13/usernamemixed" % adfs_host
        body = ('<s:Envelope xmlns:s="%s" xmlns:a="%s" xmlns:u="%s"><s:Header><a:Action s:mustUnderstand="1">'
                "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</a:Action><a:MessageID>urn:uuid:%s"
                "</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address>"
                '</a:ReplyTo><a:To s:mustUnderstand="1">%s</a:To><o:Security s:mustUnderstand="1" xmlns:o="%s">'
                '<u:Timestamp u:Id="_0"><u:Created>%s</u:Created><u:Expires>%s</u:Expires></u:Timestamp>'
                '<o:UsernameToken u:Id="uuid-%s-1"><o:Username>%s</o:Username><o:Password Type="%s">%s'
                "</o:Password></o:UsernameToken></o:Security></s:Header><s:Body><trust:RequestSecurityToken "
                'xmlns:trust="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><wsp:AppliesTo '
                'xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><a:EndpointReference><a:Address>'
                "urn:federation:MicrosoftOnline</a:Address></a:EndpointReference></wsp:AppliesTo>"
                "<trust:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</trust:KeyType>"
                "<trust:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</trust:RequestType>"
                "<trust:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</trust:TokenType>"
                "</trust:RequestSecurityToken></s:Body></s:Envelope>"
                % (S12, WSA, WSU, uuid.uuid4(), url, WSSE, _stamp(), _stamp(300), uuid.uuid4(), _esc(user),
                   PASSWORD_TEXT, _esc(password))).encode()
        return self.post(adfs_host, "/adfs/services/trust/13/usernamemixed", "application/soap+xml; charset=utf-8",
                         body)

    # step 3 ---------------------------------------------------------------------
    def rst2(self, applies_to, user=None, password=None, assertion=None, msgid=None):
        if assertion is not None:
            cred = assertion
        else:
            cred = ('<o:UsernameToken u:Id="user"><o:Username>%s</o:Username><o:Password Type="%s">%s'
                    "</o:Password></o:UsernameToken>" % (_esc(user), PASSWORD_TEXT, _esc(password)))
        body = ('<s:Envelope xmlns:s="%s" xmlns:a="%s" xmlns:u="%s"><s:Header><a:Action s:mustUnderstand="1">'
                "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue</a:Action><a:MessageID>%s</a:MessageID>"
                "<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>"
                '<a:To s:mustUnderstand="1">https://login.microsoftonline.com/RST2.srf</a:To><o:Security '
                's:mustUnderstand="1" xmlns:o="%s"><u:Timestamp u:Id="_0"><u:Created>%s</u:Created><u:Expires>%s'
                "</u:Expires></u:Timestamp>%s</o:Security></s:Header><s:Body><t:RequestSecurityToken "
                'xmlns:t="http://schemas.xmlsoap.org/ws/2005/02/trust"><wsp:AppliesTo '
                'xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><a:EndpointReference><a:Address>%s'
                "</a:Address></a:EndpointReference></wsp:AppliesTo><t:RequestType>"
                "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</t:RequestType></t:RequestSecurityToken>"
                "</s:Body></s:Envelope>"
                % (S12, WSA, WSU, msgid or "urn:uuid:%s" % uuid.uuid4(), WSSE, _stamp(), _stamp(300), cred,
                   applies_to)).encode()
        return self.post(LOGIN, "/RST2.srf", "application/soap+xml; charset=UTF-8", body)

    # step 4 ---------------------------------------------------------------------
    def organization(self, org_host, action, body_xml, token_xml, msgid, extra_headers=""):
        url = "https://%s/XRMServices/2011/Organization.svc" % org_host
        body = ('<s:Envelope xmlns:s="%s" xmlns:a="%s" xmlns:u="%s"><s:Header><a:Action s:mustUnderstand="1">'
                "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/%s</a:Action>"
                '<SdkClientVersion xmlns="http://schemas.microsoft.com/xrm/2011/Contracts">9.1</SdkClientVersion>'
                '<UserType xmlns="http://schemas.microsoft.com/xrm/2011/Contracts">CrmUser</UserType>%s'
                "<a:MessageID>%s</a:MessageID><a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous"
                '</a:Address></a:ReplyTo><a:To s:mustUnderstand="1">%s</a:To><o:Security s:mustUnderstand="1" '
                'xmlns:o="%s"><u:Timestamp u:Id="_0"><u:Created>%s</u:Created><u:Expires>%s</u:Expires>'
                "</u:Timestamp>%s</o:Security></s:Header><s:Body>%s</s:Body></s:Envelope>"
                % (S12, WSA, WSU, action, extra_headers, msgid, url, WSSE, _stamp(), _stamp(300), token_xml,
                   body_xml)).encode()
        return self.post(org_host, "/XRMServices/2011/Organization.svc", "application/soap+xml; charset=UTF-8", body)


def token_from_rstr(text):
    """What the toolkit keeps from an RSTR: the RequestedSecurityToken child,
    verbatim, and the values it reads (microsoft-auth.md 4.2 step 4)."""
    m = re.search(r"<wst:RequestedSecurityToken>(.*?)</wst:RequestedSecurityToken>", text, re.S)
    return {"token_xml": m.group(1) if m else None,
            "cipher_values": re.findall(r"<CipherValue>([^<]*)</CipherValue>", text),
            "key_identifier": re.findall(r"<wsse:KeyIdentifier[^>]*>([^<]*)</wsse:KeyIdentifier>", text),
            "binary_secret": re.findall(r"<wst:BinarySecret>([^<]*)</wst:BinarySecret>", text),
            "expires": re.findall(r"<wst:Lifetime><wsu:Created>[^<]*</wsu:Created><wsu:Expires>([^<]*)"
                                  r"</wsu:Expires></wst:Lifetime>", text)}


def assertion_from_adfs(text):
    m = re.search(r"<trust:RequestedSecurityToken>(.*?)</trust:RequestedSecurityToken>", text, re.S)
    return m.group(1) if m else None
