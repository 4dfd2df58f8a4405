"""test_image.py - the container image, built and run, not only linted.

`scripts/image.sh` (make image) builds docker/Dockerfile with podman in chroot
isolation on Debian bases made by debootstrap from this machine's apt sources
(cached in /var/cache/s2s-proxy and podman's storage: only the first build on
a machine is slow). Then the image is inspected (non-root user, exec-form
entrypoint and health check on the binary, the runtime stage holds no
compiler, headers or secrets, the size budget of docs/guide-docker-kubernetes.md)
and run as a sidecar with `buildah run --isolation chroot --network host`
(`podman run` needs cgroups and rlimits this kind of machine does not give):
on a read-only root with every shell deleted, from the environment alone and
with a mounted configuration against the simulated cloud (200, token
injected), its health check command passing, SIGTERM draining to exit 0.

Skipped (one line) in the ASan phase - the image builds its own release
binary, whatever the phase - and where podman/buildah/debootstrap cannot be
installed or the build cannot run as root.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import eq, REPO, Sim, Work, proxy_ini

TAG = "localhost/s2s-proxy:test"
BIN = "/usr/local/bin/s2s-proxy"
W = SIM = None
# The first build on a machine: tools, debootstrap, both bases, the image (about
# 2.5 min on 2 cores; allow a slow mirror). Later builds reuse every cache.
SETUP_TIMEOUT = 1200
IMAGE = {}  # Config: the image's Docker-format configuration; Size: bytes
GUIDE = os.path.join(REPO, "docs", "guide-docker-kubernetes.md")


def sh(cmd, timeout=120, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout, env=e, cwd=REPO)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def tools_or_skip():
    """podman, buildah and debootstrap, installed by scripts/image.sh when missing; else SkipTest."""
    if os.environ.get("S2S_SANITIZED"):
        raise unittest.SkipTest("skipped: the image builds its own release binary (checked in the release phase)")
    if os.geteuid() != 0 and sh(["sudo", "-n", "true"], timeout=10)[0] != 0:
        raise unittest.SkipTest("skipped: building the image needs root (debootstrap, chroot isolation)")
    rc, out, err = sh([os.path.join(REPO, "scripts", "image.sh"), "--tools-only"], timeout=600)
    if rc != 0:
        raise unittest.SkipTest("skipped: podman/buildah/debootstrap cannot be installed: %s"
                                % (err or out).strip()[-300:])


def setup_module():
    global W, SIM
    tools_or_skip()
    remove_leftovers()
    W = Work("test_image")
    started = time.time()
    rc, out, err = sh([os.path.join(REPO, "scripts", "image.sh"), "--tag", TAG], timeout=SETUP_TIMEOUT - 60)
    assert rc == 0, "scripts/image.sh failed:\n%s%s" % (out, err[-3000:])
    print("image: built %s in %.1fs" % (TAG, time.time() - started))
    rc, out, err = sh(["buildah", "inspect", "--type", "image", TAG])
    eq(rc, 0, "buildah inspect (%s)" % err)
    IMAGE["Config"] = json.loads(out)["Docker"]["config"]
    rc, out, err = sh(["podman", "image", "inspect", "--format", "{{.Size}}", TAG])
    eq(rc, 0, "podman image inspect (%s)" % err)
    IMAGE["Size"] = int(out)
    SIM = Sim(W).start()


def teardown_module():
    if SIM:
        SIM.stop()


# ---------------------------------------------------------------------------
# containers: buildah from/mount/run, cleaned up in finally blocks

class Container:
    """A working container of the image. run() starts the image's entrypoint
    (or argv) with `buildah run`; the root is read-only and has no shell
    unless asked otherwise. Read-only as `podman run --read-only` makes it:
    the image's file system is, /run is a tmpfs (buildah run creates and
    removes /run/.containerenv there; it is root's, the proxy cannot write it)."""

    def __init__(self, name, read_only=True, no_shell=True):
        self.name = "s2s-image-test-%d-%s" % (os.getpid(), name)
        self.run_tmpfs = None
        rc, out, err = sh(["buildah", "from", "--pull-never", "--name", self.name, TAG], timeout=120)
        assert rc == 0, "buildah from: %s" % err
        try:
            self._prepare(read_only, no_shell)
        except BaseException:
            self.remove()
            raise

    def _prepare(self, read_only, no_shell):
        # Docker mounts a -v volume in place of the image's VOLUME; buildah run would
        # also mount its own copy of each, over ours: the working container has none.
        rc, _, err = sh(["buildah", "config", "--volume", "/etc/s2s-proxy-", "--volume", "/run/secrets/s2s-proxy-",
                         self.name], timeout=60)
        assert rc == 0, "buildah config: %s" % err
        rc, out, err = sh(["buildah", "mount", self.name], timeout=60)
        assert rc == 0, "buildah mount: %s" % err
        self.root = out.strip()
        if read_only:
            self.run_tmpfs = os.path.join(self.root, "run")
            rc, _, err = sh(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "s2s-image-run", self.run_tmpfs])
            eq(rc, 0, "tmpfs on /run (%s)" % err)
            os.makedirs(os.path.join(self.run_tmpfs, "secrets", "s2s-proxy"))
        # the files buildah run bind-mounts over must exist before the root turns read-only
        for f in ("run/.containerenv", "etc/hosts", "etc/resolv.conf", "etc/hostname"):
            open(os.path.join(self.root, f), "a").close()
        if no_shell:
            for f in ("sh", "dash", "bash", "rbash"):
                p = os.path.join(self.root, "usr", "bin", f)
                if os.path.lexists(p):
                    os.unlink(p)
        if read_only:
            rc, _, err = sh(["mount", "-o", "remount,ro", self.root])
            eq(rc, 0, "remount the container root read-only (%s)" % err)

    def cmd(self, argv, env=None, volumes=()):
        c = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
        for k, v in (env or {}).items():
            c += ["--env", "%s=%s" % (k, v)]
        for v in volumes:
            c += ["--volume", v]
        return c + [self.name, "--"] + list(argv)

    def run(self, argv, env=None, volumes=(), timeout=60):
        return sh(self.cmd(argv, env, volumes), timeout=timeout)

    def writable(self):
        try:
            open(os.path.join(self.root, "probe"), "w").close()
            return True
        except OSError:
            return False

    def remove(self):
        remove_container(self.name)


