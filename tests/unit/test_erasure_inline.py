"""Small objects whose shards live in their version records (records.py: inline): a PUT
writes no shard file, a GET reads them from the records, and healing, versioning,
metadata changes and overwrites in both directions know where they are.

The set-up is test_erasure_store's: one 4+2 set with 64 KiB chunks, FaultyDrive between
each LocalDrive and its health tracking, healing run when a test asks.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path

import google_crc32c
import pytest

from shoal.storage.backend import ObjectMeta
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.errors import ServiceUnavailable
from tests.unit.test_erasure_store import (
    BUCKET,
    CHUNK,
    Cluster,
    N,
    body,
    cluster,
    current,
    dirs_on,
    put,
    read,
    settle,
    versions_on,
)

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests


def record_file(c: Cluster, p: int, key: str) -> Path:
    return Path(c.local[p].records.path(BUCKET, key)[0])


async def copies(c: Cluster, key: str, version_id: str | None = None) -> list[VersionRecord]:
    """Each drive's copy of the key's current version (or S3 version `version_id`)."""
    out = []
    for d in c.local:
        entries = await d.read_object(BUCKET, key, version_id)
        wanted = [e for e in entries if version_id is None or e.version_id == version_id]
        out.append(wanted[0])
    return out


async def assert_intact(c: Cluster, key: str, version_id: str | None = None) -> None:
    """Every drive's copy holds its own shard, as its CRC32C says."""
    _, rot = c.store.set_for(BUCKET, key)
    for p, e in enumerate(await copies(c, key, version_id)):
        assert e.inline is not None, f"drive {p} has no inline shard"
        assert google_crc32c.value(e.inline) == e.parts[0].crcs[0][(p - rot) % N]


