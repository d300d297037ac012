"""ListObjectVersions across erasure sets.

It reads the pages ListObjects reads (storage.erasure.listing: each drive lists its
keys with every version entry of each), and shows each key's S3 versions: the entries
a read quorum of its set's drives list, as records.visible sees them,
newest first. A page may end inside a key; the next resumes after (key marker, version
id marker), reading that key's record alone first. The drives list a page's keys in
rounds sized by the versions per key seen so far, so a page of 1,000 versions of keys
with 10 each reads about 100 keys, not 1,000.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from shoal.storage.backend import MAX_KEY_BYTES, NULL_VERSION, VersionListPage, VersionSummary
from shoal.storage.erasure.listing import Answers
from shoal.storage.erasure.records import RecordSummary, visible
from shoal.storage.erasure.versions import settled
from shoal.storage.listing import check_params, rollup
from shoal.storage.records import parse_iso
from shoal.storage.version_ids import valid_version_id

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore


#: Keys the drives list in a page's first round (later rounds: as many as fit).
FIRST_ROUND = 100


def _summary_rank(summary: RecordSummary) -> tuple[str, str]:
    return summary.rank


def _resume(versions: list[RecordSummary], marker: str) -> int:
    """Index of the first version after `marker` (one that vanished: after where its
    id would sort; a null one, after the key)."""
    for i, v in enumerate(versions):
        if v.version_id == marker:
            return i + 1
    if marker == NULL_VERSION or not valid_version_id(marker):
        return len(versions)
    return next((i for i, v in enumerate(versions) if v.order < marker), len(versions))


@dataclasses.dataclass
class _Page:
    max_keys: int
    versions: list[VersionSummary] = dataclasses.field(default_factory=list)
    prefixes: list[str] = dataclasses.field(default_factory=list)
    last: tuple[str, str | None] | None = None

    def full(self) -> bool:
        return len(self.versions) + len(self.prefixes) >= self.max_keys

    def done(self, truncated: bool) -> VersionListPage:
        key, vid = self.last if truncated and self.last else (None, None)
        return VersionListPage(self.versions, self.prefixes, truncated, key, vid)

    def emit(self, key: str, versions: list[RecordSummary], start: int, latest: str) -> bool:
        """Add a key's versions from `start`; False once the page is full with some left."""
        for v in versions[start:]:
            if self.full():
                return False
            self.versions.append(
                VersionSummary(
                    key=key,
                    version_id=v.version_id,
                    is_latest=v.vid == latest,
                    delete_marker=v.deleted,
                    size=0 if v.deleted else v.size,
                    etag="" if v.deleted else v.etag,
                    last_modified=parse_iso(v.last_modified or "1970-01-01T00:00:00.000Z"),
                    storage_class=v.storage_class,
                    owner=v.owner,
                )
            )
            self.last = (key, v.version_id)
        return True


@dataclasses.dataclass(frozen=True)
class _KeyVersions:
    """A key's S3 versions, newest first, and the id of its current entry."""

    versions: list[RecordSummary]
    latest: str


def _key_versions(answers: Answers, k: int) -> _KeyVersions | None:
    entries = settled(answers, k, _summary_rank)
    versions = visible(entries)
    if not versions:
        return None
    return _KeyVersions(versions, entries[0].vid)


def _union(a: _KeyVersions, b: _KeyVersions) -> _KeyVersions:
    """A key whose versions are in two sets (pools): all of them, newest first."""
    both = sorted([*a.versions, *b.versions], key=lambda v: v.rank, reverse=True)
    return _KeyVersions(both, max(a.versions[0], b.versions[0], key=lambda v: v.rank).vid)


@dataclasses.dataclass
class VersionListing:
    """ListObjectVersions over every erasure set (see the module docstring)."""

    store: ErasureStore

    async def list_object_versions(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_id_marker: str,
        max_keys: int,
    ) -> VersionListPage:
        check_params(prefix, delimiter, key_marker, version_id_marker)
        await self.store.buckets.bucket_record(bucket)
        page = _Page(max_keys)
        if max_keys <= 0 or len(prefix.encode("utf-8")) > MAX_KEY_BYTES:
            return page.done(False)
        cursor = key_marker
        if key_marker.startswith(prefix):
            cp = rollup(key_marker, prefix, delimiter)
            if cp is not None:
                cursor = cp
            elif key_marker and version_id_marker:
                found = await self._one_key(bucket, key_marker)
                if found is not None:
                    start = _resume(found.versions, version_id_marker)
                    if not page.emit(key_marker, found.versions, start, found.latest):
                        return page.done(True)
        k = self.store.k
        keys = min(max_keys, FIRST_ROUND)
        seen = shown = 0
        while True:
            items, bound = await self.store.listing.merged_page(
                bucket,
                prefix,
                delimiter,
                cursor,
                keys,
                lambda _name, answers: _key_versions(answers, k),
                _union,
                versions=True,
            )
            for name, item in items:
                if page.full():
                    return page.done(True)
                if item is None:
                    page.prefixes.append(name)
                    page.last = (name, None)
                elif not page.emit(name, item.versions, 0, item.latest):
                    return page.done(True)
                seen += 1
                shown += 1 if item is None else len(item.versions)
            # As many keys as the page has room for at the versions per key seen so far:
            # the drives read every version of each key they list.
            room = max_keys - len(page.versions) - len(page.prefixes)
            keys = max(1, min(max_keys, room * seen // max(shown, 1)))
            if bound is None:
                return page.done(False)
            cursor = bound

    async def _one_key(self, bucket: str, key: str) -> _KeyVersions | None:
        _, _, answers = await self.store.read_entries(bucket, key, everything=True)
        stored: Answers = [
            None if a is None else [RecordSummary.of_stored(e.to_dict()) for e in a]
            for a in answers
        ]
        return _key_versions(stored, self.store.k)
