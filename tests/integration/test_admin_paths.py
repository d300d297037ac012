"""Paths under `/-/` that name no management endpoint: 404 NoSuchKey (an S3 XML error)
whether auth is on or off and whether or not the request is signed; the admin endpoints
themselves stay 403 to anyone unsigned (app/admin.py documents the order of checks)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shoal.app import SyncServer
from shoal.auth.signer import signed_headers
from tests.integration.conftest import auth_config

ADMIN = ("admin", "admin-secret")
UNKNOWN = ("/-/nope", "/-/", "/-/live/extra", "/-/cluster/x/y", "/-/HEAL")


@pytest.fixture(params=[False, True], ids=["auth-off", "auth-on"])
def server(request: pytest.FixtureRequest) -> Iterator[SyncServer]:
    settings = auth_config(ADMIN) if request.param else {"auth": {"enabled": False}}
    with SyncServer(settings) as running:
        yield running


def signed(server: SyncServer, method: str, path: str) -> dict[str, str]:
    d = server.get_storage_descriptor()
    return signed_headers(method, path, f"{d.endpoint}:{d.port}", *ADMIN, d.region)


@pytest.mark.parametrize("path", UNKNOWN)
def test_unknown_management_path_is_404(server: SyncServer, path: str) -> None:
    with httpx.Client(base_url=server.endpoint_url, timeout=30) as client:
        for headers in ({}, signed(server, "GET", path)):
            got = client.get(path, headers=headers)
            assert got.status_code == 404, got.text
            assert got.headers["content-type"].startswith("application/xml")
            assert "<Code>NoSuchKey</Code>" in got.text
            assert f"<Resource>{path}</Resource>" in got.text


def test_known_admin_path_still_needs_a_signature(server: SyncServer) -> None:
    auth_on = server.config is not None and server.config.auth.enabled
    with httpx.Client(base_url=server.endpoint_url, timeout=30) as client:
        unsigned = client.get("/-/cluster")
        assert unsigned.status_code == (403 if auth_on else 200), unsigned.text
        if auth_on:
            assert "<Code>AccessDenied</Code>" in unsigned.text
        ok = client.get("/-/cluster", headers=signed(server, "GET", "/-/cluster"))
        assert ok.status_code == 200 and ok.json() == {"mode": "standalone"}
