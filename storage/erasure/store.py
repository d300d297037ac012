"""ErasureStore: the Backend of a cluster node, erasure-coding every object across drives.

Objects: the key's erasure set is fixed by a hash of bucket/key; the body is cut into
chunks, each encoded into k data + m parity shards written to the set's drives in
parallel (storage.erasure.shards); then the version's entry is added to the object
record on every drive of the set. The write succeeds only when k+1 drives hold every
shard and the record; otherwise the entry is withdrawn and the previous version stays
(storage.erasure.versions explains why readers can then never see a mix).

Buckets, policies and bucket documents are small records kept on every drive and
written to a majority; readers take the newest copy held by enough drives that no
failed or stale write can win. Multipart parts are encoded like objects into the
upload's folder on the object's erasure set and hard-linked, not rewritten, into the
new version on completion (the upload stays whole until the version is committed, so a
completion cut off by a crash is simply retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shoal.storage.backend import (
    NULL_VERSION,
    BucketInfo,
    CompletedPart,
    DeleteResult,
    Guard,
    ListPage,
    ObjectMeta,
    ObjectSummary,
    ObjectWrite,
    PartInfo,
    PartListPage,
    UploadInfo,
    UploadListPage,
    VersionListPage,
)
from shoal.storage.diskio import rmtree_quiet
from shoal.storage.erasure.coder import DEFAULT_BACKEND, ErasureCoder
from shoal.storage.erasure.drive import Drive, LocalDrive, ShardWrite, object_dir, shard_path
from shoal.storage.erasure.healing import ABANDONED_AFTER_SECONDS, Healer
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.layout import Layout, open_layout
from shoal.storage.erasure.locks import KeyedLocks
from shoal.storage.erasure.quorum import Answers, fan_out, fan_out_at, read_quorum_error
from shoal.storage.erasure.records import PartLayout, PartRecord, RecordSummary, VersionRecord
from shoal.storage.erasure.shards import ChunkWriter, encode_whole, read_chunk
from shoal.storage.erasure.versions import (
    ChunkRef,
    Placement,
    chunk_refs,
    chunks_for,
    live,
    placement,
    resolve,
)
from shoal.storage.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    InvalidRequest,
    NoSuchBucket,
    NoSuchBucketDocument,
    NoSuchBucketPolicy,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    PreconditionFailed,
    ServiceUnavailable,
    Unsupported,
)
from shoal.storage.keys import check_key
from shoal.storage.listing import uploads_page
from shoal.storage.memory import map_big_buffers
from shoal.storage.multipart import (
    check_completion,
    check_part_number,
    is_upload_id,
    multipart_etag,
    new_upload,
)
from shoal.storage.records import (
    dumps,
    iso,
    loads,
    now,
    parse_iso,
    upload_from_dict,
    upload_to_dict,
)
from shoal.storage.streams import prepend, read_head
from shoal.storage.threads import run
from shoal.storage.usage import BucketUsage
from shoal.storage.version_ids import minted_here, new_version_id

log = logging.getLogger("shoal.storage")
T = TypeVar("T")

#: Objects up to this size are read together with their records (one round trip).
SMALL_READ = 1024 * 1024
#: How long a bucket seen to exist is trusted without asking the drives again.
BUCKET_TTL = 2.0


@dataclasses.dataclass
class Located:
    """Where a key is (see ErasureStore.locate): its set, shard rotation, the set's
    drives' answers, and other sets still holding live versions of it."""

    set: int
    rot: int
    answers: list[list[VersionRecord] | None]
    others: list[int] = dataclasses.field(default_factory=list)
    failed: str = ""  # the silent drives of the set and why (for errors)

    def current(self, k: int, what: str) -> VersionRecord | None:
        """The newest version a read quorum agrees on (see versions.resolve)."""
        return resolve(self.answers, k, what, failed=self.failed)


def _no_bucket() -> NoSuchBucket:
    return NoSuchBucket("The specified bucket does not exist")


def _no_upload() -> NoSuchUpload:
    return NoSuchUpload("The specified upload does not exist.")


def _upload_lock(upload_id: str) -> str:
    """The lock that orders an upload's part records, its Complete and its Abort."""
    return f"u\0{upload_id}"


def _no_version() -> NoSuchVersion:
    return NoSuchVersion("The specified version does not exist.")


def _only_null(version_id: str | None) -> None:
    if version_id not in (None, NULL_VERSION):
        raise _no_version()


def _no_versions() -> Unsupported:
    return Unsupported("Versioning and object lock are not implemented in erasure mode yet.")


def _failed() -> PreconditionFailed:
    return PreconditionFailed("At least one of the pre-conditions you specified did not hold")


async def _agreed(
    drives: Sequence[Drive], path: str, quorum: int, what: str
) -> dict[str, Any] | None:
    """The newest copy of a small record that `quorum` drives hold (see resolve)."""

    async def one(d: Drive) -> list[dict[str, Any]]:
        raw = await d.read_doc(path)
        return [] if raw is None else [loads(raw)]

    answers = await fan_out(drives, one)
    return resolve(answers.by_position(), quorum, what, _doc_version, answers.failed())


def _doc_version(record: dict[str, Any]) -> str:
    return str(record["v"])


