"""test_sim.py - the simulated Microsoft cloud itself (no proxy involved).

Talks HTTPS straight to tests/sim/mscloud.py with a context trusting the
test CA, SNI and Host set to the fake Microsoft host, TCP to 127.0.0.1.
"""

import base64
import concurrent.futures
import http.client
import json
import re
import socket
import ssl
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import harness
from harness import (BC_URL, CLIENT2_ID, CLIENT_ID, CLIENT_SECRET, DATAVERSE_URL, FO_URL, TENANT_DOMAIN,
                     TENANT_ID, Sim, Work, pattern_gen, pattern_sha256)

W = None
SIM = None

DV = "contoso.crm4.dynamics.com"
BC = "api.businesscentral.dynamics.com"
FO = "contoso.operations.dynamics.com"
ERROR_KEYS = ["error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
              "error_uri"]
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def setup_module():
    global W, SIM
    W = Work("test_sim")
    SIM = Sim(W).start()


def teardown_module():
    if SIM:
        SIM.stop()


def eq(got, want, what=""):
    assert got == want, "%s: expected %r, got %r" % (what or "value", want, got)


b64d = harness.b64url_decode


def verify_jwt(token, sim=None):
    """Check the RS256 signature against the simulator's JWKS -> (header, claims)."""
    jwks = (sim or SIM).control("jwks")["keys"][0]
    h, c, s = token.split(".")
    header = json.loads(b64d(h))
    n = int.from_bytes(b64d(jwks["n"]), "big")
    e = int.from_bytes(b64d(jwks["e"]), "big")
    rsa.RSAPublicNumbers(e, n).public_key().verify(b64d(s), (h + "." + c).encode(), padding.PKCS1v15(),
                                                    hashes.SHA256())
    eq(header["kid"], jwks["kid"], "kid")
    return header, json.loads(b64d(c))


def bearer(token):
    return [("Authorization", "Bearer " + token)]


def check_entra_error(r, status, error, code):
    eq(r.status, status, "status (%s)" % r.text)
    eq(r.header("Content-Type"), "application/json; charset=utf-8", "content-type")
    eq(r.header("Cache-Control"), "no-store, no-cache", "cache-control")
    body = r.json()
    eq(list(body.keys())[:7], ERROR_KEYS, "error body keys")
    eq(body["error"], error, "error")
    eq(body["error_codes"], [code], "error_codes")
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", body["timestamp"]), body["timestamp"]
    assert re.match("^%s$" % GUID, body["trace_id"]) and re.match("^%s$" % GUID, body["correlation_id"])
    desc = body["error_description"]
    m = re.match(r"^AADSTS(\d+): (.+)\r\nTrace ID: (%s)\r\nCorrelation ID: (%s)\r\nTimestamp: (.+)$" % (GUID, GUID),
                 desc, re.S)
    assert m, "description shape: %r" % desc
    eq(int(m.group(1)), code, "code in description")
    eq(m.group(3), body["trace_id"], "trace id in description")
    eq(m.group(4), body["correlation_id"], "correlation id in description")
    eq(m.group(5), body["timestamp"], "timestamp in description")
    eq(body["error_uri"], "https://login.microsoftonline.com/error?code=%d" % code, "error_uri")
    return body


# --- Entra: success -------------------------------------------------------------

def test_token_v2_post():
    r = SIM.token(DATAVERSE_URL)
    eq(r.status, 200, "status")
    eq(r.header("Cache-Control"), "no-store, no-cache", "cache-control")
    eq(r.header("Pragma"), "no-cache", "pragma")
    eq(r.header("Content-Type"), "application/json; charset=utf-8", "content-type")
    assert re.match("^%s$" % GUID, r.header("x-ms-request-id", "")), r.headers
    body = r.json()
    eq(list(body.keys()), ["token_type", "expires_in", "ext_expires_in", "access_token"], "keys")
    eq(body["token_type"], "Bearer", "token_type")
    eq(body["expires_in"], 3599, "expires_in")
    eq(body["ext_expires_in"], 3599, "ext_expires_in")
    header, c = verify_jwt(body["access_token"])
    eq((header["typ"], header["alg"]), ("JWT", "RS256"), "header")
    eq(c["aud"], DATAVERSE_URL, "aud")
    eq(c["iss"], "https://sts.windows.net/%s/" % TENANT_ID, "iss")
    eq(c["tid"], TENANT_ID, "tid")
    eq(c["azp"], CLIENT_ID, "azp")
    eq(c["ver"], "2.0", "ver")
    eq(c["roles"], ["user_impersonation", "API.ReadWrite.All"], "roles")
    eq(c["exp"] - c["iat"], 3599, "lifetime")
    assert c["nbf"] <= time.time() < c["exp"]
    for k in ("oid", "sub", "uti"):
        assert c.get(k), k


def test_token_v1_basic():
    r = SIM.token(FO_URL, version=1, auth="basic")
    eq(r.status, 200, "status (%s)" % r.text)
    body = r.json()
    eq(list(body.keys()), ["token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource",
                           "access_token"], "keys")
    eq(body["expires_in"], "3599", "expires_in is a string")
    eq(body["ext_expires_in"], "3599", "ext_expires_in")
    eq(body["resource"], FO_URL, "resource")
    _, c = verify_jwt(body["access_token"])
    eq(str(c["exp"]), body["expires_on"], "expires_on")
    eq(str(c["nbf"]), body["not_before"], "not_before")
    eq((c["aud"], c["appid"], c["ver"]), (FO_URL, CLIENT_ID, "1.0"), "claims")
    # the secret has + / = & %: Basic needs form-encoding of id and secret
    r = SIM.token(BC_URL, version=2, auth="basic", tenant=TENANT_DOMAIN)
    eq(r.status, 200, "v2 basic via domain (%s)" % r.text)
    _, c = verify_jwt(r.json()["access_token"])
    eq((c["aud"], c["tid"]), (BC_URL, TENANT_ID), "v2 basic claims")


