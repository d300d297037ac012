"""Crash-safe commits of object writes, and their recovery.

A write is decided when its commit record (the object's metadata record plus a `commit`
section naming the temporary data, the targets and, for multipart completion, the upload
directory) has been written whole and fsynced as `*.commit` in the temporary area, with
the data fsynced too. Applying it renames the data into place, moves the upload
directory away, then renames the record itself to the metadata sidecar — readers ignore
the `commit` section. A crash at any point therefore leaves either nothing decided
(temporary files only, deleted at the next start; a torn or unparsable record, or one
whose data does not match it, counts as undecided) or a `.commit` that the next start
rolls forward.

Each process (uvicorn worker) owns one directory `.tmp/p{pid}-{token}/`, held through an
flock on its `owner.lock`: recovery only touches directories whose owner is dead, so a
worker that starts late never deletes the files of one that is still writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shoal.storage import durable, journal
from shoal.storage.diskio import (
    StripedLocks,
    data_matches,
    fsync_dir,
    makedirs_below,
    read_json,
    rmtree_quiet,
    spread_subfolders,
    unlink_quiet,
    write_decision,
)
from shoal.storage.errors import NoSuchBucket
from shoal.storage.journal import PLAN_SUFFIX
from shoal.storage.records import dumps

OWNER_LOCK = "owner.lock"


class TempArea:
    """This process's scratch directory on the store's filesystem."""

    def __init__(self, tmp_root: str) -> None:
        self.tmp_root = tmp_root
        self.dir = ""
        self._fd = -1
        self._names = itertools.count()

    def open(self) -> None:
        os.makedirs(self.tmp_root, exist_ok=True)
        spread_subfolders(self.tmp_root)
        self.dir = os.path.join(self.tmp_root, f"p{os.getpid()}-{secrets.token_hex(4)}")
        os.mkdir(self.dir)
        self._fd = os.open(os.path.join(self.dir, OWNER_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def close(self) -> None:
        if self._fd >= 0:
            rmtree_quiet(self.dir)
            os.close(self._fd)
            self._fd = -1

    def path(self, suffix: str) -> str:
        """A fresh name in this process's own directory (a counter: no syscall)."""
        if not self.dir:  # else the name would be relative: a file in the working directory
            raise RuntimeError("the store's temp area is not open")
        return os.path.join(self.dir, f"{next(self._names):x}{suffix}")

    @contextlib.contextmanager
    def abandoned(self) -> Iterator[list[str]]:
        """Temp directories of dead processes (locked while yielded) plus loose files."""
        held: list[int] = []
        found: list[str] = []
        try:
            for entry in os.scandir(self.tmp_root):
                if entry.path == self.dir:
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    found.append(entry.path)
                    continue
                try:
                    fd = os.open(os.path.join(entry.path, OWNER_LOCK), os.O_RDWR | os.O_CREAT)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # its owner is alive
                    continue
                held.append(fd)
                found.append(entry.path)
            yield found
        finally:
            for fd in held:
                os.close(fd)


@dataclass
class Commit:
    """Where one decided write goes; paths relative to the store root in the record."""

    data_tmp: str
    data: str
    meta: str
    bucket_dir: str
    dirs: tuple[str, ...]
    inode: int
    lock: str
    upload_dir: str | None = None

    def to_dict(self, root: str) -> dict[str, Any]:
        base = root.rstrip(os.sep) + os.sep

        def rel(p: str) -> str:
            # Every path here was built by joining onto root: slicing is relpath's answer.
            return p[len(base) :] if p.startswith(base) else os.path.relpath(p, root)

        return {
            "data_tmp": rel(self.data_tmp),
            "data": rel(self.data),
            "meta": rel(self.meta),
            "bucket_dir": rel(self.bucket_dir),
            "dirs": list(self.dirs),
            "inode": self.inode,
            "lock": self.lock,
            "upload_dir": None if self.upload_dir is None else rel(self.upload_dir),
        }

    @classmethod
    def from_dict(cls, root: str, d: dict[str, Any]) -> Commit:
        def ab(p: str) -> str:
            return os.path.join(root, p)

        up = d.get("upload_dir")
        return cls(
            data_tmp=ab(d["data_tmp"]),
            data=ab(d["data"]),
            meta=ab(d["meta"]),
            bucket_dir=ab(d["bucket_dir"]),
            dirs=tuple(d["dirs"]),
            inode=int(d["inode"]),
            lock=str(d["lock"]),
            upload_dir=None if up is None else ab(up),
        )


