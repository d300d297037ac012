"""Mapping between S3 keys and paths inside a bucket directory.

Keys stay browsable on disk (`photos/2024/cat.jpg` is `photos/2024/cat.jpg._storage_object`),
yet every legal key round-trips and none can leave its bucket directory:

* the key is split on "/"; every segment but the last is a directory, the last becomes
  `{enc(last)}._storage_object` (its metadata sits beside it with `.metadata.json`);
* `enc` percent-encodes "%" and control characters as %XX, turns "." and ".." into
  "%2E" / "%2E%2E", the empty segment into a lone "%" (never produced otherwise), and
  escapes the dot of any "._storage_object" inside a segment, so only our own files
  carry that marker;
* a segment whose encoding is too long for one file name is cut at character boundaries
  into pieces; all pieces but the last become directories named `{enc(piece)}%+`, which
  means "continues without a slash" ("%+" never appears otherwise).

Decoding is a plain %XX unescape per path component, so it inverts encoding exactly.
These are pure functions: nothing here touches the disk.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from shoal.storage.backend import MAX_KEY_BYTES
from shoal.storage.errors import InvalidRequest, KeyTooLong

#: Marks our object files; `enc` never lets it appear inside a key segment.
OBJECT_MARKER = "._storage_object"
#: Suffix of the metadata sidecar, after the marker.
META_SUFFIX = ".metadata.json"
#: Suffix of a directory holding the rest of an over-long segment.
CONT_SUFFIX = "%+"
#: Longest encoded directory component (plus CONT_SUFFIX) — file names stop at 255 bytes.
DIR_LIMIT = 240
#: Longest encoded last component: it still gets the marker and META_SUFFIX (30 bytes).
FILE_LIMIT = 220

_HEX = "0123456789ABCDEF"
_UNSAFE = re.compile(r"[%\x00-\x1f\x7f]")


def check_key(key: str) -> bytes:
    """The key's UTF-8 bytes; KeyTooLong past S3's limit, InvalidRequest if not encodable."""
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("Key is not valid UTF-8") from exc
    if len(raw) > MAX_KEY_BYTES:
        raise KeyTooLong(f"Key is {len(raw)} bytes, the limit is {MAX_KEY_BYTES}")
    return raw


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    return ch == "%" or code < 0x20 or code == 0x7F


def encode_component(text: str) -> str:
    """One path component (no "/") for `text`; see the module docstring for the rules."""
    if text == "":
        return "%"
    if text == ".":
        return "%2E"
    if text == "..":
        return "%2E%2E"
    out = text
    if _UNSAFE.search(text):
        out = "".join(f"%{ord(ch):02X}" if _needs_escape(ch) else ch for ch in text)
    if OBJECT_MARKER in out:
        # Escaped forms contain no ".", so each occurrence here is a literal one.
        out = out.replace(OBJECT_MARKER, "%2E" + OBJECT_MARKER[1:])
    return out


def decode_component(name: str) -> str:
    """Inverse of encode_component (ValueError for names it cannot have produced)."""
    if name == "%":
        return ""
    if "%" not in name:
        return name
    out: list[str] = []
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == "%":
            hexpart = name[i + 1 : i + 3]
            if len(hexpart) != 2 or any(c not in _HEX for c in hexpart):
                raise ValueError(f"bad escape in {name!r}")
            out.append(chr(int(hexpart, 16)))
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _cost(ch: str) -> int:
    """Upper bound of the encoded size of one character, whatever its neighbours."""
    if ch == "." or _needs_escape(ch):
        return 3
    return len(ch.encode("utf-8"))


def encode_segment(segment: str, limit: int) -> list[str]:
    """Components for one key segment: continuation dirs (with CONT_SUFFIX), then the rest."""
    enc = encode_component(segment)
    if len(enc.encode("utf-8")) <= limit:
        return [enc]
    pieces: list[str] = []
    cur: list[str] = []
    cost = 0
    for ch in segment:
        c = _cost(ch)
        if cur and cost + c > limit:
            pieces.append("".join(cur))
            cur, cost = [], 0
        cur.append(ch)
        cost += c
    pieces.append("".join(cur))
    return [encode_component(p) + CONT_SUFFIX for p in pieces[:-1]] + [encode_component(pieces[-1])]


@dataclass(frozen=True)
class KeyPath:
    """Where one key lives below its bucket directory."""

    dirs: tuple[str, ...]  # directory components, outermost first
    leaf: str  # encoded last component, without the marker

    @property
    def data_name(self) -> str:
        return self.leaf + OBJECT_MARKER

    @property
    def meta_name(self) -> str:
        return self.leaf + OBJECT_MARKER + META_SUFFIX

    def data_path(self, bucket_dir: str) -> str:
        return join_below(bucket_dir, (*self.dirs, self.data_name))

    def meta_path(self, bucket_dir: str) -> str:
        return join_below(bucket_dir, (*self.dirs, self.meta_name))

    def parent(self, bucket_dir: str) -> str:
        return join_below(bucket_dir, self.dirs)


def join_below(base: str, components: tuple[str, ...] | list[str]) -> str:
    """os.path.join(base, *components) for components without "/", in linear time:
    os.path.join is quadratic in their number, and a key can have 1,023."""
    if not components:
        return base
    return os.path.join(base, "/".join(components))


@functools.lru_cache(maxsize=1024)  # a GET asks once per drive; keys are <= 1 KiB
def key_path(key: str) -> KeyPath:
    """Encode `key`; asserts that no component can climb out of the bucket directory."""
    check_key(key)
    segments = key.split("/")
    dirs: list[str] = []
    for seg in segments[:-1]:
        comps = encode_segment(seg, DIR_LIMIT)
        dirs.extend(comps)
    last = encode_segment(segments[-1], FILE_LIMIT)
    dirs.extend(last[:-1])
    for comp in (*dirs, last[-1]):
        if comp in ("", ".", "..") or "/" in comp or "\0" in comp:
            raise AssertionError(f"unsafe path component {comp!r}")  # pragma: no cover
    return KeyPath(tuple(dirs), last[-1])


def is_inside(base: str, path: str) -> bool:
    """True if `path` (already resolved) lies strictly below `base` (already resolved)."""
    return path.startswith(base.rstrip(os.sep) + os.sep)


def parse_dir(name: str) -> tuple[str, bool] | None:
    """(decoded text, is continuation) for a directory entry we created, else None."""
    if OBJECT_MARKER in name:
        return None
    cont = name.endswith(CONT_SUFFIX)
    text = _decode_ours(name[: -len(CONT_SUFFIX)] if cont else name)
    return None if text is None else (text, cont)


def parse_meta_file(name: str) -> str | None:
    """The decoded last piece of a key if `name` is one of our metadata sidecars."""
    return _parse_leaf(name, META_SUFFIX)


def parse_data_file(name: str) -> str | None:
    """The decoded last piece of a key if `name` is one of our object data files."""
    return _parse_leaf(name, "")


def _parse_leaf(name: str, suffix: str) -> str | None:
    idx = name.find(OBJECT_MARKER)
    if idx < 0 or name[idx + len(OBJECT_MARKER) :] != suffix:
        return None
    return _decode_ours(name[:idx])


def _decode_ours(stem: str) -> str | None:
    """The text `stem` encodes, if encode_component produced it; else None.

    Names read from disk may hold anything, including surrogate escapes of bytes that
    are not UTF-8 (never part of a key we wrote): those are not ours either.
    """
    try:
        text = decode_component(stem)
        stem.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    return text if encode_component(text) == stem else None


def decode_path(dirs: list[str] | tuple[str, ...], leaf: str) -> str:
    """The key stored at `dirs`/`leaf` (leaf without the marker) — the inverse of key_path."""
    parts: list[str] = []
    for name in dirs:
        parsed = parse_dir(name)
        if parsed is None:
            raise ValueError(f"not a key directory: {name!r}")
        text, cont = parsed
        parts.append(text if cont else text + "/")
    parts.append(decode_component(leaf))
    return "".join(parts)
