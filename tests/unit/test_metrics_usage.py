"""Per-bucket usage (storage/usage.py) as the real stores report it: the start-up count,
puts, overwrites, deletes, multipart uploads and bucket deletion, on the FileStore and
on an erasure-coded store; the listing cursor's rule for changes during the count; and
the recount that takes in changes made elsewhere (other cluster nodes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.filestore import FileStore
from shoal.storage.records import now
from shoal.storage.usage import BucketUsage, count_existing, recount
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["file", "erasure"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An open store with no buckets, whose usage is not tracked yet."""
    if request.param == "file":
        backend: Any = FileStore(tmp_path / "data")
    else:
        paths = []
        for i in range(6):
            (tmp_path / f"drive{i}").mkdir()
            paths.append(str(tmp_path / f"drive{i}"))
        backend = ErasureStore(paths, data_shards=4, parity_shards=2, chunk_size=64 * 1024)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def put(store: Any, bucket: str, key: str, size: int) -> None:
    await store.put_object(bucket, key, chunks(b"x" * size), ObjectWrite())


async def multipart(store: Any, bucket: str, key: str, size: int, *, complete: bool) -> str:
    upload = await store.create_multipart_upload(bucket, key, ObjectWrite())
    if complete:
        part = await store.upload_part(
            bucket, key, upload.upload_id, 1, chunks(b"p" * size), ObjectWrite()
        )
        await store.complete_multipart_upload(
            bucket, key, upload.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
        )
    return upload.upload_id


async def fresh_count(store: Any) -> dict[str, tuple[int, int, int]]:
    """What a fresh start-up count finds now."""
    fresh = BucketUsage()
    fresh.track(counting=True)
    await count_existing(store, fresh, page=2)
    return fresh.snapshot()


async def test_untracked_changes_cost_nothing_and_count_nothing(store: Any) -> None:
    await store.create_bucket("b")
    await put(store, "b", "k", 10)
    assert store.usage.snapshot() == {}


async def test_start_up_count_pages_through_everything(store: Any) -> None:
    await store.create_bucket("empty")
    await store.create_bucket("full")
    for i in range(5):
        await put(store, "full", f"dir/k{i}", 100 + i)
    await multipart(store, "full", "pending-1", 0, complete=False)
    await multipart(store, "full", "pending-2", 0, complete=False)
    await multipart(store, "full", "pending-2", 0, complete=False)
    store.usage.track(counting=True)
    await count_existing(store, store.usage, page=2)
    assert store.usage.snapshot() == {"empty": (0, 0, 0), "full": (5, 510, 3)}


async def test_writes_after_the_count_keep_the_figures_exact(store: Any) -> None:
    await store.create_bucket("b")
    await put(store, "b", "old", 1000)
    store.usage.track(counting=True)
    await count_existing(store, store.usage)
    assert store.usage.snapshot() == {"b": (1, 1000, 0)}

    await put(store, "b", "new", 10)  # a new key
    await put(store, "b", "old", 400)  # an overwrite: the replaced size comes off
    assert store.usage.snapshot() == {"b": (2, 410, 0)}
    await store.delete_object("b", "old")
    await store.delete_object("b", "never-there")  # idempotent: changes nothing
    assert store.usage.snapshot() == {"b": (1, 10, 0)}

    pending = await multipart(store, "b", "big", 0, complete=False)
    assert store.usage.snapshot()["b"] == (1, 10, 1)
    await multipart(store, "b", "new", 3000, complete=True)  # overwrites "new"
    assert store.usage.snapshot()["b"] == (1, 3000, 1)
    await store.abort_multipart_upload("b", "big", pending)
    assert store.usage.snapshot()["b"] == (1, 3000, 0)

    await store.create_bucket("later")  # created after the count: counted from zero
    await put(store, "later", "k", 7)
    await multipart(store, "later", "u", 0, complete=False)
    assert store.usage.snapshot()["later"] == (1, 7, 1)
    assert store.usage.snapshot() == await fresh_count(store)

    await store.expire_multipart_uploads(now() + timedelta(days=1))
    assert store.usage.snapshot()["later"] == (1, 7, 0)
    await store.delete_object("later", "k")
    await store.delete_bucket("later")
    assert "later" not in store.usage.snapshot()
    assert store.usage.snapshot() == await fresh_count(store)


