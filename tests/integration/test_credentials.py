"""test_credentials.py - every Entra credential type against a simulated Entra
that verifies client assertions for real (tests/sim/assertion.py): certificate
assertions (PS256 + x5t#S256, RS256 + x5t, x5c, PKCS#12), the AADSTS codes of
a wrong key, an expired assertion and a wrong thumbprint, workload identity
federation (config key and the AKS environment variables), `-t` checking
certificates, and rotation of secret, certificate and federated token files
under traffic without a signal."""

import base64
import concurrent.futures
import os
import sys
import threading
import time

import ca
import harness
from harness import eq, DATAVERSE_URL, TENANT_ID, Proxy, Sim, Work, check_config, proxy_ini

W = ENTRA = UP = None
CERT_APP = "44444444-aaaa-4bbb-8ccc-000000000004"
FED_APP = "55555555-aaaa-4bbb-8ccc-000000000005"
SECRET_APP = "66666666-aaaa-4bbb-8ccc-000000000006"
TOKEN_URL = "https://login.microsoftonline.com/%s/oauth2/v2.0/token" % TENANT_ID
ROLES = ["user_impersonation"]


def setup_module():
    global W, ENTRA, UP
    W = Work("test_credentials")
    ENTRA = Sim(W, "entra").start(roles=["entra"])
    UP = Sim(W, "up").start(roles=["dataverse", "bc", "fo"])


def teardown_module():
    for s in (ENTRA, UP):
        if s:
            s.stop()



def register(client_id, **kw):
    app = {"tenant_id": TENANT_ID, "tenant_domains": [harness.TENANT_DOMAIN], "tenant_name": "Contoso",
           "client_id": client_id, "name": "app-" + client_id[:8], "roles": ROLES}
    app.update(kw)
    ENTRA.add_apps([app])


def routes(n=1):
    r = harness.default_routes("c")
    return {k: r[k] for k in list(r)[:n]}


def ini(cred, n_routes=1, extra=None):
    return proxy_ini(ENTRA, UP, routes=routes(n_routes), credentials={"c": cred},
                     extra_proxy=extra or {"token_retry_max": "1s"}, work=W)


def cert_cred(files, client_id=CERT_APP, **kw):
    c = {"tenant": TENANT_ID, "client_id": client_id, "certificate_file": files["cert"],
         "private_key_file": files["key"]}
    c.update(kw)
    return c


def assertions():
    return ENTRA.stats()["assertions"]


b64d = harness.b64url_decode


