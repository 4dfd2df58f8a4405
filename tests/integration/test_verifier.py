"""test_verifier.py - Basic passwords are checked (crypt(3)) on the
verifier thread, never on a worker: a slow check stalls no other client on
the same worker, concurrent first requests with the same credentials cost
one check, a wrong password is still a 401 with the challenge, and a
client that leaves while its check is pending leaves nothing behind."""

import base64
import hashlib
import concurrent.futures
import ctypes
import ctypes.util
import socket
import urllib.request

import harness
from harness import Proxy, Sim, Work, eq, proxy_ini, wait_for

W = SIM = PX = None
ADMIN = HASH = None
BC_COMPANIES = "/bc/v2.0/production/api/v2.0/companies"
OPEN = "/dataverse/_test/echo"
PW = "slow-password-0123456789"


def slow_hash(pw):
    """yescrypt with cost 11 (1 GiB, a second or two): slow on purpose, so
    the check is still pending while other requests come and go."""
    lc = ctypes.CDLL(ctypes.util.find_library("crypt"))
    lc.crypt_gensalt.restype = ctypes.c_char_p
    lc.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lc.crypt.restype = ctypes.c_char_p
    lc.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lc.crypt_gensalt(b"$y$", 11, None, 0)
    assert setting and setting.startswith(b"$y$jFT$"), setting
    h = lc.crypt(pw.encode(), setting)
    assert h and h.startswith(setting), h
    return h.decode()


def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def setup_module():
    global W, SIM, PX, ADMIN, HASH
    W = Work("test_verifier")
    SIM = Sim(W).start()
    routes = harness.default_routes()
    routes["bc"] = dict(routes["bc"], callers="slow1, slow2, slow3, slow4, slow5, slow6")
    text = proxy_ini(SIM, work=W, routes=routes, extra_proxy={"admin_listen": "127.0.0.1:0", "workers": "1"})
    h = HASH = slow_hash(PW)  # one hash, six callers: the caller's name is in the cache key
    for n in range(1, 7):
        text += "\n[caller:slow%d]\nbasic_user = SLOW%d\nbasic_password_hash = %s\n" % (n, n, h)
    PX = Proxy(W, text, name="verifier").start()
    ADMIN = PX.wait_event("admin_listening", 10)["port"]
    eq(PX.request("GET", OPEN).status, 200, "first token")
    PX.wait_event("request", 10)  # logged: the tests' marks come after it


def teardown_module():
    if PX:
        PX.stop()  # raises on an ASan/LSan report
    if SIM:
        SIM.stop()


def metric(name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN, timeout=10) as f:
        for line in f.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def checks(result):
    return metric('s2s_caller_verifications_total{result="%s"}' % result)


def waits(mark):
    return [e for e in PX.events()[mark:] if e.get("event") == "caller_check_wait"]


def test_slow_check_does_not_stall_the_worker():
    mark, ok0 = len(PX.events()), checks("ok")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(PX.request, "GET", BC_COMPANIES, [("Authorization", basic("SLOW1", PW))], timeout=60)
        wait_for("the check is queued", lambda: waits(mark), timeout=10)
        # the same (only) worker answers 20 other requests meanwhile
        for i in range(20):
            eq(PX.request("GET", OPEN + "?i=%d" % i).status, 200, "open route")
        eq(checks("ok"), ok0, "checks done while the 20 were answered")
        eq(slow.result().status, 200, "the Basic client, once checked")
    eq(checks("ok"), ok0 + 1, "checks")
    wait_for("the Basic request logged",  # the line is written after the answer went out
             lambda: [e for e in PX.events()[mark:] if e.get("event") == "request" and e.get("caller") == "slow1"])
    done = [e for e in PX.events()[mark:] if e.get("event") == "request"]
    eq([e.get("caller") for e in done], ["-"] * 20 + ["slow1"], "completion order")


def test_concurrent_first_requests_cost_one_check():
    ok0, bad0 = checks("ok"), checks("bad")
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        futs = [ex.submit(PX.request, "GET", BC_COMPANIES, [("Authorization", basic("SLOW2", PW))], timeout=60)
                for _ in range(10)]
        eq([f.result().status for f in futs], [200] * 10, "statuses")
    eq((checks("ok"), checks("bad")), (ok0 + 1, bad0), "checks (ok, bad)")