async def test_a_listener_hears_every_change(store: Any) -> None:
    heard: list[tuple[str, ...]] = []

    class Listener:
        def bucket_changed(self, bucket: str, objects: int, size: int, uploads: int) -> None:
            heard.append((bucket, str(objects), str(size), str(uploads)))

        def bucket_removed(self, bucket: str) -> None:
            heard.append(("removed", bucket))

    store.usage.listener = Listener()
    store.usage.track(counting=False)
    await store.create_bucket("b")
    await put(store, "b", "k", 5)
    await store.delete_object("b", "k")
    await store.delete_bucket("b")
    assert heard == [("b", "1", "5", "0"), ("b", "0", "0", "0"), ("removed", "b")]


def test_changes_during_the_count_follow_the_listing_position() -> None:
    """Before the listing knows the buckets nothing counts; then a change counts only
    at or before the position the listing reached in its bucket."""
    usage = BucketUsage()
    usage.track(counting=True)
    usage.object_written("b", "a", None, 1)  # the listing will see it
    assert usage.snapshot() == {}
    listed = usage._listing(["b"])
    usage._counted("b", listed["b"], (2, 20, 0), "m", "objects")  # keys up to "m"
    usage.object_written("b", "c", None, 5)  # behind the listing: counts
    usage.object_written("b", "x", None, 5)  # ahead: the listing will see it
    usage.object_deleted("b", "m", 10)  # at the position: counts
    assert usage.snapshot() == {"b": (2, 15, 0)}
    usage._counted("b", listed["b"], (1, 5, 0), None, "objects")  # "x": done
    usage.upload_started("b", "u")  # uploads not listed yet: left out
    usage._counted("b", listed["b"], (0, 0, 2), None, "uploads")
    usage.upload_ended("b", "u")
    usage.object_written("b", "z", 5, 6)  # done: everything counts
    assert usage.snapshot() == {"b": (3, 21, 1)}
    usage.object_written("new", "k", None, 3)  # a bucket created after the listing
    assert usage.snapshot()["new"] == (1, 3, 0)


def test_a_bucket_deleted_during_the_count_is_not_brought_back() -> None:
    usage = BucketUsage()
    usage.track(counting=True)
    listed = usage._listing(["b"])
    usage.bucket_deleted("b")
    usage._counted("b", listed["b"], (3, 30, 0), None, "objects")
    assert usage.snapshot() == {}


def test_shared_figures_keep_a_deleted_buckets_share() -> None:
    """A worker's share of a sum over workers: another worker's writes made it -1."""
    usage = BucketUsage()
    usage.track(counting=False, shared=True)
    usage.object_deleted("b", "k", 4)
    usage.bucket_deleted("b")
    assert usage.snapshot() == {"b": (-1, -4, 0)}


class Heard:
    """A listener keeping the last figures told per bucket: what the gauges show."""

    def __init__(self) -> None:
        self.shown: dict[str, tuple[int, int, int]] = {}

    def bucket_changed(self, bucket: str, objects: int, size: int, uploads: int) -> None:
        self.shown[bucket] = (objects, size, uploads)

    def bucket_removed(self, bucket: str) -> None:
        del self.shown[bucket]


