"""What a drive's listings remember of its object records between pages.

A ListObjects page asks every drive of a set for its keys with their newest entries
(Drive.list_objects), which on a local drive means opening and parsing each key's
record: most of a listing's time. The drive keeps those summaries here, keyed by the
record's path, so the next listing of the same keys reads none of them again.

Every record of a drive is written by the one process that has the drive open (a
cluster's other nodes write through it, LocalDrive.exclusive), always in
LocalDrive._update_object or by deleting a folder (LocalDrive._delete), and both tell
this cache: `forget` drops one record's summaries, `clear` all of them. A page that read
a record while a write replaced it must not keep what it read: `put` stores a summary
only if nothing was forgotten since the page read `generation` (before the record).
A write with few entries in its record hands over their summaries (`replace`) instead
of forgetting them, so a listing after writes reads none of those records either.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from shoal.storage.erasure.records import RecordSummary

#: Records whose summaries a drive keeps (the least recently listed go first): some
#: 400 bytes each, so about 25 MiB per drive when full.
CACHED_RECORDS = 65536


class SummaryCache:
    """Record path -> the summaries of its entries, newest first (see the module
    docstring). Thread-safe: pages run on the drive's worker threads."""

    def __init__(self, size: int = CACHED_RECORDS) -> None:
        self._size = size
        self._items: OrderedDict[str, list[RecordSummary]] = OrderedDict()
        self._lock = threading.Lock()
        #: Bumped by every forget/clear; read by a page before it reads a record.
        self.generation = 0
        #: Lookups answered from the cache and not (records read).
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path: str) -> list[RecordSummary] | None:
        with self._lock:
            found = self._items.get(path)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(path)
            return found

    def put(self, path: str, generation: int, summaries: list[RecordSummary]) -> None:
        """Keep what a page read of `path` after seeing `generation`, unless a record
        changed since (it might have been this one, read before the change)."""
        with self._lock:
            if generation != self.generation:
                return
            self._items[path] = summaries
            self._items.move_to_end(path)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def replace(self, path: str, summaries: list[RecordSummary]) -> None:
        """After the record at `path` was rewritten with entries that sum up so."""
        with self._lock:
            self.generation += 1
            self._items[path] = summaries
            self._items.move_to_end(path)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def forget(self, path: str) -> None:
        """After the record at `path` was rewritten or removed."""
        with self._lock:
            self.generation += 1
            self._items.pop(path, None)

    def clear(self) -> None:
        """After a folder that may hold records was removed."""
        with self._lock:
            self.generation += 1
            self._items.clear()
