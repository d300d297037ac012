"""The bucket half of the FileStore: bucket folders and records, creating, changing and
deleting buckets, and their documents (policy, CORS and the rest).

A mixin, like storage.filemultipart, so the store stays one Backend object; the records
themselves are storage.filebuckets'.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from shoal.storage.backend import VERSIONING_STATES, BucketInfo
from shoal.storage.diskio import (
    bucket_lock_name,
    fsync_dir,
    object_lock_name,
    replace_atomically,
    rmtree_quiet,
    unlink_quiet,
)
from shoal.storage.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InvalidRequest,
    NoSuchBucket,
    NoSuchBucketDocument,
    NoSuchBucketPolicy,
)
from shoal.storage.fileversions import versions_root
from shoal.storage.threads import run
from shoal.storage.walk import Walker

if TYPE_CHECKING:
    from shoal.storage.commit import TempArea
    from shoal.storage.diskio import StripedLocks
    from shoal.storage.filebuckets import BucketRecords
    from shoal.storage.multipart import UploadStore
    from shoal.storage.ttlcache import TtlCache
    from shoal.storage.usage import BucketUsage
    from shoal.storage.walk import ListingCache


def _no_bucket() -> NoSuchBucket:
    return NoSuchBucket("The specified bucket does not exist")


def _bucket_exists() -> BucketAlreadyOwnedByYou:
    return BucketAlreadyOwnedByYou(
        "Your previous request to create the named bucket succeeded and you already own it."
    )


def _not_empty() -> BucketNotEmpty:
    return BucketNotEmpty("The bucket you tried to delete is not empty")


def _holds_keys(bucket_dir: str, vroot: str) -> bool:
    """Whether a bucket tree holds an object, or its version tree a version or marker."""
    if Walker(bucket_dir).next_key("") is not None:
        return True
    return Walker(vroot, versions=True).next_key("") is not None


class FileBuckets:
    """Buckets of a FileStore (which provides what is declared below)."""

    root: str
    temp: TempArea
    locks: StripedLocks
    buckets: BucketRecords
    uploads: UploadStore
    usage: BucketUsage
    listings: ListingCache
    #: Buckets seen to exist (see FileStore.__init__).
    _seen_buckets: set[str]
    #: Bucket records as head_bucket last read them (see FileStore.__init__).
    _heads: TtlCache[str, BucketInfo]

    def _bucket_dir(self, bucket: str) -> str:
        """A bucket's directory; names that cannot be one of ours (the app validates names
        first: this is the store's own guard) are NoSuchBucket, never an OSError."""
        if not bucket or bucket.startswith(".") or "/" in bucket or "\0" in bucket:
            raise _no_bucket()
        try:
            too_long = len(bucket.encode("utf-8")) > 255
        except UnicodeEncodeError:
            too_long = True  # lone surrogates: not a name we could have created
        if too_long:
            raise _no_bucket()
        return os.path.join(self.root, bucket)

    def _require_bucket(self, bucket: str) -> str:
        """The bucket's directory (blocking); NoSuchBucket if it does not exist."""
        path = self._bucket_dir(bucket)
        if not os.path.isdir(path):
            self._seen_buckets.discard(bucket)
            raise _no_bucket()
        self._seen_buckets.add(bucket)
        return path

    # -- buckets ---------------------------------------------------------------------

    def _policy_path(self, bucket: str) -> str:
        return os.path.join(self.root, ".policies", bucket + ".policy.json")

    def _bucket_info(self, bucket: str, path: str) -> BucketInfo:
        return self.buckets.info(bucket, path)

    def _versioning(self, bucket: str, bucket_dir: str) -> str:
        """The bucket's versioning state (read under a key's lock by every change)."""
        try:
            return self.buckets.info(bucket, bucket_dir).versioning
        except FileNotFoundError as exc:
            raise _no_bucket() from exc

    async def list_buckets(self) -> list[BucketInfo]:
        def work() -> list[BucketInfo]:
            out = []
            for entry in os.scandir(self.root):
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    out.append(self._bucket_info(entry.name, entry.path))
            return sorted(out, key=lambda b: b.name)

        return await run(work)

    async def create_bucket(
        self, bucket: str, *, object_lock: bool = False, owner: str = ""
    ) -> BucketInfo:
        def work() -> BucketInfo:
            path = self._bucket_dir(bucket)
            with self.locks.hold(bucket_lock_name(bucket)):
                if os.path.isdir(path):
                    raise _bucket_exists()
                self._remove_leftovers(bucket)
                info = self.buckets.new(bucket, object_lock=object_lock, owner=owner)
                try:
                    os.mkdir(path)
                except FileExistsError as exc:
                    raise _bucket_exists() from exc
            fsync_dir(self.root)
            return info

        return await run(work)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        """From memory for up to HEAD_TTL seconds (see storage/ttlcache.py): asked on
        every request. Writes read the state afresh under the key's lock."""

        def work() -> BucketInfo:
            return self._bucket_info(bucket, self._require_bucket(bucket))

        return await self._heads.load(bucket, lambda: run(work))

    def _bucket_changed(self, bucket: str) -> None:
        """Forgets the bucket's entry, and what a read in flight will answer."""
        self._heads.forget(bucket)

    async def update_bucket(
        self, bucket: str, *, versioning: str | None = None, object_lock: bool | None = None
    ) -> BucketInfo:
        def work() -> BucketInfo:
            with self.locks.hold(bucket_lock_name(bucket)):
                info = self._bucket_info(bucket, self._require_bucket(bucket))
                if versioning is not None:
                    if versioning not in VERSIONING_STATES[1:]:
                        raise InvalidRequest(f"Versioning cannot be set to {versioning!r}")
                    info = replace(info, versioning=versioning)
                if object_lock is not None:
                    info = replace(info, object_lock=object_lock)
                self.buckets.write(info)
                return info

        try:
            return await run(work)
        finally:
            self._bucket_changed(bucket)

    def _remove_leftovers(self, bucket: str) -> None:
        """A deleted bucket's policy, documents and versions: at its deletion, and again
        before a bucket of the same name is made (a deletion cut off by a crash after
        the bucket's folder went must not hand them to the new bucket)."""
        unlink_quiet(self._policy_path(bucket))
        rmtree_quiet(os.path.join(self.root, ".bucket-config", bucket))
        rmtree_quiet(versions_root(self.root, bucket))

    async def delete_bucket(self, bucket: str) -> None:
        def work() -> None:
            bdir = self._require_bucket(bucket)
            vroot = versions_root(self.root, bucket)
            with self.locks.hold(bucket_lock_name(bucket)):
                if _holds_keys(bdir, vroot):
                    raise _not_empty()
                # Move it aside in one step, then make sure no write slipped in meanwhile.
                trash = self.temp.path(".bucket")
                os.rename(bdir, trash)
                self._seen_buckets.discard(bucket)
                if _holds_keys(trash, vroot):
                    os.rename(trash, bdir)
                    raise _not_empty()
                fsync_dir(self.root)
                self._remove_leftovers(bucket)
                unlink_quiet(self.buckets.path(bucket))
                self.buckets.forget(bucket)
            for up_bucket, info in self.uploads.all():
                if up_bucket == bucket:
                    with self.locks.hold(object_lock_name(bucket, info.key)):
                        removed = self.uploads.remove(info.upload_id)
                    if removed:
                        self.usage.upload_ended(bucket, info.key)
            rmtree_quiet(trash)
            self.listings.bump()
            self.usage.bucket_deleted(bucket)

        try:
            await run(work)
        finally:
            self._bucket_changed(bucket)

    # -- policies --------------------------------------------------------------------

    def _document_path(self, bucket: str, name: str) -> str:
        if name == "policy":
            return self._policy_path(bucket)  # the reference's layout
        return os.path.join(self.root, ".bucket-config", bucket, name)

    async def get_bucket_document(self, bucket: str, name: str) -> str:
        def work() -> str:
            self._require_bucket(bucket)
            try:
                with open(self._document_path(bucket, name), encoding="utf-8") as f:
                    return f.read()
            except FileNotFoundError as exc:
                raise NoSuchBucketDocument(f"The bucket has no {name} configuration") from exc

        return await run(work)

    async def put_bucket_document(self, bucket: str, name: str, text: str) -> None:
        def work() -> None:
            self._require_bucket(bucket)
            path = self._document_path(bucket, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            replace_atomically(path, text.encode("utf-8"), self.temp.dir)

        await run(work)

    async def delete_bucket_document(self, bucket: str, name: str) -> None:
        def work() -> None:
            self._require_bucket(bucket)
            unlink_quiet(self._document_path(bucket, name))

        await run(work)

    async def get_bucket_policy(self, bucket: str) -> str:
        try:
            return await self.get_bucket_document(bucket, "policy")
        except NoSuchBucketDocument as exc:
            raise NoSuchBucketPolicy("The bucket policy does not exist") from exc

    async def put_bucket_policy(self, bucket: str, policy: str) -> None:
        await self.put_bucket_document(bucket, "policy", policy)

    async def delete_bucket_policy(self, bucket: str) -> None:
        await self.delete_bucket_document(bucket, "policy")
