"""Listing a bucket across erasure sets: each set's drives list their keys in S3 order,
each key is resolved like a read (the newest version a read quorum agrees on), and the
sets' pages are merged up to the name every set is complete to. ListObjectVersions
(storage.erasure.versionlisting) reads the same pages, judging each key's versions."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shoal.storage.backend import ListPage, ObjectSummary
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
        each common prefix kept when a read quorum of drives has it."""
        store = self.store
        drives = store.sets[s]
        listed = await fan_out(
            drives,
            lambda d: d.list_objects(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                max_keys=max_keys,
                versions=versions,
            ),
        )
        listed.require(store.k, f"bucket {bucket}", write=False)
        pages = listed.values()
        truncated = [p.last for p in pages if p.truncated and p.last is not None]
        votes: dict[str, list[list[RecordSummary]]] = defaultdict(list)
        cps: Counter[str] = Counter()
        for page in pages:
            for name, versions in page.keys:
                votes[name].append(versions)
            cps.update(page.prefixes)
        missing = len(drives) - len(pages)
        merged: dict[str, T | None] = {}
        for name, lists in votes.items():
            if s not in store.place(bucket, name).candidates:
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
        return merged, min(truncated) if truncated else None
