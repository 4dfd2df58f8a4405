"""test_ops.py - what operators see: the admin listener (/healthz, /readyz,
/metrics in Prometheus text format), the per-request log line with its
correlation ids, and the per-route access log switch."""

import json
import os
import re
import select
import socket
import time

import harness
from harness import eq, DATAVERSE_URL, Proxy, Sim, Work, check_config, proxy_ini, request, wait_for

W = ENTRA = UP = None


def setup_module():
    global W, ENTRA, UP
    W = Work("test_ops")
    ENTRA = Sim(W, "entra").start(roles=["entra"])
    UP = Sim(W, "up").start(roles=["dataverse", "bc", "fo"])


def teardown_module():
    for s in (ENTRA, UP):
        if s:
            s.stop()



def ini(routes=None, creds=None, extra=None):
    proxy = {"token_retry_max": "1s", "admin_listen": "127.0.0.1:0"}
    proxy.update(extra or {})
    if routes is None:
        routes = {"dataverse": dict(harness.default_routes()["dataverse"])}
    return proxy_ini(ENTRA, UP, routes=routes, credentials=creds, extra_proxy=proxy, work=W)


def start(name, text):
    px = Proxy(W, text, name=name).start()
    e = px.wait_event("admin_listening", 10)
    assert isinstance(e.get("port"), int) and e["port"] > 0, "admin_listening without a port: %r" % e
    px.admin = e["port"]
    return px


def admin(px, path, method="GET"):
    return request(px.admin, method, path)


# ---------------------------------------------------------------------------
# a strict parser of the Prometheus text exposition format (0.0.4)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|\+Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """-> (types {family: type}, samples {(name, frozenset(labels)): value}); raises on any bad line."""
    types, samples = {}, {}
    assert text.endswith("\n"), "exposition must end with a newline"
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            continue
        if ln.startswith("# TYPE "):
            _, _, fam, typ = ln.split(" ")
            assert typ in ("counter", "gauge", "histogram"), "bad type line %r" % ln
            assert fam not in types, "family %s typed twice" % fam
            types[fam] = typ
            continue
        m = SAMPLE.match(ln)
        assert m, "not a sample line: %r" % ln
        name, labels = m.group(1), {}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = LABEL.match(body, pos)
            assert lm, "bad labels in %r" % ln
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert fam in types, "sample %s before its TYPE line" % name
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate sample %r" % (key,)
        samples[key] = float(m.group(4))
    return types, samples


def scrape(px):
    r = admin(px, "/metrics")
    eq(r.status, 200, "/metrics status")
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r.header("Content-Type")
    return parse_metrics(r.text)


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------------------

def test_healthz_and_admin_paths_are_separate():
    px = start("health", ini())
    try:
        r = admin(px, "/healthz")
        eq((r.status, r.text), (200, "ok\n"), "/healthz")
        eq(admin(px, "/nothing").status, 404, "unknown admin path")
        r = admin(px, "/healthz", "POST")
        eq((r.status, r.header("Allow")), (405, "GET, HEAD"), "POST /healthz")
        r = admin(px, "/metrics", "HEAD")
        eq((r.status, r.body), (200, b""), "HEAD /metrics")
        # the proxy port never answers health paths itself: no route matches them
        r = px.request("GET", "/healthz")
        eq(r.status, 404, "/healthz on the proxy port")
        eq(r.json().get("code"), "no_route", "problem code on the proxy port")
        assert px.admin != px.port, "admin and proxy share a port"
    finally:
        px.stop()


def test_slow_clients_cannot_starve_the_probes():
    """40 connections from one address that never finish their header block
    (a slowloris on the admin port): only 8 are kept (the rest closed at
    once), and a probe from another address (an orchestrator's) is answered
    while they hang."""
    px = start("admin-slow", ini())
    held = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", px.admin), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
            held.append(s)
        closed = set()

        def count_closed():
            r, _, _ = select.select([s for s in held if s not in closed], [], [], 0.05)
            for s in r:
                try:
                    if s.recv(1) == b"":
                        closed.add(s)
                except OSError:
                    closed.add(s)
            return len(closed) >= 32
        # well inside the listener's 10 s idle timeout, which would close them all
        harness.wait_for("32 of the 40 closed", count_closed, timeout=4)
        eq(len(closed), 32, "connections from one address closed at once (8 kept)")
        # from another address, as an orchestrator's probe comes
        got = harness.raw(px.admin, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", timeout=5,
                          source="127.0.0.2")
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nok\n"), got
    finally:
        for s in held:
            s.close()
        px.stop()


