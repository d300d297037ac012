"""The checksum algorithms S3 clients send (x-amz-checksum-*), fed incrementally.

CRC32 comes from zlib, CRC32C from google-crc32c, CRC64NVME from awscrt (AWS's own C
implementation), SHA1/SHA256 from hashlib. Values are exchanged base64-encoded, as on
the wire.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

import google_crc32c

# awscrt's native module costs ~60-100 ms to import: loaded on first use (or by
# warm_up() once the server is listening), not at process start.
_crt = None


def _crc64nvme(data: bytes, previous: int) -> int:
    global _crt
    if _crt is None:
        from awscrt import checksums

        _crt = checksums
    return _crt.crc64nvme(data, previous)


def warm_up() -> None:
    """Import the lazily loaded native code (call from a worker thread)."""
    _crc64nvme(b"", 0)


#: From this size on (a shard of a large object's chunk), a CRC32C is taken with awscrt's
#: code once warm_up has loaded it: twice google-crc32c's speed on a MiB (43 against
#: 21 GB/s on a 2-core VM). Both let go of the GIL for buffers that long. Smaller ones
#: stay with google-crc32c, whose call keeps the GIL there, as a check on the event loop
#: needs (awscrt's lets go of it from 64 KiB, and busy drive threads would take it).
CRC32C_FAST_MIN = 1 << 20


def crc32c(data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """The CRC32C of `data`, extending `previous`; any bytes-like buffer, not copied."""
    if _crt is not None and len(data) >= CRC32C_FAST_MIN:
        return int(_crt.crc32c(data, previous))
    # google-crc32c takes bytes only (erasure-coded reads hand out memoryviews).
    return google_crc32c.extend(previous, data if type(data) is bytes else bytes(data))


ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
#: Algorithms whose multipart checksum may be FULL_OBJECT (CRCs combine; hashes don't).
FULL_OBJECT_CAPABLE = frozenset({"CRC32", "CRC32C", "CRC64NVME"})
DEFAULT_ALGORITHM = "CRC64NVME"
_DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}


class Checksum:
    """One running checksum; `update` is called from the backend's I/O thread."""

    def __init__(self, algorithm: str) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(algorithm)
        self.algorithm = algorithm
        self._crc = 0
        self._hash = hashlib.new(algorithm.lower()) if algorithm.startswith("SHA") else None

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self.algorithm == "CRC32":
            self._crc = zlib.crc32(data, self._crc)
        elif self.algorithm == "CRC32C":
            self._crc = crc32c(data, self._crc)
        else:
            self._crc = _crc64nvme(data, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(_DIGEST_SIZES[self.algorithm], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def header_name(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm.lower()}"


def algorithm_of_header(name: str) -> str | None:
    """'x-amz-checksum-crc32' -> 'CRC32'; None for anything else."""
    prefix = "x-amz-checksum-"
    if name.lower().startswith(prefix):
        algorithm = name[len(prefix) :].upper()
        if algorithm in ALGORITHMS:
            return algorithm
    return None


def well_formed(algorithm: str, value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == _DIGEST_SIZES[algorithm]
    except ValueError:
        return False


def composite(algorithm: str, part_values: list[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' raw checksums, '-N'."""
    combined = Checksum(algorithm)
    for value in part_values:
        combined.update(base64.b64decode(value))
    return f"{combined.b64()}-{len(part_values)}"
