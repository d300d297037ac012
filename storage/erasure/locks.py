"""Per-name asyncio locks that exist only while someone holds or awaits them.

The erasure store serialises commits per object (and per upload part) in this process.
A `defaultdict(asyncio.Lock)` would keep one lock for every key ever written — memory
that grows with the keyspace for as long as the process runs. Here a name's lock is
dropped as soon as its last holder or waiter leaves, so the map holds only the names in
use right now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class KeyedLocks:
    """`async with locks.hold(name): ...` — mutual exclusion per name."""

    def __init__(self) -> None:
        #: name -> (lock, holders and waiters); removed when the count drops to zero.
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """Names with a holder or a waiter now."""
        return len(self._locks)

    def users(self, name: Hashable) -> int:
        """Holders and waiters of `name` now: 2 or more means someone is queued."""
        entry = self._locks.get(name)
        return 0 if entry is None else entry[1]

    @contextlib.asynccontextmanager
    async def hold(self, name: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(name) or (asyncio.Lock(), 0)
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            # Whether it got the lock or was cancelled while waiting, it is gone now.
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)
