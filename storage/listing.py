"""Pages of ListObjects and ListMultipartUploads, with S3's prefix/delimiter rules.

Both listings share one shape: walk items in byte order, roll keys whose remainder
after the prefix contains the delimiter up into a common prefix (CP = key up to and
including the delimiter), emit each CP once, count CPs toward the page size, and
continue past everything under a CP without visiting it. Every item is strictly
greater than the marker, so resuming after a CP skips that prefix entirely.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from shoal.storage.backend import MAX_KEY_BYTES, ListPage, ObjectSummary, UploadInfo, UploadListPage
from shoal.storage.diskio import read_json
from shoal.storage.errors import InvalidRequest
from shoal.storage.records import parse_iso, shown_size_etag
from shoal.storage.walk import ListingCache, Walker


def check_params(*texts: str) -> None:
    """Listing parameters must be UTF-8 text like keys (no lone surrogates): they are
    compared with keys and the prefix becomes a path. InvalidRequest otherwise."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest("Listing parameters must be valid UTF-8") from exc


def rollup(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix `key` rolls up into, or None if it is listed as itself."""
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    return None if idx < 0 else key[: idx + len(delimiter)]


#: Directories one page may search before it ends early (truncated, resumable after its
#: last item, as S3 allows: a page may hold fewer than max-keys). Ordinary trees never
#: reach it (1,000 keys 20 deep); a key nested 1,023 deep costs ~1,000 visits per key found,
#: so a bucket of such keys would otherwise cost a million visits per page.
PAGE_BUDGET = 20_000

T = TypeVar("T")
Page = tuple[list[T], list[str], bool, str | None]  # items, common prefixes, truncated, last


def list_page(
    bucket_dir: str,
    *,
    prefix: str,
    delimiter: str,
    after: str,
    max_keys: int,
    summarize: Callable[[str, str], ObjectSummary | None],
    cache: ListingCache | None = None,
) -> ListPage:
    """One ListObjects page (blocking: run the whole page in one worker thread).

    `summarize(key, sidecar_path)` reads a returned key's metadata; None means the key
    vanished since it was found (a concurrent delete) and it is silently skipped.
    """
    return ListPage(
        *walk_page(
            bucket_dir,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
            summarize=summarize,
            cache=cache,
        )
    )


def walk_page(
    bucket_dir: str,
    *,
    prefix: str,
    delimiter: str,
    after: str,
    max_keys: int,
    summarize: Callable[[str, str], T | None],
    cache: ListingCache | None = None,
    counts: Callable[[str, str], bool] | None = None,
) -> Page[T]:
    """list_page's walk, with whatever `summarize` makes of each sidecar. With
    `counts`, a common prefix is listed only once a key under it counts (a prefix
    holding only deleted keys is none); the others are stepped over one by one."""
    check_params(prefix, delimiter, after)
    if max_keys <= 0 or len(prefix.encode("utf-8")) > MAX_KEY_BYTES:
        return [], [], False, None  # (no key is longer than the limit: none can match)
    walker = Walker(bucket_dir, cache)
    objects: list[T] = []
    prefixes: list[str] = []
    last: str | None = None
    cursor, skip = after, False
    if after.startswith(prefix):
        cp = rollup(after, prefix, delimiter)
        if cp is not None:
            # Keys under the marker's own CP rolled up into a CP <= marker: all done.
            cursor, skip = cp, True
    while True:
        found = walker.next_key(cursor, skip=skip, prefix=prefix)
        if found is None:
            return objects, prefixes, False, last
        count = len(objects) + len(prefixes)
        if count >= max_keys or (count and walker.visits > PAGE_BUDGET):
            return objects, prefixes, True, last
        key, sidecar = found
        cp = rollup(key, prefix, delimiter)
        if cp is not None:
            if counts is not None and not counts(key, sidecar):
                cursor, skip = key, False
                continue
            prefixes.append(cp)
            last, cursor, skip = cp, cp, True
            continue
        cursor, skip = key, False
        summary = summarize(key, sidecar)
        if summary is not None:
            objects.append(summary)
            last = key


def cached_summaries(cache: ListingCache | None) -> Callable[[str, str], ObjectSummary | None]:
    """read_summary for one listing page, remembered in `cache` between pages while the
    directory holding the key's metadata is unchanged (its stamp: the store's generation
    and the directory's mtime, taken once per directory per page, before any read)."""
    if cache is None:
        return read_summary
    stamps: dict[str, tuple[int, int]] = {}

    def summarize(key: str, sidecar: str) -> ObjectSummary | None:
        directory = os.path.dirname(sidecar)
        stamp = stamps.get(directory)
        if stamp is None:
            stamp = stamps[directory] = cache.stamp(directory)
        known: ObjectSummary | None = cache.summary(sidecar, stamp)
        if known is not None and known.key == key:
            return known
        summary = read_summary(key, sidecar)
        if summary is not None:
            cache.put_summary(sidecar, stamp, summary)
        return summary

    return summarize


def read_summary(key: str, sidecar: str) -> ObjectSummary | None:
    """An ObjectSummary from a metadata sidecar (None if it is gone or unreadable)."""
    try:
        rec = read_json(sidecar)
        size, etag = shown_size_etag(rec)
        return ObjectSummary(
            key=key,
            size=size,
            etag=etag,
            last_modified=parse_iso(rec["last_modified"]),
            storage_class=str((rec.get("headers") or {}).get("x-amz-storage-class") or "STANDARD"),
            owner=str(rec.get("owner") or ""),
        )
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged sidecar: not an object we can describe


def uploads_page(
    uploads: list[UploadInfo],
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    max_uploads: int,
) -> UploadListPage:
    """One ListMultipartUploads page from all of a bucket's uploads.

    Order is (key, initiated, upload id). With a key marker alone, listing resumes at the
    next key; with an upload-id marker too, at the upload after that one of the same key.
    """
    check_params(prefix, delimiter, key_marker, upload_id_marker)
    items = sorted(
        (u for u in uploads if u.key.startswith(prefix)),
        key=lambda u: (u.key, u.initiated, u.upload_id),
    )
    if key_marker:
        if upload_id_marker:
            pos = next(
                (
                    n + 1
                    for n, u in enumerate(items)
                    if u.key == key_marker and u.upload_id == upload_id_marker
                ),
                None,
            )
            if pos is None:
                items = [
                    u
                    for u in items
                    if u.key > key_marker
                    or (u.key == key_marker and u.upload_id > upload_id_marker)
                ]
            else:
                items = [u for u in items[pos:] if u.key >= key_marker]
        else:
            items = [u for u in items if u.key > key_marker]
    out: list[UploadInfo] = []
    cps: list[str] = []
    marker_cp = rollup(key_marker, prefix, delimiter) if key_marker.startswith(prefix) else None
    next_key: str | None = None
    next_id: str | None = None
    truncated = False
    for u in items:
        cp = rollup(u.key, prefix, delimiter)
        if cp is not None and (cp == marker_cp or (cps and cps[-1] == cp)):
            continue
        if len(out) + len(cps) >= max_uploads:
            truncated = True
            break
        if cp is not None:
            cps.append(cp)
            next_key, next_id = cp, None
        else:
            out.append(u)
            next_key, next_id = u.key, u.upload_id
    if max_uploads <= 0:
        truncated = False
    return UploadListPage(out, cps, truncated, next_key, next_id)
