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
    data/{bucket}/{encoded key}._storage_object/~history-{token}.json
                                                       older versions' entries (history.py)
    multipart/{bucket}/{upload id}/upload.json, part-{P}.json, part-{P}.{pv}/chunk-{N}/...
    quarantine/                                        corrupt shards, moved aside by healing
    tmp/opened-{pid}-{token}                           stamp of the process that has the drive
    tmp/w-{pid}-{token}/                               its temp files and deletions
    locks/                                             flock stripes

What a crash leaves (temp files, version and part folders nothing names) is reclaimed
by `sweep`: see LocalDrive._sweep for why that is safe while other nodes write.

Keys are encoded as in the standalone store (storage.keys), so a drive lists its keys
in S3 order with the same walker. Unlike the reference's `{key_hash}/{key}` layout, a
version directory per write lets a new version's shards be written beside the old
ones and switched to by one atomic record update.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import google_crc32c

from shoal.storage import durable
from shoal.storage.diskio import (
    StripedLocks,
    fsync_dir,
    makedirs,
    makedirs_below,
    missing,
    object_lock_name,
    read_whole,
    remove_empty_parents,
    rmtree_quiet,
    spread_subfolders,
    unlink_quiet,
)
from shoal.storage.durable import Written
from shoal.storage.erasure.history import KeyRecord, Segment, stored_entries
from shoal.storage.erasure.records import Rank, RecordSummary, VersionRecord, visible
from shoal.storage.erasure.summaries import RecordCache, SummaryCache
from shoal.storage.keys import OBJECT_MARKER, decode_path, key_path
from shoal.storage.listing import walk_page
from shoal.storage.records import dumps, loads
from shoal.storage.threads import Workers
from shoal.storage.walk import ListingCache

T = TypeVar("T")

ROOT = ".smartstorage"
FORMAT_FILE = "format.json"
RECORD_SUFFIX = ".metadata.json"
#: Records of up to this many entries leave their summaries to the listing cache when
#: written (a versioned key's longer ones are summed up when next listed).
WRITE_THROUGH = 8
#: The record bytes whose parsed entries a drive keeps for GETs and overwrites
#: (storage.erasure.summaries): a small object's record (its shard inline) is some
#: 2 KiB, so about 2,000 of those; in memory, parsed, about three times as much, four
#: with the encoding a written entry keeps (VersionRecord.stored).
NEWEST_BYTES = 4 << 20
#: A record file as last seen: (inode, mtime ns, size).
FileStamp = tuple[int, int, int]


class KnownRecord(NamedTuple):
    """A record file as this drive last read or wrote it (see _newest and _fresh)."""

    stamp: FileStamp
    head: tuple[VersionRecord, ...]  # its entries, newest first: what a plain read answers
    history: tuple[Segment, ...]

    @classmethod
    def of(cls, st: os.stat_result | Written, record: KeyRecord) -> KnownRecord:
        return cls(_stamp(st), tuple(record.head), tuple(record.history))


#: Replicated records holding secrets (storage/erasure/accounts.py), written mode 0600.
SECRET_DOCS = "system/"


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

    keys: list[tuple[str, list[RecordSummary]]]
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


