"""Objects, bytes and multipart uploads per bucket, kept up to date as the store writes,
so that reporting them (Prometheus gauges) never walks a directory.

Objects are stored object versions: in a versioned bucket each version counts, with
its bytes (delete markers count for nothing). A store reports every change it makes,
with what it knew of the object version it replaced:
`object_written(bucket, key, replaced_size, size)` (None: there was no object),
`object_deleted`, `upload_started`/`upload_ended` and `bucket_deleted`. Those are plain
counter updates under a lock (stores call them from worker threads too).

What is already stored is counted once, in the background, by `count_existing`: a
paced listing through the Backend interface, bucket by bucket and key by key. While it
runs, a change to a key the listing has not reached yet is left out (the listing will
see the key as it is then); a change at or before the listing's position is applied.
So the figures are exact once the count is done, except for a change that races the
very page being listed (it may be missed or counted twice).

A store only reports the changes it makes itself. In a cluster each node sees only the
writes it coordinated, so its figures drift from the other nodes' writes; `recount`
(run periodically there by app.metrics) lists every bucket again the same way, into
fresh figures beside the ones shown: a change is applied to the shown figures as ever,
and to the fresh ones by the same cursor rule. Once a bucket's listing is done, its
fresh figures replace the shown ones, and buckets no longer listed are dropped. A write
costs one more attribute test for this.

Nothing is tracked until `track()` is called: a server without metrics pays only a
flag test per write.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shoal.storage.backend import Backend
from shoal.storage.errors import NoSuchBucket

log = logging.getLogger("shoal.storage")
T = TypeVar("T")

#: A bucket whose listing has not started: every change to it is left out.
PENDING = ""


class UsageListener(Protocol):
    """Told of every change, with the bucket's new figures (under the usage lock)."""

    def bucket_changed(self, bucket: str, objects: int, size: int, uploads: int) -> None: ...

    def bucket_removed(self, bucket: str) -> None: ...


@dataclass(slots=True)
class Figures:
    """One bucket's counts. A cursor is the last key the start-up listing has counted:
    PENDING before it starts, None once it is done (every change applies). `fresh`:
    the figures a recount is building, to replace these once it is done."""

    objects: int = 0
    size: int = 0
    uploads: int = 0
    objects_cursor: str | None = None
    uploads_cursor: str | None = None
    fresh: Figures | None = None


