"""UploadPart, Complete and Abort of one upload interleaved at the worst moment.

Each test pauses one operation at a drive call (a hook in front of a FaultyDrive) and
runs the racing one there, so the interleaving that used to fail is the one tested:
a second Complete linking parts while the first removes the upload folder (503 "Not
enough drives to write"), a part replaced while a Complete links it (503), a part's
shards written while an Abort removes the folder (the part "succeeded" and left a
folder no upload owns). Where the fixed store makes the racer wait for the upload's
lock instead, the hook sees it queued there and lets the paused operation go on.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.storage import multipart
from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.erasure.drive import Drive
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.erasure.uploads import upload_lock
from shoal.storage.errors import NoSuchUpload
from tests.unit.conftest import chunks, until

pytestmark = pytest.mark.anyio

K, M = 4, 2
N = K + M
CHUNK = 64 * 1024
BUCKET = "bucket"
KEY = "mp"
OLD, NEW = b"o" * (CHUNK + 10), b"n" * (CHUNK + 20)

Hook = Callable[[str, str], Awaitable[None]]


class Hooked(FaultyDrive):
    """Awaits the test's hook (operation, path) before a write, link or delete."""

    def __init__(self, inner: Drive, hooks: list[Hook]) -> None:
        super().__init__(inner)
        self.hooks = hooks

    async def _hook(self, op: str, path: str) -> None:
        for hook in self.hooks:
            await hook(op, path)

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._hook("write_shard", path)
        await super().write_shard(path, data, crc)

    async def delete(self, path: str) -> None:
        await self._hook("delete", path)
        await super().delete(path)

    async def link(self, src: str, dst: str) -> None:
        await self._hook("link", src)
        await super().link(src, dst)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipart, "MIN_PART_SIZE", CHUNK)


@pytest.fixture
def hooks() -> list[Hook]:
    return []


@pytest.fixture
async def store(tmp_path: Path, hooks: list[Hook]) -> AsyncIterator[ErasureStore]:
    paths = [tmp_path / f"drive{i}" for i in range(N)]
    for p in paths:
        p.mkdir()
    s = ErasureStore(
        [str(p) for p in paths],
        data_shards=K,
        parity_shards=M,
        chunk_size=CHUNK,
        probe_interval=0.1,
        drive_wrapper=lambda d: Hooked(d, hooks),
    )
    await s.open()
    await s.create_bucket(BUCKET)
    yield s
    hooks.clear()
    await s.close()


async def settle(store: ErasureStore) -> None:
    while store._background:
        await asyncio.wait(set(store._background), timeout=5)


def upload_folders(store: ErasureStore, upload_id: str) -> list[str]:
    """The drives (paths) that still hold a folder of the upload."""
    return [
        p
        for p in store.paths
        if (Path(p) / ".smartstorage" / "multipart" / BUCKET / upload_id).exists()
    ]


async def started(store: ErasureStore) -> tuple[str, list[CompletedPart]]:
    """An upload whose part 1 holds OLD."""
    up = await store.create_multipart_upload(BUCKET, KEY, ObjectWrite())
    part = await store.upload_part(BUCKET, KEY, up.upload_id, 1, chunks(OLD), ObjectWrite())
    await settle(store)
    return up.upload_id, [CompletedPart(1, part.etag)]


async def read(store: ErasureStore) -> bytes:
    async with await store.open_object(BUCKET, KEY) as reader:
        return b"".join([c async for c in reader.stream()])


