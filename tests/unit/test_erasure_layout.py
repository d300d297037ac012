"""Erasure sets and drive identity: forming sets, formatting, and refusing to open drives
that moved, belong elsewhere, or changed shape."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.storage.erasure.drive import LocalDrive
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.layout import (
    LayoutError,
    form_sets,
    open_layout,
    parse_format,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def paths(tmp_path: Path) -> list[Path]:
    result = [tmp_path / f"d{i}" for i in range(8)]
    for p in result:
        p.mkdir()
    return result


@pytest.fixture
def opened() -> Iterator[list[LocalDrive]]:
    """Collects LocalDrives to close their thread pools after the test."""
    drives: list[LocalDrive] = []
    yield drives
    for d in drives:
        d.close()


def local(opened: list[LocalDrive], paths: list[Path]) -> list[LocalDrive]:
    drives = [LocalDrive(str(p)) for p in paths]
    opened.extend(drives)
    return drives


def read_format(path: Path) -> dict:
    return json.loads((path / ".smartstorage" / "format.json").read_text())


# ---------------------------------------------------------------- form_sets


def test_form_sets_reference_example() -> None:
    sets = form_sets([("N1", 4), ("N2", 4), ("N3", 4)], 6)
    assert sets == [
        [("N1", 0), ("N2", 0), ("N3", 0), ("N1", 1), ("N2", 1), ("N3", 1)],
        [("N1", 2), ("N2", 2), ("N3", 2), ("N1", 3), ("N2", 3), ("N3", 3)],
    ]


def test_form_sets_single_node_and_unequal_counts() -> None:
    assert form_sets([("a", 4)], 2) == [[("a", 0), ("a", 1)], [("a", 2), ("a", 3)]]
    # Round-robin over the nodes that still have drives.
    assert form_sets([("a", 4), ("b", 1), ("c", 3)], 4) == [
        [("a", 0), ("b", 0), ("c", 0), ("a", 1)],
        [("c", 1), ("a", 2), ("c", 2), ("a", 3)],
    ]
    assert form_sets([("a", 0), ("b", 2)], 2) == [[("b", 0), ("b", 1)]]


def test_form_sets_refuses_bad_counts() -> None:
    with pytest.raises(ValueError) as info:
        form_sets([("a", 4), ("b", 3)], 6, data_shards=4)
    assert str(info.value) == (
        "7 drives cannot form sets of 6 (4 data + 2 parity): use a multiple of 6"
    )
    with pytest.raises(ValueError, match="use a multiple of 3"):
        form_sets([("a", 0)], 3)
    with pytest.raises(ValueError, match="unique"):
        form_sets([("a", 3), ("a", 3)], 3)


# ---------------------------------------------------------------- formatting


async def test_fresh_format_and_reopen(paths: list[Path], opened: list[LocalDrive]) -> None:
    paths = paths[:6]
    layout = await open_layout(local(opened, paths), node_id="node-1", k=2, m=1)
    assert layout.fresh and layout.node_id == "node-1"
    assert (layout.k, layout.m, layout.set_size) == (2, 1, 3)
    assert [[d.name for d in s] for s in layout.sets] == [
        [str(p) for p in paths[:3]],
        [str(p) for p in paths[3:]],
    ]
    ids = [i for s in layout.drive_ids for i in s]
    assert len(set(ids)) == 6
    for i, p in enumerate(paths):
        rec = read_format(p)
        assert rec == {
            "format": 1,
            "cluster_id": layout.cluster_id,
            "node_id": "node-1",
            "drive_id": layout.drive_ids[i // 3][i % 3],
            "set_index": i // 3,
            "position": i % 3,
            "data_shards": 2,
            "parity_shards": 1,
            "sets": layout.drive_ids,
        }
        parse_format(rec, str(p))  # self-consistent

    again = await open_layout(local(opened, paths), node_id="node-1", k=2, m=1)
    assert not again.fresh and not again.missing and not again.replaced
    assert (again.cluster_id, again.drive_ids) == (layout.cluster_id, layout.drive_ids)
    assert again.slot_of(str(paths[4])) == (1, 1)

    # No node id configured: generated at first start, then taken from the drives.
    unnamed = await open_layout(local(opened, paths), node_id=None, k=2, m=1)
    assert unnamed.node_id == "node-1"
    with pytest.raises(LayoutError, match="belongs to node node-1, config says node node-2"):
        await open_layout(local(opened, paths), node_id="node-2", k=2, m=1)


async def test_generated_node_id(paths: list[Path], opened: list[LocalDrive]) -> None:
    layout = await open_layout(local(opened, paths[:3]), node_id=None, k=2, m=1)
    assert len(layout.node_id) == 36
    assert read_format(paths[0])["node_id"] == layout.node_id


async def test_drive_count_must_fit(paths: list[Path], opened: list[LocalDrive]) -> None:
    with pytest.raises(LayoutError, match="5 drives cannot form sets of 3"):
        await open_layout(local(opened, paths[:5]), node_id="n", k=2, m=1)
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    with pytest.raises(LayoutError, match="formatted as 1 set"):
        await open_layout(local(opened, paths[:6]), node_id="n", k=2, m=1)


async def test_same_drive_twice(paths: list[Path], opened: list[LocalDrive]) -> None:
    with pytest.raises(LayoutError, match="configured more than once"):
        await open_layout(local(opened, [paths[0], paths[1], paths[0]]), node_id="n", k=2, m=1)


# ---------------------------------------------------------------- refusals


async def test_swapped_drives(paths: list[Path], opened: list[LocalDrive]) -> None:
    paths = paths[:6]
    await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    swapped = [paths[0], paths[4], paths[2], paths[3], paths[1], paths[5]]
    with pytest.raises(LayoutError) as info:
        await open_layout(local(opened, swapped), node_id="n", k=2, m=1)
    message = str(info.value)
    assert str(paths[4]) in message and str(paths[1]) in message and "swapped" in message


async def test_foreign_drive(paths: list[Path], opened: list[LocalDrive], tmp_path: Path) -> None:
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    other = [tmp_path / f"o{i}" for i in range(3)]
    for p in other:
        p.mkdir()
    await open_layout(local(opened, other), node_id="n", k=2, m=1)
    mixed = [paths[0], other[1], paths[2]]
    with pytest.raises(LayoutError, match=f"foreign drive: {other[1]} belongs to cluster"):
        await open_layout(local(opened, mixed), node_id="n", k=2, m=1)


async def test_changed_erasure_layout(paths: list[Path], opened: list[LocalDrive]) -> None:
    paths = paths[:6]
    await open_layout(local(opened, paths), node_id="n", k=4, m=2)
    with pytest.raises(LayoutError) as info:
        await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    assert "drives were formatted for 4+2, config says 2+1; erasure layout cannot change" in str(
        info.value
    )
    # Checked before the drive count, which would give a less useful message.
    with pytest.raises(LayoutError, match="formatted for 4\\+2, config says 3\\+2"):
        await open_layout(local(opened, paths), node_id="n", k=3, m=2)


async def test_unformatted_drive_with_data(paths: list[Path], opened: list[LocalDrive]) -> None:
    (paths[1] / "photo.jpg").write_bytes(b"x")
    with pytest.raises(LayoutError, match=f"drive {paths[1]} has data but no .smartstorage"):
        await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    assert not (paths[0] / ".smartstorage").exists()  # nothing formatted

    # Also among formatted drives: not taken for an empty replacement.
    shutil.rmtree(paths[1])
    paths[1].mkdir()
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    shutil.rmtree(paths[2] / ".smartstorage")
    (paths[2] / "notes.txt").write_text("mine")
    with pytest.raises(LayoutError, match=f"drive {paths[2]} has data but no"):
        await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)


async def test_sets_tables_must_agree(paths: list[Path], opened: list[LocalDrive]) -> None:
    paths = paths[:6]
    layout = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    fmt = paths[5] / ".smartstorage" / "format.json"
    rec = json.loads(fmt.read_text())
    rec["sets"] = [layout.drive_ids[1], layout.drive_ids[0]]
    rec["set_index"] = 0
    fmt.write_text(json.dumps(rec))
    with pytest.raises(LayoutError, match="disagree on the sets table"):
        await open_layout(local(opened, paths), node_id="n", k=2, m=1)


async def test_copied_drive(paths: list[Path], opened: list[LocalDrive]) -> None:
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    shutil.rmtree(paths[2])
    shutil.copytree(paths[1], paths[2])
    with pytest.raises(LayoutError, match="same drive id"):
        await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)


# ---------------------------------------------------------------- degraded starts


async def test_missing_drive_stays_offline(
    paths: list[Path], opened: list[LocalDrive], caplog: pytest.LogCaptureFixture
) -> None:
    first = await open_layout(local(opened, paths), node_id="n", k=2, m=2)
    shutil.rmtree(paths[5])
    with caplog.at_level(logging.ERROR, logger="shoal.storage"):
        layout = await open_layout(local(opened, paths), node_id="n", k=2, m=2)
    assert layout.missing == [str(paths[5])]
    assert "FileNotFoundError" in layout.errors[str(paths[5])]
    assert layout.sets[1][1].name == str(paths[5])  # kept in its slot
    assert layout.drive_ids == first.drive_ids
    assert not paths[5].exists()  # not recreated, not formatted
    assert any(str(paths[5]) in r.getMessage() for r in caplog.records)

    # A set needs k+1 readable drives: one more in set 1 is too many, in set 0 fine.
    shutil.rmtree(paths[0])
    layout = await open_layout(local(opened, paths), node_id="n", k=2, m=2)
    assert layout.missing == [str(paths[0]), str(paths[5])]
    shutil.rmtree(paths[4])
    with pytest.raises(LayoutError, match="set 1 has only 2 of 4 drives readable, needs 3"):
        await open_layout(local(opened, paths), node_id="n", k=2, m=2)


async def test_no_missing_drive_with_one_parity(
    paths: list[Path], opened: list[LocalDrive]
) -> None:
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    shutil.rmtree(paths[1])
    with pytest.raises(LayoutError, match=f"set 0 has only 2 of 3 .*{paths[1]}"):
        await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)


async def test_unreadable_drive(paths: list[Path], opened: list[LocalDrive]) -> None:
    """An I/O error or permission error reading format.json, here injected."""
    await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    drives: list = local(opened, paths[:4])
    faulty = FaultyDrive(drives[2])
    faulty.fail("read_format", error=PermissionError(errno.EACCES, "Permission denied"))
    drives[2] = faulty
    layout = await open_layout(drives, node_id="n", k=2, m=2)
    assert layout.missing == [str(paths[2])]
    assert "PermissionError" in layout.errors[str(paths[2])]
    assert faulty.calls["write_format"] == 0

    faulty.fail("read_format", error=OSError(errno.EIO, "Input/output error"))
    layout = await open_layout(drives, node_id="n", k=2, m=2)
    assert layout.missing == [str(paths[2])]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads through chmod 000")
async def test_unreadable_drive_chmod(paths: list[Path], opened: list[LocalDrive]) -> None:
    await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    paths[3].chmod(0)
    try:
        layout = await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
        assert layout.missing == [str(paths[3])]
        assert "PermissionError" in layout.errors[str(paths[3])]
    finally:
        paths[3].chmod(0o755)


async def test_damaged_format_counts_as_unreadable(
    paths: list[Path], opened: list[LocalDrive]
) -> None:
    """Bit rot in format.json: the drive is kept offline, never reformatted."""
    await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    fmt = paths[1] / ".smartstorage" / "format.json"
    good = fmt.read_bytes()
    inconsistent = json.dumps({**json.loads(good), "position": 3}).encode()
    for damage in (b'{"format": 1, "clus', b'{"format": 1}', inconsistent):
        fmt.write_bytes(damage)
        layout = await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
        assert layout.missing == [str(paths[1])], damage
        assert fmt.read_bytes() == damage
    fmt.write_bytes(good)


async def test_newer_format_version_refused(paths: list[Path], opened: list[LocalDrive]) -> None:
    await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    fmt = paths[0] / ".smartstorage" / "format.json"
    fmt.write_text(json.dumps({**json.loads(fmt.read_text()), "format": 2}))
    with pytest.raises(LayoutError, match="version 2 is not supported"):
        await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)


async def test_nothing_formatted_and_a_drive_unreadable(
    paths: list[Path], opened: list[LocalDrive]
) -> None:
    """A drive folder that exists but cannot be read stops a fresh start: no cluster is
    created on part of the drives (a missing folder is created instead, below)."""
    drives: list = local(opened, paths[:3])
    faulty = FaultyDrive(drives[2])
    faulty.fail("read_format", error=PermissionError(errno.EACCES, "Permission denied"))
    drives[2] = faulty
    with pytest.raises(LayoutError, match=f"{paths[2]} .*PermissionError.*refusing to create"):
        await open_layout(drives, node_id="n", k=2, m=1)
    assert not (paths[0] / ".smartstorage").exists()
    assert faulty.calls["write_format"] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads through chmod 000")
async def test_nothing_formatted_and_a_drive_folder_unreadable(
    paths: list[Path], opened: list[LocalDrive]
) -> None:
    paths[1].chmod(0)
    try:
        with pytest.raises(LayoutError, match=f"{paths[1]} .*PermissionError"):
            await open_layout(local(opened, paths[:3]), node_id="n", k=2, m=1)
    finally:
        paths[1].chmod(0o755)
    assert not (paths[0] / ".smartstorage").exists()


async def test_missing_drive_folders_are_created_on_a_fresh_node(
    tmp_path: Path, opened: list[LocalDrive]
) -> None:
    """Like storage.directory: folders (and their parents) that do not exist yet are
    created and formatted; reopening finds the same layout."""
    paths = [tmp_path / "fresh" / f"disk{i}" / "shoal" for i in range(3)]
    paths[0].mkdir(parents=True)  # one exists, empty; the others do not
    layout = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    assert layout.fresh and layout.missing == []
    assert [read_format(p)["position"] for p in paths] == [0, 1, 2]
    again = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    assert again.drive_ids == layout.drive_ids and not again.fresh


async def test_vanished_folder_of_a_formatted_node_is_not_recreated(
    paths: list[Path], opened: list[LocalDrive], caplog: pytest.LogCaptureFixture
) -> None:
    """Once formatted, a missing folder is an unmounted disk: offline, with a hint."""
    await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    shutil.rmtree(paths[3])
    with caplog.at_level(logging.ERROR, logger="shoal.storage"):
        layout = await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    assert layout.missing == [str(paths[3])] and not paths[3].exists()
    assert any("create the folder empty" in r.getMessage() for r in caplog.records)


async def test_empty_replacement_drive(
    paths: list[Path], opened: list[LocalDrive], caplog: pytest.LogCaptureFixture
) -> None:
    paths = paths[:6]
    first = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    shutil.rmtree(paths[3])
    paths[3].mkdir()  # a new, empty disk mounted in its place
    with caplog.at_level(logging.WARNING, logger="shoal.storage"):
        layout = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    assert layout.replaced == [str(paths[3])] and layout.missing == []
    rec = read_format(paths[3])
    assert rec["drive_id"] == first.drive_ids[1][0]
    assert (rec["set_index"], rec["position"], rec["cluster_id"]) == (1, 0, first.cluster_id)
    assert rec["sets"] == first.drive_ids
    assert any("replacement" in r.getMessage() for r in caplog.records)
    again = await open_layout(local(opened, paths), node_id="n", k=2, m=1)
    assert again.replaced == []


async def test_too_many_empty_drives_in_a_set(paths: list[Path], opened: list[LocalDrive]) -> None:
    """More blank drives than parity in a set that holds data looks like failed mounts."""
    await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    (paths[0] / ".smartstorage" / "buckets").mkdir()
    (paths[0] / ".smartstorage" / "buckets" / "b.json").write_text("{}")
    for p in paths[1:4]:
        shutil.rmtree(p / ".smartstorage")
    with pytest.raises(LayoutError, match="refusing to format them"):
        await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    assert not (paths[1] / ".smartstorage").exists()

    # Without any bucket or data (a first start interrupted while formatting) it is fine.
    shutil.rmtree(paths[0] / ".smartstorage" / "buckets")
    layout = await open_layout(local(opened, paths[:4]), node_id="n", k=2, m=2)
    assert layout.replaced == [str(p) for p in paths[1:4]]