def test_wrong_password_gets_challenge_and_no_upstream_request():
    before, bad0 = SIM.stats()["upstream_requests"], checks("bad")
    for _ in range(2):  # the second is answered from the cache
        r = PX.request("GET", BC_COMPANIES, [("Authorization", basic("SLOW2", PW + "x"))], timeout=60)
        eq(r.status, 401, "status")
        eq(r.json()["code"], "caller_unauthorized", "problem code")
        eq(r.header("WWW-Authenticate"), 'Basic realm="s2s-proxy", charset="UTF-8"', "challenge")
    eq(checks("bad"), bad0 + 1, "checks")
    eq(SIM.stats()["upstream_requests"], before, "upstream requests")


def test_client_gone_while_its_check_is_pending():
    mark, bad0 = len(PX.events()), checks("bad")
    auth = basic("SLOW3", "gone-" + PW)
    s = socket.create_connection(("127.0.0.1", PX.port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: p\r\nAuthorization: %s\r\n\r\n" % (BC_COMPANIES, auth)).encode())
    wait_for("the check is queued", lambda: waits(mark), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    s.close()
    e = PX.wait_event(lambda e: e.get("event") == "request" and e.get("request_id") == waits(mark)[0]["request_id"],
                      10)
    assert e.get("termination") in ("client_abort", "error"), e  # a reset: MHD may call it either
    wait_for("no request in flight", lambda: metric("s2s_requests_in_flight") == 0, timeout=10)
    wait_for("the result is kept", lambda: checks("bad") == bad0 + 1, timeout=30)
    # the same credentials again: answered from the cache, no second check
    r = PX.request("GET", BC_COMPANIES, [("Authorization", auth)], timeout=60)
    eq(r.status, 401, "status")
    eq(checks("bad"), bad0 + 1, "checks")
    eq(len(waits(mark)), 1, "requests that waited for a check")
    eq(PX.request("GET", OPEN).status, 200, "still serving")


def test_body_flows_while_the_check_is_pending():
    """A body that fits the ring (taken whole first), a larger one (streams)
    and a chunked one: each waits for its check, then goes upstream whole."""
    for user, n, chunked in (("SLOW4", 1000, False), ("SLOW5", 4 << 20, False), ("SLOW6", 300000, True)):
        mark = len(PX.events())
        body = bytes(i % 251 for i in range(n))
        r = PX.request("POST", "/bc/_test/upload", [("Authorization", basic(user, PW))], body=body, chunked=chunked,
                       timeout=60)
        eq(r.status, 200, "%s status" % user)
        eq((r.json()["len"], r.json()["sha256"]), (n, hashlib.sha256(body).hexdigest()), "%s body upstream" % user)
        eq(len(waits(mark)), 1, "%s waited for its check" % user)


def test_check_longer_than_the_wait_gets_503_and_its_result_is_kept():
    """token_wait_timeout bounds the wait for a check too; the check goes on
    and its result is cached for the client's retry."""
    global ADMIN
    routes = harness.default_routes()
    routes["bc"] = dict(routes["bc"], callers="slow1")
    text = proxy_ini(SIM, work=W, routes=routes, extra_proxy={"admin_listen": "127.0.0.1:0", "workers": "1",
                                                               "token_wait_timeout": "1s"})
    text += "\n[caller:slow1]\nbasic_user = SLOW1\nbasic_password_hash = %s\n" % HASH
    px, admin = Proxy(W, text, name="verifier-wait").start(), ADMIN
    try:
        ADMIN = px.wait_event("admin_listening", 10)["port"]
        hdrs = [("Authorization", basic("SLOW1", PW))]
        r = px.request("GET", BC_COMPANIES, hdrs, timeout=60)
        eq((r.status, r.json()["code"], r.header("Retry-After")), (503, "caller_verify_timeout", "1"), "answer")
        wait_for("the check done", lambda: checks("ok") == 1, timeout=30)
        eq(px.request("GET", BC_COMPANIES, hdrs, timeout=60).status, 200, "the retry")
        eq(checks("ok"), 1, "checks")
    finally:
        ADMIN = admin
        px.stop()
