"""common.py - pieces shared by the simulated Microsoft cloud's modules.

- State shared between simulator processes through the state directory:
  the RS256 signing key (signing-key.pem, created once under an flock) and
  shared.json (app registry and per-environment tenants), re-read whenever
  another process rewrites it. Entra and the upstreams may run as separate
  processes; pointing them at one state dir makes them agree.
- JWT signing and verification (RS256, real header/claims layout).
- Per-process statistics and the ring of recent requests.
- The deterministic byte pattern of /_test/bytes.
"""

import base64
import collections
import datetime
import fcntl
import hashlib
import json
import os
import re
import sys
import threading
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_log_lock = threading.Lock()


def log(msg):
    """One line to stderr; never raises."""
    try:
        line = "%s mscloud[%d]: %s\n" % (time.strftime("%H:%M:%S"), os.getpid(), msg)
        with _log_lock:
            sys.stderr.write(line)
            sys.stderr.flush()
    except Exception:
        pass


def guid():
    return str(uuid.uuid4())


def stable_guid(*parts):
    """A GUID that is the same every run for the same inputs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "s2s-sim:" + "|".join(str(p) for p in parts)))


def is_guid(s):
    return bool(s) and bool(GUID_RE.match(s))


def jdump(obj):
    """Compact JSON as Microsoft services send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def utc_stamp(t=None):
    """'YYYY-MM-DD HH:MM:SSZ' as in Entra error bodies."""
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso_stamp(t=None):
    """'2024-01-02T03:04:05.123Z' as in OData payloads."""
    t = time.time() if t is None else t
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s):
    if isinstance(s, str):
        s = s.encode("ascii")
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


# --------------------------------------------------------------------------
# Deterministic body bytes: byte k of every generated body is k % 251.
# The period is prime so a lost, repeated or shifted chunk changes the hash.

PATTERN_PERIOD = 251
PATTERN_BLOCK = bytes(range(PATTERN_PERIOD)) * 4096  # ~1 MiB, multiple of the period
_PATTERN_VIEW = memoryview(PATTERN_BLOCK)
_sha_cache = {}
_sha_lock = threading.Lock()


def pattern_chunks(n, sizes=None):
    """Yield the first n pattern bytes, in chunks (of the given cycling sizes)."""
    off = 0
    i = 0
    while off < n:
        want = sizes[i % len(sizes)] if sizes else len(PATTERN_BLOCK)
        i += 1
        start = off % PATTERN_PERIOD
        want = min(want, n - off, len(PATTERN_BLOCK) - start)
        yield _PATTERN_VIEW[start:start + want]
        off += want


def pattern_sha256(n):
    with _sha_lock:
        if n in _sha_cache:
            return _sha_cache[n]
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    d = h.hexdigest()
    with _sha_lock:
        _sha_cache[n] = d
    return d


# --------------------------------------------------------------------------
# State directory: signing key and shared.json.

