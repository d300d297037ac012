"""Versioning in the FileStore and the erasure store against a brute-force model of S3's
semantics: random sequences of writes, deletes and deletes by version id over a few keys
(with the bucket unversioned, Enabled or Suspended), then ListObjectVersions paged with
random sizes, prefixes and delimiters, ListObjects and reads compared with the model —
and for the erasure store, that once its background work is done every drive lists
exactly the model's versions and holds no other version's shards."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import Counter
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.storage import errors
from shoal.storage.backend import NULL_VERSION, Backend, ObjectWrite
from shoal.storage.erasure import history
from shoal.storage.erasure.drive import object_dir
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.filestore import FileStore
from shoal.storage.listing import rollup
from tests.unit.conftest import chunks

KEYS = ["a", "a-c", "a/b", "a/c/d", "b", "é/x"]


@dataclass
class V:
    vid: str
    marker: bool
    data: bytes


Model = dict[str, list[V]]  # newest first

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("delete-version"), st.sampled_from(KEYS), st.integers(0, 5)),
    st.tuples(st.just("state"), st.sampled_from(["Enabled", "Suspended"])),
)


async def apply(fs: Backend, model: Model, state: str, step: tuple, n: int) -> str:
    kind = step[0]
    if kind == "state":
        await fs.update_bucket("bucket", versioning=step[1])
        return str(step[1])
    key = step[1]
    versions = model.setdefault(key, [])
    if kind == "put":
        data = b"%d" % n
        meta = await fs.put_object("bucket", key, chunks(data), ObjectWrite())
        if state == "Enabled":
            assert meta.version_id != NULL_VERSION
        else:
            assert meta.version_id == NULL_VERSION
            versions[:] = [v for v in versions if v.vid != NULL_VERSION]
        versions.insert(0, V(meta.version_id, False, data))
    elif kind == "delete":
        result = await fs.delete_object("bucket", key)
        if state == "":
            versions.clear()
            assert result.version_id is None
        else:
            assert result.delete_marker
            if state == "Suspended":
                assert result.version_id == NULL_VERSION
                versions[:] = [v for v in versions if v.vid != NULL_VERSION]
            assert result.version_id is not None
            versions.insert(0, V(result.version_id, True, b""))
    elif versions:
        gone = versions.pop(step[2] % len(versions))
        result = await fs.delete_object("bucket", key, version_id=gone.vid)
        assert (result.version_id, result.delete_marker) == (gone.vid, gone.marker)
    return state


def expected(model: Model, prefix: str, delimiter: str) -> tuple[list[tuple], list[str]]:
    versions: list[tuple] = []
    prefixes: list[str] = []
    for key in sorted(model):
        if not key.startswith(prefix) or not model[key]:
            continue
        cp = rollup(key, prefix, delimiter)
        if cp is not None:
            if cp not in prefixes:
                prefixes.append(cp)
            continue
        versions += [(key, v.vid, i == 0, v.marker) for i, v in enumerate(model[key])]
    return versions, prefixes


async def paged(
    fs: Backend, prefix: str, delimiter: str, size: int
) -> tuple[list[tuple], list[str]]:
    versions: list[tuple] = []
    prefixes: list[str] = []
    key_marker, vid_marker = "", ""
    for _ in range(200):
        page = await fs.list_object_versions(
            "bucket",
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            version_id_marker=vid_marker,
            max_keys=size,
        )
        assert len(page.versions) + len(page.common_prefixes) <= size
        versions += [(v.key, v.version_id, v.is_latest, v.delete_marker) for v in page.versions]
        prefixes += page.common_prefixes
        if not page.truncated:
            return versions, prefixes
        assert page.next_key_marker
        key_marker, vid_marker = page.next_key_marker, page.next_version_id_marker or ""
    raise AssertionError("listing did not end")


async def check(fs: Backend, model: Model, listings: list[tuple[str, str, int]]) -> None:
    for prefix, delimiter, size in listings:
        assert await paged(fs, prefix, delimiter, size) == expected(model, prefix, delimiter)
    current = sorted(k for k, vs in model.items() if vs and not vs[0].marker)
    assert [o.key for o in (await fs.list_objects("bucket")).objects] == current
    for key, vs in model.items():
        for i, v in enumerate(vs):
            if v.marker:
                continue
            async with await fs.open_object("bucket", key, v.vid) as reader:
                assert b"".join([bytes(c) async for c in reader.stream()]) == v.data
            if i == 0:
                assert (await fs.head_object("bucket", key)).version_id == v.vid
        if vs and vs[0].marker:
            try:
                await fs.head_object("bucket", key)
            except errors.NoSuchKey as exc:
                assert exc.delete_marker == vs[0].vid
            else:
                raise AssertionError("a key whose current version is a marker was found")


def open_store(kind: str, tmp: str) -> Backend:
    if kind == "file":
        return FileStore(tmp)
    # "erasure", or "erasure-segmented" (the same store, history segments made small)
    drives = [os.path.join(tmp, f"drive{i}") for i in range(6)]
    return ErasureStore(drives, data_shards=4, parity_shards=2, chunk_size=4096)


async def settled_drives(store: ErasureStore, model: Model) -> None:
    """Background work done, the drives list the model's versions and nothing else (no
    null entry a newer one hid, no marker that stood for a deletion), each version on a
    write quorum of them (all, unless a drive slowed down past its timeout under load),
    and keep no shards of any other."""
    while store._background:
        await asyncio.wait(set(store._background), timeout=5)
    for key, versions in model.items():
        wanted = {v.vid for v in versions}
        seen: Counter[str] = Counter()
        folders: set[str] = set()
        named: set[str] = set()
        for drive in store._local:
            listed = await drive.read_object("bucket", key, everything=True)
            assert {e.version_id for e in listed} <= wanted
            seen.update(e.version_id for e in listed)
            named.update(e.vid for e in listed)
            folder = os.path.join(drive.root, object_dir("bucket", key))
            names = os.listdir(folder) if os.path.isdir(folder) else ()
            folders.update(n for n in names if not n.startswith(history.SEGMENT_PREFIX))
        assert all(seen[vid] >= store.write_quorum for vid in wanted)
        assert folders <= named


@pytest.mark.parametrize("kind", ["file", "erasure", "erasure-segmented"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(op, max_size=30),
    listings=st.lists(
        st.tuples(st.sampled_from(["", "a", "a/"]), st.sampled_from(["", "/"]), st.integers(1, 4)),
        min_size=1,
        max_size=3,
    ),
)
def test_versions_match_the_model(
    kind: str, steps: list[tuple], listings: list[tuple[str, str, int]]
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
            if kind == "erasure-segmented":
                # Records of a few entries, so keys' versions go into history segments.
                patch.setattr(history, "HEAD_MAX", 3)
                patch.setattr(history, "SEGMENT", 2)
                patch.setattr(history, "HEAD_MIN", 1)
            fs = open_store(kind, tmp)
            await fs.open()
            try:
                await fs.create_bucket("bucket")
                model: Model = {}
                state = ""
                for n, step in enumerate(steps):
                    state = await apply(fs, model, state, step, n)
                await check(fs, model, listings)
                if isinstance(fs, ErasureStore):
                    await settled_drives(fs, model)
                # The same answers from a store opened afresh on the directory.
                await fs.close()
                fs = open_store(kind, tmp)
                await fs.open()
                await check(fs, model, listings)
                if not any(model.values()):
                    await fs.delete_bucket("bucket")
            finally:
                await fs.close()

    anyio.run(main)
