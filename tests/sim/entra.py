"""entra.py - the simulated Microsoft Entra token endpoint.

Hosts: login.microsoftonline.com / .us / login.partner.microsoftonline.cn (and
aliases). Endpoints:
  POST /{tenant}/oauth2/v2.0/token   scope=<resource>/.default
  POST /{tenant}/oauth2/token        resource=<resource>  (v1: numbers as strings)
  GET  /{tenant}/discovery[/v2.0]/keys, /{tenant}[/v2.0]/.well-known/openid-configuration
Client authentication: client_secret in the form body, HTTP Basic with
form-urlencoded id and secret (RFC 6749 2.3.1), or a client_assertion
verified for real (assertion.py: certificates and federated credentials). Errors use Entra's real body
shape; which AADSTS code, `error` value and HTTP status is data in ERRORS, so
adding a code is one line. Apps may carry force_error (a code, or
{"code": n, "retry_after": s}) to fail every request with that code.

Fault modes (POST /_sim/entra) apply to the next `count` token requests:
ok, slow, 429, 500, 503, garbage, notoken, html, reset.
"""

import base64
import re
import threading
import time
import urllib.parse

from common import (guid, is_guid, jdump, jwt_sign, log, stable_guid, utc_stamp)
from httpcore import AbortConnection, HTTPError
import assertion

