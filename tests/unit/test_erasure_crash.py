"""Crashes at every step of CompleteMultipartUpload, and what crashes leave on drives.

A crash is a snapshot of the drive folders taken while the drives named hang (a
FaultyDrive rule) at one step of the completion: what a SIGKILL at that moment leaves.
A new store opened on the snapshot must complete the upload when the client retries
with the same parts (or, once it was completed and remembered, answer as the first time
did, whatever of the upload's removal the crash cut off), and after one healing scan no
file is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage import multipart
from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.erasure.drive import LocalDrive, ShardMissing, object_dir
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.records import PartLayout, VersionRecord
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.errors import NoSuchUpload
from tests.integration.test_erasure_crash import audit
from tests.unit.conftest import chunks, until

pytestmark = pytest.mark.anyio

K, M = 4, 2
N = K + M
CHUNK = 64 * 1024
BUCKET = "bucket"
KEY = "multi/key"
PARTS = [bytes([i]) * (2 * CHUNK + 100 * i) for i in (1, 2)]


async def open_store(paths: list[Path]) -> ErasureStore:
    store = ErasureStore(
        [str(p) for p in paths],
        data_shards=K,
        parity_shards=M,
        chunk_size=CHUNK,
        drive_timeout=30.0,  # a hung drive stays hung while the snapshot is taken
        probe_interval=0.1,
        drive_wrapper=FaultyDrive,
    )
    await store.open()
    return store


def faulty(store: ErasureStore) -> list[FaultyDrive]:
    return [d.inner for d in store.sets[0]]  # type: ignore[misc]


def drive_paths(root: Path) -> list[Path]:
    paths = [root / f"drive{i}" for i in range(N)]
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)
    return paths


def lists_version(drive: Path, key: str) -> bool:
    """Whether the drive's record of `key` names any version."""
    record = drive / ".smartstorage" / (object_dir(BUCKET, key) + ".metadata.json")
    return record.exists()


def has_upload(drive: Path, upload_id: str) -> bool:
    return (drive / ".smartstorage" / "multipart" / BUCKET / upload_id).exists()


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multipart, "MIN_PART_SIZE", CHUNK)


#: (the drive operation the crash comes at, which call of it during the completion,
#: the drives that hang there — the others go on —, and what to wait for on the others
#: before the snapshot; None: they hang too).
STEPS = {
    "before-any-link": ("link", 1, range(N), None),
    "one-part-linked": ("link", 2, range(N), None),
    "all-linked-no-record": ("update_object", 1, range(N), None),
    "record-on-three": ("update_object", 1, range(3), "record"),
    "record-on-five": ("update_object", 1, range(1), "record"),
    "committed-not-remembered": ("write_doc", 1, range(N), None),
    "committed-upload-not-removed": ("delete", 1, range(N), None),
    "upload-removed-from-two": ("delete", 1, range(4), "upload-gone"),
    "upload-removed-from-four": ("delete", 1, range(2), "upload-gone"),
}


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_completion_cut_off_anywhere_completes_when_retried(
    tmp_path: Path, step: str
) -> None:
    op, nth, hanging, wait_for = STEPS[step]
    paths = drive_paths(tmp_path / "before")
    store = await open_store(paths)
    try:
        await store.create_bucket(BUCKET)
        up = await store.create_multipart_upload(BUCKET, KEY, ObjectWrite())
        infos = [
            await store.upload_part(BUCKET, KEY, up.upload_id, n, chunks(data), ObjectWrite())
            for n, data in enumerate(PARTS, start=1)
        ]
        done = [CompletedPart(p.number, p.etag) for p in infos]
        await until(lambda: not store._background)
        rules = [
            faulty(store)[p].fail(
                op, calls=[faulty(store)[p].calls[op] + nth], error=None, delay=math.inf
            )
            for p in hanging
        ]
        task = asyncio.ensure_future(
            store.complete_multipart_upload(BUCKET, KEY, up.upload_id, done, ObjectWrite())
        )
        await until(lambda: all(r.hits for r in rules))
        others = [paths[p] for p in range(N) if p not in hanging]
        if wait_for == "record":
            await until(lambda: all(lists_version(d, KEY) for d in others))
        elif wait_for == "upload-gone":
            await until(lambda: not any(has_upload(d, up.upload_id) for d in others))
        assert not task.done()
        crashed = tmp_path / "after"
        # Files the running drives delete meanwhile may vanish mid-copy: as in a crash.
        with contextlib.suppress(shutil.Error):
            shutil.copytree(tmp_path / "before", crashed, symlinks=True)
        task.cancel()
        with pytest.raises(BaseException):  # noqa: B017 (cancelled, or failed on its way)
            await task
    finally:
        for f in faulty(store):
            f.clear()
        await store.close()

    store = await open_store(drive_paths(crashed))
    try:
        whole = b"".join(PARTS)
        meta = await store.complete_multipart_upload(BUCKET, KEY, up.upload_id, done, ObjectWrite())
        assert meta.size == len(whole)
        async with await store.open_object(BUCKET, KEY) as reader:
            assert b"".join([c async for c in reader.stream()]) == whole
        with pytest.raises(NoSuchUpload):
            await store.get_upload(BUCKET, KEY, up.upload_id)
        await until(lambda: not store._background)
        report = await store.healer.scan()  # after the sweep at start (it waits for it)
        assert report.unrecoverable == [] and report.failures == 0, report
        orphans, leftover, live = audit(drive_paths(crashed))
        assert orphans == [] and leftover == 0, orphans
        assert live > len(whole)
    finally:
        await store.close()


