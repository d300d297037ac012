"""FileStore buckets, objects, conditional and concurrent writes, crash recovery, policies."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import anyio
import pytest

from shoal.storage import errors
from shoal.storage.backend import ObjectWrite
from shoal.storage.commit import Commit, TempArea
from shoal.storage.diskio import object_lock_name
from shoal.storage.filestore import FileStore
from shoal.storage.keys import key_path
from shoal.storage.records import meta_from_dict, meta_to_dict
from shoal.storage.streams import READ_CHUNK
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


async def read(store: FileStore, bucket: str, key: str) -> bytes:
    async with await store.open_object(bucket, key) as reader:
        return await reader.read_all()


async def test_buckets(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        assert await fs.list_buckets() == []
        await fs.create_bucket("zeta")
        info = await fs.create_bucket("alpha")
        assert info.created.tzinfo is not None
        with pytest.raises(errors.BucketAlreadyOwnedByYou):
            await fs.create_bucket("alpha")
        assert [b.name for b in await fs.list_buckets()] == ["alpha", "zeta"]
        assert (await fs.head_bucket("alpha")).created == info.created
        with pytest.raises(errors.NoSuchBucket):
            await fs.head_bucket("nope")
        await fs.put_object("alpha", "k", chunks(b"x"), ObjectWrite())
        with pytest.raises(errors.BucketNotEmpty):
            await fs.delete_bucket("alpha")
        up = await fs.create_multipart_upload("zeta", "u", ObjectWrite())
        await fs.put_bucket_policy("zeta", '{"Version": "2012-10-17"}')
        await fs.delete_bucket("zeta")
        with pytest.raises(errors.NoSuchBucket):
            await fs.delete_bucket("zeta")
        await fs.create_bucket("zeta")
        with pytest.raises(errors.NoSuchBucketPolicy):
            await fs.get_bucket_policy("zeta")
        with pytest.raises(errors.NoSuchUpload):
            await fs.get_upload("zeta", "u", up.upload_id)
    finally:
        await fs.close()


async def test_missing_bucket_comes_first(store: FileStore) -> None:
    calls = [
        store.put_object("nope", "k", chunks(b""), ObjectWrite()),
        store.head_object("nope", "k"),
        store.open_object("nope", "k"),
        store.delete_object("nope", "k"),
        store.list_objects("nope"),
        store.create_multipart_upload("nope", "k", ObjectWrite()),
        store.list_multipart_uploads("nope"),
        store.abort_multipart_upload("nope", "k", "x" * 43),
        store.get_bucket_policy("nope"),
        store.put_bucket_policy("nope", "{}"),
        store.delete_bucket_policy("nope"),
    ]
    for call in calls:
        with pytest.raises(errors.NoSuchBucket):
            await call


async def test_a_large_object_streams_in_reads_of_read_chunk(store: FileStore) -> None:
    body = os.urandom(2 * READ_CHUNK + 5)
    await store.put_object("bucket", "big", chunks(body), ObjectWrite())
    async with await store.open_object("bucket", "big") as reader:
        pieces = [c async for c in reader.stream()]
        assert [len(p) for p in pieces] == [READ_CHUNK, READ_CHUNK, 5]
        assert b"".join(pieces) == body
        for lo, hi in [(READ_CHUNK - 1, READ_CHUNK), (3, 2 * READ_CHUNK + 4), (READ_CHUNK, None)]:
            got = b"".join([c async for c in reader.stream(lo, hi)])
            assert got == body[lo : None if hi is None else hi + 1]


async def test_put_get_head_range(store: FileStore) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    digest = hashlib.sha256()
    seen: list[tuple[int, str]] = []

    def finalize(size: int, md5: str) -> dict[str, str]:
        seen.append((size, md5))
        return {"SHA256": digest.hexdigest()}

    write = ObjectWrite(
        content_type="text/plain",
        headers={"cache-control": "no-cache"},
        user_metadata={"color": "blue"},
        digesters=[digest],
        finalize=finalize,
        checksum_type="FULL_OBJECT",
    )
    parts = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    meta = await store.put_object("bucket", "dir/file.bin", chunks(*parts), write)
    assert meta.etag == hashlib.md5(body).hexdigest()
    assert seen == [(len(body), meta.etag)]
    assert meta.checksums == {"SHA256": hashlib.sha256(body).hexdigest()}
    head = await store.head_object("bucket", "dir/file.bin")
    assert head == meta
    assert await read(store, "bucket", "dir/file.bin") == body
    async with await store.open_object("bucket", "dir/file.bin") as reader:
        got = b"".join([c async for c in reader.stream(100, 2 * 1024 * 1024 + 5)])
        assert got == body[100 : 2 * 1024 * 1024 + 6]
        assert b"".join([c async for c in reader.stream(len(body) - 3)]) == body[-3:]
    meta0 = await store.put_object("bucket", "empty", chunks(), ObjectWrite())
    assert meta0.size == 0 and meta0.etag == hashlib.md5(b"").hexdigest()
    assert await read(store, "bucket", "empty") == b""


async def test_reader_keeps_its_version(store: FileStore) -> None:
    await store.put_object("bucket", "k", chunks(b"old"), ObjectWrite())
    reader = await store.open_object("bucket", "k")
    await store.put_object("bucket", "k", chunks(b"newer"), ObjectWrite())
    assert await reader.read_all() == b"old"
    await reader.close()
    reader = await store.open_object("bucket", "k")
    await store.delete_object("bucket", "k")
    assert await reader.read_all() == b"newer"
    assert reader.meta.size == 5
    await reader.close()


async def test_delete_is_idempotent_and_cleans_dirs(store: FileStore) -> None:
    await store.put_object("bucket", "a/b/c/d", chunks(b"x"), ObjectWrite())
    await store.put_object("bucket", "a/keep", chunks(b"x"), ObjectWrite())
    await store.delete_object("bucket", "a/b/c/d")
    await store.delete_object("bucket", "a/b/c/d")
    bdir = Path(store.root) / "bucket"
    assert not (bdir / "a" / "b").exists()
    assert (bdir / "a").is_dir()
    with pytest.raises(errors.NoSuchKey):
        await store.head_object("bucket", "a/b/c/d")
    with pytest.raises(errors.NoSuchKey):
        await store.open_object("bucket", "a/b/c/d")


async def test_hostile_keys_stay_in_bucket(store: FileStore) -> None:
    for key in ["../../x", "a/../../b", "/etc/passwd", "..", "../.buckets/bucket.json"]:
        await store.put_object("bucket", key, chunks(key.encode()), ObjectWrite())
        assert await read(store, "bucket", key) == key.encode()
    root = Path(store.root)
    assert not (root.parent / "x._storage_object").exists()
    assert json.loads((root / ".buckets" / "bucket.json").read_text())["name"] == "bucket"
    page = await store.list_objects("bucket")
    assert [o.key for o in page.objects] == sorted(
        ["../../x", "a/../../b", "/etc/passwd", "..", "../.buckets/bucket.json"]
    )
    with pytest.raises(errors.KeyTooLong):
        await store.put_object("bucket", "k" * 1025, chunks(b""), ObjectWrite())


async def test_listing_through_store(store: FileStore) -> None:
    keys = ["a/b", "a-c", "a/", "a//x", "photos/2024/1.jpg", "photos/2024/2.jpg", "z" * 300]
    for k in keys:
        await store.put_object("bucket", k, chunks(k.encode()), ObjectWrite())
    page = await store.list_objects("bucket")
    assert [o.key for o in page.objects] == sorted(keys)
    assert all(o.size == len(o.key.encode()) for o in page.objects)
    page = await store.list_objects("bucket", prefix="photos/", delimiter="/")
    assert page.common_prefixes == ["photos/2024/"] and page.objects == []
    page = await store.list_objects("bucket", delimiter="/", max_keys=2)
    assert [o.key for o in page.objects] == ["a-c"] and page.common_prefixes == ["a/"]
    assert page.truncated and page.last == "a/"


async def test_conditional_writes(store: FileStore) -> None:
    m1 = await store.put_object("bucket", "k", chunks(b"one"), ObjectWrite(if_none_match=True))
    with pytest.raises(errors.PreconditionFailed):
        await store.put_object("bucket", "k", chunks(b"two"), ObjectWrite(if_none_match=True))
    with pytest.raises(errors.PreconditionFailed):
        await store.put_object("bucket", "k", chunks(b"two"), ObjectWrite(if_match="bad"))
    with pytest.raises(errors.NoSuchKey):
        await store.put_object("bucket", "missing", chunks(b"x"), ObjectWrite(if_match=m1.etag))
    assert await read(store, "bucket", "k") == b"one"
    m2 = await store.put_object("bucket", "k", chunks(b"two"), ObjectWrite(if_match=m1.etag))
    assert await read(store, "bucket", "k") == b"two"
    assert (await store.head_object("bucket", "k")).etag == m2.etag
    assert os.listdir(store.temp.dir) == ["owner.lock"]


async def test_failed_finalize_and_size_limit_change_nothing(store: FileStore) -> None:
    await store.put_object("bucket", "k", chunks(b"keep"), ObjectWrite())

    def bad(size: int, md5: str) -> dict[str, str]:
        raise errors.InvalidRequest("BadDigest")

    with pytest.raises(errors.InvalidRequest):
        await store.put_object("bucket", "k", chunks(b"evil"), ObjectWrite(finalize=bad))
    with pytest.raises(errors.EntityTooLarge):
        await store.put_object(
            "bucket", "k", chunks(b"x" * 10, b"y" * 10), ObjectWrite(max_size=15)
        )
    assert await read(store, "bucket", "k") == b"keep"
    assert os.listdir(store.temp.dir) == ["owner.lock"]


async def test_concurrent_writers_one_key(store: FileStore) -> None:
    bodies = [bytes([i]) * (200_000 + i * 1000) for i in range(24)]

    async def writer(b: bytes) -> None:
        await store.put_object("bucket", "hot", chunks(b[:50_000], b[50_000:]), ObjectWrite())

    async def reader() -> None:
        for _ in range(20):
            try:
                async with await store.open_object("bucket", "hot") as r:
                    data = await r.read_all()
                    assert hashlib.md5(data).hexdigest() == r.meta.etag
            except errors.NoSuchKey:
                pass
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for b in bodies:
            tg.start_soon(writer, b)
        for _ in range(4):
            tg.start_soon(reader)
    meta = await store.head_object("bucket", "hot")
    data = await read(store, "bucket", "hot")
    assert hashlib.md5(data).hexdigest() == meta.etag and data in bodies


async def test_two_stores_one_directory(tmp_path: Path) -> None:
    """Like two uvicorn workers: separate instances serialize through flock."""
    a, b = FileStore(tmp_path / "d"), FileStore(tmp_path / "d")
    await a.open()
    await a.create_bucket("bk")
    await b.open()  # must not recover (delete) a's live temp area
    assert os.path.isdir(a.temp.dir)
    try:
        async with anyio.create_task_group() as tg:
            for i in range(16):
                fs = a if i % 2 else b
                tg.start_soon(fs.put_object, "bk", "k", chunks(bytes([i]) * 100_000), ObjectWrite())
        meta = await b.head_object("bk", "k")
        assert hashlib.md5(await read(a, "bk", "k")).hexdigest() == meta.etag
    finally:
        await a.close()
        await b.close()


def test_striped_lock_is_exclusive_across_instances(tmp_path: Path) -> None:
    from shoal.storage.diskio import StripedLocks

    l1, l2 = StripedLocks(str(tmp_path)), StripedLocks(str(tmp_path))
    name = object_lock_name("b", "k")
    inside: list[int] = []
    overlap = threading.Event()

    def work(locks: StripedLocks) -> None:
        for _ in range(200):
            with locks.hold(name):
                inside.append(1)
                if len(inside) > 1:
                    overlap.set()
                inside.pop()

    threads = [threading.Thread(target=work, args=(lk,)) for lk in (l1, l2, l1, l2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap.is_set()
    l1.close()
    l2.close()


def _crash_state(
    root: Path, key: str, body: bytes, *, decided: bool, moved: bool, superseded: bool = False
) -> None:
    """Leave what a process killed mid-put would: temp data plus a pending or decided record."""
    from shoal.storage.records import now

    dead = root / ".tmp" / "p999999-dead"
    dead.mkdir(parents=True)
    (dead / "owner.lock").write_bytes(b"")
    data_tmp = dead / "w1.data"
    data_tmp.write_bytes(body)
    inode = os.stat(data_tmp).st_ino
    bdir = root / "bucket"
    kp = key_path(key)
    meta = meta_from_dict(
        {
            "key": key,
            "size": len(body),
            "etag": hashlib.md5(body).hexdigest(),
            "last_modified": "2024-01-01T00:00:00Z",
        }
    )
    meta.last_modified = now(True)
    commit = Commit(
        data_tmp=str(data_tmp),
        data=kp.data_path(str(bdir)),
        meta=kp.meta_path(str(bdir)),
        bucket_dir=str(bdir),
        dirs=kp.dirs,
        inode=inode,
        lock=object_lock_name("bucket", key),
    )
    record = {**meta_to_dict(meta), "commit": commit.to_dict(str(root))}
    (dead / ("w1.commit" if decided else "w1.meta")).write_text(json.dumps(record))
    if moved:
        os.makedirs(kp.parent(str(bdir)), exist_ok=True)
        os.replace(data_tmp, kp.data_path(str(bdir)))
    if superseded:
        # A later write (another worker) replaced data and sidecar after the crash.
        later = root / "later"
        later.write_bytes(b"later")
        os.replace(later, kp.data_path(str(bdir)))
        meta.size, meta.etag = 5, hashlib.md5(b"later").hexdigest()
        Path(kp.meta_path(str(bdir))).write_text(json.dumps(meta_to_dict(meta)))
    (root / ".tmp" / "loose.data").write_bytes(b"junk")


@pytest.mark.parametrize(
    ("decided", "moved", "stale", "expect_new"),
    [
        (False, False, False, False),  # crashed before the decision: old object stays
        (True, False, False, True),  # decided, nothing applied: roll forward
        (True, True, False, True),  # data moved, record not: finish it
        (True, True, True, False),  # data since replaced by a later write: discard
    ],
)
async def test_recovery(
    tmp_path: Path, decided: bool, moved: bool, stale: bool, expect_new: bool
) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.put_object("bucket", "deep/key", chunks(b"old"), ObjectWrite())
    await fs.close()
    root = Path(fs.root)
    _crash_state(root, "deep/key", b"new!", decided=decided, moved=moved, superseded=stale)
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        meta = await fs.head_object("bucket", "deep/key")
        data = await read(fs, "bucket", "deep/key")
        assert data == (b"new!" if expect_new else b"later" if stale else b"old")
        assert meta.etag == hashlib.md5(data).hexdigest()
        assert os.listdir(root / ".tmp") == [os.path.basename(fs.temp.dir)]
    finally:
        await fs.close()


async def test_recovery_discards_a_record_whose_data_was_not_durable(tmp_path: Path) -> None:
    """A file system may persist the record but not the data written just before it;
    recovery must then keep the old object rather than roll torn data forward."""
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.put_object("bucket", "deep/key", chunks(b"old"), ObjectWrite())
    await fs.close()
    root = Path(fs.root)
    _crash_state(root, "deep/key", b"new!", decided=True, moved=False)
    (root / ".tmp" / "p999999-dead" / "w1.data").write_bytes(b"\0\0\0\0")  # lost blocks
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        assert await read(fs, "bucket", "deep/key") == b"old"
        assert (await fs.head_object("bucket", "deep/key")).etag == hashlib.md5(b"old").hexdigest()
    finally:
        await fs.close()


async def test_recovery_of_new_key_and_clean_slate(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.close()
    _crash_state(Path(fs.root), "fresh/a/b", b"data", decided=True, moved=False)
    fs = FileStore(tmp_path / "d")
    await fs.open()
    assert await read(fs, "bucket", "fresh/a/b") == b"data"
    await fs.close()
    fs = FileStore(tmp_path / "d", clean_slate=True)
    await fs.open()
    assert await fs.list_buckets() == []
    await fs.close()


async def test_policies(store: FileStore) -> None:
    with pytest.raises(errors.NoSuchBucketPolicy):
        await store.get_bucket_policy("bucket")
    await store.put_bucket_policy("bucket", '{"a": "é"}')
    assert await store.get_bucket_policy("bucket") == '{"a": "é"}'
    await store.put_bucket_policy("bucket", "{}")
    assert await store.get_bucket_policy("bucket") == "{}"
    await store.delete_bucket_policy("bucket")
    await store.delete_bucket_policy("bucket")
    with pytest.raises(errors.NoSuchBucketPolicy):
        await store.get_bucket_policy("bucket")


async def test_metadata_record_is_versioned_json(store: FileStore) -> None:
    await store.put_object(
        "bucket", "m", chunks(b"x"), ObjectWrite(user_metadata={"a": "b"}, extra={"tags": {}})
    )
    kp = key_path("m")
    rec = json.loads(Path(kp.meta_path(os.path.join(store.root, "bucket"))).read_text())
    assert rec["format"] == 1 and rec["version_id"] == "null"
    assert rec["user_metadata"] == {"a": "b"} and rec["extra"] == {"tags": {}}
    assert rec["last_modified"].endswith("Z")


_WRITER = """
import anyio, os, sys
from shoal.storage.filestore import FileStore
from shoal.storage.backend import ObjectWrite