def thumbs(files):
    """(x5t, x5t#S256) of the certificate, computed here independently of the proxy."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    cert = x509.load_pem_x509_certificate(files["pem"].encode())
    enc = harness.b64url
    return enc(cert.fingerprint(hashes.SHA1())), enc(cert.fingerprint(hashes.SHA256()))


def der_b64(files):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(files["pem"].encode())
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def error_codes(px, path="/dataverse/api/data/v9.2/WhoAmI"):
    px.wait_event("token_failed", 20)
    r = px.request("GET", path)
    eq(r.status, 502, "status")
    return r.json()["error_codes"]


def test_certificate_ps256_assertion_claims_and_requests():
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "ps256")
    register(CERT_APP, certificates=[files["pem"]])
    px = Proxy(W, ini(cert_cred(files), n_routes=2), name="ps256").start()
    try:
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "dataverse")
        eq(px.request("GET", "/bc/_test/echo").status, 200, "bc")
        got = assertions()
        eq(len(got), 2, "assertions accepted (one per token source)")
        t1, t256 = thumbs(files)
        for a in got:
            eq(a["header"], {"alg": "PS256", "typ": "JWT", "x5t#S256": t256}, "header")
            c = a["claims"]
            eq((c["aud"], c["iss"], c["sub"]), (TOKEN_URL, CERT_APP, CERT_APP), "aud, iss, sub")
            eq((c["exp"] - c["iat"], c["nbf"]), (600, c["iat"]), "lifetime, nbf")
            assert abs(c["iat"] - time.time()) < 60, c
        assert got[0]["claims"]["jti"] != got[1]["claims"]["jti"], "jti reused"
        log = px.log_text()
        key_body = open(files["key"]).read().split("\n")[1]
        assert key_body not in log, "private key in the log"
        for e in ENTRA.token_requests():
            eq(e["auth_method"], "assertion", "auth method")
    finally:
        px.stop()


def test_certificate_rs256_x5c_from_pfx_with_password():
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "rs256", password="pfx-pass", pfx=True)
    register(CERT_APP, certificates=[files["pem"]])
    cred = {"tenant": TENANT_ID, "client_id": CERT_APP, "pfx_file": files["pfx"],
            "private_key_password_file": files["password_file"], "assertion_alg": "RS256", "send_x5c": True}
    px = Proxy(W, ini(cred), name="rs256").start()
    try:
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status")
        got = assertions()
        eq(len(got), 1, "assertions")
        t1, _ = thumbs(files)
        eq(got[0]["header"], {"alg": "RS256", "typ": "JWT", "x5t": t1, "x5c": [der_b64(files)]}, "header")
    finally:
        px.stop()


def test_encrypted_pem_key_and_chain_in_x5c():
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "chain", password="pem-pass", chain=True)
    register(CERT_APP, certificates=[files["pem"]])
    cred = cert_cred(files, private_key_password_file=files["password_file"], send_x5c=True)
    px = Proxy(W, ini(cred), name="chain").start()
    try:
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status")
        x5c = assertions()[0]["header"]["x5c"]
        eq(len(x5c), 2, "certificates in x5c")
        eq(x5c[0], der_b64(files), "leaf first")
    finally:
        px.stop()


def test_unregistered_certificate_700027():
    ENTRA.reset(faults=True)
    registered = ca.make_client_cert(W.path("certs"), "registered")
    other = ca.make_client_cert(W.path("certs"), "other")
    register(CERT_APP, certificates=[registered["pem"]])
    px = Proxy(W, ini(cert_cred(other)), name="wrongcert").start()
    try:
        eq(error_codes(px), [700027], "error codes")
        eq(len(assertions()), 0, "accepted assertions")
    finally:
        px.stop()


def test_rs256_thumbprint_of_another_certificate_700027():
    """x5t must name the registered certificate: an RS256 assertion from an
    unregistered certificate carries an unknown SHA-1 thumbprint."""
    ENTRA.reset(faults=True)
    registered = ca.make_client_cert(W.path("certs"), "reg-rs")
    other = ca.make_client_cert(W.path("certs"), "other-rs")
    register(CERT_APP, certificates=[registered["pem"]])
    px = Proxy(W, ini(cert_cred(other, assertion_alg="RS256")), name="wrongx5t").start()
    try:
        eq(error_codes(px), [700027], "error codes")
    finally:
        px.stop()


def test_expired_assertion_700024():
    """Entra's clock 15 minutes ahead: the 10-minute assertion is expired."""
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "late")
    register(CERT_APP, certificates=[files["pem"]])
    ENTRA.set_entra("ok", clock_offset=900)
    px = Proxy(W, ini(cert_cred(files)), name="expired").start()
    try:
        eq(error_codes(px), [700024], "error codes")
    finally:
        px.stop()
        ENTRA.reset(faults=True)


def test_check_config_certificates():
    files = ca.make_client_cert(W.path("certs"), "check")
    other = ca.make_client_cert(W.path("certs"), "check-other")
    expired = ca.make_client_cert(W.path("certs"), "check-expired", expired=True)
    rc, out, err = check_config(ini(cert_cred(files)), W, "check-ok")
    eq((rc, err.count("certificate")), (0, 0), "valid certificate: " + err)
    rc, out, err = check_config(ini(cert_cred(files, private_key_file=other["key"])), W, "check-mismatch")
    eq(rc, 1, "mismatched key exit code")
    assert "[credential:c] the private key does not match the certificate in %s" % files["cert"] in err, err
    rc, out, err = check_config(ini(cert_cred(expired)), W, "check-expired")
    eq(rc, 1, "expired exit code")
    assert "[credential:c] the certificate in %s expired 2 days ago" % expired["cert"] in err, err
    rc, out, err = check_config(ini(dict(cert_cred(files), client_secret_file=files["key"])), W, "check-two")
    eq(rc, 1, "two proofs exit code")
    assert "only one of client_secret_file, client_secret_env, client_secret, certificate_file" in err, err