def remove_container(name):
    """Unmount our /run tmpfs (if any), the container's root, and remove it."""
    rc, out, _ = sh(["buildah", "mount", name], timeout=60)
    if rc == 0 and out.strip():
        sh(["umount", os.path.join(out.strip(), "run")], timeout=60)  # fails harmlessly without one
        sh(["buildah", "umount", name], timeout=60)  # the mount just taken
    sh(["buildah", "umount", name], timeout=60)
    sh(["buildah", "rm", name], timeout=60)


def remove_leftovers():
    """Containers of test runs that were killed before their finally blocks ran."""
    rc, out, _ = sh(["buildah", "containers", "--format", "{{.ContainerName}}"], timeout=60)
    for name in out.split() if rc == 0 else []:
        m = re.match(r"s2s-image-test-(\d+)-", name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            remove_container(name)


class Sidecar(harness.Proxy):
    """The image's entrypoint in a Container, with the harness Proxy's log
    reading (events, wait_event). pid is the binary itself, found by its
    executable under the container root: the process a runtime signals."""

    def __init__(self, ctr, name, env=None, volumes=()):
        harness.Proxy.__init__(self, W, "", name=name)
        self.ctr, self.cenv, self.volumes = ctr, env or {}, volumes
        self.proxy_pid = None

    def start(self, timeout=30):
        argv = IMAGE["Config"]["Entrypoint"] + (IMAGE["Config"].get("Cmd") or [])
        with open(self.log_path, "ab") as log, open(self.out_path, "ab") as out:
            self.proc = harness.spawn(self.ctr.cmd(argv, self.cenv, self.volumes), stdout=out, stderr=log,
                                      stdin=subprocess.DEVNULL)
        ev = self.wait_event(lambda e: e.get("event") == "listening" and isinstance(e.get("port"), int), timeout)
        self.port = ev["port"]
        self.proxy_pid = self.find_pid()
        return self

    def wait_event(self, pred, timeout=10):
        if not self.alive():  # buildah run exited: no event will come
            raise AssertionError("the container exited (%s):\n%s" % (self.proc.returncode, self.log_text()[-2000:]))
        return harness.Proxy.wait_event(self, pred, timeout)

    def find_pid(self):
        """The binary among buildah run's descendants (by /proc PPid links)."""
        parent = {}
        for d in os.listdir("/proc"):
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
                parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        for pid in parent:
            p = pid
            while p in parent and p != self.proc.pid:
                p = parent[p]
            try:
                if p == self.proc.pid and os.readlink("/proc/%d/exe" % pid).endswith(BIN):
                    return pid
            except OSError:
                continue
        raise AssertionError("no process under buildah run (pid %d) runs %s" % (self.proc.pid, BIN))

    def status(self, key):
        with open("/proc/%d/status" % self.proxy_pid) as f:
            return re.search(r"(?m)^%s:\s*(.*)$" % key, f.read()).group(1)

    def terminate(self, timeout=20):
        """SIGTERM to the binary, as `docker stop` sends it -> buildah run's exit code."""
        os.kill(self.proxy_pid, signal.SIGTERM)
        return self.proc.wait(timeout)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def health(ctr, env):
    """The image's HEALTHCHECK command (exec form) run in the container."""
    test = IMAGE["Config"]["Healthcheck"]["Test"]
    eq(test[0], "CMD", "health check form")
    return ctr.run(test[1:], env=env, timeout=30)


# ---------------------------------------------------------------------------
# the image as built

def budget_mb():
    m = re.search(r"(?m)^Size budget: (\d+) MB", open(GUIDE).read())
    assert m, "no 'Size budget: N MB' line in docs/guide-docker-kubernetes.md"
    return int(m.group(1))


def test_image_is_within_its_size_budget():
    size_mb = IMAGE["Size"] / 1e6
    print("image: %s is %.1f MB (budget %d MB)" % (TAG, size_mb, budget_mb()))
    assert size_mb <= budget_mb(), "image is %.1f MB, over the %d MB budget" % (size_mb, budget_mb())


def test_image_config_runs_the_binary_unprivileged():
    cfg = IMAGE["Config"]
    eq(cfg["User"], "10001:10001", "USER")
    eq(cfg["Entrypoint"], [BIN], "exec-form entrypoint: the binary, no shell")
    eq(cfg.get("Cmd") or [], [], "CMD")
    eq(cfg["Healthcheck"]["Test"], ["CMD", BIN, "health"], "HEALTHCHECK (kept by the Docker format)")
    eq(sorted(cfg.get("ExposedPorts") or {}), ["8080/tcp"], "EXPOSE")
    eq(sorted(cfg.get("Volumes") or {}), ["/etc/s2s-proxy", "/run/secrets/s2s-proxy"], "VOLUME")
    env = dict(e.split("=", 1) for e in cfg["Env"])
    eq((env["S2S_LISTEN"], env["S2S_ADMIN_LISTEN"]), ("0.0.0.0:8080", "127.0.0.1:9090"), "listen defaults")
    assert not [k for k in env if re.search("SECRET|PASSWORD|AZURE_", k)], env


def dpkg_packages(root):
    with open(os.path.join(root, "var", "lib", "dpkg", "status")) as f:
        return re.findall(r"(?m)^Package: (\S+)\nStatus: install ok installed", f.read())


def test_runtime_holds_no_compiler_headers_or_secrets():
    ctr = Container("files", read_only=False, no_shell=False)
    try:
        root = ctr.root
        pkgs = dpkg_packages(root)
        bad = [p for p in pkgs if p.endswith("-dev") or re.fullmatch(r"(gcc|cpp|g\+\+)(-\d+)?|clang.*|binutils.*|"
                                                                      r"make|build-essential|curl|wget", p)]
        eq(bad, [], "build packages in the runtime stage")
        for tool in ("cc", "gcc", "cpp", "ld", "as", "make", "curl", "wget"):
            assert not os.path.lexists(os.path.join(root, "usr", "bin", tool)), tool
        headers, keys = [], []
        for d, dirs, files in os.walk(root):
            rel = os.path.relpath(d, root)
            if rel.split(os.sep)[0] in ("proc", "sys", "dev"):
                dirs[:] = []
                continue
            for f in files:
                p = os.path.join(d, f)
                if f.endswith(".h"):
                    headers.append(p)
                elif os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) < 1 << 20:
                    with open(p, "rb") as fh:
                        data = fh.read()
                    # a PEM key file (libraries hold the marker as a string constant)
                    if not data.startswith(b"\x7fELF") and b"PRIVATE KEY-----" in data:
                        keys.append(p)
        eq(headers, [], "header files")
        eq(keys, [], "private keys")
        assert not os.path.exists(os.path.join(root, "src")), "the build tree is in the runtime stage"
        eq(os.listdir(os.path.join(root, "etc", "s2s-proxy")), [], "baked-in configuration")
        eq(os.listdir(os.path.join(root, "run", "secrets", "s2s-proxy")), [], "baked-in secrets")
        # slim like Debian's slim images: no documentation, manuals, translations or apt lists
        # (dpkg leaves a package's symlinks, e.g. libxml2's NEWS.gz -> changelog.gz, dangling: no bytes)
        docs = [f for d, _, fs in os.walk(os.path.join(root, "usr", "share", "doc")) for f in fs
                if f != "copyright" and not os.path.islink(os.path.join(d, f))]
        eq(docs, [], "documentation besides copyright files")
        for name, src in (("s2s-proxy", "LICENSE"), ("libmicrohttpd", "third_party/libmicrohttpd/COPYING")):
            with open(os.path.join(root, "usr", "share", "doc", name, "copyright"), "rb") as got, \
                    open(os.path.join(REPO, src), "rb") as want:
                eq(got.read() == want.read(), True, "%s's licence in the image" % name)
        for d in ("usr/share/man", "usr/share/info", "var/lib/apt/lists"):
            left = [f for _, _, fs in os.walk(os.path.join(root, d)) for f in fs if f != "lock"]
            eq(left, [], d)
        eq(sorted(set(os.listdir(os.path.join(root, "usr", "share", "locale"))) - {"locale.alias"}), [], "locales")
        rc, out, err = ctr.run([BIN, "--version"])
        eq(rc, 0, "--version in the image (%s)" % err)
        pinned = re.search(r"libmicrohttpd-([0-9.]+)\.tar\.gz",
                           open(os.path.join(REPO, "third_party", "libmicrohttpd", "SHA256SUMS")).read()).group(1)
        assert "libmicrohttpd %s (inbound HTTP, built from third_party/)" % pinned in out, out
    finally:
        ctr.remove()


