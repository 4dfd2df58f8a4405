"""test_diag.py - the diagnosis catalogue through the proxy: every token-side
code in the 502/503 problem body, every upstream code in the
S2S-Proxy-Diagnosis header with the upstream's status and body unchanged,
malformed upstream bodies, the rate-limited diagnosis log line and the drop
of a token after an upstream 401.

Each case gets its own app registration (client id) in the simulated
tenant; the app's force_error / upstream_errors plays the failure, so one
proxy serves every case side by side."""

import json
import threading
import time

import harness
from harness import eq, BC_URL, DATAVERSE_URL, FO_URL, TENANT_ID, Proxy, Sim, Work, proxy_ini

W = SIM = None
SS_URL = "https://securityservice.operations365.dynamics.com"
DV2_URL = "https://contoso.crm.dynamics.com"

# (AADSTS code forced on the token endpoint, expected diagnosis, expected status)
TOKEN_CASES = [
    (7000215, "secret_invalid", 502), (50012, "secret_invalid", 502), (7000222, "secret_expired", 502),
    (7000216, "credential_missing", 502), (7000218, "credential_missing", 502), (700016, "app_not_found", 502),
    (7000229, "service_principal_missing", 502), (7000112, "app_disabled", 502),
    (700027, "assertion_invalid", 502), (700024, "assertion_time", 502), (90002, "tenant_not_found", 502),
    (900023, "tenant_invalid", 502), (50059, "tenant_invalid", 502), (9001023, "tenant_invalid", 502),
    (500011, "resource_not_found", 502), (50001, "resource_not_found", 502), (500014, "resource_not_found", 502),
    (650052, "resource_not_found", 502), (70011, "scope_invalid", 502), (1002012, "scope_invalid", 502),
    (700022, "scope_invalid", 502), (901002, "scope_invalid", 502), (65001, "consent_required", 502),
    (53003, "conditional_access", 502), (70021, "federation_mismatch", 502),
    (700211, "federation_mismatch", 502), (700213, "federation_mismatch", 502),
    (7002137, "federation_mismatch", 502), (50196, "throttled", 503), (90055, "throttled", 503),
]

DV_CHALLENGE = ("Bearer authorization_uri=https://login.microsoftonline.com/%s/oauth2/authorize, "
                "resource_id=https://contoso.crm4.dynamics.com/" % TENANT_ID)

# name -> (upstream, audience, upstream_errors or None, path, expected status, expected diagnosis)
UP_CASES = {
    "dv-user": (DATAVERSE_URL, "dataverse", {"dataverse": "not_member"}, "/api/data/v9.2/WhoAmI", 403,
                "dataverse_app_user_missing"),
    "dv-blocked": (DATAVERSE_URL, "dataverse", {"dataverse": "restricted"}, "/api/data/v9.2/WhoAmI", 403,
                   "dataverse_app_blocked"),
    "dv-priv": (DATAVERSE_URL, "dataverse", {"dataverse": "privilege"}, "/api/data/v9.2/accounts", 403,
                "dataverse_privilege_missing"),
    "bc-cred": (BC_URL, "bc", {"bc": "invalid_credentials"}, "/v2.0/%s/production/api/v2.0/companies" % TENANT_ID,
                401, "bc_credentials_rejected"),
    "fo-app": (FO_URL, "fo", {"fo": "unauthorized"}, "/data/$metadata", 401, "fo_app_not_registered"),
    "ss-aud": (SS_URL, FO_URL, None, "/_test/echo", 400, "securityservice_audience"),
    "dv-aud": (DATAVERSE_URL, DV2_URL, None, "/api/data/v9.2/WhoAmI", 401, "audience_mismatch"),
    "dv-401": (DATAVERSE_URL, "dataverse",
               {"dataverse": {"status": 401, "headers": [["WWW-Authenticate", DV_CHALLENGE]], "body": ""}},
               "/api/data/v9.2/WhoAmI", 401, "token_rejected"),
    # malformed and odd bodies: the code is still found, or the status decides
    "dv-cut": (DATAVERSE_URL, "dataverse",
               {"dataverse": {"status": 403, "headers": [["Content-Type", "application/json"]],
                              "body": '{"error":{"code":"0x80072560","message":"The user is not a mem'}},
               "/api/data/v9.2/WhoAmI", 403, "dataverse_app_user_missing"),
    "dv-strnum": (DATAVERSE_URL, "dataverse",
                  {"dataverse": {"status": 403, "body": '{"error":{"code":"0x80040220","message":'
                                 '"Principal user is missing prvCreatecontact privilege (Id=1) on OTC=2 for '
                                 'entity \'contact\'.\\r\\nTrace: x"}}'}},
                  "/api/data/v9.2/contacts", 403, "dataverse_privilege_missing"),
    "fo-semicolon": (FO_URL, "fo",
                     {"fo": {"status": 401, "body": '"error";"invalid_token","error_description";"Unauthorized"'}},
                     "/data/Customers", 401, "fo_app_not_registered"),
    "bc-html": (BC_URL, "bc",
                {"bc": {"status": 401, "headers": [["Content-Type", "text/html"]],
                        "body": "<html><body><h1>401 - Unauthorized</h1></body></html>"}},
                "/v2.0/x/api/v2.0/companies", 401, "token_rejected"),
    "fo-ss-text": (FO_URL, "fo",
                   {"fo": {"status": 400, "body": "Expected aud %s but found https://x.example." % SS_URL}},
                   "/data/Customers", 400, "securityservice_audience"),
}