def test_expiring_certificate_warned_at_start():
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "soon", days=10)
    register(CERT_APP, certificates=[files["pem"]])
    px = Proxy(W, ini(cert_cred(files)), name="soon").start()
    try:
        e = px.wait_event("certificate_expiring", 10)
        assert "expires in 9 days" in e["msg"] or "expires in 10 days" in e["msg"], e
        r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
        eq(r.status, 200, "status: %s" % r.body[:600])
    finally:
        px.stop()


# ---- workload identity federation ------------------------------------------

SUBJECT = "system:serviceaccount:erp:s2s-proxy"


def test_federated_token_file_and_its_rotation():
    ENTRA.reset(faults=True)
    iss = ca.Issuer()
    register(FED_APP, federated=[iss.registration(SUBJECT)])
    path = W.write("fed-token", iss.token(SUBJECT, jti="first"))
    ENTRA.set_entra("ok", lifetime=4)
    cred = {"tenant": TENANT_ID, "client_id": FED_APP, "federated_token_file": path}
    px = Proxy(W, ini(cred), name="federated").start()
    try:
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status")
        eq(assertions()[0]["claims"]["jti"], "first", "first token used")
        W.write("fed-token", iss.token(SUBJECT, jti="second"))  # what the kubelet does
        deadline = time.time() + 20
        while time.time() < deadline and not any(a["claims"].get("jti") == "second" for a in assertions()):
            time.sleep(0.2)
        assert any(a["claims"].get("jti") == "second" for a in assertions()), "rotated token never sent"
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status after rotation")
    finally:
        px.stop()
        ENTRA.reset(faults=True)


def test_federated_wrong_subject_and_audience():
    ENTRA.reset(faults=True)
    iss = ca.Issuer()
    register(FED_APP, federated=[iss.registration(SUBJECT)])
    for name, token, code in (("fed-sub", iss.token("system:serviceaccount:erp:other"), 700213),
                              ("fed-aud", iss.token(SUBJECT, aud="api://other"), 700212),
                              ("fed-iss", ca.Issuer("https://evil.example/").token(SUBJECT), 700211),
                              ("fed-old", iss.token(SUBJECT, lifetime=-60), 700024)):
        path = W.write(name, token)
        cred = {"tenant": TENANT_ID, "client_id": FED_APP, "federated_token_file": path}
        px = Proxy(W, ini(cred), name=name).start()
        try:
            eq(error_codes(px), [code], name)
        finally:
            px.stop()


def test_federated_from_aks_environment():
    ENTRA.reset(faults=True)
    iss = ca.Issuer()
    register(FED_APP, federated=[iss.registration(SUBJECT)])
    path = W.write("fed-env-token", iss.token(SUBJECT))
    env = {"AZURE_TENANT_ID": TENANT_ID, "AZURE_CLIENT_ID": FED_APP, "AZURE_FEDERATED_TOKEN_FILE": path,
           "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/"}
    r = dict(harness.default_routes()["dataverse"])
    del r["credential"]
    text = proxy_ini(ENTRA, UP, routes={"dataverse": r}, credentials={}, work=W)
    px = Proxy(W, text, name="fedenv", env=env).start()
    try:
        eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status")
        eq(assertions()[0]["claims"]["sub"], SUBJECT, "federated subject")
    finally:
        px.stop()


# ---- rotation under traffic -------------------------------------------------