class StateDir:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        self._shared_path = os.path.join(self.path, "shared.json")
        self._cache_key = None
        self._shared = {"apps": [], "env_tenants": {}}
        self._mem_lock = threading.Lock()
        self.key = self._load_key()
        pub = self.key.public_key()
        der = pub.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = b64url(hashlib.sha1(der).digest())
        self.public_key = pub

    def _flock(self):
        f = open(os.path.join(self.path, ".lock"), "a+")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def _load_key(self):
        kp = os.path.join(self.path, "signing-key.pem")
        with self._flock():
            if not os.path.exists(kp):
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                tmp = kp + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
                os.replace(tmp, kp)
            with open(kp, "rb") as f:
                return serialization.load_pem_private_key(f.read(), password=None)

    def jwks(self):
        nums = self.public_key.public_numbers()

        def enc(i):
            return b64url(i.to_bytes((i.bit_length() + 7) // 8, "big"))
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                          "n": enc(nums.n), "e": enc(nums.e)}]}

    # shared.json ------------------------------------------------------------

    def _read_file(self):
        try:
            with open(self._shared_path, "rb") as f:
                data = json.loads(f.read() or b"{}")
        except FileNotFoundError:
            data = {}
        data.setdefault("apps", [])
        data.setdefault("env_tenants", {})
        return data

    def shared(self):
        """The current shared registry (reloaded when another process changed it)."""
        try:
            st = os.stat(self._shared_path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        with self._mem_lock:
            if key != self._cache_key:
                try:
                    self._shared = self._read_file()
                    self._cache_key = key
                except (OSError, ValueError) as e:
                    log("shared.json unreadable, keeping previous: %s" % e)
            return self._shared

    def update_shared(self, fn):
        """fn(data) mutates the registry; written atomically under the lock."""
        with self._flock():
            data = self._read_file()
            fn(data)
            tmp = self._shared_path + ".%d.tmp" % os.getpid()
            with open(tmp, "wb") as f:
                f.write(json.dumps(data, indent=1).encode())
            os.replace(tmp, self._shared_path)
        with self._mem_lock:
            self._cache_key = None
        return self.shared()


def normalize_app(a):
    """Validate and fill defaults of one app registration; raises ValueError."""
    if not isinstance(a, dict):
        raise ValueError("app must be an object")
    tid = str(a.get("tenant_id", "")).lower()
    cid = str(a.get("client_id", ""))
    if not is_guid(tid):
        raise ValueError("tenant_id must be a GUID: %r" % tid)
    if not cid:
        raise ValueError("client_id missing")
    app = dict(a)
    app["tenant_id"] = tid
    app["client_id"] = cid
    app["tenant_domains"] = [str(d).lower() for d in a.get("tenant_domains", [])]
    app["secret"] = a.get("secret")
    app["lifetime"] = int(a.get("lifetime", 3599))
    if a.get("refresh_in") is not None:
        app["refresh_in"] = int(a["refresh_in"])
    app["roles"] = list(a.get("roles", []))
    app.setdefault("name", "app-" + cid[:8])
    app["upstream_errors"] = dict(a.get("upstream_errors") or {})
    return app


def merge_apps(data, apps, replace=False):
    if replace:
        data["apps"] = []
    for a in apps:
        a = normalize_app(a)
        data["apps"] = [x for x in data["apps"]
                        if not (x["client_id"].lower() == a["client_id"].lower()
                                and x["tenant_id"] == a["tenant_id"])]
        data["apps"].append(a)


# --------------------------------------------------------------------------
# JWT

def jwt_sign(state, claims):
    header = {"typ": "JWT", "alg": "RS256", "x5t": state.kid, "kid": state.kid}
    signing_input = (b64url(jdump(header)) + "." + b64url(jdump(claims))).encode("ascii")
    sig = state.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode("ascii") + "." + b64url(sig)


class TokenError(Exception):
    def __init__(self, reason, claims=None):
        Exception.__init__(self, reason)
        self.reason = reason
        self.claims = claims


_verified = collections.OrderedDict()
_verified_lock = threading.Lock()


def jwt_verify(state, token):
    """Return the claims of a token this simulator signed; check nbf/exp strictly.
    Raises TokenError(reason) with reason in malformed, bad_signature, unknown_kid,
    not_yet_valid, expired."""
    with _verified_lock:
        claims = _verified.get(token)
    if claims is None:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            raise TokenError("malformed")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("malformed")
        if header.get("alg") != "RS256":
            raise TokenError("bad_signature", claims)
        if header.get("kid") != state.kid:
            raise TokenError("unknown_kid", claims)
        try:
            state.public_key.verify(sig, (parts[0] + "." + parts[1]).encode("ascii"),
                                    padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            raise TokenError("bad_signature", claims)
        with _verified_lock:
            _verified[token] = claims
            while len(_verified) > 20000:
                _verified.popitem(last=False)
    now = time.time()
    try:
        nbf = float(claims.get("nbf", 0))
        exp = float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        raise TokenError("malformed", claims)
    if now < nbf:
        raise TokenError("not_yet_valid", claims)
    if now >= exp:
        raise TokenError("expired", claims)
    return claims


def jwt_claims_unverified(token):
    try:
        return json.loads(b64url_decode(token.split(".")[1]))
    except Exception:
        return None


# --------------------------------------------------------------------------
# Statistics (per process)

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.token_requests = 0
            self.tokens_issued = 0
            self.by_client = collections.Counter()
            self.by_resource = collections.Counter()
            self.errors_by_code = collections.Counter()
            self.issued_tokens = []
            self.upstream_requests = 0
            self.upstream_rejected = 0
            self.in_flight = []  # targets of upstream requests being answered now (arrival order)
            self.expired_tokens_seen = 0
            self.tls_handshakes = 0  # TLS connections accepted (every role)
            self.tls_resumed = 0  # of those, resumed sessions
            self.requests = collections.deque(maxlen=5000)
            self.token_log = collections.deque(maxlen=5000)
            self.assertions = collections.deque(maxlen=5000)  # header + claims of accepted assertions

    def snapshot(self):
        with self.lock:
            return {
                "token_requests": self.token_requests,
                "tokens_issued": self.tokens_issued,
                "token_requests_by_client": dict(self.by_client),
                "token_requests_by_resource": dict(self.by_resource),
                "token_errors_by_code": {str(k): v for k, v in self.errors_by_code.items()},
                "issued_tokens": list(self.issued_tokens),
                "upstream_requests": self.upstream_requests,
                "upstream_rejected": self.upstream_rejected,
                "upstream_in_flight": list(self.in_flight),
                "expired_tokens_seen": self.expired_tokens_seen,
                "tls_handshakes": self.tls_handshakes,
                "tls_resumed": self.tls_resumed,
                "assertions": list(self.assertions),
            }
