"""test_sts.py - the WS-Trust sign-in facade (sts_facade) and the legacy
client flow end to end over inbound TLS: GetUserRealm.srf -> RST2.srf ->
SOAP 1.2 Execute WhoAmI through a soap_bridge route, sent by
tests/lib/legacy_wstrust.py exactly as a WS-Trust era client sends it.
Wrong passwords get the fault Entra sent (F22), ADFS the ID3242 fault
(F23); passwords never reach a log or the upstream; the issued handle is
bound to its identity's credential and is the only thing the SOAP path
accepts."""

import datetime
import re
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import eq, DATAVERSE_URL, Proxy, Sim, Work, default_routes, proxy_ini
from legacy_wstrust import Client, assertion_from_adfs, token_from_rstr

W = SIM = PX = CLIENT = None
ALICE, ALICE_PW = "alice@contoso.com", "Corr3ct h0rse & <battery>"
BOB, BOB_PW = "bob@contoso.com", "bob-s3cret"
ORG_HOST = "contoso.api.crm4.dynamics.com"
S12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
SVC = "http://schemas.microsoft.com/xrm/2011/Contracts/Services"
CON = "http://schemas.microsoft.com/xrm/2011/Contracts"
WHOAMI = ('<Execute xmlns="%s"><request i:type="c:WhoAmIRequest" xmlns:b="%s" '
          'xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://schemas.microsoft.com/crm/2011/'
          'Contracts"><b:Parameters xmlns:d="http://schemas.datacontract.org/2004/07/System.Collections.Generic"/>'
          '<b:RequestId i:nil="true"/><b:RequestName>WhoAmI</b:RequestName></request></Execute>' % (SVC, CON))


