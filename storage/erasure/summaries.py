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

A drive also keeps the parsed newest entries of its largest records for GETs (a 1 GiB
object's record lists 1,536 shard CRCs: parsing it is most of a range GET's time), in
a RecordCache of its own; those are also checked against the record file's inode,
mtime and size (one stat), so not even a drive folder swapped behind the drive's back
serves entries its files no longer have.
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
    """Record path -> what a reader made of the record (see the module docstring).
    Thread-safe: reads run on the drive's worker threads."""

    def __init__(self, size: int = CACHED_RECORDS) -> None:
        self._size = size
        self._items: OrderedDict[str, T] = OrderedDict()
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
            else:
                self.hits += 1
                self._items.move_to_end(path)
            return found

    def put(self, path: str, generation: int, summaries: T) -> None:
        """Keep what a page read of `path` after seeing `generation`, unless a record
        changed since (it might have been this one, read before the change)."""
        with self._lock:
            if generation != self.generation:
                return
            self._items[path] = summaries
            self._items.move_to_end(path)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def replace(self, path: str, summaries: T) -> None:
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


#: Record path -> the summaries of its entries, newest first (listings).
SummaryCache = RecordCache[list[RecordSummary]]
