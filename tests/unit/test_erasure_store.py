"""ErasureStore under drive faults: quorum writes and reads, degraded reads, healing,
deletes a drive missed, version pinning, conditional writes, multipart, bucket records,
a drive going offline and coming back, and listings merged across drives.

Six drive folders form one 4+2 erasure set with 64 KiB chunks. Every fault is injected
with FaultyDrive between a LocalDrive and its health tracking, so each branch is hit
deterministically. The healer's background tasks are stopped: objects a read queues for
healing stay in its backlog, and healing runs when a test asks for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

from shoal.storage import multipart
from shoal.storage.backend import BucketInfo, CompletedPart, ObjectWrite
from shoal.storage.erasure import shards
from shoal.storage.erasure.drive import LocalDrive, object_dir, shard_path
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.erasure.versions import chunk_refs
from shoal.storage.errors import (
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    ServiceUnavailable,
)
from shoal.storage.multipart import multipart_etag
from tests.unit.conftest import chunks, until

pytestmark = pytest.mark.anyio

K, M = 4, 2
N = K + M
CHUNK = 64 * 1024
BUCKET = "bucket"


@dataclass
class Cluster:
    """An open ErasureStore and, by erasure-set position, the layers below it."""

    store: ErasureStore
    tracked: list[HealthTrackedDrive]
    faulty: list[FaultyDrive]
    local: list[LocalDrive]

    def pos(self, key: str, shard: int, bucket: str = BUCKET) -> int:
        """The set position of the drive holding shard `shard` of `key`."""
        s, rot = self.store.set_for(bucket, key)
        assert s == 0
        return (shard + rot) % N

    def clear(self) -> None:
        for f in self.faulty:
            f.clear()

    async def recover(self) -> None:
        """Drop every fault; wait for drives the faults took offline to be probed back."""
        self.clear()
        await until(lambda: all(d.online for d in self.tracked))

    def fail_commit(self, p: int) -> None:
        """Fail the record commit on drive `p`: update_object, and write_version (a small
        object's shards and record in one call)."""
        self.faulty[p].fail("update_object")
        self.faulty[p].fail("write_version")

    def fail_record_reads(self, p: int) -> None:
        """Fail reading object records on drive `p`: read_object (HEAD, writes, healing)
        and read_small (GET: the record plus a small object's shard)."""
        self.faulty[p].fail("read_object")
        self.faulty[p].fail("read_small")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    paths = [tmp_path / f"drive{i}" for i in range(N)]
    for p in paths:
        p.mkdir()
    store = ErasureStore(
        [str(p) for p in paths],
        data_shards=K,
        parity_shards=M,
        chunk_size=CHUNK,
        drive_timeout=2.0,  # generous: fsync on a loaded CI machine can be slow
        probe_interval=0.1,
        drive_wrapper=FaultyDrive,
    )
    await store.open()
    await store.healer.stop()  # healing runs when a test asks; queued objects stay queued
    assert len(store.sets) == 1
    tracked = list(store.sets[0])
    faulty = [d.inner for d in tracked]
    assert all(isinstance(f, FaultyDrive) for f in faulty)
    local = [f.inner for f in faulty]
    await store.create_bucket(BUCKET)
    c = Cluster(store, tracked, faulty, local)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.clear()
        await store.close()


# ---------------------------------------------------------------- helpers


def body(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def put(store: ErasureStore, key: str, data: bytes, write: ObjectWrite | None = None) -> Any:
    """PUT `data` in pieces that do not line up with chunks."""
    pieces = [data[i : i + 25_000] for i in range(0, len(data), 25_000)]
    return await store.put_object(BUCKET, key, chunks(*pieces), write or ObjectWrite())


async def read(store: ErasureStore, key: str, bucket: str = BUCKET) -> bytes:
    async with await store.open_object(bucket, key) as reader:
        return b"".join([c async for c in reader.stream()])


async def settle(store: ErasureStore) -> None:
    """Wait for the store's background work (cleanup of old or failed versions)."""
    while store._background:
        await asyncio.wait(set(store._background), timeout=5)


async def current(c: Cluster, key: str, bucket: str = BUCKET) -> VersionRecord:
    entry = await c.store.current(bucket, key)
    assert entry is not None
    return entry


async def versions_on(c: Cluster, key: str, bucket: str = BUCKET) -> list[list[str]]:
    """Each drive's version ids for `key` (bypassing faults and health)."""
    return [[e.vid for e in await d.read_object(bucket, key)] for d in c.local]


async def dirs_on(c: Cluster, key: str, bucket: str = BUCKET) -> list[list[str]]:
    """Each drive's version folders for `key`."""
    return [await d.list_dir(object_dir(bucket, key)) for d in c.local]


async def check_shards(c: Cluster, key: str, bucket: str = BUCKET) -> None:
    """Every drive holds the record of the current version and nothing older, and every
    shard of every chunk with the size and CRC32C the record says."""
    entry = await current(c, key, bucket)
    assert await versions_on(c, key, bucket) == [[entry.vid]] * N
    _, rot = c.store.set_for(bucket, key)
    for ref in chunk_refs(f"{object_dir(bucket, key)}/{entry.vid}", entry.parts):
        for j in range(N):
            drive = c.local[(j + rot) % N]
            path = shard_path(ref.base, ref.index, j)
            info = await drive.shard_info(path)
            assert info is not None, f"{path} missing on drive {(j + rot) % N}"
            assert info["crc32c"] == ref.crcs[j]
            assert info["size"] == info["actual_size"]
            data = await drive.read_shard(path, ref.crcs[j])
            assert google_crc32c.value(data) == ref.crcs[j]


def shard_file(c: Cluster, key: str, entry: dict[str, Any], chunk: int, shard: int) -> Path:
    base = f"{object_dir(BUCKET, key)}/{entry.vid}"
    local = c.local[c.pos(key, shard)]
    return Path(local.root) / (shard_path(base, chunk, shard) + ".dat")


def flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def quarantined(c: Cluster, p: int) -> list[Path]:
    return sorted((Path(c.local[p].root) / "quarantine").rglob("*.dat"))


async def keys(store: ErasureStore, bucket: str = BUCKET, **kw: Any) -> list[str]:
    page = await store.list_objects(bucket, **kw)
    assert not page.truncated
    return [o.key for o in page.objects]


# ---------------------------------------------------------------- writes


SIX_CHUNKS = 5 * CHUNK + 1234


async def test_local_drives_are_this_nodes_own_that_are_online(cluster: Cluster) -> None:
    """The healer's drives: the tracked ones wrapping the drives this store opened (here
    through a FaultyDrive), less those offline."""
    assert cluster.store.local_drives() == cluster.tracked
    cluster.tracked[2].mark_offline("test")
    assert cluster.store.local_drives() == [d for i, d in enumerate(cluster.tracked) if i != 2]


async def test_a_put_reads_its_body_no_further_than_the_chunk_the_writer_takes_next(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory: a PUT holds one chunk besides what the writer is encoding and writing.
    A reader task feeding a queue ran two chunks ahead of the writer (three more
    chunk copies at once, 12 MiB at 4 MiB chunks)."""
    data = body(8 * CHUNK + 7, seed=9)
    taken = 0
    ahead: list[int] = []
    add = shards.ChunkWriter.add

    async def counting(writer: shards.ChunkWriter, chunk: bytes) -> None:
        nonlocal taken
        await add(writer, chunk)
        taken += 1

    async def pieces() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 25_000):
            ahead.append(offset // CHUNK - taken)
            yield data[offset : offset + 25_000]

    monkeypatch.setattr(shards.ChunkWriter, "add", counting)
    await cluster.store.put_object(BUCKET, "big", pieces(), ObjectWrite())
    assert taken == 9 and max(ahead) == 0
    assert await read(cluster.store, "big") == data


@pytest.mark.parametrize(
    ("shard", "nth"),
    [
        pytest.param(0, None, id="data-drive-every-write"),
        pytest.param(1, 1, id="data-drive-first-write"),
        pytest.param(5, 3, id="parity-drive-third-chunk"),
        pytest.param(2, 6, id="data-drive-last-chunk"),
    ],
)
async def test_put_survives_a_failing_shard_write(
    cluster: Cluster, shard: int, nth: int | None
) -> None:
    """The drive of `shard` fails its `nth` shard write of the object (None: the rule is
    on the operation, every write fails). It drops out of the rest of the object (a chunk
    already in flight may still reach it) and gets no record; five drives remain, k+1."""
    store, key, data = cluster.store, "obj", body(SIX_CHUNKS)
    nchunks = 6
    p = cluster.pos(key, shard)
    f = cluster.faulty[p]
    rule = f.fail("write_shard", calls=None if nth is None else [f.calls["write_shard"] + nth])
    meta = await put(store, key, data)
    assert meta.etag == hashlib.md5(data).hexdigest() and meta.size == len(data)
    assert rule.hits >= 1
    entry = await current(cluster, key)
    holders = await versions_on(cluster, key)
    assert holders[p] == [] and holders[:p] + holders[p + 1 :] == [[entry.vid]] * (N - 1)
    base = f"{object_dir(BUCKET, key)}/{entry.vid}"
    missing = {
        i
        for i in range(nchunks)
        if await cluster.local[p].shard_info(shard_path(base, i, shard)) is None
    }
    first = 0 if nth is None else nth - 1
    assert first in missing and missing <= set(range(first, nchunks))

    # Readable byte for byte while the fault is still there; a read that needed parity
    # queues the object for healing.
    assert await read(store, key) == data
    async with await store.open_object(BUCKET, key) as reader:
        got = b"".join([x async for x in reader.stream(CHUNK - 7, 3 * CHUNK + 11)])
        assert got == data[CHUNK - 7 : 3 * CHUNK + 12]
    assert store.healer.backlog == (1 if shard < K else 0)

    await cluster.recover()
    report = await store.healer.scan()
    assert report.objects_scanned == 1
    assert report.shards_checked == nchunks * N
    assert report.shards_missing == report.shards_healed == len(missing)
    assert report.records_healed == 1
    assert report.shards_corrupt == report.quarantined == 0
    assert not report.unrecoverable and not report.errors
    await check_shards(cluster, key)
    assert await read(store, key) == data
    again = await store.healer.scan()
    assert again.shards_missing == again.shards_healed == again.records_healed == 0


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({0: None, 4: None}, id="two-drives"),
        pytest.param({2: 2, 3: 5}, id="two-drives-mid-object"),
        pytest.param({0: None, 3: 1, 5: None}, id="three-drives"),
    ],
)
async def test_put_without_k_plus_one_drives_is_refused_and_cleaned_up(
    cluster: Cluster, faults: dict[int, int | None]
) -> None:
    """{shard: the drive's first failing write_shard of the object (None: every one)}.
    Two drives down leave k = 4: readable, but not the k+1 a write needs."""
    store, key = cluster.store, "obj"
    old = body(CHUNK + 1, seed=3)
    before = await put(store, key, old)
    await settle(store)
    v1 = (await current(cluster, key)).vid
    for j, nth in faults.items():
        f = cluster.faulty[cluster.pos(key, j)]
        f.fail(
            "write_shard", calls=None if nth is None else range(f.calls["write_shard"] + nth, 10**6)
        )
    need = f"{N - len(faults)} of 6 succeeded, 5 needed"
    with pytest.raises(ServiceUnavailable, match=need):
        await put(store, key, body(6 * CHUNK, seed=4))
    with pytest.raises(ServiceUnavailable):
        await put(store, "fresh", body(2 * CHUNK, seed=5))
    # Three failed writes in a row take a drive offline until its probe (a read of
    # format.json, which works) brings it back; with three such drives only three of
    # the k = 4 a read needs would answer meanwhile.
    await until(lambda: all(d.online for d in cluster.tracked))
    assert await store.head_object(BUCKET, key) == before
    assert await read(store, key) == old
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, "fresh")
    assert await keys(store) == [key]
    assert await versions_on(cluster, key) == [[v1]] * N
    await settle(store)
    # The shards that made it to the other drives are gone again.
    assert await dirs_on(cluster, key) == [[v1]] * N
    assert await dirs_on(cluster, "fresh") == [[]] * N
    assert await versions_on(cluster, "fresh") == [[]] * N
    await cluster.recover()  # the faults may have taken drives offline
    await check_shards(cluster, key)
    # An empty body needs no shards: only the record on k+1 drives.
    for j in faults:
        cluster.faulty[cluster.pos(key, j)].fail("write_shard")
    meta = await put(store, "empty", b"")
    assert meta.size == 0 and await read(store, "empty") == b""


async def test_a_refused_put_cleans_up_after_its_shard_writes_end(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard write still running on a drive's thread when the PUT is refused ends
    before the cleanup: a cancelled one wrote on unheard and re-created its shard after
    the cleanup had removed the version (CI saw the leftover folder under load)."""
    store, key = cluster.store, "obj"
    for j in (0, 4):
        cluster.faulty[cluster.pos(key, j)].fail("write_shard")
    slow = cluster.local[cluster.pos(key, 1)]
    entered, gate, written = threading.Event(), threading.Event(), threading.Event()
    write_shard, delete = slow._write_shard, slow.delete

    def held(path: str, data: bytes, crc: int) -> None:
        hold = "/chunk-1/" in path
        if hold:
            entered.set()
            gate.wait(timeout=1.0)  # the cleanup's delete opens it (or 1 s pass)
        write_shard(path, data, crc)
        if hold:
            written.set()

    async def deleting(path: str) -> None:
        await delete(path)
        gate.set()
        await asyncio.to_thread(written.wait, 5.0)

    monkeypatch.setattr(slow, "_write_shard", held)
    monkeypatch.setattr(slow, "delete", deleting)
    with pytest.raises(ServiceUnavailable, match="4 of 6 succeeded, 5 needed"):
        await put(store, key, body(6 * CHUNK, seed=4))
    assert entered.is_set()
    await settle(store)
    assert written.is_set()
    assert await dirs_on(cluster, key) == [[]] * N


@pytest.mark.parametrize(
    ("shard_faults", "commit_faults"),
    [
        pytest.param((0, 5), (2,), id="two-shard-drives-and-one-record"),
        pytest.param((4,), (0,), id="one-shard-drive-and-one-record"),
        pytest.param((), (1, 3), id="two-records"),
        pytest.param((), (0, 2, 5), id="three-records"),
    ],
)
async def test_failed_record_commit_keeps_the_previous_version(
    cluster: Cluster, shard_faults: tuple[int, ...], commit_faults: tuple[int, ...]
) -> None:
    """Fewer than k+1 drives with every shard and the record: ServiceUnavailable, the
    new entry is withdrawn where it was added, its shards are cleaned up."""
    store, key = cluster.store, "dir/obj"
    old, new = body(2 * CHUNK + 3, seed=1), body(3 * CHUNK + 5, seed=2)
    before = await put(store, key, old)
    await settle(store)
    v1 = (await current(cluster, key)).vid
    for j in shard_faults:
        cluster.faulty[cluster.pos(key, j)].fail("write_shard")
    for j in commit_faults:
        cluster.faulty[cluster.pos(key, j)].fail("update_object")
    with pytest.raises(ServiceUnavailable, match="Not enough drives to write"):
        await put(store, key, new)
    # No partial version anywhere: HEAD, GET and both listings see the old one...
    assert await store.head_object(BUCKET, key) == before
    assert await read(store, key) == old
    page = await store.list_objects(BUCKET)
    assert [(o.key, o.etag, o.size) for o in page.objects] == [(key, before.etag, len(old))]
    assert (await store.list_objects(BUCKET, delimiter="/")).common_prefixes == ["dir/"]
    # ... and no record on any drive mentions the new one, even before cleanup.
    assert await versions_on(cluster, key) == [[v1]] * N
    await settle(store)
    assert await dirs_on(cluster, key) == [[v1]] * N
    await cluster.recover()
    await check_shards(cluster, key)
    assert await read(store, key) == old


async def test_small_objects_survive_faults(cluster: Cluster) -> None:
    """A body that fits one chunk is written with write_version (shards and record in
    one call per drive) and read with read_small (record plus shard): the same quorum
    rules apply. (Shard files: test_inline_objects_survive_faults has inline shards.)"""
    store, key = cluster.store, "small"
    store.inline_max = 0
    old, new = body(1000, seed=40), body(CHUNK - 1, seed=41)
    await put(store, key, old)
    await settle(store)
    v1 = (await current(cluster, key)).vid
    lost = cluster.pos(key, 1)
    cluster.faulty[lost].fail("write_version")
    await put(store, key, new)
    await settle(store)
    holders = await versions_on(cluster, key)
    v2 = (await current(cluster, key)).vid
    assert holders[lost] == [] and holders.count([v2]) == N - 1 and v1 < v2
    assert await read(store, key) == new
    assert store.healer.backlog == 1  # shard 1 was rebuilt from parity
    for j in (0, 3):
        cluster.faulty[cluster.pos(key, j)].fail("write_version")
    with pytest.raises(ServiceUnavailable, match="3 of 6 succeeded, 5 needed"):
        await put(store, key, b"refused")
    await settle(store)
    assert await read(store, key) == new
    assert await dirs_on(cluster, key) == [[] if p == lost else [v2] for p in range(N)]
    await cluster.recover()
    report = await store.healer.scan()
    assert report.records_healed == report.shards_healed == 1
    await check_shards(cluster, key)

    # Rotten shards: one or two are rebuilt from parity, three make it unreadable.
    entry = await current(cluster, key)
    for count, j in enumerate((0, 2, 3), start=1):
        flip(shard_file(cluster, key, entry, 0, j))
        if count < 3:
            assert await read(store, key) == new
            continue
        with pytest.raises(ServiceUnavailable, match="Not enough intact shards"):
            await read(store, key)
    # Record reads failing on three drives: no answer rather than a guess.
    for j in (0, 1, 2):
        cluster.fail_record_reads(cluster.pos(key, j))
    with pytest.raises(ServiceUnavailable, match="3 of 6 answered"):
        await store.open_object(BUCKET, key)


# ---------------------------------------------------------------- reads


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("mode", ["failing", "corrupt", "slow"])
async def test_degraded_reads_are_byte_exact(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, mode: str, count: int
) -> None:
    """Data shards 0 (and 2) failing, rotten or slow: parity fills in, the bytes are
    exact, and an object that needed reconstructing is queued for healing."""
    store, key = cluster.store, "obj"
    data = body(SIX_CHUNKS, seed=6)
    await put(store, key, data)
    entry = await current(cluster, key)
    bad = [0, 2][:count]
    monkeypatch.setattr(shards, "HEDGE_SECONDS", 0.05)
    for j in bad:
        f = cluster.faulty[cluster.pos(key, j)]
        if mode == "failing":
            f.fail("read_shard")
        elif mode == "slow":
            f.fail("read_shard", error=None, delay=1.0)
        else:
            for chunk in range(6):
                flip(shard_file(cluster, key, entry, chunk, j))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await read(store, key) == data
    if mode == "slow":
        # Hedged after 0.05 s per chunk instead of waiting 1 s for the slow drives.
        assert loop.time() - started < 2.0
    async with await store.open_object(BUCKET, key) as reader:
        got = b"".join([x async for x in reader.stream(2 * CHUNK + 1, 4 * CHUNK)])
    assert got == data[2 * CHUNK + 1 : 4 * CHUNK + 1]
    # A slow shard is intact: there is nothing for healing to do.
    assert store.healer.backlog == (0 if mode == "slow" else 1)

    await cluster.recover()
    await until(lambda: all(d.online for d in cluster.tracked))
    if mode != "corrupt":
        report = await store.healer.scan()
        assert report.shards_missing == report.shards_corrupt == report.shards_healed == 0
        await check_shards(cluster, key)
        return
    # The queued heal quarantines the rotten shards and rebuilds them.
    store.healer.start()
    await until(lambda: store.healer.queued_total.shards_healed == 6 * count)
    healed = store.healer.queued_total
    assert healed.shards_corrupt == healed.quarantined == 6 * count
    assert healed.shards_missing == 0 and healed.records_healed == 0
    for j in bad:
        assert len(quarantined(cluster, cluster.pos(key, j))) == 6
    await check_shards(cluster, key)
    assert await read(store, key) == data
    report = await store.healer.scan()
    assert report.shards_corrupt == report.shards_healed == 0


async def test_heal_says_why_it_could_not_do_something(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """What healing tried and could not do is counted, with its reason, and logged
    (it was swallowed before: the report said nothing)."""
    store, key = cluster.store, "why"
    store.inline_max = 0  # a shard file to quarantine
    await put(store, key, body(100, seed=1))
    p = cluster.pos(key, 3)
    cluster.faulty[p].fail("update_object", times=1)  # the old version's cleanup
    await put(store, key, body(200, seed=2))
    await settle(store)
    assert [len(v) for v in await versions_on(cluster, key)].count(2) == 1
    entry = await current(cluster, key)
    flip(shard_file(cluster, key, entry, 0, 1))
    cluster.faulty[cluster.pos(key, 1)].fail("quarantine", times=1)
    cluster.faulty[p].fail("update_object", times=1)  # and healing's retry of it
    report = await store.healer.scan()
    assert report.failures == 2, report
    assert report.shards_corrupt == report.shards_healed == 1  # rebuilt all the same
    assert any(e.startswith("quarantining ") and "injected I/O error" in e for e in report.errors)
    assert any(e.startswith(f"retiring versions of {BUCKET}/{key}") for e in report.errors)
    assert sum("healing: " in r.getMessage() for r in caplog.records) == 2
    assert store.healer.status()["last_scan"]["failures"] == 2
    report = await store.healer.scan()  # and the next scan finishes the job
    assert report.failures == 0 and report.versions_retired == 1, report
    await check_shards(cluster, key)


@pytest.mark.parametrize("mode", ["failing", "corrupt"])
async def test_reads_with_three_bad_drives_fail_instead_of_lying(
    cluster: Cluster, mode: str
) -> None:
    store, key = cluster.store, "obj"
    data = body(4 * CHUNK, seed=7)
    await put(store, key, data)
    entry = await current(cluster, key)
    for j in (0, 1, 4):
        if mode == "failing":
            cluster.faulty[cluster.pos(key, j)].fail("read_shard")
        else:
            flip(shard_file(cluster, key, entry, 1, j))  # chunk 1 only
    got = b""
    with pytest.raises(ServiceUnavailable, match="Not enough intact shards"):
        async with await store.open_object(BUCKET, key) as reader:
            async for piece in reader.stream():
                got += piece
    # Whatever was sent before the failure is the object's true beginning.
    assert data.startswith(got)
    assert len(got) == (0 if mode == "failing" else CHUNK)
    if mode == "corrupt":
        report = await store.healer.scan()
        assert report.shards_corrupt == 3
        assert report.shards_healed == 0
        assert report.unrecoverable and key in report.unrecoverable[0]


async def test_head_needs_k_answering_drives(cluster: Cluster) -> None:
    store, key = cluster.store, "obj"
    data = body(100, seed=8)
    meta = await put(store, key, data)
    for p in (0, 3):
        cluster.fail_record_reads(p)
    assert await store.head_object(BUCKET, key) == meta
    assert await read(store, key) == data
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, "absent")
    with pytest.raises(NoSuchKey):
        await store.open_object(BUCKET, "absent")
    cluster.fail_record_reads(5)
    # Three drives silent: the key may or may not exist; never NoSuchKey.
    for name in (key, "absent"):
        with pytest.raises(ServiceUnavailable, match="3 of 6 answered, 4 needed"):
            await store.head_object(BUCKET, name)
        with pytest.raises(ServiceUnavailable):
            await store.open_object(BUCKET, name)
    with pytest.raises(ServiceUnavailable):
        await store.delete_object(BUCKET, key)
    await cluster.recover()
    assert await store.head_object(BUCKET, key) == meta


async def test_head_cannot_tell_when_silent_drives_could_hold_the_newest_version(
    cluster: Cluster,
) -> None:
    """Written to five drives; two of those silent, the sixth lacks it: three copies
    seen, and the two silent drives could make it four, so no answer either way."""
    store, key = cluster.store, "obj"
    old = await put(store, key, b"old")
    await settle(store)
    cluster.fail_commit(cluster.pos(key, 0))
    await put(store, key, b"new")
    await settle(store)
    await cluster.recover()
    cluster.fail_record_reads(cluster.pos(key, 1))
    cluster.fail_record_reads(cluster.pos(key, 2))
    with pytest.raises(ServiceUnavailable):
        await store.head_object(BUCKET, key)
    with pytest.raises(ServiceUnavailable):
        await store.open_object(BUCKET, key)
    await cluster.recover()
    assert (await store.head_object(BUCKET, key)).etag != old.etag
    assert await read(store, key) == b"new"


# ---------------------------------------------------------------- deletes


async def test_a_delete_one_drive_missed_never_resurfaces(cluster: Cluster) -> None:
    store, key = cluster.store, "obj"
    data = body(2 * CHUNK, seed=9)
    await put(store, key, data)
    await settle(store)
    v1 = (await current(cluster, key)).vid
    stale = cluster.pos(key, 0)
    cluster.fail_commit(stale)
    await store.delete_object(BUCKET, key)
    await settle(store)
    holders = await versions_on(cluster, key)
    assert holders[stale] == [v1]
    marker = holders[(stale + 1) % N]
    # The cleanup could not reach the stale drive, so the delete marker stays: dropping
    # it would leave v1 as the newest version on some drives.
    assert len(marker) == 1 and marker[0] > v1
    assert [h for p, h in enumerate(holders) if p != stale] == [marker] * (N - 1)

    for faults in ([], [1], [3]):
        await cluster.recover()
        for p in faults:
            cluster.fail_record_reads((stale + p) % N)
        with pytest.raises(NoSuchKey):
            await store.head_object(BUCKET, key)
        with pytest.raises(NoSuchKey):
            await store.open_object(BUCKET, key)
        assert await keys(store) == []
        assert await keys(store, delimiter="/") == []
    await cluster.recover()
    await store.delete_object(BUCKET, key)  # idempotent

    # Healing still cannot drop the marker while the stale drive refuses updates...
    cluster.faulty[stale].fail("update_object")
    report = await store.healer.scan()
    assert report.versions_retired == 0
    assert (await versions_on(cluster, key))[stale] == [v1]
    # ... and retires both once it can.
    await cluster.recover()
    report = await store.healer.scan()
    assert report.versions_retired == N
    assert await versions_on(cluster, key) == [[]] * N
    assert await dirs_on(cluster, key) == [[]] * N
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, key)
    await put(store, key, b"again")
    assert await read(store, key) == b"again"


async def test_a_partly_cleaned_up_delete_marker_never_resurrects(cluster: Cluster) -> None:
    """Regression: the cleanup after a delete dropped the marker and the old version in
    one update per drive. One drive missed the delete (old version only); the cleanup
    then succeeded on two drives and failed on three, leaving the old version listed by
    four drives and the marker by three: the deleted object was back."""
    store, key = cluster.store, "obj"
    await put(store, key, b"deleted")
    await settle(store)
    stale = cluster.pos(key, 0)
    cluster.faulty[stale].fail("update_object")
    for p in (1, 2, 3):
        f = cluster.faulty[(stale + p) % N]
        f.fail("update_object", calls=[f.calls["update_object"] + 2])  # the cleanup
    await store.delete_object(BUCKET, key)
    await settle(store)
    await cluster.recover()
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, key)
    assert await keys(store) == []
    # Healing, with one drive failing its cleanup, must not resurrect it either.
    cluster.faulty[(stale + 2) % N].fail("update_object")
    await store.healer.scan()
    await cluster.recover()
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, key)
    assert await keys(store) == []
    await store.healer.scan()
    assert await versions_on(cluster, key) == [[]] * N


async def test_a_delete_needs_a_write_quorum(cluster: Cluster) -> None:
    store, key = cluster.store, "obj"
    await put(store, key, b"keep")
    for j in (1, 4):
        cluster.faulty[cluster.pos(key, j)].fail("update_object")
    with pytest.raises(ServiceUnavailable):
        await store.delete_object(BUCKET, key)
    await cluster.recover()
    assert await read(store, key) == b"keep"
    assert await keys(store) == [key]


# ---------------------------------------------------------------- versions in use


async def test_a_reader_keeps_its_version_through_overwrite_and_delete(
    cluster: Cluster,
) -> None:
    store, key = cluster.store, "obj"
    old, new = body(4 * CHUNK + 9, seed=10), body(3 * CHUNK, seed=11)
    await put(store, key, old)
    await settle(store)
    v1 = (await current(cluster, key)).vid
    reader = await store.open_object(BUCKET, key)
    cluster.faulty[cluster.pos(key, 3)].fail("write_shard")  # and a fault on the way
    meta = await put(store, key, new)
    await asyncio.sleep(0.2)  # the cleanup waits for the reader
    assert await store.head_object(BUCKET, key) == meta
    assert await read(store, key) == new
    assert all(v1 in d for d in await dirs_on(cluster, key))
    assert b"".join([x async for x in reader.stream()]) == old
    await reader.close()
    await settle(store)
    v2 = (await current(cluster, key)).vid
    assert all(d == [v2] for d in await dirs_on(cluster, key) if d)

    await cluster.recover()
    reader = await store.open_object(BUCKET, key)
    await store.delete_object(BUCKET, key)
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, key)
    assert b"".join([x async for x in reader.stream()]) == new
    await reader.close()
    await settle(store)
    assert await dirs_on(cluster, key) == [[]] * N


