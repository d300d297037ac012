"""Durable small-file system calls, each sequence in one release of the GIL.

Every os.* call releases the GIL and takes it back; with the event loop and the I/O or
drive threads all wanting it, each release is a hand-over (a futex wake and a context
switch each way). Writing one small file durably took ~10 such calls, and an erasure
node's 4 KiB PUT writes one per drive: 6.5 ms of CPU a PUT, mostly hand-overs. The C
module (storage/_durable.c, built at install when a C compiler and Python's headers
are there) makes the same calls in the same order with the GIL released once per
sequence; where it is not built, the os.* versions below run instead. Both raise
OSError subclasses naming the path, as the os module does, and remove a file they
created when a later step fails.
"""

from __future__ import annotations

import contextlib
import os
from typing import NamedTuple

try:
    from shoal.storage import _durable as _c
except ImportError:  # not built: no C compiler or no Python headers at install
    _c = None


#: What the os.* version of `read` asks for first; a metadata record fits.
_FIRST_READ = 1 << 16


class Written(NamedTuple):
    """What a stat of the file just written says (as os.stat's fields)."""

    st_ino: int
    st_dev: int
    st_size: int
    st_mtime_ns: int
    st_ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Written:
        return cls(st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def compiled() -> bool:
    """Whether the C module is in use (README: *Durable writes in C*)."""
    return _c is not None


def create(path: str, data: bytes, mode: int = 0o644, *, sync: bool) -> Written:
    """A new file at `path` (it must not exist) holding `data`, fsynced if `sync`."""
    if _c is not None:
        return Written(*_c.create(path, data, mode, sync))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        _unlink(path)
        raise
    os.close(fd)
    return Written.of(st)


def replace(tmp: str, target: str, data: bytes, mode: int = 0o644, *, sync_folder: bool) -> Written:
    """`data` written to the new file `tmp`, fsynced and renamed over `target`, so
    readers see the old or the new content, never a mix; then target's folder fsynced
    if `sync_folder`. The stat is the new file's (a rename changes neither its inode,
    its size nor its mtime)."""
    if _c is not None:
        return Written(*_c.replace(tmp, target, data, mode, sync_folder))
    written = create(tmp, data, mode, sync=True)
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise
    if sync_folder:
        sync(os.path.dirname(target), folder=True)
    return written


def read(path: str) -> bytes:
    """The whole of a small file (a record, a sidecar): listings read one per key."""
    if _c is not None:
        data: bytes = _c.read(path)
        return data
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) < _FIRST_READ:
            return data  # a regular file's read is short only at its end
        parts = [data]
        while block := os.read(fd, _FIRST_READ):
            parts.append(block)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_cached(path: str, limit: int) -> tuple[bytes, Written] | None:
    """The whole file at `path` and its stat, if the kernel has it without waiting for a
    disk (its path in the dentry cache, every byte in the page cache) and it holds at
    most `limit` bytes; None otherwise, and where the C module is not built (then
    storage.quickread.read_file_cached reads through os, whose open may wait)."""
    if _c is None:
        return None
    got = _c.read_cached(path, limit)
    return None if got is None else (got[0], Written(*got[1]))


def buffer(size: int) -> bytearray:
    """A bytearray of `size` bytes for a read to fill: with the C module not zero-filled
    first (bytearray(size) is, and that memset was ~5 % of the CPU of a big GET and of a
    node taking in shards over the lane). Use only the bytes a read put there."""
    return bytearray(size) if _c is None else _c.buffer(size)


def sync(path: str, *, folder: bool) -> None:
    """fsync the file or folder at `path`: for a folder, makes the renames and creations
    in it durable."""
    if _c is not None:
        _c.sync(path, folder)
        return
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Create(NamedTuple):
    """A step: a new file (it must not exist) holding `data`, fsynced if `sync`."""

    path: str
    data: bytes
    sync: bool = True


class Sync(NamedTuple):
    """A step: fsync the file or, if `folder`, the folder at `path`."""

    path: str
    folder: bool


class Rename(NamedTuple):
    """A step: rename `src` over `dst`."""

    src: str
    dst: str


Step = Create | Sync | Rename


def sequence(*steps: Step) -> None:
    """The steps in order, in one release of the GIL, stopping at the first that fails
    and raising its error (naming its path, as os does); the steps before it stay done.
    A commit's decision and its application are such sequences (storage.commit)."""
    if _c is not None:
        _c.sequence(tuple(_encoded(step) for step in steps))
        return
    for step in steps:
        if isinstance(step, Create):
            create(step.path, step.data, sync=step.sync)
        elif isinstance(step, Sync):
            sync(step.path, folder=step.folder)
        else:
            os.replace(step.src, step.dst)


def _encoded(step: Step) -> tuple[int, str, object, object]:
    """The C module's form of a step: (kind, path, data or second path, flag)."""
    if isinstance(step, Create):
        return (0, step.path, step.data, step.sync)
    if isinstance(step, Sync):
        return (1, step.path, None, step.folder)
    return (2, step.src, step.dst, None)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd` (a write may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
