"""Per-drive health: time every call, take a failing drive offline, probe it back.

An erasure set keeps working with up to m drives gone, but only if a dead drive fails
fast: a hung disk that makes every request wait for its timeout is worse than a
missing one. `HealthTrackedDrive` wraps a Drive so that after `fail_threshold`
consecutive faults (I/O errors or timeouts) its calls raise DriveOffline at once,
without touching the disk, until a background probe finds the same drive (by the
drive id in its format.json) readable again. A different or blank disk in its place
stays offline: that is a replacement, for the layout and healing to take in.

"Not there" answers (None, ShardMissing, CorruptShard, FileNotFoundError) are the
drive working correctly and never count as faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from shoal.storage.erasure.drive import (
    CorruptShard,
    Drive,
    DriveOffline,
    DrivePage,
    DriveTimeout,
    ShardMissing,
    ShardWrite,
    is_io_error,
)
from shoal.storage.erasure.records import Rank, VersionRecord

log = logging.getLogger("shoal.storage")

T = TypeVar("T")

ANSWERS = (ShardMissing, CorruptShard, FileNotFoundError)


class HealthTrackedDrive:
    """A Drive that tracks the health of the Drive it wraps (see the module docstring).

    `timeout` bounds every call; `op_timeouts` overrides it per operation name (say a
    longer one for list_objects); write_shard gets `len(data) / min_throughput` more,
    so large shards on a slow but working disk are not mistaken for a hang.
    `latency_alpha` weighs the newest sample in the latency average (EWMA)."""

    def __init__(
        self,
        inner: Drive,
        *,
        drive_id: str,
        timeout: float = 10.0,
        op_timeouts: Mapping[str, float] | None = None,
        min_throughput: float = 8 * 1024 * 1024,
        fail_threshold: int = 3,
        probe_interval: float = 5.0,
        online: bool = True,
        latency_alpha: float = 0.2,
        on_online: Callable[[], None] | None = None,
    ) -> None:
        if fail_threshold < 1:
            raise ValueError("fail_threshold must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.drive_id = drive_id
        self.timeout = timeout
        self.op_timeouts = dict(op_timeouts or {})
        self.min_throughput = min_throughput
        self.fail_threshold = fail_threshold
        self.probe_interval = probe_interval
        self.latency_alpha = latency_alpha
        self._online = online
        self._on_online = on_online
        self.calls = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.latency_ms: float | None = None
        self.offline_since: float | None = None if online else time.time()
        self.offline_reason: str | None = None if online else "offline from the start"
        self.last_probe: str | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._probing = asyncio.Lock()  # one probe at a time (the loop's, probe_soon's)
        self._soon: asyncio.Task[bool] | None = None

    # -- state -----------------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online

    @property
    def local(self) -> bool:
        return self.inner.local

    def mark_offline(self, reason: str) -> None:
        """Take the drive offline now (the probe may bring it back). On a drive that is
        already offline only the reason is updated."""
        if not self._online:
            self.offline_reason = reason
            return
        self._online = False
        self.offline_since = time.time()
        self.offline_reason = reason
        self.last_probe = None
        log.warning("drive %s (%s) is offline: %s", self.name, self.drive_id, reason)

    def _mark_online(self) -> None:
        down = time.time() - self.offline_since if self.offline_since else 0.0
        self._online = True
        self.consecutive_errors = 0
        self.offline_since = None
        self.offline_reason = None
        self.last_probe = None
        log.info("drive %s (%s) is back online after %.1fs", self.name, self.drive_id, down)
        if self._on_online is not None:
            self._on_online()

    def status(self) -> dict[str, Any]:
        """For the management API and metrics; times are Unix seconds, latency_ms is
        None until a call has completed."""
        return {
            "name": self.name,
            "drive_id": self.drive_id,
            "state": "online" if self._online else "offline",
            "calls": self.calls,
            "errors": self.errors,
            "consecutive_errors": self.consecutive_errors,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "latency_ms": self.latency_ms,
            "offline_since": self.offline_since,
            "offline_reason": self.offline_reason,
            "last_probe": self.last_probe,
        }

    # -- the probe ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the background probe (from within the running event loop)."""
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.get_running_loop().create_task(
                self._probe_loop(), name=f"probe {self.name}"
            )

    async def stop(self) -> None:
        tasks = [t for t in (self._probe_task, self._soon) if t is not None]
        self._probe_task = self._soon = None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            if not self._online:
                await self.probe()

    def probe_soon(self) -> None:
        """Probe now rather than at the next interval, if the drive is offline: its
        node was reached again, say."""
        if not self._online and (self._soon is None or self._soon.done()):
            self._soon = asyncio.get_running_loop().create_task(self.probe())

    async def probe(self) -> bool:
        """Read the inner drive's format.json; back online if it is the expected drive.
        Returns whether the drive is online afterwards. Probe results are not counted
        as calls or errors: they would only repeat the fault that took it offline."""
        async with self._probing:
            return self._online or await self._probe()

    async def _probe(self) -> bool:
        level = logging.INFO  # still broken: expected while a disk is out
        try:
            async with asyncio.timeout(self._limit("read_format")):
                record = await self.inner.read_format()
        except TimeoutError:
            note = "format.json read timed out"
        except Exception as exc:
            note = f"format.json unreadable: {_describe(exc)}"
        else:
            found = record.get("drive_id") if isinstance(record, dict) else None
            if found == self.drive_id:
                self._mark_online()
                return True
            level = logging.WARNING  # readable, but not this drive: needs the operator
            if record is None:
                note = "drive is not formatted (a replacement? restart to format it)"
            else:
                note = f"format.json names drive {found!r}, expected {self.drive_id!r}"
        if note != self.last_probe:  # once per distinct result, not every interval
            log.log(level, "drive %s (%s) stays offline: %s", self.name, self.drive_id, note)
        self.last_probe = note
        return False

    # -- calls -----------------------------------------------------------------------

    def _limit(self, op: str, size: int = 0) -> float:
        return self.op_timeouts.get(op, self.timeout) + size / self.min_throughput

    async def _call(self, op: str, call: Callable[[], Awaitable[T]], size: int = 0) -> T:
        if not self._online:
            raise DriveOffline(f"drive {self.name} is offline: {self.offline_reason}")
        limit = self._limit(op, size)
        self.calls += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit) as deadline:
                result = await call()
        except TimeoutError as exc:
            if not deadline.expired():
                self._fault(op, exc)
                raise
            fault = DriveTimeout(f"drive {self.name}: {op} took longer than {limit:.3g}s")
            self._fault(op, fault)
            raise fault from exc
        except Exception as exc:
            if is_io_error(exc):
                self._fault(op, exc)
            elif isinstance(exc, ANSWERS):
                self._ok(started)
            raise
        self._ok(started)
        return result

    def _ok(self, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        if self.latency_ms is None:
            self.latency_ms = ms
        else:
            self.latency_ms += self.latency_alpha * (ms - self.latency_ms)
        self.consecutive_errors = 0

    def _fault(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = f"{op}: {_describe(exc)}"
        self.last_error_time = time.time()
        if self._online and self.consecutive_errors >= self.fail_threshold:
            self.mark_offline(
                f"{self.consecutive_errors} consecutive errors, last {self.last_error}"
            )

    # -- the Drive protocol ------------------------------------------------------------

    async def read_format(self) -> dict[str, Any] | None:
        return await self._call("read_format", self.inner.read_format)

    async def write_format(self, record: dict[str, Any]) -> None:
        await self._call("write_format", lambda: self.inner.write_format(record))

    async def is_empty(self) -> bool:
        return await self._call("is_empty", self.inner.is_empty)

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._call("write_shard", lambda: self.inner.write_shard(path, data, crc), len(data))

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        return await self._call("read_shard", lambda: self.inner.read_shard(path, crc))

    def cached_shard(self, path: str, crc: int | None) -> bytes | None:
        return self._from_memory(lambda: self.inner.cached_shard(path, crc))

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        return await self._call("shard_info", lambda: self.inner.shard_info(path))

    async def read_doc(self, path: str) -> bytes | None:
        return await self._call("read_doc", lambda: self.inner.read_doc(path))

    async def write_doc(self, path: str, data: bytes) -> None:
        await self._call("write_doc", lambda: self.inner.write_doc(path, data), len(data))

    async def delete(self, path: str) -> None:
        await self._call("delete", lambda: self.inner.delete(path))

    async def link(self, src: str, dst: str) -> None:
        await self._call("link", lambda: self.inner.link(src, dst))

    async def quarantine(self, path: str) -> None:
        await self._call("quarantine", lambda: self.inner.quarantine(path))

    async def list_dir(self, path: str) -> list[str]:
        return await self._call("list_dir", lambda: self.inner.list_dir(path))

    async def make_bucket(self, bucket: str) -> None:
        await self._call("make_bucket", lambda: self.inner.make_bucket(bucket))

    async def read_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        return await self._call(
            "read_object",
            lambda: self.inner.read_object(bucket, key, version_id, everything, below, limit),
        )

    async def update_object(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None = None,
        drop: Sequence[Rank] = (),
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        return await self._call(
            "update_object",
            lambda: self.inner.update_object(bucket, key, add, drop, drop_nulls_before, keep_data),
        )

    async def write_version(
        self, bucket: str, key: str, entry: VersionRecord, shards: Sequence[ShardWrite]
    ) -> list[VersionRecord]:
        size = sum(len(data) for _, data, _ in shards)
        return await self._call(
            "write_version", lambda: self.inner.write_version(bucket, key, entry, shards), size
        )

    async def sweep(self, bucket: str, older_than: float) -> int:
        return await self._call("sweep", lambda: self.inner.sweep(bucket, older_than))

    async def read_small(
        self, bucket: str, key: str, shard: int, limit: int, version_id: str | None = None
    ) -> tuple[list[VersionRecord], bytes | None]:
        return await self._call(
            "read_small", lambda: self.inner.read_small(bucket, key, shard, limit, version_id)
        )

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        return self._from_memory(lambda: self.inner.known(bucket, key, small_limit))

    def _from_memory(self, answer: Callable[[], T | None]) -> T | None:
        """An answer the drive has in memory (known, cached_shard): no timeout to keep,
        as nothing waits; none from an offline drive; counted as a call when given."""
        if not self._online:
            return None
        found = answer()
        if found is not None:
            self.calls += 1
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
        return await self._call(
            "list_objects",
            lambda: self.inner.list_objects(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                max_keys=max_keys,
                versions=versions,
            ),
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
