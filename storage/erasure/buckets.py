"""Buckets, policies and bucket documents: small records replicated to every drive.

Each is written to every drive with a fresh version id ("v") and succeeds on a majority
of the first pool's drives; a reader takes the newest copy that enough of those drives
hold that no failed or stale write can win (versions.resolve). A write that misses its
majority is withdrawn where it landed, so the drives left still agree on the old copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shoal.storage.backend import VERSIONING_STATES, BucketInfo
from shoal.storage.erasure.drive import Drive
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.quorum import fan_out
from shoal.storage.erasure.versions import doc_rank, resolve
from shoal.storage.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    NoSuchBucket,
    NoSuchBucketDocument,
    NoSuchBucketPolicy,
    ServiceUnavailable,
)
from shoal.storage.records import dumps, iso, loads, now, parse_iso
from shoal.storage.ttlcache import TtlCache
from shoal.storage.version_ids import new_version_id

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

#: How long a bucket seen to exist is trusted without asking the drives again.
BUCKET_TTL = 2.0


def no_bucket() -> NoSuchBucket:
    return NoSuchBucket("The specified bucket does not exist")


async def agreed(
    drives: Sequence[Drive], path: str, quorum: int, what: str
) -> dict[str, Any] | None:
    """The newest copy of a small record that `quorum` drives hold (see resolve)."""

    async def one(d: Drive) -> list[dict[str, Any]]:
        raw = await d.read_doc(path)
        return [] if raw is None else [loads(raw)]

    answers = await fan_out(drives, one)
    return resolve(answers.by_position(), quorum, what, doc_rank, answers.failed())


def _record(info: BucketInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "created": iso(info.created),
        "versioning": info.versioning,
        "object_lock": info.object_lock,
        "owner": info.owner,
    }


def _info(bucket: str, record: dict[str, Any]) -> BucketInfo:
    """A bucket record as read (those written before versioning lack its fields)."""
    versioning = str(record.get("versioning") or "")
    return BucketInfo(
        bucket,
        parse_iso(record["created"]),
        versioning=versioning if versioning in VERSIONING_STATES else "Suspended",
        object_lock=bool(record.get("object_lock")),
        owner=str(record.get("owner") or ""),
    )


class ReplicatedRecords:
    """The records every drive holds a copy of (see the module docstring)."""

    def __init__(self, store: ErasureStore) -> None:
        self.store = store
        #: Buckets as last read from the drives, trusted for BUCKET_TTL seconds (the
        #: ASGI layer asks head_bucket on every request).
        self._seen: TtlCache[str, BucketInfo] = TtlCache(BUCKET_TTL)

    # -- the quorum --------------------------------------------------------------------

    @property
    def doc_drives(self) -> list[HealthTrackedDrive]:
        """The drives whose copies of replicated records count: the first pool's. The
        records go to every drive, but a joining node's drives start with none (until
        healing copies them) and must not outvote the drives that have them."""
        return self.store.drives[: self.store.pools[0] * self.store.n]

    @property
    def write_quorum(self) -> int:
        return len(self.doc_drives) // 2 + 1

    @property
    def read_quorum(self) -> int:
        return len(self.doc_drives) - self.write_quorum + 1

    async def read(self, path: str, what: str) -> dict[str, Any] | None:
        """A record kept on every drive (bucket, policy, document)."""
        return await agreed(self.doc_drives, path, self.read_quorum, what)

    async def write(self, path: str, record: dict[str, Any] | None, what: str) -> None:
        """Write (or with None, remove) a replicated record on every drive."""
        data = None if record is None else dumps({**record, "v": new_version_id()})

        async def one(d: Drive) -> None:
            await (d.delete(path) if data is None else d.write_doc(path, data))

        drives = self.store.drives
        answers = await fan_out(drives, one)
        try:
            answers.require(self.write_quorum, what, among=len(self.doc_drives))
        except ServiceUnavailable:
            if data is not None:
                # Withdrawn where it landed: fewer than a write quorum of drives lost
                # their old copy, so the drives left still hold a read quorum of it.
                await fan_out(drives, lambda d: d.delete(path), only=answers.ok())
            raise

    # -- buckets -----------------------------------------------------------------------

    @staticmethod
    def _bucket_path(bucket: str) -> str:
        if not bucket or bucket.startswith(".") or "/" in bucket or "\0" in bucket:
            raise no_bucket()
        return f"buckets/{bucket}.json"

    async def bucket_record(self, bucket: str) -> dict[str, Any]:
        record = await self.read(self._bucket_path(bucket), f"bucket {bucket}")
        if record is None:
            self.forget(bucket)
            raise no_bucket()
        self._seen.put(bucket, _info(bucket, record))
        return record

    async def require(self, bucket: str) -> None:
        """NoSuchBucket unless the bucket exists (asking the drives at most every
        BUCKET_TTL seconds)."""
        await self.head_bucket(bucket)

    def forget(self, bucket: str) -> None:
        """Stop trusting what was read of the bucket."""
        self._seen.forget(bucket)

    async def list_buckets(self) -> list[BucketInfo]:
        names: set[str] = set()
        for listed in (await fan_out(self.store.drives, lambda d: d.list_dir("buckets"))).values():
            names.update(n[:-5] for n in listed if n.endswith(".json"))
        out = []
        for name in sorted(names):
            with contextlib.suppress(NoSuchBucket):
                out.append(await self.head_bucket(name))
        return out

    async def create_bucket(
        self, bucket: str, *, object_lock: bool = False, owner: str = ""
    ) -> BucketInfo:
        path = self._bucket_path(bucket)
        async with self.store.locks.hold(f"b\0{bucket}"):
            with contextlib.suppress(NoSuchBucket):
                await self.bucket_record(bucket)
                raise BucketAlreadyOwnedByYou(
                    "Your previous request to create the named bucket succeeded and you "
                    "already own it."
                )
            info = BucketInfo(
                bucket,
                now(whole_seconds=True),
                versioning="Enabled" if object_lock else "",
                object_lock=object_lock,
                owner=owner,
            )
            # What a deletion cut off after the record went left must not come back.
            await self._remove_leftovers(bucket)
            await fan_out(self.store.drives, lambda d: d.make_bucket(bucket))
            await self.write(path, _record(info), bucket)
        return info

    async def update_bucket(
        self, bucket: str, *, versioning: str | None = None, object_lock: bool | None = None
    ) -> BucketInfo:
        """A new versioning state and/or object lock, agreed by the quorum like the
        record itself; the other nodes forget what they cached of it."""
        async with self.store.locks.hold(f"b\0{bucket}"):
            info = _info(bucket, await self.bucket_record(bucket))
            if versioning is not None:
                info = replace(info, versioning=versioning)
            if object_lock:
                info = replace(info, object_lock=True)
            await self.write(self._bucket_path(bucket), _record(info), f"bucket {bucket}")
            self.forget(bucket)
            await self.store.bucket_changed(bucket)
        return info

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return await self._seen.load(bucket, lambda: self._read_info(bucket))

    async def _read_info(self, bucket: str) -> BucketInfo:
        return _info(bucket, await self.bucket_record(bucket))

    async def delete_bucket(self, bucket: str) -> None:
        store = self.store
        async with store.locks.hold(f"b\0{bucket}"):
            await self.bucket_record(bucket)
            page = await store.list_object_versions(bucket, max_keys=1)
            if page.versions or page.common_prefixes:
                raise BucketNotEmpty("The bucket you tried to delete is not empty")
            await self.write(self._bucket_path(bucket), None, f"bucket {bucket}")
            self.forget(bucket)
            await store.bucket_changed(bucket)
            await self._remove_leftovers(bucket)
        store.usage.bucket_deleted(bucket)

    async def _remove_leftovers(self, bucket: str) -> None:
        """A deleted bucket's objects, uploads, policy and documents on every drive."""
        for path in (
            f"data/{bucket}",
            f"multipart/{bucket}",
            f"multipart-done/{bucket}",
            f"policies/{bucket}.policy.json",
            f"bucket-config/{bucket}",
        ):
            await fan_out(self.store.drives, lambda d, p=path: d.delete(p))

    # -- bucket documents --------------------------------------------------------------

    @staticmethod
    def _document_path(bucket: str, name: str) -> str:
        if name == "policy":
            return f"policies/{bucket}.policy.json"
        return f"bucket-config/{bucket}/{name}"

    async def get_bucket_document(self, bucket: str, name: str) -> str:
        await self.require(bucket)
        record = await self.read(self._document_path(bucket, name), f"{bucket}?{name}")
        if record is None:
            raise NoSuchBucketDocument(f"The bucket has no {name} configuration")
        return str(record["text"])

    async def put_bucket_document(self, bucket: str, name: str, text: str) -> None:
        await self.require(bucket)
        await self.write(self._document_path(bucket, name), {"text": text}, f"{bucket}?{name}")

    async def delete_bucket_document(self, bucket: str, name: str) -> None:
        await self.require(bucket)
        await self.write(self._document_path(bucket, name), None, f"{bucket}?{name}")

    async def get_bucket_policy(self, bucket: str) -> str:
        try:
            return await self.get_bucket_document(bucket, "policy")
        except NoSuchBucketDocument as exc:
            raise NoSuchBucketPolicy("The bucket policy does not exist") from exc
