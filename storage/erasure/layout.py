"""Drive identity and erasure sets: which drive holds which shard position of which set.

At first start every drive gets `.smartstorage/format.json` naming the cluster, its
node, its own drive id, its set and position, k and m, and the whole sets table (the
drive ids of every set in position order). From then on the table is fixed: objects
are placed by set and shard position, so a drive that moved to another slot (swapped
mount points, reordered config), a drive of another cluster, or a changed k+m would
silently serve the wrong shards. Opening therefore checks every drive against the
configured order and refuses on any mismatch rather than guessing.

What it tolerates: a drive that cannot be read at all is kept in its slot (the caller
marks it offline) as long as every set keeps k+1 readable drives, and a completely
empty drive where a formatted one was is taken as a replacement and formatted into
that slot, for healing to fill. Not when fewer than k drives of that set keep their
data, though: then the empty folders are more likely disks that failed to mount.

A drive folder that does not exist is created when no drive is formatted yet (a fresh
node, like `storage.directory`). Once the cluster exists a vanished folder is an
unmounted or removed disk: it stays offline, never re-created on the disk underneath.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal.storage.erasure.drive import Drive, DriveError

log = logging.getLogger("shoal.storage")

FORMAT_VERSION = 1

Slot = tuple[int, int]  # (set index, position in the set)


class LayoutError(Exception):
    """The drives cannot be opened as configured; the message names the drive(s)."""


class DamagedFormat(LayoutError):
    """A format.json that parses but makes no sense: its drive counts as unreadable."""


# ---------------------------------------------------------------- erasure sets


def form_sets(
    nodes: Sequence[tuple[str, int]], set_size: int, *, data_shards: int | None = None
) -> list[list[tuple[str, int]]]:
    """Group drives into erasure sets of `set_size`, interleaved across nodes so a set's
    shards are spread over as many nodes as possible: drive 0 of every node, then drive
    1 of every node, ..., cut into consecutive sets. Nodes with fewer drives drop out of
    the round-robin when they run out. Returns (node id, drive index on that node).
    `data_shards` only makes the error message say how the set size splits."""
    if set_size < 1:
        raise ValueError(f"set size must be at least 1, not {set_size}")
    ids = [node for node, _ in nodes]
    if len(set(ids)) != len(ids):
        raise ValueError(f"node ids must be unique: {ids}")
    if any(count < 0 for _, count in nodes):
        raise ValueError(f"drive counts must not be negative: {list(nodes)}")
    total = sum(count for _, count in nodes)
    if total == 0 or total % set_size:
        split = ""
        if data_shards is not None:
            split = f" ({data_shards} data + {set_size - data_shards} parity)"
        raise ValueError(
            f"{total} drives cannot form sets of {set_size}{split}: use a multiple of {set_size}"
        )
    order = [
        (node, index)
        for index in range(max(count for _, count in nodes))
        for node, count in nodes
        if index < count
    ]
    return [order[i : i + set_size] for i in range(0, total, set_size)]


def slots_of(sets: Sequence[Sequence[tuple[str, int]]]) -> dict[tuple[str, int], Slot]:
    """Invert form_sets: (node id, drive index) -> (set index, position)."""
    return {drive: (s, p) for s, members in enumerate(sets) for p, drive in enumerate(members)}


# ---------------------------------------------------------------- format.json


def format_record(
    *,
    cluster_id: str,
    node_id: str,
    drive_id: str,
    slot: Slot,
    k: int,
    m: int,
    sets: Sequence[Sequence[str]],
) -> dict[str, Any]:
    """The format.json of one drive."""
    return {
        "format": FORMAT_VERSION,
        "cluster_id": cluster_id,
        "node_id": node_id,
        "drive_id": drive_id,
        "set_index": slot[0],
        "position": slot[1],
        "data_shards": k,
        "parity_shards": m,
        "sets": [list(ids) for ids in sets],
    }


@dataclass(frozen=True)
class DriveFormat:
    """A parsed, self-consistent format.json."""

    cluster_id: str
    node_id: str
    drive_id: str
    slot: Slot
    k: int
    m: int
    sets: tuple[tuple[str, ...], ...]


def parse_format(record: Any, name: str) -> DriveFormat:
    """Check a format.json's fields and inner consistency; LayoutError naming `name`."""

    def bad(why: str) -> LayoutError:
        return DamagedFormat(f"drive {name}: damaged .smartstorage/format.json: {why}")

    if not isinstance(record, dict):
        raise bad("not a JSON object")
    version = record.get("format")
    if version != FORMAT_VERSION:
        raise LayoutError(
            f"drive {name}: format.json version {version!r} is not supported "
            f"(this server knows version {FORMAT_VERSION})"
        )
    for key in ("cluster_id", "node_id", "drive_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise bad(f"{key} missing")
    for key in ("set_index", "position", "data_shards", "parity_shards"):
        value = record.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(f"{key} missing or not a number")
    k, m = record["data_shards"], record["parity_shards"]
    raw = record.get("sets")
    if (
        not isinstance(raw, list)
        or not raw
        or not all(
            isinstance(ids, list)
            and len(ids) == k + m
            and all(isinstance(i, str) and i for i in ids)
            for ids in raw
        )
    ):
        raise bad(f"sets is not a list of sets of {k + m} drive ids")
    sets = tuple(tuple(ids) for ids in raw)
    flat = [i for ids in sets for i in ids]
    if len(set(flat)) != len(flat):
        raise bad("the sets table names a drive twice")
    slot = (record["set_index"], record["position"])
    if slot[0] >= len(sets) or slot[1] >= k + m or sets[slot[0]][slot[1]] != record["drive_id"]:
        raise bad(f"set {slot[0]} position {slot[1]} is not its own drive id in the sets table")
    return DriveFormat(
        cluster_id=record["cluster_id"],
        node_id=record["node_id"],
        drive_id=record["drive_id"],
        slot=slot,
        k=k,
        m=m,
        sets=sets,
    )


# ---------------------------------------------------------------- one drive's state


@dataclass(eq=False)
class DriveState:
    """What opening found on one drive. Exactly one of: `format` (formatted), `error`
    (unreadable), or neither with `empty` telling a blank drive from one holding data."""

    drive: Drive
    format: DriveFormat | None = None
    error: BaseException | None = None
    empty: bool = False

    @property
    def name(self) -> str:
        return self.drive.name

    @property
    def absent(self) -> bool:
        """The drive folder does not exist (LocalDrive.read_format's FileNotFoundError);
        one that exists but cannot be read is an error of another kind."""
        return isinstance(self.error, FileNotFoundError)


async def inspect_drive(drive: Drive) -> DriveState:
    """Read a drive's format.json (and whether it is empty when it has none).

    A drive that cannot be read, including a damaged format.json, is reported, never
    reformatted: the disk may come back, and formatting would throw away its shards.
    Only a format version this server does not know raises (LayoutError)."""
    try:
        record = await drive.read_format()
        if record is not None:
            return DriveState(drive, format=parse_format(record, drive.name))
        return DriveState(drive, empty=await drive.is_empty())
    except (OSError, ValueError, DriveError, DamagedFormat) as exc:
        return DriveState(drive, error=exc)


# ---------------------------------------------------------------- the layout


@dataclass
class Layout:
    """This node's drives arranged as erasure sets. `sets[s][p]` is the drive holding
    position p of set s and `drive_ids[s][p]` its id, for every set of the cluster.
    Drives in `missing` could not be read at open (their reasons in `errors`): they
    keep their slot and should be treated as offline. Drives in `replaced` were blank
    and were formatted into their slot: their shards are for healing to restore."""

    cluster_id: str
    node_id: str
    k: int
    m: int
    sets: list[list[Drive]]
    drive_ids: list[list[str]]
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)
    fresh: bool = False
    pools: list[int] | None = None  # sets per pool; None: all sets are one pool

    @property
    def set_size(self) -> int:
        return self.k + self.m

    def drives(self) -> Iterator[tuple[Slot, str, Drive]]:
        """Every (slot, drive id, drive), set by set in position order."""
        for s, members in enumerate(self.sets):
            for p, drive in enumerate(members):
                yield (s, p), self.drive_ids[s][p], drive

    def slot_of(self, name: str) -> Slot:
        for slot, _, drive in self.drives():
            if drive.name == name:
                return slot
        raise KeyError(name)


