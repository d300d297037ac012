"""FileStore on pathological trees and after crashes: deep keys cost bounded work and
never raise, and opening the store removes whatever an interrupted operation orphaned."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.storage import errors
from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.diskio import makedirs, rmtree_quiet
from shoal.storage.filestore import FileStore
from shoal.storage.keys import key_path
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

DEEP = ["/" * 1023 + "z", "./" * 511 + "zz", "../" * 341 + "z"]


@pytest.fixture(autouse=True)
def remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """Even when a test fails: pytest's own clean-up of old temp directories uses
    shutil.rmtree, which a 1,000-deep tree makes raise RecursionError at session end."""
    yield
    rmtree_quiet(str(tmp_path))


def files_below(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


async def test_deep_keys_list_refuse_bucket_delete_and_clean_up(store: FileStore) -> None:
    for key in DEEP:
        await store.put_object("bucket", key, chunks(key[-4:].encode()), ObjectWrite())
    page = await store.list_objects("bucket")
    assert [o.key for o in page.objects] == sorted(DEEP)
    page = await store.list_objects("bucket", delimiter="/", max_keys=2)
    assert page.common_prefixes == ["../", "./"] and page.truncated
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket("bucket")
    for key in DEEP:
        await store.delete_object("bucket", key)
    bucket_dir = Path(store.root) / "bucket"
    assert os.listdir(bucket_dir) == []  # every empty parent removed, 1,023 deep
    await store.delete_bucket("bucket")


async def test_delete_bucket_over_a_deep_empty_chain(store: FileStore) -> None:
    """Empty directories a crash left 1,100 deep: not keys, so the bucket can go."""
    bucket_dir = Path(store.root) / "bucket"
    makedirs(os.path.join(bucket_dir, *(["%"] * 1100)))
    assert (await store.list_objects("bucket")).objects == []
    await store.delete_bucket("bucket")
    assert not bucket_dir.exists()
    assert os.listdir(Path(store.root) / ".tmp") == [os.path.basename(store.temp.dir)]


def test_rmtree_quiet_is_iterative_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"k")
    deep = os.path.join(tmp_path, "tree", *(["d"] * 1500))
    makedirs(deep)
    makedirs(deep)  # exist_ok
    Path(deep, "f").write_bytes(b"x")
    os.symlink(outside, os.path.join(tmp_path, "tree", "d", "link"))
    rmtree_quiet(str(tmp_path / "tree"))
    assert not (tmp_path / "tree").exists()
    assert (outside / "keep").read_bytes() == b"k"
    with pytest.raises(NotADirectoryError):
        makedirs(str(outside / "keep" / "sub"))


async def test_open_removes_what_crashes_orphaned(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.create_bucket("gone")
    for key in ["keep", "a/b/half-deleted", "/" * 1000 + "deep-half-d", "m/lone-sidecar"]:
        await fs.put_object("bucket", key, chunks(b"data"), ObjectWrite())
    upload = await fs.create_multipart_upload("bucket", "mp", ObjectWrite())
    part = await fs.upload_part("bucket", "mp", upload.upload_id, 1, chunks(b"p1"), ObjectWrite())
    await fs.put_bucket_policy("gone", '{"old": "policy"}')
    await fs.put_bucket_document("gone", "cors", "<CORSConfiguration/>")
    await fs.close()

    root = Path(fs.root)
    bucket_dir = root / "bucket"
    # A DeleteObject cut off between unlinking the sidecar and the data.
    for key in ["a/b/half-deleted", "/" * 1000 + "deep-half-d"]:
        os.unlink(key_path(key).meta_path(str(bucket_dir)))
    # The same on a file system that persisted the two unlinks out of order.
    os.unlink(key_path("m/lone-sidecar").data_path(str(bucket_dir)))
    # A delete cut off before removing its empty parents.
    makedirs(os.path.join(bucket_dir, *key_path("e/f/g/x").dirs))
    # Part data whose record was never written (or that a re-upload superseded).
    updir = root / ".multipart" / upload.upload_id
    (updir / "part-00001.0123456789ab").write_bytes(b"superseded")
    (updir / "part-00002.aaaaaaaaaaaa").write_bytes(b"never recorded")
    # A DeleteBucket cut off after moving the bucket away: its documents remain.
    os.rename(root / "gone", root / ".tmp" / "moved-away")
    # Files that are not ours stay whatever happens.
    (bucket_dir / "notes.txt").write_text("operator's")
    (bucket_dir / "%41").mkdir()
    (bucket_dir / "%41" / "x._storage_object").write_bytes(b"foreign")

    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        assert files_below(bucket_dir) == sorted(
            [
                "keep._storage_object",
                "keep._storage_object.metadata.json",
                "notes.txt",
                "%41/x._storage_object",
            ]
        )
        assert sorted(p.name for p in bucket_dir.iterdir()) == sorted(
            ["keep._storage_object", "keep._storage_object.metadata.json", "notes.txt", "%41"]
        )
        assert sorted(os.listdir(updir)) == sorted(
            ["metadata.json", "part-00001.json", f"part-{1:05d}.{_data_token(updir)}"]
        )
        assert [o.key for o in (await fs.list_objects("bucket")).objects] == ["keep"]
        done = await fs.complete_multipart_upload(
            "bucket", "mp", upload.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
        )
        assert done.size == 2
        for sub in (".policies", ".buckets", ".bucket-config"):
            assert not [n for n in os.listdir(root / sub) if n.startswith("gone")]
        await fs.create_bucket("gone")
        with pytest.raises(errors.NoSuchBucketPolicy):
            await fs.get_bucket_policy("gone")
        assert os.listdir(root / ".tmp") == [os.path.basename(fs.temp.dir)]
    finally:
        await fs.close()


def _data_token(updir: Path) -> str:
    import json

    return json.loads((updir / "part-00001.json").read_text())["data"].split(".", 1)[1]


async def test_keys_past_path_max_are_refused_not_500(tmp_path: Path) -> None:
    """Escaping can triple a key: under a long data directory its path would pass
    PATH_MAX, so such a key is KeyTooLong, and listings under it are empty."""
    long_dir = tmp_path.joinpath(*(["d" * 200] * 7))
    fs = FileStore(long_dir)
    await fs.open()
    try:
        await fs.create_bucket("bucket")
        with pytest.raises(errors.KeyTooLong):
            await fs.put_object("bucket", "%" * 1024, chunks(b"x"), ObjectWrite())
        await fs.put_object("bucket", "%" * 100, chunks(b"x"), ObjectWrite())
        assert (await fs.list_objects("bucket", prefix="%" * 1000)).objects == []
        assert [o.key for o in (await fs.list_objects("bucket")).objects] == ["%" * 100]
        with pytest.raises(errors.KeyTooLong):  # as for every key this store cannot hold
            await fs.delete_object("bucket", "%" * 1024)
    finally:
        await fs.close()


@pytest.mark.parametrize("name", ["\udc80", "b" * 256, "a/b", ".tmp", "x\0"])
async def test_impossible_bucket_names_are_no_such_bucket(store: FileStore, name: str) -> None:
    for call in (
        lambda: store.create_bucket(name),
        lambda: store.head_bucket(name),
        lambda: store.list_objects(name),
        lambda: store.put_object(name, "k", chunks(b"x"), ObjectWrite()),
        lambda: store.delete_bucket(name),
    ):
        with pytest.raises(errors.NoSuchBucket):
            await call()
    assert [b.name for b in await store.list_buckets()] == ["bucket"]
