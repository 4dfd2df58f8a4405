"""harness.py - what the s2s-proxy integration tests are built from.

  Work(name)            a fresh directory tests/.work/<name>, with a test CA (work.ca)
  Sim(work, name)       the simulated Microsoft cloud (tests/sim/mscloud.py) as a child process
  Proxy(work, ini)      build/s2s-proxy (or $S2S_PROXY_BIN) as a child process
  proxy_ini(...)        a realistic proxy config pointing at one or two Sims
  check_config(ini)     run `s2s-proxy -t -c FILE`
  request / Client      plain-HTTP client for the proxy (headers kept as an ordered list)
  raw(port, bytes)      hand-made requests (smuggling tests); parse_responses() splits replies
  pattern_*/sha256      deterministic bodies: byte k is k % 251 (same as the simulator)
  wait_for(what, fn)    poll a condition (never sleep a fixed time); b64url/b64url_decode

Every child process is registered; kill_children() (the runner calls it after
each module and on timeouts) kills whatever is still running.
Run with Debian's /usr/bin/python3 (needs python3-cryptography).
"""

import base64
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ca import make_ca  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# One directory per test run (the runner's pid), so two runs on one machine
# never share certificates or state; directories of dead runs are removed.
WORK_BASE = os.path.join(REPO, "tests", ".work")
WORK_ROOT = os.path.join(WORK_BASE, "run-%d" % os.getpid())


def _remove_stale_runs():
    try:
        names = os.listdir(WORK_BASE)
    except OSError:
        return
    for n in names:
        if n.startswith("run-") and n[4:].isdigit() and not os.path.exists("/proc/" + n[4:]):
            shutil.rmtree(os.path.join(WORK_BASE, n), ignore_errors=True)
SIM_SCRIPT = os.path.join(REPO, "tests", "sim", "mscloud.py")
PYTHON = "/usr/bin/python3"

# The default tenant and app registrations of the simulated cloud.
TENANT_ID = "c0ffee00-1234-4abc-8def-0000000000aa"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-aaaa-4bbb-8ccc-000000000001"
CLIENT_SECRET = "Fk8Q~s3cr+t/=v&l%ue"  # needs form-encoding: + / = & %
CLIENT2_ID = "22222222-aaaa-4bbb-8ccc-000000000002"
CLIENT2_SECRET = "second~Secret.value_2"
OTHER_TENANT_ID = "0dd0dd00-1234-4abc-8def-0000000000bb"
OTHER_CLIENT_ID = "33333333-aaaa-4bbb-8ccc-000000000003"
OTHER_CLIENT_SECRET = "fabrikam-secret"

DATAVERSE_URL = "https://contoso.crm4.dynamics.com"
BC_URL = "https://api.businesscentral.dynamics.com"
FO_URL = "https://contoso.operations.dynamics.com"

ENTRA_HOSTS = ["login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn"]
UPSTREAM_HOSTS = ["contoso.crm4.dynamics.com", "contoso.api.crm4.dynamics.com", "contoso.crm.dynamics.com",
                  "api.businesscentral.dynamics.com", "contoso.operations.dynamics.com",
                  "contoso.sandbox.operations.dynamics.com", "securityservice.operations365.dynamics.com"]
ROLES = ("entra", "dataverse", "bc", "fo")


def default_apps():
    return [
        {"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN, "contoso.com"], "tenant_name": "Contoso",
         "client_id": CLIENT_ID, "secret": CLIENT_SECRET, "name": "s2s-proxy-test",
         "roles": ["user_impersonation", "API.ReadWrite.All"]},
        {"tenant_id": TENANT_ID, "tenant_domains": [TENANT_DOMAIN, "contoso.com"], "tenant_name": "Contoso",
         "client_id": CLIENT2_ID, "secret": CLIENT2_SECRET, "name": "s2s-proxy-second", "roles": []},
        {"tenant_id": OTHER_TENANT_ID, "tenant_domains": ["fabrikam.onmicrosoft.com"], "tenant_name": "Fabrikam",
         "client_id": OTHER_CLIENT_ID, "secret": OTHER_CLIENT_SECRET, "name": "fabrikam-app", "roles": []},
    ]



