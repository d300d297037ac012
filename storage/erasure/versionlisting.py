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
from shoal.storage.erasure.records import Rank, RecordSummary, VersionRecord, visible
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
    """One read's share of a key's S3 versions, newest first, and the id of its current
    entry."""

    versions: list[RecordSummary]
    latest: str
    #: Where some drive's entries of the key stopped (it listed a page's worth): older
    #: versions come from the next read, below this rank. None: this was all of them.
    horizon: Rank | None = None
    #: A null entry was among these or newer ones: older nulls are hidden.
    null_seen: bool = False


def _cut(answers: Answers, limit: int) -> tuple[Answers, Rank | None]:
    """Drives list at most `limit` entries of a key. Below the highest rank where one
    stopped, the others' entries cannot be judged (that drive's may just not be
    listed), so they are left for the next read."""
    ends = [a[-1].rank for a in answers if a is not None and len(a) >= limit]
    if not ends:
        return answers, None
    horizon = max(ends)
    return [None if a is None else [e for e in a if e.rank >= horizon] for a in answers], horizon


def _key_versions(
    answers: Answers, k: int, limit: int, latest: str | None = None, null_seen: bool = False
) -> _KeyVersions | None:
    """The versions a read quorum lists, from one read of at most `limit` entries per
    drive; `latest` and `null_seen` carry over from the key's newer entries."""
    answers, horizon = _cut(answers, limit)
    entries = settled(answers, k, _summary_rank)
    versions = [v for v in visible(entries) if not (null_seen and v.is_null)]
    if not entries or (not versions and horizon is None):
        return None
    return _KeyVersions(
        versions,
        entries[0].vid if latest is None else latest,
        horizon,
        null_seen or any(e.is_null for e in entries),
    )


def _union(a: _KeyVersions, b: _KeyVersions) -> _KeyVersions:
    """A key whose versions are in two sets (pools): both reads, newest first."""
    both = sorted([*a.versions, *b.versions], key=lambda v: v.rank, reverse=True)
    cuts = [h for h in (a.horizon, b.horizon) if h is not None]
    horizon = max(cuts) if cuts else None
    newest = max([*a.versions, *b.versions], key=lambda v: v.rank, default=None)
    return _KeyVersions(
        [v for v in both if horizon is None or v.rank >= horizon],
        a.latest if newest is None else newest.vid,
        horizon,
        a.null_seen or b.null_seen,
    )


def _summaries(answers: list[list[VersionRecord] | None]) -> Answers:
    return [
        None if a is None else [RecordSummary.of_stored(e.to_dict()) for e in a] for a in answers
    ]


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
                found = await self._resume(bucket, key_marker, version_id_marker, max_keys)
                if not await self._emit(page, bucket, key_marker, found, max_keys):
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
                lambda _name, answers: _key_versions(answers, k, max_keys),
                _union,
                versions=max_keys,
            )
            for name, item in items:
                if page.full():
                    return page.done(True)
                if item is None:
                    page.prefixes.append(name)
                    page.last = (name, None)
                elif not await self._emit(page, bucket, name, item, max_keys):
                    return page.done(True)
                seen += 1
                shown += 1 if item is None else len(item.versions)
            # As many keys as the page has room for at the versions per key seen so far:
            # the drives read up to a page's worth of versions of each key they list.
            room = max_keys - len(page.versions) - len(page.prefixes)
            keys = max(1, min(max_keys, room * seen // max(shown, 1)))
            if bound is None:
                return page.done(False)
            cursor = bound

    async def _emit(
        self, page: _Page, bucket: str, key: str, found: _KeyVersions | None, limit: int
    ) -> bool:
        """Add a key's versions to the page, reading on past where the drives' listing of
        it stopped, a page's worth at a time; False once the page is full with some
        left."""
        while found is not None:
            if not page.emit(key, found.versions, 0, found.latest):
                return False
            if found.horizon is None:
                break
            found = await self._older(bucket, key, found.horizon, found, limit)
        return True

    async def _older(
        self, bucket: str, key: str, below: Rank, newer: _KeyVersions, limit: int
    ) -> _KeyVersions | None:
        """The key's versions ranked below `below`, one read of at most `limit` entries
        per drive (storage.erasure.history reads only the segments they are in)."""
        _, _, answers = await self.store.read_entries(bucket, key, below=below, limit=limit)
        return _key_versions(
            _summaries(answers), self.store.k, limit, newer.latest, newer.null_seen
        )

    async def _resume(self, bucket: str, key: str, marker: str, limit: int) -> _KeyVersions | None:
        """The key's versions after version `marker` (one that vanished: after where
        its id would sort; a null one, after the key)."""
        known = marker == NULL_VERSION or valid_version_id(marker)
        _, _, answers = await self.store.read_entries(
            bucket, key, version_id=marker if known else None
        )
        entries = settled(_summaries(answers), self.store.k, _summary_rank)
        if not entries:
            return None
        hit = next((e for e in entries if e.version_id == marker), None)
        if hit is not None:
            below = hit.rank
        elif marker != NULL_VERSION and known:
            below = (marker, "")
        else:
            return None
        newer = _KeyVersions(
            [], entries[0].vid, below, any(e.is_null and e.rank > below for e in entries)
        )
        return await self._older(bucket, key, below, newer, limit)
