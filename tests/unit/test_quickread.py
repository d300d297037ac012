"""Small current objects read on the event loop (storage/quickread.py): served when the
record and the data agree, refused (None: the locked thread path answers) otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shoal.storage import durable, filestore, quickread
from shoal.storage.backend import ObjectWrite
from shoal.storage.errors import NoSuchBucket, NoSuchKey, NoSuchVersion
from shoal.storage.filestore import FileStore
from shoal.storage.keys import key_path
from tests.unit.conftest import chunks, evicted

pytestmark = pytest.mark.anyio

needs_nowait = pytest.mark.skipif(not quickread.enabled(), reason="no RWF_NOWAIT reads here")


async def _store_with(tmp_path: Path, body: bytes) -> tuple[FileStore, str, str]:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("b")
    await fs.put_object("b", "dir/k", chunks(body), ObjectWrite())
    bdir = os.path.join(fs.root, "b")
    kp = key_path("dir/k")
    return fs, kp.meta_path(bdir), kp.data_path(bdir)


@needs_nowait
async def test_reads_record_and_data_of_a_plain_commit(tmp_path: Path) -> None:
    fs, meta, data = await _store_with(tmp_path, b"hello")
    try:
        found = quickread.read_small(quickread.Sidecars(), meta, data)
        assert found is not None
        found_meta, body = found
        assert body == b"hello"
        assert found_meta.size == 5
        assert found_meta.etag == (await fs.head_object("b", "dir/k")).etag
    finally:
        await fs.close()


@needs_nowait
async def test_refuses_data_the_record_does_not_name(tmp_path: Path) -> None:
    """Same size, other file (as between a writer's two renames): never served as this
    record's data."""
    fs, meta, data = await _store_with(tmp_path, b"hello")
    try:
        other = data + ".other"
        with open(other, "wb") as f:
            f.write(b"HELLO")
        os.replace(other, data)
        assert quickread.read_small(quickread.Sidecars(), meta, data) is None
        # The locked path still answers (with what is there: the store's own business).
        async with await fs.open_object("b", "dir/k") as reader:
            assert reader.meta.size == 5
    finally:
        await fs.close()


@needs_nowait
async def test_refuses_a_record_without_a_commit_section(tmp_path: Path) -> None:
    """Metadata updates and versioned writes leave no inode to check against."""
    fs, meta, data = await _store_with(tmp_path, b"hello")
    try:
        with open(meta, "rb") as f:
            record = json.load(f)
        del record["commit"]
        with open(meta, "w") as f:
            json.dump(record, f)
        assert quickread.read_small(quickread.Sidecars(), meta, data) is None
        assert quickread.read_record(meta) is not None  # HEAD needs no data
        async with await fs.open_object("b", "dir/k") as reader:
            assert await reader.read_all() == b"hello"
    finally:
        await fs.close()


@needs_nowait
async def test_missing_files_and_large_objects_take_the_thread_path(tmp_path: Path) -> None:
    big = os.urandom(quickread.LOOP_READ_MAX + 1)
    fs, meta, data = await _store_with(tmp_path, big)
    try:
        assert (
            quickread.read_small(quickread.Sidecars(), meta, data) is None
        )  # too large for the loop
        async with await fs.open_object("b", "dir/k") as reader:
            assert await reader.read_all() == big
        os.unlink(data)
        assert quickread.read_small(quickread.Sidecars(), meta + ".nope", data) is None
        assert quickread.read_small(quickread.Sidecars(), meta, data) is None
    finally:
        await fs.close()


async def test_store_answers_the_same_either_way(tmp_path: Path) -> None:
    """GET and HEAD of a small object, a deleted one and another version id."""
    fs, _, _ = await _store_with(tmp_path, b"v1")
    try:
        async with await fs.open_object("b", "dir/k") as reader:
            assert await reader.read_all() == b"v1"
        head = await fs.head_object("b", "dir/k")
        assert (head.size, head.etag) == (2, reader.meta.etag)
        await fs.put_object("b", "dir/k", chunks(b"v2!"), ObjectWrite())
        async with await fs.open_object("b", "dir/k") as reader:
            assert await reader.read_all() == b"v2!"
        await fs.delete_object("b", "dir/k")
        with pytest.raises(NoSuchKey):
            await fs.open_object("b", "dir/k")
        with pytest.raises(NoSuchKey):
            await fs.head_object("b", "dir/k")
    finally:
        await fs.close()


def counted_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions FileStore runs in a worker thread from now on."""
    hops: list[str] = []
    real = filestore.run

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn.__qualname__)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(filestore, "run", counting)
    return hops


async def test_a_missing_key_is_told_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET and HEAD of a key a never-versioned bucket lacks answer NoSuchKey with no
    thread hop. A version asked for, a bucket with versions (a delete marker stands for
    the key there) and a bucket folder gone behind the store's back take the locked
    path, which tells them apart."""
    fs, _, _ = await _store_with(tmp_path, b"v1")
    try:
        hops = counted_hops(monkeypatch)
        for key in ("nope", "dir/nope", "dir/k/below-an-object", "deeper/still/nope"):
            with pytest.raises(NoSuchKey):
                await fs.open_object("b", key)
            with pytest.raises(NoSuchKey):
                await fs.head_object("b", key)
        assert hops == []
        with pytest.raises(NoSuchVersion):
            await fs.head_object("b", "nope", "some-version")
        assert hops != []

        await fs.create_bucket("v")
        await fs.update_bucket("v", versioning="Enabled")
        await fs.put_object("v", "k", chunks(b"x"), ObjectWrite())
        gone = await fs.delete_object("v", "k")
        hops.clear()
        for read in (fs.open_object, fs.head_object):
            with pytest.raises(NoSuchKey) as missing:
                await read("v", "k")
            assert missing.value.delete_marker == gone.version_id
        assert len(hops) == 2

        os.rename(os.path.join(fs.root, "b"), os.path.join(fs.root, "elsewhere"))
        with pytest.raises(NoSuchBucket):
            await fs.head_object("b", "nope")
    finally:
        await fs.close()


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths quickread.read_record reads from now on (files opened and parsed)."""
    reads: list[str] = []
    read_record = quickread.read_record

    def counting(path: str) -> Any:
        reads.append(path)
        return read_record(path)

    monkeypatch.setattr(quickread, "read_record", counting)
    return reads


@needs_nowait
async def test_a_settled_sidecar_is_parsed_once_while_it_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept under its file's stamp: read again only once another file took its place."""
    fs, meta, data = await _store_with(tmp_path, b"v1")
    reads = counted_reads(monkeypatch)
    sidecars = quickread.Sidecars(settled=0)
    try:
        first, second = sidecars.read(meta), sidecars.read(meta)
        assert first is not None and second is not None
        assert second[0] is first[0] and len(reads) == 1
        await fs.put_object("b", "dir/k", chunks(b"v2!"), ObjectWrite())
        found = quickread.read_small(sidecars, meta, data)
        assert found is not None and found[1] == b"v2!" and found[0].size == 3
        assert len(reads) == 2
        os.unlink(meta)
        assert sidecars.read(meta) is None
    finally:
        await fs.close()


@needs_nowait
async def test_a_sidecar_changed_within_the_settling_time_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inode freed by one commit may come back in the next within one ctime tick:
    a record that new is read afresh each time."""
    fs, meta, _ = await _store_with(tmp_path, b"v1")
    reads = counted_reads(monkeypatch)
    sidecars = quickread.Sidecars(settled=3600)
    try:
        assert sidecars.read(meta) is not None and sidecars.read(meta) is not None
        assert len(reads) == 2
    finally:
        await fs.close()


@needs_nowait
async def test_at_most_size_sidecars_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, meta, _ = await _store_with(tmp_path, b"v1")
    await fs.put_object("b", "other", chunks(b"x"), ObjectWrite())
    other = key_path("other").meta_path(os.path.join(fs.root, "b"))
    reads = counted_reads(monkeypatch)
    sidecars = quickread.Sidecars(size=1, settled=0)
    try:
        for path in (meta, other, other, meta):
            assert sidecars.read(path) is not None
        assert reads == [meta, other, meta]  # the second of `other` from memory
    finally:
        await fs.close()


@needs_nowait
@pytest.mark.parametrize("size", [0, 1, 4096, 1 << 20])
def test_read_file_cached_gives_a_cached_file_whole_with_its_stat(
    durable_impl: str, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)  # just written: in the page cache
    found = quickread.read_file_cached(str(tmp_path / "f"), 1 << 20)
    assert found is not None
    assert found[0] == data and type(found[0]) is bytes
    assert found[1] == durable.Written.of(os.stat(tmp_path / "f"))


@needs_nowait
def test_read_file_cached_gives_up_where_it_would_wait_or_has_nothing_to_give(
    durable_impl: str, tmp_path: Path
) -> None:
    (tmp_path / "f").write_bytes(b"x" * 5000)
    assert quickread.read_file_cached(str(tmp_path / "f"), 4999) is None  # over the limit
    assert quickread.read_file_cached(str(tmp_path / "missing"), 1 << 20) is None
    assert quickread.read_file_cached(str(tmp_path), 1 << 20) is None  # a folder
    cold = tmp_path / "cold"
    cold.write_bytes(os.urandom(1 << 20))
    if not evicted(cold):
        pytest.skip("this filesystem kept the file's pages in memory")
    assert quickread.read_file_cached(str(cold), 1 << 20) is None  # it would read the disk
