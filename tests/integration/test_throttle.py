"""test_throttle.py - the service protection gate: the simulated services
enforce scaled-down limits (tests/sim/limits.py) and record any request that
arrives while its caller was told to wait; clients that never retry send
bursts through the proxy and get one slow success each (or a 503
throttled_upstream when their wait budget runs out)."""

import concurrent.futures
import json
import re
import signal
import socket
import time

import harness
from harness import CLIENT2_ID, CLIENT2_SECRET, TENANT_ID, eq, Proxy, Sim, Work, proxy_ini, wait_for

W = SIM = PX = None
WHOAMI = "/dataverse/api/data/v9.2/WhoAmI"
DV_HOST = "contoso.crm4.dynamics.com"


def setup_module():
    global W, SIM, PX
    W = Work("test_throttle")
    SIM = Sim(W).start()
    SIM.add_apps([{"tenant_id": TENANT_ID, "client_id": CLIENT2_ID, "secret": CLIENT2_SECRET}])
    PX = start_proxy()


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()


def ini(routes_extra=None, proxy_extra=None):
    routes = harness.default_routes()
    creds = harness.default_credentials()
    creds["second"] = {"tenant": TENANT_ID, "client_id": CLIENT2_ID, "secret": CLIENT2_SECRET}
    routes["dv2"] = dict(routes["dataverse"], match_path="/dv2/", credential="second")
    routes["stream"] = dict(routes["dataverse"], match_path="/stream/")
    routes["short"] = dict(routes["dataverse"], match_path="/short/", throttle_wait="1s")
    routes["tiny"] = dict(routes["dataverse"], match_path="/tiny/", throttle_queue="3")
    routes["org"] = {"match_path": "/XRMServices/", "upstream": harness.DATAVERSE_URL, "audience": "dataverse",
                     "credential": "contoso", "soap_bridge": "true", "throttle_max_wait": "2s"}
    for name, keys in (routes_extra or {}).items():
        routes[name] = dict(routes[name], **keys)
    extra = {"admin_listen": "127.0.0.1:0", "throttle_wait": "20s", "throttle_max_wait": "10s",
             "replay_max_body": "64k", "workers": "2"}
    extra.update(proxy_extra or {})
    return proxy_ini(SIM, routes=routes, credentials=creds, extra_proxy=extra, work=W)


def start_proxy(name="proxy", **kw):
    p = Proxy(W, ini(**kw), name=name).start()
    p.wait_event(lambda e: e.get("event") == "token_acquired", 20)
    return p


def limits(cfg):
    return SIM.control("limits", cfg)


def fresh(cfg):
    """New limits, empty counters, and a gate that is open again."""
    limits({"dataverse": None, "bc": None, "fo": None})
    wait_for("gates open", lambda: not closed_gates(PX))
    SIM.reset()
    limits(cfg)


def admin_port(px):
    e = px.wait_event(lambda e: e.get("event") == "admin_listening", 5)
    return e["port"]


def closed_gates(px):
    r = harness.request(admin_port(px), "GET", "/readyz")
    return r.json().get("throttled", [])


def burst(n, target=WHOAMI, threads=8, method="GET", body=None, headers=None, port=None):
    def one(i):
        r = harness.request(port or PX.port, method, target, headers, body, timeout=60)
        return r
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, range(n)))


def violations():
    return limits({})["violations"]


# ---------------------------------------------------------------------------


def test_burst_over_the_count_limit_all_succeed():
    """40 requests from a client that never retries, against 10 per 2 s: all
    succeed, nothing reaches the service while it said wait, and the whole
    takes about the service's own pace (10 now, then 10 per window)."""
    fresh({"dataverse": {"window_ms": 2000, "requests": 10}})
    t0 = time.time()
    rs = burst(40)
    took = time.time() - t0
    eq(sorted(set(r.status for r in rs)), [200], "statuses")
    eq(violations(), [], "requests sent while the identity was told to wait")
    st = limits({})
    eq(st["executed"], {"%s %s" % (harness.CLIENT_ID, DV_HOST): 40}, "executed once each")
    assert 5.5 <= took <= 16, "40 requests at 10 per 2 s took %.1f s" % took
    ev = [e for e in PX.events() if e.get("event") == "throttled"]
    assert any(e["state"] == "closed" and e["limit"] == "requests" for e in ev), ev
    assert any(e["state"] == "open" for e in ev), ev