async def test_a_drive_never_lists_a_version_it_lacks_shards_of(tmp_path: Path) -> None:
    """What makes sweeping safe while a write might resume: a drive refuses to name a
    version with a chunk it holds no shard of."""
    store = await open_store(drive_paths(tmp_path))
    try:
        await store.create_bucket(BUCKET)
        data = b"x" * (3 * CHUNK)
        await store.put_object(BUCKET, "k", chunks(data), ObjectWrite())
        entry = await store.current(BUCKET, "k")
        assert entry is not None
        local = store._local[0]
        vdir = Path(local.root) / object_dir(BUCKET, "k") / entry.vid
        other = "1" if entry.vid.endswith("0") else "0"  # never the real id itself
        forged = dataclasses.replace(entry, vid=entry.vid[:-1] + other)
        shutil.copytree(vdir, vdir.with_name(forged.vid))
        shutil.rmtree(vdir.with_name(forged.vid) / "chunk-1")
        with pytest.raises(ShardMissing):
            await local.update_object(BUCKET, "k", add=forged)
        assert [v.vid for v in await local.read_object(BUCKET, "k")] == [entry.vid]
    finally:
        await store.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ErasureStore]:
    s = await open_store(drive_paths(tmp_path))
    await s.create_bucket(BUCKET)
    yield s
    await s.close()


@pytest.mark.slow  # a folder per segment, on six drives
async def test_a_key_nested_a_thousand_deep_lists_heals_and_goes(store: ErasureStore) -> None:
    """1,023 slashes then "z": a folder per segment on every drive; walking, sweeping and
    deleting must not recurse per segment (RecursionError before)."""
    key = "/" * 1023 + "z"
    await store.put_object(BUCKET, key, chunks(b"deep"), ObjectWrite())
    page = await store.list_objects(BUCKET)
    assert [o.key for o in page.objects] == [key]
    page = await store.list_objects(BUCKET, delimiter="/")
    assert page.common_prefixes == ["/"]
    report = await store.healer.scan()
    assert report.objects_scanned == 1 and report.failures == 0, report
    await store.delete_object(BUCKET, key)
    await until(lambda: not store._background)
    await store.healer.scan()
    assert (await store.list_objects(BUCKET)).objects == []
    await store.delete_bucket(BUCKET)
    assert [b.name for b in await store.list_buckets()] == []