def client_id(n):
    return "dddddddd-0000-4000-8000-%012d" % n


def setup_module():
    global W, SIM
    W = Work("test_diag")
    SIM = Sim(W, "sim").start()


def teardown_module():
    if SIM:
        SIM.stop()



def app(n, name, **extra):
    a = {"tenant_id": TENANT_ID, "tenant_domains": [harness.TENANT_DOMAIN], "tenant_name": "Contoso",
         "client_id": client_id(n), "secret": "s-%d" % n, "name": name, "roles": ["user_impersonation"]}
    a.update(extra)
    return a


def cred(n):
    return {"tenant": TENANT_ID, "client_id": client_id(n), "secret": "s-%d" % n}


def token_proxy():
    apps, creds, routes = [], {}, {}
    for i, (code, _, _) in enumerate(TOKEN_CASES):
        apps.append(app(100 + i, "diag-%d" % code, force_error=code))
        creds["c%d" % code] = cred(100 + i)
        routes["t%d" % code] = {"match_path": "/t%d/" % code, "strip_prefix": "true", "upstream": DATAVERSE_URL,
                                "audience": "dataverse", "credential": "c%d" % code}
    SIM.add_apps(apps)
    ini = proxy_ini(SIM, routes=routes, credentials=creds, extra_proxy={"token_retry_max": "1s"}, work=W)
    return Proxy(W, ini, name="diag-token").start()


def test_token_failures_carry_catalogue_code_and_evidence():
    px = token_proxy()
    try:
        failures = []
        for code, want, status in TOKEN_CASES:
            r = px.request("GET", "/t%d/api/data/v9.2/WhoAmI" % code)
            try:
                p = r.json()
            except ValueError:
                failures.append("AADSTS%d: %r" % (code, r))
                continue
            got = (r.status, p.get("diagnosis"), p.get("code"), p.get("aadsts"), p.get("route"),
                   p.get("client_id"), r.header("Content-Type"))
            exp = (status, want, want, "AADSTS%d" % code, "t%d" % code, client_id(100 + TOKEN_CASES.index(
                (code, want, status))), "application/problem+json")
            if got != exp:
                failures.append("AADSTS%d (%s): expected %r, got %r" % (code, want, exp, got))
                continue
            for k in ("title", "remediation", "trace_id", "correlation_id", "error_uri", "audience"):
                if not p.get(k):
                    failures.append("AADSTS%d (%s): no %s in %r" % (code, want, k, p))
            if (status == 503) != (r.header("Retry-After") is not None):
                failures.append("AADSTS%d (%s): Retry-After %r" % (code, want, r.header("Retry-After")))
        assert not failures, "\n".join(failures)
    finally:
        px.stop()


def test_secret_note_and_rate_limited_log():
    px = token_proxy()
    try:
        for _ in range(5):
            r = px.request("GET", "/t7000215/api/data/v9.2/WhoAmI")
        p = r.json()
        assert "secret Value, not the Secret ID" in p["remediation"], p["remediation"]
        assert "Secret ID" in p["remediation"].split("Certificates & secrets")[1], p["remediation"]
        px.request("GET", "/t7000215/x")
        lines = [e for e in px.events() if e.get("event") == "diagnosis" and e.get("route") == "t7000215"]
        eq(len(lines), 1, "diagnosis log lines for 6 identical failures within a minute")
        e = lines[0]
        eq((e["diagnosis"], e["aadsts"], e["error"]), ("secret_invalid", "AADSTS7000215", "invalid_client"),
           "log evidence")
        assert e.get("remediation") and e.get("trace_id"), e
        assert "s-%d" % 100 not in px.log_text(), "a secret reached the log"
    finally:
        px.stop()


