"""A GET asks the k drives holding data shards first (one read of each: the record with
the inline shards, or with a small object's shard file) and the others only when those
cannot settle it: a drive failing, a version they do not all have, a damaged shard.

The set-up is test_erasure_store's: one 4+2 set with 64 KiB chunks, FaultyDrive between
each LocalDrive and its health tracking, healing run when a test asks.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from shoal.storage.erasure import objects
from shoal.storage.errors import NoSuchKey
from shoal.storage.keys import key_path
from tests.unit.test_erasure_inline import damage
from tests.unit.test_erasure_store import (
    BUCKET,
    CHUNK,
    Cluster,
    K,
    N,
    body,
    cluster,
    current,
    put,
    read,
)

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests


def small_reads(c: Cluster) -> list[int]:
    """Each drive's record reads: asked (read_small), or answered from memory (known)."""
    return [f.calls["read_small"] + f.calls["known"] for f in c.faulty]


def data_positions(c: Cluster, key: str) -> list[int]:
    return sorted(c.pos(key, j) for j in range(K))


async def test_a_get_asks_only_the_data_drives(cluster: Cluster) -> None:
    c = cluster
    for key, size in (("inline", 4096), ("file", 300 * 1024), ("large", 3 * CHUNK)):
        data = body(size, seed=size)
        await put(c.store, key, data)
        before = small_reads(c)
        assert await read(c.store, key) == data
        after = small_reads(c)
        assert [p for p in range(N) if after[p] != before[p]] == data_positions(c, key)


async def test_a_get_of_a_record_the_drives_keep_calls_none_of_them(cluster: Cluster) -> None:
    """The data drives answer from the record they keep parsed: no read_small (a task and
    a timer each); once the record changes on one, that one is asked again."""
    c = cluster
    data = body(4096, seed=5)
    await put(c.store, "kept", data)
    assert await read(c.store, "kept") == data
    asked = [f.calls["read_small"] for f in c.faulty]
    knew = [f.calls["known"] for f in c.faulty]
    assert await read(c.store, "kept") == data
    assert [f.calls["read_small"] for f in c.faulty] == asked
    assert [f.calls["known"] - n for f, n in zip(c.faulty, knew, strict=True)] == [
        int(p in data_positions(c, "kept")) for p in range(N)
    ]
    first = data_positions(c, "kept")[0]
    record = key_path("kept").meta_path(os.path.join(c.local[first].root, "data", BUCKET))
    os.utime(record, ns=(1, 1))  # the file is no longer the one the drive parsed
    assert await read(c.store, "kept") == data
    after = [f.calls["read_small"] - n for f, n in zip(c.faulty, asked, strict=True)]
    assert after == [int(p == first) for p in range(N)]


async def test_a_get_or_head_of_a_missing_key_calls_none_of_the_drives(
    cluster: Cluster,
) -> None:
    """A drive tells it holds no record for a key from two stats (no file there, its
    folder there), without a thread hop; a drive whose folder vanished is asked, and
    the read settles on the others."""
    c = cluster
    await put(c.store, "there", body(4096, seed=1))

    def asked() -> list[int]:
        return [f.calls["read_small"] + f.calls["read_object"] for f in c.faulty]

    before = asked()
    for key in ("missing", "there/below", "a/b/missing"):
        with pytest.raises(NoSuchKey):
            await c.store.open_object(BUCKET, key)
        with pytest.raises(NoSuchKey):
            await c.store.head_object(BUCKET, key)
    assert asked() == before
    gone = c.pos("missing", 0)
    os.rename(c.local[gone].root, c.local[gone].root + ".unmounted")
    with pytest.raises(NoSuchKey):
        await c.store.head_object(BUCKET, "missing")
    assert [a - b for a, b in zip(asked(), before, strict=True)] == [
        int(p == gone) for p in range(N)
    ]


async def test_a_get_with_a_failing_data_drive_asks_the_others(cluster: Cluster) -> None:
    c = cluster
    data = body(4096, seed=11)
    await put(c.store, "k", data)
    c.faulty[c.pos("k", 2)].fail("read_small", times=1)
    before = small_reads(c)
    assert await read(c.store, "k") == data
    after = small_reads(c)
    parity = [c.pos("k", j) for j in range(K, N)]
    assert all(after[p] == before[p] + 1 for p in parity)


async def test_a_version_one_data_drive_missed_is_read_through_the_others(
    cluster: Cluster,
) -> None:
    c = cluster
    old, new = body(4096, seed=12), body(4096, seed=13)
    await put(c.store, "k", old)
    c.fail_commit(c.pos("k", 1))  # the new version reaches 5 of the 6 drives
    await put(c.store, "k", new)
    c.clear()
    assert await read(c.store, "k") == new
    big_old, big_new = body(2 * CHUNK, seed=14), body(2 * CHUNK, seed=15)
    await put(c.store, "big", big_old)
    c.fail_commit(c.pos("big", 0))
    await put(c.store, "big", big_new)
    c.clear()
    assert await read(c.store, "big") == big_new


async def test_a_damaged_inline_data_shard_is_read_from_parity(cluster: Cluster) -> None:
    c = cluster
    data = body(4096, seed=16)
    await put(c.store, "k", data)
    entry = await current(c, "k")
    assert entry.is_inline
    damage(c, c.pos("k", 3), "k")
    assert await read(c.store, "k") == data
    assert c.store.healer is not None and c.store.healer.backlog == 1


async def test_the_version_the_data_drives_settled_on_is_not_picked_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_object takes what the first k answers chose; it picks among all the answers
    itself only when those did not settle the read (and then never reuses the first
    choice)."""
    c = cluster
    picks: list[str] = []
    real = objects.pick

    def counted(*args: Any, **kwargs: Any) -> Any:
        picks.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(objects, "pick", counted)
    for key, size in (("inline", 4096), ("file", 300 * 1024), ("large", 3 * CHUNK)):
        data = body(size, seed=size + 1)
        await put(c.store, key, data)
        assert await read(c.store, key) == data
    assert picks == []
    c.faulty[c.pos("inline", 2)].fail("read_small", times=1)
    assert await read(c.store, "inline") == body(4096, seed=4097)
    await put(c.store, "damaged", body(4096, seed=3))
    damage(c, c.pos("damaged", 0), "damaged")
    assert await read(c.store, "damaged") == body(4096, seed=3)
    assert picks == [f"{BUCKET}/inline", f"{BUCKET}/damaged"]
