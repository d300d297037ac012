"""Listing a bucket across erasure sets: each set's drives list their keys in S3 order,
each key is resolved like a read (the newest version a read quorum agrees on), and the
sets' pages are merged up to the name every set is complete to. ListObjectVersions
(storage.erasure.versionlisting) reads the same pages, judging each key's versions."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from shoal.storage.backend import ListPage, ObjectSummary
from shoal.storage.erasure.drive import Drive, DrivePage
from shoal.storage.erasure.quorum import fan_out, read_quorum_error
from shoal.storage.erasure.records import Rank, RecordSummary
from shoal.storage.erasure.versions import resolve
from shoal.storage.records import parse_iso

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore


T = TypeVar("T")
#: A key's entries as each drive of its set listed them (None: the drive failed).
Answers = list[list[RecordSummary] | None]


def _last(objects: list[ObjectSummary], prefixes: list[str]) -> str | None:
    names = [o.key for o in objects[-1:]] + prefixes[-1:]
    return max(names) if names else None


def _summary_rank(summary: RecordSummary) -> Rank:
    return summary.order, summary.vid


def _agreed(answers: Answers, k: int) -> RecordSummary | None:
    """A key's newest entry when at least k drives answered and every one of them has
    the same newest entry (the common case): then nothing newer exists on any drive
    that answered, and versions.resolve would pick that entry too. None: ask resolve."""
    first: RecordSummary | None = None
    answered = 0
    for entries in answers:
        if entries is None:
            continue
        if not entries:
            return None
        top = entries[0]
        if first is None:
            first = top
        elif top.order != first.order or top.vid != first.vid:
            return None
        answered += 1
    return first if answered >= k else None


@dataclasses.dataclass
class Listing:
    """ListObjects over every erasure set (see the module docstring)."""

    store: ErasureStore

    async def list_objects(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> ListPage:
        await self.store.buckets.bucket_record(bucket)
        if max_keys <= 0:
            return ListPage([], [], False, None)
        objects: list[ObjectSummary] = []
        prefixes: list[str] = []
        cursor = after
        while True:
            items, bound = await self._merged_page(bucket, prefix, delimiter, cursor, max_keys)
            for name, item in items:
                if len(objects) + len(prefixes) >= max_keys:
                    return ListPage(objects, prefixes, True, _last(objects, prefixes))
                if item is None:
                    prefixes.append(name)
                else:
                    objects.append(item)
            if bound is None:
                return ListPage(objects, prefixes, False, _last(objects, prefixes))
            if len(objects) + len(prefixes) >= max_keys:
                return ListPage(objects, prefixes, True, _last(objects, prefixes))
            cursor = bound

    async def _merged_page(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[tuple[str, ObjectSummary | None]], str | None]:
        """Keys after `after` as ListObjects shows them (None: a common prefix)."""

        def current(name: str, answers: Answers) -> ObjectSummary | None:
            found = _agreed(answers, self.store.k)
            if found is None:
                found = resolve(answers, self.store.k, f"{bucket}/{name}", _summary_rank)
            if found is None or found.deleted or found.last_modified is None:
                return None
            return ObjectSummary(
                key=name,
                size=found.size,
                etag=found.etag,
                last_modified=parse_iso(found.last_modified),
                storage_class=found.storage_class,
                owner=found.owner,
            )

        def newer(old: ObjectSummary, new: ObjectSummary) -> ObjectSummary:
            # A key in two pools (see ErasureStore.locate) is listed as its newer copy.
            return new if new.last_modified > old.last_modified else old

        return await self.merged_page(bucket, prefix, delimiter, after, max_keys, current, newer)

    async def merged_page(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        judge: Callable[[str, Answers], T | None],
        merge: Callable[[T, T], T],
        versions: bool = False,
    ) -> tuple[list[tuple[str, T | None]], str | None]:
        """Entries after `after` agreed by the drives of every set, in order, and the name
        up to which they are complete (None: to the end). `judge` makes a key's entry
        out of its drives' answers (None: not listed); `merge` joins the entries of a
        key found in two sets. A None entry is a common prefix (`versions`: one holding
        versions, not only current objects; see Drive.list_objects)."""
        merged: dict[str, T | None] = {}
        bounds: list[str] = []
        for entries, bound in await asyncio.gather(
            *(
                self._set_page(s, bucket, prefix, delimiter, after, max_keys, judge, versions)
                for s in range(len(self.store.sets))
            )
        ):
            for name, item in entries.items():
                old = merged.get(name)
                merged[name] = item if old is None or item is None else merge(old, item)
            bounds += [bound] if bound is not None else []
        bound = min(bounds) if bounds else None
        names = sorted(n for n in merged if bound is None or n <= bound)
        return [(n, merged[n]) for n in names], bound

    async def _set_page(
        self,
        s: int,
        bucket: str,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
        judge: Callable[[str, Answers], T | None],
        versions: bool,
    ) -> tuple[dict[str, T | None], str | None]:
        """One erasure set's share of a page: each key judged on its drives' answers,
        each common prefix kept when a read quorum of drives has it.

        A ListObjects page asks k drives first: when each of them lists the same keys
        and common prefixes, every key with the same newest entry, that is the page
        (a key or prefix with a read quorum on the set is on at least one of any
        n - k + 1 drives, and k agreeing drives leave nothing newer a quorum could
        hold). Anything else — a drive failing, a key some lack, entries that differ —
        and the other drives are asked too, and the page judged on every answer."""
        store = self.store
        drives = store.sets[s]

        def call(d: Drive) -> Awaitable[DrivePage]:
            return d.list_objects(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                max_keys=max_keys,
                versions=versions,
            )

        first = [p for p in range(len(drives)) if drives[p].online][: store.k]
        if versions or len(first) < store.k:
            listed = await fan_out(drives, call)
        else:
            asked = await fan_out(drives, call, only=first)
            if len(asked.ok()) == store.k:
                agreed = self._agreed_page(s, bucket, asked.values(), judge)
                if agreed is not None:
                    return agreed
            heard = asked.ok()
            rest = await fan_out(
                drives, call, only=[p for p in range(len(drives)) if p not in heard]
            )
            results = dict(zip(asked.positions, asked.results, strict=True))
            listed = dataclasses.replace(
                rest,
                positions=(*heard, *rest.positions),
                results=(*(results[p] for p in heard), *rest.results),
            )
        listed.require(store.k, f"bucket {bucket}", write=False)
        pages = listed.values()
        votes, cps, bound = _tally_pages(pages)
        missing = len(drives) - len(pages)
        merged: dict[str, T | None] = {}
        for name, lists in votes.items():
            if not self._home(s, bucket, name):
                continue
            answers: Answers = [*lists]
            answers += [[] for _ in range(len(pages) - len(lists))]
            answers += [None] * missing
            item = judge(name, answers)
            if item is not None:
                merged[name] = item
        for cp, count in cps.items():
            if count >= store.k:
                merged[cp] = None
            elif count + missing >= store.k:
                # As for keys (resolve): the silent drives could make it a quorum, so
                # leaving it out might hide keys that exist.
                what, failed = f"bucket {bucket}", listed.failed()
                raise read_quorum_error(what, len(pages), len(drives), store.k, failed)
        return merged, bound

    def _home(self, s: int, bucket: str, name: str) -> bool:
        """Whether set `s` may hold the key (with one set, always)."""
        return len(self.store.sets) == 1 or s in self.store.place(bucket, name).candidates

    def _agreed_page(
        self,
        s: int,
        bucket: str,
        pages: list[DrivePage],
        judge: Callable[[str, Answers], T | None],
    ) -> tuple[dict[str, T | None], str | None] | None:
        """The set's share of a page from k drives' pages when they agree (see
        _set_page), else None. The drives not asked are silent answers to `judge`."""
        k = self.store.k
        votes, cps, bound = _tally_pages(pages)
        silent: Answers = [None] * (len(self.store.sets[s]) - k)
        merged: dict[str, T | None] = {}
        for name, lists in votes.items():
            if len(lists) < k or _agreed(lists, k) is None:
                return None
            if self._home(s, bucket, name):
                item = judge(name, [*lists, *silent])
                if item is not None:
                    merged[name] = item
        for cp, count in cps.items():
            if count < k:
                return None
            merged[cp] = None
        return merged, bound


def _tally_pages(
    pages: list[DrivePage],
) -> tuple[dict[str, list[list[RecordSummary]]], Counter[str], str | None]:
    """Drives' pages counted: each key's entries per drive that lists it, how many list
    each common prefix, and the name up to which all of them are complete."""
    votes: dict[str, list[list[RecordSummary]]] = defaultdict(list)
    cps: Counter[str] = Counter()
    for page in pages:
        for name, entries in page.keys:
            votes[name].append(entries)
        cps.update(page.prefixes)
    truncated = [p.last for p in pages if p.truncated and p.last is not None]
    return votes, cps, min(truncated) if truncated else None