# code: (HTTP status, error, description template, extra body fields)
ERRORS = {
    900144: (400, "invalid_request", "The request body must contain the following parameter: '{param}'.", None),
    70003: (400, "unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'.", None),
    9001023: (400, "invalid_request", "The grant type is not supported over the /common or /consumers endpoints. "
              "Please use the /organizations or tenant-specific endpoint.", None),
    900023: (400, "invalid_request", "Specified tenant identifier '{tenant}' is neither a valid DNS name, "
             "nor a valid external domain.", None),
    90002: (400, "invalid_tenant", "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. Check with your subscription administrator, this may happen if "
            "there are no active subscriptions for the tenant.", None),
    50059: (400, "invalid_request", "No tenant-identifying information found in either the request or implied by "
            "any provided credentials.", None),
    900561: (400, "invalid_request", "The endpoint only accepts POST, OPTIONS requests. Received a {method} request.",
             None),
    700016: (400, "unauthorized_client", "Application with identifier '{client_id}' was not found in the directory "
             "'{tenant_name}'. This can happen if the application has not been installed by the administrator of the "
             "tenant or consented to by any user in the tenant. You may have sent your authentication request to the "
             "wrong tenant.", None),
    7000112: (400, "unauthorized_client", "Application '{client_id}'({app_name}) is disabled.", None),
    7000216: (401, "invalid_client", "'client_assertion', 'client_secret' or 'request' is required for the "
              "'client_credentials' grant type.", None),
    7000218: (401, "invalid_client", "The request body must contain the following parameter: 'client_assertion' "
              "or 'client_secret'.", None),
    7000215: (401, "invalid_client", "Invalid client secret provided. Ensure the secret being sent in the request is "
              "the client secret value, not the client secret ID, for a secret added to app '{client_id}'.", None),
    7000222: (401, "invalid_client", "The provided client secret keys for app '{client_id}' are expired. Visit the "
              "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using "
              "certificate credentials for added security: https://aka.ms/certCreds.", None),
    7000229: (401, "invalid_client", "The client application {client_id} is missing service principal in the tenant "
              "{tenant_id}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119", None),
    700027: (401, "invalid_client", "The certificate with identifier used to sign the client assertion is not "
             "registered on application. [Reason - The key was not found.]", None),
    700024: (401, "invalid_client", "Client assertion is not within its valid time range. Current time: "
             "{now}, assertion valid from {nbf}, expiry time of assertion {exp}.", None),
    7000274: (401, "invalid_client", "Key was found, but use of the key to verify the signature failed.", None),
    700021: (401, "invalid_client", "Client assertion application identifier doesn't match 'client_id' parameter. "
             "Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/"
             "active-directory-certificate-credentials .", None),
    50027: (400, "invalid_request", "JWT token is invalid or malformed.", None),
    50013: (401, "invalid_client", "Assertion audience does not match the Client app presenting the assertion. "
            "The audience in the assertion was '{aud}' and the expected audience is '{expected}'.", None),
    700211: (400, "invalid_client", "No matching federated identity record found for presented assertion issuer "
             "'{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the "
             "presented assertion.", None),
    700213: (400, "invalid_client", "No matching federated identity record found for presented assertion subject "
             "'{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the "
             "presented assertion.", None),
    700212: (400, "invalid_client", "No matching federated identity record found for presented assertion audience "
             "'{aud}'. Please check your federated identity credential Subject, Audience and Issuer against the "
             "presented assertion.", None),
    700023: (400, "invalid_request", "Client assertion audience claim does not match Realm issuer.", None),
    650052: (401, "invalid_client", "The app is trying to access a service '{resource}'({app_name}) that your "
             "organization '{tenant_id}' lacks a service principal for. Contact your IT Admin to review the "
             "configuration of your service subscriptions or consent to the application in order to create the "
             "required service principal.", None),
    901002: (400, "invalid_request", "The 'resource' request parameter is not supported.", None),
    1002012: (400, "invalid_scope", "The provided value for scope {scope} is not valid. Client credential flows must "
              "have a scope value with /.default suffixed to the resource identifier (application ID URI).", None),
    70011: (400, "invalid_scope", "The provided value for the input parameter 'scope' is not valid. The scope "
            "{scope} is not valid.", None),
    700022: (400, "invalid_scope", "The provided value for the input parameter scope is not valid because it "
             "contains more than one resource. Scope {scope} is not valid.", None),
    500011: (400, "invalid_resource", "The resource principal named {resource} was not found in the tenant named "
             "{tenant_name}. This can happen if the application has not been installed by the administrator of the "
             "tenant or consented to by any user in the tenant. You might have sent your authentication request to "
             "the wrong tenant.", None),
    50001: (400, "invalid_resource", "The application named {resource} was not found in the tenant named "
            "{tenant_name}.", None),
    500014: (400, "invalid_resource", "The service principal for resource '{resource}' is disabled.", None),
    65001: (400, "invalid_grant", "The user or administrator has not consented to use the application with ID "
            "'{client_id}' named '{app_name}'. Send an interactive authorization request for this user and "
            "resource.", None),
    53003: (400, "invalid_grant", "Access has been blocked by Conditional Access policies. The access policy does "
            "not allow token issuance.",
            lambda c: {"suberror": "message_only",
                       "claims": '{"access_token":{"capolids":{"essential":true,"values":["%s"]}}}'
                       % stable_guid("capolicy", c.get("tenant_id"))}),
    50196: (400, "temporarily_unavailable", "The server terminated an operation because it encountered a client "
            "request loop. Please contact your app vendor.", None),
    90055: (429, "temporarily_unavailable", "There are too many incoming requests.", None),
    50012: (401, "invalid_client", "Invalid client secret is provided.", None),
    70021: (400, "invalid_request", "No matching federated identity record found for presented assertion.", None),
    7002137: (400, "invalid_client", "The federated identity credential's audience does not match the presented "
              "assertion's audience.", None),
    50000: (500, "server_error", "There was an error issuing a token or an issue with our sign-in service.", None),
    90033: (503, "temporarily_unavailable", "A transient error has occurred. Please try again.", None),
}

SPECIAL_TENANTS = ("common", "organizations", "consumers")
FO_RE = re.compile(r"^https://[a-z0-9-]+(\.sandbox)?\.operations\.dynamics\.com$")
FO_LOOSE_RE = re.compile(r"^https://[a-z0-9-]+(\.sandbox)?\.operations\.dynamics\.com/*$", re.I)
KNOWN_RESOURCES = [
    re.compile(r"^https://[a-z0-9-]+(\.api)?\.crm\d*\.dynamics\.com/?$", re.I),
    re.compile(r"^https://api\.businesscentral\.dynamics\.com/?$", re.I),
    re.compile(r"^https://securityservice\.operations365\.dynamics\.com/?$", re.I),
    # first-party resource app ids (tokens get the GUID as aud; upstreams reject it)
    re.compile(r"^(00000007-0000-0000-c000-000000000000|00000015-0000-0000-c000-000000000000|"
               r"996def3d-b36c-4153-8607-a6fd3c01b89f|0cdb527f-a8d1-4bf8-9436-b352c68682b2)$", re.I),
]

