#!/usr/bin/python3
"""demo.py - s2s-proxy end to end against the local simulated Microsoft cloud.

Starts the simulated Entra ID, Dataverse, Business Central and F&O (TLS, test
CA made now), starts build/s2s-proxy with a realistic configuration, sends a
few real requests through it without any credentials, prints what happened
and stops everything. Nothing leaves this machine."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Proxy, Sim, Work, proxy_ini  # noqa: E402

BOLD = "\033[1m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
END = "\033[0m" if sys.stdout.isatty() else ""


def say(text=""):
    print(text, flush=True)


def step(text):
    say()
    say(BOLD + "==> " + text + END)


def show_request(px, method, target, headers=None, body=None):
    say("%s%s %s%s  (no Authorization header sent)" % (DIM, method, target, END))
    r = px.request(method, target, headers, body)
    say("    <- %d %s" % (r.status, r.reason))
    return r


def main():
    work = Work("demo")
    step("Starting the simulated Microsoft cloud (Entra ID, Dataverse, Business Central, F&O) over TLS")
    sim = Sim(work).start()
    say("    listening on 127.0.0.1:%d, test CA %s" % (sim.port, work.ca["ca"]))
    routes = harness.default_routes()
    routes["dataverse-wrong-secret"] = {"match_path": "/broken/", "strip_prefix": "true",
                                        "upstream": "https://contoso.crm.dynamics.com", "audience": "dataverse",
                                        "credential": "stale"}
    creds = harness.default_credentials()
    creds["stale"] = {"tenant": harness.TENANT_ID, "client_id": harness.CLIENT2_ID, "secret": "an-expired-secret"}
    ini = proxy_ini(sim, routes=routes, credentials=creds, work=work)
    px = None
    try:
        step("Starting s2s-proxy with this configuration (%s)" % work.path("proxy.ini"))
        for line in ini.splitlines():
            say("    " + line)
        px = Proxy(work, ini).start()
        say("    proxy listening on 127.0.0.1:%d" % px.port)

        step("Tokens fetched ahead of need, one per audience")
        seen = set()
        deadline = time.time() + 20
        while len(seen) < 4 and time.time() < deadline:
            for e in px.events():
                if e.get("event") in ("token_acquired", "token_failed") and e.get("resource") not in seen:
                    seen.add(e.get("resource"))
                    if e["event"] == "token_acquired":
                        say("    token acquired for %-45s aud=%s tid=%s appid=%s expires_in=%ss fingerprint=%s"
                            % (e.get("resource"), e.get("aud"), e.get("tid"), e.get("appid"), e.get("expires_in"),
                               e.get("fingerprint")))
                    else:
                        say("    token FAILED for %-46s %s %s" % (e.get("resource"), e.get("error"),
                                                                 e.get("error_codes")))
            time.sleep(0.1)

        step("Dataverse WhoAmI through the proxy")
        r = show_request(px, "GET", "/dataverse/api/data/v9.2/WhoAmI", [("Accept", "application/json")])
        say("    UserId %s, OrganizationId %s" % (r.json().get("UserId"), r.json().get("OrganizationId")))

        step("Dataverse: create an account")
        r = show_request(px, "POST", "/dataverse/api/data/v9.2/accounts",
                         [("Content-Type", "application/json"), ("OData-MaxVersion", "4.0"), ("OData-Version", "4.0")],
                         json.dumps({"name": "Fourth Coffee"}).encode())
        say("    OData-EntityId: %s" % r.header("OData-EntityId"))

        step("Business Central: list companies")
        r = show_request(px, "GET", "/bc/v2.0/production/api/v2.0/companies")
        for c in r.json().get("value", []):
            say("    company %s (%s)" % (c.get("name"), c.get("id")))

        step("What the services saw")
        for u in sim.requests(20):
            if u["target"].startswith("/_"):
                continue
            say("    %-4s https://%s%s  token aud=%s  -> %s" % (u["method"], u["host"], u["target"], u["aud"],
                                                              u["status"]))

        step("A route whose credential Entra rejects: the caller gets a diagnosis, not an empty 401")
        r = show_request(px, "GET", "/broken/api/data/v9.2/WhoAmI")
        p = r.json()
        for k in ("code", "title", "route", "audience", "client_id", "aadsts", "error", "trace_id", "remediation"):
            if k in p:
                say("    %-12s %s" % (k, p[k]))

        px.wait_event(lambda e: e.get("event") == "request" and e.get("path", "").startswith("/broken/"), 5)
        step("The proxy's log of those requests (JSON lines on stderr; no secrets or tokens)")
        for e in px.events():
            if e.get("event") == "request":
                say("    %s %s -> %s (upstream %s, %s ms)" % (e.get("method"), e.get("path"), e.get("status"),
                                                          e.get("upstream_status", "-"), e.get("duration_ms")))
        step("Stopping (SIGTERM: graceful)")
        rc = px.stop()
        px = None
        say("    s2s-proxy exited with status %s" % rc)
        return 0 if rc == 0 else 1
    finally:
        if px:
            px.stop()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
