"""A small map whose entries expire: what a backend may answer from memory for a moment.

Bucket records are read on every request (the ASGI layer asks `head_bucket` whether to
send `x-amz-version-id`). Answering from memory for a second or two saves a thread hop or
a quorum read each time; a change made through this process forgets the entry at once,
one made elsewhere (another worker process, another node) shows within the TTL. S3
itself documents a delay before a bucket configuration change applies everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

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

    def __len__(self) -> int:
        return len(self._entries)
