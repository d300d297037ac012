"""Finding keys in a bucket directory in S3 order, whatever the directory tree looks like.

S3 lists keys in UTF-8 byte order (Python's code-point order of str), so `a-c` comes
before `a/b` although `a/b` lives in a subdirectory. The walker answers one question —
"the smallest key greater than `after`" (optionally also "not starting with `after`",
to jump past a common prefix) — by descending from a directory with sorted listings.

Each directory entry e has a key prefix P_e that every key in its subtree starts with
(a metadata file: its whole key; a directory: parent prefix + segment + "/"; a
continuation directory: parent prefix + piece). Two entries' key ranges overlap only
when one P_e is a prefix of the other, so: entries whose P_e is a prefix of `after`
may hold answers; of the others only those with P_e > `after` can, and the scan stops
as soon as P_e reaches the best key found so far. Listings are cached for one walker,
which lives for one page computation (in one worker thread), and in a ListingCache
shared by the pages of a store, so a long listing reads each directory once.
"""

from __future__ import annotations

import errno
import os
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from shoal.storage.keys import (
    DIR_LIMIT,
    META_SUFFIX,
    encode_segment,
    join_below,
    parse_data_file,
    parse_dir,
    parse_meta_file,
)

FILE, DIR, CONT = 0, 1, 2


@dataclass(frozen=True)
class Entry:
    prefix: str  # P_e: every key below this entry starts with it
    kind: int  # FILE (a metadata sidecar), DIR or CONT
    path: str


Found = tuple[str, str]  # (key, path of its metadata sidecar)
#: A subdirectory search: (path, dir prefix, after, skip, prefix, best so far).
Call = tuple[str, str, str, bool, str, Found | None]


def _first_not_starting_with(prefixes: list[str], lo: int, text: str) -> int:
    """First index >= lo whose prefix does not start with `text` (they are contiguous)."""
    hi = len(prefixes)
    while lo < hi:
        mid = (lo + hi) // 2
        if prefixes[mid].startswith(text):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _common_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


Listing = tuple[list[str], list[Entry]]