def test_token_v1_post_and_v2_basic_all_clouds():
    for host in harness.ENTRA_HOSTS:
        for version, auth in ((1, "post"), (2, "basic")):
            r = SIM.token(DATAVERSE_URL, version=version, auth=auth, host=host)
            eq(r.status, 200, "%s v%d %s (%s)" % (host, version, auth, r.text))


def test_basic_secret_not_form_encoded_is_wrong():
    cred = base64.b64encode(("%s:%s" % (CLIENT_ID, CLIENT_SECRET)).encode()).decode()
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Basic " + cred)],
                    b"grant_type=client_credentials&scope=https%3A%2F%2Fcontoso.crm4.dynamics.com%2F.default")
    check_entra_error(r, 401, "invalid_client", 7000215)


def test_refresh_in_and_lifetime():
    SIM.add_apps([{"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN], "client_id": "refresh-app",
                   "secret": "x", "lifetime": 7200, "refresh_in": 3600}])
    b = SIM.token(DATAVERSE_URL, client_id="refresh-app", secret="x").json()
    eq((b["expires_in"], b["refresh_in"]), (7200, 3600), "v2 refresh_in")
    eq(list(b.keys()), ["token_type", "expires_in", "ext_expires_in", "refresh_in", "access_token"], "keys")
    b = SIM.token(DATAVERSE_URL, client_id="refresh-app", secret="x", version=1).json()
    eq((b["expires_in"], b["refresh_in"]), ("7200", "3600"), "v1 refresh_in")
    SIM.set_entra("ok", lifetime=5)
    try:
        b = SIM.token(DATAVERSE_URL).json()
        eq(b["expires_in"], 5, "lifetime override")
    finally:
        SIM.set_entra("ok", lifetime=None)


# --- Entra: errors -------------------------------------------------------------------

def test_error_wrong_secret():
    r = SIM.token(DATAVERSE_URL, secret="nope", headers=[("client-request-id", "0badc0de-1111-4222-8333-444455556666"),
                                                          ("return-client-request-id", "true")])
    body = check_entra_error(r, 401, "invalid_client", 7000215)
    eq(body["correlation_id"], "0badc0de-1111-4222-8333-444455556666", "correlation id echoes client-request-id")
    eq(r.header("client-request-id"), "0badc0de-1111-4222-8333-444455556666", "client-request-id returned")
    assert "Invalid client secret provided" in body["error_description"]


def test_error_unknown_client_and_tenant():
    r = SIM.token(DATAVERSE_URL, client_id="99999999-aaaa-4bbb-8ccc-000000000009")
    body = check_entra_error(r, 400, "unauthorized_client", 700016)
    assert "Application with identifier '99999999-aaaa-4bbb-8ccc-000000000009' was not found in the directory " \
           "'Contoso'" in body["error_description"], body["error_description"]
    r = SIM.token(DATAVERSE_URL, tenant="12345678-aaaa-4bbb-8ccc-000000000000")
    check_entra_error(r, 400, "invalid_tenant", 90002)
    r = SIM.token(DATAVERSE_URL, tenant="nosuch.onmicrosoft.com")
    check_entra_error(r, 400, "invalid_tenant", 90002)
    for t in ("common", "organizations"):
        check_entra_error(SIM.token(DATAVERSE_URL, tenant=t), 400, "invalid_request", 9001023)
    check_entra_error(SIM.token(DATAVERSE_URL, tenant="undefined"), 400, "invalid_request", 900023)
    # a client of another tenant is unknown in this one
    check_entra_error(SIM.token(DATAVERSE_URL, client_id=harness.OTHER_CLIENT_ID,
                                secret=harness.OTHER_CLIENT_SECRET), 400, "unauthorized_client", 700016)


def test_error_missing_secret():
    check_entra_error(SIM.token(DATAVERSE_URL, secret=None), 401, "invalid_client", 7000216)


def test_error_scopes_and_resources():
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/x-www-form-urlencoded")],
                    urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                            "client_secret": CLIENT_SECRET,
                                            "scope": DATAVERSE_URL + "/user_impersonation"}))
    body = check_entra_error(r, 400, "invalid_scope", 1002012)
    assert "/.default suffixed" in body["error_description"]
    r = SIM.token(DATAVERSE_URL, extra=[("resource", DATAVERSE_URL)])
    check_entra_error(r, 400, "invalid_request", 901002)
    check_entra_error(SIM.token("https://nosuch.example.com"), 400, "invalid_resource", 500011)
    check_entra_error(SIM.token("https://contoso.crm4.dynamics.com/api"), 400, "invalid_resource", 500011)
    check_entra_error(SIM.token(FO_URL + "/", version=1), 400, "invalid_grant", 65001)
    check_entra_error(SIM.token("https://Contoso.operations.dynamics.com"), 400, "invalid_grant", 65001)
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/x-www-form-urlencoded")],
                    urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                            "client_secret": CLIENT_SECRET,
                                            "scope": "%s/.default %s/.default" % (DATAVERSE_URL, BC_URL)}))
    check_entra_error(r, 400, "invalid_scope", 700022)
    # Dataverse resources with a trailing slash and the double-slash v2 form are fine
    eq(SIM.token(DATAVERSE_URL + "/", version=1).status, 200, "v1 trailing slash")
    eq(SIM.token(DATAVERSE_URL + "/").status, 200, "v2 //.default")


