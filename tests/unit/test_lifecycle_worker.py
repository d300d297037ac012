"""storage/lifecycle/worker.py over a real FileStore, its clock moved on by days: what it
expires, removes and aborts, and — as important — what it leaves alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shoal.storage.backend import ObjectWrite, Retention
from shoal.storage.filestore import FileStore
from shoal.storage.lifecycle import rules
from shoal.storage.lifecycle.pace import Pace
from shoal.storage.lifecycle.progress import Progress, ProgressStore
from shoal.storage.lifecycle.rules import (
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
)
from shoal.storage.lifecycle.worker import (
    DELETE_MARKER_REMOVED,
    DOCUMENT,
    EXPIRED,
    NONCURRENT_REMOVED,
    UPLOAD_ABORTED,
    LifecycleWorker,
    Settings,
)
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


class Clock:
    """Real time moved on by whole days."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def days(self, n: float) -> None:
        self.offset += timedelta(days=n)


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FileStore]:
    store = FileStore(tmp_path / "data")
    await store.open()
    yield store
    await store.close()


def worker_for(store: FileStore, clock: Clock, **settings: float) -> LifecycleWorker:
    seen: list[str] = []
    worker = LifecycleWorker(
        store,
        Settings(operations_per_second=100000, page_size=3, **settings),  # type: ignore[arg-type]
        observer=seen.append,
        clock=clock,
    )
    worker.seen = seen  # type: ignore[attr-defined]
    return worker


async def configure(store: FileStore, bucket: str, *rule_list: Rule) -> None:
    config = rules.to_json(Configuration(tuple(rule_list)))
    await store.put_bucket_document(bucket, DOCUMENT, config)


async def put(store: FileStore, bucket: str, key: str, body: bytes = b"x", **write: object) -> str:
    meta = await store.put_object(bucket, key, chunks(body), ObjectWrite(**write))  # type: ignore[arg-type]
    return meta.version_id


async def keys(store: FileStore, bucket: str) -> list[str]:
    return [o.key for o in (await store.list_objects(bucket)).objects]


async def test_unversioned_expiry_by_prefix_tag_and_size(fs: FileStore) -> None:
    await fs.create_bucket("plain")
    await configure(
        fs,
        "plain",
        Rule("logs", True, Filter(prefix="logs/", form="prefix"), Expiration(days=1)),
        Rule("tagged", True, Filter(tags=(("t", "old"),), form="tag"), Expiration(days=1)),
        Rule("big", True, Filter(size_greater_than=10, form="gt"), Expiration(days=1)),
        Rule("off", False, Filter(), Expiration(days=1)),
    )
    for key in ("logs/1", "logs/2", "logs/3", "logs/4", "keep/1"):
        await put(fs, "plain", key)
    await put(fs, "plain", "tagged", tags={"t": "old"})
    await put(fs, "plain", "other-tag", tags={"t": "new"})
    await put(fs, "plain", "large", b"x" * 11)
    clock = Clock()
    worker = worker_for(fs, clock)
    await worker.run_once()
    assert len(await keys(fs, "plain")) == 8  # nothing is a day old yet
    clock.days(2)
    await worker.run_once()
    assert await keys(fs, "plain") == ["keep/1", "other-tag"]
    assert worker.done[EXPIRED] == 6 and worker.seen.count(EXPIRED) == 6  # type: ignore[attr-defined]


async def test_versioned_bucket(fs: FileStore) -> None:
    await fs.create_bucket("ver")
    await fs.update_bucket("ver", versioning="Enabled")
    await configure(
        fs,
        "ver",
        Rule("cur", True, Filter(prefix="cur", form="prefix"), Expiration(days=3)),
        Rule("nc", True, Filter(prefix="nc", form="prefix"), noncurrent=NoncurrentExpiration(1, 2)),
        Rule(
            "dm",
            True,
            Filter(prefix="dm", form="prefix"),
            Expiration(expired_object_delete_marker=True),
        ),
    )
    clock = Clock()
    worker = worker_for(fs, clock)
    cur = await put(fs, "ver", "cur")
    nc = [await put(fs, "ver", "nc", str(i).encode()) for i in range(5)]
    await put(fs, "ver", "dm")
    await fs.delete_object("ver", "dm")  # a marker over one version: not expired yet
    lone = await fs.delete_object("ver", "dm-alone")  # a marker with nothing under it
    clock.days(2)
    await worker.run_once()
    listed = (await fs.list_object_versions("ver")).versions
    by_key: dict[str, list[str]] = {}
    for v in listed:
        by_key.setdefault(v.key, []).append(v.version_id)
    # The current version is 2 days old (Days = 3): kept.
    assert by_key["cur"] == [cur]
    # nc: newest is current, two newest noncurrent kept, the two oldest removed.
    assert by_key["nc"] == [nc[4], nc[3], nc[2]]
    # dm: the marker still has a version under it; dm-alone's lone marker is gone.
    assert len(by_key["dm"]) == 2 and "dm-alone" not in by_key
    assert lone.version_id not in {v.version_id for v in listed}
    assert worker.done == {NONCURRENT_REMOVED: 2, DELETE_MARKER_REMOVED: 1}
    clock.days(2)
    await worker.run_once()
    after = [v for v in (await fs.list_object_versions("ver")).versions if v.key == "cur"]
    # Expiring a current version in a versioned bucket adds a delete marker.
    assert [v.delete_marker for v in after] == [True, False] and after[1].version_id == cur
    assert worker.done[EXPIRED] == 1