def eq(got, want, what="value"):
    """Assert equality with a message naming what was compared."""
    assert got == want, "%s: expected %r, got %r" % (what, want, got)


def wait_for(what, fn, timeout=20, every=0.05):
    """Poll fn until it returns something true and return that; fail naming
    what was awaited (and fn's last answer) after timeout seconds. Tests wait
    for a condition with this, never for a fixed time."""
    deadline = time.time() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.time() > deadline:
            raise AssertionError("%s: not reached in %ss (last: %r)" % (what, timeout, last))
        time.sleep(every)


def b64url(data):
    """base64url without padding (JWT, PKCE) -> str."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s):
    """Inverse of b64url; accepts str or bytes, padding optional."""
    if isinstance(s, str):
        s = s.encode("ascii")
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


# ---------------------------------------------------------------------------
# child processes

_children = []
_children_lock = threading.Lock()


def _preexec():
    # Die with the runner (only safe when forked from the main thread: the
    # death signal follows the forking thread, not the process).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd, **kw):
    """Popen in its own session, registered for kill_children()."""
    if threading.current_thread() is threading.main_thread():
        kw.setdefault("preexec_fn", _preexec)
    p = subprocess.Popen(cmd, start_new_session=True, **kw)
    with _children_lock:
        _children.append(p)
    return p


def kill_children():
    """SIGKILL every registered child (and its process group) still running."""
    with _children_lock:
        procs = list(_children)
        _children[:] = []
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                try:
                    p.kill()
                except OSError:
                    pass
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:
            pass


def _tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------
# work directories

class Work:
    """A fresh directory tests/.work/run-<pid>/<name> (removed and recreated)."""

    def __init__(self, name):
        if not os.path.isdir(WORK_ROOT):
            _remove_stale_runs()
        self.name = name
        self.dir = os.path.join(WORK_ROOT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self._ca = None

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, data, mode=None):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        if mode is not None:
            os.chmod(p, mode)
        return p

    @property
    def ca(self):
        """dict(ca=, cert=, key=, ca_key=) of this directory's test CA."""
        if self._ca is None:
            self._ca = make_ca(self.path("ca"))
        return self._ca


# ---------------------------------------------------------------------------
# responses and plain-HTTP clients

class Resp:
    def __init__(self, status, reason, headers, body, version=11):
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value), ...] in received order
        self.body = body
        self.version = version
        self.body_len = len(body) if body is not None else None
        self.body_sha256 = sha256(body) if body is not None else None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        b = self.body[:300] if self.body is not None else "(hashed: %s bytes)" % self.body_len
        return "Resp(%d %s, %r)" % (self.status, self.reason, b)


def _norm_headers(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return [tuple(h) for h in headers]


class Client:
    """One HTTP/1.1 connection (plain, or TLS to a fake host) for keep-alive use."""

    def __init__(self, port, host="127.0.0.1", timeout=30, tls_ca=None, server_name=None):
        self.port = port
        self.host = host
        self.server_name = server_name
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            self.conn = _FakeHostHTTPS(server_name or host, host, port, ctx, timeout)
        else:
            self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method, target, headers=None, body=None, chunked=False, hash_body=False):
        hs = _norm_headers(headers)
        names = {k.lower() for k, _ in hs}
        c = self.conn
        c.putrequest(method, target, skip_host="host" in names or bool(self.server_name),
                     skip_accept_encoding=True)
        if "host" not in names and self.server_name:
            c.putheader("Host", self.server_name)
        for k, v in hs:
            c.putheader(k, v)
        if body is not None and not chunked and isinstance(body, (bytes, bytearray, str)):
            if isinstance(body, str):
                body = body.encode("utf-8")
            if "content-length" not in names and "transfer-encoding" not in names:
                c.putheader("Content-Length", str(len(body)))
        if chunked and "transfer-encoding" not in names:
            c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        if body is not None:
            chunks = [body] if isinstance(body, (bytes, bytearray, memoryview)) else body
            for ch in chunks:
                if isinstance(ch, str):
                    ch = ch.encode("utf-8")
                if chunked:
                    if len(ch):
                        c.send(b"%x\r\n" % len(ch))
                        c.send(ch)
                        c.send(b"\r\n")
                else:
                    c.send(ch)
            if chunked:
                c.send(b"0\r\n\r\n")
        r = c.getresponse()
        headers_list = list(r.getheaders())
        if hash_body:
            h = hashlib.sha256()
            n = 0
            while True:
                d = r.read(1 << 20)
                if not d:
                    break
                n += len(d)
                h.update(d)
            resp = Resp(r.status, r.reason, headers_list, None, r.version)
            resp.body_len, resp.body_sha256 = n, h.hexdigest()
        else:
            resp = Resp(r.status, r.reason, headers_list, r.read(), r.version)
        if r.will_close:
            c.close()
        return resp

    def close(self):
        self.conn.close()