async def open_layout(drives: Sequence[Drive], *, node_id: str | None, k: int, m: int) -> Layout:
    """Open (or, when every drive is blank, create) the layout of this node's `drives`,
    given in the configured order. See the module docstring for what is refused."""
    if k < 1 or m < 0:
        raise LayoutError(f"{k}+{m} is not an erasure layout: need at least 1 data shard")
    names = [d.name for d in drives]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LayoutError(f"drive {twice[0]} is configured more than once")

    states = list(await asyncio.gather(*(inspect_drive(d) for d in drives)))
    for st in states:
        if st.error is None and st.format is None and not st.empty:
            raise LayoutError(
                f"drive {st.name} has data but no .smartstorage/format.json; refusing to format it"
            )
    formatted = [st for st in states if st.format is not None]
    # Before the drive count: "formatted for 4+2, config says 3+2" beats "6 drives
    # cannot form sets of 5".
    check_formats_agree(formatted, k=k, m=m)

    me = node_id or "this node"
    try:
        placement = slots_of(form_sets([(me, len(drives))], k + m, data_shards=k))
    except ValueError as exc:
        raise LayoutError(str(exc)) from exc
    slots = [placement[(me, i)] for i in range(len(drives))]

    if formatted:
        return await _open_existing(states, slots, node_id=node_id, k=k, m=m)
    absent = [st.name for st in states if st.absent]
    unreadable = [st for st in states if st.error is not None and not st.absent]
    if unreadable:
        raise LayoutError(
            "no drive is formatted yet and "
            + ", ".join(f"{st.name} ({_describe(st.error)})" for st in unreadable)
            + " cannot be read; refusing to create a cluster on part of the drives"
        )
    for name in absent:
        # Like storage.directory: formatting creates the path (write_format's makedirs).
        log.info("drive %s does not exist yet: creating it", name)
    return await _format_fresh(drives, slots, node_id=node_id, k=k, m=m)


