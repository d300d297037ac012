"""Object headers: what is stored from a request, what a response carries, and the
HTTP conditional and range rules S3 applies."""

from __future__ import annotations

import base64
import functools
import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import formatdate, parsedate_to_datetime
from typing import NoReturn

from shoal.app import tagging
from shoal.app.errors import (
    InvalidArgument,
    InvalidRange,
    InvalidStorageClass,
    MetadataTooLarge,
    PreconditionFailed,
)
from shoal.app.xml import timestamp
from shoal.auth.numbers import parse_uint
from shoal.storage.backend import MAX_PARTS, NULL_VERSION, ObjectMeta, ObjectWrite
from shoal.storage.version_ids import valid_version_id

#: Standard headers S3 stores with an object and returns on GET/HEAD. Nothing else from
#: a client's headers is stored (reserved x-amz-* namespaces never are), except
#: x-amz-meta-*.
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
)
STORAGE_CLASSES = frozenset(
    [
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
    ]
)
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}
META_PREFIX = "x-amz-meta-"
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
#: What can travel in an HTTP/1.1 header value: tab, visible ASCII, space, obs-text
#: (latin-1). CR, LF and NUL would split or end the header; other controls are refused
#: by the HTTP layer when the answer is sent, dropping the connection.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
#: RFC 9110 token characters: what a header (and so a metadata) name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Stands for a position written with more digits than any object size has: it is
#: past the end of every object, and needs no int() of unbounded text to say so.
_BEYOND = 1 << 63


def http_date(when: datetime) -> str:
    return _http_date(int(when.timestamp()))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    """Formatting dates is a visible share of a small GET; objects repeat theirs."""
    return formatdate(seconds, usegmt=True)


def object_write(headers: dict[str, str], *, max_metadata_size: int) -> ObjectWrite:
    """The stored attributes of a PutObject, CopyObject (REPLACE), CreateMultipartUpload or
    POST Object form; a value that could not be sent back as a header is refused first,
    so nothing that breaks every later GET is ever stored."""
    _check_storable(headers)
    stored = {name: headers[name] for name in STORED_HEADERS if name in headers}
    encoding = stored.get("content-encoding")
    if encoding is not None:
        # aws-chunked is transfer framing, not a property of the object.
        kept = [e.strip() for e in encoding.split(",") if e.strip() and e.strip() != "aws-chunked"]
        if kept:
            stored["content-encoding"] = ", ".join(kept)
        else:
            del stored["content-encoding"]
    storage_class = headers.get("x-amz-storage-class")
    if storage_class is not None:
        if storage_class not in STORAGE_CLASSES:
            raise InvalidStorageClass(StorageClassRequested=storage_class)
        if storage_class != "STANDARD":
            stored["x-amz-storage-class"] = storage_class
    user = {
        n[len(META_PREFIX) :]: stored_metadata_value(v)
        for n, v in headers.items()
        if n.startswith(META_PREFIX)
    }
    size = sum(len(n) + len(v.encode("utf-8", "surrogatepass")) for n, v in user.items())
    if size > max_metadata_size:
        raise MetadataTooLarge(Size=size, MaxSizeAllowed=max_metadata_size)
    content_type = headers.get("content-type") or "binary/octet-stream"
    return ObjectWrite(
        content_type=content_type,
        headers=stored,
        user_metadata=user,
        tags=tagging.request_tags(headers),
    )


def stored_metadata_value(value: str) -> str:
    """A metadata value as S3 stores it: RFC 2047 encoded-words decoded, and raw UTF-8
    (header octets, which arrive as latin-1 text) read as UTF-8; other octets stay as
    sent. S3 documents this, and encodes non-ASCII values again when it answers
    (`metadata_header_value`)."""
    if not value.isascii():
        octets = value.encode("latin-1")
        try:
            return octets.decode("utf-8")
        except UnicodeDecodeError:
            return value  # latin-1 text that is not UTF-8: kept as the client sent it
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value  # not valid encoded-words: S3 keeps such text as it is


