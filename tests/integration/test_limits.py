"""test_limits.py - request limits answer with the right status, problem+json
and a log line: 431 (header block), 414 (request-target), 413 (body, by
Content-Length and by chunked growth, [proxy] and per route); and the
per-host upstream connection cap queues instead of failing."""

import concurrent.futures
import json
import socket
import time

import harness
from harness import eq, Proxy, Sim, Work, parse_responses, pattern_gen, proxy_ini

W = SIM = PX = None


def setup_module():
    global W, SIM, PX
    W = Work("test_limits")
    SIM = Sim(W).start()
    routes = harness.default_routes()
    routes["bc"] = dict(routes["bc"], max_body_bytes="1k")
    PX = Proxy(W, proxy_ini(SIM, routes=routes, work=W,
                            extra_proxy={"max_header_bytes": "4k", "max_url_bytes": "1024",
                                         "max_body_bytes": "1m", "upstream_max_connections": "2"})).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()



def problem(r, status, code):
    eq(r.status, status, "status")
    eq(r.header("Content-Type"), "application/problem+json", "content type")
    eq(r.json()["code"], code, "code")


def limit_logged(name):
    PX.wait_event(lambda e: e.get("event") == "limit_exceeded" and e.get("limit") == name, 5)


def test_header_block_431():
    r = PX.request("GET", "/dataverse/_test/echo", [("X-Big-%d" % i, "v" * 200) for i in range(30)])
    problem(r, 431, "headers_too_large")
    limit_logged("max_header_bytes")
    eq(PX.request("GET", "/dataverse/_test/echo", [("X-Big", "v" * 2000)]).status, 200, "under the limit")


def test_request_target_414():
    problem(PX.request("GET", "/dataverse/_test/echo?q=" + "a" * 1100), 414, "uri_too_long")
    limit_logged("max_url_bytes")
    eq(PX.request("GET", "/dataverse/_test/echo?q=" + "a" * 900).status, 200, "under the limit")


def test_body_413_by_content_length():
    before = SIM.stats()["upstream_requests"]
    data = harness.raw(PX.port, b"POST /dataverse/_test/upload HTTP/1.1\r\nHost: p\r\nContent-Length: 2000000\r\n\r\n"
                       + b"x" * 1000, timeout=5)
    rs = parse_responses(data)
    eq([r.status for r in rs], [413], "responses")
    eq(json.loads(rs[0].body)["code"], "body_too_large", "code")
    eq(rs[0].header("Connection"), "close", "Connection")
    eq(SIM.stats()["upstream_requests"], before, "upstream requests")
    limit_logged("max_body_bytes")


