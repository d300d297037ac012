"""One key's record on a local drive: its newest version entries, and older ones in
history segments.

A key may gather any number of versions (a Terraform state file gets one per apply), yet
a PUT or a GET of it must not cost more as they pile up. So the record file keeps the
newest entries itself (at most HEAD_MAX) and names "history" segments: files of at most
SEGMENT older entries each, in the key's versions folder, with what each holds. A write
rewrites the record alone (a bounded size); once it holds more than HEAD_MAX entries, its
oldest SEGMENT move to a new segment. Reading the current version reads the record only;
a version by id, the one segment whose range covers it (a non-null S3 version id is its
entry's order, records.py); healing and ListObjectVersions read every segment.

    {"format": 1, "versions": [entries, newest first],
     "history": [{"file": "~history-{token}.json", "lo": [order, vid] of its oldest,
                  "hi": [order, vid] of its newest, "n": entries, "nulls": null entries},
                 ... newest segment first]}
    segment: {"format": 1, "versions": [entries, newest first]}

Every entry of a segment ranks below every entry of the record and of the segments
before it, so an entry's rank alone says where it is (or belongs).

Crash safety, each step one atomic file replace: a spill writes the new segment before
the record that names it (a crash leaves a file nothing names, which sweep removes); an
entry added to a segment first widens the record's summary of it; one dropped leaves its
segment first. A summary may claim more than its segment holds, never less, so no entry
is ever missed; rewriting a segment recounts its summary.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shoal.storage.backend import NULL_VERSION
from shoal.storage.diskio import read_file, unlink_quiet
from shoal.storage.durable import Written
from shoal.storage.erasure.records import Rank, VersionRecord
from shoal.storage.records import dumps, loads

#: Entries a record keeps before its oldest move to a segment.
HEAD_MAX = 128
#: Entries per segment when made (drops may leave fewer).
SEGMENT = 64
#: Below this many entries the record takes its newest segment back, so the newest
#: entries (the current version) are always in the record itself.
HEAD_MIN = 16
#: Segment files start with this (version ids never do), so sweep tells them apart.
SEGMENT_PREFIX = "~history-"


@dataclasses.dataclass(frozen=True)
class Segment:
    """The record's summary of one history segment."""

    file: str
    lo: Rank
    hi: Rank
    count: int
    nulls: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lo": list(self.lo),
            "hi": list(self.hi),
            "n": self.count,
            "nulls": self.nulls,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segment:
        lo, hi = d["lo"], d["hi"]
        return cls(
            str(d["file"]),
            (str(lo[0]), str(lo[1])),
            (str(hi[0]), str(hi[1])),
            int(d.get("n") or 0),
            int(d.get("nulls") or 0),
        )

    @classmethod
    def of(cls, file: str, entries: Sequence[VersionRecord]) -> Segment:
        """The summary of `entries` (newest first, not empty)."""
        return cls(
            file, entries[-1].rank, entries[0].rank, len(entries), sum(e.is_null for e in entries)
        )

    def covers(self, version_id: str) -> bool:
        """Whether an entry of this S3 version id may be here."""
        if version_id == NULL_VERSION:
            return self.nulls > 0
        return self.lo[0] <= version_id <= self.hi[0]


