"""Reed-Solomon coding of one chunk into k data + m parity shards (pyeclib over ISA-L).

A shard is a pyeclib fragment, kept whole with its 80-byte liberasurecode header, so a
shard read back from a drive can be handed to pyeclib as it is. Data shard i carries
bytes [i*p, (i+1)*p) of the chunk after its header (p = the shard's payload length,
zero-padded at the end), which gives reads a fast path: with every data shard present,
`decode` strips the headers and joins the payloads, with no call into pyeclib at all;
with some lost, it rebuilds just those and joins.

Integrity is not this module's job: liberasurecode's headers are checked (index,
magic, original size) but a shard from another chunk of the same size would decode to
wrong bytes. The drive layer's per-shard CRC32C and the object record's version decide
which shards are trustworthy before they get here.

Threads: one ECDriver is shared. pyeclib 1.8 holds the GIL for the whole C call (its
extension never releases it), and liberasurecode's ISA-L backend only reads the
instance's encoding matrix, with every scratch table allocated per call, so concurrent
calls are safe (tests/unit/test_erasure_coder.py hammers one coder from 8 threads).
The flip side of the GIL: `*_async` moves the Python-side work off the event loop, but
while a pyeclib call runs no other Python thread, the loop included, makes progress
(2-3 ms per 4 MiB encode on the 2-CPU development machine, bench/erasure.py); chunk
size bounds that stall.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Final

from pyeclib.ec_iface import ECDriver, ECDriverError

from shoal.storage import threads

BACKENDS: Final = ("isa_l_rs_vand", "isa_l_rs_cauchy")
#: bench/erasure.py: Cauchy and Vandermonde are equally fast within noise on every
#: operation (bench/README.md), and only Cauchy decodes every loss within m for any m.
DEFAULT_BACKEND: Final = "isa_l_rs_cauchy"

#: liberasurecode's fragment header (fragment_header_t): 59 bytes of packed metadata,
#: magic, library version, metadata CRC, padding. Measured: encoding b"" yields shards
#: of exactly this length, and every shard is this plus its payload.
HEADER_SIZE: Final = 80
_MAGIC: Final = 0x0B0C5ECC
_IDX = struct.Struct("<I")  # at 0: the shard's index
_PAYLOAD = struct.Struct("<I")  # at 4: payload length (shard length - header)
_ORIG_SIZE = struct.Struct("<Q")  # at 12: the chunk's length
_MAGIC_AT: Final = 59

#: liberasurecode's EC_MAX_FRAGMENTS.
MAX_SHARDS: Final = 32


class NotEnoughShards(ValueError):
    """Fewer than k usable shards: the chunk cannot be rebuilt from what was given."""


class ShardError(ValueError):
    """A shard that does not fit: wrong length, header, index or chunk size, or a set of
    shards pyeclib rejected (its header checksum). The message names the shard(s)."""


def check_layout(k: int, m: int, backend: str) -> None:
    """Raise ValueError, saying why, unless k data + m parity shards on `backend` is a
    layout the cluster can rely on."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown erasure backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if k < 1:
        raise ValueError(f"data shards must be at least 1, got {k}")
    if m < 1:
        raise ValueError(
            f"parity shards must be at least 1 (else nothing survives a lost drive), got {m}"
        )
    if k + m > MAX_SHARDS:
        raise ValueError(
            f"data + parity shards must not exceed {MAX_SHARDS} (liberasurecode's "
            f"limit), got {k} + {m} = {k + m}"
        )
    if m > k:
        raise ValueError(
            f"parity shards must not exceed data shards: a lone stale copy "
            f"could then outvote the newest version (got {k} + {m})"
        )
    if backend == "isa_l_rs_vand" and m >= 5:
        raise ValueError(
            f"isa_l_rs_vand with {m} parity shards is refused (as OpenStack Swift does): the "
            f"Vandermonde matrix ISA-L builds is not guaranteed invertible for 5 or more "
            f"parity shards, so some losses of up to {m} shards could not be decoded; "
            f"use isa_l_rs_cauchy"
        )  # e.g. 6+5 cannot decode after losing shards 0, 2, 5, 7 and 8.


