"""Object versions as the drives of an erasure set record them, and how to agree on one.

Every drive of an object's set holds a record listing version entries, newest first.
A write adds its entry everywhere it can and succeeds only on a write quorum (k+1); a
failed write removes it again. Readers take the newest version (by its rank: the order
taken when it committed, see records.py) that at least k drives list — with parity
never exceeding data shards, at most m-1 drives can have missed a successful write,
fewer than k, so a stale copy can never outvote the newest version, and a failed write
(or its leftovers) never hides the previous one.

Entries are storage.erasure.records.VersionRecord (its docstring has the JSON shape).
Shard j of every chunk lives on set position (j + rot) % n, so parity spreads over all
drives rather than loading the last two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import xxhash

from shoal.storage.erasure.quorum import read_quorum_error
from shoal.storage.erasure.records import PartLayout, Rank, VersionRecord
from shoal.storage.errors import NoSuchKey, ServiceUnavailable

R = TypeVar("R")


@dataclass(frozen=True)
class Placement:
    """Where a key can live. A cluster grows by pools (the sets a joining node brings);
    existing keys never move, so a key may be in its set of any pool: `candidates`
    holds that set for each pool, oldest pool first. A key found nowhere is written to
    `home`, one of the candidates, chosen so that every set takes an equal share of new
    keys. With one pool, home is the only candidate."""

    candidates: tuple[int, ...]
    home: int
    rot: int  # shard rotation


def placement(bucket: str, key: str, pools: Sequence[int], width: int) -> Placement:
    """A key's places given the set count of each pool: deterministic, so any node
    finds it."""
    name = f"{bucket}\0{key}".encode("utf-8", "surrogatepass")
    h = xxhash.xxh64_intdigest(name)
    candidates: list[int] = []
    start = 0
    for count in pools:
        candidates.append(start + h % count)
        start += count
    home = candidates[0]
    if len(pools) > 1:
        pick = xxhash.xxh64_intdigest(name, seed=1) % start
        for pool, count in enumerate(pools):
            if pick < count:
                home = candidates[pool]
                break
            pick -= count
    return Placement(tuple(candidates), home, (h >> 32) % width)


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of a stored object: where its shards are and what they hash to."""

    base: str  # directory holding chunk-{index}/
    index: int
    offset: int  # of the chunk's first byte within the object
    size: int
    crcs: tuple[int, ...]


def part_base(version_dir: str, part: PartLayout) -> str:
    return f"{version_dir}/part-{part.number}" if part.number else version_dir


def chunk_refs(version_dir: str, parts: Sequence[PartLayout]) -> list[ChunkRef]:
    refs: list[ChunkRef] = []
    offset = 0
    for part in parts:
        base = part_base(version_dir, part)
        left, step = part.size, part.chunk
        for i, crcs in enumerate(part.crcs):
            size = min(step, left)
            refs.append(ChunkRef(base, i, offset, size, crcs))
            offset += size
            left -= size
    return refs


def chunks_for(
    version_dir: str, parts: Sequence[PartLayout], start: int, end: int
) -> list[ChunkRef]:
    """The chunks of chunk_refs holding bytes [start, end], worked out from the parts'
    sizes without making the others: a 1 MiB range of a 1 GiB object made all 256
    refs first, a sixth of the range GET's time on the event loop."""
    refs: list[ChunkRef] = []
    offset = 0
    for part in parts:
        if offset > end:
            break
        lo, hi = max(start, offset) - offset, min(end, offset + part.size - 1) - offset
        if lo <= hi and part.chunk > 0:  # (the part holds bytes of the range)
            base = part_base(version_dir, part)
            for i in range(lo // part.chunk, min(hi // part.chunk, len(part.crcs) - 1) + 1):
                at = i * part.chunk
                size = min(part.chunk, part.size - at)
                refs.append(ChunkRef(base, i, offset + at, size, part.crcs[i]))
        offset += part.size
    return refs


def rank(entry: VersionRecord) -> Rank:
    return entry.rank


def doc_rank(record: dict[str, Any]) -> Rank:
    """A replicated record (bucket, policy, document, upload): its "v" is both."""
    return str(record["v"]), str(record["v"])


def resolve(
    answers: Sequence[Sequence[R] | None],
    k: int,
    what: str,
    rank_of: Callable[[R], Rank] = rank,  # type: ignore[assignment]
    failed: str = "",
) -> R | None:
    """The newest version listed by at least k drives (None: the key does not exist).

    `answers` has one item per drive of the set: its entries, or None if it failed to
    answer. `rank_of` ranks an entry (`rank` for a VersionRecord; `doc_rank` for a
    replicated record); `failed` says why the silent drives are (for the error).
    ServiceUnavailable when too few answered to tell, or
    when a version that could still have a quorum among the silent drives is newer than
    every settled one.
    """
    answered = [a for a in answers if a is not None]
    silent = len(answers) - len(answered)
    if len(answered) < k:
        raise read_quorum_error(what, len(answered), len(answers), k, failed)
    counts, first = _tally(answered, rank_of)
    for r in sorted(counts, reverse=True):
        if counts[r] >= k:
            return first[r]
        if counts[r] + silent >= k:
            raise ServiceUnavailable(
                f"Cannot tell the current version of {what}: {silent} of {len(answers)} "
                f"drives did not answer and the newest version is on {counts[r]} of the "
                f"others, {k} needed. Retry once drives are back."
            )
    return None


def _tally(
    answered: Sequence[Sequence[R]], rank_of: Callable[[R], Rank]
) -> tuple[dict[Rank, int], dict[Rank, R]]:
    """How many drives list each entry, and its copy to use: a version's copy with the
    most metadata changes (VersionRecord.revision), else the first seen."""
    counts: dict[Rank, int] = {}
    first: dict[Rank, R] = {}
    for entries in answered:
        for e in entries:
            r = rank_of(e)
            counts[r] = counts.get(r, 0) + 1
            seen = first.get(r)
            if seen is None or _revision(e) > _revision(seen):
                first[r] = e
    return counts, first


def _revision(entry: object) -> int:
    return entry.revision if isinstance(entry, VersionRecord) else 0


def settled(
    answers: Sequence[Sequence[R] | None],
    k: int,
    rank_of: Callable[[R], Rank] = rank,  # type: ignore[assignment]
) -> list[R]:
    """Every entry at least k of the drives that answered list (committed versions),
    newest first. Entries on fewer are writes still running, failed or retired."""
    counts, first = _tally([a for a in answers if a is not None], rank_of)
    return [first[r] for r in sorted(counts, reverse=True) if counts[r] >= k]


def live(entry: VersionRecord | None) -> VersionRecord:
    """The entry of an existing object, or NoSuchKey for none or a delete marker."""
    if entry is None or entry.transient:
        raise NoSuchKey("The specified key does not exist.")
    if entry.deleted:
        raise NoSuchKey("The specified key does not exist.", delete_marker=entry.version_id)
    return entry
