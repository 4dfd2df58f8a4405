"""test_framing.py - request smuggling shapes, CONNECT, absolute-form targets
and path tricks are refused; a refused framing closes the connection, so
bytes after it are never taken for a second request."""

import json

import harness
from harness import Proxy, Sim, Work, parse_responses, proxy_ini

W = SIM = PX = None
FOLLOW = b"GET /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\n\r\n"


def setup_module():
    global W, SIM, PX
    W = Work("test_framing")
    SIM = Sim(W).start()
    PX = Proxy(W, proxy_ini(SIM)).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()


def send(head, body=b"", follow=FOLLOW):
    data = harness.raw(PX.port, head.encode("latin-1") + b"\r\n" + body + follow, timeout=5)
    return parse_responses(data)


def refused(head, body=b"", status=400, code=None, follow=FOLLOW):
    rs = send(head, body, follow)
    assert len(rs) == 1, "expected exactly one response, got %d: %r" % (len(rs), rs)
    assert rs[0].status == status, "%r -> %d %r" % (head, rs[0].status, rs[0].body[:200])
    if code:
        assert json.loads(rs[0].body)["code"] == code, rs[0].body
    return rs[0]


def test_control_pipelined_requests_are_served():
    rs = send("GET /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\n", follow=FOLLOW + FOLLOW)
    assert [r.status for r in rs] == [200, 200, 200], [r.status for r in rs]


# libmicrohttpd 1.0's parser refuses these before the proxy sees them (its own
# short page, not problem+json); what matters is one answer, a close, and no
# second request taken from the body.
def test_te_and_cl_together():
    r = refused("POST /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")
    assert r.header("Connection") == "close", r.headers


def test_te_not_chunked():
    for te, status in (("gzip, chunked", 501), ("identity", 501), ("chunked, chunked", 501), ("xchunked", 501)):
        r = refused("POST /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: %s\r\n" % te,
                    b"0\r\n\r\n", status=status)
        assert r.header("Connection") == "close", (te, r.headers)


def test_conflicting_content_length():
    refused("POST /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\nContent-Length: 4\r\n", b"abcd")


def test_connect_refused():
    refused("CONNECT contoso.crm4.dynamics.com:443 HTTP/1.1\r\nHost: contoso.crm4.dynamics.com:443\r\n",
            status=405, code="connect_refused")


def test_absolute_form_foreign_host_refused():
    refused("GET http://evil.example/dataverse/_test/echo HTTP/1.1\r\nHost: evil.example\r\n", code="foreign_host",
            follow=b"")


def test_absolute_form_for_route_host_goes_to_route():
    rs = send("GET http://contoso.crm4.dynamics.com/dataverse/_test/echo HTTP/1.1\r\nHost: whatever\r\n", follow=b"")
    assert len(rs) == 1 and rs[0].status == 200, rs
    assert json.loads(rs[0].body)["target"] == "/_test/echo"


def test_path_traversal_refused():
    for path in ("/dataverse/../bc/x", "/dataverse/%2e%2e/bc/x", "/dataverse/..%2fbc", "/dataverse/x/%2E%2e"):
        refused("GET %s HTTP/1.1\r\nHost: p\r\n" % path, code="path_traversal", follow=b"")


def test_no_upstream_request_for_refused_shapes():
    before = SIM.stats()["upstream_requests"]
    refused("POST /dataverse/_test/echo HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")
    assert SIM.stats()["upstream_requests"] == before