def test_error_json_body_and_grant_type():
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/json")],
                    json.dumps({"grant_type": "client_credentials", "client_id": CLIENT_ID}))
    body = check_entra_error(r, 400, "invalid_request", 900144)
    assert "'grant_type'" in body["error_description"]
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/x-www-form-urlencoded")], b"client_id=x")
    check_entra_error(r, 400, "invalid_request", 900144)
    r = SIM.request("login.microsoftonline.com", "POST", "/%s/oauth2/v2.0/token" % TENANT_ID,
                    [("Content-Type", "application/x-www-form-urlencoded")], b"grant_type=password")
    check_entra_error(r, 400, "unsupported_grant_type", 70003)
    r = SIM.request("login.microsoftonline.com", "GET", "/%s/oauth2/v2.0/token" % TENANT_ID)
    check_entra_error(r, 400, "invalid_request", 900561)


def test_force_error_table():
    cases = {7000222: (401, "invalid_client"), 7000229: (401, "invalid_client"),
             7000112: (400, "unauthorized_client"), 53003: (400, "invalid_grant"),
             50196: (400, "temporarily_unavailable"), 700016: (400, "unauthorized_client")}
    apps = [{"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN], "client_id": "forced-%d" % c,
             "secret": "s", "force_error": c} for c in cases]
    SIM.add_apps(apps)
    for code, (status, error) in cases.items():
        body = check_entra_error(SIM.token(DATAVERSE_URL, client_id="forced-%d" % code, secret="s"),
                                 status, error, code)
        if code == 53003:
            eq(body["suberror"], "message_only", "53003 suberror")
            assert "capolids" in json.loads(body["claims"])["access_token"]


# --- upstreams ---------------------------------------------------------------------

def test_upstream_rejects_missing_token():
    r = SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI")
    eq(r.status, 401, "dataverse status")
    eq(r.body, b"", "dataverse body")
    eq(r.header("WWW-Authenticate"),
       "Bearer authorization_uri=https://login.microsoftonline.com/%s/oauth2/authorize, "
       "resource_id=https://contoso.crm4.dynamics.com/" % TENANT_ID, "challenge")
    r = SIM.request(BC, "GET", "/v2.0/production/api/v2.0/companies")
    eq(r.status, 401, "bc status")
    b = r.json()
    eq(b["error"]["code"], "Authentication_InvalidCredentials", "bc code")
    assert re.match(r"^The server has rejected the client credentials\.  CorrelationId:  %s\.$" % GUID,
                    b["error"]["message"]), b
    r = SIM.request(FO, "GET", "/data/Customers")
    eq((r.status, r.body), (401, b""), "fo")
    r = SIM.request(DV, "GET", "/_test/echo", [("Authorization", "Basic Zm9vOmJhcg==")])
    eq(r.status, 401, "basic is not a bearer token")


def test_upstream_rejects_wrong_aud():
    bc_tok = SIM.access_token(BC_URL)
    dv_tok = SIM.access_token(DATAVERSE_URL)
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(bc_tok)).status, 401, "bc token at dataverse")
    eq(SIM.request(BC, "GET", "/v2.0/production/api/v2.0/companies", bearer(dv_tok)).status, 401, "dv at bc")
    eq(SIM.request(FO, "GET", "/data/Customers", bearer(dv_tok)).status, 401, "dv at fo")
    eq(SIM.request("contoso.crm.dynamics.com", "GET", "/api/data/v9.2/WhoAmI", bearer(dv_tok)).status, 401,
       "crm4 token at crm")
    for aud in (FO_URL + "/", "https://CONTOSO.operations.dynamics.com", "00000015-0000-0000-c000-000000000000"):
        r = SIM.request(FO, "GET", "/data/Customers", bearer(SIM.mint(aud=aud, tid=TENANT_ID)))
        eq((r.status, r.body), (401, b""), "fo aud %s" % aud)
    r = SIM.request(FO, "GET", "/data/Customers", bearer(SIM.access_token(FO_URL)))
    eq(r.status, 200, "fo with exact aud")
    ss = "securityservice.operations365.dynamics.com"
    r = SIM.request(ss, "GET", "/_test/echo", bearer(dv_tok))
    eq((r.status, r.json()), (400, {"error": "invalid_client", "error_description": "Expected aud https://%s but "
                                    "found %s." % (ss, DATAVERSE_URL)}), "security service")
    eq(SIM.request(ss, "GET", "/_test/echo", bearer(SIM.access_token("https://" + ss))).status, 200, "ss ok")
    # Dataverse: trailing slash accepted; the .api. host accepts the org token
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(SIM.access_token(DATAVERSE_URL + "/"))).status,
       200, "dv trailing slash")
    eq(SIM.request("contoso.api.crm4.dynamics.com", "GET", "/api/data/v9.2/WhoAmI", bearer(dv_tok)).status,
       200, "api host")


