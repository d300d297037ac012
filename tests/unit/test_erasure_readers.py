"""Nothing the erasure store keeps per key outlives its use: the open-version counts and
the per-key locks are empty again once reads and writes are done."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.storage.backend import ObjectWrite
from shoal.storage.erasure.readers import OpenVersions
from shoal.storage.erasure.store import ErasureStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


def test_counts_that_drop_to_zero_are_deleted() -> None:
    opened = OpenVersions()
    with opened.opening("b", "k"):
        assert opened.busy("b", "k", "v1") and len(opened) == 1
    opened.pin("b", "k", "v1", 1)
    opened.pin("b", "k", "v1", 1)
    assert opened.busy("b", "k", "v2") and not opened.busy("b", "k", "v0")
    opened.pin("b", "k", "v1", -1)
    assert opened.busy("b", "k", "v1")
    opened.pin("b", "k", "v1", -1)
    assert not opened.busy("b", "k", "v1") and len(opened) == 0
    with pytest.raises(RuntimeError), opened.opening("b", "k"):
        raise RuntimeError("a read that failed")
    assert len(opened) == 0


async def test_many_keys_written_and_read_leave_no_per_key_state(tmp_path: Path) -> None:
    paths = [tmp_path / f"d{i}" for i in range(6)]
    for p in paths:
        p.mkdir()
    store = ErasureStore([str(p) for p in paths], chunk_size=64 * 1024)
    await store.open()
    try:
        await store.create_bucket("bkt")
        for i in range(20):
            key = f"k{i}"
            body = bytes([i]) * (100 * 1024 if i % 2 else 10)  # several chunks or one
            await store.put_object("bkt", key, chunks(body), ObjectWrite())
            async with await store.open_object("bkt", key) as reader:
                assert len(store.readers) == 1
                got = b"".join([bytes(p) async for p in reader.stream()])
            assert got == body
            await store.delete_object("bkt", key)
        assert len(store.readers) == 0
        assert len(store.locks) == 0
    finally:
        await store.close()