# ---------------------------------------------------------------- conditional writes


async def test_conditional_writes_with_faults(cluster: Cluster) -> None:
    store, key = cluster.store, "obj"
    first = await put(store, key, b"one")
    await settle(store)
    for p in (0, 1):
        cluster.faulty[p].fail("read_object")
    with pytest.raises(PreconditionFailed):
        await put(store, key, b"two", ObjectWrite(if_none_match=True))
    with pytest.raises(PreconditionFailed):
        await put(store, key, b"two", ObjectWrite(if_match="0" * 32))
    cluster.faulty[2].fail("read_object")
    # The current version cannot be told: neither condition may be taken as met.
    with pytest.raises(ServiceUnavailable):
        await put(store, key, b"two", ObjectWrite(if_none_match=True))
    with pytest.raises(ServiceUnavailable):
        await put(store, key, b"two", ObjectWrite(if_match=first.etag))
    await cluster.recover()
    assert await read(store, key) == b"one"

    cluster.faulty[cluster.pos(key, 2)].fail("write_shard")
    second = await put(store, key, body(CHUNK + 1, seed=12), ObjectWrite(if_match=first.etag))
    with pytest.raises(PreconditionFailed):
        await put(store, key, b"three", ObjectWrite(if_match=f'"{first.etag}"'))
    third = await put(store, key, b"three", ObjectWrite(if_match=f'"{second.etag}"'))
    assert (await store.head_object(BUCKET, key)).etag == third.etag
    with pytest.raises(NoSuchKey):
        await put(store, "absent", b"x", ObjectWrite(if_match="*"))
    created = await put(store, "new", b"x", ObjectWrite(if_none_match=True))
    with pytest.raises(PreconditionFailed):
        await put(store, "new", b"y", ObjectWrite(if_none_match=True))
    await store.delete_object(BUCKET, "new")
    await put(store, "new", b"z", ObjectWrite(if_none_match=True))
    assert created.etag != (await store.head_object(BUCKET, "new")).etag
    await settle(store)
    # Refused writes left nothing behind.
    v = (await current(cluster, key)).vid
    assert all(d == [v] for d in await dirs_on(cluster, key) if d)
    assert await dirs_on(cluster, "absent") == [[]] * N


