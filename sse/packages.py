"""The at-rest format of one sealed stream: authenticated AES-256-GCM packages.

A sealed stream is what storage holds for a single-part object, or for ONE part of a
multipart object (each part is its own sealed stream, sealed under the part number as
its identity, so parts cannot be swapped).

Byte layout (offsets from the start of the stream)::

    0        1                       33
    +--------+-----------------------+-------------------+-------------------+---
    | 0x01   | salt (32 random bytes)| package 0         | package 1         | ...
    +--------+-----------------------+-------------------+-------------------+---
     version  \\_________ HEADER = 33 bytes _/

    package i = AES-256-GCM(stream_key, nonce_i, plaintext_i, aad_i)
              = ciphertext (len(plaintext_i) bytes) || tag (TAG = 16 bytes)

- The plaintext is cut into packages of PACKAGE = 64 KiB; every package is full except
  the last, which holds 1..PACKAGE bytes. An empty stream has exactly one package with
  an empty plaintext (16 bytes: just its tag), so even emptiness is authenticated.
  A plaintext of n*PACKAGE bytes has n packages, the last one full (no empty extra).
  So `sealed_length(p) = HEADER + p + TAG * max(1, ceil(p / PACKAGE))`, and the sealed
  position of every package follows from its index alone: ranged reads decrypt only the
  packages they touch.
- stream_key = HKDF-SHA256(ikm=data_key, salt=salt, info=b"shoal-sse-v1 stream" ||
  identity), 32 bytes. The salt is fresh for every stream, so a key is never reused
  across streams even when a data key is (every part of a multipart upload shares its
  object's data key).
- nonce_i = i as 12 bytes big-endian (unique per package under a stream key).
- aad_i = final flag (1 byte: 0x01 for the stream's last package, else 0x00) ||
  i as 8 bytes big-endian || identity. The caller's identity (the part number; 0 for a
  single PUT) is also in the key derivation.

What is refused (TamperedError, never wrong bytes): a flipped bit anywhere (header,
ciphertext or tag); packages reordered (the index is in nonce and AAD); packages or
parts swapped between streams (salt, identity); a stream truncated mid-package, or
ending at a package boundary before its final package (the expected count follows from
the recorded plaintext size, and a package sealed as non-final never opens as the
last); bytes after the final package; an unknown version byte.

Memory: a Sealer or Opener holds one package-sized buffer (the start of a package
that straddles calls) and two scratch buffers it reuses from call to call, each as
large as the biggest call so far up to about two batches (a bigger call gets buffers
of its own, dropped after it). `seal_stream` and `open_range` batch about 1 MiB of
crypto per `offload` call, so the event loop never runs AES itself and does not hop to
a thread per 64 KiB package.

Speed: AES-GCM itself runs near 3 GiB/s per core here, so the Python around it decides
the throughput. Packages are sealed and opened with encrypt_into / decrypt_into straight
from the caller's chunks into the reused output buffer (a fresh megabyte per call costs
page faults worth a good part of the AES time), with no per-package bytes objects, and
the only copies are one package where it straddles two chunks, one join of chunks
smaller than a package, and the `bytes` handed back (bench/sse_packages.py measures).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from shoal.sse.errors import TamperedError

VERSION = 1
SALT = 32
#: Length of the stream header: the version byte and the salt.
HEADER = 1 + SALT
#: Plaintext bytes per package (the last package of a stream may hold fewer).
PACKAGE = 64 * 1024
#: AES-GCM tag length, appended to every package.
TAG = 16
SEALED_PACKAGE = PACKAGE + TAG
#: Bytes of crypto per thread hop in seal_stream / open_range.
BATCH = 1024 * 1024

_INFO = b"shoal-sse-v1 stream"

#: What the crypto reads: any contiguous bytes-like object.
Buffer: TypeAlias = bytes | bytearray | memoryview

#: Runs `fn(*args)` off the event loop (e.g. shoal.storage.threads.run).
Offload = Callable[..., Awaitable[Any]]


def package_count(plain: int) -> int:
    """Packages in a stream of `plain` plaintext bytes (one, empty, for an empty one)."""
    if plain < 0:
        raise ValueError(f"negative plaintext length {plain}")
    return max(1, -(-plain // PACKAGE))


def sealed_length(plain: int) -> int:
    """Bytes a stream of `plain` plaintext bytes occupies sealed (header included)."""
    return HEADER + plain + TAG * package_count(plain)


def plain_length(sealed: int) -> int:
    """The plaintext length of a sealed stream `sealed` bytes long; ValueError for a
    length no stream can have."""
    body = sealed - HEADER
    if body < TAG:
        raise ValueError(f"{sealed} bytes is too short for a sealed stream")
    full, rest = divmod(body, SEALED_PACKAGE)
    if rest == 0:
        return full * PACKAGE
    if rest == TAG and full == 0:
        return 0
    if rest <= TAG:
        raise ValueError(f"{sealed} bytes is not the length of a sealed stream")
    return full * PACKAGE + rest - TAG


def sealed_span(start: int, end: int, plain_size: int) -> tuple[int, int, int]:
    """For plaintext bytes [start, end] (inclusive) of a `plain_size` stream: the sealed
    bytes [s, e] (inclusive, offsets in the sealed stream, whole packages, header not
    included) to read, and how many plaintext bytes of the first package to skip."""
    if not 0 <= start <= end < plain_size:
        raise ValueError(f"range [{start}, {end}] is outside a {plain_size}-byte stream")
    first, last = start // PACKAGE, end // PACKAGE
    s = HEADER + first * SEALED_PACKAGE
    e = HEADER + last * SEALED_PACKAGE + _plain_in(last, plain_size) + TAG - 1
    return s, e, start - first * PACKAGE


def _plain_in(index: int, plain_size: int) -> int:
    """Plaintext bytes in package `index` of a `plain_size` stream."""
    return min(PACKAGE, plain_size - index * PACKAGE)


class _Keys:
    """The per-stream AES-GCM key and the nonce/AAD of each package."""

    def __init__(self, data_key: bytes, identity: bytes, salt: bytes) -> None:
        # cryptography at first use (see sse.keys._check_kek).
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if len(data_key) != 32:
            raise ValueError("a data key is 32 bytes")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO + identity)
        self.aead = AESGCM(hkdf.derive(data_key))
        self.identity = bytes(identity)

    def aad(self, index: int, final: bool) -> bytes:
        return (b"\x01" if final else b"\x00") + index.to_bytes(8, "big") + self.identity


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


class _Scratch:
    """A buffer reused from call to call: a fresh megabyte per call costs page faults
    and zeroing worth a good part of the AES time. A request above KEEP gets a buffer
    of its own that is not kept, so what a stream holds stays bounded."""

    KEEP = 2 * BATCH + SEALED_PACKAGE

    def __init__(self) -> None:
        self._buf = bytearray()

    def view(self, size: int) -> memoryview:
        """`size` writable bytes, valid until the next call."""
        if size > len(self._buf):
            if size > self.KEEP:
                return memoryview(bytearray(size))
            self._buf = bytearray(size)
        return memoryview(self._buf)[:size]


class _Input:
    """The chunks fed to one call, read as consecutive package-sized spans.

    Chunks of a package or more (on average) are read in place, and only a package
    that straddles two of them is copied, into `stage` (which also holds the start of
    a package begun in an earlier call). Smaller chunks are first copied once into one
    contiguous `flat` buffer: a slice assignment per chunk costs far less in Python
    than assembling each package from many pieces."""

    def __init__(
        self, chunks: Iterable[Buffer], stage: memoryview, fill: int, flat: _Scratch
    ) -> None:
        self._views = [view for view in map(memoryview, chunks) if len(view)]
        self._stage = stage
        self._fill = fill  # bytes of the next span already in stage
        self._scratch = flat
        self._flat: memoryview | None = None
        self._pos = 0
        self.size = fill + sum(map(len, self._views))  # bytes in all
        self._direct = len(self._views) * PACKAGE <= self.size + PACKAGE

    def take(self, size: int) -> memoryview:
        """The next `size` bytes (the caller knows they are there)."""
        if self._direct and not self._fill and self._views:
            views = self._views
            view = views[0]
            if len(view) > size:
                views[0] = view[size:]
                return view[:size]
            if len(view) == size:
                del views[0]
                return view
        if self._fill or self._direct:
            self._top_up(size)
            self._fill = 0
            return self._stage[:size]
        flat = self._flat if self._flat is not None else self._flatten()
        span = flat[self._pos : self._pos + size]
        self._pos += size
        return span

    def hold(self) -> int:
        """Copies every byte not taken into stage (the caller knows they fit); returns
        how many it holds."""
        if self._flat is None:
            self._top_up(len(self._stage))
            assert not self._views, "more left over than one package"
            return self._fill
        rest = self._flat[self._pos :]
        self._stage[: len(rest)] = rest
        return len(rest)

    def _flatten(self) -> memoryview:
        views = self._views
        if len(views) == 1:
            self._flat = views[0]
        else:
            self._flat = self._scratch.view(sum(map(len, views)))
            at = 0
            for view in views:
                self._flat[at : at + len(view)] = view
                at += len(view)
        return self._flat

    def _top_up(self, size: int) -> None:
        views, at = self._views, 0
        while self._fill < size and at < len(views):
            view = views[at]
            n = min(size - self._fill, len(view))
            self._stage[self._fill : self._fill + n] = view[:n]
            self._fill += n
            if n < len(view):
                views[at] = view[n:]
                break
            at += 1
        del views[:at]


class Sealer:
    """Seals one stream incrementally: feed plaintext with update(), end with finish().

    A package is sealed only once more plaintext follows it (or at finish), because
    whether it is the final package is part of its AAD. Packages are sealed straight
    from the caller's bytes into one reused output buffer; only a package that
    straddles calls is copied first (into a held package-sized buffer), and several
    chunks fed at once are copied once into one contiguous buffer."""

    def __init__(self, data_key: bytes, identity: bytes) -> None:
        salt = os.urandom(SALT)
        self._keys = _Keys(data_key, identity, salt)
        self._header: bytes | None = bytes([VERSION]) + salt
        self._index = 0
        self._stage = memoryview(bytearray(PACKAGE))
        self._fill = 0  # plaintext bytes held in _stage, not yet sealed
        self._in = _Scratch()
        self._out = _Scratch()
        self._done = False

    def update(self, data: Buffer) -> bytes:
        """Sealed bytes ready so far: the header on first output, then every package
        known not to be the last."""
        return bytes(self.seal_chunks([data], final=False))

    def finish(self) -> bytes:
        """The final package (and the header, if nothing was output yet)."""
        return bytes(self.seal_chunks([], final=True))

    def seal_chunks(self, chunks: Iterable[Buffer], *, final: bool) -> memoryview:
        """update() of each chunk in turn (then finish(), if `final`) as one view, which
        is valid only until the next call (it is this Sealer's reused buffer)."""
        if self._done:
            raise ValueError("Sealer already finished")
        feed = _Input(chunks, self._stage, self._fill, self._in)
        total = feed.size
        if final:
            self._done = True
            count, plain = package_count(total), total
        else:
            count = (total - 1) // PACKAGE if total else 0  # the last one waits
            plain = count * PACKAGE
        header = self._take_header()
        into = self._out.view(len(header) + plain + TAG * count)
        into[: len(header)] = header
        at = len(header)
        aead, keys = self._keys.aead, self._keys
        for n in range(count):
            size = min(PACKAGE, plain - n * PACKAGE)
            i = self._index
            self._index += 1
            aad = keys.aad(i, final and n == count - 1)
            aead.encrypt_into(_nonce(i), feed.take(size), aad, into[at : at + size + TAG])
            at += size + TAG
        self._fill = feed.hold()
        return into

    def _take_header(self) -> bytes:
        header, self._header = self._header or b"", None
        return header


def parse_header(header: bytes) -> bytes:
    """The salt of a stream header; TamperedError for a header of the wrong length or
    an unknown version."""
    if len(header) != HEADER:
        raise TamperedError(f"sealed stream header is {len(header)} bytes, not {HEADER}")
    if header[0] != VERSION:
        raise TamperedError(f"unknown sealed stream version {header[0]}")
    return bytes(header[1:])


class Opener:
    """Opens packages first_package..last_package of one stream, fed in order as sealed
    bytes starting at that package's first byte (see sealed_span).

    `plain_size` is the stream's recorded plaintext size; it fixes every package's
    length and which one is final. `last_package` (default: the stream's final one) is
    where the caller stops reading; finish() checks every package up to it was fed.
    Packages open straight from the caller's bytes into one reused output buffer, as
    in Sealer."""

    def __init__(
        self,
        data_key: bytes,
        identity: bytes,
        header: bytes,
        plain_size: int,
        first_package: int,
        *,
        last_package: int | None = None,
    ) -> None:
        count = package_count(plain_size)
        final = count - 1
        last = final if last_package is None else last_package
        if not 0 <= first_package <= last <= final:
            raise ValueError(
                f"packages {first_package}..{last} are outside a {count}-package stream"
            )
        self._keys = _Keys(data_key, identity, parse_header(header))
        self._plain_size = plain_size
        self._final = final
        self._index = first_package
        self._last = last
        self._stage = memoryview(bytearray(SEALED_PACKAGE))
        self._fill = 0  # sealed bytes of the next package held in _stage
        self._in = _Scratch()
        self._out = _Scratch()

    def update(self, data: Buffer) -> bytes:
        """Plaintext of every package completed by the bytes fed so far."""
        return bytes(self.open_chunks([data]))

    def open_chunks(self, chunks: Iterable[Buffer]) -> memoryview:
        """update() of each chunk in turn as one view, which is valid only until the
        next call (it is this Opener's reused buffer). A call that raises TamperedError
        returns nothing: every package is authenticated before the view is returned."""
        from cryptography.exceptions import InvalidTag  # loaded by _Keys already

        feed = _Input(chunks, self._stage, self._fill, self._in)
        avail = feed.size
        sizes: list[int] = []  # plaintext bytes of each package these bytes complete
        i, used = self._index, 0
        while used < avail:
            if i > self._last:
                raise TamperedError("sealed stream continues past its last package")
            size = _plain_in(i, self._plain_size)
            if avail - used < size + TAG:
                break
            sizes.append(size)
            used += size + TAG
            i += 1
        into = self._out.view(sum(sizes))
        at = 0
        aead, keys = self._keys.aead, self._keys
        for size in sizes:
            i = self._index
            self._index += 1
            aad = keys.aad(i, i == self._final)
            try:
                aead.decrypt_into(_nonce(i), feed.take(size + TAG), aad, into[at : at + size])
            except InvalidTag:
                raise TamperedError(f"sealed package {i} failed authentication") from None
            at += size
        self._fill = feed.hold()
        return into

    def finish(self) -> bytes:
        """Checks the stream did not end early (mid-package, or before the last package
        asked for); returns b"" as every complete package was already returned."""
        if self._fill or self._index <= self._last:
            raise TamperedError(
                f"sealed stream ended early, at package {self._index} of {self._last + 1}"
            )
        return b""


# ---------------------------------------------------------------- async helpers


async def seal_stream(
    body: AsyncIterable[bytes],
    data_key: bytes,
    identity: bytes,
    offload: Offload,
    on_plain: Callable[[bytes], None] | None = None,
) -> AsyncIterator[bytes]:
    """The sealed stream of `body`: about 1 MiB of plaintext per `offload` hop, where
    `on_plain(chunk)` sees every plaintext chunk (for hashing) before it is sealed."""
    sealer = Sealer(data_key, identity)

    def step(chunks: list[bytes], last: bool) -> bytes:
        if on_plain is not None:
            for chunk in chunks:
                on_plain(chunk)
        return bytes(sealer.seal_chunks(chunks, final=last))

    batch: list[bytes] = []
    size = 0
    async for chunk in body:
        if not chunk:
            continue
        batch.append(chunk)
        size += len(chunk)
        if size >= BATCH:
            sealed = await offload(step, batch, False)
            batch, size = [], 0
            if sealed:
                yield sealed
    yield await offload(step, batch, True)


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def open_range(
    read: Callable[[int, int], AsyncIterator[bytes]],
    data_key: bytes,
    identity: bytes,
    plain_size: int,
    start: int,
    end: int,
    offload: Offload,
) -> AsyncIterator[bytes]:
    """Plaintext bytes [start, end] (inclusive) of a sealed stream whose recorded
    plaintext size is `plain_size`, reading only the header and the packages the range
    touches through `read(s, e)` (sealed bytes [s, e] inclusive). A whole read of an
    empty stream is `start=0, end=-1`: it checks the stream's one empty package."""
    header = await _collect(read(0, HEADER - 1))
    if plain_size == 0 and (start, end) == (0, -1):
        first = last = skip = 0
        s, e = HEADER, HEADER + TAG - 1
    else:
        s, e, skip = sealed_span(start, end, plain_size)
        first, last = start // PACKAGE, end // PACKAGE
    opener: Opener = await offload(
        lambda: Opener(data_key, identity, header, plain_size, first, last_package=last)
    )
    left = end - start + 1

    def step(chunks: list[bytes], last: bool) -> bytes:
        """Opens a batch and cuts it to the range: one copy out of the opened buffer."""
        nonlocal skip, left
        plain = opener.open_chunks(chunks)
        if last:
            opener.finish()
        cut = min(skip, len(plain))
        take = min(left, len(plain) - cut)
        skip, left = skip - cut, left - take
        return bytes(plain[cut : cut + take])

    batch: list[bytes] = []
    size = 0
    async for chunk in read(s, e):
        batch.append(chunk)
        size += len(chunk)
        if size >= BATCH:
            plain = await offload(step, batch, False)
            batch, size = [], 0
            if plain:
                yield plain
    plain = await offload(step, batch, True)
    if plain:
        yield plain
