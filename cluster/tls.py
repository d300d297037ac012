"""The node's TLS identity for QUIC: a self-signed certificate kept in the state directory.

QUIC cannot run without TLS, but peers do not check each other's certificates against a
CA: they prove knowledge of the cluster secret over the established connection instead
(see cluster.handshake). So the certificate only has to exist and stay the same across
restarts; it is generated once (EC P-256: small, fast to sign with) and reused.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("shoal.cluster.tls")

CERT_FILE = "cluster-cert.pem"
KEY_FILE = "cluster-key.pem"


def load_or_create_certificate(state_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return (certificate, key) PEM paths in `state_dir`, generating them on first use.

    Files that exist but cannot be parsed are replaced (with a warning): no peer pins the
    certificate, so a new one costs nothing but the log line.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            x509.load_pem_x509_certificate(cert_path.read_bytes())
            serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return cert_path, key_path
        except (ValueError, TypeError) as exc:
            log.warning("replacing unreadable cluster certificate in %s: %s", directory, exc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal cluster node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * 100))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a crash between the two renames leaves a key without a certificate,
    # which the next start regenerates, never a certificate whose key is missing.
    _write_atomic(key_path, key_pem, mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def fingerprint(cert_path: str | os.PathLike[str]) -> str:
    """SHA-256 of the certificate's DER encoding, hex."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