def metadata_header_value(value: str) -> str:
    """A stored metadata value as GET and HEAD send it: as is when ASCII, else one RFC
    2047 encoded-word (`=?UTF-8?B?...?=`), mail-safe as S3 returns it (so too an ASCII
    value whose decoded words hold a control character, which no header may carry)."""
    if value.isascii() and header_value_ok(value):
        return value
    encoded = base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")
    return f"=?UTF-8?B?{encoded}?="


def header_value_ok(value: str) -> bool:
    """Whether `value` can be sent as an HTTP/1.1 header value as it is."""
    return _HEADER_VALUE.fullmatch(value) is not None


def check_header_value(name: str, value: str) -> None:
    """Refuse (400 InvalidArgument, as S3 does) a value that cannot be a header value."""
    if header_value_ok(value):
        return
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        message = "Header value cannot be represented using ISO-8859-1."  # S3's words
    else:
        message = "Header value cannot contain control characters."
    raise InvalidArgument(message, ArgumentName=name, ArgumentValue=value)


def _check_storable(headers: dict[str, str]) -> None:
    """Every value object_write may store, and every metadata name, is a valid header."""
    for name in ("content-type", *STORED_HEADERS):
        value = headers.get(name)
        if value is not None:
            check_header_value(name, value)
    for name, value in headers.items():
        if name.startswith(META_PREFIX):
            if _TOKEN.fullmatch(name) is None:
                raise InvalidArgument("Invalid metadata name.", ArgumentName=name)
            check_header_value(name, value)


def response_overrides(query: dict[str, str]) -> dict[str, str]:
    """The headers a GET's response-* parameters ask for, each one a valid header value."""
    headers = {}
    for param, name in RESPONSE_OVERRIDES.items():
        value = query.get(param)
        if value is not None:
            check_header_value(param, value)
            headers[name] = value
    return headers


def version_param(query: dict[str, str]) -> str | None:
    """The versionId a request names (None: the current version); a malformed one is
    S3's 400 InvalidArgument, before any storage is touched."""
    version_id = query.get("versionId")
    if version_id is None:
        return None
    if not valid_version_id(version_id):
        message = "Invalid version id specified"
        if version_id == "":
            message = "Version id cannot be the empty string"
        raise InvalidArgument(message, ArgumentName="versionId", ArgumentValue=version_id)
    return version_id


def version_headers(version_id: str, *, versioned: bool) -> dict[str, str]:
    """x-amz-version-id for an answer about one version: every id but the null one, and
    the null one too where the bucket is (or was) versioned or the request named it."""
    if version_id != NULL_VERSION or versioned:
        return {"x-amz-version-id": version_id}
    return {}


def lock_headers(meta: ObjectMeta) -> dict[str, str]:
    """The x-amz-object-lock-* headers GET and HEAD return for a locked version."""
    headers = {}
    if meta.retention is not None:
        headers["x-amz-object-lock-mode"] = meta.retention.mode
        headers["x-amz-object-lock-retain-until-date"] = timestamp(meta.retention.until)
    if meta.legal_hold:
        headers["x-amz-object-lock-legal-hold"] = "ON"
    return headers


def object_headers(meta: ObjectMeta, *, versioned: bool = False) -> dict[str, str]:
    """Headers GET and HEAD return for an object (length and range added by the caller);
    `versioned`: the bucket is or was versioned, so even the null version is named."""
    headers = {
        "etag": f'"{meta.etag}"',
        "last-modified": http_date(meta.last_modified),
        "content-type": meta.content_type,
        "accept-ranges": "bytes",
    }
    headers.update(meta.headers)
    for name, value in meta.user_metadata.items():
        headers[META_PREFIX + name] = metadata_header_value(value)
    headers.update(version_headers(meta.version_id, versioned=versioned))
    headers.update(lock_headers(meta))
    if meta.tags:
        headers["x-amz-tagging-count"] = str(len(meta.tags))
    return headers


