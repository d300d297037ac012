"""The client compatibility matrix: shoal with auth on, over HTTP and over HTTPS (a
self-signed certificate made here, trusted by each client through its usual option),
driven by real clients through one shared scenario (scenario.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.app.server import SyncServer
from tests.compat.scenario import Target
from tests.integration.conftest import auth_config, make_certificate, signed_client

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


@pytest.fixture(scope="session")
def compat_tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    names = ("localhost", BASE_DOMAIN, f"*.{BASE_DOMAIN}")
    return make_certificate(tmp_path_factory.mktemp("compat-tls"), names)


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
    from shoal.app.pytest_plugin import _empty_and_delete

    names: list[str] = []
    yield names
    for name in names:
        _empty_and_delete(verifier, name)