@dataclasses.dataclass
class KeyRecord:
    """One key's record file on a drive and its segments (see the module docstring).
    Not thread-safe: the drive holds the key's lock around every change."""

    path: str  # the record file
    folder: str  # the key's versions folder, where segments live
    #: Writes a file of this record's durably, as replace_atomically does (the drive's).
    write: Callable[[str, bytes], Written]
    head: list[VersionRecord] = dataclasses.field(default_factory=list)
    history: list[Segment] = dataclasses.field(default_factory=list)
    #: The record file as `save` last wrote it (its stat), None before.
    saved: Written | None = None

    @classmethod
    def load(cls, path: str, folder: str, write: Callable[[str, bytes], Written]) -> KeyRecord:
        stored = read_stored(path)
        head = [VersionRecord.from_dict(v) for v in _entries(stored)]
        history = [Segment.from_dict(s) for s in stored.get("history") or ()]
        return cls(path, folder, write, head, history)

    # -- reads -------------------------------------------------------------------------

    def segment(self, seg: Segment) -> list[VersionRecord]:
        return [VersionRecord.from_dict(v) for v in _entries(read_stored(self._file(seg)))]

    def everything(self) -> list[VersionRecord]:
        """Every entry, newest first."""
        out = list(self.head)
        for seg in self.history:
            out += self.segment(seg)
        return out

    def older(self, below: Rank | None, limit: int) -> list[VersionRecord]:
        """At most `limit` entries ranked below `below` (None: from the newest), newest
        first, reading only the segments that can hold them: a page of one key's
        versions costs the page, not the key."""
        out = [e for e in self.head if below is None or e.rank < below][:limit]
        for seg in self.history:
            if len(out) >= limit:
                break
            if below is not None and seg.lo >= below:
                continue
            out += [e for e in self.segment(seg) if below is None or e.rank < below][
                : limit - len(out)
            ]
        return out

    def window(
        self, version_id: str | None = None, *, older_null: bool = False
    ) -> list[VersionRecord]:
        """The record's entries, newest first; with `version_id` also every entry of that
        S3 version; with `older_null`, also the newest null entry below the record's
        newest one (which null version a null write replaced: storage.erasure.commits)."""
        out = {e.vid: e for e in self.head}
        nulls = sum(e.is_null for e in self.head)
        for seg in self.history:
            by_id = version_id is not None and seg.covers(version_id)
            null_here = older_null and nulls < 2 and seg.nulls > 0
            if not (by_id or null_here):
                continue
            for e in self.segment(seg):
                wanted = by_id and e.version_id == version_id
                if wanted or (older_null and nulls < 2 and e.is_null):
                    out.setdefault(e.vid, e)
                    nulls += int(e.is_null)
        return sorted(out.values(), key=lambda e: e.rank, reverse=True)

    def names(self) -> set[str]:
        """Every version folder and segment file the record names."""
        names = {seg.file for seg in self.history} | {e.vid for e in self.head}
        for seg in self.history:
            names |= {str(v["v"]) for v in _entries(read_stored(self._file(seg)))}
        return names

    # -- changes -----------------------------------------------------------------------

    def keeping_inline(self, add: VersionRecord) -> VersionRecord:
        """`add` with the inline shard of the copy it replaces, when it comes without
        one (records.py: VersionRecord.shared): each drive's shard is its own."""
        if add.inline is not None:
            return add
        copies = [e for e in self.head if e.vid == add.vid]
        for seg in self.history:
            if not copies and seg.lo <= add.rank <= seg.hi:
                copies = [e for e in self.segment(seg) if e.vid == add.vid]
        if copies and copies[0].inline is not None:
            return dataclasses.replace(add, inline=copies[0].inline)
        return add

    def change(
        self,
        add: VersionRecord | None,
        drop: Iterable[Rank],
        drop_nulls_before: str | None,
    ) -> list[VersionRecord]:
        """Add `add` (replacing its copy) and drop entries by rank, and null entries
        ordered before `drop_nulls_before`; returns the entries dropped. The caller
        writes the record (`save`) after."""
        doomed = set(drop)

        def keep(e: VersionRecord) -> bool:
            old_null = drop_nulls_before is not None and e.is_null and e.order < drop_nulls_before
            return e.rank not in doomed and not old_null

        if add is not None:
            if not self.history or (self.head and add.rank >= self.head[-1].rank):
                self.head = _merged(self.head, add)
            else:
                self._add_to_segment(add)
        dropped = [e for e in self.head if not keep(e)]
        self.head = [e for e in self.head if keep(e)]
        for seg in list(self.history):
            if not _may_hold(seg, doomed, drop_nulls_before):
                continue
            entries = self.segment(seg)
            left = [e for e in entries if keep(e)]
            if len(left) != len(entries):
                dropped += [e for e in entries if not keep(e)]
                self._rewrite(seg, left)
        return dropped

    def save(self) -> None:
        """Write the record, first spilling into a new segment or taking one back so the
        record keeps between HEAD_MIN and HEAD_MAX entries. An empty record is the
        caller's to remove."""
        retired: list[str] = []
        while len(self.head) < HEAD_MIN and self.history:
            seg = self.history.pop(0)
            self.head = self.head + self.segment(seg)
            retired.append(seg.file)
        while len(self.head) > HEAD_MAX:
            spill = self.head[-SEGMENT:]
            file = f"{SEGMENT_PREFIX}{secrets.token_hex(8)}.json"
            os.makedirs(self.folder, exist_ok=True)
            self._write(os.path.join(self.folder, file), spill)
            self.head = self.head[:-SEGMENT]
            self.history.insert(0, Segment.of(file, spill))
        self._write_record()
        for file in retired:
            unlink_quiet(os.path.join(self.folder, file))

    @property
    def empty(self) -> bool:
        return not self.head and not self.history

    def _add_to_segment(self, add: VersionRecord) -> None:
        i = next((i for i, s in enumerate(self.history) if s.lo <= add.rank), None)
        i = len(self.history) - 1 if i is None else i
        seg = self.history[i]
        entries = _merged(self.segment(seg), add)
        # The record first claims the entry (a crash then leaves a summary wider than
        # its segment, which misses nothing), then the segment gets it.
        widened = dataclasses.replace(
            seg,
            lo=min(seg.lo, add.rank),
            hi=max(seg.hi, add.rank),
            count=seg.count + 1,
            nulls=seg.nulls + int(add.is_null),
        )
        self.history[i] = widened
        self._write_record()
        self._rewrite(widened, entries)

    def _write_record(self) -> None:
        history = [s.to_dict() for s in self.history] if self.history else None
        self.saved = self.write(self.path, encode(self.head, history))

    def _rewrite(self, seg: Segment, entries: list[VersionRecord]) -> None:
        """Replace a segment's entries and recount its summary (the record is written
        after, by `save`). An emptied segment's file goes at once: a record naming a
        missing segment reads it as empty."""
        i = self.history.index(seg)
        if entries:
            self._write(self._file(seg), entries)
            self.history[i] = Segment.of(seg.file, entries)
        else:
            del self.history[i]
            unlink_quiet(self._file(seg))

    def _write(self, path: str, entries: Sequence[VersionRecord]) -> None:
        self.write(path, encode(entries))

    def _file(self, seg: Segment) -> str:
        return os.path.join(self.folder, seg.file)


