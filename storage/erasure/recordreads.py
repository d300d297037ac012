"""A GET's first step: each drive's record of the key (with a small object's shard:
inline in it, or the shard file of its single chunk), in one read per drive.

Only the k drives holding data shards are asked first. Their answers settle the read
when all k answered, they agree on the version the read names (versions.resolve counts
the drives not asked as silent, so a version those might tip the count of is no answer
yet), and a small object's data shards came intact; then the read decodes nothing (the
data shards' payloads are the object) and the parity drives are not touched. Otherwise
the others are asked too and the read goes on with every answer, as it did with all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.quorum import Answers, fan_out_at
from shoal.storage.erasure.records import VersionRecord, visible
from shoal.storage.erasure.shards import inline_shards
from shoal.storage.erasure.versions import live, resolve, settled
from shoal.storage.errors import MethodNotAllowed, NoSuchKey, NoSuchVersion, ServiceUnavailable

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

#: Objects up to this size are read together with their records (one round trip).
SMALL_READ = 1024 * 1024
#: A drive's answer to read_small: its entries, and its shard when the object is small.
SmallRead = tuple[list[VersionRecord], bytes | None]
#: The version a read names, its shards that came with the records, and the positions
#: of its lost data shards (RecordReads.small_shards).
Chosen = tuple[VersionRecord, dict[int, bytes], list[int]]


def no_version() -> NoSuchVersion:
    return NoSuchVersion("The specified version does not exist.")


def pick(
    answers: Sequence[Sequence[VersionRecord] | None],
    k: int,
    what: str,
    version_id: str | None,
    failed: str = "",
) -> VersionRecord:
    """The version a read names: the current one (None), or one by its S3 version id.
    NoSuchKey for a key that does not exist or whose current version is a delete
    marker; MethodNotAllowed for a marker named by its id; NoSuchVersion for an id the
    key does not have."""
    current = resolve(answers, k, what, failed=failed)
    if version_id is None:
        return live(current)
    for entry in visible(settled(answers, k)):
        if entry.version_id == version_id:
            if entry.deleted:
                raise MethodNotAllowed(
                    "The specified method is not allowed against this resource.",
                    delete_marker=entry.version_id,
                    last_modified=entry.meta.last_modified if entry.meta else None,
                )
            return entry
    raise no_version()


@dataclass
class RecordReads:
    """One GET's reads of the key's records on the drives of its set (see above)."""

    store: ErasureStore
    drives: Sequence[HealthTrackedDrive]
    bucket: str
    key: str
    rot: int
    version_id: str | None
    #: What the k data drives' answers chose, when they settled the read (`_first`
    #: picked it already: the caller need not pick again).
    chosen: Chosen | None = None

    async def read(self) -> tuple[list[SmallRead | None], str]:
        """Each drive's answer by position (None: failed or not needed) and why the
        failed ones are (for errors)."""
        first, settled = await self._first()
        if first is not None and settled:
            return first.by_position(), ""
        self.chosen = None
        return await self._rest(first)

    def small_shards(
        self, results: Sequence[SmallRead | None], entry: VersionRecord
    ) -> tuple[dict[int, bytes], list[int]]:
        """The entry's intact shards that came with the records (inline, or a single
        chunk's shard files), by shard index, and the positions of lost data shards
        (inline: of every shard that came without an intact copy)."""
        n, k, rot = self.store.n, self.store.k, self.rot
        if entry.is_inline:
            return inline_shards([None if r is None else r[0] for r in results], entry, rot)
        shards = {
            (p - rot) % n: r[1]
            for p, r in enumerate(results)
            if r is not None and r[1] is not None and r[0][0].rank == entry.rank
        }
        return shards, [(j + rot) % n for j in range(k) if j not in shards]

    def _call(self) -> Callable[[int], Awaitable[SmallRead]]:
        n, drives = self.store.n, self.drives
        bucket, key, rot, version_id = self.bucket, self.key, self.rot, self.version_id
        return lambda p: drives[p].read_small(bucket, key, (p - rot) % n, SMALL_READ, version_id)

    async def _first(self) -> tuple[Answers[SmallRead] | None, bool]:
        """The k data drives' reads (None when one is offline: not worth asking), and
        whether they settle the read (see the module docstring)."""
        k, n = self.store.k, self.store.n
        first = [(j + self.rot) % n for j in range(k)]
        if not all(self.drives[p].online for p in first):
            return None, False
        read = await self._ask(first)
        if len(read.ok()) < k:
            return read, False
        results = read.by_position()
        try:
            entry = pick([None if r is None else r[0] for r in results], k, "", self.version_id)
        except (ServiceUnavailable, NoSuchVersion):
            return read, False
        except (NoSuchKey, MethodNotAllowed):
            return read, True  # settled by these k: pick says so again
        shards, lost = self.small_shards(results, entry)
        self.chosen = (entry, shards, lost)
        part = entry.parts[0] if len(entry.parts) == 1 else None
        single = part is not None and not part.number and len(part.crcs) == 1
        if entry.is_inline or (part is not None and single and part.size <= SMALL_READ):
            return read, all(j in shards for j in range(k))
        return read, True

    async def _ask(self, positions: list[int]) -> Answers[SmallRead]:
        bucket, key, drives = self.bucket, self.key, self.drives

        def known(p: int) -> SmallRead | None:
            found = drives[p].known(bucket, key, SMALL_READ)
            return None if found is None else (found, None)

        plain = self.version_id is None  # what a drive keeps is its newest entries
        return await fan_out_at(
            drives, self._call(), only=positions, known=known if plain else None
        )

    async def _rest(self, first: Answers[SmallRead] | None) -> tuple[list[SmallRead | None], str]:
        """Every drive's read, asking those `first` did not hear from."""
        heard = set() if first is None else set(first.ok())
        rest = await self._ask([p for p in range(len(self.drives)) if p not in heard])
        results = rest.by_position()
        if first is not None:
            for p, r in enumerate(first.by_position()):
                if p in heard:
                    results[p] = r
        return results, rest.failed()
