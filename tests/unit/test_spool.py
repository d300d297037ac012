"""storage.streams.spool: a body written, hashed and flushed along the way on three
chains of worker threads comes out whole, in order, and a failed one leaves no file."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.storage import streams
from shoal.storage.checksums import Checksum
from shoal.storage.diskio import CHUNK

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
