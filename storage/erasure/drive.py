"""One drive: the interface every erasure-coded read and write goes through, and its
implementation on a local directory.

The interface is async and speaks in relative paths and small records, so a drive can
as well be on another node (cluster/ implements it over QUIC): each method is one
round trip. A local drive runs its blocking work on its own small thread pool, so a
hung or slow disk ties up only its own threads, never the event loop or another drive.

Layout below `{drive}/.smartstorage/`:

    format.json                                        drive identity (storage.erasure.layout)
    buckets/{bucket}.json                              bucket record
    policies/{bucket}.policy.json                      bucket policy, as given
    bucket-config/{bucket}/{name}                      other bucket documents (cors, ...)
    data/{bucket}/{encoded key}._storage_object.metadata.json   the object record: versions
    data/{bucket}/{encoded key}._storage_object/{version}/[part-{P}/]chunk-{N}/shard-{M}.dat
                                                       ... and shard-{M}.meta (size, CRC32C)
    multipart/{bucket}/{upload id}/upload.json, part-{P}.json, part-{P}.{pv}/chunk-{N}/...
    quarantine/                                        corrupt shards, moved aside by healing
    tmp/, locks/

Keys are encoded as in the standalone store (storage.keys), so a drive lists its keys
in S3 order with the same walker. Unlike the reference's `{key_hash}/{key}` layout, a
version directory per write lets a new version's shards be written beside the old
ones and switched to by one atomic record update.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import google_crc32c

from storage.diskio import (
    StripedLocks,
    fsync_dir,
    makedirs_below,
    object_lock_name,
    remove_empty_parents,
    replace_atomically,
    unlink_quiet,
)
from storage.keys import OBJECT_MARKER, key_path
from storage.listing import walk_page
from storage.records import dumps, loads
from storage.walk import ListingCache

T = TypeVar("T")

ROOT = ".smartstorage"
FORMAT_FILE = "format.json"
RECORD_SUFFIX = ".metadata.json"


class ShardMissing(Exception):
    """The shard (or record) is not on this drive: a normal answer, not a drive fault."""


class CorruptShard(Exception):
    """The shard's bytes do not match their CRC32C: bit rot or a torn write."""


class DriveError(Exception):
    """The drive itself failed (I/O error, offline, too slow)."""


class DriveOffline(DriveError):
    pass


class DriveTimeout(DriveError):
    pass


ShardWrite = tuple[str, bytes, int]  # (path, bytes, CRC32C)


@dataclass
class DrivePage:
    """One page of a drive's keys: (key, version summaries newest first) and prefixes."""

    keys: list[tuple[str, list[dict[str, Any]]]]
    prefixes: list[str]
    truncated: bool
    last: str | None


def object_dir(bucket: str, key: str) -> str:
    """Relative path of a key's directory of versions (its record is this + RECORD_SUFFIX)."""
    kp = key_path(key)
    return "/".join(("data", bucket, *kp.dirs, kp.data_name))


def shard_path(base: str, chunk: int, shard: int) -> str:
    """`base` is a version directory (or a part directory below it)."""
    return f"{base}/chunk-{chunk}/shard-{shard}"


def summary(version: dict[str, Any]) -> dict[str, Any]:
    """What a listing needs of one version entry of an object record."""
    meta = version.get("meta") or {}
    return {
        "v": version["v"],
        "deleted": bool(version.get("deleted")),
        "size": meta.get("size", 0),
        "etag": meta.get("etag", ""),
        "last_modified": meta.get("last_modified"),
        "storage_class": (meta.get("headers") or {}).get("x-amz-storage-class") or "STANDARD",
    }