# ---------------------------------------------------------------- multipart


async def test_multipart_with_faults(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipart, "MIN_PART_SIZE", CHUNK)
    store, key = cluster.store, "big"
    parts = [body(2 * CHUNK + 100, seed=20), body(CHUNK, seed=21), body(777, seed=22)]
    up = await store.create_multipart_upload(BUCKET, key, ObjectWrite(content_type="a/b"))
    uid = up.upload_id
    # Part 1 loses a drive's shards, part 2 a drive's part record.
    cluster.faulty[cluster.pos(key, 0)].fail("write_shard")
    p1 = await store.upload_part(BUCKET, key, uid, 1, chunks(parts[0]), ObjectWrite())
    await cluster.recover()
    cluster.faulty[cluster.pos(key, 5)].fail("write_doc")
    p2 = await store.upload_part(BUCKET, key, uid, 2, chunks(parts[1]), ObjectWrite())
    await cluster.recover()
    for j in (1, 2, 3):
        cluster.faulty[cluster.pos(key, j)].fail("write_shard")
    with pytest.raises(ServiceUnavailable):
        await store.upload_part(BUCKET, key, uid, 3, chunks(parts[2]), ObjectWrite())
    await cluster.recover()
    p3 = await store.upload_part(BUCKET, key, uid, 3, chunks(parts[2]), ObjectWrite())
    await settle(store)
    listed = await store.list_parts(BUCKET, key, uid)
    assert [(p.number, p.etag) for p in listed.parts] == [
        (1, p1.etag),
        (2, p2.etag),
        (3, p3.etag),
    ]
    done = [CompletedPart(p.number, p.etag) for p in (p1, p2, p3)]

    # Completion whose record reaches only three drives: refused, the parts untouched.
    for j in (0, 2, 4):
        cluster.faulty[cluster.pos(key, j)].fail("update_object")
    with pytest.raises(ServiceUnavailable):
        await store.complete_multipart_upload(BUCKET, key, uid, done, ObjectWrite())
    await cluster.recover()
    with pytest.raises(NoSuchKey):
        await store.head_object(BUCKET, key)
    assert len((await store.list_parts(BUCKET, key, uid)).parts) == 3
    udir = f"multipart/{BUCKET}/{uid}"
    for p, local in enumerate(cluster.local):
        names = await local.list_dir(udir)
        has_part1 = p != cluster.pos(key, 0)
        assert sum(n.startswith("part-1.") and not n.endswith(".json") for n in names) == (
            1 if has_part1 else 0
        )
        assert sum(n.startswith(("part-2.", "part-3.")) and "json" not in n for n in names) == 2

    # Completed with the parts read back (for a digest) past a failing drive.
    cluster.faulty[cluster.pos(key, 1)].fail("read_shard", times=2)  # stays online
    sha = hashlib.sha256()
    meta = await store.complete_multipart_upload(
        BUCKET, key, uid, done, ObjectWrite(digesters=[sha])
    )
    whole = b"".join(parts)
    assert sha.hexdigest() == hashlib.sha256(whole).hexdigest()
    assert meta.etag == multipart_etag([p1, p2, p3]) and meta.size == len(whole)
    assert meta.content_type == "a/b"
    assert await read(store, key) == whole
    await settle(store)
    with pytest.raises(NoSuchUpload):
        await store.get_upload(BUCKET, key, uid)
    await cluster.recover()
    report = await store.healer.scan()
    assert report.shards_missing == report.shards_healed == 3  # part 1's chunks, one drive
    await check_shards(cluster, key)
    assert await read(store, key) == whole