# ---------------------------------------------------------------------------
# the image running, with no shell and a read-only root

def azure_env(**extra):
    env = {"AZURE_TENANT_ID": harness.TENANT_ID, "AZURE_CLIENT_ID": harness.CLIENT_ID,
           "AZURE_CLIENT_SECRET": harness.CLIENT_SECRET}
    env.update(extra)
    return env


def test_environment_only_mode_on_a_read_only_root_without_shell():
    ctr = Container("env")
    px = None
    try:
        assert not ctr.writable(), "the container root is writable"
        assert not os.path.lexists(os.path.join(ctr.root, "usr", "bin", "sh")), "a shell is left"
        entry = IMAGE["Config"]["Entrypoint"]
        rc, out, err = ctr.run(entry + ["-t"], env=azure_env(S2S_UPSTREAM=harness.DATAVERSE_URL))
        eq(rc, 0, "entrypoint -t from the environment (%s)" % err)
        eq(out, "(environment): configuration ok (1 routes, 1 credentials)\n", "-t output")
        rc, _, err = ctr.run(entry + ["-t"], env=azure_env())
        eq(rc, 2, "entrypoint without configuration")
        assert "S2S_UPSTREAM is not set" in err, err
        # run from the environment: listeners from S2S_*, admin port probed by the health check
        admin = "127.0.0.1:%d" % free_port()
        env = azure_env(S2S_UPSTREAM=harness.DATAVERSE_URL, S2S_LISTEN="127.0.0.1:0", S2S_ADMIN_LISTEN=admin,
                        AZURE_AUTHORITY_HOST="https://127.0.0.1:1")  # no token: nothing leaves the machine
        px = Sidecar(ctr, "env", env=env).start()
        eq(px.status("Uid").split()[0], "10001", "the binary's uid")
        eq(health(ctr, {"S2S_ADMIN_LISTEN": admin})[0], 0, "health check on %s" % admin)
        eq(px.terminate(), 0, "exit after SIGTERM")
    finally:
        if px:
            px.kill()
        ctr.remove()


