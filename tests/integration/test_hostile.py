"""test_hostile.py - the hostile-input corpus (tests/data/hostile/cases.txt).

Each case sends raw bytes to the proxy on a fresh connection and asserts
what the client got (statuses, problem code, exact bodies, whether the
connection was closed) and exactly what a raw recording upstream
(tests/lib/recorder.py) received: nothing, the exact request(s) with the
bearer token and request id as placeholders, or an unfinished request.

One test per case (test_<name>), in corpus order. A case flagged `xfail` is a
known bug: it still runs, and its failure is reported as a skip line (with
what was seen); if it passes, the skip line says XPASS so the flag can go
(HOSTILE_STRICT_XFAIL=1 makes an XPASS a failure).

Routes: /rec/ -> https://contoso.crm4.dynamics.com (the recorder, through
connect_to; strip_prefix off), /keyed/ -> the same, with an inbound key,
/small/ -> the same, with max_body_bytes = 1k.
Tokens come from the simulated Entra.
"""

import json
import os
import re
import socket
import sys
import time
import unittest

import harness
from harness import Proxy, Sim, Work, proxy_ini

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import corpus  # noqa: E402
from recorder import Recorder  # noqa: E402

INBOUND_KEY = "hostile-inbound-key-0123456789"
W = SIM = REC = PX = None
CASES = corpus.load()
STRICT_XFAIL = os.environ.get("HOSTILE_STRICT_XFAIL") == "1"
SLOW = 2.0 if os.environ.get("S2S_SANITIZED") else 1.0
IDLE = 1.5  # seconds to wait for more bytes (or the close) after an answer


def setup_module():
    global W, SIM, REC, PX
    W = Work("test_hostile")
    SIM = Sim(W, "entra").start(roles=["entra"])
    REC = Recorder(W.ca["cert"], W.ca["key"]).start()
    key_file = W.write("inbound-key.txt", INBOUND_KEY, 0o600)
    routes = {
        "rec": {"match_path": "/rec/", "strip_prefix": "false", "upstream": harness.DATAVERSE_URL,
                "audience": "dataverse", "credential": "contoso"},
        "small": {"match_path": "/small/", "strip_prefix": "false", "upstream": harness.DATAVERSE_URL,
                  "audience": "dataverse", "credential": "contoso", "max_body_bytes": "1k"},
        "keyed": {"match_path": "/keyed/", "strip_prefix": "false", "upstream": harness.DATAVERSE_URL,
                  "audience": "dataverse", "credential": "contoso", "inbound_key_file": key_file},
    }
    # one worker: every case shares one libcurl connection cache, so "a reused
    # upstream connection" is deterministic
    ini = proxy_ini(SIM, REC, routes=routes, extra_proxy={"workers": 1, "client_timeout": "10s"})
    PX = Proxy(W, ini).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    try:
        if PX:
            PX.stop()  # raises on a sanitizer report
    finally:
        if REC:
            REC.stop()
        if SIM:
            SIM.stop()


# ---------------------------------------------------------------------------
# the client side


class Reply:
    def __init__(self):
        self.data = b""
        self.closed = False  # the proxy closed (EOF or reset)
        self.responses = []  # (status, headers [(name, value)], body)
        self.rest = b""  # bytes after the last complete response
        self.error = None  # a framing error in what the proxy sent
        self.elapsed = 0.0
        self.send_error = None  # the proxy reset the connection while the client was sending


