"""The lifecycle worker: passes over every bucket with a lifecycle configuration and
does what its rules say, through the Backend interface only.

- A current object past its expiration is deleted as a DELETE without a version id
  would: removed in an unversioned bucket, hidden by a delete marker in a versioned one.
- A noncurrent version is removed (by version id) once NoncurrentDays have passed since
  it became noncurrent, except the NewerNoncurrentVersions newest ones.
- A delete marker that is its key's only version is removed (ExpiredObjectDeleteMarker,
  or a Days rule once the marker is that old).
- An incomplete multipart upload older than DaysAfterInitiation is aborted.

Each delete passes a guard (storage/backend.py `Guard`) that sees the version under the
key's lock and re-checks the decision with its real tags, size and age, and object lock:
a version under retention or legal hold is never removed, and an object overwritten
since it was listed is left alone. Work is paced (pace.py), progress is saved as the
pass goes (progress.py) so a pass cut short resumes, and in a cluster one node runs each
bucket (ownership.py). A backend that cannot list or delete versions (storage.errors
.Unsupported) gets the current-object rules only, and the worker says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shoal.storage.backend import NULL_VERSION, Backend, BucketInfo, ObjectMeta, VersionSummary
from shoal.storage.errors import (
    NoSuchBucket,
    NoSuchBucketDocument,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    Unsupported,
)
from shoal.storage.lifecycle import rules
from shoal.storage.lifecycle.ownership import Everything, Ownership
from shoal.storage.lifecycle.pace import Pace
from shoal.storage.lifecycle.progress import Progress, ProgressStore
from shoal.storage.lifecycle.rules import Configuration

log = logging.getLogger("shoal.lifecycle")

#: The bucket document holding the configuration (rules.to_json).
DOCUMENT = "lifecycle"
#: What the worker counts (metrics: shoal_lifecycle_actions_total{action}).
EXPIRED = "expired"
NONCURRENT_REMOVED = "noncurrent_removed"
DELETE_MARKER_REMOVED = "delete_marker_removed"
UPLOAD_ABORTED = "upload_aborted"
ACTIONS = (EXPIRED, NONCURRENT_REMOVED, DELETE_MARKER_REMOVED, UPLOAD_ABORTED)

#: Told each action the worker took (app/metrics.py counts them).
Observer = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    day_seconds: int = rules.DAY_SECONDS
    interval: float = 3600.0  # seconds between the starts of two passes
    operations_per_second: float = 200.0
    page_size: int = 100
    checkpoint_seconds: float = 5.0  # how often a long pass saves its progress


class Stale(Exception):
    """The bucket's rules changed or went while a pass was under way."""


class Skip(Exception):
    """Raised by a guard: the version is not to be removed after all (it changed, it does
    not match on a closer look, or object lock protects it)."""


def locked(meta: ObjectMeta, now: datetime) -> bool:
    """Object lock forbids removing this version: a legal hold, or retention not past."""
    return meta.legal_hold or (meta.retention is not None and meta.retention.until > now)


