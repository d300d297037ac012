"""The multipart half of the FileStore: uploads, parts, completion, listing, expiry.

A mixin so the store stays one Backend object; the upload directories themselves are
storage.multipart's, and completion commits through the store's own write path (plain
or versioned, see storage.filewrites).
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import datetime
from typing import TYPE_CHECKING

import anyio

from shoal.storage.backend import (
    CompletedPart,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    PartListPage,
    UploadInfo,
    UploadListPage,
)
from shoal.storage.diskio import object_lock_name, unlink_all, unlink_quiet
from shoal.storage.erasure.locks import KeyedLocks
from shoal.storage.errors import NoSuchUpload
from shoal.storage.listing import uploads_page
from shoal.storage.multipart import (
    UploadStore,
    check_completion,
    check_part_number,
    multipart_etag,
    new_upload,
    no_upload,
)
from shoal.storage.records import now
from shoal.storage.streams import assemble, spool
from shoal.storage.threads import run

#: Times a Complete chooses its parts again when one it chose was replaced before it
#: could hold it (FileMultipart._complete).
ASSEMBLY_TRIES = 5

log = logging.getLogger("shoal.storage")

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from shoal.storage.commit import TempArea
    from shoal.storage.diskio import StripedLocks
    from shoal.storage.keys import KeyPath
    from shoal.storage.streams import Spooled
    from shoal.storage.usage import BucketUsage


class FileMultipart:
    """Multipart uploads of a FileStore (which provides what is declared below)."""

    uploads: UploadStore
    temp: TempArea
    locks: StripedLocks
    usage: BucketUsage

    if TYPE_CHECKING:

        @staticmethod
        def _key_path(key: str) -> KeyPath: ...
        def _locate(self, bucket: str, kp: KeyPath) -> str: ...
        def _require_bucket(self, bucket: str) -> str: ...
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
        ) -> ObjectMeta: ...

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        write: ObjectWrite,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> UploadInfo:
        kp = self._key_path(key)
        info = new_upload(key, write, checksum_algorithm, checksum_type)

        def work() -> None:
            self._locate(bucket, kp)
            self.uploads.create(bucket, info)

        await run(work)
        self.usage.upload_started(bucket, key)
        return info

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        def work() -> UploadInfo:
            self._require_bucket(bucket)
            return self.uploads.load(bucket, key, upload_id)

        return await run(work)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        write: ObjectWrite,
    ) -> PartInfo:
        check_part_number(part_number)
        await self.get_upload(bucket, key, upload_id)
        spooled = await spool(body, self.temp.path(".data"), write.digesters, write.max_size)
        try:
            checksums = write.finalize(spooled.size, spooled.md5) if write.finalize else {}
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run(unlink_quiet, spooled.path)
            raise
        part = PartInfo(part_number, spooled.size, spooled.md5, now(), dict(checksums or {}))
        await run(self.uploads.commit_part, upload_id, spooled, part)
        return part

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after: int = 0, max_parts: int = 1000
    ) -> PartListPage:
        def work() -> PartListPage:
            self._require_bucket(bucket)
            info = self.uploads.load(bucket, key, upload_id)
            stored = self.uploads.parts(upload_id)
            numbers = sorted(n for n in stored if n > after)
            chosen = [stored[n][0] for n in numbers][: max(max_parts, 0)]
            truncated = len(numbers) > len(chosen)
            marker = chosen[-1].number if chosen else None
            return PartListPage(info, chosen, truncated, marker)

        return await run(work)

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        """`write.finalize` is called with (size, multipart ETag "hex-N"). Repeated with
        the same parts once it succeeded, answers with the remembered result (S3 is
        idempotent here), as long as storage.multipart.COMPLETION_MEMORY."""
        # One Complete of an upload at a time in this process: a second one waits, then
        # finds the upload gone and the first's result remembered.
        async with self._completing.hold(upload_id):
            try:
                meta = await self._complete(bucket, key, upload_id, parts, write)
            except NoSuchUpload:
                recalled = await run(self.uploads.recall, bucket, key, upload_id, parts)
                if recalled is None:
                    raise
                return recalled
            try:
                await run(self.uploads.remember, bucket, upload_id, parts, meta)
            except OSError:
                # The object is committed; only a repeat of this Complete will not know it.
                log.warning("could not remember completed upload %s", upload_id, exc_info=True)
            return meta

    @functools.cached_property
    def _completing(self) -> KeyedLocks:
        return KeyedLocks()

    async def _complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        """Assembles hard links to the chosen parts' data, made first (`_hold`): an
        UploadPart does not wait for a Complete, and a part it replaced would otherwise
        vanish mid-assembly, after the digesters had seen the parts before it."""
        kp = self._key_path(key)
        for attempt in range(1, ASSEMBLY_TRIES + 1):
            try:
                bdir, info, infos, sources, links = await run(
                    self._hold, bucket, kp, key, upload_id, parts
                )
                break
            except FileNotFoundError as exc:
                # A racing UploadPart replaced a chosen part before its link (or an
                # Abort removed the upload): choose again, as the parts are now.
                if attempt == ASSEMBLY_TRIES:
                    raise no_upload() from exc
        try:
            spooled = await run(assemble, self.temp.path(".data"), sources, write.digesters)
        except FileNotFoundError as exc:  # a part read in place (see _hold) went meanwhile
            raise no_upload() from exc
        finally:
            with anyio.CancelScope(shield=True):
                await run(unlink_all, links)
        commit = functools.partial(self._commit_sync, parts=infos, upload=info)
        return await run(commit, bucket, key, kp, bdir, spooled, write, multipart_etag(infos))

    def _hold(
        self, bucket: str, kp: KeyPath, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> tuple[str, UploadInfo, list[PartInfo], list[str], list[str]]:
        """(bucket dir, upload, chosen parts, their data to read, the links among those
        that this made in the process's temp area, for `unlink_all`). FileNotFoundError
        when a chosen part's data went before its link. On a filesystem without hard
        links the parts are read in place."""
        bdir = self._locate(bucket, kp)
        info = self.uploads.load(bucket, key, upload_id)
        chosen = check_completion(parts, self.uploads.parts(upload_id))
        sources: list[str] = []
        links: list[str] = []
        try:
            for _, data in chosen:
                link = self.temp.path(".part")
                try:
                    os.link(data, link)
                except FileNotFoundError:
                    raise
                except OSError:  # EPERM, EOPNOTSUPP, EMLINK: no link to hold it by
                    sources.append(data)
                    continue
                links.append(link)
                sources.append(link)
        except BaseException:
            unlink_all(links)
            raise
        return bdir, info, [p for p, _ in chosen], sources, links

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        def work() -> None:
            self._require_bucket(bucket)
            self.uploads.load(bucket, key, upload_id)
            with self.locks.hold(object_lock_name(bucket, key)):
                if not self.uploads.remove(upload_id):
                    raise no_upload()
            self.usage.upload_ended(bucket, key)

        await run(work)

    async def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadListPage:
        def work() -> UploadListPage:
            self._require_bucket(bucket)
            mine = [info for b, info in self.uploads.all() if b == bucket]
            return uploads_page(
                mine,
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                upload_id_marker=upload_id_marker,
                max_uploads=max_uploads,
            )

        return await run(work)

    async def expire_multipart_uploads(self, older_than: datetime) -> int:
        def work() -> int:
            self.uploads.forget_completed()
            count = 0
            for bucket, info in self.uploads.all():
                if info.initiated < older_than:
                    with self.locks.hold(object_lock_name(bucket, info.key)):
                        removed = self.uploads.remove(info.upload_id)
                    if removed:
                        self.usage.upload_ended(bucket, info.key)
                    count += removed
            return count

        return await run(work)
