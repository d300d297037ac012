"""What a read asks of the drives: a range read only the data shards holding the range
(each still checked against its CRC32C), a GET first only the k drives holding data
shards; and what either does when one of those is missing, damaged or failing.

The set-up is test_erasure_store's: one 4+2 set with 64 KiB chunks, FaultyDrive between
each LocalDrive and its health tracking, healing run when a test asks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.storage import durable
from shoal.storage.erasure.drive import object_dir
from tests.unit.conftest import evicted
from tests.unit.test_erasure_store import (
    BUCKET,
    CHUNK,
    Cluster,
    K,
    N,
    body,
    cluster,
    current,
    flip,
    put,
    read,
    shard_file,
)

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests

SHARD = CHUNK // K  # payload bytes of each data shard of a whole chunk


async def read_range(c: Cluster, key: str, start: int, end: int) -> bytes:
    async with await c.store.open_object(BUCKET, key) as reader:
        return b"".join([bytes(p) async for p in reader.stream(start, end)])


def shard_reads(c: Cluster) -> list[int]:
    return [f.calls["read_shard"] for f in c.faulty]


def thread_hops(c: Cluster, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls each drive hands to its threads from now on, counted as they come."""
    hops = [0] * N
    for p, drive in enumerate(c.local):

        def counting(func: object, *args: object, _p: int = p, _run: object = drive._run) -> object:
            hops[_p] += 1
            return _run(func, *args)  # type: ignore[operator]

        monkeypatch.setattr(drive, "_run", counting)
    return hops


async def test_a_range_in_one_data_shard_reads_only_that_shard(cluster: Cluster) -> None:
    c = cluster
    data = body(3 * CHUNK + 1000, seed=7)
    await put(c.store, "big", data)
    before = shard_reads(c)
    start = CHUNK + SHARD + 10  # chunk 1, inside data shard 1
    assert await read_range(c, "big", start, start + 100) == data[start : start + 101]
    after = shard_reads(c)
    asked = [p for p in range(N) if after[p] != before[p]]
    assert asked == [c.pos("big", 1)]
    assert sum(after) - sum(before) == 1


async def test_a_range_across_a_chunk_boundary_reads_a_shard_of_each(cluster: Cluster) -> None:
    c = cluster
    data = body(3 * CHUNK + 1000, seed=8)
    await put(c.store, "big", data)
    before = sum(shard_reads(c))
    start, end = 2 * CHUNK - 50, 2 * CHUNK + 50  # last data shard of chunk 1, first of 2
    assert await read_range(c, "big", start, end) == data[start : end + 1]
    assert sum(shard_reads(c)) - before == 2
    # The short last chunk: its shards carry ceil(1000 / k) bytes each.
    tail = 3 * CHUNK + 600
    assert await read_range(c, "big", tail, len(data) - 1) == data[tail:]


async def test_a_range_over_a_damaged_shard_decodes_from_others(cluster: Cluster) -> None:
    c = cluster
    data = body(2 * CHUNK, seed=9)
    await put(c.store, "big", data)
    entry = await current(c, "big")
    flip(shard_file(c, "big", entry, 1, 2))  # bit rot in the one shard the range needs
    start = CHUNK + 2 * SHARD + 5
    assert await read_range(c, "big", start, start + 200) == data[start : start + 201]
    # Healing was told (a read that needed parity queues the object).
    assert c.store.healer is not None and c.store.healer.backlog == 1


async def test_a_range_with_a_failing_data_drive_decodes_from_others(cluster: Cluster) -> None:
    c = cluster
    data = body(2 * CHUNK, seed=10)
    await put(c.store, "big", data)
    c.faulty[c.pos("big", 0)].fail("read_shard")
    assert await read_range(c, "big", 5, 5000) == data[5:5001]
    assert await read(c.store, "big") == data


