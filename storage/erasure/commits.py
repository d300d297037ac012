"""Committing a version to an object's record on its erasure set, and retiring the
versions it replaced (storage.erasure.versions explains the quorum rule).

A commit adds the version's entry on the drives that hold its shards and succeeds on
k+1 of them; short of that it is withdrawn again, so the previous version stays. What
it replaced is retired in the background, once no reader has it open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

from shoal.storage.erasure.drive import Drive, ShardWrite
from shoal.storage.erasure.quorum import Answers, fan_out, fan_out_at
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.erasure.versions import resolve
from shoal.storage.errors import ServiceUnavailable

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

log = logging.getLogger("shoal.storage")


@dataclasses.dataclass
class VersionCommits:
    """Adds versions to object records and retires the ones they replace."""

    store: ErasureStore

    async def commit(
        self,
        bucket: str,
        key: str,
        entry: VersionRecord,
        drives: Sequence[Drive],
        alive: set[int],
        shards: Sequence[Sequence[ShardWrite]] | None = None,
    ) -> VersionRecord | None:
        """Add `entry` to the record on the drives that hold its shards (`alive`), then
        retire the versions it replaces; withdraw it if fewer than k+1 drives took it.
        With `shards` (per set position), each drive writes its shard and the entry
        in one round trip: a small object's whole write. Returns the version it
        replaced as the drives listed it (None: none, or they could not tell)."""
        store = self.store

        def add(p: int) -> Awaitable[list[VersionRecord]]:
            if shards is None:
                return drives[p].update_object(bucket, key, add=entry)
            return drives[p].write_version(bucket, key, entry, shards[p])

        lacking = [(p, "missed the shards") for p in range(len(drives)) if p not in alive]
        answers = await fan_out_at(drives, add, only=sorted(alive), skipped=lacking)
        ok = answers.ok()
        if len(ok) < store.write_quorum:
            await fan_out(drives, lambda d: d.update_object(bucket, key, drop=[entry.vid]), only=ok)
            answers.require(store.write_quorum, f"{bucket}/{key}")
        replaced = any(len(r) > 1 for r in answers.values())
        if replaced or entry.deleted or len(ok) < len(drives):
            store.spawn(self.retire(bucket, key, entry, drives))
        return _replaced(answers, entry, store.k)

    async def retire(
        self, bucket: str, key: str, committed: VersionRecord, drives: Sequence[Drive]
    ) -> None:
        """Drop versions older than `committed` (and it too if it is a delete marker, or
        superseded already) once no reader has them open (an hour at most).

        The wait comes after reading what is current: a reader that chose `committed`
        just before a newer version landed is pinning it (or still opening) by then, on
        this node or another, so `committed` is not dropped under it. Once a newer
        version is on k+1 drives no new reader can choose an older one."""
        store = self.store
        vid, order = committed.vid, committed.order
        try:
            entry = resolve((await store.read_entries(bucket, key))[2], store.k, key)
            marker = entry is not None and entry.vid == vid and entry.deleted
            drop = [vid] if entry is not None and entry.order > order else []  # superseded
            deadline, pause = time.monotonic() + 3600, 0.05
            while time.monotonic() < deadline and await store.in_use(bucket, key, order):
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, 1.0)
            answers = await fan_out(
                drives, lambda d: d.update_object(bucket, key, drop=drop, drop_older_than=order)
            )
            # A delete marker is what hides the versions before it: dropping it on some
            # drives while others still list an older version could hand that version
            # a read quorum again. So it goes only once every drive is rid of them;
            # otherwise healing retires both later.
            if marker and len(answers.ok()) == len(drives):
                await fan_out(drives, lambda d: d.update_object(bucket, key, drop=[vid]))
        except Exception:
            log.warning("cleanup of %s/%s failed; healing will retry", bucket, key, exc_info=True)


def _replaced(
    committed: Answers[list[VersionRecord]], entry: VersionRecord, k: int
) -> VersionRecord | None:
    """The version a commit of `entry` replaced: the newest older one that k of the
    drives that answered the commit list (None if there is none, or they cannot tell)."""
    answers = [
        None if entries is None else [e for e in entries if e.order < entry.order]
        for entries in committed.by_position()
    ]
    try:
        return resolve(answers, k, "")
    except ServiceUnavailable:
        return None


def entry_size(entry: VersionRecord | None) -> int | None:
    """An entry's object size; None for no entry or a delete marker."""
    return None if entry is None else entry.size
