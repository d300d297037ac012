"""Fixtures shared by the FileStore unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage.filestore import FileStore


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