def closed_identities():
    return sorted("%s@%s" % (g["credential"], g["upstream"]) for g in closed_gates(PX))


def metric(name, credential="contoso", upstream=DV_HOST):
    text = harness.request(admin_port(PX), "GET", "/metrics").text
    key = '%s{credential="%s",upstream="%s"} ' % (name, credential, upstream)
    for line in text.splitlines():
        if line.startswith(key):
            return float(line[len(key):])
    return None


def test_metrics_and_readyz_show_the_gate():
    fresh({"dataverse": {"window_ms": 3000, "requests": 2}})
    before = metric("s2s_throttled_total") or 0
    eq([PX.request("GET", WHOAMI).status for _ in range(2)], [200, 200], "in budget")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        held = ex.submit(PX.request, "GET", WHOAMI)
        wait_for("the gate closed", lambda: closed_identities() == ["contoso@" + DV_HOST])
        g = closed_gates(PX)[0]
        eq(g["limit"], "requests", "limit in /readyz")
        assert 0 < g["reopen_in_ms"] <= 3000, g
        eq(metric("s2s_throttle_gate_closed"), 1, "gate_closed gauge")
        eq(held.result().status, 200, "the held request")
    eq(metric("s2s_throttled_total") - before >= 1, True, "429s counted")
    assert metric("s2s_throttle_retries_total") >= 1
    assert metric("s2s_throttle_held_total") >= 1
    eq(metric("s2s_ratelimit_burst_remaining") is not None, True, "burst remaining gauge")
    text = harness.request(admin_port(PX), "GET", "/metrics").text
    for ev in ("throttled", "held", "retried"):
        line = [x for x in text.splitlines()
                if x.startswith('s2s_route_throttle_total{route="dataverse",event="%s"} ' % ev)]
        assert line and float(line[0].split()[-1]) >= 1, (ev, line)
    eq(violations(), [], "violations")


def test_two_credentials_are_throttled_independently():
    fresh({"dataverse": {"window_ms": 3000, "requests": 3}})
    eq([PX.request("GET", WHOAMI).status for _ in range(3)], [200] * 3, "in budget")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        held = ex.submit(PX.request, "GET", WHOAMI)
        wait_for("contoso's gate closed", lambda: closed_identities() == ["contoso@" + DV_HOST])
        eq([PX.request("GET", "/dv2/api/data/v9.2/WhoAmI").status for _ in range(3)], [200] * 3, "other identity")
        def dv2_lines():
            lines = [e for e in PX.events() if e.get("event") == "request" and e.get("route") == "dv2"]
            return lines if len(lines) >= 3 else None
        lines = wait_for("dv2's three request lines", dv2_lines)
        eq([e.get("throttle_wait_ms") for e in lines], [None] * 3, "the other credential never waited")
        eq(closed_identities(), ["contoso@" + DV_HOST], "only contoso is closed")
        eq(held.result().status, 200, "held request")
    eq(violations(), [], "violations")