class ErasureCoder:
    """Encodes chunks into n = k + m shards and decodes or repairs them from any k.

    The blocking methods are for worker threads; the `*_async` ones run them on
    storage.threads' pool.
    """

    def __init__(self, k: int, m: int, backend: str = DEFAULT_BACKEND) -> None:
        check_layout(k, m, backend)
        self.k = k
        self.m = m
        self.n = k + m
        self.backend = backend
        self._driver = ECDriver(k=k, m=m, ec_type=backend)

    def __repr__(self) -> str:
        return f"ErasureCoder(k={self.k}, m={self.m}, backend={self.backend!r})"

    # ------------------------------------------------------------------ blocking

    def encode(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        """The n shards of `chunk`, index order: data shards 0..k-1, then parity."""
        # pyeclib takes only bytes (bytearray and memoryview are refused).
        data = chunk if type(chunk) is bytes else bytes(chunk)
        shards = self._driver.encode(data)
        if len(shards) != self.n:  # pragma: no cover - a pyeclib contract
            raise RuntimeError(f"pyeclib returned {len(shards)} shards, expected {self.n}")
        return shards

    def decode(self, shards: Mapping[int, bytes | bytearray | memoryview], size: int) -> bytes:
        """The chunk of length `size` back from `shards` (see decode_views)."""
        return b"".join(self.decode_views(shards, size))

    def decode_views(
        self, shards: Mapping[int, bytes | bytearray | memoryview], size: int
    ) -> list[memoryview]:
        """The chunk of length `size` back from `shards` (shard index -> shard), as
        views of consecutive pieces.

        With every data shard present this is a join of their payloads, no pyeclib call.
        Otherwise the missing data shards are rebuilt from k others and then joined:
        1.2-1.8x faster than pyeclib's decode with one shard lost and about even with
        two or more (bench/erasure.py), since that decode zero-fills a chunk-sized
        buffer, copies the data into it and then again into a bytes object.
        """
        payload = self._check(shards, size)
        k = self.k
        lost = [i for i in range(k) if i not in shards]
        if lost:
            if len(shards) < k:
                raise NotEnoughShards(
                    f"cannot decode: {len(shards)} of {self.n} shards present "
                    f"({sorted(shards)}), {k} needed"
                )
            shards = {**shards, **self._rebuild(shards, lost)}
        # Data shard i holds chunk[i*payload:(i+1)*payload] after its header: views of
        # the shards in order are the chunk, without copying it.
        parts = []
        for i in range(k):
            take = min(payload, max(0, size - i * payload))
            if take:
                parts.append(memoryview(shards[i])[HEADER_SIZE : HEADER_SIZE + take])
        return parts

    def span_shards(self, size: int, lo: int, hi: int) -> range:
        """The data shards holding bytes [lo, hi) of a chunk of `size` bytes (a range
        read needs only these; each carries ceil(size / k) bytes of it, the last one
        fewer)."""
        payload = -(-size // self.k)
        if size <= 0 or hi <= lo:
            return range(0)
        return range(lo // payload, min(self.k, (hi - 1) // payload + 1))

    def decode_span(
        self, shards: Mapping[int, bytes | bytearray | memoryview], size: int, lo: int, hi: int
    ) -> tuple[int, list[memoryview]]:
        """(offset in the chunk of the first piece, consecutive pieces) covering bytes
        [lo, hi) of a chunk of `size`. With the data shards of span_shards present,
        views of just those (headers checked, no pyeclib call: cheap enough for the
        event loop); otherwise the whole chunk through decode_views."""
        wanted = self.span_shards(size, lo, hi)
        if not all(i in shards for i in wanted):
            return 0, self.decode_views(shards, size)
        payload = self._check({i: shards[i] for i in wanted}, size)
        if wanted and payload != -(-size // self.k):
            raise ShardError(f"shards of {payload} payload bytes for a chunk of {size}")
        parts = []
        for i in wanted:
            take = min(payload, max(0, size - i * payload))
            if take:
                parts.append(memoryview(shards[i])[HEADER_SIZE : HEADER_SIZE + take])
        return (wanted.start if wanted else 0) * payload, parts

    def reconstruct(
        self, shards: Mapping[int, bytes | bytearray | memoryview], missing: Sequence[int]
    ) -> dict[int, bytes]:
        """Rebuild the shards at the `missing` indexes, byte-identical to what `encode`
        made for them, from k of the others (healing). Shards listed as missing are
        not used even if given: healing may be replacing one it found corrupt."""
        wanted = sorted(set(missing))
        for i in wanted:
            if not 0 <= i < self.n:
                raise ValueError(f"shard index {i} out of range 0..{self.n - 1}")
        if not wanted:
            return {}
        usable = {i: s for i, s in shards.items() if i not in wanted}
        self._check(usable, None)
        if len(usable) < self.k:
            raise NotEnoughShards(
                f"cannot rebuild shards {wanted}: {len(usable)} other shards present "
                f"({sorted(usable)}), {self.k} needed"
            )
        return self._rebuild(usable, wanted)

    def _rebuild(
        self, usable: Mapping[int, bytes | bytearray | memoryview], wanted: list[int]
    ) -> dict[int, bytes]:
        """pyeclib's reconstruct from k checked shards, data shards first (the lowest
        indexes, so a lost parity shard never costs a data shard's worth of work)."""
        chosen = sorted(usable)[: self.k]
        try:
            rebuilt = self._driver.reconstruct([_as_bytes(usable[i]) for i in chosen], wanted)
        except ECDriverError as e:
            raise ShardError(f"pyeclib refused shards {chosen}: {e}") from e
        return dict(zip(wanted, rebuilt, strict=True))

    # ------------------------------------------------------------------ async

    async def encode_async(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        """`encode` on a worker thread."""
        return await threads.run(self.encode, chunk)

    async def decode_async(
        self, shards: Mapping[int, bytes | bytearray | memoryview], size: int
    ) -> bytes:
        """`decode` on a worker thread."""
        return await threads.run(self.decode, shards, size)

    async def reconstruct_async(
        self, shards: Mapping[int, bytes | bytearray | memoryview], missing: Sequence[int]
    ) -> dict[int, bytes]:
        """`reconstruct` on a worker thread."""
        return await threads.run(self.reconstruct, shards, missing)

    # ------------------------------------------------------------------ checks

    def _check(self, shards: Mapping[int, bytes | bytearray | memoryview], size: int | None) -> int:
        """Validate indexes, lengths and headers (cheap: a few unpacks per shard); return
        the payload length. The fast path relies on this, and liberasurecode aborts the
        process on some malformed input instead of raising."""
        length = None
        orig = size
        for i, shard in shards.items():
            if not 0 <= i < self.n:
                raise ValueError(f"shard index {i} out of range 0..{self.n - 1}")
            if length is None:
                length = len(shard)
                if length < HEADER_SIZE:
                    raise ShardError(f"shard {i}: {length} bytes, shorter than its header")
            elif len(shard) != length:
                raise ShardError(f"shard {i}: {len(shard)} bytes, others have {length}")
            (index,) = _IDX.unpack_from(shard, 0)
            if index != i:
                raise ShardError(f"shard {i}: its header says index {index}")
            if _IDX.unpack_from(shard, _MAGIC_AT)[0] != _MAGIC:
                raise ShardError(f"shard {i}: no liberasurecode header")
            if _PAYLOAD.unpack_from(shard, 4)[0] != length - HEADER_SIZE:
                raise ShardError(f"shard {i}: header payload length disagrees with its size")
            shard_orig = _ORIG_SIZE.unpack_from(shard, 12)[0]
            if orig is None:
                orig = shard_orig
            elif shard_orig != orig:
                what = "expected" if size is not None else "other shards say"
                raise ShardError(f"shard {i}: from a chunk of {shard_orig} bytes, {what} {orig}")
        payload = (length or HEADER_SIZE) - HEADER_SIZE
        if orig is not None and shards and payload * self.k < orig:
            raise ShardError(f"shards of {payload} payload bytes cannot hold {orig} bytes")
        return payload


def _as_bytes(shard: bytes | bytearray | memoryview) -> bytes:
    # pyeclib's decode and reconstruct abort the process (a C assertion) on non-bytes.
    return shard if type(shard) is bytes else bytes(shard)
