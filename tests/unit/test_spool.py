"""storage.streams.spool: a body written, hashed (each digest on its own chain) and
flushed along the way on chains of worker threads comes out whole, in order, the
digests side by side, and a failed one leaves no file. An erasure-coded write digests
its chunks side by side too (storage.erasure.shards)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage import streams
from shoal.storage.checksums import Checksum
from shoal.storage.diskio import CHUNK
from shoal.storage.erasure.coder import ErasureCoder
from shoal.storage.erasure.drive import LocalDrive
from shoal.storage.erasure.shards import DIGESTS_AHEAD, ON_LOOP, ChunkWriter, encode_whole

pytestmark = pytest.mark.anyio


async def pieces(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """`data` in uneven pieces (as a socket hands them over); raises after `fail_after`
    bytes if given."""
    rnd, at = random.Random(7), 0
    while at < len(data):
        if fail_after is not None and at >= fail_after:
            raise ConnectionResetError("client went away")
        n = rnd.randint(1, 3 * CHUNK // 2)
        yield data[at : at + n]
        at += n


async def test_a_body_flushed_along_the_way_is_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "SYNC_EVERY", CHUNK)  # a flush every buffer or so
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    data = random.Random(1).randbytes(9 * CHUNK + 12345)
    sha = Checksum("SHA256")
    out = await streams.spool(pieces(data), str(tmp_path / "body"), [sha], None)
    assert (tmp_path / "body").read_bytes() == data
    assert out.size == len(data) and out.md5 == hashlib.md5(data).hexdigest()
    assert sha.digest() == hashlib.sha256(data).digest()
    assert len(synced) >= 5  # flushed on the way, not only at the end


async def test_a_body_that_fails_midway_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "SYNC_EVERY", CHUNK)
    data = random.Random(2).randbytes(6 * CHUNK)
    with pytest.raises(ConnectionResetError):
        await streams.spool(pieces(data, fail_after=4 * CHUNK), str(tmp_path / "b"), [], None)
    assert not (tmp_path / "b").exists()


class _Waiting:
    """A digester whose first update waits (bounded) until `other` has seen a buffer."""

    def __init__(self, other: threading.Event) -> None:
        self.other, self.sha = other, hashlib.sha256()
        self.overlapped: bool | None = None

    def update(self, data: bytes) -> None:
        if self.overlapped is None:
            self.overlapped = self.other.wait(timeout=10)
        self.sha.update(data)


class _Signalling:
    def __init__(self) -> None:
        self.seen, self.sha = threading.Event(), hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.seen.set()
        self.sha.update(data)


async def test_the_digests_run_side_by_side(tmp_path: Path) -> None:
    """MD5 beside a signed payload's SHA-256 or a checksum: one digest never waits for
    another (the first digester here waits for the second; hashed in turn, it would
    time out)."""
    data = random.Random(3).randbytes(4 * CHUNK + 7)
    second = _Signalling()
    first = _Waiting(second.seen)
    out = await streams.spool(pieces(data), str(tmp_path / "b"), [first, second], None)
    assert first.overlapped
    assert first.sha.digest() == second.sha.digest() == hashlib.sha256(data).digest()
    assert out.md5 == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("size", [ON_LOOP + 1, 2 * CHUNK + 5])
async def test_an_erasure_chunk_is_digested_side_by_side(tmp_path: Path, size: int) -> None:
    """The same for an erasure-coded write's chunks: a body that fits one chunk
    (encode_whole) and one cut into several (ChunkWriter, the digests of chunk after
    chunk, each in order)."""
    coder = ErasureCoder(4, 2)
    data = random.Random(4).randbytes(size)
    second = _Signalling()
    first = _Waiting(second.seen)
    if size < CHUNK:
        md5, _, _ = await encode_whole(coder, data, [first, second])
    else:
        drives = [LocalDrive(str(tmp_path / f"d{i}")) for i in range(6)]
        for d in drives:
            Path(d.root).mkdir(parents=True)
        writer = ChunkWriter(drives, coder, "data/b/k", 0, "b/k", [first, second])
        try:
            for at in range(0, size, CHUNK):
                await writer.add(data[at : at + CHUNK])
            await writer.finish()
        finally:
            for d in drives:
                d.close()
        md5 = writer.md5
    assert first.overlapped
    assert first.sha.digest() == second.sha.digest() == hashlib.sha256(data).digest()
    assert md5 == hashlib.md5(data).hexdigest()


class _Gate:
    """A digester whose first update waits (bounded) until the test opens the gate."""

    def __init__(self) -> None:
        self.open, self.sha = threading.Event(), hashlib.sha256()
        self.opened: bool | None = None

    def update(self, data: bytes) -> None:
        if self.opened is None:
            self.opened = self.open.wait(timeout=10)
        self.sha.update(data)


async def test_an_erasure_chunk_s_digests_do_not_hold_up_the_next_chunks(
    tmp_path: Path,
) -> None:
    """A chunk's digests run while the next chunks are taken, encoded and written: here
    the first digest is held until DIGESTS_AHEAD chunks have been added. Awaited chunk
    by chunk (as before), the first add would wait for it until the gate timed out."""
    coder = ErasureCoder(4, 2)
    data = random.Random(5).randbytes(DIGESTS_AHEAD * CHUNK - 3)
    gate = _Gate()
    drives = [LocalDrive(str(tmp_path / f"d{i}")) for i in range(6)]
    for d in drives:
        Path(d.root).mkdir(parents=True)
    writer = ChunkWriter(drives, coder, "data/b/k", 0, "b/k", [gate])
    try:
        for at in range(0, len(data), CHUNK):
            await writer.add(data[at : at + CHUNK])
        gate.open.set()
        await writer.finish()
    finally:
        for d in drives:
            d.close()
    assert gate.opened
    assert gate.sha.digest() == hashlib.sha256(data).digest()
    assert writer.md5 == hashlib.md5(data).hexdigest()
    assert writer.size == len(data) and len(writer.crcs) == DIGESTS_AHEAD
