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

At start, before any scan, the healer sweeps this node's own drives once: what writes
cut off by a crash of an earlier process left there (see LocalDrive._sweep for why that
is safe while other nodes write) and uploads no quorum of drives records any longer.
Whatever healing could not do is counted in `failures`, each with its reason in
`errors` (the first MAX_ERRORS of a report) and in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from shoal.storage.backend import BucketInfo
from shoal.storage.checksums import Checksum
from shoal.storage.erasure.coder import ErasureCoder
from shoal.storage.erasure.drive import (
    CorruptShard,
    Drive,
    DriveError,
    ShardMissing,
    is_io_error,
    object_dir,
    shard_path,
)
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.quorum import fan_out
from shoal.storage.erasure.records import VersionRecord, visible
from shoal.storage.erasure.shards import inline_shards, read_chunk
from shoal.storage.erasure.versions import chunk_refs, doc_rank, resolve, settled
from shoal.storage.errors import ServiceUnavailable
from shoal.storage.keys import check_key
from shoal.storage.records import dumps, loads
from shoal.storage.threads import run

log = logging.getLogger("shoal.storage")

#: Versions that never reached a quorum are left this long (a write may be in flight).
ABANDONED_AFTER_SECONDS = 3600
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


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def b64(self) -> str: ...


class Md5:
    """MD5 in the form an ETag stores it (hex), behind Checksum's interface."""

    def __init__(self) -> None:
        self._h = hashlib.md5()

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def b64(self) -> str:
        return self._h.hexdigest()


def _part_bounds(entry: VersionRecord) -> list[tuple[int, int]]:
    bounds, offset = [], 0
    for part in entry.parts:
        bounds.append((offset, offset + part.size))
        offset += part.size
    return bounds


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