def test_upstream_rejects_expired_and_forged_tokens():
    before = SIM.stats()["expired_tokens_seen"]
    expired = SIM.mint(aud=DATAVERSE_URL, tid=TENANT_ID, lifetime=-5)
    r = SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(expired))
    eq((r.status, r.body), (401, b""), "expired")
    assert r.header("WWW-Authenticate", "").startswith("Bearer authorization_uri=")
    eq(SIM.stats()["expired_tokens_seen"], before + 1, "expired_tokens_seen")
    future = SIM.mint(aud=DATAVERSE_URL, tid=TENANT_ID, claims={"nbf": int(time.time()) + 60})
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(future)).status, 401, "not yet valid")
    # strictness: a token issued with exp at now+1 is refused once exp passes
    SIM.set_entra("ok", lifetime=1)
    try:
        short = SIM.access_token(DATAVERSE_URL)
    finally:
        SIM.set_entra("ok", lifetime=None)
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(short)).status, 200, "short-lived, still valid")
    harness.wait_for("the short-lived token refused once exp has passed",
                     lambda: SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(short)).status == 401,
                     timeout=10, every=0.2)
    # same claims signed by another key
    good = SIM.access_token(DATAVERSE_URL)
    h, c, _ = good.split(".")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = other.sign((h + "." + c).encode(), padding.PKCS1v15(), hashes.SHA256())
    forged = h + "." + c + "." + harness.b64url(sig)
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(forged)).status, 401, "forged")
    eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer("not.a.jwt")).status, 401, "garbage token")


def test_dataverse_api():
    tok = bearer(SIM.access_token(DATAVERSE_URL))
    r = SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok)
    eq(r.status, 200, "WhoAmI")
    eq(r.header("OData-Version"), "4.0", "OData-Version")
    eq(r.header("Content-Type"), "application/json; odata.metadata=minimal", "content-type")
    b = r.json()
    eq(list(b.keys()), ["@odata.context", "BusinessUnitId", "UserId", "OrganizationId"], "WhoAmI keys")
    eq(b["@odata.context"], "https://%s/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse" % DV, "ctx")
    r = SIM.request(DV, "POST", "/api/data/v9.2/accounts", tok + [("Content-Type", "application/json")],
                    json.dumps({"name": "Sim Test Account"}))
    eq((r.status, r.body), (204, b""), "create")
    m = re.match(r"^https://%s/api/data/v9\.2/accounts\((%s)\)$" % (re.escape(DV), GUID), r.header("OData-EntityId"))
    assert m, r.headers
    rows = SIM.request(DV, "GET", "/api/data/v9.2/accounts", tok).json()["value"]
    assert any(x["accountid"] == m.group(1) and x["name"] == "Sim Test Account" for x in rows), rows
    eq(SIM.request(DV, "GET", "/api/data/v9.2/nosuch", tok).json()["error"]["code"], "0x8006088a", "404 code")


def test_bc_and_fo_api():
    r = SIM.request(BC, "GET", "/v2.0/production/api/v2.0/companies", bearer(SIM.access_token(BC_URL)))
    eq(r.status, 200, "companies")
    b = r.json()
    eq(b["@odata.context"], "https://%s/v2.0/production/api/v2.0/$metadata#companies" % BC, "ctx")
    eq(list(b["value"][0].keys()), ["id", "systemVersion", "timestamp", "name", "displayName", "businessProfileId",
                                    "systemCreatedAt", "systemCreatedBy", "systemModifiedAt", "systemModifiedBy"],
       "company keys")
    eq(b["value"][0]["name"], "CRONUS USA, Inc.", "name")
    tok = bearer(SIM.access_token(FO_URL))
    r = SIM.request(FO, "GET", "/data/$metadata", tok)
    eq(r.status, 200, "metadata")
    assert r.body.startswith(b"<?xml") and b"EntitySet Name=\"Customers\"" in r.body
    b = SIM.request(FO, "GET", "/data/Customers", tok).json()
    eq(b["@odata.context"], "https://%s/data/$metadata#Customers" % FO, "ctx")
    eq(b["value"][0]["dataAreaId"], "usmf", "row")


def page_through(host, target, tok, size):
    """Follow @odata.nextLink from target with Prefer: odata.maxpagesize=size
    -> (rows, [links followed])."""
    rows, links = [], []
    hs = tok + [("Prefer", "odata.maxpagesize=%d" % size)]
    while True:
        r = SIM.request(host, "GET", target, hs)
        eq(r.status, 200, "page %s" % target)
        eq(r.header("Preference-Applied"), "odata.maxpagesize=%d" % size, "Preference-Applied")
        b = r.json()
        rows += b["value"]
        nxt = b.get("@odata.nextLink")
        if not nxt:
            return rows, links
        assert nxt.startswith("https://%s/" % host), nxt
        links.append(nxt)
        target = nxt[len("https://" + host):]