def issue(name, sans):
    ca_cert = x509.load_pem_x509_certificate(open(W.ca["ca"], "rb").read())
    ca_key = serialization.load_pem_private_key(open(W.ca["ca_key"], "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cp = W.write(name + ".pem", cert.public_bytes(serialization.Encoding.PEM))
    kp = W.write(name + "-key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()), 0o600)
    return cp, kp


def crypt_hash(pw):
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(), capture_output=True,
                          check=True).stdout.decode().strip()


def setup_module():
    global W, SIM, PX, CLIENT
    W = Work("test_sts")
    SIM = Sim(W).start()
    cert, key = issue("facade", ["login.microsoftonline.com", ORG_HOST, "adfs.contoso.com"])
    ids = W.write("identities", "# user:hash:credential\n%s:%s:contoso\n%s:%s:fabrikam\n"
                  % (ALICE, crypt_hash(ALICE_PW), BOB, crypt_hash(BOB_PW)), 0o600)
    routes = default_routes()
    routes["org"] = {"match_path": "/XRMServices/", "upstream": DATAVERSE_URL, "audience": "dataverse",
                     "credential": "contoso", "soap_bridge": "true"}
    extra = "tls_cert = %s\ntls_key = %s\nsts_facade = true\nlegacy_identities_file = %s\n" % (cert, key, ids)
    PX = Proxy(W, proxy_ini(SIM, work=W, routes=routes, extra_proxy=extra)).start()
    PX.wait_event("token_acquired", 20)
    CLIENT = Client(PX.port, W.ca["ca"])


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()



def web_requests():
    return [r for r in SIM.requests() if r["target"].startswith("/XRMServices/")]


def sign_in(user=ALICE, pw=ALICE_PW):
    status, ctype, text = CLIENT.rst2("urn:crmemea:dynamics.com", user, pw)
    eq(status, 200, "RST2 status: " + text)
    return token_from_rstr(text)


def test_get_user_realm_managed():
    status, ctype, text = CLIENT.user_realm(ALICE)
    eq(status, 200, "status")
    eq(ctype, "text/xml; charset=utf-8", "Content-Type")
    eq(text, '<?xml version="1.0" encoding="utf-8"?><RealmInfo Success="true"><State>4</State><UserState>1'
       "</UserState><Login>alice@contoso.com</Login><NameSpaceType>Managed</NameSpaceType><DomainName>contoso.com"
       "</DomainName><IsFederatedNS>false</IsFederatedNS><FederationBrandName>contoso.com</FederationBrandName>"
       "<CloudInstanceName>microsoftonline.com</CloudInstanceName><CloudInstanceIssuerUri>"
       "urn:federation:MicrosoftOnline</CloudInstanceIssuerUri></RealmInfo>", "RealmInfo")


def test_rst2_wrong_password_gets_entra_fault():
    n_tok = len(SIM.token_requests())
    status, ctype, text = CLIENT.rst2("urn:crmemea:dynamics.com", ALICE, "wrong-Passw0rd!", msgid="urn:uuid:bad1")
    eq(status, 400, "status")
    eq(ctype, "application/soap+xml; charset=utf-8", "Content-Type")
    eq(text, '<s:Envelope xmlns:s="%s" xmlns:a="%s"><s:Header><a:Action s:mustUnderstand="1">'
       "http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>urn:uuid:bad1</a:RelatesTo>"
       "</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value "
       'xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust">wst:FailedAuthentication</s:Value></s:Subcode>'
       '</s:Code><s:Reason><s:Text xml:lang="en-US">Authentication Failure</s:Text></s:Reason><s:Detail>'
       '<psf:error xmlns:psf="http://schemas.microsoft.com/Passport/SoapServices/SOAPFault"><psf:value>0x80048821'
       "</psf:value><psf:internalerror><psf:code>0x80048821</psf:code><psf:text>AADSTS50126: Error validating "
       "credentials due to invalid username or password.</psf:text></psf:internalerror></psf:error></s:Detail>"
       "</s:Fault></s:Body></s:Envelope>" % (S12, WSA), "F22 fault")
    status, _, _ = CLIENT.rst2("urn:crmemea:dynamics.com", "nobody@contoso.com", ALICE_PW)
    eq(status, 400, "unknown user")
    eq(len(SIM.token_requests()), n_tok, "the facade never asks Entra")
    log = PX.log_text()
    assert "sts_sign_in_failed" in log, log[-2000:]
    for secret in ("wrong-Passw0rd!", ALICE_PW, "Corr3ct h0rse"):
        assert secret not in log, "a password reached the log"


def test_legacy_flow_end_to_end():
    status, _, realm = CLIENT.user_realm(ALICE)
    assert status == 200 and "<IsFederatedNS>false</IsFederatedNS>" in realm
    tok = sign_in()
    eq(len(tok["cipher_values"]), 2, "two CipherValues")
    eq(len(tok["key_identifier"]), 1, "KeyIdentifier")
    eq(len(tok["binary_secret"]), 1, "BinarySecret")
    expires = datetime.datetime.strptime(tok["expires"][0], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    assert expires > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=30), expires
    assert tok["token_xml"].startswith('<EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"'), tok
    n0 = len(web_requests())
    status, ctype, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, tok["token_xml"], "urn:uuid:e2e-1")
    eq(status, 200, "Execute status: " + text)
    eq(ctype, "application/soap+xml; charset=utf-8", "Content-Type")
    assert text.startswith('<s:Envelope xmlns:s="%s"><s:Header xmlns:a="%s"><a:Action s:mustUnderstand="1">%s/'
                           "IOrganizationService/ExecuteResponse</a:Action><a:RelatesTo>urn:uuid:e2e-1</a:RelatesTo>"
                           "</s:Header><s:Body><ExecuteResponse" % (S12, WSA, SVC)), text
    assert re.search(r"<b:key>UserId</b:key><b:value [^>]*>[0-9a-f-]{36}</b:value>", text), text
    recs = web_requests()
    eq(len(recs), n0 + 1, "one upstream request")
    up = recs[-1]
    eq(up["status"], 200, "sim accepted the SOAP 1.1 shape")
    eq(up["aud"], DATAVERSE_URL, "the route's token")
    for k, v in up["headers"]:
        for secret in tok["cipher_values"] + [ALICE_PW]:
            assert secret not in v, "the legacy token went upstream in %s" % k


def test_forged_and_foreign_handles_refused():
    tok = sign_in()
    n0 = len(web_requests())
    forged = tok["token_xml"].replace(tok["cipher_values"][1], "0" * 64)
    fault = ('<s:Envelope xmlns:s="%s" xmlns:a="%s"><s:Header><a:Action s:mustUnderstand="1">'
             "http://www.w3.org/2005/08/addressing/soap/fault</a:Action><a:RelatesTo>urn:uuid:h1</a:RelatesTo>"
             "</s:Header><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value "
             'xmlns:a="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
             'a:InvalidSecurity</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">An error occurred '
             "when verifying security for the message.</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>"
             % (S12, WSA))
    status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, forged, "urn:uuid:h1")
    eq((status, text), (500, fault), "forged handle")
    status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, "", "urn:uuid:h1")
    eq((status, text), (500, fault), "no token")
    bob = sign_in(BOB, BOB_PW)  # bound to credential fabrikam, the route uses contoso
    status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, bob["token_xml"], "urn:uuid:h1")
    eq((status, text), (500, fault), "handle of another credential")
    eq(len(web_requests()), n0, "nothing went upstream")