def test_no_admin_listener_without_the_key():
    px = Proxy(W, ini(extra={"admin_listen": None}), name="noadmin").start()
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "proxied request")
        eq([e for e in px.events() if e.get("event") == "admin_listening"], [], "admin_listening events")
    finally:
        px.stop()


def test_metrics_names_types_and_values_move():
    ENTRA.reset(faults=True)
    px = start("metrics", ini())
    try:
        wait_for("token", lambda: json.loads(admin(px, "/readyz").text)["ready"])
        types, s0 = scrape(px)
        want_types = {
            "s2s_proxy_info": "gauge", "s2s_requests_total": "counter", "s2s_request_bytes_total": "counter",
            "s2s_response_bytes_total": "counter", "s2s_rewritten_responses_total": "counter",
            "s2s_upstream_duration_seconds": "histogram",
            "s2s_requests_in_flight": "gauge", "s2s_client_connections": "gauge",
            "s2s_token_requests_total": "counter",
            "s2s_token_fetch_duration_seconds": "histogram", "s2s_token_valid": "gauge",
            "s2s_token_expires_in_seconds": "gauge", "s2s_credential_secret_expires_in_seconds": "gauge",
            "s2s_credential_certificate_expires_in_seconds": "gauge",
            "s2s_caller_requests_total": "counter", "s2s_caller_series_dropped_total": "counter",
            "s2s_caller_verifications_total": "counter",
            "s2s_protocol_requests_total": "counter",
        }
        want_types.update({k: "counter" for k in ("s2s_throttled_total", "s2s_throttle_held_total",  # gates
                                                  "s2s_throttle_held_seconds_total", "s2s_throttle_retries_total",
                                                  "s2s_throttle_refused_total", "s2s_route_throttle_total",
                                                  "s2s_route_throttle_held_seconds_total")})
        want_types.update({k: "gauge" for k in ("s2s_throttle_queue_depth", "s2s_throttle_inflight",
                                                "s2s_throttle_gate_closed", "s2s_throttle_reopen_seconds",
                                                "s2s_ratelimit_burst_remaining", "s2s_ratelimit_time_remaining")})
        eq(types, want_types, "metric families and types")
        src = dict(credential="contoso", audience=DATAVERSE_URL)
        eq(val(s0, "s2s_token_requests_total", result="ok", **src), 1.0, "token requests ok")
        eq(val(s0, "s2s_token_valid", **src), 1.0, "token valid")
        exp = val(s0, "s2s_token_expires_in_seconds", **src)
        assert 3000 < exp <= 3599, "token expires in %r s" % exp
        eq(val(s0, "s2s_token_fetch_duration_seconds_count", **src), 1.0, "token fetch histogram count")

        body = b"x" * 1234
        for _ in range(3):
            eq(px.request("GET", "/dataverse/_test/echo").status, 200, "GET")
        for _ in range(2):
            eq(px.request("POST", "/dataverse/_test/echo", body=body).status, 200, "POST")
        eq(px.request("GET", "/elsewhere").status, 404, "unrouted")
        wait_for("in-flight back to 0",
                 lambda: val(scrape(px)[1], "s2s_requests_in_flight") == 0 and
                 val(scrape(px)[1], "s2s_requests_total", route="", method="read", status="4xx") == 1)
        _, s1 = scrape(px)

        def d(name, **lb):
            return val(s1, name, **lb) - val(s0, name, **lb)
        eq(d("s2s_requests_total", route="dataverse", method="read", status="2xx"), 3.0, "read 2xx")
        eq(d("s2s_requests_total", route="dataverse", method="write", status="2xx"), 2.0, "write 2xx")
        eq(d("s2s_requests_total", route="", method="read", status="4xx"), 1.0, "unrouted 4xx")
        eq(d("s2s_request_bytes_total", route="dataverse"), 2.0 * len(body), "request body bytes")
        assert d("s2s_response_bytes_total", route="dataverse") > 0, "no response bytes counted"
        eq(d("s2s_upstream_duration_seconds_count", route="dataverse"), 5.0, "upstream histogram count")
        eq(val(s1, "s2s_upstream_duration_seconds_bucket", route="dataverse", le="+Inf"),
           val(s1, "s2s_upstream_duration_seconds_count", route="dataverse"), "+Inf bucket == count")
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in s1.items()
                         if k[0] == "s2s_upstream_duration_seconds_bucket" and dict(k[1])["route"] == "dataverse")
        eq(len(buckets), 15, "bucket count")
        assert all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1)), buckets
        eq(val(s1, "s2s_requests_in_flight"), 0.0, "in flight")
        eq(d("s2s_token_requests_total", result="ok", **src), 0.0, "no new token requests")
    finally:
        px.stop()


