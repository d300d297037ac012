"""Where a bucket's lifecycle pass has got to, kept as a bucket document so that a pass
cut short (a restart, a crash, another node taking over the bucket) resumes there
instead of starting again; every mode stores bucket documents (a file written
atomically standalone, a quorum record in erasure and cluster modes)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shoal.storage.backend import Backend
from shoal.storage.errors import NoSuchBucketDocument

DOCUMENT = "lifecycle-progress"
PHASES = ("objects", "uploads")


@dataclass(frozen=True)
class Progress:
    """Everything up to and including `key` (and, for uploads, `upload_id`) is done."""

    phase: str  # one of PHASES
    key: str = ""
    upload_id: str = ""


class ProgressStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def load(self, bucket: str) -> Progress | None:
        try:
            text = await self.backend.get_bucket_document(bucket, DOCUMENT)
        except NoSuchBucketDocument:
            return None
        data = json.loads(text)
        if data.get("phase") not in PHASES:
            raise ValueError(f"unknown lifecycle progress phase {data.get('phase')!r}")
        return Progress(data["phase"], str(data.get("key", "")), str(data.get("upload_id", "")))

    async def save(self, bucket: str, progress: Progress) -> None:
        await self.backend.put_bucket_document(bucket, DOCUMENT, json.dumps(asdict(progress)))

    async def clear(self, bucket: str) -> None:
        await self.backend.delete_bucket_document(bucket, DOCUMENT)