def _parse_one(data, method):
    """-> (status, headers, body, consumed) | None (incomplete). Raises ValueError."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) >= 9 and not data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.0 "):
            raise ValueError("not a status line: %r" % data[:80])
        return None
    head = data[:end].decode("latin-1")
    lines = head.split("\r\n")
    m = re.fullmatch(r"HTTP/1\.[01] (\d{3}) [^\r\n]*", lines[0])
    if not m:
        raise ValueError("bad status line %r" % lines[0][:80])
    status = int(m.group(1))
    hs = []
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if not sep:
            raise ValueError("bad response header line %r" % ln[:80])
        hs.append((k.strip(), v.strip()))
    get = {}
    for k, v in hs:
        get.setdefault(k.lower(), v)
    pos = end + 4
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, hs, b"", pos
    if "chunked" in get.get("transfer-encoding", "").lower():
        body = b""
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_s = data[pos:eol].split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_s):
                raise ValueError("bad chunk size line %r" % data[pos:eol][:80])
            size = int(size_s, 16)
            pos = eol + 2
            if size == 0:
                break
            if len(data) < pos + size + 2:
                return None
            if data[pos + size:pos + size + 2] != b"\r\n":
                raise ValueError("no CRLF after chunk data")
            body += data[pos:pos + size]
            pos += size + 2
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return None
            empty = eol == pos
            pos = eol + 2
            if empty:
                return status, hs, body, pos
    if "content-length" in get:
        n = int(get["content-length"])
        if len(data) < pos + n:
            return None
        return status, hs, data[pos:pos + n], pos + n
    return None  # delimited by close: complete only at EOF (handled by the caller)


def exchange(case, mark):
    """Send case.send on a fresh connection, read the replies -> Reply."""
    want = len(case.statuses)
    methods = case.methods
    r = Reply()
    t0 = time.time()
    deadline = t0 + case.timeout * SLOW
    buf = b""
    last_data = t0
    s = socket.create_connection(("127.0.0.1", PX.port), timeout=5)
    try:
        s.settimeout(case.timeout * SLOW)
        for i, part in enumerate(case.send_parts):
            if i:
                REC.wait(lambda: any(b"\r\n\r\n" in c.data[mark.get(c.id, 0):] for c in REC.conns),
                         case.timeout * SLOW)
            try:
                s.sendall(part)
            except OSError as e:  # the proxy may close before reading everything: see what it sent
                r.send_error = "%s after %.1fs" % (e.__class__.__name__, time.time() - t0)
                break
        while True:
            while r.error is None and buf:
                meth = methods[len(r.responses)] if len(r.responses) < len(methods) else "GET"
                try:
                    one = _parse_one(buf, meth)
                except ValueError as e:
                    r.error = str(e)
                    break
                if one is None:
                    break
                status, hs, body, used = one
                buf = buf[used:]
                if not 100 <= status < 200:
                    r.responses.append((status, hs, body))
            if r.error or r.closed:
                break
            if len(r.responses) >= want and not case.close:
                break
            # the first answer may take the whole case timeout; after an
            # answer, the next bytes (or the close) come at once or never
            end = deadline if not r.responses else min(deadline, last_data + IDLE * SLOW)
            left = end - time.time()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                d = b""
            if not d:
                r.closed = True
                # a response without Content-Length or chunked: its body ends at the close
                end = buf.find(b"\r\n\r\n")
                m = re.match(rb"HTTP/1\.[01] (\d{3}) ", buf)
                if r.error is None and m and end >= 0 and not re.search(
                        rb"(?i)\r\n(content-length|transfer-encoding):", buf[:end + 2]):
                    r.responses.append((int(m.group(1)), [], buf[end + 4:]))
                    buf = b""
                break
            r.data += d
            buf += d
            last_data = time.time()
    finally:
        s.close()
    r.rest = buf
    r.elapsed = time.time() - t0
    return r


def describe(r):
    return "client got %d response(s) %s, closed=%s, %.1fs, send error %s, unparsed %r%s; raw %r" % (
        len(r.responses), [x[0] for x in r.responses], r.closed, r.elapsed, r.send_error, r.rest[:120],
        ", framing error: " + r.error if r.error else "", r.data[:600])


def check_client(case, r):
    got = [x[0] for x in r.responses]
    assert r.error is None, "response framing error; " + describe(r)
    want = case.statuses
    dropped = (len(got) == len(want) - 1 and 0 in want[-1] and r.closed and not r.rest)
    ok = (len(got) == len(want) or dropped) and all(g in w for g, w in zip(got, want))
    assert ok, "expected statuses %s; %s" % (case.fields["expect"], describe(r))
    if case.code and not dropped:
        status, hs, body = r.responses[-1]
        ctype = dict((k.lower(), v) for k, v in hs).get("content-type", "")
        assert ctype.startswith("application/problem+json"), "expected problem+json, got %r; %s" % (
            ctype, describe(r))
        code = json.loads(body).get("code")
        assert code == case.code, "expected problem code %r, got %r; %s" % (case.code, code, describe(r))
    for i, body in enumerate(case.bodies):
        assert r.responses[i][2] == body, "response %d body: expected %r, got %r" % (i, body, r.responses[i][2])
    if case.drained:
        assert r.send_error is None, "the client could not send the whole request (no lingering close); " + \
            describe(r)
    if case.close:
        assert r.closed, "the proxy did not close the connection; " + describe(r)
        assert r.rest == b"", "bytes after the last response; " + describe(r)
    elif r.rest:
        raise AssertionError("bytes after the last response; " + describe(r))


# ---------------------------------------------------------------------------
# the upstream side

TOKEN_RE = rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
RID_RE = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def request_pattern(want):
    """Expected request bytes with <TOKEN>/<RID> -> compiled regex."""
    out, first_rid = b"", True
    for part in re.split(rb"(<TOKEN>|<RID>)", want):
        if part == b"<TOKEN>":
            out += TOKEN_RE
        elif part == b"<RID>":
            out += (b"(?P<rid>" + RID_RE + b")") if first_rid else b"(?P=rid)"
            first_rid = False
        else:
            out += re.escape(part)
    return re.compile(out, re.S)


def show(b, n=1500):
    b = re.sub(rb"Bearer " + TOKEN_RE, b"Bearer <TOKEN>", b)
    return repr(b[:n]) + ("...(%d bytes)" % len(b) if len(b) > n else "")


def _conns(got):
    return "; ".join("conn %d: %s" % (cid, show(d)) for cid, d, _, _ in got) or "nothing"


def _check_none(case, got, reqs, total):
    assert total == 0, "the upstream received %d bytes: %s" % (total, _conns(got))


def _check_exact(case, got, reqs, total):
    want = case.up
    assert len(reqs) == len(want), "the upstream received %d complete request(s), expected %d: %s" % (
        len(reqs), len(want), _conns(got))
    for i, (g, w) in enumerate(zip(reqs, want)):
        assert request_pattern(w).fullmatch(g), "upstream request %d:\n expected %s\n got      %s" % (
            i + 1, show(w), show(g))
    assert total == sum(len(q) for q in reqs), "the upstream received bytes beyond the requests: " + _conns(got)


def _check_incomplete(case, got, reqs, total):
    assert total > 0 and b"\r\n\r\n" in got[0][1], "the upstream saw no request head: " + _conns(got)
    assert not reqs, "the upstream received a complete request: %s" % show(reqs[0])
    open_ = [cid for cid, _, _, closed in got if not closed]
    assert not open_, "the proxy left the unfinished upstream request open (conn %s)" % open_


CHECKS = {"none": _check_none, "exact": _check_exact, "incomplete": _check_incomplete}


def check_upstream(case, mark):
    if "incomplete" in case.upstreams:
        # the proxy must end an upstream request it could not finish
        REC.wait(lambda: all(c.closed or c.parsed == len(c.data) for c in REC.conns
                             if len(c.data) > mark.get(c.id, 0)), 3 * SLOW)
    got = REC.since(mark)
    reqs = [q for _, _, rq, _ in got for q in rq]
    total = sum(len(d) for _, d, _, _ in got)
    errors = []
    for kind in case.upstreams:
        try:
            CHECKS[kind](case, got, reqs, total)
            return
        except AssertionError as e:
            errors.append("%s: %s" % (kind, e) if len(case.upstreams) > 1 else str(e))
    raise AssertionError(" | ".join(errors))


# ---------------------------------------------------------------------------
# running one case


def run_case(case):
    # no request of an earlier case may still be arriving upstream, nor bytes of
    # one still be on their way into the recording
    REC.wait(lambda: not any(not c.closed and c.parsed < len(c.data) for c in REC.conns), 3 * SLOW)
    REC.wait(REC.settled, 3 * SLOW)
    assert PX.alive(), "the proxy is not running"
    mark = REC.mark()
    r = exchange(case, mark)
    try:
        check_client(case, r)
        check_upstream(case, mark)
    except AssertionError as e:
        if case.xfail:
            raise unittest.SkipTest("xfail (%s): %s" % (case.xfail, str(e).replace("\n", " ")[:900]))
        raise
    assert PX.alive(), "the proxy died on this case"
    if case.xfail:
        msg = "XPASS %s: passes now, remove its xfail flag (%s)" % (case.name, case.xfail)
        if STRICT_XFAIL:
            raise AssertionError(msg)
        raise unittest.SkipTest(msg)


def test_corpus_is_large_enough():
    assert len(CASES) >= 150, "the corpus holds %d cases" % len(CASES)


def _make(case):
    def t():
        run_case(case)
    t.__name__ = "test_" + case.name
    t.__qualname__ = t.__name__
    t.__doc__ = case.note
    return t


for _c in CASES:
    globals()["test_" + _c.name] = _make(_c)
del _c


def test_proxy_survived():
    assert PX.alive(), "the proxy exited"
    rep = PX.sanitizer_report()
    assert rep is None, rep
