"""Versions in the erasure store under drive faults: healing brings back every version of
a key (not only the current one), the null version's replacement is retired from every
drive, a version deleted by id stays readable to the reader that has it open, a metadata
change that a drive missed still wins (and healing copies it over), and a deletion by id
that cannot reach a write quorum is refused.

The set-up is test_erasure_store's: one 4+2 set with 64 KiB chunks, FaultyDrive between
each LocalDrive and its health tracking, healing run when a test asks.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from shoal.storage.backend import NULL_VERSION, ObjectMeta
from shoal.storage.errors import NoSuchVersion, ServiceUnavailable
from tests.unit.test_erasure_store import (
    BUCKET,
    CHUNK,
    Cluster,
    body,
    cluster,
    dirs_on,
    put,
    settle,
)

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests


async def read_version(c: Cluster, key: str, version_id: str) -> bytes:
    async with await c.store.open_object(BUCKET, key, version_id) as reader:
        return b"".join([bytes(p) async for p in reader.stream()])


async def ids_on(c: Cluster, key: str) -> list[list[str]]:
    """Each drive's S3 version ids for `key`, newest first (bypassing faults)."""
    return [[e.version_id for e in await d.read_object(BUCKET, key)] for d in c.local]


async def test_healing_restores_every_version_of_a_key(cluster: Cluster) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    datas = [body(3 * CHUNK + 17, seed=1), body(100, seed=2), body(CHUNK * 2, seed=3)]
    ids = [(await put(c.store, "k", d)).version_id for d in datas]
    marker = (await c.store.delete_object(BUCKET, "k")).version_id
    assert marker is not None
    # A replaced disk: drive 0 has nothing of the bucket any more.
    shutil.rmtree(Path(c.local[0].root) / "data" / BUCKET)
    report = await c.store.healer.scan()
    assert report.records_healed == 4 and report.shards_healed > 0, report
    assert await ids_on(c, "k") == [[marker, *reversed(ids)]] * 6
    # Every version reads back with two other drives gone.
    for p in (1, 2):
        c.fail_record_reads(p)
        c.faulty[p].fail("read_shard")
    for vid, data in zip(ids, datas, strict=True):
        assert await read_version(c, "k", vid) == data


async def test_the_null_version_replaced_is_retired_everywhere(cluster: Cluster) -> None:
    c = cluster
    c.store.inline_max = 0  # shard folders, to see them go
    await put(c.store, "k", b"first null")
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    kept = (await put(c.store, "k", b"a version")).version_id
    await c.store.update_bucket(BUCKET, versioning="Suspended")
    assert (await put(c.store, "k", b"second null")).version_id == NULL_VERSION
    await settle(c.store)
    assert await ids_on(c, "k") == [[NULL_VERSION, kept]] * 6
    assert all(len(folders) == 2 for folders in await dirs_on(c, "k"))
    assert await read_version(c, "k", NULL_VERSION) == b"second null"
    assert await read_version(c, "k", kept) == b"a version"
    # A Suspended delete replaces the null version by a null marker, and keeps the rest.
    result = await c.store.delete_object(BUCKET, "k")
    assert (result.version_id, result.delete_marker) == (NULL_VERSION, True)
    await settle(c.store)
    assert await ids_on(c, "k") == [[NULL_VERSION, kept]] * 6
    assert all(len(folders) == 1 for folders in await dirs_on(c, "k"))


async def test_a_version_deleted_by_id_stays_with_its_reader(cluster: Cluster) -> None:
    c = cluster
    c.store.inline_max = 0  # shard folders, to see them go
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    data = body(4 * CHUNK, seed=7)
    old = (await put(c.store, "k", data)).version_id
    await put(c.store, "k", b"newer")
    reader = await c.store.open_object(BUCKET, "k", old)
    try:
        result = await c.store.delete_object(BUCKET, "k", version_id=old)
        assert (result.version_id, result.delete_marker) == (old, False)
        with pytest.raises(NoSuchVersion):
            await c.store.head_object(BUCKET, "k", old)
        assert b"".join([bytes(p) async for p in reader.stream()]) == data
    finally:
        await reader.close()
    await settle(c.store)
    assert all(len(folders) == 1 for folders in await dirs_on(c, "k"))


async def test_a_metadata_change_a_drive_missed_wins_and_is_healed(cluster: Cluster) -> None:
    c = cluster
    await put(c.store, "k", b"x")
    c.fail_commit(3)

    def tag(meta: ObjectMeta) -> ObjectMeta:
        return dataclasses.replace(meta, tags={"a": "1"})

    await c.store.update_object_meta(BUCKET, "k", None, tag)
    assert (await c.store.head_object(BUCKET, "k")).tags == {"a": "1"}
    c.clear()
    revisions = [[e.revision for e in await d.read_object(BUCKET, "k")] for d in c.local]
    assert revisions[3] == [0] and revisions.count([1]) == 5
    await c.store.healer.scan()
    assert [[e.revision for e in await d.read_object(BUCKET, "k")] for d in c.local] == [[1]] * 6
    assert (await c.store.head_object(BUCKET, "k")).tags == {"a": "1"}


async def test_deleting_a_version_needs_a_write_quorum(cluster: Cluster) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    vid = (await put(c.store, "k", b"keep me")).version_id
    c.fail_commit(0)
    c.fail_commit(1)
    with pytest.raises(ServiceUnavailable):
        await c.store.delete_object(BUCKET, "k", version_id=vid)
    c.clear()
    await settle(c.store)
    # Four drives dropped it: fewer than k list it, so it is gone, never half there.
    with pytest.raises(NoSuchVersion):
        await c.store.head_object(BUCKET, "k", vid)