class BucketUsage:
    """See the module docstring. With `shared`, these figures are this process's share
    of a sum over several processes (uvicorn workers), so a deleted bucket's share is
    kept: the other workers hold its opposite."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracking = False
        self._shared = False
        #: Cursor given to a bucket first seen now (PENDING until the listing has
        #: learnt which buckets exist; buckets created after that start counted).
        self._new_cursor: str | None = None
        self._buckets: dict[str, Figures] = {}
        self.listener: UsageListener | None = None

    def track(self, *, counting: bool, shared: bool = False) -> None:
        """Start tracking. `counting`: count_existing will run (else this process
        counts only its own changes, its share of a sum over processes)."""
        with self._lock:
            self._tracking, self._shared = True, shared
            self._new_cursor = PENDING if counting else None

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """bucket -> (objects, bytes, uploads in progress)."""
        with self._lock:
            return {b: (f.objects, f.size, f.uploads) for b, f in self._buckets.items()}

    def buckets(self) -> set[str]:
        with self._lock:
            return set(self._buckets)

    # -- changes, from the stores ------------------------------------------------------

    def object_written(self, bucket: str, key: str, replaced: int | None, size: int) -> None:
        if self._tracking:
            self._object(bucket, key, 0 if replaced is not None else 1, size - (replaced or 0))

    def object_deleted(self, bucket: str, key: str, replaced: int | None) -> None:
        if self._tracking and replaced is not None:
            self._object(bucket, key, -1, -replaced)

    def upload_started(self, bucket: str, key: str) -> None:
        if self._tracking:
            self._upload(bucket, key, 1)

    def upload_ended(self, bucket: str, key: str) -> None:
        """Completed, aborted or expired."""
        if self._tracking:
            self._upload(bucket, key, -1)

    def bucket_deleted(self, bucket: str) -> None:
        if not self._tracking or self._shared:
            return
        with self._lock:
            if self._buckets.pop(bucket, None) is not None and self.listener is not None:
                self.listener.bucket_removed(bucket)

    def _figures(self, bucket: str) -> Figures | None:
        """The bucket's figures (lock held); None while nothing about it is counted."""
        f = self._buckets.get(bucket)
        if f is None:
            if self._new_cursor == PENDING:
                return None
            f = self._buckets[bucket] = Figures()
        return f

    def _object(self, bucket: str, key: str, objects: int, size: int) -> None:
        with self._lock:
            f = self._figures(bucket)
            if f is None or (f.objects_cursor is not None and key > f.objects_cursor):
                return
            f.objects += objects
            f.size += size
            self._tell(bucket, f)
            n = f.fresh
            if n is not None and (n.objects_cursor is None or key <= n.objects_cursor):
                n.objects += objects
                n.size += size

    def _upload(self, bucket: str, key: str, delta: int) -> None:
        with self._lock:
            f = self._figures(bucket)
            if f is None or (f.uploads_cursor is not None and key > f.uploads_cursor):
                return
            f.uploads += delta
            self._tell(bucket, f)
            n = f.fresh
            if n is not None and (n.uploads_cursor is None or key <= n.uploads_cursor):
                n.uploads += delta

    def _tell(self, bucket: str, f: Figures) -> None:
        if self.listener is not None:
            self.listener.bucket_changed(bucket, f.objects, f.size, f.uploads)

    # -- the start-up listing -------------------------------------------------------------

    def _listing(self, buckets: Iterable[str]) -> dict[str, Figures]:
        """The listing knows the buckets: those start PENDING, any other is new."""
        with self._lock:
            listed = {}
            for bucket in buckets:
                f = listed[bucket] = self._buckets.setdefault(bucket, Figures())
                f.objects_cursor = f.uploads_cursor = PENDING
            self._new_cursor = None
            return listed

    def _counted(
        self, bucket: str, f: Figures, page: tuple[int, int, int], cursor: str | None, what: str
    ) -> None:
        """A page of the listing: its figures added, the cursor moved past it (unless
        the bucket was deleted meanwhile: `f` is no longer its figures, or the fresh
        figures a recount builds for it, then). Fresh figures are not shown yet."""
        with self._lock:
            shown = self._buckets.get(bucket)
            if shown is None or (shown is not f and shown.fresh is not f):
                return
            f.objects += page[0]
            f.size += page[1]
            f.uploads += page[2]
            if what == "objects":
                f.objects_cursor = cursor
            else:
                f.uploads_cursor = cursor
            if shown is f:
                self._tell(bucket, f)

    # -- recounts ---------------------------------------------------------------------------

    def _recounting(self, buckets: Iterable[str], gone: Iterable[str]) -> dict[str, Figures]:
        """A recount's listing: `gone` (buckets known before it asked, not listed) are
        dropped; each listed bucket gets fresh figures, all of it PENDING. A bucket new
        here starts at zero plus this node's own changes until its recount is done."""
        with self._lock:
            for bucket in gone:
                if self._buckets.pop(bucket, None) is not None and self.listener is not None:
                    self.listener.bucket_removed(bucket)
            fresh = {}
            for bucket in buckets:
                f = self._buckets.setdefault(bucket, Figures())
                f.fresh = fresh[bucket] = Figures(objects_cursor=PENDING, uploads_cursor=PENDING)
            return fresh

    def _recounted(self, bucket: str, fresh: Figures) -> None:
        """A bucket's recount is done: its fresh figures are the ones shown now."""
        with self._lock:
            f = self._buckets.get(bucket)
            if f is None or f.fresh is not fresh:
                return  # deleted meanwhile
            f.objects, f.size, f.uploads, f.fresh = fresh.objects, fresh.size, fresh.uploads, None
            self._tell(bucket, f)

    def _vanished(self, bucket: str, fresh: Figures) -> None:
        """The recount found the bucket gone (deleted through another node)."""
        with self._lock:
            f = self._buckets.get(bucket)
            if f is not None and f.fresh is fresh:
                del self._buckets[bucket]
                if self.listener is not None:
                    self.listener.bucket_removed(bucket)

    def _abandoned(self, fresh: dict[str, Figures]) -> None:
        """A recount stopped part way: the buckets it had not finished keep their figures."""
        with self._lock:
            for bucket, n in fresh.items():
                f = self._buckets.get(bucket)
                if f is not None and f.fresh is n:
                    f.fresh = None


