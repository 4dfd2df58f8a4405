"""test_clients.py - real client stacks through the proxy's strict inbound
parser (libmicrohttpd client discipline level 2): the npm dynamics-web-api
library (what Node integrations use for Dataverse), Node's fetch (undici) and
http module, the curl CLI, Python's urllib, http.client and requests, and the
exact bytes .NET HttpClient and Windows PowerShell 5.1's Invoke-RestMethod
send (no .NET here: replayed over a raw socket, waiting for 100 Continue as
they do). Every case asserts the status and payload the simulated Dataverse
produced, fetched from the simulator directly for comparison (its absolute
URLs as the proxy rewrites them: rewrite_urls = auto), and that the
upstream saw the proxy's token, never the caller's.

One simulator and one proxy (plain HTTP on 127.0.0.1, default_routes) for
the module. dynamics-web-api is installed once into tests/.work (kept across
runs); without npm or the registry its tests are skipped. The library's
$batch names the proxy's URL in its parts: the upstream must see its own.

The last test is a finding: Node (fetch, and dynamics-web-api for an
alternate key) sends '{', '}', '|', '^' and '`' unencoded in the target,
which the strict parser refuses (400 bad_target). It expects the simulator's
answer, as a client of Dataverse itself gets; it fails until the proxy
takes those targets.
"""

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import unittest
import urllib.parse
import urllib.request

import harness
from harness import eq, CLIENT_ID, DATAVERSE_URL, Proxy, Sim, Work, pattern_bytes, proxy_ini, sha256

W = SIM = PX = None
CLIENTS = os.path.join(harness.REPO, "tests", "clients")
NPM_PREFIX = os.path.join(harness.WORK_BASE, "npm-dynamics-web-api")
DWA_ENTRY = os.path.join(NPM_PREFIX, "node_modules", "dynamics-web-api", "dist", "esm", "dynamics-web-api.mjs")
DV_HOST = "contoso.crm4.dynamics.com"
API = "/api/data/v9.2"
DUMMY = "dummy-caller-token"