def traffic(px, stop, results):
    c = harness.Client(px.port)
    n = 0
    while not stop.is_set():
        r = c.request("GET", "/dataverse/_test/echo?n=%d" % n)
        results.append(r.status)
        n += 1
        time.sleep(0.02)
    c.close()


def run_rotation(px, rotate, done):
    stop, results = threading.Event(), []
    t = threading.Thread(target=traffic, args=(px, stop, results))
    t.start()
    try:
        harness.wait_for("traffic before the rotation", lambda: len(results) >= 20)
        rotate()
        harness.wait_for("the rotated credential in use", done, timeout=30, every=0.2)
        after = len(results)
        harness.wait_for("traffic after the rotation", lambda: len(results) >= max(after + 20, 51))
    finally:
        stop.set()
        t.join()
    assert done(), "the rotated credential was never used"
    assert len(results) > 50, "only %d requests" % len(results)
    eq([s for s in results if s != 200], [], "failed requests")


def test_secret_file_rotation_under_traffic_zero_failures():
    ENTRA.reset(faults=True)
    register(SECRET_APP, secret="old-secret", secrets=["new-secret"])
    ENTRA.set_entra("ok", lifetime=6)
    cred = {"tenant": TENANT_ID, "client_id": SECRET_APP, "secret": "old-secret"}
    px = Proxy(W, ini(cred), name="rot-secret").start()
    try:
        px.wait_event("token_acquired", 20)

        def rotate():
            register(SECRET_APP, secret=None, secrets=["new-secret"])  # the old secret is deleted at once
            tmp = W.path("secret-c.txt.new")
            with open(tmp, "w") as f:
                f.write("new-secret\n")
            os.replace(tmp, W.path("secret-c.txt"))
        before = ENTRA.stats()["tokens_issued"]
        run_rotation(px, rotate, lambda: ENTRA.stats()["tokens_issued"] >= before + 2)
        eq(ENTRA.stats()["token_errors_by_code"], {}, "token errors")
    finally:
        px.stop()
        ENTRA.reset(faults=True)


def test_certificate_rotation_under_traffic_zero_failures():
    ENTRA.reset(faults=True)
    old = ca.make_client_cert(W.path("certs"), "rot-old")
    new = ca.make_client_cert(W.path("certs"), "rot-new")
    live = {"cert": W.path("live-cert.pem"), "key": W.path("live-key.pem")}
    for k in ("cert", "key"):
        with open(old[k], "rb") as f:
            W.write(os.path.basename(live[k]), f.read(), 0o600)
    register(CERT_APP, certificates=[old["pem"], new["pem"]])
    ENTRA.set_entra("ok", lifetime=6)
    px = Proxy(W, ini(cert_cred(live)), name="rot-cert").start()
    new_t = thumbs(new)[1]
    try:
        px.wait_event("token_acquired", 20)

        def rotate():
            for k in ("key", "cert"):  # as cert-manager writes: one file after the other
                tmp = live[k] + ".new"
                with open(new[k], "rb") as f, open(tmp, "wb") as g:
                    g.write(f.read())
                os.replace(tmp, live[k])
                time.sleep(0.3)
        run_rotation(px, rotate, lambda: any(a["header"].get("x5t#S256") == new_t for a in assertions()))
        eq(ENTRA.stats()["token_errors_by_code"], {}, "token errors")
        px.wait_event("certificate_reloaded", 5)
    finally:
        px.stop()
        ENTRA.reset(faults=True)


# ---- managed identity (simulated IMDS and App Service, plain http) ---------

def start_mi():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
    import imds  # tests/sim: runs in this process

    def mint(resource, cid, lifetime):
        return ENTRA.mint(aud=resource, appid=cid, tid=TENANT_ID, lifetime=lifetime)
    return imds.MI(mint, identities=[imds.SYSTEM_ID, MI_USER]).start()


MI_USER = "88888888-aaaa-4bbb-8ccc-000000000008"


def mi_cred(mi, identity="system", path="/metadata/identity/oauth2/token"):
    return {"managed_identity": identity,
            "managed_identity_endpoint": "http://127.0.0.1:%d%s" % (mi.port, path) if mi else None}


