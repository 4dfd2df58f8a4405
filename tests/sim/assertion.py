"""assertion.py - how the simulated Entra verifies client assertions (RFC 7523).

An app registration may carry
  "certificates": [PEM, ...]   public certificates (Entra's "Certificates & secrets")
  "federated": [{"issuer", "subject", "audiences": [...], "public_key": PEM}, ...]
                               federated identity credentials; public_key stands
                               in for the issuer's OIDC discovery + JWKS.
verify() checks what Entra checks and answers with Entra's codes:
  50027 not a JWT; 700027 certificate thumbprint not registered; 7000274 signature
  does not verify; 700021 iss/sub is not the client_id; 50013 aud is not the
  token endpoint; 700024 expired, not yet valid (5 min skew) or a certificate
  assertion living over 10 minutes; federated: 700211 issuer, 700213 subject, 700212 audience.
"""

import base64
import json

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SKEW = 300
MAX_LIFETIME = 600


def _b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def thumbprints(pem):
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    return (_b64e(cert.fingerprint(hashes.SHA1())), _b64e(cert.fingerprint(hashes.SHA256())),
            cert.public_key())


def _verify_sig(pub, alg, signing_input, sig):
    try:
        if alg == "PS256":
            pub.verify(sig, signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                        salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        elif alg == "RS256":
            pub.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _times(claims, now, max_lifetime=None):
    try:
        nbf = int(claims.get("nbf", claims.get("iat", 0)))
        exp = int(claims["exp"])
    except (KeyError, TypeError, ValueError):
        return 700024
    if now + SKEW < nbf or now > exp or (max_lifetime and exp - nbf > max_lifetime + SKEW):
        return 700024
    return 0


def verify(app, token, client_id, token_url, now):
    """(0, {"header", "claims"}) if Entra would accept `token`, else (code, ctx)."""
    try:
        h64, p64, s64 = token.split(".")
        header = json.loads(_b64d(h64))
        claims = json.loads(_b64d(p64))
        sig = _b64d(s64)
        assert isinstance(header, dict) and isinstance(claims, dict)
    except Exception:
        return 50027, {}
    signing_input = ("%s.%s" % (h64, p64)).encode()
    ctx = {"now": int(now), "nbf": claims.get("nbf"), "exp": claims.get("exp"), "aud": claims.get("aud"),
           "iss": claims.get("iss"), "sub": claims.get("sub"), "expected": token_url}
    info = {"header": header, "claims": claims}
    if "x5t" in header or "x5t#S256" in header:
        return _verify_cert(app, header, claims, signing_input, sig, client_id, token_url, now, ctx, info)
    return _verify_federated(app, header, claims, signing_input, sig, now, ctx, info)


def _verify_cert(app, header, claims, signing_input, sig, client_id, token_url, now, ctx, info):
    pub = None
    for pem in app.get("certificates") or []:
        t1, t256, key = thumbprints(pem)
        if header.get("x5t#S256") == t256 or ("x5t#S256" not in header and header.get("x5t") == t1):
            pub = key
    if pub is None:
        return 700027, ctx
    if not _verify_sig(pub, header.get("alg"), signing_input, sig):
        return 7000274, ctx
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return 700021, ctx
    aud = claims.get("aud")
    if aud != token_url:
        return 50013, ctx
    code = _times(claims, now, MAX_LIFETIME)
    return (code, ctx) if code else (0, info)


def _verify_federated(app, header, claims, signing_input, sig, now, ctx, info):
    creds = [f for f in app.get("federated") or [] if f.get("issuer") == claims.get("iss")]
    if not creds:
        return 700211, ctx
    creds = [f for f in creds if f.get("subject") == claims.get("sub")]
    if not creds:
        return 700213, ctx
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    creds = [f for f in creds if set(auds) & set(f.get("audiences") or ["api://AzureADTokenExchange"])]
    if not creds:
        return 700212, ctx
    pub = serialization.load_pem_public_key(creds[0]["public_key"].encode())
    if not _verify_sig(pub, header.get("alg"), signing_input, sig):
        return 7000274, ctx
    code = _times(claims, now)
    return (code, ctx) if code else (0, info)