class LifecycleWorker:
    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        *,
        ownership: Ownership | None = None,
        observer: Observer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.ownership: Ownership = ownership or Everything()
        self.observer = observer
        self.clock = clock
        self.pace = Pace(settings.operations_per_second)
        self.progress = ProgressStore(backend)
        #: Everything done since start, by action.
        self.done: Counter[str] = Counter()
        #: Passes over all buckets completed (tests wait on it).
        self.passes = 0
        self._task: asyncio.Task[None] | None = None
        self._warned: set[str] = set()

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lifecycle")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.ownership.release)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once()
            except Exception:
                log.exception("lifecycle pass failed; trying again next interval")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.settings.interval - elapsed))

    async def run_once(self) -> None:
        """One pass over every bucket this node runs."""
        await asyncio.to_thread(self.ownership.refresh)
        for info in await self.backend.list_buckets():
            if not self.ownership.runs(info.name):
                continue
            try:
                await self.run_bucket(info.name)
            except (NoSuchBucket, NoSuchBucketDocument):
                continue  # deleted (or its rules removed) while we were at it
            except Exception:
                log.exception("lifecycle pass failed", extra={"bucket": info.name})
        self.passes += 1

    async def run_bucket(self, bucket: str) -> None:
        """Apply `bucket`'s rules, from where an earlier pass stopped."""
        try:
            text = await self.backend.get_bucket_document(bucket, DOCUMENT)
        except NoSuchBucketDocument:
            return
        pass_ = _Pass(self, bucket, text, await self.backend.head_bucket(bucket))
        await pass_.run(await self.progress.load(bucket))

    # -- shared by passes ---------------------------------------------------------------

    def record(self, action: str) -> None:
        self.done[action] += 1
        if self.observer is not None:
            self.observer(action)

    def warn_once(self, reason: str, bucket: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning(
                "lifecycle: this store cannot %s yet; those rules wait",
                reason,
                extra={"bucket": bucket},
            )


class _Pass:
    """One bucket's pass: objects (and versions), then multipart uploads."""

    def __init__(self, worker: LifecycleWorker, bucket: str, text: str, info: BucketInfo) -> None:
        self.worker = worker
        self.backend = worker.backend
        self.bucket = bucket
        self.text = text
        self.config: Configuration = rules.from_json(text)
        self.info = info
        self.day = worker.settings.day_seconds
        self.page = worker.settings.page_size
        self.versions_ok = True  # cleared when the backend refuses version operations
        self.saved = False
        self._last_save = time.monotonic()

    async def run(self, resume: Progress | None) -> None:
        self.saved = resume is not None
        try:
            await self._phases(resume)
        except Stale:
            # New rules start a pass of their own, from the first key, next interval.
            log.info("lifecycle rules changed during a pass", extra={"bucket": self.bucket})
        if self.saved:
            await self.worker.progress.clear(self.bucket)

    async def _page(self, first: bool) -> None:
        """Before each listing page: wait for the budget and, after the first page,
        make sure the rules are still the ones this pass applies (a long pass must not
        go on deleting under rules that were removed or replaced)."""
        await self.worker.pace.take()
        if first:
            return
        try:
            text = await self.backend.get_bucket_document(self.bucket, DOCUMENT)
        except NoSuchBucketDocument:
            raise Stale() from None
        if text != self.text:
            raise Stale()

    async def _phases(self, resume: Progress | None) -> None:
        if resume is None or resume.phase == "objects":
            after = resume.key if resume is not None else ""
            if rules.acts_on_objects(self.config):
                await self._objects(after)
        if rules.acts_on_uploads(self.config):
            start = ("", "")
            if resume is not None and resume.phase == "uploads":
                start = (resume.key, resume.upload_id)
            for prefix in rules.walk_prefixes(self.config, uploads=True):
                await self._uploads(prefix, *(start if start[0] >= prefix else ("", "")))

    async def _checkpoint(self, progress: Progress) -> None:
        if time.monotonic() - self._last_save < self.worker.settings.checkpoint_seconds:
            return
        await self.worker.progress.save(self.bucket, progress)
        self.saved = True
        self._last_save = time.monotonic()

    # -- objects ------------------------------------------------------------------------

    async def _objects(self, after: str) -> None:
        for prefix in rules.walk_prefixes(self.config):
            start = after if after >= prefix else ""
            if self.info.versioning and self.versions_ok:
                try:
                    await self._versioned(prefix, start)
                    continue
                except Unsupported:
                    self.worker.warn_once("list object versions", self.bucket)
                    self.versions_ok = False
            await self._unversioned(prefix, start)

    async def _unversioned(self, prefix: str, after: str) -> None:
        first = True
        while True:
            await self._page(first)
            first = False
            page = await self.backend.list_objects(
                self.bucket, prefix=prefix, after=after, max_keys=self.page
            )
            for obj in page.objects:
                await self._expire_current(obj.key, obj.size, obj.last_modified, None)
                await self._checkpoint(Progress("objects", obj.key))
            if not page.truncated or page.last is None:
                return
            after = page.last

    async def _versioned(self, prefix: str, after: str) -> None:
        key_marker, version_marker = after, ""
        key: str | None = None
        versions: list[VersionSummary] = []
        first = True
        while True:
            await self._page(first)
            first = False
            page = await self.backend.list_object_versions(
                self.bucket,
                prefix=prefix,
                key_marker=key_marker,
                version_id_marker=version_marker,
                max_keys=self.page,
            )
            for version in page.versions:
                if version.key != key:
                    if key is not None:
                        await self._key(key, versions)
                    key, versions = version.key, []
                versions.append(version)
            if not page.truncated or page.next_key_marker is None:
                break
            key_marker = page.next_key_marker
            version_marker = page.next_version_id_marker or ""
        if key is not None:
            await self._key(key, versions)

    async def _key(self, key: str, versions: list[VersionSummary]) -> None:
        """One key's versions, newest first, all of them."""
        latest = versions[0]
        if not latest.delete_marker:
            await self._expire_current(key, latest.size, latest.last_modified, latest.version_id)
        elif len(versions) == 1 and self.versions_ok:
            now = self.worker.clock()
            if rules.marker_expired(self.config, key, latest.last_modified, now, self.day):
                await self._remove(key, latest.version_id, DELETE_MARKER_REMOVED, None)
        newer, count = latest.last_modified, 0
        for version in versions[1:]:
            if not self.versions_ok:
                break
            now = self.worker.clock()
            if rules.noncurrent_expired(
                self.config, key, version.size, None, newer, count, now, self.day
            ):
                await self._remove(key, version.version_id, NONCURRENT_REMOVED, (newer, count))
            newer, count = version.last_modified, count + 1
        await self._checkpoint(Progress("objects", key))

    async def _expire_current(
        self, key: str, size: int, created: datetime, version_id: str | None
    ) -> None:
        now = self.worker.clock()
        if rules.current_expired(self.config, key, size, None, created, now, self.day) is None:
            return
        enabled = self.info.versioning == "Enabled"

        def guard(meta: ObjectMeta | None) -> None:
            if meta is None or meta.delete_marker:
                raise Skip()
            if version_id is not None and meta.version_id != version_id:
                raise Skip()  # overwritten since the listing
            at = self.worker.clock()
            if not rules.current_expired(
                self.config, key, meta.shown_size, meta.tags, meta.last_modified, at, self.day
            ):
                raise Skip()
            # A delete marker leaves every version in place; removing a null version
            # (unversioned or suspended bucket) must respect object lock.
            if not enabled and meta.version_id == NULL_VERSION and locked(meta, at):
                raise Skip()

        await self.worker.pace.take()
        try:
            await self.backend.delete_object(self.bucket, key, guard=guard)
        except (Skip, NoSuchKey):
            return
        self.worker.record(EXPIRED)

    async def _remove(
        self,
        key: str,
        version_id: str,
        action: str,
        noncurrent: tuple[datetime, int] | None,
    ) -> None:
        """Remove one version or marker for good, if the guard agrees."""

        def guard(meta: ObjectMeta | None) -> None:
            if meta is None:
                raise Skip()
            at = self.worker.clock()
            if locked(meta, at):
                raise Skip()
            if noncurrent is not None and not rules.noncurrent_expired(
                self.config,
                key,
                meta.shown_size,
                meta.tags,
                noncurrent[0],
                noncurrent[1],
                at,
                self.day,
            ):
                raise Skip()

        await self.worker.pace.take()
        try:
            await self.backend.delete_object(self.bucket, key, version_id=version_id, guard=guard)
        except (Skip, NoSuchKey, NoSuchVersion):
            return
        except Unsupported:
            self.worker.warn_once("delete object versions", self.bucket)
            self.versions_ok = False
            return
        self.worker.record(action)

    # -- multipart uploads --------------------------------------------------------------

    async def _uploads(self, prefix: str, key_marker: str, upload_marker: str) -> None:
        first = True
        while True:
            await self._page(first)
            first = False
            page = await self.backend.list_multipart_uploads(
                self.bucket,
                prefix=prefix,
                key_marker=key_marker,
                upload_id_marker=upload_marker,
                max_uploads=self.page,
            )
            for upload in page.uploads:
                now = self.worker.clock()
                if rules.upload_expired(self.config, upload.key, upload.initiated, now, self.day):
                    await self.worker.pace.take()
                    try:
                        await self.backend.abort_multipart_upload(
                            self.bucket, upload.key, upload.upload_id
                        )
                    except NoSuchUpload:
                        continue
                    self.worker.record(UPLOAD_ABORTED)
            if not page.truncated or page.next_key_marker is None:
                return
            key_marker = page.next_key_marker
            upload_marker = page.next_upload_id_marker or ""
            await self._checkpoint(Progress("uploads", key_marker, upload_marker))
