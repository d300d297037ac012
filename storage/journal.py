"""Journaled changes of a versioned key: several renames decided by one record.

A write or delete in a versioned bucket moves several files at once (the current version
into the key's version directory, a version out of it, new data into place). Each such
change is a *plan*: a list of renames, each guarded by the inode of the file it moves,
plus where the plan record itself lands at the end (the new metadata sidecar or delete
marker, or nowhere). Deleting is a rename into the temporary area too.

The plan is decided when its record (the new version's metadata, if any, plus a `plan`
section) is written whole and fsynced in this process's temporary area, as `*.plan`,
with any new data fsynced as well (see commit.decide_and_apply for why the data's fsync
may follow the record's). Applying it performs the renames in order; a rename whose
source is gone or has another inode was done already, so a plan can be applied again
from the start after a crash (recover() in storage.commit does that for dead processes)
and every rename happens once. Readers ignore the `plan` section of a record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.storage.diskio import (
    data_matches,
    fsync_dir,
    makedirs_below,
    read_json,
    unlink_quiet,
    write_decision,
)
from shoal.storage.errors import NoSuchBucket
from shoal.storage.records import dumps

if TYPE_CHECKING:
    from shoal.storage.commit import TempArea

PLAN_SUFFIX = ".plan"
#: Where a rename's target lives, so a missing parent can be re-created there (and only
#: there: never a bucket directory a concurrent DeleteBucket removed).
KEY, VERSIONS, TEMP = "key", "versions", "temp"


@dataclass(frozen=True)
class Move:
    src: str
    dst: str
    inode: int  # of src when the plan was made
    place: str  # KEY, VERSIONS or TEMP: where dst is


@dataclass(frozen=True)
class Plan:
    """One key's renames; paths are relative to the store root in the record."""

    lock: str
    bucket_dir: str
    versions_root: str  # .versions/{bucket}
    dirs: tuple[str, ...]  # the key's directories (KeyPath.dirs)
    vname: str  # the key's version directory name, inside those directories
    moves: tuple[Move, ...]
    #: Where the record goes once the moves are done (None: it is deleted).
    final: str | None = None
    #: New data this plan installs (its first move), checked against the record's size
    #: and etag on recovery, and its inode once moved (a later write supersedes it).
    data_tmp: str | None = None
    data: str | None = None
    data_inode: int = 0

    def to_dict(self, root: str) -> dict[str, Any]:
        base = root.rstrip(os.sep) + os.sep

        def rel(p: str | None) -> str | None:
            if p is None:
                return None
            return p[len(base) :] if p.startswith(base) else os.path.relpath(p, root)

        return {
            "lock": self.lock,
            "bucket_dir": rel(self.bucket_dir),
            "versions_root": rel(self.versions_root),
            "dirs": list(self.dirs),
            "vname": self.vname,
            "moves": [[rel(m.src), rel(m.dst), m.inode, m.place] for m in self.moves],
            "final": rel(self.final),
            "data_tmp": rel(self.data_tmp),
            "data": rel(self.data),
            "data_inode": self.data_inode,
        }

    @classmethod
    def from_dict(cls, root: str, d: dict[str, Any]) -> Plan:
        def ab(p: str | None) -> str | None:
            return None if p is None else os.path.join(root, p)

        def must(p: str) -> str:
            return os.path.join(root, p)

        return cls(
            lock=str(d["lock"]),
            bucket_dir=must(d["bucket_dir"]),
            versions_root=must(d["versions_root"]),
            dirs=tuple(str(x) for x in d["dirs"]),
            vname=str(d["vname"]),
            moves=tuple(
                Move(must(str(s)), must(str(t)), int(i), str(p)) for s, t, i, p in d["moves"]
            ),
            final=ab(d.get("final")),
            data_tmp=ab(d.get("data_tmp")),
            data=ab(d.get("data")),
            data_inode=int(d.get("data_inode") or 0),
        )

    def version_dir(self) -> str:
        return os.path.join(self.versions_root, *self.dirs, self.vname)


