"""app/form.py: POST Object forms parsed as a stream. Well-formed forms give their fields
and file whatever the chunking; any other body gives a 4xx S3 error, never another
exception, and nothing is read or held beyond the bounds (fields before the file, one
parser feed of the file at a time)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shoal.app.errors import (
    IncorrectNumberOfFilesInPostRequest,
    MalformedPOSTRequest,
    MaxPostPreDataLengthExceeded,
    PreconditionFailed,
    S3Error,
)
from shoal.app.form import FEED, PostForm

BOUNDARY = "----shoalFormBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
#: What one piece of the file may exceed a parser feed by: the boundary look-behind.
LOOKBEHIND = 128

Part = tuple[str, str | None, bytes]  # name, filename (None: a plain field), body


def encode(parts: Iterable[Part], boundary: str = BOUNDARY, epilogue: bytes = b"") -> bytes:
    body = bytearray()
    for name, filename, data in parts:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            body += f'; filename="{filename}"'.encode()
            body += b"\r\nContent-Type: application/octet-stream"
        body += b"\r\n\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode() + epilogue
    return bytes(body)


class Source:
    """A request body in the given pieces, counting what the parser pulled."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = list(pieces)
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.pulled += len(piece)
            yield piece


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(points)]


async def _read(content_type: str, source: Source) -> tuple[dict[str, str], str, bytes]:
    form = PostForm(content_type, source.__aiter__())
    fields = await form.read_fields()
    data = bytearray()
    async for piece in form.file():
        assert len(piece) <= FEED + LOOKBEHIND  # one feed at a time, never the whole file
        data += piece
    return fields, form.filename, bytes(data)


def read(content_type: str, source: Source) -> tuple[dict[str, str], str, bytes] | S3Error:
    """The form's fields, filename and file, or the S3 error it gets (4xx only)."""
    try:
        return asyncio.run(_read(content_type, source))
    except S3Error as exc:
        assert 400 <= exc.status < 500, exc
        return exc


names = st.text("abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20).filter(
    lambda n: n.lower() != "file"
)
values = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=60)
fields_st = st.lists(st.tuples(names, values, st.booleans()), max_size=12)
file_st = st.binary(max_size=3 * FEED)
cuts_st = st.lists(st.integers(min_value=0), max_size=8)


@given(fields=fields_st, content=file_st, filename=names, cuts=cuts_st)
def test_well_formed_forms_give_fields_and_file(
    fields: list[tuple[str, str, bool]], content: bytes, filename: str, cuts: list[int]
) -> None:
    # A field sent as a file part (python-requests' files=) is still a field.
    parts: list[Part] = [(n, "f.txt" if as_file else None, v.encode()) for n, v, as_file in fields]
    parts.append(("file", filename, content))
    parts.append(("after", None, b"ignored: S3 reads nothing after the file"))
    body = encode(parts)
    assume(body.count(f"--{BOUNDARY}".encode()) == len(parts) + 1)
    result = read(CONTENT_TYPE, Source(split(body, cuts)))
    assert not isinstance(result, S3Error), result
    expected = {n.lower(): v for n, v, _ in fields}
    assert result == (expected, filename, content)


def mutate(body: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(body)
    for position, kind, blob in edits:
        at = position % (len(data) + 1)
        if kind == 0:
            data[at:at] = blob  # insert
        elif kind == 1:
            del data[at : at + len(blob) + 1]  # delete
        else:
            data[at : at + len(blob)] = blob  # overwrite
    return bytes(data)


edits_st = st.lists(
    st.tuples(
        st.integers(min_value=0),
        st.integers(min_value=0, max_value=2),
        st.sampled_from([b"\r\n", b"--", BOUNDARY.encode(), b'"', b";", b"\x00", b"\xff"])
        | st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=6,
)


@given(fields=fields_st, content=file_st, edits=edits_st, cuts=cuts_st)
def test_mutated_forms_get_an_s3_error_or_a_result(
    fields: list[tuple[str, str, bool]],
    content: bytes,
    edits: list[tuple[int, int, bytes]],
    cuts: list[int],
) -> None:
    parts: list[Part] = [(n, "x" if f else None, v.encode()) for n, v, f in fields]
    body = mutate(encode([*parts, ("file", "a.bin", content)]), edits)
    read(CONTENT_TYPE, Source(split(body, cuts)))


@given(
    content_type=st.one_of(
        st.just(CONTENT_TYPE),
        st.text(st.characters(max_codepoint=255), max_size=120),
        st.builds(
            lambda b: f"multipart/form-data; boundary={b}",
            st.text(st.characters(max_codepoint=255), max_size=300),
        ),
    ),
    body=st.binary(max_size=4096),
    cuts=cuts_st,
)
def test_random_bodies_and_content_types(content_type: str, body: bytes, cuts: list[int]) -> None:
    try:
        form_source = Source(split(body, cuts))
        read(content_type, form_source)
    except S3Error as exc:  # refused by the Content-Type alone (raised by the constructor)
        assert 400 <= exc.status < 500


def test_the_file_is_not_read_before_the_fields_are_decided() -> None:
    small = [("key", None, b"k"), ("policy", None, b"p" * 1000)]
    body = encode([*small, ("file", "big.bin", b"x" * (8 * FEED))])
    source = Source(split(body, list(range(0, len(body), 1024))))

    async def fields_only() -> dict[str, str]:
        return await PostForm(CONTENT_TYPE, source.__aiter__()).read_fields()

    assert asyncio.run(fields_only()) == {"key": "k", "policy": "p" * 1000}
    assert source.pulled <= 2048 + 1024  # the fields, then at most one piece


FILE: Part = ("file", "a.txt", b"data")


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([("big", None, b"v" * 100_000), FILE], MaxPostPreDataLengthExceeded),
        ([*((f"f{i}", None, b"v" * 80) for i in range(250)), FILE], MaxPostPreDataLengthExceeded),
        ([("key", None, b"k")], IncorrectNumberOfFilesInPostRequest),
        ([], IncorrectNumberOfFilesInPostRequest),
        ([("no-name", None, b"v"), FILE], None),  # replaced below: a part without a name
    ],
)
def test_refused_forms(parts: list[Part], error: type[S3Error] | None) -> None:
    body = encode(parts)
    if error is None:
        body, error = body.replace(b' name="no-name"', b""), MalformedPOSTRequest
    assert isinstance(read(CONTENT_TYPE, Source([body])), error)


def test_two_file_parts_keep_the_first() -> None:
    body = encode([("key", None, b"k"), ("file", "1", b"first"), ("file", "2", b"second")])
    assert read(CONTENT_TYPE, Source([body])) == ({"key": "k"}, "1", b"first")


def test_truncated_file_part_is_malformed() -> None:
    body = encode([("key", None, b"k"), ("file", "1", b"x" * 1000)])
    assert isinstance(read(CONTENT_TYPE, Source([body[:-200]])), MalformedPOSTRequest)


@pytest.mark.parametrize(
    ("content_type", "error"),
    [
        ("multipart/form-data", MalformedPOSTRequest),  # no boundary
        ("multipart/form-data; boundary=", MalformedPOSTRequest),
        (f"multipart/form-data; boundary={'b' * 71}", MalformedPOSTRequest),
        ("application/x-www-form-urlencoded", PreconditionFailed),
        ("", PreconditionFailed),
    ],
)
def test_refused_content_types(content_type: str, error: type[S3Error]) -> None:
    with pytest.raises(error):
        PostForm(content_type, Source([]).__aiter__())
