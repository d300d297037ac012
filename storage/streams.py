"""Streaming bodies to and from disk without holding them in memory.

Incoming chunks are coalesced into ~1 MiB buffers on the event loop; each buffer is
written on one worker thread while another MD5-hashes it and feeds the request's
digesters (two in-order chains, so hashing and the disk overlap), so the loop never
hashes and memory stays bounded whatever the object size. A large body is flushed to
the disk as it arrives (spool), so its final fsync is short. Reads use pread on a
descriptor opened while the key's lock was held, so a reader keeps seeing the version
it opened even if the key is overwritten or deleted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

import anyio

from shoal.storage import durable, quickread
from shoal.storage.abandon import reap
from shoal.storage.backend import Digester, ObjectMeta
from shoal.storage.diskio import CHUNK, unlink_quiet
from shoal.storage.errors import EntityTooLarge
from shoal.storage.threads import Chain, run

#: Received buffers that may wait for the disk while more arrive (memory: AHEAD MiB).
AHEAD = 3
#: A spooled body is flushed to the disk (fdatasync) every this many bytes (see spool).
SYNC_EVERY = 32 * CHUNK


@dataclass
class Spooled:
    """A body written durably to a temporary file."""

    path: str
    size: int
    md5: str
    inode: tuple[int, int]  # (st_dev, st_ino), identifies this data after renames
    synced: bool = True  # False: the caller must fsync before committing


def _write_all(fd: int, data: bytes, hashers: Sequence[Digester]) -> None:
    _hash_all(hashers, data)
    durable.write_all(fd, data)


def _hash_all(hashers: Sequence[Digester], data: bytes) -> None:
    for h in hashers:
        h.update(data)


def _finish(fd: int) -> tuple[int, int]:
    os.fsync(fd)
    st = os.fstat(fd)
    os.close(fd)
    return st.st_dev, st.st_ino


async def read_head(
    chunks: AsyncIterator[bytes], limit: int, max_size: int | None
) -> tuple[bytes, bool]:
    """Up to about `limit` bytes of a body, and whether more follows."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(bytes(chunk))
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
        if size >= limit:
            return b"".join(parts), True
    return b"".join(parts), False


