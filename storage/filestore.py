"""FileStore: the standalone Backend, on one directory.

Layout (browsable, see storage.keys for the key encoding):

    {dir}/{bucket}/{encoded key}._storage_object                object bytes
    {dir}/{bucket}/{encoded key}._storage_object.metadata.json  metadata record
    {dir}/.multipart/{upload-id}/                                uploads (storage.multipart)
    {dir}/.policies/{bucket}.policy.json                         bucket policies, as given
    {dir}/.buckets/{bucket}.json                                 bucket records
    {dir}/.bucket-config/{bucket}/{name}                         other bucket documents (cors)
    {dir}/.versions/{bucket}/{encoded key}._storage_object/      older versions, delete markers
    {dir}/.tmp/                                                  temp files, commit records
    {dir}/.locks/                                                per-stripe flock files

An object exists exactly when its metadata sidecar exists: writes rename the data into
place before the sidecar, deletes unlink the sidecar first, and a data file without a
sidecar (left by a crash mid-delete) is never listed or served and is removed when the
store next opens (see _remove_leftovers). Blocking disk work always runs in worker threads.
Buckets, writes and multipart uploads are the mixins storage.filebucketops,
storage.filewrites and storage.filemultipart; reads, deletes and listings are here.

A bucket that was ever versioned keeps its current objects in exactly that place too;
the rest of each key's versions live in `.versions/` (storage.fileversions), and its
writes and deletes are journaled plans (storage.journal) rather than plain commits. A
never-versioned bucket has no `.versions/` folder and takes the plain path throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable
from datetime import timedelta

from shoal.storage.backend import (
    NULL_VERSION,
    BucketInfo,
    DeleteResult,
    Guard,
    ListPage,
    ObjectMeta,
    VersionListPage,
)
from shoal.storage.commit import TempArea, recover
from shoal.storage.diskio import (
    StripedLocks,
    fsync_dir,
    missing,
    object_lock_name,
    read_json,
    remove_empty_parents,
    rmtree_quiet,
    unlink_quiet,
)
from shoal.storage.errors import (
    InvalidRequest,
    KeyTooLong,
)
from shoal.storage.filebucketops import FileBuckets
from shoal.storage.filebuckets import BucketRecords
from shoal.storage.filemultipart import FileMultipart
from shoal.storage.fileversions import KeyVersions, Versions, no_key, versions_root
from shoal.storage.filewrites import FileWrites, stored_size
from shoal.storage.keys import KeyPath, is_inside, key_path
from shoal.storage.leftovers import remove_leftovers
from shoal.storage.listing import cached_summaries, list_page
from shoal.storage.multipart import UploadStore
from shoal.storage.quickread import Sidecars, read_small
from shoal.storage.records import meta_from_dict, now
from shoal.storage.streams import (
    FileObjectReader,
)
from shoal.storage.threads import run
from shoal.storage.ttlcache import TtlCache
from shoal.storage.usage import BucketUsage
from shoal.storage.versionlisting import versions_page
from shoal.storage.walk import ListingCache

log = logging.getLogger(__name__)


#: Longest path the kernel accepts, with its terminating NUL (Linux).
PATH_MAX = 4096
#: How long head_bucket answers from memory (storage/ttlcache.py).
HEAD_TTL = 1.0

#: Objects up to this size are read whole when opened.
PREFETCH_BYTES = 256 * 1024


def _key_files(bucket_dir: str, kp: KeyPath) -> tuple[str, str]:
    """(sidecar, data) of a key below its bucket's folder, after lexical checks (no
    system call): key_path already refuses "."/".." components, this is the belt to its
    braces (symlinks planted inside the data directory are trusted); and escaping can
    triple a 1,024-byte key, so with a long data directory path the file could not be
    created (ENAMETOOLONG): refuse the key, not 500."""
    meta = kp.meta_path(bucket_dir)
    if not is_inside(os.path.normpath(bucket_dir), os.path.normpath(meta)):
        raise InvalidRequest("Key resolves outside its bucket")
    if len(os.fsencode(meta)) >= PATH_MAX:
        raise KeyTooLong("Your key is too long")
    return meta, kp.data_path(bucket_dir)


@functools.lru_cache(maxsize=1024)  # asked by every GET and HEAD; keys are <= 1 KiB
def _current_of(root: str, bucket: str, key: str) -> tuple[str, str] | None:
    """FileStore._current_paths once the bucket is known, remembered: the paths and
    their checks took ~3 µs of a small GET's ~150, the cache 0.1. None where _locate
    refuses the key."""
    try:
        return _key_files(os.path.join(root, bucket), key_path(key))
    except (InvalidRequest, KeyTooLong):
        return None


class FileStore(FileBuckets, FileWrites, FileMultipart):
    """Buckets as directories, objects as files; see the module docstring."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clean_slate: bool = False,
        multipart_expiration_days: float = 7,
        multipart_cleanup_interval_minutes: float = 60,
    ) -> None:
        self.directory = os.fspath(directory)
        self.clean_slate = clean_slate
        self.expiration = timedelta(days=multipart_expiration_days)
        self.cleanup_interval = multipart_cleanup_interval_minutes * 60
        self.root = ""
        self.temp = TempArea("")
        self.locks = StripedLocks("")
        self.listings = ListingCache()
        self.sidecars = Sidecars()  # parsed current records (storage/quickread.py)
        #: Buckets seen to exist, so a PUT can refuse a missing bucket before reading its
        #: body (Expect: 100-continue) without a thread hop in the common case.
        self._seen_buckets: set[str] = set()
        #: Bucket records as head_bucket last read them (forgotten, with a read in
        #: flight, when this store changes one).
        self._heads: TtlCache[str, BucketInfo] = TtlCache(HEAD_TTL)
        self.uploads = UploadStore("", self.temp, self.locks)
        self.buckets = BucketRecords("", "")
        self.versions = Versions("", self.temp, self.listings)
        self._task: asyncio.Task[None] | None = None
        #: Objects, bytes and uploads per bucket, for metrics.
        self.usage = BucketUsage()

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        await run(self._open_sync)
        self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    def _open_sync(self) -> None:
        if self.clean_slate and os.path.isdir(self.directory):
            # Empty it rather than remove it: the directory may be a mount point.
            for entry in os.scandir(self.directory):
                if entry.is_dir(follow_symlinks=False):
                    rmtree_quiet(entry.path)
                else:
                    os.unlink(entry.path)
        os.makedirs(self.directory, exist_ok=True)
        self.root = os.path.realpath(self.directory)
        for sub in (".buckets", ".policies", ".multipart", ".tmp", ".locks"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.temp = TempArea(os.path.join(self.root, ".tmp"))
        self.temp.open()
        self.locks = StripedLocks(os.path.join(self.root, ".locks"))
        self.uploads = UploadStore(os.path.join(self.root, ".multipart"), self.temp, self.locks)
        self.buckets = BucketRecords(self.root, self.temp.dir)
        self.versions = Versions(self.root, self.temp, self.listings)
        rolled = recover(self.root, self.temp, self.locks)
        if rolled:
            log.info("recovered %d interrupted writes", rolled)
        removed = remove_leftovers(self.root, self.locks, self.uploads)
        if removed:
            log.info("removed %d files left behind by interrupted operations", removed)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.root:
            await run(self.temp.close)
            await run(self.locks.close)

    async def _housekeeping(self) -> None:
        """Expire abandoned multipart uploads now and then every cleanup interval."""
        while True:
            try:
                n = await self.expire_multipart_uploads(now() - self.expiration)
                if n:
                    log.info("expired %d multipart uploads", n)
            except Exception:
                log.exception("multipart cleanup failed")
            await asyncio.sleep(max(self.cleanup_interval, 1.0))

    # -- paths -----------------------------------------------------------------------

    def _locate(self, bucket: str, kp: KeyPath) -> str:
        """Bucket directory for a key, after checking the key's path resolves inside it."""
        bdir = self._require_bucket(bucket)
        _key_files(bdir, kp)
        return bdir

    def _current_paths(self, bucket: str, key: str) -> tuple[str, str] | None:
        """(sidecar, data) of a key's current object in a bucket seen to exist, with
        _locate's lexical checks; None where _locate would refuse (the thread path
        then answers)."""
        if bucket not in self._seen_buckets:
            return None
        return _current_of(self.root, bucket, key)

    def _surely_absent(self, bucket: str, meta_path: str) -> bool:
        """Whether a key of a bucket seen to exist has no object, told on the loop by
        three stats: no sidecar; then no versions folder for the bucket (its first
        versioned write creates it, before moving any sidecar there, and it goes only
        with the bucket: a key whose state lives there is never taken for missing);
        then the bucket's folder still there. A GET or HEAD of a missing key (clients
        look before they write) took a thread hop for this, twice a hit's time; any
        other answer (an error besides "not there") takes the locked path."""
        return (
            missing(meta_path)
            and missing(versions_root(self.root, bucket))
            and os.path.isdir(os.path.join(self.root, bucket))
        )

    @staticmethod
    def _key_path(key: str) -> KeyPath:
        if key == "":
            raise InvalidRequest("Key must not be empty")
        return key_path(key)

    # -- objects ---------------------------------------------------------------------

    def _versions_of(self, bucket: str, key: str, bucket_dir: str) -> KeyVersions:
        return KeyVersions(
            key,
            self._key_path(key),
            bucket_dir,
            versions_root(self.root, bucket),
            object_lock_name(bucket, key),
        )

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        kp = self._key_path(key)
        paths = self._current_paths(bucket, key)
        found = self.sidecars.read(paths[0]) if paths is not None else None
        if found is not None:
            # On the loop when the sidecar is cached (storage/quickread.py).
            quick = found[0].meta
            if version_id in (None, quick.version_id):
                return quick
        elif paths is not None and version_id is None and self._surely_absent(bucket, paths[0]):
            raise no_key()

        def work() -> ObjectMeta:
            bdir = self._locate(bucket, kp)
            # Lock-free while the current object answers: its sidecar is always current.
            try:
                meta = meta_from_dict(read_json(kp.meta_path(bdir)))
            except (FileNotFoundError, NotADirectoryError):
                meta = None
            if meta is not None and version_id in (None, meta.version_id):
                return meta
            kv = self._versions_of(bucket, key, bdir)
            if version_id is None and not kv.has_versions():
                raise no_key()
            with self.locks.hold(kv.lock):
                record, _ = self.versions.find(kv, version_id)
            return meta_from_dict(record)

        return await run(work)

    async def open_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> FileObjectReader:
        """The reader keeps an open descriptor: call close() (or use `async with`)."""
        kp = self._key_path(key)
        paths = self._current_paths(bucket, key)
        quick = read_small(self.sidecars, *paths) if paths is not None else None
        if quick is not None:
            # A small current object, cached: read on the loop (storage/quickread.py).
            meta = quick[0]
            if version_id in (None, meta.version_id):
                return FileObjectReader(-1, meta, data=quick[1])
        elif paths is not None and version_id is None and self._surely_absent(bucket, paths[0]):
            raise no_key()

        def work() -> FileObjectReader:
            bdir = self._locate(bucket, kp)
            with self.locks.hold(object_lock_name(bucket, key)):
                try:
                    meta = meta_from_dict(read_json(kp.meta_path(bdir)))
                    data = kp.data_path(bdir)
                except (FileNotFoundError, NotADirectoryError):
                    meta, data = None, ""
                if meta is None or version_id not in (None, meta.version_id):
                    kv = self._versions_of(bucket, key, bdir)
                    if version_id is None and not kv.has_versions():
                        raise no_key()
                    record, data = self.versions.find(kv, version_id)
                    meta = meta_from_dict(record)
                try:
                    fd = os.open(data, os.O_RDONLY)
                except (FileNotFoundError, NotADirectoryError) as exc:
                    raise no_key() from exc
            if os.fstat(fd).st_size != meta.size:
                os.close(fd)
                raise OSError(f"object {bucket}/{key}: data size does not match its metadata")
            if meta.size <= PREFETCH_BYTES:
                # Small objects are read in this same thread hop: one hop per GET.
                try:
                    return FileObjectReader(-1, meta, data=os.pread(fd, meta.size, 0))
                finally:
                    os.close(fd)
            return FileObjectReader(fd, meta)

        return await run(work)

    async def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        guard: Guard | None = None,
        owner: str = "",
    ) -> DeleteResult:
        kp = self._key_path(key)

        def work() -> DeleteResult:
            bdir = self._locate(bucket, kp)
            kv = self._versions_of(bucket, key, bdir)
            with self.locks.hold(kv.lock):
                state = self._versioning(bucket, bdir)
                if state or (version_id is not None and kv.has_versions()):
                    result, removed = self.versions.delete(kv, state, version_id, guard, owner)
                    self.listings.bump()
                    self.usage.object_deleted(bucket, key, removed)
                    return result
                removed = self._delete_plain(kp, bdir, version_id, guard)
            remove_empty_parents(kp.parent(bdir), bdir)
            self.listings.bump()
            self.usage.object_deleted(bucket, key, removed)
            return DeleteResult(version_id=version_id)

        return await run(work)

    def _delete_plain(
        self, kp: KeyPath, bdir: str, version_id: str | None, guard: Guard | None
    ) -> int | None:
        """Delete in a never-versioned bucket (lock held): the object, if any, is the null
        version. Returns the size removed."""
        try:
            current: ObjectMeta | None = meta_from_dict(read_json(kp.meta_path(bdir)))
        except (FileNotFoundError, NotADirectoryError):
            current = None
        if version_id not in (None, NULL_VERSION):
            current = None  # an id this key cannot have: nothing to delete
        if guard is not None:
            guard(current)
        if current is None:
            return None
        removed = stored_size(kp.meta_path(bdir), kp.data_path(bdir))
        # Sidecar first: the object is gone from here on. A kill before the data is
        # unlinked leaves data without metadata, never listed or served, and removed
        # when the store next opens (_remove_leftovers).
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(kp.meta_path(bdir))
        unlink_quiet(kp.data_path(bdir))
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(kp.parent(bdir))
        self.listings.bump()
        return removed

    async def update_object_meta(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        kp = self._key_path(key)

        def work() -> ObjectMeta:
            kv = self._versions_of(bucket, key, self._locate(bucket, kp))
            with self.locks.hold(kv.lock):
                return self.versions.update(kv, version_id, change)

        return await run(work)

    async def list_object_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionListPage:
        def work() -> VersionListPage:
            bdir = self._require_bucket(bucket)
            return versions_page(
                bdir,
                versions_root(self.root, bucket),
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                version_id_marker=version_id_marker,
                max_keys=max_keys,
                cache=self.listings,
            )

        return await run(work)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        def work() -> ListPage:
            bdir = self._require_bucket(bucket)
            return list_page(
                bdir,
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                max_keys=max_keys,
                summarize=cached_summaries(self.listings),
                cache=self.listings,
            )

        return await run(work)
