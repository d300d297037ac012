"""Tag-set rules (app/tagging.py): AWS's limits and errors, the Tagging document and the
x-amz-tagging header, under Hypothesis where the input space is large."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app import tagging
from shoal.app.errors import BadRequest, InvalidArgument, InvalidTag, MalformedXML, S3Error
from shoal.app.xml import escape
from shoal.storage.backend import ObjectMeta, ObjectWrite
from shoal.storage.records import (
    meta_from_dict,
    meta_to_dict,
    now,
    write_from_dict,
    write_to_dict,
)

#: Characters a tag may hold: letters, numbers, white space and _ . : / = + - @.
TAG_CHARS = st.characters(categories=("L", "N", "Zs")) | st.sampled_from(list("_.:/=+-@"))
KEYS = st.text(TAG_CHARS, min_size=1, max_size=40).filter(
    lambda k: not k.lower().startswith("aws:")
)
VALUES = st.text(TAG_CHARS, max_size=60)
TAG_SETS = st.dictionaries(KEYS, VALUES, max_size=tagging.MAX_OBJECT_TAGS)


def _document(pairs: list[tuple[str, str]]) -> bytes:
    tags = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in pairs)
    return f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode()


@given(TAG_SETS)
def test_document_round_trip(tags: dict[str, str]) -> None:
    """What render writes, parse_document reads back unchanged."""
    assert tagging.parse_document(tagging.render(tags), limit=tagging.MAX_OBJECT_TAGS) == tags


@given(TAG_SETS)
def test_header_round_trip(tags: dict[str, str]) -> None:
    """x-amz-tagging as SDKs write it (urlencode, either quoting) gives back the set."""
    for quote_via in (quote, None):
        header = urlencode(tags, quote_via=quote_via) if quote_via else urlencode(tags)
        assert tagging.parse_header(header) == tags


@given(st.dictionaries(KEYS, VALUES, min_size=11, max_size=14))
def test_more_than_ten_object_tags(tags: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="Object tags cannot be greater than 10"):
        tagging.parse_header(urlencode(tags))


def test_bucket_limit_is_fifty() -> None:
    pairs = [(f"k{i}", "v") for i in range(50)]
    assert len(tagging.parse_document(_document(pairs), limit=tagging.MAX_BUCKET_TAGS)) == 50
    with pytest.raises(BadRequest, match="Bucket tags cannot be greater than 50"):
        tagging.parse_document(_document([*pairs, ("k50", "v")]), limit=tagging.MAX_BUCKET_TAGS)


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("k" * 128, "v" * 256, True),
        ("k" * 129, "v", False),
        ("k", "v" * 257, False),
        # Counted in UTF-16 code units, as S3 counts: 64 emoji are 128 units.
        ("\U0001f600" * 64, "", False),  # emoji are not letters: refused anyway
        ("é" * 128, "ü" * 256, True),
        ("\U0001d49c" * 64, "", True),  # a letter outside the BMP: 2 units each
        ("\U0001d49c" * 65, "", False),
    ],
)
def test_lengths(key: str, value: str, ok: bool) -> None:
    document = _document([(key, value)])
    if ok:
        assert tagging.parse_document(document, limit=10) == {key: value}
    else:
        with pytest.raises(InvalidTag):
            tagging.parse_document(document, limit=10)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", "1"), ("a", "2")], "Cannot provide multiple Tags with the same key"),
        ([("aws:cloudformation", "x")], "prefixed with aws:"),
        ([("AWS:x", "x")], "prefixed with aws:"),
        ([("", "x")], "TagKey you have provided is invalid"),
        ([("a<b", "x")], "TagKey you have provided is invalid"),
        ([("a", "[x]")], "TagValue you have provided is invalid"),
    ],
)
def test_invalid_tags(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidTag, match=message):
        tagging.parse_document(_document(pairs), limit=10)


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging/>",
        b"<Other><TagSet/></Other>",
        b"<Tagging><TagSet/><TagSet/></Tagging>",
        b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Value>a</Value></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Key>a</Key><Key>b</Key><Value/></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Other/></TagSet></Tagging>",
        b"not xml",
    ],
)
def test_malformed_documents(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        tagging.parse_document(body, limit=10)


def test_empty_tag_set_and_values() -> None:
    assert tagging.parse_document(b"<Tagging><TagSet/></Tagging>", limit=10) == {}
    body = b"<Tagging><TagSet><Tag><Key>a</Key><Value/></Tag></TagSet></Tagging>"
    assert tagging.parse_document(body, limit=10) == {"a": ""}


def test_header_forms() -> None:
    assert tagging.parse_header("foo=bar&bar") == {"foo": "bar", "bar": ""}
    assert tagging.parse_header("a=b+c&d=%2B") == {"a": "b c", "d": "+"}
    assert tagging.parse_header("") == {}
    assert tagging.request_tags({}) == {}
    for bad in ("a=1&a=2", "TagSet=[{Key=string,Value=string}]", "a=%ff"):
        with pytest.raises(InvalidArgument):
            tagging.parse_header(bad)
    with pytest.raises(InvalidTag):
        tagging.parse_header("TagSet%3D%5B%7BKey%3Dstring%7D%5D")


@given(st.text(max_size=60))
def test_any_header_is_a_set_or_an_s3_error(header: str) -> None:
    try:
        tags = tagging.parse_header(header)
    except S3Error as exc:
        assert exc.status == 400
        return
    assert len(tags) <= tagging.MAX_OBJECT_TAGS


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_document_is_a_set_or_an_s3_error(body: bytes) -> None:
    try:
        tagging.parse_document(body, limit=tagging.MAX_BUCKET_TAGS)
    except S3Error as exc:
        assert exc.status == 400


def test_render_sorts_keys() -> None:
    text = tagging.render({"b": "2", "a": "1"}).decode()
    assert text.index("<Key>a</Key>") < text.index("<Key>b</Key>")


@given(TAG_SETS)
def test_records_keep_tags(tags: dict[str, str]) -> None:
    """Tags survive the stored metadata and upload records; old records read as none."""
    meta = ObjectMeta(key="k", size=1, etag="e", last_modified=now(True), tags=tags)
    assert meta_from_dict(meta_to_dict(meta)).tags == tags
    assert write_from_dict(write_to_dict(ObjectWrite(tags=tags))).tags == tags
    old = {k: v for k, v in meta_to_dict(meta).items() if k != "tags"}
    assert meta_from_dict(old).tags == {}
    assert write_from_dict({}).tags == {}


def test_request_condition_keys() -> None:
    keys = tagging.request_condition_keys("project=blue&owner=me")
    assert keys == {
        "s3:RequestObjectTagKeys": ("project", "owner"),
        "s3:RequestObjectTag/project": "blue",
        "s3:RequestObjectTag/owner": "me",
    }
    assert tagging.request_condition_keys(None) == {}
    assert tagging.request_condition_keys("") == {}
    # A header the handler will refuse gives no keys (never a tag it did not mean).
    assert tagging.request_condition_keys("a=1&a=2") == {}