def test_paging_and_creates_absolute_links():
    """Dataverse accounts, BC customers and F&O Customers page with absolute
    @odata.nextLink under Prefer: odata.maxpagesize; creates answer absolute
    OData-EntityId (and Location on BC and F&O)."""
    dv = bearer(SIM.access_token(DATAVERSE_URL))
    for i in range(8):
        r = SIM.request(DV, "POST", "/api/data/v9.2/accounts", dv + [("Content-Type", "application/json")],
                        json.dumps({"name": "Paged %d" % i}).encode())
        eq(r.status, 204, "create")
        assert re.match(r"^https://%s/api/data/v9\.2/accounts\(%s\)$" % (re.escape(DV), GUID),
                        r.header("OData-EntityId")), r.header("OData-EntityId")
    whole = SIM.request(DV, "GET", "/api/data/v9.2/accounts?$select=name", dv).json()
    assert "@odata.nextLink" not in whole
    rows, links = page_through(DV, "/api/data/v9.2/accounts?$select=name", dv, 3)
    eq([r["accountid"] for r in rows], [r["accountid"] for r in whole["value"]], "paged rows")
    eq(len(links), (len(rows) + 2) // 3 - 1, "pages")
    assert all("$select=name" in x for x in links), links
    bc = bearer(SIM.access_token(BC_URL))
    cid = SIM.request(BC, "GET", "/v2.0/production/api/v2.0/companies", bc).json()["value"][0]["id"]
    coll = "/v2.0/production/api/v2.0/companies(%s)/customers" % cid
    fo = bearer(SIM.access_token(FO_URL))
    for host, tok, target, body, n in ((BC, bc, coll, {"displayName": "New %d"}, 3),
                                       (FO, fo, "/data/Customers", {"Name": "New %d"}, 3)):
        for i in range(n):
            r = SIM.request(host, "POST", target, tok + [("Content-Type", "application/json")],
                            json.dumps({k: v % i for k, v in body.items()}).encode())
            eq(r.status, 201, "create at %s" % host)
            loc = r.header("Location")
            assert loc.startswith("https://%s%s(" % (host, target)), loc
            eq(r.header("OData-EntityId"), loc, "entity id")
        rows, links = page_through(host, target, tok, 2)
        eq(len(rows), 2 + n, "rows at %s" % host)
        eq(len(links), 2, "links at %s" % host)


def test_dataverse_batch_with_changeset():
    """$batch: a GET part and a changeset of two creates (the second by its
    Content-ID reference), answered as Dataverse does; an absolute URL of
    another host is refused in its part; a body without the boundary is 400."""
    dv = bearer(SIM.access_token(DATAVERSE_URL))
    root = "https://%s/api/data/v9.2/" % DV
    body = ("--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            "GET %saccounts?$select=name HTTP/1.1\r\nAccept: application/json\r\n\r\n"
            "--batch_x\r\nContent-Type: multipart/mixed; boundary=changeset_y\r\n\r\n"
            "--changeset_y\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            "Content-ID: 1\r\n\r\nPOST %saccounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            "{\"name\":\"In batch\"}\r\n"
            "--changeset_y\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            "Content-ID: 2\r\n\r\nPATCH $1 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            "{\"name\":\"In batch, renamed\"}\r\n"
            "--changeset_y--\r\n"
            "--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            "GET https://elsewhere.example/api/data/v9.2/accounts HTTP/1.1\r\n\r\n"
            "--batch_x--\r\n" % (root, root))
    r = SIM.request(DV, "POST", "/api/data/v9.2/$batch", dv + [("Content-Type", "multipart/mixed;boundary=batch_x")],
                    body.encode())
    eq(r.status, 200, "batch")
    m = re.match(r"^multipart/mixed; boundary=(batchresponse_%s)$" % GUID, r.header("Content-Type"))
    assert m, r.header("Content-Type")
    text = r.body.decode()
    eq(text.count("HTTP/1.1 200 OK"), 1, "GET part")
    eq(text.count("HTTP/1.1 204 No Content"), 2, "changeset parts")
    eq(text.count("HTTP/1.1 400 Bad Request"), 1, "foreign host part")
    ids = re.findall(r"OData-EntityId: (\S+)", text)
    eq(len(ids), 2, "entity ids")
    assert ids[0] == ids[1] and ids[0].startswith(root + "accounts("), ids
    assert text.endswith("--%s--\r\n" % m.group(1)), text[-80:]
    rec = [x for x in SIM.requests() if x["target"] == "/api/data/v9.2/$batch"][-1]
    eq(rec["batch_parts"], [["GET", root + "accounts?$select=name"], ["POST", root + "accounts"], ["PATCH", "$1"],
                            ["GET", "https://elsewhere.example/api/data/v9.2/accounts"]], "parts seen")
    r = SIM.request(DV, "POST", "/api/data/v9.2/$batch", dv + [("Content-Type", "multipart/mixed;boundary=zz")],
                    body.encode())
    eq(r.status, 400, "boundary not in the body")


def test_odata_test_endpoints():
    tok = bearer(SIM.access_token(DATAVERSE_URL))
    r = SIM.request(DV, "GET", "/_test/odata?escaped=1", tok)
    assert b"https:\\/\\/" + DV.encode() in r.body, r.body[:100]
    eq(json.loads(r.body)["value"][0]["root"], "https://" + DV, "escaped JSON parses")
    r = SIM.request(DV, "GET", "/_test/odata?gzip=1", tok + [("Accept-Encoding", "gzip")])
    eq(r.header("Content-Encoding"), "gzip", "gzip")
    r = SIM.request(DV, "GET", "/_test/bigjson?n=2", tok)
    eq(len(json.loads(r.body)["value"]), 2000, "records")


def test_upstream_errors_per_app():
    SIM.add_apps([{"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN], "client_id": "no-app-user",
                   "secret": "s", "upstream_errors": {"dataverse": "not_member", "bc": "invalid_credentials",
                                                      "fo": "unauthorized"}}])
    r = SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI",
                    bearer(SIM.access_token(DATAVERSE_URL, client_id="no-app-user", secret="s")))
    eq(r.status, 403, "not member")
    eq(r.body, b'{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}', "body")
    r = SIM.request(BC, "GET", "/v2.0/production/api/v2.0/companies",
                    bearer(SIM.access_token(BC_URL, client_id="no-app-user", secret="s")))
    eq((r.status, r.json()["error"]["code"]), (401, "Authentication_InvalidCredentials"), "bc")
    r = SIM.request(FO, "GET", "/data/Customers", bearer(SIM.access_token(FO_URL, client_id="no-app-user",
                                                                           secret="s")))
    eq((r.status, r.body), (401, b""), "fo")


