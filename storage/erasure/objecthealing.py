"""Healing one object: every version S3 shows, each shard checked against its CRC32C on
every drive of the key's set, corrupt ones quarantined, missing and corrupt ones rebuilt
from any k good ones, the record rewritten where it was lost, versions left behind by
failed or superseded writes retired, and a rebuilt object checked against the
full-object checksum its client sent. storage.erasure.healing decides which objects,
when, and at what pace.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from shoal.storage.checksums import Checksum
from shoal.storage.erasure.drive import (
    CorruptShard,
    Drive,
    DriveError,
    ShardMissing,
    object_dir,
    shard_path,
)
from shoal.storage.erasure.records import VersionRecord, visible
from shoal.storage.erasure.shards import inline_shards, read_chunk
from shoal.storage.erasure.versions import chunk_refs, resolve, settled
from shoal.storage.errors import ServiceUnavailable
from shoal.storage.keys import check_key
from shoal.storage.threads import run

if TYPE_CHECKING:
    from shoal.storage.erasure.healing import HealedStore, HealReport, Pacer

log = logging.getLogger("shoal.storage")

#: Versions that never reached a quorum are left this long (a write may be in flight).
ABANDONED_AFTER_SECONDS = 3600


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


def age_seconds(vid: str) -> float:
    """Seconds since an id was taken (ids begin with their time in ns, in hex); 0 for
    an id that does not."""
    try:
        return time.time() - int(vid[:16], 16) / 1e9
    except ValueError:
        return 0.0


class ObjectHealing:
    """Heals one object at a time of `store` (see the module docstring)."""

    def __init__(self, store: HealedStore) -> None:
        self.store = store

    async def heal(self, bucket: str, key: str, report: HealReport, pacer: Pacer) -> None:
        """Every version S3 shows of the key, on every drive of its set (see the
        module docstring); what could not be done is counted in `report`."""
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
                elif age_seconds(e.order) > ABANDONED_AFTER_SECONDS or store.abandoned(e.order):
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
