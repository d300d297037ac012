"""Committing a version to an object's record on its erasure set, and retiring the
versions it replaced (storage.erasure.versions explains the quorum rule).

A commit adds the version's entry on the drives that hold its shards and succeeds on
k+1 of them; short of that it is withdrawn again, so the previous version stays. A
null entry replaces the null version (in a bucket that was never versioned, every
version is null): what it replaced is retired in the background, once no reader has it
open. An Enabled bucket's versions stay until deleted by id.

Overwriting a small object is the common case, and retiring what it replaced costs a
read and a second rewrite of the record on every drive, doubling the write. So when
every drive took a small object's inline entry and the one it replaced is inline too
(no files, and a reader holds its data once it has read the record, so none can be
reading it) the retirement waits for the key's next write here, which drops that
entry in the same record write that adds its own (`deferred`). The new entry is on
every drive by then, so dropping the older one can never cost a version its quorum,
even if that next write fails and is withdrawn. Until then the hidden entry is
invisible (records.py: visible); a key not written again has it retired by healing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from shoal.storage.erasure.drive import Drive, ShardWrite
from shoal.storage.erasure.quorum import Answers, fan_out, fan_out_at
from shoal.storage.erasure.records import Rank, VersionRecord
from shoal.storage.erasure.versions import resolve, settled
from shoal.storage.errors import ServiceUnavailable

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

log = logging.getLogger("shoal.storage")

#: Keys whose replaced entry waits for their next write (see above); the least recently
#: written go first (healing retires theirs).
DEFERRED_KEYS = 8192


@dataclasses.dataclass
class VersionCommits:
    """Adds versions to object records and retires the ones they replace."""

    store: ErasureStore
    #: (bucket, key) -> the replaced inline entry its next write here drops.
    deferred: OrderedDict[tuple[str, str], Rank] = dataclasses.field(default_factory=OrderedDict)

    async def commit(
        self,
        bucket: str,
        key: str,
        entry: VersionRecord,
        drives: Sequence[Drive],
        alive: set[int],
        shards: Sequence[Sequence[ShardWrite]] | None = None,
        inline: Sequence[bytes] | None = None,
    ) -> VersionRecord | None:
        """Add `entry` to the record on the drives that hold its shards (`alive`), then
        retire the versions it replaces; withdraw it if fewer than k+1 drives took it.
        With `shards` (per set position), each drive writes its shard and the entry
        in one round trip; with `inline` (per set position), each drive's entry holds
        its shard (records.py: inline): a small object's whole write. Returns the
        null version a null entry replaced as the drives listed it (None: none, they
        could not tell, or `entry` is not null)."""
        store = self.store
        waiting = self.deferred.pop((bucket, key), None) if shards is None else None
        drop = [] if waiting is None else [waiting]

        shared = dataclasses.replace(entry, inlined=True) if inline is not None else entry

        def add(p: int) -> Awaitable[list[VersionRecord]]:
            if inline is not None:
                own = shared.holding(inline[p])
                return drives[p].update_object(bucket, key, add=own, drop=drop)
            if shards is None:
                return drives[p].update_object(bucket, key, add=entry, drop=drop)
            return drives[p].write_version(bucket, key, entry, shards[p])

        lacking = [(p, "missed the shards") for p in range(len(drives)) if p not in alive]
        answers = await fan_out_at(drives, add, only=sorted(alive), skipped=lacking)
        ok = answers.ok()
        if len(ok) < store.write_quorum:
            await fan_out(
                drives, lambda d: d.update_object(bucket, key, drop=[entry.rank]), only=ok
            )
            answers.require(store.write_quorum, f"{bucket}/{key}")
        if entry.is_null:
            # It replaces the null version (in a bucket never versioned: everything).
            before = _replaced(answers, entry, store.k)
            replaced = any(len(r) > 1 for r in answers.values())
            small = inline is not None
            deferred = small and self._defer(bucket, key, entry, before, answers, len(drives))
            if not deferred and (replaced or entry.deleted or len(ok) < len(drives)):
                store.spawn(self.retire(bucket, key, drives))
            return before
        return None

    def _defer(
        self,
        bucket: str,
        key: str,
        entry: VersionRecord,
        before: VersionRecord | None,
        answers: Answers[list[VersionRecord]],
        n: int,
    ) -> bool:
        """Leave `before` for the key's next write to drop (see the module docstring):
        when every drive took inline `entry`, a live object, and lists `before`, inline,
        as the one entry besides it."""
        if before is None or entry.deleted or before.deleted or not before.is_inline:
            return False
        pair = [entry.rank, before.rank]
        if len(answers.ok()) < n or any([e.rank for e in r] != pair for r in answers.values()):
            return False
        self.deferred[(bucket, key)] = before.rank
        while len(self.deferred) > DEFERRED_KEYS:
            self.deferred.popitem(last=False)
        return True

    async def wait_for_readers(self, bucket: str, key: str, order: str) -> None:
        """Until no reader (on any node) has a version up to `order` open; an hour at
        most (a reader that slow has lost its client long ago)."""
        deadline, pause = time.monotonic() + 3600, 0.05
        while time.monotonic() < deadline and await self.store.in_use(bucket, key, order):
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    async def retire(self, bucket: str, key: str, drives: Sequence[Drive]) -> None:
        """Drop the null entries the newest committed null entry hides (and it too, if
        it only stands for a deletion) once no reader has them open.

        The wait comes after reading what is current: a reader that chose an older
        entry just before the newer one landed is pinning it (or still opening) by
        then, on this node or another, so it is not dropped under it. Once a newer
        entry is on k+1 drives no new reader can choose an older one."""
        store = self.store
        try:
            newest = next(
                (
                    e
                    for e in settled((await store.read_entries(bucket, key))[2], store.k)
                    if e.is_null
                ),
                None,
            )
            if newest is None:
                return
            await self.wait_for_readers(bucket, key, newest.order)
            answers = await fan_out(
                drives, lambda d: d.update_object(bucket, key, drop_nulls_before=newest.order)
            )
            # A marker standing for a deletion is what hides the versions before it:
            # dropping it on some drives while others still list an older version
            # could hand that version a read quorum again. So it goes only once every
            # drive is rid of them; otherwise healing retires both later.
            if newest.transient and len(answers.ok()) == len(drives):
                await fan_out(drives, lambda d: d.update_object(bucket, key, drop=[newest.rank]))
        except Exception:
            log.warning("cleanup of %s/%s failed; healing will retry", bucket, key, exc_info=True)


def _replaced(
    committed: Answers[list[VersionRecord]], entry: VersionRecord, k: int
) -> VersionRecord | None:
    """The null version a commit of null `entry` replaced: the newest older null entry
    that k of the drives that answered the commit list (None if there is none, or they
    cannot tell)."""
    answers = [
        None if entries is None else [e for e in entries if e.order < entry.order and e.is_null]
        for entries in committed.by_position()
    ]
    try:
        return resolve(answers, k, "")
    except ServiceUnavailable:
        return None


def entry_size(entry: VersionRecord | None) -> int | None:
    """An entry's object size; None for no entry or a delete marker."""
    return None if entry is None else entry.size
