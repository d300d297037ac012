"""Throughput of the sealed-stream code (shoal.sse.packages) against raw AES-GCM.

Seals SIZE bytes through `seal_stream` (plaintext fed in BODY_CHUNK pieces, as an
HTTP body arrives) and opens them all back through `open_range` (sealed bytes read in
READ_CHUNK pieces, as storage streams them), with an offload that runs the work inline:
the figures are the crypto code's own cost, not thread hops. The raw ceiling is
`AESGCM.encrypt` / `decrypt` of whole 64 KiB packages, same run. Each figure is the
best of ROUNDS (the machine is shared; the best run is the least disturbed one).

    .venv/bin/python bench/sse_packages.py [MiB]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal.sse.packages import PACKAGE, open_range, seal_stream

BODY_CHUNK = 64 * 1024
READ_CHUNK = 1 << 20
ROUNDS = 3
MIB = 1 << 20


async def inline(fn: Any, *args: Any) -> Any:
    return fn(*args)


def body(block: bytes, size: int) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, size, BODY_CHUNK):
            yield block[: min(BODY_CHUNK, size - at)]

    return chunks()


async def seal(block: bytes, size: int, key: bytes) -> float:
    """Seconds to seal; the output is dropped as it comes, as storage writes it out."""
    got = 0
    t = time.perf_counter()
    async for piece in seal_stream(body(block, size), key, b"\x00", inline):
        got += len(piece)
    assert got > size
    return time.perf_counter() - t


async def open_all(sealed: bytes, size: int, key: bytes) -> float:
    view = memoryview(sealed)

    async def read(s: int, e: int) -> AsyncIterator[bytes]:
        for at in range(s, e + 1, READ_CHUNK):
            yield bytes(view[at : min(at + READ_CHUNK, e + 1)])

    got = 0
    t = time.perf_counter()
    async for piece in open_range(read, key, b"\x00", size, 0, size - 1, inline):
        got += len(piece)
    assert got == size
    return time.perf_counter() - t


def raw(block: bytes, size: int, key: bytes) -> tuple[float, float]:
    aead = AESGCM(key)
    plain = block[:PACKAGE]
    count = size // PACKAGE
    t = time.perf_counter()
    for i in range(count):
        sealed = aead.encrypt(i.to_bytes(12, "big"), plain, b"aad")
    enc = time.perf_counter() - t
    nonce = (count - 1).to_bytes(12, "big")
    t = time.perf_counter()
    for _ in range(count):
        aead.decrypt(nonce, sealed, b"aad")
    return enc, time.perf_counter() - t


async def main(size: int) -> None:
    key = os.urandom(32)
    block = os.urandom(BODY_CHUNK)
    best = {"seal_stream": 1e9, "open_range": 1e9, "raw encrypt": 1e9, "raw decrypt": 1e9}
    sealed = b"".join([p async for p in seal_stream(body(block, size), key, b"\x00", inline)])
    for _ in range(ROUNDS):
        enc, dec = raw(block, size, key)
        t_seal = await seal(block, size, key)
        t_open = await open_all(sealed, size, key)
        for name, t in zip(best, (t_seal, t_open, enc, dec), strict=True):
            best[name] = min(best[name], t)
    print(f"{size // MIB} MiB; body chunks {BODY_CHUNK >> 10} KiB; reads {READ_CHUNK >> 10} KiB")
    for name, t in best.items():
        print(f"{name:12} {size / MIB / t:8.0f} MiB/s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1] if len(sys.argv) > 1 else 256) * MIB))