def record_bytes(root: str, record: dict[str, Any], commit: Commit) -> bytes:
    """The commit record: the object's metadata plus where its pieces go."""
    return dumps({**record, "commit": commit.to_dict(root)})


def decide_and_apply(
    temp: TempArea, payload: bytes, commit: Commit, *, data_synced: bool
) -> str | None:
    """Decide the write and make it visible. Call with the key's lock held, once any
    precondition has been checked.

    The decision is the commit record, written whole and fsynced in the temporary area.
    Unsynced data is fsynced right after it: on ext4 the record's fsync has already
    flushed those blocks (one journal commit for both); on a file system that does not,
    a crash between the two leaves a record whose data does not match, which recovery
    rolls back instead of forward. Returns where the finished upload directory was
    moved, for the caller to delete once the lock is released.
    """
    decided = temp.path(".commit")
    try:
        write_decision(decided, payload, None if data_synced else commit.data_tmp)
    except BaseException:
        unlink_quiet(decided)
        unlink_quiet(commit.data_tmp)
        raise
    if commit.upload_dir is None:
        # The common case in one release of the GIL: data and record into place, their
        # folder fsynced. If the data's folders went away (a delete emptied them), the
        # steps below re-create them and go on.
        try:
            durable.sequence(
                durable.Rename(commit.data_tmp, commit.data),
                durable.Rename(decided, commit.meta),
                durable.Sync(os.path.dirname(commit.meta), folder=True),
            )
            return None
        except FileNotFoundError:
            if not os.path.exists(commit.data_tmp):
                raise
    try:
        _move_data(commit)
    except NoSuchBucket:
        unlink_quiet(decided)
        unlink_quiet(commit.data_tmp)
        raise
    trash: str | None = None
    if commit.upload_dir is not None:
        # Moved aside before the record lands, so recovery can still name it.
        trash = temp.path(".trash")
        try:
            os.replace(commit.upload_dir, trash)
        except FileNotFoundError:
            trash = None
    os.replace(decided, commit.meta)
    fsync_dir(os.path.dirname(commit.meta))
    return trash


def _move_data(commit: Commit) -> None:
    """Rename the data into place, re-creating parents a concurrent delete removed."""
    for _ in range(100):
        try:
            os.replace(commit.data_tmp, commit.data)
            return
        except FileNotFoundError:
            if not os.path.exists(commit.data_tmp):
                raise
            makedirs_below(commit.bucket_dir, commit.dirs)
    raise RuntimeError("could not create the object's directories")  # pragma: no cover


def roll_forward(root: str, commit_path: str) -> bool:
    """Finish a decided write found after a crash; False if it was superseded or moot."""
    try:
        record = read_json(commit_path)
        commit = Commit.from_dict(root, record["commit"])
    except (OSError, ValueError, KeyError, TypeError):
        unlink_quiet(commit_path)
        return False
    if os.path.exists(commit.data_tmp):
        if not data_matches(commit.data_tmp, record):
            unlink_quiet(commit_path)
            return False
        try:
            _move_data(commit)
        except (NoSuchBucket, FileNotFoundError):
            unlink_quiet(commit_path)
            return False
    else:
        # Data already moved; finish only if no later write replaced it since.
        try:
            current = os.stat(commit.data).st_ino
        except FileNotFoundError:
            current = -1
        if current != commit.inode:
            unlink_quiet(commit_path)
            return False
    if commit.upload_dir is not None:
        rmtree_quiet(commit.upload_dir)
    os.replace(commit_path, commit.meta)
    fsync_dir(os.path.dirname(commit.meta))
    return True


def recover(root: str, temp: TempArea, locks: StripedLocks) -> int:
    """Roll forward every decided write (and journaled plan, storage.journal) of dead
    processes, then drop all their files."""
    done = 0
    with temp.abandoned() as found:
        files: list[str] = []
        for path in found:
            if os.path.isdir(path):
                files.extend(os.path.join(path, n) for n in os.listdir(path))
            else:
                files.append(path)
        for name in sorted(files):
            section = {".commit": "commit", PLAN_SUFFIX: "plan"}.get(os.path.splitext(name)[1])
            if section is None:
                continue
            try:
                lock = str(read_json(name)[section]["lock"])
            except (OSError, ValueError, KeyError, TypeError):
                unlink_quiet(name)
                continue
            finish = roll_forward if section == "commit" else journal.roll_forward
            with locks.hold(lock):
                done += finish(root, name)
        for path in found:
            if os.path.isdir(path):
                rmtree_quiet(path)
            else:
                unlink_quiet(path)
    return done
