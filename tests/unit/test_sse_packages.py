"""The sealed package format (shoal.sse.packages): round trips of any size and chunking,
ranged opens equal to the plaintext slice, and every kind of tampering refused."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from shoal.sse import packages
from shoal.sse.errors import TamperedError
from shoal.sse.packages import (
    BATCH,
    HEADER,
    PACKAGE,
    SEALED_PACKAGE,
    TAG,
    Opener,
    Sealer,
    open_range,
    package_count,
    plain_length,
    seal_stream,
    sealed_length,
    sealed_span,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ID = b"0"

#: Sizes around every interesting boundary, plus anything up to four packages.
sizes = st.one_of(
    st.sampled_from([0, 1, PACKAGE - 1, PACKAGE, PACKAGE + 1, 2 * PACKAGE, 3 * PACKAGE]),
    st.integers(0, 4 * PACKAGE + 100),
)


def plaintext(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def cut(data: bytes, rnd: random.Random) -> list[bytes]:
    """`data` in chunks of random sizes (some empty, some spanning packages)."""
    out, pos = [], 0
    while pos < len(data):
        n = rnd.choice([0, 1, 7, TAG, PACKAGE - 1, PACKAGE, PACKAGE + TAG, 3 * PACKAGE])
        out.append(data[pos : pos + n])
        pos += n
    return out


def seal(plain: bytes, key: bytes = KEY, identity: bytes = ID, chunks: int = 0) -> bytes:
    sealer = Sealer(key, identity)
    parts = cut(plain, random.Random(chunks)) if chunks else [plain]
    return b"".join(sealer.update(p) for p in parts) + sealer.finish()


def open_all(sealed: bytes, plain_size: int, key: bytes = KEY, identity: bytes = ID) -> bytes:
    opener = Opener(key, identity, sealed[:HEADER], plain_size, 0)
    out = [opener.update(p) for p in cut(sealed[HEADER:], random.Random(plain_size))]
    return b"".join(out) + opener.finish()


async def run(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def reader(sealed: bytes, chunk: int) -> Callable[[int, int], AsyncIterator[bytes]]:
    async def read(s: int, e: int) -> AsyncIterator[bytes]:
        for pos in range(s, e + 1, chunk):
            yield sealed[pos : min(pos + chunk, e + 1)]

    return read


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


# ---------------------------------------------------------------- lengths


@given(sizes)
def test_lengths_invert(n: int) -> None:
    assert plain_length(sealed_length(n)) == n
    assert sealed_length(n) == HEADER + n + TAG * package_count(n)


def test_impossible_lengths_are_refused() -> None:
    possible = {sealed_length(n) for n in range(3 * PACKAGE + 2)}
    for length in range(0, sealed_length(3 * PACKAGE + 1)):
        if length in possible:
            assert sealed_length(plain_length(length)) == length
        else:
            with pytest.raises(ValueError):
                plain_length(length)


# ---------------------------------------------------------------- round trips


@given(sizes, st.integers(0, 1000))
def test_round_trip_any_size_any_chunking(n: int, seed: int) -> None:
    plain = plaintext(n, seed)
    sealed = seal(plain, chunks=seed + 1)
    assert len(sealed) == sealed_length(n)
    assert open_all(sealed, n) == plain


def test_equal_plaintexts_seal_differently() -> None:
    """A fresh salt per stream: the same key and plaintext never give the same bytes."""
    plain = plaintext(1000)
    assert seal(plain) != seal(plain)
    assert plain not in seal(plain)


@given(sizes, st.data())
def test_any_range_opens_to_the_slice(n: int, data: st.DataObject) -> None:
    if n == 0:
        return
    plain = plaintext(n, n)
    sealed = seal(plain)
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start, n - 1))
    s, e, skip = sealed_span(start, end, n)
    assert s >= HEADER and (s - HEADER) % SEALED_PACKAGE == 0
    assert e < len(sealed)
    opener = Opener(KEY, ID, sealed[:HEADER], n, start // PACKAGE, last_package=end // PACKAGE)
    opened = opener.update(sealed[s : e + 1]) + opener.finish()
    assert opened[skip : skip + end - start + 1] == plain[start : end + 1]

    chunk = data.draw(st.sampled_from([1000, PACKAGE, SEALED_PACKAGE + 3, BATCH + 5]))
    got = asyncio.run(collect(open_range(reader(sealed, chunk), KEY, ID, n, start, end, run)))
    assert got == plain[start : end + 1]


def test_range_reads_only_the_packages_it_touches() -> None:
    n = 5 * PACKAGE
    sealed = seal(plaintext(n))
    asked: list[tuple[int, int]] = []
    read = reader(sealed, PACKAGE)

    def spy(s: int, e: int) -> AsyncIterator[bytes]:
        asked.append((s, e))
        return read(s, e)

    start, end = 2 * PACKAGE - 1, 2 * PACKAGE  # straddles packages 1 and 2
    asyncio.run(collect(open_range(spy, KEY, ID, n, start, end, run)))
    assert asked == [(0, HEADER - 1), (HEADER + SEALED_PACKAGE, HEADER + 3 * SEALED_PACKAGE - 1)]


def test_empty_stream_opens_whole_and_is_authenticated() -> None:
    sealed = seal(b"")
    assert len(sealed) == HEADER + TAG
    assert asyncio.run(collect(open_range(reader(sealed, 7), KEY, ID, 0, 0, -1, run))) == b""
    bad = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(TamperedError):
        asyncio.run(collect(open_range(reader(bad, 7), KEY, ID, 0, 0, -1, run)))


@given(st.sampled_from([0, 1, PACKAGE, 20 * PACKAGE + 3]))
def test_seal_stream_hashes_plaintext_and_opens(n: int) -> None:
    plain = plaintext(n)
    seen: list[bytes] = []
    calls = 0

    async def counting(fn: Callable[..., Any], *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return fn(*args)

    async def body() -> AsyncIterator[bytes]:
        for pos in range(0, n, 8192):
            yield plain[pos : pos + 8192]

    async def pieces() -> list[bytes]:
        return [p async for p in seal_stream(body(), KEY, ID, counting, seen.append)]

    out = asyncio.run(pieces())
    assert max(len(p) for p in out) < BATCH + 2 * SEALED_PACKAGE  # memory: one batch
    sealed = b"".join(out)
    assert b"".join(seen) == plain
    assert open_all(sealed, n) == plain
    assert calls == n // BATCH + 1  # ~1 MiB per hop, never one hop per package


# ---------------------------------------------------------------- tampering


def refused(sealed: bytes, plain_size: int, key: bytes = KEY, identity: bytes = ID) -> None:
    with pytest.raises(TamperedError):
        open_all(sealed, plain_size, key, identity)


@given(sizes, st.data())
def test_any_bit_flip_is_refused(n: int, data: st.DataObject) -> None:
    sealed = bytearray(seal(plaintext(n)))
    pos = data.draw(st.integers(0, len(sealed) - 1))
    sealed[pos] ^= 1 << data.draw(st.integers(0, 7))
    refused(bytes(sealed), n)


@given(st.integers(PACKAGE + 1, 4 * PACKAGE), st.data())
def test_any_truncation_is_refused(n: int, data: st.DataObject) -> None:
    sealed = seal(plaintext(n))
    length = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(TamperedError):
        if length < HEADER:
            Opener(KEY, ID, sealed[:length], n, 0)
        else:
            open_all(sealed[:length], n)


@given(st.integers(1, 4))
def test_dropping_trailing_packages_is_refused_even_with_a_matching_size(full: int) -> None:
    """Cut at a package boundary AND the recorded size changed to match: the package
    left last was sealed as non-final, so it does not open as the last."""
    n = full * PACKAGE + 10
    sealed = seal(plaintext(n))
    for keep in range(1, full + 1):
        cut_at = HEADER + keep * SEALED_PACKAGE
        refused(sealed[:cut_at], n)
        refused(sealed[:cut_at], keep * PACKAGE)


def test_bytes_after_the_final_package_are_refused() -> None:
    for n in (0, 5, PACKAGE):
        refused(seal(plaintext(n)) + b"\0", n)
        refused(seal(plaintext(n)) + seal(plaintext(n))[HEADER:], n)


def test_reordered_packages_are_refused() -> None:
    n = 3 * PACKAGE
    sealed = seal(plaintext(n))
    p = [sealed[HEADER + i * SEALED_PACKAGE : HEADER + (i + 1) * SEALED_PACKAGE] for i in range(3)]
    refused(sealed[:HEADER] + p[1] + p[0] + p[2], n)
    refused(sealed[:HEADER] + p[0] + p[2] + p[1], n)


def test_packages_and_parts_do_not_move_between_streams() -> None:
    n = 2 * PACKAGE
    a, b = seal(plaintext(n, 1)), seal(plaintext(n, 2))
    refused(a[:HEADER] + b[HEADER:], n)  # same key and identity, another stream's salt
    refused(a[: HEADER + SEALED_PACKAGE] + b[HEADER + SEALED_PACKAGE :], n)
    part1 = seal(plaintext(n), identity=b"1")
    refused(part1, n, identity=b"2")  # a part swapped into another part's place
    refused(part1, n, key=OTHER_KEY, identity=b"1")


def test_ranged_open_of_a_tampered_package_is_refused() -> None:
    n = 3 * PACKAGE
    sealed = bytearray(seal(plaintext(n)))
    sealed[HEADER + SEALED_PACKAGE + 5] ^= 0x80  # inside package 1
    with pytest.raises(TamperedError):
        asyncio.run(
            collect(open_range(reader(bytes(sealed), 999), KEY, ID, n, PACKAGE, PACKAGE, run))
        )
    got = asyncio.run(collect(open_range(reader(bytes(sealed), 999), KEY, ID, n, 0, 9, run)))
    assert got == plaintext(n)[:10]  # package 0 untouched, still opens


def test_short_read_of_a_range_is_refused() -> None:
    n = 3 * PACKAGE
    sealed = seal(plaintext(n))
    short = sealed[: HEADER + 2 * SEALED_PACKAGE - 1]  # storage returned too little
    with pytest.raises(TamperedError):
        asyncio.run(collect(open_range(reader(short, 4096), KEY, ID, n, 0, 2 * PACKAGE - 1, run)))


def test_unknown_version_is_refused() -> None:
    sealed = seal(b"abc")
    refused(bytes([2]) + sealed[1:], 3)


def test_wrong_key_sizes_are_errors_not_silence() -> None:
    with pytest.raises(ValueError):
        Sealer(b"short", ID)
    with pytest.raises(ValueError):
        sealed_span(0, 10, 10)


def test_opener_returns_every_complete_package_at_once() -> None:
    """Fed many packages at once, an Opener returns all of them, holding back only the
    incomplete last one."""
    n = 10 * PACKAGE + 1
    sealed = seal(plaintext(n))
    opener = Opener(KEY, ID, sealed[:HEADER], n, 0)
    assert opener.update(sealed[HEADER:-1]) == plaintext(n)[: 10 * PACKAGE]
    assert opener.update(sealed[-1:]) == plaintext(n)[10 * PACKAGE :]
    assert opener.finish() == b""


def test_the_documented_format_byte_for_byte() -> None:
    """The sealed bytes follow sse/packages.py's docstring exactly (a reader built from
    that text alone opens them), and stay what they were: objects already stored must
    open after any refactor."""
    data_key, identity, plain = bytes(range(32, 64)), b"\x00\x00\x00\x07", b"shoal" * 20000
    with mock.patch.object(packages.os, "urandom", lambda n: bytes(range(n))):
        sealer = packages.Sealer(data_key, identity)
        sealed = sealer.update(plain) + sealer.finish()
    assert hashlib.sha256(sealed).hexdigest() == KNOWN_ANSWER
    assert sealed[0] == 1 and sealed[1:33] == bytes(range(32))
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=sealed[1:33],
        info=b"shoal-sse-v1 stream" + identity,
    ).derive(data_key)
    body, out, i = sealed[33:], b"", 0
    while body:
        package, body = body[: 65536 + 16], body[65536 + 16 :]
        aad = bytes([0 if body else 1]) + i.to_bytes(8, "big") + identity
        out += AESGCM(key).decrypt(i.to_bytes(12, "big"), package, aad)
        i += 1
    assert out == plain and i == 2


#: SHA-256 of the stream sealed in test_the_documented_format_byte_for_byte.
KNOWN_ANSWER = "48b478b5a78aae507822dfd5d213d5aa9c69fec6db2e16a46c7fd4c2f571ee6e"
