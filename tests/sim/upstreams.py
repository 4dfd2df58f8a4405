"""upstreams.py - simulated Dataverse, Business Central and F&O APIs.

Every request must carry `Authorization: Bearer <token>` with a token this
simulator signed (any process sharing the state dir), inside nbf..exp, whose
aud matches the host:
  dataverse  *.crmN.dynamics.com: https://<host> (trailing slash accepted; an
             .api. host also accepts the org's plain host)
  bc         api.businesscentral.dynamics.com: https://api.businesscentral.dynamics.com
  fo         *.operations.dynamics.com: exactly https://<host>
             (the fo role also serves securityservice.operations365.dynamics.com:
             /_test/* only; a bad token gets 400 invalid_client "Expected aud ...")
and, when env_tenants pins the host to a tenant, whose tid is that tenant.
Rejections use each service's real shape. Apps may carry
upstream_errors {"dataverse": "not_member"|"restricted"|"privilege"|"throttle"
|{status,headers,body}, "bc": "invalid_credentials"|{..}, "fo": "unauthorized"|{..}}
to model a valid token that the service refuses (missing application user ...).
Service protection limits (limits.py, POST /_sim/limits) apply to every
request of a kind once configured.
Apps may also carry reject_tokens_before (unix seconds): tokens issued
earlier are answered like a token of the wrong audience (401 per service).

/_test/* endpoints exist on every upstream host (see _test_* below).
"""

import gzip
import hashlib
import json
import re
import threading
import time
import urllib.parse

from common import (PATTERN_PERIOD, TokenError, guid, iso_stamp, jdump, jwt_verify, log,
                    pattern_chunks, pattern_sha256, stable_guid)
from httpcore import AbortConnection, HTTPError
import odata
import orgsvc

DV_HOST_RE = re.compile(r"^([a-z0-9-]+)(\.api)?\.(crm\d*)\.dynamics\.com$")
FO_HOST_RE = re.compile(r"^[a-z0-9-]+(\.sandbox)?\.operations\.dynamics\.com$")
BC_HOST = "api.businesscentral.dynamics.com"
SS_HOST = "securityservice.operations365.dynamics.com"
ODATA_JSON = "application/json; odata.metadata=minimal"
BC_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
DEFAULT_TENANT = "00000000-0000-0000-0000-00000000c0de"

