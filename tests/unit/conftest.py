"""Fixtures shared by unit tests: FileStore ones, and real cluster Transports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster.transport import Transport
from shoal.storage.filestore import FileStore
from tests.unit.transports import SECRET, Make


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body as the ASGI layer hands it over."""
    for p in parts:
        yield p


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    """An open FileStore with one bucket, "bucket"."""
    fs = FileStore(tmp_path / "data")
    await fs.open()
    await fs.create_bucket("bucket")
    yield fs
    await fs.close()


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Start cluster Transports (tests/unit/transports.py) on free ports, each with its
    own state dir (`state=` to reuse one); all stopped at the end."""
    started: list[Transport] = []

    async def start(name: str, *, state: Path | None = None, **kwargs: Any) -> Transport:
        kwargs.setdefault("secret", SECRET)
        t = Transport(node_id=name, state_dir=str(state or tmp_path / name), **kwargs)
        await t.start()
        started.append(t)
        return t

    yield start
    for t in started:
        await t.stop()
