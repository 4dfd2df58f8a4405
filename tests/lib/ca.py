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


if __name__ == "__main__":
    import sys
    print(make_ca(sys.argv[1] if len(sys.argv) > 1 else "."))
