"""The Backend's multipart methods of an ErasureStore, each handed to the store's
Multipart (storage.erasure.uploads). A mixin, as the FileStore's parts are, so the
store stays one Backend object and its module the front door to the rest."""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import datetime
from typing import TYPE_CHECKING

from shoal.storage.backend import (
    CompletedPart,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    PartListPage,
    UploadInfo,
    UploadListPage,
)

if TYPE_CHECKING:
    from shoal.storage.erasure.uploads import Multipart


class UploadMethods:
    """Multipart uploads of an ErasureStore (which provides `uploads`)."""

    uploads: Multipart

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        write: ObjectWrite,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> UploadInfo:
        return await self.uploads.create_multipart_upload(
            bucket, key, write, checksum_algorithm, checksum_type
        )

    def upload_set(self, bucket: str, key: str, upload_id: str) -> tuple[int, int]:
        return self.uploads.upload_set(bucket, key, upload_id)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        return await self.uploads.get_upload(bucket, key, upload_id)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        write: ObjectWrite,
    ) -> PartInfo:
        return await self.uploads.upload_part(bucket, key, upload_id, part_number, body, write)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after: int = 0, max_parts: int = 1000
    ) -> PartListPage:
        return await self.uploads.list_parts(
            bucket, key, upload_id, after=after, max_parts=max_parts
        )

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        return await self.uploads.complete_multipart_upload(bucket, key, upload_id, parts, write)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.uploads.abort_multipart_upload(bucket, key, upload_id)

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
        return await self.uploads.list_multipart_uploads(
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )

    async def expire_multipart_uploads(self, older_than: datetime) -> int:
        return await self.uploads.expire_multipart_uploads(older_than)
