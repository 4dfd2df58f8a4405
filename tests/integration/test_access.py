"""test_access.py - who may use the proxy: allow_from ([proxy] and per route,
IPv4 and IPv6) and the inbound key (constant-time compare, never forwarded,
never logged)."""

import harness
from harness import eq, Proxy, Sim, Work, check_config, proxy_ini

W = SIM = None
KEY = "k3y-for-the-proxy-0123456789"
ROUTE_KEY = "another-key-just-for-bc-42"


def setup_module():
    global W, SIM
    W = Work("test_access")
    SIM = Sim(W).start()


def teardown_module():
    if SIM:
        SIM.stop()



def start(extra=None, routes=None, name="p"):
    px = Proxy(W, proxy_ini(SIM, routes=routes, extra_proxy=extra, work=W), name=name).start()
    px.wait_event("token_acquired", 20)
    return px


def denied(r, code):
    eq(r.status, 403, "status")
    eq(r.header("Content-Type"), "application/problem+json", "content type")
    eq(r.json()["code"], code, "problem code")


def test_global_allow_from_refuses_other_clients():
    px = start({"allow_from": "10.0.0.0/8, fd00::/8"}, name="deny")
    try:
        before = SIM.stats()["upstream_requests"]
        denied(px.request("GET", "/dataverse/_test/echo"), "client_not_allowed")
        eq(SIM.stats()["upstream_requests"], before, "upstream requests")
        e = px.wait_event("access_denied", 5)
        eq((e["client"], e["reason"]), ("127.0.0.1", "client_not_allowed"), "log line")
    finally:
        px.stop()


def test_global_allow_from_admits_listed_clients():
    px = start({"allow_from": "10.0.0.0/8, 127.0.0.1, ::1"}, name="allow")
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "status")
    finally:
        px.stop()


def test_route_allow_from():
    routes = harness.default_routes()
    routes["bc"] = dict(routes["bc"], allow_from="192.168.0.0/16")
    px = start(routes=routes, name="route")
    try:
        denied(px.request("GET", "/bc/v2.0/production/api/v2.0/companies"), "client_not_allowed")
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "other route")
    finally:
        px.stop()


def test_inbound_key():
    key_file = W.write("inbound.key", KEY + "\n", 0o600)
    routes = harness.default_routes()
    routes["bc"] = dict(routes["bc"], inbound_key_file=W.write("bc.key", ROUTE_KEY, 0o600))
    px = start({"inbound_key_file": key_file, "inbound_key_header": "X-Proxy-Key"}, routes=routes, name="key")
    try:
        denied(px.request("GET", "/dataverse/_test/echo"), "inbound_key_missing")
        denied(px.request("GET", "/dataverse/_test/echo", [("X-Proxy-Key", KEY[:-1])]), "inbound_key_invalid")
        denied(px.request("GET", "/dataverse/_test/echo", [("X-Proxy-Key", KEY + "x")]), "inbound_key_invalid")
        r = px.request("GET", "/dataverse/_test/echo", [("X-Proxy-Key", KEY)])
        eq(r.status, 200, "status with the key")
        names = [k.lower() for k, _ in r.json()["headers"]]
        assert "x-proxy-key" not in names, "the inbound key reached the upstream"
        denied(px.request("GET", "/bc/v2.0/production/api/v2.0/companies", [("X-Proxy-Key", KEY)]),
               "inbound_key_invalid")
        eq(px.request("GET", "/bc/v2.0/production/api/v2.0/companies", [("X-Proxy-Key", ROUTE_KEY)]).status, 200,
           "route key")
        px.stop()
        log = px.log_text()
        assert KEY not in log and ROUTE_KEY not in log, "an inbound key appears in the log"
    finally:
        px.stop()


def test_config_errors():
    short = W.write("short.key", "tooshort", 0o600)
    text = proxy_ini(SIM, work=W, extra_proxy={"allow_from": "10.0.0.0/33, nonsense", "inbound_key_file": short})
    rc, out, err = check_config(text, W, "bad-access")
    eq(rc, 1, "exit status")
    assert "allow_from" in err and "10.0.0.0/33" in err, err
    assert "at least 16 characters" in err, err
    assert "tooshort" not in err, "the key's value appears in an error message"
