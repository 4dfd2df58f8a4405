#!/usr/bin/python3
"""mscloud.py - a simulated Microsoft cloud (Entra + Dataverse + BC + F&O).

  mscloud.py --port P --cert server.pem --key server-key.pem --state-dir DIR
             --roles entra,dataverse,bc,fo [--apps apps.json] [--host 127.0.0.1]

One HTTPS/1.1 server that dispatches on the Host header (port stripped).
Prints exactly "READY <port>" on stdout once listening; logs to stderr.
Processes sharing --state-dir share the token-signing key and the app
registry, so Entra and the upstreams can run (and die) separately.

Control API (any host, no token; JSON in and out):
  GET  /_sim/health                    {"ok":true,"roles":[..],"pid":n}
  GET  /_sim/stats                     counters, issued_tokens
  GET  /_sim/requests?limit=N          recent upstream requests, oldest first
  GET  /_sim/token_requests?limit=N    recent token requests, oldest first
  POST /_sim/reset                     stats and request logs ({"faults":true}: Entra faults too)
  GET|POST /_sim/entra                 fault mode: {"mode","count","delay_ms","retry_after",
                                       "lifetime","refresh_in","exp_offset","nbf_offset"}
  GET|POST /_sim/apps                  [app,..] or {"apps":[..],"replace":bool,"remove":[client_id,..]}
  GET|POST /_sim/limits                service protection limits (limits.py): {"dataverse": {"window_ms",
                                       "requests","exec_ms","concurrent","grace_ms"}|null, "bc":.., "fo":..};
                                       GET: config, violations, throttled/executed/max_inflight counts
  GET|POST /_sim/env_tenants           {"<upstream host>": "<tenant guid>"|null}
  POST /_sim/mint                      {"aud","tid","appid","lifetime","claims"} -> signed token
  GET  /_sim/jwks                      the signing key
"""

import argparse
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import StateDir, Stats, log, merge_apps  # noqa: E402
from entra import Entra  # noqa: E402
from httpcore import HTTPError, Server, make_ssl_ctx  # noqa: E402
from limits import Limits  # noqa: E402
from upstreams import Upstreams, host_kind  # noqa: E402

ENTRA_HOSTS = {"login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn",
               "login.windows.net", "login.microsoft.com", "login.chinacloudapi.cn"}
ROLES = ("entra", "dataverse", "bc", "fo")


class Sim:
    def __init__(self, roles, state_dir):
        self.roles = set(roles)
        self.state = StateDir(state_dir)
        self.stats = Stats()
        self.entra = Entra(self)
        self.upstreams = Upstreams(self)
        self.limits = Limits()

    def dispatch(self, req):
        if req.path.startswith("/_sim/"):
            return self.control(req)
        kind = "entra" if req.host in ENTRA_HOSTS else host_kind(req.host)
        if kind is None or kind not in self.roles:
            req.status = 421
            log("421 for host %r (roles %s)" % (req.host, ",".join(sorted(self.roles))))
            return req.send(421, [("Content-Type", "text/plain")],
                            "this simulator process does not serve host %s\n" % req.host)
        if kind == "entra":
            return self.entra.handle(req)
        return self.upstreams.handle(req, kind)

    def control(self, req):
        name = req.path[len("/_sim/"):].strip("/")
        body = None
        if req.method == "POST":
            raw = req.body.read_all(16 << 20)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return req.send_json(400, {"error": "body is not JSON"})
        elif req.method not in ("GET", "HEAD"):
            return req.send_json(405, {"error": "GET or POST"})
        try:
            out = self._control(req, name, body)
        except HTTPError as e:
            return req.send_json(e.status, {"error": e.msg})
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return req.send_json(400, {"error": "%s: %s" % (type(e).__name__, e)})
        if out is None:
            return req.send_json(404, {"error": "no such control endpoint: /_sim/%s" % name})
        req.send_json(200, out)

    def _control(self, req, name, body):
        st = self.stats
        post = body is not None
        if name == "health":
            return {"ok": True, "roles": sorted(self.roles), "pid": os.getpid(), "kid": self.state.kid}
        if name == "stats":
            return st.snapshot()
        if name in ("requests", "token_requests"):
            limit = req.qint("limit", 1000, 0)
            with st.lock:
                items = list(st.requests if name == "requests" else st.token_log)
            return items[-limit:] if limit else []
        if name == "reset" and post:
            st.reset()
            self.limits.reset()
            if isinstance(body, dict) and body.get("faults"):
                self.entra.faults.set({"mode": "ok", "lifetime": None, "refresh_in": None,
                                       "exp_offset": 0, "nbf_offset": 0, "clock_offset": 0, "delay_ms": 0,
                                       "retry_after": 2})
            return {"ok": True}
        if name == "entra":
            if post:
                if not isinstance(body, dict):
                    raise HTTPError(400, "expected an object")
                state = self.entra.faults.set(body)
                log("entra faults now %s" % json.dumps(state))
                return state
            return self.entra.faults.state()
        if name == "apps":
            if post:
                if isinstance(body, list):
                    body = {"apps": body}
                if not isinstance(body, dict):
                    raise HTTPError(400, "expected a list of apps or an object")
                remove = [str(c).lower() for c in body.get("remove", [])]

                def change(data):
                    merge_apps(data, body.get("apps", []), bool(body.get("replace")))
                    data["apps"] = [a for a in data["apps"] if a["client_id"].lower() not in remove]
                self.state.update_shared(change)
            return {"apps": self.state.shared()["apps"]}
        if name == "env_tenants":
            if post:
                if not isinstance(body, dict):
                    raise HTTPError(400, "expected an object")

                def change(data):
                    for h, t in body.items():
                        if t is None:
                            data["env_tenants"].pop(h.lower(), None)
                        else:
                            data["env_tenants"][h.lower()] = str(t).lower()
                self.state.update_shared(change)
            return {"env_tenants": self.state.shared()["env_tenants"]}
        if name == "limits":
            if post:
                if not isinstance(body, dict):
                    raise HTTPError(400, "expected an object")
                return self.limits.configure(body)
            return self.limits.state()
        if name == "mint" and post:
            return self.entra.mint(body if isinstance(body, dict) else {})
        if name == "jwks":
            return self.state.jwks()
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="simulated Microsoft cloud for s2s-proxy tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--roles", default=",".join(ROLES))
    ap.add_argument("--apps", help="JSON file: a list of app registrations (or {\"apps\": [...]})")
    a = ap.parse_args(argv)

    roles = [r.strip() for r in a.roles.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad:
        ap.error("unknown roles: %s" % ",".join(bad))
    sim = Sim(roles, a.state_dir)
    if a.apps:
        with open(a.apps) as f:
            apps = json.load(f)
        if isinstance(apps, dict):
            apps = apps.get("apps", [])
        sim.state.update_shared(lambda data: merge_apps(data, apps))

    srv = Server((a.host, a.port), sim, make_ssl_ctx(a.cert, a.key))
    port = srv.server_address[1]

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("listening on %s:%d roles=%s state=%s" % (a.host, port, ",".join(roles), sim.state.path))
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        srv.server_close()
        log("stopped")


if __name__ == "__main__":
    main()
