"""limits.py - service protection limits of the simulated Dynamics services.

Dataverse evaluates them per user (an application user counts as one) and
per web server over a sliding window: a number of requests, a combined
execution time, and a number of concurrent requests. Past a limit it
answers 429 with Retry-After (seconds), the x-ms-ratelimit-* headers and an
error body naming the limit (0x80072322 requests, 0x80072321 execution
time, 0x80072326 concurrency); the Organization service answers a SOAP
fault whose ErrorCode is -2147015902 / -2147015903 / -2147015898 with the
wait as a Retry-After TimeSpan in ErrorDetails. Business Central and F&O
answer their own 429 shapes. The real window is 5 minutes with 6,000
requests, 1,200 s and 52 concurrent; tests scale it down.

Off until configured (POST /_sim/limits):
  {"dataverse": {"window_ms": 3000, "requests": 20, "exec_ms": 0, "concurrent": 0,
                 "grace_ms": 250}, "bc": {...}, "fo": {...}}   (a kind set to null: off)
An identity is (appid, host). A request that arrives while its identity was
told to wait (after the grace that covers requests already on the wire when
the 429 left) is a violation: it is recorded (GET /_sim/limits) and answered
429 again, without extending the wait, so a test sees every one.
"""

import collections
import math
import threading
import time

from common import guid, jdump

DV_LIMITS = {
    "requests": ("0x80072322", -2147015902,
                 "Number of requests exceeded the limit of {n} over time window of {w} seconds."),
    "time": ("0x80072321", -2147015903,
             "Combined execution time of incoming requests exceeded limit of {n} milliseconds over time window of "
             "{w} seconds. Decrease number of concurrent requests or reduce the duration of requests and try "
             "again later."),
    "concurrency": ("0x80072326", -2147015898, "Number of concurrent requests exceeded the limit of {n}."),
}


