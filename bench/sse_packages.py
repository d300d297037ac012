"""CPU cost of the sealed-stream code (shoal.sse.packages) against raw AES-GCM.

Seals SIZE bytes through `seal_stream` (plaintext fed in BODY_CHUNK pieces, as an
HTTP body arrives) and opens them all back through `open_range` (sealed bytes read in
READ_CHUNK pieces, as storage streams them), with an offload that runs the work inline
and inputs cut before the clock starts: the figures are the crypto code's own cost,
not thread hops or the bench's. The raw ceiling is `AESGCM.encrypt` / `decrypt` of
whole 64 KiB packages, same run. Figures are MiB per CPU second (process time, so a
busy shared machine disturbs them less than wall time), the best of ROUNDS.

    .venv/bin/python bench/sse_packages.py [MiB [body chunk bytes [read chunk bytes]]]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal.sse.packages import HEADER, PACKAGE, open_range, seal_stream

ROUNDS = 4
MIB = 1 << 20
ID = b"\x00"


async def inline(fn: Any, *args: Any) -> Any:
    return fn(*args)


def pieces(data: bytes, chunk: int) -> list[bytes]:
    return [data[at : at + chunk] for at in range(0, len(data), chunk)]


async def seal(chunks: list[bytes], key: bytes, keep: bool) -> tuple[bytes, float]:
    """The sealed stream (if `keep`; else dropped as it comes) and the CPU seconds."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    out, got = [], 0
    t = time.process_time()
    async for piece in seal_stream(body(), key, ID, inline):
        got += len(piece)
        if keep:
            out.append(piece)
    return b"".join(out), time.process_time() - t


async def open_all(sealed: bytes, size: int, key: bytes, chunk: int) -> float:
    header, body = sealed[:HEADER], pieces(sealed[HEADER:], chunk)

    async def read(s: int, e: int) -> AsyncIterator[bytes]:
        for piece in [header] if s == 0 else body:
            yield piece

    got = 0
    t = time.process_time()
    async for piece in open_range(read, key, ID, size, 0, size - 1, inline):
        got += len(piece)
    assert got == size
    return time.process_time() - t


def raw(size: int, key: bytes) -> tuple[float, float]:
    aead = AESGCM(key)
    plain = os.urandom(PACKAGE)
    count = size // PACKAGE
    t = time.process_time()
    for i in range(count):
        sealed = aead.encrypt(i.to_bytes(12, "big"), plain, b"aad")
    enc = time.process_time() - t
    nonce = (count - 1).to_bytes(12, "big")
    t = time.process_time()
    for _ in range(count):
        aead.decrypt(nonce, sealed, b"aad")
    return enc, time.process_time() - t


async def main(size: int, body_chunk: int, read_chunk: int) -> None:
    key = os.urandom(32)
    chunks = pieces(os.urandom(size), body_chunk)
    sealed = (await seal(chunks, key, keep=True))[0]
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        enc, dec = raw(size, key)
        times = {
            "seal_stream": (await seal(chunks, key, keep=False))[1],
            "open_range": await open_all(sealed, size, key, read_chunk),
            "raw encrypt": enc,
            "raw decrypt": dec,
        }
        best = {name: min(t, best.get(name, t)) for name, t in times.items()}
    print(f"{size // MIB} MiB; body chunks {body_chunk} B; reads {read_chunk} B; best of {ROUNDS}")
    for name, t in best.items():
        print(f"{name:12} {size / MIB / t:8.0f} MiB/s (per CPU second)")


if __name__ == "__main__":
    mib, body_chunk, read_chunk = [int(a) for a in sys.argv[1:]] + [256, 64 * 1024, MIB][
        len(sys.argv) - 1 :
    ]
    asyncio.run(main(mib * MIB, body_chunk, read_chunk))
