"""What crashes leave behind in a FileStore's directory, removed when it opens.

Runs after storage.commit.recover() has rolled forward every decided write and plan,
so what is left is only ever garbage: object data without its metadata or the reverse
(a plain delete cut off between its unlinks), version data without its record,
directories without files, part data no part record names, and the records, policies,
documents and version trees of buckets whose directory is gone (a DeleteBucket cut off
after moving the bucket away: a bucket re-created under that name must not inherit
them). Safe beside live workers on the same directory: every removal is re-checked
under the lock its writers hold.
"""

from __future__ import annotations

import contextlib
import os

from shoal.storage.diskio import (
    StripedLocks,
    bucket_lock_name,
    object_lock_name,
    remove_empty_parents,
    rmtree_quiet,
    unlink_quiet,
)
from shoal.storage.fileversions import VERSIONS_DIR, versions_root
from shoal.storage.multipart import UploadStore
from shoal.storage.walk import find_leftovers, find_version_leftovers


def remove_leftovers(root: str, locks: StripedLocks, uploads: UploadStore) -> int:
    """Remove the leftovers the module docstring lists; returns how many. Costs one
    scan of every bucket tree (and version tree) per start."""
    removed = 0
    buckets: set[str] = set()
    for entry in os.scandir(root):
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        buckets.add(entry.name)
        found = find_leftovers(entry.path)
        for key, lone, partner in found.unpaired:
            with locks.hold(object_lock_name(entry.name, key)):
                if not os.path.exists(partner) and os.path.exists(lone):
                    unlink_quiet(lone)
                    removed += 1
            remove_empty_parents(os.path.dirname(lone), entry.path)
        for path in reversed(found.bare_dirs):  # children before their parents
            with contextlib.suppress(OSError):
                os.rmdir(path)
        removed += _remove_version_leftovers(root, locks, entry.name)
    removed += uploads.remove_stray_parts()
    return removed + _remove_orphan_documents(root, locks, buckets)


def _remove_version_leftovers(root: str, locks: StripedLocks, bucket: str) -> int:
    """Version data without its record and emptied version directories: what a
    crash can leave in a bucket's version tree once its plans are rolled forward."""
    vroot = versions_root(root, bucket)
    found = find_version_leftovers(vroot)
    for key, lone in found.unpaired:
        with locks.hold(object_lock_name(bucket, key)):
            if not os.path.exists(lone + ".json") and os.path.exists(lone):
                unlink_quiet(lone)
    for path in reversed(found.bare_dirs):
        with contextlib.suppress(OSError):
            os.rmdir(path)
    return len(found.unpaired)


def _remove_orphan_documents(root: str, locks: StripedLocks, buckets: set[str]) -> int:
    removed = 0
    places = (
        (".buckets", ".json"),
        (".policies", ".policy.json"),
        (".bucket-config", ""),
        (VERSIONS_DIR, ""),
    )
    for sub, suffix in places:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(os.path.join(root, sub)):
                name = entry.name[: len(entry.name) - len(suffix)]
                if not entry.name.endswith(suffix) or name in buckets:
                    continue
                with locks.hold(bucket_lock_name(name)):
                    if os.path.isdir(os.path.join(root, name)):
                        continue  # created since the scan
                    rmtree_quiet(entry.path)
                removed += 1
    return removed
