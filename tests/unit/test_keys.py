"""Key <-> path encoding: exact round-trips, no escapes from the bucket, sane file names."""

from __future__ import annotations

import os
import random

import pytest

from shoal.storage.errors import InvalidRequest, KeyTooLong
from shoal.storage.keys import (
    CONT_SUFFIX,
    OBJECT_MARKER,
    decode_component,
    decode_path,
    encode_component,
    is_inside,
    key_path,
    parse_dir,
    parse_meta_file,
)

AWKWARD = [
    "a",
    "a/b",
    "a-c",
    "a//b",
    "/",
    "//",
    "/etc/passwd",
    "trailing/",
    ".",
    "..",
    "./x",
    "../x",
    "../../x",
    "a/../../b",
    "a/./b",
    "...",
    ".hidden",
    "x._storage_object",
    "x._storage_object.metadata.json",
    "._storage_object",
    "a._storage_object/b",
    "%",
    "%%",
    "%2E",
    "%+",
    "a%+/b",
    "100% sure",
    "tab\there",
    "nl\nthere",
    "nul\x00byte",
    "del\x7f",
    "<xml>&amp;'\"</xml>",
    "unicode/日本語/ファイル.txt",
    "emoji/😀🎉",
    "é" * 200,
    "x" * 219,
    "x" * 220,
    "x" * 221,
    "x" * 240,
    "x" * 241,
    "d" * 300 + "/f",
    "a/" + "é" * 400,
    "." * 300,
    "%" * 300,
    "\x01" * 300,
    "ab" * 512,
    "/" * 1024,
    "a/" * 512,
]


def _roundtrip(key: str) -> None:
    kp = key_path(key)
    assert decode_path(kp.dirs, kp.leaf) == key
    for comp in (*kp.dirs, kp.meta_name):
        assert len(comp.encode("utf-8")) <= 255, comp
        assert comp not in ("", ".", "..")
        assert "/" not in comp and "\0" not in comp
    for comp in kp.dirs:
        assert OBJECT_MARKER not in comp
        assert parse_dir(comp) is not None
    assert kp.leaf.count(OBJECT_MARKER) == 0
    assert parse_meta_file(kp.meta_name) == decode_component(kp.leaf)
    assert parse_meta_file(kp.data_name) is None
    base = "/data/bucket"
    path = os.path.normpath(kp.meta_path(base))
    assert is_inside(base, path), (key, path)


@pytest.mark.parametrize("key", AWKWARD)
def test_awkward_keys_round_trip(key: str) -> None:
    _roundtrip(key)


def test_random_unicode_keys_round_trip() -> None:
    rng = random.Random(1234)
    pools = [
        "abc/",
        "./%+-_",
        "".join(chr(c) for c in range(0, 0x80)),
        "éüßçñ日本語😀\u200b\ufeff",
    ]
    for _ in range(3000):
        pool = rng.choice(pools) + "/"
        length = rng.choice([1, 2, 5, 20, 100, 300])
        key = "".join(rng.choice(pool) for _ in range(length))
        if rng.random() < 0.3:
            key = "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 200)))
            key = key.encode("utf-8", "ignore").decode("utf-8", "ignore") or "k"
            key = "".join(ch for ch in key if not 0xD800 <= ord(ch) <= 0xDFFF) or "k"
        while len(key.encode("utf-8")) > 1024:
            key = key[:-1]
        _roundtrip(key)


def test_distinct_keys_distinct_paths() -> None:
    keys = {*AWKWARD, "a/b/", "a/b//", "ab", "a%2Fb", "%2E", "%25"}
    paths = {os.path.join(*key_path(k).dirs, key_path(k).data_name) for k in keys}
    assert len(paths) == len(keys)


@pytest.mark.parametrize("key", ["../../x", "a/../../b", "/etc/passwd", "..", "../", "/../.."])
def test_hostile_keys_stay_inside(key: str) -> None:
    kp = key_path(key)
    base = "/srv/data/bucket"
    resolved = os.path.normpath(kp.data_path(base))
    assert resolved.startswith(base + "/")
    assert ".." not in kp.dirs and "." not in kp.dirs


def test_component_rules() -> None:
    assert encode_component("") == "%"
    assert encode_component(".") == "%2E"
    assert encode_component("..") == "%2E%2E"
    assert encode_component("...") == "..."
    assert encode_component("50%") == "50%25"
    assert encode_component("a\nb") == "a%0Ab"
    assert encode_component("x._storage_object") == "x%2E_storage_object"
    assert decode_component("%") == ""
    assert decode_component("x%2E_storage_object") == "x._storage_object"
    with pytest.raises(ValueError):
        decode_component("bad%zz")
    with pytest.raises(ValueError):
        decode_component("trailing%2")


def test_long_segments_use_continuations() -> None:
    kp = key_path("s" * 500 + "/f")
    assert kp.dirs[0].endswith(CONT_SUFFIX)
    assert not kp.dirs[-1].endswith(CONT_SUFFIX)
    kp = key_path("f" * 500)
    assert all(d.endswith(CONT_SUFFIX) for d in kp.dirs)
    assert len(kp.meta_name.encode()) <= 255


def test_foreign_names_are_ignored() -> None:
    assert parse_dir("%41") is None  # not canonical: "A" encodes as "A"
    assert parse_dir("x._storage_object") is None
    assert parse_dir("bad%") is None
    assert parse_dir("%+") is None
    assert parse_meta_file("notes.txt") is None
    assert parse_meta_file("a._storage_object") is None
    assert parse_meta_file("a._storage_object.metadata.json.tmp") is None
    assert parse_meta_file("%61._storage_object.metadata.json") is None


def test_key_limits() -> None:
    key_path("k" * 1024)
    with pytest.raises(KeyTooLong):
        key_path("k" * 1025)
    with pytest.raises(KeyTooLong):
        key_path("é" * 513)
    with pytest.raises(InvalidRequest):
        key_path("lone \udc80 surrogate")
