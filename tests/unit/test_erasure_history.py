"""A key's record on a drive with its history segments (storage.erasure.history), against
a plain list model: whatever adds (new versions, old ones healed in, revised copies) and
drops (by rank, hidden nulls) come, the drive holds exactly the model's entries, keeps
the newest in the record itself, reads a version by id and the nulls a commit needs
from the window, and leaves no file it does not name. Small segment sizes make every
path (spill, insert into a segment, take a segment back, empty one) happen often.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.storage.backend import NULL_VERSION, ObjectMeta
from shoal.storage.erasure import history
from shoal.storage.erasure.drive import LocalDrive
from shoal.storage.erasure.history import SEGMENT_PREFIX, KeyRecord, Segment, encode, read_stored
from shoal.storage.erasure.records import PartLayout, VersionRecord
from shoal.storage.records import dumps, loads, now

BUCKET = "b"
KEY = "k"


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "HEAD_MAX", 6)
    monkeypatch.setattr(history, "SEGMENT", 3)
    monkeypatch.setattr(history, "HEAD_MIN", 2)


def entry(order: int, null: bool, revision: int = 0) -> VersionRecord:
    vid = f"{order:08d}"
    meta = ObjectMeta(
        key=KEY,
        size=order,
        etag="e",
        last_modified=now(whole_seconds=True),
        version_id=NULL_VERSION if null else vid,
    )
    return VersionRecord(vid, meta=meta, committed=vid, revision=revision)


# An operation: ("add", order, null) | ("revise", pick) | ("drop", pick) | ("nulls", pick)
_add = st.tuples(st.just("add"), st.integers(0, 400), st.booleans())
# Adds first (so records grow past a few segments), then anything.
ops = st.tuples(
    st.lists(_add, min_size=5, max_size=50),
    st.lists(
        st.one_of(
            _add,
            st.tuples(st.just("revise"), st.integers(0, 10_000)),
            st.tuples(st.just("drop"), st.integers(0, 10_000)),
            st.tuples(st.just("nulls"), st.integers(0, 10_000)),
        ),
        max_size=40,
    ),
).map(lambda both: both[0] + both[1])


def new_drive(path: Path) -> LocalDrive:
    drive = LocalDrive(str(path))
    Path(drive.root).mkdir(parents=True)
    asyncio.run(drive.make_bucket(BUCKET))
    return drive


def check_layout(drive: LocalDrive, model: dict[str, VersionRecord]) -> None:
    path = drive.records.path(BUCKET, KEY)[0]
    record = drive.records.key_record(path)
    want = sorted(model.values(), key=lambda e: e.rank, reverse=True)
    got = record.everything()
    assert [(e.vid, e.revision) for e in got] == [(e.vid, e.revision) for e in want]
    if not want:
        assert not os.path.exists(path)
        return
    # The newest entries are in the record itself; segments are disjoint, newest first.
    assert record.head, "the current version must be in the record"
    floor = record.head[-1].rank
    for seg in record.history:
        entries = record.segment(seg)
        assert entries and seg.lo <= entries[-1].rank and entries[0].rank <= seg.hi
        assert seg.hi < floor
        floor = seg.lo
    assert len(record.head) <= history.HEAD_MAX
    # Nothing in the versions folder that the record does not name.
    folder = Path(record.folder)
    files = {p.name for p in folder.iterdir()} if folder.exists() else set()
    assert {f for f in files if f.startswith(SEGMENT_PREFIX)} == {s.file for s in record.history}
    assert record.names() >= {e.vid for e in want}
    # Record and segments are written as records.dumps writes them (history.encode).
    for file in [Path(path), *(folder / s.file for s in record.history)]:
        data = file.read_bytes()
        assert data == dumps(loads(data))


def check_window(drive: LocalDrive, model: dict[str, VersionRecord]) -> None:
    want = sorted(model.values(), key=lambda e: e.rank, reverse=True)
    window = drive.records.read(BUCKET, KEY)
    assert [e.vid for e in window[: len(window)]] == [e.vid for e in want[: len(window)]]
    for e in want[: history.HEAD_MIN]:
        assert e.vid in {w.vid for w in window}
    for e in want[::7]:
        found = drive.records.read(BUCKET, KEY, e.version_id)
        assert e.vid in {f.vid for f in found}
    nulls = [e.vid for e in want if e.is_null]
    record = drive.records.key_record(drive.records.path(BUCKET, KEY)[0])
    assert set(nulls[:2]) <= {e.vid for e in record.window(older_null=True)}
    assert set(nulls) <= {e.vid for e in drive.records.read(BUCKET, KEY, NULL_VERSION)}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_the_drive_holds_exactly_the_models_entries(tmp_path: Path, ops: list[tuple]) -> None:
    drive = new_drive(tmp_path / os.urandom(4).hex())
    try:
        model: dict[str, VersionRecord] = {}
        for op in ops:
            present = sorted(model.values(), key=lambda e: e.rank)
            if op[0] == "add":
                e = entry(op[1], op[2])
                e = model.get(e.vid, e)
                model[e.vid] = e
                drive.records.update(BUCKET, KEY, e, ())
            elif not present:
                continue
            elif op[0] == "revise":
                old = present[op[1] % len(present)]
                new = VersionRecord(
                    old.vid, meta=old.meta, committed=old.committed, revision=old.revision + 1
                )
                model[new.vid] = new
                drive.records.update(BUCKET, KEY, new, ())
            elif op[0] == "drop":
                gone = present[op[1] % len(present)]
                del model[gone.vid]
                drive.records.update(BUCKET, KEY, None, (gone.rank,))
            else:
                cut = present[op[1] % len(present)].order
                for e in present:
                    if e.is_null and e.order < cut:
                        del model[e.vid]
                drive.records.update(BUCKET, KEY, None, (), cut)
            check_layout(drive, model)
        if model:
            check_window(drive, model)
    finally:
        drive.close()


def test_a_put_rewrites_a_bounded_record(tmp_path: Path) -> None:
    """However many versions pile up, the record a PUT rewrites stays small."""
    drive = new_drive(tmp_path / "d")
    try:
        for i in range(200):
            drive.records.update(BUCKET, KEY, entry(i, False), ())
        path = drive.records.path(BUCKET, KEY)[0]
        assert len(read_stored(path)["versions"]) <= history.HEAD_MAX
        record = KeyRecord.load(path, path[: -len(".metadata.json")], drive._tmp)
        assert len(record.everything()) == 200 and len(record.history) > 10
        # The oldest version is found by its id through the segment covering it.
        assert [e.vid for e in drive.records.read(BUCKET, KEY, f"{0:08d}")][-1] == f"{0:08d}"
        # The sweep takes what nothing names, never a segment.
        assert asyncio.run(drive.sweep(BUCKET, 0)) == 0
        assert len(drive.records.read(BUCKET, KEY, everything=True)) == 200
    finally:
        drive.close()


def test_a_record_is_encoded_as_dumps_encodes_it() -> None:
    """history.encode joins the entries' own encodings: the bytes are those of
    records.dumps of the whole record, for every kind of entry and with history."""
    meta = ObjectMeta(
        key="ключ/ü", size=5, etag="e", last_modified=now(whole_seconds=True), version_id="v1"
    )
    entries = [
        VersionRecord("v3", meta=meta, inline=b"\x00shard", committed="c3", revision=2),
        VersionRecord.marker("v2"),
        VersionRecord("v1", rot=3, meta=meta, parts=(PartLayout(0, 5, 4, ((1, 2), (3, 4))),)),
    ]
    segments = [Segment("~history-ab", ("a", "b"), ("c", "d"), 2, 1)]
    for head in (entries, entries[1:], []):
        versions = [e.to_dict() for e in head]
        assert encode(head) == dumps({"format": 1, "versions": versions})
        history_dicts = [s.to_dict() for s in segments]
        assert encode(head, history_dicts) == dumps(
            {"format": 1, "versions": versions, "history": history_dicts}
        )
    assert entries[0].stored is entries[0].stored  # encoded once
