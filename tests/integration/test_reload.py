"""test_reload.py - SIGHUP: a valid new configuration serves new requests
(new routes and credentials, tokens of unchanged sources kept), requests in
flight finish on the configuration they started with, a broken
configuration is rejected with its errors and the old one keeps serving,
and reloads under traffic fail no request."""

import concurrent.futures
import os
import signal
import threading
import time

import harness
from harness import eq, BC_URL, DATAVERSE_URL, Proxy, Sim, Work, proxy_ini

W = ENTRA = UP = None


def setup_module():
    global W, ENTRA, UP
    W = Work("test_reload")
    ENTRA = Sim(W, "entra").start(roles=["entra"])
    UP = Sim(W, "up").start(roles=["dataverse", "bc", "fo"])


def teardown_module():
    for s in (ENTRA, UP):
        if s:
            s.stop()



def ini(names=("dataverse",), creds=None):
    r = harness.default_routes()
    return proxy_ini(ENTRA, UP, routes={n: r[n] for n in names}, credentials=creds,
                     extra_proxy={"token_retry_max": "1s"}, work=W)


def rewrite(px, text):
    with open(px.ini_path + ".new", "w") as f:
        f.write(text)
    import os
    os.replace(px.ini_path + ".new", px.ini_path)


def hup(px, event):
    """SIGHUP and wait for `event` (config_reloaded / reload_failed) of this reload."""
    before = len([e for e in px.events() if e.get("event") == event])
    px.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 15
    while time.time() < deadline:
        evs = [e for e in px.events() if e.get("event") == event]
        if len(evs) > before:
            return evs[before:]
        time.sleep(0.05)
    raise AssertionError("no %s after SIGHUP:\n%s" % (event, px.log_text()[-3000:]))


def by_resource():
    return ENTRA.stats()["token_requests_by_resource"]


def test_new_route_served_and_unchanged_token_kept():
    ENTRA.reset(faults=True)
    px = Proxy(W, ini(), name="newroute").start()
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "dataverse before")
        eq(px.request("GET", "/bc/_test/echo").status, 404, "bc before")
        rewrite(px, ini(("dataverse", "bc")))
        ev = hup(px, "config_reloaded")[0]
        assert ev["msg"].endswith(": 2 routes, 1 credentials, 1 of 2 tokens kept"), ev
        eq(px.request("GET", "/bc/_test/echo").status, 200, "bc after")
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "dataverse after")
        eq(by_resource(), {DATAVERSE_URL: 1, BC_URL: 1}, "token requests per resource")
        assert px.alive()
    finally:
        px.stop()


def test_connect_to_change_reaches_every_worker():
    """connect_to is read again on reload by the workers too (not only by the
    token engine): new upstream connections go where the new entries say,
    on every worker, while the old lists stay valid for transfers that began
    before."""
    ENTRA.reset(faults=True)
    up2 = Sim(W, "up2").start(roles=["dataverse"])
    try:
        base = dict(workers=2, token_retry_max="1s")
        first = proxy_ini(ENTRA, UP, routes={"dataverse": harness.default_routes()["dataverse"]},
                          extra_proxy=base, work=W)
        px = Proxy(W, first, name="connect_to").start()
        try:
            n_up, n_up2 = len(UP.requests()), len(up2.requests())
            for _ in range(6):  # a new client connection each: both workers serve some
                eq(harness.request(px.port, "GET", "/dataverse/_test/echo").status, 200, "before")
            eq(len(UP.requests()) - n_up, 6, "requests at the first upstream")
            eq(len(up2.requests()) - n_up2, 0, "requests at the second upstream")
            rewrite(px, proxy_ini(ENTRA, up2, routes={"dataverse": harness.default_routes()["dataverse"]},
                                  extra_proxy=base, work=W))
            hup(px, "config_reloaded")
            # curl does not reuse a connection made for other connect_to entries,
            # so every request after the reload goes to the new target at once
            n_up = len(UP.requests())
            for _ in range(12):
                eq(harness.request(px.port, "GET", "/dataverse/_test/echo").status, 200, "after")
            eq(len(up2.requests()) - n_up2, 12, "requests at the new connect_to target")
            eq(len(UP.requests()) - n_up, 0, "requests at the old one")
            assert px.alive()
        finally:
            px.stop()
    finally:
        up2.stop()


def test_credential_changes_rejected_kept_or_refetched():
    ENTRA.reset(faults=True)
    px = Proxy(W, ini(), name="newcred").start()
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "before")
        creds = {"contoso": {"tenant": harness.TENANT_ID, "client_id": harness.CLIENT_ID,
                             "client_secret_env": "S2S_RELOAD_SECRET"}}
        text = ini(creds=creds)
        rewrite(px, text)
        # the proxy's environment has no S2S_RELOAD_SECRET: this reload must fail
        evs = hup(px, "reload_failed")
        assert any("client_secret_env: environment variable S2S_RELOAD_SECRET is not set or empty" in e["msg"]
                   for e in evs), evs
        rewrite(px, ini(creds={"contoso": dict(harness.default_credentials()["contoso"],
                                               secret=harness.CLIENT_SECRET + "")}))
        ev = hup(px, "config_reloaded")[0]
        assert ev["msg"].endswith("1 of 1 tokens kept"), ev  # same file, same settings
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "after")
        rewrite(px, ini(creds={"contoso": {"tenant": harness.TENANT_ID, "client_id": harness.CLIENT2_ID,
                                           "secret": harness.CLIENT2_SECRET}}))
        ev = hup(px, "config_reloaded")[0]
        assert ev["msg"].endswith("0 of 1 tokens kept"), ev  # another client id: a new token
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "after the credential changed")
        eq(ENTRA.stats()["token_requests_by_client"], {harness.CLIENT_ID: 1, harness.CLIENT2_ID: 1},
           "token requests per client")
    finally:
        px.stop()