async def prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`head`, then `rest`; lets go of `head` once it is handed on (a chunk's worth)."""
    if head:
        yield head
    del head
    async for chunk in rest:
        yield chunk


def write_unsynced(path: str, data: bytes, digesters: Sequence[Digester]) -> Spooled:
    """A small body written whole (blocking), hashed, not yet fsynced."""
    md5 = hashlib.md5()
    _hash_all([md5, *digesters], data)
    st = durable.create(path, data, sync=False)
    return Spooled(path, len(data), md5.hexdigest(), (st.st_dev, st.st_ino), synced=False)


async def spool(
    body: AsyncIterable[bytes],
    path: str,
    digesters: Sequence[Digester],
    max_size: int | None,
) -> Spooled:
    """Write `body` to the new file `path`, fsynced; the file is removed on any failure.

    Buffers are written on a worker thread and hashed on others, one per digest (MD5,
    and a signed payload's SHA-256 or a checksum beside it: ~0.7-1.7 GB/s each on one
    core, they no longer add up), each strictly in order, while the next ones are
    received: up to AHEAD buffers wait, so the network, the disk and the digests
    overlap instead of taking turns. Every SYNC_EVERY bytes another chain flushes what
    is written so far (fdatasync) while writing goes on: flushing a large body takes
    long (256 MiB: ~0.3 s on a 2-core VM's disk), and done only at the end it adds to
    the upload's time instead of overlapping it. The final fsync still makes the whole
    file durable, as before.
    """
    md5 = hashlib.md5()
    hashers: list[Digester] = [md5, *digesters]
    fd = await run(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    size = unsynced = 0
    pending: list[bytes] = []
    pending_len = 0
    writes, syncs = Chain(), Chain()
    hashes = [(h, Chain()) for h in hashers]

    def submit(data: bytes) -> None:
        nonlocal unsynced
        writes.submit(durable.write_all, fd, data)
        for hasher, chain in hashes:
            chain.submit(hasher.update, data)
        unsynced += len(data)
        if unsynced >= SYNC_EVERY:
            syncs.submit(os.fdatasync, fd, after=writes.queue[-1])
            unsynced = 0

    chains = (writes, syncs, *(chain for _, chain in hashes))
    try:
        async for chunk in body:
            if not chunk:
                continue
            size += len(chunk)
            if max_size is not None and size > max_size:
                raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
            pending.append(bytes(chunk))
            pending_len += len(chunk)
            if pending_len >= CHUNK:
                for chain in chains:  # (the flushes too: their queue stays bounded)
                    await chain.make_room(AHEAD)
                submit(b"".join(pending))
                pending, pending_len = [], 0
        if pending:
            submit(b"".join(pending))
        for chain in chains:
            await chain.make_room(1)
        inode = await run(_finish, fd)
        fd = -1
    except BaseException:
        with anyio.CancelScope(shield=True):
            # Never close the descriptor under a write still in progress.
            for chain in chains:
                await chain.reap("a write to a temporary file")
            if fd >= 0:
                os.close(fd)
            await run(unlink_quiet, path)
        raise
    return Spooled(path, size, md5.hexdigest(), inode)


def _copy_plain(src: int, dst: int, digesters: Sequence[Digester]) -> int:
    total = 0
    while True:
        data = os.read(src, CHUNK)
        if not data:
            return total
        _write_all(dst, data, digesters)
        total += len(data)


def _copy_fast(src: int, dst: int) -> int:
    """copy_file_range (in-kernel, reflinks where supported); falls back to read/write."""
    total = 0
    copy = getattr(os, "copy_file_range", None)
    while copy is not None:
        try:
            n = copy(src, dst, 64 * CHUNK)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                break
            raise
        if n == 0:
            return total
        total += n
    return total + _copy_plain(src, dst, ())


def assemble(out_path: str, sources: Sequence[str], digesters: Sequence[Digester]) -> Spooled:
    """Concatenate `sources` into the new file `out_path`, fsynced (blocking: run in a thread).

    Digesters see every byte, so with any of them the copy goes through user space;
    without, the kernel copies. The MD5 field is left empty (multipart ETags are made
    from the parts' MD5s).
    """
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        size = 0
        for src_path in sources:
            src = os.open(src_path, os.O_RDONLY)
            try:
                size += _copy_plain(src, fd, digesters) if digesters else _copy_fast(src, fd)
            finally:
                os.close(src)
        inode = _finish(fd)
        fd = -1
    except BaseException:
        if fd >= 0:
            os.close(fd)
        unlink_quiet(out_path)
        raise
    return Spooled(out_path, size, "", inode)


#: Bytes per read (and thread hop) of a GET streaming a file: with 2 MiB instead of
#: 1 MiB a 256 MiB GET ran ~17 % faster (3,522 vs 3,009 MB/s, bench/ab.py shoal bigget,
#: 6 rounds), for 2 MiB more memory per GET in progress (the read sent and the one
#: ahead); 4 MiB reads gained no more.
READ_CHUNK = 2 * CHUNK


class FileObjectReader:
    """An open object: the metadata and the descriptor captured together under the key lock."""

    def __init__(self, fd: int, meta: ObjectMeta, data: bytes | None = None) -> None:
        self._fd = fd
        self.meta = meta
        self._data = data  # the whole object, when it was read at open

    async def stream(
        self, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes | memoryview]:
        """Bytes [start, end] inclusive, READ_CHUNK per chunk: what the page cache holds
        read right here (storage.quickread.read_cached_at: it never waits for the disk),
        the rest in a worker thread. A 256 MiB GET of a cached object ran ~20 % faster
        without the thread hop per chunk (bench/ab.py shoal bigget, 6 rounds: 3,495 vs
        2,910 MB/s), as the raw ASGI baseline reads on its loop."""
        last = self.meta.size - 1 if end is None else min(end, self.meta.size - 1)
        pos = max(start, 0)
        if self._data is not None:
            if pos <= last:
                yield self._data[pos : last + 1]
            return
        if self._fd < 0:
            raise ValueError("reader is closed")
        # The next chunk is read while the caller sends this one.
        ahead = self._read_ahead(pos, last)
        try:
            while ahead is not None:
                data = await ahead
                ahead = None
                if not data:
                    raise OSError(errno.EIO, "object data is shorter than its metadata says")
                pos += len(data)
                ahead = self._read_ahead(pos, last)
                yield data
        finally:
            if ahead is not None:
                # Never let close() shut the descriptor under a read in progress.
                with anyio.CancelScope(shield=True):
                    await reap(ahead, "reading ahead")

    def _read_ahead(self, pos: int, last: int) -> asyncio.Future[bytes | memoryview] | None:
        if pos > last:
            return None
        size = min(READ_CHUNK, last + 1 - pos)
        cached = quickread.read_cached_at(self._fd, size, pos)
        if cached is not None:
            done: asyncio.Future[bytes | memoryview] = asyncio.get_running_loop().create_future()
            done.set_result(cached)
            return done
        return asyncio.ensure_future(run(os.pread, self._fd, size, pos))

    async def read_all(self) -> bytes:
        """The whole object; for small objects and tests only."""
        return b"".join([chunk async for chunk in self.stream()])

    async def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    async def __aenter__(self) -> FileObjectReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __del__(self) -> None:
        # Last resort against descriptor leaks if a caller forgets close().
        if getattr(self, "_fd", -1) >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
