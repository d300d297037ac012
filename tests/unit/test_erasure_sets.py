"""Several erasure sets on one node: every key lives in exactly one set (by hash), and
listings, multipart uploads and healing span them all."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.errors import NoSuchKey
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


class _BeforeTheJoin:
    """The store as it was with only its first pool (set 0): what it writes lands there."""

    def __init__(self, store: ErasureStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        s = self.store
        self.saved = s.sets, s.drives, s.pools
        s.sets, s.drives, s.pools = s.sets[:1], s.drives[:6], [1]

    def __exit__(self, *exc: object) -> None:
        self.store.sets, self.store.drives, self.store.pools = self.saved


async def test_pools_existing_keys_stay_new_keys_spread(store: ErasureStore, tmp_path: Path):
    store.pools = [1, 1]  # set 1 came with a node that joined
    with _BeforeTheJoin(store):
        for key in KEYS[:30]:
            await store.put_object("bkt", key, chunks(b"old " + key.encode()), ObjectWrite())
    first = set(range(6))
    assert all(_holders(tmp_path, key) == first for key in KEYS[:30])
    for key in KEYS[:30]:  # found in the first pool, rewritten in place
        meta = await store.put_object("bkt", key, chunks(b"new " + key.encode()), ObjectWrite())
        async with await store.open_object("bkt", key) as reader:
            assert b"".join([c async for c in reader.stream()]) == b"new " + key.encode()
        assert reader.meta.etag == meta.etag and _holders(tmp_path, key) == first
    for key in KEYS[30:]:
        await store.put_object("bkt", key, chunks(key.encode()), ObjectWrite())
    homes = {store.place("bkt", key).home for key in KEYS[30:]}
    assert homes == {0, 1}
    for key in KEYS[30:]:
        assert _holders(tmp_path, key) == {
            store.drives.index(d) for d in store.sets[store.place("bkt", key).home]
        }
    # Multipart: an upload begun before the join completes in the first pool; one
    # begun after names its set in its id.
    old_key = next(k for k in KEYS[30:] if store.place("bkt", k).home == 1)
    with _BeforeTheJoin(store):
        before = await store.create_multipart_upload("bkt", "mp-old", ObjectWrite())
    after = await store.create_multipart_upload("bkt", old_key, ObjectWrite())
    assert "." not in before.upload_id and after.upload_id.startswith("s1.")
    for info, key in ((before, "mp-old"), (after, old_key)):
        part = await store.upload_part(
            "bkt", key, info.upload_id, 1, chunks(b"p" * 5000), ObjectWrite()
        )
        await store.complete_multipart_upload(
            "bkt", key, info.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
        )
    assert _holders(tmp_path, "mp-old") == first
    listed = [o.key for o in (await store.list_objects("bkt", max_keys=1000)).objects]
    assert listed == sorted({*KEYS, "mp-old"})


async def test_a_key_in_two_pools_reads_newest_and_deletes_both(
    store: ErasureStore, tmp_path: Path
):
    store.pools = [1, 1]
    key = next(k for k in KEYS if store.place("bkt", k).home == 1)
    await store.put_object("bkt", key, chunks(b"in the new pool"), ObjectWrite())
    with _BeforeTheJoin(store):  # a writer that had not yet seen the join
        await store.put_object("bkt", key, chunks(b"newer, in the old pool"), ObjectWrite())
    assert _holders(tmp_path, key) == set(range(12))
    async with await store.open_object("bkt", key) as reader:
        assert b"".join([c async for c in reader.stream()]) == b"newer, in the old pool"
    page = await store.list_objects("bkt", max_keys=1000)
    assert [(o.key, o.size) for o in page.objects] == [(key, len(b"newer, in the old pool"))]
    await store.delete_object("bkt", key)
    while store._background:  # the markers retire what they replace, then themselves
        await asyncio.wait(set(store._background))
    with pytest.raises(NoSuchKey):
        await store.head_object("bkt", key)
    assert (await store.list_objects("bkt")).objects == []