def test_readyz_flips_with_token_state():
    ENTRA.reset(faults=True)
    ENTRA.set_entra("500")
    px = start("ready", ini())
    try:
        def failed():
            r = admin(px, "/readyz")
            j = json.loads(r.text)
            return (r, j) if j["routes"][0].get("diagnosis") else None
        r, j = wait_for("a failure in /readyz", failed)
        eq(r.status, 503, "/readyz while Entra fails")
        eq(r.header("Content-Type"), "application/json", "content type")
        eq(j["ready"], False, "ready")
        rt = j["routes"][0]
        eq((rt["route"], rt["credential"], rt["audience"], rt["token"], rt["ready"]),
           ("dataverse", "contoso", DATAVERSE_URL, "failed", False), "route entry")
        eq((rt["diagnosis"], rt["error"], rt["http_status"]), ("idp_unavailable", "server_error", 500),
           "failure evidence")
        _, s = scrape(px)
        src = dict(credential="contoso", audience=DATAVERSE_URL)
        assert val(s, "s2s_token_requests_total", result="idp_unavailable", **src) >= 1, "failed result not counted"
        eq(val(s, "s2s_token_valid", **src), 0.0, "token valid gauge while failing")
        assert CLIENT_SECRET_NOT_IN(r.text)

        ENTRA.set_entra("ok")
        r = wait_for("ready", lambda: (lambda x: x if x.status == 200 else None)(admin(px, "/readyz")))
        j = json.loads(r.text)
        eq((j["ready"], j["routes"][0]["token"], j["routes"][0]["ready"]), (True, "valid", True), "after recovery")
        assert "diagnosis" not in j["routes"][0], "stale diagnosis after recovery: %r" % j
        assert 3000 < j["routes"][0]["expires_in_s"] <= 3599, j
    finally:
        px.stop()


def CLIENT_SECRET_NOT_IN(text):
    assert harness.CLIENT_SECRET not in text, "the client secret appears in an admin answer"
    return True


def test_readyz_pending_before_first_token():
    ENTRA.reset(faults=True)
    ENTRA.set_entra("slow", count=1, delay_ms=4000)
    px = start("pending", ini())
    try:
        r = admin(px, "/readyz")
        eq(r.status, 503, "/readyz before the first token")
        eq(json.loads(r.text)["routes"][0]["token"], "pending", "token state")
        eq(admin(px, "/healthz").status, 200, "/healthz before the first token")
    finally:
        px.stop()


def test_secret_expiry_gauge_and_date_syntax():
    ENTRA.reset(faults=True)
    creds = harness.default_credentials()
    creds["contoso"]["client_secret_expires"] = "2030-01-01"
    px = start("secretexp", ini(creds=creds))
    try:
        _, s = scrape(px)
        got = val(s, "s2s_credential_secret_expires_in_seconds", credential="contoso")
        want = 1893456000 - time.time()
        assert abs(got - want) < 60, "secret expires in %r, expected about %r" % (got, want)
    finally:
        px.stop()
    for bad in ("2030-02-30", "2030-1-1", "01/01/2030", "2030-13-01"):
        creds["contoso"]["client_secret_expires"] = bad
        rc, _, err = check_config(ini(creds=creds), work=W, name="baddate")
        eq(rc, 1, "-t exit for client_secret_expires = %s" % bad)
        assert "client_secret_expires: must be a date YYYY-MM-DD" in err, err