class _FakeHostHTTPS(http.client.HTTPSConnection):
    """TLS to 127.0.0.1 with SNI/verification for a fake Microsoft host name."""

    def __init__(self, server_name, addr, port, ctx, timeout):
        http.client.HTTPSConnection.__init__(self, server_name, port, context=ctx, timeout=timeout)
        self._addr = addr

    def connect(self):
        sock = socket.create_connection((self._addr, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def request(port, method, target, headers=None, body=None, chunked=False, timeout=30, hash_body=False,
            host="127.0.0.1"):
    """One request on a fresh plain-HTTP connection -> Resp.
    headers: list of (name, value) (order and repeats kept) or dict. No Host
    header is added if you give one. body: bytes/str, or an iterable of
    chunks (then give Content-Length yourself or chunked=True).
    hash_body=True: don't keep the body; Resp.body_len/body_sha256 only."""
    c = Client(port, host=host, timeout=timeout)
    try:
        return c.request(method, target, headers, body, chunked, hash_body)
    finally:
        c.close()


def raw(port, data, timeout=10, host="127.0.0.1", half_close=False, source=None):
    """Send bytes, return everything read until the peer closes or `timeout`
    seconds pass without data (no exception on timeout or reset). source:
    the local address to connect from (e.g. "127.0.0.2")."""
    s = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
    out = []
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            out.append(d)
    finally:
        s.close()
    return b"".join(out)


def parse_responses(data):
    """Split raw HTTP/1.1 response bytes into [Resp]; a trailing incomplete
    response is returned with what was received."""
    res = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        hs = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
        get = {k.lower(): v for k, v in hs}
        if status in (204, 304) or 100 <= status < 200:
            body, data = b"", rest
        elif "chunked" in get.get("transfer-encoding", "").lower():
            body = b""
            while True:
                line, _, rest = rest.partition(b"\r\n")
                try:
                    size = int(line.split(b";")[0], 16)
                except ValueError:
                    size = 0
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            data = rest
        elif "content-length" in get:
            n = int(get["content-length"])
            body, data = rest[:n], rest[n:]
        else:
            body, data = rest, b""
        if 100 <= status < 200:
            continue
        res.append(Resp(status, parts[2] if len(parts) > 2 else "", hs, body))
    return res


# ---------------------------------------------------------------------------
# bodies

PATTERN_PERIOD = 251
_BLOCK = bytes(range(PATTERN_PERIOD)) * 4096


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def pattern_gen(n, chunk=1 << 20):
    """Yield the first n pattern bytes (byte k = k % 251) in chunks <= chunk."""
    off = 0
    chunk = max(1, min(chunk, len(_BLOCK) - PATTERN_PERIOD))
    while off < n:
        start = off % PATTERN_PERIOD
        want = min(chunk, n - off)
        yield _BLOCK[start:start + want]
        off += want


def pattern_bytes(n):
    return b"".join(pattern_gen(n))


_pattern_sha = {}


def pattern_sha256(n):
    if n not in _pattern_sha:
        h = hashlib.sha256()
        for c in pattern_gen(n):
            h.update(c)
        _pattern_sha[n] = h.hexdigest()
    return _pattern_sha[n]


# ---------------------------------------------------------------------------
# the simulator

class Sim:
    """tests/sim/mscloud.py as a child process.

    sim = Sim(work).start()                        # all roles, default apps
    entra = Sim(work, "entra").start(roles=["entra"])
    up = Sim(work, "up").start(roles=["dataverse", "bc", "fo"])   # same state dir
    """

    def __init__(self, work, name="sim"):
        self.work = work
        self.name = name
        self.port = None
        self.proc = None
        self.log_path = work.path(name + ".log")
        self._args = None

    def start(self, roles=ROLES, apps=None, state_dir=None, port=0, timeout=20):
        """apps: list of registrations (None = default_apps(), [] = none)."""
        if apps is None:
            apps = default_apps()
        state_dir = state_dir or self.work.path("sim-state")
        apps_file = self.work.write(self.name + "-apps.json", json.dumps(apps, indent=1))
        self._args = (tuple(roles), state_dir, apps_file)
        return self._launch(port, timeout)

    def _launch(self, port, timeout):
        roles, state_dir, apps_file = self._args
        ca = self.work.ca
        cmd = [PYTHON, SIM_SCRIPT, "--port", str(port), "--cert", ca["cert"], "--key", ca["key"],
               "--state-dir", state_dir, "--roles", ",".join(roles), "--apps", apps_file]
        log = open(self.log_path, "ab")
        try:
            self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.time() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.time()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("simulator %s did not start (port %s):\n%s"
                                     % (self.name, port, _tail(self.log_path)))
            r, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if r:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    continue
                line += b
        parts = line.decode().split()
        if len(parts) != 2 or parts[0] != "READY":
            self.kill()
            raise AssertionError("simulator %s printed %r" % (self.name, line))
        self.port = int(parts[1])
        return self

    @property
    def ca(self):
        return self.work.ca

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipe()

    def kill(self):
        """SIGKILL (e.g. to simulate 'Entra down')."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def _close_pipe(self):
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def restart(self, timeout=20):
        """Stop and start again on the same port (state dir and apps kept)."""
        self.stop()
        last = None
        for _ in range(50):  # the port can take a moment to be free
            try:
                return self._launch(self.port, timeout)
            except AssertionError as e:
                last = e
                time.sleep(0.1)
        raise last

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def connect_to(self, hosts):
        return ["%s:443:127.0.0.1:%d" % (h, self.port) for h in hosts]

    # HTTPS to the simulator ------------------------------------------------

    def client(self, host="localhost", timeout=30):
        return Client(self.port, tls_ca=self.work.ca["ca"], server_name=host, timeout=timeout)

    def request(self, host, method, target, headers=None, body=None, chunked=False, timeout=30,
                hash_body=False):
        """One HTTPS request to the simulator as `host` (SNI, cert check and Host header)."""
        c = self.client(host, timeout)
        try:
            return c.request(method, target, headers, body, chunked, hash_body)
        finally:
            c.close()

    def control(self, path, data=None, method=None):
        """JSON to/from /_sim/<path>; POST when data is given."""
        if not path.startswith("/"):
            path = "/_sim/" + path
        method = method or ("POST" if data is not None else "GET")
        body = json.dumps(data).encode() if data is not None else None
        r = self.request("localhost", method, path,
                         [("Content-Type", "application/json")] if body is not None else None, body)
        if r.status != 200:
            raise AssertionError("sim control %s %s -> %d %s" % (method, path, r.status, r.text))
        return r.json()

    def stats(self):
        return self.control("stats")

    def requests(self, limit=1000):
        return self.control("requests?limit=%d" % limit)

    def token_requests(self, limit=1000):
        return self.control("token_requests?limit=%d" % limit)

    def reset(self, faults=False):
        return self.control("reset", {"faults": faults})

    def set_entra(self, mode="ok", count=-1, **kw):
        """mode ok|slow|429|500|503|garbage|notoken|html|reset for the next
        `count` token requests (-1 = until changed); kw: delay_ms, retry_after,
        lifetime, refresh_in, exp_offset, nbf_offset."""
        d = dict(kw, mode=mode, count=count)
        return self.control("entra", d)

    def add_apps(self, apps, replace=False):
        return self.control("apps", {"apps": apps, "replace": replace})

    def set_env_tenant(self, host, tenant_id):
        return self.control("env_tenants", {host: tenant_id})

    def mint(self, **kw):
        return self.control("mint", kw)["access_token"]

    def token(self, resource=DATAVERSE_URL, client_id=CLIENT_ID, secret=CLIENT_SECRET, version=2,
              auth="post", tenant=TENANT_ID, host="login.microsoftonline.com", extra=None, headers=None):
        """Ask the simulated Entra for a token -> Resp (see .json()['access_token'])."""
        import urllib.parse
        form = [("grant_type", "client_credentials")]
        hs = [("Content-Type", "application/x-www-form-urlencoded")] + _norm_headers(headers)
        if auth == "basic":
            cred = "%s:%s" % (urllib.parse.quote_plus(client_id), urllib.parse.quote_plus(secret))
            hs.append(("Authorization", "Basic " + base64.b64encode(cred.encode()).decode()))
        else:
            form.append(("client_id", client_id))
            if secret is not None:
                form.append(("client_secret", secret))
        if version == 2:
            form.append(("scope", resource + "/.default"))
            path = "/%s/oauth2/v2.0/token" % tenant
        else:
            form.append(("resource", resource))
            path = "/%s/oauth2/token" % tenant
        form += list(extra or [])
        return self.request(host, "POST", path, hs, urllib.parse.urlencode(form).encode())

    def access_token(self, resource=DATAVERSE_URL, **kw):
        r = self.token(resource, **kw)
        if r.status != 200:
            raise AssertionError("token request failed: %r" % r)
        return r.json()["access_token"]


# ---------------------------------------------------------------------------
# the proxy

def proxy_bin():
    b = os.environ.get("S2S_PROXY_BIN", "build/s2s-proxy")
    return b if os.path.isabs(b) else os.path.join(REPO, b)


class Proxy:
    """The proxy under test. Readiness = a JSON log line on stderr with
    "event":"listening" and an integer "port"."""

    def __init__(self, work, ini_text, name="proxy", env=None, args=()):
        self.work = work
        self.name = name
        self.ini_path = work.write(name + ".ini", ini_text)
        self.log_path = work.path(name + ".log")
        self.out_path = work.path(name + ".out")
        self.env = env
        self.args = list(args)
        self.proc = None
        self.port = None
        self.stop_timed_out = False
        self._log_offset = 0

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=20):
        b = proxy_bin()
        if not os.path.exists(b):
            raise AssertionError("proxy binary %s not found (run make, or set S2S_PROXY_BIN)" % b)
        env = dict(os.environ)
        env.update(self.env or {})
        try:  # log_text()/events() cover this run only (the file is appended to)
            self._log_offset = os.path.getsize(self.log_path)
        except OSError:
            self._log_offset = 0
        with open(self.log_path, "ab") as log, open(self.out_path, "ab") as out:
            self.proc = spawn([b, "-c", self.ini_path] + self.args, stdout=out, stderr=log,
                              stdin=subprocess.DEVNULL, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events():
                if e.get("event") == "listening" and isinstance(e.get("port"), int):
                    self.port = e["port"]
                    return self
            if self.proc.poll() is not None:
                raise AssertionError("proxy exited with %s before listening:\n%s"
                                     % (self.proc.returncode, _tail(self.log_path)))
            time.sleep(0.02)
        self.kill()
        raise AssertionError("proxy not listening after %ss:\n%s" % (timeout, _tail(self.log_path)))

    def log_text(self, all_runs=False):
        """stderr of the proxy since the last start() (all_runs: whole file)."""
        try:
            with open(self.log_path, "rb") as f:
                if not all_runs:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def events(self):
        """The JSON log lines so far (non-JSON lines skipped)."""
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict):
                out.append(e)
        return out

    def wait_event(self, pred, timeout=10):
        """First event matching pred (an event name or a function) -> dict."""
        if isinstance(pred, str):
            name = pred

            def pred(e):
                return e.get("event") == name
        deadline = time.time() + timeout
        while True:
            for e in self.events():
                if pred(e):
                    return e
            if time.time() > deadline:
                raise AssertionError("no matching proxy event in %ss; log tail:\n%s"
                                     % (timeout, _tail(self.log_path)))
            time.sleep(0.05)

    def status_kib(self, field="VmRSS"):
        """A memory figure of the running proxy from /proc/PID/status, in KiB
        (VmRSS now, VmHWM the peak)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError("no %s in /proc/%d/status" % (field, self.pid))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer")

    def sanitizer_report(self):
        """The first sanitizer finding in this run's log, or None."""
        text = self.log_text()
        for mark in self.SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send sig, wait up to timeout -> exit code (negative = killed by a
        signal; if it had to be SIGKILLed, stop_timed_out is set). Raises if
        the proxy's log holds a sanitizer report (ASan, LSan, UBSan)."""
        rc = self._stop(sig, timeout)
        report = self.sanitizer_report()
        if report:
            raise AssertionError("sanitizer report from the proxy (%s):\n%s" % (self.name, report))
        return rc

    def _stop(self, sig, timeout):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def request(self, method, target, headers=None, body=None, **kw):
        return request(self.port, method, target, headers, body, **kw)


def check_config(ini_text, work=None, name="check", timeout=20):
    """Run `BIN -t -c FILE` -> (exit_code, stdout, stderr)."""
    if work is None:
        d = os.path.join(WORK_ROOT, "_check")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "%s-%d.ini" % (name, os.getpid()))
        with open(path, "w") as f:
            f.write(ini_text)
    else:
        path = work.write(name + ".ini", ini_text)
    b = proxy_bin()
    if not os.path.exists(b):
        raise AssertionError("proxy binary %s not found (run make, or set S2S_PROXY_BIN)" % b)
    p = spawn([b, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("s2s-proxy -t did not finish in %ss" % timeout)
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# configuration

def default_credentials():
    """name -> INI keys; a "secret" pseudo-key is written to a file and becomes client_secret_file."""
    return {"contoso": {"tenant": TENANT_ID, "client_id": CLIENT_ID, "secret": CLIENT_SECRET}}


def default_routes(credential="contoso"):
    return {
        "dataverse": {"match_path": "/dataverse/", "strip_prefix": "true", "upstream": DATAVERSE_URL,
                      "audience": "dataverse", "credential": credential},
        "bc": {"match_path": "/bc/", "strip_prefix": "true", "upstream": BC_URL, "audience": "bc",
               "credential": credential},
        "fo": {"match_path": "/fo/", "strip_prefix": "true", "upstream": FO_URL, "audience": "fo",
               "credential": credential},
    }


def _section(name, keys):
    lines = ["[%s]" % name]
    for k, v in keys.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


def proxy_ini(sim_entra, sim_up=None, ca=None, routes=None, credentials=None, extra_proxy=None, work=None):
    """A realistic config: [proxy] on 127.0.0.1:0 with JSON logs, connect_to
    sending the Entra hosts to sim_entra and the Dynamics hosts to sim_up (default:
    the same sim), credentials (default_credentials()) and routes (default_routes()).
    ca: the CA dict or a path (default: the sim's CA). extra_proxy: dict or text
    added to [proxy]. A key with value None is left out."""
    sim_up = sim_up or sim_entra
    work = work or sim_entra.work
    ca = ca or sim_entra.work.ca
    ca_path = ca["ca"] if isinstance(ca, dict) else ca
    connect = sim_entra.connect_to(ENTRA_HOSTS) + sim_up.connect_to(UPSTREAM_HOSTS)
    proxy = {"listen": "127.0.0.1:0", "ca_file": ca_path, "log_format": "json", "log_level": "info"}
    # one connect_to line per entry: the key repeats, and INI lines are capped at 200 characters
    extra_text = "".join("connect_to = %s\n" % c for c in connect)
    if isinstance(extra_proxy, dict):
        proxy.update(extra_proxy)
    elif extra_proxy:
        extra_text += extra_proxy.rstrip("\n") + "\n"
    out = [_section("proxy", proxy) + extra_text]
    creds = default_credentials() if credentials is None else credentials
    for name, keys in creds.items():
        keys = dict(keys)
        if "secret" in keys:
            secret = keys.pop("secret")
            if secret is not None:
                keys["client_secret_file"] = work.write("secret-%s.txt" % name, secret, 0o600)
        out.append(_section("credential:%s" % name, keys))
    for name, keys in (default_routes() if routes is None else routes).items():
        out.append(_section("route:%s" % name, keys))
    return "\n".join(out)
