"""Reading an object's bytes, and knowing which versions readers have open.

A version replaced by a newer one is retired (its shards deleted) in the background,
but never while a reader in this process still streams it: `OpenVersions` counts the
readers per version, and the reads between fetching a key's records and pinning the
version they chose. Both maps hold only what is open right now: a count that drops to
zero is deleted, so neither grows with the keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING

from shoal.storage.abandon import reap
from shoal.storage.erasure.drive import Drive, object_dir
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.erasure.shards import read_chunk
from shoal.storage.erasure.versions import ChunkRef, chunks_for

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore


class OpenVersions:
    """Versions readers in this process have open, and keys being opened."""

    def __init__(self) -> None:
        self._pins: Counter[tuple[str, str, str]] = Counter()
        #: Reads between fetching a key's records and pinning the version they chose.
        self._opening: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        """Versions pinned and keys being opened now (0 when no read is in progress)."""
        return len(self._pins) + len(self._opening)

    def pin(self, bucket: str, key: str, vid: str, delta: int) -> None:
        name = (bucket, key, vid)
        self._pins[name] += delta
        if self._pins[name] <= 0:
            del self._pins[name]

    @contextlib.contextmanager
    def opening(self, bucket: str, key: str) -> Iterator[None]:
        """While a read chooses its version (see busy)."""
        self._opening[(bucket, key)] += 1
        try:
            yield
        finally:
            self._opening[(bucket, key)] -= 1
            if self._opening[(bucket, key)] <= 0:
                del self._opening[(bucket, key)]

    def busy(self, bucket: str, key: str, vid: str) -> bool:
        """Whether a reader in this process has a version up to `vid` (a version's
        order: VersionRecord.order) open, or is
        between reading the key's records and pinning what it found (a version it may
        pick could be retired under it otherwise)."""
        return self._opening.get((bucket, key), 0) > 0 or any(
            b == bucket and k == key and v <= vid for (b, k, v) in self._pins
        )


class ErasureObjectReader:
    """An open object: its version stays on disk (in this process) until close()."""

    def __init__(
        self,
        store: ErasureStore,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        entry: VersionRecord,
    ) -> None:
        self.meta = entry.live_meta()
        self._store, self._bucket, self._key = store, bucket, key
        self._drives = drives
        self._entry = entry
        self._dir = f"{object_dir(bucket, key)}/{entry.vid}"
        self._closed = False
        #: The whole object when it was read with its record (small objects).
        self.data: bytes | None = None
        store.pin(bucket, key, entry.order, 1)

    async def _chunk(self, ref: ChunkRef, start: int, last: int) -> tuple[int, list[memoryview]]:
        """(object offset of the first piece, pieces) holding the chunk's bytes within
        [start, last]: a range read touches only the data shards it needs."""
        what = f"{self._bucket}/{self._key}"
        lo, hi = max(start - ref.offset, 0), min(last + 1 - ref.offset, ref.size)
        pieces, degraded, offset = await read_chunk(
            self._drives, self._store.coder, ref, self._entry.rot, what, lo, hi
        )
        if degraded and self._store.healer is not None:
            self._store.healer.queue(self._bucket, self._key)
        return ref.offset + offset, pieces

    async def stream(
        self, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes | memoryview]:
        """Pieces of at most a shard's payload, views into the shards read."""
        last = self.meta.size - 1 if end is None or end < 0 else min(end, self.meta.size - 1)
        if self.data is not None:
            if start <= last:
                yield self.data[start : last + 1]
            return
        refs = chunks_for(self._dir, self._entry.parts, start, last)
        ahead: asyncio.Task[tuple[int, list[memoryview]]] | None = None
        try:
            for i, ref in enumerate(refs):
                task = ahead or asyncio.ensure_future(self._chunk(ref, start, last))
                ahead = (
                    asyncio.ensure_future(self._chunk(refs[i + 1], start, last))
                    if i + 1 < len(refs)
                    else None
                )
                offset, pieces = await task
                for piece in pieces:
                    lo, hi = max(start - offset, 0), min(last - offset + 1, len(piece))
                    if lo < hi:
                        yield piece if (lo, hi) == (0, len(piece)) else piece[lo:hi]
                    offset += len(piece)
        finally:
            if ahead is not None:
                ahead.cancel()
                await reap(ahead, "reading ahead")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store.pin(self._bucket, self._key, self._entry.order, -1)

    async def __aenter__(self) -> ErasureObjectReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
