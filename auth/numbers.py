"""Numbers sent by clients, read as S3 reads them: ASCII digits only, bounded in length.

Python's `int()` accepts what no S3 client sends (`"²"`, Arabic-Indic digits, `"1_000"`,
`" 7"`, `"+7"`, `"0x1f"` with base 16) and raises ValueError past 4,300 digits; `str.isdigit()`
says yes to superscripts that `int()` then refuses. Every number that comes from a request
(header, query parameter, XML element, form field, chunk size) goes through here, so the
rule lives once. It lives in auth/ because that is the lowest layer that reads client
bytes (app/ depends on it, never the reverse); it does no I/O.
"""

from __future__ import annotations

import re

# 19 decimal digits hold any value S3 accepts (sizes < 2**63); 16 hex digits the same.
MAX_DECIMAL_DIGITS = 19
MAX_HEX_DIGITS = 16

_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_DECIMAL_DIGITS}}}", re.ASCII)
_SIGNED_DECIMAL = re.compile(rf"-?[0-9]{{1,{MAX_DECIMAL_DIGITS}}}", re.ASCII)
_HEX = re.compile(rf"[0-9a-fA-F]{{1,{MAX_HEX_DIGITS}}}", re.ASCII)


def parse_uint(text: str | bytes | None) -> int | None:
    """A non-negative decimal integer, or None when `text` is anything else.

    Leading zeros are allowed (S3 takes `max-keys=007`); signs, spaces, underscores,
    non-ASCII digits and more than MAX_DECIMAL_DIGITS digits are not.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    return int(text) if _DECIMAL.fullmatch(text) else None


def parse_int(text: str | None) -> int | None:
    """Like parse_uint, with an optional leading minus (for values S3 range-checks itself)."""
    if text is None:
        return None
    return int(text) if _SIGNED_DECIMAL.fullmatch(text) else None


def parse_hex(text: str | bytes) -> int | None:
    """A chunk size of aws-chunked framing: hex digits only (no `0x`, sign, `_` or space)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    return int(text, 16) if _HEX.fullmatch(text) else None
