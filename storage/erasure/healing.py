"""Healing: finding missing and rotten shards and rewriting just those.

Two ways in: objects a read had to reconstruct are queued and healed soon after; and a
scanner walks every object of every bucket on an interval (24 h by default, as the
reference does) or when asked through the management API. For each object it reads
every shard of the current version, checks it against the CRC32C recorded at write
time, moves corrupt shards aside to quarantine/ (never deletes them), rebuilds the
missing and corrupt ones from any k good ones, rewrites the record on drives that lost
it, and retires versions left behind by failed or superseded writes. When the client
sent a full-object checksum, a rebuilt object is read back and checked against it.

All of it is paced by a byte budget per second so foreground requests keep the disks.
This module decides which objects and when; healing one is storage.erasure.objecthealing.

At start, before any scan, the healer sweeps this node's own drives once: what writes
cut off by a crash of an earlier process left there (see LocalDrive._sweep for why that
is safe while other nodes write) and uploads no quorum of drives records any longer.
Whatever healing could not do is counted in `failures`, each with its reason in
`errors` (the first MAX_ERRORS of a report) and in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from shoal.storage.backend import BucketInfo
from shoal.storage.erasure.coder import ErasureCoder
from shoal.storage.erasure.drive import (
    Drive,
    is_io_error,
)
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.objecthealing import ABANDONED_AFTER_SECONDS, ObjectHealing, age_seconds
from shoal.storage.erasure.quorum import fan_out
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.erasure.versions import doc_rank, resolve
from shoal.storage.errors import ServiceUnavailable
from shoal.storage.records import dumps, loads

log = logging.getLogger("shoal.storage")

#: Reasons kept per report (all are counted and logged).
MAX_ERRORS = 100


@dataclass
class HealReport:
    """What one scan (or the queue since start) found and did."""

    objects_scanned: int = 0
    shards_checked: int = 0
    shards_missing: int = 0
    shards_corrupt: int = 0
    shards_healed: int = 0
    records_healed: int = 0
    documents_healed: int = 0
    orphans_removed: int = 0
    quarantined: int = 0
    versions_retired: int = 0
    checksums_verified: int = 0
    uploads_removed: int = 0
    failures: int = 0
    unrecoverable: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None

    def add(self, other: HealReport) -> None:
        for name, value in asdict(other).items():
            if isinstance(value, int) and name not in ("started", "finished"):
                setattr(self, name, getattr(self, name) + value)
        self.unrecoverable += other.unrecoverable
        self.errors = (self.errors + other.errors)[:MAX_ERRORS]

    def fail(self, what: str, exc: BaseException) -> None:
        """Something healing tried did not happen: counted, said why, logged."""
        self.failures += 1
        reason = f"{what}: {type(exc).__name__}: {exc}"
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(reason)
        log.warning("healing: %s", reason)


class HealedStore(Protocol):
    """What healing needs of the store it repairs (storage.erasure.store.ErasureStore):
    its drives and erasure sets, the quorum sizes, and the questions only the store can
    answer — which versions readers have open, what a crashed writer left behind."""

    k: int
    coder: ErasureCoder
    drives: list[HealthTrackedDrive]
    sets: list[list[HealthTrackedDrive]]

    @property
    def doc_drives(self) -> list[HealthTrackedDrive]:
        """The drives whose copies of replicated records (buckets, policies) count."""
        ...

    @property
    def doc_read_quorum(self) -> int: ...

    def local_drives(self) -> list[HealthTrackedDrive]:
        """This node's own online drives (the ones it sweeps at start)."""
        ...

    async def list_buckets(self) -> list[BucketInfo]: ...

    async def read_entries(
        self, bucket: str, key: str
    ) -> tuple[list[HealthTrackedDrive], int, list[list[VersionRecord] | None]]:
        """The key's set, shard rotation, and each drive's versions (None: failed)."""
        ...

    async def in_use(self, bucket: str, key: str, vid: str) -> bool:
        """Whether a reader (on any node) may have a version up to `vid` open."""
        ...

    def abandoned(self, vid: str) -> bool:
        """Whether a version no quorum lists can no longer be committed by anyone."""
        ...

    def abandoned_upload(self, upload_id: str, initiated: Sequence[str]) -> bool:
        """Whether an upload no quorum of drives records can be removed."""
        ...

    async def completed_upload(self, drives: Sequence[Drive], bucket: str, upload_id: str) -> bool:
        """Whether the upload's Complete committed (what is left of it can go)."""
        ...