DV_ERRORS = {
    "not_member": (403, "0x80072560", "The user is not a member of the organization."),
    "restricted": (403, "0x80095ffc", "Access to Dataverse API is restricted for this application Id : '{appid}'. "
                   "Please contact your administrator for more information."),
    "privilege": (403, "0x80040220", "Principal user (Id={userid}, type=8, roleCount=5, privilegeCount=465, "
                  "accessMode=0), is missing prvReadaccount privilege (Id=886b280c-6396-4d56-a0a3-2c1b0a50ceb0) on "
                  "OTC=1 for entity 'account'. context.Caller={userid}"),
    "throttle": (429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
}


def big_json_block(host):
    """1000 records of /_test/bigjson, each ending in ','."""
    return b"".join(b'{"@odata.id":"https://%s/api/data/v9.2/accounts(%08d-0000-4000-8000-000000000000)",'
                    b'"@odata.etag":"W/\\"%d\\"","name":"Account %d"},' % (host.encode(), i, i, i)
                    for i in range(1000))
# Impersonation (CallerObjectId): this Entra object id is a user without a licence.
UNLICENSED_USER = "0bad0bad-0000-4000-8000-000000000403"


def host_kind(host):
    if DV_HOST_RE.match(host):
        return "dataverse"
    if host == BC_HOST:
        return "bc"
    if FO_HOST_RE.match(host) or host == SS_HOST:
        return "fo"  # the F&O role also serves the Microsoft security service host
    return None


def aud_ok(kind, host, aud):
    if not isinstance(aud, str):
        return False
    if kind == "dataverse":
        a = aud.lower().rstrip("/")
        ok = {"https://" + host}
        m = DV_HOST_RE.match(host)
        if m and m.group(2):
            ok.add("https://%s.%s.dynamics.com" % (m.group(1), m.group(3)))
        return a in ok and not aud.endswith("//")
    if kind == "bc":
        return aud.lower() in ("https://" + BC_HOST, "https://" + BC_HOST + "/")
    if kind == "fo":
        return aud == "https://" + host or (host == SS_HOST and aud == "https://" + host + "/")
    return False


class Upstreams:
    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.RLock()
        self.accounts = {}  # host -> {id: record}
        self.collections = {}  # (kind, ...) -> [record]: BC customers, F&O Customers
        self.dv_budget = {}  # (host, appid) -> requests: service protection counts per (application) user

    # entry --------------------------------------------------------------------

    def handle(self, req, kind):
        st = self.sim.stats
        with st.lock:
            st.upstream_requests += 1
            st.in_flight.append(req.target)
        reason, claims = self.check_token(req, kind)
        rec = {"time": time.time(), "method": req.method, "host": req.host, "target": req.target,
               "headers": [[k, v] for k, v in req.headers], "kind": kind,
               "aud": claims.get("aud") if claims else None,
               "appid": claims.get("appid") if claims else None, "auth": reason or "ok", "status": None,
               "peer": "%s:%d" % tuple(req.h.client_address[:2])}
        verdict, done = None, []

        def finish():
            """Ends the request's execution and records it: called just before
            its answer goes out (httpcore's before_send), so a client holding
            the answer finds it in /_sim/requests; else when the handler ends."""
            if done:
                return
            done.append(True)
            if verdict:
                self.sim.limits.leave(kind, appid, req.host, verdict[1])
            rec["status"] = req.status
            rec["soap_headers"] = getattr(req, "soap_headers", None)  # orgsvc.py: header blocks received
            rec["batch_parts"] = getattr(req, "batch_parts", None)  # odata.py: a $batch's request lines
            rec["batch_sha256"] = getattr(req, "batch_sha256", None)  # and its body's digest
            with st.lock:
                st.requests.append(rec)
                if req.target in st.in_flight:  # a reset meanwhile empties the list
                    st.in_flight.remove(req.target)
        req.before_send = finish
        appid = None
        try:
            if reason:
                with st.lock:
                    st.upstream_rejected += 1
                return self.reject(req, kind, claims)
            app = self._app(claims)
            err = (app or {}).get("upstream_errors", {}).get(kind)
            if err:
                return self.app_error(req, kind, err, claims)
            appid = claims.get("appid") or claims.get("azp")
            verdict = self.sim.limits.enter(kind, appid, req.host, req.target)
            if verdict and verdict[0] != "go":
                rec["throttled"] = verdict[0]
                v, verdict = verdict, None  # refused: it never entered, so it does not leave
                return self.sim.limits.answer(self, req, kind, *v)
            if req.path.startswith("/_test/"):
                return self.test_endpoint(req, kind)
            return getattr(self, kind)(req, claims)
        except HTTPError as e:
            req.status = req.status or e.status
            raise
        finally:
            finish()
            log("%s %s %s%s -> %s%s" % (kind, req.method, req.host, req.target[:120], req.status,
                                          "" if not reason else " (%s)" % reason))

    def _app(self, claims):
        cid = (claims.get("appid") or claims.get("azp") or "").lower()
        tid = claims.get("tid")
        for a in self.sim.state.shared()["apps"]:
            if a["client_id"].lower() == cid and a["tenant_id"] == tid:
                return a
        return None

    def env_tenant(self, host):
        shared = self.sim.state.shared()
        t = shared.get("env_tenants", {}).get(host)
        if t:
            return t
        return shared["apps"][0]["tenant_id"] if shared["apps"] else DEFAULT_TENANT

    def check_token(self, req, kind):
        """(None, claims) when acceptable, else (reason, claims-or-None)."""
        auths = [v for k, v in req.headers if k.lower() == "authorization"]
        if not auths:
            return "missing", None
        if len(auths) > 1:
            return "repeated", None
        scheme, _, tok = auths[0].strip().partition(" ")
        tok = tok.strip()
        if scheme.lower() != "bearer" or not tok:
            return "not_bearer", None
        try:
            claims = jwt_verify(self.sim.state, tok)
        except TokenError as e:
            if e.reason == "expired":
                with self.sim.stats.lock:
                    self.sim.stats.expired_tokens_seen += 1
            return e.reason, e.claims
        app = self._app(claims)
        if app and claims.get("iat", 0) < app.get("reject_tokens_before", 0):
            return "revoked", claims  # models a token invalidated before its exp (secret rotated, app changed)
        if not aud_ok(kind, req.host, claims.get("aud")):
            return "wrong_aud", claims
        pinned = self.sim.state.shared().get("env_tenants", {}).get(req.host)
        if pinned and claims.get("tid") != pinned:
            return "wrong_tenant", claims
        return None, claims

    # rejections -----------------------------------------------------------------

    def reject(self, req, kind, claims):
        if kind == "dataverse":
            req.send(401, [("WWW-Authenticate",
                            "Bearer authorization_uri=https://login.microsoftonline.com/%s/oauth2/authorize, "
                            "resource_id=https://%s/" % (self.env_tenant(req.host), req.host)),
                           ("REQ_ID", guid()), ("x-ms-service-request-id", guid())], b"")
        elif kind == "bc":
            self.bc_invalid_credentials(req)
        elif req.host == SS_HOST:
            # as quoted in Microsoft's CHE troubleshooting article
            req.send_json(400, {"error": "invalid_client", "error_description": "Expected aud https://%s but "
                                "found %s." % (SS_HOST, (claims or {}).get("aud", ""))})
        else:
            req.send(401, [("x-ms-request-id", guid())], b"")

    def bc_invalid_credentials(self, req):
        req.send_json(401, {"error": {"code": "Authentication_InvalidCredentials",
                                      "message": "The server has rejected the client credentials.  "
                                                 "CorrelationId:  %s." % guid()}})

    def app_error(self, req, kind, err, claims):
        if isinstance(err, dict):
            body = err.get("body", b"")
            if not isinstance(body, (str, bytes)):
                body = jdump(body)
            return req.send(int(err.get("status", 403)), [tuple(h) for h in err.get("headers", [])], body)
        if kind == "dataverse" and err in DV_ERRORS:
            status, code, msg = DV_ERRORS[err]
            msg = msg.format(appid=claims.get("appid", ""), userid=stable_guid("user", req.host,
                                                                                claims.get("appid")))
            hs = self.dv_headers()
            if status == 429:
                hs.append(("Retry-After", "30"))
            return req.send(status, hs, jdump({"error": {"code": code, "message": msg}}))
        if kind == "bc" and err == "invalid_credentials":
            return self.bc_invalid_credentials(req)
        if kind == "fo" and err == "unauthorized":
            return req.send(401, [("x-ms-request-id", guid())], b"")
        raise HTTPError(500, "unknown upstream_errors value %r for %s" % (err, kind))

    # Dataverse ------------------------------------------------------------------

    def dv_headers(self, req=None):
        left = getattr(req, "budget_left", 5999)
        return [("Content-Type", ODATA_JSON), ("OData-Version", "4.0"), ("REQ_ID", guid()),
                ("x-ms-service-request-id", guid()), ("Cache-Control", "no-cache"),
                ("x-ms-ratelimit-burst-remaining-xrm-requests", str(left)),
                ("x-ms-ratelimit-time-remaining-xrm-requests", "1,200,000.00"),
                ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")]

    def dv_error(self, req, status, code, msg):
        req.send(status, self.dv_headers(req), jdump({"error": {"code": code, "message": msg}}))

    def _accounts(self, host):
        with self.lock:
            if host not in self.accounts:
                self.accounts[host] = {}
                for i, name in enumerate(("Fourth Coffee (sample)", "Litware, Inc. (sample)")):
                    aid = stable_guid("account", host, i)
                    self.accounts[host][aid] = {"accountid": aid, "name": name,
                                                "createdon": "2024-01-0%dT10:00:00Z" % (i + 1)}
            return self.accounts[host]

    def dataverse(self, req, claims):
        path = urllib.parse.unquote(req.path)
        if path == orgsvc.PATH:  # the Organization service's OAuth (SOAP 1.1) endpoint
            return orgsvc.answer(self, req, claims)
        m = re.match(r"^/api/data/(v9\.\d+)(/.*)?$", path)
        if not m:
            return self.dv_error(req, 404, "0x8006088a", "Resource not found for the segment '%s'."
                                 % path.strip("/").split("/")[0])
        ver, rest = m.group(1), (m.group(2) or "/")
        base = "https://%s/api/data/%s/" % (req.host, ver)
        appid = claims.get("appid") or claims.get("azp")
        with self.lock:
            used = self.dv_budget[(req.host, appid)] = self.dv_budget.get((req.host, appid), 0) + 1
        req.budget_left = 6000 - used  # dv_headers: each application user has its own budget
        caller = (req.header("callerobjectid") or "").lower()
        if caller == UNLICENSED_USER:  # Dataverse's answer to acting for a user without a licence
            return self.dv_error(req, 403, "0x80072036", "The user with SystemUserId=%s in OrganizationContext=%s "
                                 "is not licensed, and its user accessmode is not set to non-interactive."
                                 % (stable_guid("user", req.host, caller), stable_guid("org", req.host)))
        if rest in ("/WhoAmI", "/WhoAmI()") and req.method in ("GET", "HEAD"):
            return req.send(200, self.dv_headers(req), jdump({
                "@odata.context": base + "$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": stable_guid("bu", req.host),
                "UserId": stable_guid("user", req.host, appid),
                "OrganizationId": stable_guid("org", req.host)}))
        if rest == "/$batch" and req.method == "POST":
            return self.dv_batch(req, base, claims)
        if rest == "/" and req.method in ("GET", "HEAD"):
            return req.send(200, self.dv_headers(), jdump({"@odata.context": base + "$metadata", "value": [
                {"name": "accounts", "kind": "EntitySet", "url": "accounts"},
                {"name": "contacts", "kind": "EntitySet", "url": "contacts"}]}))
        if rest == "/accounts":
            accounts = self._accounts(req.host)
            if req.method in ("GET", "HEAD"):
                with self.lock:
                    rows = [dict(r, **{"@odata.etag": 'W/"%d"' % (1000 + i)})
                            for i, r in enumerate(accounts.values())]
                rows, next_link, applied = odata.page(req, rows, base + "accounts")
                doc = {"@odata.context": base + "$metadata#accounts", "value": rows}
                if next_link:
                    doc["@odata.nextLink"] = next_link
                return req.send(200, self.dv_headers() + applied, jdump(doc))
            if req.method == "POST":
                try:
                    rec = json.loads(req.body.read_all(16 << 20) or b"null")
                    if not isinstance(rec, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    return self.dv_error(req, 400, "0x80048d19",
                                         "Error identified in Payload provided by the user for Entity :"
                                         "'accounts', For more information on this error please follow this "
                                         "help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
                                         "InnerException : %s" % e)
                aid = guid()
                rec = dict(rec, accountid=aid, createdon=iso_stamp())
                if caller:  # impersonated: the user creates and owns it, on behalf of the application user
                    owner = stable_guid("user", req.host, caller)
                    rec.update({"_createdby_value": owner, "_ownerid_value": owner,
                                "_createdonbehalfby_value": stable_guid("user", req.host, appid)})
                with self.lock:
                    accounts[aid] = rec
                entity = "%saccounts(%s)" % (base, aid)
                if "return=representation" in (req.header("prefer") or ""):
                    return req.send(201, self.dv_headers() + [("OData-EntityId", entity)],
                                    jdump(dict(rec, **{"@odata.context": base + "$metadata#accounts/$entity"})))
                return req.send(204, [("OData-Version", "4.0"), ("OData-EntityId", entity), ("REQ_ID", guid())])
            return self.dv_error(req, 405, "0x80060888", "The requested resource does not support http method '%s'."
                                 % req.method)
        m2 = re.match(r"^/accounts\(([0-9a-fA-F-]{36})\)$", rest)
        if m2 and req.method in ("GET", "HEAD"):
            with self.lock:
                rec = self._accounts(req.host).get(m2.group(1).lower())
            if rec is None:
                return self.dv_error(req, 404, "0x80040217", "account With Id = %s Does Not Exist" % m2.group(1))
            return req.send(200, self.dv_headers(), jdump(dict(rec, **{
                "@odata.context": base + "$metadata#accounts/$entity"})))
        if m2 and req.method in ("PATCH", "DELETE"):
            return self.dv_account_write(req, base, m2.group(1).lower())
        seg = rest.strip("/").split("/")[0].split("(")[0]
        return self.dv_error(req, 404, "0x8006088a", "Resource not found for the segment '%s'." % seg)

    def dv_batch(self, req, base, claims):
        """$batch: each part runs through dataverse() as its own request;
        the parts' (method, URL) as received go to the request's record."""
        seen = []
        try:
            ctype, body = odata.run_batch(req, base, lambda sub: self.dataverse(sub, claims), seen)
        except (odata.BatchError, UnicodeDecodeError, KeyError) as e:
            return self.dv_error(req, 400, "0x80048d19", "The batch request is malformed: %s" % e)
        finally:
            req.batch_parts = seen
        return req.send(200, [("Content-Type", ctype), ("OData-Version", "4.0"), ("REQ_ID", guid())], body)

    def dv_account_write(self, req, base, aid):
        """PATCH (update; an update with If-Match: * of a missing row is 404,
        as Dataverse answers) and DELETE of accounts(<id>): 204 and
        OData-EntityId, or the updated row with Prefer: return=representation."""
        body = req.body.read_all(16 << 20) if req.method == "PATCH" else b""
        accounts = self._accounts(req.host)
        with self.lock:
            rec = accounts.get(aid)
            if rec is None:
                missing = True
            else:
                missing = False
                if req.method == "DELETE":
                    del accounts[aid]
        if missing:
            return self.dv_error(req, 404, "0x80040217", "account With Id = %s Does Not Exist" % aid)
        if req.method == "DELETE":
            return req.send(204, [("OData-Version", "4.0"), ("REQ_ID", guid())])
        try:
            change = json.loads(body or b"null")
            if not isinstance(change, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return self.dv_error(req, 400, "0x80048d19", "Error identified in Payload provided by the user for "
                                 "Entity :'accounts' ----> InnerException : %s" % e)
        with self.lock:
            rec.update({k: v for k, v in change.items() if k != "accountid"})
            rec = dict(rec)
        entity = "%saccounts(%s)" % (base, aid)
        if "return=representation" in (req.header("prefer") or ""):
            return req.send(200, self.dv_headers() + [("OData-EntityId", entity)],
                            jdump(dict(rec, **{"@odata.context": base + "$metadata#accounts/$entity"})))
        return req.send(204, [("OData-Version", "4.0"), ("OData-EntityId", entity), ("REQ_ID", guid())])

    # Business Central ---------------------------------------------------------------

    def bc(self, req, claims):
        path = urllib.parse.unquote(req.path)
        m = re.match(r"^/v2\.0/(?:([^/]+)/)?([^/]+)/api/v2\.0/companies$", path)
        if m and req.method in ("GET", "HEAD"):
            env = m.group(2)
            prefix = "https://%s/v2.0/%s%s/api/v2.0/" % (BC_HOST, m.group(1) + "/" if m.group(1) else "", env)
            company = {"id": stable_guid("bc-company", claims.get("tid"), env), "systemVersion": "24.0.16410.18056",
                       "timestamp": 5231, "name": "CRONUS USA, Inc.", "displayName": "CRONUS USA, Inc.",
                       "businessProfileId": "", "systemCreatedAt": "2023-10-04T09:15:02.31Z",
                       "systemCreatedBy": "00000000-0000-0000-0000-000000000001",
                       "systemModifiedAt": "2023-10-04T09:15:02.31Z",
                       "systemModifiedBy": "00000000-0000-0000-0000-000000000001"}
            return req.send(200, [("Content-Type", "application/json; odata.metadata=minimal; "
                                                   "odata.streaming=true; charset=utf-8"),
                                  ("OData-Version", "4.0"), ("request-id", guid()),
                                  ("ms-correlation-x", guid())],
                            jdump({"@odata.context": prefix + "$metadata#companies", "value": [company]}))
        m = re.match(r"^/v2\.0/(?:([^/]+)/)?([^/]+)/api/v2\.0/companies\(([0-9a-fA-F-]{36})\)/customers$", path)
        if m:
            env = m.group(2)
            prefix = "https://%s/v2.0/%s%s/api/v2.0/" % (BC_HOST, m.group(1) + "/" if m.group(1) else "", env)
            coll = "%scompanies(%s)/customers" % (prefix, m.group(3).lower())
            return self.collection(req, ("bc", env, m.group(3).lower()), coll, prefix + "$metadata#companies(%s)/"
                                   "customers" % m.group(3).lower(), "id", BC_JSON, self.bc_seed)
        req.send_json(404, {"error": {"code": "BadRequest_NotFound",
                                      "message": "No HTTP resource was found that matches the request URI "
                                                 "'https://%s%s'.  CorrelationId:  %s." % (BC_HOST, req.target,
                                                                                              guid())}})

    # Finance & Operations ---------------------------------------------------------------

    def fo(self, req, claims):
        path = urllib.parse.unquote(req.path)
        if req.host == SS_HOST:
            return req.send_json(404, {"error": "not_found"})
        base = "https://%s/data/" % req.host
        if path == "/data/$metadata" and req.method in ("GET", "HEAD"):
            xml = ('<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" '
                   'xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
                   '<Schema Namespace="Microsoft.Dynamics.DataEntities" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
                   '<EntityType Name="Customer"><Key><PropertyRef Name="dataAreaId"/>'
                   '<PropertyRef Name="CustomerAccount"/></Key>'
                   '<Property Name="dataAreaId" Type="Edm.String" Nullable="false" MaxLength="4"/>'
                   '<Property Name="CustomerAccount" Type="Edm.String" Nullable="false" MaxLength="20"/>'
                   '<Property Name="Name" Type="Edm.String" MaxLength="100"/></EntityType>'
                   '<EntityContainer Name="Resources"><EntitySet Name="Customers" '
                   'EntityType="Microsoft.Dynamics.DataEntities.Customer"/></EntityContainer>'
                   '</Schema></edmx:DataServices></edmx:Edmx>')
            return req.send(200, [("Content-Type", "application/xml"), ("OData-Version", "4.0")], xml)
        if path in ("/data", "/data/") and req.method in ("GET", "HEAD"):
            return req.send(200, [("Content-Type", ODATA_JSON), ("OData-Version", "4.0")], jdump(
                {"@odata.context": base + "$metadata",
                 "value": [{"name": "Customers", "kind": "EntitySet", "url": "Customers"}]}))
        if path == "/data/Customers":
            return self.collection(req, ("fo", req.host), base + "Customers", base + "$metadata#Customers",
                                   "CustomerAccount", ODATA_JSON, self.fo_seed)
        req.send_json(404, {"Message": "No HTTP resource was found that matches the request URI 'https://%s%s'."
                                       % (req.host, req.target)})

    # collections shared by BC and F&O (paging, creates) -----------------------------------

    def bc_seed(self):
        return [{"id": stable_guid("bc-customer", i), "number": "C%05d" % (10000 + i), "displayName": name,
                 "type": "Company", "blocked": "_x0020_"}
                for i, name in enumerate(("Adatum Corporation", "Trey Research"))]

    def fo_seed(self):
        return [{"dataAreaId": "usmf", "CustomerAccount": acc, "Name": name, "CustomerGroupId": "30",
                 "SalesCurrencyCode": "USD"}
                for acc, name in (("US-001", "Contoso Retail San Diego"), ("US-002", "Contoso Retail Los Angeles"))]

    def collection(self, req, key, coll_url, context, key_field, ctype, seed):
        """GET pages (odata.page) with an @odata.etag per row; POST creates a
        row and answers 201 with it and an absolute Location (and
        OData-EntityId), as BC and F&O do."""
        with self.lock:
            store = self.collections.setdefault(key, seed())
            if req.method in ("GET", "HEAD"):
                rows = [dict({"@odata.etag": 'W/"JzEsNTYzNzE0NDU3Nic="'}, **r)
                        for r in store]
        if req.method in ("GET", "HEAD"):
            rows, next_link, applied = odata.page(req, rows, coll_url)
            doc = {"@odata.context": context, "value": rows}
            if next_link:
                doc["@odata.nextLink"] = next_link
            return req.send(200, [("Content-Type", ctype), ("OData-Version", "4.0")] + applied, jdump(doc))
        if req.method != "POST":
            return req.send_json(405, {"error": {"code": "BadRequest_MethodNotFound",
                                                 "message": "'%s' is not allowed" % req.method}})
        try:
            rec = json.loads(req.body.read_all(16 << 20) or b"null")
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return req.send_json(400, {"error": {"code": "BadRequest", "message": "Invalid JSON: %s" % e}})
        with self.lock:
            rec = dict(rec)
            if key_field == "id":
                rec["id"] = guid()
                kv = rec["id"]
            else:
                rec.setdefault(key_field, "US-%03d" % (len(store) + 1))
                rec.setdefault("dataAreaId", "usmf")
                kv = "dataAreaId='%s',%s='%s'" % (rec["dataAreaId"], key_field, rec[key_field])
            store.append(rec)
        loc = "%s(%s)" % (coll_url, kv)
        body = dict({"@odata.context": context + "/$entity", "@odata.etag": 'W/"JzE5OzEn"'}, **rec)
        return req.send(201, [("Content-Type", ctype), ("OData-Version", "4.0"), ("Location", loc),
                              ("OData-EntityId", loc)], jdump(body))

    # /_test endpoints -------------------------------------------------------------------

    def test_endpoint(self, req, kind):
        name = req.path[len("/_test/"):]
        fn = getattr(self, "_test_" + name, None)
        if fn is None:
            return req.send_json(404, {"error": "no such test endpoint: %s" % name})
        return fn(req, kind)

    def _hash_body(self, req):
        h = hashlib.sha256()
        n = 0
        while True:
            d = req.body.read(1 << 20)
            if not d:
                return n, h.hexdigest()
            n += len(d)
            h.update(d)

    def _test_echo(self, req, kind):
        n, sha = self._hash_body(req)
        req.send_json(200, {"method": req.method, "target": req.target,
                            "headers": [[k, v] for k, v in req.headers], "body_len": n, "body_sha256": sha,
                            "body_chunked": req.body.mode == "chunked"})

    def odata_doc(self, req):
        """The JSON document of /_test/odata: links of every kind the services
        send, on this host, plus strings that only look alike."""
        h = "https://" + req.host
        return {"@odata.context": h + "/api/data/v9.2/$metadata#accounts",
                "@odata.nextLink": h + "/api/data/v9.2/accounts?$skiptoken=%3Ccookie%20pagenumber=%222%22/%3E",
                "@odata.deltaLink": h + "/api/data/v9.2/accounts?$deltatoken=919042%2108%2f22%2f2017",
                "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie": h + "/api/data/v9.2/x",
                "value": [{"@odata.id": h + "/api/data/v9.2/accounts(1)", "@odata.editLink": h + "/a(1)",
                           "@odata.readLink": h + "/a(1)", "root": h, "query": h + "?x=1",
                           "other": "https://" + req.host + ".evil.example/x", "text": "see " + h + "/x",
                           "relative": "accounts(1)", h: "a key is not a value"}]}

    def _test_odata(self, req, kind):
        """odata_doc as JSON; escaped=1 writes every '/' as '\\/' (as .NET
        and PHP encoders may); gzip=1 compresses when the request accepts it."""
        body = jdump(self.odata_doc(req))
        if req.query.get("escaped") == "1":
            body = body.replace(b"/", b"\\/")
        hs = [("Content-Type", ODATA_JSON), ("OData-Version", "4.0"),
              ("Location", "https://%s/api/data/v9.2/accounts(1)" % req.host),
              ("Content-Location", "https://%s/api/data/v9.2/accounts" % req.host),
              ("OData-EntityId", "https://%s/api/data/v9.2/accounts(1)" % req.host),
              ("Link", '<https://%s/api/data/v9.2/accounts?p=2>; rel="next", <https://other.example/x>; rel="x"'
               % req.host)]
        if req.query.get("gzip") == "1" and "gzip" in (req.header("accept-encoding") or ""):
            body = gzip.compress(body)
            hs.append(("Content-Encoding", "gzip"))
        if req.query.get("type"):
            hs[0] = ("Content-Type", req.query["type"])
        req.send(200, hs, body)

    def _test_bigjson(self, req, kind):
        """A JSON collection of `n` blocks of 1000 records each holding
        absolute links, sent chunked as it is made (no length)."""
        n = req.qint("n", 1, 0, 1 << 20)
        block = big_json_block(req.host)
        req.start_chunked(200, [("Content-Type", ODATA_JSON), ("OData-Version", "4.0")])
        if req.method != "HEAD":
            req.write_chunk(b'{"value":[')
            for i in range(n):
                req.write_chunk(block if i + 1 < n else block[:-1])
            req.write_chunk(b"]}")
        req.end_chunked()

    def _test_upload(self, req, kind):
        if req.method not in ("POST", "PUT"):
            return req.send_json(405, {"error": "POST or PUT"}, [("Allow", "POST, PUT")])
        n, sha = self._hash_body(req)
        req.send_json(200, {"len": n, "sha256": sha, "chunked": req.body.mode == "chunked",
                            "content_length": req.header("content-length")})

    def _test_bytes(self, req, kind):
        if req.method not in ("GET", "HEAD"):
            return req.send_json(405, {"error": "GET or HEAD"}, [("Allow", "GET, HEAD")])
        n = req.qint("n", 0, 0, 1 << 34)
        hs = [("Content-Type", "application/octet-stream"), ("X-Body-Sha256", pattern_sha256(n))]
        if req.query.get("chunked") == "1":
            req.start_chunked(200, hs)
            if req.method != "HEAD":
                for c in pattern_chunks(n, [1, 1000, 65536, 7, 300000, 1 << 20]):
                    req.write_chunk(c)
                req.end_chunked()
            return
        req.send(200, hs + [("Content-Length", str(n))])
        if req.method != "HEAD":
            for c in pattern_chunks(n):
                req.h.wfile.write(c)

    def _test_status(self, req, kind):
        code = req.qint("code", 200, 200, 599)
        hs = [("x-ms-service-request-id", guid())]
        ra = req.query.get("retry_after")
        if code == 429 and ra is None:
            ra = "1"
        if ra is not None:
            hs.append(("Retry-After", ra))
        if code == 429:
            hs += [("x-ms-ratelimit-burst-remaining-xrm-requests", "0"),
                   ("x-ms-ratelimit-time-remaining-xrm-requests", "1,199,000.00")]
        if code in (204, 304):
            if code == 304:
                hs += [("ETag", 'W/"1234"')]
            return req.send(code, hs)
        if code == 429 and kind == "dataverse":
            body = {"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over "
                                                                "time window of 300 seconds."}}
        else:
            body = {"status": code}
        req.send_json(code, body, hs)

    def _test_closedelim(self, req, kind):
        n = req.qint("n", 0, 0, 1 << 34)
        ver = "HTTP/1.1" if req.query.get("v") == "1.1" else "HTTP/1.0"
        req.status = 200
        req.raw(("%s 200 OK\r\nContent-Type: application/octet-stream\r\nX-Body-Sha256: %s\r\n"
                 "Connection: close\r\n\r\n" % (ver, pattern_sha256(n))).encode())
        for c in pattern_chunks(n):
            req.h.wfile.write(c)
        raise AbortConnection()

    def _test_cut(self, req, kind):
        n = req.qint("n", 0, 0, 1 << 34)
        req.status = 200
        if req.query.get("chunked") == "1":
            req.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            req.raw(b"%x\r\n" % n)
        else:
            req.raw(("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                     % n).encode())
        for c in pattern_chunks(n // 2):
            req.h.wfile.write(c)
        raise AbortConnection()

    def _test_slow(self, req, kind):
        ms = req.qint("ms", 1000, 0, 600000)
        body_ms = req.qint("body_ms", 0, 0, 600000)
        self._hash_body(req)
        time.sleep(ms / 1000.0)
        body = jdump({"slept_ms": ms, "body_ms": body_ms})
        if not body_ms:
            return req.send_json(200, {"slept_ms": ms, "body_ms": body_ms})
        req.send(200, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))])
        req.h.wfile.write(body[:1])
        time.sleep(body_ms / 1000.0)
        req.h.wfile.write(body[1:])

    def _test_dropkeepalive(self, req, kind):
        """A keep-alive-looking answer (no Connection: close), then the socket
        closes: the next request on this connection must not be lost."""
        self._hash_body(req)
        body = b'{"ok":true}'
        req.status = 200
        req.raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
        raise AbortConnection()

    def _test_bigheaders(self, req, kind):
        """A response header block of about `kib` KiB."""
        kib = req.qint("kib", 100, 1, 4096)
        hs = [("X-Filler-%d" % i, "f" * 1000) for i in range(kib)]
        req.send(200, hs, b"big")

    def _test_headers(self, req, kind):
        keep = req.query.get("keep") == "1"
        hs = [("Content-Type", "application/json; charset=utf-8"),
              ("Connection", "X-Hop" if keep else "close, X-Hop"),
              ("X-Hop", "must-not-be-forwarded"),
              ("Keep-Alive", "timeout=5"),
              ("Set-Cookie", "ARRAffinity=abc123; Path=/; HttpOnly; Secure; Domain=%s" % req.host),
              ("Set-Cookie", "ReqClientId=%s; expires=Fri, 01-Jan-2100 00:00:00 GMT; path=/; secure; HttpOnly"
               % stable_guid("cookie", req.host)),
              ("x-ms-correlation-request-id", guid()),
              ("X-End-To-End", "kept")]
        req.send(200, hs, jdump({"ok": True}))
        if not keep:
            req.h.close_connection = True


assert PATTERN_PERIOD == 251