def test_managed_identity_imds_system_and_user_assigned():
    mi = start_mi()
    try:
        for identity, want_cid in (("system", None), (MI_USER, MI_USER)):
            del mi.log[:]
            px = Proxy(W, ini(mi_cred(mi, identity)), name="mi-" + identity[:6]).start()
            try:
                r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
                eq(r.status, 200, "status")
                eq(len(mi.log), 1, "IMDS requests")
                e = mi.log[0]
                eq(e["path"], "/metadata/identity/oauth2/token", "path")
                want = {"api-version": "2018-02-01", "resource": DATAVERSE_URL}
                if want_cid:
                    want["client_id"] = want_cid
                eq(e["query"], want, "query")
                eq(e["headers"].get("metadata"), "true", "Metadata header")
                ev = px.wait_event("token_acquired", 5)
                eq(ev.get("appid"), want_cid or "77777777-aaaa-4bbb-8ccc-000000000007", "token appid")
            finally:
                px.stop()
    finally:
        mi.stop()


def test_managed_identity_retries_404_410_429_500():
    mi = start_mi()
    mi.fail[:] = [404, 410, 429, 500]
    try:
        px = Proxy(W, ini(mi_cred(mi)), name="mi-retry").start()
        try:
            px.wait_event("token_acquired", 30)  # while retrying, requests get 503 at once
            r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
            eq(r.status, 200, "status after the retries")
            kinds = [e.get("kind") for e in px.events() if e.get("event") == "token_failed"]
            eq(kinds, ["server_error", "server_error", "throttled", "server_error"], "failures")
            eq([e["status"] for e in mi.log], [404, 410, 429, 500, 200], "IMDS answers")
        finally:
            px.stop()
    finally:
        mi.stop()


def test_managed_identity_unknown_identity_rejected_once():
    mi = start_mi()
    try:
        px = Proxy(W, ini(mi_cred(mi, "99999999-aaaa-4bbb-8ccc-000000000009")), name="mi-unknown").start()
        try:
            px.wait_event("token_failed", 20)
            for _ in range(5):
                r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
                eq(r.status, 502, "status")
            eq(r.json()["error"], "invalid_request", "error")
            eq(len(mi.log), 1, "IMDS requests (the rejection is cached)")
        finally:
            px.stop()
    finally:
        mi.stop()


def test_managed_identity_app_service():
    mi = start_mi()
    env = {"IDENTITY_ENDPOINT": "http://127.0.0.1:%d/msi/token" % mi.port, "IDENTITY_HEADER": "ih-secret"}
    try:
        px = Proxy(W, ini({"managed_identity": "system"}), name="mi-appsvc", env=env).start()
        try:
            eq(px.request("GET", "/dataverse/api/data/v9.2/WhoAmI").status, 200, "status")
            eq(len(mi.log), 1, "requests")
            e = mi.log[0]
            eq((e["path"], e["query"]), ("/msi/token", {"api-version": "2019-08-01", "resource": DATAVERSE_URL}),
               "request")
            eq(e["headers"].get("x-identity-header"), "ih-secret", "X-IDENTITY-HEADER")
            assert "metadata" not in e["headers"], e
            assert "ih-secret" not in px.log_text(), "identity header in the log"
        finally:
            px.stop()
    finally:
        mi.stop()


def test_managed_identity_config_errors():
    rc, out, err = check_config(ini({"managed_identity": "bob"}), W, "mi-bad")
    eq(rc, 1, "exit code")
    assert "[credential:c] managed_identity: must be 'system' or the client id (GUID) of a user-assigned" in err, err
    rc, out, err = check_config(ini({"tenant": TENANT_ID, "client_id": CERT_APP, "secret": "x",
                                     "managed_identity_endpoint": "http://127.0.0.1:1/t"}), W, "mi-ep")
    eq(rc, 1, "exit code")
    assert "[credential:c] managed_identity_endpoint: needs managed_identity" in err, err
