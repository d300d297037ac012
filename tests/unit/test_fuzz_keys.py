"""Hypothesis properties of the key ↔ path mapping and of listing on any input.

- every legal key round-trips through key_path / decode_path, and its path components
  can never leave the bucket directory or exceed a file name's 255 bytes;
- distinct keys get distinct paths;
- decoding any name found on disk (any text, surrogate escapes included) never raises;
- FileStore's listings, given any prefix / delimiter / marker strings (NUL, surrogates,
  huge prefixes), answer a page or a StorageError — never another exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.storage.backend import MAX_KEY_BYTES, ObjectWrite
from shoal.storage.diskio import rmtree_quiet
from shoal.storage.durable import Written
from shoal.storage.erasure.localrecords import LocalRecords
from shoal.storage.errors import StorageError
from shoal.storage.filestore import FileStore
from shoal.storage.keys import (
    CONT_SUFFIX,
    META_SUFFIX,
    OBJECT_MARKER,
    decode_path,
    encode_component,
    is_inside,
    key_path,
    parse_data_file,
    parse_dir,
    parse_meta_file,
)
from shoal.storage.listing import list_page
from shoal.storage.walk import find_leftovers

#: Characters keys are made of: mostly the awkward ones, plus any code point.
_AWKWARD = st.sampled_from(["/", ".", "%", "+", "\x00", "\x01", "\x7f", "é", "😀", "_", "s"])
_ANY_CHAR = st.characters(exclude_categories=["Cs"])  # keys are valid UTF-8: no surrogates
KEY_TEXT = st.text(st.one_of(_AWKWARD, _ANY_CHAR), min_size=1, max_size=400)
MARKERS = st.sampled_from([OBJECT_MARKER, OBJECT_MARKER[1:], CONT_SUFFIX, "%2E", "..", "%"])


@st.composite
def keys(draw: st.DrawFn) -> str:
    """Legal keys: 1..1,024 UTF-8 bytes, often built of awkward pieces."""
    parts = draw(st.lists(st.one_of(KEY_TEXT, MARKERS), min_size=1, max_size=6))
    key = "".join(parts)
    while len(key.encode()) > MAX_KEY_BYTES:
        key = key[:-1]
    return key or "k"


@given(keys())
def test_every_legal_key_round_trips_and_stays_inside(key: str) -> None:
    kp = key_path(key)
    assert decode_path(kp.dirs, kp.leaf) == key
    base = "/srv/data/bucket"
    for comp in (*kp.dirs, kp.data_name, kp.meta_name):
        assert comp not in ("", ".", "..")
        assert "/" not in comp and "\0" not in comp
        assert len(comp.encode()) <= 255
    for name in kp.dirs:
        assert parse_dir(name) is not None
    assert parse_meta_file(kp.meta_name) is not None
    assert parse_data_file(kp.data_name) is not None
    assert is_inside(base, os.path.normpath(kp.meta_path(base)))


@given(keys(), keys())
def test_distinct_keys_get_distinct_paths(a: str, b: str) -> None:
    if a != b:
        assert key_path(a).meta_path("/b") != key_path(b).meta_path("/b")


#: Anything a directory entry's name can be as Python sees it (surrogate escapes for
#: bytes that are not UTF-8 included), biased toward our own markers.
NAMES = st.one_of(
    st.text(st.characters(), max_size=300),
    st.builds(lambda a, m, b: a + m + b, st.text(max_size=20), MARKERS, st.text(max_size=20)),
    st.binary(max_size=60).map(os.fsdecode),
)


@given(NAMES)
def test_decoding_any_name_never_raises(name: str) -> None:
    parsed = parse_dir(name)
    if parsed is not None:
        text, cont = parsed
        assert encode_component(text) + (CONT_SUFFIX if cont else "") == name
    for parse in (parse_meta_file, parse_data_file):
        text = parse(name)
        if text is not None:
            text.encode("utf-8")  # only names we could have written decode
            assert encode_component(text) == name[: name.index(OBJECT_MARKER)]


#: Listing parameters as a client may send them: any text, NUL and surrogates included,
#: sometimes far longer than a path can be.
PARAM = st.one_of(
    st.text(st.characters(), max_size=40),
    st.text(st.one_of(_AWKWARD, st.just("\udcff")), max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "/", "%", "é/"]), st.integers(0, 5000)),
)


@pytest.fixture(scope="module")
def listed_store(tmp_path_factory: pytest.TempPathFactory):
    """One store with a bucket of awkward keys, shared by the listing fuzz examples."""
    loop = asyncio.new_event_loop()
    store = FileStore(tmp_path_factory.mktemp("fuzz") / "data")

    async def body(data: bytes):
        yield data

    async def setup() -> None:

        await store.open()
        await store.create_bucket("b")
        for key in ["a", "a/b", "a//c", "./x", "%", "\x00", "é/ü", "z" * 300, "/" * 40 + "d"]:
            await store.put_object("b", key, body(b"x"), ObjectWrite())

    loop.run_until_complete(setup())
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()


@given(PARAM, PARAM, PARAM, st.integers(-1, 1001))
def test_listing_any_parameters_is_a_page_or_storage_error(
    listed_store, prefix: str, delimiter: str, marker: str, max_keys: int
) -> None:
    loop, store = listed_store
    for call in (
        lambda: store.list_objects(
            "b", prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
        ),
        lambda: store.list_multipart_uploads(
            "b", prefix=prefix, delimiter=delimiter, key_marker=marker, max_uploads=max_keys
        ),
    ):
        try:
            page = loop.run_until_complete(call())
        except StorageError:
            continue
        keys = [getattr(o, "key", None) for o in getattr(page, "objects", [])]
        assert all(k is not None and k.startswith(prefix) and k > marker for k in keys)


def test_marker_and_prefix_with_nul_list_normally(tmp_path: Path) -> None:
    """NUL sorts before every other character; a NUL in a key is stored escaped."""

    async def main() -> list[str]:

        async def body():
            yield b"x"

        store = FileStore(tmp_path / "data")
        await store.open()
        try:
            await store.create_bucket("b")
            for key in ["a", "a\x00", "a\x00b", "ab"]:
                await store.put_object("b", key, body(), ObjectWrite())
            page = await store.list_objects("b", prefix="a\x00", after="a\x00")
            return [o.key for o in page.objects]
        finally:
            await store.close()

    assert asyncio.run(main()) == ["a\x00b"]


#: File names a directory can hold, as bytes (any but "/" and NUL, at most 255).
DISK_NAMES = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.builds(
        lambda a, m, b: (a + m + b).encode("utf-8", "surrogateescape"),
        st.text(max_size=10),
        st.sampled_from([OBJECT_MARKER, OBJECT_MARKER + META_SUFFIX, CONT_SUFFIX, "%", "%2E"]),
        st.text(max_size=10),
    ),
).filter(lambda b: b not in (b".", b"..") and b"/" not in b and b"\0" not in b and len(b) < 256)


@settings(max_examples=60)
@given(st.lists(st.tuples(DISK_NAMES, st.booleans(), st.booleans()), max_size=12))
def test_walking_any_directory_contents_never_raises(
    entries: list[tuple[bytes, bool, bool]],
) -> None:
    """Whatever an operator or a crash left in a bucket directory, listing and the
    leftover scan answer; every key they report is one whose sidecar is really there."""
    base = tempfile.mkdtemp()
    try:
        bucket = os.path.join(base, "b")
        os.mkdir(bucket)
        for name, is_dir, nested in entries:
            path = os.path.join(os.fsencode(bucket), name)
            with contextlib.suppress(OSError):  # the name is taken already
                if is_dir:
                    os.mkdir(path)
                    if nested:
                        Path(os.fsdecode(path), "x" + OBJECT_MARKER + META_SUFFIX).write_text("{}")
                else:
                    Path(os.fsdecode(path)).write_text("{}")
        page = list_page(
            bucket, prefix="", delimiter="", after="", max_keys=100, summarize=lambda k, p: k
        )
        for key in page.objects:
            assert os.path.isfile(key_path(key).meta_path(bucket))
        find_leftovers(bucket)
    finally:
        rmtree_quiet(base)


@given(keys())
def test_an_erasure_drive_keeps_a_record_where_the_key_path_says(key: str) -> None:
    """LocalRecords.path (string joins of a cached relative path) is the key's meta path
    below the bucket's data folder on that drive, as os.path would make it."""
    root = "/srv/d3/.smartstorage"
    records = LocalRecords(root, require_root=lambda: None, ready=lambda: True, replace=_no_writes)
    bucket_dir = os.path.join(root, "data", "bucket")
    kp = key_path(key)
    assert records.path("bucket", key) == (kp.meta_path(bucket_dir), bucket_dir, kp.dirs)


def _no_writes(target: str, data: bytes) -> Written:
    raise AssertionError(f"nothing is written here ({target})")


@given(keys(), st.integers(min_value=1, max_value=3000))
def test_the_file_store_finds_a_current_object_where_the_key_path_says(
    key: str, depth: int
) -> None:
    """FileStore._current_paths (cached per root, bucket and key) is the key's sidecar
    and data path below the bucket's folder, as _locate makes them; None, so that the
    thread path refuses it, where the sidecar's path would be too long for the kernel."""
    store = FileStore("unused")
    store.root = "/srv/" + "d" * depth
    store._seen_buckets.add("bucket")
    kp = key_path(key)
    bucket_dir = os.path.join(store.root, "bucket")
    meta = kp.meta_path(bucket_dir)
    expected = None if len(os.fsencode(meta)) >= 4096 else (meta, kp.data_path(bucket_dir))
    assert store._current_paths("bucket", key) == expected
    assert store._current_paths("unseen", key) is None
