"""test_callers.py - [caller:NAME]: who sent a request (Basic user and
password, inbound key), per-caller credentials, impersonation with
CallerObjectId, metrics by caller and protocol, and the usage inventory
that survives restarts."""

import base64
import os
import re
import signal
import subprocess
import time
import urllib.request

import harness
from harness import (CLIENT2_ID, CLIENT2_SECRET, CLIENT_ID, TENANT_ID, Proxy, Sim, Work, check_config, eq,
                     proxy_ini, wait_for)

W = SIM = PX = None
ADMIN = None

POS_USER = "POS-CONNECTOR"
POS_KEY = "Wsak/0123456789abcdefghijklmnopqrstuvwxyzAB="  # a BC web service access key shape
EDI_KEY = "edi-key-0123456789-abcdef"
WEB_KEY = "web-key-0123456789-abcdef"
LEGACY_KEY = "legacy-key-0123456789-abc"
UNLIC_KEY = "unlicensed-key-0123456789"
LICENSED_OID = "5f0bd0b3-1c1f-4a7e-9a52-2a4c3bb7a1f2"
UNLICENSED_OID = "0bad0bad-0000-4000-8000-000000000403"  # tests/sim/upstreams.py UNLICENSED_USER
BC_COMPANIES = "/bc/v2.0/production/api/v2.0/companies"
KEY_HEADER = "S2S-Proxy-Key"


_HASHES = {}


def crypt_hash(pw):
    """One hash per password for the module: a reload or restart keeps it, as in real use."""
    if pw not in _HASHES:
        _HASHES[pw] = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=pw.encode(),
                                     capture_output=True, check=True).stdout.decode().strip()
    return _HASHES[pw]


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def ini_text(inventory):
    creds = harness.default_credentials()
    creds["second"] = {"tenant": TENANT_ID, "client_id": CLIENT2_ID, "secret": CLIENT2_SECRET}
    routes = harness.default_routes()
    routes["dataverse"] = dict(routes["dataverse"], callers="edi, web, legacy, unlicensed")
    routes["bc"] = dict(routes["bc"], callers="pos")
    extra = {"admin_listen": "127.0.0.1:0", "inventory_file": inventory}
    text = proxy_ini(SIM, work=W, credentials=creds, routes=routes, extra_proxy=extra)
    keys = {n: W.write("%s.key" % n, k, 0o600) for n, k in
            (("edi", EDI_KEY), ("web", WEB_KEY), ("legacy", LEGACY_KEY), ("unlicensed", UNLIC_KEY))}
    text += "\n[caller:pos]\nbasic_user = %s\nbasic_password_hash = %s\nallow_from = 127.0.0.0/8\n" % (
        POS_USER, crypt_hash(POS_KEY))
    text += "\n[caller:edi]\ninbound_key_file = %s\ncredential.dataverse = second\n" % keys["edi"]
    text += "\n[caller:web]\ninbound_key_file = %s\n" % keys["web"]
    text += "\n[caller:legacy]\ninbound_key_file = %s\nimpersonate = %s\n" % (keys["legacy"], LICENSED_OID)
    text += "\n[caller:unlicensed]\ninbound_key_file = %s\nimpersonate = %s\n" % (keys["unlicensed"],
                                                                                 UNLICENSED_OID)
    return text


def start(name="callers"):
    global ADMIN
    px = Proxy(W, ini_text(W.path("inventory.state")), name=name).start()
    ADMIN = px.wait_event("admin_listening", 10)["port"]
    return px


def setup_module():
    global W, SIM, PX
    W = Work("test_callers")
    SIM = Sim(W).start()
    PX = start()


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()


def upstream_count():
    return SIM.stats()["upstream_requests"]


def last_upstream(path_part):
    reqs = [r for r in SIM.requests() if path_part in r["target"]]
    assert reqs, "no upstream request for %s" % path_part
    return reqs[-1]


def header_names(rec):
    return [k.lower() for k, _ in rec["headers"]]


def header(rec, name):
    vals = [v for k, v in rec["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def problem(r, status, code):
    eq(r.status, status, "status")
    eq(r.header("Content-Type"), "application/problem+json", "content type")
    eq(r.json()["code"], code, "problem code")


def metrics():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN, timeout=10) as f:
        return f.read().decode()


def metric(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


# ---------------------------------------------------------------------------
# Business Central connector with Basic auth

def test_basic_client_gets_its_companies():
    r = PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))])
    eq(r.status, 200, "status")
    eq(r.json()["value"][0]["name"], "CRONUS USA, Inc.", "company")
    rec = last_upstream("/companies")
    auth = header(rec, "Authorization")
    assert auth.startswith("Bearer "), "upstream Authorization is not the proxy's token: %r" % auth[:12]
    eq(rec["auth"], "ok", "the upstream accepted the token")
    text = repr(rec["headers"])
    assert "Basic" not in text and POS_KEY not in text, "Basic credentials reached the upstream"
    e = PX.wait_event(lambda e: e.get("event") == "request" and e.get("path", "").endswith("/companies")
                      and e.get("caller") == "pos", 5)
    eq(e["status"], 200, "log line status")


