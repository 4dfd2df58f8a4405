"""test_tokens.py - the token engine through the proxy: single flight on a
cold cache, Entra down and back, rejected credentials, refresh of short-lived
tokens under steady traffic, secrets never in the logs."""

import concurrent.futures
import json
import os
import re
import time

import harness
from harness import eq, CLIENT_SECRET, DATAVERSE_URL, Proxy, Sim, Work, proxy_ini

W = ENTRA = UP = None
ISSUED = []  # every access token the simulated Entra issued in this module


def reset_entra():
    ISSUED.extend(ENTRA.stats()["issued_tokens"])
    ENTRA.reset(faults=True)


def setup_module():
    global W, ENTRA, UP
    W = Work("test_tokens")
    ENTRA = Sim(W, "entra").start(roles=["entra"])
    UP = Sim(W, "up").start(roles=["dataverse", "bc", "fo"])


def teardown_module():
    for s in (ENTRA, UP):
        if s:
            s.stop()



def one_route(**extra):
    r = dict(harness.default_routes()["dataverse"])
    r.update(extra)
    return {"dataverse": r}


def ini(routes=None, creds=None, extra=None, work=None):
    return proxy_ini(ENTRA, UP, routes=routes or one_route(), credentials=creds,
                     extra_proxy=extra or {"token_retry_max": "1s"}, work=work or W)


def token_count():
    return ENTRA.stats()["token_requests"]


def test_cold_cache_200_concurrent_one_token_request():
    reset_entra()
    ENTRA.set_entra("slow", count=1, delay_ms=2000)
    # 200 parked requests open 200 TLS connections to the simulator at once;
    # on a loaded test machine that can take longer than the default 10 s.
    px = Proxy(W, ini(routes=one_route(connect_timeout="60s")), name="cold").start()
    try:
        def one(i):
            return px.request("GET", "/dataverse/_test/echo?i=%d" % i, timeout=30).status
        with concurrent.futures.ThreadPoolExecutor(200) as ex:
            statuses = list(ex.map(one, range(200)))
        eq(statuses.count(200), 200, "requests answered 200")
        eq(token_count(), 1, "token requests")
        waited = [e for e in px.events() if e.get("event") == "request" and e.get("token_wait_ms", 0) > 0]
        assert len(waited) >= 100, "only %d requests were parked for the token" % len(waited)
    finally:
        px.stop()


def test_entra_down_503_then_recovery_without_restart():
    reset_entra()
    ENTRA.stop()
    px = Proxy(W, ini(), name="down").start()
    try:
        px.wait_event("token_failed", 20)
        r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
        eq(r.status, 503, "status while Entra is down")
        eq(r.header("Content-Type"), "application/problem+json", "content type")
        ra = r.header("Retry-After")
        assert ra and ra.isdigit() and 1 <= int(ra) <= 5, "Retry-After %r" % ra
        p = r.json()
        eq((p["code"], p["route"], p["audience"]), ("idp_unavailable", "dataverse", DATAVERSE_URL), "problem")
        ENTRA.restart()
        deadline = time.time() + 20
        while time.time() < deadline:
            r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
            if r.status == 200:
                break
            time.sleep(0.2)
        eq(r.status, 200, "status after Entra came back")
        assert px.alive(), "proxy restarted?"
    finally:
        px.stop()


def test_rejected_secret_502_with_entra_evidence_and_negative_cache():
    reset_entra()
    creds = {"contoso": dict(harness.default_credentials()["contoso"], secret="not-the-secret")}
    px = Proxy(W, ini(creds=creds), name="rejected").start()
    try:
        px.wait_event("token_failed", 20)
        for _ in range(20):
            r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
            eq(r.status, 502, "status")
        p = r.json()
        eq((p["diagnosis"], p["code"]), ("secret_invalid", "secret_invalid"), "diagnosis")
        eq(p["error"], "invalid_client", "error")
        eq(p["error_codes"], [7000215], "error_codes")
        eq(p["aadsts"], "AADSTS7000215", "aadsts")
        assert re.fullmatch(r"[0-9a-f-]{36}", p["trace_id"]), p
        assert re.fullmatch(r"[0-9a-f-]{36}", p["correlation_id"]), p
        eq(p["error_uri"], "https://login.microsoftonline.com/error?code=7000215", "error_uri")
        eq(r.header("Retry-After"), None, "no Retry-After for a rejection")
        eq(token_count(), 1, "token requests for 20 client requests")
    finally:
        px.stop()


def test_short_tokens_refresh_ahead_under_traffic():
    """8 s tokens (refreshed at about half their life), traffic until three
    refreshes have happened: every request served without waiting for a token,
    no expired token ever reaches Dataverse, refreshes in the background."""
    reset_entra()
    UP.reset()
    ENTRA.set_entra("ok", lifetime=8)
    px = Proxy(W, ini(), name="refresh").start()
    try:
        px.wait_event("token_acquired", 20)
        end = time.time() + 40
        n = 0
        c = harness.Client(px.port)
        while token_count() < 4:
            assert time.time() < end, "3 refreshes of 8 s tokens not seen in 40 s: %d" % (token_count() - 1)
            r = c.request("GET", "/dataverse/_test/echo?n=%d" % n)
            eq(r.status, 200, "request %d" % n)
            n += 1
            time.sleep(0.05)  # pacing: a steady trickle of traffic, not a wait for anything
        c.close()
        st = UP.stats()
        eq(st["expired_tokens_seen"], 0, "expired tokens seen by the upstream")
        eq(st["upstream_rejected"], 0, "requests rejected by the upstream")
        waited = [e for e in px.events() if e.get("event") == "request" and e.get("token_wait_ms", 0) > 0]
        eq(len(waited), 0, "requests that waited for a token")
        eq(token_count(), 4, "token requests: the first and three refreshes")
        assert n >= 50, "only %d requests" % n
    finally:
        ENTRA.set_entra("ok")
        px.stop()


def test_short_refresh_in_on_a_long_token_is_kept():
    """A one-hour token with refresh_in = 30 s: refreshed 28.5-30 s after the
    fetch (the jitter takes at most a twentieth of the delay). It used to be
    drawn from the whole lifetime, cancel refresh_in, and the token was fetched
    again every second."""
    reset_entra()
    ENTRA.set_entra("ok", refresh_in=30)
    px = Proxy(W, ini(), name="refresh-in").start()
    try:
        e = px.wait_event("token_acquired", 20)
        eq(e.get("expires_in"), 3599, "expires_in")
        assert 28 <= e.get("refresh_in_s", -1) <= 30, "refresh in %r s, for refresh_in = 30" % e.get("refresh_in_s")
        eq(token_count(), 1, "token requests")
    finally:
        ENTRA.set_entra("ok", refresh_in=None)
        px.stop()


def test_secrets_and_tokens_never_logged():
    """Runs last: greps every proxy log of this module."""
    logs = ""
    for name in os.listdir(W.path()):
        if name.endswith(".log") and not name.startswith(("entra", "up")):
            with open(W.path(name), "rb") as f:
                logs += f.read().decode("utf-8", "replace")
    assert logs, "no proxy logs found"
    for secret in (CLIENT_SECRET, "not-the-secret"):
        assert secret not in logs, "a client secret appears in the logs"
    tokens = ISSUED + ENTRA.stats()["issued_tokens"]
    assert tokens, "no tokens issued?"
    for t in tokens:
        assert t not in logs and t[:40] not in logs, "an access token appears in the logs"
    assert "eyJ" not in logs, "something JWT-shaped appears in the logs"
