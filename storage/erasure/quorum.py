"""One quorum fan-out: ask drives at once, count who answered, and when too few did,
raise an error that says which drives failed and why.

Every quorum operation of the erasure store (object records, replicated records,
uploads, listing pages, shard writes) goes through `fan_out` and `Answers.require`, so
the rule and the error text live here once. The reasons name each failed drive by its
position and name (a local path, or `node:drive` of a remote one) and a short cause
taken from the exception's type or errno — never the exception's text, which can carry
whatever the far side put in it.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shoal.storage.erasure.drive import (
    CorruptShard,
    Drive,
    DriveError,
    DriveOffline,
    DriveTimeout,
    ShardMissing,
)
from shoal.storage.errors import ServiceUnavailable

T = TypeVar("T")


def reason(exc: BaseException) -> str:
    """A drive's failure in a few words, safe to show a client."""
    if isinstance(exc, DriveOffline):
        return "offline"
    if isinstance(exc, (DriveTimeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ShardMissing):
        return "missing data"
    if isinstance(exc, CorruptShard):
        return "corrupt data"
    if isinstance(exc, DriveError):
        return "drive error"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno) if exc.errno in errno.errorcode else "I/O error"
    return type(exc).__name__


def describe(failures: Sequence[tuple[int, Drive, str]]) -> str:
    """ "drive 3 (/mnt/d3): offline; drive 5 (n2:1a2b3c4d): timeout" ("" for none)."""
    return "; ".join(f"drive {p} ({d.name}): {why}" for p, d, why in failures)


def read_quorum_error(
    what: str, answered: int, total: int, k: int, failed: str = ""
) -> ServiceUnavailable:
    tally = f"{answered} of {total} answered, {k} needed."
    return _quorum_error(f"read {what}", tally, failed)


def write_quorum_error(
    what: str, ok: int, total: int, need: int, failed: str = ""
) -> ServiceUnavailable:
    tally = f"{ok} of {total} succeeded, {need} needed; nothing was changed."
    return _quorum_error(f"write {what}", tally, failed)


def _quorum_error(action: str, tally: str, failed: str) -> ServiceUnavailable:
    why = f" Failed: {failed}." if failed else ""
    return ServiceUnavailable(
        f"Not enough drives to {action}: {tally}{why} Retry once drives are back."
    )


@dataclass(frozen=True)
class Answers(Generic[T]):
    """Each drive's answer to one call, by position: its result or its exception.
    `skipped` are positions not asked (known offline, or missing what the call needs),
    with the reason."""

    drives: Sequence[Drive]
    positions: tuple[int, ...]
    results: tuple[T | BaseException, ...]
    skipped: tuple[tuple[int, str], ...] = ()

    def ok(self) -> list[int]:
        """Positions that answered."""
        return [p for p, r in zip(self.positions, self.results, strict=True) if _good(r)]

    def by_position(self) -> list[T | None]:
        """One item per drive of `drives`: its result, or None (failed or not asked)."""
        out: list[T | None] = [None] * len(self.drives)
        for p, r in zip(self.positions, self.results, strict=True):
            if _good(r):
                out[p] = r  # type: ignore[assignment]
        return out

    def errors(self) -> list[tuple[int, BaseException]]:
        """(position, exception) of each drive that failed."""
        return [
            (p, r)
            for p, r in zip(self.positions, self.results, strict=True)
            if isinstance(r, BaseException)
        ]

    def values(self) -> list[T]:
        return [r for r in self.results if _good(r)]  # type: ignore[misc]

    def failed(self) -> str:
        """Each failed (or skipped) drive's reason, for an error message."""
        failures = [
            (p, self.drives[p], reason(r))
            for p, r in zip(self.positions, self.results, strict=True)
            if not _good(r)
        ]
        failures += [(p, self.drives[p], why) for p, why in self.skipped]
        return describe(sorted(failures, key=lambda f: f[0]))

    def require(
        self,
        need: int,
        what: str,
        *,
        write: bool = True,
        among: int | None = None,
    ) -> list[int]:
        """The positions that answered, or the quorum error if fewer than `need` did.
        With `among`, only positions below it count (the voters of replicated records)."""
        ok = self.ok()
        counted = ok if among is None else [p for p in ok if p < among]
        if len(counted) >= need:
            return ok
        total = len(self.drives) if among is None else among
        make = write_quorum_error if write else read_quorum_error
        raise make(what, len(counted), total, need, self.failed())


def _good(result: object) -> bool:
    return not isinstance(result, BaseException)


async def fan_out(
    drives: Sequence[Drive],
    call: Callable[[Drive], Awaitable[T]],
    *,
    only: Sequence[int] | None = None,
    skipped: Sequence[tuple[int, str]] = (),
) -> Answers[T]:
    """`call` on every drive (or those at positions `only`) at once; a drive's exception
    is its answer. A cancellation or exit is re-raised, never counted as a drive's.
    `skipped`: positions deliberately not asked, with why (they count as failed)."""
    return await fan_out_at(drives, lambda p: call(drives[p]), only=only, skipped=skipped)


async def fan_out_at(
    drives: Sequence[Drive],
    call: Callable[[int], Awaitable[T]],
    *,
    only: Sequence[int] | None = None,
    skipped: Sequence[tuple[int, str]] = (),
    known: Callable[[int], T | None] | None = None,
) -> Answers[T]:
    """fan_out for calls that depend on the drive's position (its shard, say).

    `known`: a drive's answer when it has it in memory (Drive.known), else None; those
    answer at once, and only the others are called. A task and a timer per drive were
    a third of a small GET's time."""
    positions = tuple(range(len(drives)) if only is None else only)
    answered: dict[int, T] = {}
    if known is not None:
        for p in positions:
            found = known(p)
            if found is not None:
                answered[p] = found
    asked = [p for p in positions if p not in answered]
    results = await asyncio.gather(*(call(p) for p in asked), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r
    return Answers(drives, (*answered, *asked), (*answered.values(), *results), tuple(skipped))