def test_wrong_basic_password_gets_challenge_and_costs_no_upstream_request():
    before = upstream_count()
    for hdrs in ([("Authorization", basic(POS_USER, POS_KEY + "x"))], [("Authorization", basic("other", POS_KEY))],
                 []):
        r = PX.request("GET", BC_COMPANIES, hdrs)
        problem(r, 401, "caller_unauthorized")
        eq(r.header("WWW-Authenticate"), 'Basic realm="s2s-proxy", charset="UTF-8"', "challenge")
    eq(upstream_count(), before, "upstream requests")


def test_malformed_basic_is_refused():
    for value in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode(),
                  "Basic " + base64.b64encode(b":emptyuser").decode(),
                  "Basic " + base64.b64encode(b"POS-CONNECTOR:a\x00b").decode(),
                  "Basic " + base64.b64encode(b"u" * 400 + b":p").decode()):
        problem(PX.request("GET", BC_COMPANIES, [("Authorization", value)]), 401, "caller_unauthorized")


def test_flood_of_wrong_passwords_is_cheap_and_the_right_one_still_works_after():
    t0 = time.time()
    for i in range(40):
        eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, "wrong-%d" % i))]).status, 401,
           "status")
    assert time.time() - t0 < 20, "40 wrong passwords took %.1fs" % (time.time() - t0)
    # a password verified before is cached: still admitted during the flood
    eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "cached")


# ---------------------------------------------------------------------------
# admission

def test_unknown_caller_refused_on_a_route_with_callers():
    before = upstream_count()
    problem(PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI"), 403, "caller_forbidden")
    problem(PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, EDI_KEY + "x")]), 403,
            "caller_forbidden")
    # a caller of another route is not admitted here
    problem(PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [("Authorization", basic(POS_USER, POS_KEY))]),
            403, "caller_forbidden")
    eq(upstream_count(), before, "upstream requests")


def test_route_without_callers_stays_open():
    r = PX.request("GET", "/fo/_test/echo")
    eq(r.status, 200, "status")
    e = PX.wait_event(lambda e: e.get("event") == "request" and e.get("route") == "fo", 5)
    eq(e["caller"], "-", "anonymous caller label")


def test_near_miss_keys_refused():
    """Keys that differ from a caller's in the first or last byte, are a
    prefix of it or extend it are all refused, and reach nothing upstream.
    (Both sides are hashed and compared with CRYPTO_memcmp, caller.c; the
    time a comparison takes is not something a test on a shared machine can
    judge, so it is not measured here.)"""
    before = upstream_count()
    for k in ("X" + EDI_KEY[1:], EDI_KEY[:-1] + "X", EDI_KEY[:-1], EDI_KEY + "X", EDI_KEY.upper()):
        r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, k)])
        eq(r.status, 403, "status for a near-miss key")
    eq(upstream_count(), before, "upstream requests")


# ---------------------------------------------------------------------------
# per-caller credentials

def test_two_callers_use_two_credentials():
    def who(key):
        r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, key)])
        eq(r.status, 200, "status")
        return r.json()["UserId"], int(r.header("x-ms-ratelimit-burst-remaining-xrm-requests"))

    edi1, edi_left1 = who(EDI_KEY)
    web1, web_left1 = who(WEB_KEY)
    edi2, edi_left2 = who(EDI_KEY)
    edi3, edi_left3 = who(EDI_KEY)
    web2, web_left2 = who(WEB_KEY)
    assert edi1 != web1, "both callers acted as the same application user"
    eq((edi2, edi3, web2), (edi1, edi1, web1), "stable users")
    eq((edi_left2, edi_left3), (edi_left1 - 1, edi_left1 - 2), "edi's budget counts only edi's requests")
    eq(web_left2, web_left1 - 1, "web's budget counts only web's requests")
    clients = {t["client_id"] for t in SIM.token_requests() if t.get("status") == 200 or "status" not in t}
    assert {CLIENT_ID, CLIENT2_ID} <= clients, "Entra saw %r" % clients
    ids = {r["appid"] for r in SIM.requests() if r["target"].endswith("/WhoAmI")}
    assert {CLIENT_ID, CLIENT2_ID} <= ids, "Dataverse saw %r" % ids


# ---------------------------------------------------------------------------
# impersonation