async def cut_off_completion(cluster: Cluster, key: str) -> tuple[str, Any, list[CompletedPart]]:
    """A completed upload whose removal reached only two drives (a crash cut it off):
    a quorum of drives still holds the upload, two no longer hold its parts."""
    store = cluster.store
    uid = (await store.create_multipart_upload(BUCKET, key, ObjectWrite())).upload_id
    part = await store.upload_part(BUCKET, key, uid, 1, chunks(body(CHUNK + 5, 3)), ObjectWrite())
    done = [CompletedPart(1, part.etag)]
    for p in range(2, N):
        cluster.faulty[p].fail("delete", times=1)
    meta = await store.complete_multipart_upload(BUCKET, key, uid, done, ObjectWrite())
    await cluster.recover()
    udir = f"multipart/{BUCKET}/{uid}"
    assert [bool(await d.list_dir(udir)) for d in cluster.local] == [False] * 2 + [True] * K
    assert await store.get_upload(BUCKET, key, uid)  # a quorum still records it
    return uid, meta, done


async def test_a_completion_whose_removal_was_cut_off_repeats_its_answer(
    cluster: Cluster,
) -> None:
    store, key = cluster.store, "cut-off"
    uid, meta, done = await cut_off_completion(cluster, key)
    again = await store.complete_multipart_upload(BUCKET, key, uid, done, ObjectWrite())
    assert (again.etag, again.size, again.version_id) == (meta.etag, meta.size, meta.version_id)
    with pytest.raises(NoSuchUpload):  # the repeat finished the removal
        await store.get_upload(BUCKET, key, uid)
    assert not any([await d.list_dir(f"multipart/{BUCKET}/{uid}") for d in cluster.local])
    assert await read(store, key) == body(CHUNK + 5, 3)