FAULT_MODES = ("ok", "slow", "429", "500", "503", "garbage", "notoken", "html", "html404", "reset")


class _Fmt(dict):
    def __missing__(self, k):
        return ""


class Faults:
    """Fault injection state of this process's Entra."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.count = -1
        self.delay_ms = 0
        self.retry_after = 2
        self.lifetime = None      # overrides every app's lifetime while set
        self.refresh_in = None    # overrides/sets refresh_in while set
        self.exp_offset = 0       # added to the JWT exp only (token dies early)
        self.nbf_offset = 0       # added to the JWT nbf only (token not yet valid)
        self.clock_offset = 0     # seconds added to Entra's clock when judging client assertions

    def set(self, d):
        """Apply a change atomically (a bad field changes nothing)."""
        new = self.state()
        if "mode" in d:
            m = str(d["mode"])
            if m not in FAULT_MODES:
                raise HTTPError(400, "unknown mode %r (one of %s)" % (m, ", ".join(FAULT_MODES)))
            new["mode"] = m
            new["count"] = int(d.get("count", -1))
            if new["count"] == 0:
                new["mode"], new["count"] = "ok", -1
        for k in ("delay_ms", "retry_after", "exp_offset", "nbf_offset", "clock_offset"):
            if k in d:
                new[k] = int(d[k]) if d[k] is not None else 0
        for k in ("lifetime", "refresh_in"):
            if k in d:
                new[k] = None if d[k] is None else int(d[k])
        with self.lock:
            for k, v in new.items():
                setattr(self, k, v)
            return self.state()

    def state(self):
        return {k: getattr(self, k) for k in ("mode", "count", "delay_ms", "retry_after", "lifetime",
                                              "refresh_in", "exp_offset", "nbf_offset", "clock_offset")}

    def take(self):
        """The fault for this request (None = behave), counting it down."""
        with self.lock:
            if self.mode == "ok":
                return None
            f = self.state()
            if self.count > 0:
                self.count -= 1
                if self.count == 0:
                    self.mode = "ok"
                    self.count = -1
            return f


def common_headers(req, trace):
    hs = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache"),
          ("Content-Type", "application/json; charset=utf-8"), ("Expires", "-1"),
          ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
          ("X-Content-Type-Options", "nosniff"), ("P3P", 'CP="DSP CUR OTPi IND OTRi ONL FIN"'),
          ("x-ms-request-id", trace), ("x-ms-ests-server", "2.1.19999.9 - SIM ProdSlices"),
          ("Set-Cookie", "fpc=Asim%s; expires=Fri, 01-Jan-2100 00:00:00 GMT; path=/; secure; HttpOnly; "
                         "SameSite=None" % trace[:8]),
          ("Set-Cookie", "x-ms-gateway-slice=estsfd; path=/; secure; samesite=none; httponly")]
    crid = req.header("client-request-id")
    if crid and (req.header("return-client-request-id") or "").lower() == "true":
        hs.append(("client-request-id", crid))
    return hs


def error_response(req, code, ctx, extra_headers=()):
    """Send Entra's error body for AADSTS `code` (must be in ERRORS)."""
    status, err, text, extra = ERRORS[code]
    trace = guid()
    crid = req.header("client-request-id") or ""
    corr = crid.lower() if is_guid(crid) else guid()
    ts = utc_stamp()
    desc = "AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (
        code, text.format_map(_Fmt(ctx)), trace, corr, ts)
    body = {"error": err, "error_description": desc, "error_codes": [code], "timestamp": ts,
            "trace_id": trace, "correlation_id": corr,
            "error_uri": "https://%s/error?code=%d" % (req.host, code)}
    if extra:
        body.update(extra(ctx))
    req.send(status, common_headers(req, trace) + list(extra_headers), jdump(body))
    return status


class EntraError(Exception):
    def __init__(self, code, **kw):
        Exception.__init__(self, "AADSTS%d" % code)
        self.code = code
        self.ctx = kw
        self.headers = []


def _basic_credentials(value):
    """(client_id, secret) from an Authorization: Basic value, or None."""
    try:
        scheme, _, b64 = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        raw = base64.b64decode(b64.strip(), validate=True).decode("utf-8")
        cid, sep, sec = raw.partition(":")
        if not sep:
            return None
        return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
    except Exception:
        return None


