"""app/sealing.py against a real FileStore: a write's digests and finalize see the
plaintext while the store holds only ciphertext, ranged reads of single and multipart
objects open only what they touch, and an assembled object's plaintext is recovered
for whole-object checksums."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.app.sealing import OpeningDigester, PlainReader, seal_write
from shoal.app.sse import Choice, identity, new_record
from shoal.sse.errors import TamperedError
from shoal.sse.keyring import Keyring
from shoal.sse.packages import PACKAGE, Sealer, sealed_length
from shoal.storage.backend import CompletedPart, ObjectWrite
from shoal.storage.errors import EntityTooLarge
from shoal.storage.filestore import FileStore

KEYRING = Keyring({"key-1": b"1" * 32})
pytestmark = pytest.mark.anyio


async def chunked(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize("algorithm", ["AES256", "aws:kms"])
async def test_put_seals_and_reads_back(store: FileStore, algorithm: str) -> None:
    body = os.urandom(3 * PACKAGE + 123)
    record, data_key = new_record(KEYRING, Choice(algorithm, "key-1"), "bucket", "k")
    seen = hashlib.sha256()
    finalized: list[tuple[int, str]] = []

    def finalize(size: int, md5: str) -> dict[str, str]:
        finalized.append((size, md5))
        return {"SHA256": "x"}

    write = ObjectWrite(digesters=[seen], finalize=finalize, max_size=len(body))
    meta = await store.put_object(
        "bucket", "k", seal_write(write, chunked(body), record, data_key), write
    )
    assert meta.size == sealed_length(len(body)) and meta.shown_size == len(body)
    assert finalized == [(len(body), hashlib.md5(body).hexdigest())]
    assert seen.digest() == hashlib.sha256(body).digest()
    assert meta.encryption is not None and meta.checksums == {"SHA256": "x"}
    md5 = hashlib.md5(body).hexdigest()
    assert (meta.shown_etag == md5) == (algorithm == "AES256")
    reader = PlainReader(await store.open_object("bucket", "k"), data_key)
    try:
        assert reader.meta.size == len(body)
        assert await read_all(reader.stream()) == body
        for start, end in [(0, 0), (PACKAGE - 1, PACKAGE), (PACKAGE, 2 * PACKAGE - 1)]:
            assert await read_all(reader.stream(start, end)) == body[start : end + 1]
    finally:
        await reader.close()


async def test_max_size_counts_plaintext(store: FileStore) -> None:
    record, data_key = new_record(KEYRING, Choice("AES256", "key-1"), "bucket", "k")
    body = os.urandom(PACKAGE)
    write = ObjectWrite(max_size=PACKAGE)
    await store.put_object("bucket", "k", seal_write(write, chunked(body), record, data_key), write)
    write = ObjectWrite(max_size=PACKAGE - 1)
    with pytest.raises(EntityTooLarge):
        await store.put_object(
            "bucket", "k", seal_write(write, chunked(body), record, data_key), write
        )


async def test_multipart_parts_open_as_one_object(store: FileStore) -> None:
    record, data_key = new_record(KEYRING, Choice("AES256", "key-1"), "bucket", "mp")
    upload = await store.create_multipart_upload("bucket", "mp", ObjectWrite(encryption=record))
    assert upload.write.encryption == record
    pieces = [os.urandom(5 * 1024 * 1024), os.urandom(PACKAGE + 1)]
    done = []
    for number, piece in enumerate(pieces, 1):
        write = ObjectWrite()
        body = seal_write(write, chunked(piece, 1 << 20), record, data_key, number)
        part = await store.upload_part("bucket", "mp", upload.upload_id, number, body, write)
        done.append(CompletedPart(number, part.etag))
    whole = b"".join(pieces)
    inner = hashlib.sha256()
    opening = OpeningDigester(
        [(1, sealed_length(len(pieces[0]))), (2, sealed_length(len(pieces[1])))], data_key, inner
    )
    final = ObjectWrite(digesters=[opening], encryption=record)
    final.encryption = type(record)(
        **{**record.__dict__, "plain_size": len(whole), "plain_etag": "e"}
    )
    meta = await store.complete_multipart_upload("bucket", "mp", upload.upload_id, done, final)
    assert inner.digest() == hashlib.sha256(whole).digest()
    reader = PlainReader(await store.open_object("bucket", "mp"), data_key)
    try:
        assert meta.parts is not None and reader.meta.parts is not None
        assert [p.size for p in reader.meta.parts] == [len(p) for p in pieces]
        assert await read_all(reader.stream()) == whole
        first, last = len(pieces[0]) - 5, len(pieces[0]) + PACKAGE
        assert await read_all(reader.stream(first, last)) == whole[first : last + 1]
    finally:
        await reader.close()


def sealed(data_key: bytes, number: int, plain: bytes) -> bytes:
    sealer = Sealer(data_key, identity(number))
    return sealer.update(plain) + sealer.finish()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * PACKAGE), min_size=1, max_size=4),
    cut=st.integers(1, 100_000),
)
def test_opening_digester_sees_every_parts_plaintext(sizes: list[int], cut: int) -> None:
    data_key = os.urandom(32)
    plains = [os.urandom(n) for n in sizes]
    streams = [sealed(data_key, i + 1, p) for i, p in enumerate(plains)]
    inner = hashlib.md5()
    digester = OpeningDigester([(i + 1, len(s)) for i, s in enumerate(streams)], data_key, inner)
    joined = b"".join(streams)
    for i in range(0, len(joined), cut):
        digester.update(joined[i : i + cut])
    assert inner.digest() == hashlib.md5(b"".join(plains)).digest()


def test_opening_digester_refuses_swapped_parts() -> None:
    data_key = os.urandom(32)
    one, two = sealed(data_key, 1, b"a" * 10), sealed(data_key, 2, b"b" * 10)
    digester = OpeningDigester([(1, len(two)), (2, len(one))], data_key, hashlib.md5())
    with pytest.raises(TamperedError):
        digester.update(two + one)


async def test_random_ranges_across_parts(store: FileStore) -> None:
    """Ranges anywhere in a three-part object, and at every part and package edge,
    read back exactly the plaintext asked for."""
    record, data_key = new_record(KEYRING, Choice("AES256", "key-1"), "bucket", "mp")
    upload = await store.create_multipart_upload("bucket", "mp", ObjectWrite(encryption=record))
    pieces = [os.urandom(5 * 1024 * 1024 + 100), os.urandom(5 * 1024 * 1024), os.urandom(70_000)]
    done = []
    for number, piece in enumerate(pieces, 1):
        write = ObjectWrite()
        body = seal_write(write, chunked(piece, 1 << 20), record, data_key, number)
        part = await store.upload_part("bucket", "mp", upload.upload_id, number, body, write)
        done.append(CompletedPart(number, part.etag))
    whole = b"".join(pieces)
    final = ObjectWrite(encryption=dataclasses.replace(record, plain_size=len(whole)))
    await store.complete_multipart_upload("bucket", "mp", upload.upload_id, done, final)
    rng = random.Random(16)
    edges = [0, len(pieces[0]), len(pieces[0]) + len(pieces[1]), len(whole) - 1]
    edges += [i * PACKAGE for i in range(1, 4)]
    spans = [(max(0, e - d), min(len(whole) - 1, e + d)) for e in edges for d in (0, 1, 7)]
    for _ in range(150):
        start = rng.randrange(len(whole))
        spans.append((start, min(len(whole) - 1, start + rng.choice([0, 1, PACKAGE, 3 << 20]))))
    reader = PlainReader(await store.open_object("bucket", "mp"), data_key)
    try:
        for start, end in spans:
            got = await read_all(reader.stream(start, end))
            assert got == whole[start : end + 1], (start, end)
    finally:
        await reader.close()
