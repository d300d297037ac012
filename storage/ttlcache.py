"""A small map whose entries expire: what a backend may answer from memory for a moment.

Bucket records are read on every request (the ASGI layer asks `head_bucket` whether to
send `x-amz-version-id`). Answering from memory for a second or two saves a thread hop or
a quorum read each time; a change made through this process forgets the entry at once,
one made elsewhere (another worker process, another node) shows within the TTL. S3
itself documents a delay before a bucket configuration change applies everywhere.

`load` reads through the cache with one read in flight per key: when an entry expires
under load, the requests that find it missing wait for one read instead of each
starting its own (at 16 concurrent PUTs that herd was more quorum reads than writes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        #: The read in flight for each key being loaded (see load).
        self._flights: dict[K, asyncio.Future[V]] = {}

    def _fresh(self, key: K) -> tuple[float, V] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry

    def get(self, key: K) -> V | None:
        entry = self._fresh(key)
        return None if entry is None else entry[1]

    async def load(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The entry if fresh, else what `read()` answers, kept. Concurrent misses of a
        key share one `read()` (its answer or its error); a caller cancelled while
        waiting leaves it running for the others. What `forget` drops while a read is
        in flight is not stored when it lands, and later callers read afresh."""
        entry = self._fresh(key)
        if entry is not None:
            return entry[1]
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = asyncio.ensure_future(read())
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: K, flight: asyncio.Future[V]) -> None:
        if self._flights.get(key) is not flight:
            return  # forgotten meanwhile: its answer may predate the change
        del self._flights[key]
        if not flight.cancelled() and flight.exception() is None:
            self.put(key, flight.result())

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self.max_entries and key not in self._entries:
            # Bounded whatever names clients ask about: drop the expired, else everything.
            now = time.monotonic()
            self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
        self._flights.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