def sidecar_files():
    """/etc/s2s-proxy and /run/secrets/s2s-proxy for the container: a
    configuration sending Entra and Dataverse to the simulator, its CA, and the
    client secret readable by the image's user only."""
    conf, secrets = W.path("mnt", "etc"), W.path("mnt", "secrets")
    os.makedirs(conf, exist_ok=True)
    os.makedirs(secrets, exist_ok=True)
    shutil.copy(W.ca["ca"], os.path.join(conf, "ca.pem"))
    secret = W.write(os.path.join("mnt", "secrets", "client_secret"), harness.CLIENT_SECRET, 0o600)
    os.chown(secret, 10001, 10001)
    creds = {"contoso": {"tenant": harness.TENANT_ID, "client_id": harness.CLIENT_ID,
                         "client_secret_file": "/run/secrets/s2s-proxy/client_secret"}}
    ini = proxy_ini(SIM, ca="/etc/s2s-proxy/ca.pem", credentials=creds, work=W,
                    extra_proxy={"admin_listen": "127.0.0.1:%d" % free_port()})
    with open(os.path.join(conf, "s2s-proxy.ini"), "w") as f:
        f.write(ini)
    for p in (conf, secrets, os.path.join(conf, "s2s-proxy.ini"), os.path.join(conf, "ca.pem")):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    admin = re.search(r"(?m)^admin_listen = (\S+)", ini).group(1)
    return ["%s:/etc/s2s-proxy:ro" % conf, "%s:/run/secrets/s2s-proxy:ro" % secrets], admin


