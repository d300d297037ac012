"""Property tests for the header parsers that see client text: Range and copy ranges,
conditional headers, stored headers and response-* overrides, x-amz-copy-source.

Each input yields a result or an S3 error, never another exception; the results obey
the rules S3 and RFC 9110 give. Short under the "ci" profile, long under "fuzz".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shoal.app.errors import (
    InvalidArgument,
    InvalidRange,
    InvalidStorageClass,
    MetadataTooLarge,
    PreconditionFailed,
    S3Error,
)
from shoal.app.handlers.copy import parse_copy_source
from shoal.app.headers import (
    RESPONSE_OVERRIDES,
    STORED_HEADERS,
    check_conditions,
    header_value_ok,
    object_headers,
    object_write,
    parse_copy_range,
    parse_range,
    query_part_number,
    response_overrides,
)
from shoal.storage.backend import ObjectMeta

SENDABLE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
#: Digits of every kind Python's int() or isdigit() might take, and near misses.
DIGITS = st.sampled_from("0123456789\u00b2\u0663\uff11\u096a_+- x")
NUMBERISH = st.text(DIGITS, max_size=25) | st.sampled_from(["9" * 5000, "0" * 30 + "1"])
SIZES = st.integers(0, 2**40)


def range_text() -> st.SearchStrategy[str]:
    spec = st.tuples(NUMBERISH, st.sampled_from(["-", "--", ""]), NUMBERISH)
    ranged = spec.map(lambda t: "bytes=" + "".join(t))
    return ranged | st.text(max_size=40) | ranged.map(lambda r: r + "," + r)


def meta(size: int = 10, etag: str = "abc") -> ObjectMeta:
    return ObjectMeta(
        key="k",
        size=size,
        etag=etag,
        last_modified=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        content_type="text/plain",
    )


@given(range_text(), SIZES)
def test_parse_range_total(value: str, size: int) -> None:
    try:
        span = parse_range(value, size)
    except InvalidRange as exc:
        assert exc.headers["content-range"] == f"bytes */{size}"
        return
    if span is not None:
        start, end = span
        assert 0 <= start <= end < size


@given(st.integers(0, 2**40), st.integers(0, 2**40), SIZES)
def test_parse_range_model(first: int, last: int, size: int) -> None:
    """A well-formed first-last range against RFC 9110 14.1.2."""
    value = f"bytes={first}-{last}"
    if last < first:
        assert parse_range(value, size) is None
    elif first >= size:
        with pytest.raises(InvalidRange):
            parse_range(value, size)
    else:
        assert parse_range(value, size) == (first, min(last, size - 1))


@given(st.integers(0, 2**40), SIZES)
def test_parse_range_open_and_suffix(n: int, size: int) -> None:
    if n >= size:
        with pytest.raises(InvalidRange):
            parse_range(f"bytes={n}-", size)
    else:
        assert parse_range(f"bytes={n}-", size) == (n, size - 1)
    if n == 0 or size == 0:
        with pytest.raises(InvalidRange):
            parse_range(f"bytes=-{n}", size)
    else:
        assert parse_range(f"bytes=-{n}", size) == (max(0, size - n), size - 1)


@given(range_text(), SIZES)
def test_parse_copy_range_total(value: str, size: int) -> None:
    try:
        start, end = parse_copy_range(value, size)
    except (InvalidArgument, InvalidRange):  # malformed, or outside the source (416)
        return
    assert 0 <= start <= end < size


@given(NUMBERISH)
def test_part_number(text: str) -> None:
    try:
        number = query_part_number({"partNumber": text})
    except InvalidArgument:
        assert not (
            text.isascii() and text.isdigit() and len(text) < 20 and 1 <= int(text) <= 10000
        )
        return
    assert text.isascii() and 1 <= number <= 10000 and number == int(text)


CONDITION_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
            "x-amz-copy-source-if-match",
            "x-amz-copy-source-if-none-match",
            "x-amz-copy-source-if-modified-since",
            "x-amz-copy-source-if-unmodified-since",
        ]
    ),
    st.text(max_size=40)
    | st.sampled_from(['"abc"', "*", 'W/"abc"', "Wed, 01 May 2024 12:00:00 GMT", "Mon, 99 Foo"]),
)


@given(CONDITION_HEADERS, st.sampled_from(["if-", "x-amz-copy-source-if-"]))
def test_check_conditions_total(headers: dict[str, str], prefix: str) -> None:
    try:
        result = check_conditions(headers, meta(), prefix)
    except PreconditionFailed:
        return
    assert isinstance(result, bool)
    if prefix != "if-":
        assert result is True  # a copy source never answers 304


HEADER_NAMES = st.sampled_from(
    [*STORED_HEADERS, "content-type", "x-amz-storage-class", "x-amz-meta-a", "x-amz-meta-"]
) | st.text(max_size=12).map(lambda s: "x-amz-meta-" + s)


@given(st.dictionaries(HEADER_NAMES, st.text(max_size=30) | st.sampled_from(["STANDARD"])))
def test_object_write_stores_only_sendable_headers(headers: dict[str, str]) -> None:
    try:
        write = object_write(headers, max_metadata_size=2048)
    except (InvalidArgument, InvalidStorageClass, MetadataTooLarge):
        return
    described = meta()
    described.content_type = write.content_type
    described.headers = write.headers
    described.user_metadata = write.user_metadata
    for name, value in object_headers(described).items():
        assert header_value_ok(value), (name, value)
        name.encode("latin-1")


@pytest.mark.parametrize(
    "value", ["a\r\nb", "a\nb", "a\rb", "a\x00b", "a\x7f", "\x1b[0m", "\u2603", "\ud800"]
)
def test_object_write_refuses_what_cannot_be_sent(value: str) -> None:
    for name in ("content-type", "cache-control", "x-amz-meta-a"):
        with pytest.raises(InvalidArgument):
            object_write({name: value}, max_metadata_size=2048)
    with pytest.raises(InvalidArgument):
        object_write({"x-amz-meta-" + value: "v"}, max_metadata_size=2048)


def test_object_write_keeps_latin1_and_tabs() -> None:
    write = object_write(
        {"x-amz-meta-a": "caf\u00e9\tok", "content-type": "a/b"}, max_metadata_size=99
    )
    assert write.user_metadata == {"a": "caf\u00e9\tok"}


@given(st.dictionaries(st.sampled_from([*RESPONSE_OVERRIDES, "other"]), st.text(max_size=30)))
def test_response_overrides(query: dict[str, str]) -> None:
    try:
        headers = response_overrides(query)
    except InvalidArgument:
        assert any(not SENDABLE.fullmatch(v) for p, v in query.items() if p in RESPONSE_OVERRIDES)
        return
    assert set(headers) == {RESPONSE_OVERRIDES[p] for p in query if p in RESPONSE_OVERRIDES}
    assert all(SENDABLE.fullmatch(v) for v in headers.values())


COPY_SOURCES = st.text(max_size=60) | st.builds(
    lambda slash, bucket, key, query: slash + bucket + "/" + key + query,
    st.sampled_from(["", "/", "//"]),
    st.sampled_from(["bucket", "b", "Bad_Bucket", "my.bucket", "%62ucket", ""]),
    st.text(max_size=20),
    st.sampled_from(["", "?versionId=null", "?versionId=abc", "?", "?x=1"]),
)


@given(COPY_SOURCES)
def test_copy_source_total(raw: str) -> None:
    try:
        bucket, key, _ = parse_copy_source(raw)
    except S3Error as exc:
        assert exc.status == 400
        return
    assert bucket and key
    assume(raw.startswith(("bucket/", "/bucket/")))
    assert bucket == "bucket"