class Drive(Protocol):
    """A drive as the erasure-coded store sees it. Paths are relative to the drive's
    `.smartstorage` folder, "/"-separated, and come from the store, never from a client.

    "Not there" is an answer (None, [] or ShardMissing); DriveError and OSError mean the
    drive failed and count against its health."""

    name: str

    @property
    def online(self) -> bool:
        """False while the drive is known to be failing (health.HealthTrackedDrive
        knows); writes skip it and reads ask it last. A bare drive is always online."""
        ...

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

    async def link(self, src: str, dst: str) -> None:
        """Make directory `dst` (parents created; replaced if present) a copy of directory
        `src` that shares its files (hard links), leaving `src` as it was, so a crash at
        any point leaves `src` whole; durable once update_object names it as a version.
        FileNotFoundError if `src` is gone."""
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

    async def read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        """The key's newest version entries on this drive (storage.erasure.history: its
        record's), and with `version_id` every entry of that S3 version; with
        `everything`, all of them; with `limit`, at most that many ranked below `below`
        (None: from the newest). Newest first; [] if none."""
        ...

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None = None,
        drop: Sequence[Rank] = (),
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        """Atomically (per key, across processes) add a version entry (replacing its
        copy, if listed) and/or drop entries by rank, and null entries ordered before
        `drop_nulls_before` (records.py: what the null version is), deleting dropped
        versions' shard directories unless `keep_data` (they go once no reader has
        them open). An added version's directory is made durable first. Returns the
        newest entries after, as read_object, plus the newest null entry below the
        newest null one (which null version a null write replaced). An added entry
        without an inline shard keeps the one of the copy it replaces (records.py)."""
        ...

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        versions: int = 0,
    ) -> DrivePage:
        """Keys after `after`, in S3 order, each with its newest version entries (its
        record's) or, with `versions`, its first that many entries (a key listing as
        many is cut there); a common prefix only where a key under it is listed there:
        its newest entry an object, or with `versions`, it has a visible version."""
        ...

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        """write_shard for each shard, then update_object(add=entry): a small object's
        whole write on this drive in one round trip."""
        ...

    async def sweep(self, bucket: str, older_than: float) -> int:
        """Remove the bucket's version folders no object record lists and upload part
        folders no part record names (left by writes that died before their commit),
        and temp files in named versions, once no write can still be filling them:
        last modified more than `older_than` seconds ago or, on a local drive, before
        the process serving it started. Returns how many. With bucket "", the drive's
        temp files instead."""
        ...

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        """read_object, plus shard number `shard` of the newest entry when that is a
        single chunk of at most `limit` bytes in a shard file (None if absent or
        corrupt, or inline: its entry has it): a small object's whole read on this
        drive in one round trip."""
        ...

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """The key's newest entries, when the drive holds them in memory and a stat at
        most tells they are current: what read_object answers with no version named, or
        read_small (`small_limit` given) unless that reads a shard file too. Answered
        at once, with no thread and no wait; None: ask read_object / read_small."""
        ...


# ---------------------------------------------------------------- the local drive


