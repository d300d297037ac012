"""What the tests of real cluster Transports on 127.0.0.1 share (test_cluster_transport,
test_cluster_lane): both event loops (a fixture the modules import by name), the secret,
peer addresses. Their `make` fixture is in conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal.cluster.transport import Transport

SECRET = "correct horse battery staple"
Make = Callable[..., Awaitable[Transport]]


@pytest.fixture(params=["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Both loops: the server runs on uvloop, whose UDP and SSL transports differ in
    details."""
    return request.param


def addr(t: Transport) -> str:
    return f"127.0.0.1:{t.port}"