async def test_healing_removes_what_a_cut_off_completion_left(cluster: Cluster) -> None:
    store, key = cluster.store, "cut-off"
    uid, _, _ = await cut_off_completion(cluster, key)
    report = await store.healer.scan()
    assert report.uploads_removed == 1, report
    assert (await store.list_multipart_uploads(BUCKET)).uploads == []
    assert not any([await d.list_dir(f"multipart/{BUCKET}/{uid}") for d in cluster.local])
    assert await read(store, key) == body(CHUNK + 5, 3)


# ---------------------------------------------------------------- buckets


async def test_bucket_record_quorums(cluster: Cluster) -> None:
    """Bucket records live on all six drives: written to 4, read from 3. (head_bucket
    answers from memory for a moment; each read here goes to the drives.)"""
    store = cluster.store

    async def read_bucket(bucket: str) -> BucketInfo:
        store.buckets.forget(bucket)
        return await store.head_bucket(bucket)

    assert store.doc_read_quorum == 3
    for p in (0, 2, 4):
        cluster.faulty[p].fail("write_doc")
    with pytest.raises(ServiceUnavailable, match="3 of 6 succeeded, 4 needed"):
        await store.create_bucket("refused")
    await cluster.recover()
    for p in (1, 5):
        cluster.faulty[p].fail("write_doc")
    await store.create_bucket("four")
    await store.put_bucket_policy("four", '{"Version": "2012-10-17"}')
    await cluster.recover()
    assert (await read_bucket("four")).name == "four"
    assert "four" in [b.name for b in await store.list_buckets()]

    # A record on all six drives is read from any three...
    for p in (0, 2, 4):
        cluster.faulty[p].fail("read_doc")
    assert (await read_bucket(BUCKET)).name == BUCKET
    cluster.faulty[1].fail("read_doc")
    with pytest.raises(ServiceUnavailable, match="2 of 6 answered, 3 needed"):
        await read_bucket(BUCKET)
    await cluster.recover()
    # ... and "four" (on drives 0, 2, 3, 4) from three of its four.
    for p in (0, 1, 5):
        cluster.faulty[p].fail("read_doc")
    assert (await read_bucket("four")).name == "four"
    assert await store.get_bucket_policy("four") == '{"Version": "2012-10-17"}'
    await cluster.recover()
    # One copy seen and three drives silent: it may or may not exist.
    for p in (0, 2, 3):
        cluster.faulty[p].fail("read_doc")
    with pytest.raises(ServiceUnavailable):
        await read_bucket("four")
    await cluster.recover()
    # Healing copies the bucket record and its policy to the drives that lack them.
    report = await store.healer.scan()
    assert report.documents_healed >= 4
    for p in (0, 2, 3):
        cluster.faulty[p].fail("read_doc")
    assert (await read_bucket("four")).name == "four"
    assert await store.get_bucket_policy("four") == '{"Version": "2012-10-17"}'
    with pytest.raises(NoSuchBucket):
        await read_bucket("never")


