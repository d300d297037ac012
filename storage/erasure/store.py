"""ErasureStore: the Backend of a cluster node, erasure-coding every object across drives.

This module is the front door: the store's state (drives, erasure sets and pools,
locks, open readers, background tasks), its lifecycle, where a key lives, and the
Backend methods, each handed to the part that does the work:

- storage.erasure.objects: PUT, GET, HEAD, DELETE of one key (readers: open objects);
- storage.erasure.commits: committing a version to a key's record, retiring old ones;
- storage.erasure.uploads: multipart uploads (their Backend methods:
  storage.erasure.uploadmethods);
- storage.erasure.listing: listing a bucket across sets (and versionlisting: its
  versions);
- storage.erasure.buckets: buckets, policies and bucket documents, the records
  replicated to every drive and agreed by a majority.

Every quorum fan-out goes through storage.erasure.quorum; the version record is
storage.erasure.records.VersionRecord, and storage.erasure.versions holds the rule
that picks the current version out of the drives' answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any

from shoal.storage.backend import (
    BucketInfo,
    DeleteResult,
    Guard,
    ListPage,
    ObjectMeta,
    ObjectWrite,
    VersionListPage,
)
from shoal.storage.diskio import rmtree_quiet
from shoal.storage.erasure.buckets import ReplicatedRecords
from shoal.storage.erasure.coder import DEFAULT_BACKEND, ErasureCoder
from shoal.storage.erasure.commits import VersionCommits
from shoal.storage.erasure.drive import Drive, LocalDrive
from shoal.storage.erasure.healing import Healer
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.layout import Layout, open_layout
from shoal.storage.erasure.listing import Listing
from shoal.storage.erasure.locks import KeyedLocks
from shoal.storage.erasure.objects import INLINE_MAX, Located, ObjectIO
from shoal.storage.erasure.readers import ErasureObjectReader, OpenVersions
from shoal.storage.erasure.records import Rank, VersionRecord
from shoal.storage.erasure.uploadmethods import UploadMethods
from shoal.storage.erasure.uploads import Multipart
from shoal.storage.erasure.versionlisting import VersionListing
from shoal.storage.erasure.versions import Placement, placement
from shoal.storage.usage import BucketUsage
from shoal.storage.version_ids import minted_here

log = logging.getLogger("shoal.storage")


class ErasureStore(UploadMethods):
    """See the module docstring. `drive_wrapper` lets tests put a FaultyDrive between a
    LocalDrive and its health tracking."""

    #: Whether this process is the only writer of its drives (a single node): then
    #: whatever an earlier process left unfinished on them is dead (LocalDrive._sweep,
    #: abandoned). A cluster's nodes write to each other's drives.
    exclusive_drives = True

    def __init__(
        self,
        paths: Sequence[str],
        *,
        data_shards: int = 4,
        parity_shards: int = 2,
        chunk_size: int = 4 * 1024 * 1024,
        coder_backend: str = DEFAULT_BACKEND,
        node_id: str | None = None,
        clean_slate: bool = False,
        multipart_expiration_days: float = 7,
        multipart_cleanup_interval_minutes: float = 60,
        drive_timeout: float = 10.0,
        probe_interval: float = 5.0,
        heal_interval: float = 24 * 3600,
        heal_bytes_per_second: int = 64 * 1024 * 1024,
        drive_wrapper: Callable[[Drive], Drive] | None = None,
        inline_max: int = INLINE_MAX,
    ) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.k, self.m = data_shards, parity_shards
        self.n = data_shards + parity_shards
        self.coder = ErasureCoder(data_shards, parity_shards, coder_backend)
        self.chunk_size = chunk_size
        #: Objects up to this size keep their shards in their records (objects.py).
        self.inline_max = inline_max
        self.node_id = node_id
        self.clean_slate = clean_slate
        self.expiration_days = multipart_expiration_days
        self.cleanup_interval = multipart_cleanup_interval_minutes * 60
        self.drive_timeout = drive_timeout
        self.probe_interval = probe_interval
        self.heal_interval = heal_interval
        self.heal_rate = heal_bytes_per_second
        self._wrap = drive_wrapper
        self._local: list[LocalDrive] = []
        #: The drives this node opened, as its erasure sets hold them (see local_drives).
        self._own: set[int] = set()
        self.layout: Layout | None = None
        self.sets: list[list[HealthTrackedDrive]] = []
        self.drives: list[HealthTrackedDrive] = []
        self.pools: list[int] = []  # sets per pool (see versions.Placement)
        #: Per-key (and per-upload) commit locks, held only while in use.
        self.locks = KeyedLocks()
        self.readers = OpenVersions()
        self._background: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.healer: Healer | None = None
        #: Objects, bytes and uploads per bucket, for metrics.
        self.usage = BucketUsage()
        # The parts that do the work (see the module docstring).
        self.buckets = ReplicatedRecords(self)
        self.commits = VersionCommits(self)
        self.objects = ObjectIO(self)
        self.uploads = Multipart(self)
        self.listing = Listing(self)
        self.version_listing = VersionListing(self)

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.clean_slate:
            await asyncio.to_thread(self._wipe)
        self._local = [LocalDrive(p, exclusive=self.exclusive_drives) for p in self.paths]
        inner: list[Drive] = [self._wrap(d) if self._wrap else d for d in self._local]
        self._own = {id(d) for d in inner}
        self.layout = await self._open_layout(inner)
        self.node_id = self.layout.node_id
        self.healer = Healer(self, interval=self.heal_interval, rate=self.heal_rate)
        missing = set(self.layout.missing)
        self.add_sets(
            [
                [
                    (drive, self.layout.drive_ids[s][p], drive.name not in missing)
                    for p, drive in enumerate(members)
                ]
                for s, members in enumerate(self.layout.sets)
            ],
            self.layout.pools or [len(self.layout.sets)],
        )
        self.healer.start()
        expiry = self.uploads.expire_periodically(self.expiration_days, self.cleanup_interval)
        self._tasks.append(asyncio.get_running_loop().create_task(expiry))

    def add_sets(self, sets: Sequence[Sequence[tuple[Drive, str, bool]]], pools: list[int]) -> None:
        """Take in erasure sets — (drive, drive id, online) by position — as pools of
        `pools` sets each: at open, and when nodes join a cluster."""
        assert sum(pools) == len(sets)
        for members in sets:
            tracked = [
                HealthTrackedDrive(
                    drive,
                    drive_id=drive_id,
                    timeout=self.drive_timeout,
                    probe_interval=self.probe_interval,
                    op_timeouts={"sweep": 600.0, "list_objects": 60.0, "link": 60.0},
                    online=online,
                    on_online=self._drive_returned,
                )
                for drive, drive_id, online in members
            ]
            self.sets.append(tracked)
            self.drives.extend(tracked)
            for d in tracked:
                d.start()
        self.pools.extend(pools)

    def local_drives(self) -> list[HealthTrackedDrive]:
        """This node's own drives that are online (a cluster's sets mix in others')."""
        return [d for d in self.drives if d.online and id(d.inner) in self._own]

    def abandoned(self, vid: str) -> bool:
        """Whether a version that no quorum lists can no longer be committed by anyone:
        on a node that is its drives' only writer, one an earlier process made."""
        return self.exclusive_drives and not minted_here(vid)

    def abandoned_upload(self, upload_id: str, initiated: Sequence[str]) -> bool:
        return self.uploads.abandoned(upload_id, initiated)

    async def completed_upload(self, drives: Sequence[Drive], bucket: str, upload_id: str) -> bool:
        return await self.uploads.completions.recorded(drives, bucket, upload_id)

    def _drive_returned(self) -> None:
        """A drive (or the node holding it) is back: it missed whatever was written
        meanwhile, so a healing scan brings it up to date."""
        if self.healer is not None:
            self.healer.request_scan()

    async def _open_layout(self, local: list[Drive]) -> Layout:
        """This node's drives (in configured order) as erasure sets; a cluster of
        nodes adds the other nodes' drives (cluster.store.DistributedStore)."""
        return await open_layout(local, node_id=self.node_id, k=self.k, m=self.m)

    def _wipe(self) -> None:
        for path in self.paths:
            rmtree_quiet(os.path.join(path, ".smartstorage"))  # keys nest 1,023 deep

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.healer is not None:
            await self.healer.stop()
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        for d in self.drives:
            await d.stop()
        for local in self._local:
            local.close()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Background work (old versions' cleanup) that close() waits for."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- where keys are --------------------------------------------------------------

    def place(self, bucket: str, key: str) -> Placement:
        return placement(bucket, key, self.pools, self.n)

    def set_for(self, bucket: str, key: str) -> tuple[int, int]:
        """(home set, rotation): where the key goes if it exists nowhere yet."""
        where = self.place(bucket, key)
        return where.home, where.rot

    @property
    def write_quorum(self) -> int:
        return self.k + 1

    async def locate(self, bucket: str, key: str) -> Located:
        return await self.objects.locate(bucket, key)

    async def read_entries(
        self,
        bucket: str,
        key: str,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
        version_id: str | None = None,
    ) -> tuple[list[HealthTrackedDrive], int, list[list[VersionRecord] | None]]:
        """(set drives, rotation, each drive's entries or None if it failed): the newest
        (and those of S3 version `version_id`), with `everything` all of them, with
        `limit` a page below `below` (Drive.read_object)."""
        return await self.objects.read_entries(bucket, key, everything, below, limit, version_id)

    async def current(self, bucket: str, key: str) -> VersionRecord | None:
        """The newest version with a read quorum (a delete marker included), or None."""
        return await self.objects.current(bucket, key)

    # -- readers ---------------------------------------------------------------------

    def pin(self, bucket: str, key: str, vid: str, delta: int) -> None:
        self.readers.pin(bucket, key, vid, delta)

    def busy(self, bucket: str, key: str, vid: str) -> bool:
        """Whether a reader in this process may have a version up to `vid` open."""
        return self.readers.busy(bucket, key, vid)

    async def in_use(self, bucket: str, key: str, vid: str) -> bool:
        """Whether any reader may have a version up to `vid` open: here, one in this
        process (a cluster asks every node: cluster.store)."""
        return self.busy(bucket, key, vid)

    async def bucket_changed(self, bucket: str) -> None:
        """After a bucket's deletion or change: other nodes forget what they saw of it
        (cluster.store)."""

    # -- replicated records ----------------------------------------------------------

    @property
    def doc_drives(self) -> list[HealthTrackedDrive]:
        return self.buckets.doc_drives

    @property
    def doc_read_quorum(self) -> int:
        return self.buckets.read_quorum

    # -- the Backend: buckets and their documents --------------------------------------

    async def list_buckets(self) -> list[BucketInfo]:
        return await self.buckets.list_buckets()

    async def create_bucket(
        self, bucket: str, *, object_lock: bool = False, owner: str = ""
    ) -> BucketInfo:
        return await self.buckets.create_bucket(bucket, object_lock=object_lock, owner=owner)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return await self.buckets.head_bucket(bucket)

    async def delete_bucket(self, bucket: str) -> None:
        await self.buckets.delete_bucket(bucket)

    async def get_bucket_document(self, bucket: str, name: str) -> str:
        return await self.buckets.get_bucket_document(bucket, name)

    async def put_bucket_document(self, bucket: str, name: str, text: str) -> None:
        await self.buckets.put_bucket_document(bucket, name, text)

    async def delete_bucket_document(self, bucket: str, name: str) -> None:
        await self.buckets.delete_bucket_document(bucket, name)

    async def get_bucket_policy(self, bucket: str) -> str:
        return await self.buckets.get_bucket_policy(bucket)

    async def put_bucket_policy(self, bucket: str, policy: str) -> None:
        await self.put_bucket_document(bucket, "policy", policy)

    async def delete_bucket_policy(self, bucket: str) -> None:
        await self.delete_bucket_document(bucket, "policy")

    # -- the Backend: objects ----------------------------------------------------------

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], write: ObjectWrite
    ) -> ObjectMeta:
        return await self.objects.put_object(bucket, key, body, write)

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        return await self.objects.head_object(bucket, key, version_id)

    async def open_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ErasureObjectReader:
        return await self.objects.open_object(bucket, key, version_id)

    async def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        guard: Guard | None = None,
        owner: str = "",
    ) -> DeleteResult:
        return await self.objects.delete_object(bucket, key, version_id, guard, owner)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        return await self.listing.list_objects(bucket, prefix, delimiter, after, max_keys)

    async def update_bucket(
        self, bucket: str, *, versioning: str | None = None, object_lock: bool | None = None
    ) -> BucketInfo:
        return await self.buckets.update_bucket(
            bucket, versioning=versioning, object_lock=object_lock
        )

    async def update_object_meta(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        return await self.objects.update_object_meta(bucket, key, version_id, change)

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
        return await self.version_listing.list_object_versions(
            bucket, prefix, delimiter, key_marker, version_id_marker, max_keys
        )

    # -- management --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.layout is not None
        return {
            "cluster_id": self.layout.cluster_id,
            "node_id": self.layout.node_id,
            "erasure": {
                "data_shards": self.k,
                "parity_shards": self.m,
                "backend": self.coder.backend,
            },
            "sets": [[d.status() for d in members] for members in self.sets],
            "pools": list(self.pools),
            "healing": self.healer.status() if self.healer else None,
        }