def check_formats_agree(formatted: Sequence[DriveState], *, k: int, m: int) -> None:
    """The formatted drives belong to one cluster, were formatted for k+m and share one
    sets table (the checks that do not depend on where the drives are configured)."""
    if not formatted:
        return
    ref = _reference(formatted)
    rf = _fmt(ref)
    for st in formatted:
        if _fmt(st).cluster_id != rf.cluster_id:
            raise LayoutError(
                f"foreign drive: {st.name} belongs to cluster {_fmt(st).cluster_id}, "
                f"but {ref.name} (and the drives agreeing with it) to cluster {rf.cluster_id}"
            )
    for st in formatted:
        f = _fmt(st)
        if (f.k, f.m) != (k, m):
            raise LayoutError(
                f"drives were formatted for {f.k}+{f.m}, config says {k}+{m}; "
                f"erasure layout cannot change (drive {st.name})"
            )
    for st in formatted:
        if _fmt(st).sets != rf.sets:
            raise LayoutError(
                f"drives {st.name} and {ref.name} disagree on the sets table of cluster "
                f"{rf.cluster_id}"
            )
    seen: dict[str, str] = {}
    for st in formatted:
        other = seen.setdefault(_fmt(st).drive_id, st.name)
        if other != st.name:
            raise LayoutError(
                f"drives {other} and {st.name} have the same drive id {_fmt(st).drive_id} "
                "(a copied drive?)"
            )


def _fmt(st: DriveState) -> DriveFormat:
    assert st.format is not None
    return st.format


def _reference(formatted: Sequence[DriveState]) -> DriveState:
    """The first drive of the cluster most drives belong to: the others are the odd
    ones out in error messages."""
    clusters = [_fmt(st).cluster_id for st in formatted]
    ours = max(clusters, key=clusters.count)
    return formatted[clusters.index(ours)]


async def _format_fresh(
    drives: Sequence[Drive], slots: list[Slot], *, node_id: str | None, k: int, m: int
) -> Layout:
    cluster_id = str(uuid.uuid4())
    node = node_id or str(uuid.uuid4())
    n_sets = len(drives) // (k + m)
    ids = [[str(uuid.uuid4()) for _ in range(k + m)] for _ in range(n_sets)]
    sets: list[list[Drive | None]] = [[None] * (k + m) for _ in range(n_sets)]
    for drive, (s, p) in zip(drives, slots, strict=True):
        sets[s][p] = drive

    async def write(drive: Drive, slot: Slot) -> None:
        record = format_record(
            cluster_id=cluster_id,
            node_id=node,
            drive_id=ids[slot[0]][slot[1]],
            slot=slot,
            k=k,
            m=m,
            sets=ids,
        )
        try:
            await drive.write_format(record)
        except (OSError, DriveError) as exc:
            raise LayoutError(f"drive {drive.name}: cannot write format.json: {exc}") from exc

    await asyncio.gather(*(write(d, slot) for d, slot in zip(drives, slots, strict=True)))
    log.info(
        "formatted %d drives as a new cluster %s: %d set(s) of %d+%d, node %s",
        len(drives),
        cluster_id,
        n_sets,
        k,
        m,
        node,
    )
    return Layout(
        cluster_id=cluster_id,
        node_id=node,
        k=k,
        m=m,
        sets=[[d for d in members if d is not None] for members in sets],
        drive_ids=ids,
        fresh=True,
    )