async def count_existing(backend: Backend, usage: BucketUsage, *, page: int = 1000) -> None:
    """Count what the store holds (see the module docstring), paced to use at most
    about half of the time: after each page it sleeps as long as the page took. A page
    that fails (drives away) is retried until it succeeds."""
    started = time.monotonic()
    listed = usage._listing(b.name for b in await _retrying(backend.list_buckets))
    total = (0, 0, 0)
    for bucket, figures in listed.items():
        try:
            counted = await _count_bucket(backend, usage, bucket, figures, page)
        except NoSuchBucket:
            continue  # deleted meanwhile: bucket_deleted dropped its figures
        total = (total[0] + counted[0], total[1] + counted[1], total[2] + counted[2])
    log.info(
        "counted %d objects (%d bytes) and %d multipart uploads in %d buckets in %.1fs",
        *total,
        len(listed),
        time.monotonic() - started,
    )


async def recount(backend: Backend, usage: BucketUsage, *, page: int = 1000) -> None:
    """Count what the store holds again, bucket by bucket, and swap each bucket's new
    figures in once its listing is done (see the module docstring); paced and retried as
    count_existing is, after which it must run. Not for shared figures (several
    workers): each is a share of a sum that no single listing can give."""
    if usage._shared:
        raise ValueError("shared usage figures (several workers) cannot be recounted")
    started = time.monotonic()
    known = usage.buckets()
    names = [b.name for b in await _retrying(backend.list_buckets)]
    fresh = usage._recounting(names, gone=known - set(names))
    try:
        for bucket, figures in fresh.items():
            try:
                await _count_bucket(backend, usage, bucket, figures, page)
            except NoSuchBucket:
                usage._vanished(bucket, figures)
                continue
            usage._recounted(bucket, figures)
    except BaseException:
        usage._abandoned(fresh)
        raise
    log.debug("recounted %d buckets in %.1fs", len(fresh), time.monotonic() - started)


async def _count_bucket(
    backend: Backend, usage: BucketUsage, bucket: str, figures: Figures, page: int
) -> tuple[int, int, int]:
    """One bucket's objects (every version of them, in a bucket that was ever
    versioned), then its uploads, a page at a time."""
    objects = size = uploads = 0
    versioned = bool((await _retrying(backend.head_bucket, bucket)).versioning)
    after: tuple[str, str] | None = ("", "")
    while after is not None:
        t0 = time.monotonic()
        if versioned:
            found = await _retrying(
                backend.list_object_versions,
                bucket,
                key_marker=after[0],
                version_id_marker=after[1],
                max_keys=page,
            )
            stored = [v for v in found.versions if not v.delete_marker]
            counts = (len(stored), sum(v.size for v in stored), 0)
            key = found.next_key_marker if found.truncated else None
            after = None if key is None else (key, found.next_version_id_marker or "")
        else:
            listed = await _retrying(backend.list_objects, bucket, after=after[0], max_keys=page)
            counts = (len(listed.objects), sum(o.size for o in listed.objects), 0)
            key = listed.last if listed.truncated and listed.last else None
            after = None if key is None else (key, "")
        usage._counted(bucket, figures, counts, key, "objects")
        objects, size = objects + counts[0], size + counts[1]
        await asyncio.sleep(time.monotonic() - t0)
    marker: tuple[str, str] | None = ("", "")
    while marker is not None:
        t0 = time.monotonic()
        found = await _retrying(
            backend.list_multipart_uploads,
            bucket,
            key_marker=marker[0],
            upload_id_marker=marker[1],
            max_uploads=page,
        )
        key = found.next_key_marker if found.truncated else None
        marker = None if key is None else (key, found.next_upload_id_marker or "")
        usage._counted(bucket, figures, (0, 0, len(found.uploads)), key, "uploads")
        uploads += len(found.uploads)
        await asyncio.sleep(time.monotonic() - t0)
    return objects, size, uploads


async def _retrying(call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """`call(...)` until it succeeds; NoSuchBucket is an answer, not a failure."""
    pause = 1.0
    while True:
        try:
            return await call(*args, **kwargs)
        except NoSuchBucket:
            raise
        except Exception as exc:
            log.warning("counting stored objects: %r; retrying in %.0fs", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 60.0)
