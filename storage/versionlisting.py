"""ListObjectVersions pages for the FileStore.

Keys come from two ordered walks merged: the bucket tree (keys whose current version is
an object) and the version tree (keys with older versions or delete markers, see
storage.fileversions). A key's versions are its current object, if any, then the names
in its version directory newest first; only the versions that land on the page have
their records read, so a page costs about the same at 100 versions or 100,000 (the
sorted names of a directory are cached while it is unchanged). Prefix, delimiter and
common prefixes follow storage.listing's rules; a page may end inside a key, and
resumes after (key marker, version id marker).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from shoal.storage.backend import MAX_KEY_BYTES, NULL_VERSION, VersionListPage, VersionSummary
from shoal.storage.diskio import read_json
from shoal.storage.errors import StorageError
from shoal.storage.fileversions import RECORD_SUFFIX, Stored, sorted_versions, stamp
from shoal.storage.keys import join_below, key_path
from shoal.storage.listing import PAGE_BUDGET, check_params, rollup
from shoal.storage.records import parse_iso, shown_size_etag
from shoal.storage.version_ids import valid_version_id
from shoal.storage.walk import ListingCache, Walker


@dataclass(frozen=True)
class _Version:
    vid: str
    stamp: int
    meta_path: str
    record: dict[str, Any] | None = None  # read already (the current object's)


def _read(path: str) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return None  # a damaged record: not a version we can describe


class KeyVersionList:
    """A key's versions, newest first: the current object, then its version directory.
    Built from names alone; a version's record path is made only when it is asked for,
    so a page inside a key of 100,000 versions costs what its own versions cost."""

    def __init__(self, sidecar: str | None, vdir: str | None, cache: ListingCache | None):
        self.current: _Version | None = None
        if sidecar is not None:
            record = _read(sidecar)
            if record is not None:
                vid = str(record.get("version_id") or NULL_VERSION)
                self.current = _Version(vid, stamp(vid, record), sidecar, record)
        self.vdir = vdir or ""
        self.stored: list[Stored] = sorted_versions(vdir, cache) if vdir is not None else []
        self._first = 0 if self.current is None else 1

    def __len__(self) -> int:
        return self._first + len(self.stored)

    def __getitem__(self, i: int) -> _Version:
        if i < self._first and self.current is not None:
            return self.current
        s = self.stored[i - self._first]
        return _Version(s.vid, s.stamp, os.path.join(self.vdir, s.vid + RECORD_SUFFIX))

    def resume(self, marker: str) -> int:
        """Index of the first version after `marker` (one that vanished: after where
        its id would sort)."""
        if self.current is not None and self.current.vid == marker:
            return 1
        for i, s in enumerate(self.stored):
            if s.vid == marker:
                return self._first + i + 1
        if marker == NULL_VERSION or not valid_version_id(marker):
            return len(self)
        cut = stamp(marker)
        if self.current is not None and self.current.stamp < cut:
            return 0
        return self._first + next(
            (i for i, s in enumerate(self.stored) if s.stamp < cut), len(self.stored)
        )


def _summary(key: str, version: _Version, latest: bool) -> VersionSummary | None:
    rec = version.record if version.record is not None else _read(version.meta_path)
    if rec is None:
        return None  # removed since the directory was listed
    try:
        marker = bool(rec.get("delete_marker"))
        size, etag = (0, "") if marker else shown_size_etag(rec)
        return VersionSummary(
            key=key,
            version_id=version.vid,
            is_latest=latest,
            delete_marker=marker,
            size=size,
            etag=etag,
            last_modified=parse_iso(rec["last_modified"]),
            storage_class=str((rec.get("headers") or {}).get("x-amz-storage-class") or "STANDARD"),
            owner=str(rec.get("owner") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class _Page:
    max_keys: int
    versions: list[VersionSummary] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    last: tuple[str, str | None] | None = None

    def full(self) -> bool:
        return len(self.versions) + len(self.prefixes) >= self.max_keys

    def done(self, truncated: bool) -> VersionListPage:
        key, vid = self.last if truncated and self.last else (None, None)
        return VersionListPage(self.versions, self.prefixes, truncated, key, vid)

    def emit(self, key: str, versions: KeyVersionList, start: int) -> bool:
        """Add a key's versions from `start`; False once the page is full with some left."""
        for i in range(start, len(versions)):
            if self.full():
                return False
            summary = _summary(key, versions[i], i == 0)
            if summary is not None:
                self.versions.append(summary)
                self.last = (key, summary.version_id)
        return True


def versions_page(
    bucket_dir: str,
    vroot: str,
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_id_marker: str,
    max_keys: int,
    cache: ListingCache | None = None,
) -> VersionListPage:
    """One ListObjectVersions page (blocking: run it in one worker thread)."""
    check_params(prefix, delimiter, key_marker, version_id_marker)
    page = _Page(max_keys)
    if max_keys <= 0 or len(prefix.encode("utf-8")) > MAX_KEY_BYTES:
        return page.done(False)
    current = Walker(bucket_dir, cache)
    older = Walker(vroot, cache, versions=True)
    cursor, skip = key_marker, False
    if key_marker.startswith(prefix):
        cp = rollup(key_marker, prefix, delimiter)
        if cp is not None:
            cursor, skip = cp, True
        elif key_marker and version_id_marker:
            versions = _marker_versions(bucket_dir, vroot, key_marker, cache)
            if not page.emit(key_marker, versions, versions.resume(version_id_marker)):
                return page.done(True)
    while True:
        a = current.next_key(cursor, skip=skip, prefix=prefix)
        b = older.next_key(cursor, skip=skip, prefix=prefix)
        if a is None and b is None:
            return page.done(False)
        key = min(f[0] for f in (a, b) if f is not None)
        if page.full() or (page.last and current.visits + older.visits > PAGE_BUDGET):
            return page.done(True)
        cp = rollup(key, prefix, delimiter)
        if cp is not None:
            page.prefixes.append(cp)
            page.last = (cp, None)
            cursor, skip = cp, True
            continue
        cursor, skip = key, False
        versions = KeyVersionList(
            a[1] if a is not None and a[0] == key else None,
            b[1] if b is not None and b[0] == key else None,
            cache,
        )
        if not page.emit(key, versions, 0):
            return page.done(True)


def _marker_versions(
    bucket_dir: str, vroot: str, key: str, cache: ListingCache | None
) -> KeyVersionList:
    """The versions of the key a page resumes inside."""
    try:
        kp = key_path(key)
    except StorageError:
        return KeyVersionList(None, None, cache)  # not a key anything is stored under
    vdir = join_below(vroot, (*kp.dirs, kp.data_name))
    return KeyVersionList(kp.meta_path(bucket_dir), vdir, cache)
