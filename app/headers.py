"""Object headers: what is stored from a request, what a response carries, and the
HTTP conditional and range rules S3 applies."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime

from app.errors import (
    InvalidArgument,
    InvalidRange,
    InvalidStorageClass,
    MetadataTooLarge,
    PreconditionFailed,
)
from storage.backend import ObjectMeta, ObjectWrite

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
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def http_date(when: datetime) -> str:
    return _http_date(int(when.timestamp()))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    """Formatting dates is a visible share of a small GET; objects repeat theirs."""
    return formatdate(seconds, usegmt=True)


def object_write(headers: dict[str, str], *, max_metadata_size: int) -> ObjectWrite:
    """The stored attributes of a PutObject, CopyObject (REPLACE) or CreateMultipartUpload."""
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
    user = {n[len(META_PREFIX) :]: v for n, v in headers.items() if n.startswith(META_PREFIX)}
    size = sum(len(n) + len(v.encode("latin-1", "replace")) for n, v in user.items())
    if size > max_metadata_size:
        raise MetadataTooLarge(Size=size, MaxSizeAllowed=max_metadata_size)
    content_type = headers.get("content-type") or "binary/octet-stream"
    return ObjectWrite(content_type=content_type, headers=stored, user_metadata=user)


def object_headers(meta: ObjectMeta) -> dict[str, str]:
    """Headers GET and HEAD return for an object (length and range added by the caller)."""
    headers = {
        "etag": f'"{meta.etag}"',
        "last-modified": http_date(meta.last_modified),
        "content-type": meta.content_type,
        "accept-ranges": "bytes",
    }
    headers.update(meta.headers)
    for name, value in meta.user_metadata.items():
        headers[META_PREFIX + name] = value
    if meta.version_id != "null":
        headers["x-amz-version-id"] = meta.version_id
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


def _etag_matches(condition: str, etag: str) -> bool:
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
        if not _etag_matches(if_match, meta.etag):
            raise PreconditionFailed(Condition="If-Match")
    else:
        since = _parse_date(headers.get(prefix + "unmodified-since"))
        if since is not None and modified > since:
            raise PreconditionFailed(Condition="If-Unmodified-Since")
    if_none_match = headers.get(prefix + "none-match")
    not_modified = False
    if if_none_match is not None:
        not_modified = _etag_matches(if_none_match, meta.etag)
    else:
        since = _parse_date(headers.get(prefix + "modified-since"))
        not_modified = since is not None and modified <= since and since <= datetime.now(UTC)
    if not_modified and prefix != "if-":
        raise PreconditionFailed(Condition="If-None-Match")
    return not not_modified


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single byte range; None serves the whole object.

    Malformed or multi-range headers are ignored, as S3 does; an unsatisfiable range
    is InvalidRange (416).
    """
    if not value:
        return None
    match = _RANGE.match(value.strip())
    if not match or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise InvalidRange(RangeRequested=value, ActualObjectSize=size)
        return (max(0, size - suffix), size - 1) if size else _unsatisfiable(value, size)
    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        return None
    if start >= size:
        _unsatisfiable(value, size)
    return start, min(end, size - 1)


def _unsatisfiable(value: str, size: int) -> tuple[int, int]:
    raise InvalidRange(RangeRequested=value, ActualObjectSize=size)


def parse_copy_range(value: str, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range must be 'bytes=first-last' within the source."""
    match = _RANGE.match(value.strip())
    if not match or not match[1] or not match[2]:
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
            " where first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    start, end = int(match[1]), int(match[2])
    if end < start or end >= size:
        raise InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    return start, end