class ErasureStore:
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
    ) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.k, self.m = data_shards, parity_shards
        self.n = data_shards + parity_shards
        self.coder = ErasureCoder(data_shards, parity_shards, coder_backend)
        self.chunk_size = chunk_size
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
        self.layout: Layout | None = None
        self.sets: list[list[HealthTrackedDrive]] = []
        self.drives: list[HealthTrackedDrive] = []
        self.pools: list[int] = []  # sets per pool (see versions.Placement)
        self._buckets: dict[str, float] = {}
        self._locks = KeyedLocks()
        self._pins: Counter[tuple[str, str, str]] = Counter()
        #: Reads between fetching a key's records and pinning the version they chose.
        self._opening: Counter[tuple[str, str]] = Counter()
        self._background: set[asyncio.Task[Any]] = set()
        #: Uploads being created in this process (not yet on a quorum of drives).
        self._creating: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.healer: Healer | None = None
        #: Objects, bytes and uploads per bucket, for metrics.
        self.usage = BucketUsage()

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        # Chunk-sized buffers go back to the OS once freed; shard-sized ones are reused.
        map_big_buffers(min(self.chunk_size, self.chunk_size // self.k + 256 * 1024))
        if self.clean_slate:
            await asyncio.to_thread(self._wipe)
        self._local = [LocalDrive(p, exclusive=self.exclusive_drives) for p in self.paths]
        inner: list[Drive] = [self._wrap(d) if self._wrap else d for d in self._local]
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
        self._tasks.append(asyncio.get_running_loop().create_task(self._housekeeping()))

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

        def innermost(d: Any) -> Any:
            while hasattr(d, "inner"):
                d = d.inner
            return d

        local = {id(d) for d in self._local}
        return [d for d in self.drives if d.online and id(innermost(d)) in local]

    def abandoned(self, vid: str) -> bool:
        """Whether a version that no quorum lists can no longer be committed by anyone:
        on a node that is its drives' only writer, one an earlier process made."""
        return self.exclusive_drives and not minted_here(vid)

    def abandoned_upload(self, upload_id: str, initiated: Sequence[str]) -> bool:
        """Whether an upload that no quorum of drives records can be removed: not one
        this process is creating; on a node that is its drives' only writer, any other;
        in a cluster, one begun more than ABANDONED_AFTER_SECONDS ago."""
        if upload_id in self._creating:
            return False
        if self.exclusive_drives:
            return True
        if not initiated:
            return False
        limit = now() - timedelta(seconds=ABANDONED_AFTER_SECONDS)
        try:
            return all(parse_iso(i) < limit for i in initiated)
        except ValueError:
            return False

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

    async def _housekeeping(self) -> None:
        while True:
            try:
                n = await self.expire_multipart_uploads(
                    now() - timedelta(days=self.expiration_days)
                )
                if n:
                    log.info("expired %d multipart uploads", n)
            except Exception:
                log.exception("multipart cleanup failed")
            await asyncio.sleep(max(self.cleanup_interval, 1.0))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        """Background work (old versions' cleanup) that close() waits for."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- placement -------------------------------------------------------------------

    def place(self, bucket: str, key: str) -> Placement:
        return placement(bucket, key, self.pools, self.n)

    def set_for(self, bucket: str, key: str) -> tuple[int, int]:
        """(home set, rotation): where the key goes if it exists nowhere yet."""
        where = self.place(bucket, key)
        return where.home, where.rot

    async def locate(self, bucket: str, key: str) -> Located:
        """The set holding the key's newest version, else its home set. With several
        pools every candidate set is asked; one that cannot tell (too few drives)
        makes the key unreadable and unwritable rather than risk a stale answer."""
        where = self.place(bucket, key)
        if len(where.candidates) == 1:
            home = await self._set_entries(where.home, bucket, key)
            return self._located(where.home, where.rot, home)
        answers = await asyncio.gather(
            *(self._set_entries(s, bucket, key) for s in where.candidates)
        )
        found = []
        for s, each in zip(where.candidates, answers, strict=True):
            entry = resolve(each.by_position(), self.k, f"{bucket}/{key}", failed=each.failed())
            if entry is not None:
                found.append((entry.vid, s, entry.deleted))
        if not found:
            home = answers[where.candidates.index(where.home)]
            return self._located(where.home, where.rot, home)
        _, s, _ = max(found)
        others = [t for _, t, deleted in found if t != s and not deleted]
        return self._located(s, where.rot, answers[where.candidates.index(s)], others)

    @staticmethod
    def _located(
        s: int, rot: int, answers: Answers[list[VersionRecord]], others: Sequence[int] = ()
    ) -> Located:
        return Located(s, rot, answers.by_position(), list(others), answers.failed())

    async def _target(self, bucket: str, key: str) -> int:
        """The set a write of the key goes to."""
        if len(self.pools) == 1:
            return self.place(bucket, key).home
        return (await self.locate(bucket, key)).set

    async def _set_entries(self, s: int, bucket: str, key: str) -> Answers[list[VersionRecord]]:
        return await fan_out(self.sets[s], lambda d: d.read_object(bucket, key))

    @property
    def write_quorum(self) -> int:
        return self.k + 1

    # -- replicated records (buckets, policies, documents) -----------------------------

    @property
    def doc_drives(self) -> list[HealthTrackedDrive]:
        """The drives whose copies of replicated records count: the first pool's. The
        records go to every drive, but a joining node's drives start with none (until
        healing copies them) and must not outvote the drives that have them."""
        return self.drives[: self.pools[0] * self.n]

    @property
    def _doc_write_quorum(self) -> int:
        return len(self.doc_drives) // 2 + 1

    @property
    def doc_read_quorum(self) -> int:
        return len(self.doc_drives) - self._doc_write_quorum + 1

    async def _read_doc(self, path: str, what: str) -> dict[str, Any] | None:
        """A record kept on every drive (bucket, policy, document)."""
        return await _agreed(self.doc_drives, path, self.doc_read_quorum, what)

    async def _write_doc(self, path: str, record: dict[str, Any] | None, what: str) -> None:
        """Write (or with None, remove) a replicated record on every drive."""
        data = None if record is None else dumps({**record, "v": new_version_id()})

        async def one(d: Drive) -> None:
            await (d.delete(path) if data is None else d.write_doc(path, data))

        answers = await fan_out(self.drives, one)
        voters = len(self.doc_drives)
        try:
            answers.require(self._doc_write_quorum, what, among=voters)
        except ServiceUnavailable:
            if data is not None:
                # Withdrawn where it landed: fewer than a write quorum of drives lost
                # their old copy, so the drives left still hold a read quorum of it.
                await fan_out(self.drives, lambda d: d.delete(path), only=answers.ok())
            raise

    # -- buckets ---------------------------------------------------------------------

    @staticmethod
    def _bucket_path(bucket: str) -> str:
        if not bucket or bucket.startswith(".") or "/" in bucket or "\0" in bucket:
            raise _no_bucket()
        return f"buckets/{bucket}.json"

    async def _bucket_record(self, bucket: str) -> dict[str, Any]:
        record = await self._read_doc(self._bucket_path(bucket), f"bucket {bucket}")
        if record is None:
            self._buckets.pop(bucket, None)
            raise _no_bucket()
        self._buckets[bucket] = asyncio.get_running_loop().time() + BUCKET_TTL
        return record

    async def _require_bucket(self, bucket: str) -> None:
        expires = self._buckets.get(bucket)
        if expires is None or expires < asyncio.get_running_loop().time():
            await self._bucket_record(bucket)

    async def list_buckets(self) -> list[BucketInfo]:
        names: set[str] = set()
        for listed in (await fan_out(self.drives, lambda d: d.list_dir("buckets"))).values():
            names.update(n[:-5] for n in listed if n.endswith(".json"))
        out = []
        for name in sorted(names):
            with contextlib.suppress(NoSuchBucket):
                out.append(await self.head_bucket(name))
        return out

    async def create_bucket(self, bucket: str, *, object_lock: bool = False) -> BucketInfo:
        if object_lock:
            raise _no_versions()
        path = self._bucket_path(bucket)
        async with self._locks.hold(f"b\0{bucket}"):
            with contextlib.suppress(NoSuchBucket):
                await self._bucket_record(bucket)
                raise BucketAlreadyOwnedByYou(
                    "Your previous request to create the named bucket succeeded and you "
                    "already own it."
                )
            info = BucketInfo(bucket, now(whole_seconds=True))
            await fan_out(self.drives, lambda d: d.make_bucket(bucket))
            await self._write_doc(path, {"name": bucket, "created": iso(info.created)}, bucket)
        return info

    async def head_bucket(self, bucket: str) -> BucketInfo:
        record = await self._bucket_record(bucket)
        return BucketInfo(bucket, parse_iso(record["created"]))

    async def delete_bucket(self, bucket: str) -> None:
        async with self._locks.hold(f"b\0{bucket}"):
            await self._bucket_record(bucket)
            page = await self.list_objects(bucket, max_keys=1)
            if page.objects or page.common_prefixes:
                raise BucketNotEmpty("The bucket you tried to delete is not empty")
            await self._write_doc(self._bucket_path(bucket), None, f"bucket {bucket}")
            self._buckets.pop(bucket, None)
            await self._bucket_deleted(bucket)
            for path in (
                f"data/{bucket}",
                f"multipart/{bucket}",
                f"policies/{bucket}.policy.json",
                f"bucket-config/{bucket}",
            ):
                await fan_out(self.drives, lambda d, p=path: d.delete(p))
        self.usage.bucket_deleted(bucket)

    # -- bucket documents --------------------------------------------------------------

    @staticmethod
    def _document_path(bucket: str, name: str) -> str:
        if name == "policy":
            return f"policies/{bucket}.policy.json"
        return f"bucket-config/{bucket}/{name}"

    async def get_bucket_document(self, bucket: str, name: str) -> str:
        await self._require_bucket(bucket)
        record = await self._read_doc(self._document_path(bucket, name), f"{bucket}?{name}")
        if record is None:
            raise NoSuchBucketDocument(f"The bucket has no {name} configuration")
        return str(record["text"])

    async def put_bucket_document(self, bucket: str, name: str, text: str) -> None:
        await self._require_bucket(bucket)
        await self._write_doc(self._document_path(bucket, name), {"text": text}, f"{bucket}?{name}")

    async def delete_bucket_document(self, bucket: str, name: str) -> None:
        await self._require_bucket(bucket)
        await self._write_doc(self._document_path(bucket, name), None, f"{bucket}?{name}")

    async def get_bucket_policy(self, bucket: str) -> str:
        try:
            return await self.get_bucket_document(bucket, "policy")
        except NoSuchBucketDocument as exc:
            raise NoSuchBucketPolicy("The bucket policy does not exist") from exc

    async def put_bucket_policy(self, bucket: str, policy: str) -> None:
        await self.put_bucket_document(bucket, "policy", policy)

    async def delete_bucket_policy(self, bucket: str) -> None:
        await self.delete_bucket_document(bucket, "policy")

    # -- object records ----------------------------------------------------------------

    @staticmethod
    def _check_key(key: str) -> None:
        if key == "":
            raise InvalidRequest("Key must not be empty")
        check_key(key)

    async def read_entries(
        self, bucket: str, key: str
    ) -> tuple[list[HealthTrackedDrive], int, list[list[VersionRecord] | None]]:
        """(set drives, rotation, each drive's entries or None if it failed)."""
        found = await self.locate(bucket, key)
        return self.sets[found.set], found.rot, found.answers

    async def current(self, bucket: str, key: str) -> VersionRecord | None:
        """The newest version with a read quorum (a delete marker included), or None."""
        return (await self.locate(bucket, key)).current(self.k, f"{bucket}/{key}")

    async def _commit(
        self,
        bucket: str,
        key: str,
        entry: VersionRecord,
        drives: Sequence[Drive],
        alive: set[int],
        undo: Callable[[], Awaitable[Any]] | None = None,
        shards: Sequence[Sequence[ShardWrite]] | None = None,
    ) -> VersionRecord | None:
        """Add `entry` to the record on the drives that hold its shards, then retire the
        versions it replaces; withdraw it if fewer than k+1 drives took it. Withdrawing
        deletes the version's folder, so `undo` first takes out what must survive.
        With `shards` (per set position), each drive writes its shard and the entry
        in one round trip: a small object's whole write. Returns the version it
        replaced as the drives listed it (None: none, or they could not tell)."""

        def add(p: int) -> Awaitable[list[VersionRecord]]:
            if shards is None:
                return drives[p].update_object(bucket, key, add=entry)
            return drives[p].write_version(bucket, key, entry, shards[p])

        lacking = [(p, "missed the shards") for p in range(len(drives)) if p not in alive]
        answers = await fan_out_at(drives, add, only=sorted(alive), skipped=lacking)
        ok = answers.ok()
        if len(ok) < self.write_quorum:
            if undo is not None:
                await undo()
            await fan_out(drives, lambda d: d.update_object(bucket, key, drop=[entry.vid]), only=ok)
            answers.require(self.write_quorum, f"{bucket}/{key}")
        replaced = any(len(r) > 1 for r in answers.values())
        if replaced or entry.deleted or len(ok) < len(drives):
            self._spawn(self._retire(bucket, key, entry.vid, drives))
        return _replaced(answers, entry.vid, self.k)

    async def _retire(self, bucket: str, key: str, vid: str, drives: Sequence[Drive]) -> None:
        """Drop versions older than `vid` (and `vid` itself if it is a delete marker) once
        no reader has them open (an hour at most)."""
        try:
            deadline, pause = time.monotonic() + 3600, 0.05
            while time.monotonic() < deadline and await self.in_use(bucket, key, vid):
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 1.0)
            entry = resolve((await self.read_entries(bucket, key))[2], self.k, key)
            marker = entry is not None and entry.vid == vid and entry.deleted
            drop = [vid] if entry is not None and entry.vid > vid else []  # superseded
            answers = await fan_out(
                drives, lambda d: d.update_object(bucket, key, drop=drop, drop_older_than=vid)
            )
            # A delete marker is what hides the versions before it: dropping it on some
            # drives while others still list an older version could hand that version
            # a read quorum again. So it goes only once every drive is rid of them;
            # otherwise healing retires both later.
            if marker and len(answers.ok()) == len(drives):
                await fan_out(drives, lambda d: d.update_object(bucket, key, drop=[vid]))
        except Exception:
            log.warning("cleanup of %s/%s failed; healing will retry", bucket, key, exc_info=True)

    def _check_conditions(self, entry: VersionRecord | None, write: ObjectWrite) -> None:
        current = None if entry is None or entry.deleted else entry.live_meta().etag
        if write.if_none_match and current is not None:
            raise _failed()
        if write.if_match is not None:
            if current is None:
                raise NoSuchKey("The specified key does not exist.")
            wanted = write.if_match.strip().strip('"')
            if wanted not in ("*", current):
                raise _failed()

    def _make_meta(
        self,
        key: str,
        size: int,
        etag: str,
        write: ObjectWrite,
        checksums: dict[str, str],
        *,
        parts: list[PartInfo] | None = None,
        upload: UploadInfo | None = None,
    ) -> ObjectMeta:
        source = upload.write if upload is not None else write
        return ObjectMeta(
            key=key,
            size=size,
            etag=etag,
            last_modified=now(whole_seconds=True),
            content_type=source.content_type,
            headers=dict(source.headers),
            user_metadata=dict(source.user_metadata),
            checksums=dict(checksums or {}),
            checksum_type=write.checksum_type or (upload.checksum_type if upload else None),
            parts=parts,
            extra=dict(source.extra),
        )

    # -- objects -----------------------------------------------------------------------

    async def _write_chunks(
        self,
        body: AsyncIterable[bytes],
        drives: Sequence[Drive],
        base: str,
        rot: int,
        what: str,
        write: ObjectWrite,
    ) -> ChunkWriter:
        """Stream `body` into chunks on `drives`; the writer knows size, MD5, CRCs.
        The body is read on while earlier chunks are encoded and written."""
        writer = ChunkWriter(drives, self.coder, base, rot, what, list(write.digesters))
        chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=1)

        async def cut() -> None:
            buf = bytearray()
            received = 0
            try:
                async for piece in body:
                    received += len(piece)
                    if write.max_size is not None and received > write.max_size:
                        raise EntityTooLarge(
                            "Your proposed upload exceeds the maximum allowed size"
                        )
                    buf += piece
                    while len(buf) >= self.chunk_size:
                        await chunks.put(bytes(memoryview(buf)[: self.chunk_size]))
                        del buf[: self.chunk_size]
                if buf:
                    await chunks.put(bytes(buf))
                await chunks.put(None)
            except Exception as exc:
                await chunks.put(exc)

        reader = asyncio.create_task(cut())
        try:
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                await writer.add(item)
            await writer.finish()
        except BaseException:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await writer.abort()
            raise
        return writer

    async def _discard(self, drives: Sequence[Drive], path: str) -> None:
        await fan_out(drives, lambda d: d.delete(path))

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], write: ObjectWrite
    ) -> ObjectMeta:
        self._check_key(key)
        await self._require_bucket(bucket)
        s, rot = await self._target(bucket, key), self.place(bucket, key).rot
        drives = self.sets[s]
        vid = new_version_id()
        vdir = f"{object_dir(bucket, key)}/{vid}"
        what = f"{bucket}/{key}"
        chunks = aiter(body)
        head, more = await read_head(chunks, self.chunk_size, write.max_size)
        shards: list[list[ShardWrite]] | None = None
        try:
            if more:
                writer = await self._write_chunks(
                    prepend(head, chunks), drives, vdir, rot, what, write
                )
                size, md5, crcs, alive = writer.size, writer.md5, writer.crcs, writer.alive
            else:
                # One chunk: encoded here, then shard and record go to each drive together.
                size, md5, encoded, crcs = (
                    len(head),
                    *await encode_whole(self.coder, head, write.digesters),
                )
                alive = {p for p, d in enumerate(drives) if d.online}
                shards = [
                    [(shard_path(vdir, 0, j), *encoded[j])] if encoded else []
                    for j in ((p - rot) % self.n for p in range(self.n))
                ]
            checksums = write.finalize(size, md5) if write.finalize else {}
            meta = self._make_meta(key, size, md5, write, checksums)
            layout = PartLayout(0, size, self.chunk_size, tuple(map(tuple, crcs)))
            entry = VersionRecord(vid, rot, meta, parts=(layout,))
            async with self._locks.hold(f"o\0{bucket}\0{key}"):
                if write.if_none_match or write.if_match is not None:
                    self._check_conditions(await self.current(bucket, key), write)
                before = await self._commit(bucket, key, entry, drives, alive, shards=shards)
        except BaseException:
            self._spawn(self._discard(drives, vdir))
            raise
        self.usage.object_written(bucket, key, _size(before), size)
        return meta

    async def _open_entry(
        self, bucket: str, key: str
    ) -> tuple[list[HealthTrackedDrive], VersionRecord]:
        self._check_key(key)
        await self._require_bucket(bucket)
        drives, _, answers = await self.read_entries(bucket, key)
        return drives, live(resolve(answers, self.k, f"{bucket}/{key}"))

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        _, entry = await self._open_entry(bucket, key)
        _only_null(version_id)
        return entry.live_meta()

    async def open_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ErasureObjectReader:
        """One round trip for a small object: every drive answers with its entries and,
        when the newest is a single chunk, its shard of it."""
        self._check_key(key)
        await self._require_bucket(bucket)
        self._opening[(bucket, key)] += 1
        try:
            s, rot = await self._target(bucket, key), self.place(bucket, key).rot
        except BaseException:
            self._closed_opening(bucket, key)
            raise
        drives = self.sets[s]
        try:
            read = await fan_out_at(
                drives, lambda p: drives[p].read_small(bucket, key, (p - rot) % self.n, SMALL_READ)
            )
            results = read.by_position()
            answers = [None if r is None else r[0] for r in results]
            entry = live(resolve(answers, self.k, f"{bucket}/{key}", failed=read.failed()))
            _only_null(version_id)
            reader = ErasureObjectReader(self, bucket, key, drives, entry)
        finally:
            self._closed_opening(bucket, key)
        shards = {
            (p - rot) % self.n: r[1]
            for p, r in enumerate(results)
            if r is not None and r[1] is not None and r[0][0].vid == entry.vid
        }
        size = reader.meta.size
        if size == 0:
            reader.data = b""
        elif len(shards) >= self.k and len(entry.parts) == 1 and size <= SMALL_READ:
            reader.data = await run(self.coder.decode, shards, size)
            lost = [j for j in range(self.k) if j not in shards]
            # A shard on an offline drive is not something healing can fix now.
            if any(drives[(j + rot) % self.n].online for j in lost) and self.healer is not None:
                self.healer.queue(bucket, key)
        return reader

    async def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        guard: Guard | None = None,
    ) -> DeleteResult:
        self._check_key(key)
        await self._require_bucket(bucket)
        async with self._locks.hold(f"o\0{bucket}\0{key}"):
            found = await self.locate(bucket, key)
            entry = found.current(self.k, f"{bucket}/{key}")
            exists = entry is not None and not entry.deleted
            if version_id is not None and (version_id != NULL_VERSION or not exists):
                raise _no_version()
            if guard is not None:
                guard(entry.live_meta() if exists and entry is not None else None)
            if entry is None or entry.deleted:
                return DeleteResult()
            marker = VersionRecord.marker(new_version_id())
            # An older copy in another pool (two writers raced a pool's arrival) must
            # not resurface once this marker retires.
            for s in [found.set, *found.others]:
                drives = self.sets[s]
                await self._commit(bucket, key, marker, drives, set(range(len(drives))))
        self.usage.object_deleted(bucket, key, _size(entry))
        return DeleteResult()

    # Versioning and object lock come to the erasure store after its version records
    # are typed (issue 13); until then it has only the null version.
    async def update_bucket(
        self, bucket: str, *, versioning: str | None = None, object_lock: bool | None = None
    ) -> BucketInfo:
        await self.head_bucket(bucket)
        raise _no_versions()

    async def update_object_meta(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        raise _no_versions()

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
        raise _no_versions()

    def pin(self, bucket: str, key: str, vid: str, delta: int) -> None:
        self._pins[(bucket, key, vid)] += delta
        if self._pins[(bucket, key, vid)] <= 0:
            del self._pins[(bucket, key, vid)]

    def _closed_opening(self, bucket: str, key: str) -> None:
        self._opening[(bucket, key)] -= 1
        if self._opening[(bucket, key)] <= 0:
            del self._opening[(bucket, key)]

    async def in_use(self, bucket: str, key: str, vid: str) -> bool:
        """Whether any reader may have a version up to `vid` open: here, one in this
        process (a cluster asks every node: cluster.store)."""
        return self.busy(bucket, key, vid)

    async def _bucket_deleted(self, bucket: str) -> None:
        """After a bucket's deletion: other nodes forget they saw it (cluster.store)."""

    def busy(self, bucket: str, key: str, vid: str) -> bool:
        """Whether a reader in this process has a version up to `vid` open, or is
        between reading the key's records and pinning what it found (a version it may
        pick could be retired under it otherwise)."""
        return self._opening[(bucket, key)] > 0 or any(
            b == bucket and k == key and v <= vid for (b, k, v) in self._pins
        )

    # -- listing -----------------------------------------------------------------------

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        await self._bucket_record(bucket)
        if max_keys <= 0:
            return ListPage([], [], False, None)
        objects: list[ObjectSummary] = []
        prefixes: list[str] = []
        cursor = after
        while True:
            items, bound = await self._merged_page(bucket, prefix, delimiter, cursor, max_keys)
            for name, item in items:
                if len(objects) + len(prefixes) >= max_keys:
                    return ListPage(objects, prefixes, True, _last(objects, prefixes))
                if item is None:
                    prefixes.append(name)
                else:
                    objects.append(item)
            if bound is None:
                return ListPage(objects, prefixes, False, _last(objects, prefixes))
            if len(objects) + len(prefixes) >= max_keys:
                return ListPage(objects, prefixes, True, _last(objects, prefixes))
            cursor = bound

    async def _merged_page(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[tuple[str, ObjectSummary | None]], str | None]:
        """Entries after `after` agreed by the drives of every set, in order, and the name
        up to which they are complete (None: to the end)."""
        merged: dict[str, ObjectSummary | None] = {}
        bounds: list[str] = []
        for entries, bound in await asyncio.gather(
            *(
                self._set_page(s, bucket, prefix, delimiter, after, max_keys)
                for s in range(len(self.sets))
            )
        ):
            for name, item in entries.items():
                # A key in two pools (see locate) is listed as its newer copy.
                old = merged.get(name)
                if old is None or (item is not None and item.last_modified > old.last_modified):
                    merged[name] = item
            bounds += [bound] if bound is not None else []
        bound = min(bounds) if bounds else None
        names = sorted(n for n in merged if bound is None or n <= bound)
        return [(n, merged[n]) for n in names], bound

    async def _set_page(
        self, s: int, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[dict[str, ObjectSummary | None], str | None]:
        """One erasure set's share of a page: each key resolved like a read, each common
        prefix kept when a read quorum of drives has it."""
        drives = self.sets[s]
        listed = await fan_out(
            drives,
            lambda d: d.list_objects(
                bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
            ),
        )
        listed.require(self.k, f"bucket {bucket}", write=False)
        pages = listed.values()
        truncated = [p.last for p in pages if p.truncated and p.last is not None]
        votes: dict[str, list[list[RecordSummary]]] = defaultdict(list)
        cps: Counter[str] = Counter()
        for page in pages:
            for name, versions in page.keys:
                votes[name].append(versions)
            cps.update(page.prefixes)
        missing = len(drives) - len(pages)
        merged: dict[str, ObjectSummary | None] = {}
        for name, lists in votes.items():
            if s not in self.place(bucket, name).candidates:
                continue
            answers: list[list[RecordSummary] | None] = [*lists]
            answers += [[] for _ in range(len(pages) - len(lists))]
            answers += [None] * missing
            found = resolve(answers, self.k, f"{bucket}/{name}", _summary_version)
            if found is not None and not found.deleted and found.last_modified is not None:
                merged[name] = ObjectSummary(
                    key=name,
                    size=found.size,
                    etag=found.etag,
                    last_modified=parse_iso(found.last_modified),
                    storage_class=found.storage_class,
                )
        for cp, count in cps.items():
            if count >= self.k:
                merged[cp] = None
            elif count + missing >= self.k:
                # As for keys (resolve): the silent drives could make it a quorum, so
                # leaving it out might hide keys that exist.
                failed = listed.failed()
                raise read_quorum_error(f"bucket {bucket}", len(pages), len(drives), self.k, failed)
        return merged, min(truncated) if truncated else None

    # -- multipart -----------------------------------------------------------------------

    @staticmethod
    def _upload_dir(bucket: str, upload_id: str) -> str:
        if not is_upload_id(upload_id):  # never text that could become a path
            raise _no_upload()
        return f"multipart/{bucket}/{upload_id}"

    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        write: ObjectWrite,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> UploadInfo:
        self._check_key(key)
        await self._require_bucket(bucket)
        info = new_upload(key, write, checksum_algorithm, checksum_type)
        s = await self._target(bucket, key)
        if len(self.pools) > 1:  # the id says which set holds the upload
            info = dataclasses.replace(info, upload_id=f"s{s}.{info.upload_id}")
        drives = self.sets[s]
        data = dumps({**upload_to_dict(bucket, info), "v": info.upload_id})
        path = f"{self._upload_dir(bucket, info.upload_id)}/upload.json"
        self._creating.add(info.upload_id)
        try:
            answers = await fan_out(drives, lambda d: d.write_doc(path, data))
            if len(answers.ok()) < self.write_quorum:
                await self._discard(drives, self._upload_dir(bucket, info.upload_id))
                answers.require(self.write_quorum, f"{bucket}/{key}")
        finally:
            self._creating.discard(info.upload_id)
        self.usage.upload_started(bucket, key)
        return info

    def upload_set(self, bucket: str, key: str, upload_id: str) -> tuple[int, int]:
        """(set, rotation) of an upload: named in its id once the cluster has several
        pools, else the key's set in the first pool (where it was before any joined)."""
        where = self.place(bucket, key)
        head, dot, _ = upload_id.partition(".")
        if dot and head[:1] == "s" and head[1:].isdigit() and int(head[1:]) < len(self.sets):
            return int(head[1:]), where.rot
        return where.candidates[0], where.rot

    async def _read_set_doc(
        self, drives: Sequence[Drive], path: str, what: str
    ) -> dict[str, Any] | None:
        """A record kept on the drives of one erasure set (uploads and their parts)."""
        return await _agreed(drives, path, self.k, what)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        self._check_key(key)
        await self._require_bucket(bucket)
        drives = self.sets[self.upload_set(bucket, key, upload_id)[0]]
        path = f"{self._upload_dir(bucket, upload_id)}/upload.json"
        record = await self._read_set_doc(drives, path, f"upload {upload_id}")
        if record is None:
            raise _no_upload()
        rec_bucket, info = upload_from_dict(record)
        if rec_bucket != bucket or info.key != key:
            raise _no_upload()
        return info

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
        s, rot = self.upload_set(bucket, key, upload_id)
        drives = self.sets[s]
        udir = self._upload_dir(bucket, upload_id)
        pv = new_version_id()
        pdir = f"{udir}/part-{part_number}.{pv}"
        try:
            try:
                writer = await self._write_chunks(body, drives, pdir, rot, f"{bucket}/{key}", write)
            except ServiceUnavailable:
                # A Complete or Abort removed the upload's folder under the shard writes.
                if await self._upload_gone(bucket, key, upload_id):
                    raise _no_upload() from None
                raise
            checksums = write.finalize(writer.size, writer.md5) if write.finalize else {}
            part = PartInfo(part_number, writer.size, writer.md5, now(), dict(checksums or {}))
            crcs = tuple(map(tuple, writer.crcs))
            record = PartRecord(pv, part, writer.size, self.chunk_size, crcs)
            path = f"{udir}/part-{part_number}.json"
            # The upload's lock, which Complete and Abort hold throughout: a record written
            # after either would name a part of an upload that is gone (a folder nothing
            # removes), and a part replaced while a Complete links it vanishes under it.
            async with self._locks.hold(_upload_lock(upload_id)):
                await self.get_upload(bucket, key, upload_id)
                stored = await self._read_set_doc(drives, path, f"part {part_number}")
                previous = None if stored is None else PartRecord.from_dict(stored)
                superseded = previous is not None and previous.pv > pv
                if not superseded:
                    data = dumps(record.to_dict())
                    answers = await fan_out(
                        drives,
                        lambda d: d.write_doc(path, data),
                        only=sorted(writer.alive),
                        skipped=sorted(writer.lost.items()),
                    )
                    answers.require(self.write_quorum, f"{bucket}/{key} part {part_number}")
        except BaseException:
            self._spawn(self._discard(drives, pdir))
            raise
        if superseded:  # a later upload of this part number won: it stays
            self._spawn(self._discard(drives, pdir))
        elif previous is not None:
            self._spawn(self._discard(drives, f"{udir}/part-{part_number}.{previous.pv}"))
        return part

    async def _upload_gone(self, bucket: str, key: str, upload_id: str) -> bool:
        """Whether a quorum of drives says the upload no longer exists (False when they
        cannot tell)."""
        try:
            await self.get_upload(bucket, key, upload_id)
        except NoSuchUpload:
            return True
        except ServiceUnavailable:
            return False
        return False

    async def _parts(
        self, bucket: str, key: str, upload_id: str
    ) -> dict[int, tuple[PartInfo, PartRecord]]:
        drives = self.sets[self.upload_set(bucket, key, upload_id)[0]]
        udir = self._upload_dir(bucket, upload_id)
        numbers: set[int] = set()
        for listed in (await fan_out(drives, lambda d: d.list_dir(udir))).values():
            for name in listed:
                if name.startswith("part-") and name.endswith(".json"):
                    with contextlib.suppress(ValueError):
                        numbers.add(int(name[5:-5]))
        records = await asyncio.gather(
            *(self._read_set_doc(drives, f"{udir}/part-{n}.json", f"part {n}") for n in numbers)
        )
        parts = [PartRecord.from_dict(r) for r in records if r is not None]
        return {p.info.number: (p.info, p) for p in parts}

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after: int = 0, max_parts: int = 1000
    ) -> PartListPage:
        info = await self.get_upload(bucket, key, upload_id)
        stored = await self._parts(bucket, key, upload_id)
        numbers = sorted(n for n in stored if n > after)
        chosen = [stored[n][0] for n in numbers][: max(max_parts, 0)]
        truncated = len(numbers) > len(chosen)
        return PartListPage(info, chosen, truncated, chosen[-1].number if chosen else None)

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        """Hard-links the parts' shard files into the new version: no data is rewritten,
        and the upload stays whole until the version is committed, so a completion cut
        off anywhere (a crash included) can simply be retried; what an unfinished one
        linked is an unnamed version folder, swept later. The digesters are fed by
        reading the parts back (data shards, no decoding).

        All of it under the upload's lock: the parts chosen stay as they were (an
        UploadPart commits its record only under that lock), and a racing Complete or
        Abort waits, then finds the upload gone: NoSuchUpload, not a failed link."""
        async with self._locks.hold(_upload_lock(upload_id)):
            return await self._complete(bucket, key, upload_id, parts, write)

    async def _complete(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        info = await self.get_upload(bucket, key, upload_id)
        stored = await self._parts(bucket, key, upload_id)
        chosen = check_completion(parts, stored)
        s, rot = self.upload_set(bucket, key, upload_id)
        drives = self.sets[s]
        udir = self._upload_dir(bucket, upload_id)
        vid = new_version_id()
        vdir = f"{object_dir(bucket, key)}/{vid}"
        infos = [p for p, _ in chosen]
        size = sum(p.size for p in infos)
        if write.digesters:
            refs = []
            offset = 0
            for p, r in chosen:
                for ref in chunk_refs(f"{udir}/part-{p.number}.{r.pv}", [r.layout(0)]):
                    refs.append(
                        ChunkRef(ref.base, ref.index, offset + ref.offset, ref.size, ref.crcs)
                    )
                offset += p.size
            await self._feed(drives, rot, refs, write.digesters, f"{bucket}/{key}")
        etag = multipart_etag(infos)
        checksums = write.finalize(size, etag) if write.finalize else {}
        meta = self._make_meta(key, size, etag, write, checksums, parts=infos, upload=info)
        entry = VersionRecord(vid, rot, meta, parts=tuple(r.layout() for _, r in chosen))
        links = [(f"{udir}/part-{p.number}.{r.pv}", f"{vdir}/part-{p.number}") for p, r in chosen]

        async def link_all(d: Drive) -> None:
            # A drive that missed a part is not counted: update_object refuses a version
            # whose shards the drive does not hold.
            for src, dst in links:
                with contextlib.suppress(FileNotFoundError):
                    await d.link(src, dst)

        async with self._locks.hold(f"o\0{bucket}\0{key}"):
            if write.if_none_match or write.if_match is not None:
                self._check_conditions(await self.current(bucket, key), write)
            await self.get_upload(bucket, key, upload_id)
            try:
                linked = await fan_out(drives, link_all)
                before = await self._commit(bucket, key, entry, drives, set(linked.ok()))
            except BaseException as exc:
                self._spawn(self._discard(drives, vdir))
                # In a cluster, another node's Complete or Abort (which this node's lock
                # does not hold back) may have removed the parts under the links.
                if isinstance(exc, ServiceUnavailable) and await self._upload_gone(
                    bucket, key, upload_id
                ):
                    raise _no_upload() from None
                raise
        await self._discard(drives, udir)  # the upload is gone once this returns
        self.usage.object_written(bucket, key, _size(before), size)
        self.usage.upload_ended(bucket, key)
        return meta

    async def _feed(
        self,
        drives: Sequence[Drive],
        rot: int,
        refs: list[ChunkRef],
        digesters: Sequence[Any],
        what: str,
    ) -> None:
        def update(pieces: list[memoryview]) -> None:
            for piece in pieces:
                for d in digesters:
                    d.update(piece)

        for ref in refs:
            pieces, _ = await read_chunk(drives, self.coder, ref, rot, what)
            await run(update, pieces)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Under the upload's lock, like Complete: of two, the second finds it gone."""
        async with self._locks.hold(_upload_lock(upload_id)):
            await self.get_upload(bucket, key, upload_id)
            drives = self.sets[self.upload_set(bucket, key, upload_id)[0]]
            udir = self._upload_dir(bucket, upload_id)
            answers = await fan_out(drives, lambda d: d.delete(udir))
            answers.require(self.write_quorum, f"upload {upload_id}")
        self.usage.upload_ended(bucket, key)

    async def _all_uploads(self, bucket: str) -> list[UploadInfo]:
        found: dict[str, UploadInfo] = {}
        for drives in self.sets:
            ids: set[str] = set()
            listing = await fan_out(drives, lambda d: d.list_dir(f"multipart/{bucket}"))
            for listed in listing.values():
                ids.update(listed)
            for upload_id in ids:
                record = await self._read_set_doc(
                    drives, f"multipart/{bucket}/{upload_id}/upload.json", upload_id
                )
                if record is not None:
                    found[upload_id] = upload_from_dict(record)[1]
        return list(found.values())

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
        await self._bucket_record(bucket)
        return uploads_page(
            await self._all_uploads(bucket),
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )

    async def expire_multipart_uploads(self, older_than: datetime) -> int:
        count = 0
        for bucket in await self.list_buckets():
            for info in await self._all_uploads(bucket.name):
                if info.initiated < older_than:
                    with contextlib.suppress(NoSuchUpload):
                        await self.abort_multipart_upload(bucket.name, info.key, info.upload_id)
                        count += 1
        return count

    # -- management -------------------------------------------------------------------

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


def _replaced(committed: Answers[list[VersionRecord]], vid: str, k: int) -> VersionRecord | None:
    """The version a commit of `vid` replaced: the newest older one that k of the drives
    that answered the commit list (None if there is none, or they cannot tell)."""
    answers = [
        None if entries is None else [e for e in entries if e.vid < vid]
        for entries in committed.by_position()
    ]
    try:
        return resolve(answers, k, "")
    except ServiceUnavailable:
        return None


def _size(entry: VersionRecord | None) -> int | None:
    """An entry's object size; None for no entry or a delete marker."""
    return None if entry is None else entry.size


def _summary_version(summary: RecordSummary) -> str:
    return summary.vid


def _last(objects: list[ObjectSummary], prefixes: list[str]) -> str | None:
    names = [o.key for o in objects[-1:]] + prefixes[-1:]
    return max(names) if names else None


class ErasureObjectReader:
    """An open object: its version stays on disk (in this process) until close()."""

    def __init__(
        self,
        store: ErasureStore,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        entry: VersionRecord,
    ) -> None:
        self.meta = entry.live_meta()
        self._store, self._bucket, self._key = store, bucket, key
        self._drives = drives
        self._entry = entry
        self._refs = chunk_refs(f"{object_dir(bucket, key)}/{entry.vid}", entry.parts)
        self._closed = False
        #: The whole object when it was read with its record (small objects).
        self.data: bytes | None = None
        store.pin(bucket, key, entry.vid, 1)

    async def _chunk(self, ref: ChunkRef) -> list[memoryview]:
        what = f"{self._bucket}/{self._key}"
        pieces, degraded = await read_chunk(
            self._drives, self._store.coder, ref, self._entry.rot, what
        )
        if degraded and self._store.healer is not None:
            self._store.healer.queue(self._bucket, self._key)
        return pieces

    async def stream(
        self, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes | memoryview]:
        """Pieces of at most a shard's payload, views into the shards read."""
        last = self.meta.size - 1 if end is None or end < 0 else min(end, self.meta.size - 1)
        if self.data is not None:
            if start <= last:
                yield self.data[start : last + 1]
            return
        refs = chunks_for(self._refs, start, last)
        ahead: asyncio.Task[list[memoryview]] | None = None
        try:
            for i, ref in enumerate(refs):
                task = ahead or asyncio.ensure_future(self._chunk(ref))
                ahead = (
                    asyncio.ensure_future(self._chunk(refs[i + 1])) if i + 1 < len(refs) else None
                )
                offset = ref.offset
                for piece in await task:
                    lo, hi = max(start - offset, 0), min(last - offset + 1, len(piece))
                    if lo < hi:
                        yield piece if (lo, hi) == (0, len(piece)) else piece[lo:hi]
                    offset += len(piece)
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store.pin(self._bucket, self._key, self._entry.vid, -1)

    async def __aenter__(self) -> ErasureObjectReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