def decide(
    temp: TempArea, root: str, record: dict[str, Any], plan: Plan, *, data_synced: bool = True
) -> None:
    """Decide `plan` (record written whole and fsynced) and apply it. Call with the key's
    lock held. NoSuchBucket if the bucket went away meanwhile (the plan is dropped)."""
    decided = temp.path(PLAN_SUFFIX)
    try:
        payload = dumps({**record, "plan": plan.to_dict(root)})
        write_decision(decided, payload, None if data_synced else plan.data_tmp)
    except BaseException:
        unlink_quiet(decided)
        if plan.data_tmp is not None:
            unlink_quiet(plan.data_tmp)
        raise
    for attempt in range(3):
        try:
            apply(plan, decided)
            return
        except NoSuchBucket:
            unlink_quiet(decided)
            if plan.data_tmp is not None:
                unlink_quiet(plan.data_tmp)
            raise
        except OSError:
            # Applying again is safe (every rename is guarded); if it keeps failing the
            # record stays, and the next start finishes the plan.
            if attempt == 2:
                raise


def apply(plan: Plan, record_path: str) -> None:
    """Perform the renames not done yet, make them durable, then place the record.

    Directories the renames changed are fsynced before the record leaves the temporary
    area, except the temporary area itself (nothing there needs to survive once the
    plan is done) and the record's own destination, fsynced once it is there (the
    commit of a never-versioned write makes its data and record durable the same way).
    """
    touched: set[str] = set()
    for move in plan.moves:
        if _move(plan, move):
            touched.add(os.path.dirname(move.src))
            touched.add(os.path.dirname(move.dst))
    touched.discard(os.path.dirname(record_path))
    touched -= {os.path.dirname(m.dst) for m in plan.moves if m.place == TEMP}
    if plan.final is not None:
        touched.discard(os.path.dirname(plan.final))
    for path in sorted(touched):
        try:
            fsync_dir(path)
        except FileNotFoundError:
            continue  # emptied and removed by a concurrent change of a sibling key
    if plan.final is None:
        unlink_quiet(record_path)
        return
    _rename(plan, Move(record_path, plan.final, 0, VERSIONS if _in_versions(plan) else KEY))
    fsync_dir(os.path.dirname(plan.final))


def _in_versions(plan: Plan) -> bool:
    return plan.final is not None and plan.final.startswith(plan.version_dir() + os.sep)


def _move(plan: Plan, move: Move) -> bool:
    """One guarded rename; False if it was done before (or its source is not ours)."""
    try:
        if os.lstat(move.src).st_ino != move.inode:
            return False
    except (FileNotFoundError, NotADirectoryError):
        return False
    _rename(plan, move)
    return True


def _rename(plan: Plan, move: Move) -> None:
    """os.replace, creating the target's parents where they belong when missing."""
    for _ in range(100):
        try:
            os.replace(move.src, move.dst)
            return
        except FileNotFoundError:
            if not os.path.lexists(move.src):
                raise
            if move.place == TEMP:
                raise
            try:
                _make_parents(plan, move.place)
            except FileNotFoundError:
                continue  # a parent emptied by another key's change went away: again
    raise RuntimeError("could not create a version's directories")  # pragma: no cover


def _make_parents(plan: Plan, place: str) -> None:
    if place == KEY:
        makedirs_below(plan.bucket_dir, plan.dirs)
        return
    if not os.path.isdir(plan.bucket_dir):
        raise NoSuchBucket("The specified bucket does not exist")
    os.makedirs(plan.versions_root, exist_ok=True)
    makedirs_below(plan.versions_root, (*plan.dirs, plan.vname))


def roll_forward(root: str, record_path: str) -> bool:
    """Finish a decided plan found after a crash; False if it was moot or superseded."""
    try:
        record = read_json(record_path)
        plan = Plan.from_dict(root, record["plan"])
    except (OSError, ValueError, KeyError, TypeError):
        unlink_quiet(record_path)
        return False
    if plan.data_tmp is not None:
        if os.path.exists(plan.data_tmp):
            if not data_matches(plan.data_tmp, record):
                unlink_quiet(record_path)  # undecided: its data never became durable
                return False
        else:
            try:
                current = os.stat(plan.data or "").st_ino
            except (FileNotFoundError, NotADirectoryError):
                current = -1
            if current != plan.data_inode:
                unlink_quiet(record_path)  # a later write replaced what it installed
                return False
    try:
        apply(plan, record_path)
    except NoSuchBucket:
        unlink_quiet(record_path)
        return False
    return True
