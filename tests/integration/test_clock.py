"""test_clock.py - a step of the system clock changes no deadline.

The proxy runs under libfaketime with only the wall clock faked
(FAKETIME_DONT_FAKE_MONOTONIC=1), read from a file the test rewrites, so the
wall clock jumps while the proxy runs. Tokens from the simulated Entra live
3599 s (expires_in, relative): a jump of two hours forward must neither
expire the cached token (no new token request, no parked request) nor make
the proxy think it is stale; a jump back must not keep a token past its
real end either (covered by the engine's monotonic schedule: unit tests).
Parking, client and drain deadlines run on the same monotonic clock
(src/util/clock.c clock_now_ms)."""

import os
import unittest

import harness
from harness import eq, Proxy, Sim, Work, proxy_ini

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
W = SIM = PX = None
STAMP = None


def setup_module():
    global W, SIM, PX, STAMP
    if os.environ.get("S2S_SANITIZED"):
        raise unittest.SkipTest("libfaketime cannot be preloaded before the ASan runtime")
    if not os.path.exists(FAKETIME):
        raise unittest.SkipTest("libfaketime is not installed (scripts/deps.sh installs it)")
    W = Work("test_clock")
    SIM = Sim(W).start()
    STAMP = W.write("faketime", "+0\n")
    env = {"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": STAMP, "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    PX = Proxy(W, proxy_ini(SIM, extra_proxy={"workers": "1"}), env=env).start()
    PX.wait_event("token_acquired", 20)


def teardown_module():
    if PX:
        PX.stop()
    if SIM:
        SIM.stop()


def step(offset):
    with open(STAMP, "w") as f:
        f.write(offset + "\n")


def token_requests():
    return len(SIM.token_requests(1000))


def get_ok(what):
    r = PX.request("GET", "/dataverse/api/data/v9.2/WhoAmI")
    eq(r.status, 200, what)
    return r


def test_wall_clock_jumps_change_no_deadline():
    get_ok("before any jump")
    before = token_requests()
    try:
        # two hours forward: past the token's exp by the wall clock
        step("+2h")
        for i in range(5):
            get_ok("after +2h, request %d" % i)
        eq(token_requests(), before, "token requests after the wall clock jumped 2 h forward")
        # and back, past the moment the token was issued
        step("-2h")
        for i in range(5):
            get_ok("after -2h, request %d" % i)
        eq(token_requests(), before, "token requests after the wall clock jumped 2 h back")
    finally:
        step("+0")
    events = [(e.get("event"), e.get("source")) for e in PX.events() if e.get("event", "").startswith("token_")]
    sources = sorted(s for _, s in events)
    eq(sorted(events), [("token_acquired", s) for s in sources], "token events")
    eq(sources, sorted(set(sources)), "token sources acquired more than once")


def test_log_timestamps_follow_the_wall_clock():
    """Logs carry wall time: the faked clock shows there, so the test can fail."""
    def stamps():
        return [e["ts"] for e in PX.events() if e.get("event") == "request"]
    n0 = len(stamps())
    get_ok("before the step")
    before = harness.wait_for("the request line before the step", lambda: (lambda s: s if len(s) > n0 else None)(stamps()))
    step("+3h")
    try:
        get_ok("after +3h")
        after = harness.wait_for("the request line after the step", lambda: stamps()[len(before):])
        # ISO 8601 UTC stamps compare as text; three hours on, even the date may change
        assert after[0] > before[-1] and after[0][:13] != before[-1][:13], \
            "log time did not move forward with the wall clock: %r -> %r" % (before[-1], after[0])
    finally:
        step("+0")