async def test_noncurrent_days_wait_their_turn(fs: FileStore) -> None:
    await fs.create_bucket("since")
    await fs.update_bucket("since", versioning="Enabled")
    await configure(fs, "since", Rule("nc", True, Filter(), noncurrent=NoncurrentExpiration(5)))
    clock = Clock()
    worker = worker_for(fs, clock)
    first = await put(fs, "since", "k")
    second = await put(fs, "since", "k")
    clock.days(4)  # noncurrent for 4 days: due after 5, at the next midnight
    await worker.run_once()
    ids = [v.version_id for v in (await fs.list_object_versions("since")).versions]
    assert ids == [second, first]
    clock.days(2)
    await worker.run_once()
    ids = [v.version_id for v in (await fs.list_object_versions("since")).versions]
    assert ids == [second]


async def test_object_lock_is_never_overridden(fs: FileStore) -> None:
    await fs.create_bucket("locked", object_lock=True)
    await configure(fs, "locked", Rule("nc", True, Filter(), noncurrent=NoncurrentExpiration(1)))
    far = datetime.now(UTC) + timedelta(days=365)
    held = await put(fs, "locked", "held", legal_hold=True)
    kept = await put(fs, "locked", "kept", retention=Retention("COMPLIANCE", far))
    gone = await put(fs, "locked", "gone")
    for key in ("held", "kept", "gone"):
        await put(fs, "locked", key)
    clock = Clock()
    clock.days(5)
    worker = worker_for(fs, clock)
    await worker.run_once()
    left = {v.version_id for v in (await fs.list_object_versions("locked")).versions}
    assert held in left and kept in left and gone not in left
    assert worker.done == {NONCURRENT_REMOVED: 1}


async def test_uploads_aborted_by_prefix(fs: FileStore) -> None:
    await fs.create_bucket("mp")
    await configure(fs, "mp", Rule("u", True, Filter(prefix="tmp/", form="prefix"), abort_days=1))
    stale = await fs.create_multipart_upload("mp", "tmp/a", ObjectWrite())
    other = await fs.create_multipart_upload("mp", "keep/a", ObjectWrite())
    clock = Clock()
    worker = worker_for(fs, clock)
    await worker.run_once()
    assert len((await fs.list_multipart_uploads("mp")).uploads) == 2
    clock.days(2)
    await worker.run_once()
    left = [u.upload_id for u in (await fs.list_multipart_uploads("mp")).uploads]
    assert left == [other.upload_id] and stale.upload_id not in left
    assert worker.done == {UPLOAD_ABORTED: 1}


async def test_a_pass_resumes_where_it_stopped(fs: FileStore) -> None:
    await fs.create_bucket("resume")
    await configure(fs, "resume", Rule("all", True, Filter(), Expiration(days=1)))
    for key in "abcdef":
        await put(fs, "resume", key)
    # As a pass cut short after "c" left it:
    await ProgressStore(fs).save("resume", Progress("objects", "c"))
    clock = Clock()
    clock.days(2)
    worker = worker_for(fs, clock)
    await worker.run_bucket("resume")
    assert await keys(fs, "resume") == ["a", "b", "c"]
    assert await ProgressStore(fs).load("resume") is None  # done: progress cleared
    await worker.run_bucket("resume")  # the next pass starts from the beginning
    assert await keys(fs, "resume") == []


async def test_long_pass_saves_progress(fs: FileStore) -> None:
    await fs.create_bucket("saves")
    await configure(fs, "saves", Rule("none-yet", True, Filter(), Expiration(days=100)))
    for key in "abcdefgh":
        await put(fs, "saves", key)
    saved: list[Progress] = []
    store = ProgressStore(fs)
    worker = worker_for(fs, Clock(), checkpoint_seconds=0)
    original = worker.progress.save

    async def save(bucket: str, progress: Progress) -> None:
        saved.append(progress)
        await original(bucket, progress)

    worker.progress.save = save  # type: ignore[method-assign]
    await worker.run_bucket("saves")
    assert [p.key for p in saved] == list("abcdefgh")
    assert await store.load("saves") is None
    assert len(await keys(fs, "saves")) == 8


async def test_buckets_without_rules_or_with_rules_removed(fs: FileStore) -> None:
    await fs.create_bucket("norules")
    await put(fs, "norules", "k")
    clock = Clock()
    clock.days(1000)
    worker = worker_for(fs, clock)
    await worker.run_once()
    assert await keys(fs, "norules") == ["k"] and worker.passes == 1


async def test_a_pass_stops_when_its_rules_go(fs: FileStore) -> None:
    """Rules removed (or replaced) while a pass is under way: it stops at the next page
    instead of deleting on under rules that no longer exist."""
    await fs.create_bucket("stops")
    await configure(fs, "stops", Rule("all", True, Filter(), Expiration(days=1)))
    for i in range(12):
        await put(fs, "stops", f"k{i:02d}")
    clock = Clock()
    clock.days(2)
    worker = worker_for(fs, clock)
    waits = 0

    async def sleep(seconds: float) -> None:
        # The pace's wait, with the real FileStore: the rules go during the first page.
        nonlocal waits
        waits += 1
        if waits == 2:
            await fs.delete_bucket_document("stops", DOCUMENT)

    worker.pace = Pace(1, clock=lambda: 0.0, sleep=sleep)
    await worker.run_bucket("stops")
    left = await keys(fs, "stops")
    assert 0 < worker.done[EXPIRED] <= 3 and len(left) == 12 - worker.done[EXPIRED]
    assert await ProgressStore(fs).load("stops") is None