async def test_a_failed_create_bucket_leaves_no_bucket(cluster: Cluster) -> None:
    store = cluster.store
    for p in (0, 2, 4):
        cluster.faulty[p].fail("write_doc")
    with pytest.raises(ServiceUnavailable):
        await store.create_bucket("refused")
    await cluster.recover()
    with pytest.raises(NoSuchBucket):
        await store.head_bucket("refused")


# ---------------------------------------------------------------- drive health


async def test_a_drive_goes_offline_and_comes_back(cluster: Cluster) -> None:
    store, key = cluster.store, "obj"
    old = body(2 * CHUNK, seed=30)
    await put(store, key, old)
    await settle(store)
    p = cluster.pos(key, 1)
    drive, faulty = cluster.tracked[p], cluster.faulty[p]
    faulty.fail()  # every operation, format.json included: the probe fails too
    for _ in range(3):
        assert await store.head_object(BUCKET, key)  # each call one fault on the drive
    assert not drive.online
    assert drive.status()["state"] == "offline"
    assert "3 consecutive errors" in (drive.status()["offline_reason"] or "")

    # Five drives left: still k+1, so writes go on without it.
    writes = faulty.calls["write_shard"]
    new, other = body(3 * CHUNK + 1, seed=31), body(CHUNK + 2, seed=32)
    await put(store, key, new)
    await put(store, "during", other)
    await settle(store)
    assert faulty.calls["write_shard"] == writes  # offline: not even tried
    assert await read(store, key) == new
    await asyncio.sleep(0.3)  # several probes, all failing
    assert not drive.online and drive.status()["last_probe"]

    faulty.clear()
    await until(lambda: drive.online)
    assert drive.status()["state"] == "online"
    assert (await versions_on(cluster, key))[p] != (await versions_on(cluster, key))[(p + 1) % N]
    report = await store.healer.scan()
    assert report.records_healed == 2
    assert report.shards_missing == report.shards_healed == 4 + 2  # its shard of each chunk
    assert report.versions_retired >= 1  # its copy of the overwritten version
    for name, data in ((key, new), ("during", other)):
        await check_shards(cluster, name)
        assert await read(store, name) == data


