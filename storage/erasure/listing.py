"""Listing a bucket across erasure sets: each set's drives list their keys in S3 order,
each key is resolved like a read (the newest version a read quorum agrees on), and the
sets' pages are merged up to the name every set is complete to."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from shoal.storage.backend import ListPage, ObjectSummary
from shoal.storage.erasure.quorum import fan_out, read_quorum_error
from shoal.storage.erasure.records import Rank, RecordSummary
from shoal.storage.erasure.versions import resolve
from shoal.storage.records import parse_iso

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore


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
        """Entries after `after` agreed by the drives of every set, in order, and the name
        up to which they are complete (None: to the end)."""
        merged: dict[str, ObjectSummary | None] = {}
        bounds: list[str] = []
        for entries, bound in await asyncio.gather(
            *(
                self._set_page(s, bucket, prefix, delimiter, after, max_keys)
                for s in range(len(self.store.sets))
            )
        ):
            for name, item in entries.items():
                # A key in two pools (see ErasureStore.locate) is listed as its newer copy.
                old = merged.get(name)
                if old is None or (item is not None and item.last_modified > old.last_modified):
                    merged[name] = item
            bounds += [bound] if bound is not None else []
        bound = min(bounds) if bounds else None
        names = sorted(n for n in merged if bound is None or n <= bound)
        return [(n, merged[n]) for n in names], bound

    async def _set_page(
        self, s: int, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[dict[str, ObjectSummary | None], str | None]:
        """One erasure set's share of a page: each key resolved like a read, each common
        prefix kept when a read quorum of drives has it."""
        store = self.store
        drives = store.sets[s]
        listed = await fan_out(
            drives,
            lambda d: d.list_objects(
                bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
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
        merged: dict[str, ObjectSummary | None] = {}
        for name, lists in votes.items():
            if s not in store.place(bucket, name).candidates:
                continue
            answers: list[list[RecordSummary] | None] = [*lists]
            answers += [[] for _ in range(len(pages) - len(lists))]
            answers += [None] * missing
            found = resolve(answers, store.k, f"{bucket}/{name}", _summary_rank)
            if found is not None and not found.deleted and found.last_modified is not None:
                merged[name] = ObjectSummary(
                    key=name,
                    size=found.size,
                    etag=found.etag,
                    last_modified=parse_iso(found.last_modified),
                    storage_class=found.storage_class,
                )
        for cp, count in cps.items():
            if count >= store.k:
                merged[cp] = None
            elif count + missing >= store.k:
                # As for keys (resolve): the silent drives could make it a quorum, so
                # leaving it out might hide keys that exist.
                what, failed = f"bucket {bucket}", listed.failed()
                raise read_quorum_error(what, len(pages), len(drives), store.k, failed)
        return merged, min(truncated) if truncated else None
