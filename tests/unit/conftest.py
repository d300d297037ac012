"""Fixtures shared by unit tests: FileStore ones, real cluster Transports, and
storage.durable's two implementations."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster.transport import Transport
from shoal.storage import durable
from shoal.storage.filestore import FileStore
from tests.unit.transports import SECRET, Make

try:
    from shoal.storage import _durable
except ImportError:  # not built here
    _durable = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["c", "os"])
def durable_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test runs with storage.durable's C module (skipped where it is not built),
    then with its os.* versions."""
    if request.param == "c":
        if _durable is None:
            pytest.skip("the C module is not built here (no compiler or Python headers)")
        monkeypatch.setattr(durable, "_c", _durable)
    else:
        monkeypatch.setattr(durable, "_c", None)
    yield request.param


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body as the ASGI layer hands it over."""
    for p in parts:
        yield p


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for `condition` (something another thread or a background task makes true)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


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
    own state dir (`state=` to reuse one); all stopped at the end.

    A Transport's bulk lane listens on TCP at its UDP port's number, and on a busy
    machine another socket may hold that TCP port: the node then runs without a lane,
    as it should. A test that lets the port be picked gets a node with its lane (another
    free port is tried), unless it asked for none."""
    started: list[Transport] = []

    async def start(name: str, *, state: Path | None = None, **kwargs: Any) -> Transport:
        kwargs.setdefault("secret", SECRET)
        wants_lane = kwargs.get("bulk_lane", True) and not kwargs.get("port")
        for _ in range(10):
            t = Transport(node_id=name, state_dir=str(state or tmp_path / name), **kwargs)
            await t.start()
            if t.lane_port or not wants_lane:
                break
            await t.stop()
        started.append(t)
        return t

    yield start
    for t in started:
        await t.stop()


def evicted(path: Path | str) -> bool:
    """Drop the file's pages from the page cache; whether the kernel did (a filesystem
    may keep them, and a test of reads that must not wait for the disk then skips)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages, which the kernel drops when asked
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)