def test_small_post_is_resent_streamed_body_is_not():
    fresh({"dataverse": {"window_ms": 3000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    body = b"p" * 1000
    r = PX.request("POST", "/dataverse/_test/echo", [("Content-Type", "application/octet-stream")], body)
    eq((r.status, r.json()["body_len"], r.json()["method"]), (200, 1000, "POST"), "a held POST body is resent")
    sent = [q for q in SIM.requests() if q["target"] == "/_test/echo"]
    eq([q["status"] for q in sent], [429, 200], "the service saw it twice: throttled, then executed")
    line = PX.wait_event(lambda e: e.get("event") == "request" and e.get("path") == "/dataverse/_test/echo")
    eq((line["status"], line["upstream_status"], line["throttle_retries"]), (200, 200, 1), "request line")
    assert line["throttle_wait_ms"] >= 900, line
    wait_for("gate open", lambda: not closed_gates(PX))
    eq(PX.request("GET", WHOAMI).status, 200, "budget again")

    def chunks():  # 300 KiB, chunked: more than replay_max_body, so it streams and is gone
        for _ in range(30):
            yield b"s" * 10240
    r = PX.request("POST", "/stream/_test/upload", [("Content-Type", "application/octet-stream")], chunks(),
                   chunked=True)
    eq(r.status, 429, "the upstream's 429, unchanged")
    eq(r.json()["error"]["code"], "0x80072322", "its body")
    assert r.header("Retry-After"), r.headers
    eq(len([q for q in SIM.requests() if q["target"] == "/_test/upload"]), 1, "never resent")
    eq(violations(), [], "violations")


def test_budget_exhausted_gets_503_problem():
    fresh({"dataverse": {"window_ms": 4000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    r = PX.request("GET", "/short/api/data/v9.2/WhoAmI")
    eq(r.status, 503, "status")
    eq(r.header("Content-Type"), "application/problem+json", "type")
    p = r.json()
    eq((p["diagnosis"], p["route"], p["identity"], p["limit"]),
       ("throttled_upstream", "short", "contoso@" + DV_HOST, "requests"), "problem")
    ra = int(r.header("Retry-After"))
    assert 2 <= ra <= 4 and p["wait_s"] == ra, (ra, p)
    n = len(SIM.requests())
    r = PX.request("GET", "/short/api/data/v9.2/WhoAmI")  # the gate is closed for longer than 1 s
    eq((r.status, r.json()["diagnosis"]), (503, "throttled_upstream"), "refused at once")
    line = wait_for("the second request line of route short",
                    lambda: ([e for e in PX.events() if e.get("event") == "request" and e.get("route") == "short"]
                             + [None])[1])
    eq((line["status"], line.get("throttle_wait_ms")), (503, None), "refused without waiting at the gate")
    eq(len(SIM.requests()), n, "nothing sent while the gate is closed")
    eq(violations(), [], "violations")


def test_reload_keeps_gate_state():
    fresh({"dataverse": {"window_ms": 4000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        first = ex.submit(PX.request, "GET", WHOAMI)
        wait_for("gate closed", lambda: closed_identities() == ["contoso@" + DV_HOST])
        mark = len(PX.events())
        PX.proc.send_signal(signal.SIGHUP)
        wait_for("reload", lambda: any(e.get("event") == "config_reloaded" for e in PX.events()[mark:]))
        eq(closed_identities(), ["contoso@" + DV_HOST], "still closed after the reload")
        second = ex.submit(PX.request, "GET", WHOAMI)
        eq((first.result().status, second.result().status), (200, 200), "both served")
    eq(violations(), [], "nothing sent while the gate was closed, across the reload")


def test_concurrency_cap_52_under_200_clients():
    fresh({"dataverse": {"window_ms": 60000, "concurrent": 52}})
    rs = burst(200, "/dataverse/_test/slow?ms=300", threads=200)
    eq(sorted(set(r.status for r in rs)), [200], "statuses")
    st = limits({})
    key = "%s %s" % (harness.CLIENT_ID, DV_HOST)
    eq(st["throttled"].get(key, 0), 0, "no 429 for concurrency")
    eq(st["executed"].get(key), 200, "executed")
    assert st["max_inflight"][key] <= 52, st["max_inflight"]
    assert st["max_inflight"][key] >= 30, st["max_inflight"]  # the cap is used, not undercut


def test_orgsvc_fault_bc_and_fo():
    fresh({"dataverse": {"window_ms": 2000, "requests": 1}, "bc": {"window_ms": 2000, "requests": 1},
           "fo": {"window_ms": 2000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    soap = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Execute xmlns="http://'
            'schemas.microsoft.com/xrm/2011/Contracts/Services"/></s:Body></s:Envelope>')
    action = "http://schemas.microsoft.com/xrm/2011/Contracts/Services/IOrganizationService/Execute"
    t0 = time.time()
    r = PX.request("POST", "/dataverse/XRMServices/2011/Organization.svc/web?SdkClientVersion=9.2",
                   [("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", action)], soap)
    assert time.time() - t0 >= 0.9, "answered before the fault's TimeSpan passed"
    assert b"-2147015902" not in r.body, r.body  # the service protection fault was absorbed
    eq(r.status, 500, "the service's own answer to this Execute")
    closed = [e for e in PX.events() if e.get("event") == "throttled" and e.get("state") == "closed"]
    assert closed and closed[-1]["upstream_status"] == 500 and closed[-1]["limit"] == "requests", closed[-1:]
    for path in ("/bc/v2.0/production/api/v2.0/companies", "/fo/data/Customers"):
        eq([PX.request("GET", path).status for _ in range(2)], [200, 200], path)
    eq(violations(), [], "violations")


def test_full_queue_is_bounded_and_disconnected_clients_leave_it():
    fresh({"dataverse": {"window_ms": 6000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    socks = []
    try:
        for i in range(3):  # the queue of /tiny/ holds 3
            s = socket.create_connection(("127.0.0.1", PX.port), timeout=10)
            s.sendall(b"POST /tiny/_test/echo?queued=%d HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\n{}" % i)
            socks.append(s)
            wait_for("queued", lambda: metric("s2s_throttle_queue_depth") == len(socks))
        rss0 = PX.status_kib("VmRSS")
        rs = burst(200, "/tiny/api/data/v9.2/WhoAmI", threads=20)
        eq(sorted(set((r.status, r.json()["diagnosis"]) for r in rs)), [(503, "throttled_upstream")], "queue full")
        assert "full" in rs[0].json()["detail"], rs[0].json()
        grown = PX.status_kib("VmRSS") - rss0
        assert grown < 8 << 10, "memory grew by %d KiB" % grown
        for s in socks[1:]:
            s.close()
        # at once, not when the gate reopens (the window is 6 s)
        wait_for("disconnected clients left the queue", lambda: metric("s2s_throttle_queue_depth") == 1, timeout=3)
        answer = socks[0].recv(65536)  # the one still connected is served when the gate reopens
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    finally:
        for s in socks:
            s.close()
    wait_for("queue empty", lambda: metric("s2s_throttle_queue_depth") == 0)
    # 0 went up once to learn of the limit (429), then again when the gate reopened
    sent = sorted(q["target"].split("=")[1] for q in SIM.requests() if "echo?queued=" in q["target"])
    eq(sent, ["0", "0"], "queued requests that reached the upstream (the clients of 1 and 2 had left)")


def test_half_closed_read_at_the_gate_is_answered():
    """A GET whose client shut its sending side (and reads on) waits at the
    closed gate and is answered: an end of stream drops only a request that
    is not idempotent."""
    fresh({"dataverse": {"window_ms": 3000, "requests": 1}})
    eq(PX.request("GET", WHOAMI).status, 200, "uses the budget")
    data = harness.raw(PX.port, b"GET /tiny/_test/echo?half=1 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
                       timeout=15, half_close=True)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    ups = [q["status"] for q in SIM.requests() if "echo?half=1" in q["target"]]
    eq(ups, [429, 200], "upstream answers (the 429 closed the gate; the resend waited for it)")


def test_check_shows_the_budget_headers():
    fresh({})
    p = harness.spawn([harness.proxy_bin(), "check", "-c", PX.ini_path], stdout=harness.subprocess.PIPE,
                      stderr=harness.subprocess.PIPE, stdin=harness.subprocess.DEVNULL)
    out, err = p.communicate(timeout=60)
    lines = out.decode().splitlines()
    eq(p.returncode, 0, "exit status (%r)" % err[-500:])
    budget = [l for l in lines if l.startswith("route dataverse: budget")]
    assert len(budget) == 1 and re.match(r"^route dataverse: budget burst-remaining=\d+ "
                                         r"time-remaining=1,200,000\.00$", budget[0]), lines
    eq([l for l in lines if l.startswith("route bc: budget")], [], "BC sends no budget headers")
    p = harness.spawn([harness.proxy_bin(), "check", "--json", "-c", PX.ini_path], stdout=harness.subprocess.PIPE,
                      stderr=harness.subprocess.PIPE, stdin=harness.subprocess.DEVNULL)
    out, _ = p.communicate(timeout=60)
    r = [x for x in json.loads(out)["routes"] if x["route"] == "dataverse"][0]
    assert r["ratelimit_burst_remaining"].isdigit(), r
    eq(r["ratelimit_time_remaining"], "1,200,000.00", "json")


def test_execution_time_limit():
    """Dataverse's combined execution time limit: slow requests past it wait, none fails."""
    fresh({"dataverse": {"window_ms": 2000, "exec_ms": 600}})
    t0 = time.time()
    rs = burst(8, "/dataverse/_test/slow?ms=200", threads=4)
    eq(sorted(set(r.status for r in rs)), [200], "statuses")
    assert time.time() - t0 >= 2, "8 x 200 ms against 600 ms per 2 s took %.1f s" % (time.time() - t0)
    closed = [e for e in PX.events() if e.get("event") == "throttled" and e.get("state") == "closed"]
    assert closed and closed[-1]["limit"] == "execution_time", closed[-1:]
    eq(violations(), [], "violations")


S12 = "http://www.w3.org/2003/05/soap-envelope"
CON = "http://schemas.microsoft.com/xrm/2011/Contracts"
SVC = "http://schemas.microsoft.com/xrm/2011/Contracts/Services"


def bridged_whoami(caller=""):
    """A SOAP 1.2 Execute WhoAmI as WS-Trust era clients send it, through the soap_bridge route."""
    if caller:
        caller = '<MSCRMCallerID xmlns="%s">%s</MSCRMCallerID>' % (CON, caller)
    body = ('<s:Envelope xmlns:s="%s" xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>'
            '<a:Action s:mustUnderstand="1">%s/IOrganizationService/Execute</a:Action>'
            '<SdkClientVersion xmlns="%s">9.1</SdkClientVersion>%s<a:MessageID>urn:uuid:t1</a:MessageID>'
            '</s:Header><s:Body><Execute xmlns="%s"><request i:type="c:WhoAmIRequest" xmlns:b="%s" '
            'xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:c="http://schemas.microsoft.com/crm/2011/'
            'Contracts"><b:Parameters xmlns:d="http://schemas.datacontract.org/2004/07/System.Collections.Generic"/>'
            '<b:RequestId i:nil="true"/><b:RequestName>WhoAmI</b:RequestName></request></Execute></s:Body>'
            '</s:Envelope>' % (S12, SVC, CON, caller, SVC, CON)).encode()
    return PX.request("POST", "/XRMServices/2011/Organization.svc", [
        ("Content-Type", "application/soap+xml; charset=UTF-8"), ("Host", "contoso.api.crm4.dynamics.com")], body)


def test_bridged_protection_fault_closes_the_gate():
    """A WS-Trust bridged request gets the service's fault (converted, not resent: the bridge answers
    whole), and the identity's gate closes for its TimeSpan, so the next bridged request waits."""
    fresh({})
    eq(bridged_whoami().status, 200, "bridged WhoAmI")
    r = bridged_whoami("00000000-0000-0000-0000-000000000429")  # the sim's throttled caller: PT30S
    eq(r.status, 500, "the fault")
    assert b"<ErrorCode>-2147015902</ErrorCode>" in r.body, r.body
    g = wait_for("gate closed", lambda: closed_gates(PX))
    eq((g[0]["credential"], g[0]["limit"]), ("contoso", "requests"), "closed gate")
    assert g[0]["reopen_in_ms"] <= 2000, g  # throttle_max_wait of the route
    eq(bridged_whoami().status, 200, "after the wait")
    web = [q["time"] for q in SIM.requests() if q["target"].startswith("/XRMServices/2011/Organization.svc/web")]
    eq(len(web), 3, "requests the service saw")
    assert web[2] - web[1] >= 1.9, "sent %.2f s after the fault said wait 2 s (capped)" % (web[2] - web[1])