class Pacer:
    """At most `rate` bytes per second, averaged over the run."""

    def __init__(self, rate: int) -> None:
        self.rate = max(rate, 1)
        self.start = time.monotonic()
        self.bytes = 0

    async def spend(self, n: int) -> None:
        self.bytes += n
        ahead = self.bytes / self.rate - (time.monotonic() - self.start)
        await asyncio.sleep(max(ahead, 0))


class Healer:
    def __init__(self, store: HealedStore, *, interval: float, rate: int) -> None:
        self.store = store
        self.interval = interval
        self.rate = rate
        self.last_scan: HealReport | None = None
        self.current: HealReport | None = None
        self.queued_total = HealReport()
        #: The counts of every finished scan (for metrics: these, `current` and
        #: `queued_total` together are everything done since start).
        self.scans_total = HealReport()
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_lock = asyncio.Lock()
        self._scan_requested: asyncio.Task[None] | None = None
        self._rescan = False
        #: What the sweep at start removed (None until it ran).
        self.startup: HealReport | None = None
        self.objects = ObjectHealing(store)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._drain()),
            loop.create_task(self._periodic()),
            loop.create_task(self._startup_sweep()),
        ]

    async def stop(self) -> None:
        if self._scan_requested is not None:
            self._tasks.append(self._scan_requested)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def request_scan(self, delay: float = 1.0) -> None:
        """A full scan soon: drives coming back together (a node's) ask once."""
        self._rescan = True
        if self._scan_requested is not None and not self._scan_requested.done():
            return  # it scans again if this came in during its scan

        async def later() -> None:
            while self._rescan:
                await asyncio.sleep(delay)
                self._rescan = False
                try:
                    await self.scan()
                except Exception:
                    log.exception("healing scan failed")

        self._scan_requested = asyncio.get_running_loop().create_task(later())

    def queue(self, bucket: str, key: str) -> None:
        """Heal this object soon (a read had to reconstruct it)."""
        if (bucket, key) not in self._queued:
            self._queued.add((bucket, key))
            self._queue.put_nowait((bucket, key))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def status(self) -> dict[str, Any]:
        return {
            "running": self.current is not None,
            # a scan asked for by a drive's return that has not finished yet
            "scan_pending": self._scan_requested is not None and not self._scan_requested.done(),
            "backlog": self.backlog,
            "interval_seconds": self.interval,
            "current": asdict(self.current) if self.current else None,
            "last_scan": asdict(self.last_scan) if self.last_scan else None,
            "queued": asdict(self.queued_total),
            "startup_sweep": asdict(self.startup) if self.startup else None,
        }

    async def _drain(self) -> None:
        while True:
            bucket, key = await self._queue.get()
            self._queued.discard((bucket, key))
            try:
                await self.objects.heal(bucket, key, self.queued_total, Pacer(self.rate))
            except Exception as exc:
                self.queued_total.fail(f"{bucket}/{key}", exc)
            # Totals since start: only the latest objects it could not rebuild are kept.
            del self.queued_total.unrecoverable[:-MAX_ERRORS]

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.scan()
            except Exception:
                log.exception("healing scan failed")

    # -- scanning ----------------------------------------------------------------------

    async def scan(self) -> HealReport:
        """Check and repair every object once; returns what was found and done."""
        async with self._scan_lock:
            report = HealReport(started=time.time())
            self.current = report
            pacer = Pacer(self.rate)
            try:
                await self._heal_buckets(report)
                drives = [d for d in self.store.drives if d.online]
                await self._sweep(drives, "", report)
                for bucket in await self.store.list_buckets():
                    await self._sweep(drives, bucket.name, report)
                    await self._heal_uploads(bucket.name, report)
                    for key in await self._keys(bucket.name):
                        try:
                            await self.objects.heal(bucket.name, key, report, pacer)
                        except Exception as exc:
                            report.fail(f"{bucket.name}/{key}", exc)
            finally:
                report.finished = time.time()
                self.current = None
                self.last_scan = report
                self.scans_total.add(replace(report, unrecoverable=[], errors=[]))
            log.info(
                "healing scan: %d objects, %d shards checked, %d missing, %d corrupt, "
                "%d healed, %d unrecoverable, %d orphans removed, %d failures",
                report.objects_scanned,
                report.shards_checked,
                report.shards_missing,
                report.shards_corrupt,
                report.shards_healed,
                len(report.unrecoverable),
                report.orphans_removed + report.uploads_removed,
                report.failures,
            )
            return report

    async def _startup_sweep(self) -> None:
        """Once at start, on this node's own drives: what the process before this one left
        unfinished (see the module docstring). Scans wait for it."""
        async with self._scan_lock:
            report = HealReport(started=time.time())
            try:
                drives = self.store.local_drives()
                await self._sweep(drives, "", report)
                for bucket in await self.store.list_buckets():
                    await self._sweep(drives, bucket.name, report)
                    await self._heal_uploads(bucket.name, report)
            except Exception as exc:
                report.fail("sweep at start", exc)
            finally:
                report.finished = time.time()
                self.startup = report
                self.scans_total.add(replace(report, unrecoverable=[], errors=[]))
            log.info(
                "sweep at start: %d orphans and %d abandoned uploads removed, %d failures",
                report.orphans_removed,
                report.uploads_removed,
                report.failures,
            )

    async def _heal_buckets(self, report: HealReport) -> None:
        """Bucket records, policies and documents back on every drive (a replaced drive
        has none; one that was offline may have missed changes or a bucket's deletion)."""
        names: set[str] = set()
        for drive in self.store.drives:
            if not drive.online:
                continue
            try:
                names.update(n[:-5] for n in await drive.list_dir("buckets") if n.endswith(".json"))
            except Exception as exc:
                report.fail(f"listing buckets on {drive.name}", exc)
        for name in sorted(names):
            try:
                exists = await self._heal_doc(f"buckets/{name}.json", report)
                if not exists:
                    continue
                docs = {f"policies/{name}.policy.json"}
                for drive in self.store.drives:
                    if not drive.online:
                        continue
                    try:
                        await drive.make_bucket(name)
                        for doc in await drive.list_dir(f"bucket-config/{name}"):
                            docs.add(f"bucket-config/{name}/{doc}")
                    except Exception as exc:
                        report.fail(f"bucket {name} on {drive.name}", exc)
                for doc in sorted(docs):
                    await self._heal_doc(doc, report)
            except Exception as exc:
                report.fail(f"bucket {name}", exc)

    async def _heal_doc(self, path: str, report: HealReport) -> bool:
        """Make every online drive hold the agreed copy of a replicated record (or none,
        once a copy that never had a quorum is old enough to be sure). Returns whether
        the record exists."""
        store = self.store
        drives = [d for d in store.drives if d.online]
        read = await fan_out(drives, lambda d: d.read_doc(path))
        failed = {p for p, _ in read.errors()}
        for p, exc in read.errors():
            report.fail(f"reading {path} on {drives[p].name}", exc)
        copies: list[dict[str, Any] | None] = []
        answers: list[list[dict[str, Any]] | None] = []
        for p, raw in enumerate(read.by_position()):
            copy = None if p in failed or raw is None else loads(raw)
            copies.append(copy)
            answers.append(None if p in failed else [] if copy is None else [copy])
        voters = {id(d) for d in store.doc_drives}
        votes = [a for d, a in zip(drives, answers, strict=True) if id(d) in voters]
        votes += [None] * (len(voters) - len(votes))
        try:
            agreed = resolve(votes, store.doc_read_quorum, path, doc_rank)
        except ServiceUnavailable:
            return True  # cannot tell now; leave everything as it is
        for drive, copy, answer in zip(drives, copies, answers, strict=False):
            if answer is None:
                continue
            if agreed is not None and (copy is None or copy.get("v") != agreed["v"]):
                await drive.write_doc(path, dumps(agreed))
                report.documents_healed += 1
            elif (
                agreed is None
                and copy is not None
                and age_seconds(str(copy.get("v", ""))) > (ABANDONED_AFTER_SECONDS)
            ):
                await drive.delete(path)
                report.documents_healed += 1
                if path.startswith("buckets/"):  # a bucket deleted while this drive was away
                    name = path[len("buckets/") : -len(".json")]
                    for leftover in (f"data/{name}", f"multipart/{name}"):
                        await drive.delete(leftover)
        return agreed is not None

    async def _sweep(self, drives: Sequence[Drive], bucket: str, report: HealReport) -> None:
        """Shards of writes that died before any record named them (and temp files)."""
        for drive in drives:
            try:
                report.orphans_removed += await drive.sweep(bucket, ABANDONED_AFTER_SECONDS)
            except Exception as exc:
                report.fail(f"sweeping {bucket or 'tmp/'} on {drive.name}", exc)

    async def _heal_uploads(self, bucket: str, report: HealReport) -> None:
        """Remove uploads that no quorum of drives records any more but some still hold
        (a create, abort or completion cut off by a crash): the API cannot see them, so
        nothing else ever would. Never one still being created or ended."""
        store = self.store
        for drives in store.sets:
            if not all(d.online for d in drives):
                continue  # an absent drive may hold the copies that make a quorum
            ids: set[str] = set()
            for drive in drives:
                try:
                    ids.update(await drive.list_dir(f"multipart/{bucket}"))
                except Exception as exc:
                    report.fail(f"listing uploads of {bucket} on {drive.name}", exc)
            for upload_id in sorted(ids):
                udir = f"multipart/{bucket}/{upload_id}"
                read = await fan_out(drives, lambda d, u=udir: d.read_doc(f"{u}/upload.json"))
                if read.errors():  # the next scan looks again
                    report.fail(f"reading upload {upload_id}", read.errors()[0][1])
                    continue
                try:
                    copies = [None if raw is None else loads(raw) for raw in read.values()]
                except ValueError as exc:  # a torn record: the next scan looks again
                    report.fail(f"reading upload {upload_id}", exc)
                    continue
                if sum(c is not None for c in copies) >= store.k:
                    try:  # a quorum's copies, but completed: a removal a crash cut off
                        if not await store.completed_upload(drives, bucket, upload_id):
                            continue
                    except ServiceUnavailable as exc:
                        report.fail(f"reading completion of upload {upload_id}", exc)
                        continue
                else:
                    initiated = [str(c.get("initiated", "")) for c in copies if c is not None]
                    if not store.abandoned_upload(upload_id, initiated):
                        continue
                removal = await fan_out(drives, lambda d, u=udir: d.delete(u))
                if removal.errors():
                    report.fail(f"removing abandoned upload {upload_id}", removal.errors()[0][1])
                else:
                    report.uploads_removed += 1

    async def _keys(self, bucket: str) -> list[str]:
        """Every key any drive has a record for — including ones without a quorum, whose
        leftovers are retired."""
        keys: set[str] = set()
        for drive in self.store.drives:
            if not drive.online:
                continue
            after = ""
            while True:
                try:
                    page = await drive.list_objects(
                        bucket, prefix="", delimiter="", after=after, max_keys=1000
                    )
                except Exception as exc:
                    if not is_io_error(exc):
                        raise
                    break
                keys.update(name for name, _ in page.keys)
                if not page.truncated or page.last is None:
                    break
                after = page.last
        return sorted(keys)