class Drive(Protocol):
    """A drive as the erasure-coded store sees it. Paths are relative to the drive's
    `.smartstorage` folder, "/"-separated, and come from the store, never from a client.

    "Not there" is an answer (None, [] or ShardMissing); DriveError and OSError mean the
    drive failed and count against its health."""

    name: str

    async def read_format(self) -> dict[str, Any] | None:
        """format.json, or None when the drive was never formatted (and is empty)."""
        ...

    async def write_format(self, record: dict[str, Any]) -> None: ...

    async def is_empty(self) -> bool:
        """True when the drive folder holds nothing at all (a fresh or replaced drive)."""
        ...

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        """Durably store `path`.dat and `path`.meta; replaces atomically if present."""
        ...

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        """The shard's bytes; ShardMissing if absent, CorruptShard if `crc` mismatches."""
        ...

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        """The shard's .meta (size, crc32c) plus its actual size on disk, or None."""
        ...

    async def read_doc(self, path: str) -> bytes | None: ...

    async def write_doc(self, path: str, data: bytes) -> None:
        """Atomic and durable: readers see the old or the new document."""
        ...

    async def delete(self, path: str) -> None:
        """Remove a file or a whole directory; quiet if missing; prunes empty parents
        below the data/multipart roots."""
        ...

    async def move(self, src: str, dst: str) -> None:
        """Durable rename (dst's parents are created); FileNotFoundError if src is gone."""
        ...

    async def quarantine(self, path: str) -> None:
        """Move shard `path` (.dat and .meta) below quarantine/ instead of deleting it."""
        ...

    async def list_dir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] if it does not exist."""
        ...

    async def make_bucket(self, bucket: str) -> None:
        """Create the bucket's data directory (idempotent)."""
        ...

    async def read_object(self, bucket: str, key: str) -> list[dict[str, Any]]:
        """The key's version entries on this drive, newest first; [] if none."""
        ...

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: dict[str, Any] | None = None,
        drop: Sequence[str] = (),
        drop_older_than: str | None = None,
    ) -> list[dict[str, Any]]:
        """Atomically (per key, across processes) add a version entry and/or drop entries
        by id or older than a version id, deleting dropped versions' shard directories.
        An added version's directory is made durable first. Returns the entries after."""
        ...

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> DrivePage: ...

    async def write_version(
        self, bucket: str, key: str, entry: dict[str, Any], shards: Sequence[ShardWrite]
    ) -> list[dict[str, Any]]:
        """write_shard for each shard, then update_object(add=entry): a small object's
        whole write on this drive in one round trip."""
        ...

    async def sweep(self, bucket: str, older_than: float) -> int:
        """Remove version folders no object record lists (left by writes that died
        before their commit) last modified more than `older_than` seconds ago; returns
        how many. With bucket "", temporary files of this drive instead."""
        ...

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int
    ) -> tuple[list[dict[str, Any]], bytes | None]:
        """read_object, plus shard number `shard` of the newest version when that is a
        single chunk of at most `limit` bytes (None if absent or corrupt): a small
        object's whole read on this drive in one round trip."""
        ...


# ---------------------------------------------------------------- the local drive


