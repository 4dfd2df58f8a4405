"""test_proxy.py - forwarding through the proxy: token injection per route,
header policy in both directions, status pass-through, HEAD/204/304, upstream
failures. One simulator (all roles) and one proxy for the module."""

import json
import select
import socket
import threading

import harness
from harness import eq, BC_URL, CLIENT_ID, DATAVERSE_URL, FO_URL, Proxy, Sim, Work, proxy_ini

W = SIM = PX = None


def setup_module():
    global W, SIM, PX
    W = Work("test_proxy")
    SIM = Sim(W).start()
    PX = Proxy(W, proxy_ini(SIM)).start()
    # every route's token is fetched at start: wait until they are in
    PX.wait_event(lambda e: e.get("event") == "token_acquired" and e.get("resource") == FO_URL, 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()



def last_upstream(target):
    for r in reversed(SIM.requests()):
        if r["target"] == target:
            return r
    raise AssertionError("upstream never saw %s" % target)


def headers_named(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def test_dataverse_whoami_gets_dataverse_token():
    r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [("Accept", "application/json")])
    eq(r.status, 200, "status")
    body = r.json()
    assert "UserId" in body and "OrganizationId" in body, body
    up = last_upstream("/api/data/v9.2/WhoAmI")
    eq(up["aud"], DATAVERSE_URL, "aud seen by Dataverse")
    eq(up["host"], "contoso.crm4.dynamics.com", "host")
    eq(up["appid"], CLIENT_ID, "appid")


def test_each_route_gets_its_audience():
    for prefix, target, aud in (("/bc", "/v2.0/production/api/v2.0/companies", BC_URL),
                                ("/fo", "/data/Customers", FO_URL)):
        r = PX.request("GET", prefix + target)
        eq(r.status, 200, prefix + " status")
        eq(last_upstream(target)["aud"], aud, prefix + " aud")
    r = PX.request("GET", "/bc/v2.0/production/api/v2.0/companies")
    eq(r.json()["value"][0]["name"], "CRONUS USA, Inc.", "BC company")


def test_create_account_returns_entity_id():
    r = PX.request("POST", "/dataverse/api/data/v9.2/accounts",
                   [("Content-Type", "application/json"), ("OData-MaxVersion", "4.0"), ("OData-Version", "4.0")],
                   json.dumps({"name": "Fourth Coffee"}).encode())
    eq(r.status, 204, "status")
    eid = r.header("OData-EntityId")  # rewritten to the URL the client used (rewrite_urls = auto)
    assert eid and eid.startswith("http://127.0.0.1:%d/dataverse/api/data/v9.2/accounts(" % PX.port), eid


def test_caller_authorization_never_reaches_upstream():
    r = PX.request("GET", "/dataverse/_test/echo", [("Authorization", "Bearer caller-token-zzz"),
                                                    ("Proxy-Authorization", "Basic Y2FsbGVyOnB3")])
    eq(r.status, 200, "status")
    seen = r.json()["headers"]
    auth = headers_named(seen, "Authorization")
    eq(len(auth), 1, "Authorization headers upstream")
    assert auth[0].startswith("Bearer ey") and "caller-token-zzz" not in auth[0], auth
    eq(headers_named(seen, "Proxy-Authorization"), [], "Proxy-Authorization upstream")


def test_request_header_policy():
    sent = [("Connection", "keep-alive, X-Drop-Me"), ("X-Drop-Me", "1"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Connection", "keep-alive"),
            ("OData-MaxVersion", "4.0"), ("Prefer", 'odata.include-annotations="*"'),
            ("MSCRM.SuppressDuplicateDetection", "false"), ("If-Match", 'W/"123"'),
            ("Cookie", "ARRAffinity=abc"), ("X-Forwarded-For", "6.6.6.6"), ("Host", "127.0.0.1")]
    r = PX.request("GET", "/dataverse/_test/echo?a=1&b=%20", sent)
    eq(r.status, 200, "status")
    e = r.json()
    eq(e["target"], "/_test/echo?a=1&b=%20", "target upstream")
    h = e["headers"]
    for name in ("X-Drop-Me", "Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "Connection", "Expect"):
        eq(headers_named(h, name), [], name + " upstream")
    for name, value in sent[6:11]:
        eq(headers_named(h, name), [value], name + " upstream")
    eq(headers_named(h, "Host"), ["contoso.crm4.dynamics.com"], "Host")
    eq(headers_named(h, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For")
    eq(headers_named(h, "X-Forwarded-Proto"), ["http"], "X-Forwarded-Proto")
    eq(headers_named(h, "X-Forwarded-Host"), ["127.0.0.1"], "X-Forwarded-Host")
    eq(headers_named(h, "Accept"), [], "no invented Accept")


def test_response_header_policy():
    r = PX.request("GET", "/dataverse/_test/headers?keep=1")
    eq(r.status, 200, "status")
    eq(r.header_all("X-Hop"), [], "Connection-listed header")
    eq(r.header_all("Keep-Alive"), [], "Keep-Alive")
    eq(len(r.header_all("Set-Cookie")), 2, "Set-Cookie count")
    eq(r.header_all("X-End-To-End"), ["kept"], "end-to-end header")
    assert r.header("x-ms-correlation-request-id"), "correlation id kept"
    eq(r.json(), {"ok": True}, "body")


def test_throttling_passes_through():
    """A 429 that persists past throttle_retries resends (test_throttle.py) reaches the client as sent."""
    r = PX.request("GET", "/dataverse/_test/status?code=429&retry_after=1")
    eq(r.status, 429, "status")
    eq(r.header("Retry-After"), "1", "Retry-After")
    eq(r.header("x-ms-ratelimit-burst-remaining-xrm-requests"), "0", "ratelimit header")
    eq(r.json()["error"]["code"], "0x80072322", "Dataverse error code")


def test_head_204_304():
    r = PX.request("HEAD", "/dataverse/_test/bytes?n=1000")
    eq(r.status, 200, "HEAD status")
    eq(r.header("Content-Length"), "1000", "HEAD Content-Length")
    eq(r.body, b"", "HEAD body")
    r = PX.request("GET", "/dataverse/_test/status?code=204")
    eq((r.status, r.body), (204, b""), "204")
    eq(r.header("Content-Length"), None, "204 Content-Length")
    r = PX.request("GET", "/dataverse/_test/status?code=304")
    eq((r.status, r.body), (304, b""), "304")
    eq(r.header("ETag"), 'W/"1234"', "304 ETag")


def test_keepalive_reuse_many_requests():
    c = harness.Client(PX.port)
    try:
        for i in range(50):
            r = c.request("GET", "/dataverse/_test/bytes?n=%d" % (i * 37))
            eq((r.status, harness.sha256(r.body)), (200, harness.pattern_sha256(i * 37)), "request %d" % i)
            eq(r.header("Connection"), None, "Connection header on response %d (keep-alive)" % i)
    finally:
        c.close()


def test_upstream_connections_are_reused():
    c = harness.Client(PX.port)
    try:
        for i in range(20):
            eq(c.request("GET", "/dataverse/_test/echo?reuse=%d" % i).status, 200, "request %d" % i)
    finally:
        c.close()
    peers = {r["peer"] for r in SIM.requests(200) if r["target"].startswith("/_test/echo?reuse=")}
    eq(len(peers), 1, "upstream TCP connections used for 20 sequential requests")


def test_upstream_tls_sessions_are_resumed_across_transfers():
    """A worker's transfers share one TLS session cache: once one upstream
    connection has a session, the new connections that concurrent requests
    need resume it instead of each doing a full handshake (the tail of a
    cold burst, docs/performance.md)."""
    px = Proxy(W, proxy_ini(SIM, extra_proxy={"workers": 1}), name="tls-sessions").start()
    clients, threads, answers = [], [], []
    try:
        # the token requests of the start are done
        px.wait_event(lambda e: e.get("event") == "token_acquired" and e.get("resource") == FO_URL, 20)
        eq(px.request("GET", "/dataverse/_test/echo?tls=first").status, 200, "first request")
        resumed0 = SIM.stats()["tls_resumed"]  # the simulator counts every role; Python clients never resume

        def slow(c, i):
            answers.append(c.request("GET", "/dataverse/_test/slow?ms=3000&tls=%d" % i).status)
        # six requests held open at once, each started once the one before is
        # at the upstream: every new connection could have found a session
        for i in range(6):
            clients.append(harness.Client(px.port))
            threads.append(threading.Thread(target=slow, args=(clients[-1], i)))
            threads[-1].start()
            harness.wait_for("request %d at the upstream" % i, lambda: sum(
                1 for t in SIM.stats()["upstream_in_flight"] if "tls=" in t) == i + 1)
        for t in threads:
            t.join(30)
        eq(answers, [200] * 6, "six concurrent slow requests")
        peers = [r["peer"] for r in SIM.requests(50) if "tls=" in r["target"]]
        eq(len(set(peers)), 6, "upstream connections for the first request and six at once (one reused)")
        eq(SIM.stats()["tls_resumed"] - resumed0, 5, "new upstream connections that resumed a session")
    finally:
        for c in clients:
            c.close()
        px.stop()


def test_unmatched_gets_404_problem():
    r = PX.request("GET", "/nowhere/x")
    eq(r.header("Connection"), None, "404 keeps the connection")
    eq(r.status, 404, "status")
    eq(r.header("Content-Type"), "application/problem+json", "content type")
    p = r.json()
    eq((p["status"], p["code"]), (404, "no_route"), "problem")
    assert p.get("request_id"), p


def test_close_delimited_upstream_body():
    r = PX.request("GET", "/dataverse/_test/closedelim?n=300000")
    eq(r.status, 200, "status")
    eq(harness.sha256(r.body), harness.pattern_sha256(300000), "body")


def test_upstream_cut_is_a_cut():
    for chunked in ("0", "1"):
        try:
            r = PX.request("GET", "/dataverse/_test/cut?n=200000&chunked=" + chunked)
        except Exception:  # http.client.IncompleteRead or a reset: the client saw the cut
            continue
        raise AssertionError("cut upstream body (chunked=%s) arrived as a clean end: %d bytes"
                             % (chunked, len(r.body)))


def test_upstream_unreachable_is_502():
    w = Work("test_proxy_down")
    routes = {"dead": {"match_path": "/", "upstream": "https://contoso.crm4.dynamics.com", "audience": "dataverse",
                       "credential": "contoso", "connect_timeout": "2s"}}
    ini = proxy_ini(SIM, routes=routes, work=w).replace(
        "contoso.crm4.dynamics.com:443:127.0.0.1:%d" % SIM.port, "contoso.crm4.dynamics.com:443:127.0.0.1:1")
    px = Proxy(w, ini).start()
    try:
        px.wait_event("token_acquired", 20)
        r = px.request("GET", "/api/data/v9.2/WhoAmI")
        eq(r.status, 502, "status")
        p = r.json()
        eq((p["code"], p["route"]), ("upstream_unavailable", "dead"), "problem")
    finally:
        px.stop()


def test_upstream_timeout_is_504():
    w = Work("test_proxy_slow")
    routes = dict(harness.default_routes())
    routes["dataverse"] = dict(routes["dataverse"], idle_timeout="1s")
    px = Proxy(w, proxy_ini(SIM, routes=routes, work=w)).start()
    try:
        px.wait_event("token_acquired", 20)
        r = px.request("GET", "/dataverse/_test/slow?ms=4000")
        eq(r.status, 504, "status")
        eq(r.json()["code"], "upstream_timeout", "code")
    finally:
        px.stop()


def _read_head(sock):
    """Bytes read until a header block's end (and what came with it), or EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return buf


class _ConnectProxy:
    """An outbound HTTP proxy that allows CONNECT only and records each
    request line it gets."""

    def __init__(self):
        self.seen = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.ls.close()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(c,), daemon=True).start()

    def _tunnel(self, c):
        up = None
        try:
            buf = _read_head(c)
            if b"\r\n\r\n" not in buf:
                return
            head, rest = buf.split(b"\r\n\r\n", 1)
            line = head.split(b"\r\n")[0].decode("latin-1")
            self.seen.append(line)
            parts = line.split()
            if len(parts) != 3 or parts[0] != "CONNECT":
                c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = parts[1].rsplit(":", 1)
            up = socket.create_connection((host, int(port)), timeout=10)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up.sendall(rest)
            while True:
                ready, _, _ = select.select([c, up], [], [], 30)
                if not ready:
                    return
                for s in ready:
                    d = s.recv(65536)
                    if not d:
                        return
                    (up if s is c else c).sendall(d)
        except OSError:
            pass
        finally:
            c.close()
            if up:
                up.close()


def test_outbound_proxy_from_the_environment():
    """HTTPS_PROXY in the proxy's environment (a corporate egress proxy):
    token and upstream requests go through it as CONNECT tunnels, so TLS
    stays end to end and the egress proxy never sees a token or a secret;
    connect_to is applied first (the tunnel asks for the mapped address)."""
    cp = _ConnectProxy()
    before = SIM.stats()["token_requests"]
    px = Proxy(W, proxy_ini(SIM, routes={"dataverse": harness.default_routes()["dataverse"]}), name="egress",
               env={"HTTPS_PROXY": "http://127.0.0.1:%d" % cp.port}).start()
    try:
        px.wait_event("token_acquired", 20)
        r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
        eq(r.status, 200, "WhoAmI through the egress proxy")
        eq(SIM.stats()["token_requests"] - before, 1, "token requests")
        tunnel = "CONNECT 127.0.0.1:%d HTTP/1.1" % SIM.port
        eq(sorted(set(cp.seen)), [tunnel], "what the egress proxy was asked")
        assert len(cp.seen) >= 2, "one tunnel for the token, one for the upstream: %r" % cp.seen
    finally:
        px.stop()
        cp.close()


def test_answer_while_draining_has_one_date():
    """An answer finished after SIGTERM carries Connection: close, and still
    exactly one Date (the upstream's): libmicrohttpd forgets a Date added
    before a Connection header and writes its own (internals.md L-MHD-16)."""
    px = Proxy(W, proxy_ini(SIM, routes={"dataverse": harness.default_routes()["dataverse"]},
                            extra_proxy={"admin_listen": "127.0.0.1:0"}), name="drain").start()
    admin = px.wait_event("admin_listening", 10)["port"]
    s = None

    def in_flight():
        for line in harness.request(admin, "GET", "/metrics", timeout=5).text.splitlines():
            if line.startswith("s2s_requests_in_flight "):
                return float(line.split()[1]) == 1
        return False
    try:
        px.wait_event("token_acquired", 20)
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        s.sendall(b"GET /dataverse/_test/slow?ms=1500 HTTP/1.1\r\nHost: p\r\n\r\n")
        harness.wait_for("the request in flight", in_flight, timeout=10)
        px.proc.send_signal(harness.signal.SIGTERM)
        data = _read_head(s)
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        assert head[0].startswith("HTTP/1.1 200 "), head
        names = [h.split(":", 1)[0].strip().lower() for h in head[1:]]
        eq((names.count("date"), names.count("connection")), (1, 1), "Date and Connection fields in %r" % head)
        assert "Connection: close" in head, head
    finally:
        if s:
            s.close()
        px.stop()