async def test_whole_reads_of_every_size_come_back_intact(cluster: Cluster) -> None:
    c = cluster
    for size in (1, 3, 4, 5, 63, 64, 65, 1000, CHUNK - 1, CHUNK + 1, 2 * CHUNK + 17):
        data = body(size, seed=size)
        await put(c.store, f"k{size}", data)
        assert await read(c.store, f"k{size}") == data
        mid = size // 2
        assert await read_range(c, f"k{size}", mid, size - 1) == data[mid:]
    assert object_dir(BUCKET, "k1")  # the keys live where test_erasure_store expects


async def test_a_small_objects_record_is_handed_to_gets_by_its_write(
    cluster: Cluster,
) -> None:
    """LocalDrive.records.newest keeps small records too (their shard is inline), handed over
    by the write: even the first GET after a PUT opens no record on the k data drives,
    and an overwrite is never served stale."""
    c = cluster
    data_drives = sorted(c.pos("small", j) for j in range(K))
    for seed, size in ((30, 100), (31, 90)):
        await put(c.store, "small", body(size, seed=seed))
        hits = [d.records.newest.hits for d in c.local]
        assert await read(c.store, "small") == body(size, seed=seed)
        assert [p for p in range(N) if c.local[p].records.newest.hits > hits[p]] == data_drives