def timespan(seconds):
    """A .NET TimeSpan as the Organization service serializes it: [d.]hh:mm:ss."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return ("%d." % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


class Identity:
    def __init__(self):
        self.done = collections.deque()  # (start, exec_ms) of executed requests
        self.inflight = 0
        self.wait_until = 0.0  # told to wait until (monotonic wall time)
        self.told_at = 0.0
        self.limit = "requests"  # the limit that made it wait


class Limits:
    def __init__(self):
        self.lock = threading.Lock()
        self.cfg = {}
        self.ids = {}
        self.reset()

    def reset(self):
        with self.lock:
            self.ids = {}
            self.violations = []
            self.throttled = collections.Counter()
            self.executed = collections.Counter()
            self.max_inflight = collections.Counter()

    def configure(self, body):
        with self.lock:
            for kind, c in body.items():
                if kind not in ("dataverse", "bc", "fo"):
                    raise ValueError("unknown kind %r" % kind)
                if c is None:
                    self.cfg.pop(kind, None)
                    continue
                self.cfg[kind] = {"window_ms": int(c.get("window_ms", 300000)),
                                  "requests": int(c.get("requests", 0)), "exec_ms": int(c.get("exec_ms", 0)),
                                  "concurrent": int(c.get("concurrent", 0)), "grace_ms": int(c.get("grace_ms", 250))}
            self.ids = {}
        return self.state()

    def state(self):
        with self.lock:
            return {"config": dict(self.cfg), "violations": list(self.violations),
                    "throttled": {"%s %s" % k: v for k, v in self.throttled.items()},
                    "executed": {"%s %s" % k: v for k, v in self.executed.items()},
                    "max_inflight": {"%s %s" % k: v for k, v in self.max_inflight.items()}}

    def _window(self, ident, c, now):
        while ident.done and ident.done[0][0] <= now - c["window_ms"] / 1000.0:
            ident.done.popleft()

    def enter(self, kind, appid, host, target):
        """None: no limits for kind; ("go", started): go on, then leave(started);
        else (limit, retry_after_s): answer() it."""
        with self.lock:
            c = self.cfg.get(kind)
            if not c:
                return None
            key = (appid or "", host)
            ident = self.ids.setdefault(key, Identity())
            now = time.time()
            self._window(ident, c, now)
            if now < ident.wait_until:
                if now > ident.told_at + c["grace_ms"] / 1000.0:
                    self.violations.append({"identity": "%s %s" % key, "target": target, "at": now,
                                            "wait_until": ident.wait_until, "early_ms":
                                            int((ident.wait_until - now) * 1000)})
                self.throttled[key] += 1
                return ident.limit, max(1, math.ceil(ident.wait_until - now))
            limit, until = None, 0.0
            if c["concurrent"] and ident.inflight >= c["concurrent"]:
                limit, until = "concurrency", now + 1.0
            elif c["requests"] and len(ident.done) >= c["requests"]:
                limit, until = "requests", ident.done[-c["requests"]][0] + c["window_ms"] / 1000.0
            elif c["exec_ms"] and sum(e for _, e in ident.done) >= c["exec_ms"]:
                limit, until = "time", ident.done[0][0] + c["window_ms"] / 1000.0
            if limit:
                ra = max(1, math.ceil(until - now))
                ident.wait_until = now + ra
                ident.told_at = now
                ident.limit = limit
                self.throttled[key] += 1
                return limit, ra
            ident.inflight += 1
            self.max_inflight[key] = max(self.max_inflight[key], ident.inflight)
            ident.done.append((now, 0))
            return "go", now

    def leave(self, kind, appid, host, started):
        with self.lock:
            key = (appid or "", host)
            ident = self.ids.get(key)
            if ident is None:
                return
            ident.inflight -= 1
            self.executed[key] += 1
            ms = int((time.time() - started) * 1000)
            for i in range(len(ident.done) - 1, -1, -1):
                if ident.done[i][0] == started:
                    ident.done[i] = (started, ms)
                    break

    def remaining(self, kind, appid, host):
        """x-ms-ratelimit-* values for an answer: requests and milliseconds left."""
        with self.lock:
            c = self.cfg.get(kind)
            ident = self.ids.get((appid or "", host))
            if not c or ident is None:
                return None
            n = (c["requests"] or 6000) - len(ident.done)
            ms = (c["exec_ms"] or 1200000) - sum(e for _, e in ident.done)
            return max(0, n), max(0, ms)

    def answer(self, up, req, kind, limit, ra):
        """The service's 429 (or Organization service fault) for `limit`."""
        req.body.read_all(16 << 20)
        c = self.cfg.get(kind) or {}
        w = c.get("window_ms", 300000) // 1000
        n = {"requests": c.get("requests"), "time": c.get("exec_ms"), "concurrency": c.get("concurrent")}[limit]
        if kind == "dataverse":
            code, fault, msg = DV_LIMITS[limit]
            msg = msg.format(n=n, w=w)
            if req.path.startswith("/XRMServices/2011/Organization.svc"):
                import orgsvc
                details = ("<a:KeyValuePairOfstringanyType><a:key>Retry-After</a:key><a:value i:type=\"b:TimeSpan\" "
                           "xmlns:b=\"http://schemas.microsoft.com/2003/10/Serialization/\">%s</a:value>"
                           "</a:KeyValuePairOfstringanyType>" % timespan(ra))
                return req.send(500, [("Content-Type", "text/xml; charset=utf-8")],
                                orgsvc.org_fault(fault, msg, details))
            hs = up.dv_headers()
            hs = [h for h in hs if not h[0].startswith("x-ms-ratelimit")]
            hs += [("Retry-After", str(ra)), ("x-ms-ratelimit-burst-remaining-xrm-requests", "0"),
                   ("x-ms-ratelimit-time-remaining-xrm-requests", "0.00" if limit == "time" else "1,200,000.00")]
            return req.send(429, hs, jdump({"error": {"code": code, "message": msg}}))
        if kind == "bc":
            return req.send(429, [("Content-Type", "application/json; charset=utf-8"), ("Retry-After", str(ra)),
                                  ("request-id", guid())],
                            jdump({"error": {"code": "Application_TooManyRequests",
                                             "message": "Too many requests reached.  Actual (%d). Maximum (%d).  "
                                                        "CorrelationId:  %s." % ((n or 0) + 1, n or 0, guid())}}))
        return req.send(429, [("Content-Type", "application/json; charset=utf-8"), ("Retry-After", str(ra)),
                              ("x-ms-request-id", guid())],
                        jdump({"Message": "The request was throttled. Retry after %d seconds." % ra}))