def test_adfs_usernamemixed_then_rst2():
    status, ctype, text = CLIENT.adfs_rst("adfs.contoso.com", ALICE, "nope")
    eq(status, 500, "ADFS wrong password")
    assert ('<s:Value xmlns:a="http://docs.oasis-open.org/ws-sx/ws-trust/200512">a:FailedAuthentication</s:Value>'
            in text and "ID3242: The security token could not be authenticated or authorized." in text), text
    status, ctype, text = CLIENT.adfs_rst("adfs.contoso.com", ALICE, ALICE_PW)
    eq(status, 200, "ADFS status: " + text)
    assertion = assertion_from_adfs(text)
    assert assertion and assertion.startswith('<Assertion ID="_') and "<NameID>alice@contoso.com</NameID>" in \
        assertion, text
    assert "<trust:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</trust:TokenType>" in text
    status, _, rstr = CLIENT.rst2("urn:crmemea:dynamics.com", assertion=assertion)
    eq(status, 200, "RST2 with the assertion: " + rstr)
    tok = token_from_rstr(rstr)
    status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, tok["token_xml"], "urn:uuid:adfs-1")
    eq(status, 200, "Execute after ADFS: " + text)
    # the assertion itself is no RST2 token, and a made-up assertion is refused
    status, _, _ = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, assertion, "urn:uuid:adfs-2")
    eq(status, 500, "assertion used as the Organization service token")
    fake = re.sub(r'ID="_[0-9a-f]+"', 'ID="_%s"' % ("1" * 64), assertion)
    status, _, _ = CLIENT.rst2("urn:crmemea:dynamics.com", assertion=fake)
    eq(status, 400, "made-up assertion")


def test_identities_file_read_again_when_changed():
    carol_pw = "carol-n3w-pass"
    status, _, _ = CLIENT.rst2("urn:crmemea:dynamics.com", "carol@contoso.com", carol_pw)
    eq(status, 400, "carol unknown at first")
    path = W.path("identities")
    with open(path, "a") as f:
        f.write("carol@contoso.com:%s:contoso\n" % crypt_hash(carol_pw))
    tok = sign_in("carol@contoso.com", carol_pw)  # no restart, no reload signal
    status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, tok["token_xml"], "urn:uuid:carol")
    eq(status, 200, "carol's Execute: " + text)
    assert carol_pw not in PX.log_text()


def test_identity_with_object_id_acts_for_that_user():
    """user:hash:credential:object-id: the bridge sends CallerObjectId, so the
    records a legacy client creates keep their real owner; an identity
    without one (alice) sends none."""
    oid = "7a1e0c3d-2b4f-4c5d-8e9f-0a1b2c3d4e5f"
    dave_pw = "dave-p4ss"
    with open(W.path("identities"), "a") as f:
        f.write("dave@contoso.com:%s:contoso:%s\n" % (crypt_hash(dave_pw), oid))
    for user, pw, want in (("dave@contoso.com", dave_pw, [oid]), (ALICE, ALICE_PW, [])):
        tok = sign_in(user, pw)
        status, _, text = CLIENT.organization(ORG_HOST, "Execute", WHOAMI, tok["token_xml"], "urn:uuid:oid")
        eq(status, 200, "Execute: " + text)
        up = web_requests()[-1]
        eq([v for k, v in up["headers"] if k.lower() == "callerobjectid"], want, "CallerObjectId for " + user)
