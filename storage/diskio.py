"""Blocking disk helpers shared by the FileStore modules (always called from worker threads).

Holds the durability primitives (fsync of files and directories, atomic small-file
writes), directory creation that never re-creates a deleted bucket, and the per-key
locks: a striped `threading.Lock` for threads of this process plus an `fcntl.flock` on a
per-stripe lock file, so several processes (uvicorn workers) on one directory serialize.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from shoal.storage import durable
from shoal.storage.durable import Written
from shoal.storage.errors import NoSuchBucket
from shoal.storage.records import dumps, loads

CHUNK = 1 << 20  # bytes per thread hop when streaming


def fsync_dir(path: str) -> None:
    """Make renames and creations inside `path` durable."""
    durable.sync(path, folder=True)


# <linux/fs.h>: inode flags (chattr's), and the one that makes ext4 spread subfolders.
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_TOPDIR_FL = 0x00020000


def spread_subfolders(path: str) -> None:
    """Ask the filesystem to place each new folder in `path` where inodes are free
    (ext4's "top of a directory hierarchy" flag, `chattr +T`); a no-op elsewhere.

    Why: ext4 puts a new file's inode in its folder's block group, and without a
    journal (this project's 2-core machines) it skips, one by one, every inode of that
    group freed in the last minute before it takes a free one. A temp folder placed
    beside recently deleted files (the last run's data, a removed bucket) paid for
    thousands of such checks per file created: a third of a 4 KiB PUT loop's server
    samples sat in `ext4_create`. With the flag, each process's temp folder starts in
    a little-used group, as top-level folders do (`bench/ab.py shoal PUT`: 851 against
    691 PUTs/s). Placement only: nothing about durability or what is stored changes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    except OSError:
        pass  # not supported by this filesystem (tmpfs, overlayfs, ...), or not ours
    finally:
        os.close(fd)


def write_decision(path: str, record: bytes, unsynced: str | None) -> None:
    """A write's decision (storage.commit, storage.journal): `record` written whole and
    fsynced as the new file `path`, then the data file `unsynced` (if any) fsynced, then
    the record's folder, so the record can be found after a crash. One release of the
    GIL for all of it: each release is a hand-over when the loop and other threads want
    the GIL too (storage.durable)."""
    steps: list[durable.Step] = [durable.Create(path, record)]
    if unsynced is not None:
        steps.append(durable.Sync(unsynced, folder=False))
    steps.append(durable.Sync(os.path.dirname(path), folder=True))
    durable.sequence(*steps)


def replace_atomically(path: str, data: bytes, tmp_dir: str, mode: int = 0o644) -> Written:
    """Replace `path` with `data` so readers see the old or the new content, never a mix;
    durable when this returns. Returns the new file's stat."""
    tmp = os.path.join(tmp_dir, secrets.token_hex(8) + ".tmp")
    return durable.replace(tmp, path, data, mode, sync_folder=True)


def read_whole(path: str) -> bytes:
    """A whole file of known kind (a shard) in four system calls: open, fstat, one read
    of its size, close. A file object makes seven (a second fstat, an lseek, a read to
    find the end), and each hands the GIL over and back: with two shards read at once
    on a 2-core VM, that cost more than the reading (0.44 vs 0.12 ms a MiB shard). A
    regular file's read is short only at its end, so one read is the whole file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    """A whole (small) file: a metadata record or sidecar (a listing reads one per key)."""
    return durable.read(path)


def read_json(path: str) -> dict[str, Any]:
    """A JSON record; FileNotFoundError if absent."""
    return loads(read_file(path))


def write_json(path: str, record: dict[str, Any], tmp_dir: str, mode: int = 0o644) -> None:
    replace_atomically(path, dumps(record), tmp_dir, mode)


def data_matches(path: str, record: dict[str, Any]) -> bool:
    """Whether spooled data is what its record describes (size, and MD5 for single PUTs)."""
    try:
        if os.stat(path).st_size != int(record["size"]):
            return False
        etag = str(record["etag"])
        if "-" in etag:
            return True  # multipart data is fsynced before its record is written
        digest = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        return digest.hexdigest() == etag
    except (OSError, KeyError, TypeError, ValueError):
        return False


def missing(path: str) -> bool:
    """Whether nothing is at `path` (False also when a stat cannot tell)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def unlink_all(paths: Iterable[str]) -> None:
    for path in paths:
        unlink_quiet(path)


def rmtree_quiet(path: str) -> None:
    """Delete `path` and everything below it, ignoring errors; symlinks are removed, never
    followed.

    Iterative (an explicit stack): a bucket tree can nest one directory per key segment,
    1,023 deep, where shutil.rmtree (recursive before Python 3.12) raises RecursionError.
    """
    if os.path.islink(path):
        return  # as shutil.rmtree: never through a link
    stack: list[tuple[str, bool]] = [(path, False)]
    while stack:
        top, emptied = stack.pop()
        if emptied:
            with contextlib.suppress(OSError):
                os.rmdir(top)
            continue
        try:
            with os.scandir(top) as it:
                entries = list(it)
        except NotADirectoryError:
            with contextlib.suppress(OSError):
                os.unlink(top)
            continue
        except OSError:
            continue
        stack.append((top, True))  # removed once everything pushed after it is gone
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((entry.path, False))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def makedirs(path: str) -> None:
    """os.makedirs(path, exist_ok=True) without recursion: os.makedirs recurses once per
    missing level and raises RecursionError for a key of ~1,000 segments (Python 3.11)."""
    missing: list[str] = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    if path and not missing:
        return  # the loop's first look found it a folder
    for name in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(name)
    if not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)


def makedirs_below(base: str, dirs: tuple[str, ...] | list[str]) -> None:
    """Create base/dirs... one level at a time; NoSuchBucket if `base` itself is gone.

    Unlike os.makedirs it never re-creates the bucket directory that a concurrent
    delete_bucket just removed, and it fsyncs each parent that gained an entry.
    """
    if not os.path.isdir(base):
        raise NoSuchBucket("The specified bucket does not exist")
    path = base
    for name in dirs:
        child = os.path.join(path, name)
        try:
            os.mkdir(child)
        except FileExistsError:
            pass
        except FileNotFoundError as exc:
            if not os.path.isdir(base):
                raise NoSuchBucket("The specified bucket does not exist") from exc
            raise
        else:
            fsync_dir(path)
        path = child


def remove_empty_parents(path: str, stop: str) -> None:
    """rmdir `path` and its ancestors while empty, never `stop` or above."""
    stop = stop.rstrip(os.sep)
    while path.startswith(stop + os.sep):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass  # a concurrent delete got there first; keep climbing
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise
        path = os.path.dirname(path)


class StripedLocks:
    """Per-name mutual exclusion across threads and processes, in a fixed number of stripes.

    Names hash with CRC32 (stable across processes, unlike `hash`). The flock file
    descriptors are opened lazily and reopened after a fork, because flock locks belong
    to the open file description, which a forked child would share.
    """

    def __init__(self, lock_dir: str, stripes: int = 256) -> None:
        self.lock_dir = lock_dir
        self.stripes = stripes
        self._locks = [threading.Lock() for _ in range(stripes)]
        self._fds: list[int | None] = [None] * stripes
        self._pid = os.getpid()

    def stripe(self, name: str) -> int:
        return zlib.crc32(name.encode("utf-8", "surrogatepass")) % self.stripes

    def _fd(self, i: int) -> int:
        if self._pid != os.getpid():
            self._fds = [None] * self.stripes
            self._pid = os.getpid()
        fd = self._fds[i]
        if fd is None:
            os.makedirs(self.lock_dir, exist_ok=True)
            path = os.path.join(self.lock_dir, f"{i:03d}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            self._fds[i] = fd
        return fd

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Exclusive hold of `name`'s stripe (blocking: call from a worker thread)."""
        i = self.stripe(name)
        with self._locks[i]:
            fd = self._fd(i)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        for i, fd in enumerate(self._fds):
            if fd is not None:
                with self._locks[i]:
                    os.close(fd)
                    self._fds[i] = None


def object_lock_name(bucket: str, key: str) -> str:
    return f"o\0{bucket}\0{key}"


def bucket_lock_name(bucket: str) -> str:
    """Held while a bucket is created or deleted, and while its record changes."""
    return f"b\0{bucket}"


def part_lock_name(upload_id: str, number: int) -> str:
    return f"p\0{upload_id}\0{number}"