def test_env_tenant_pinning():
    SIM.set_env_tenant("contoso.sandbox.operations.dynamics.com", harness.OTHER_TENANT_ID)
    try:
        host = "contoso.sandbox.operations.dynamics.com"
        tok = SIM.access_token("https://" + host)
        eq(SIM.request(host, "GET", "/data/Customers", bearer(tok)).status, 401, "wrong tenant")
        tok = SIM.access_token("https://" + host, client_id=harness.OTHER_CLIENT_ID,
                               secret=harness.OTHER_CLIENT_SECRET, tenant=harness.OTHER_TENANT_ID)
        eq(SIM.request(host, "GET", "/data/Customers", bearer(tok)).status, 200, "right tenant")
    finally:
        SIM.set_env_tenant("contoso.sandbox.operations.dynamics.com", None)


# --- /_test endpoints ---------------------------------------------------------------

def test_echo_keeps_order_and_target():
    tok = SIM.access_token(DATAVERSE_URL)
    r = SIM.request(DV, "PATCH", "/_test/echo?b=2&a=1&a=3", [("X-B", "1"), ("x-a", "2"), ("X-B", "3")] + bearer(tok),
                    b"hello")
    b = r.json()
    eq(b["method"], "PATCH", "method")
    eq(b["target"], "/_test/echo?b=2&a=1&a=3", "target")
    names = [h[0] for h in b["headers"]]
    eq(names[:4], ["Host", "X-B", "x-a", "X-B"], "header order")
    eq((b["body_len"], b["body_sha256"]), (5, harness.sha256(b"hello")), "body")


def test_bytes_and_status():
    c = SIM.client(BC)
    tok = bearer(SIM.access_token(BC_URL))
    for n in (0, 1, 250, 251, 252, 1 << 20, 3 * (1 << 20) + 17):
        for chunked in ("0", "1"):
            r = c.request("GET", "/_test/bytes?n=%d&chunked=%s" % (n, chunked), tok)
            eq(r.status, 200, "bytes")
            eq((len(r.body), r.body_sha256, r.header("X-Body-Sha256")), (n, pattern_sha256(n), pattern_sha256(n)),
               "n=%d chunked=%s" % (n, chunked))
            eq(r.header("Transfer-Encoding") == "chunked", chunked == "1", "framing")
    r = c.request("HEAD", "/_test/bytes?n=1000", tok)
    eq((r.status, r.header("Content-Length"), r.body), (200, "1000", b""), "HEAD")
    for code in (204, 304):
        r = c.request("GET", "/_test/status?code=%d" % code, tok)
        eq((r.status, r.body, r.header("Content-Length")), (code, b"", None), "status %d" % code)
    r = c.request("GET", "/_test/status?code=429&retry_after=7", tok)
    eq((r.status, r.header("Retry-After"), r.header("x-ms-ratelimit-burst-remaining-xrm-requests")),
       (429, "7", "0"), "429")
    r = c.request("GET", "/_test/status?code=503", tok)
    eq(r.status, 503, "503")
    c.close()


def test_odd_responses():
    tok = bearer(SIM.access_token(DATAVERSE_URL))
    r = SIM.request(DV, "GET", "/_test/closedelim?n=100000", tok)
    eq((r.status, r.version, r.header("Content-Length")), (200, 10, None), "closedelim")
    eq(r.body_sha256, pattern_sha256(100000), "closedelim body")
    try:
        r = SIM.request(DV, "GET", "/_test/cut?n=100000", tok)
        raise AssertionError("cut response read completely: %r" % r)
    except http.client.IncompleteRead as e:
        eq(len(e.partial), 50000, "cut partial")
    t0 = time.time()
    eq(SIM.request(DV, "GET", "/_test/slow?ms=300", tok).status, 200, "slow")
    assert time.time() - t0 >= 0.3
    r = SIM.request(DV, "GET", "/_test/headers", tok)
    eq(r.header("Connection"), "close, X-Hop", "connection")
    eq((r.header("X-Hop"), r.header("Keep-Alive")), ("must-not-be-forwarded", "timeout=5"), "hop headers")
    eq(len(r.header_all("Set-Cookie")), 2, "two cookies")
    assert r.header("x-ms-correlation-request-id")


def test_upload_64mib_chunked_and_length():
    n = 64 << 20
    tok = bearer(SIM.access_token(FO_URL))
    c = SIM.client(FO, timeout=120)
    t0 = time.time()
    r = c.request("POST", "/_test/upload", tok, pattern_gen(n, 1 << 20), chunked=True)
    eq(r.status, 200, "chunked upload")
    eq((r.json()["len"], r.json()["sha256"], r.json()["chunked"]), (n, pattern_sha256(n), True), "chunked")
    r = c.request("PUT", "/_test/upload", tok + [("Content-Length", str(n))], pattern_gen(n, 300000))
    eq((r.json()["len"], r.json()["sha256"], r.json()["chunked"]), (n, pattern_sha256(n), False), "length")
    r = c.request("GET", "/_test/bytes?n=%d&chunked=1" % n, tok, hash_body=True)
    eq((r.body_len, r.body_sha256), (n, pattern_sha256(n)), "64 MiB download")
    c.close()
    assert time.time() - t0 < 60, "too slow: %.1fs" % (time.time() - t0)