def upstream_proxy():
    apps, creds, routes = [], {}, {}
    for i, (name, (up, aud, errs, _, _, _)) in enumerate(sorted(UP_CASES.items())):
        apps.append(app(200 + i, "diag-" + name, **({"upstream_errors": errs} if errs else {})))
        creds[name] = cred(200 + i)
        routes[name] = {"match_path": "/%s/" % name, "strip_prefix": "true", "upstream": up, "audience": aud,
                        "credential": name}
    SIM.add_apps(apps)
    ini = proxy_ini(SIM, routes=routes, credentials=creds, work=W)
    return Proxy(W, ini, name="diag-up").start()


def direct(name, path):
    """What the simulated upstream answers the same request without the proxy."""
    up, aud, _, _, _, _ = UP_CASES[name]
    i = sorted(UP_CASES).index(name)
    tok = SIM.access_token(resource=aud if aud.startswith("https://") else up, client_id=client_id(200 + i),
                           secret="s-%d" % (200 + i))
    host = up[len("https://"):]
    return SIM.request(host, "GET", path, [("Authorization", "Bearer " + tok)])


def test_upstream_refusals_get_diagnosis_header_body_unchanged():
    px = upstream_proxy()
    try:
        px.wait_event("listening", 10)
        failures = []
        for name, (up, aud, errs, path, status, want) in sorted(UP_CASES.items()):
            r = px.request("GET", "/%s%s" % (name, path))
            got = (r.status, r.header("S2S-Proxy-Diagnosis"))
            if got != (status, want):
                failures.append("%s (%s): expected %r, got %r %r" % (name, want, (status, want), got, r))
                continue
            if errs and isinstance(list(errs.values())[0], dict):
                body = list(errs.values())[0]["body"].encode()
                if r.body != body:
                    failures.append("%s (%s): body changed: %r" % (name, want, r.body))
            if want == "dataverse_app_user_missing" and name == "dv-user":
                eq(r.json()["error"]["code"], "0x80072560", "Dataverse error code passed through")
        assert not failures, "\n".join(failures)
        ev = {e["route"]: e for e in px.events() if e.get("event") == "diagnosis"}
        e = ev["dv-priv"]
        eq((e["privilege"], e["entity"], e["upstream_status"]), ("prvReadaccount", "account", 403),
           "privilege evidence")
        eq((e["aud"], e["tid"], e["appid"]), (DATAVERSE_URL, TENANT_ID, client_id(200 + sorted(UP_CASES)
                                                                              .index("dv-priv"))), "claims")
        assert e["token_fingerprint"].startswith("sha256:"), e
        eq(ev["dv-aud"]["challenge"], DV_CHALLENGE.replace(TENANT_ID, TENANT_ID), "challenge logged")
        for e in ev.values():
            assert "eyJ" not in json.dumps(e), "a token in the diagnosis log: %r" % e
        req = [e for e in px.events() if e.get("event") == "request" and e.get("route") == "bc-cred"]
        eq(req[-1].get("diagnosis"), "bc_credentials_rejected", "request log line")
    finally:
        px.stop()


def test_other_answers_have_no_diagnosis_and_fresh_token_is_kept():
    """200, 404, 500, a 403 without a known code: no header, bytes unchanged.
    A 401 on a plain route: diagnosed, and (the token being fresh) kept."""
    ini = proxy_ini(SIM, work=W)
    px = Proxy(W, ini, name="diag-plain").start()
    try:
        for code in (200, 403, 404, 500, 400):
            r = px.request("GET", "/dataverse/_test/status?code=%d" % code)
            eq((r.status, r.header("S2S-Proxy-Diagnosis"), r.body), (code, None, b'{"status":%d}' % code),
               "answer for upstream %d" % code)
        r = px.request("HEAD", "/dataverse/_test/status?code=401")
        eq((r.status, r.header("S2S-Proxy-Diagnosis")), (401, "token_rejected"), "HEAD 401")
        n = SIM.stats()["token_requests"]
        r = px.request("GET", "/dataverse/_test/status?code=401")
        eq((r.status, r.header("S2S-Proxy-Diagnosis")), (401, "token_rejected"), "GET 401")
        eq(SIM.stats()["token_requests"], n, "token requests after a 401 on a token fetched moments ago")
        eq(len([e for e in px.events() if e.get("event") == "token_dropped"]), 0, "tokens dropped")
    finally:
        px.stop()


