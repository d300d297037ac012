"""What a drive's listings remember of its object records between pages.

A ListObjects page asks every drive of a set for its keys with their newest entries
(Drive.list_objects), which on a local drive means opening and parsing each key's
record: most of a listing's time. The drive keeps those summaries here, keyed by the
record's path, so the next listing of the same keys reads none of them again.

Every record of a drive is written by the one process that has the drive open (a
cluster's other nodes write through it, LocalDrive.exclusive), always in
LocalRecords.update or by deleting a folder (LocalDrive._delete), and both tell
this cache: `forget` drops one record's summaries, `clear` all of them. A page that read
a record while a write replaced it must not keep what it read: `put` stores a summary
only if nothing was forgotten since the page read `generation` (before the record).
A write with few entries in its record hands over their summaries (`replace`) instead
of forgetting them, so a listing after writes reads none of those records either.

A drive also keeps the parsed newest entries of the records its GETs read, in a
RecordCache of its own bounded by the records' bytes: a 1 GiB object's record lists
1,536 shard CRCs, and parsing it is most of a range GET's time; a small object's
record holds its shard (records.py: inline), and opening and parsing it on each of
the k drives a GET asks is most of that GET's time. A write through the drive hands
its record's new entries over (`replace`), so even the first GET after a PUT parses
nothing, and neither does the next overwrite of the key. Those are also checked against
the record file's inode, mtime and size (one stat), so not even a drive folder swapped
behind the drive's back serves entries its files no longer have.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from shoal.storage.erasure.records import RecordSummary

T = TypeVar("T")

#: Records whose summaries a drive keeps (the least recently listed go first): some
#: 400 bytes each, so about 25 MiB per drive when full.
CACHED_RECORDS = 65536


class RecordCache(Generic[T]):
    """Record path -> what a reader made of the record (see the module docstring), up to
    `size` in all: each item weighs 1 unless put with a weight (the newest-entries
    cache weighs records by their bytes). Thread-safe: reads run on the drive's worker
    threads."""

    def __init__(self, size: int = CACHED_RECORDS) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[T, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        #: Bumped by every forget/clear; read by a page before it reads a record.
        self.generation = 0
        #: Lookups answered from the cache and not (records read).
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path: str) -> T | None:
        with self._lock:
            found = self._items.get(path)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(path)
            return found[0]

    def peek(self, path: str) -> T | None:
        """What `get` would answer, without counting or reordering anything."""
        with self._lock:
            found = self._items.get(path)
        return None if found is None else found[0]

    def put(self, path: str, generation: int, summaries: T, weight: int = 1) -> None:
        """Keep what a page read of `path` after seeing `generation`, unless a record
        changed since (it might have been this one, read before the change)."""
        with self._lock:
            if generation == self.generation:
                self._keep(path, summaries, weight)

    def replace(self, path: str, summaries: T, weight: int = 1) -> None:
        """After the record at `path` was rewritten with entries that sum up so."""
        with self._lock:
            self.generation += 1
            self._keep(path, summaries, weight)

    def forget(self, path: str) -> None:
        """After the record at `path` was rewritten or removed."""
        with self._lock:
            self.generation += 1
            gone = self._items.pop(path, None)
            if gone is not None:
                self._weight -= gone[1]

    def clear(self) -> None:
        """After a folder that may hold records was removed."""
        with self._lock:
            self.generation += 1
            self._items.clear()
            self._weight = 0

    def _keep(self, path: str, item: T, weight: int) -> None:
        """(Lock held.) Store `item`, then drop the least recently used past the size."""
        old = self._items.pop(path, None)
        if old is not None:
            self._weight -= old[1]
        self._items[path] = (item, weight)
        self._weight += weight
        while self._weight > self._size and self._items:
            self._weight -= self._items.popitem(last=False)[1][1]


#: Record path -> the summaries of its entries, newest first (listings).
SummaryCache = RecordCache[list[RecordSummary]]
