"""test_cli.py - the command line: -t, --version, --help, exit codes, and
graceful shutdown on SIGTERM with requests in flight."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import Proxy, Sim, Work, check_config, proxy_ini

W = SIM = None


def setup_module():
    global W, SIM
    W = Work("test_cli")
    SIM = Sim(W).start()


def teardown_module():
    if SIM:
        SIM.stop()


def run(*args):
    p = subprocess.run([harness.proxy_bin()] + list(args), capture_output=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_version_and_help():
    rc, out, _ = run("--version")
    lines = out.splitlines()
    assert rc == 0 and re.fullmatch(r"s2s-proxy \d+\.\d+\.\d+", lines[0]), (rc, out)
    # the libraries in use, at run time: the pinned libmicrohttpd, not Debian's 0.9.75
    pinned = re.search(r"libmicrohttpd-([0-9.]+)\.tar\.gz",
                       open(os.path.join(harness.REPO, "third_party/libmicrohttpd/SHA256SUMS")).read()).group(1)
    assert "libmicrohttpd %s (inbound HTTP, built from third_party/)" % pinned in lines, out
    assert any(re.fullmatch(r"libcurl \d+\.\d+\.\d+ \(OpenSSL/.*\)", ln) for ln in lines), out
    rc, out, _ = run("--help")
    assert rc == 0 and "-t -c FILE" in out, (rc, out)
    rc, _, err = run("--bogus")
    assert rc == 2 and "usage:" in err, (rc, err)
    rc, _, err = run()
    assert rc == 2, rc


def test_check_valid_config():
    rc, out, err = check_config(proxy_ini(SIM, work=W), W, "valid")
    assert rc == 0, (rc, out, err)
    assert "configuration ok" in out, out


def test_check_reports_every_error_with_file_and_line():
    text = proxy_ini(SIM, work=W) + "\n[route:broken]\nupstream = ftp://x\nbogus_key = 1\ncredential = nobody\n"
    rc, out, err = check_config(text, W, "invalid")
    assert rc == 1, (rc, out, err)
    path = W.path("invalid.ini")
    lines = [l for l in err.splitlines() if l.startswith(path + ":")]
    assert len(lines) >= 3, err
    for l in lines:
        assert re.match(re.escape(path) + r":\d+: ", l), l
    joined = "\n".join(lines)
    for word in ("upstream", "bogus_key", "nobody"):
        assert word in joined, "no error mentions %s:\n%s" % (word, err)


def test_missing_config_file():
    rc, out, err = run("-t", "-c", W.path("does-not-exist.ini"))
    assert rc == 1 and "does-not-exist.ini" in err, (rc, err)


def test_sigterm_lets_inflight_requests_finish():
    px = Proxy(W, proxy_ini(SIM, work=W), name="graceful").start()
    px.wait_event("token_acquired", 20)
    result = {}

    def slow():
        try:
            result["r"] = px.request("GET", "/dataverse/_test/slow?ms=1500", timeout=20)
        except Exception as e:  # noqa: BLE001 - reported below
            result["e"] = e

    t = threading.Thread(target=slow)
    t.start()
    harness.wait_for("the slow request upstream",
                     lambda: "/_test/slow?ms=1500" in SIM.stats()["upstream_in_flight"])
    px.proc.send_signal(signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", px.port), timeout=2).close()
            return False
        except OSError:
            return True
    harness.wait_for("new connections refused after SIGTERM", refused, timeout=10)
    assert t.is_alive(), "the in-flight request ended before the listener closed"
    t.join(20)
    rc = px.stop(timeout=20)
    assert "e" not in result, "in-flight request failed: %r" % result.get("e")
    assert result["r"].status == 200, result["r"]
    assert rc == 0 and not px.stop_timed_out, rc
    assert any(e.get("event") == "stopped" for e in px.events())