# ---------------------------------------------------------------------------
# logs

REQUEST_FIELDS = {"ts": str, "level": str, "event": str, "request_id": str, "client": str, "method": str,
                  "path": str, "route": str, "status": int, "upstream_status": int, "duration_ms": int,
                  "bytes_in": int, "bytes_out": int, "client_request_id": str, "correlation_request_id": str,
                  "ms_request_id": str}


def test_request_log_fields_and_correlation_ids():
    ENTRA.reset(faults=True)
    px = start("logs", ini())
    try:
        r = px.request("GET", "/dataverse/_test/echo?secretquery=1",
                       headers=[("x-ms-client-request-id", "client-chosen-id-1")])
        eq(r.status, 200, "status")
        sent = {k.lower(): v for k, v in r.json()["headers"]}
        eq(sent.get("x-ms-client-request-id"), "client-chosen-id-1", "client's id forwarded untouched")
        gen = sent.get("x-ms-correlation-request-id")
        assert gen and re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", gen), gen
        eq(sent.get("request-id"), gen, "generated ids are the proxy's request id")
        line = px.wait_event(lambda e: e.get("event") == "request" and e.get("route") == "dataverse")
        for k, t in REQUEST_FIELDS.items():
            assert isinstance(line.get(k), t), "field %s: %r" % (k, line.get(k))
        eq((line["method"], line["path"], line["status"], line["upstream_status"]),
           ("GET", "/dataverse/_test/echo", 200, 200), "request line")
        eq((line["client_request_id"], line["correlation_request_id"], line["ms_request_id"]),
           ("client-chosen-id-1", gen, gen), "correlation ids in the log")
        eq(line["request_id"], gen, "request_id")
        eq(line["bytes_out"], len(r.body), "bytes_out")
        px.stop()
        # every line the proxy wrote is one JSON object with timestamp, level and event
        for raw_line in px.log_text().splitlines():
            e = json.loads(raw_line)
            assert isinstance(e, dict) and {"ts", "level", "event"} <= set(e), raw_line
            assert "secretquery" not in raw_line, "query string logged: %s" % raw_line
    finally:
        px.stop()


def test_access_log_off_per_route_still_counted():
    ENTRA.reset(faults=True)
    routes = harness.default_routes()
    routes = {"dataverse": dict(routes["dataverse"], access_log="false"), "bc": routes["bc"]}
    px = start("quiet", ini(routes=routes))
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "quiet route")
        eq(px.request("GET", "/bc/_test/echo").status, 200, "logged route")
        px.wait_event(lambda e: e.get("event") == "request" and e.get("route") == "bc")
        wait_for("counted", lambda: val(scrape(px)[1], "s2s_requests_total", route="dataverse", method="read",
                                        status="2xx") == 1)
        eq([e for e in px.events() if e.get("event") == "request" and e.get("route") == "dataverse"], [],
           "request lines of the quiet route")
    finally:
        px.stop()


def test_certificate_expiry_gauge():
    import ca
    from cryptography import x509
    ENTRA.reset(faults=True)
    files = ca.make_client_cert(W.path("certs"), "opscert", days=90)
    app = {"tenant_id": harness.TENANT_ID, "tenant_domains": [harness.TENANT_DOMAIN], "tenant_name": "Contoso",
           "client_id": "77777777-aaaa-4bbb-8ccc-000000000007", "name": "ops-cert", "roles": ["user_impersonation"],
           "certificates": [files["pem"]]}
    ENTRA.add_apps([app])
    creds = {"contoso": {"tenant": harness.TENANT_ID, "client_id": app["client_id"],
                         "certificate_file": files["cert"], "private_key_file": files["key"]}}
    px = start("certexp", ini(creds=creds))
    try:
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "request with a certificate credential")
        with open(files["cert"], "rb") as f:
            not_after = x509.load_pem_x509_certificate(f.read()).not_valid_after.replace(
                tzinfo=__import__("datetime").timezone.utc).timestamp()
        _, s = scrape(px)
        got = val(s, "s2s_credential_certificate_expires_in_seconds", credential="contoso")
        want = not_after - time.time()
        assert abs(got - want) < 60, "certificate expires in %r s, expected about %r" % (got, want)
        eq(val(s, "s2s_credential_secret_expires_in_seconds", credential="contoso"), 0.0, "no secret expiry")
    finally:
        px.stop()