# ---------------------------------------------------------------- listing


async def walk(
    store: ErasureStore, *, max_keys: int, delimiter: str = "", prefix: str = ""
) -> tuple[list[str], list[str]]:
    """Every key and common prefix, page by page."""
    found: list[str] = []
    prefixes: list[str] = []
    after = ""
    for _ in range(100):
        page = await store.list_objects(
            BUCKET, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        assert len(page.objects) + len(page.common_prefixes) <= max_keys
        found += [o.key for o in page.objects]
        prefixes += page.common_prefixes
        if not page.truncated:
            return found, prefixes
        assert page.last is not None
        after = page.last
    raise AssertionError("listing does not end")


async def test_listing_merges_keys_across_drives(cluster: Cluster) -> None:
    store = cluster.store
    store.inline_max = 0  # lose_shards fails shard writes: objects with shard files
    written: dict[str, bytes] = {}

    async def write(names: list[str], fault: Callable[[], object] | None = None) -> None:
        if fault is not None:
            fault()
        for i, name in enumerate(names):
            # Small objects (one round trip per drive) and chunked ones alike.
            written[name] = name.encode() * (3 if i % 2 else CHUNK)
            await put(store, name, written[name])
        await cluster.recover()

    def lose_shards(p: int) -> None:
        cluster.faulty[p].fail("write_shard")
        cluster.faulty[p].fail("write_version")

    await write(["a", "b/1", "c", "d/x/1"], lambda: lose_shards(0))
    await write(["b/2", "d/y", "e"], lambda: cluster.fail_commit(1))
    await write(["b/3", "f/1", "g", "zz"])
    cluster.fail_commit(2)  # misses the delete: keeps "zz"
    await store.delete_object(BUCKET, "zz")
    del written["zz"]
    await settle(store)
    await cluster.recover()

    expected = sorted(written)
    page = await store.list_objects(BUCKET)
    assert [o.key for o in page.objects] == expected and not page.truncated
    assert [o.size for o in page.objects] == [len(written[k]) for k in expected]
    assert [o.etag for o in page.objects] == [hashlib.md5(written[k]).hexdigest() for k in expected]
    top = (["a", "c", "e", "g"], ["b/", "d/", "f/"])
    under_d = (["d/y"], ["d/x/"])
    for max_keys in (1, 2, 3, 1000):
        assert await walk(store, max_keys=max_keys) == (expected, [])
        assert await walk(store, max_keys=max_keys, delimiter="/") == top
        assert await walk(store, max_keys=max_keys, delimiter="/", prefix="d/") == under_d
        assert await walk(store, max_keys=max_keys, prefix="b/") == (["b/1", "b/2", "b/3"], [])

    # One drive not answering changes nothing.
    cluster.faulty[3].fail("list_objects")
    assert await walk(store, max_keys=2) == (expected, [])
    assert await walk(store, max_keys=2, delimiter="/") == top
    await cluster.recover()
    # Two: a key drive 0 lacks is seen on three drives, and the two silent ones could
    # make it four; no answer rather than a listing without it.
    for p in (4, 5):
        cluster.faulty[p].fail("list_objects")
    with pytest.raises(ServiceUnavailable, match="2 of 6 drives did not answer"):
        await store.list_objects(BUCKET)
    cluster.faulty[3].fail("list_objects")
    with pytest.raises(ServiceUnavailable, match="bucket bucket: 3 of 6 answered, 4 needed"):
        await store.list_objects(BUCKET, prefix="g")
    await cluster.recover()
    # Once healed, two silent drives change nothing either.
    report = await store.healer.scan()
    assert report.records_healed == 7
    for p in (3, 4):
        cluster.faulty[p].fail("list_objects")
    assert await walk(store, max_keys=3) == (expected, [])
    assert await walk(store, max_keys=3, delimiter="/") == top


async def test_listing_never_drops_a_prefix_silently(cluster: Cluster) -> None:
    """Regression: a common prefix whose keys were all written while drive 0 failed is
    on five drives; with two of those silent it was left out of the listing without an
    error, while a key in the same state makes the listing ServiceUnavailable."""
    store = cluster.store
    cluster.fail_commit(0)  # a small object's shard and record
    await put(store, "p/1", b"x")
    await cluster.recover()
    await put(store, "q", b"y")
    cluster.faulty[5].fail("list_objects")
    assert await walk(store, max_keys=10, delimiter="/") == (["q"], ["p/"])
    cluster.faulty[4].fail("list_objects")
    with pytest.raises(ServiceUnavailable):
        await store.list_objects(BUCKET, delimiter="/")
    with pytest.raises(ServiceUnavailable):
        await store.list_objects(BUCKET)
    cluster.faulty[3].fail("list_objects")
    with pytest.raises(ServiceUnavailable, match="3 of 6 answered"):
        await store.list_objects(BUCKET, prefix="q")
