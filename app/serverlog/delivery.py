"""Server access logging: records of the requests to buckets with logging on, batched in
memory and delivered as objects into each bucket's target bucket.

- Per request (`observe`, called by app/exchange.py once the answer is sent): nothing
  but a dictionary lookup for a bucket known not to log; otherwise one record is built
  and buffered. A bucket whose status is not known yet is looked up by the background
  worker, never on the request's path.
- Batches are per source bucket and target (and event day, for partitioned names by
  event time). A batch is delivered once it holds `flush_records` records, and every
  batch at least every `flush_seconds`; at shutdown what is buffered is delivered.
- Memory is bounded: past `max_buffered` records, new ones are dropped and counted
  (`dropped`), as are those of a delivery that failed (logged with its error).
- No feedback loop: delivery writes through the Backend (`put_object`), not through
  HTTP, so a delivered log object is never itself a request and makes no record. A
  target bucket that logs into itself records its clients' requests only (reading the
  logs makes records, and those wait for the next batch like any others).
- Each node delivers what it served; the random part of each object's name keeps nodes
  (and restarts) from overwriting each other's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from shoal.app import sse
from shoal.app.encryptionconfig import bucket_default_encryption
from shoal.app.errors import S3Error
from shoal.app.sealing import seal_write
from shoal.app.serverlog.keys import log_key
from shoal.app.serverlog.record import (
    AccessRecord,
    build_record,
    format_line,
    owner_id,
    requester_id,
)
from shoal.app.serverlog.status import DOCUMENT, PARTITIONED, LoggingStatus, load_status
from shoal.auth.accounts import Accounts
from shoal.sse.keyring import Keyring
from shoal.storage.backend import Backend, ObjectWrite
from shoal.storage.errors import NoSuchBucket, NoSuchBucketDocument, StorageError
from shoal.storage.ttlcache import TtlCache

log = logging.getLogger("shoal.serverlog")

#: How long a bucket's logging status is answered from memory: a change made through
#: this process applies at once (`forget`), one made on another node within this.
STATUS_TTL = 5.0


class Answered(Protocol):
    """What the exchange saw of a request (app/exchange.py's Exchange)."""

    status: int
    bytes_in: int
    bytes_out: int
    started: float  # time.perf_counter() when the request arrived


@dataclass(frozen=True)
class Resolved:
    """A bucket's logging status (None: not logged) and its owner's id."""

    status: LoggingStatus | None
    owner: str


BatchKey = tuple[str, LoggingStatus, int | None]


class ServerLog:
    def __init__(
        self,
        backend: Backend,
        region: str,
        *,
        flush_seconds: float,
        flush_records: int,
        max_buffered: int,
        accounts: Accounts,
        auth_enabled: bool,
        keyring: Keyring,
    ) -> None:
        self.backend = backend
        self.keyring = keyring
        self.accounts = accounts
        self.auth_enabled = auth_enabled
        self.region = region
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self.max_buffered = max_buffered
        self.statuses: TtlCache[str, Resolved] = TtlCache(STATUS_TTL)
        self.batches: dict[BatchKey, list[AccessRecord]] = {}
        self.pending: deque[AccessRecord] = deque()  # buckets not resolved yet
        self.buffered = 0
        self.dropped = 0
        self.delivered = 0  # log objects written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- the request path ------------------------------------------------------------

    def observe(self, scope: dict[str, Any], answered: Answered) -> None:
        """Buffer the record of an answered request if its bucket logs (no I/O here)."""
        op = (scope.get("state") or {}).get("operation")
        if op is None or op.bucket is None:
            return
        known = self.statuses.get(op.bucket)
        if known is not None and known.status is None:
            return
        if self.buffered >= self.max_buffered:
            self.dropped += 1
            return
        record = build_record(
            scope,
            status=answered.status,
            bytes_in=answered.bytes_in,
            bytes_out=answered.bytes_out,
            elapsed=time.perf_counter() - answered.started,
            bucket_owner=owner_id(known.owner, self.accounts) if known is not None else "-",
            requester=requester_id(scope, self.accounts, self.auth_enabled),
        )
        if record is None:
            return
        self.buffered += 1
        if known is None:
            self.pending.append(record)
            self._wake.set()
        else:
            self._add(known, record)

    def forget(self, bucket: str) -> None:
        """A bucket's status changed here: the next request reads it again."""
        self.statuses.forget(bucket)

    def _add(self, resolved: Resolved, record: AccessRecord) -> None:
        status = resolved.status
        assert status is not None
        day = None
        if status.key_format == PARTITIONED and status.date_source == "EventTime":
            day = int(record.time // 86400)
        batch = self.batches.setdefault((record.bucket, status, day), [])
        batch.append(record)
        if len(batch) >= self.flush_records:
            self._wake.set()

    # -- the worker --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shoal-server-log")

    async def stop(self) -> None:
        """Stop the worker and deliver everything buffered. The worker is asked to end,
        not cancelled: a store call may not pass a cancellation on (one in a worker
        thread finishes first), and a swallowed one would leave it waiting a whole
        flush interval."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush(everything=True)

    async def _run(self) -> None:
        next_tick = time.monotonic() + self.flush_seconds
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - time.monotonic()))
            self._wake.clear()
            if self._stopping:
                return
            due = time.monotonic() >= next_tick
            if due:
                next_tick = time.monotonic() + self.flush_seconds
            try:
                await self.flush(everything=due)
            except Exception:  # the worker must outlive one bad pass; the next retries
                log.exception("server access log delivery failed")

    async def flush(self, *, everything: bool) -> None:
        """Resolve pending records, then deliver full batches (all with `everything`)."""
        while self.pending:
            record = self.pending.popleft()
            try:
                resolved = await self.resolve(record.bucket)
            except StorageError as exc:  # e.g. no quorum of drives: this record is lost
                self.buffered -= 1
                self.dropped += 1
                log.warning("server access log status of %s unreadable: %s", record.bucket, exc)
                continue
            if resolved.status is None:
                self.buffered -= 1
                continue
            owner = owner_id(resolved.owner, self.accounts)
            self._add(resolved, dataclasses.replace(record, bucket_owner=owner))
        for key in list(self.batches):
            batch = self.batches.get(key)
            if batch and (everything or len(batch) >= self.flush_records):
                del self.batches[key]
                await self._deliver(key, batch)

    async def resolve(self, bucket: str) -> Resolved:
        """The bucket's logging status and owner, from memory or the backend."""
        known = self.statuses.get(bucket)
        if known is not None:
            return known
        try:
            info = await self.backend.head_bucket(bucket)
            text = await self.backend.get_bucket_document(bucket, DOCUMENT)
            resolved = Resolved(load_status(text), info.owner)
        except (NoSuchBucket, NoSuchBucketDocument):
            resolved = Resolved(None, "")
        self.statuses.put(bucket, resolved)
        return resolved

    async def _sealed(
        self, bucket: str, key: str, write: ObjectWrite, body: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """A log object is written without encryption headers, so it takes the target
        bucket's default encryption like any such write (never plaintext in a bucket
        that asked for encryption at rest)."""
        default = await bucket_default_encryption(self.backend, bucket)
        if default is None:
            return body
        choice = sse.default_choice(default, self.keyring)
        record, data_key = sse.new_record(self.keyring, choice, bucket, key)
        return seal_write(write, body, record, data_key)

    async def _deliver(self, key: BatchKey, batch: list[AccessRecord]) -> None:
        source, status, _ = key
        self.buffered -= len(batch)
        body = "".join(format_line(r) + "\n" for r in batch).encode()
        owner = batch[0].bucket_owner
        name = log_key(
            status,
            delivered=time.time(),
            event=batch[0].time,
            account=owner,
            region=self.region,
            bucket=source,
        )

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        try:
            write = ObjectWrite(content_type="text/plain")
            stream = await self._sealed(status.target_bucket, name, write, chunks())
            await self.backend.put_object(status.target_bucket, name, stream, write)
        except (StorageError, S3Error) as exc:  # e.g. the target bucket was deleted since
            self.dropped += len(batch)
            log.warning(
                "server access log for %s not delivered to %s: %s",
                source,
                status.target_bucket,
                exc,
            )
            return
        except Exception:
            self.dropped += len(batch)
            log.exception("server access log for %s not delivered", source)
            return
        self.delivered += 1
