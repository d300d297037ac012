"""What a drive's sweep reclaims: temp files, and version and part folders nothing names,
left by writes a crash cut off (LocalDrive._sweep says why that is safe while other
nodes write). Plus walk_dirs, the drive's non-recursive folder walk.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from shoal.storage.diskio import object_lock_name, rmtree_quiet, unlink_quiet
from shoal.storage.erasure.localrecords import RECORD_SUFFIX, LocalRecords
from shoal.storage.keys import OBJECT_MARKER, decode_path
from shoal.storage.records import loads


def sweep_data(root: str, bucket: str, cutoff: int, records: LocalRecords) -> int:
    """Version folders no record names (see LocalDrive._sweep), in every key of
    `bucket`."""
    bucket_dir = os.path.join(root, "data", bucket)
    removed = 0
    for dirpath, dirnames, _ in walk_dirs(bucket_dir):
        versions_dirs = [d for d in dirnames if d.endswith(OBJECT_MARKER)]
        dirnames[:] = [d for d in dirnames if not d.endswith(OBJECT_MARKER)]
        for name in versions_dirs:
            rel = os.path.relpath(dirpath, bucket_dir)
            try:
                key = decode_path(
                    [] if rel == "." else rel.split(os.sep), name[: -len(OBJECT_MARKER)]
                )
            except ValueError:
                continue  # not a folder this store made
            removed += _sweep_versions(records, bucket, key, os.path.join(dirpath, name), cutoff)
    return removed


def _sweep_versions(
    records: LocalRecords, bucket: str, key: str, versions_dir: str, cutoff: int
) -> int:
    """Under the key's lock, so that no commit names a folder while it goes."""
    removed = 0
    with records.locks.hold(object_lock_name(bucket, key)):
        listed = records.key_record(versions_dir + RECORD_SUFFIX).names()
        named = []
        for entry in _scan(versions_dir):
            if entry.name in listed:
                named.append(entry.path)
            elif _mtime_ns(entry) < cutoff:
                rmtree_quiet(entry.path)
                removed += 1
        with contextlib.suppress(OSError):
            os.rmdir(versions_dir)  # only if now empty
    # In named versions, only temp files of shard writes cut off by a crash (no
    # lock needed: a temp file that old belongs to no running call).
    for top in named:
        for dirpath, _dirs, files in walk_dirs(top):
            for f in files:
                path = os.path.join(dirpath, f)
                if f.endswith(".tmp") and _mtime_ns(path) < cutoff:
                    unlink_quiet(path)
                    removed += 1
    return removed


def sweep_uploads(root: str, bucket: str, cutoff: int) -> int:
    """Part folders (`part-{P}.{pv}`) that the drive's part record does not name,
    and upload folders left with no record at all."""
    removed = 0
    for upload in _scan(os.path.join(root, "multipart", bucket)):
        names = {e.name: e for e in _scan(upload.path)}
        if not any(n.endswith(".json") for n in names):
            if _mtime_ns(upload) < cutoff:
                rmtree_quiet(upload.path)
                removed += 1
            continue
        for name, entry in names.items():
            number, dot, pv = name.partition(".")
            if not (dot and number.startswith("part-") and entry.is_dir(follow_symlinks=False)):
                continue  # the records themselves
            record = names.get(f"{number}.json")
            named = record is not None and _part_version(record.path) == pv
            if not named and _mtime_ns(entry) < cutoff:
                rmtree_quiet(entry.path)
                removed += 1
    return removed


def walk_dirs(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk, top-down, without recursion: a key may nest a folder per "/" (1,023 deep
    and more), past Python's recursion limit. Symlinks are not followed; a caller may
    prune `dirnames` in place."""
    stack = [top]
    while stack:
        path = stack.pop()
        dirs, files = [], []
        for entry in _scan(path):
            try:
                (dirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
            except OSError:
                continue
        yield path, dirs, files
        stack.extend(os.path.join(path, d) for d in reversed(dirs))


def _scan(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime_ns(entry: os.DirEntry[str] | str) -> int:
    """A file's mtime; one that vanished meanwhile counts as new (left alone)."""
    try:
        if isinstance(entry, str):
            return os.stat(entry, follow_symlinks=False).st_mtime_ns
        return entry.stat(follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return time.time_ns()


def sweep_flat(folder: str, cutoff: int, keep: str = "") -> int:
    """Entries of `folder` last modified before `cutoff`, but `keep`."""
    removed = 0
    for entry in _scan(folder):
        if entry.path != keep and _mtime_ns(entry) < cutoff:
            if entry.is_dir(follow_symlinks=False):
                rmtree_quiet(entry.path)
            else:
                unlink_quiet(entry.path)
            removed += 1
    return removed


def _part_version(record: str) -> str | None:
    try:
        with open(record, "rb") as f:
            v = loads(f.read()).get("v")
    except (OSError, ValueError):
        return None
    return v if isinstance(v, str) else None