def test_body_413_when_chunked_body_grows():
    """The answer must be a 413 even though the client is still sending."""
    sock = socket.create_connection(("127.0.0.1", PX.port), timeout=10)
    sock.sendall(b"POST /dataverse/_test/upload HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
    try:
        for _ in range(48):  # 3 MiB, well past the 1 MiB cap
            sock.sendall(chunk)
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the proxy may close its side once it has answered
    data = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    sock.close()
    rs = parse_responses(data)
    assert rs, "no response at all: %r" % data[:200]
    eq(rs[0].status, 413, "status")
    eq(json.loads(rs[0].body)["code"], "body_too_large", "code")


def test_route_body_cap_is_lower():
    problem(PX.request("POST", "/bc/v2.0/x/api/v2.0/companies", None, b"y" * 2000), 413, "body_too_large")
    eq(PX.request("POST", "/dataverse/_test/upload", None, b"y" * 2000).json()["len"], 2000, "other route")


def test_upstream_connection_cap_queues():
    SIM.reset()

    def one(i):
        return PX.request("GET", "/dataverse/_test/slow?ms=300&i=%d" % i, timeout=30).status
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        statuses = list(ex.map(one, range(12)))
    eq(statuses, [200] * 12, "statuses")
    peers = {r["peer"] for r in SIM.requests(100) if r["target"].startswith("/_test/slow")}
    workers = PX.wait_event("listening")["workers"]
    assert len(peers) <= 2 * workers, "%d upstream connections for a cap of 2 per worker (%d workers)" % (
        len(peers), workers)


def test_slow_client_cut_with_408_and_503_past_max_connections():
    px = Proxy(W, proxy_ini(SIM, work=W, extra_proxy={"client_timeout": "2s", "max_connections": "4",
                                                      "workers": "1"}), name="slow").start()
    try:
        px.wait_event("token_acquired", 20)
        # slowloris: one header byte every 0.25 s never completes within client_timeout
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        s.sendall(b"GET /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\nX-Slow: ")
        sent, answer = 0, b""
        s.settimeout(0.25)
        while sent < 60:
            try:
                s.sendall(b"a")
                sent += 1
                d = s.recv(4096)
                if not d:
                    break
                answer += d
            except socket.timeout:
                continue
            except OSError:
                break
        s.close()
        assert answer.startswith(b"HTTP/1.1 408 "), "no 408 after %d bytes: %r" % (sent, answer[:80])
        assert sent < 40, "the slow client was not cut (%d bytes trickled)" % sent
        px.wait_event(lambda e: e.get("event") == "limit_exceeded" and e.get("limit") == "client_timeout", 5)
        # four idle connections fill max_connections: the fifth is served, and
        # the least recently used idle one is closed to make room
        idle = [socket.create_connection(("127.0.0.1", px.port), timeout=5) for _ in range(4)]
        try:
            # a connection silent since it was accepted counts as idle after 1 s
            statuses = []

            def served():
                statuses.append(px.request("GET", "/dataverse/_test/echo").status)
                return statuses[-1] != 503
            harness.wait_for("an answer with the budget full of idle connections", served, timeout=20)
            eq(statuses[-1], 200, "with the budget full of idle connections")
            idle[0].settimeout(5)
            eq(idle[0].recv(100), b"", "the oldest idle connection was closed for room")
        finally:
            for c in idle:
                c.close()
        # four requests in progress fill it: the fifth gets 503 problem+json at once
        busy = []
        try:
            for i in range(4):
                c = socket.create_connection(("127.0.0.1", px.port), timeout=10)
                c.sendall(b"GET /dataverse/_test/slow?ms=8000&busy=%d HTTP/1.1\r\nHost: p\r\n\r\n" % i)
                busy.append(c)
            # all four in progress upstream (for 8 s: far longer than the one request below)
            harness.wait_for("four requests in progress", lambda: len([t for t in SIM.stats()["upstream_in_flight"]
                                                                      if "busy=" in t]) == 4)
            r = px.request("GET", "/dataverse/_test/echo")
            problem(r, 503, "overloaded")
            eq(r.header("Retry-After"), "1", "Retry-After")
            eq(r.header("Connection"), "close", "Connection")
        finally:
            for c in busy:
                c.close()
        harness.wait_for("200 after the busy connections closed",
                         lambda: px.request("GET", "/dataverse/_test/echo").status == 200, timeout=20)
    finally:
        px.stop()


def test_response_header_room():
    """max_header_bytes = 4k here, so each connection's memory leaves about
    32 KiB for the answer's header block: a block that fits is forwarded
    whole; one that does not gets a 502 problem from the proxy (never a
    connection closed without an answer), also next to a large request."""
    r = PX.request("GET", "/dataverse/_test/bigheaders?kib=8")
    eq(r.status, 200, "8 KiB of response headers")
    eq(sum(1 for k, _ in r.headers if k.lower().startswith("x-filler-")), 8, "every filler header forwarded")
    eq(r.body, b"big", "body")
    r = PX.request("GET", "/dataverse/_test/bigheaders?kib=24")
    eq(r.status, 200, "24 KiB of response headers")
    eq(sum(1 for k, _ in r.headers if k.lower().startswith("x-filler-")), 24, "every filler header forwarded")
    for kib, req_hdrs in ((40, []), (30, [("X-Big-%d" % i, "v" * 900) for i in range(4)])):
        r = PX.request("GET", "/dataverse/_test/bigheaders?kib=%d" % kib, req_hdrs)
        problem(r, 502, "upstream_bad_response")
    eq(PX.request("GET", "/dataverse/_test/echo").status, 200, "the proxy still serves")