async def body(n):
    for _ in range(n):
        yield bytes([n % 256]) * 65536

async def main():
    fs = FileStore(sys.argv[1])
    await fs.open()
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        await fs.put_object("bucket", "k", body(1 + i % 40), ObjectWrite())
        await fs.delete_object("bucket", "gone/%d" % (i % 3))
        await fs.put_object("bucket", "gone/%d" % (i % 3), body(1), ObjectWrite())

anyio.run(main)
"""


@pytest.mark.slow
async def test_sigkill_mid_write_leaves_whole_objects(tmp_path: Path) -> None:
    """A writer killed at random instants: after each restart, data matches metadata."""
    import random
    import signal
    import subprocess
    import sys

    data_dir = tmp_path / "d"
    fs = FileStore(data_dir)
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.put_object("bucket", "k", chunks(b"first"), ObjectWrite())
    await fs.close()
    rng = random.Random(5)
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(data_dir)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        await anyio.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fs = FileStore(data_dir)
        await fs.open()
        try:
            page = await fs.list_objects("bucket")
            for summary in page.objects:
                async with await fs.open_object("bucket", summary.key) as reader:
                    data = await reader.read_all()
                assert hashlib.md5(data).hexdigest() == reader.meta.etag == summary.etag
            assert "k" in [o.key for o in page.objects]
        finally:
            await fs.close()


async def _page_keys(store: FileStore, after: str, max_keys: int = 2) -> list[str]:
    page = await store.list_objects("bucket", after=after, max_keys=max_keys)
    return [o.key for o in page.objects]


async def test_listing_cache_sees_writes_and_deletes_between_pages(store: FileStore) -> None:
    """Directory listings are reused across pages only while nothing changed."""
    for key in ("d/a", "d/b", "d/c"):
        await store.put_object("bucket", key, chunks(b"x"), ObjectWrite())
    assert await _page_keys(store, "") == ["d/a", "d/b"]
    await store.put_object("bucket", "d/bb", chunks(b"y"), ObjectWrite())
    assert await _page_keys(store, "d/b") == ["d/bb", "d/c"]
    await store.delete_object("bucket", "d/c")
    assert await _page_keys(store, "d/bb") == []
    await store.delete_object("bucket", "d/a")
    await store.delete_object("bucket", "d/b")
    await store.delete_object("bucket", "d/bb")
    assert await _page_keys(store, "") == []
    await store.put_object("bucket", "d/z", chunks(b"z"), ObjectWrite())
    assert await _page_keys(store, "") == ["d/z"]


def test_a_temp_name_before_the_temp_area_opens_is_refused(tmp_path: Path) -> None:
    """It would be relative: an object's bytes would land in the working directory."""
    area = TempArea(str(tmp_path / ".tmp"))
    with pytest.raises(RuntimeError, match="not open"):
        area.path(".data")
    area.open()
    try:
        assert os.path.dirname(area.path(".data")) == area.dir
        assert area.dir.startswith(str(tmp_path / ".tmp"))
    finally:
        area.close()
