"""Small current objects read on the event loop: no thread hop, no lock (and, for a
large object's GET, what the page cache holds of it: read_cached_at).

A small GET's latency was mostly hand-offs (submit to a worker thread, wake it, wake the
loop back), not work. These reads skip them when they cannot block on the disk: they
take bytes with `preadv(RWF_NOWAIT)`, which fails (EAGAIN) instead of waiting when the
bytes are not in the page cache, and the caller then takes the worker-thread path.
With storage.durable's C module the open cannot wait either (openat2 RESOLVE_CACHED);
without, opening a file whose folder's entry is not cached can wait for the disk once.

Consistency without the key's lock: a plain commit (storage/commit.py) renames the
data into place, then renames its record, which names the data's inode, over the
sidecar. A reader that
1. reads the sidecar (and notes its inode and ctime), or finds by a stat that it is
   the same file as one it parsed before (Sidecars),
2. opens the data and finds the inode the record names, and
3. finds the sidecar path still holding the same file (inode and ctime),
has seen a record and the data it describes, both current at step 2. Anything else (a
record without a commit section, as versioned buckets and metadata updates write, a
write or delete in between, a page not cached) answers None: take the locked path.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from shoal.storage import durable
from shoal.storage.backend import ObjectMeta
from shoal.storage.durable import Written
from shoal.storage.records import loads, meta_from_dict

#: Largest object (and sidecar) read on the loop; larger ones take a worker thread. (At
#: 128 KiB, 256 KiB GETs through HTTP ran at 1,569 a second against 2,550 now: bench/ab.py
#: shoal GET with 256 KiB objects, medians of 6 alternating rounds. An erasure node reads
#: objects up to the same 1 MiB whole: storage.erasure.recordreads.SMALL_READ.)
LOOP_READ_MAX = 1024 * 1024

_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class _State:
    """Whether this kernel and filesystem take RWF_NOWAIT reads (learnt once)."""

    enabled = _NOWAIT is not None


def enabled() -> bool:
    return _State.enabled


def _read_cached(fd: int, size: int) -> bytes | None:
    """`size` bytes from offset 0 if they are all in the page cache, else None."""
    if size == 0:
        return b""
    got = read_cached_at(fd, size, 0)
    return bytes(got) if got is not None and len(got) == size else None


def read_cached_at(fd: int, size: int, offset: int) -> memoryview | None:
    """Up to `size` bytes at `offset` that are in the page cache (at least one byte),
    else None."""
    if not _State.enabled or size <= 0:
        return None
    buf = durable.buffer(size)  # not zero-filled: only the n bytes read are returned
    try:
        n = os.preadv(fd, [buf], offset, _NOWAIT or 0)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            _State.enabled = False  # this filesystem cannot: stop trying
            return None
        raise
    return memoryview(buf)[:n] if n > 0 else None


def read_file_cached(path: str, limit: int) -> tuple[bytes, Written] | None:
    """The whole file at `path` (at most `limit` bytes) and its stat, if it is in the
    page cache; else None. With storage.durable's C module nothing here waits for the
    disk, not even the open (durable.read_cached); through os, opening a file whose
    folder's entry is not cached can wait once."""
    if not _State.enabled:
        return None
    if durable.compiled():
        return durable.read_cached(path, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = _read_cached(fd, st.st_size)
    finally:
        os.close(fd)
    return None if data is None else (data, Written.of(st))


def read_record(meta_path: str) -> tuple[dict[str, Any], Written] | None:
    """The sidecar's record and its stat, if it exists and is cached; else None."""
    found = read_file_cached(meta_path, LOOP_READ_MAX)
    if found is None:
        return None
    raw, st = found
    try:
        return loads(raw), st
    except ValueError:
        return None  # torn or foreign: the locked path reports it


#: What tells one sidecar file from another: inode, device, ctime (ns), size.
Stamp = tuple[int, int, int, int]
#: A file's stat: os.stat's, or the one a read gave with the file (durable.Written).
FileStat = os.stat_result | Written


def _stamp(st: FileStat) -> Stamp:
    return st.st_ino, st.st_dev, st.st_ctime_ns, st.st_size


def _same_file(path: str, st: FileStat) -> bool:
    try:
        return _stamp(os.stat(path)) == _stamp(st)
    except (FileNotFoundError, NotADirectoryError):
        return False


@dataclass(frozen=True)
class Sidecar:
    """What a GET or HEAD needs of a record: its metadata, and the inode of the data
    file its commit section names (None without one: versioned and metadata-only
    writes leave none, and their GETs take the locked path)."""

    meta: ObjectMeta
    data_inode: int | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Sidecar:
        commit = record.get("commit")
        inode = commit.get("inode") if isinstance(commit, dict) else None
        return cls(meta_from_dict(record), inode if isinstance(inode, int) else None)


class Sidecars:
    """Sidecars read here, kept parsed by path under the stamp (inode, device, ctime,
    size) of the file they were read from: while a stat finds that same file, a GET or
    HEAD takes the record from memory instead of opening, reading and parsing it again
    (4 KiB GETs through HTTP: ~5 % more per second). read_small's checks run as before.

    A commit renames a new file over the sidecar, so a changed record is another file;
    but an inode freed by one commit may be reused by the next, and ctime ticks coarsely
    (a few ms). So only a sidecar last changed at least `settled` seconds before it is
    read is kept (as git treats "racily clean" files): whatever replaces it later gets
    a later ctime, and a stamp cannot match a file it did not come from. An entry takes
    ~1.3 KB (4,096 of them 5.1 MiB, tracemalloc). Event loop only (no lock)."""

    def __init__(self, size: int = 4096, settled: float = 1.0) -> None:
        self._size = size
        self._settled_ns = int(settled * 1e9)
        self._items: OrderedDict[str, tuple[Stamp, Sidecar]] = OrderedDict()

    def read(self, meta_path: str) -> tuple[Sidecar, FileStat] | None:
        """The sidecar, parsed, and the stat it holds for; None as read_record (and for
        a record that does not parse: the locked path reports it)."""
        if not _State.enabled:
            return None
        known = self._items.pop(meta_path, None)
        if known is not None:
            try:
                st = os.stat(meta_path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if _stamp(st) == known[0]:
                self._items[meta_path] = known  # most recently used again
                return known[1], st
        found = read_record(meta_path)
        if found is None:
            return None
        record, st = found  # the stamp of the very file read (fstat), not of a later one
        try:
            sidecar = Sidecar.of(record)
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        if st.st_ctime_ns <= time.time_ns() - self._settled_ns:
            self._items[meta_path] = (_stamp(st), sidecar)
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return sidecar, st


def read_small(
    sidecars: Sidecars, meta_path: str, data_path: str
) -> tuple[ObjectMeta, bytes] | None:
    """The current object's metadata and the whole data it describes, read without
    blocking; None when that cannot be done (see the module docstring)."""
    found = sidecars.read(meta_path)
    if found is None:
        return None
    sidecar, meta_st = found
    if sidecar.data_inode is None or sidecar.meta.size > LOOP_READ_MAX:
        return None
    found = read_file_cached(data_path, sidecar.meta.size)
    if found is None:
        return None
    data, st = found
    if st.st_ino != sidecar.data_inode or st.st_size != sidecar.meta.size:
        return None
    if not _same_file(meta_path, meta_st):
        return None
    return sidecar.meta, data