def test_a_recount_replaces_the_figures_by_the_listing_position() -> None:
    """The fresh figures take a change at or before the recount's position (the listing
    has passed the key), not one ahead of it (the listing will see it); the shown
    figures take every change, and give way to the fresh ones once the bucket is done."""
    usage = BucketUsage()
    heard = usage.listener = Heard()
    usage.track(counting=False)
    usage.object_written("b", "a", None, 10)
    usage.object_written("gone", "k", None, 1)  # deleted through another node since
    fresh = usage._recounting(["b", "other"], gone={"gone"})
    assert heard.shown == {"b": (1, 10, 0)}
    usage._counted("b", fresh["b"], (5, 500, 0), "m", "objects")  # keys up to "m"
    assert heard.shown["b"] == (1, 10, 0)  # shown: the old figures until done
    usage.object_written("b", "c", None, 7)  # behind the listing: both
    usage.object_written("b", "x", None, 9)  # ahead: the listing will see it
    usage.object_deleted("b", "m", 20)  # at the position: both
    usage.upload_started("b", "u")  # uploads not listed yet: the listing will see it
    assert heard.shown["b"] == (2, 6, 1)
    usage._counted("b", fresh["b"], (2, 30, 0), None, "objects")  # "x" among them
    usage.object_written("b", "x", 9, 4)  # objects done: both
    usage._counted("b", fresh["b"], (0, 0, 3), "u", "uploads")  # "u" among them
    usage.upload_ended("b", "u")  # at the position: both
    usage._counted("b", fresh["b"], (0, 0, 0), None, "uploads")
    assert heard.shown["b"] == (2, 1, 0)
    usage._recounted("b", fresh["b"])
    assert heard.shown["b"] == (5 + 1 - 1 + 2, 500 + 7 - 20 + 30 - 5, 3 - 1)
    usage.object_written("b", "z", None, 1)  # done: every change counts once
    assert usage.snapshot()["b"] == heard.shown["b"] == (8, 513, 2)

    usage.object_written("other", "k", None, 3)  # a bucket made elsewhere, written here
    assert heard.shown["other"] == (1, 3, 0)
    usage._counted("other", fresh["other"], (2, 8, 0), None, "objects")  # "k" among them
    usage._counted("other", fresh["other"], (0, 0, 0), None, "uploads")
    usage._recounted("other", fresh["other"])
    assert usage.snapshot() == heard.shown == {"b": (8, 513, 2), "other": (2, 8, 0)}


def test_a_bucket_deleted_during_a_recount_is_not_brought_back() -> None:
    usage = BucketUsage()
    heard = usage.listener = Heard()
    usage.track(counting=False)
    usage.object_written("here", "k", None, 1)
    usage.object_written("there", "k", None, 1)
    fresh = usage._recounting(["here", "there"], gone=[])
    usage.bucket_deleted("here")  # through this node
    usage._counted("here", fresh["here"], (3, 30, 0), None, "objects")
    usage._recounted("here", fresh["here"])
    usage._vanished("there", fresh["there"])  # the listing found it gone
    assert usage.snapshot() == heard.shown == {}


async def test_a_recount_takes_in_changes_made_elsewhere_and_here_meanwhile(
    store: Any,
) -> None:
    """Writes the figures never heard of (another node's) are found; writes made here
    while a bucket is listed, behind and ahead of the listing, count exactly once."""
    await store.create_bucket("b")
    await store.create_bucket("dropped")
    for i in range(6):
        await put(store, "b", f"k{i}", 10)
    store.usage.track(counting=True)
    await count_existing(store, store.usage, page=2)
    assert store.usage.snapshot() == {"b": (6, 60, 0), "dropped": (0, 0, 0)}

    tracked, store.usage = store.usage, BucketUsage()  # another node's writes
    await put(store, "b", "k4", 1000)
    await store.delete_object("b", "k5")
    await multipart(store, "b", "elsewhere", 0, complete=False)
    await store.create_bucket("made")
    await put(store, "made", "k", 5)
    await store.delete_bucket("dropped")
    store.usage = tracked
    assert store.usage.snapshot() == {"b": (6, 60, 0), "dropped": (0, 0, 0)}

    class Interleaved:
        """The store, with writes of this node's made between two pages of "b"."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def list_objects(self, bucket: str, **kwargs: Any) -> Any:
            if bucket == "b" and kwargs["after"] == "k1":
                await put(store, "b", "k0", 20)  # behind the listing
                await store.delete_object("b", "k1")  # at its position
                await put(store, "b", "k3", 30)  # ahead of it
                await put(store, "b", "k9", 40)  # ahead, new
            return await store.list_objects(bucket, **kwargs)

    await recount(Interleaved(), store.usage, page=2)
    assert store.usage.snapshot() == await fresh_count(store)
    assert store.usage.snapshot() == {"b": (5, 20 + 10 + 30 + 1000 + 40, 1), "made": (1, 5, 0)}


async def test_shared_figures_are_not_recounted(store: Any) -> None:
    store.usage.track(counting=False, shared=True)
    with pytest.raises(ValueError):
        await recount(store, store.usage)
