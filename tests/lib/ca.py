"""ca.py - a throw-away test CA for the simulated Microsoft cloud.

make_ca(dir) writes, once per directory:
  ca.pem      the CA certificate (give it to the proxy as ca_file)
  ca-key.pem  the CA key
  server.pem  a server certificate for every simulated Microsoft host
  server-key.pem
and returns dict(ca=..., cert=..., key=..., ca_key=...) with absolute paths.
Calling it again on the same directory returns the existing files (an
flock makes concurrent callers safe). Keys are EC P-256: cheap TLS handshakes
keep the simulator fast under many concurrent connections.

Uses the `cryptography` package of Debian's python3 (/usr/bin/python3).
"""

import datetime
import fcntl
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Every host name the simulator answers for (wildcards cover tenants/orgs).
SERVER_NAMES = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.windows.net",
    "login.microsoft.com",
    "login.chinacloudapi.cn",
    "*.crm.dynamics.com",
    "*.api.crm.dynamics.com",
    "*.crm4.dynamics.com",
    "*.api.crm4.dynamics.com",
    "api.businesscentral.dynamics.com",
    "*.operations.dynamics.com",
    "*.sandbox.operations.dynamics.com",
    "securityservice.operations365.dynamics.com",
    "localhost",
]
SERVER_IPS = ["127.0.0.1", "::1"]

_FILES = ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem")


def _name(cn):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s2s-proxy tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _generate(d):
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=1)
    end = now + datetime.timedelta(days=3650)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("s2s-proxy test CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in SERVER_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_IPS]
    cert = (x509.CertificateBuilder()
            .subject_name(_name("login.microsoftonline.com")).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    _write(os.path.join(d, "ca-key.pem"), _key_pem(ca_key), 0o600)
    _write(os.path.join(d, "server-key.pem"), _key_pem(key), 0o600)
    _write(os.path.join(d, "server.pem"), cert.public_bytes(serialization.Encoding.PEM))
    # ca.pem last: its presence marks a complete set.
    _write(os.path.join(d, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))


def make_ca(d):
    """Create (once) the CA and server certificate in directory d; return paths."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    paths = {k: os.path.join(d, f) for k, f in
             zip(("ca", "ca_key", "cert", "key"), _FILES)}
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(os.path.exists(p) for p in paths.values()):
            _generate(d)
    return paths


# --------------------------------------------------------------------------
# client credentials (certificate credentials and federated tokens)

def make_client_cert(d, name, days=365, expired=False, password=None, pfx=False, chain=False):
    """A self-signed RSA-2048 client certificate, as Entra app registrations
    accept. Writes NAME.pem (certificate, followed by a second "intermediate"
    certificate when chain) and NAME-key.pem (encrypted with password if
    given), NAME.pfx (PKCS#12, password or "") when pfx, NAME-pass.txt.
    Returns dict(cert, key, pfx, password_file, pem) (pem: certificate text)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=400 if expired else 1)
    end = now - datetime.timedelta(days=2) if expired else now + datetime.timedelta(days=days)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = _name("s2s-proxy client " + name)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    out = {"cert": os.path.join(d, name + ".pem"), "key": os.path.join(d, name + "-key.pem"),
           "pfx": None, "password_file": None, "pem": pem.decode()}
    extra = b""
    if chain:
        extra = make_client_cert(d, name + "-int")["pem"].encode()
    _write(out["cert"], pem + extra)
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    _write(out["key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc),
           0o600)
    if password is not None:
        out["password_file"] = os.path.join(d, name + "-pass.txt")
        _write(out["password_file"], password.encode() + b"\n", 0o600)
    if pfx:
        out["pfx"] = os.path.join(d, name + ".pfx")
        _write(out["pfx"], pkcs12.serialize_key_and_certificates(
            name.encode(), key, cert, None,
            serialization.BestAvailableEncryption(password.encode()) if password
            else serialization.NoEncryption()), 0o600)
    return out


class Issuer:
    """An OIDC issuer of federated tokens (what AKS's service account issuer is)."""

    def __init__(self, url="https://oidc.prod-aks.azure.com/00000000-0000-0000-0000-000000000001/"):
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.url = url
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def registration(self, subject, audiences=("api://AzureADTokenExchange",)):
        """The federated identity credential to put in an app's "federated" list."""
        return {"issuer": self.url, "subject": subject, "audiences": list(audiences),
                "public_key": self.public_pem}

    def token(self, subject, lifetime=3600, aud="api://AzureADTokenExchange", **claims):
        """A signed RS256 service account token."""
        import base64
        import json
        import time
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        now = int(time.time())
        body = {"aud": [aud], "iss": self.url, "sub": subject, "iat": now, "nbf": now, "exp": now + lifetime}
        body.update(claims)
        head = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
        data = "%s.%s" % (head, b64(json.dumps(body).encode()))
        sig = self.key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
        return data + "." + b64(sig)


if __name__ == "__main__":
    import sys
    print(make_ca(sys.argv[1] if len(sys.argv) > 1 else "."))