def setup_module():
    global W, SIM, PX
    W = Work("test_clients")
    SIM = Sim(W).start()
    PX = Proxy(W, proxy_ini(SIM)).start()
    PX.wait_event(lambda e: e.get("event") == "token_acquired" and e.get("resource") == DATAVERSE_URL, 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()


# ---------------------------------------------------------------------------
# helpers

def child_env():
    """The environment for client processes: no proxy variables (curl, Node
    and the library honour http_proxy)."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def run(cmd, timeout=60, stdin=None):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=child_env(), cwd=W.dir)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


_sim_token = None


def sim_direct(method, target, headers=None, body=None):
    """The same request straight to the simulated Dataverse (TLS, own token)
    -> harness.Resp: what the simulator produces for it, with its absolute
    URLs in JSON string values as the proxy rewrites them (rewrite_urls =
    auto: the base the client used)."""
    global _sim_token
    if _sim_token is None:
        _sim_token = SIM.access_token(DATAVERSE_URL)
    hs = [("Authorization", "Bearer " + _sim_token), ("Accept", "application/json")] + list(headers or [])
    r = SIM.request(DV_HOST, method, target, hs, body)
    r.body = r.body.replace(b'"' + DATAVERSE_URL.encode(), b'"' + base_url().encode())
    return r


def sim_json(target):
    r = sim_direct("GET", target)
    eq(r.status, 200, "simulator's own answer to GET %s (%r)" % (target, r))
    return r.json()


def mark():
    return len(SIM.requests(5000))


def upstream_since(m):
    """What the upstream received through the proxy since mark() m (the
    tests' own direct requests, without X-Forwarded-For, left out)."""
    return [r for r in SIM.requests(5000)[m:] if any(k.lower() == "x-forwarded-for" for k, _ in r["headers"])]


def assert_proxy_token(recs, what):
    """Every upstream request carried one valid simulator-signed token for the
    proxy's app, nothing of the caller's."""
    assert recs, "%s: the upstream saw no request" % what
    for r in recs:
        auths = [v for k, v in r["headers"] if k.lower() == "authorization"]
        eq(r["auth"], "ok", "%s: token check of %s %s" % (what, r["method"], r["target"]))
        eq(r["appid"], CLIENT_ID, "%s: appid of the token on %s %s" % (what, r["method"], r["target"]))
        eq(len(auths), 1, "%s: Authorization headers on %s" % (what, r["target"]))
        assert auths[0].startswith("Bearer ey"), "%s: not the proxy's bearer token: %r" % (what, auths[0][:40])
        leaked = [h for h in r["headers"] if DUMMY in h[1]]
        eq(leaked, [], "%s: caller's dummy token reached the upstream" % what)


def shape(recs):
    return [(r["method"], r["target"], r["status"]) for r in recs]


def header_of(rec, name):
    vals = [v for k, v in rec["headers"] if k.lower() == name.lower()]
    return vals[0] if len(vals) == 1 else vals or None


def iso_ms(s):
    """dynamics-web-api turns ISO date strings into Dates: ...:00Z -> ...:00.000Z."""
    return re.sub(r"T(\d\d:\d\d:\d\d)Z$", r"T\1.000Z", s) if isinstance(s, str) else s


def as_library_sees(rec):
    """A simulator record as dynamics-web-api returns it (oDataContext added, dates as Date)."""
    out = {k: iso_ms(v) if k == "createdon" else v for k, v in rec.items()}
    if "@odata.context" in out:
        out["oDataContext"] = out["@odata.context"]
    return out


def check_upload(got, n, data_sha, what, chunked):
    eq(got, {"len": n, "sha256": data_sha, "chunked": chunked,
             "content_length": None if chunked else str(n)}, what + ": what the upstream received")


def need(tool):
    if not shutil.which(tool):
        raise unittest.SkipTest("skipped: %s is not installed" % tool)


def node_script(name, *args):
    need("node")
    rc, out, err = run(["node", os.path.join(CLIENTS, name)] + list(args))
    eq(rc, 0, "node %s exit status (stderr: %s)" % (name, err[-2000:]))
    return json.loads(out)


def base_url():
    return "http://127.0.0.1:%d/dataverse" % PX.port


# ---------------------------------------------------------------------------
# 1. dynamics-web-api (npm)

def dynamics_web_api():
    """dynamics-web-api@2's ESM entry, installed into tests/.work once (into a
    private directory renamed into place: two runs never share a half-done
    install), or SkipTest."""
    if os.path.exists(DWA_ENTRY):
        return DWA_ENTRY
    need("npm")
    tmp = "%s.tmp-%d" % (NPM_PREFIX, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", tmp, "dynamics-web-api@2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=180)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise unittest.SkipTest("skipped: npm registry did not answer in 180 s")
    if p.returncode != 0 or not os.path.exists(tmp + DWA_ENTRY[len(NPM_PREFIX):]):
        shutil.rmtree(tmp, ignore_errors=True)
        raise unittest.SkipTest("skipped: npm install dynamics-web-api@2 failed: %s"
                                % p.stderr.decode("utf-8", "replace").strip()[-300:])
    try:
        os.rename(tmp, NPM_PREFIX)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return DWA_ENTRY


def test_dynamics_web_api_crud_whoami_and_batch():
    entry = dynamics_web_api()
    # a filter with spaces, single quotes (OData literals, doubled inside), a
    # double quote and an ampersand: the library must percent-encode them
    odata_filter = "name eq 'Fourth Coffee (sample)' or name eq 'O''Brien \"Bros\" & Co'"
    # (encodeURIComponent keeps ' but Node's WHATWG URL then escapes it in a query)
    rm_target = (API + "/accounts?$select=name,accountid&$filter="
                 + urllib.parse.quote(odata_filter, safe="-_.!~*()") + "&$top=2")
    want_whoami = sim_json(API + "/WhoAmI()")
    want_rows = sim_json(rm_target)
    m = mark()
    # serverUrl needs its trailing slash: the library resolves "api/data/v9.2/"
    # against it with new URL(), which would drop a last segment /dataverse
    got = node_script("dynamics_web_api.mjs", entry, base_url() + "/", odata_filter)
    recs = upstream_since(m)
    assert_proxy_token(recs, "dynamics-web-api")
    want_rows_all = sim_json(API + "/accounts?$select=name")  # what the batch's GET saw (it ran last)

    eq(got["whoami"], {"value": as_library_sees(want_whoami)}, "callFunction('WhoAmI')")
    eq(got["retrieveMultiple"], {"value": {
        "@odata.context": want_rows["@odata.context"], "oDataContext": want_rows["@odata.context"],
        "value": [as_library_sees(r) for r in want_rows["value"]]}}, "retrieveMultiple")
    eq([r["name"] for r in want_rows["value"]], ["Fourth Coffee (sample)", "Litware, Inc. (sample)"],
       "seeded accounts")

    created = got["createReturn"].get("value")
    assert isinstance(created, dict), "create with returnRepresentation: %r" % got["createReturn"]
    aid = created["accountid"]
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", aid), aid
    eq(sorted(created), sorted(["name", "revenue", "accountid", "createdon", "@odata.context", "oDataContext"]),
       "fields of the created account")
    eq((created["name"], created["revenue"]), ('Contoso "Quoted" & Sons', 12.5), "created account's name, revenue")
    eq(created["@odata.context"], base_url() + API + "/$metadata#accounts/$entity", "@odata.context (rewritten)")
    # retrieve by id gives back exactly what create returned (the simulator's stored record)
    eq(got["retrieve"], {"value": created}, "retrieve of the created account")
    eq(got["update"], {"value": True}, "update")
    eq(got["retrieveUpdated"], {"value": dict(created, name="Renamed Ltd")}, "retrieve after update")
    eq(got["deleteRecord"], {"value": True}, "deleteRecord")
    eq(got["retrieveDeleted"], {"error": {"status": 404, "code": "0x80040217",
                                          "message": "account With Id = %s Does Not Exist" % aid}},
       "retrieve after delete")
    # create without returnRepresentation: the id comes from OData-EntityId
    plain = got["createPlain"].get("value")
    stored = sim_json(API + "/accounts(%s)" % plain)
    eq((stored["accountid"], stored["name"]), (plain, "Plain Create Ltd"), "simulator's record of the plain create")
    # $batch: the library writes absolute URLs of the proxy into the parts; the
    # upstream must see its own, and the answers' links come back as the proxy's
    eq(got["batch"], {"value": [as_library_sees(want_whoami),
                                dict(as_library_sees(dict(want_rows_all, value=[
                                    {k: iso_ms(v) if k == "createdon" else v for k, v in r.items()}
                                    for r in want_rows_all["value"]])))]}, "executeBatch")
    eq(got["tokenCalls"], 10, "onTokenRefresh calls (one per request)")

    acc = API + "/accounts(%s)" % aid
    eq(shape(recs), [
        ("GET", API + "/WhoAmI()", 200),
        ("GET", rm_target, 200),
        ("POST", API + "/accounts", 201),
        ("POST", API + "/accounts", 204),
        ("GET", acc + "?$select=name,revenue", 200),
        ("PATCH", acc, 204),
        ("GET", acc + "?$select=name", 200),
        ("DELETE", acc, 204),
        ("GET", acc, 404),
        ("POST", API + "/$batch", 200),
    ], "what the upstream received (method, target, status)")
    eq(recs[9]["batch_parts"], [["GET", DATAVERSE_URL + API + "/WhoAmI()"],
                                ["GET", DATAVERSE_URL + API + "/accounts?$select=name"]],
       "the batch's request lines as the upstream received them (public URL mapped back)")
    eq(header_of(recs[2], "Prefer"), "return=representation", "Prefer on create")
    eq(header_of(recs[5], "If-Match"), "*", "If-Match on update")
    ctype = header_of(recs[9], "Content-Type")
    assert re.match(r"^multipart/mixed;boundary=dwa_batch_[0-9a-f-]{36}$", ctype or ""), ctype
    body_len = int(header_of(recs[9], "Content-Length"))
    assert body_len > 200, "batch body length %d" % body_len


# ---------------------------------------------------------------------------
# 2. Node: fetch (undici) and the http module

def test_node_fetch_and_http_module():
    want_whoami = sim_json(API + "/WhoAmI")
    m = mark()
    got = node_script("node_http.mjs", base_url())
    recs = upstream_since(m)
    assert_proxy_token(recs, "node")

    eq(got["fetchGet"], {"status": 200, "contentType": "application/json; odata.metadata=minimal",
                         "body": want_whoami}, "fetch GET WhoAmI")
    post = got["fetchPostJson"]
    eq(post["status"], 201, "fetch POST status")
    aid = post["body"]["accountid"]
    eq(post["body"], sim_json(API + "/accounts(%s)" % aid), "fetch POST body = the simulator's record")
    eq((post["body"]["name"], post["body"]["numberofemployees"]), ("Undici Fetch GmbH", 42), "created fields")

    exp = got["streamExpect"]
    eq(exp["len"], 266544, "streamed length")
    eq(exp["sha256"], sha256(pattern_bytes(266544)), "the script's pattern matches harness.pattern_bytes")
    eq(got["fetchStream"]["status"], 200, "fetch streamed POST status")
    check_upload(got["fetchStream"]["body"], exp["len"], exp["sha256"], "fetch ReadableStream body", True)

    ch = got["httpChunked"]
    eq(ch["status"], 200, "http chunked POST status")
    echo = ch["body"]
    eq((echo["method"], echo["target"], echo["body_len"], echo["body_sha256"], echo["body_chunked"]),
       ("POST", "/_test/echo", 70015, sha256(pattern_bytes(70015)), True), "http chunked POST as echoed upstream")

    ka = got["keepAlive"]
    eq([(r["status"], r["reused"]) for r in ka], [(200, False), (201, True), (200, True), (201, True)],
       "keep-alive agent: statuses and socket reuse")
    eq(len({r["localPort"] for r in ka}), 1, "one client connection for all four requests")
    for i in (0, 2):
        eq(ka[i]["body"], want_whoami, "keep-alive GET %d body" % i)
    for i in (1, 3):
        eq(ka[i]["body"], sim_json(API + "/accounts(%s)" % ka[i]["body"]["accountid"]), "keep-alive POST %d" % i)
        eq(ka[i]["body"]["name"], "Keep-Alive Account %d" % i, "keep-alive POST %d name" % i)

    eq(shape(recs), [("GET", API + "/WhoAmI", 200), ("POST", API + "/accounts", 201),
                     ("POST", "/_test/upload", 200), ("POST", "/_test/echo", 200)]
       + [("GET", API + "/WhoAmI", 200), ("POST", API + "/accounts", 201)] * 2, "upstream requests")
    eq(header_of(recs[2], "Transfer-Encoding"), "chunked", "undici streamed body was chunked (as forwarded)")


class HeadLogger:
    """A raw HTTP server on 127.0.0.1 that records each request head as bytes
    and answers 204 with Connection: close: what a client really sends."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        d = c.recv(65536)
                        if not d:
                            break
                        buf += d
                    self.heads.append(buf.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
                    c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


# ---------------------------------------------------------------------------
# 3. curl CLI

def curl(*args, stdin=None):
    """curl -v --http1.1 ... -> (status, [(name, value)] of the final response, body, verbose text)."""
    need("curl")
    hdr, body = W.path("curl.headers"), W.path("curl.body")
    for p in (hdr, body):
        if os.path.exists(p):
            os.unlink(p)
    cmd = ["curl", "-sS", "-v", "--http1.1", "--max-time", "30", "-D", hdr, "-o", body, "-w", "%{http_code}"]
    rc, out, err = run(cmd + list(args), stdin=stdin)
    eq(rc, 0, "curl exit status (%s)" % err[-1500:])
    with open(hdr, "rb") as f:
        blocks = f.read().decode("latin-1").strip().split("\r\n\r\n")
    final = blocks[-1].split("\r\n")
    headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in final[1:] if ":" in ln]
    data = b""
    if os.path.exists(body):
        with open(body, "rb") as f:
            data = f.read()
    eq(int(out.decode()), int(final[0].split()[1]), "curl -w status vs header block")
    return int(out.decode()), headers, data, err


def sent_lines(verbose):
    return [ln[2:].rstrip("\r") for ln in verbose.splitlines() if ln.startswith("> ")]


def got_lines(verbose):
    return [ln[2:].rstrip("\r") for ln in verbose.splitlines() if ln.startswith("< ")]


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def test_curl_get_and_head():
    want = sim_direct("GET", API + "/WhoAmI")
    m = mark()
    st, hs, body, v = curl(base_url() + API + "/WhoAmI", "-H", "Accept: application/json")
    eq((st, json.loads(body)), (200, want.json()), "curl --http1.1 GET WhoAmI")
    assert "GET /dataverse%s/WhoAmI HTTP/1.1" % API in sent_lines(v), sent_lines(v)
    st, hs, body, v = curl("-I", base_url() + API + "/WhoAmI")
    eq(st, 200, "curl -I status")
    # -I writes the header block to the output: nothing may follow it
    eq(body.count(b"\r\n\r\n"), 1, "curl -I output is the header block only: %r" % body)
    assert body.endswith(b"\r\n\r\n"), body
    # the route rewrites JSON answers (rewrite_urls = auto): a GET goes out chunked, its
    # length unknown until the end, so the HEAD names none either
    eq((hget(hs, "Content-Type"), hget(hs, "Content-Length")),
       (want.header("Content-Type"), None), "HEAD Content-Type and Content-Length")
    assert "HEAD /dataverse%s/WhoAmI HTTP/1.1" % API in sent_lines(v), sent_lines(v)
    assert_proxy_token(upstream_since(m), "curl GET/HEAD")
    eq(shape(upstream_since(m)), [("GET", API + "/WhoAmI", 200), ("HEAD", API + "/WhoAmI", 200)], "upstream")


def test_curl_post_2mb_with_expect_100_continue():
    n = 2 << 20
    data = pattern_bytes(n)
    f = W.write("two-mb.bin", data)
    m = mark()
    st, hs, body, v = curl("--data-binary", "@" + f, "-H", "Content-Type: application/octet-stream",
                           base_url() + "/_test/upload")
    eq(st, 200, "curl 2 MB POST status")
    check_upload(json.loads(body), n, sha256(data), "curl 2 MB POST", False)
    assert "Expect: 100-continue" in sent_lines(v), "curl did not send Expect: %r" % sent_lines(v)
    assert "HTTP/1.1 100 Continue" in got_lines(v), "no 100 Continue from the proxy: %r" % got_lines(v)
    # the same with Expect disabled (-H 'Expect:'): the body follows the header at once
    st, hs, body, v = curl("--data-binary", "@" + f, "-H", "Content-Type: application/octet-stream",
                           "-H", "Expect:", base_url() + "/_test/upload")
    eq(st, 200, "curl 2 MB POST without Expect: status")
    check_upload(json.loads(body), n, sha256(data), "curl 2 MB POST without Expect", False)
    assert not [ln for ln in sent_lines(v) if ln.lower().startswith("expect")], sent_lines(v)
    eq([ln for ln in got_lines(v) if ln.startswith("HTTP/")], ["HTTP/1.1 200 OK"], "responses without Expect")
    assert_proxy_token(upstream_since(m), "curl POST")


def test_curl_upload_from_stdin_is_chunked():
    n = 300001
    data = pattern_bytes(n)
    m = mark()
    st, hs, body, v = curl("-T", "-", "-H", "Content-Type: application/octet-stream", base_url() + "/_test/upload",
                           stdin=data)
    eq(st, 200, "curl -T - status")
    check_upload(json.loads(body), n, sha256(data), "curl -T - (stdin)", True)
    assert "PUT /dataverse/_test/upload HTTP/1.1" in sent_lines(v), sent_lines(v)
    assert "Transfer-Encoding: chunked" in sent_lines(v), sent_lines(v)
    eq(shape(upstream_since(m)), [("PUT", "/_test/upload", 200)], "upstream")
    assert_proxy_token(upstream_since(m), "curl -T -")


def test_curl_compressed_and_percent_encoded_filter():
    m = mark()
    st, hs, body, v = curl("--compressed", base_url() + "/_test/echo")
    eq(st, 200, "curl --compressed status")
    ae = [ln.split(":", 1)[1].strip() for ln in sent_lines(v) if ln.lower().startswith("accept-encoding:")]
    eq(len(ae), 1, "curl sent Accept-Encoding")
    echo = json.loads(body)
    eq((echo["method"], echo["target"], echo["body_len"]), ("GET", "/_test/echo", 0), "echo")
    eq([vv for k, vv in echo["headers"] if k.lower() == "accept-encoding"], ae, "Accept-Encoding upstream")
    want = sim_direct("GET", API + "/WhoAmI")
    st, hs, body, v = curl("--compressed", base_url() + API + "/WhoAmI")
    eq((st, json.loads(body)), (200, want.json()), "curl --compressed WhoAmI (decoded)")

    target = API + "/accounts?$select=name&$filter=name%20eq%20%27Fourth%20Coffee%20(sample)%27%20or%20" \
                   "contains(name,%27%22x%22%27)&$top=1"
    want = sim_json(target)
    m2 = mark()
    st, hs, body, v = curl("-g", base_url() + target, "-H", "Accept: application/json")
    eq((st, json.loads(body)), (200, want), "curl GET with a percent-encoded OData filter")
    eq(shape(upstream_since(m2)), [("GET", target, 200)], "upstream target kept byte for byte")
    assert_proxy_token(upstream_since(m), "curl --compressed / filter")


# ---------------------------------------------------------------------------
# 4. Python: urllib.request, http.client, requests

def test_python_urllib():
    want = sim_json(API + "/WhoAmI")
    m = mark()
    with urllib.request.urlopen(urllib.request.Request(base_url() + API + "/WhoAmI",
                                                       headers={"Accept": "application/json"}), timeout=30) as r:
        eq((r.status, json.loads(r.read())), (200, want), "urllib GET WhoAmI")
    req = urllib.request.Request(base_url() + API + "/accounts", method="POST",
                                 data=json.dumps({"name": "Urllib \u00c9tude S.A."}).encode(),
                                 headers={"Content-Type": "application/json; charset=utf-8",
                                          "Prefer": "return=representation", "OData-Version": "4.0"})
    with urllib.request.urlopen(req, timeout=30) as r:
        status, got = r.status, json.loads(r.read())
    eq(status, 201, "urllib POST status")
    eq(got, sim_json(API + "/accounts(%s)" % got["accountid"]), "urllib POST body = simulator's record")
    eq(got["name"], "Urllib \u00c9tude S.A.", "name (UTF-8 body)")
    eq(shape(upstream_since(m)), [("GET", API + "/WhoAmI", 200), ("POST", API + "/accounts", 201)], "upstream")
    assert_proxy_token(upstream_since(m), "urllib")


def test_python_http_client():
    want = sim_json(API + "/WhoAmI")
    m = mark()
    c = http.client.HTTPConnection("127.0.0.1", PX.port, timeout=30)
    try:
        c.request("GET", "/dataverse" + API + "/WhoAmI", headers={"Accept": "application/json"})
        r = c.getresponse()
        eq((r.status, json.loads(r.read())), (200, want), "http.client GET")
        c.request("POST", "/dataverse" + API + "/accounts", body=json.dumps({"name": "HTTP Client Ltd"}),
                  headers={"Content-Type": "application/json", "Prefer": "return=representation"})
        r = c.getresponse()
        status, got = r.status, json.loads(r.read())
        eq(status, 201, "http.client POST JSON status (same connection)")
        eq(got, sim_json(API + "/accounts(%s)" % got["accountid"]), "http.client POST body")
        n = 150000
        data = pattern_bytes(n)
        parts = [data[:1], data[1:4097], data[4097:]]
        c.request("POST", "/dataverse/_test/upload", body=iter(parts), encode_chunked=True,
                  headers={"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"})
        r = c.getresponse()
        eq(r.status, 200, "http.client chunked POST status")
        check_upload(json.loads(r.read()), n, sha256(data), "http.client encode_chunked", True)
    finally:
        c.close()
    recs = upstream_since(m)
    eq(shape(recs), [("GET", API + "/WhoAmI", 200), ("POST", API + "/accounts", 201),
                     ("POST", "/_test/upload", 200)], "upstream")
    assert_proxy_token(recs, "http.client")


def requests_module():
    try:
        import requests
        return requests
    except ImportError:
        pass
    p = subprocess.run(["apt-get", "install", "-y", "python3-requests"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300)
    try:
        import requests
        return requests
    except ImportError:
        raise unittest.SkipTest("skipped: python3-requests not installed and apt-get failed: %s"
                                % p.stdout.decode("utf-8", "replace").strip()[-300:])


def test_python_requests():
    requests = requests_module()
    odata_filter = "name eq 'Fourth Coffee (sample)'"
    s = requests.Session()
    s.trust_env = False  # no proxy variables, no .netrc
    try:
        prep = s.prepare_request(requests.Request("GET", base_url() + API + "/accounts",
                                                  params={"$select": "name", "$filter": odata_filter}))
        target = prep.path_url[len("/dataverse"):]
        eq(target, API + "/accounts?%24select=name&%24filter=name+eq+%27Fourth+Coffee+%28sample%29%27",
           "requests' encoding of the query")
        want = sim_json(target)
        m = mark()
        r = s.send(prep, timeout=30)
        eq((r.status_code, r.json()), (200, want), "requests GET with params")
        r = s.post(base_url() + API + "/accounts", json={"name": "Requests & Co"},
                   headers={"Prefer": "return=representation"}, timeout=30)
        eq(r.status_code, 201, "requests POST json status")
        eq(r.json(), sim_json(API + "/accounts(%s)" % r.json()["accountid"]), "requests POST json body")
        n = 99999
        data = pattern_bytes(n)
        r = s.post(base_url() + "/_test/upload", data=(data[i:i + 8192] for i in range(0, n, 8192)), timeout=30)
        eq(r.status_code, 200, "requests generator POST status")
        check_upload(r.json(), n, sha256(data), "requests generator body (chunked)", True)
        recs = upstream_since(m)
        eq(shape(recs), [("GET", target, 200), ("POST", API + "/accounts", 201), ("POST", "/_test/upload", 200)],
           "upstream")
        assert_proxy_token(recs, "requests")
    finally:
        s.close()


# ---------------------------------------------------------------------------
# 5. .NET HttpClient and Windows PowerShell 5.1 as raw bytes

def read_response(sock, buf=b""):
    """Read one complete HTTP/1.1 response (Content-Length, chunked or none
    for 1xx/204/304) -> (status, head bytes, body bytes, leftover)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise AssertionError("connection closed before a response head; got %r" % buf)
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if 100 <= status < 200 or status in (204, 304):
        return status, head, b"", rest
    if "chunked" in hs.get("transfer-encoding", "").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            d = sock.recv(65536)
            if not d:
                raise AssertionError("connection closed inside a chunked body")
            rest += d
        return status, head, harness.parse_responses(head + b"\r\n\r\n" + rest)[0].body, b""
    n = int(hs.get("content-length", "0"))
    while len(rest) < n:
        d = sock.recv(65536)
        if not d:
            raise AssertionError("connection closed inside the body (%d of %d)" % (len(rest), n))
        rest += d
    return status, head, rest[:n], rest[n:]


def expect_exchange(head, body):
    """Send the head; with Expect: 100-continue wait for the interim 100
    before the body (as HttpClient and HttpWebRequest do) -> list of
    (status, head, body) received, interim ones included."""
    s = socket.create_connection(("127.0.0.1", PX.port), timeout=15)
    got = []
    try:
        s.sendall(head)
        left = b""
        if b"\r\nExpect: 100-continue\r\n" in head:
            st, h, b, left = read_response(s)
            got.append((st, h, b))
            if st != 100:
                return got
        s.sendall(body)
        st, h, b, left = read_response(s, left)
        got.append((st, h, b))
    finally:
        s.close()
    return got


def resp_header(head, name):
    for ln in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def test_dotnet_httpclient_post_with_expect_continue():
    body = json.dumps({"name": "Dotnet HttpClient Corp", "telephone1": "+1 425 555 0100"},
                      separators=(",", ":")).encode()
    head = ("POST /dataverse%s/accounts HTTP/1.1\r\n"
            "Host: 127.0.0.1:%d\r\n"
            "Accept: application/json\r\n"
            "OData-MaxVersion: 4.0\r\n"
            "OData-Version: 4.0\r\n"
            "Prefer: return=representation\r\n"
            "Expect: 100-continue\r\n"
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            "Content-Length: %d\r\n"
            "\r\n" % (API, PX.port, len(body))).encode()
    m = mark()
    got = expect_exchange(head, body)
    eq([g[0] for g in got], [100, 201], "statuses: interim 100 Continue, then 201 (bytes sent: %r)" % head)
    assert got[0][1].startswith(b"HTTP/1.1 100 Continue"), got[0][1]
    rec = json.loads(got[1][2])
    eq(rec, sim_json(API + "/accounts(%s)" % rec["accountid"]), ".NET POST body = the simulator's record")
    eq((rec["name"], rec["telephone1"]), ("Dotnet HttpClient Corp", "+1 425 555 0100"), "created fields")
    eq(resp_header(got[1][1], "OData-EntityId"), base_url() + API + "/accounts(%s)" % rec["accountid"],
       "OData-EntityId (rewritten to the proxy's URL)")
    recs = upstream_since(m)
    eq(shape(recs), [("POST", API + "/accounts", 201)], "upstream")
    eq(header_of(recs[0], "traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "traceparent")
    assert_proxy_token(recs, ".NET HttpClient")


PS_UA = "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.4648"


def test_powershell_invoke_restmethod_get_and_post():
    want = sim_json(API + "/WhoAmI")
    head = ("GET /dataverse%s/WhoAmI HTTP/1.1\r\n"
            "User-Agent: %s\r\n"
            "Host: 127.0.0.1:%d\r\n"
            "Connection: Keep-Alive\r\n"
            "\r\n" % (API, PS_UA, PX.port)).encode()
    m = mark()
    got = expect_exchange(head, b"")
    eq([(g[0], json.loads(g[2])) for g in got], [(200, want)], "Invoke-RestMethod GET (bytes sent: %r)" % head)

    body = json.dumps({"name": "PowerShell Integration", "accountnumber": "PS-0051"}).encode()
    # Invoke-RestMethod -Method Post -ContentType application/json -Headers @{Prefer=...}
    head = ("POST /dataverse%s/accounts HTTP/1.1\r\n"
            "Prefer: return=representation\r\n"
            "User-Agent: %s\r\n"
            "Content-Type: application/json\r\n"
            "Host: 127.0.0.1:%d\r\n"
            "Content-Length: %d\r\n"
            "Expect: 100-continue\r\n"
            "Connection: Keep-Alive\r\n"
            "\r\n" % (API, PS_UA, PX.port, len(body))).encode()
    got = expect_exchange(head, body)
    eq([g[0] for g in got], [100, 201], "Invoke-RestMethod POST statuses (bytes sent: %r)" % head)
    rec = json.loads(got[1][2])
    eq(rec, sim_json(API + "/accounts(%s)" % rec["accountid"]), "PowerShell POST body = the simulator's record")
    eq((rec["name"], rec["accountnumber"]), ("PowerShell Integration", "PS-0051"), "created fields")
    recs = upstream_since(m)
    eq(shape(recs), [("GET", API + "/WhoAmI", 200), ("POST", API + "/accounts", 201)], "upstream")
    eq(header_of(recs[0], "User-Agent"), PS_UA, "User-Agent forwarded")
    assert_proxy_token(recs, "PowerShell")


def test_proxy_stayed_clean():
    """Nothing above was refused at the front door, and the proxy is still up."""
    refused = [e for e in PX.events() if e.get("event") == "request" and e.get("status", 0) >= 400
               and e.get("error")]
    eq(refused, [], "requests the proxy itself refused")
    assert PX.alive(), "proxy died"


# ---------------------------------------------------------------------------
# last: a finding (refused today), after test_proxy_stayed_clean so that one
# stays about the shapes above

def test_node_unencoded_ascii_in_urls():
    """Node's fetch and dynamics-web-api send '{', '}', '|', '^' and '`' raw
    in a target written without manual encoding (WHATWG URL leaves them be).
    Dataverse takes such targets; through the proxy they must get the
    simulator's answer too. The exact bytes are captured first, for the report."""
    entry = dynamics_web_api()
    log = HeadLogger()
    try:
        node_script("node_unencoded.mjs", "http://127.0.0.1:%d/dataverse" % log.port, entry)
    finally:
        log.close()
    sent = {}
    for h in log.heads:
        line = h.split(b"\r\n", 1)[0].decode("latin-1")
        sent[line.split(" ")[1][len("/dataverse"):]] = h
    eq(len(sent), 4, "request heads captured: %r" % log.heads)
    for t in sent:
        assert any(ch in t for ch in "{}|^`"), "a target without the characters under test: %r" % t
    m = mark()
    got = node_script("node_unencoded.mjs", base_url(), entry)
    targets = {}
    for t in sent:
        if "$filter=contains(name,%27{x}%27)" in t:
            targets["braces"] = t
        elif "A|B^C" in t:
            targets["pipeCaret"] = t
        elif "a`b" in t:
            targets["backquote"] = t
        else:
            targets["alternateKey"] = t
    eq(sorted(targets), ["alternateKey", "backquote", "braces", "pipeCaret"], "cases captured: %r" % sorted(sent))
    eq(targets["alternateKey"], API + "/accounts(accountnumber='A|B')", "dynamics-web-api alternate key target")
    assert b"\r\nAuthorization: Bearer %s\r\n" % DUMMY.encode() in sent[targets["alternateKey"]], \
        "dynamics-web-api sends its onTokenRefresh token: %r" % sent[targets["alternateKey"]]
    wrong = []
    for name, t in sorted(targets.items()):
        want = sim_direct("GET", t)
        if name == "alternateKey":
            w = want.json()["error"]
            expect = {"error": {"status": want.status, "code": w["code"], "message": w["message"]}}
        else:
            eq(want.status, 200, "the simulator's own answer to %s" % t)
            expect = {"status": want.status, "body": want.text}
        if got[name] != expect:
            wrong.append("%s: sent %r; expected %r; got %r" % (name, sent[t], expect, got[name]))
    assert not wrong, "the proxy refused what Node sends:\n" + "\n".join(wrong)
    eq(sorted(r["target"] for r in upstream_since(m)), sorted(targets.values()), "targets the upstream received")
    assert_proxy_token(upstream_since(m), "unencoded ASCII")
