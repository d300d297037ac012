"""A local drive's object records: where each key's record file is, reading and
updating it under the key's lock, listing a bucket's keys from their records, and what
the drive keeps of them in memory so that GETs, overwrites and listings can skip the
file (the newest entries of records lately read or written, checked by one stat;
listing summaries between pages; the listing walker's cache).

storage.erasure.drive's LocalDrive owns one and runs the blocking calls on its threads;
`known` is the exception, answered on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

from shoal.storage.diskio import (
    StripedLocks,
    fsync_dir,
    makedirs_below,
    missing,
    object_lock_name,
    remove_empty_parents,
    rmtree_quiet,
    unlink_quiet,
)
from shoal.storage.durable import Written
from shoal.storage.erasure.drivetypes import DrivePage, ShardMissing
from shoal.storage.erasure.history import KeyRecord, Segment, stored_entries
from shoal.storage.erasure.records import Rank, RecordSummary, VersionRecord, visible
from shoal.storage.erasure.summaries import RecordCache, SummaryCache
from shoal.storage.keys import join_below, key_path
from shoal.storage.listing import walk_page
from shoal.storage.walk import ListingCache

RECORD_SUFFIX = ".metadata.json"
#: Records of up to this many entries leave their summaries to the listing cache when
#: written (a versioned key's longer ones are summed up when next listed).
WRITE_THROUGH = 8
#: The record bytes whose parsed entries a drive keeps for GETs and overwrites
#: (storage.erasure.summaries): a small object's record (its shard inline) is some
#: 2 KiB, so about 2,000 of those; in memory, parsed, about three times as much, four
#: with the encoding a written entry keeps (VersionRecord.stored).
NEWEST_BYTES = 4 << 20
#: A record file as last seen: (inode, mtime ns, size).
FileStamp = tuple[int, int, int]


class KnownRecord(NamedTuple):
    """A record file as this drive last read or wrote it (see LocalRecords.current)."""

    stamp: FileStamp
    head: tuple[VersionRecord, ...]  # its entries, newest first: what a plain read answers
    history: tuple[Segment, ...]

    @classmethod
    def of(cls, st: os.stat_result | Written, record: KeyRecord) -> KnownRecord:
        return cls(_stamp(st), tuple(record.head), tuple(record.history))


class LocalRecords:
    """The object records below a drive's `root` (see the module docstring).

    `require_root` raises DriveError when the drive's folder is gone (a fault, never a
    missing key); `ready` tells whether that folder is there and this process has
    stamped it; `replace` writes a file durably through the drive's temp folder."""

    def __init__(
        self,
        root: str,
        *,
        require_root: Callable[[], None],
        ready: Callable[[], bool],
        replace: Callable[[str, bytes], Written],
    ) -> None:
        self.root = root
        self.locks = StripedLocks(os.path.join(root, "locks"), stripes=64)
        self.listings = ListingCache()
        #: Records' summaries kept between listing pages (storage.erasure.summaries).
        self.summaries = SummaryCache()
        #: Records as last read or written, parsed, for GETs and overwrites (see current).
        self.newest: RecordCache[KnownRecord] = RecordCache(NEWEST_BYTES)
        self._require_root = require_root
        self._ready = ready
        self._replace = replace

    def close(self) -> None:
        self.locks.close()

    def forget(self, path: str) -> None:
        """A record file at `path` changed by other means than `update`."""
        self.summaries.forget(path)
        self.newest.forget(path)

    def forget_all(self) -> None:
        """A folder that may hold records went: nothing kept can be trusted."""
        self.summaries.clear()
        self.newest.clear()

    def path(self, bucket: str, key: str) -> tuple[str, str, tuple[str, ...]]:
        """(record path, bucket data dir, directories between them). No system call:
        a caller that may find no record calls _require_root first, so a vanished
        drive is a fault, not a missing key; one that finds the file needs no check."""
        record, data, dirs = _relative(bucket, key)
        return f"{self.root}/{record}", f"{self.root}/{data}", dirs

    def read(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> list[VersionRecord]:
        self._require_root()
        record = self.key_record(self.path(bucket, key)[0])
        if everything:
            return record.everything()
        return record.older(below, limit) if limit else record.window(version_id)

    def update(
        self,
        bucket: str,
        key: str,
        add: VersionRecord | None,
        drop: tuple[Rank, ...],
        drop_nulls_before: str | None = None,
        keep_data: bool = False,
    ) -> list[VersionRecord]:
        path, bucket_dir, dirs = self.path(bucket, key)
        with self.locks.hold(object_lock_name(bucket, key)):
            known = self._fresh(path)
            if known is None:
                self._require_root()
            record = self.key_record(path, known)
            if add is not None:
                add = record.keeping_inline(add)
                if record.empty:  # else its folders hold the record file: they are there
                    makedirs_below(bucket_dir, dirs)
                _settle_version(os.path.join(record.folder, add.vid), add)
            gone = record.change(add, drop, drop_nulls_before)
            if add is None and not gone:
                return record.window(older_null=True)
            if record.empty:
                unlink_quiet(path)
                fsync_dir(os.path.dirname(path))
                self.newest.forget(path)
            else:
                record.save()
                self._remember_newest(path, record)
            if record.empty or len(record.head) > WRITE_THROUGH:
                self.summaries.forget(path)
            else:
                self.summaries.replace(path, [v.summary for v in record.head])
            for entry in () if keep_data else gone:
                if not entry.is_inline:  # an inline version has no folder
                    rmtree_quiet(os.path.join(record.folder, entry.vid))
            if record.empty:
                with contextlib.suppress(OSError):
                    os.rmdir(record.folder)
                remove_empty_parents(os.path.dirname(path), bucket_dir)
            entries = record.window(older_null=True)
        self.listings.bump()
        return entries

    def _remember_newest(self, path: str, record: KeyRecord) -> None:
        """Hand a record just written to the GETs' cache (see current): its newest
        entries, as a read of the file would find them, so the first GET after a PUT
        parses nothing either."""
        st = record.saved
        if st is None:
            self.newest.forget(path)
            return
        self.newest.replace(path, KnownRecord.of(st, record), weight=st.st_size)

    def key_record(self, path: str, known: KnownRecord | None = None) -> KeyRecord:
        """The record at `path`, made from `known` (what the drive kept of it) if given,
        else read and parsed."""
        folder = path[: -len(RECORD_SUFFIX)]
        if known is None:
            return KeyRecord.load(path, folder, self._replace)
        return KeyRecord(path, folder, self._replace, list(known.head), list(known.history))

    def _fresh(
        self, path: str, st: os.stat_result | None = None, known: KnownRecord | None = None
    ) -> KnownRecord | None:
        """What this drive keeps of the record at `path` (see current; `known`, if the
        caller looked already), if the file is still the one it came from (`st`: its
        stat, if the caller has it). An overwrite then stats its record instead of
        reading and parsing it: that was a third of a drive's work for a small PUT."""
        if known is None:
            known = self.newest.peek(path)
        if known is None:
            return None
        if st is None:
            try:
                st = os.stat(path)
            except OSError:
                return None
        return known if known.stamp == _stamp(st) else None

    def page(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int, versions: int
    ) -> DrivePage:
        def entries(sidecar: str) -> list[RecordSummary]:
            """What ListObjects needs is the record's newest entries (kept between
            pages: self.summaries); ListObjectVersions a page's worth of entries, from
            the history segments too."""
            if not versions and (known := self.summaries.get(sidecar)) is not None:
                return known
            generation = self.summaries.generation  # before the record, never after
            folder = sidecar[: -len(RECORD_SUFFIX)]
            stored = stored_entries(sidecar, folder, versions)
            summaries = [RecordSummary.of_stored(v) for v in stored]
            if not versions and summaries:
                self.summaries.put(sidecar, generation, summaries)
            return summaries

        def summarize(key: str, sidecar: str) -> tuple[str, list[RecordSummary]] | None:
            stored = entries(sidecar)
            return (key, stored) if stored else None

        def listed(_key: str, sidecar: str) -> bool:
            """Whether a key counts for its common prefix (see Drive.list_objects)."""
            stored = entries(sidecar)
            if versions:
                return bool(visible(stored))
            return bool(stored) and not stored[0].deleted

        self._require_root()
        bucket_dir = os.path.join(self.root, "data", bucket)
        if not os.path.isdir(bucket_dir):
            return DrivePage([], [], False, None)
        items, prefixes, truncated, last = walk_page(
            bucket_dir,
            prefix=prefix,
            delimiter=delimiter,
            after=after,
            max_keys=max_keys,
            summarize=summarize,
            counts=listed,
            cache=self.listings,
        )
        return DrivePage(items, prefixes, truncated, last)

    def known(
        self, bucket: str, key: str, small_limit: int | None = None
    ) -> list[VersionRecord] | None:
        """The key's newest entries when this drive keeps them parsed (see current) and
        the record file is still the one they came from, found on the event loop without
        a thread hop (as storage.quickread does for the standalone store): what
        read_object answers with no version asked for, and read_small (`small_limit`
        given) unless a shard file is to be read as well. A GET's or HEAD's hops, one
        per drive, were most of its time: four in parallel to four drives cost four
        times one (each thread's wake-up waits for the GIL the one before holds). The
        system call here is a stat of a record this process read or wrote lately, its
        inode in the kernel's cache; [] when the drive surely holds no record for the
        key (_absent). None: take the thread."""
        path = self.path(bucket, key)[0]
        known = self.newest.peek(path)
        if known is None:
            return [] if self._absent(path) else None
        if small_limit is not None and shard_to_read(known.head, small_limit):
            return None
        # (a missing file: the thread path tells a missing drive from a missing record)
        if self._fresh(path, known=known) is None:
            return None
        self.newest.get(path)  # counted as a hit, and kept as recently used
        return list(known.head)

    def _absent(self, record: str) -> bool:
        """Whether this drive surely holds no record at `record`, told by two stats on
        the loop: no file there, on a drive whose folder is there (a vanished one is a
        fault, which the thread path reports) and that this process has stamped. A
        GET or HEAD of a missing key took a thread hop per drive for this: three times
        a hit's time."""
        return missing(record) and self._ready()

    def current(self, bucket: str, key: str) -> list[VersionRecord]:
        """`read`'s newest entries, kept (up to NEWEST_BYTES of records) while
        their file is the same (inode, mtime, size) and no write through this drive
        changed it."""
        path = self.path(bucket, key)[0]
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return self.read(bucket, key)
        if (known := self._fresh(path, st)) is not None:
            self.newest.get(path)  # counted as a hit, and kept as recently used
            return list(known.head)
        generation = self.newest.generation  # before the record, never after
        record = self.key_record(path)
        known = KnownRecord.of(st, record)
        self.newest.put(path, generation, known, weight=st.st_size)
        return list(known.head)


@functools.lru_cache(maxsize=1024)  # asked once per drive of a GET or a PUT
def _relative(bucket: str, key: str) -> tuple[str, str, tuple[str, ...]]:
    """A key's record path and its bucket's data folder, relative to a drive's root
    (and the folders between them): one string join per drive instead of three."""
    kp = key_path(key)
    data = f"data/{bucket}"
    return join_below(data, (*kp.dirs, kp.meta_name)), data, kp.dirs


def shard_to_read(versions: Sequence[VersionRecord], limit: int) -> bool:
    """Whether read_small reads a shard file: the newest entry is an object of one
    chunk of at most `limit` bytes whose shards are files (an inline one is in the
    entry already)."""
    if not versions or versions[0].deleted or versions[0].is_inline:
        return False
    parts = versions[0].parts
    return (
        len(parts) == 1
        and not parts[0].number
        and len(parts[0].crcs) == 1
        and parts[0].size <= limit
    )


def _stamp(st: os.stat_result | Written) -> FileStamp:
    """What tells a record file's versions apart (see LocalRecords.current)."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _settle_version(vdir: str, entry: VersionRecord) -> None:
    """Before a record names version `entry`: its folders made durable (the files were
    fsynced when written), and a shard of every chunk present — else ShardMissing, so
    the drive never lists a version it does not hold (a folder swept while a write was
    cut off, or an upload part it never got). An inline version has no folder: its
    shard is in the entry itself, or the drive does not hold the version either."""
    if entry.is_inline:
        if entry.inline is None:
            raise ShardMissing(f"no inline shard, so version {entry.vid} is not here")
        return
    for part in entry.parts:
        base = os.path.join(vdir, f"part-{part.number}") if part.number else vdir
        for c in range(len(part.crcs)):
            chunk = os.path.join(base, f"chunk-{c}")
            try:
                names = os.listdir(chunk)
            except (FileNotFoundError, NotADirectoryError):
                names = []
            if not any(n.endswith(".dat") for n in names):
                raise ShardMissing(f"{chunk}: no shard, so version {entry.vid} is not here")
            fsync_dir(chunk)
        if base != vdir:
            fsync_dir(base)
    if os.path.isdir(vdir):
        fsync_dir(vdir)
        fsync_dir(os.path.dirname(vdir))
