"""FileStore versioning and object-lock storage: versions, delete markers, the null
version, Suspended buckets, ListObjectVersions paging, bucket records, layout."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shoal.storage import errors
from shoal.storage.backend import NULL_VERSION, ObjectMeta, ObjectWrite, Retention
from shoal.storage.filestore import FileStore
from shoal.storage.keys import key_path
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


async def read(store: FileStore, key: str, version_id: str | None = None) -> bytes:
    async with await store.open_object("bucket", key, version_id) as reader:
        return await reader.read_all()


async def put(store: FileStore, key: str, data: bytes, **kw: object) -> ObjectMeta:
    return await store.put_object("bucket", key, chunks(data), ObjectWrite(**kw))  # type: ignore[arg-type]


async def listing(store: FileStore, **kw: object) -> list[tuple[str, str, bool, bool]]:
    page = await store.list_object_versions("bucket", **kw)  # type: ignore[arg-type]
    return [(v.key, v.version_id, v.is_latest, v.delete_marker) for v in page.versions]


async def test_never_versioned_bucket_is_unchanged(store: FileStore) -> None:
    meta = await put(store, "a/b", b"one")
    assert meta.version_id == NULL_VERSION
    info = await store.head_bucket("bucket")
    assert (info.versioning, info.object_lock) == ("", False)
    assert not os.path.exists(os.path.join(store.root, ".versions"))
    assert sorted(os.listdir(os.path.join(store.root, "bucket", "a"))) == [
        "b._storage_object",
        "b._storage_object.metadata.json",
    ]
    assert (await store.head_object("bucket", "a/b", NULL_VERSION)).etag == meta.etag
    with pytest.raises(errors.NoSuchVersion):
        await store.head_object("bucket", "a/b", "0" * 24)
    assert await listing(store) == [("a/b", NULL_VERSION, True, False)]
    assert (await store.delete_object("bucket", "a/b")).version_id is None
    assert (await store.delete_object("bucket", "a/b")).version_id is None  # idempotent
    assert await listing(store) == []


async def test_enabled_versions_markers_and_undelete(store: FileStore) -> None:
    await put(store, "k", b"null one")
    await store.update_bucket("bucket", versioning="Enabled")
    v1 = await put(store, "k", b"first")
    v2 = await put(store, "k", b"second")
    assert v1.version_id != v2.version_id and v1.version_id < v2.version_id
    assert await read(store, "k") == b"second"
    assert await read(store, "k", v1.version_id) == b"first"
    assert await read(store, "k", NULL_VERSION) == b"null one"
    assert (await store.head_object("bucket", "k", v1.version_id)).size == 5
    assert await listing(store) == [
        ("k", v2.version_id, True, False),
        ("k", v1.version_id, False, False),
        ("k", NULL_VERSION, False, False),
    ]
    gone = await store.delete_object("bucket", "k")
    assert gone.delete_marker and gone.version_id
    with pytest.raises(errors.NoSuchKey) as missing:
        await store.head_object("bucket", "k")
    assert missing.value.delete_marker == gone.version_id
    with pytest.raises(errors.NoSuchKey):
        await store.open_object("bucket", "k")
    with pytest.raises(errors.MethodNotAllowed) as marker:
        await store.head_object("bucket", "k", gone.version_id)
    assert marker.value.delete_marker == gone.version_id
    assert (await store.list_objects("bucket")).objects == []
    assert (await listing(store))[0] == ("k", gone.version_id, True, True)
    # Removing the current marker brings the newest version back.
    undone = await store.delete_object("bucket", "k", version_id=gone.version_id)
    assert undone.delete_marker and undone.version_id == gone.version_id
    assert await read(store, "k") == b"second"
    assert [o.key for o in (await store.list_objects("bucket")).objects] == ["k"]
    # Removing the current version makes the previous one current.
    removed = await store.delete_object("bucket", "k", version_id=v2.version_id)
    assert removed.version_id == v2.version_id and not removed.delete_marker
    assert await read(store, "k") == b"first"
    with pytest.raises(errors.NoSuchVersion):
        await store.head_object("bucket", "k", v2.version_id)
    # An id the key does not have: nothing changes, success (as S3).
    again = await store.delete_object("bucket", "k", version_id=v2.version_id)
    assert again.version_id == v2.version_id and not again.delete_marker
    with pytest.raises(errors.NoSuchVersion):
        await store.head_object("bucket", "k", "not-an-id")


async def test_suspended_writes_replace_the_null_version(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    kept = await put(store, "k", b"kept")
    await store.update_bucket("bucket", versioning="Suspended")
    n1 = await put(store, "k", b"null 1")
    n2 = await put(store, "k", b"null 2")
    assert n1.version_id == n2.version_id == NULL_VERSION
    assert await listing(store) == [
        ("k", NULL_VERSION, True, False),
        ("k", kept.version_id, False, False),
    ]
    gone = await store.delete_object("bucket", "k")
    assert (gone.version_id, gone.delete_marker) == (NULL_VERSION, True)
    assert await listing(store) == [
        ("k", NULL_VERSION, True, True),
        ("k", kept.version_id, False, False),
    ]
    await store.update_bucket("bucket", versioning="Enabled")
    v3 = await put(store, "k", b"v3")
    assert await listing(store) == [
        ("k", v3.version_id, True, False),
        ("k", NULL_VERSION, False, True),
        ("k", kept.version_id, False, False),
    ]
    await store.update_bucket("bucket", versioning="Suspended")
    await put(store, "k", b"null 3")  # replaces the null marker, keeps v3
    assert await listing(store) == [
        ("k", NULL_VERSION, True, False),
        ("k", v3.version_id, False, False),
        ("k", kept.version_id, False, False),
    ]
    assert await read(store, "k") == b"null 3"


async def test_versioned_layout_is_documented_place(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    v1 = await put(store, "dir/k", b"one")
    v2 = await put(store, "dir/k", b"two")
    kp = key_path("dir/k")
    bdir = os.path.join(store.root, "bucket")
    current = json.loads(Path(kp.meta_path(bdir)).read_text())
    assert current["version_id"] == v2.version_id
    vdir = os.path.join(store.root, ".versions", "bucket", "dir", "k._storage_object")
    assert sorted(os.listdir(vdir)) == [v1.version_id, v1.version_id + ".json"]
    assert Path(vdir, v1.version_id).read_bytes() == b"one"
    await store.delete_object("bucket", "dir/k", version_id=v1.version_id)
    assert not os.path.exists(os.path.join(store.root, ".versions", "bucket", "dir"))


async def test_guard_sees_the_version_and_can_refuse(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    v1 = await put(store, "k", b"one")
    seen: list[ObjectMeta | None] = []

    def refuse(meta: ObjectMeta | None) -> None:
        seen.append(meta)
        raise errors.PreconditionFailed("no")

    with pytest.raises(errors.PreconditionFailed):
        await store.delete_object("bucket", "k", guard=refuse)
    with pytest.raises(errors.PreconditionFailed):
        await store.delete_object("bucket", "k", version_id=v1.version_id, guard=refuse)
    assert [m.version_id if m else None for m in seen] == [v1.version_id, v1.version_id]
    assert await listing(store) == [("k", v1.version_id, True, False)]
    marker = await store.delete_object("bucket", "k")
    seen.clear()
    await store.delete_object("bucket", "k", guard=seen.append)
    assert seen == [None]  # the current version is a marker: no object
    seen.clear()
    await store.delete_object("bucket", "k", version_id=marker.version_id, guard=seen.append)
    assert seen[0] is not None and seen[0].delete_marker


async def test_update_object_meta_retention_and_legal_hold(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    info = await fs.create_bucket("locked", object_lock=True)
    assert (info.versioning, info.object_lock) == ("Enabled", True)
    until = datetime(2030, 1, 1, tzinfo=UTC)
    v1 = await fs.put_object(
        "locked", "k", chunks(b"x"), ObjectWrite(retention=Retention("GOVERNANCE", until))
    )
    v2 = await fs.put_object("locked", "k", chunks(b"y"), ObjectWrite(legal_hold=True))

    def hold(meta: ObjectMeta) -> ObjectMeta:
        meta.legal_hold = True
        return meta

    await fs.update_object_meta("locked", "k", v1.version_id, hold)
    await fs.close()
    fs = FileStore(tmp_path / "d")
    await fs.open()
    info = await fs.head_bucket("locked")
    assert (info.versioning, info.object_lock) == ("Enabled", True)
    old = await fs.head_object("locked", "k", v1.version_id)
    assert old.retention == Retention("GOVERNANCE", until) and old.legal_hold
    assert (await fs.head_object("locked", "k")).legal_hold
    assert (await fs.head_object("locked", "k")).version_id == v2.version_id
    with pytest.raises(errors.NoSuchVersion):
        await fs.update_object_meta("locked", "k", "0" * 24, hold)
    await fs.close()


async def test_old_bucket_records_read_unversioned(store: FileStore) -> None:
    record = Path(store.root, ".buckets", "bucket.json")
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({"format": 1, "name": "bucket", "created": rec["created"]}))
    info = await store.head_bucket("bucket")
    assert (info.versioning, info.object_lock) == ("", False)
    await store.update_bucket("bucket", versioning="Suspended")
    assert (await store.head_bucket("bucket")).versioning == "Suspended"
    assert json.loads(record.read_text())["versioning"] == "Suspended"


async def test_bucket_with_only_markers_is_not_empty(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    marker = await store.delete_object("bucket", "never/was")
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket("bucket")
    await store.delete_object("bucket", "never/was", version_id=marker.version_id)
    await store.delete_bucket("bucket")
    assert not os.path.exists(os.path.join(store.root, ".versions", "bucket"))
    await store.create_bucket("bucket")
    assert (await store.head_bucket("bucket")).versioning == ""


async def test_multipart_completion_makes_a_version(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    first = await put(store, "m", b"before")
    info = await store.create_multipart_upload("bucket", "m", ObjectWrite(legal_hold=True))
    part = await store.upload_part("bucket", "m", info.upload_id, 1, chunks(b"part"), ObjectWrite())
    from shoal.storage.backend import CompletedPart

    done = await store.complete_multipart_upload(
        "bucket", "m", info.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
    )
    assert done.version_id not in (NULL_VERSION, first.version_id) and done.legal_hold
    assert await read(store, "m") == b"part"
    assert await read(store, "m", first.version_id) == b"before"
    assert (await store.list_multipart_uploads("bucket")).uploads == []
    assert not os.listdir(store.temp.dir) or os.listdir(store.temp.dir) == ["owner.lock"]


async def test_conditional_writes_see_the_current_version(store: FileStore) -> None:
    await store.update_bucket("bucket", versioning="Enabled")
    v1 = await put(store, "k", b"one")
    with pytest.raises(errors.PreconditionFailed):
        await put(store, "k", b"two", if_none_match=True)
    await store.delete_object("bucket", "k")
    v2 = await put(store, "k", b"two", if_none_match=True)  # a marker is no object
    with pytest.raises(errors.PreconditionFailed):
        await put(store, "k", b"three", if_match=v1.etag)
    await put(store, "k", b"three", if_match=v2.etag)


async def test_usage_counts_every_version(store: FileStore) -> None:
    store.usage.track(counting=False)
    await store.update_bucket("bucket", versioning="Enabled")
    v1 = await put(store, "k", b"12345")
    await put(store, "k", b"123")
    await store.delete_object("bucket", "k")
    assert store.usage.snapshot()["bucket"][:2] == (2, 8)
    await store.delete_object("bucket", "k", version_id=v1.version_id)
    assert store.usage.snapshot()["bucket"][:2] == (1, 3)
    await store.update_bucket("bucket", versioning="Suspended")
    await put(store, "k", b"1")
    await put(store, "k", b"12")
    assert store.usage.snapshot()["bucket"][:2] == (2, 5)
    await store.delete_object("bucket", "k")
    assert store.usage.snapshot()["bucket"][:2] == (1, 3)


async def test_versions_survive_reopen_and_listing_pages(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.update_bucket("bucket", versioning="Enabled")
    made = [await fs.put_object("bucket", "k", chunks(b"%d" % i), ObjectWrite()) for i in range(5)]
    await fs.close()
    fs = FileStore(tmp_path / "d")
    await fs.open()
    seen: list[str] = []
    key_marker, vid_marker = "", ""
    while True:
        page = await fs.list_object_versions(
            "bucket", key_marker=key_marker, version_id_marker=vid_marker, max_keys=2
        )
        seen += [v.version_id for v in page.versions]
        if not page.truncated:
            break
        key_marker, vid_marker = page.next_key_marker or "", page.next_version_id_marker or ""
    assert seen == [m.version_id for m in reversed(made)]
    await fs.close()


async def test_counting_existing_versions(store: FileStore) -> None:
    from shoal.storage.usage import count_existing

    await store.create_bucket("plain")
    await store.put_object("plain", "p", chunks(b"1234"), ObjectWrite())
    await store.update_bucket("bucket", versioning="Enabled")
    for data in (b"1", b"22", b"333"):
        await put(store, "a", data)
    await store.delete_object("bucket", "a")
    await put(store, "b", b"4444")
    store.usage.track(counting=True)
    await count_existing(store, store.usage, page=2)
    snapshot = store.usage.snapshot()
    assert snapshot["bucket"] == (4, 10, 0)
    assert snapshot["plain"] == (1, 4, 0)


async def test_overlapping_writers_last_acknowledged_is_current(store: FileStore) -> None:
    """Writers of one key in worker threads, racing: the version committed last (its
    id minted under the key's lock) is current, and the listing follows commit order."""
    import anyio

    await store.update_bucket("bucket", versioning="Enabled")
    made: list[str] = []

    async def writer(n: int) -> None:
        parts = [b"%d" % n] * (1 + n % 4) + [b"x" * (n * 50_000)]
        made.append(
            (await store.put_object("bucket", "k", chunks(*parts), ObjectWrite())).version_id
        )

    async with anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(writer, n)
    listed = [v for _, v, _, _ in await listing(store)]
    assert listed == sorted(made, reverse=True)
    assert (await store.head_object("bucket", "k")).version_id == max(made)


async def test_two_stores_share_versioning_state(tmp_path: Path) -> None:
    """Two stores (uvicorn workers) on one directory: a versioning change made through
    one is seen by the next write through the other."""
    a, b = FileStore(tmp_path / "d"), FileStore(tmp_path / "d")
    await a.open()
    await b.open()
    try:
        await a.create_bucket("bucket")
        await b.put_object("bucket", "k", chunks(b"null"), ObjectWrite())
        await a.update_bucket("bucket", versioning="Enabled")
        v1 = await b.put_object("bucket", "k", chunks(b"one"), ObjectWrite())
        assert v1.version_id != NULL_VERSION
        marker = await a.delete_object("bucket", "k")
        with pytest.raises(errors.NoSuchKey) as missing:
            await b.head_object("bucket", "k")
        assert missing.value.delete_marker == marker.version_id
        listed = await b.list_object_versions("bucket")
        assert [v.version_id for v in listed.versions] == [
            marker.version_id,
            v1.version_id,
            NULL_VERSION,
        ]
    finally:
        await a.close()
        await b.close()


async def test_version_leftovers_are_removed_at_open(tmp_path: Path) -> None:
    """Version data without its record, emptied version folders, and the version tree
    of a bucket whose folder is gone: removed when the store next opens."""
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.update_bucket("bucket", versioning="Enabled")
    v1 = await fs.put_object("bucket", "a/k", chunks(b"one"), ObjectWrite())
    await fs.put_object("bucket", "a/k", chunks(b"two"), ObjectWrite())
    await fs.close()
    vroot = Path(fs.root, ".versions", "bucket")
    lone = vroot / "a" / "k._storage_object" / ("f" * 24)
    lone.write_bytes(b"orphan")
    empty = vroot / "a" / "gone._storage_object"
    empty.mkdir()
    stale = Path(fs.root, ".versions", "deleted", "x._storage_object")
    stale.mkdir(parents=True)
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        assert not lone.exists() and not empty.exists()
        assert not stale.parent.exists()
        async with await fs.open_object("bucket", "a/k", v1.version_id) as reader:
            assert await reader.read_all() == b"one"
    finally:
        await fs.close()
