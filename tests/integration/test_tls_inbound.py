"""test_tls_inbound.py - the proxy answering HTTPS: certificates chosen by
SNI (the first one without SNI or for unknown names), TLS 1.2+ only, a key
that does not match its certificate refused at -t, and optional client
certificates checked against tls_client_ca."""

import datetime
import http.client
import json
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import eq, Proxy, Sim, Work, check_config, proxy_ini

W = SIM = None
CERTS = {}


def issue(name, sans, client=False):
    """A certificate for sans signed by the test CA -> (cert path, key path)."""
    ca_cert = x509.load_pem_x509_certificate(open(W.ca["ca"], "rb").read())
    ca_key = serialization.load_pem_private_key(open(W.ca["ca_key"], "rb").read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
         .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                               else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if not client:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    cp = W.write(name + ".pem", cert.public_bytes(serialization.Encoding.PEM))
    kp = W.write(name + "-key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()), 0o600)
    return cp, kp


def setup_module():
    global W, SIM
    W = Work("test_tls_inbound")
    SIM = Sim(W).start()
    CERTS["dv"] = issue("dv", ["contoso.crm4.dynamics.com"])
    CERTS["local"] = issue("local", ["proxy.local", "*.proxy.local"])
    CERTS["client"] = issue("client", ["integration-client"], client=True)


def teardown_module():
    if SIM:
        SIM.stop()



def tls_extra(client_ca=False):
    lines = ["tls_cert = %s\ntls_key = %s" % CERTS["dv"], "tls_cert = %s\ntls_key = %s" % CERTS["local"]]
    if client_ca:
        lines.append("tls_client_ca = %s" % W.ca["ca"])
    return "\n".join(lines)


def connect(port, sni, client_cert=None, max_version=None, check_name=True):
    ctx = ssl.create_default_context(cafile=W.ca["ca"])
    if sni is None or not check_name:
        ctx.check_hostname = False
    if client_cert:
        ctx.load_cert_chain(*client_cert)
    if max_version:
        ctx.maximum_version = max_version
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=sni)


def served_name(port, sni, check_name=True):
    s = connect(port, sni, check_name=check_name)
    try:
        cert = x509.load_der_x509_certificate(s.getpeercert(binary_form=True))
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    finally:
        s.close()


def https_get(port, sni, target, client_cert=None):
    s = connect(port, sni, client_cert)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.sock = s
    c.request("GET", target, headers={"Host": sni or "127.0.0.1"})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, r


def test_sni_selects_certificate_and_requests_flow():
    px = Proxy(W, proxy_ini(SIM, work=W, extra_proxy=tls_extra()), name="tls").start()
    try:
        px.wait_event("token_acquired", 20)
        eq(served_name(px.port, "contoso.crm4.dynamics.com"), "contoso.crm4.dynamics.com", "SNI dataverse")
        eq(served_name(px.port, "api.proxy.local"), "proxy.local", "SNI wildcard")
        eq(served_name(px.port, None), "contoso.crm4.dynamics.com", "no SNI: first certificate")
        eq(served_name(px.port, "unknown.example", check_name=False), "contoso.crm4.dynamics.com",
           "unknown name: first certificate")
        status, body, _ = https_get(px.port, "contoso.crm4.dynamics.com", "/dataverse/_test/echo")
        eq(status, 200, "status over TLS")
        hs = {k.lower(): v for k, v in json.loads(body)["headers"]}
        eq(hs.get("x-forwarded-proto"), "https", "X-Forwarded-Proto")
    finally:
        px.stop()


def test_old_tls_refused():
    px = Proxy(W, proxy_ini(SIM, work=W, extra_proxy=tls_extra()), name="tls-old").start()
    try:
        try:
            connect(px.port, "contoso.crm4.dynamics.com", max_version=ssl.TLSVersion.TLSv1_1).close()
        except (ssl.SSLError, OSError):
            pass
        else:
            raise AssertionError("a TLS 1.1 handshake succeeded")
        served_name(px.port, "contoso.crm4.dynamics.com")  # TLS 1.2+ still fine
    finally:
        px.stop()


def test_mismatched_key_refused_by_check():
    text = proxy_ini(SIM, work=W, extra_proxy="tls_cert = %s\ntls_key = %s" % (CERTS["dv"][0], CERTS["local"][1]))
    rc, out, err = check_config(text, W, "tls-mismatch")
    eq(rc, 1, "exit status")
    assert "does not belong to the certificate" in err, err
    text = proxy_ini(SIM, work=W, extra_proxy="tls_cert = %s" % CERTS["dv"][0])
    rc, out, err = check_config(text, W, "tls-unpaired")
    eq(rc, 1, "exit status (no key)")
    assert "1 tls_cert but 0 tls_key" in err, err


def test_client_certificate_required():
    px = Proxy(W, proxy_ini(SIM, work=W, extra_proxy=tls_extra(client_ca=True)), name="mtls").start()
    try:
        px.wait_event("token_acquired", 20)
        status, body, _ = https_get(px.port, "contoso.crm4.dynamics.com", "/dataverse/_test/echo")
        eq(status, 403, "without a client certificate")
        assert b"client_certificate_required" in body, body
        status, _, _ = https_get(px.port, "contoso.crm4.dynamics.com", "/dataverse/_test/echo",
                                 client_cert=CERTS["client"])
        eq(status, 200, "with a client certificate from tls_client_ca")
    finally:
        px.stop()


def test_caller_recognised_by_client_certificate_subject():
    """[caller:NAME] tls_client_subject: the certificate's subject DN (after
    tls_client_ca verified it) names the caller; another subject is no caller."""
    other = issue("client-other", ["other-client"], client=True)
    text = proxy_ini(SIM, work=W, extra_proxy=tls_extra(client_ca=True))
    text = text.replace("[route:dataverse]\n", "[route:dataverse]\ncallers = pos-terminal\n")
    text += "\n[caller:pos-terminal]\ntls_client_subject = CN=integration-client\n"
    px = Proxy(W, text, name="mtls-caller").start()
    try:
        status, body, _ = https_get(px.port, "contoso.crm4.dynamics.com", "/dataverse/_test/echo",
                                    client_cert=CERTS["client"])
        eq(status, 200, "the caller's certificate")
        e = px.wait_event(lambda e: e.get("event") == "request" and e.get("status") == 200, 10)
        eq(e["caller"], "pos-terminal", "caller in the log line")
        status, body, _ = https_get(px.port, "contoso.crm4.dynamics.com", "/dataverse/_test/echo", client_cert=other)
        eq(status, 403, "another certificate from the same CA")
        eq(json.loads(body)["code"], "caller_forbidden", "code")
    finally:
        px.stop()