def _age_seconds(vid: str) -> float:
    try:
        return time.time() - int(vid[:16], 16) / 1e9
    except ValueError:
        return 0.0


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
                await self.heal_object(bucket, key, self.queued_total, Pacer(self.rate))
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
                            await self.heal_object(bucket.name, key, report, pacer)
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
                and _age_seconds(str(copy.get("v", ""))) > (ABANDONED_AFTER_SECONDS)
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

    async def heal_object(self, bucket: str, key: str, report: HealReport, pacer: Pacer) -> None:
        check_key(key)
        store = self.store
        drives, rot, answers = await store.read_entries(bucket, key, everything=True)
        report.objects_scanned += 1
        what = f"{bucket}/{key}"
        try:
            entry = resolve(answers, store.k, what)
        except ServiceUnavailable as exc:
            report.unrecoverable.append(f"{what}: {exc.message}")
            return
        await self._retire(bucket, key, drives, answers, entry, report)
        # Every version S3 shows (the current one first), each on every drive.
        for version in visible(settled(answers, store.k)):
            await self._heal_version(bucket, key, drives, rot, answers, version, report, pacer)

    async def _heal_version(
        self,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        rot: int,
        answers: Sequence[Sequence[VersionRecord] | None],
        entry: VersionRecord,
        report: HealReport,
        pacer: Pacer,
    ) -> None:
        """One version's missing and rotten shards rebuilt, and its entry (its newest
        metadata: the highest revision) written where it is missing or older."""
        store = self.store
        what = f"{bucket}/{key}"
        reachable = [p for p, a in enumerate(answers) if a is not None and drives[p].online]
        lacking = [
            p
            for p in reachable
            if not any(
                e.rank == entry.rank and e.revision >= entry.revision for e in answers[p] or []
            )
        ]
        if entry.is_inline:
            await self._heal_inline(bucket, key, drives, rot, answers, entry, lacking, report)
            return
        vdir = f"{object_dir(bucket, key)}/{entry.vid}"
        rebuilt = False
        n = len(drives)
        for ref in chunk_refs(vdir, entry.parts):
            good: dict[int, bytes] = {}
            bad: list[int] = []
            for p in reachable:
                j = (p - rot) % n
                path = shard_path(ref.base, ref.index, j)
                try:
                    good[j] = await drives[p].read_shard(path, ref.crcs[j])
                    await pacer.spend(len(good[j]))
                except ShardMissing:
                    report.shards_missing += 1
                    bad.append(j)
                except CorruptShard:
                    report.shards_corrupt += 1
                    await self._quarantine(drives[p], path, report)
                    bad.append(j)
                except DriveError:
                    continue  # offline or hung: nothing to repair there now
                except OSError as exc:
                    # A bad sector: rewriting the shard lets the disk remap it.
                    log.warning("shard %s on %s unreadable: %r", path, drives[p].name, exc)
                    report.shards_corrupt += 1
                    await self._quarantine(drives[p], path, report)
                    bad.append(j)
                report.shards_checked += 1
            if not bad:
                continue
            if len(good) < store.k:
                report.unrecoverable.append(
                    f"{what}: chunk {ref.index} has {len(good)} intact shards, {store.k} needed"
                )
                return
            fresh = await store.coder.reconstruct_async(good, bad)
            for j, data in fresh.items():
                p = (j + rot) % n
                await drives[p].write_shard(shard_path(ref.base, ref.index, j), data, ref.crcs[j])
                await pacer.spend(len(data))
                report.shards_healed += 1
            rebuilt = True
        for p in lacking:
            await drives[p].update_object(bucket, key, add=entry)
            report.records_healed += 1
        if rebuilt:
            await self._verify(bucket, key, entry, drives, rot, report)

    async def _heal_inline(
        self,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        rot: int,
        answers: Sequence[Sequence[VersionRecord] | None],
        entry: VersionRecord,
        lacking: Sequence[int],
        report: HealReport,
    ) -> None:
        """A version whose shards are in its entries (records.py: inline): a drive
        whose copy is missing, or lacks its shard, or whose shard fails its CRC32C gets
        the entry with its shard rebuilt from k intact ones; one whose copy only has
        older metadata, the entry without a shard (it keeps its own). A rotten shard's
        bytes go to quarantine/ first, as a rotten shard file does."""
        store = self.store
        what = f"{bucket}/{key}"
        n = len(drives)
        reachable = [
            None if a is None or not drives[p].online else a for p, a in enumerate(answers)
        ]
        good, bad = inline_shards(reachable, entry, rot)
        report.shards_checked += len(good) + len(bad)
        for p in bad:
            copy = next((e for e in answers[p] or [] if e.rank == entry.rank), None)
            if copy is None or copy.inline is None:
                report.shards_missing += 1
                continue
            report.shards_corrupt += 1
            path = shard_path(f"{object_dir(bucket, key)}/{entry.vid}", 0, (p - rot) % n)
            stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
            try:
                await drives[p].write_doc(f"quarantine/{stamp}/{path}.dat", copy.inline)
                report.quarantined += 1
            except Exception as exc:
                report.fail(f"quarantining the inline {path} on {drives[p].name}", exc)
        fresh: dict[int, bytes] = {}
        if bad:
            if len(good) < store.k:
                report.unrecoverable.append(
                    f"{what}: {len(good)} intact inline shards, {store.k} needed"
                )
                return
            fresh = await store.coder.reconstruct_async(good, [(p - rot) % n for p in bad])
            good = {**good, **fresh}
        shared = entry.shared()
        for p in sorted(set(bad) | set(lacking)):
            j = (p - rot) % n
            own = replace(shared, inline=fresh[j]) if j in fresh else shared
            await drives[p].update_object(bucket, key, add=own)
            if j in fresh:
                report.shards_healed += 1
            if p in lacking:
                report.records_healed += 1
        if fresh:
            data = store.coder.decode(good, entry.live_meta().size)
            await self._verify(bucket, key, entry, drives, rot, report, data)

    async def _quarantine(self, drive: Drive, path: str, report: HealReport) -> None:
        """Move a bad shard aside; if even that fails, its rebuilt copy replaces it."""
        try:
            await drive.quarantine(path)
            report.quarantined += 1
        except Exception as exc:
            report.fail(f"quarantining {path} on {drive.name}", exc)

    async def _retire(
        self,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        answers: Sequence[Sequence[VersionRecord] | None],
        entry: VersionRecord | None,
        report: HealReport,
    ) -> None:
        """Drop the null entries the newest committed one hides, a marker that only
        stands for a deletion, and abandoned writes — never a version a reader (on any
        node) still has open (records.py says which entries are versions).

        That marker goes last, and only once every drive answered and is rid of the
        entries before it: dropped while some drives still list an older one, it could
        hand that one a read quorum again."""
        store = self.store
        marker = entry is not None and entry.transient
        cleared = all(a is not None for a in answers)
        kept = settled(answers, store.k)
        committed = {e.rank for e in kept}
        newest_null = next((e for e in kept if e.is_null), None)
        holding: list[int] = []
        for p, entries in enumerate(answers):
            if not entries:
                continue
            doomed = []
            for e in entries:
                if entry is not None and e.rank == entry.rank:
                    if marker:
                        holding.append(p)
                    continue
                hidden = newest_null is not None and e.is_null and e.order < newest_null.order
                if e.rank in committed and not hidden:
                    continue  # a version of the key
                if await store.in_use(bucket, key, e.order):
                    cleared = False
                elif hidden:
                    doomed.append(e.rank)
                elif _age_seconds(e.order) > ABANDONED_AFTER_SECONDS or store.abandoned(e.order):
                    # On too few drives: a write that died before its commit, or the
                    # rest of a version deleted (or one still being written: hence the
                    # wait, unless the process that made it is known to be gone).
                    doomed.append(e.rank)
            if doomed:
                try:
                    await drives[p].update_object(bucket, key, drop=doomed)
                except Exception as exc:
                    cleared = False
                    report.fail(f"retiring versions of {bucket}/{key} on {drives[p].name}", exc)
                else:
                    report.versions_retired += len(doomed)
        if marker and cleared and entry is not None:
            for p in holding:
                try:
                    await drives[p].update_object(bucket, key, drop=[entry.rank])
                    report.versions_retired += 1
                except Exception as exc:
                    report.fail(f"retiring the delete marker of {bucket}/{key}", exc)

    async def _verify(
        self,
        bucket: str,
        key: str,
        entry: VersionRecord,
        drives: Sequence[Drive],
        rot: int,
        report: HealReport,
        data: bytes | None = None,
    ) -> None:
        """Read a rebuilt object back (an inline one is `data`, decoded from the shards
        just written) and check it against what the client's upload proved: the MD5
        ETag of a plain object or of each part, each part's checksums, and a
        full-object checksum."""
        meta = entry.live_meta()
        whole: dict[str, Hasher] = {}
        if meta.checksum_type != "COMPOSITE":
            whole = {a: Checksum(a) for a in meta.checksums}
        if meta.parts is None:
            whole["MD5"] = Md5()
            expected = [{"MD5": meta.etag, **meta.checksums}]
            per_part: list[dict[str, Hasher]] = [whole]
        else:
            expected = [{"MD5": p.etag, **p.checksums} for p in meta.parts]
            per_part = [
                {a: Md5() if a == "MD5" else Checksum(a) for a in want} for want in expected
            ]
        vdir = f"{object_dir(bucket, key)}/{entry.vid}"
        bounds = _part_bounds(entry)
        for ref in chunk_refs(vdir, entry.parts):
            if data is not None:
                pieces = [memoryview(data)]
            else:
                what = f"{bucket}/{key}"
                pieces, _, _ = await read_chunk(drives, self.store.coder, ref, rot, what)
            part = next(i for i, (lo, hi) in enumerate(bounds) if lo <= ref.offset < hi)
            hashers = [
                *per_part[part].values(),
                *(whole.values() if per_part[part] is not whole else ()),
            ]
            await run(lambda ps=pieces, hs=hashers: [h.update(p) for p in ps for h in hs])
        checks = [(want, got) for want, got in zip(expected, per_part, strict=True)]
        if per_part[0] is not whole:
            checks.append((meta.checksums, whole))
        for want, got in checks:
            for algorithm, hasher in got.items():
                if algorithm in want and hasher.b64() != want[algorithm]:
                    report.unrecoverable.append(
                        f"{bucket}/{key}: the rebuilt object's {algorithm} does not match "
                        "what the client uploaded"
                    )
                    log.error("healed %s/%s fails its %s check", bucket, key, algorithm)
                    return
        report.checksums_verified += 1