def test_sidecar_injects_a_token_passes_health_and_drains():
    ctr = Container("sidecar")
    px = None
    try:
        volumes, admin = sidecar_files()
        px = Sidecar(ctr, "sidecar", env={"S2S_ADMIN_LISTEN": admin}, volumes=volumes).start()
        px.wait_event("token_acquired", 30)
        r = px.request("GET", "/dataverse/api/data/v9.2/WhoAmI", [("Accept", "application/json")])
        eq(r.status, 200, "status through the sidecar")
        up = [q for q in SIM.requests() if q["target"] == "/api/data/v9.2/WhoAmI"][-1]
        eq((up["aud"], up["appid"]), (harness.DATAVERSE_URL, harness.CLIENT_ID), "token seen by Dataverse")
        eq(health(ctr, {"S2S_ADMIN_LISTEN": admin})[0], 0, "health check")
        eq(health(ctr, {"S2S_ADMIN_LISTEN": "127.0.0.1:%d" % px.port})[0], 1, "health check on the proxy port")
        # SIGTERM with a request in flight: it completes, then the binary exits 0
        result = {}

        def slow():
            try:
                result["r"] = px.request("GET", "/dataverse/_test/slow?ms=1500", timeout=20)
            except Exception as e:  # noqa: BLE001 - reported below
                result["e"] = e

        before = SIM.stats()["upstream_requests"]
        t = threading.Thread(target=slow)
        t.start()
        wait_inflight(before)
        rc = px.terminate()
        t.join(20)
        assert "e" not in result, "in-flight request failed: %r" % result.get("e")
        eq(result["r"].status, 200, "in-flight request status")
        eq(rc, 0, "exit after SIGTERM")
        assert any(e.get("event") == "stopped" for e in px.events()), px.log_text()[-2000:]
    finally:
        if px:
            px.kill()
        ctr.remove()


def wait_inflight(before, timeout=5):
    """Until the simulator is answering the slow request (it counts a request
    when it starts, records it when done): the proxy holds it in flight."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if SIM.stats()["upstream_requests"] > before:
            return
        time.sleep(0.05)
    raise AssertionError("the slow request never reached the simulator")
