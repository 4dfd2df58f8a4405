#!/usr/bin/python3
"""bench/run.py - s2s-proxy against nginx, on one machine, loopback only.

Started by scripts/bench.sh (which installs nginx-light and wrk). Starts:
  upstream  nginx serving a small JSON body (/small.json), a 64 KiB POST sink
            (/post: nginx reads the whole body, then forwards it to an internal
            sink server that answers 200), a 1 GiB file (/big) and a 1 GiB
            upload sink (/upload, body read completely before the answer);
  reference nginx proxy_pass to the upstream, keep-alive pool, static
            Authorization header, same worker count as s2s-proxy;
  peers     HAProxy (nbthread = workers) and Caddy (GOMAXPROCS = workers),
            each injecting the same static bearer header;
  s2s-proxy with a token from the simulated Entra (tests/sim/mscloud.py);
  floor     build/bench-floor proxy (bench/floor.c): the thinnest proxy that
            libmicrohttpd and libcurl allow, driven as s2s-proxy drives them,
            with none of s2s-proxy's work: what the two libraries cost alone.
Measures with wrk and writes bench/results.md (and bench/results.json).

Parameters (environment):
  BENCH_DURATION      seconds per wrk run (default 10)
  BENCH_REPEATS       runs per cell; the table shows medians (default 3)
  BENCH_CONNS         connection counts (default "1 32 256")
  BENCH_WORKERS       worker processes/threads of both proxies (default: nproc)
  BENCH_SOAK_SECONDS  soak duration (default 600)
  BENCH_SOAK_CONNS    soak connections (default 16), each pausing BENCH_SOAK_DELAY_MS
  BENCH_SOAK_DELAY_MS between requests (default 5): moderate, not saturating load
  BENCH_BIG_MIB       size of the streamed upload/download (default 1024)
  BENCH_PARTS         which parts to run: "table burst big soak cold" (default all)
  BENCH_BURST_IDLE    seconds every target sits idle before a burst cell (default 55:
                      past s2s-proxy's 50 s upstream connection age, so every
                      upstream connection is new; BENCH_BURST_TRIALS, default 2)
  BENCH_OUT           results file (default bench/results.md)
  BENCH_TARGETS       which targets (default "direct nginx haproxy caddy floor s2s-proxy
                      s2s-plain s2s-rewrite s2s-gate s2s-caller")
  BENCH_KINDS         which loads (default "get post json64k")
  BENCH_UPSTREAM_TLS  1 (default): every proxy reaches the upstream over TLS (a test
                      CA made at run time, verified by each proxy); 0: plain HTTP
The feature rows: s2s-plain is a route with rewrite_urls = off; s2s-rewrite
the same with rewrite_urls = auto on a 64 KiB JSON page of absolute upstream
URLs; s2s-gate the plain route with a throttle gate open (max_concurrent);
s2s-caller the plain route admitting one [caller:NAME] by its inbound key.
Every load loop is bounded: wrk runs for a fixed time, the soak for its
duration, big transfers have a timeout. Only 127.0.0.1 is used.
"""

import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))
import harness  # noqa: E402
from harness import Proxy, Sim, Work, proxy_ini  # noqa: E402

ENV = os.environ
DURATION = int(ENV.get("BENCH_DURATION", "10"))
REPEATS = int(ENV.get("BENCH_REPEATS", "3"))
CONNS = [int(c) for c in ENV.get("BENCH_CONNS", "1 32 256").split()]
WORKERS = int(ENV.get("BENCH_WORKERS", str(os.cpu_count() or 1)))
SOAK_SECONDS = int(ENV.get("BENCH_SOAK_SECONDS", "600"))
SOAK_CONNS = int(ENV.get("BENCH_SOAK_CONNS", "16"))
SOAK_DELAY_MS = int(ENV.get("BENCH_SOAK_DELAY_MS", "5"))
BIG_MIB = int(ENV.get("BENCH_BIG_MIB", "1024"))
PARTS = ENV.get("BENCH_PARTS", "table burst big soak cold").split()
BURST_IDLE = float(ENV.get("BENCH_BURST_IDLE", "55"))
BURST_TRIALS = int(ENV.get("BENCH_BURST_TRIALS", "2"))
TARGETS = ENV.get("BENCH_TARGETS", "direct nginx haproxy caddy floor s2s-proxy s2s-plain s2s-rewrite s2s-gate "
                  "s2s-caller").split()
KINDS = ENV.get("BENCH_KINDS", "get post json64k").split()
UPSTREAM_TLS = ENV.get("BENCH_UPSTREAM_TLS", "1") != "0"
# the name every proxy verifies in the upstream's certificate (tests/lib/ca.py's
# server certificate also carries 127.0.0.1, which curl checks as an IP SAN)
TLS_NAME = "localhost"
# the routes of the feature rows (one s2s-proxy process): path prefix -> extra route keys
FEATURE_ROUTES = {"s2s-plain": ("/plain", {"rewrite_urls": "off"}),
                  "s2s-rewrite": ("/rw", {"rewrite_urls": "auto"}),
                  "s2s-gate": ("/gate", {"rewrite_urls": "off", "max_concurrent": 4096}),
                  "s2s-caller": ("/caller", {"rewrite_urls": "off", "callers": "bench-app"})}
CALLER_KEY = "bench-caller-key-0123456789abcdef"
# experiments: extra environment for s2s-proxy only (e.g. GLIBC_TUNABLES=...),
# and its log level (info, the default, logs one line per request)
S2S_ENV = dict(kv.split("=", 1) for kv in ENV.get("BENCH_S2S_ENV", "").split() if "=" in kv)
S2S_LOG_LEVEL = ENV.get("BENCH_S2S_LOG_LEVEL", "info")
OUT = ENV.get("BENCH_OUT", os.path.join(HERE, "results.md"))
POST_BYTES = 64 * 1024
PAGE_BYTES = 64 * 1024
SMALL_JSON = ('{"@odata.context":"https://contoso.crm4.dynamics.com/api/data/v9.2/#accounts(name)",'
              '"value":[{"@odata.etag":"W/\\"1234567\\"","name":"Fourth Coffee",'
              '"accountid":"7d577253-3ef0-4a0a-bb7f-8335c2596e70"}]}')