class LocalDrive:
    """A drive on a local directory (see the module docstring for the layout)."""

    def __init__(self, path: str, *, threads: int = 4, exclusive: bool = True) -> None:
        self.path = os.path.abspath(path)
        self.name = self.path
        self.root = os.path.join(self.path, ROOT)
        #: Whether only this process writes below `root` (a single node). In a cluster
        #: other nodes write through this process too, and may resume a write they began
        #: through its predecessor (see _sweep).
        self.exclusive = exclusive
        self.online = True  # (health is tracked above: Drive.online)
        self._workers = Workers(threads, "shoal-drive")
        self._locks = StripedLocks(os.path.join(self.root, "locks"), stripes=64)
        self.listings = ListingCache()
        #: Records' summaries kept between listing pages (storage.erasure.summaries).
        self.summaries = SummaryCache()
        #: Records as last read or written, parsed, for GETs and overwrites (see _newest).
        self.newest: RecordCache[KnownRecord] = RecordCache(NEWEST_BYTES)
        #: mtime (ns) of this process's stamp file: everything this process writes is at
        #: least as new (see _sweep). Set by the first call that finds the drive.
        self._opened_ns: int | None = None
        self._stamp_path: str | None = None
        #: This process's temp folder (see _stamp); "" until the drive is found.
        self._work = ""
        self._opening = threading.Lock()
        #: Names of this process's temp files in its folder (see _replace).
        self._names = itertools.count()

    def close(self) -> None:
        self._workers.close()
        self._locks.close()
        # A clean close leaves no file behind; a killed process's stamp is swept by the
        # next one like any other temp file older than its own.
        if self._stamp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._stamp_path)
            with contextlib.suppress(OSError):
                os.rmdir(self._work)  # what a cut-off write left there waits for a sweep

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """On this drive's threads. Unlike storage.threads.run this may be abandoned (a
        timeout above gives up on a hung disk); what it writes is only made visible by
        an object record, so a late finish leaves at most unreferenced files."""
        return await self._workers.submit(func, *args)

    def _require_root(self) -> None:
        """A formatted drive whose folder vanished is unmounted or gone: a fault, never
        "not there" (and never silently re-created on the disk underneath)."""
        if not os.path.isdir(self.root):
            raise DriveError(f"{self.path}: {ROOT} is missing (drive unmounted or removed?)")
        if self._opened_ns is None:
            self._stamp()

    def _stamp(self) -> None:
        """Leave a file in tmp/ whose mtime, on the filesystem's own clock, precedes
        everything this process will write to the drive (every write passes through
        _require_root first), and make this process's temp folder beside it: a new
        folder, which the filesystem may place where inodes are free (see
        storage.diskio.spread_subfolders; a drive's own tmp/ sat beside recently
        deleted files and every record write paid for it)."""
        with self._opening:
            if self._opened_ns is not None:
                return
            tmp = os.path.join(self.root, "tmp")
            makedirs(tmp)
            spread_subfolders(tmp)
            token = f"{os.getpid()}-{secrets.token_hex(4)}"
            stamp = os.path.join(tmp, f"opened-{token}")
            with open(stamp, "wb"):
                pass
            work = os.path.join(tmp, f"w-{token}")
            os.mkdir(work)
            self._work = work
            self._opened_ns = os.stat(stamp).st_mtime_ns
            self._stamp_path = stamp

    def _abs(self, rel: str) -> str:
        self._require_root()
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad drive path {rel!r}")
        return os.path.join(self.root, *parts)

    def _tmp(self) -> str:
        """This process's temp folder (made again if something removed it)."""
        self._require_root()
        makedirs(self._work)
        return self._work

    def _replace(self, target: str, data: bytes, mode: int = 0o644) -> Written:
        """replace_atomically through this process's temp folder, with a counter's
        names (the folder is this process's own) and no check that the folder is there
        unless the write fails for want of it: a record write makes no more system
        calls than the write itself (storage.durable)."""
        if not self._work:
            self._require_root()
        tmp = os.path.join(self._work, f"{next(self._names):x}.tmp")
        try:
            return durable.replace(tmp, target, data, mode, sync_folder=True)
        except FileNotFoundError:
            if os.path.isdir(self._work):
                raise  # the target's folder is what is missing
            self._tmp()  # made again
            return durable.replace(tmp, target, data, mode, sync_folder=True)

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
        makedirs(self.root)
        self._replace(os.path.join(self.root, FORMAT_FILE), dumps(record))
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
        makedirs(parent)
        token = secrets.token_hex(4)
        meta = json.dumps({"size": len(data), "crc32c": crc}).encode()
        for suffix, body, sync in ((".dat", data, True), (".meta", meta, False)):
            tmp = f"{target}{suffix}.{token}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                durable.write_all(fd, body)
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
            data = read_whole(self._abs(path) + ".dat")
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
        makedirs(os.path.dirname(target))
        # Records under system/ (runtime accounts) hold secrets: the service's own only.
        secret = path.startswith(SECRET_DOCS)
        self._replace(target, data, 0o600 if secret else 0o644)
        if path.endswith(RECORD_SUFFIX):
            self.summaries.forget(target)  # not how records are written, but if one is
            self.newest.forget(target)

    async def delete(self, path: str) -> None:
        await self._run(self._delete, path)

    def _delete(self, path: str) -> None:
        target = self._abs(path)
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                # Rename first so readers never see a half-deleted tree.
                doomed = os.path.join(self._tmp(), "rm-" + secrets.token_hex(8))
                os.rename(target, doomed)
                rmtree_quiet(doomed)
            else:
                os.unlink(target)
        except FileNotFoundError:
            return
        fsync_dir(os.path.dirname(target))
        self.listings.bump()
        if path.startswith("data/") and not any(
            part.endswith(OBJECT_MARKER) for part in path.split("/")
        ):
            self.summaries.clear()  # a folder of records (a version folder holds none)
            self.newest.clear()
        top = path.split("/", 2)
        if top[0] in ("data", "multipart") and len(top) == 3:
            remove_empty_parents(os.path.dirname(target), self._abs("/".join(top[:2])))

    async def link(self, src: str, dst: str) -> None:
        await self._run(self._link, src, dst)

    def _link(self, src: str, dst: str) -> None:
        source, target = self._abs(src), self._abs(dst)
        if not os.path.isdir(source):
            raise FileNotFoundError(errno.ENOENT, "no such directory", src)
        if os.path.lexists(target):  # a link interrupted earlier: start over
            rmtree_quiet(target)
        makedirs(os.path.dirname(target))
        # No fsync here: the folders become durable when a record is to name them
        # (update_object), and nothing is lost if they never do.
        for dirpath, _dirs, files in walk_dirs(source):
            into = target if dirpath == source else os.path.join(target, dirpath[len(source) + 1 :])
            os.mkdir(into)
            for name in files:
                _link_file(os.path.join(dirpath, name), os.path.join(into, name))

    async def quarantine(self, path: str) -> None:
        await self._run(self._quarantine, path)

    def _quarantine(self, path: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = os.path.join(self.root, "quarantine", f"{stamp}-{secrets.token_hex(3)}", path)
        makedirs(os.path.dirname(dest))
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
        makedirs(data)
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(data, bucket))
            fsync_dir(data)

    # -- object records --------------------------------------------------------------

    def _record_path(self, bucket: str, key: str) -> tuple[str, str, tuple[str, ...]]:
        """(record path, bucket data dir, directories between them). No system call:
        a caller that may find no record calls _require_root first, so a vanished
        drive is a fault, not a missing key; one that finds the file needs no check."""
        kp = key_path(key)
        bucket_dir = os.path.join(self.root, "data", bucket)
        return kp.meta_path(bucket_dir), bucket_dir, kp.dirs

    async def read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        plain = version_id is None and not everything and below is None and not limit
        if plain and (known := self.known(bucket, key)) is not None:
            return known
        return await self._run(self._read_object, bucket, key, version_id, everything, below, limit)

    def _read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        self._require_root()
        record = self._key_record(self._record_path(bucket, key)[0])
        if everything:
            return record.everything()
        return record.older(below, limit) if limit else record.window(version_id)

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None = None,
        drop: Sequence[Rank] = (),
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        return await self._run(
            self._update_object, bucket, key, add, tuple(drop), drop_nulls_before, keep_data
        )

    def _update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None,
        drop: tuple[Rank, ...],
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        path, bucket_dir, dirs = self._record_path(bucket, key)
        with self._locks.hold(object_lock_name(bucket, key)):
            known = self._fresh(path)
            if known is None:
                self._require_root()
            record = self._key_record(path, known)
            if add is not None:
                add = record.keeping_inline(add)
                if record.empty:  # else its folders hold the record file: they are there
                    makedirs_below(bucket_dir, dirs)
                _settle_version(os.path.join(record.folder, add.vid), add)
            gone = record.change(add, drop, drop_nulls_before)
            if add is None and not gone:
                return record.window(older_null=True)
            if record.empty:
                unlink_quiet(path)
                fsync_dir(os.path.dirname(path))
                self.newest.forget(path)
            else:
                record.save()
                self._remember_newest(path, record)
            if record.empty or len(record.head) > WRITE_THROUGH:
                self.summaries.forget(path)
            else:
                self.summaries.replace(path, [v.summary for v in record.head])
            for entry in () if keep_data else gone:
                if not entry.is_inline:  # an inline version has no folder
                    rmtree_quiet(os.path.join(record.folder, entry.vid))
            if record.empty:
                with contextlib.suppress(OSError):
                    os.rmdir(record.folder)
                remove_empty_parents(os.path.dirname(path), bucket_dir)
            entries = record.window(older_null=True)
        self.listings.bump()
        return entries

    def _remember_newest(self, path: str, record: KeyRecord) -> None:
        """Hand a record just written to the GETs' cache (see _newest): its newest
        entries, as a read of the file would find them, so the first GET after a PUT
        parses nothing either."""
        st = record.saved
        if st is None:
            self.newest.forget(path)
            return
        self.newest.replace(path, KnownRecord.of(st, record), weight=st.st_size)

    def _key_record(self, path: str, known: KnownRecord | None = None) -> KeyRecord:
        """The record at `path`, made from `known` (what the drive kept of it) if given,
        else read and parsed."""
        folder = path[: -len(RECORD_SUFFIX)]
        if known is None:
            return KeyRecord.load(path, folder, self._replace)
        return KeyRecord(path, folder, self._replace, list(known.head), list(known.history))

    def _fresh(
        self, path: str, st: os.stat_result | None = None, known: KnownRecord | None = None
    ) -> KnownRecord | None:
        """What this drive keeps of the record at `path` (see _newest; `known`, if the
        caller looked already), if the file is still the one it came from (`st`: its
        stat, if the caller has it). An overwrite then stats its record instead of
        reading and parsing it: that was a third of a drive's work for a small PUT."""
        if known is None:
            known = self.newest.peek(path)
        if known is None:
            return None
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                return None
        return known if known.stamp == _stamp(st) else None

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        versions: int = 0,
    ) -> DrivePage:
        return await self._run(
            self._list_objects, bucket, prefix, delimiter, after, max_keys, versions
        )

    def _list_objects(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int, versions: int
    ) -> DrivePage:
        def entries(sidecar: str) -> list[RecordSummary]:
            """What ListObjects needs is the record's newest entries (kept between
            pages: self.summaries); ListObjectVersions a page's worth of entries, from
            the history segments too."""
            if not versions and (known := self.summaries.get(sidecar)) is not None:
                return known
            generation = self.summaries.generation  # before the record, never after
            folder = sidecar[: -len(RECORD_SUFFIX)]
            stored = stored_entries(sidecar, folder, versions)
            summaries = [RecordSummary.of_stored(v) for v in stored]
            if not versions and summaries:
                self.summaries.put(sidecar, generation, summaries)
            return summaries

        def summarize(key: str, sidecar: str) -> tuple[str, list[RecordSummary]] | None:
            stored = entries(sidecar)
            return (key, stored) if stored else None

        def listed(_key: str, sidecar: str) -> bool:
            """Whether a key counts for its common prefix (see Drive.list_objects)."""
            stored = entries(sidecar)
            if versions:
                return bool(visible(stored))
            return bool(stored) and not stored[0].deleted

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
            counts=listed,
            cache=self.listings,
        )
        return DrivePage(items, prefixes, truncated, last)

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        return await self._run(self._write_version, bucket, key, entry, tuple(shards))

    def _write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: tuple[ShardWrite, ...]
    ) -> list[VersionRecord]:
        for path, data, crc in shards:
            self._write_shard(path, data, crc, sync_dir=False)
        return self._update_object(bucket, key, entry, ())

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        if version_id is None and (known := self.known(bucket, key, limit)) is not None:
            return known, None
        return await self._run(self._read_small, bucket, key, shard, limit, version_id)

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """The key's newest entries when this drive keeps them parsed (see _newest) and
        the record file is still the one they came from, found on the event loop without
        a thread hop (as storage.quickread does for the standalone store): what
        read_object answers with no version asked for, and read_small (`small_limit`
        given) unless a shard file is to be read as well. A GET's or HEAD's hops, one
        per drive, were most of its time: four in parallel to four drives cost four
        times one (each thread's wake-up waits for the GIL the one before holds). The
        system call here is a stat of a record this process read or wrote lately, its
        inode in the kernel's cache; [] when the drive surely holds no record for the
        key (_absent). None: take the thread."""
        path = self._record_path(bucket, key)[0]
        known = self.newest.peek(path)
        if known is None:
            return [] if self._absent(path) else None
        if small_limit is not None and _shard_to_read(known.head, small_limit):
            return None
        # (a missing file: the thread path tells a missing drive from a missing record)
        if self._fresh(path, known=known) is None:
            return None
        self.newest.get(path)  # counted as a hit, and kept as recently used
        return list(known.head)

    def _absent(self, record: str) -> bool:
        """Whether this drive surely holds no record at `record`, told by two stats on
        the loop: no file there, on a drive whose folder is there (a vanished one is a
        fault, which the thread path reports) and that this process has stamped. A
        GET or HEAD of a missing key took a thread hop per drive for this: three times
        a hit's time."""
        return missing(record) and self._opened_ns is not None and os.path.isdir(self.root)

    async def sweep(self, bucket: str, older_than: float) -> int:
        return await self._run(self._sweep, bucket, older_than)

    def _sweep(self, bucket: str, older_than: float) -> int:
        """What may go: files and folders nothing names that no write can still be
        filling — last modified `older_than` seconds ago, or before this process first
        touched the drive. Every write to a local drive runs in the process that has it
        open (a cluster's other nodes write through it), and a write's temp files live
        only within one call, so whatever an earlier process left unnamed is dead:
        temp files, and version folders no record lists (a write straddling a restart,
        resumed by another node through this process, cannot get such a folder named
        once swept: update_object refuses a version whose shards the drive lacks). An
        upload's part folders have no such guard, so in a cluster (not `exclusive`) only
        the age rule reclaims them."""
        self._require_root()
        assert self._opened_ns is not None
        aged = time.time_ns() - int(older_than * 1e9)
        cutoff = max(aged, self._opened_ns)
        if not bucket:
            return _sweep_flat(os.path.join(self.root, "tmp"), cutoff, keep=self._work)
        removed = self._sweep_data(bucket, cutoff)
        parts_cutoff = cutoff if self.exclusive else aged
        removed += self._sweep_uploads(bucket, parts_cutoff)
        if removed:
            self.listings.bump()
        return removed

    def _sweep_data(self, bucket: str, cutoff: int) -> int:
        bucket_dir = os.path.join(self.root, "data", bucket)
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
                removed += self._sweep_versions(bucket, key, os.path.join(dirpath, name), cutoff)
        return removed

    def _sweep_versions(self, bucket: str, key: str, versions_dir: str, cutoff: int) -> int:
        """Under the key's lock, so that no commit names a folder while it goes."""
        removed = 0
        with self._locks.hold(object_lock_name(bucket, key)):
            listed = self._key_record(versions_dir + RECORD_SUFFIX).names()
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

    def _sweep_uploads(self, bucket: str, cutoff: int) -> int:
        """Part folders (`part-{P}.{pv}`) that the drive's part record does not name,
        and upload folders left with no record at all."""
        removed = 0
        for upload in _scan(os.path.join(self.root, "multipart", bucket)):
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

    def _read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None
    ) -> tuple[list[VersionRecord], bytes | None]:
        if version_id is None:
            versions = self._newest(bucket, key)
        else:
            versions = self._read_object(bucket, key, version_id)
        if not _shard_to_read(versions, limit):
            return versions, None
        crc = versions[0].parts[0].crcs[0][shard]
        base = f"{object_dir(bucket, key)}/{versions[0].vid}"
        try:
            data = self._read_shard(shard_path(base, 0, shard), crc)
        except (ShardMissing, CorruptShard):
            return versions, None
        return versions, data

    def _newest(self, bucket: str, key: str) -> list[VersionRecord]:
        """_read_object's newest entries, kept (up to NEWEST_BYTES of records) while
        their file is the same (inode, mtime, size) and no write through this drive
        changed it."""
        path = self._record_path(bucket, key)[0]
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return self._read_object(bucket, key)
        if (known := self._fresh(path, st)) is not None:
            self.newest.get(path)  # counted as a hit, and kept as recently used
            return list(known.head)
        generation = self.newest.generation  # before the record, never after
        record = self._key_record(path)
        known = KnownRecord.of(st, record)
        self.newest.put(path, generation, known, weight=st.st_size)
        return list(known.head)