def classify_resource(resource):
    """None if Entra knows the resource; else the AADSTS code to answer."""
    if FO_LOOSE_RE.match(resource):
        return None if FO_RE.match(resource) else 65001
    if any(r.match(resource) for r in KNOWN_RESOURCES):
        return None
    return 500011


class Entra:
    def __init__(self, sim):
        self.sim = sim
        self.faults = Faults()

    # registry lookups ---------------------------------------------------------

    def _tenant(self, apps, t):
        t = t.lower()
        for a in apps:
            if a["tenant_id"] == t or t in a["tenant_domains"]:
                return a["tenant_id"]
        return None

    def handle(self, req):
        parts = [urllib.parse.unquote(p) for p in req.path.split("/")]
        # ['', tenant, 'oauth2', 'v2.0', 'token'] or ['', tenant, 'oauth2', 'token']
        if len(parts) >= 4 and parts[2] == "oauth2" and parts[-1] == "token" and len(parts) in (4, 5):
            version = 2 if len(parts) == 5 and parts[3] == "v2.0" else 1 if len(parts) == 4 else 0
            if version:
                return self.token(req, parts[1], version)
        if len(parts) >= 3 and parts[-1] == "keys" and "discovery" in parts:
            return req.send_json(200, self.sim.state.jwks())
        if req.path.endswith("/.well-known/openid-configuration") and len(parts) >= 3:
            return self.openid_config(req, parts[1])
        req.send(404, [("Content-Type", "text/html; charset=utf-8")],
                 "<html><body>Not found</body></html>")

    def openid_config(self, req, tenant):
        base = "https://%s/%s" % (req.host, tenant)
        req.send_json(200, {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": "https://%s/%s/discovery/v2.0/keys" % (req.host, tenant),
            "issuer": "https://%s/%s/v2.0" % (req.host, tenant),
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })

    # token endpoint -------------------------------------------------------------

    def token(self, req, tenant, version):
        sim = self.sim
        if req.method != "POST":
            return self._log(req, version, tenant, {}, None, error_response(req, 900561, {"method": req.method}),
                             900561)
        raw = req.body.read_all(1 << 20)
        ctype = (req.header("content-type") or "").lower()
        params = {}
        if ctype.split(";")[0].strip() == "application/x-www-form-urlencoded":
            for k, v in urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(k, v)
        basic = None
        if req.header("authorization") is not None:
            basic = _basic_credentials(req.header("authorization"))
        client_id = basic[0] if basic else params.get("client_id", "")
        resource = params.get("resource", "") if version == 1 else params.get("scope", "")
        if version == 2 and resource.endswith("/.default"):
            resource = resource[:-len("/.default")]
        with sim.stats.lock:
            sim.stats.token_requests += 1
            sim.stats.by_client[client_id] += 1
            sim.stats.by_resource[resource] += 1

        fault = self.faults.take()
        if fault:
            if fault["mode"] == "reset":
                self._log(req, version, tenant, params, basic, None, None, "reset")
                raise AbortConnection(rst=True)
            status = self._fault(req, fault)
            if status is not None:
                return self._log(req, version, tenant, params, basic, status, None, fault["mode"])
        try:
            status = self._issue(req, tenant, version, params, basic)
            return self._log(req, version, tenant, params, basic, status, None)
        except EntraError as e:
            with sim.stats.lock:
                sim.stats.errors_by_code[e.code] += 1
            e.ctx.setdefault("tenant", tenant)
            e.ctx.setdefault("tenant_name", tenant)
            status = error_response(req, e.code, e.ctx, e.headers)
            return self._log(req, version, tenant, params, basic, status, e.code)

    def _log(self, req, version, tenant, params, basic, status, code, fault=None):
        entry = {"time": time.time(), "host": req.host, "path": req.path, "version": version,
                 "tenant": tenant, "client_id": basic[0] if basic else params.get("client_id"),
                 "auth_method": "basic" if basic else "post" if "client_secret" in params else
                 "assertion" if "client_assertion" in params else "none",
                 "grant_type": params.get("grant_type"), "scope": params.get("scope"),
                 "resource": params.get("resource"), "status": status, "error_code": code,
                 "fault": fault, "headers": [[k, v] for k, v in req.headers]}
        with self.sim.stats.lock:
            self.sim.stats.token_log.append(entry)
        log("token v%d tenant=%s client=%s -> %s%s" % (version, tenant, entry["client_id"], status,
                                                       " AADSTS%d" % code if code else
                                                       " fault=%s" % fault if fault else ""))

    def _fault(self, req, f):
        """Apply a fault; returns the status sent, or None to continue normally."""
        mode = f["mode"]
        if mode == "slow":
            time.sleep(max(0, f["delay_ms"]) / 1000.0)
            return None
        trace = guid()
        if mode == "429":
            extra = [("Retry-After", str(f["retry_after"]))] if f["retry_after"] >= 0 else []
            return error_response(req, 90055, {}, extra)
        if mode == "500":
            return error_response(req, 50000, {})
        if mode == "503":
            extra = [("Retry-After", str(f["retry_after"]))] if f["retry_after"] >= 0 else []
            return error_response(req, 90033, {}, extra)
        if mode == "garbage":
            req.send(200, common_headers(req, trace), b"garbage: this is not JSON \xff\xfe{")
            return 200
        if mode == "notoken":
            req.send(200, common_headers(req, trace),
                     jdump({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599}))
            return 200
        if mode == "html":
            req.send(502, [("Content-Type", "text/html"), ("x-ms-request-id", trace)],
                     "<html><head><title>502 - Web server received an invalid response while acting as a "
                     "gateway or proxy server.</title></head><body><h1>Server Error</h1><h2>502 - Web server "
                     "received an invalid response while acting as a gateway or proxy server.</h2></body></html>")
            return 502
        if mode == "html404":  # what an IIS front answers for a path it does not serve (a wrong authority)
            req.send(404, [("Content-Type", "text/html"), ("Server", "Microsoft-IIS/10.0")],
                     '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
                     '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
                     '<html xmlns="http://www.w3.org/1999/xhtml">\r\n<head>\r\n'
                     '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\r\n'
                     '<title>404 - File or directory not found.</title>\r\n</head>\r\n<body>\r\n'
                     '<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">\r\n'
                     '<h2>404 - File or directory not found.</h2>\r\n<h3>The resource you are looking for might '
                     'have been removed, had its name changed, or is temporarily unavailable.</h3>\r\n'
                     '</div>\r\n</body>\r\n</html>\r\n')
            return 404
        return None

    def _issue(self, req, tenant, version, params, basic):
        shared = self.sim.state.shared()
        apps = shared["apps"]
        gt = params.get("grant_type", "")
        if not gt:
            raise EntraError(900144, param="grant_type")
        if gt != "client_credentials":
            raise EntraError(70003, grant_type=gt)
        tl = tenant.lower()
        if not tl:
            raise EntraError(50059)
        if tl in SPECIAL_TENANTS:
            raise EntraError(9001023)
        if not is_guid(tl) and not re.match(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$", tl):
            raise EntraError(900023)
        tid = self._tenant(apps, tl)
        if tid is None:
            raise EntraError(90002)
        tenant_apps = [a for a in apps if a["tenant_id"] == tid]
        tname = next((a["tenant_name"] for a in tenant_apps if a.get("tenant_name")), tenant)
        client_id = basic[0] if basic else params.get("client_id", "")
        if not client_id:
            raise EntraError(900144, param="client_id", tenant_name=tname)
        if version == 2:
            if "resource" in params:
                raise EntraError(901002)
            scope = params.get("scope", "")
            if not scope:
                raise EntraError(900144, param="scope")
        else:
            scope = None
            if not params.get("resource"):
                raise EntraError(900144, param="resource")
        app = next((a for a in tenant_apps if a["client_id"].lower() == client_id.lower()), None)
        if app is None:
            raise EntraError(700016, client_id=client_id, tenant_name=tname)
        ctx = {"client_id": app["client_id"], "app_name": app["name"], "tenant_id": tid,
               "tenant_name": tname, "scope": scope or "", "resource": params.get("resource", "")}
        # client authentication
        secret = basic[1] if basic else params.get("client_secret")
        if params.get("client_assertion") and not secret:
            if params.get("client_assertion_type") != assertion.JWT_BEARER:
                raise EntraError(7000216, **ctx)
            url = "https://%s%s" % (req.host, req.path)
            code, extra = assertion.verify(app, params["client_assertion"], client_id, url,
                                           time.time() + self.faults.clock_offset)
            if code:
                ctx.update(extra)
                raise EntraError(code, **ctx)
            with self.sim.stats.lock:
                self.sim.stats.assertions.append(extra)
        elif secret is None or secret == "":
            raise EntraError(7000216, **ctx)
        forced = app.get("force_error")
        if forced:
            code = forced["code"] if isinstance(forced, dict) else int(forced)
            if code not in ERRORS:
                raise HTTPError(500, "force_error %d not in the simulator's table" % code)
            e = EntraError(code, **ctx)
            if isinstance(forced, dict) and forced.get("retry_after") is not None:
                e.headers = [("Retry-After", str(forced["retry_after"]))]
            raise e
        # "secrets": further valid secrets, as during a rollover in the portal
        if secret and (app.get("secret") is None or secret != app["secret"]) and \
                secret not in (app.get("secrets") or []):
            raise EntraError(7000215, **ctx)
        # what is asked for
        if version == 2:
            scopes = scope.split()
            if len(scopes) > 1:
                raise EntraError(700022, **ctx)
            if not scopes[0].endswith("/.default"):
                raise EntraError(1002012, **ctx)
            resource = scopes[0][:-len("/.default")]
        else:
            resource = params["resource"]
        ctx["resource"] = resource
        bad = classify_resource(resource)
        if bad:
            raise EntraError(bad, **ctx)
        return self._success(req, app, tid, resource, version)

    def _success(self, req, app, tid, resource, version):
        f = self.faults
        lifetime = f.lifetime if f.lifetime is not None else app["lifetime"]
        refresh_in = f.refresh_in if f.refresh_in is not None else app.get("refresh_in")
        now = int(time.time())
        oid = stable_guid("sp", tid, app["client_id"])
        claims = {"aud": resource, "iss": "https://sts.windows.net/%s/" % tid, "iat": now,
                  "nbf": now + f.nbf_offset, "exp": now + lifetime + f.exp_offset,
                  "aio": guid().replace("-", ""), "appid": app["client_id"], "appidacr": "1",
                  "idp": "https://sts.windows.net/%s/" % tid, "idtyp": "app", "oid": oid,
                  "rh": "0.sim.", "sub": oid, "tid": tid, "uti": guid().replace("-", "")[:22],
                  "ver": "1.0" if version == 1 else "2.0", "xms_tcdt": 1600000000}
        if version == 2:
            claims["azp"] = app["client_id"]
            claims["azpacr"] = "1"
        if app["roles"]:
            claims["roles"] = app["roles"]
        token = jwt_sign(self.sim.state, claims)
        st = self.sim.stats
        with st.lock:
            st.tokens_issued += 1
            st.issued_tokens.append(token)
        if version == 2:
            body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime}
            if refresh_in is not None:
                body["refresh_in"] = refresh_in
        else:
            body = {"token_type": "Bearer", "expires_in": str(lifetime), "ext_expires_in": str(lifetime),
                    "expires_on": str(now + lifetime), "not_before": str(now), "resource": resource}
            if refresh_in is not None:
                body["refresh_in"] = str(refresh_in)
        body["access_token"] = token
        req.send(200, common_headers(req, guid()), jdump(body))
        return 200

    def mint(self, d):
        """POST /_sim/mint: a signed token with chosen claims (for tests)."""
        now = int(time.time())
        tid = d.get("tid") or stable_guid("tenant")
        appid = d.get("appid") or stable_guid("app")
        lifetime = int(d.get("lifetime", 3599))
        claims = {"aud": d.get("aud", "https://contoso.crm4.dynamics.com"),
                  "iss": "https://sts.windows.net/%s/" % tid, "iat": now, "nbf": now, "exp": now + lifetime,
                  "appid": appid, "azp": appid, "idtyp": "app", "oid": stable_guid("sp", tid, appid),
                  "sub": stable_guid("sp", tid, appid), "tid": tid, "uti": guid().replace("-", "")[:22],
                  "ver": "1.0"}
        claims.update(d.get("claims") or {})
        return {"access_token": jwt_sign(self.sim.state, claims), "claims": claims}
