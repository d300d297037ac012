"""A test tool: a Drive that fails or stalls on command.

`FaultyDrive` wraps any Drive and, per the rules given to `fail()`, raises an error or
sleeps before (or instead of) passing a call on. It lets tests reproduce what real
disks do (EIO, a drive that hangs, one that answers slowly, a fault on the third write
only) without root, loop devices or fault-injecting filesystems. Not for production use.

    drive = FaultyDrive(LocalDrive(path))
    drive.fail("write_shard", times=2)                  # the next two writes: EIO
    drive.fail("read_shard", calls=[3])                 # only the 3rd read
    drive.fail(error=None, delay=0.5)                   # every call 0.5 s slower
    drive.fail("read_format", error=PermissionError)    # a type: instantiated per call
    drive.fail(delay=math.inf, error=None)              # hangs until cancelled
"""

from __future__ import annotations

import asyncio
import copy
import errno
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.storage.erasure.drive import Drive, DrivePage, ShardWrite
from shoal.storage.erasure.records import Rank, VersionRecord

OPS = frozenset(
    {
        "read_format",
        "write_format",
        "is_empty",
        "write_shard",
        "read_shard",
        "shard_info",
        "read_doc",
        "write_doc",
        "delete",
        "link",
        "quarantine",
        "list_dir",
        "make_bucket",
        "read_object",
        "update_object",
        "list_objects",
        "write_version",
        "read_small",
        "sweep",
    }
)

EIO = OSError(errno.EIO, "injected I/O error")


@dataclass
class Rule:
    """One injected fault. `remaining` counts down when `times` was given."""

    op: str | None
    calls: frozenset[int] | None
    remaining: int | None
    error: BaseException | type[BaseException] | None
    delay: float
    hits: int = field(default=0)

    @property
    def active(self) -> bool:
        return self.remaining is None or self.remaining > 0

    def matches(self, op: str, number: int) -> bool:
        """`number` is this call's 1-based number for the rule's scope (op or global)."""
        if not self.active or (self.op is not None and self.op != op):
            return False
        return self.calls is None or number in self.calls


class FaultyDrive:
    """Wraps a Drive; calls pass through unless a rule from `fail()` matches. Test tool."""

    def __init__(self, inner: Drive) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[str] = Counter()
        self.total = 0
        self.rules: list[Rule] = []

    @property
    def online(self) -> bool:
        return self.inner.online

    @property
    def local(self) -> bool:
        return self.inner.local

    def fail(
        self,
        op: str | None = None,
        *,
        calls: Iterable[int] | None = None,
        times: int | None = None,
        error: BaseException | type[BaseException] | None = EIO,
        delay: float = 0.0,
    ) -> Rule:
        """Inject a fault into `op` (None: any operation).

        `calls` are 1-based call numbers, counted per op (globally when op is None) from
        the drive's creation, so `calls=[3]` hits the third call ever made. `times`
        limits the rule to its next N matches. `delay` seconds pass before the error is
        raised, or before the call proceeds when `error` is None (a slow drive);
        `math.inf` hangs until cancelled. An exception type is instantiated per call,
        an instance is copied, so tracebacks do not pile up on one object."""
        if op is not None and op not in OPS:
            raise ValueError(f"unknown drive operation {op!r}")
        if error is None and delay <= 0:
            raise ValueError("a rule needs an error, a delay, or both")
        rule = Rule(
            op=op,
            calls=None if calls is None else frozenset(calls),
            remaining=times,
            error=error,
            delay=delay,
        )
        self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        self.rules.remove(rule)

    def clear(self) -> None:
        """Drop every rule; the drive behaves like the one it wraps again."""
        self.rules.clear()

    async def _enter(self, op: str) -> None:
        self.calls[op] += 1
        self.total += 1
        for rule in self.rules:
            if rule.matches(op, self.calls[op] if rule.op is not None else self.total):
                break
        else:
            return
        rule.hits += 1
        if rule.remaining is not None:
            rule.remaining -= 1
        if rule.delay == math.inf:
            await asyncio.Event().wait()
        elif rule.delay > 0:
            await asyncio.sleep(rule.delay)
        if rule.error is None:
            return
        if isinstance(rule.error, type):
            raise rule.error(f"injected fault: {op} on {self.name}")
        try:
            exc = copy.copy(rule.error)
        except Exception:
            exc = rule.error
        raise exc

    # -- the Drive protocol, delegated ---------------------------------------------

    async def read_format(self) -> dict[str, Any] | None:
        await self._enter("read_format")
        return await self.inner.read_format()

    async def write_format(self, record: dict[str, Any]) -> None:
        await self._enter("write_format")
        await self.inner.write_format(record)

    async def is_empty(self) -> bool:
        await self._enter("is_empty")
        return await self.inner.is_empty()

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._enter("write_shard")
        await self.inner.write_shard(path, data, crc)

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        await self._enter("read_shard")
        return await self.inner.read_shard(path, crc)

    def cached_shard(self, path: str, crc: int | None) -> bytes | None:
        """None, always a valid answer: every shard read then goes through read_shard,
        where the rules match and the calls are counted."""
        return None

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        await self._enter("shard_info")
        return await self.inner.shard_info(path)

    async def read_doc(self, path: str) -> bytes | None:
        await self._enter("read_doc")
        return await self.inner.read_doc(path)

    async def write_doc(self, path: str, data: bytes) -> None:
        await self._enter("write_doc")
        await self.inner.write_doc(path, data)

    async def delete(self, path: str) -> None:
        await self._enter("delete")
        await self.inner.delete(path)

    async def link(self, src: str, dst: str) -> None:
        await self._enter("link")
        await self.inner.link(src, dst)

    async def quarantine(self, path: str) -> None:
        await self._enter("quarantine")
        await self.inner.quarantine(path)

    async def list_dir(self, path: str) -> list[str]:
        await self._enter("list_dir")
        return await self.inner.list_dir(path)

    async def make_bucket(self, bucket: str) -> None:
        await self._enter("make_bucket")
        await self.inner.make_bucket(bucket)

    async def read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        await self._enter("read_object")
        return await self.inner.read_object(bucket, key, version_id, everything, below, limit)

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None = None,
        drop: Sequence[Rank] = (),
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        await self._enter("update_object")
        return await self.inner.update_object(bucket, key, add, drop, drop_nulls_before, keep_data)

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        await self._enter("write_version")
        return await self.inner.write_version(bucket, key, entry, shards)

    async def sweep(self, bucket: str, older_than: float) -> int:
        await self._enter("sweep")
        return await self.inner.sweep(bucket, older_than)

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        await self._enter("read_small")
        return await self.inner.read_small(bucket, key, shard, limit, version_id)

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """Counted as a "known" call; None while a rule could hit a record read, so the
        read that rule is for is made."""
        if any(r.active and r.op in (None, "read_object", "read_small") for r in self.rules):
            return None
        found = self.inner.known(bucket, key, small_limit)
        if found is not None:
            self.calls["known"] += 1
        return found

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        versions: int = 0,
    ) -> DrivePage:
        await self._enter("list_objects")
        return await self.inner.list_objects(
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
            versions=versions,
        )
