"""Completed multipart uploads, remembered on the erasure sets for repeats of their
Complete: `multipart-done/{bucket}/{upload}.json` on each drive of the upload's set
(storage.multipart.completion_record, kept for COMPLETION_MEMORY).

S3 answers a CompleteMultipartUpload repeated with the same parts with the first one's
result; an SDK that lost the first answer retries, and must not see NoSuchUpload for
an upload that succeeded. Outside `multipart/`, so the upload scans (healing, sweeps,
listing) never take a record for an upload.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from shoal.storage.backend import CompletedPart, ObjectMeta
from shoal.storage.erasure.buckets import agreed
from shoal.storage.erasure.drive import Drive
from shoal.storage.erasure.quorum import fan_out
from shoal.storage.multipart import (
    completion_expired,
    completion_record,
    is_upload_id,
    recalled_completion,
)
from shoal.storage.records import dumps, loads

log = logging.getLogger("shoal.storage")

ROOT = "multipart-done"


def _path(bucket: str, upload_id: str) -> str | None:
    return f"{ROOT}/{bucket}/{upload_id}.json" if is_upload_id(upload_id) else None


class Completions:
    """Remember, recall and forget completed uploads on one erasure set's drives."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum  # copies that must agree for a recall (the read quorum)

    async def remember(
        self,
        drives: Sequence[Drive],
        bucket: str,
        upload_id: str,
        parts: list[CompletedPart],
        meta: ObjectMeta,
    ) -> None:
        """Written once the object is committed; too few copies only mean a repeat of
        this Complete will not be recognised (NoSuchUpload, as before), so it is logged."""
        path = _path(bucket, upload_id)
        if path is None:
            return
        data = dumps(completion_record(bucket, upload_id, parts, meta))
        answers = await fan_out(drives, lambda d: d.write_doc(path, data))
        if len(answers.ok()) < self.quorum:
            log.warning("completed upload %s remembered on too few drives", upload_id)

    async def recall(
        self,
        drives: Sequence[Drive],
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
    ) -> ObjectMeta | None:
        record = await self._kept(drives, bucket, upload_id)
        return recalled_completion(record, bucket, key, upload_id, parts)

    async def recorded(self, drives: Sequence[Drive], bucket: str, upload_id: str) -> bool:
        """Whether a quorum remembers the upload completed: its folders are then only
        a removal a crash cut off."""
        return await self._kept(drives, bucket, upload_id) is not None

    async def _kept(
        self, drives: Sequence[Drive], bucket: str, upload_id: str
    ) -> dict[str, Any] | None:
        path = _path(bucket, upload_id)
        if path is None:
            return None
        return await agreed(drives, path, self.quorum, f"completed upload {upload_id}")

    async def forget_expired(self, drives: Sequence[Drive]) -> int:
        """Each drive drops its own expired copies (they are the same on every drive)."""

        async def one(d: Drive) -> int:
            removed = 0
            for bucket in await d.list_dir(ROOT):
                for name in await d.list_dir(f"{ROOT}/{bucket}"):
                    path = f"{ROOT}/{bucket}/{name}"
                    raw = await d.read_doc(path)
                    try:
                        record = {} if raw is None else loads(raw)
                    except ValueError:
                        record = {}  # torn or foreign: nothing to remember
                    if completion_expired(record):
                        await d.delete(path)
                        removed += 1
            return removed

        answers = await fan_out(drives, one)
        return max(answers.values(), default=0)