def checksum_headers(meta: ObjectMeta) -> dict[str, str]:
    headers = {f"x-amz-checksum-{a.lower()}": v for a, v in meta.checksums.items()}
    if headers and meta.checksum_type:
        headers["x-amz-checksum-type"] = meta.checksum_type
    return headers


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def etag_matches(condition: str, etag: str) -> bool:
    wanted = {t.strip().removeprefix("W/").strip('"') for t in condition.split(",")}
    return "*" in wanted or etag in wanted


def check_conditions(headers: dict[str, str], meta: ObjectMeta, prefix: str = "if-") -> bool:
    """Evaluate If-Match/If-None-Match/If-(Un)Modified-Since as S3 does.

    Raises PreconditionFailed (412); returns False when the answer is 304 Not Modified.
    With prefix "x-amz-copy-source-if-" the same rules guard a copy source, where a
    failed not-modified test is a 412 too.
    """
    modified = meta.last_modified.replace(microsecond=0)
    if_match = headers.get(prefix + "match")
    if if_match is not None:
        if not etag_matches(if_match, meta.etag):
            raise PreconditionFailed(Condition="If-Match")
    else:
        since = _parse_date(headers.get(prefix + "unmodified-since"))
        if since is not None and modified > since:
            raise PreconditionFailed(Condition="If-Unmodified-Since")
    if_none_match = headers.get(prefix + "none-match")
    not_modified = False
    if if_none_match is not None:
        not_modified = etag_matches(if_none_match, meta.etag)
    else:
        since = _parse_date(headers.get(prefix + "modified-since"))
        not_modified = since is not None and modified <= since and since <= datetime.now(UTC)
    if not_modified and prefix != "if-":
        raise PreconditionFailed(Condition="If-None-Match")
    return not not_modified


def query_part_number(query: dict[str, str]) -> int:
    """The partNumber query parameter of GetObject, HeadObject, UploadPart(Copy)."""
    text = query.get("partNumber", "")
    number = parse_uint(text)
    if number is None or not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=text,
        )
    return number


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single byte range; None serves the whole object.

    Malformed or multi-range headers are ignored, as S3 does (RFC 9110 14.2); a range
    that does not overlap the object (a first byte at or past its end, any range of an
    empty object) is InvalidRange (416).
    """
    if not value:
        return None
    match = _RANGE.fullmatch(value.strip())
    if not match or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":
        suffix = _position(last)
        if suffix == 0 or size == 0:
            _unsatisfiable(value, size)
        return max(0, size - suffix), size - 1
    start = _position(first)
    end = _position(last) if last else _BEYOND
    if end < start:
        return None  # not a valid byte-range-spec: ignored
    if start >= size:
        _unsatisfiable(value, size)
    return start, min(end, size - 1)


def _position(digits: str) -> int:
    """A byte position written in ASCII digits; longer than any size is past every end."""
    value = parse_uint(digits)
    return _BEYOND if value is None else value


def _unsatisfiable(value: str, size: int) -> NoReturn:
    error = InvalidRange(RangeRequested=value, ActualObjectSize=size)
    error.headers["content-range"] = f"bytes */{size}"
    raise error


def parse_copy_range(value: str, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range must be 'bytes=first-last' within the source."""
    match = _RANGE.fullmatch(value.strip())
    # Positions longer than any number a client sends (auth/numbers.py) are malformed too.
    start = parse_uint(match[1]) if match else None
    end = parse_uint(match[2]) if match else None
    if start is None or end is None:
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
            " where first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    if end < start or end >= size:
        # 416 InvalidRange, as S3 answers (and the S3 test suites expect) for a range
        # outside the source; a malformed one is the InvalidArgument above.
        raise InvalidRange(RangeRequested=value, ActualObjectSize=size)
    return start, end