def _shard_to_read(versions: Sequence[VersionRecord], limit: int) -> bool:
    """Whether read_small reads a shard file: the newest entry is an object of one
    chunk of at most `limit` bytes whose shards are files (an inline one is in the
    entry already)."""
    if not versions or versions[0].deleted or versions[0].is_inline:
        return False
    parts = versions[0].parts
    return (
        len(parts) == 1
        and not parts[0].number
        and len(parts[0].crcs) == 1
        and parts[0].size <= limit
    )


def _stamp(st: os.stat_result | Written) -> FileStamp:
    """What tells a record file's versions apart (see _newest)."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _settle_version(vdir: str, entry: VersionRecord) -> None:
    """Before a record names version `entry`: its folders made durable (the files were
    fsynced when written), and a shard of every chunk present — else ShardMissing, so
    the drive never lists a version it does not hold (a folder swept while a write was
    cut off, or an upload part it never got). An inline version has no folder: its
    shard is in the entry itself, or the drive does not hold the version either."""
    if entry.is_inline:
        if entry.inline is None:
            raise ShardMissing(f"no inline shard, so version {entry.vid} is not here")
        return
    for part in entry.parts:
        base = os.path.join(vdir, f"part-{part.number}") if part.number else vdir
        for c in range(len(part.crcs)):
            chunk = os.path.join(base, f"chunk-{c}")
            try:
                names = os.listdir(chunk)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            if not any(n.endswith(".dat") for n in names):
                raise ShardMissing(f"{chunk}: no shard, so version {entry.vid} is not here")
            fsync_dir(chunk)
        if base != vdir:
            fsync_dir(base)
    if os.path.isdir(vdir):
        fsync_dir(vdir)
        fsync_dir(os.path.dirname(vdir))


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


def _sweep_flat(folder: str, cutoff: int, keep: str = "") -> int:
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


def _link_file(src: str, dst: str) -> None:
    """Hard-link, or copy where the filesystem cannot link. Temp files of a write cut
    off by a crash are not carried over."""
    if src.endswith(".tmp"):
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_io_error(exc: BaseException) -> bool:
    """Whether an exception says the drive misbehaved (rather than "not there")."""
    if isinstance(exc, DriveError):
        return True
    if isinstance(exc, (ShardMissing, CorruptShard, FileNotFoundError)):
        return False
    return isinstance(exc, OSError) and exc.errno not in (errno.ENOENT, errno.ENOTDIR)
