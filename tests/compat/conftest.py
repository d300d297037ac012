"""The client compatibility matrix: shoal with auth on, over HTTP and over HTTPS (a
self-signed certificate made here, trusted by each client through its usual option),
driven by real clients through one shared scenario (scenario.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.server import SyncServer
from tests.compat.scenario import Target
from tests.integration.conftest import auth_config, signed_client

ACCESS_KEY = "compat-access-key"
SECRET_KEY = "compat-secret-key-0123456789"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/compat/ carries the `compat` marker (`pytest -m compat`)."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.compat)


#: Virtual-hosted-style addressing: `bucket.s3.localhost`. A base domain of its own (not
#: bare *.localhost) because TLS clients refuse a wildcard right below a top-level name.
BASE_DOMAIN = "s3.localhost"


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1, localhost and *.s3.localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal compat test")])
    now = dt.datetime.now(dt.UTC)
    alt = [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName(BASE_DOMAIN),
        x509.DNSName(f"*.{BASE_DOMAIN}"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, plain))
    return str(cert_file), str(key_file)


@pytest.fixture(scope="session")
def compat_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_certificate(tmp_path_factory.mktemp("compat-tls"))


@pytest.fixture(scope="session", params=["http", "https"])
def compat_server(
    request: pytest.FixtureRequest, compat_tls_files: tuple[str, str]
) -> Iterator[SyncServer]:
    """A server of this suite's own (not the plugin's shoal_server, whose one session
    instance other folders configure differently): auth on, base domain, TLS or not."""
    config: dict[str, Any] = auth_config((ACCESS_KEY, SECRET_KEY))
    config["server"] = {"base_domain": BASE_DOMAIN}
    if request.param == "https":
        cert, key = compat_tls_files
        config["server"]["tls"] = {"cert_file": cert, "key_file": key}
    with SyncServer(config) as server:
        yield server


@pytest.fixture(scope="session")
def target(compat_server: SyncServer, compat_tls_files: tuple[str, str]) -> Target:
    """Where and how a client reaches this session's server."""
    descriptor = compat_server.get_storage_descriptor()
    return Target(
        endpoint=descriptor.endpoint_url,
        access_key=descriptor.access_key,
        secret_key=descriptor.access_secret,
        region=descriptor.region,
        ca_file=compat_tls_files[0] if descriptor.use_ssl else None,
    )


@pytest.fixture(scope="session")
def verifier(target: Target) -> Any:
    """boto3, sending checksums only where required: checks what each client left."""
    return signed_client(
        target.endpoint,
        target.access_key,
        target.secret_key,
        target.ca_file or True,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def require_command(name: str, install: str) -> str:
    """The path of `name`, or skip naming what to install."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {install}")
    return path


@pytest.fixture
def cleanup_buckets(verifier: Any) -> Iterator[list[str]]:
    """Buckets a failed scenario may leave behind are emptied and removed."""
    from app.pytest_plugin import _empty_and_delete

    names: list[str] = []
    yield names
    for name in names:
        _empty_and_delete(verifier, name)
