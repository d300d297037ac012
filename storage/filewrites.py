"""The write half of the FileStore: a PUT's body spooled, then committed in one worker
thread (finalize, record, decide, apply), plainly or, in a versioned bucket, as a
journaled plan (storage.fileversions).

A mixin, like storage.filebucketops and storage.filemultipart, so the store stays one
Backend object; multipart completion commits through `_commit_sync` too.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from shoal.storage.commit import Commit, decide_and_apply, record_bytes
from shoal.storage.diskio import CHUNK, object_lock_name, read_json, rmtree_quiet, unlink_quiet
from shoal.storage.errors import PreconditionFailed
from shoal.storage.fileversions import no_key
from shoal.storage.journal import TEMP, Move
from shoal.storage.multipart import no_upload
from shoal.storage.records import meta_to_dict, new_meta
from shoal.storage.streams import prepend, read_head, spool, write_unsynced
from shoal.storage.threads import run

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from shoal.storage.backend import ObjectMeta, ObjectWrite, PartInfo, UploadInfo
    from shoal.storage.commit import TempArea
    from shoal.storage.diskio import StripedLocks
    from shoal.storage.fileversions import KeyVersions, Versions
    from shoal.storage.keys import KeyPath
    from shoal.storage.multipart import UploadStore
    from shoal.storage.streams import Spooled
    from shoal.storage.usage import BucketUsage
    from shoal.storage.walk import ListingCache


def stored_size(meta_path: str, data_path: str) -> int | None:
    """The size of the object stored at these paths (None: there is none), from its
    data file: two stats rather than reading and parsing the record."""
    try:
        os.stat(meta_path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.stat(data_path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0


class FileWrites:
    """Object writes of a FileStore (which provides what is declared below)."""

    root: str
    temp: TempArea
    locks: StripedLocks
    uploads: UploadStore
    usage: BucketUsage
    listings: ListingCache
    versions: Versions
    #: Buckets seen to exist (see FileStore.__init__).
    _seen_buckets: set[str]

    if TYPE_CHECKING:

        @staticmethod
        def _key_path(key: str) -> KeyPath: ...
        def _locate(self, bucket: str, kp: KeyPath) -> str: ...
        def _require_bucket(self, bucket: str) -> str: ...
        def _versioning(self, bucket: str, bucket_dir: str) -> str: ...
        def _versions_of(self, bucket: str, key: str, bucket_dir: str) -> KeyVersions: ...

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], write: ObjectWrite
    ) -> ObjectMeta:
        kp = self._key_path(key)
        if bucket not in self._seen_buckets:
            await run(self._require_bucket, bucket)
        chunks = aiter(body)
        head, more = await read_head(chunks, CHUNK, write.max_size)
        if not more:
            # A body that fits one chunk is written and committed in a single thread hop.
            return await run(self._put_small, bucket, key, kp, head, write)
        bdir = await run(self._locate, bucket, kp)
        rest = prepend(head, chunks)
        del head  # held by `rest` only until it is written, not for the whole upload
        spooled = await spool(rest, self.temp.path(".data"), write.digesters, write.max_size)
        return await run(self._commit_sync, bucket, key, kp, bdir, spooled, write, spooled.md5)

    def _put_small(
        self, bucket: str, key: str, kp: KeyPath, data: bytes, write: ObjectWrite
    ) -> ObjectMeta:
        bdir = self._locate(bucket, kp)
        spooled = write_unsynced(self.temp.path(".data"), data, write.digesters)
        return self._commit_sync(bucket, key, kp, bdir, spooled, write, spooled.md5)

    def _commit_sync(
        self,
        bucket: str,
        key: str,
        kp: KeyPath,
        bdir: str,
        spooled: Spooled,
        write: ObjectWrite,
        etag: str,
        *,
        parts: list[PartInfo] | None = None,
        upload: UploadInfo | None = None,
    ) -> ObjectMeta:
        """Steps 2-4 of a write, in one worker thread: finalize, record, decide, apply."""
        try:
            checksums = write.finalize(spooled.size, etag) if write.finalize else {}
            meta = new_meta(key, spooled.size, etag, write, checksums, parts=parts, upload=upload)
            commit = Commit(
                data_tmp=spooled.path,
                data=kp.data_path(bdir),
                meta=kp.meta_path(bdir),
                bucket_dir=bdir,
                dirs=kp.dirs,
                inode=spooled.inode[1],
                lock=object_lock_name(bucket, key),
                upload_dir=None if upload is None else self.uploads.upload_dir(upload.upload_id),
            )
            payload = record_bytes(self.root, meta_to_dict(meta), commit)
        except BaseException:
            unlink_quiet(spooled.path)
            raise
        meta, replaced = self._decide(
            payload, commit, write, upload, data_synced=spooled.synced, bucket=bucket, meta=meta
        )
        self.usage.object_written(bucket, key, replaced, meta.size)
        if upload is not None:
            self.usage.upload_ended(bucket, key)
        return meta

    def _decide(
        self,
        payload: bytes,
        commit: Commit,
        write: ObjectWrite,
        upload: UploadInfo | None,
        *,
        data_synced: bool,
        bucket: str,
        meta: ObjectMeta,
    ) -> tuple[ObjectMeta, int | None]:
        """Make the write visible; returns it (with its version id) and the size of the
        object version it replaced, if any. Never-versioned buckets take the plain
        commit; versioned ones a journaled plan (storage.fileversions)."""
        with self.locks.hold(commit.lock):
            try:
                if upload is not None and not self.uploads.exists(upload.upload_id):
                    raise no_upload()
                self._check_conditions(commit.meta, write)
                state = self._versioning(bucket, commit.bucket_dir)
            except BaseException:
                unlink_quiet(commit.data_tmp)
                raise
            if state:
                kv = self._versions_of(bucket, meta.key, commit.bucket_dir)
                moves: list[Move] = []
                trash = None
                if commit.upload_dir is not None:
                    trash = self.temp.path(".trash")
                    with contextlib.suppress(FileNotFoundError):
                        ino = os.lstat(commit.upload_dir).st_ino
                        moves.append(Move(commit.upload_dir, trash, ino, TEMP))
                meta, replaced = self.versions.put(
                    kv,
                    state,
                    meta,
                    data_tmp=commit.data_tmp,
                    data_inode=commit.inode,
                    data_synced=data_synced,
                    extra_moves=moves,
                )
            else:
                replaced = stored_size(commit.meta, commit.data)
                trash = decide_and_apply(self.temp, payload, commit, data_synced=data_synced)
            self.listings.bump()
        if trash is not None:
            rmtree_quiet(trash)
        return meta, replaced

    @staticmethod
    def _check_conditions(meta_path: str, write: ObjectWrite) -> None:
        """If-None-Match / If-Match against the current object (lock held)."""
        if not write.if_none_match and write.if_match is None:
            return
        try:
            current: str | None = str(read_json(meta_path)["etag"])
        except (FileNotFoundError, NotADirectoryError):
            current = None
        if write.if_none_match and current is not None:
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold"
            )
        if write.if_match is not None:
            if current is None:
                raise no_key()
            wanted = write.if_match.strip().strip('"')
            if wanted != "*" and wanted != current:
                raise PreconditionFailed(
                    "At least one of the pre-conditions you specified did not hold"
                )