def test_keepalive_after_rejected_upload():
    c = SIM.client(DV)
    r = c.request("POST", "/_test/upload", [], b"x" * 100000)
    eq(r.status, 401, "rejected")
    r = c.request("GET", "/api/data/v9.2/WhoAmI", bearer(SIM.access_token(DATAVERSE_URL)))
    eq(r.status, 200, "same connection still usable")
    c.close()


def test_bad_requests_do_not_break_the_sim():
    ctx = ssl.create_default_context(cafile=W.ca["ca"])
    for data in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
                 b"POST /_test/upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" % DV.encode(),
                 b"POST /_test/upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                 % DV.encode(), b"\x16\x03\x01garbage\r\n\r\n"):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", SIM.port), 5), server_hostname=DV)
        s.sendall(data)
        got = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except (socket.timeout, ssl.SSLError, ConnectionError):
            pass
        s.close()
        assert got.startswith(b"HTTP/1.1 4") or got.startswith(b"HTTP/1.0 4"), (data, got[:200])
    # plain text on the TLS port, and a client that connects and leaves
    eq(harness.raw(SIM.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)[:1] in (b"", b"\x15"), True,
       "no TLS")
    socket.create_connection(("127.0.0.1", SIM.port), 5).close()
    eq(SIM.control("health")["ok"], True, "still healthy")


# --- faults, stats, processes -------------------------------------------------------

def test_fault_modes():
    try:
        SIM.set_entra("429", count=1, retry_after=3)
        r = SIM.token(DATAVERSE_URL)
        eq((r.status, r.header("Retry-After")), (429, "3"), "429")
        eq(SIM.token(DATAVERSE_URL).status, 200, "count=1 ran out")
        SIM.set_entra("500", count=1)
        eq(SIM.token(DATAVERSE_URL).json()["error"], "server_error", "500 body")
        SIM.set_entra("503", count=1, retry_after=1)
        r = SIM.token(DATAVERSE_URL)
        eq((r.status, r.header("Retry-After")), (503, "1"), "503")
        SIM.set_entra("garbage", count=1)
        r = SIM.token(DATAVERSE_URL)
        eq(r.status, 200, "garbage status")
        try:
            json.loads(r.body)
            raise AssertionError("garbage body parsed as JSON")
        except ValueError:
            pass
        SIM.set_entra("notoken", count=1)
        r = SIM.token(DATAVERSE_URL)
        assert r.status == 200 and "access_token" not in r.json()
        SIM.set_entra("html", count=1)
        r = SIM.token(DATAVERSE_URL)
        eq((r.status, r.header("Content-Type")), (502, "text/html"), "html")
        SIM.set_entra("reset", count=1)
        try:
            r = SIM.token(DATAVERSE_URL)
            raise AssertionError("reset answered: %r" % r)
        except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
            pass
        SIM.set_entra("slow", count=1, delay_ms=500)
        t0 = time.time()
        eq(SIM.token(DATAVERSE_URL).status, 200, "slow")
        assert time.time() - t0 >= 0.5
        SIM.set_entra("503", count=-1)
        for _ in range(3):
            eq(SIM.token(DATAVERSE_URL).status, 503, "until changed")
    finally:
        SIM.set_entra("ok")
    eq(SIM.token(DATAVERSE_URL).status, 200, "ok again")


def test_stats_and_request_log():
    SIM.reset()
    tok = SIM.access_token(DATAVERSE_URL)
    SIM.token(BC_URL, client_id=CLIENT2_ID, secret=harness.CLIENT2_SECRET)
    SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI?x=1", bearer(tok) + [("X-Trace", "t1")])
    SIM.request(FO, "GET", "/data/Customers")
    s = SIM.stats()
    eq(s["token_requests"], 2, "token_requests")
    eq(s["token_requests_by_client"], {CLIENT_ID: 1, CLIENT2_ID: 1}, "by client")
    eq(s["token_requests_by_resource"], {DATAVERSE_URL: 1, BC_URL: 1}, "by resource")
    eq(len(s["issued_tokens"]), 2, "issued")
    assert tok in s["issued_tokens"]
    eq((s["upstream_requests"], s["upstream_rejected"]), (2, 1), "upstream counters")
    reqs = SIM.requests()
    eq([(x["method"], x["host"], x["target"], x["status"]) for x in reqs],
       [("GET", DV, "/api/data/v9.2/WhoAmI?x=1", 200), ("GET", FO, "/data/Customers", 401)], "log")
    eq(reqs[0]["aud"], DATAVERSE_URL, "aud")
    assert ["X-Trace", "t1"] in reqs[0]["headers"]
    eq(SIM.requests(limit=1)[0]["host"], FO, "limit")
    eq([t["client_id"] for t in SIM.token_requests()], [CLIENT_ID, CLIENT2_ID], "token log")
    SIM.reset()
    s = SIM.stats()
    eq((s["token_requests"], s["upstream_requests"], SIM.requests()), (0, 0, []), "reset")


def test_concurrency_200():
    tok = SIM.access_token(DATAVERSE_URL)

    def one(i):
        r = SIM.request(DV, "POST", "/_test/echo?i=%d" % i, bearer(tok), b"x" * i)
        return r.status, r.json()["body_len"], r.json()["target"]

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(200) as ex:
        res = list(ex.map(one, range(200)))
    for i, (status, n, target) in enumerate(res):
        eq((status, n, target), (200, i, "/_test/echo?i=%d" % i), "request %d" % i)
    assert time.time() - t0 < 30, "200 concurrent requests took %.1fs" % (time.time() - t0)


