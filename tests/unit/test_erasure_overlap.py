"""Two overlapping writes of one key: the one acknowledged last is the current version,
whichever began first (a long upload that started before a short one and finished after
it must not be hidden by it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.erasure.store import ErasureStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ErasureStore]:
    paths = [tmp_path / f"d{i}" for i in range(6)]
    for p in paths:
        p.mkdir()
    s = ErasureStore([str(p) for p in paths], chunk_size=CHUNK)
    await s.open()
    await s.create_bucket("bkt")
    try:
        yield s
    finally:
        await s.close()


class Held:
    """A body whose first piece arrives at once and the rest only once released."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.pieces = first, rest
        self.waiting = asyncio.Event()  # the write has taken the first piece
        self.go = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.pieces[0]
        self.waiting.set()
        await self.go.wait()
        yield self.pieces[1]

    async def put(self, store: ErasureStore) -> asyncio.Task[object]:
        """Start a PUT of this body and return once it is under way."""
        task = asyncio.create_task(store.put_object("bkt", "k", aiter(self), ObjectWrite()))
        await self.waiting.wait()
        return task


async def read(store: ErasureStore, key: str) -> bytes:
    async with await store.open_object("bkt", key) as reader:
        return b"".join([bytes(p) async for p in reader.stream()])


@pytest.mark.parametrize("later", [b"short", b"s" * (3 * CHUNK)], ids=["small", "chunked"])
async def test_the_put_acknowledged_last_wins(store: ErasureStore, later: bytes) -> None:
    slow = Held(b"L" * (2 * CHUNK), b"l" * CHUNK)
    slow_put = await slow.put(store)
    await store.put_object("bkt", "k", chunks(later), ObjectWrite())
    assert await read(store, "k") == later
    slow.go.set()
    await slow_put  # acknowledged last
    whole = b"".join(slow.pieces)
    assert await read(store, "k") == whole
    listed = await store.list_objects("bkt")
    assert [(o.key, o.size) for o in listed.objects] == [("k", len(whole))]


async def test_a_completion_acknowledged_last_wins(store: ErasureStore) -> None:
    """CompleteMultipartUpload against a PUT that lands while it links its parts."""
    upload = await store.create_multipart_upload("bkt", "k", ObjectWrite())
    part = b"p" * (2 * CHUNK)
    info = await store.upload_part("bkt", "k", upload.upload_id, 1, chunks(part), ObjectWrite())
    slow = Held(b"L" * CHUNK, b"l" * CHUNK)
    slow_put = await slow.put(store)
    await store.complete_multipart_upload(
        "bkt", "k", upload.upload_id, [CompletedPart(1, info.etag)], ObjectWrite()
    )
    assert await read(store, "k") == part
    slow.go.set()
    await slow_put  # acknowledged last
    assert await read(store, "k") == b"".join(slow.pieces)