def test_impersonated_create_records_the_owner():
    r = PX.request("POST", "/dataverse/api/data/v9.2/accounts",
                   [(KEY_HEADER, LEGACY_KEY), ("Content-Type", "application/json"),
                    ("Prefer", "return=representation")], b'{"name": "Created for a user"}')
    eq(r.status, 201, "status")
    rec = r.json()
    assert rec["_createdonbehalfby_value"], "the create was not made on behalf of a user"
    assert rec["_createdby_value"] != rec["_createdonbehalfby_value"], "owner is the application user"
    up = last_upstream("/accounts")
    eq(header(up, "CallerObjectId"), LICENSED_OID, "CallerObjectId sent")
    # the same caller without impersonation would own it as the app: another caller shows the difference
    r2 = PX.request("POST", "/dataverse/api/data/v9.2/accounts",
                    [(KEY_HEADER, WEB_KEY), ("Content-Type", "application/json"),
                     ("Prefer", "return=representation")], b'{"name": "Created by the app"}')
    eq(r2.status, 201, "status")
    eq(r2.json().get("_createdonbehalfby_value"), None, "no impersonation for web")
    assert "callerobjectid" not in header_names(last_upstream("/accounts")), "web sent CallerObjectId"


def test_unlicensed_user_is_diagnosed():
    r = PX.request("POST", "/dataverse/api/data/v9.2/accounts",
                   [(KEY_HEADER, UNLIC_KEY), ("Content-Type", "application/json")], b'{"name": "x"}')
    eq(r.status, 403, "status")
    eq(r.header("S2S-Proxy-Diagnosis"), "dataverse_impersonation_denied", "diagnosis header")
    eq(r.json()["error"]["code"], "0x80072036", "the upstream's body is forwarded")
    e = PX.wait_event(lambda e: e.get("event") == "diagnosis" and e.get("diagnosis") ==
                      "dataverse_impersonation_denied", 5)
    assert "licence" in e["remediation"], e
    eq(e["upstream_error"], "0x80072036", "evidence")


def test_client_cannot_choose_whom_it_impersonates():
    before = upstream_count()
    for name in ("CallerObjectId", "MSCRMCallerID"):
        r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, WEB_KEY), (name, LICENSED_OID)])
        problem(r, 403, "impersonation_refused")
    eq(upstream_count(), before, "upstream requests")


# ---------------------------------------------------------------------------
# reload

def test_reload_adds_a_caller():
    late_key = "late-key-0123456789-abcd"
    text = ini_text(W.path("inventory.state")).replace("callers = edi, web, legacy, unlicensed",
                                                        "callers = edi, web, legacy, unlicensed, late")
    text += "\n[caller:late]\ninbound_key_file = %s\ncredential = second\n" % W.write("late.key", late_key, 0o600)
    with open(PX.ini_path + ".new", "w") as f:
        f.write(text)
    os.replace(PX.ini_path + ".new", PX.ini_path)
    before = len([e for e in PX.events() if e.get("event") == "config_reloaded"])
    PX.proc.send_signal(signal.SIGHUP)
    wait_for("config_reloaded", lambda: len([e for e in PX.events() if e.get("event") == "config_reloaded"])
             > before, timeout=15)
    r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, late_key)])
    eq(r.status, 200, "the new caller")
    eq(last_upstream("/WhoAmI")["appid"], CLIENT2_ID, "with its credential")
    r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [(KEY_HEADER, WEB_KEY)])
    eq((r.status, last_upstream("/WhoAmI")["appid"]), (200, CLIENT_ID), "an unchanged caller")
    eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "Basic caller")


# ---------------------------------------------------------------------------
# metrics, log hygiene, inventory

def test_metrics_by_caller_and_protocol():
    m0 = metrics()
    eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "status")
    eq(PX.request("GET", BC_COMPANIES).status, 401, "status")
    wait_for("metrics", lambda: metric(metrics(), 's2s_caller_requests_total{caller="-",route="bc",status="4xx"}')
             > metric(m0, 's2s_caller_requests_total{caller="-",route="bc",status="4xx"}'))
    m1 = metrics()
    eq(metric(m1, 's2s_caller_requests_total{caller="pos",route="bc",status="2xx"}')
       - metric(m0, 's2s_caller_requests_total{caller="pos",route="bc",status="2xx"}'), 1, "pos 2xx")
    eq(metric(m1, 's2s_protocol_requests_total{protocol="basic_in"}')
       - metric(m0, 's2s_protocol_requests_total{protocol="basic_in"}'), 1, "basic_in")
    for p in ("web_api", "soap_bridge", "sts_facade", "basic_in", "odata_v4"):
        assert 's2s_protocol_requests_total{protocol="%s"}' % p in m1, p


