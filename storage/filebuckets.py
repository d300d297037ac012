"""The FileStore's bucket records: `.buckets/{bucket}.json`.

A record holds the bucket's creation time, owner, versioning state and whether object
lock is on (records written before versioning existed read as "" and False). Writes are made
for the read path: every object write looks up its bucket's versioning state under the
key's lock, so records are cached and revalidated with one stat (inode, mtime, size): a
change made by another process on the same directory is seen at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, datetime

from shoal.storage.backend import VERSIONING_STATES, BucketInfo
from shoal.storage.diskio import read_json, write_json
from shoal.storage.records import FORMAT, iso, now, parse_iso

Signature = tuple[int, int, int]


class BucketRecords:
    """Read, cache and write bucket records (blocking: call from worker threads)."""

    def __init__(self, root: str, tmp_dir: str) -> None:
        self.dir = os.path.join(root, ".buckets")
        self.tmp_dir = tmp_dir
        self._cache: dict[str, tuple[Signature, BucketInfo]] = {}
        self._lock = threading.Lock()

    def path(self, bucket: str) -> str:
        return os.path.join(self.dir, bucket + ".json")

    def info(self, bucket: str, bucket_dir: str) -> BucketInfo:
        """The bucket's record; a bucket without a readable one (made by an older
        version, or a crash between its directory and its record) dates from its
        directory and was never versioned. FileNotFoundError if neither exists."""
        path = self.path(bucket)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._fallback(bucket, bucket_dir)
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(bucket)
        if hit is not None and hit[0] == sig:
            return hit[1]
        try:
            rec = read_json(path)
            info = BucketInfo(
                bucket,
                parse_iso(rec["created"]),
                versioning=str(rec.get("versioning") or ""),
                object_lock=bool(rec.get("object_lock")),
                owner=str(rec.get("owner") or ""),
            )
        except FileNotFoundError:
            return self._fallback(bucket, bucket_dir)
        except (OSError, ValueError, KeyError, TypeError):
            info = self._fallback(bucket, bucket_dir)
        if info.versioning not in VERSIONING_STATES:
            info = replace(info, versioning="Suspended")  # damaged: never unversioned again
        with self._lock:
            self._cache[bucket] = (sig, info)
        return info

    @staticmethod
    def _fallback(bucket: str, bucket_dir: str) -> BucketInfo:
        return BucketInfo(bucket, datetime.fromtimestamp(int(os.stat(bucket_dir).st_mtime), UTC))

    def new(self, bucket: str, *, object_lock: bool, owner: str = "") -> BucketInfo:
        """A new bucket's record, written before its directory exists (so a bucket
        created with object lock never exists without it)."""
        info = BucketInfo(
            bucket,
            now(whole_seconds=True),
            versioning="Enabled" if object_lock else "",
            object_lock=object_lock,
            owner=owner,
        )
        self.write(info)
        return info

    def write(self, info: BucketInfo) -> None:
        record = {
            "format": FORMAT,
            "name": info.name,
            "created": iso(info.created),
            "versioning": info.versioning,
            "object_lock": info.object_lock,
            "owner": info.owner,
        }
        write_json(self.path(info.name), record, self.tmp_dir)
        with self._lock:
            self._cache.pop(info.name, None)

    def forget(self, bucket: str) -> None:
        with self._lock:
            self._cache.pop(bucket, None)
