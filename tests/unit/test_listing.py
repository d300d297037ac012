"""Listing order and paging against a brute-force reference over awkward key sets."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shoal.storage.backend import ObjectWrite, UploadInfo
from shoal.storage.diskio import makedirs, rmtree_quiet
from shoal.storage.filestore import FileStore
from shoal.storage.keys import key_path
from shoal.storage.listing import list_page, read_summary, rollup, uploads_page
from shoal.storage.walk import Walker
from tests.unit.conftest import chunks

AWKWARD = [
    "a-c",
    "a/b",
    "a/",
    "a",
    "a//b",
    "a/b/c",
    "a.b",
    "a0",
    "/lead",
    "//x",
    "trail/",
    ".",
    "..",
    "../x",
    "%",
    "é",
    "é/ü",
    "z" * 230,
    "z" * 230 + "/x",
    "z" * 219,
    "z" * 221,
    "z" * 300,
    "z" * 300 + "a",
    "z" * 241 + "/y",
    "\x01ctl",
    "😀",
    "\uffff",
    "x._storage_object",
]


def make_tree(bucket_dir: Path, keys: list[str]) -> None:
    """Sidecars only (plus some junk that must never list): what the walker reads."""
    for key in keys:
        kp = key_path(key)
        makedirs(kp.parent(str(bucket_dir)))  # (os.makedirs recurses: no 1,023-deep keys)
        rec = {"key": key, "size": len(key), "etag": "e", "last_modified": "2024-01-01T00:00:00Z"}
        Path(kp.meta_path(str(bucket_dir))).write_text(json.dumps(rec))
        Path(kp.data_path(str(bucket_dir))).write_bytes(b"")
    (bucket_dir / "orphan._storage_object").write_bytes(b"data without sidecar")
    (bucket_dir / "notes.txt").write_text("not ours")
    (bucket_dir / "%41").mkdir(exist_ok=True)
    (bucket_dir / "%41" / "hidden._storage_object.metadata.json").write_text("{}")


def reference(keys: list[str], prefix: str, delimiter: str, after: str) -> list[tuple[str, bool]]:
    """Every (item, is_common_prefix) of a listing, the obvious way."""
    items: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for k in sorted(set(keys)):
        if not k.startswith(prefix):
            continue
        cp = rollup(k, prefix, delimiter)
        if cp is not None:
            if cp in seen:
                continue
            seen.add(cp)
            item = (cp, True)
        else:
            item = (k, False)
        if item[0] > after:
            items.append(item)
    return items


def page_items(bucket_dir: Path, prefix: str, delimiter: str, after: str, max_keys: int):
    page = list_page(
        str(bucket_dir),
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        max_keys=max_keys,
        summarize=read_summary,
    )
    items = [(o.key, False) for o in page.objects] + [(p, True) for p in page.common_prefixes]
    items.sort()
    return page, items


def check_all(bucket_dir: Path, keys: list[str], prefix: str, delimiter: str, after: str) -> None:
    expected = reference(keys, prefix, delimiter, after)
    page, items = page_items(bucket_dir, prefix, delimiter, after, 100000)
    assert items == expected, (prefix, delimiter, after)
    assert not page.truncated
    for size in (1, 2, 3, 7):
        got: list[tuple[str, bool]] = []
        cursor = after
        while True:
            page, items = page_items(bucket_dir, prefix, delimiter, cursor, size)
            assert len(items) <= size
            got.extend(items)
            if not page.truncated:
                break
            assert len(items) == size
            assert page.last == items[-1][0]
            cursor = page.last
        assert got == expected, (prefix, delimiter, after, size)


def test_walker_order_is_byte_order(tmp_path: Path) -> None:
    make_tree(tmp_path, AWKWARD)
    walker = Walker(str(tmp_path))
    got, cursor = [], ""
    while (found := walker.next_key(cursor)) is not None:
        got.append(found[0])
        cursor = found[0]
    assert got == sorted(AWKWARD)
    assert sorted(AWKWARD, key=lambda k: k.encode()) == sorted(AWKWARD)


def test_a_dash_c_before_a_slash_b(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a/b", "a-c"])
    _, items = page_items(tmp_path, "", "", "", 10)
    assert [k for k, _ in items] == ["a-c", "a/b"]
    _, items = page_items(tmp_path, "", "/", "", 10)
    assert items == [("a-c", False), ("a/", True)]


@pytest.mark.parametrize("delimiter", ["", "/", "-", "z", "a/", "//"])
@pytest.mark.parametrize("prefix", ["", "a", "a/", "z" * 230, "é", "q"])
def test_awkward_set_against_reference(tmp_path: Path, prefix: str, delimiter: str) -> None:
    make_tree(tmp_path, AWKWARD)
    for after in ["", "a", "a/", "a-c", "a/b", "z" * 230, "zz", "\U0010ffff"]:
        check_all(tmp_path, AWKWARD, prefix, delimiter, after)


def test_random_sets_against_reference(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", "/", "-", ".", "é", "%", "ab", "\x01", "z" * 120]
    for round_ in range(12):
        bucket = tmp_path / f"b{round_}"
        bucket.mkdir()
        keys = sorted(
            {
                "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 7)))
                for _ in range(rng.randrange(5, 60))
            }
        )
        make_tree(bucket, keys)
        for _ in range(6):
            prefix = rng.choice(["", "a", "a/", "b", "ab/", keys[rng.randrange(len(keys))][:3]])
            delimiter = rng.choice(["", "/", "-", "b", "a/"])
            after = rng.choice(["", "a", keys[rng.randrange(len(keys))], "a/", "b-"])
            check_all(bucket, keys, prefix, delimiter, after)


def test_resume_after_common_prefix_skips_it(tmp_path: Path) -> None:
    make_tree(tmp_path, ["p/1", "p/2", "p/3/x", "q"])
    _, items = page_items(tmp_path, "", "/", "p/", 10)
    assert items == [("q", False)]
    _, items = page_items(tmp_path, "", "/", "p/1", 10)
    assert items == [("q", False)]


def test_max_keys_zero_and_truncation(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a", "b", "c/d"])
    page, items = page_items(tmp_path, "", "/", "", 0)
    assert items == [] and not page.truncated and page.last is None
    page, items = page_items(tmp_path, "", "/", "", 2)
    assert items == [("a", False), ("b", False)] and page.truncated and page.last == "b"
    page, items = page_items(tmp_path, "", "/", "b", 2)
    assert items == [("c/", True)] and not page.truncated and page.last == "c/"


def test_deep_chains_list_in_order_with_bounded_pages(tmp_path: Path) -> None:
    """Keys nested up to 1,023 deep (before the walker was iterative: RecursionError)
    list in order; each costs ~1,000 directory searches, so a page ends early
    (truncated, resumable) rather than costing a million."""
    keys = sorted(
        ["/" * d + "z" for d in range(0, 1024, 16)] + ["/" * 1023 + "z", "./" * 511 + "zz"]
    )
    try:
        make_tree(tmp_path, keys)
        page, items = page_items(tmp_path, "", "", "", 1000)
        assert page.truncated and 0 < len(items) < len(keys)
        got: list[str] = []
        cursor = ""
        while True:
            page, items = page_items(tmp_path, "", "", cursor, 1000)
            assert items and page.last == items[-1][0]
            got += [key for key, _ in items]
            if not page.truncated:
                break
            cursor = page.last
        assert got == keys
        _, items = page_items(tmp_path, "", "/", "", 1000)
        assert items == [("./", True), ("/", True), ("z", False)]
    finally:
        rmtree_quiet(str(tmp_path))


def test_missing_bucket_dir_lists_nothing(tmp_path: Path) -> None:
    assert Walker(str(tmp_path / "gone")).next_key("") is None


def _upload(key: str, n: int) -> UploadInfo:
    t = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    return UploadInfo(key, f"id{n:03d}", t, ObjectWrite())


def test_uploads_page_markers_and_prefixes() -> None:
    ups = [_upload("a", 3), _upload("a", 1), _upload("b/1", 2), _upload("b/2", 4), _upload("c", 5)]
    page = uploads_page(
        ups, prefix="", delimiter="", key_marker="", upload_id_marker="", max_uploads=10
    )
    assert [(u.key, u.upload_id) for u in page.uploads] == [
        ("a", "id001"),
        ("a", "id003"),
        ("b/1", "id002"),
        ("b/2", "id004"),
        ("c", "id005"),
    ]
    page = uploads_page(
        ups, prefix="", delimiter="/", key_marker="", upload_id_marker="", max_uploads=3
    )
    assert [u.upload_id for u in page.uploads] == ["id001", "id003"]
    assert page.common_prefixes == ["b/"] and page.truncated
    assert page.next_key_marker == "b/"
    page = uploads_page(
        ups, prefix="", delimiter="/", key_marker="b/", upload_id_marker="", max_uploads=3
    )
    assert [u.key for u in page.uploads] == ["c"] and not page.truncated
    page = uploads_page(
        ups, prefix="", delimiter="", key_marker="a", upload_id_marker="id001", max_uploads=1
    )
    assert [u.upload_id for u in page.uploads] == ["id003"] and page.truncated
    assert (page.next_key_marker, page.next_upload_id_marker) == ("a", "id003")
    page = uploads_page(
        ups, prefix="", delimiter="", key_marker="a", upload_id_marker="", max_uploads=10
    )
    assert [u.key for u in page.uploads] == ["b/1", "b/2", "c"]


@pytest.mark.anyio
async def test_listings_remember_summaries_only_while_unchanged(store: FileStore) -> None:
    """Pages reuse what they read of a key's metadata until it changes: through the store
    (its generation) or behind its back (the directory's mtime)."""

    async def sizes() -> dict[str, int]:
        page = await store.list_objects("bucket")
        return {o.key: o.size for o in page.objects}

    await store.put_object("bucket", "d/k", chunks(b"abc"), ObjectWrite())
    await store.put_object("bucket", "d/other", chunks(b"x"), ObjectWrite())
    assert await sizes() == {"d/k": 3, "d/other": 1}
    assert await sizes() == {"d/k": 3, "d/other": 1}  # from memory now
    await store.put_object("bucket", "d/k", chunks(b"abcde"), ObjectWrite())
    assert await sizes() == {"d/k": 5, "d/other": 1}
    # Another process replaces the metadata file (as every writer does: a rename).
    where = key_path("d/other")
    folder = Path(store.root, "bucket", *where.dirs)
    sidecar = folder / where.meta_name
    record = json.loads(sidecar.read_text())
    record["size"] = 7
    replacement = folder / "replacement"
    replacement.write_text(json.dumps(record))
    before = folder.stat().st_mtime_ns
    replacement.replace(sidecar)
    # (Where the file system's clock ticks coarsely, two changes within one tick share an
    # mtime; move it on as the next tick would.)
    os.utime(folder, ns=(before + 10**9, before + 10**9))
    assert (await sizes())["d/other"] == 7
