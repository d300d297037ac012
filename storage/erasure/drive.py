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
by `sweep` (storage.erasure.drivesweep): see LocalDrive._sweep for why that is safe
while other nodes write. The object records, and what the drive keeps of them in
memory, are storage.erasure.localrecords'; the shard files storage.erasure.shardfiles'.

Keys are encoded as in the standalone store (storage.keys), so a drive lists its keys
in S3 order with the same walker. Unlike the reference's `{key_hash}/{key}` layout, a
version directory per write lets a new version's shards be written beside the old
ones and switched to by one atomic record update.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from shoal.storage import durable
from shoal.storage.diskio import (
    fsync_dir,
    makedirs,
    remove_empty_parents,
    rmtree_quiet,
    spread_subfolders,
)
from shoal.storage.durable import Written
from shoal.storage.erasure.drivesweep import sweep_data, sweep_flat, sweep_uploads, walk_dirs
from shoal.storage.erasure.drivetypes import CorruptShard as CorruptShard
from shoal.storage.erasure.drivetypes import DriveError as DriveError
from shoal.storage.erasure.drivetypes import DriveOffline as DriveOffline
from shoal.storage.erasure.drivetypes import DrivePage as DrivePage
from shoal.storage.erasure.drivetypes import DriveTimeout as DriveTimeout
from shoal.storage.erasure.drivetypes import ShardMissing as ShardMissing
from shoal.storage.erasure.drivetypes import ShardWrite as ShardWrite
from shoal.storage.erasure.drivetypes import is_io_error as is_io_error
from shoal.storage.erasure.localrecords import RECORD_SUFFIX, LocalRecords, shard_to_read
from shoal.storage.erasure.records import Rank, VersionRecord
from shoal.storage.erasure.shardfiles import ShardFiles
from shoal.storage.keys import OBJECT_MARKER, key_path
from shoal.storage.records import dumps, loads
from shoal.storage.threads import Workers

T = TypeVar("T")

ROOT = ".smartstorage"
FORMAT_FILE = "format.json"

#: Replicated records holding secrets (storage/erasure/accounts.py), written mode 0600.
SECRET_DOCS = "system/"


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

    @property
    def local(self) -> bool:
        """Whether the disk is in this process (a LocalDrive): reading it moves no
        bytes between nodes, so a read takes its shards first (shards.read_chunk)."""
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

    def cached_shard(self, path: str, crc: int | None) -> bytes | None:
        """The shard's bytes at once, on the event loop, when this process has them in
        memory without waiting for a disk and they match `crc`; None otherwise (then
        read_shard, which also says why). A read of a cached chunk then costs no task,
        no timeout and no hand-over per shard (shards.read_chunk)."""
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


class LocalDrive(ShardFiles):
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
        self.local = True
        self._workers = Workers(threads, "shoal-drive")
        #: Its object records, and what it keeps of them in memory.
        self.records = LocalRecords(
            self.root, require_root=self._require_root, ready=self._ready, replace=self._replace
        )
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
        self.records.close()
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

    def _ready(self) -> bool:
        """Whether the drive's folder is there and this process has stamped it."""
        return self._opened_ns is not None and os.path.isdir(self.root)

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
        return self._join(rel)

    def _join(self, rel: str) -> str:
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
            self.records.forget(target)  # not how records are written, but if one is

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
        self.records.listings.bump()
        if path.startswith("data/") and not any(
            part.endswith(OBJECT_MARKER) for part in path.split("/")
        ):
            self.records.forget_all()  # a folder of records (a version folder holds none)
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

    # -- object records (storage.erasure.localrecords) ----------------------------------

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
        if plain and (known := self.records.known(bucket, key)) is not None:
            return known
        return await self._run(self.records.read, bucket, key, version_id, everything, below, limit)

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
            self.records.update, bucket, key, add, tuple(drop), drop_nulls_before, keep_data
        )

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
            self.records.page, bucket, prefix, delimiter, after, max_keys, versions
        )

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        return await self._run(self._write_version, bucket, key, entry, tuple(shards))

    def _write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: tuple[ShardWrite, ...]
    ) -> list[VersionRecord]:
        for path, data, crc in shards:
            self._write_shard(path, data, crc, sync_dir=False)
        return self.records.update(bucket, key, entry, ())

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        if version_id is None and (known := self.records.known(bucket, key)) is not None:
            if not shard_to_read(known, limit):
                return known, None
            # And its shard file, if the kernel has it (ShardFiles.cached_shard).
            data = self.cached_shard(*_small_shard(bucket, key, known, shard))
            if data is not None:
                return known, data
        return await self._run(self._read_small, bucket, key, shard, limit, version_id)

    def _read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None
    ) -> tuple[list[VersionRecord], bytes | None]:
        if version_id is None:
            versions = self.records.current(bucket, key)
        else:
            versions = self.records.read(bucket, key, version_id)
        if not shard_to_read(versions, limit):
            return versions, None
        try:
            data = self._read_shard(*_small_shard(bucket, key, versions, shard))
        except (ShardMissing, CorruptShard):
            return versions, None
        return versions, data

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """On the event loop, from what the drive keeps (LocalRecords.known)."""
        return self.records.known(bucket, key, small_limit)

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
            return sweep_flat(os.path.join(self.root, "tmp"), cutoff, keep=self._work)
        removed = sweep_data(self.root, bucket, cutoff, self.records)
        parts_cutoff = cutoff if self.exclusive else aged
        removed += sweep_uploads(self.root, bucket, parts_cutoff)
        if removed:
            self.records.listings.bump()
        return removed


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


def _small_shard(
    bucket: str, key: str, versions: Sequence[VersionRecord], shard: int
) -> tuple[str, int]:
    """(path, CRC32C) of shard `shard` of a small object's newest entry (shard_to_read)."""
    crc = versions[0].parts[0].crcs[0][shard]
    return shard_path(f"{object_dir(bucket, key)}/{versions[0].vid}", 0, shard), crc