def damage(c: Cluster, p: int, key: str) -> None:
    """Flip a byte of drive `p`'s inline shard of the key's newest entry, leaving the
    record valid JSON and the shard valid base64 (so only its CRC32C can tell)."""
    path = record_file(c, p, key)
    stored = json.loads(path.read_bytes())
    raw = bytearray(base64.b64decode(stored["versions"][0]["inline"]))
    raw[len(raw) // 2] ^= 0xFF
    stored["versions"][0]["inline"] = base64.b64encode(bytes(raw)).decode()
    path.write_bytes(json.dumps(stored).encode())


async def test_a_small_put_writes_its_shards_into_the_records(cluster: Cluster) -> None:
    c = cluster
    data = body(4096, seed=1)
    await put(c.store, "k", data)
    assert await dirs_on(c, "k") == [[]] * N  # no version folder, no shard file
    await assert_intact(c, "k")
    assert await read(c.store, "k") == data
    assert (await c.store.head_object(BUCKET, "k")).size == 4096
    # Empty and at the bound: inline too; one byte past it: shard files.
    await put(c.store, "empty", b"")
    assert await read(c.store, "empty") == b""
    c.store.inline_max = 1000
    await put(c.store, "edge", body(1000, seed=2))
    await put(c.store, "past", body(1001, seed=3))
    assert await dirs_on(c, "edge") == [[]] * N
    assert [len(d) for d in await dirs_on(c, "past")] == [1] * N
    assert await read(c.store, "past") == body(1001, seed=3)


async def test_overwrites_between_inline_and_shard_files(cluster: Cluster) -> None:
    c = cluster
    small, large, again = body(3000, seed=1), body(2 * CHUNK + 5, seed=2), body(10, seed=3)
    await put(c.store, "k", small)
    await put(c.store, "k", large)
    await settle(c.store)
    assert await read(c.store, "k") == large
    assert await versions_on(c, "k") == [[(await current(c, "k")).vid]] * N
    assert [len(d) for d in await dirs_on(c, "k")] == [1] * N
    await put(c.store, "k", again)
    await settle(c.store)
    assert await read(c.store, "k") == again
    await assert_intact(c, "k")
    assert await dirs_on(c, "k") == [[]] * N  # the large version's folder retired


async def test_a_damaged_inline_shard_is_rebuilt_from_parity(cluster: Cluster) -> None:
    c = cluster
    data = body(5000, seed=4)
    await put(c.store, "k", data)
    bad = [c.pos("k", 0), c.pos("k", 4)]
    for p in bad:
        damage(c, p, "k")
    assert await read(c.store, "k") == data  # from the other four
    assert c.store.healer.backlog == 1
    report = await c.store.healer.scan()
    assert report.shards_corrupt == report.shards_healed == report.quarantined == 2, report
    assert report.checksums_verified == 1 and not report.unrecoverable
    # The rotten bytes are kept aside, as a rotten shard file is.
    healed = await copies(c, "k")
    for p in bad:
        kept = list((Path(c.local[p].root) / "quarantine").rglob("shard-*.dat"))
        assert len(kept) == 1
        rotten, fixed = kept[0].read_bytes(), healed[p].inline
        assert fixed is not None and len(rotten) == len(fixed) and rotten != fixed
    await assert_intact(c, "k")
    # Three damaged of six: fewer than k intact, no guess.
    for j in (0, 1, 2):
        damage(c, c.pos("k", j), "k")
    with pytest.raises(ServiceUnavailable, match="Not enough intact shards"):
        await read(c.store, "k")


async def test_undecodable_base64_counts_as_a_damaged_shard(cluster: Cluster) -> None:
    c = cluster
    data = body(700, seed=5)
    await put(c.store, "k", data)
    p = c.pos("k", 1)
    path = record_file(c, p, "k")
    stored = json.loads(path.read_bytes())
    stored["versions"][0]["inline"] = "!!not base64!!"
    path.write_bytes(json.dumps(stored).encode())
    assert await read(c.store, "k") == data
    report = await c.store.healer.scan()
    assert report.shards_corrupt == report.shards_healed == 1, report
    await assert_intact(c, "k")


async def test_heal_a_drive_whose_record_lost_an_inline_object(cluster: Cluster) -> None:
    c = cluster
    data = body(4096, seed=6)
    await put(c.store, "k", data)
    lost = c.pos("k", 2)
    os.unlink(record_file(c, lost, "k"))
    assert await read(c.store, "k") == data
    report = await c.store.healer.scan()
    assert report.records_healed == report.shards_healed == 1, report
    assert report.shards_missing == 1
    await assert_intact(c, "k")
    # The healed copy is good for reading: with two other drives silent it is needed.
    for j in (0, 1):
        c.fail_record_reads(c.pos("k", j))
    assert await read(c.store, "k") == data


async def test_versioned_inline_objects(cluster: Cluster) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    datas = [body(100, seed=1), body(16 * 1024, seed=2), body(16 * 1024 + 1, seed=3)]
    ids = [(await put(c.store, "k", d)).version_id for d in datas]
    # A bucket with versioning keeps only objects up to an eighth of the bound inline.
    assert [len(d) for d in await dirs_on(c, "k")] == [1] * N
    for vid in ids[:2]:
        await assert_intact(c, "k", vid)

    # A metadata change goes to every drive without a shard: each keeps its own.
    def tag(meta: ObjectMeta) -> ObjectMeta:
        return dataclasses.replace(meta, tags={"a": "b"})

    await c.store.update_object_meta(BUCKET, "k", ids[0], tag)
    await assert_intact(c, "k", ids[0])
    for vid, data in zip(ids, datas, strict=True):
        async with await c.store.open_object(BUCKET, "k", vid) as reader:
            assert reader.meta.tags == ({"a": "b"} if vid == ids[0] else {})
            assert b"".join([bytes(x) async for x in reader.stream()]) == data
    # A drive that missed the change gets it from healing, its shard untouched.
    p = c.pos("k", 3)
    c.faulty[p].fail("update_object", times=1)
    await c.store.update_object_meta(BUCKET, "k", ids[1], tag)
    report = await c.store.healer.scan()
    assert report.records_healed == 1 and report.shards_healed == 0, report
    await assert_intact(c, "k", ids[1])
    # Deleting an inline version by id.
    await c.store.delete_object(BUCKET, "k", version_id=ids[0], guard=None)
    await settle(c.store)
    assert [e.version_id for e in await c.local[0].read_object(BUCKET, "k")] == ids[:0:-1]


async def test_an_overwritten_inline_entry_goes_with_the_next_write(cluster: Cluster) -> None:
    """storage.erasure.commits: the entry a small overwrite replaced stays, hidden,
    until the key's next write drops it in the same record write (no retirement pass
    between them); a write that fails and is withdrawn still leaves the newest
    version readable, and one that some drive missed is retired as before."""
    c = cluster
    await put(c.store, "k", body(100, seed=1))
    first = (await current(c, "k")).vid
    await put(c.store, "k", body(200, seed=2))
    await settle(c.store)
    second = (await current(c, "k")).vid
    assert await versions_on(c, "k") == [[second, first]] * N  # first: hidden, not retired
    assert await read(c.store, "k") == body(200, seed=2)
    assert [v.version_id for v in (await c.store.list_object_versions(BUCKET)).versions] == ["null"]
    await put(c.store, "k", body(300, seed=3))
    await settle(c.store)
    third = (await current(c, "k")).vid
    assert await versions_on(c, "k") == [[third, second]] * N  # first went with it
    for p in range(3):  # too few drives take the next write: it is withdrawn
        c.fail_commit(p)
    with pytest.raises(ServiceUnavailable):
        await put(c.store, "k", body(400, seed=4))
    c.clear()
    await settle(c.store)
    assert await read(c.store, "k") == body(300, seed=3)
    c.fail_commit(0)  # a drive misses a write: the others retire what it replaced
    await put(c.store, "k", body(500, seed=5))
    c.clear()
    await settle(c.store)
    fifth = (await current(c, "k")).vid
    assert await read(c.store, "k") == body(500, seed=5)
    assert [v[:1] for v in (await versions_on(c, "k"))[1:]] == [[fifth]] * (N - 1)
    assert all(len(v) == 1 for v in (await versions_on(c, "k"))[1:])