def inventory_rows(px):
    out = subprocess.run([harness.proxy_bin(), "inventory", "-c", px.ini_path], capture_output=True, timeout=20)
    eq(out.returncode, 0, "inventory exit status: %s" % out.stderr.decode())
    rows = {}
    for line in out.stdout.decode().splitlines()[1:]:
        caller, proto, n, first, last = line.split()
        rows[(caller, proto)] = (int(n), first, last)
    return rows


def test_inventory_after_a_mixed_run_survives_a_restart():
    global PX
    PX.request("GET", "/fo/_test/echo")
    PX.stop()
    rows = inventory_rows(PX)
    for key in (("pos", "basic_in"), ("pos", "odata_v4"), ("edi", "web_api"), ("web", "web_api"),
                ("legacy", "web_api"), ("-", "odata_v4")):
        assert key in rows, "%r missing from %r" % (key, sorted(rows))
    assert ("-", "basic_in") not in rows, "refused strangers are not callers"
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    for k, (n, first, last) in rows.items():
        assert n > 0 and stamp.match(first) and stamp.match(last) and first <= last, (k, n, first, last)
    PX = start(name="callers")  # same inventory_file
    eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "status")
    PX.stop()
    rows2 = inventory_rows(PX)
    eq(rows2[("pos", "basic_in")][0], rows[("pos", "basic_in")][0] + 1, "count carried over a restart")
    eq(rows2[("edi", "web_api")], rows[("edi", "web_api")], "other rows kept")
    PX = start(name="callers")


def test_inventory_stays_within_its_cap():
    global PX
    PX.stop()
    path = W.path("inventory.state")
    with open(path, "a") as f:
        for i in range(1000):
            f.write("old-caller-%d\tweb_api\t%d\t%d\t%d\n" % (i, i + 1, 1000 + i, 2000 + i))
    PX = start(name="callers")
    eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "status")
    PX.stop()
    size = os.path.getsize(path)
    assert size < 64 * 1024, "inventory file is %d bytes" % size
    rows = inventory_rows(PX)
    callers = {c for c, _ in rows}
    assert len(callers) <= 128, len(callers)
    assert ("pos", "basic_in") in rows, "the live caller was dropped"
    PX = start(name="callers")


def test_inventory_counts_survive_a_failed_write():
    """While the file cannot be written (its temporary name is a directory),
    counts stay pending and are written once it can be: at the latest at
    shutdown. One warning, not one a second."""
    global PX
    path = W.path("inventory.state")
    before = inventory_rows(PX).get(("pos", "basic_in"), (0,))[0]
    os.mkdir(path + ".tmp")
    try:
        for _ in range(3):
            eq(PX.request("GET", BC_COMPANIES, [("Authorization", basic(POS_USER, POS_KEY))]).status, 200, "status")
        PX.wait_event("inventory_write_failed", 10)
    finally:
        os.rmdir(path + ".tmp")
    PX.stop()
    eq(inventory_rows(PX)[("pos", "basic_in")][0], before + 3, "requests counted while the writes failed")
    eq(len([e for e in PX.events() if e.get("event") == "inventory_write_failed"]), 1, "warnings")
    PX = start(name="callers")


def test_secrets_never_logged():
    log = PX.log_text(all_runs=True)
    for secret in (POS_KEY, EDI_KEY, WEB_KEY, LEGACY_KEY, UNLIC_KEY, base64.b64encode(
            ("%s:%s" % (POS_USER, POS_KEY)).encode()).decode()):
        assert secret not in log, "a caller secret appears in the log"
    assert "$6$" not in log, "a password hash appears in the log"


def test_config_errors_name_file_and_line():
    base = proxy_ini(SIM, work=W)
    bad = base + ("\n[caller:a]\nbasic_user = x\n\n[caller:b]\nbasic_user = y\nbasic_password_hash = secret\n"
                  "credential.nowhere = contoso\n\n[caller:c]\n")
    bad = bad.replace("[route:bc]\n", "[route:bc]\ncallers = a, ghost\n")
    rc, out, err = check_config(bad, W, "bad-callers")
    eq(rc, 1, "exit status")
    for want in ("[caller:a] basic_user and basic_password_hash go together",
                 "[caller:b] basic_password_hash: must be a crypt(3) hash",
                 "[caller:b] credential.nowhere: no [route:nowhere] section",
                 "[caller:c] needs at least one of",
                 "[route:bc] callers: no [caller:ghost] section"):
        assert want in err, "%r not in:\n%s" % (want, err)
    assert re.search(r"bad-callers\.ini:\d+: \[caller:b\] basic_password_hash", err), err
    assert "secret" not in err.replace("client_secret", ""), "a value of basic_password_hash was echoed"
