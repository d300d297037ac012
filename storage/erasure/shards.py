"""Moving chunks to and from the drives of one erasure set.

Writes encode each chunk once (in a worker thread, hashing it on the way) and send its
k+m shards to their drives in parallel; a drive that fails drops out of the rest of the
write, and the write fails as soon as fewer than k+1 drives are left. The next chunk is
encoded while the previous one's shards are still being written.

Reads ask for the data shards holding the bytes wanted first — all k for a whole
chunk, one or two for a range within it — so a healthy read never decodes and a range
read touches only what it returns; each shard's CRC32C is verified on its drive, whole,
so nothing returned skips the bitrot check. Any of them missing, corrupt, failing or
slower than the hedge delay brings in enough of the others to decode the chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.storage.abandon import reap
from shoal.storage.backend import Digester
from shoal.storage.checksums import crc32c
from shoal.storage.erasure.coder import ErasureCoder
from shoal.storage.erasure.drive import Drive, shard_path
from shoal.storage.erasure.quorum import describe, reason, write_quorum_error
from shoal.storage.erasure.records import VersionRecord
from shoal.storage.erasure.versions import ChunkRef
from shoal.storage.errors import ServiceUnavailable
from shoal.storage.threads import Chain, run

log = logging.getLogger("shoal.storage")

#: Chunks whose shards may be in flight to the drives at once, per write.
WRITE_DEPTH = 2
#: Chunks that may wait for their digests while later ones are encoded and written.
DIGESTS_AHEAD = 2
#: How long a read waits for its data shards before also asking parity drives.
HEDGE_SECONDS = 0.5
#: Chunks up to this size are encoded (and decoded) on the event loop, not a thread.
ON_LOOP = 64 * 1024
#: hashlib lets go of the GIL while hashing this many bytes or more at once (CPython's
#: HASHLIB_GIL_MINSIZE).
HASH_GIL_FREE = 2048


def _encode(coder: ErasureCoder, data: bytes) -> tuple[list[bytes], list[int]]:
    shards = coder.encode(data)
    return shards, [crc32c(s) for s in shards]


def _hashed(hashers: Sequence[Digester], data: bytes) -> list[Awaitable[None]]:
    """Each digest of a body that fits one chunk (encode_whole) on a worker thread of
    its own: MD5 beside a signed payload's SHA-256 or a checksum, so the chunk costs
    the slowest digest, not their sum. (Longer bodies: ChunkWriter's chains.)"""
    return [run(h.update, data) for h in hashers]


def _hash_on_loop(hashers: Sequence[Digester], data: bytes) -> None:
    """Digests computed in pieces small enough that hashlib hashes them holding the GIL: with a
    larger one it lets go, and the event loop then waits for busy drive threads to hand
    it back (up to the 5 ms switch interval), far longer than the hashing takes."""
    view, step = memoryview(data), HASH_GIL_FREE - 1
    for h in hashers:
        for i in range(0, len(view), step):
            h.update(view[i : i + step])


async def encode_whole(
    coder: ErasureCoder, data: bytes, digesters: Sequence[Digester]
) -> tuple[str, list[tuple[bytes, int]], list[list[int]]]:
    """A body that fits one chunk: (MD5 hex, [(shard, CRC32C)] by shard index, the
    CRCs as an object entry lists them). An empty body has no chunk at all. A body
    up to ON_LOOP bytes is encoded and hashed right here: that takes less than the
    hand-off to a worker thread and back."""
    md5 = hashlib.md5()
    if len(data) <= ON_LOOP:
        _hash_on_loop([md5, *digesters], data)
        shards, crcs = _encode(coder, data) if data else ([], [])
    else:
        (shards, crcs), *_ = await asyncio.gather(
            run(_encode, coder, data), *_hashed([md5, *digesters], data)
        )
    return md5.hexdigest(), list(zip(shards, crcs, strict=True)), [crcs] if data else []


def inline_shards(
    answers: Sequence[Sequence[VersionRecord] | None], entry: VersionRecord, rot: int
) -> tuple[dict[int, bytes], list[int]]:
    """An inline version's intact shards out of the drives' copies of it (records.py:
    inline), by shard index, and the set positions that answered without one: their
    copy is missing, or its shard fails its CRC32C (bit rot, a damaged record)."""
    n = len(answers)
    crcs = entry.parts[0].crcs[0]
    good: dict[int, bytes] = {}
    bad: list[int] = []
    for p, entries in enumerate(answers):
        if entries is None:
            continue
        j = (p - rot) % n
        copy = next((e for e in entries if e.rank == entry.rank), None)
        data = None if copy is None else copy.inline
        if data is not None and crc32c(data) == crcs[j]:
            good[j] = data
        else:
            bad.append(p)
    return good, bad


@dataclass
class ChunkWriter:
    """Writes one part's chunks (a plain object is one part) to an erasure set."""

    drives: Sequence[Drive]
    coder: ErasureCoder
    base: str  # directory the chunk-{i}/ folders go into
    rot: int
    what: str  # for error messages: "bucket/key"
    hashers: list[Digester] = field(default_factory=list)
    alive: set[int] = field(default_factory=set)
    #: Positions dropped from `alive`, with why (for the quorum error).
    lost: dict[int, str] = field(default_factory=dict)
    crcs: list[list[int]] = field(default_factory=list)
    size: int = 0
    _md5: Any = field(default_factory=hashlib.md5)
    _pending: list[asyncio.Task[None]] = field(default_factory=list)
    #: Each digest's steps, in chunk order (one Chain per hasher).
    _digests: list[tuple[Digester, Chain]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.alive = {p for p in range(len(self.drives)) if self.drives[p].online}
        self.lost = {p: "offline" for p in range(len(self.drives)) if p not in self.alive}
        self.hashers = [self._md5, *self.hashers]
        self._digests = [(h, Chain()) for h in self.hashers]
        self._check()

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def _check(self) -> None:
        need = self.coder.k + 1
        if len(self.alive) < need:
            failed = describe([(p, self.drives[p], why) for p, why in sorted(self.lost.items())])
            raise write_quorum_error(self.what, len(self.alive), len(self.drives), need, failed)

    async def add(self, data: bytes) -> None:
        """Encode the next chunk and start writing it, once fewer than WRITE_DEPTH chunks
        are being written (so memory stays bounded, whatever the object's size). The
        wait comes first: shards made before it only waited for their slot (6 MiB more
        held at 4 MiB chunks).

        The chunk's digests (MD5 and the client's checksums) are queued, each on its
        own chain, and run while the body is read on and later chunks are encoded and
        written: MD5 (~0.7 GB/s on one core) is the slowest step of a large PUT, and
        awaited chunk by chunk it was added to every chunk's time. At most
        DIGESTS_AHEAD chunks wait for a digest."""
        await self._wait(WRITE_DEPTH - 1)
        for _, chain in self._digests:
            await chain.make_room(DIGESTS_AHEAD)
        for hasher, chain in self._digests:
            chain.submit(hasher.update, data)
        index = len(self.crcs)
        shards, crcs = await run(_encode, self.coder, data)
        self.crcs.append(crcs)
        self.size += len(data)
        self._pending.append(asyncio.create_task(self._write(index, shards, crcs)))

    async def finish(self) -> None:
        await self._wait(0)
        for _, chain in self._digests:
            await chain.make_room(1)

    async def abort(self) -> None:
        """Wait for the chunk writes already started to end, never cancel them: a
        cancelled write's drive thread writes on unheard, and would re-create shards after
        the failed write's cleanup removed them (drive timeouts still bound the wait)."""
        pending, self._pending = self._pending, []
        for task in pending:
            await reap(task, "a shard write")
        for _, chain in self._digests:
            await chain.reap("a digest of a chunk")

    async def _wait(self, keep: int) -> None:
        while len(self._pending) > keep:
            await self._pending.pop(0)

    async def _write(self, index: int, shards: list[bytes], crcs: list[int]) -> None:
        n = len(self.drives)
        targets = sorted(self.alive)
        results = await asyncio.gather(
            *(
                self.drives[p].write_shard(
                    shard_path(self.base, index, (p - self.rot) % n),
                    shards[(p - self.rot) % n],
                    crcs[(p - self.rot) % n],
                )
                for p in targets
            ),
            return_exceptions=True,
        )
        for p, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                log.warning("shard write to %s failed: %r", self.drives[p].name, result)
                self.alive.discard(p)
                self.lost[p] = reason(result)
        self._check()


async def read_chunk(
    drives: Sequence[Drive],
    coder: ErasureCoder,
    ref: ChunkRef,
    rot: int,
    what: str,
    lo: int = 0,
    hi: int | None = None,
) -> tuple[list[memoryview], bool, int]:
    """(bytes [lo, hi) of the chunk, or more, as consecutive pieces — views of the
    shards, not a copy —, whether it needed parity, the offset in the chunk of the
    first piece); ServiceUnavailable below k shards. Only the data shards holding
    [lo, hi) are read (each whole, so its CRC32C is checked on its drive), unless k
    shards with fewer on other nodes can be (see below); any of them missing, corrupt
    or slow brings in enough others to decode the chunk."""
    n, k = len(drives), coder.k
    wanted = set(coder.span_shards(ref.size, lo, ref.size if hi is None else hi))
    got: dict[int, bytes] = {}
    failed: dict[int, str] = {}  # set position -> why its shard could not be read
    tasks: dict[asyncio.Task[bytes], int] = {}

    def start(j: int) -> None:
        p = (j + rot) % n
        path = shard_path(ref.base, ref.index, j)
        cached = drives[p].cached_shard(path, ref.crcs[j])
        if cached is not None:
            got[j] = cached
            return
        tasks[asyncio.create_task(drives[p].read_shard(path, ref.crcs[j]))] = j

    # The wanted data shards first, then the other data shards, then parity; shards
    # whose drives are known to be offline go last of all, so a read skips them straight
    # away (and is not counted as degraded: healing cannot reach an offline drive).
    online = [j for j in range(n) if drives[(j + rot) % n].online]
    queue = [j for j in online if j in wanted]
    queue += [j for j in online if j < k and j not in wanted] + [j for j in online if j >= k]
    queue += [j for j in range(n) if j not in online]
    # Every wanted shard on an online drive: read just those; else k to decode from.
    first = len(wanted) if all(j in online for j in wanted) else k
    # Local first: when k shards with fewer of them on other nodes can be had (a parity
    # shard on this node's drive in place of a data shard on another's), read those and
    # decode. Decoding a 4 MiB chunk with a data shard missing takes ~0.15 ms; a 1 MiB
    # shard from another node costs its node a read, TLS and the network, and this one
    # taking it in, ~1 ms of CPU between them on loopback and far more on a real network.
    local = {j for j in online if drives[(j + rot) % n].local}
    if first == k or max(0, k - len(local)) < sum(j not in local for j in queue[:first]):
        queue = [j for j in queue if j in local] + [j for j in queue if j not in local]
        first = k
    for j in queue[:first]:
        start(j)
    queue = queue[first:]

    def enough() -> bool:
        return len(got) >= k or wanted.issubset(got)

    try:
        while not enough():
            if not tasks:
                why = describe([(p, drives[p], r) for p, r in sorted(failed.items())])
                raise ServiceUnavailable(
                    f"Not enough intact shards to read {what}: {len(got)} of {n} readable, "
                    f"{k} needed." + (f" Failed: {why}." if why else "")
                )
            done, _ = await asyncio.wait(
                tasks, timeout=HEDGE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                # Slow drives: ask one more drive for every shard still outstanding.
                for j in queue[: len(tasks)]:
                    start(j)
                queue = queue[len(tasks) :]
                continue
            for task in done:
                j = tasks.pop(task)
                exc = task.exception()
                if exc is None:
                    got[j] = task.result()
                    continue
                failed[(j + rot) % n] = reason(exc)
                log.warning("shard %d of %s unreadable: %r", j, what, exc)
                # A lost wanted shard means decoding: k shards in all.
                more = max(1, k - len(got) - len(tasks))
                for j2 in queue[:more]:
                    start(j2)
                queue = queue[more:]
    finally:
        for task in tasks:
            task.cancel()
    if wanted.issubset(got):
        offset, pieces = coder.decode_span(got, ref.size, lo, ref.size if hi is None else hi)
    else:
        offset, pieces = 0, await run(coder.decode_views, got, ref.size)
    return pieces, bool(failed), offset
