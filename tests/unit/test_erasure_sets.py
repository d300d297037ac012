"""Several erasure sets on one node: every key lives in exactly one set (by hash), and
listings, multipart uploads and healing span them all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.backend import CompletedPart, ObjectWrite
from storage.erasure.store import ErasureStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

KEYS = [f"{d}/{i:03d}" for d in ("a", "b", "c") for i in range(40)] + ["top", "z"]


@pytest.fixture
async def store(tmp_path: Path):
    paths = [str(tmp_path / f"d{i}") for i in range(12)]
    for p in paths:
        os.makedirs(p)
    s = ErasureStore(paths, data_shards=4, parity_shards=2, chunk_size=16 * 1024)
    await s.open()
    await s.create_bucket("bkt")
    yield s
    await s.close()


def _holders(tmp_path: Path, key: str) -> set[int]:
    """Drives that hold a record for `key`."""
    return {
        i
        for i in range(12)
        if (tmp_path / f"d{i}/.smartstorage/data/bkt/{key}._storage_object.metadata.json").exists()
    }


async def test_keys_spread_over_both_sets_and_list_as_one(store: ErasureStore, tmp_path: Path):
    assert len(store.sets) == 2
    for key in KEYS:
        await store.put_object("bkt", key, chunks(key.encode() * 3000), ObjectWrite())
    used = set()
    for key in KEYS:
        s, _ = store.set_for("bkt", key)
        used.add(s)
        members = {store.drives.index(d) for d in store.sets[s]}
        assert _holders(tmp_path, key) == members
    assert used == {0, 1}

    listed, after = [], ""
    while True:
        page = await store.list_objects("bkt", after=after, max_keys=7)
        listed += [o.key for o in page.objects]
        if not page.truncated:
            break
        after = page.last or ""
    assert listed == sorted(KEYS)
    page = await store.list_objects("bkt", delimiter="/")
    assert page.common_prefixes == ["a/", "b/", "c/"]
    assert [o.key for o in page.objects] == ["top", "z"]
    page = await store.list_objects("bkt", prefix="b/", delimiter="/", max_keys=1000)
    assert [o.key for o in page.objects] == sorted(k for k in KEYS if k.startswith("b/"))


async def test_multipart_and_healing_across_sets(store: ErasureStore, tmp_path: Path):
    body = os.urandom(5 * 1024 * 1024)
    up = await store.create_multipart_upload("bkt", "big", ObjectWrite())
    p1 = await store.upload_part("bkt", "big", up.upload_id, 1, chunks(body), ObjectWrite())
    p2 = await store.upload_part("bkt", "big", up.upload_id, 2, chunks(b"end"), ObjectWrite())
    parts = [CompletedPart(1, p1.etag), CompletedPart(2, p2.etag)]
    await store.complete_multipart_upload("bkt", "big", up.upload_id, parts, ObjectWrite())
    await store.put_object("bkt", "small", chunks(b"x" * 50000), ObjectWrite())
    # Lose a whole drive of each set: every shard on it.
    for s in range(2):
        drive = store.sets[s][0]
        index = store.drives.index(drive)
        for f in (tmp_path / f"d{index}/.smartstorage/data").rglob("*.dat"):
            f.unlink()
    reader = await store.open_object("bkt", "big")
    assert b"".join([bytes(c) async for c in reader.stream()]) == body + b"end"
    await reader.close()
    report = await store.healer.scan()
    assert report.unrecoverable == [] and report.errors == []
    assert report.shards_healed == report.shards_missing > 0
    again = await store.healer.scan()
    assert again.shards_missing == again.shards_corrupt == 0