async def test_a_second_complete_finds_the_upload_gone(
    store: ErasureStore, hooks: list[Hook]
) -> None:
    """The second Complete gets in while the first removes the upload's folder."""
    upload_id, done = await started(store)
    udir = f"multipart/{BUCKET}/{upload_id}"
    second: dict[str, Any] = {}

    def complete() -> Awaitable[Any]:
        return store.complete_multipart_upload(BUCKET, KEY, upload_id, done, ObjectWrite())

    async def hook(op: str, path: str) -> None:
        if op == "delete" and path == udir:  # the first, committed, cleans up
            if "task" not in second:
                second["task"] = asyncio.ensure_future(complete())
            await until(
                lambda: "linking" in second or store.locks.users(upload_lock(upload_id)) > 1
            )
        elif op == "link" and "task" in second:  # the second links what is going
            second["linking"] = True
            await until(lambda: not upload_folders(store, upload_id))

    hooks.append(hook)
    meta = await complete()
    # The upload is gone, but completed with the same parts: the first's result.
    assert (await second["task"]).etag == meta.etag
    assert await read(store) == OLD and meta.size == len(OLD)
    await settle(store)
    assert upload_folders(store, upload_id) == []


async def test_a_part_replaced_while_a_complete_links_it_waits_and_is_refused(
    store: ErasureStore, hooks: list[Hook]
) -> None:
    upload_id, done = await started(store)
    racer: dict[str, asyncio.Future[Any]] = {}

    async def hook(op: str, path: str) -> None:
        if op == "link":
            if "part" not in racer:
                racer["part"] = asyncio.ensure_future(
                    store.upload_part(BUCKET, KEY, upload_id, 1, chunks(NEW), ObjectWrite())
                )
            part = racer["part"]
            await until(
                lambda: (
                    (part.done() and not store._background)
                    or store.locks.users(upload_lock(upload_id)) > 1
                )
            )

    hooks.append(hook)
    meta = await store.complete_multipart_upload(BUCKET, KEY, upload_id, done, ObjectWrite())
    with pytest.raises(NoSuchUpload):  # it came after the Complete that chose OLD
        await racer["part"]
    assert await read(store) == OLD and meta.size == len(OLD)
    await settle(store)
    assert upload_folders(store, upload_id) == []


async def test_a_part_written_while_an_abort_removes_the_upload_is_refused(
    store: ErasureStore, hooks: list[Hook]
) -> None:
    upload_id, _ = await started(store)
    aborted: dict[str, asyncio.Future[None]] = {}

    async def hook(op: str, path: str) -> None:
        if op == "write_shard" and "/part-2." in path:
            if "abort" not in aborted:
                aborted["abort"] = asyncio.ensure_future(
                    store.abort_multipart_upload(BUCKET, KEY, upload_id)
                )
            await asyncio.shield(aborted["abort"])

    hooks.append(hook)
    with pytest.raises(NoSuchUpload):
        await store.upload_part(BUCKET, KEY, upload_id, 2, chunks(NEW), ObjectWrite())
    await aborted["abort"]
    with pytest.raises(NoSuchUpload):
        await store.list_parts(BUCKET, KEY, upload_id)
    await settle(store)
    assert upload_folders(store, upload_id) == []  # no part the upload's end left behind


async def test_parts_uploaded_before_a_complete_are_in_it(
    store: ErasureStore, hooks: list[Hook]
) -> None:
    """The lock orders, it does not refuse: a part committed first is completed."""
    upload_id, _ = await started(store)
    part = await store.upload_part(BUCKET, KEY, upload_id, 1, chunks(NEW), ObjectWrite())
    meta = await store.complete_multipart_upload(
        BUCKET, KEY, upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
    )
    assert await read(store) == NEW and meta.size == len(NEW)


async def test_a_complete_whose_upload_another_node_ended_is_no_such_upload(
    store: ErasureStore, hooks: list[Hook]
) -> None:
    """A cluster's other node holds no lock of this one: its Abort removes the upload
    (here: its folder on every drive) while this node's Complete links the parts."""
    upload_id, done = await started(store)

    async def hook(op: str, path: str) -> None:
        if op == "link":
            for p in upload_folders(store, upload_id):
                shutil.rmtree(Path(p) / ".smartstorage" / "multipart" / BUCKET / upload_id)

    hooks.append(hook)
    with pytest.raises(NoSuchUpload):
        await store.complete_multipart_upload(BUCKET, KEY, upload_id, done, ObjectWrite())
    assert await store.current(BUCKET, KEY) is None
    await settle(store)
    assert upload_folders(store, upload_id) == []