async def test_a_kept_record_answers_without_a_thread_until_its_file_changes(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalDrive.read_small and read_object answer a GET and a HEAD from the kept
    record on the event loop (no call reaches the drive's threads) while the file is the
    one it kept; a record changed behind the drive's back sends that drive's read to its
    thread again."""
    c = cluster
    data = body(100, seed=40)
    await put(c.store, "loop", data)
    hops = thread_hops(c, monkeypatch)
    assert await read(c.store, "loop") == data
    assert (await c.store.head_object(BUCKET, "loop")).size == len(data)
    assert hops == [0] * N
    p = c.pos("loop", 0)
    record = Path(c.local[p].records.path(BUCKET, "loop")[0])
    stamp = record.stat()
    os.utime(record, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    assert await read(c.store, "loop") == data
    assert hops[p] == 1 and sum(hops) == 1


async def test_a_large_records_entries_are_kept_while_its_file_is_the_same(
    cluster: Cluster,
) -> None:
    """LocalDrive.records.newest: a large object's parsed record serves the next GET, an
    overwrite through the store replaces it, and a record file changed behind the
    drive's back (here: put back as it was) is read again."""
    c = cluster
    first, second = body(60 * CHUNK, seed=20), body(60 * CHUNK + 5, seed=21)
    await put(c.store, "big", first)
    assert await read(c.store, "big") == first
    hits = [d.records.newest.hits for d in c.local]
    assert await read_range(c, "big", 10, 20) == first[10:21]
    data_drives = sorted(c.pos("big", j) for j in range(K))
    assert [p for p in range(N) if c.local[p].records.newest.hits > hits[p]] == data_drives
    p = data_drives[0]
    record = Path(c.local[p].records.path(BUCKET, "big")[0])
    saved = record.read_bytes()
    await put(c.store, "big", second)
    assert await read(c.store, "big") == second
    record.write_bytes(saved)  # drive p's record now names the old version again
    assert await read(c.store, "big") == second  # p disagrees: the others settle it
    assert (await c.local[p].read_small(BUCKET, "big", 0, 0))[0][0].size == len(first)


async def test_cached_shards_are_read_on_the_event_loop_and_the_rest_on_threads(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalDrive.read_shard: a shard the kernel holds in memory is read and checked on
    the event loop, no hand-over to the drive's threads; a damaged one, or one only on
    the disk, goes to the thread, which also tells why."""
    if not durable.compiled():
        pytest.skip("loop reads need the C module (durable.read_cached)")
    c = cluster
    data = body(2 * CHUNK, seed=50)
    await put(c.store, "big", data)
    entry = await current(c, "big")
    hops = thread_hops(c, monkeypatch)
    assert await read(c.store, "big") == data
    assert hops == [0] * N
    flip(shard_file(c, "big", entry, 1, 0))  # cached, but its CRC32C fails
    assert await read(c.store, "big") == data  # decoded from the others
    assert hops[c.pos("big", 0)] == 1 and sum(hops) == 1
    if not evicted(shard_file(c, "big", entry, 0, 1)):
        pytest.skip("this filesystem keeps written files' pages in memory")
    assert await read_range(c, "big", SHARD, 2 * SHARD - 1) == data[SHARD : 2 * SHARD]
    assert hops[c.pos("big", 1)] == 1 and sum(hops) == 2


async def test_a_small_objects_cached_shard_files_are_read_on_the_event_loop(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalDrive.read_small: a small object whose shards are files (not inline) is read
    whole on the event loop, kept record and cached shard alike; a damaged shard sends
    its drive's read to the thread, and the object is still whole."""
    if not durable.compiled():
        pytest.skip("loop reads need the C module (durable.read_cached)")
    c = cluster
    c.store.inline_max = 0  # shard files
    data = body(CHUNK - 3, seed=60)
    await put(c.store, "mid", data)
    entry = await current(c, "mid")
    hops = thread_hops(c, monkeypatch)
    assert await read(c.store, "mid") == data
    assert hops == [0] * N
    flip(shard_file(c, "mid", entry, 0, 2))
    assert await read(c.store, "mid") == data
    assert hops[c.pos("mid", 2)] >= 1


def on_other_nodes(c: Cluster, key: str, *shards: int) -> None:
    """The drives holding these shards of `key` stand for drives of other nodes."""
    for j in shards:
        c.local[c.pos(key, j)].local = False


def asked(c: Cluster, before: list[int]) -> set[int]:
    return {p for p, n in enumerate(shard_reads(c)) if n != before[p]}


async def test_a_read_takes_this_nodes_parity_before_another_nodes_data(cluster: Cluster) -> None:
    c = cluster
    data = body(2 * CHUNK + 77, seed=11)
    await put(c.store, "big", data)
    on_other_nodes(c, "big", 2, 3, 5)  # here: data shards 0 and 1, parity shard 4
    before = shard_reads(c)
    assert await read(c.store, "big") == data
    # k = 4 shards, only one from another node (data shard 2, the first wanted there).
    assert asked(c, before) == {c.pos("big", j) for j in (0, 1, 4, 2)}
    assert c.store.healer is not None and c.store.healer.backlog == 0  # nothing was wrong


async def test_a_range_on_another_node_is_decoded_from_k_shards_here(cluster: Cluster) -> None:
    c = cluster
    data = body(2 * CHUNK, seed=12)
    await put(c.store, "big", data)
    on_other_nodes(c, "big", 2, 3)  # here: data shards 0 and 1, parity 4 and 5
    before = shard_reads(c)
    start = CHUNK + 2 * SHARD + 5  # inside data shard 2 of chunk 1
    assert await read_range(c, "big", start, start + 200) == data[start : start + 201]
    assert asked(c, before) == {c.pos("big", j) for j in (0, 1, 4, 5)}
    # With none of parity here, the other node's data shards are what it reads.
    on_other_nodes(c, "big", 4, 5)
    before = shard_reads(c)
    assert await read(c.store, "big") == data
    assert asked(c, before) == {c.pos("big", j) for j in range(K)}


async def test_a_read_takes_cached_shards_without_asking_their_drives(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_chunk takes a shard its drive has in memory (Drive.cached_shard) at once,
    with no task or timeout, and calls read_shard only for the rest: here a damaged one,
    which read_shard then reports, so the chunk is decoded and healing told."""
    if not durable.compiled():
        pytest.skip("loop reads need the C module (durable.read_cached)")
    c = cluster
    for f in c.faulty:  # the fault wrapper declines, so that its rules see every read
        monkeypatch.setattr(f, "cached_shard", f.inner.cached_shard)
    data = body(2 * CHUNK + 5, seed=70)
    await put(c.store, "big", data)
    entry = await current(c, "big")
    before = shard_reads(c)
    assert await read(c.store, "big") == data
    assert shard_reads(c) == before
    flip(shard_file(c, "big", entry, 1, 0))  # cached, but its CRC32C fails
    assert await read(c.store, "big") == data
    assert c.pos("big", 0) in asked(c, before)
    assert c.store.healer is not None and c.store.healer.backlog == 1