AUDIENCE = "https://contoso.crm4.dynamics.com"


def say(*a):
    print(*a, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------------------
# process accounting (/proc)

def proc_tree(pid):
    """pid and its descendants (nginx master + workers)."""
    out = [pid]
    try:
        kids = open("/proc/%d/task/%d/children" % (pid, pid)).read().split()
    except OSError:
        kids = []
    for k in kids:
        out += proc_tree(int(k))
    return out


def cpu_seconds(pid):
    tot = 0.0
    tck = os.sysconf("SC_CLK_TCK")
    for p in proc_tree(pid):
        try:
            f = open("/proc/%d/stat" % p).read()
        except OSError:
            continue
        fields = f[f.rindex(")") + 2:].split()
        tot += (int(fields[11]) + int(fields[12])) / tck  # utime, stime
    return tot


def status_kib(pid, key):
    tot = 0
    for p in proc_tree(pid):
        try:
            for line in open("/proc/%d/status" % p):
                if line.startswith(key + ":"):
                    tot += int(line.split()[1])
        except OSError:
            pass
    return tot


def fd_count(pid):
    n = 0
    for p in proc_tree(pid):
        try:
            n += len(os.listdir("/proc/%d/fd" % p))
        except OSError:
            pass
    return n


class RssSampler:
    """Peak of the summed VmRSS of a process tree, sampled every 20 ms."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval, self.peak, self.base = pid, interval, 0, status_kib(pid, "VmRSS")
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))


# ---------------------------------------------------------------------------
# nginx

def nginx_conf(work, name, workers, servers, http_extra=""):
    d = work.path(name)
    os.makedirs(d, exist_ok=True)
    user = "user root;\n" if os.getuid() == 0 else ""
    conf = """%sworker_processes %d;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 4096; }
