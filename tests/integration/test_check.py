"""test_check.py - `s2s-proxy check [--json] -c FILE` against the simulated
cloud: every token-side and upstream diagnosis of the catalogue (the same
case tables as test_diag.py), a healthy configuration exiting 0, claims in
the output, secrets and tokens never in it, usage errors."""

import json
import os
import subprocess

import harness
from harness import eq, DATAVERSE_URL, TENANT_ID, Sim, Work, proxy_ini
from test_diag import TOKEN_CASES, UP_CASES, app, client_id, cred

W = SIM = None


def setup_module():
    global W, SIM
    W = Work("test_check")
    SIM = Sim(W, "sim").start()


def teardown_module():
    if SIM:
        SIM.stop()



def run_check(ini_text, *args, name="check"):
    path = W.write(name + ".ini", ini_text)
    p = harness.spawn([harness.proxy_bin(), "check"] + list(args) + ["-c", path], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = p.communicate(timeout=120)
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def all_cases_ini():
    apps, creds, routes = [], {}, {}
    for i, (code, _, _) in enumerate(TOKEN_CASES):
        apps.append(app(100 + i, "chk-%d" % code, force_error=code))
        creds["c%d" % code] = cred(100 + i)
        routes["t%d" % code] = {"match_path": "/t%d/" % code, "upstream": DATAVERSE_URL, "audience": "dataverse",
                                "credential": "c%d" % code}
    for i, (name, (up, aud, errs, _, _, _)) in enumerate(sorted(UP_CASES.items())):
        apps.append(app(200 + i, "chk-" + name, **({"upstream_errors": errs} if errs else {})))
        creds[name] = cred(200 + i)
        routes[name] = {"match_path": "/%s/" % name, "upstream": up, "audience": aud, "credential": name}
    SIM.add_apps(apps)
    return proxy_ini(SIM, routes=routes, credentials=creds, work=W)


def expected():
    """route -> diagnosis check must report."""
    want = {"t%d" % code: diag for code, diag, _ in TOKEN_CASES}
    for name, (_, _, _, _, _, diag) in UP_CASES.items():
        want[name] = diag
    # the probe of the two _test-path cases is the product's probe, the failure the same
    return want


def test_check_json_reaches_every_diagnosis():
    rc, out, err = run_check(all_cases_ini(), "--json", name="all-json")
    eq(rc, 1, "exit status with failing routes (stderr %r)" % err[-500:])
    doc = json.loads(out)
    eq(doc["ok"], False, "ok")
    got = {r["route"]: r for r in doc["routes"]}
    want = expected()
    failures = []
    for route, diag in sorted(want.items()):
        r = got.get(route)
        if r is None or (r.get("verdict"), r.get("diagnosis")) != ("fail", diag):
            failures.append("%s: expected %s, got %r" % (route, diag, r))
        elif not r.get("remediation"):
            failures.append("%s (%s): no remediation" % (route, diag))
    assert not failures, "\n".join(failures)
    eq(got["t7000215"]["aadsts"], 7000215, "aadsts")
    assert got["t7000215"]["trace_id"], got["t7000215"]
    r = got["dv-priv"]
    eq((r["claims"]["aud"], r["claims"]["tid"], r["probe_status"], r["upstream_error"]),
       (DATAVERSE_URL, TENANT_ID, 403, "0x80040220"), "dv-priv evidence")
    assert r["probe_url"].endswith("/api/data/v9.2/WhoAmI"), r
    assert r["token_fingerprint"].startswith("sha256:"), r
    eq(got["dv-aud"]["claims"]["aud"], "https://contoso.crm.dynamics.com", "dv-aud token aud")
    assert "differs from the upstream host" in got["dv-aud"]["note"], got["dv-aud"]
    assert "eyJ" not in out and "s-100" not in out and "s-200" not in out, "token or secret in the output"


def test_check_text_one_verdict_per_route():
    rc, out, err = run_check(all_cases_ini(), name="all-text")
    eq(rc, 1, "exit status")
    lines = out.splitlines()
    failures = []
    for route, diag in sorted(expected().items()):
        mine = [l for l in lines if l.startswith("FAIL %s: " % route) or l.startswith("OK   %s: " % route)]
        if len(mine) != 1 or not mine[0].startswith("FAIL %s: %s: " % (route, diag)) or " Fix: " not in mine[0]:
            failures.append("%s (%s): %r" % (route, diag, mine))
    assert not failures, "\n".join(failures)
    eq(lines[-1], "0 of %d routes OK" % len(expected()), "summary")


def test_check_healthy_config_exits_0():
    ini = proxy_ini(SIM, work=W)
    rc, out, err = run_check(ini, name="ok")
    eq(rc, 0, "exit status (out %r err %r)" % (out, err))
    lines = out.splitlines()
    for route in ("dataverse", "bc", "fo"):
        ok = [l for l in lines if l.startswith("OK   %s: GET https://" % route)]
        eq(len(ok), 1, "verdict lines for %s in %r" % (route, out))
        assert ok[0].split(" -> ")[1].startswith("200"), ok
        tok = [l for l in lines if l.startswith("route %s: token aud=" % route)]
        eq(len(tok), 1, "claims lines for %s" % route)
        assert "tid=%s" % TENANT_ID in tok[0] and "appid=%s" % harness.CLIENT_ID in tok[0], tok
    eq(lines[-1], "3 of 3 routes OK", "summary")
    assert harness.CLIENT_SECRET not in out, "secret in the output"
    rc, out, err = run_check(ini, "--json", name="ok-json")
    eq((rc, json.loads(out)["ok"]), (0, True), "json verdict")


def test_check_usage_and_bad_config():
    rc, out, err = run_check(proxy_ini(SIM, work=W), "--bogus", name="usage")
    eq(rc, 2, "unknown option")
    assert "usage: s2s-proxy check" in err, err
    rc, out, err = run_check("[proxy]\nlisten = nonsense\n", name="bad")
    eq(rc, 2, "invalid configuration")
    assert "bad.ini:" in err, err


def test_check_probe_path():
    routes = {"dv": {"match_path": "/dv/", "upstream": DATAVERSE_URL, "audience": "dataverse",
                     "credential": "contoso", "probe_path": "/_test/status"}}
    rc, out, err = run_check(proxy_ini(SIM, routes=routes, work=W), "--json", name="probe")
    r = json.loads(out)["routes"][0]
    eq((rc, r["verdict"], r["probe_url"], r["probe_status"]),
       (0, "ok", DATAVERSE_URL + "/_test/status", 200), "configured probe")


def test_check_idp_unavailable_and_bad_response():
    ini = proxy_ini(SIM, routes={"dataverse": harness.default_routes()["dataverse"]}, work=W)
    try:
        for mode, want in (("500", "idp_unavailable"), ("notoken", "idp_bad_response"), ("html", "idp_unavailable")):
            SIM.set_entra(mode)
            rc, out, err = run_check(ini, "--json", name="idp-" + mode)
            r = json.loads(out)["routes"][0]
            eq((rc, r["verdict"], r["diagnosis"]), (1, "fail", want), "Entra mode %s" % mode)
    finally:
        SIM.reset(faults=True)


def test_check_managed_identity():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
    import imds  # tests/sim: runs in this process

    mi = imds.MI(lambda resource, cid, lifetime: SIM.mint(aud=resource, appid=cid, tid=TENANT_ID,
                                                           lifetime=lifetime),
                 identities=[imds.SYSTEM_ID]).start()
    try:
        cred_mi = {"managed_identity": "system",
                   "managed_identity_endpoint": "http://127.0.0.1:%d/metadata/identity/oauth2/token" % mi.port}
        routes = {"dv": {"match_path": "/dv/", "upstream": DATAVERSE_URL, "audience": "dataverse",
                         "credential": "mi"}}
        rc, out, err = run_check(proxy_ini(SIM, routes=routes, credentials={"mi": cred_mi}, work=W), "--json",
                                 name="mi")
        assert out, "no output: rc %r, stderr %r" % (rc, err[-800:])
        r = json.loads(out)["routes"][0]
        eq((rc, r["verdict"], r["claims"]["aud"], r["probe_status"]), (0, "ok", DATAVERSE_URL, 200),
           "managed identity check (err %r)" % err[-300:])
        eq(len(mi.log), 1, "IMDS requests")
        eq(mi.log[0]["headers"].get("metadata"), "true", "Metadata header")
    finally:
        mi.stop()
