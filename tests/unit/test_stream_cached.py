"""A standalone GET of a large object streams what the page cache holds on the event
loop (storage.quickread.read_cached_at: preadv with RWF_NOWAIT, no thread hop) and
takes a worker thread only for what is not cached; either way the bytes come out
whole and in order, in pieces of any length."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shoal.storage import quickread, streams
from shoal.storage.backend import ObjectWrite
from shoal.storage.filestore import FileStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

SIZE = 5 * streams.READ_CHUNK + 12345


async def _stored(tmp_path: Path) -> tuple[FileStore, bytes]:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("b")
    body = os.urandom(SIZE)
    step = 1 << 20
    await fs.put_object(
        "b", "k", chunks(*(body[i : i + step] for i in range(0, SIZE, step))), ObjectWrite()
    )
    return fs, body


def _count_hops(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    hops: list[Any] = []
    real = streams.run

    async def counting(func: Any, *args: Any) -> Any:
        hops.append(func)
        return await real(func, *args)

    monkeypatch.setattr(streams, "run", counting)
    return hops


async def _read(fs: FileStore, start: int = 0, end: int | None = None) -> bytes:
    reader = await fs.open_object("b", "k")
    try:
        return b"".join([bytes(c) async for c in reader.stream(start, end)])
    finally:
        await reader.close()


@pytest.mark.skipif(not quickread.enabled(), reason="no RWF_NOWAIT reads here")
async def test_cached_bytes_are_streamed_without_a_thread_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, body = await _stored(tmp_path)
    try:
        hops = _count_hops(monkeypatch)
        assert await _read(fs) == body  # just written: in the page cache
        assert await _read(fs, 3_000_001, 9_000_000) == body[3_000_001:9_000_001]
        assert hops == []
    finally:
        await fs.close()


async def test_what_is_not_cached_is_read_on_a_thread_in_pieces_of_any_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other read "not cached", and the cached ones short: the stream stitches
    loop reads and thread reads together."""
    fs, body = await _stored(tmp_path)
    try:
        hops = _count_hops(monkeypatch)
        real, calls = quickread.read_cached_at, [0]

        def flaky(fd: int, size: int, offset: int) -> memoryview | None:
            calls[0] += 1
            if calls[0] % 2:
                return None
            got = real(fd, size, offset)
            return None if got is None else got[: max(1, len(got) // 3)]

        monkeypatch.setattr(quickread, "read_cached_at", flaky)
        assert await _read(fs) == body
        assert await _read(fs, 1, SIZE - 2) == body[1 : SIZE - 1]
        assert hops and all(f is os.pread for f in hops)
    finally:
        await fs.close()