REFRESH_MIN_S = 2


def test_401_drops_token_and_replays_once():
    """Tokens the upstream stops accepting (older than the refresh rate limit,
    token_refresh_min_interval, here 2 s): the first 401 drops the token and the request is sent again with
    a fresh one, so the client sees only the 200 - a GET, and a PUT whose
    body was kept (byte-exact on the second try). A body still arriving when
    the 401 comes is not replayed (curl stops sending it). A POST is not idempotent:
    it gets the 401 with its diagnosis."""
    apps, creds, routes = [], {}, {}
    for k, n in (("get", 900), ("put", 901), ("post", 902)):
        apps.append(app(n, "diag-replay-" + k))
        creds[k] = cred(n)
        routes[k] = {"match_path": "/%s/" % k, "strip_prefix": "true", "upstream": DATAVERSE_URL,
                     "audience": "dataverse", "credential": k}
    SIM.add_apps(apps)
    ini = proxy_ini(SIM, routes=routes, credentials=creds, work=W,
                    extra_proxy={"token_refresh_min_interval": "%ds" % REFRESH_MIN_S})
    px = Proxy(W, ini, name="diag-replay").start()
    try:
        for k in ("get", "put", "post"):
            eq(px.request("GET", "/%s/_test/echo" % k).status, 200, "before, " + k)
        # The rate limit counts from each token's fetch, which ended before its request did.
        fetched = time.time()
        harness.wait_for("%d s past the token fetches" % REFRESH_MIN_S,
                         lambda: time.time() >= fetched + REFRESH_MIN_S + 0.05, timeout=REFRESH_MIN_S + 5)
        SIM.add_apps([dict(a, reject_tokens_before=int(time.time())) for a in apps])
        before = SIM.stats()["token_requests"]
        r = px.request("GET", "/get/_test/echo?x=1")
        eq((r.status, r.header("S2S-Proxy-Diagnosis")), (200, None), "replayed GET")
        body = harness.pattern_bytes(10000)  # complete before the upstream can answer: kept whole
        r = px.request("PUT", "/put/_test/echo?x=2", body=body)
        eq((r.status, r.json()["body_len"], r.json()["body_sha256"]), (200, len(body), harness.sha256(body)),
           "replayed PUT")
        r = px.request("POST", "/post/_test/echo?x=3", body=b"{}", headers=[("Content-Type", "application/json")])
        eq((r.status, r.header("S2S-Proxy-Diagnosis")), (401, "token_rejected"), "POST not replayed")
        eq(SIM.stats()["token_requests"], before + 3, "token requests: one per dropped token")
        for x, want in (("1", [401, 200]), ("2", [401, 200]), ("3", [401])):
            ups = [q["status"] for q in SIM.requests() if q["target"].startswith("/_test/echo?x=" + x)]
            eq(ups, want, "upstream answers for x=" + x)
        eq(len([e for e in px.events() if e.get("event") == "request_replayed"]), 2, "replays logged")
        eq(len([e for e in px.events() if e.get("event") == "token_dropped"]), 3, "tokens dropped")
    finally:
        px.stop()


def test_401_burst_every_request_replayed():
    """20 GETs in flight at once with a token the upstream stopped accepting:
    the first 401 drops the token; the others carried the same token, no
    longer handed out, and wait for the next one too. Every client gets 200,
    with one token request for the burst, and every 401 upstream is one
    replay."""
    n = 905
    SIM.add_apps([app(n, "diag-burst")])
    routes = {"b": {"match_path": "/b/", "strip_prefix": "true", "upstream": DATAVERSE_URL,
                    "audience": "dataverse", "credential": "b"}}
    ini = proxy_ini(SIM, routes=routes, credentials={"b": cred(n)}, work=W,
                    extra_proxy={"token_refresh_min_interval": "%ds" % REFRESH_MIN_S})
    px = Proxy(W, ini, name="diag-burst").start()
    try:
        eq(px.request("GET", "/b/_test/echo").status, 200, "before")
        fetched = time.time()
        harness.wait_for("%d s past the token fetch" % REFRESH_MIN_S,
                         lambda: time.time() >= fetched + REFRESH_MIN_S + 0.05, timeout=REFRESH_MIN_S + 5)
        SIM.add_apps([app(n, "diag-burst", reject_tokens_before=int(time.time()))])
        before = SIM.stats()["token_requests"]
        start = threading.Barrier(20)
        results = [None] * 20

        def one(i):
            start.wait(10)
            r = px.request("GET", "/b/_test/echo?burst=%d" % i)
            results[i] = (r.status, r.header("S2S-Proxy-Diagnosis"))
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        eq(results, [(200, None)] * 20, "answers to the burst")
        eq(SIM.stats()["token_requests"], before + 1, "token requests for the burst")
        ups = [q["status"] for q in SIM.requests() if q["target"].startswith("/_test/echo?burst=")]
        eq(ups.count(200), 20, "upstream 200s")
        rejected = ups.count(401)
        assert rejected >= 1, "the upstream rejected no request of the burst: %r" % ups
        eq(len([e for e in px.events() if e.get("event") == "request_replayed"]), rejected,
           "replays logged (one per upstream 401)")
        eq(len([e for e in px.events() if e.get("event") == "token_dropped"]), 1, "tokens dropped")
    finally:
        px.stop()