class LocalDrive:
    """A drive on a local directory (see the module docstring for the layout)."""

    def __init__(self, path: str, *, threads: int = 4) -> None:
        self.path = os.path.abspath(path)
        self.name = self.path
        self.root = os.path.join(self.path, ROOT)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shoal-drive")
        self._locks = StripedLocks(os.path.join(self.root, "locks"), stripes=64)
        self.listings = ListingCache()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._locks.close()

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """On this drive's threads. Unlike storage.threads.run this may be abandoned (a
        timeout above gives up on a hung disk); what it writes is only made visible by
        an object record, so a late finish leaves at most unreferenced files."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def _require_root(self) -> None:
        """A formatted drive whose folder vanished is unmounted or gone: a fault, never
        "not there" (and never silently re-created on the disk underneath)."""
        if not os.path.isdir(self.root):
            raise DriveError(f"{self.path}: {ROOT} is missing (drive unmounted or removed?)")

    def _abs(self, rel: str) -> str:
        self._require_root()
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad drive path {rel!r}")
        return os.path.join(self.root, *parts)

    def _tmp(self) -> str:
        self._require_root()
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        return tmp

    # -- format ------------------------------------------------------------------

    async def read_format(self) -> dict[str, Any] | None:
        return await self._run(self._read_format)

    def _read_format(self) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.root, FORMAT_FILE), "rb") as f:
                return loads(f.read())
        except FileNotFoundError:
            if not os.path.isdir(self.path):
                raise
            return None

    async def write_format(self, record: dict[str, Any]) -> None:
        await self._run(self._write_format, record)

    def _write_format(self, record: dict[str, Any]) -> None:
        os.makedirs(self.root, exist_ok=True)
        replace_atomically(os.path.join(self.root, FORMAT_FILE), dumps(record), self._tmp())
        fsync_dir(self.path)

    async def is_empty(self) -> bool:
        """mkfs leaves lost+found on a new ext4 disk: it does not count."""
        return await self._run(lambda: not set(os.listdir(self.path)) - {"lost+found"})

    # -- shards --------------------------------------------------------------------

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._run(self._write_shard, path, data, crc)

    def _write_shard(self, path: str, data: bytes, crc: int, *, sync_dir: bool = True) -> None:
        """The .dat is fsynced; the .meta is not (it repeats what the object record
        holds durably, and healing rewrites a missing one). `sync_dir=False` when the
        caller makes the version's directories durable itself (update_object does)."""
        target = self._abs(path)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        token = secrets.token_hex(4)
        meta = json.dumps({"size": len(data), "crc32c": crc}).encode()
        for suffix, body, sync in ((".dat", data, True), (".meta", meta, False)):
            tmp = f"{target}{suffix}.{token}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                if sync:
                    os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                unlink_quiet(tmp)
                raise
            os.close(fd)
            os.replace(tmp, target + suffix)
        if sync_dir:
            fsync_dir(parent)

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        return await self._run(self._read_shard, path, crc)

    def _read_shard(self, path: str, crc: int | None) -> bytes:
        try:
            with open(self._abs(path) + ".dat", "rb", buffering=0) as f:
                data = f.readall()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ShardMissing(path) from exc
        if crc is not None and google_crc32c.value(data) != crc:
            raise CorruptShard(path)
        return data

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        return await self._run(self._shard_info, path)

    def _shard_info(self, path: str) -> dict[str, Any] | None:
        target = self._abs(path)
        try:
            size = os.stat(target + ".dat").st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            with open(target + ".meta", "rb") as f:
                info = loads(f.read())
        except (FileNotFoundError, ValueError):
            info = {}
        info["actual_size"] = size
        return info

    # -- documents -------------------------------------------------------------------

    async def read_doc(self, path: str) -> bytes | None:
        return await self._run(self._read_doc, path)

    def _read_doc(self, path: str) -> bytes | None:
        try:
            with open(self._abs(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def write_doc(self, path: str, data: bytes) -> None:
        await self._run(self._write_doc, path, data)

    def _write_doc(self, path: str, data: bytes) -> None:
        target = self._abs(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        replace_atomically(target, data, self._tmp())

    async def delete(self, path: str) -> None:
        await self._run(self._delete, path)

    def _delete(self, path: str) -> None:
        target = self._abs(path)
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                # Rename first so readers never see a half-deleted tree.
                doomed = os.path.join(self._tmp(), "rm-" + secrets.token_hex(8))
                os.rename(target, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                os.unlink(target)
        except FileNotFoundError:
            return
        fsync_dir(os.path.dirname(target))
        self.listings.bump()
        top = path.split("/", 2)
        if top[0] in ("data", "multipart") and len(top) == 3:
            remove_empty_parents(os.path.dirname(target), self._abs("/".join(top[:2])))

    async def move(self, src: str, dst: str) -> None:
        await self._run(self._move, src, dst)

    def _move(self, src: str, dst: str) -> None:
        source, target = self._abs(src), self._abs(dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(source, target)
        fsync_dir(os.path.dirname(target))
        fsync_dir(os.path.dirname(source))

    async def quarantine(self, path: str) -> None:
        await self._run(self._quarantine, path)

    def _quarantine(self, path: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = os.path.join(self.root, "quarantine", f"{stamp}-{secrets.token_hex(3)}", path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        for suffix in (".dat", ".meta"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(self._abs(path) + suffix, dest + suffix)
        fsync_dir(os.path.dirname(self._abs(path)))

    async def list_dir(self, path: str) -> list[str]:
        return await self._run(self._list_dir, path)

    def _list_dir(self, path: str) -> list[str]:
        self._require_root()
        try:
            return sorted(os.listdir(self._abs(path) if path else self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []

    async def make_bucket(self, bucket: str) -> None:
        await self._run(self._make_bucket, bucket)

    def _make_bucket(self, bucket: str) -> None:
        self._require_root()
        data = os.path.join(self.root, "data")
        os.makedirs(data, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(data, bucket))
            fsync_dir(data)

    # -- object records --------------------------------------------------------------

    def _record_path(self, bucket: str, key: str) -> tuple[str, str, tuple[str, ...]]:
        """(record path, bucket data dir, directories between them)."""
        self._require_root()
        kp = key_path(key)
        bucket_dir = os.path.join(self.root, "data", bucket)
        return kp.meta_path(bucket_dir), bucket_dir, kp.dirs

    async def read_object(self, bucket: str, key: str) -> list[dict[str, Any]]:
        return await self._run(self._read_object, bucket, key)

    def _read_object(self, bucket: str, key: str) -> list[dict[str, Any]]:
        record, _, _ = self._record_path(bucket, key)
        return _read_versions(record)

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: dict[str, Any] | None = None,
        drop: Sequence[str] = (),
        drop_older_than: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self._run(self._update_object, bucket, key, add, tuple(drop), drop_older_than)

    def _update_object(
        self,
        bucket: str,
        key: str,
        add: dict[str, Any] | None,
        drop: tuple[str, ...],
        drop_older_than: str | None,
    ) -> list[dict[str, Any]]:
        record, bucket_dir, dirs = self._record_path(bucket, key)
        versions_dir = record[: -len(RECORD_SUFFIX)]
        with self._locks.hold(object_lock_name(bucket, key)):
            versions = _read_versions(record)
            if add is not None:
                makedirs_below(bucket_dir, dirs)
                added = os.path.join(versions_dir, add["v"])
                if os.path.isdir(added):
                    _fsync_tree(added)
                    fsync_dir(versions_dir)
                versions = [v for v in versions if v["v"] != add["v"]] + [add]
            gone = [
                v["v"]
                for v in versions
                if v["v"] in drop or (drop_older_than is not None and v["v"] < drop_older_than)
            ]
            if add is None and not gone:
                return versions
            versions = sorted(
                (v for v in versions if v["v"] not in gone), key=lambda v: v["v"], reverse=True
            )
            if versions:
                replace_atomically(record, dumps({"format": 1, "versions": versions}), self._tmp())
            else:
                unlink_quiet(record)
                fsync_dir(os.path.dirname(record))
            for vid in gone:
                shutil.rmtree(os.path.join(versions_dir, vid), ignore_errors=True)
            if not versions:
                with contextlib.suppress(OSError):
                    os.rmdir(versions_dir)
                remove_empty_parents(os.path.dirname(record), bucket_dir)
        self.listings.bump()
        return versions

    async def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> DrivePage:
        return await self._run(self._list_objects, bucket, prefix, delimiter, after, max_keys)

    def _list_objects(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> DrivePage:
        def summarize(key: str, sidecar: str) -> tuple[str, list[dict[str, Any]]] | None:
            versions = _read_versions(sidecar)
            return (key, [summary(v) for v in versions]) if versions else None

        self._require_root()
        bucket_dir = os.path.join(self.root, "data", bucket)
        if not os.path.isdir(bucket_dir):
            return DrivePage([], [], False, None)
        items, prefixes, truncated, last = walk_page(
            bucket_dir,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
            summarize=summarize,
            cache=self.listings,
        )
        return DrivePage(items, prefixes, truncated, last)

    async def write_version(
        self, bucket: str, key: str, entry: dict[str, Any], shards: Sequence[ShardWrite]
    ) -> list[dict[str, Any]]:
        return await self._run(self._write_version, bucket, key, entry, tuple(shards))

    def _write_version(
        self, bucket: str, key: str, entry: dict[str, Any], shards: tuple[ShardWrite, ...]
    ) -> list[dict[str, Any]]:
        for path, data, crc in shards:
            self._write_shard(path, data, crc, sync_dir=False)
        return self._update_object(bucket, key, entry, (), None)

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int
    ) -> tuple[list[dict[str, Any]], bytes | None]:
        return await self._run(self._read_small, bucket, key, shard, limit)

    async def sweep(self, bucket: str, older_than: float) -> int:
        return await self._run(self._sweep, bucket, older_than)

    def _sweep(self, bucket: str, older_than: float) -> int:
        self._require_root()
        cutoff = time.time() - older_than
        removed = 0
        if not bucket:
            tmp = os.path.join(self.root, "tmp")
            for entry in os.scandir(tmp) if os.path.isdir(tmp) else ():
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        unlink_quiet(entry.path)
                    removed += 1
            return removed
        bucket_dir = os.path.join(self.root, "data", bucket)
        for dirpath, dirnames, _ in os.walk(bucket_dir):
            versions_dirs = [d for d in dirnames if d.endswith(OBJECT_MARKER)]
            dirnames[:] = [d for d in dirnames if not d.endswith(OBJECT_MARKER)]
            for name in versions_dirs:
                versions_dir = os.path.join(dirpath, name)
                listed = {v["v"] for v in _read_versions(versions_dir + RECORD_SUFFIX)}
                for vid in os.listdir(versions_dir):
                    path = os.path.join(versions_dir, vid)
                    if vid not in listed and os.stat(path).st_mtime < cutoff:
                        shutil.rmtree(path, ignore_errors=True)
                        removed += 1
                with contextlib.suppress(OSError):
                    os.rmdir(versions_dir)  # only if now empty
        if removed:
            self.listings.bump()
        return removed

    def _read_small(
        self, bucket: str, key: str, shard: int, limit: int
    ) -> tuple[list[dict[str, Any]], bytes | None]:
        versions = self._read_object(bucket, key)
        if not versions or versions[0].get("deleted"):
            return versions, None
        parts = versions[0].get("parts") or []
        if len(parts) != 1 or parts[0]["n"] or len(parts[0]["crc"]) != 1:
            return versions, None
        if parts[0]["size"] > limit:
            return versions, None
        base = f"{object_dir(bucket, key)}/{versions[0]['v']}"
        try:
            data = self._read_shard(shard_path(base, 0, shard), parts[0]["crc"][0][shard])
        except (ShardMissing, CorruptShard):
            return versions, None
        return versions, data


def _read_versions(record: str) -> list[dict[str, Any]]:
    try:
        with open(record, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        versions = loads(data).get("versions") or []
    except ValueError:
        return []  # a torn or damaged record counts as absent; healing rewrites it
    return [v for v in versions if isinstance(v, dict) and isinstance(v.get("v"), str)]


def _fsync_tree(path: str) -> None:
    """fsync every directory below `path` (files were fsynced when written)."""
    for dirpath, _dirnames, _files in os.walk(path):
        fsync_dir(dirpath)


def is_io_error(exc: BaseException) -> bool:
    """Whether an exception says the drive misbehaved (rather than "not there")."""
    if isinstance(exc, DriveError):
        return True
    if isinstance(exc, (ShardMissing, CorruptShard, FileNotFoundError)):
        return False
    return isinstance(exc, OSError) and exc.errno not in (errno.ENOENT, errno.ENOTDIR)
