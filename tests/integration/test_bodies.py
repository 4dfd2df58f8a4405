"""test_bodies.py - byte-exact streaming in both directions (sha256 of 0 B,
1 KiB and 64 MiB, content-length and chunked), and bounded memory."""

import harness
from harness import eq, Proxy, Sim, Work, pattern_gen, pattern_sha256, proxy_ini

W = SIM = PX = None
SIZES = (0, 1024, 64 << 20)


def setup_module():
    global W, SIM, PX
    W = Work("test_bodies")
    SIM = Sim(W).start()
    PX = Proxy(W, proxy_ini(SIM)).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()



def test_upload_content_length():
    for n in SIZES:
        r = PX.request("POST", "/dataverse/_test/upload", [("Content-Type", "application/octet-stream"),
                                                          ("Content-Length", str(n))], pattern_gen(n) if n else b"")
        eq(r.status, 200, "status for %d" % n)
        eq((r.json()["len"], r.json()["sha256"]), (n, pattern_sha256(n)), "upload %d" % n)


def test_upload_chunked():
    for n in SIZES:
        r = PX.request("PUT", "/dataverse/_test/upload", [("Content-Type", "application/octet-stream")],
                       pattern_gen(n, chunk=65521), chunked=True)
        eq(r.status, 200, "status for %d" % n)
        eq((r.json()["len"], r.json()["sha256"]), (n, pattern_sha256(n)), "chunked upload %d" % n)


def test_download_content_length_and_chunked():
    for chunked in ("0", "1"):
        for n in SIZES:
            r = PX.request("GET", "/dataverse/_test/bytes?n=%d&chunked=%s" % (n, chunked), hash_body=True)
            eq(r.status, 200, "status")
            eq((r.body_len, r.body_sha256), (n, pattern_sha256(n)), "download %d chunked=%s" % (n, chunked))


def test_echo_body_exact():
    body = bytes(range(256)) * 4
    r = PX.request("POST", "/dataverse/_test/echo", [("Content-Type", "application/json")], body)
    eq((r.json()["body_len"], r.json()["body_sha256"]), (1024, harness.sha256(body)), "echo")


def test_small_bodies_sent_from_memory():
    """A body with a Content-Length that fits buffer_size is taken whole and
    sent from memory: the verb, the exact bytes and the client's Content-Type
    (or none: curl must not invent a form type) reach the upstream."""
    for method, ctype, n in (("POST", None, 100), ("PUT", "application/json", 4096), ("PATCH", None, 0),
                             ("DELETE", "text/plain", 7), ("POST", "application/json", 65536)):
        hs = [("Content-Type", ctype)] if ctype else []
        body = pattern_gen(n) if n else b""
        r = PX.request(method, "/dataverse/_test/echo", hs + [("Content-Length", str(n))], body)
        eq(r.status, 200, "%s %d status" % (method, n))
        e = r.json()
        eq((e["method"], e["body_len"], e["body_sha256"]), (method, n, pattern_sha256(n)), "%s %d" % (method, n))
        got = [v for k, v in e["headers"] if k.lower() == "content-type"]
        eq(got, [ctype] if ctype else [], "%s %d content type upstream" % (method, n))
        eq([v for k, v in e["headers"] if k.lower() == "content-length"], [str(n)], "%s %d length" % (method, n))


def test_memory_stays_bounded():
    """64 MiB each way must not grow the proxy's peak RSS by more than a few MiB."""
    before = PX.status_kib("VmHWM")
    r = PX.request("GET", "/dataverse/_test/bytes?n=%d" % (64 << 20), hash_body=True)
    eq(r.body_sha256, pattern_sha256(64 << 20), "download")
    r = PX.request("POST", "/dataverse/_test/upload", None, pattern_gen(64 << 20), chunked=True)
    eq(r.json()["sha256"], pattern_sha256(64 << 20), "upload")
    grown = PX.status_kib("VmHWM") - before
    limit = 48 * 1024 if harness.os.environ.get("S2S_SANITIZED") else 8 * 1024
    assert grown < limit, "peak RSS grew by %d KiB" % grown