def test_translate_upstream_errors_problem():
    """translate_upstream_errors = problem: the refusal keeps its status and
    gets a problem+json body embedding the original error; off (default)
    and undiagnosed answers pass unchanged."""
    n = 910
    SIM.add_apps([app(n, "diag-translate", upstream_errors={"dataverse": "not_member"}), app(n + 1, "diag-t2")])
    routes = {"p": {"match_path": "/p/", "strip_prefix": "true", "upstream": DATAVERSE_URL, "audience": "dataverse",
                    "credential": "t", "translate_upstream_errors": "problem"},
              "q": {"match_path": "/q/", "strip_prefix": "true", "upstream": DATAVERSE_URL, "audience": "dataverse",
                    "credential": "t2", "translate_upstream_errors": "problem"}}
    px = Proxy(W, proxy_ini(SIM, routes=routes, credentials={"t": cred(n), "t2": cred(n + 1)}, work=W),
               name="diag-translate").start()
    try:
        r = px.request("GET", "/p/api/data/v9.2/WhoAmI")
        eq((r.status, r.header("Content-Type"), r.header("S2S-Proxy-Diagnosis")),
           (403, "application/problem+json", "dataverse_app_user_missing"), "translated answer")
        p = r.json()
        eq((p["diagnosis"], p["status"], p["upstream_status"], p["route"], p["client_id"]),
           ("dataverse_app_user_missing", 403, 403, "p", client_id(n)), "problem members")
        eq(p["upstream_error"]["error"]["code"], "0x80072560", "embedded original error")
        assert "Application users" in p["remediation"], p
        # a 401 with a challenge: WWW-Authenticate survives the translation
        r = px.request("GET", "/q/_test/status?code=404")
        eq((r.status, r.header("S2S-Proxy-Diagnosis"), r.body), (404, None, b'{"status":404}'), "404 untouched")
    finally:
        px.stop()


def test_idp_bad_response_through_the_proxy():
    SIM.set_entra("notoken")
    try:
        px = Proxy(W, proxy_ini(SIM, routes={"dataverse": harness.default_routes()["dataverse"]}, work=W),
                   name="diag-notoken").start()
        try:
            px.wait_event("token_failed", 20)
            r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
            eq((r.status, r.json()["diagnosis"]), (502, "idp_bad_response"), "200 without a token")
        finally:
            px.stop()
    finally:
        SIM.reset(faults=True)


def test_404_page_from_the_token_url_is_no_credential_rejection():
    """A 404 HTML page where the token endpoint should be (a wrong authority):
    idp_bad_response, which points at the authority URL, retried with
    backoff; never credential_rejected, which sends the operator to a secret
    that is fine and holds the failure for a minute."""
    SIM.set_entra("html404")
    try:
        px = Proxy(W, proxy_ini(SIM, routes={"dataverse": harness.default_routes()["dataverse"]}, work=W),
                   name="diag-html404").start()
        try:
            ev = px.wait_event("token_failed", 20)
            eq((ev.get("kind"), ev.get("http_status")), ("bad_response", 404), "token_failed kind and status")
            r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
            p = r.json()
            eq((r.status, p["diagnosis"]), (502, "idp_bad_response"), "404 page from the token URL")
            assert "authority URL" in p["remediation"], p
        finally:
            px.stop()
    finally:
        SIM.reset(faults=True)