http {
    client_body_temp_path %s/body;
    proxy_temp_path %s/proxy;
    fastcgi_temp_path %s/fastcgi;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    log_format bench '$request_method $uri $status $request_length $ssl_session_reused $connection $authkind';
    map $http_authorization $authkind { "~^Bearer eyJ" jwt; "~^Bearer " static; default none; }
%s
%s
}
""" % (user, workers, d, d, d, d, d, d, d, http_extra, servers)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, d


class Nginx:
    def __init__(self, name, conf, d):
        self.name, self.conf, self.dir, self.proc = name, conf, d, None

    def start(self, ports):
        self.proc = harness.spawn(["/usr/sbin/nginx", "-p", self.dir, "-c", self.conf],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr.log"), "ab"),
                                  stdin=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if all(port_open(p) for p in ports):
                # the workers exist once the port answers
                time.sleep(0.2)
                return self
            if self.proc.poll() is not None:
                raise SystemExit("nginx %s exited: %s" % (self.name, harness._tail(os.path.join(self.dir, "error.log"))))
            time.sleep(0.05)
        raise SystemExit("nginx %s did not start" % self.name)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def port_open(p):
    try:
        socket.create_connection(("127.0.0.1", p), 0.2).close()
        return True
    except OSError:
        return False


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def tail_auth_kinds(path, start_line):
    """Authorization kinds the upstream saw since start_line, and how many
    distinct upstream connections carried them (connection churn)."""
    kinds, conns = {}, set()
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if i < start_line or not line.strip():
                continue
            parts = line.split()
            k = parts[-1].decode()
            kinds[k] = kinds.get(k, 0) + 1
            conns.add(parts[-2])
    return kinds, len(conns)


# ---------------------------------------------------------------------------
# wrk

# wrk's --latency prints p50 and p99 but not p99.9: every run uses a script
# whose done() prints the three from the same histogram (microseconds)
LAT_LUA = ('done = function(summary, latency, requests)\n'
           '  io.write(string.format("LATENCY_US %d %d %d\\n", latency:percentile(50), latency:percentile(99), '
           'latency:percentile(99.9)))\nend\n')


def wrk_script(work):
    p = work.path("post64k.lua")
    with open(p, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.body = string.rep("x", %d)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n' % POST_BYTES + LAT_LUA)
    with open(work.path("get.lua"), "w") as f:
        f.write(LAT_LUA)
    d = work.path("soak.lua")
    with open(d, "w") as f:
        f.write("function delay() return %d end\n" % SOAK_DELAY_MS)
    return p, d


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_lat(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def run_wrk(url, conns, seconds, script=None, headers=()):
    threads = max(1, min(2, conns))
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--latency", "--timeout", "10s"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    r = {"raw": out}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        r["p" + pct] = parse_lat(m.group(1)) if m else None
    m = re.search(r"^LATENCY_US (\d+) (\d+) (\d+)$", out, re.M)
    if m:  # the script's exact percentiles replace the rounded --latency text
        r["p50"], r["p99"], r["p999"] = (int(x) / 1000.0 for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["sock_err"] = sum(int(x) for x in m.groups()) if m else 0
    return r


# ---------------------------------------------------------------------------

def machine_description():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024
    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            return "?"
    osr = "?"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME"):
                osr = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "kernel": platform.release(), "os": osr,
            "nginx": ver(["/usr/sbin/nginx", "-v"]), "wrk": ver(["wrk", "-v"]),
            "haproxy": ver(["haproxy", "-v"]).split(" 20")[0] if shutil.which("haproxy") else "-",
            "caddy": "Caddy " + ver(["caddy", "version"]) if shutil.which("caddy") else "-",
            "s2s": ver([harness.proxy_bin(), "--version"]), "load_before": " ".join(load),
            "commit": ver(["git", "-C", REPO, "describe", "--always", "--dirty"])}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self):
        self.work = Work("bench")
        # a private copy of the binary: other people rebuild build/s2s-proxy while
        # the benchmark runs (and perf needs the exact binary it recorded)
        src = harness.proxy_bin()
        self.bin = self.work.path("s2s-proxy")
        shutil.copy2(src, self.bin)
        os.environ["S2S_PROXY_BIN"] = self.bin
        self.up_port, self.sink_port, self.ngx_port = free_port(), free_port(), free_port()
        self.tls_port = free_port()
        self.ca = self.work.ca  # a test CA made now: the upstream's certificate and every proxy's anchor
        # what every proxy (and `direct`) uses to reach the upstream
        self.up_url = ("https://127.0.0.1:%d" % self.tls_port) if UPSTREAM_TLS else ("http://127.0.0.1:%d" % self.up_port)
        self.results = {"machine": machine_description(), "params": {
            "duration_s": DURATION, "repeats": REPEATS, "conns": CONNS, "workers": WORKERS,
            "soak_s": SOAK_SECONDS, "soak_conns": SOAK_CONNS, "soak_delay_ms": SOAK_DELAY_MS, "big_mib": BIG_MIB,
            "s2s_env": S2S_ENV, "s2s_log_level": S2S_LOG_LEVEL, "upstream_tls": UPSTREAM_TLS}}
        self.post_lua, self.soak_lua = wrk_script(self.work)
        self.get_lua = self.work.path("get.lua")
        self.big = self.work.path("big.bin")
        with open(self.big, "wb") as f:
            f.truncate(BIG_MIB << 20)  # sparse: reading it costs no disk

    # -- servers
    def start_upstream(self):
        servers = """
    upstream sink { server 127.0.0.1:%(sink)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(up)d backlog=4096;
        listen 127.0.0.1:%(tls)d ssl backlog=4096;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_session_cache shared:bench:10m;
        access_log %(d)s/access.log bench;
        client_max_body_size 0;
        client_body_buffer_size 128k;
        location = /small.json { default_type application/json; return 200 '%(json)s'; }
        location = /big { default_type application/octet-stream; alias %(big)s; }
        # 64 KiB of Dataverse-like JSON naming the upstream's own origin (rewritten by s2s-rewrite)
        location = /page64k.json { default_type application/json; alias %(page)s; }
        # the body is read completely (memory up to 128k, then a temp file)
        # before nginx forwards it to the sink: the answer follows the body
        location = /post { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://sink; }
        location = /upload { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://sink; }
    }
    server {
        listen 127.0.0.1:%(sink)d backlog=4096;
        access_log off;
        client_max_body_size 0;
        location / { default_type application/json; return 200 '{"ok":true}'; }
    }
""" % {"up": self.up_port, "tls": self.tls_port, "sink": self.sink_port, "d": self.work.path("upstream"),
       "json": SMALL_JSON, "big": self.big, "page": self.write_page(), "cert": self.ca["cert"], "key": self.ca["key"]}
        conf, d = nginx_conf(self.work, "upstream", WORKERS, servers)
        self.up_log = os.path.join(d, "access.log")
        self.upstream = Nginx("upstream", conf, d).start([self.up_port, self.tls_port, self.sink_port])

    def write_page(self):
        """A JSON page of about PAGE_BYTES whose records carry absolute URLs
        of the upstream (as Dataverse answers name its own origin)."""
        origin = self.up_url
        recs, size, i = [], 0, 0
        while size < PAGE_BYTES - 600:
            rec = ('{"@odata.etag":"W/\\"%d\\"","@odata.id":"%s/api/data/v9.2/accounts(%08x-3ef0-4a0a-bb7f-'
                   '8335c2596e70)","name":"Fourth Coffee %d","revenue":%d.25,"statecode":0,'
                   '"websiteurl":"https://www.fourthcoffee.example/","description":"Coffee roaster and retailer"}'
                   % (i, origin, i, i, i * 1000))
            recs.append(rec)
            size += len(rec) + 1
            i += 1
        body = ('{"@odata.context":"%s/api/data/v9.2/$metadata#accounts","value":[%s],'
                '"@odata.nextLink":"%s/api/data/v9.2/accounts?$skiptoken=%d"}' % (origin, ",".join(recs), origin, i))
        path = self.work.write("page64k.json", body)
        self.page_urls = body.count(origin)
        return path

    def start_haproxy(self, token):
        """HAProxy, WORKERS threads, keep-alive to the upstream, the same bearer header."""
        self.hap_port = free_port()
        d = self.work.path("haproxy")
        os.makedirs(d, exist_ok=True)
        conf = """global
    nbthread %(w)d
    maxconn 4096
    # the bearer header (a JWT of about 1 KiB) is added while a 64 KiB body
    # may already fill the buffer: the default 1 KiB rewrite reserve is too small
    tune.bufsize 32768
    tune.maxrewrite 8192
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:%(port)d
    option forwardfor
    http-request set-header Authorization "Bearer ${BENCH_TOKEN}"
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %%[req.hdr(host)]
    default_backend up
backend up
    http-reuse always
    server up 127.0.0.1:%(up)d%(tls)s
""" % {"w": WORKERS, "port": self.hap_port, "up": self.tls_port if UPSTREAM_TLS else self.up_port,
       "tls": (" ssl verify required ca-file %s sni str(%s) verifyhost %s" % (self.ca["ca"], TLS_NAME, TLS_NAME))
       if UPSTREAM_TLS else ""}
        path = os.path.join(d, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        self.haproxy = harness.spawn(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(d, "stderr.log"), "ab"), stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, BENCH_TOKEN=token))
        self.wait_port(self.haproxy, self.hap_port, "haproxy", os.path.join(d, "stderr.log"))

    def start_caddy(self, token):
        """Caddy reverse_proxy, GOMAXPROCS = WORKERS, the same bearer header
        (Caddy adds X-Forwarded-For/-Proto/-Host itself)."""
        self.caddy_port = free_port()
        d = self.work.path("caddy")
        os.makedirs(d, exist_ok=True)
        conf = """{
	admin off
	auto_https off
}
http://127.0.0.1:%(port)d {
	reverse_proxy %(up)s {
		header_up Authorization "Bearer {env.BENCH_TOKEN}"%(tls)s
	}
}
""" % {"port": self.caddy_port, "up": self.up_url,
       "tls": ("\n\t\ttransport http {\n\t\t\ttls_trusted_ca_certs %s\n\t\t\ttls_server_name %s\n\t\t}"
               % (self.ca["ca"], TLS_NAME)) if UPSTREAM_TLS else ""}
        path = os.path.join(d, "Caddyfile")
        with open(path, "w") as f:
            f.write(conf)
        env = dict(os.environ, BENCH_TOKEN=token, GOMAXPROCS=str(WORKERS), HOME=d,
                   XDG_CONFIG_HOME=os.path.join(d, "config"), XDG_DATA_HOME=os.path.join(d, "data"))
        self.caddy = harness.spawn(["caddy", "run", "--config", path, "--adapter", "caddyfile"],
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr.log"), "ab"),
                                   stdin=subprocess.DEVNULL, env=env)
        self.wait_port(self.caddy, self.caddy_port, "caddy", os.path.join(d, "stderr.log"))

    def wait_port(self, proc, port, name, log):
        deadline = time.time() + 15
        while not port_open(port):
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("bench: %s did not start:\n%s" % (name, harness._tail(log)))
            time.sleep(0.02)

    def start_nginx_proxy(self, token):
        servers = """
    upstream up { server 127.0.0.1:%(up)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(port)d backlog=4096 reuseport;
        access_log %(d)s/access.log;
        client_max_body_size 0;
        client_body_buffer_size 128k;
        location / {
            proxy_pass %(scheme)s://up;
            proxy_http_version 1.1;%(tls)s
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer %(token)s";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }
    }
""" % {"up": self.tls_port if UPSTREAM_TLS else self.up_port, "port": self.ngx_port,
       "d": self.work.path("nginx-proxy"), "token": token, "scheme": "https" if UPSTREAM_TLS else "http",
       "tls": ("\n            proxy_ssl_verify on;\n            proxy_ssl_trusted_certificate %s;"
               "\n            proxy_ssl_name %s;\n            proxy_ssl_server_name on;"
               "\n            proxy_ssl_session_reuse on;" % (self.ca["ca"], TLS_NAME)) if UPSTREAM_TLS else ""}
        conf, d = nginx_conf(self.work, "nginx-proxy", WORKERS, servers)
        self.nginx = Nginx("nginx-proxy", conf, d).start([self.ngx_port])

    def start_floor(self, token):
        """bench/floor.c's thin proxy, WORKERS threads, the same token upstream."""
        fl = os.path.join(REPO, "build", "bench-floor")
        if not os.path.exists(fl):
            raise SystemExit("bench: build/bench-floor missing (make build/bench-floor)")
        self.floor_port = free_port()
        log = open(self.work.path("floor.log"), "ab")
        self.floor = subprocess.Popen([fl, "proxy", str(self.floor_port), self.up_url, str(WORKERS)],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                      env=dict(os.environ, BENCH_FLOOR_TOKEN=token, BENCH_FLOOR_CAFILE=self.ca["ca"]),
                                      start_new_session=True)
        deadline = time.time() + 10
        while not port_open(self.floor_port):
            if time.time() > deadline or self.floor.poll() is not None:
                raise SystemExit("bench: bench-floor did not start")
            time.sleep(0.01)

    def s2s_ini(self, port, log_level="info"):
        up = self.up_url
        routes = {"bench": {"match_path": "/", "upstream": up, "audience": AUDIENCE, "credential": "contoso"}}
        # the feature rows: the same upstream under a path prefix, one feature each
        for name, (prefix, keys) in FEATURE_ROUTES.items():
            route = {"match_path": prefix + "/", "strip_prefix": "true", "upstream": up, "audience": AUDIENCE,
                     "credential": "contoso"}
            route.update(keys)
            if name == "s2s-rewrite":  # the upstream's host is ours (127.0.0.1): say what the client uses
                route["public_url"] = "http://127.0.0.1:%d%s" % (port, prefix)
            routes[name] = route
        key = self.work.write("caller.key", CALLER_KEY + "\n", 0o600)
        return (proxy_ini(self.sim, routes=routes, work=self.work,
                          extra_proxy={"listen": "127.0.0.1:%d" % port, "workers": WORKERS,
                                       "log_level": log_level, "max_connections": 4096})
                + "\n[caller:bench-app]\ninbound_key_file = %s\n" % key)

    def start_s2s(self, name="s2s", log_level=None):
        port = free_port()
        level = log_level or S2S_LOG_LEVEL
        if level in ("info", "debug"):
            return Proxy(self.work, self.s2s_ini(port, level), name=name, env=S2S_ENV).start()
        # quieter levels do not log "listening": wait for the port instead
        px = Proxy(self.work, self.s2s_ini(port, level), name=name, env=S2S_ENV)
        env = dict(os.environ, **S2S_ENV)
        with open(px.log_path, "ab") as log, open(px.out_path, "ab") as out:
            px.proc = harness.spawn([self.bin, "-c", px.ini_path], stdout=out, stderr=log,
                                    stdin=subprocess.DEVNULL, env=env)
        deadline = time.time() + 20
        while not port_open(port):
            if time.time() > deadline or px.proc.poll() is not None:
                raise SystemExit("s2s-proxy did not start:\n" + harness._tail(px.log_path))
            time.sleep(0.01)
        px.port = port
        return px

    def wait_ready(self, px, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = px.request("GET", "/small.json")
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("s2s-proxy not ready:\n" + harness._tail(px.log_path))

    def token_requests(self):
        return self.sim.stats().get("token_requests")

    def preflight(self, targets, kinds):
        """One request per cell before the load: a target that answers an
        error is named here (with the start of its answer), and the rewriting
        route must have rewritten every URL of the page."""
        import http.client
        for kind, (path, _, names) in kinds.items():
            for name in names:
                if name not in targets:
                    continue
                base, _, hdrs = targets[name]
                scheme, _, rest = base.partition("://")
                host, _, prefix = rest.partition("/")
                conn = self.connection(scheme, host)
                headers = dict(h.split(": ", 1) for h in hdrs)
                body = None
                if path == "/post":
                    body = b"x" * POST_BYTES
                    headers["Content-Type"] = "application/octet-stream"
                conn.request("POST" if body else "GET", ("/" + prefix if prefix else "") + path, body, headers)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                if r.status != 200:
                    say("  preflight %s %s: %d %r" % (kind, name, r.status, data[:200]))
                if name == "s2s-caller":  # the row measures the key check only if the route makes one
                    conn = self.connection(scheme, host)
                    conn.request("GET", "/" + prefix + path)
                    r2 = conn.getresponse()
                    r2.read()
                    conn.close()
                    self.results["caller_without_key"] = r2.status
                    say("  preflight: %s without its key: %d" % (name, r2.status))
                if name == "s2s-rewrite":
                    public = "http://%s/%s/" % (host, prefix)
                    self.results["page64k_rewritten"] = data.count(public.encode())
                    say("  preflight: %s rewrote %d of the page's %d URLs"
                        % (name, self.results["page64k_rewritten"], self.page_urls))

    def connection(self, scheme, host):
        import http.client
        import ssl
        if scheme == "https":  # `direct` with the TLS upstream
            ctx = ssl.create_default_context(cafile=self.ca["ca"])
            return http.client.HTTPSConnection(host, timeout=10, context=ctx)
        return http.client.HTTPConnection(host, timeout=10)

    # -- part 1: the table
    def table(self):
        s2s = "http://127.0.0.1:%d" % self.s2s.port
        # name -> (base URL, pid, request headers)
        targets = {"direct": (self.up_url, self.upstream.pid, ()),
                   "nginx": ("http://127.0.0.1:%d" % self.ngx_port, self.nginx.pid, ()),
                   "s2s-proxy": (s2s, self.s2s.pid, ())}
        for name, port in (("haproxy", "hap_port"), ("caddy", "caddy_port")):
            if getattr(self, name, None):
                targets[name] = ("http://127.0.0.1:%d" % getattr(self, port), getattr(self, name).pid, ())
        if getattr(self, "floor", None):  # the libraries alone (bench/floor.c), next to the proxies
            targets["floor"] = ("http://127.0.0.1:%d" % self.floor_port, self.floor.pid, ())
        for name, (prefix, _) in FEATURE_ROUTES.items():  # the same s2s-proxy process
            hdrs = ("S2S-Proxy-Key: " + CALLER_KEY,) if name == "s2s-caller" else ()
            targets[name] = (s2s + prefix, self.s2s.pid, hdrs)
        targets = {k: targets[k] for k in TARGETS if k in targets}
        peers = ["direct", "nginx", "haproxy", "caddy", "floor", "s2s-proxy"]
        # load -> (path, script, targets): the feature rows run where they compare with s2s-plain
        kinds = {"GET small": ("/small.json", self.get_lua, peers + ["s2s-plain", "s2s-gate", "s2s-caller"]),
                 "POST 64 KiB": ("/post", self.post_lua, peers),
                 "JSON 64 KiB": ("/page64k.json", self.get_lua, ["direct", "nginx", "s2s-plain", "s2s-rewrite"])}
        sel = {"get": "GET small", "post": "POST 64 KiB", "json64k": "JSON 64 KiB"}
        kinds = {sel[k]: kinds[sel[k]] for k in KINDS if k in sel}
        self.preflight(targets, kinds)
        cells = {}
        tok0 = self.token_requests()
        # warm up every target (connections to the upstream, caches)
        for name, (base, pid, hdrs) in targets.items():
            run_wrk(base + "/small.json", 8, 1, headers=hdrs)
        for kind, (path, script, names) in kinds.items():
            names = [n for n in targets if n in names]
            for c in CONNS:
                for rep in range(REPEATS):
                    order = names[rep % len(names):] + names[:rep % len(names)]  # rotate: no variant always runs first
                    for name in order:
                        base, pid, hdrs = targets[name]
                        key = "%s|%d|%s" % (kind, c, name)
                        up0 = count_lines(self.up_log)
                        t0 = self.token_requests() if name == "s2s-proxy" else None
                        cpu0 = cpu_seconds(pid)
                        with RssSampler(pid) as rs:
                            r = run_wrk(base + path, c, DURATION, script, hdrs)
                        cpu = cpu_seconds(pid) - cpu0
                        time.sleep(0.3)  # let the upstream's access log catch up
                        up = count_lines(self.up_log) - up0
                        kinds_seen, up_conns = tail_auth_kinds(self.up_log, up0)
                        if t0 is not None:
                            r["token_requests"] = self.token_requests() - t0
                        r.update({"cpu_s": cpu, "rss_peak_kib": rs.peak, "upstream_requests": up,
                                  "auth": kinds_seen, "upstream_conns": up_conns,
                                  "cpu_per_10k": cpu / r["requests"] * 10000 if r["requests"] else None})
                        r.pop("raw")
                        cells.setdefault(key, []).append(r)
                        say("  %-12s c=%-4d %-11s rep %d: %9.0f req/s p50 %7.3f ms p99 %7.3f ms cpu/10k %.3f s "
                            "rss %6.1f MiB upstream saw %d on %d conns (wrk %d, non2xx %d, errors %d) auth %s"
                            % (kind, c, name, rep + 1, r["rps"], r["p50"] or -1, r["p99"] or -1,
                               r["cpu_per_10k"] or -1, rs.peak / 1024, up, up_conns, r["requests"], r["non2xx"],
                               r["sock_err"], kinds_seen) + (" token requests %d" % r["token_requests"]
                                                             if t0 is not None else ""))
        self.results["cells"] = cells
        self.results["page64k_urls"] = getattr(self, "page_urls", None)
        self.results["hot_path_token_requests"] = self.token_requests() - tok0

    # -- part 1b: a burst onto idle upstream connections
    def burst(self):
        """The cold tail: every target idles BURST_IDLE s (s2s-proxy's upstream
        connections expire after 50 s idle), then 256 connections arrive at
        once, so each proxy opens its upstream connections (TLS handshakes)
        while requests wait. Per target: p50/p99/p99.9 of those 4 s, and the
        upstream TLS handshakes of the burst (new connections, of which
        resumed sessions, from the upstream's access log)."""
        s2s = "http://127.0.0.1:%d" % self.s2s.port
        targets = {"nginx": "http://127.0.0.1:%d" % self.ngx_port, "s2s-proxy": s2s}
        for name, port in (("haproxy", "hap_port"), ("caddy", "caddy_port"), ("floor", "floor_port")):
            if getattr(self, name, None) and name in TARGETS:
                targets[name] = "http://127.0.0.1:%d" % getattr(self, port)
        cells = {}
        for trial in range(BURST_TRIALS):
            for base in targets.values():
                run_wrk(base + "/small.json", 32, 2, self.get_lua)
            time.sleep(BURST_IDLE)
            for name, base in targets.items():
                up0 = count_lines(self.up_log)
                r = run_wrk(base + "/small.json", 256, 4, self.get_lua)
                time.sleep(0.3)
                first = {}
                with open(self.up_log, "rb") as f:
                    for i, line in enumerate(f):
                        if i >= up0 and line.strip():
                            parts = line.split()
                            first.setdefault(parts[-2], parts[-3])
                r["new_conns"] = len(first)
                r["resumed"] = sum(1 for v in first.values() if v == b"r")
                r.pop("raw")
                cells.setdefault(name, []).append(r)
                say("  burst %d %-10s %7.0f req/s p50 %7.1f p99 %7.1f p99.9 %7.1f ms; upstream connections %d "
                    "(resumed %d)" % (trial + 1, name, r["rps"], r["p50"] or -1, r["p99"] or -1, r["p999"] or -1,
                                      r["new_conns"], r["resumed"]))
        self.results["burst"] = {"idle_s": BURST_IDLE, "cells": cells}

    # -- part 2a: 1 GiB up and down
    def curl_big(self, base, upload):
        if upload:
            cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload} %{time_total}",
                   "-H", "Expect:", "-H", "Content-Type: application/octet-stream", "-X", "POST",
                   "--data-binary", "@" + self.big, base + "/upload"]
            # --data-binary reads the file into memory: use -T (streams) instead
            cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload} %{time_total}",
                   "-H", "Expect:", "-H", "Content-Type: application/octet-stream", "-X", "POST",
                   "-T", self.big, base + "/upload"]
        else:
            cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                   base + "/big"]
        if base.startswith("https:"):
            cmd[1:1] = ["--cacert", self.ca["ca"]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        code, size, t = r.stdout.split()
        return int(code), int(size), float(t)

    def big_transfers(self):
        out = {}
        targets = {"direct": (self.up_url, self.upstream.pid),
                   "nginx": ("http://127.0.0.1:%d" % self.ngx_port, self.nginx.pid),
                   "s2s-proxy": ("http://127.0.0.1:%d" % self.s2s.port, self.s2s.pid)}
        for direction in ("download", "upload"):
            for name, (base, pid) in targets.items():
                rss0 = status_kib(pid, "VmRSS")
                with RssSampler(pid, 0.01) as rs:
                    code, size, t = self.curl_big(base, direction == "upload")
                r = {"status": code, "bytes": size, "seconds": t, "mib_s": size / (1 << 20) / t if t else 0,
                     "rss_before_kib": rss0, "rss_peak_kib": rs.peak, "rss_growth_kib": rs.peak - rss0}
                out["%s|%s" % (direction, name)] = r
                say("  %s %-10s %d %d bytes in %.2f s = %.0f MiB/s, RSS %.1f -> peak %.1f MiB (+%.2f MiB)"
                    % (direction, name, code, size, t, r["mib_s"], rss0 / 1024, rs.peak / 1024,
                       (rs.peak - rss0) / 1024))
        self.results["big"] = out

    # -- part 2b: soak
    def soak(self):
        px, pid = self.s2s, self.s2s.pid
        samples = []
        tok0 = self.token_requests()
        step = max(1, min(10, SOAK_SECONDS // 20))
        proc = subprocess.Popen(["wrk", "-t1", "-c%d" % SOAK_CONNS, "-d%ds" % SOAK_SECONDS, "--latency",
                                 "--timeout", "10s", "-s", self.soak_lua, "http://127.0.0.1:%d/small.json" % px.port],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        cpu0 = cpu_seconds(pid)
        try:
            while proc.poll() is None and time.time() - t0 < SOAK_SECONDS + 30:
                samples.append({"t": round(time.time() - t0, 1), "rss_kib": status_kib(pid, "VmRSS"),
                                "fds": fd_count(pid)})
                time.sleep(step)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        m = re.search(r"(\d+) requests in", out)
        n = int(m.group(1)) if m else 0
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        rps = float(m.group(1)) if m else 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        non2xx = int(m.group(1)) if m else 0
        # drift: the first 10 % is warm-up (allocator arenas, curl pool)
        warm = [s for s in samples if s["t"] >= SOAK_SECONDS * 0.1] or samples
        res = {"seconds": SOAK_SECONDS, "requests": n, "rps": rps, "non2xx": non2xx, "samples": samples,
               "rss_start_kib": warm[0]["rss_kib"], "rss_end_kib": warm[-1]["rss_kib"],
               "rss_max_kib": max(s["rss_kib"] for s in warm), "rss_min_kib": min(s["rss_kib"] for s in warm),
               "fd_start": warm[0]["fds"], "fd_end": warm[-1]["fds"], "fd_max": max(s["fds"] for s in warm),
               "cpu_s": cpu_seconds(pid) - cpu0, "token_requests": self.token_requests() - tok0}
        self.results["soak"] = res
        say("  soak %d s: %d requests (%.0f/s, non2xx %d), RSS %.1f -> %.1f MiB (min %.1f max %.1f), fds %d -> %d"
            % (SOAK_SECONDS, n, rps, non2xx, res["rss_start_kib"] / 1024, res["rss_end_kib"] / 1024,
               res["rss_min_kib"] / 1024, res["rss_max_kib"] / 1024, res["fd_start"], res["fd_end"]))

    # -- part 3: cold start with 256 connections; startup time
    def cold(self):
        res = {}
        # the token endpoint round trip, as a client sees it (TLS + sim)
        rtts = []
        for _ in range(5):
            t = time.time()
            self.sim.token(resource=AUDIENCE)
            rtts.append((time.time() - t) * 1000)
        res["token_rtt_ms"] = med(rtts)
        # startup to ready: exec -> first 200 through the proxy. The client
        # connects as soon as the port accepts (1 ms polling) and its request
        # waits in the proxy for the first token; `-t` (start, parse, exit)
        # is the floor without any network.
        starts, listens, token_ms, checks = [], [], [], []
        for i in range(5):
            port = free_port()
            ini = self.work.write("ready-%d.ini" % i, self.s2s_ini(port))
            t = time.monotonic()
            subprocess.run([self.bin, "-t", "-c", ini], capture_output=True, timeout=20)
            checks.append((time.monotonic() - t) * 1000)
            log = self.work.path("ready-%d.log" % i)
            env = dict(os.environ, **S2S_ENV)
            t0 = time.monotonic()
            # plain Popen: harness.spawn's preexec_fn makes Python fork (not
            # vfork/posix_spawn) a large process, which alone took ~20 ms here
            p = subprocess.Popen([self.bin, "-c", ini], stdout=subprocess.DEVNULL, stderr=open(log, "ab"),
                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            sock = None
            while time.monotonic() - t0 < 20:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), 1)
                    break
                except OSError:
                    time.sleep(0.001)
            t1 = time.monotonic()
            sock.settimeout(20)
            sock.sendall(b"GET /small.json HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = sock.recv(65536)
                if not b:
                    break
                data += b
            t2 = time.monotonic()
            sock.close()
            if not data.startswith(b"HTTP/1.1 200"):
                say("  startup run %d: unexpected answer %r" % (i, data[:100]))
            listens.append((t1 - t0) * 1000)
            starts.append((t2 - t0) * 1000)
            p.terminate()
            p.wait(10)
            for line in open(log, encoding="utf-8", errors="replace"):
                if '"token_acquired"' in line:
                    token_ms.append(json.loads(line).get("duration_ms"))
                    break
        res["startup_check_ms"] = med(checks)
        res["startup_listen_ms"] = med(listens)
        res["startup_ready_ms"] = med(starts)
        res["startup_ready_all_ms"] = starts
        res["startup_token_request_ms"] = med(token_ms)
        # 256 connections at a cold proxy, while the first token is slow (500 ms)
        self.sim.set_entra("slow", delay_ms=500)
        try:
            tok0 = self.token_requests()
            px = self.start_s2s("cold-256")
            r = run_wrk("http://127.0.0.1:%d/small.json" % px.port, 256, 3)
            time.sleep(0.2)
            res["cold256_token_requests"] = self.token_requests() - tok0
            res["cold256_requests"] = r["requests"]
            res["cold256_non2xx"] = r["non2xx"]
            res["cold256_errors"] = r["sock_err"]
            res["cold256_p99_ms"] = r["p99"]
            res["cold256_vmhwm_kib"] = status_kib(px.pid, "VmHWM")
            px.stop()
        finally:
            self.sim.set_entra("ok")
        # peak RSS of a fresh proxy at 256 connections (part 1's proxy carries
        # the history of every earlier cell)
        for kind, path, script in (("get", "/small.json", None), ("post64k", "/post", self.post_lua)):
            px = self.start_s2s("fresh256-%s" % kind)
            self.wait_ready(px)
            rss0 = status_kib(px.pid, "VmRSS")
            r = run_wrk("http://127.0.0.1:%d%s" % (px.port, path), 256, 5, script)
            res["fresh256_%s" % kind] = {"rss_idle_kib": rss0, "vmhwm_kib": status_kib(px.pid, "VmHWM"),
                                         "rps": r["rps"], "errors": r["non2xx"] + r["sock_err"]}
            say("  fresh proxy, 256 conns %s: idle RSS %.1f MiB, peak (VmHWM) %.1f MiB, %.0f req/s"
                % (kind, rss0 / 1024, res["fresh256_%s" % kind]["vmhwm_kib"] / 1024, r["rps"]))
            px.stop()
        self.results["cold"] = res
        say("  -t %.1f ms, listening %.1f ms, proxy's token request %s ms" % (res["startup_check_ms"],
            res["startup_listen_ms"], res["startup_token_request_ms"]))
        say("  token RTT %.1f ms, startup to ready %.0f ms (%s), cold 256 conns: %d token request(s), %d requests, "
            "non2xx %d" % (res["token_rtt_ms"], res["startup_ready_ms"], ", ".join("%.0f" % s for s in starts),
                            res["cold256_token_requests"], res["cold256_requests"], res["cold256_non2xx"]))

    # -- profiling (not in the default parts): perf and strace on s2s-proxy under load
    def profile(self):
        d = os.path.join(HERE, "profile")
        os.makedirs(d, exist_ok=True)
        pid = self.s2s.pid
        url = "http://127.0.0.1:%d" % self.s2s.port
        secs = int(ENV.get("BENCH_PROFILE_SECONDS", "8"))
        for kind, path, script in (("get", "/small.json", None), ("post64k", "/post", self.post_lua)):
            # perf: where the CPU goes (call graphs)
            data = os.path.join(d, "perf-%s.data" % kind)
            perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-o", data, "-p", str(pid), "--",
                                     "sleep", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = run_wrk(url + path, 32, secs, script)
            perf.wait(timeout=60)
            with open(os.path.join(d, "perf-%s.txt" % kind), "w") as f:
                subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                                "-g", "none", "--percent-limit", "0.4"], stdout=f, stderr=subprocess.DEVNULL,
                               timeout=300)
            with open(os.path.join(d, "perf-%s-children.txt" % kind), "w") as f:
                subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym", "--stdio",
                                "-g", "none", "--percent-limit", "1"], stdout=f, stderr=subprocess.DEVNULL,
                               timeout=300)
            say("  perf %s: %.0f req/s under perf" % (kind, r["rps"]))
            # strace -c: syscalls per request (strace slows the proxy a lot; counts, not times, matter)
            st = os.path.join(d, "strace-%s.txt" % kind)
            tr = subprocess.Popen(["strace", "-c", "-f", "-o", st, "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            up0 = count_lines(self.up_log)
            r = run_wrk(url + path, 32, 4, script)
            tr.send_signal(2)
            tr.wait(timeout=60)
            time.sleep(0.3)
            with open(st, "a") as f:
                f.write("\nrequests completed by wrk during the trace: %d (upstream saw %d)\n"
                        % (r["requests"], count_lines(self.up_log) - up0))
            say("  strace %s: %d requests" % (kind, r["requests"]))
            # the same for the nginx reference (all its processes) and the library floor
            others = [("nginx", self.nginx.pid, self.ngx_port)]
            if getattr(self, "floor", None):
                others.append(("floor", self.floor.pid, self.floor_port))
            for name, opid, port in others:
                st = os.path.join(d, "strace-%s-%s.txt" % (name, kind))
                cmd = ["strace", "-c", "-f", "-o", st]
                for p in proc_tree(opid):
                    cmd += ["-p", str(p)]
                tr = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                r = run_wrk("http://127.0.0.1:%d%s" % (port, path), 32, 4, script)
                tr.send_signal(2)
                tr.wait(timeout=60)
                time.sleep(0.3)
                with open(st, "a") as f:
                    f.write("\nrequests completed by wrk during the trace: %d\n" % r["requests"])

    def keep_events(self):
        """The proxy's non-request log lines (token events etc.) next to the
        results: the work directory is removed by the next run."""
        if not getattr(self, "s2s", None):
            return
        out = os.path.splitext(OUT)[0] + "-events.log"
        with open(out, "w") as f:
            for line in self.s2s.log_text().splitlines():
                if '"event":"request"' not in line:
                    f.write(line + "\n")

    def run(self):
        say("bench: starting the simulated Entra, the upstream nginx, nginx proxy_pass and s2s-proxy "
            "(%d workers each)" % WORKERS)
        self.sim = Sim(self.work).start(roles=["entra"])
        try:
            self.start_upstream()
            token = self.sim.access_token(resource=AUDIENCE)
            self.start_nginx_proxy(token)
            if "haproxy" in TARGETS:
                self.start_haproxy(token)
            if "caddy" in TARGETS:
                self.start_caddy(token)
            if "floor" in TARGETS:
                self.start_floor(token)
            self.s2s = self.start_s2s()
            self.wait_ready(self.s2s)
            if "table" in PARTS:
                say("bench: part 1, %d s per run, %d runs per cell" % (DURATION, REPEATS))
                self.table()
            if "burst" in PARTS:
                say("bench: burst, %d trials of 256 connections after %.0f s idle" % (BURST_TRIALS, BURST_IDLE))
                self.burst()
            if "big" in PARTS:
                say("bench: part 2, %d MiB streamed download and upload" % BIG_MIB)
                self.big_transfers()
            if "soak" in PARTS:
                say("bench: soak, %d s, %d connections pausing %d ms" % (SOAK_SECONDS, SOAK_CONNS, SOAK_DELAY_MS))
                self.soak()
            self.results["s2s_vmhwm_kib"] = status_kib(self.s2s.pid, "VmHWM")
            self.results["s2s_log_lines"] = sum(1 for e in self.s2s.events() if e.get("event") == "request")
            if "profile" in PARTS:
                say("bench: profile (perf, strace)")
                self.profile()
            if "cold" in PARTS:
                say("bench: cold start and startup time")
                self.cold()
        finally:
            self.keep_events()
            for s in ("s2s",):
                if getattr(self, s, None):
                    getattr(self, s).stop()
            for s in ("nginx", "upstream"):
                if getattr(self, s, None):
                    getattr(self, s).stop()
            for s in ("haproxy", "caddy"):
                p = getattr(self, s, None)
                if p and p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            if getattr(self, "floor", None) and self.floor.poll() is None:
                self.floor.terminate()
                self.floor.wait(10)
            self.sim.stop()
            harness.kill_children()
        self.results["machine"]["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
        with open(os.path.splitext(OUT)[0] + ".json", "w") as f:
            json.dump(self.results, f, indent=1)
        import report
        report.write(self.results, OUT)
        say("bench: wrote %s" % OUT)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import resource  # 256 connections x (client + upstream) per process: raise the fd limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    Bench().run()
