"""Encrypted bodies in and out: a write's body sealed before any Backend sees it, a
stored version opened for a read (only the packages a range touches), and the
plaintext of an assembled multipart object for whole-object checksums.

The request's digests (Content-MD5, x-amz-checksum-*, x-amz-content-sha256, the MD5
ETag of SSE-S3) describe the plaintext, so they are fed here, in the sealing worker
thread, and never handed to storage, which only ever sees ciphertext.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing

from shoal.app.errors import InternalError
from shoal.app.sse import AES256, identity, shown
from shoal.sse.errors import TamperedError
from shoal.sse.packages import (
    HEADER,
    PACKAGE,
    TAG,
    Opener,
    open_range,
    plain_length,
    seal_stream,
    sealed_length,
    sealed_span,
)
from shoal.storage.backend import Digester, Encryption, ObjectMeta, ObjectReader, ObjectWrite
from shoal.storage.threads import run

log = logging.getLogger("shoal.sse")
#: Reads of a sealed stream's start up to this long are made in one storage read.
SMALL_READ = 256 * 1024


def seal_write(
    write: ObjectWrite,
    body: AsyncIterable[bytes],
    record: Encryption,
    data_key: bytes,
    part_number: int = 0,
) -> AsyncIterator[bytes]:
    """The sealed stream to hand a Backend for `body`, with `write` rewired: its
    digesters see the plaintext, its finalize gets the plaintext's size and MD5, its
    max_size counts plaintext, and `write.encryption` is the final record (plain size
    and ETag) by the time the store builds the version."""
    digesters: list[Digester] = list(write.digesters)
    inner: Callable[[int, str], dict[str, str]] | None = write.finalize
    md5 = hashlib.md5()
    size = 0

    def on_plain(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        md5.update(chunk)
        for digester in digesters:
            digester.update(chunk)

    def final_record(stored_md5: str) -> Encryption:
        # S3: an SSE-S3 object's ETag is its plaintext's MD5; SSE-C and SSE-KMS ones
        # show something else (here the MD5 of what is stored).
        sse_s3 = record.algorithm == AES256 and not record.customer
        etag = md5.hexdigest() if sse_s3 else stored_md5
        return dataclasses.replace(record, plain_size=size, plain_etag=etag)

    def finalize(stored_size: int, stored_md5: str) -> dict[str, str]:
        write.encryption = final_record(stored_md5)
        return inner(size, md5.hexdigest()) if inner is not None else {}

    write.digesters = []
    write.finalize = finalize
    write.encryption = record
    if write.max_size is not None:
        write.max_size = sealed_length(write.max_size)

    async def sealed() -> AsyncIterator[bytes]:
        async for piece in seal_stream(body, data_key, identity(part_number), run, on_plain):
            yield piece
        write.encryption = final_record("")

    return sealed()


def segments(meta: ObjectMeta) -> list[tuple[int, int, int]]:
    """(part number, sealed size, plaintext size) of each sealed stream of a stored
    encrypted version, in order: one (0) for a single PUT, one per part otherwise."""
    assert meta.encryption is not None
    if not meta.parts:
        return [(0, meta.size, meta.encryption.plain_size)]
    return [(p.number, p.size, plain_length(p.size)) for p in meta.parts]


class PlainReader:
    """An open encrypted version read as its plaintext: `meta` is the client's view,
    `stream(start, end)` takes plaintext positions and opens only the packages (of the
    parts) the range touches. Tampered bytes end the stream with an error."""

    def __init__(self, reader: ObjectReader, data_key: bytes) -> None:
        self._reader = reader
        self._key = data_key
        self._stored = reader.meta
        self.meta = shown(reader.meta)

    def stream(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._stream(start, self.meta.size - 1 if end is None else end)

    async def _stream(self, start: int, end: int) -> AsyncIterator[bytes]:
        plain_at = sealed_at = 0
        try:
            for number, sealed_size, plain_size in segments(self._stored):
                first, last = max(start, plain_at), min(end, plain_at + plain_size - 1)
                if first <= last:
                    local = (first - plain_at, last - plain_at)
                    chunks = open_range(
                        await self._reader_for(sealed_at, plain_size, *local),
                        self._key,
                        identity(number),
                        plain_size,
                        *local,
                        run,
                    )
                    async with aclosing(chunks):
                        async for chunk in chunks:
                            yield chunk
                plain_at += plain_size
                sealed_at += sealed_size
        except TamperedError as exc:
            log.error("stored data of %s failed authentication: %s", self._stored.key, exc)
            raise InternalError(
                "The stored data of this object failed its integrity check."
            ) from exc

    async def _reader_for(
        self, base: int, plain_size: int, first: int, last: int
    ) -> Callable[[int, int], AsyncIterator[bytes]]:
        """How open_range reads one sealed stream (at `base` in the stored object). A
        short read from the stream's first package is fetched in one storage read, header
        included (a small GET then costs one read, not two); others read as asked."""
        end = sealed_span(first, last, plain_size)[1] if plain_size else HEADER + TAG - 1
        if first < PACKAGE and end < SMALL_READ:
            held = b"".join([c async for c in self._reader.stream(base, base + end)])

            async def from_memory(s: int, e: int) -> AsyncIterator[bytes]:
                yield held[s : e + 1]

            return from_memory

        def read(s: int, e: int) -> AsyncIterator[bytes]:
            return self._reader.stream(base + s, base + e)

        return read

    async def close(self) -> None:
        await self._reader.close()


class OpeningDigester:
    """Fed an assembled multipart object's sealed bytes in order (a Backend's digester
    at completion), it feeds `inner` the plaintext: each part opened as its own stream."""

    def __init__(self, parts: list[tuple[int, int]], data_key: bytes, inner: Digester) -> None:
        self._parts = list(reversed(parts))  # (part number, sealed size), next one last
        self._key = data_key
        self._inner = inner
        self._header = bytearray()
        self._opener: Opener | None = None
        self._left = 0  # sealed bytes of the current part not yet fed
        self._number = 0
        self._plain = 0

    def update(self, data: bytes, /) -> None:
        view = memoryview(data)
        while view:
            if self._opener is None:
                if not self._header:
                    if not self._parts:
                        raise TamperedError("the assembled object is longer than its parts")
                    self._number, self._left = self._parts.pop()
                    self._plain = plain_length(self._left)
                take = min(len(view), HEADER - len(self._header))
                self._header += view[:take]
                view, self._left = view[take:], self._left - take
                if len(self._header) == HEADER:
                    self._opener = Opener(
                        self._key, identity(self._number), bytes(self._header), self._plain, 0
                    )
                    self._header.clear()
                continue
            take = min(len(view), self._left)
            self._inner.update(self._opener.update(view[:take]))
            view, self._left = view[take:], self._left - take
            if self._left == 0:
                self._inner.update(self._opener.finish())
                self._opener = None