def test_broken_config_rejected_old_one_keeps_serving():
    ENTRA.reset(faults=True)
    px = Proxy(W, ini(), name="broken").start()
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "before")
        good = open(px.ini_path).read()
        rewrite(px, good + "\n[route:bad]\nmatch_path = /bad/\nupstream = http://example.com\nwhat\n")
        evs = hup(px, "reload_failed")
        msgs = [e["msg"] for e in evs]
        n = len(good.split("\n"))
        assert "%s:%d: syntax error: expected 'key = value' or '[section]'" % (px.ini_path, n + 4) in msgs, msgs
        assert ("%s:%d: [route:bad] upstream: http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, "
                "localhost); use https://" % (px.ini_path, n + 3)) in msgs, msgs
        eq(msgs[-1], "configuration not reloaded: the previous one keeps serving", "last message")
        for _ in range(20):
            eq(px.request("GET", "/dataverse/_test/echo").status, 200, "after a rejected reload")
        eq(px.request("GET", "/bad/x").status, 404, "the broken route is not served")
        assert px.alive()
    finally:
        px.stop()


def test_inflight_request_finishes_on_its_config():
    ENTRA.reset(faults=True)
    px = Proxy(W, ini(("dataverse", "bc")), name="inflight").start()
    try:
        eq(px.request("GET", "/bc/_test/echo").status, 200, "warm up")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            slow = ex.submit(px.request, "GET", "/bc/_test/slow?ms=2000", timeout=30)
            harness.wait_for("the slow request upstream",
                             lambda: "/_test/slow?ms=2000" in UP.stats()["upstream_in_flight"])
            rewrite(px, ini(("dataverse",)))
            hup(px, "config_reloaded")
            eq(px.request("GET", "/bc/_test/echo").status, 404, "new requests use the new config")
            r = slow.result()
        eq((r.status, r.json()), (200, {"slept_ms": 2000, "body_ms": 0}), "in-flight request")
        px.wait_event("config_retired", 10)
    finally:
        px.stop()


def test_retired_generations_hold_no_sockets():
    """30 reloads, each with a credential whose secret file moves, so each new
    engine fetches its own token: once a generation is retired its engine
    keeps no connection and no wake-up pair (each reload used to keep about
    five descriptors until exit)."""
    ENTRA.reset(faults=True)
    creds = harness.default_credentials()
    px = Proxy(W, ini(creds=creds), name="fds").start()
    try:
        px.wait_event("token_acquired", 20)
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "before")

        def fds():
            return len(os.listdir("/proc/%d/fd" % px.pid))
        base = fds()
        secret = open(W.path("secret-contoso.txt")).read()
        for i in range(30):
            path = W.write("secret-contoso-%d.txt" % i, secret, 0o600)
            rewrite(px, ini(creds={"contoso": dict(creds["contoso"], secret=None, client_secret_file=path)}))
            hup(px, "config_reloaded")
            eq(px.request("GET", "/dataverse/_test/echo").status, 200, "after reload %d" % i)
        harness.wait_for("30 generations retired",
                         lambda: len([e for e in px.events() if e.get("event") == "config_retired"]) >= 30)
        grown = fds() - base
        assert grown <= 6, "descriptors grew by %d over 30 reloads (%d -> %d)" % (grown, base, fds())
    finally:
        px.stop()


def test_reloads_under_traffic_fail_no_request():
    ENTRA.reset(faults=True)
    px = Proxy(W, ini(("dataverse", "bc")), name="traffic").start()
    stop, results = threading.Event(), []

    def traffic(path):
        c = harness.Client(px.port)
        while not stop.is_set():
            results.append(c.request("GET", path).status)
        c.close()
    threads = [threading.Thread(target=traffic, args=(p,)) for p in ("/dataverse/_test/echo", "/bc/_test/echo")]
    try:
        for t in threads:
            t.start()
        def some_traffic(n=20):  # counted, not timed: slow builds just take longer
            want, deadline = len(results) + n, time.time() + 30
            while len(results) < want and time.time() < deadline:
                time.sleep(0.02)
        for i in range(6):
            some_traffic()
            rewrite(px, ini(("bc", "dataverse") if i % 2 else ("dataverse", "bc")))
            hup(px, "config_reloaded")
        some_traffic()
    finally:
        stop.set()
        for t in threads:
            t.join()
        px.stop()
    assert len(results) > 100, len(results)
    eq(sorted(set(results)), [200], "statuses")
    eq(by_resource(), {DATAVERSE_URL: 1, BC_URL: 1}, "token requests (all tokens carried over)")