@pytest.mark.parametrize("exclusive", [True, False], ids=["single-node", "cluster"])
async def test_uploads_no_quorum_records_are_removed(
    store: ErasureStore, tmp_path: Path, exclusive: bool
) -> None:
    """An abort (or a completion's cleanup) cut off by a crash leaves an upload on too
    few drives to be seen: a scan removes it — at once on a single node, after an hour
    in a cluster (another node may be creating it) — and leaves live uploads alone."""
    store.exclusive_drives = exclusive
    cut = await store.create_multipart_upload(BUCKET, KEY, ObjectWrite())
    await store.upload_part(BUCKET, KEY, cut.upload_id, 1, chunks(PARTS[0]), ObjectWrite())
    live = await store.create_multipart_upload(BUCKET, KEY, ObjectWrite())
    drives = drive_paths(tmp_path)
    for d in drives[:3]:
        shutil.rmtree(d / ".smartstorage" / "multipart" / BUCKET / cut.upload_id)
    with pytest.raises(NoSuchUpload):
        await store.get_upload(BUCKET, KEY, cut.upload_id)
    report = await store.healer.scan()
    assert report.uploads_removed == (1 if exclusive else 0), report
    assert [has_upload(d, cut.upload_id) for d in drives[3:]] == [not exclusive] * 3
    assert all(has_upload(d, live.upload_id) for d in drives)
    assert (await store.get_upload(BUCKET, KEY, live.upload_id)).upload_id == live.upload_id


def _age(path: Path, seconds: float) -> None:
    """Make `path` look last modified `seconds` ago (before this process touched it)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.parametrize("exclusive", [True, False], ids=["single-node", "cluster"])
async def test_the_sweep_takes_what_an_earlier_process_left_and_nothing_else(
    tmp_path: Path, exclusive: bool
) -> None:
    drive = LocalDrive(str(tmp_path), exclusive=exclusive)
    try:
        root = Path(drive.root)
        root.mkdir()
        await drive.make_bucket(BUCKET)
        vdir = object_dir(BUCKET, "k")
        named, dead, fresh = "18e0000000000001aaaaaaaa", "18e0000000000002aaaaaaaa", "18f0"
        entry = VersionRecord(named, parts=(PartLayout(0, 3, CHUNK, ((1,) * N,)),))
        await drive.write_version(
            BUCKET, "k", entry, [(f"{vdir}/{named}/chunk-0/shard-0", b"abc", 1)]
        )
        for vid in (dead, fresh):
            await drive.write_shard(f"{vdir}/{vid}/chunk-0/shard-0", b"abc", 1)
        stale_tmp = root / vdir / named / "chunk-0" / "shard-0.dat.0badf00d.tmp"
        stale_tmp.write_bytes(b"cut off")
        udir = root / "multipart" / BUCKET / "upload1"
        (udir / "part-1.p2" / "chunk-0").mkdir(parents=True)
        (udir / "part-1.p1" / "chunk-0").mkdir(parents=True)
        (udir / "part-1.json").write_text('{"v": "p2"}')
        (udir / "upload.json").write_text("{}")
        bare = root / "multipart" / BUCKET / "upload2"
        (bare / "part-1.p1").mkdir(parents=True)
        junk = root / "tmp" / "half-a-record.tmp"
        junk.write_bytes(b"x")
        # A killed process's temp folder, with a record it was writing.
        gone = root / "tmp" / "w-1-0badf00d"
        gone.mkdir()
        (gone / "0badf00d.tmp").write_bytes(b"cut off")
        for path in (root / vdir / dead, stale_tmp, udir / "part-1.p1", udir / "part-1.p2", bare):
            _age(path, 30)
        for path in (udir / "part-1.json", udir / "upload.json", junk, gone):
            _age(path, 30)
        # This process's own temp folder stays however old it looks.
        (own,) = (p for p in (root / "tmp").glob("w-*") if p != gone)
        _age(own, 7200)
        assert await drive.sweep("", 3600) == 2
        assert not junk.exists() and not gone.exists() and own.is_dir()
        assert len(list((root / "tmp").glob("opened-*"))) == 1
        removed = await drive.sweep(BUCKET, 3600)
        left = {p.name for p in (root / vdir).iterdir()}
        assert left == {named, fresh}  # the running process's own write stays
        assert not stale_tmp.exists()
        assert (udir / "part-1.json").exists() and (udir / "upload.json").exists()
        assert (udir / "part-1.p2").exists()
        # An upload's part folders have no commit check: in a cluster only age takes them.
        assert (udir / "part-1.p1").exists() != exclusive
        assert bare.exists() != exclusive
        assert removed == (4 if exclusive else 2)
        assert [v.vid for v in await drive.read_object(BUCKET, "k")] == [named]
    finally:
        drive.close()