def encode(entries: Sequence[VersionRecord], history: list[dict[str, Any]] | None = None) -> bytes:
    """A record (or, without `history`, a segment) as stored: the same bytes as
    records.dumps of {"format": 1, "versions": [...], "history": [...]} (compact, keys
    sorted), made from each entry's own encoding (VersionRecord.stored) so an entry is
    encoded once, not at every write of its record."""
    versions = b"[" + b",".join(e.stored for e in entries) + b"]"
    if history is None:
        return b'{"format":1,"versions":' + versions + b"}"
    return b'{"format":1,"history":' + dumps(history) + b',"versions":' + versions + b"}"


def _merged(entries: list[VersionRecord], add: VersionRecord) -> list[VersionRecord]:
    """`entries` with `add` in its place (replacing its copy), newest first."""
    out = [e for e in entries if e.vid != add.vid] + [add]
    return sorted(out, key=lambda e: e.rank, reverse=True)


def _may_hold(seg: Segment, doomed: set[Rank], drop_nulls_before: str | None) -> bool:
    if drop_nulls_before is not None and seg.nulls and seg.lo[0] < drop_nulls_before:
        return True
    return any(seg.lo <= rank <= seg.hi for rank in doomed)


def read_stored(path: str) -> dict[str, Any]:
    """A record or segment file as stored; {} if absent, torn or damaged (a damaged
    record counts as absent: healing rewrites it)."""
    try:
        data = read_file(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    try:
        stored = loads(data)
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def _entries(stored: dict[str, Any]) -> list[dict[str, Any]]:
    versions = stored.get("versions") or []
    return [v for v in versions if isinstance(v, dict) and isinstance(v.get("v"), str)]


def stored_entries(path: str, folder: str, limit: int) -> list[dict[str, Any]]:
    """A key's version dicts as stored, newest first, for a listing to summarise: the
    record's (`limit` 0), or its first `limit` entries, from segments too."""
    stored = read_stored(path)
    out = _entries(stored)
    if not limit:
        return out
    for s in stored.get("history") or ():
        if len(out) >= limit:
            break
        out += _entries(read_stored(os.path.join(folder, str(s["file"]))))
    return out[:limit]
