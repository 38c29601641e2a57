"""A throwaway CA and a loopback server certificate, so Azurite can speak HTTPS.

Azurite only enables OAuth over HTTPS, like Azure. The CA is generated per stack and never
leaves `.devstack/`; the bundle we hand to clients (`REQUESTS_CA_BUNDLE`) is the machine's
CAs (its own `REQUESTS_CA_BUNDLE` or `SSL_CERT_FILE`, OpenSSL's default file, certifi's)
plus this one, so whatever else the process reaches over HTTPS still verifies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def ensure_tls(directory: Path) -> dict[str, Path]:
    """Create (once) the CA, the server cert/key and the client CA bundle under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server-key.pem",
        "bundle": directory / "ca-bundle.pem",
    }
    if not all(paths[name].exists() for name in ("ca", "cert", "key")):
        _generate(paths)
    write_bundle(paths["bundle"], paths["ca"].read_bytes())
    return paths


def system_ca_files(exclude: Path) -> list[Path]:
    """The CA files this machine trusts: a pre-set REQUESTS_CA_BUNDLE / SSL_CERT_FILE (a
    corporate proxy's CA lives there), OpenSSL's default file, and certifi's."""
    candidates = [os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"),
                  ssl.get_default_verify_paths().cafile, certifi.where()]
    found: list[Path] = []
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).resolve()
        if path.is_file() and path.parent != exclude.parent.resolve() and path not in found:
            found.append(path)
    return found


def write_bundle(bundle: Path, devstack_ca: bytes) -> None:
    """System CAs plus the devstack CA, written on every `up` so the machine's own CAs are current."""
    parts = [p.read_bytes().rstrip(b"\n") + b"\n" for p in system_ca_files(bundle)]
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(b"".join(parts) + devstack_ca)
    tmp.replace(bundle)


def _generate(paths: dict[str, Path]) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("crosscloud devstack CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    paths["ca"].write_bytes(ca_pem)
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        paths["key"],
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