def test_readyz_draining_after_sigterm_while_requests_finish():
    import signal
    import threading
    ENTRA.reset(faults=True)
    px = start("drain", ini(extra={"shutdown_timeout": "20s"}))
    try:
        wait_for("ready", lambda: admin(px, "/readyz").status == 200)
        out = {}

        def slow():
            out["r"] = px.request("GET", "/dataverse/_test/slow?ms=8000", timeout=30)
        t = threading.Thread(target=slow)
        t.start()
        wait_for("one request in flight", lambda: val(scrape(px)[1], "s2s_requests_in_flight") == 1)
        px.proc.send_signal(signal.SIGTERM)
        r = wait_for("draining", lambda: (lambda x: x if x.status == 503 else None)(admin(px, "/readyz")))
        j = json.loads(r.text)
        eq((j["ready"], j.get("reason")), (False, "draining"), "/readyz while draining")
        eq(j["routes"][0]["token"], "valid", "token state while draining")
        eq(admin(px, "/healthz").status, 200, "/healthz while draining")
        t.join(30)
        eq(out["r"].status, 200, "the request in flight finished")
        eq(px.stop(), 0, "exit code")
    finally:
        px.stop()


def test_every_metric_family_is_documented():
    px = start("docs", ini())
    try:
        types, _ = scrape(px)
    finally:
        px.stop()
    with open(os.path.join(harness.REPO, "docs", "operations.md")) as f:
        doc = f.read()
    rows = dict(re.findall(r"(?m)^\| `(s2s_[a-z_]+)` \| (counter|gauge|histogram) \|", doc))
    eq(rows, types, "metric families and types in docs/operations.md")


def test_metrics_and_readyz_follow_a_reload():
    import signal
    ENTRA.reset(faults=True)
    px = start("reload", ini())
    try:
        wait_for("ready", lambda: admin(px, "/readyz").status == 200)
        for _ in range(2):
            eq(px.request("GET", "/dataverse/_test/echo").status, 200, "before the reload")
        # counted at completion, which may follow the client's receipt of the answer
        wait_for("counted before the reload", lambda: val(scrape(px)[1], "s2s_requests_total", route="dataverse",
                                                          method="read", status="2xx") == 2)
        routes = harness.default_routes()
        with open(px.ini_path, "w") as f:
            f.write(ini(routes={"dataverse": routes["dataverse"], "bc": routes["bc"]}))
        px.proc.send_signal(signal.SIGHUP)
        px.wait_event("config_reloaded", 20)
        j = wait_for("both routes ready", lambda: (lambda x: x if x["ready"] else None)(
            json.loads(admin(px, "/readyz").text)))
        eq(sorted(r["route"] for r in j["routes"]), ["bc", "dataverse"], "routes in /readyz after the reload")
        eq(px.request("GET", "/bc/_test/echo").status, 200, "new route")
        eq(px.request("GET", "/dataverse/_test/echo").status, 200, "kept route")
        wait_for("counted", lambda: val(scrape(px)[1], "s2s_requests_total", route="bc", method="read",
                                        status="2xx") == 1)
        _, s = scrape(px)
        eq(val(s, "s2s_requests_total", route="dataverse", method="read", status="2xx"), 3.0,
           "dataverse requests carried over the reload")
        eq(val(s, "s2s_token_valid", credential="contoso", audience=harness.BC_URL), 1.0, "bc token")
    finally:
        px.stop()