def test_separate_processes_share_state():
    entra = Sim(W, "entra2").start(roles=["entra"], state_dir=W.path("split-state"))
    up = Sim(W, "up2").start(roles=["dataverse", "bc", "fo"], state_dir=W.path("split-state"))
    try:
        tok = entra.access_token(DATAVERSE_URL)
        eq(up.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(tok)).status, 200, "cross-process token")
        eq(up.token(DATAVERSE_URL).status, 421, "upstream process does not serve Entra")
        eq(entra.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(tok)).status, 421, "entra process: no dv")
        # apps added through one process are seen by the other
        up.add_apps([{"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN], "client_id": "late-app",
                      "secret": "late"}])
        eq(entra.token(DATAVERSE_URL, client_id="late-app", secret="late").status, 200, "shared registry")
        entra.kill()
        eq(up.request(DV, "GET", "/api/data/v9.2/WhoAmI", bearer(tok)).status, 200, "entra down, upstream up")
        port = entra.port
        entra.restart()
        eq(entra.port, port, "same port")
        tok2 = entra.access_token(BC_URL)
        eq(up.request(BC, "GET", "/v2.0/x/api/v2.0/companies", bearer(tok2)).status, 200, "after restart")
    finally:
        entra.stop()
        up.stop()


def _limits(cfg):
    return SIM.control("limits", cfg)


def test_service_protection_request_count():
    """Dataverse's count limit: the Web API's 429 (Retry-After, error code,
    x-ms-ratelimit-* headers); a request sent while told to wait is recorded."""
    _limits({"dataverse": {"window_ms": 2000, "requests": 3, "grace_ms": 0}})
    try:
        tok = bearer(SIM.access_token(DATAVERSE_URL))
        eq([SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok).status for _ in range(3)], [200] * 3, "in budget")
        r = SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok)
        eq(r.status, 429, "over the count")
        ra = int(r.header("Retry-After"))
        assert 1 <= ra <= 2, r.headers
        eq(r.json()["error"]["code"], "0x80072322", "code")
        eq(r.json()["error"]["message"], "Number of requests exceeded the limit of 3 over time window of 2 seconds.",
           "message")
        eq(r.header("x-ms-ratelimit-burst-remaining-xrm-requests"), "0", "burst remaining")
        eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok).status, 429, "still waiting")
        st = _limits({})
        eq(len(st["violations"]), 1, "the early request is recorded")
        deadline = time.time() + 5
        while SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok).status != 200:
            assert time.time() < deadline, "the window never freed a slot"
            time.sleep(0.2)
    finally:
        _limits({"dataverse": None})
        SIM.reset()


def test_service_protection_concurrency_and_time():
    _limits({"dataverse": {"window_ms": 3000, "concurrent": 2, "grace_ms": 0}})
    try:
        tok = bearer(SIM.access_token(DATAVERSE_URL))
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            rs = list(ex.map(lambda i: SIM.request(DV, "GET", "/_test/slow?ms=%d" % (600 + 300 * i), tok),
                             range(3)))
        codes = sorted(r.status for r in rs)
        eq(codes, [200, 200, 429], "the third concurrent request")
        eq([r.json()["error"]["code"] for r in rs if r.status == 429], ["0x80072326"], "concurrency code")
        _limits({"dataverse": {"window_ms": 3000, "exec_ms": 500, "grace_ms": 0}})
        eq(SIM.request(DV, "GET", "/_test/slow?ms=600", tok).status, 200, "first")
        r = SIM.request(DV, "GET", "/_test/slow?ms=10", tok)
        eq((r.status, r.json()["error"]["code"]), (429, "0x80072321"), "execution time")
    finally:
        _limits({"dataverse": None})
        SIM.reset()


def test_service_protection_orgsvc_bc_fo():
    _limits({"dataverse": {"window_ms": 3000, "requests": 1}, "bc": {"window_ms": 3000, "requests": 1},
             "fo": {"window_ms": 3000, "requests": 1}})
    try:
        tok = bearer(SIM.access_token(DATAVERSE_URL))
        eq(SIM.request(DV, "GET", "/api/data/v9.2/WhoAmI", tok).status, 200, "first")
        soap = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Execute xmlns="http://'
                'schemas.microsoft.com/xrm/2011/Contracts/Services"/></s:Body></s:Envelope>')
        r = SIM.request(DV, "POST", "/XRMServices/2011/Organization.svc/web?SdkClientVersion=9.2", tok +
                        [("Content-Type", "text/xml; charset=utf-8")], soap)
        eq(r.status, 500, "fault status")
        assert b"<ErrorCode>-2147015902</ErrorCode>" in r.body, r.body
        assert re.search(rb"<a:key>Retry-After</a:key><a:value[^>]*>00:00:0[1-3]</a:value>", r.body), r.body
        btok = bearer(SIM.access_token(BC_URL))
        path = "/v2.0/production/api/v2.0/companies"
        eq(SIM.request(BC, "GET", path, btok).status, 200, "bc first")
        r = SIM.request(BC, "GET", path, btok)
        eq((r.status, r.json()["error"]["code"]), (429, "Application_TooManyRequests"), "bc 429")
        assert r.header("Retry-After"), r.headers
        ftok = bearer(SIM.access_token(FO_URL))
        eq(SIM.request(FO, "GET", "/data/Customers", ftok).status, 200, "fo first")
        r = SIM.request(FO, "GET", "/data/Customers", ftok)
        eq(r.status, 429, "fo 429")
        assert r.header("Retry-After"), r.headers
    finally:
        _limits({"dataverse": None, "bc": None, "fo": None})
        SIM.reset()
