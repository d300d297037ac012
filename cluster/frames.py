"""The cluster RPC wire format: one frame per direction on each QUIC stream, and the
same frames one after another on a bulk lane connection (cluster.lane).

A frame is a fixed 16-byte prefix, a JSON header and the body bytes:

    magic b"SQ" | version u8 | kind u8 | header length u32 | body length u64   (big-endian)
    header: UTF-8 JSON object     request {"method", "args"}, response {"result"},
                                  error {"code", "message"}
    body:   raw bytes (shards), never JSON-encoded, so they cost no copy or escaping

The magic and the version byte keep their place in every future version, so a node can
always read which version a peer spoke and refuse it with an error frame of its own
version ("UnsupportedVersion") instead of misparsing it. The body length is declared up
front so the receiver allocates one buffer of exactly that size, bounded by MAX_BODY.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from shoal.storage import durable

MAGIC = b"SQ"
VERSION = 1
PREFIX = struct.Struct("!2sBBIQ")
MAX_HEADER = 1 << 20
MAX_BODY = 64 << 20


class Kind(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    ERROR = 3


class FrameError(Exception):
    """A frame this node cannot accept; `code` is what an error frame reports back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Frame:
    kind: Kind
    header: dict[str, Any]
    body: bytes | bytearray
    version: int = VERSION


def body_size(body: bytes | bytearray | memoryview) -> int:
    return memoryview(body).nbytes


def encode_head(
    kind: Kind, header: dict[str, Any], body_len: int, *, version: int = VERSION
) -> bytes:
    """Prefix + JSON header; the body follows separately (it is sent in chunks)."""
    if body_len > MAX_BODY:
        raise FrameError("FrameTooLarge", f"body of {body_len} bytes exceeds {MAX_BODY}")
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(raw) > MAX_HEADER:
        raise FrameError("FrameTooLarge", f"header of {len(raw)} bytes exceeds {MAX_HEADER}")
    return PREFIX.pack(MAGIC, version, int(kind), len(raw), body_len) + raw


def error_head(code: str, message: str) -> bytes:
    return encode_head(Kind.ERROR, {"code": code, "message": message}, 0)


class FrameReader:
    """Incremental parser for one frame arriving in arbitrary pieces.

    `feed` raises FrameError on anything malformed: bad magic, unknown version or kind,
    sizes above the limits, data past the declared end, or (with `end`) a short frame.
    """

    def __init__(self, *, expect: tuple[Kind, ...]) -> None:
        self._expect = expect
        self._pre = bytearray()
        self._head_len = -1
        self._head = bytearray()
        self._body: bytearray | None = None
        self._body_len = 0
        self._got = 0
        self.kind: Kind | None = None
        self.version = 0
        self.frame: Frame | None = None

    def feed(self, data: bytes, end: bool) -> Frame | None:
        """Consume `data`; return the frame once the stream has ended after a whole one."""
        view = memoryview(data)
        if self._head_len < 0:
            need = PREFIX.size - len(self._pre)
            self._pre += view[:need]
            view = view[need:]
            if len(self._pre) == PREFIX.size:
                self._parse_prefix()
        if self._head_len >= 0 and len(self._head) < self._head_len:
            need = self._head_len - len(self._head)
            self._head += view[:need]
            view = view[need:]
        if len(view):
            if self._body is None or self._got + len(view) > self._body_len:
                raise FrameError("BadFrame", "data past the end of the frame")
            self._body[self._got : self._got + len(view)] = view
            self._got += len(view)
        if not end:
            return None
        if self._head_len < 0 or len(self._head) < self._head_len or self._got < self._body_len:
            raise FrameError("BadFrame", "stream ended inside a frame")
        header = parse_header(self._head)
        assert self.kind is not None
        body: bytes | bytearray = self._body if self._body is not None else b""
        self.frame = Frame(self.kind, header, body, self.version)
        return self.frame

    def _parse_prefix(self) -> None:
        prefix = parse_prefix(self._pre, self._expect)
        self.kind, self.version = prefix.kind, prefix.version
        self._head_len = prefix.head_len
        self._body_len = prefix.body_len
        if prefix.body_len:
            # Not zero-filled: `feed` refuses a stream that ends before every byte came.
            self._body = durable.buffer(prefix.body_len)


@dataclass(frozen=True)
class Prefix:
    kind: Kind
    version: int
    head_len: int
    body_len: int


def parse_prefix(raw: bytes | bytearray, expect: tuple[Kind, ...]) -> Prefix:
    """A frame's 16-byte prefix, checked: FrameError if this node cannot accept it."""
    magic, version, kind, head_len, body_len = PREFIX.unpack(raw)
    if magic != MAGIC:
        raise FrameError("BadFrame", "not a shoal cluster frame")
    if version != VERSION:
        raise FrameError(
            "UnsupportedVersion",
            f"frame version {version} is not supported (this node speaks {VERSION})",
        )
    try:
        parsed = Kind(kind)
    except ValueError:
        raise FrameError("BadFrame", f"unknown frame kind {kind}") from None
    if parsed not in expect:
        raise FrameError("BadFrame", f"unexpected {parsed.name.lower()} frame")
    if head_len > MAX_HEADER or body_len > MAX_BODY:
        raise FrameError(
            "FrameTooLarge",
            f"frame of {head_len}+{body_len} bytes exceeds {MAX_HEADER}+{MAX_BODY}",
        )
    return Prefix(parsed, version, head_len, body_len)


def parse_header(raw: bytes | bytearray) -> dict[str, Any]:
    """A frame's JSON header, which must be an object (FrameError otherwise)."""
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise FrameError("BadFrame", f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("BadFrame", "header is not a JSON object")
    return header
