"""imds.py - simulated managed identity endpoints, plain HTTP like the real ones.

  Azure IMDS:   GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]
                header "Metadata: true" (else 400); answer with strings for every
                number: access_token, client_id, expires_in, expires_on, ext_expires_in,
                not_before, resource, token_type.
  App Service:  GET /msi/token?api-version=2019-08-01&resource=R[&client_id=C]
                header X-IDENTITY-HEADER = the IDENTITY_HEADER secret (else 401);
                answer: access_token, expires_on (unix seconds, string), resource,
                token_type, client_id.

Tokens come from a token factory (the simulated Entra's /_sim/mint, so the
simulated upstreams accept them). `fail` is a list of statuses answered first,
one per request (IMDS's real retry cases: 404 identity not yet assigned, 410
upgrading, 429, 500). Runs in the test process: MI(...).start() / .stop().
"""

import http.server
import json
import threading
import time
import urllib.parse

SYSTEM_ID = "77777777-aaaa-4bbb-8ccc-000000000007"


class MI:
    def __init__(self, mint, identities=(SYSTEM_ID,), identity_header="ih-secret", lifetime=3600):
        self.mint = mint                  # fn(resource, client_id, lifetime) -> access token
        self.identities = list(identities)  # first = system-assigned
        self.identity_header = identity_header
        self.lifetime = lifetime
        self.fail = []
        self.log = []
        self.lock = threading.Lock()
        self.srv = None

    @property
    def port(self):
        return self.srv.server_address[1]

    def start(self):
        mi = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                mi._handle(self)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def stop(self):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()

    def _send(self, h, status, body):
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h):
        u = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        entry = {"path": u.path, "query": q, "headers": {k.lower(): v for k, v in h.headers.items()}}
        with self.lock:
            self.log.append(entry)
            status = self.fail.pop(0) if self.fail else None
        app_service = u.path == "/msi/token"
        if status is not None:
            entry["status"] = status
            return self._send(h, status, {"error": "unknown", "error_description": "simulated %d" % status})
        if not app_service and u.path != "/metadata/identity/oauth2/token":
            return self._send(h, 404, {"error": "not_found"})
        if app_service:
            if h.headers.get("X-IDENTITY-HEADER") != self.identity_header:
                entry["status"] = 401
                return self._send(h, 401, {"statusCode": 401, "message": "Unauthorized request"})
            want_version = "2019-08-01"
        else:
            if h.headers.get("Metadata") != "true":
                entry["status"] = 400
                return self._send(h, 400, {"error": "invalid_request",
                                           "error_description": "Required metadata header not specified"})
            want_version = "2018-02-01"
        if q.get("api-version") != want_version or not q.get("resource"):
            entry["status"] = 400
            return self._send(h, 400, {"error": "invalid_request", "error_description": "bad api-version or resource"})
        cid = q.get("client_id") or self.identities[0]
        if cid not in self.identities:
            entry["status"] = 400
            return self._send(h, 400, {"error": "invalid_request", "error_description": "Identity not found"})
        token = self.mint(q["resource"], cid, self.lifetime)
        now = int(time.time())
        entry["status"] = 200
        if app_service:
            body = {"access_token": token, "expires_on": str(now + self.lifetime), "resource": q["resource"],
                    "token_type": "Bearer", "client_id": cid}
        else:
            body = {"access_token": token, "client_id": cid, "expires_in": str(self.lifetime),
                    "expires_on": str(now + self.lifetime), "ext_expires_in": str(self.lifetime),
                    "not_before": str(now), "resource": q["resource"], "token_type": "Bearer"}
        self._send(h, 200, body)