async def _open_existing(
    states: list[DriveState], slots: list[Slot], *, node_id: str | None, k: int, m: int
) -> Layout:
    """Validate formatted drives against their configured slots (check_formats_agree has
    run), keep unreadable ones in place, format blank ones as replacements."""
    formatted = [st for st in states if st.format is not None]
    ref = _reference(formatted)
    rf = _fmt(ref)
    by_slot = dict(zip(slots, states, strict=True))

    if len(rf.sets) * (k + m) != len(states):
        raise LayoutError(
            f"{len(states)} drives are configured, but they were formatted as "
            f"{len(rf.sets)} set(s) of {k + m} ({len(rf.sets) * (k + m)} drives); "
            f"the drive list cannot change (drive {ref.name})"
        )
    expected_node = node_id or rf.node_id
    for st in formatted:
        if _fmt(st).node_id != expected_node:
            what = "config says" if node_id else f"{ref.name} says"
            raise LayoutError(
                f"drive {st.name} belongs to node {_fmt(st).node_id}, {what} node {expected_node}"
            )
    for st, slot in zip(states, slots, strict=True):
        if st.format is not None and st.format.slot != slot:
            s, p = st.format.slot
            holder = by_slot[st.format.slot].name
            raise LayoutError(
                f"drive {st.name} is formatted as set {s} position {p}, which the configured "
                f"order gives to {holder}: were {st.name} and {holder} swapped? Restore the "
                "configured order"
            )

    ids = [list(members) for members in rf.sets]
    unreadable = [st for st in states if st.error is not None]
    blank = [st for st in states if st.format is None and st.error is None]
    for st in unreadable:
        _report_unreadable(st)
    need = min(k + 1, k + m)
    for s in range(len(ids)):
        members = [by_slot[(s, p)] for p in range(k + m)]
        readable = [st for st in members if st.error is None]
        if len(readable) < need:
            raise LayoutError(
                f"set {s} has only {len(readable)} of {k + m} drives readable, needs {need}: "
                + ", ".join(f"{st.name} ({_describe(st.error)})" for st in members if st.error)
            )
        original = [st for st in members if st.format is not None]
        new = [st for st in members if st.format is None and st.error is None]
        if new and len(original) < k and not await _all_blank(original):
            raise LayoutError(
                f"set {s}: {', '.join(st.name for st in new)} are empty and only "
                f"{len(original)} of its drives are formatted, fewer than the {k} needed to "
                "rebuild them; refusing to format them (drives not mounted?)"
            )

    for st, slot in zip(states, slots, strict=True):
        if st in blank:
            drive_id = ids[slot[0]][slot[1]]
            record = format_record(
                cluster_id=rf.cluster_id,
                node_id=expected_node,
                drive_id=drive_id,
                slot=slot,
                k=k,
                m=m,
                sets=ids,
            )
            try:
                await st.drive.write_format(record)
            except (OSError, DriveError) as exc:
                raise LayoutError(f"drive {st.name}: cannot write format.json: {exc}") from exc
            log.warning(
                "drive %s was empty: formatted as replacement drive %s (set %d position %d); "
                "healing will fill it",
                st.name,
                drive_id,
                *slot,
            )

    sets: list[list[Drive]] = [
        [by_slot[(s, p)].drive for p in range(k + m)] for s in range(len(ids))
    ]
    return Layout(
        cluster_id=rf.cluster_id,
        node_id=expected_node,
        k=k,
        m=m,
        sets=sets,
        drive_ids=ids,
        missing=[st.name for st in unreadable],
        errors={st.name: _describe(st.error) for st in unreadable},
        replaced=[st.name for st in blank],
    )


async def _all_blank(states: Sequence[DriveState]) -> bool:
    """Whether formatted drives hold no buckets or data yet: then formatting the rest
    loses nothing (say a first start that was interrupted while formatting)."""
    try:
        for st in states:
            if await st.drive.list_dir("buckets") or await st.drive.list_dir("data"):
                return False
    except (OSError, DriveError):
        return False
    return True


def _report_unreadable(st: DriveState) -> None:
    hint = (
        " (a replacement disk: create the folder empty and restart to have it formatted)"
        if st.absent
        else ""
    )
    log.error(
        "drive %s cannot be read, keeping it offline in its slot: %s%s",
        st.name,
        _describe(st.error),
        hint,
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