class ListingCache:
    """Sorted directory listings kept between listing pages.

    An entry is valid while the store's generation (bumped after every change this
    process makes to any bucket's tree) and the directory's mtime (moved by changes
    from other processes) are what they were when the directory was read.
    """

    def __init__(self, size: int = 128, summaries: int = 65_536) -> None:
        self.generation = 0
        self._size = size
        #: Directory listings (Walker's) or sorted version directories (fileversions').
        self._items: OrderedDict[str, tuple[tuple[int, int], Any]] = OrderedDict()
        #: What listings show of a key (storage.listing's summaries), by the path of its
        #: metadata file, under the stamp of the directory holding that file: a listing
        #: reads each key's metadata once per change, not once per page.
        self._summary_size = summaries
        self._summaries: OrderedDict[str, tuple[tuple[int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()

    def bump(self) -> None:
        with self._lock:
            self.generation += 1

    def stamp(self, path: str) -> tuple[int, int]:
        generation = self.generation  # read before the directory, never after
        try:
            return generation, os.stat(path).st_mtime_ns
        except OSError:
            return generation, -1

    def get(self, path: str, stamp: tuple[int, int]) -> Any:
        with self._lock:
            item = self._items.get(path)
            if item is None or item[0] != stamp:
                return None
            self._items.move_to_end(path)
            return item[1]

    def put(self, path: str, stamp: tuple[int, int], listing: Any) -> None:
        with self._lock:
            _remember(self._items, self._size, path, stamp, listing)

    def summary(self, path: str, stamp: tuple[int, int]) -> Any:
        """The summary remembered for the metadata file at `path` (its directory's
        `stamp` now), or None."""
        with self._lock:
            item = self._summaries.get(path)
            return item[1] if item is not None and item[0] == stamp else None

    def put_summary(self, path: str, stamp: tuple[int, int], summary: Any) -> None:
        with self._lock:
            _remember(self._summaries, self._summary_size, path, stamp, summary)


def _remember(
    items: OrderedDict[str, tuple[tuple[int, int], Any]],
    size: int,
    path: str,
    stamp: tuple[int, int],
    value: Any,
) -> None:
    """Keep `value` as the newest of at most `size` items (the caller holds the lock)."""
    items[path] = (stamp, value)
    items.move_to_end(path)
    while len(items) > size:
        items.popitem(last=False)


class Walker:
    """Ordered key lookups below one bucket directory (blocking; run in a worker thread)."""

    def __init__(
        self, bucket_dir: str, shared: ListingCache | None = None, *, versions: bool = False
    ) -> None:
        self.bucket_dir = bucket_dir
        #: Walk a tree of version directories (storage.fileversions) instead of a bucket:
        #: a key is a directory named like its data file, not a metadata sidecar.
        self.versions = versions
        self._cache: dict[str, Listing] = {}
        self._shared = shared
        #: Directories searched so far: the work done, for callers that bound it.
        self.visits = 0
        #: Where each key _search returned was listed (directory path, entry index), and
        #: the last answer with its place: the next key is usually the next entry there.
        self._located: dict[str, tuple[str, int, str]] = {}
        self._last: tuple[Found, str, int, str] | None = None
        #: Directories listed with no continuation entry (see _following).
        self._plain: dict[str, bool] = {}

    def _entries(self, path: str, dir_prefix: str) -> Listing:
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        stamp = (0, 0)
        if self._shared is not None:
            stamp = self._shared.stamp(path)
            cached = self._shared.get(path, stamp)
            if cached is not None:
                self._cache[path] = cached
                return cached
        entries: list[Entry] = []
        try:
            with os.scandir(path) as it:
                for de in it:
                    if de.is_dir(follow_symlinks=False):
                        if self.versions and (text := parse_data_file(de.name)) is not None:
                            entries.append(Entry(dir_prefix + text, FILE, de.path))
                            continue
                        parsed = parse_dir(de.name)
                        if parsed is None:
                            continue
                        text, cont = parsed
                        if cont:
                            entries.append(Entry(dir_prefix + text, CONT, de.path))
                        else:
                            entries.append(Entry(dir_prefix + text + "/", DIR, de.path))
                    else:
                        text = parse_meta_file(de.name)
                        if text is not None:
                            entries.append(Entry(dir_prefix + text, FILE, de.path))
        except (FileNotFoundError, NotADirectoryError):
            pass  # removed by a concurrent delete: simply empty
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            # A prefix whose path is too long for the kernel: no key can live there.
        entries.sort(key=lambda e: (e.prefix, e.kind))
        result = ([e.prefix for e in entries], entries)
        self._cache[path] = result
        if self._shared is not None:
            self._shared.put(path, stamp, result)
        return result

    def start(self, prefix: str) -> tuple[str, str]:
        """(directory, its key prefix) holding every key that starts with `prefix`."""
        segments = prefix.split("/")[:-1]
        comps: list[str] = []
        for seg in segments:
            comps.extend(encode_segment(seg, DIR_LIMIT))
        dir_prefix = "".join(s + "/" for s in segments)
        return join_below(self.bucket_dir, comps), dir_prefix

    def next_key(self, after: str, *, skip: bool = False, prefix: str = "") -> Found | None:
        """The smallest key > `after` starting with `prefix`; with `skip`, also not
        starting with `after`."""
        following = self._following(after, skip, prefix)
        if following is not None:
            return following
        self._located.clear()
        path, dir_prefix = self.start(prefix)
        # The descent goes one level per key segment (up to 1,023 for a 1,024-byte key),
        # deeper than Python's recursion limit: each level is a suspended generator on an
        # explicit stack, asking for a subdirectory's answer by yielding its arguments.
        stack = [self._search(path, dir_prefix, after, skip, prefix, None)]
        answer: Found | None = None
        while stack:
            try:
                call = stack[-1].send(answer)
            except StopIteration as done:
                stack.pop()
                answer = done.value
                continue
            stack.append(self._search(*call))
            answer = None
        place = self._located.get(answer[1]) if answer is not None else None
        self._last = None if answer is None or place is None else (answer, *place)
        return answer

    def _following(self, after: str, skip: bool, prefix: str) -> Found | None:
        """The next key without a descent, when `after` is the last answer and the entry
        after it in its directory D is a key too. Every key between two keys of D starts
        with D's prefix; when D is the bucket or a directory (prefix "" or ending in /),
        every such key lives below D, and below D only a continuation entry (a long
        segment's first piece, a prefix of the key before) holds keys out of its sorted
        place: a D without one lists them all in order. None: search from the top."""
        last = self._last
        if last is None or skip or last[0][0] != after:
            return None
        _, path, index, dir_prefix = last
        if dir_prefix and not dir_prefix.endswith("/"):
            return None  # a continuation directory: keys beside it may sort in between
        listing = self._cache.get(path)
        if listing is None or index + 1 >= len(listing[1]):
            return None
        entries = listing[1]
        plain = self._plain.get(path)
        if plain is None:
            plain = self._plain[path] = all(e.kind != CONT for e in entries)
        entry = entries[index + 1]
        if not plain or entry.kind != FILE or not entry.prefix.startswith(prefix):
            return None
        answer = (entry.prefix, entry.path)
        self._last = (answer, path, index + 1, dir_prefix)
        return answer

    def _search(
        self, path: str, dir_prefix: str, after: str, skip: bool, prefix: str, best: Found | None
    ) -> Generator[Call, Found | None, Found | None]:
        """One directory's part of next_key; yields a Call for each subdirectory to search
        and is sent that subdirectory's answer."""
        self.visits += 1
        prefixes, entries = self._entries(path, dir_prefix)
        found: Found | None = None
        i = bisect_right(prefixes, after)

        # Directories at or before `after` whose prefix is a prefix of `after`.
        back: list[int] = []
        j = i - 1
        while j >= 0:
            p = prefixes[j]
            if after.startswith(p):
                if entries[j].kind != FILE and not (skip and p == after):
                    back.append(j)
                j -= 1
                if j >= 0 and prefixes[j] != p and p:
                    j = min(j, bisect_right(prefixes, p[:-1]) - 1)
            else:
                j = bisect_right(prefixes, after[: _common_len(p, after)]) - 1
        for j in reversed(back):
            e = entries[j]
            if not (e.prefix.startswith(prefix) or prefix.startswith(e.prefix)):
                continue
            r = yield (e.path, e.prefix, after, skip, prefix, found or best)
            if r is not None:
                found = r

        # Entries after `after`, in order, until they cannot beat the best so far.
        k = _first_not_starting_with(prefixes, i, after) if skip else i
        while k < len(entries):
            e = entries[k]
            k += 1
            limit = found or best
            if limit is not None and e.prefix >= limit[0]:
                break
            if not e.prefix.startswith(prefix):
                if prefix.startswith(e.prefix):
                    if e.kind == FILE:
                        continue
                elif e.prefix > prefix:
                    break
                else:
                    continue
            if e.kind == FILE:
                self._located[e.path] = (path, k - 1, dir_prefix)
                return (e.prefix, e.path)
            r = yield (e.path, e.prefix, after, skip, prefix, limit)
            if r is not None:
                found = r
        return found


@dataclass
class Leftovers:
    """What crashes can leave in a bucket tree: object data without its metadata sidecar
    (a delete cut off between its two unlinks), a sidecar without data (the same, on a
    file system that persisted the two unlinks out of order), directories without files."""

    unpaired: list[tuple[str, str, str]]  # (key, the lone file, its missing partner)
    bare_dirs: list[str]  # parents before children


def find_leftovers(bucket_dir: str) -> Leftovers:
    """Scan a bucket tree (blocking) for leftovers; only our own names are considered.

    Iterative like Walker: the tree may be as deep as a key has segments.
    """
    found = Leftovers([], [])
    stack = [(bucket_dir, "")]
    while stack:
        path, dir_prefix = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue  # removed meanwhile, or not ours to read
        names = {de.name for de in entries}
        bare = True
        for de in entries:
            try:
                is_dir = de.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            parsed = parse_dir(de.name) if is_dir else None
            if parsed is not None:
                text, cont = parsed
                stack.append((de.path, dir_prefix + text + ("" if cont else "/")))
                continue
            bare = False  # a file, or a directory that is not ours: keep this one
            if is_dir:
                continue
            partner = de.name + META_SUFFIX
            text = parse_data_file(de.name)
            if text is None:
                partner = de.name[: -len(META_SUFFIX)]
                text = parse_meta_file(de.name)
            if text is not None and partner not in names:
                found.unpaired.append((dir_prefix + text, de.path, os.path.join(path, partner)))
        if bare and path != bucket_dir:
            found.bare_dirs.append(path)
    return found


@dataclass
class VersionLeftovers:
    """What crashes can leave in a tree of version directories (storage.fileversions)."""

    unpaired: list[tuple[str, str]]  # (key, version data without its record)
    bare_dirs: list[str]  # parents before children


def find_version_leftovers(versions_root: str) -> VersionLeftovers:
    """Scan a bucket's version tree (blocking; iterative, like find_leftovers)."""
    found = VersionLeftovers([], [])
    stack = [(versions_root, "", False)]
    while stack:
        path, dir_prefix, is_key = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        names = {de.name for de in entries}
        if is_key:
            for name in names:
                if not name.endswith(".json") and name + ".json" not in names:
                    found.unpaired.append((dir_prefix, os.path.join(path, name)))
        else:
            for de in entries:
                try:
                    if not de.is_dir(follow_symlinks=False):
                        continue
                except OSError:
                    continue
                text = parse_data_file(de.name)
                if text is not None:
                    stack.append((de.path, dir_prefix + text, True))
                    continue
                parsed = parse_dir(de.name)
                if parsed is not None:
                    stack.append(
                        (de.path, dir_prefix + parsed[0] + ("" if parsed[1] else "/"), False)
                    )
        if not is_key and path != versions_root and all(_is_dir(de) for de in entries):
            found.bare_dirs.append(path)  # holds no version, at most directories
        elif is_key and not entries:
            found.bare_dirs.append(path)
    return found


def _is_dir(de: os.DirEntry[str]) -> bool:
    try:
        return de.is_dir(follow_symlinks=False)
    except OSError:
        return False
